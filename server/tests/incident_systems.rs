//! An incident counts for the systems its host or probe belonged to when it was detected, and
//! an exclusion scoped by `system` covers the members of that system, on SQLite and
//! PostgreSQL: both follow the server's membership, never the `system` label an agent (run by
//! the assessed vendor) reports. A host of system A relabels itself `system: B`: its alert's
//! incident still counts for A (and an unassigned host's for no system), and B's approved
//! maintenance window does not swallow A's downtime.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use serde_json::Value;
use yunwei_proto::Sample;
use yunwei_server::store::{incidents::IncidentRow, notify::ExclusionRow};
use yunwei_tests::{Enrolled, SECRET, batch, facts, now_ms};

yunwei_tests::both_backends!(incidents_and_exclusion_scopes_follow_membership_not_agent_labels);

const SHANGHAI_MS: i64 = 8 * 3_600_000;
const MIN: i64 = 60_000;

fn contract_yaml() -> String {
    r#"id: incident-systems
name: 故障归属测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: a, name: 系统甲, tier: core, hosts: { system: A }, probes: { system: A } }
  - { id: b, name: 系统乙, tier: core, hosts: { system: B }, probes: { system: B } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
  incidents:
    - { id: P3, aliases: [三级], response: 15m, restore: 24h, window: always }
scoring:
  base: 100
  deductions:
    - { id: response, name: 响应超时, name_en: Response late, kind: response_late, points: 2 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#
    .to_string()
}

/// Enrolls `hostname` labelled `system: <system>`.
async fn enroll(h: &Harness, hostname: &str, system: &str) -> Enrolled {
    let mut host = facts(hostname);
    host.labels.insert("system".to_string(), system.to_string());
    let r = h
        .client
        .http
        .post(format!("{}/api/v1/enroll", h.client.base))
        .json(&yunwei_proto::EnrollRequest {
            secret: SECRET.into(),
            host,
        })
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let e: yunwei_proto::EnrollResponse = r.json().await.unwrap();
    Enrolled {
        agent_id: e.agent_id,
        token: e.token,
    }
}

/// A batch at `t` from `hostname` labelled `system: <system>` with the probe `home`'s result.
async fn push(h: &Harness, e: &Enrolled, seq: u64, t: i64, hostname: &str, system: &str, up: bool) {
    let mut b = batch(e, hostname, seq, t, 0);
    b.host
        .labels
        .insert("system".to_string(), system.to_string());
    b.samples.push(Sample {
        name: "probe_success".into(),
        labels: BTreeMap::from([("probe".to_string(), "home".to_string())]).into(),
        value: if up { 1.0 } else { 0.0 },
        ts_ms: t,
    });
    h.ok(e, &b).await;
}

async fn assessment(h: &Harness, from_ms: i64) -> Value {
    let day = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t + SHANGHAI_MS)
            .unwrap()
            .date_naive()
    };
    h.client
        .get_json(&format!(
            "/api/v1/contracts/incident-systems/assessment?period={}..{}",
            day(from_ms),
            day(now_ms())
        ))
        .await
        .unwrap()
}

fn downtime(a: &Value, system: &str) -> f64 {
    a["systems"]
        .as_array()
        .unwrap_or_else(|| panic!("{a}"))
        .iter()
        .find(|s| s["system"] == system)
        .unwrap_or_else(|| panic!("{a}"))["downtime_minutes"]
        .as_f64()
        .unwrap()
}

/// The systems the assessment counts incident `id` for.
fn systems_of(a: &Value, id: &str) -> Vec<String> {
    let i = a["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("{a}"))
        .iter()
        .find(|i| i["incident"] == format!("incident:{id}"))
        .unwrap_or_else(|| panic!("no incident {id}: {a}"));
    i["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// An incident as the dispatcher opens it for an alert group with `labels`, acknowledged 40
/// minutes after detection (25 minutes over its 15-minute response target).
async fn incident(h: &Harness, id: &str, detected_ms: i64, labels: &[(&str, &str)]) {
    let row = IncidentRow {
        id: id.into(),
        group_id: Some(format!("group-{id}")),
        title: format!("HostDown {id}"),
        level: 3,
        source: "alert".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        detected_ms,
        notified_ms: Some(detected_ms),
        acknowledged_ms: Some(detected_ms + 40 * MIN),
        acknowledged_by: Some("值班员".into()),
        onsite_ms: None,
        restored_ms: Some(detected_ms + 50 * MIN),
        rca: None,
        created_by: "system".into(),
        updated_ms: detected_ms,
    };
    h.state
        .store
        .insert_incident(&row, false, None)
        .await
        .unwrap();
}

fn maintenance(id: &str, scope: &str, from_ms: i64, to_ms: i64) -> ExclusionRow {
    ExclusionRow {
        id: id.into(),
        kind: "maintenance".into(),
        matchers: vec![scope.into()],
        from_ms,
        to_ms,
        recurrence: None,
        reason: "计划维护".into(),
        requested_by: "vendor-op".into(),
        requested_ms: from_ms - 7 * 86_400_000,
        status: "approved".into(),
        reviewed_by: Some("office".into()),
        reviewed_ms: Some(from_ms - 6 * 86_400_000),
        review_comment: None,
    }
}

async fn incidents_and_exclusion_scopes_follow_membership_not_agent_labels(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, contract_yaml()).unwrap();
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
        c.contracts.scheduled_reports = false;
        // The status calls below are the first sight; a background pass between an
        // enrollment and the host's first (backdated) batch would assign it from enrollment.
        c.contracts.membership_interval_secs = 86_400;
    })
    .await
    else {
        return;
    };
    let x = enroll(&h, "a-01", "A").await;
    let y = enroll(&h, "b-01", "B").await;
    let t0 = now_ms() - 40 * MIN;
    let at = |i: u64| t0 + i as i64 * 15_000;
    let (mut sx, mut sy) = (0u64, 0u64);
    for i in 0..20 {
        sx += 1;
        push(&h, &x, sx, at(i), "a-01", "A", true).await;
        sy += 1;
        push(&h, &y, sy, at(i), "b-01", "B", true).await;
    }
    // First sight: x and its probe are assigned to A, y and its probe to B.
    h.client
        .get_json("/api/v1/contracts/incident-systems/status")
        .await
        .unwrap();
    // x's agent now reports `system: B`; its probe is down for 5 minutes.
    for i in 20..120 {
        sx += 1;
        push(&h, &x, sx, at(i), "a-01", "B", !(60..80).contains(&i)).await;
        sy += 1;
        push(&h, &y, sy, at(i), "b-01", "B", true).await;
    }
    // A host enrolled labelled A but assigned to no system (the office unassigns it).
    let z = enroll(&h, "z-01", "A").await;
    push(&h, &z, 1, at(119), "z-01", "A", true).await;
    h.client
        .get_json("/api/v1/contracts/incident-systems/status")
        .await
        .unwrap();
    for (kind, subject) in [
        ("host", z.agent_id.clone()),
        ("probe", format!("{}/home", z.agent_id)),
    ] {
        let r = h
            .client
            .api(
                reqwest::Method::POST,
                "/api/v1/contracts/incident-systems/membership",
            )
            .json(
                &serde_json::json!({"action": "unassign", "system": "a", "kind": kind,
                "subject": subject, "reason": "not in the contract"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let detected = at(60);
    let (xa, ya, za) = (
        x.agent_id.as_str(),
        y.agent_id.as_str(),
        z.agent_id.as_str(),
    );
    // The alert's labels as the series present them: the host's identity and the `system`
    // its agent reports now.
    incident(
        &h,
        "x-host",
        detected,
        &[
            ("alertname", "HostDown"),
            ("agent_id", xa),
            ("instance", "a-01"),
            ("system", "B"),
        ],
    )
    .await;
    // Grouped by instance only: the enrolled hostname names the host.
    incident(
        &h,
        "x-probe",
        detected,
        &[
            ("alertname", "ProbeDown"),
            ("instance", "a-01"),
            ("probe", "home"),
            ("system", "B"),
        ],
    )
    .await;
    incident(
        &h,
        "y-host",
        detected,
        &[("alertname", "HostDown"), ("agent_id", ya), ("system", "B")],
    )
    .await;
    incident(
        &h,
        "z-host",
        now_ms(),
        &[("alertname", "HostDown"), ("agent_id", za), ("system", "A")],
    )
    .await;
    // Opened by hand about a system, naming no host: its labels are all there is.
    incident(&h, "phone", detected, &[("system", "B")]).await;
    // B's maintenance window covers x's outage; so would an A-scoped one.
    let window = (at(50), at(90));
    h.state
        .store
        .insert_exclusion(
            &maintenance("b-maint", "system=\"B\"", window.0, window.1),
            None,
        )
        .await
        .unwrap();

    let a = assessment(&h, t0).await;
    assert_eq!(systems_of(&a, "x-host"), vec!["a"], "x's host is A's: {a}");
    assert_eq!(
        systems_of(&a, "x-probe"),
        vec!["a"],
        "x's probe is A's: {a}"
    );
    assert_eq!(systems_of(&a, "y-host"), vec!["b"], "{a}");
    assert!(
        systems_of(&a, "z-host").is_empty(),
        "an unassigned host's incident counts for no system, whatever its labels: {a}"
    );
    assert_eq!(systems_of(&a, "phone"), vec!["b"], "{a}");
    // x's late response is deducted as A's incident.
    let lines: Vec<&Value> = a["deductions"]
        .as_array()
        .unwrap_or_else(|| panic!("{a}"))
        .iter()
        .flat_map(|d| d["lines"].as_array().unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["evidence"].to_string().contains("incident:x-host")),
        "{a}"
    );
    assert!(
        (downtime(&a, "a") - 5.0).abs() <= 0.5,
        "B's maintenance window does not cover A's host that calls itself B: {a}"
    );
    assert_eq!(downtime(&a, "b"), 0.0, "{a}");

    // A window scoped to A covers it.
    h.state
        .store
        .insert_exclusion(
            &maintenance("a-maint", "system=\"A\"", window.0, window.1),
            None,
        )
        .await
        .unwrap();
    let a = assessment(&h, t0).await;
    assert!(downtime(&a, "a") <= 0.01, "{a}");
    h.stop().await;
}
