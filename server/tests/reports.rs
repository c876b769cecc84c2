//! Report generation and the signed archive on SQLite and PostgreSQL: generated through the
//! CLI code path and the API from what ingest stored, the files verify (and a changed figure
//! does not), regenerating makes version 2 while version 1 stays downloadable unchanged, and
//! the same store gives the same report twice.

mod common;

use std::{collections::BTreeMap, path::PathBuf};

use common::Harness;
use yunwei_proto::Sample;
use yunwei_reports::{Lang, integrity::canonical_json};
use yunwei_server::{
    config::Overrides,
    report_keys,
    reports::{self, CliGenerate, ReportFormat, Request},
};
use yunwei_tests::{Enrolled, batch, now_ms};

yunwei_tests::both_backends!(
    generate_verify_archive_and_regenerate,
    scheduled_reports_are_made_once_when_a_period_closes,
    demo_history_gives_a_clearly_labelled_month,
);

const CONTRACT: &str = r#"id: test-contract
name: 测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 }, probes: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
  resources:
    - { id: cpu-p95, name: CPU 使用率 P95 低于 90%, metric: cpu_usage_ratio, aggregate: p95_hourly_mean, below: 0.9 }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

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

/// Yesterday and today in Asia/Shanghai as a custom period, so that the last 20 minutes are
/// always inside it (also just after local midnight).
fn today_period(t_ms: i64) -> String {
    let d = chrono::DateTime::from_timestamp_millis(t_ms + 8 * 3_600_000)
        .unwrap()
        .date_naive();
    let y = d.pred_opt().unwrap();
    format!("{y}..{d}")
}

fn font_available() -> bool {
    std::path::Path::new(reports::DEFAULT_FONT).exists()
}

async fn generate_verify_archive_and_regenerate(backend: &str) {
    let cdir = tempfile::tempdir().unwrap();
    let contract_path = cdir.path().join("contract.yml");
    std::fs::write(&contract_path, CONTRACT).unwrap();
    let cp = contract_path.clone();
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![cp];
        c.contracts.run_inspections = false;
    })
    .await
    else {
        return;
    };
    let e = h.client.enroll("portal-01").await.unwrap();
    // 20 minutes of probes every 15 s, down for 5 minutes in the middle. Keep inside today
    // (Shanghai) so that the one-day period holds all of it.
    let start_ms = now_ms() - 20 * 60_000;
    for i in 0..80u64 {
        let t = start_ms + i as i64 * 15_000;
        if t > now_ms() {
            break;
        }
        push_probe(&h, &e, i + 1, t, !(30..50).contains(&i)).await;
    }
    let now = now_ms();
    let period = today_period(now);

    // 1. The CLI code path, against the running server's store.
    let out = tempfile::tempdir().unwrap();
    let mut formats = vec![ReportFormat::Html, ReportFormat::Xlsx, ReportFormat::Json];
    if font_available() {
        formats.push(ReportFormat::Pdf);
    } else if yunwei_tests::ci() {
        panic!("CI: the font {} is missing", reports::DEFAULT_FONT);
    } else {
        eprintln!("SKIP pdf: {} missing", reports::DEFAULT_FONT);
    }
    formats.sort();
    let args = CliGenerate {
        config: None,
        overrides: Overrides {
            listen: None,
            data_dir: Some(h.dir.path().to_path_buf()),
            database_url: Some(h.state.config.database_url.clone()),
        },
        contract_files: vec![contract_path.clone()],
        contract: "test-contract".into(),
        request: Request {
            period: period.clone(),
            formats: formats.clone(),
            lang: Lang::ZhCn,
            font: None,
            origin: "cli".into(),
            notes: vec![],
            compute_limit: None,
        },
        out: out.path().to_path_buf(),
    };
    let (v1, paths) = reports::run_cli(&args, now).await.unwrap();
    assert_eq!(v1.version, 1);
    assert!(h.dir.path().join(report_keys::SECRET_KEY_FILE).exists());
    // Every format, and the evidence file they name.
    assert_eq!(paths.len(), formats.len() + 1);
    let key = report_keys::load_public(&report_keys::public_key_path(h.dir.path())).unwrap();
    let mut json_path = PathBuf::new();
    for p in &paths {
        if p.to_string_lossy().ends_with(".evidence.json.gz") {
            continue;
        }
        let bytes = std::fs::read(p).unwrap();
        // The PDF's embedded data only: comparing its pages is `report verify`'s test.
        let allow = yunwei_reports::VerifyOptions {
            allow_uncompared_pages: true,
            ..Default::default()
        };
        let v = yunwei_reports::verify_with(&bytes, &key, &allow)
            .unwrap_or_else(|e| panic!("{} does not verify: {e}", p.display()));
        assert_eq!(v.report.cover.version, 1);
        assert_eq!(v.report.summary.score.0, v1.score_milli);
        if p.extension().unwrap() == "json" {
            json_path = p.clone();
        }
    }
    // The report shows the outage ingest stored: below 100 %, and the evidence appendix
    // names the interval rows it cites.
    let json = std::fs::read(&json_path).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
    // Real data only: nothing says simulated.
    assert!(!text_of(&json).contains("SIMULATED"));
    let portal = &doc["report"]["availability"][0];
    assert_eq!(portal["system_id"], "portal");
    let down = portal["downtime_minutes"].as_f64().unwrap();
    assert!((4.0..=6.0).contains(&down), "downtime {down}");
    let cited = portal["evidence"].as_array().unwrap();
    assert!(!cited.is_empty());
    let listed: Vec<&str> = doc["report"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    for id in cited {
        assert!(listed.contains(&id.as_str().unwrap()), "{id} not listed");
    }
    // A changed figure is rejected.
    let text = String::from_utf8(json.clone()).unwrap();
    let score = doc["report"]["summary"]["score"].to_string();
    let forged = text.replacen(&format!("\"score\":{score}"), "\"score\":100.5", 1);
    assert_ne!(forged, text, "the score must be in the file");
    assert!(yunwei_reports::verify(forged.as_bytes(), &key).is_err());

    // 2. The API: regenerating makes version 2; version 1 is kept unchanged.
    let http = h.client.http.clone();
    let base = h.client.base.clone();
    let token = h.client.api_token.clone().unwrap();
    let resp = http
        .post(format!("{base}/api/v1/reports"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "contract": "test-contract", "period": period, "formats": ["json", "html"], "lang": "en"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v2: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["lang"], "en");
    let bad = http
        .post(format!("{base}/api/v1/reports"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"contract": "test-contract", "period": "2026-13"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["field"], "period", "{bad}");

    let list = h.client.get_json("/api/v1/reports").await.unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["version"], 2);
    let v1_formats: Vec<&str> = list[1]["formats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = formats.iter().map(|f| f.name()).collect();
    want.sort();
    assert_eq!(v1_formats, want);

    let resp = http
        .get(format!("{base}/api/v1/reports/{}/json", v1.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let cd = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cd.contains(&format!("test-contract-{period}-v1.json")),
        "{cd}"
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), json.as_slice());
    let resp = http
        .get(format!("{base}/api/v1/reports/{}/xlsx", v1.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let v2_id = v2["id"].as_i64().unwrap();
    let v2_json = http
        .get(format!("{base}/api/v1/reports/{v2_id}/json"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let checked = yunwei_reports::verify(&v2_json, &key).unwrap();
    assert_eq!(checked.report.cover.version, 2);
    assert_eq!(checked.report.cover.lang, Lang::En);
    let missing = http
        .get(format!("{base}/api/v1/reports/{v2_id}/pdf"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // 3. The same store, request and clock give the same report.
    let c = h.state.contracts.list()[0].clone();
    let req = Request {
        period: period.clone(),
        formats: vec![ReportFormat::Json],
        lang: Lang::ZhCn,
        font: None,
        origin: "test".into(),
        notes: vec![],
        compute_limit: None,
    };
    let a = reports::prepare(&h.state.store, &c, &req, 3, now, false)
        .await
        .unwrap();
    let b = reports::prepare(&h.state.store, &c, &req, 3, now, false)
        .await
        .unwrap();
    assert_eq!(canonical_json(&a), canonical_json(&b));
    // The report carries the audit chain's head at generation.
    let (seq, hash) = h.state.store.audit_head().await.unwrap().unwrap();
    let head = a.evidence.iter().find(|e| e.kind == "audit_head").unwrap();
    assert_eq!(head.id, format!("audit:head:{seq}"));
    assert!(head.summary.contains(&hash), "{head:?}");
    // ... and the archived version 1 has the same figures; only the audit head moved (the API
    // calls since then were audited), and with it and the version the evidence file each names.
    let mut a1 = a.clone();
    a1.cover.version = 1;
    let signed_v1: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let without_head = |mut v: serde_json::Value| {
        let list = v["evidence"].as_array_mut().unwrap();
        let before = list.len();
        list.retain(|e| e["kind"] != "audit_head");
        assert_eq!(list.len(), before - 1, "one audit head");
        let named = v.as_object_mut().unwrap().remove("evidence_file");
        assert!(named.is_some(), "the report names its evidence file");
        v
    };
    assert_eq!(
        canonical_json(&without_head(serde_json::to_value(&a1).unwrap())),
        canonical_json(&without_head(signed_v1["report"].clone())),
    );
    h.stop().await;
}

/// Asia/Shanghai local time as UTC ms.
fn shanghai(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|d| d.and_hms_opt(h, min, 0))
        .unwrap()
        .and_utc()
        .timestamp_millis()
        - 8 * 3_600_000
}

async fn scheduled_reports_are_made_once_when_a_period_closes(backend: &str) {
    let cdir = tempfile::tempdir().unwrap();
    let contract_path = cdir.path().join("contract.yml");
    std::fs::write(
        &contract_path,
        CONTRACT.replace(
            "objectives:\n",
            "objectives:\n  report_due_working_day: 5\n",
        ),
    )
    .unwrap();
    let cp = contract_path.clone();
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![cp];
        c.contracts.run_inspections = false;
        // The test drives the schedule with its own clock (the server's own loop, on the real
        // clock, would make last month's report during the first week of a month).
        c.contracts.scheduled_reports = false;
    })
    .await
    else {
        return;
    };
    assert!(
        h.state.contracts.list()[0]
            .contract
            .report_due_working_day
            .is_some()
    );
    // Monitoring began in January 2026 (a day of labelled simulated history): periods that
    // closed before the first evidence get no scheduled report (`honest_reports.rs`).
    yunwei_server::demo::seed(
        &h.state.store,
        &yunwei_server::demo::DemoSpec {
            systems: vec![("政务服务网".into(), 1, 1)],
            from_ms: shanghai(2026, 1, 20, 0, 0),
            to_ms: shanghai(2026, 1, 21, 0, 0),
        },
    )
    .await
    .unwrap();
    // March 1st, 01:59 local: February is closed but its report is not due before 02:00.
    let early = reports::run_due_reports(&h.state.reports, shanghai(2026, 3, 1, 1, 59))
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    let made = reports::run_due_reports(&h.state.reports, shanghai(2026, 3, 1, 2, 5))
        .await
        .unwrap();
    let periods: Vec<&str> = made.iter().map(|a| a.period.as_str()).collect();
    assert_eq!(periods, ["2026-02"]);
    assert_eq!(made[0].origin, "schedule");
    assert_eq!(made[0].version, 1);
    // Later ticks (and a restarted server) do not make it again.
    let again = reports::run_due_reports(&h.state.reports, shanghai(2026, 3, 2, 9, 0))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    // April 1st closes March and the first quarter; January 1st closes December, Q4 and the year.
    let april = reports::run_due_reports(&h.state.reports, shanghai(2026, 4, 1, 2, 0))
        .await
        .unwrap();
    let periods: Vec<&str> = april.iter().map(|a| a.period.as_str()).collect();
    assert_eq!(periods, ["2026-03", "2026-Q1"]);
    let jan = reports::run_due_reports(&h.state.reports, shanghai(2027, 1, 1, 3, 0))
        .await
        .unwrap();
    let periods: Vec<&str> = jan.iter().map(|a| a.period.as_str()).collect();
    assert_eq!(periods, ["2026-12", "2026-Q4", "2026"]);
    let list = reports::list(&h.state.store, Some("test-contract"))
        .await
        .unwrap();
    assert_eq!(list.len(), 6);
    // December's trend shows the months archived before it (not the quarter).
    let dec = jan.iter().find(|a| a.period == "2026-12").unwrap();
    let env = reports::envelope(&h.state.store, dec.id)
        .await
        .unwrap()
        .unwrap();
    let env: serde_json::Value = serde_json::from_slice(&env).unwrap();
    let trend: Vec<&str> = env["report"]["summary"]["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["period"].as_str().unwrap())
        .collect();
    assert_eq!(trend, ["2026-02", "2026-03", "2026-12"]);
    h.stop().await;
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn demo_history_gives_a_clearly_labelled_month(backend: &str) {
    let cdir = tempfile::tempdir().unwrap();
    let contract_path = cdir.path().join("contract.yml");
    std::fs::write(&contract_path, CONTRACT).unwrap();
    let cp = contract_path.clone();
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![cp];
        c.contracts.run_inspections = false;
    })
    .await
    else {
        return;
    };
    // History from 2026-09-30 until 2026-11-02: October is complete in Shanghai.
    let from = shanghai(2026, 9, 30, 8, 0);
    let to = shanghai(2026, 11, 2, 8, 0);
    let spec = yunwei_server::demo::DemoSpec {
        systems: vec![("政务服务网".into(), 2, 2)],
        from_ms: from,
        to_ms: to,
    };
    let seeded = yunwei_server::demo::seed(&h.state.store, &spec)
        .await
        .unwrap();
    assert_eq!((seeded.hosts, seeded.probes), (2, 4));
    // Seeding twice adds nothing.
    let again = yunwei_server::demo::seed(&h.state.store, &spec)
        .await
        .unwrap();
    assert!(again.already_seeded);
    let (s, e) = yunwei_server::demo::outage(0, from - from.rem_euclid(3_600_000), to).unwrap();
    assert!(s >= shanghai(2026, 10, 1, 0, 0) && e <= shanghai(2026, 11, 1, 0, 0));

    let c = h.state.contracts.list()[0].clone();
    let req = Request {
        period: "2026-10".into(),
        formats: vec![ReportFormat::Json, ReportFormat::Html],
        lang: Lang::ZhCn,
        font: None,
        origin: "test".into(),
        notes: vec![],
        compute_limit: None,
    };
    let g = reports::generate(&h.state.store, h.dir.path(), &c, &req, to, false, true)
        .await
        .unwrap();
    let r = &g.signed.report;
    assert!(
        r.cover.contract_name.contains("SIMULATED"),
        "{}",
        r.cover.contract_name
    );
    assert!(
        r.evidence
            .iter()
            .any(|e| e.kind == "note" && e.summary.contains("模拟数据"))
    );
    let portal = &r.availability[0];
    // The one simulated outage (15 minutes on the first probe) is the downtime.
    assert_eq!(portal.downtime_minutes, yunwei_reports::Fixed::int(15));
    assert_eq!(
        portal.actual_pct.unwrap(),
        yunwei_reports::Fixed::from_f64((44_640.0 - 15.0) / 44_640.0 * 100.0)
    );
    assert!(!r.resources.hosts.is_empty());
    assert!(r.resources.hosts.iter().all(|x| x.cpu_p95_pct.is_some()));
    let html = &g
        .files
        .iter()
        .find(|(f, _)| *f == ReportFormat::Html)
        .unwrap()
        .1;
    assert!(text_of(html).contains("SIMULATED"));
    h.stop().await;
}
