//! Scheduled reports say what their figures rest on (issue 21), on SQLite and PostgreSQL:
//! a fresh install makes no report for a month it never saw, and its first month — barely
//! watched — is not graded; an incident still open when its month's report is made keeps that
//! report provisional, and the schedule issues it again, with the exact late minutes, when the
//! incident is restored. The schedule runs at chosen instants (`scheduled_reports: false`).

mod common;

use common::Harness;
use yunwei_reports::{Fixed, model::Grade};
use yunwei_server::reports;
use yunwei_tests::{batch, now_ms};

yunwei_tests::both_backends!(
    a_fresh_install_reports_no_month_it_never_saw,
    an_incident_open_at_month_end_is_reissued_with_its_late_restore,
);

/// Asia/Shanghai local time as UTC ms.
fn shanghai(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|d| d.and_hms_opt(h, min, 0))
        .unwrap()
        .and_utc()
        .timestamp_millis()
        - 8 * 3_600_000
}

/// The first day of the Shanghai month holding `t_ms`, and of the month after it.
fn month_of(t_ms: i64) -> ((i32, u32), (i32, u32)) {
    use chrono::Datelike;
    let d = chrono::DateTime::from_timestamp_millis(t_ms + 8 * 3_600_000)
        .unwrap()
        .date_naive();
    let next = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    ((d.year(), d.month()), next)
}

async fn report_json(h: &Harness, id: i64) -> serde_json::Value {
    let env = reports::envelope(&h.state.store, id)
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&env).unwrap();
    v["report"].clone()
}

async fn a_fresh_install_reports_no_month_it_never_saw(backend: &str) {
    // The quickstart installs the example contract; its `portal` system selects the quickstart
    // agent's `system` label (here the harness agent's). The contract runs 2020–2099 so the
    // test does not depend on today's date.
    let text = yunwei_sla::contract::EXAMPLE_CONTRACT
        .replace("{ system: quickstart }", "{ system: 政务服务网 }")
        .replace(
            "period: { start: 2026-01-01, end: 2026-12-31 }",
            "period: { start: 2020-01-01, end: 2099-12-31 }",
        );
    let cdir = tempfile::tempdir().unwrap();
    let path = cdir.path().join("contract.yml");
    std::fs::write(&path, text).unwrap();
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
        c.contracts.scheduled_reports = false;
    })
    .await
    else {
        return;
    };
    // The first agent reports now: monitoring begins.
    let e = h.client.enroll("portal-01").await.unwrap();
    let t0 = now_ms();
    h.ok(&e, &batch(&e, "portal-01", 1, t0, 0)).await;
    let ((y, m), (ny, nm)) = month_of(t0);

    // The schedule's first run on the server's first day: last month closed before monitoring
    // began, so no report is made for it (before the change: score 100, 优秀, 100 % payable on
    // 0 % data). Run at 02:05 on the 1st of this month, when last month's report is due.
    let made = reports::run_due_reports(&h.state.reports, shanghai(y, m, 1, 2, 5))
        .await
        .unwrap();
    assert!(made.is_empty(), "{made:?}");
    assert!(
        reports::list(&h.state.store, None)
            .await
            .unwrap()
            .is_empty()
    );

    // This month, the first one monitored, is reported when it closes; it saw one batch, far
    // below the example's 80 % coverage minimum: the portal is "insufficient evidence" and
    // the grade is withheld (example: `scoring.insufficient_evidence: withhold_grade`).
    let made = reports::run_due_reports(&h.state.reports, shanghai(ny, nm, 1, 2, 5))
        .await
        .unwrap();
    // (A quarter or year closing with the month is reported too: it holds the first evidence.)
    let month = format!("{y}-{m:02}");
    assert!(made.iter().all(|a| a.end_ms > t0), "{made:?}");
    let first = made
        .iter()
        .find(|a| a.period == month)
        .expect("this month's report");
    assert_eq!(first.grade, "withheld");
    let r = report_json(&h, first.id).await;
    assert_eq!(r["summary"]["grade"], "withheld");
    assert_eq!(r["summary"]["payment"]["pending"], true);
    let portal = &r["availability"][0];
    assert_eq!(portal["system_id"], "portal");
    assert_eq!(portal["insufficient_evidence"], true, "{portal}");
    assert!(portal["actual_pct"].is_null());
    assert_eq!(portal["met"], false);
    // The notes say why, in the report's language (zh-CN by default).
    let notes: Vec<&str> = r["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "note")
        .map(|e| e["summary"].as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("政务服务门户（portal）") && n.contains("数据不足，不予评定")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("本期等级不予评定")),
        "{notes:?}"
    );
    // The HTML says so too, and never 优秀.
    let html = reports::file(&h.state.store, first.id, reports::ReportFormat::Html)
        .await
        .unwrap()
        .unwrap();
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("不予评定"));
    assert!(html.contains("数据不足"));
    assert!(!html.contains("优秀"));
    h.stop().await;
}

const CONTRACT: &str = r#"id: open-incidents
name: 跨月故障合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 }, probes: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.0, min_outage: 1m, missing_data: excluded }
  incidents:
    - { id: P1, aliases: [一级], response: 15m, restore: 4h }
  report_due_working_day: 5
scoring:
  base: 100
  deductions:
    - { id: restore, name: 故障恢复超时, name_en: Restore overdue, kind: restore_late, per_minutes: 60, points: 1, cap: 40 }
grades:
  - { id: excellent, name: 优秀, name_en: Excellent, min_score: 90 }
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
report:
  to: [kaohe@example.org]
  formats: [json, html]
  language: both
"#;

async fn an_incident_open_at_month_end_is_reissued_with_its_late_restore(backend: &str) {
    let cdir = tempfile::tempdir().unwrap();
    let path = cdir.path().join("contract.yml");
    std::fs::write(&path, CONTRACT).unwrap();
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
        c.contracts.scheduled_reports = false;
    })
    .await
    else {
        return;
    };
    // Status evidence for February 2026 (labelled simulated history: the harness cannot push
    // batches from a past month).
    let spec = yunwei_server::demo::DemoSpec {
        systems: vec![("政务服务网".into(), 1, 1)],
        from_ms: shanghai(2026, 1, 31, 0, 0),
        to_ms: shanghai(2026, 3, 2, 0, 0),
    };
    yunwei_server::demo::seed(&h.state.store, &spec)
        .await
        .unwrap();
    // 一级 detected 02-27 22:00, acknowledged at 22:05; restored only on 03-01 at 10:00 —
    // 36 h after detection, 32 h = 1,920 min past its 4 h target, all of it after the
    // month's report was made on 03-01 at 02:05.
    let detected = shanghai(2026, 2, 27, 22, 0);
    let store = &h.state.store;
    store
        .insert_incident(
            &yunwei_server::store::incidents::IncidentRow {
                id: "inc-open".into(),
                group_id: None,
                title: "门户中断".into(),
                level: 1,
                source: "manual".into(),
                labels: [("system".to_string(), "政务服务网".to_string())].into(),
                detected_ms: detected,
                notified_ms: None,
                acknowledged_ms: None,
                acknowledged_by: None,
                onsite_ms: None,
                restored_ms: None,
                rca: None,
                created_by: "ops".into(),
                updated_ms: detected,
            },
            false,
            None,
        )
        .await
        .unwrap();
    use yunwei_server::store::incidents::Clock;
    let ack = detected + 5 * 60_000;
    assert!(
        store
            .stamp_incident(
                "inc-open",
                Clock::Acknowledged,
                ack,
                "ops",
                ack,
                false,
                None
            )
            .await
            .unwrap()
    );

    // 03-01 02:05: February's reports (zh-CN and English; versions count per period) are made
    // while the incident is open.
    let made = reports::run_due_reports(&h.state.reports, shanghai(2026, 3, 1, 2, 5))
        .await
        .unwrap();
    let got: Vec<(&str, i64, &str)> = made
        .iter()
        .map(|a| (a.period.as_str(), a.version, a.lang.as_str()))
        .collect();
    assert_eq!(got, [("2026-02", 1, "zh-CN"), ("2026-02", 2, "en")]);
    for a in &made {
        assert!(a.provisional, "open incident: provisional");
        let r = report_json(&h, a.id).await;
        let inc = &r["incidents"][0];
        assert_eq!(inc["id"], "incident:inc-open");
        assert!(inc["restored_ms"].is_null());
        let note = r["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "note")
            .map(|e| e["summary"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let want = if a.lang == "en" {
            "Incidents incident:inc-open are still open"
        } else {
            "故障 incident:inc-open 尚未恢复"
        };
        assert!(note.contains(want), "{note}");
    }
    // Still open later that night: nothing new.
    let again = reports::run_due_reports(&h.state.reports, shanghai(2026, 3, 1, 9, 0))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");

    // Restored at 10:00; the next run issues February again (versions 3 and 4), final, with the
    // restore 2,160 min against 240 and the deduction for 1,920 min late (32 started hours).
    let restored = shanghai(2026, 3, 1, 10, 0);
    assert!(
        store
            .stamp_incident(
                "inc-open",
                Clock::Restored,
                restored,
                "ops",
                restored,
                false,
                None
            )
            .await
            .unwrap()
    );
    let reissued = reports::run_due_reports(&h.state.reports, restored + 5 * 60_000)
        .await
        .unwrap();
    let got: Vec<(&str, i64, &str, &str)> = reissued
        .iter()
        .map(|a| {
            (
                a.period.as_str(),
                a.version,
                a.lang.as_str(),
                a.origin.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2026-02", 3, "en", "schedule"),
            ("2026-02", 4, "zh-CN", "schedule")
        ]
    );
    for a in &reissued {
        assert!(!a.provisional);
        let r = report_json(&h, a.id).await;
        let inc = &r["incidents"][0];
        assert_eq!(inc["restored_ms"], restored);
        assert_eq!(inc["restore"]["target_minutes"], 240);
        assert_eq!(inc["restore"]["actual_minutes"], 2160);
        assert_eq!(inc["restore"]["met"], false);
        let adj = r["adjustments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["item"] == "restore")
            .unwrap();
        assert_eq!(adj["points"], 32);
        let want = if a.lang == "en" {
            "restore 1920.0 min late (late) = 32 × 60 min × 1 points"
        } else {
            "恢复超时 1920.0 分钟（已超时）= 32 × 每 60 分钟 × 1 分"
        };
        assert!(adj["arithmetic"].as_str().unwrap().contains(want), "{adj}");
        assert_eq!(
            r["summary"]["score"],
            serde_json::to_value(Fixed::int(68)).unwrap()
        );
        assert_eq!(
            r["summary"]["grade"],
            serde_json::to_value(Grade::Pass).unwrap()
        );
        // Each new version is queued for mail like the first.
        let listed = reports::get(&h.state.store, a.id).await.unwrap().unwrap();
        assert!(listed.delivery.is_some(), "{listed:?}");
    }
    // Nothing more to do.
    let after = reports::run_due_reports(&h.state.reports, restored + 10 * 60_000)
        .await
        .unwrap();
    assert!(after.is_empty(), "{after:?}");
    h.stop().await;
}
