//! Scheduled reports by email, on SQLite and PostgreSQL, to a real SMTP server on loopback
//! (`tests/helpers/smtp_sink.py`, Debian's aiosmtpd): when a period closes the report is
//! archived and mailed to the contract's `to` and `cc` with every archived file attached byte
//! for byte (the JSON one verifies); a re-run or a restarted server sends nothing twice; with
//! no SMTP configured the mail waits, with SMTP down each attempt is recorded and the mail is
//! delivered after restarts once the server is back.

mod common;

use base64::Engine as _;
use common::Harness;
use serde_json::Value;
use yunwei_server::{
    notify::config::{Smtp, SmtpTls},
    report_keys, report_mail,
    reports::{self, ReportFormat},
};
use yunwei_tests::{SmtpSink, free_addr};

yunwei_tests::both_backends!(
    scheduled_report_arrives_by_mail_with_its_files_once,
    report_mail_waits_for_smtp_and_is_retried_across_restarts,
);

const CONTRACT: &str = r#"id: test-contract
name: 测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 }, probes: { system: 政务服务网 } }
objectives:
  report_due_working_day: 5
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

/// Asia/Shanghai local time as UTC ms.
fn shanghai(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|d| d.and_hms_opt(h, min, 0))
        .unwrap()
        .and_utc()
        .timestamp_millis()
        - 8 * 3_600_000
}

fn smtp(port: u16) -> Smtp {
    Smtp {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "yunwei <reports@example.org>".into(),
        timeout_secs: 5,
        insecure: false,
    }
}

/// Writes the contract with `report` appended; returns its folder (kept alive) and path.
fn contract_file(report: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, format!("{CONTRACT}{report}")).unwrap();
    (dir, path)
}

/// A month of labelled simulated history for the contract's system (February 2026).
/// Runs the schedule and the mailer at `t` and asserts neither had anything left to do.
async fn nothing_due(h: &Harness, t: i64) {
    assert!(
        reports::run_due_reports(&h.state.reports, t)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        report_mail::deliver_due(&h.state.reports, t)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn seed_february(h: &Harness) {
    let spec = yunwei_server::demo::DemoSpec {
        systems: vec![("政务服务网".into(), 1, 1)],
        from_ms: shanghai(2026, 1, 31, 20, 0),
        to_ms: shanghai(2026, 3, 1, 1, 0),
    };
    yunwei_server::demo::seed(&h.state.store, &spec)
        .await
        .unwrap();
}

fn mime(f: ReportFormat) -> &'static str {
    match f {
        ReportFormat::Html => "text/html",
        ReportFormat::Pdf => "application/pdf",
        ReportFormat::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ReportFormat::Json => "application/json",
    }
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// Checks that `mail` carries every archived file of `report` byte for byte with its MIME
/// type and file name, and that the JSON one verifies with the server's key.
async fn assert_attachments(h: &Harness, mail: &Value, report: &reports::ArchivedReport) {
    let atts = mail["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), report.formats.len(), "{mail:#}");
    let key = report_keys::load_public(&report_keys::public_key_path(h.dir.path())).unwrap();
    for name in &report.formats {
        let f = ReportFormat::parse(name).unwrap();
        let file_name = reports::file_name(report, f);
        let att = atts
            .iter()
            .find(|a| a["filename"] == file_name.as_str())
            .unwrap_or_else(|| panic!("no attachment {file_name}: {mail:#}"));
        assert_eq!(att["content_type"], mime(f), "{file_name}");
        let got = base64::engine::general_purpose::STANDARD
            .decode(att["data_base64"].as_str().unwrap())
            .unwrap();
        let archived = reports::file(&h.state.store, report.id, f)
            .await
            .unwrap()
            .unwrap();
        assert!(
            got == archived,
            "{file_name} differs from the archived file"
        );
        if f == ReportFormat::Json {
            let v = yunwei_reports::verify(&got, &key)
                .unwrap_or_else(|e| panic!("the mailed {file_name} does not verify: {e}"));
            assert_eq!(v.sha256, report.sha256);
        }
    }
}

async fn listing(h: &Harness) -> Vec<Value> {
    h.client
        .get_json("/api/v1/reports?contract=test-contract")
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn scheduled_report_arrives_by_mail_with_its_files_once(backend: &str) {
    let work = tempfile::tempdir().unwrap();
    let port = free_addr().port();
    let Some(sink) = SmtpSink::start(port, &work.path().join("mail")) else {
        return;
    };
    let (_cdir, cp) = contract_file(
        "report:\n  to: [kaohe@example.org, lingdao@example.org]\n  cc: [xiangmu@example.com]\n",
    );
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![cp];
        c.contracts.run_inspections = false;
        // The test drives the schedule with its own clock.
        c.contracts.scheduled_reports = false;
        c.notify.smtp = Some(smtp(port));
    })
    .await
    else {
        return;
    };
    seed_february(&h).await;
    if !std::path::Path::new(reports::DEFAULT_FONT).exists() {
        assert!(
            !yunwei_tests::ci(),
            "CI: the font {} is missing",
            reports::DEFAULT_FONT
        );
        eprintln!("SKIP pdf: {} missing", reports::DEFAULT_FONT);
    }

    // March 1st 02:05 Shanghai: February's report is made and its mail queued.
    let now = shanghai(2026, 3, 1, 2, 5);
    let made = reports::run_due_reports(&h.state.reports, now)
        .await
        .unwrap();
    assert_eq!(made.len(), 1, "{made:?}");
    let report = &made[0];
    assert_eq!(report.period, "2026-02");
    assert!(sink.mails().is_empty());
    let sent = report_mail::deliver_due(&h.state.reports, now)
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].attempt.ok, "{:?}", sent[0].attempt);

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(
        sorted(&m["rcpt_tos"]),
        [
            "kaohe@example.org",
            "lingdao@example.org",
            "xiangmu@example.com"
        ]
    );
    let to = m["to"].as_str().unwrap();
    assert!(
        to.contains("kaohe@example.org") && to.contains("lingdao@example.org"),
        "{to}"
    );
    assert_eq!(m["cc"], "xiangmu@example.com");
    assert_eq!(m["mail_from"], "reports@example.org");
    let subject = m["subject"].as_str().unwrap();
    assert!(subject.starts_with("【绩效考核报告】测试合同"), "{subject}");
    assert!(
        subject.ends_with(" 2026-02 / Performance assessment report"),
        "{subject}"
    );
    let text = m["text"].as_str().unwrap();
    for want in [
        "考核期间：2026-02-01 至 2026-02-28",
        &format!("得分：{}", yunwei_reports::Fixed(report.score_milli)),
        report.sha256.as_str(),
        "yunwei-server report verify --public-key report-signing.pub",
        "等级：合格",
        "Grade: Pass",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let mut want_formats = vec!["html", "pdf", "xlsx", "json"];
    if !std::path::Path::new(reports::DEFAULT_FONT).exists() {
        want_formats.retain(|f| *f != "pdf");
    }
    assert_eq!(report.formats, want_formats);
    assert_attachments(&h, m, report).await;

    // The listing shows the delivery with its attempt.
    let list = listing(&h).await;
    let d = &list[0]["delivery"];
    assert_eq!(d["status"], "sent", "{d:#}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d:#}");
    assert_eq!(d["attempts"][0]["ok"], true);
    assert_eq!(d["attempts"][0]["code"], 250);
    assert_eq!(d["cc"][0], "xiangmu@example.com");

    // Later ticks send nothing again, nor does a restarted server.
    let later = shanghai(2026, 3, 1, 3, 0);
    nothing_due(&h, later).await;
    let h = h.restart(|_| {}).await;
    let later = shanghai(2026, 3, 2, 9, 0);
    nothing_due(&h, later).await;
    assert_eq!(sink.mails().len(), 1);
    h.stop().await;
}

async fn report_mail_waits_for_smtp_and_is_retried_across_restarts(backend: &str) {
    let work = tempfile::tempdir().unwrap();
    let port = free_addr().port();
    let (_cdir, cp) = contract_file(
        "report:\n  to: [kaohe@example.org]\n  cc: [xiangmu@example.com]\n  \
         formats: [json, html]\n  language: both\n",
    );
    // 1. No SMTP configured: the reports are archived, their mail waits and says why.
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![cp];
        c.contracts.run_inspections = false;
        c.contracts.scheduled_reports = false;
    })
    .await
    else {
        return;
    };
    seed_february(&h).await;
    let now = shanghai(2026, 3, 1, 2, 5);
    let made = reports::run_due_reports(&h.state.reports, now)
        .await
        .unwrap();
    let langs: Vec<&str> = made.iter().map(|a| a.lang.as_str()).collect();
    assert_eq!(langs, ["zh-CN", "en"]);
    for a in &made {
        assert_eq!(a.formats, ["html", "json"]);
    }
    assert!(
        report_mail::deliver_due(&h.state.reports, now)
            .await
            .unwrap()
            .is_empty()
    );
    for r in listing(&h).await {
        let d = &r["delivery"];
        assert_eq!(d["status"], "pending", "{d:#}");
        assert_eq!(d["last_error"], report_mail::NO_SMTP);
        assert!(d["attempts"].as_array().unwrap().is_empty());
    }

    // 2. Restarted with SMTP configured but the SMTP server down: each attempt is recorded.
    let h = h.restart(move |c| c.notify.smtp = Some(smtp(port))).await;
    let failed = report_mail::deliver_due(&h.state.reports, now)
        .await
        .unwrap();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|s| !s.attempt.ok), "{failed:?}");
    let attempts = |result: &str| {
        h.state
            .metrics
            .report_mail_attempts
            .with_label_values(&[result])
            .get()
    };
    assert_eq!((attempts("ok"), attempts("error")), (0, 2));
    assert_eq!(h.state.metrics.report_mail_given_up.get(), 0);
    // Backing off: not again at once.
    assert!(
        report_mail::deliver_due(&h.state.reports, now)
            .await
            .unwrap()
            .is_empty()
    );
    for r in listing(&h).await {
        let d = &r["delivery"];
        assert_eq!(d["status"], "pending", "{d:#}");
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d:#}");
        assert_eq!(d["attempts"][0]["ok"], false);
        assert!(
            d["attempts"][0]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
        );
        assert!(d["due_ms"].as_i64().unwrap() > now);
    }

    // 3. Another restart, the SMTP server is back: both mails are delivered, once.
    let h = h.restart(|_| {}).await;
    let Some(sink) = SmtpSink::start(port, &work.path().join("mail")) else {
        return;
    };
    let later = now + 10 * 60_000;
    let sent = report_mail::deliver_due(&h.state.reports, later)
        .await
        .unwrap();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|s| s.attempt.ok), "{sent:?}");
    // A restarted server counts from zero; /metrics shows the two accepted mails.
    let metrics = h.client.get_text("/metrics").await.unwrap();
    assert!(
        metrics.contains("yunwei_report_mail_attempts_total{result=\"ok\"} 2")
            && metrics.contains("yunwei_report_mail_attempts_total{result=\"error\"} 0"),
        "{metrics}"
    );
    let mails = sink.mails();
    assert_eq!(mails.len(), 2);
    let mut subjects: Vec<&str> = mails
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    assert!(
        subjects[0].starts_with("[Performance assessment report] "),
        "{subjects:?}"
    );
    assert!(subjects[1].starts_with("【绩效考核报告】"), "{subjects:?}");
    for m in &mails {
        assert_eq!(
            sorted(&m["rcpt_tos"]),
            ["kaohe@example.org", "xiangmu@example.com"]
        );
        let lang = if m["subject"].as_str().unwrap().starts_with('【') {
            "zh-CN"
        } else {
            "en"
        };
        let a = made.iter().find(|a| a.lang == lang).unwrap();
        assert_attachments(&h, m, a).await;
    }
    for r in listing(&h).await {
        let d = &r["delivery"];
        assert_eq!(d["status"], "sent", "{d:#}");
        let oks: Vec<&Value> = d["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["ok"])
            .collect();
        assert_eq!(oks, [&Value::Bool(false), &Value::Bool(true)], "{d:#}");
        assert_eq!(d["sent_ms"], later);
    }

    // 4. Nothing is sent twice, after a re-run or another restart.
    assert!(
        report_mail::deliver_due(&h.state.reports, later + 3_600_000)
            .await
            .unwrap()
            .is_empty()
    );
    let h = h.restart(|_| {}).await;
    let again = shanghai(2026, 3, 3, 9, 0);
    nothing_due(&h, again).await;
    assert_eq!(sink.mails().len(), 2);
    h.stop().await;
}
