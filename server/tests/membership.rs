//! Membership is server-side, on SQLite and PostgreSQL: which system a host or probe counts for
//! is decided by the office on the server, never by what an agent (run by the assessed vendor)
//! reports about itself. A host of system A goes down; its agent then relabels it into system B
//! and renames it to another host's name: A's assessment keeps the downtime, B does not gain it,
//! and the two hosts are flagged, not merged. An admin reassignment effective from T changes
//! membership from T only, with history and audit rows; a backdated one is refused.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use serde_json::{Value, json};
use yunwei_proto::Sample;
use yunwei_tests::{Enrolled, SECRET, batch, facts, now_ms};

yunwei_tests::both_backends!(relabelling_never_moves_a_host_between_systems);

const SHANGHAI_MS: i64 = 8 * 3_600_000;
const MIN: i64 = 60_000;

fn contract_yaml() -> String {
    r#"id: member-contract
name: 归属测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: a, name: 系统甲, tier: core, hosts: { system: A }, probes: { system: A } }
  - { id: b, name: 系统乙, tier: core, hosts: { system: B }, probes: { system: B } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
  incidents:
    - { id: P3, aliases: [三级], response: 2h, restore: 24h, window: always }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#
    .to_string()
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

/// Enrolls `hostname` labelled `system: <system>` (the labels it will first be seen with).
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

/// Downtime minutes per system over the local days from `from_ms` to now.
async fn downtime(h: &Harness, from_ms: i64) -> BTreeMap<String, f64> {
    let day = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t + SHANGHAI_MS)
            .unwrap()
            .date_naive()
    };
    let a = h
        .client
        .get_json(&format!(
            "/api/v1/contracts/member-contract/assessment?period={}..{}",
            day(from_ms),
            day(now_ms())
        ))
        .await
        .unwrap();
    a["availability"]
        .as_array()
        .or_else(|| a["systems"].as_array())
        .unwrap_or_else(|| panic!("{a}"))
        .iter()
        .map(|s| {
            (
                s["system"].as_str().unwrap().to_string(),
                s["downtime_minutes"].as_f64().unwrap(),
            )
        })
        .collect()
}

async fn post_membership(h: &Harness, body: Value) -> (u16, Value) {
    let r = h
        .client
        .api(
            reqwest::Method::POST,
            "/api/v1/contracts/member-contract/membership",
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

fn near(x: f64, want: f64) -> bool {
    (x - want).abs() <= 0.5
}

async fn relabelling_never_moves_a_host_between_systems(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, contract_yaml()).unwrap();
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
        c.contracts.scheduled_reports = false;
        // The status call below is the first sight; a background pass between an enrollment
        // and the host's first (backdated) batch would assign it from enrollment.
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

    // 1. x in system A, its probe down for 5 minutes; y in B, up.
    for i in 0..60 {
        sx += 1;
        push(&h, &x, sx, at(i), "a-01", "A", !(20..40).contains(&i)).await;
        sy += 1;
        push(&h, &y, sy, at(i), "b-01", "B", true).await;
    }
    // The server sees both for the first time (any contract read runs the membership pass).
    h.client
        .get_json("/api/v1/contracts/member-contract/status")
        .await
        .unwrap();

    // 2. x's agent moves it to system B, then renames it to y's hostname; down 5 minutes more.
    for i in 60..120 {
        let name = if i == 60 { "a-01" } else { "b-01" };
        sx += 1;
        push(&h, &x, sx, at(i), name, "B", !(80..100).contains(&i)).await;
        sy += 1;
        push(&h, &y, sy, at(i), "b-01", "B", true).await;
    }
    let d = downtime(&h, t0).await;
    assert!(
        near(d["a"], 10.0),
        "A keeps the downtime of its host after the relabelling: {d:?}"
    );
    assert!(
        near(d["b"], 0.0),
        "B gains nothing from a relabelling: {d:?}"
    );

    // Membership: assigned once, at first sight, by `system`.
    let m = h
        .client
        .get_json("/api/v1/contracts/member-contract/membership")
        .await
        .unwrap();
    let probe_x = format!("{}/home", x.agent_id);
    let current = |m: &Value, subject: &str| -> Vec<String> {
        m["current"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["subject"] == subject)
            .map(|r| r["system_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(current(&m, &x.agent_id), vec!["a"], "{m}");
    assert_eq!(current(&m, &probe_x), vec!["a"], "{m}");
    assert_eq!(current(&m, &y.agent_id), vec!["b"], "{m}");
    assert!(
        m["current"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["assigned_by"] == "system"),
        "{m}"
    );
    // x's labels now propose B: pending, not moved.
    let pending = m["pending"].as_array().unwrap();
    assert!(
        pending
            .iter()
            .any(|p| p["subject"] == x.agent_id && p["system"] == "b"),
        "{m}"
    );

    // Two agents reporting one hostname: flagged, not merged.
    let hosts = h.client.get_json("/api/v1/hosts").await.unwrap();
    let hosts = hosts["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    for host in hosts {
        assert_eq!(host["hostname"], "b-01");
        assert_eq!(host["hostname_shared_with"].as_array().unwrap().len(), 1);
    }
    let metrics = h.client.get_text("/metrics").await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "yunwei_hostnames_duplicated 1"),
        "{metrics}"
    );

    // A backdated change is refused: it would rewrite an assessment already shown.
    let (st, body) = post_membership(
        &h,
        json!({"action": "unassign", "system": "a", "kind": "probe", "subject": probe_x,
               "effective_from_ms": now_ms() - 60 * MIN, "reason": "moved"}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"]["field"], "effective_from_ms", "{body}");

    // 3. The office moves x and its probe to B from T (within the 5-minute tolerance).
    let t = now_ms() - 4 * MIN;
    for (action, system) in [("unassign", "a"), ("assign", "b")] {
        for (kind, subject) in [("host", x.agent_id.as_str()), ("probe", probe_x.as_str())] {
            let (st, body) = post_membership(
                &h,
                json!({"action": action, "system": system, "kind": kind, "subject": subject,
                       "effective_from_ms": t, "reason": "工单 2026-17: moved to system B"}),
            )
            .await;
            assert_eq!(st, 200, "{action} {kind}: {body}");
        }
    }
    // After T x's probe is down for 2 minutes: B's, not A's.
    let mut ts = at(120);
    while ts < now_ms() - 1_000 {
        sx += 1;
        let up = !(t + MIN / 2..t + 5 * MIN / 2).contains(&ts);
        push(&h, &x, sx, ts, "b-01", "B", up).await;
        sy += 1;
        push(&h, &y, sy, ts, "b-01", "B", true).await;
        ts += 15_000;
    }
    let d = downtime(&h, t0).await;
    assert!(near(d["a"], 10.0), "A: its downtime before T only: {d:?}");
    assert!(near(d["b"], 2.0), "B: x's downtime from T only: {d:?}");

    // History and audit.
    let m = h
        .client
        .get_json("/api/v1/contracts/member-contract/membership")
        .await
        .unwrap();
    assert_eq!(current(&m, &probe_x), vec!["b"], "{m}");
    let history: Vec<&Value> = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["subject"] == probe_x.as_str())
        .collect();
    assert_eq!(history.len(), 2, "{m}");
    assert_eq!(history[0]["system_id"], "a");
    assert_eq!(history[0]["to_ms"], t);
    assert!(
        history[0]["ended_by"]
            .as_str()
            .unwrap()
            .starts_with("token:")
    );
    assert_eq!(history[1]["system_id"], "b");
    assert_eq!(history[1]["from_ms"], t);
    assert!(history[1]["to_ms"].is_null());
    let audit = yunwei_server::audit::list(&h.state.store, None, 500)
        .await
        .unwrap();
    let rows = |action: &str, actor_prefix: &str| {
        audit
            .iter()
            .filter(|r| r.entry.action == action && r.entry.actor.starts_with(actor_prefix))
            .count()
    };
    assert_eq!(rows("membership.assign", "system"), 4, "{audit:?}");
    assert_eq!(rows("membership.unassign", "token:"), 2, "{audit:?}");
    assert_eq!(rows("membership.assign", "token:"), 2, "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|r| r.entry.detail["reason"] == "工单 2026-17: moved to system B")
    );
    h.stop().await;
}
