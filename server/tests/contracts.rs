//! Contracts in the server, on SQLite and PostgreSQL: availability assessed from the status
//! intervals ingest stored (with each outage citing its interval rows), the live status API,
//! and the inspection runner storing one record per scheduled inspection.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use yunwei_proto::Sample;
use yunwei_server::{contracts, ingest::KIND_PROBE, timeline::State};
use yunwei_tests::{Enrolled, batch, now_ms};

yunwei_tests::both_backends!(
    availability_comes_from_stored_intervals_and_cites_them,
    approved_maintenance_and_incidents_reach_the_assessment,
    a_recurring_maintenance_window_excludes_each_occurrence,
    inspections_run_once_per_slot_and_count_as_done,
);

/// Shanghai is UTC+8 all year.
const SHANGHAI_MS: i64 = 8 * 3_600_000;

/// A contract over the test hosts (`system: 政务服务网`, see `yunwei_tests::facts`), with one
/// daily inspection at `inspect_at` (HH:MM, Asia/Shanghai) if given.
fn contract_yaml(inspect_at: Option<&str>) -> String {
    let inspections = inspect_at.map_or(String::new(), |at| {
        format!("  inspections:\n    daily: [\"{at}\"]\n    daily_on: every_day\n    grace: 1h\n")
    });
    format!(
        r#"id: test-contract
name: 测试合同
parties: {{ buyer: 测试数据局, vendor: 测试运维公司 }}
period: {{ start: 2020-01-01, end: 2099-12-31 }}
systems:
  - {{ id: portal, name: 政务服务网, tier: core, hosts: {{ system: 政务服务网 }}, probes: {{ system: 政务服务网 }} }}
objectives:
  availability:
    # The scenarios hold about 30 minutes of data in the days assessed: no coverage minimum.
    core: {{ target_percent: 99.9, min_outage: 1m, missing_data: excluded, min_coverage_percent: 0 }}
  incidents:
    - {{ id: P3, aliases: [三级], response: 2h, restore: 24h, window: always }}
{inspections}scoring:
  base: 100
  deductions:
    - {{ id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }}
    - {{ id: inspection, name: 漏巡检, name_en: Missed inspection, kind: inspection_missed, points: 5 }}
    - {{ id: notice, name: 被主管部门通报, name_en: Reported by an authority, kind: manual, category: authority_notice, points: 5 }}
grades:
  - {{ id: pass, name: 合格, name_en: Pass, min_score: 60 }}
  - {{ id: fail, name: 不合格, name_en: Fail, min_score: 0 }}
"#
    )
}

/// Starts a server with the test contract; the inspection runner is driven by the test.
async fn start(backend: &str, inspect_at: Option<&str>) -> Option<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, contract_yaml(inspect_at)).unwrap();
    let h = Harness::start(backend, move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
    })
    .await;
    drop(dir);
    h
}

/// The assessment of the local (+08:00) days from `from_ms` to now: the period that holds a
/// scenario of the last half hour whole, also when it began before midnight on the 1st (the
/// current month would cut it).
async fn assess_scenario(h: &Harness, from_ms: i64) -> serde_json::Value {
    let day = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t + SHANGHAI_MS)
            .unwrap()
            .date_naive()
    };
    h.client
        .get_json(&format!(
            "/api/v1/contracts/test-contract/assessment?period={}..{}",
            day(from_ms),
            day(now_ms())
        ))
        .await
        .unwrap()
}

async fn push_probe(h: &Harness, e: &Enrolled, seq: u64, t: i64, up: bool) {
    let mut b = batch(e, "portal-01", seq, t, 0);
    b.samples.push(Sample {
        name: "probe_success".into(),
        labels: BTreeMap::from([("probe".to_string(), "home".to_string())]).into(),
        value: if up { 1.0 } else { 0.0 },
        ts_ms: t,
    });
    h.ok(e, &b).await;
}

async fn availability_comes_from_stored_intervals_and_cites_them(backend: &str) {
    let Some(h) = start(backend, None).await else {
        return;
    };
    let e = h.client.enroll("portal-01").await.unwrap();
    // 30 minutes of probes every 15 s; down from the 40th to the 60th result (5 minutes).
    let start_ms = now_ms() - 30 * 60_000;
    for i in 0..120u64 {
        let t = start_ms + i as i64 * 15_000;
        push_probe(&h, &e, i + 1, t, !(40..60).contains(&i)).await;
    }
    let subject = format!("{}/home", e.agent_id);
    let spans = h
        .state
        .store
        .intervals(KIND_PROBE, &subject, 0, i64::MAX)
        .await
        .unwrap();
    let down: Vec<_> = spans.iter().filter(|s| s.state == State::Down).collect();
    assert_eq!(down.len(), 1, "{spans:?}");
    let down_ms = down[0].end - down[0].start;

    // The contract list names the month the server is in, in the contract's time zone (the
    // console's default report period).
    let list = h.client.get_json("/api/v1/contracts").await.unwrap();
    let c = h.state.contracts.list()[0].clone();
    let before = contracts::current_month(&c.contract, now_ms()).label;
    assert_eq!(
        list["contracts"][0]["current_period"],
        before.as_str(),
        "{list}"
    );

    // The month so far, through the status API: the stored down span's part in this month
    // (all of it, unless the scenario began before midnight on the 1st).
    let status = h
        .client
        .get_json("/api/v1/contracts/test-contract/status")
        .await
        .unwrap();
    let portal = &status["systems"][0];
    assert_eq!(portal["id"], "portal");
    let month_start = status["period"]["start_ms"].as_i64().unwrap();
    let in_month = (down[0].end - down[0].start.max(month_start)).max(0);
    let downtime = portal["downtime_minutes"].as_f64().unwrap();
    assert!(
        (downtime - in_month as f64 / 60_000.0).abs() < 0.01,
        "downtime {downtime} min, stored down span {down_ms} ms ({in_month} ms this month): {status}"
    );

    // The days that hold the whole scenario, assessed.
    let a = assess_scenario(&h, start_ms).await;
    let portal = &a["systems"][0];
    let downtime = portal["downtime_minutes"].as_f64().unwrap();
    assert!(
        (downtime - down_ms as f64 / 60_000.0).abs() < 0.01,
        "downtime {downtime} min, stored down span {down_ms} ms: {a}"
    );
    // Before the first batch there was no data: missing, not downtime.
    assert!(portal["missing_minutes"].as_f64().unwrap() > 0.0, "{a}");
    // 5 minutes down in about 30 measured minutes is far below 99.9 %: the deduction is capped.
    assert_eq!(portal["met"], false, "{a}");
    assert_eq!(a["score"], 80.0, "{a}");

    // The assessment names the stored interval behind the outage.
    let outages = a["systems"][0]["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{a}");
    let cited = outages[0]["evidence"].to_string();
    assert!(
        cited.contains(&format!("interval:probe:{}", down[0].id.unwrap())),
        "outage evidence {cited} should cite the stored down span {:?}",
        down[0]
    );
    // Bad input names the field.
    let bad = h
        .client
        .get_json("/api/v1/contracts/test-contract/assessment?period=2026-13")
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("400") && bad.contains("period"), "{bad}");
    assert!(
        h.client
            .get_json("/api/v1/contracts/nope/status")
            .await
            .unwrap_err()
            .to_string()
            .contains("404")
    );
    h.stop().await;
}

async fn inspections_run_once_per_slot_and_count_as_done(backend: &str) {
    // A daily slot one minute ago, local time, so it is due now and within its grace hour.
    let now = now_ms();
    let local = (now + SHANGHAI_MS).rem_euclid(86_400_000) / 60_000;
    let slot = (local - 1).rem_euclid(1440);
    let at = format!("{:02}:{:02}", slot / 60, slot % 60);
    let Some(h) = start(backend, Some(&at)).await else {
        return;
    };
    let e = h.client.enroll("portal-01").await.unwrap();
    push_probe(&h, &e, 1, now_ms(), true).await;

    let now = now_ms();
    assert_eq!(
        contracts::run_due_inspections(&h.state.contracts, now)
            .await
            .unwrap(),
        1
    );
    // The same slot is not inspected twice.
    assert_eq!(
        contracts::run_due_inspections(&h.state.contracts, now + 1000)
            .await
            .unwrap(),
        0
    );
    let list = h
        .client
        .get_json("/api/v1/contracts/test-contract/inspections")
        .await
        .unwrap();
    let rows = list["inspections"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["kind"], "daily");
    let items = rows[0]["result"]["items"].as_array().unwrap();
    let reporting = items.iter().find(|i| i["item"] == "reporting").unwrap();
    assert_eq!(reporting["hosts"], 1, "{list}");
    assert_eq!(reporting["ok"], true, "{list}");
    // Every checklist item is there with both languages.
    for id in ["cpu", "memory", "disk", "certificates", "probes"] {
        let item = items.iter().find(|i| i["item"] == id).unwrap();
        assert!(item["zh"].as_str().is_some() && item["en"].as_str().is_some());
    }
    assert_eq!(rows[0]["ok"], true, "{list}");

    // The assessment counts it as done: nothing missed since record-keeping began.
    let c = h.state.contracts.list()[0].clone();
    let period = contracts::current_month(&c.contract, now);
    let a = contracts::assess_period(&h.state.store, &c, &period, now + 2 * 3_600_000, true, None)
        .await
        .unwrap();
    assert_eq!(a.inspections.done, 1, "{:?}", a.inspections);
    assert!(a.inspections.missed.is_empty(), "{:?}", a.inspections);
    h.stop().await;
}

async fn approved_maintenance_and_incidents_reach_the_assessment(backend: &str) {
    let Some(h) = start(backend, None).await else {
        return;
    };
    let e = h.client.enroll("portal-01").await.unwrap();
    let start_ms = now_ms() - 30 * 60_000;
    for i in 0..120u64 {
        let t = start_ms + i as i64 * 15_000;
        push_probe(&h, &e, i + 1, t, !(40..60).contains(&i)).await;
    }
    let token = async |name: &str, role| {
        yunwei_server::auth::users::create_token(&h.state.store, name, role, &[], None, now_ms())
            .await
            .unwrap()
    };
    use yunwei_server::auth::Role;
    let (op, rev) = (
        token("vendor-op", Role::Operator).await,
        token("office", Role::Reviewer).await,
    );
    let http = reqwest::Client::new();
    let post = async |who: &str, path: &str, body: serde_json::Value| {
        let r = http
            .post(format!("{}{path}", h.client.base))
            .bearer_auth(who)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    // Maintenance over the whole outage on this host, requested before it and approved; a second
    // request for another host stays pending and changes nothing.
    let outage_from = start_ms + 40 * 15_000;
    let (code, v) = post(
        &op,
        "/api/v1/exclusions",
        serde_json::json!({"kind": "maintenance", "matchers": ["hostname=\"portal-01\""],
            "from_ms": outage_from - 60_000, "to_ms": outage_from + 10 * 60_000, "reason": "升级"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let id = v["data"]["id"].as_str().unwrap().to_string();
    let (code, v) = post(
        &op,
        "/api/v1/exclusions",
        serde_json::json!({"kind": "maintenance", "matchers": ["hostname=\"other\""],
            "from_ms": start_ms, "to_ms": now_ms(), "reason": "无关"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let before = assess_scenario(&h, start_ms).await;
    let down_before = before["systems"][0]["downtime_minutes"].as_f64().unwrap();
    assert!(down_before > 4.0, "{before}");
    let (code, v) = post(
        &rev,
        &format!("/api/v1/exclusions/{id}/approve"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    // A fault reported by phone, acknowledged by the operator.
    let (code, v) = post(
        &op,
        "/api/v1/incidents",
        serde_json::json!({"title": "门户无法访问", "level": 3, "labels": {"system": "政务服务网"},
            "detected_ms": outage_from}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let inc = v["data"]["id"].as_str().unwrap().to_string();
    let (code, v) = post(
        &op,
        &format!("/api/v1/incidents/{inc}/ack"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(code, 200, "{v}");

    let after = assess_scenario(&h, start_ms).await;
    let sys = &after["systems"][0];
    assert_eq!(sys["downtime_minutes"].as_f64().unwrap(), 0.0, "{after}");
    assert!(
        (sys["excluded_minutes"].as_f64().unwrap() - down_before).abs() < 0.01,
        "{after}"
    );
    let uses = after["exclusions"].to_string();
    assert!(uses.contains(&format!("exclusion:{id}")), "{uses}");
    let incidents = after["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{after}");
    assert!(
        incidents[0]
            .to_string()
            .contains(&format!("incident:{inc}")),
        "{after}"
    );
    assert_eq!(after["score"], 100.0, "{after}");

    // The office records a 通报; the vendor may not, and only categories the contract scores
    // are accepted.
    let notice =
        serde_json::json!({"category": "authority_notice", "evidence": "市数据局通报〔2026〕3号"});
    let (code, _) = post(
        &op,
        "/api/v1/contracts/test-contract/events",
        notice.clone(),
    )
    .await;
    assert_eq!(code, 403);
    let (code, v) = post(
        &rev,
        "/api/v1/contracts/test-contract/events",
        serde_json::json!({"category": "praise", "evidence": "x"}),
    )
    .await;
    assert_eq!(
        (code, v["error"]["field"].as_str()),
        (400, Some("category")),
        "{v}"
    );
    let (code, v) = post(&rev, "/api/v1/contracts/test-contract/events", notice).await;
    assert_eq!(code, 200, "{v}");
    let event = v["data"]["id"].as_i64().unwrap();
    let scored = assess_scenario(&h, start_ms).await;
    assert_eq!(scored["score"], 95.0, "{scored}");
    assert!(
        scored["deductions"]
            .to_string()
            .contains(&format!("event:{event}")),
        "the deduction cites the recorded event: {scored}"
    );
    h.stop().await;
}

/// `times` entries (Alertmanager's fields, +08:00) covering `[a, b)` of one day, split at
/// midnight when the span crosses it.
fn shanghai_times(a: i64, b: i64) -> serde_json::Value {
    let hhmm = |t: i64| {
        let m = (t + SHANGHAI_MS).rem_euclid(86_400_000) / 60_000;
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    let (sa, sb) = (hhmm(a), hhmm(b));
    if sa < sb {
        serde_json::json!([{"start_time": sa, "end_time": sb}])
    } else {
        serde_json::json!([{"start_time": sa, "end_time": "24:00"}, {"start_time": "00:00", "end_time": sb}])
    }
}

async fn a_recurring_maintenance_window_excludes_each_occurrence(backend: &str) {
    let Some(h) = start(backend, None).await else {
        return;
    };
    let e = h.client.enroll("portal-01").await.unwrap();
    // Two outages: results 40..60 (inside the daily window below) and 80..90 (outside it).
    let start_ms = now_ms() - 30 * 60_000;
    for i in 0..120u64 {
        let t = start_ms + i as i64 * 15_000;
        let up = !(40..60).contains(&i) && !(80..90).contains(&i);
        push_probe(&h, &e, i + 1, t, up).await;
    }
    let in_window = start_ms + 40 * 15_000;
    // A daily window, whole minutes, from a minute before the first outage to 6 minutes after
    // it began (the outage lasts 5 minutes), requested a week ago for the whole year.
    let win_from = (in_window / 60_000 - 1) * 60_000;
    let win_to = win_from + 7 * 60_000;
    let subject = format!("{}/home", e.agent_id);
    let spans = h
        .state
        .store
        .intervals(yunwei_server::ingest::KIND_PROBE, &subject, 0, i64::MAX)
        .await
        .unwrap();
    let down: Vec<_> = spans.iter().filter(|s| s.state == State::Down).collect();
    assert_eq!(down.len(), 2, "{spans:?}");
    assert!(
        down[0].start >= win_from && down[0].end <= win_to,
        "{spans:?}"
    );
    let outside_ms = down[1].end - down[1].start;
    let row = yunwei_server::store::notify::ExclusionRow {
        id: "weekly-patch".into(),
        kind: "maintenance".into(),
        matchers: vec!["hostname=\"portal-01\"".into()],
        from_ms: now_ms() - 7 * 86_400_000,
        to_ms: now_ms() + 300 * 86_400_000,
        recurrence: Some(
            serde_json::json!({"times": shanghai_times(win_from, win_to), "location": "+08:00"})
                .to_string(),
        ),
        reason: "每日补丁窗口".into(),
        requested_by: "vendor-op".into(),
        requested_ms: now_ms() - 7 * 86_400_000,
        status: "approved".into(),
        reviewed_by: Some("office".into()),
        reviewed_ms: Some(now_ms() - 6 * 86_400_000),
        review_comment: None,
    };
    h.state.store.insert_exclusion(&row, None).await.unwrap();

    let a = assess_scenario(&h, start_ms).await;
    let sys = &a["systems"][0];
    let downtime = sys["downtime_minutes"].as_f64().unwrap();
    assert!(
        (downtime - outside_ms as f64 / 60_000.0).abs() < 0.01,
        "only the outage outside the window counts: {downtime} min vs {outside_ms} ms: {a}"
    );
    assert!(sys["excluded_minutes"].as_f64().unwrap() > 4.9, "{a}");
    // The occurrences in the period are cited with the stored row and their start.
    let uses = a["exclusions"].to_string();
    assert!(
        uses.contains(&format!("exclusion:weekly-patch@{win_from}")),
        "{uses}"
    );
    h.stop().await;
}
