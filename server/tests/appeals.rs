//! Appeals against a draft report and their review (issue 18), on SQLite and PostgreSQL,
//! through the API with operator, reviewer and admin tokens: a month with two deductions, the
//! draft archived; the operator appeals one within the window with an attachment (stored with
//! its SHA-256), a late appeal is refused naming the deadline, a reviewer who filed cannot
//! decide their own, a reviewer overturns it, and the next version's score rises by exactly
//! the overturned points and cites the decision; both parties sign off and the final version
//! (终稿) is made, verifies with the report key and is mailed. Each step mails the party that
//! must act next, to a real SMTP server on loopback (aiosmtpd). Every action has its audit row.

mod common;

use common::Harness;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use yunwei_server::notify::config::{Smtp, SmtpTls};
use yunwei_server::{
    appeals::{self, AppealError, NewAppeal},
    auth::Role,
    contracts,
    reports::{self, ReportFormat, Request},
};
use yunwei_sla::assess::AppealTarget;
use yunwei_tests::{SmtpSink, free_addr, now_ms};

yunwei_tests::both_backends!(
    an_overturned_appeal_gives_its_points_back,
    an_unanswered_draft_becomes_final_at_the_review_deadline,
);

const CONTRACT: &str = r#"id: lifecycle
name: 流程合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, probes: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_coverage_percent: 0 }
  report_due_working_day: 5
scoring:
  base: 100
  deductions:
    - { id: notice, name: 被主管部门通报, name_en: Reported by an authority, kind: manual, category: authority_notice, points: 5 }
    - { id: report-late, name: 报告逾期, name_en: Report late, kind: manual, category: report_late, points: 1 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
report:
  to: [kaohe@example.org]
  cc: [xiangmu@example.com]
  formats: [json, html]
lifecycle:
  appeal_window_working_days: 3
  review_working_days: 5
  sign_off: [operator, reviewer]
  mail:
    operator: [yunwei-op@example.com]
    reviewer: [kaohe-office@example.org]
"#;

async fn generate(h: &Harness, period: &str, now: i64) -> reports::Generated {
    let c = h.state.contracts.get("lifecycle").unwrap();
    reports::generate(
        &h.state.store,
        &h.state.config.data_dir,
        &c,
        &Request {
            period: period.into(),
            formats: vec![ReportFormat::Json],
            lang: yunwei_reports::Lang::ZhCn,
            font: None,
            origin: "api".into(),
            notes: Vec::new(),
            compute_limit: None,
        },
        now,
        false,
        false,
    )
    .await
    .unwrap()
}

async fn an_overturned_appeal_gives_its_points_back(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, CONTRACT).unwrap();
    let port = free_addr().port();
    let Some(sink) = SmtpSink::start(port, &dir.path().join("mail")) else {
        return;
    };
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
        // The test drives the mail loops with its own calls.
        c.contracts.scheduled_reports = false;
        c.notify.smtp = Some(Smtp {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "yunwei <reports@example.org>".into(),
            timeout_secs: 5,
            insecure: false,
        });
    })
    .await
    else {
        return;
    };
    let token = async |name: &str, role| {
        yunwei_server::auth::users::create_token(&h.state.store, name, role, &[], None, now_ms())
            .await
            .unwrap()
    };
    let (op, rev, rev2) = (
        token("vendor-op", Role::Operator).await,
        token("office", Role::Reviewer).await,
        token("office-2", Role::Reviewer).await,
    );
    let http = reqwest::Client::new();
    let call = async |who: &str, path: &str, body: Value| {
        let r = http
            .post(format!("{}{path}", h.client.base))
            .bearer_auth(who)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };

    // Two deductions this month: a 通报 (5 points) and a late report (1 point), recorded by the
    // office at the month's first instant (always in this month, always before now).
    let c = h.state.contracts.get("lifecycle").unwrap();
    let month = contracts::current_month(&c.contract, now_ms());
    let mut events = Vec::new();
    for (category, evidence) in [
        ("authority_notice", "市数据局通报〔2026〕3号"),
        ("report_late", "月报逾期 1 天"),
    ] {
        let (code, v) = call(
            &rev,
            "/api/v1/contracts/lifecycle/events",
            json!({"category": category, "evidence": evidence, "at_ms": month.start_ms}),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        events.push(v["data"]["id"].as_i64().unwrap());
    }

    // The draft (初稿): the period's first version, made through the API; the vendor is told.
    let admin = token("root", Role::Admin).await;
    let (code, v) = call(
        &admin,
        "/api/v1/reports",
        json!({"contract": "lifecycle", "period": month.label, "formats": ["json", "html"]}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let draft_id = v["id"].as_i64().unwrap();
    let draft = reports::get(&h.state.store, draft_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(draft.score_milli, 94_000);

    let notice =
        json!({"kind": "deduction", "item": "notice", "subject": format!("event:{}", events[0])});

    // The office cannot appeal (policy: `operate`), nor can anyone appeal what was not deducted.
    let (code, _) = call(
        &rev,
        "/api/v1/appeals",
        json!({"report_id": draft.id, "target": notice, "reason": "x"}),
    )
    .await;
    assert_eq!(code, 403);
    let (code, v) = call(
        &op,
        "/api/v1/appeals",
        json!({"report_id": draft.id, "reason": "x",
               "target": {"kind": "deduction", "item": "notice", "subject": "event:999999"}}),
    )
    .await;
    assert_eq!(
        (code, v["error"]["field"].as_str()),
        (400, Some("target")),
        "{v}"
    );

    // The vendor appeals the 通报 within the window, with the authority's correction attached.
    let letter = "市数据局更正函：该通报对象有误。".as_bytes().to_vec();
    let (code, v) = call(
        &op,
        "/api/v1/appeals",
        json!({"report_id": draft.id, "target": notice,
               "reason": "通报对象为其他单位，见更正函",
               "attachments": [{"name": "更正函.txt", "content_type": "text/plain",
                                "data": base64_encode(&letter)}]}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let appeal_id = v["data"]["id"].as_str().unwrap().to_string();

    // Listed with its attachment's hash and the window's deadline; the file comes back whole.
    let list = h
        .client
        .get_json(&format!(
            "/api/v1/appeals?contract=lifecycle&period={}",
            month.label
        ))
        .await
        .unwrap();
    let a = &list["data"][0];
    assert_eq!(a["status"], "pending", "{list}");
    assert_eq!(a["filed_by"], "token:vendor-op");
    assert_eq!(
        a["attachments"][0]["sha256"],
        hex::encode(Sha256::digest(&letter))
    );
    let deadline = a["appeal_deadline_ms"].as_i64().unwrap();
    assert!(deadline > draft.generated_ms);
    let got = http
        .get(format!(
            "{}/api/v1/appeals/{appeal_id}/attachments/{}",
            h.client.base, "%E6%9B%B4%E6%AD%A3%E5%87%BD.txt"
        ))
        .bearer_auth(&rev)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), letter);

    // The reports page's listing says where the draft stands: appeals open until the deadline,
    // one pending.
    let state = lifecycle_states(&h).await;
    assert_eq!(
        state[&draft.version],
        json!({"state": "appeal_open", "deadline_ms": deadline, "pending_appeals": 1,
               "signed_off": [], "superseded_by": null})
    );

    // An appeal at the deadline is refused, naming it (the window is working days after the
    // draft's day, so the instant is the server's to compute; the service takes `now`).
    let late = appeals::file(
        &h.state.store,
        &h.state.contracts,
        "token:vendor-op",
        NewAppeal {
            report_id: draft.id,
            target: AppealTarget::Deduction {
                item: "report-late".into(),
                subject: format!("event:{}", events[1]),
            },
            reason: "迟交有正当理由".into(),
            attachments: Vec::new(),
        },
        deadline,
        None,
    )
    .await;
    let w = appeals::window(&h.state.store, &c, &month.label)
        .await
        .unwrap()
        .unwrap();
    match late {
        Err(AppealError::Conflict { field, message }) => {
            assert_eq!(field, "report_id");
            assert!(
                message.contains(&format!("{} 24:00 Asia/Shanghai", w.appeal_deadline.date)),
                "{message}"
            );
        }
        other => panic!("a late appeal must be refused: {other:?}"),
    }

    // The operator cannot decide (policy: `approve`); an admin who filed cannot decide their own.
    let (code, _) = call(
        &op,
        &format!("/api/v1/appeals/{appeal_id}/decision"),
        json!({"outcome": "overturned", "reason": "x"}),
    )
    .await;
    assert_eq!(code, 403);
    let own = appeals::decide(
        &h.state.store,
        &h.state.contracts,
        "token:vendor-op",
        &appeal_id,
        appeals::NewDecision {
            outcome: yunwei_sla::assess::AppealOutcome::Overturned,
            reason: "x".into(),
            approved_points: None,
            approved_minutes: None,
        },
        now_ms(),
        None,
    )
    .await;
    assert!(matches!(own, Err(AppealError::OwnAppeal)), "{own:?}");
    // An adjustment needs the points that count.
    let (code, v) = call(
        &rev,
        &format!("/api/v1/appeals/{appeal_id}/decision"),
        json!({"outcome": "adjusted", "reason": "部分成立"}),
    )
    .await;
    assert_eq!(
        (code, v["error"]["field"].as_str()),
        (400, Some("approved_points")),
        "{v}"
    );

    // The office overturns it; a second decision is refused.
    let (code, v) = call(
        &rev,
        &format!("/api/v1/appeals/{appeal_id}/decision"),
        json!({"outcome": "overturned", "reason": "更正函属实，通报不适用"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = call(
        &rev2,
        &format!("/api/v1/appeals/{appeal_id}/decision"),
        json!({"outcome": "upheld", "reason": "x"}),
    )
    .await;
    assert_eq!(code, 409);

    // The next version applies the decision: exactly 5 points back, the line gone, the
    // decision cited.
    let next = generate(&h, &month.label, now_ms()).await;
    assert_eq!(next.archived.version, draft.version + 1);
    assert_eq!(next.archived.score_milli, draft.score_milli + 5_000);
    let a = contracts::assess_period(&h.state.store, &c, &month, now_ms(), false, None)
        .await
        .unwrap();
    assert_eq!(a.score, 99.0);
    assert!(a.deductions.iter().all(|d| d.item != "notice"), "{a:?}");
    assert_eq!(a.appeals.len(), 1);
    assert_eq!(a.appeals[0].appeal.id, format!("appeal:{appeal_id}"));
    assert!(a.appeals[0].applied);
    assert_eq!(a.appeals[0].effect_points, 5.0);
    let d = a.appeals[0].appeal.decision.as_ref().unwrap();
    assert_eq!(d.decided_by, "token:office");
    // Assessed as of the draft, the decision is not there yet: the draft's figures stand.
    let as_draft =
        contracts::assess_period(&h.state.store, &c, &month, draft.generated_ms, false, None)
            .await
            .unwrap();
    assert_eq!(as_draft.score, 94.0);

    // Sign-off: only the latest version, only the parties, each once; the office's signature
    // completes it and the final version (终稿) is made, signed, archived and queued for mail.
    let (code, v) = call(
        &op,
        &format!("/api/v1/reports/{}/sign-off", draft.id),
        json!({}),
    )
    .await;
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
    let (code, _) = call(
        &admin,
        &format!("/api/v1/reports/{}/sign-off", next.archived.id),
        json!({}),
    )
    .await;
    assert_eq!(code, 403, "an admin is not a party");
    let (code, v) = call(
        &op,
        &format!("/api/v1/reports/{}/sign-off", next.archived.id),
        json!({}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["data"]["final"],
        json!([]),
        "the office has not signed yet"
    );
    let (code, _) = call(
        &op,
        &format!("/api/v1/reports/{}/sign-off", next.archived.id),
        json!({}),
    )
    .await;
    assert_eq!(code, 409, "a party signs once");
    let (code, v) = call(
        &rev,
        &format!("/api/v1/reports/{}/sign-off", next.archived.id),
        json!({}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let fin = &v["data"]["final"][0];
    assert_eq!(fin["origin"], "final", "{v}");
    assert_eq!(fin["score_milli"], 99_000);
    let final_id = fin["id"].as_i64().unwrap();
    // Earlier versions stay in the archive.
    let all = reports::list(&h.state.store, Some("lifecycle"))
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    let env = reports::envelope(&h.state.store, final_id)
        .await
        .unwrap()
        .unwrap();
    let doc: Value = serde_json::from_slice(&env).unwrap();
    let l = &doc["report"]["lifecycle"];
    assert_eq!(l["stage"], "final", "{l}");
    assert_eq!(l["appeals"][0]["id"], format!("appeal:{appeal_id}"));
    assert_eq!(l["appeals"][0]["status"], "overturned");
    assert_eq!(l["appeals"][0]["effect"], 5);
    assert_eq!(l["signoffs"].as_array().unwrap().len(), 2);
    assert_eq!(l["appeal_deadline_ms"], deadline);
    let cited: Vec<&str> = doc["report"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(
        cited.contains(&format!("appeal:{appeal_id}").as_str()),
        "{cited:?}"
    );
    // The draft said it was the draft.
    let draft_doc: Value = serde_json::from_slice(
        &reports::envelope(&h.state.store, draft.id)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(draft_doc["report"]["lifecycle"]["stage"], "draft");
    // Verifies with the server's report key, like every version.
    let key = yunwei_server::report_keys::load_public(
        &yunwei_server::report_keys::public_key_path(&h.state.config.data_dir),
    )
    .unwrap();
    let json_file = reports::file(&h.state.store, final_id, ReportFormat::Json)
        .await
        .unwrap()
        .unwrap();
    let checked = yunwei_reports::verify(&json_file, &key).unwrap();
    assert_eq!(checked.report.summary.score, yunwei_reports::Fixed(99_000));
    // `report recompute`: the final's figures, lifecycle included, follow from its evidence
    // file alone (the decision is an evidence row, the sign-offs stated inputs).
    let evidence = h
        .state
        .store
        .report_file(final_id, reports::EVIDENCE)
        .await
        .unwrap()
        .expect("the final's evidence file is archived");
    let outcome = yunwei_reports::recompute::recompute(&checked.report, &evidence).unwrap();
    assert!(
        outcome.differences.is_empty(),
        "the final does not recompute: {:?}",
        outcome.differences
    );
    // The same checks as an auditor runs them: the `report verify` and `report recompute`
    // commands on the downloaded files, with the server's public key only.
    let audit_dir = tempfile::tempdir().unwrap();
    let json_path = audit_dir.path().join("final.json");
    std::fs::write(&json_path, &json_file).unwrap();
    std::fs::write(
        audit_dir
            .path()
            .join(&checked.report.evidence_file.as_ref().unwrap().name),
        &evidence,
    )
    .unwrap();
    let public = yunwei_server::report_keys::public_key_path(&h.state.config.data_dir);
    for (cmd, expect) in [("verify", "OK (json)"), ("recompute", "OK")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_yunwei-server"))
            .args(["report", cmd, "--public-key"])
            .arg(&public)
            .arg(&json_path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(expect),
            "report {cmd}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The listing: the final is 终稿, the earlier versions are superseded by it, and the
    // version both parties signed shows their sign-offs.
    let fin_version = fin["version"].as_i64().unwrap();
    let state = lifecycle_states(&h).await;
    assert_eq!(state[&fin_version]["state"], "final", "{state:?}");
    for v in [draft.version, next.archived.version] {
        assert_eq!(state[&v]["state"], "superseded", "{state:?}");
        assert_eq!(state[&v]["superseded_by"], fin_version);
    }
    let signed: Vec<&str> = state[&next.archived.version]["signed_off"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["role"].as_str().unwrap())
        .collect();
    assert_eq!(signed, ["operator", "reviewer"]);
    assert_eq!(state[&draft.version]["signed_off"], json!([]));

    // Queued for the contract's recipients.
    let fin_row = all.iter().find(|a| a.id == final_id).unwrap();
    let d = fin_row.delivery.as_ref().expect("the final is mailed");
    assert_eq!(d.to, ["kaohe@example.org"]);
    // No appeal after the final.
    let (code, _) = call(
        &op,
        "/api/v1/appeals",
        json!({"report_id": next.archived.id, "target": notice, "reason": "again"}),
    )
    .await;
    assert_eq!(code, 409);

    // The mail: each step to the party that must act next, then the final to the recipients.
    let n = yunwei_server::lifecycle_mail::deliver_due(&h.state.reports, now_ms())
        .await
        .unwrap();
    let sent = yunwei_server::report_mail::deliver_due(&h.state.reports, now_ms())
        .await
        .unwrap();
    assert_eq!(sent.len(), 1, "only the final is mailed to the recipients");
    assert!(sent[0].attempt.ok, "{:?}", sent[0].attempt);
    let mails = sink.mails();
    assert_eq!(mails.len(), n + 1);
    let to = |m: &Value| m["rcpt_tos"].to_string();
    let step = |needle: &str| -> Vec<&Value> {
        mails
            .iter()
            .filter(|m| m["subject"].as_str().unwrap_or("").contains(needle))
            .collect()
    };
    let drafts = step("draft issued");
    assert_eq!(drafts.len(), 1);
    assert!(to(drafts[0]).contains("yunwei-op@example.com"));
    let text = drafts[0]["text"].as_str().unwrap();
    assert!(
        text.contains("请于") && text.contains("Appeal a deduction by"),
        "{text}"
    );
    assert!(text.contains("/#/appealsPage/lifecycle/"), "{text}");
    let review = step("an appeal awaits review");
    assert_eq!(review.len(), 1);
    assert!(to(review[0]).contains("kaohe-office@example.org"));
    let decided = step("an appeal was decided");
    assert_eq!(decided.len(), 1);
    assert!(decided[0]["text"].as_str().unwrap().contains("撤销扣分"));
    // Sign-off due: to both parties when the last appeal was decided, then to the office
    // when the vendor had signed.
    let due = step("your sign-off is due");
    assert_eq!(due.len(), 3, "{due:?}");
    let finals: Vec<&Value> = mails
        .iter()
        .filter(|m| to(m).contains("kaohe@example.org"))
        .collect();
    assert_eq!(finals.len(), 1);
    assert!(
        finals[0]["subject"].as_str().unwrap().contains("v3"),
        "{}",
        finals[0]["subject"]
    );

    // Each change has its audit row, committed with it (filing and deciding).
    let audit = h.client.get_json("/api/v1/audit?limit=200").await.unwrap();
    let rows = audit.to_string();
    assert!(rows.contains(&appeal_id), "{audit}");
    assert!(rows.contains("overturned"), "{audit}");
    h.stop().await;
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn an_unanswered_draft_becomes_final_at_the_review_deadline(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(
        &path,
        CONTRACT.replace(
            "  sign_off: [operator, reviewer]\n",
            "  sign_off: [operator, reviewer]\n  final_when_unanswered: true\n",
        ),
    )
    .unwrap();
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
        c.contracts.scheduled_reports = false;
    })
    .await
    else {
        return;
    };
    let c = h.state.contracts.get("lifecycle").unwrap();
    assert!(c.contract.lifecycle.as_ref().unwrap().final_when_unanswered);
    let month = contracts::current_month(&c.contract, now_ms());
    let draft = generate(&h, &month.label, now_ms()).await;
    let w = appeals::window(&h.state.store, &c, &month.label)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.draft_report_id, draft.archived.id);
    assert!(w.review_deadline.at_ms > w.appeal_deadline.at_ms);
    // Nobody signs; nothing is final before the review deadline, the final is made at it.
    let before = appeals::run_due_finals(&h.state.reports, w.review_deadline.at_ms - 1)
        .await
        .unwrap();
    assert!(before.is_empty(), "{before:?}");
    let made = appeals::run_due_finals(&h.state.reports, w.review_deadline.at_ms)
        .await
        .unwrap();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].origin, appeals::FINAL_ORIGIN);
    let doc: Value = serde_json::from_slice(
        &reports::envelope(&h.state.store, made[0].id)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["report"]["lifecycle"]["stage"], "final");
    assert_eq!(doc["report"]["lifecycle"]["signoffs"], json!([]));
    // Made once.
    let again = appeals::run_due_finals(&h.state.reports, w.review_deadline.at_ms + 60_000)
        .await
        .unwrap();
    assert!(again.is_empty());
    h.stop().await;
}

/// Each archived version of the `lifecycle` contract's reports, by version: its `lifecycle`
/// state as `GET /api/v1/reports` lists it.
async fn lifecycle_states(h: &Harness) -> std::collections::BTreeMap<i64, Value> {
    let list = h
        .client
        .get_json("/api/v1/reports?contract=lifecycle")
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["version"].as_i64().unwrap(), r["lifecycle"].clone()))
        .collect()
}
