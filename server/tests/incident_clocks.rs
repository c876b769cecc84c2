//! Incident clocks with a recording time, on SQLite and PostgreSQL: a stamp given an earlier
//! time than its recording (beyond the tolerance) and a level downgrade are requests; until a
//! reviewer other than the requester approves, the recording time (or the old level) counts,
//! also in the contract assessment. Resolving an alert group by hand records the user.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::Harness;
use serde_json::{Value, json};
use yunwei_server::{
    auth::Role,
    config::{Overrides, ServerConfig},
    notify::engine::AlertEntry,
};
use yunwei_tests::now_ms;

yunwei_tests::both_backends!(
    a_backdated_restore_counts_only_once_a_reviewer_approves_it,
    a_level_downgrade_waits_for_a_reviewer,
    resolving_a_group_records_the_user_on_the_restore_stamp,
    reports_list_backdatings_and_downgrades_with_their_approver,
);

/// Shanghai is UTC+8 all year.
const SHANGHAI_MS: i64 = 8 * 3_600_000;
const MINUTE: i64 = 60_000;

const CONTRACT: &str = r#"id: test-contract
name: 测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 }, probes: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
  incidents:
    - { id: P3, aliases: [三级], response: 2h, restore: 1h, window: always }
    - { id: P4, aliases: [四级], response: 4h, restore: 48h, window: always }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

async fn start(backend: &str) -> Option<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, CONTRACT).unwrap();
    let h = Harness::start(backend, move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
    })
    .await;
    drop(dir);
    h
}

struct Api<'a> {
    h: &'a Harness,
    http: reqwest::Client,
}

impl Api<'_> {
    async fn token(&self, name: &str, role: Role) -> String {
        yunwei_server::auth::users::create_token(
            &self.h.state.store,
            name,
            role,
            &[],
            None,
            now_ms(),
        )
        .await
        .unwrap()
    }

    async fn post(&self, who: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.h.client.base))
            .bearer_auth(who)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn get_bytes(&self, who: &str, path: &str) -> Vec<u8> {
        let r = self
            .http
            .get(format!("{}{path}", self.h.client.base))
            .bearer_auth(who)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap().to_vec()
    }

    async fn get(&self, path: &str) -> Value {
        self.h.client.get_json(path).await.unwrap()
    }

    /// The assessment of the local days from `from_ms` to now.
    async fn assess(&self, from_ms: i64) -> Value {
        let day = |t: i64| {
            chrono::DateTime::from_timestamp_millis(t + SHANGHAI_MS)
                .unwrap()
                .date_naive()
        };
        self.get(&format!(
            "/api/v1/contracts/test-contract/assessment?period={}..{}",
            day(from_ms),
            day(now_ms())
        ))
        .await
    }
}

/// The clock `name` (`response`, `on_site`, `restore`) of the assessment's only incident.
fn clock<'a>(assessment: &'a Value, inc: &str, name: &str) -> &'a Value {
    let incidents = assessment["incidents"].as_array().unwrap();
    let i = incidents
        .iter()
        .find(|i| i["incident"] == format!("incident:{inc}"))
        .unwrap_or_else(|| panic!("incident {inc} in {assessment}"));
    i["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clock"] == name)
        .unwrap_or_else(|| panic!("clock {name} in {i}"))
}

async fn a_backdated_restore_counts_only_once_a_reviewer_approves_it(backend: &str) {
    let Some(h) = start(backend).await else {
        return;
    };
    let api = Api {
        h: &h,
        http: reqwest::Client::new(),
    };
    let op = api.token("vendor-op", Role::Operator).await;
    let rev = api.token("office", Role::Reviewer).await;
    let detected = now_ms() - 120 * MINUTE;
    let (code, v) = api
        .post(
            &op,
            "/api/v1/incidents",
            json!({"title": "门户无法访问", "level": 3, "labels": {"system": "政务服务网"},
                "detected_ms": detected}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let inc = v["data"]["id"].as_str().unwrap().to_string();

    // Within the tolerance the time given counts.
    let ack_at = now_ms() - MINUTE;
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/incidents/{inc}/ack"),
            json!({"at_ms": ack_at}),
        )
        .await;
    assert_eq!((code, &v["data"]["pending"]), (200, &Value::Null), "{v}");
    let row = h.state.store.incident(&inc).await.unwrap().unwrap();
    assert_eq!(row.acknowledged_ms, Some(ack_at));

    // Restored "ten minutes after detection", recorded two hours later: the recording counts.
    let claimed = detected + 10 * MINUTE;
    let before = now_ms();
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/incidents/{inc}/restore"),
            json!({"at_ms": claimed, "reason": "忘记登记"}),
        )
        .await;
    let after = now_ms();
    assert_eq!((code, &v["data"]["pending"]), (200, &json!(true)), "{v}");
    let req = v["data"]["request"].as_str().unwrap().to_string();
    let row = h.state.store.incident(&inc).await.unwrap().unwrap();
    let recorded = row.restored_ms.unwrap();
    assert!((before..=after).contains(&recorded), "{row:?}");
    let d = api.get(&format!("/api/v1/incidents/{inc}")).await;
    let stamps = d["data"]["stamps"].as_array().unwrap();
    let restored = stamps.iter().find(|s| s["clock"] == "restored").unwrap();
    assert_eq!(restored["at_ms"], recorded, "{d}");
    assert_eq!(restored["recorded_ms"], recorded, "{d}");
    assert_eq!(restored["recorded_by"], "token:vendor-op", "{d}");
    assert_eq!(restored["approved_by"], Value::Null, "{d}");
    let requests = d["data"]["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{d}");
    assert_eq!(
        (
            &requests[0]["id"],
            &requests[0]["kind"],
            &requests[0]["clock"],
            &requests[0]["value"],
            &requests[0]["status"],
            &requests[0]["requested_by"],
        ),
        (
            &json!(req),
            &json!("backdate"),
            &json!("restored"),
            &json!(claimed),
            &json!("pending"),
            &json!("token:vendor-op"),
        ),
        "{d}"
    );
    let pending = api.get("/api/v1/incident-requests?status=pending").await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 1, "{pending}");

    // The assessment counts the recording: two hours against a one-hour target.
    let a = api.assess(detected).await;
    let restore = clock(&a, &inc, "restore");
    assert!(
        restore["elapsed_ms"].as_i64().unwrap() >= recorded - detected - 1_000,
        "{restore}"
    );
    assert_eq!(restore["status"], "late", "{restore}");

    // The vendor cannot approve its own backdating.
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/incident-requests/{req}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        h.state
            .store
            .incident(&inc)
            .await
            .unwrap()
            .unwrap()
            .restored_ms,
        Some(recorded)
    );

    // The office approves: the claimed time counts, with the approver on the stamp.
    let (code, v) = api
        .post(
            &rev,
            &format!("/api/v1/incident-requests/{req}/approve"),
            json!({"comment": "有现场记录"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = api
        .post(
            &rev,
            &format!("/api/v1/incident-requests/{req}/reject"),
            json!({}),
        )
        .await;
    assert_eq!(code, 409, "decided once");
    let row = h.state.store.incident(&inc).await.unwrap().unwrap();
    assert_eq!(row.restored_ms, Some(claimed));
    let d = api.get(&format!("/api/v1/incidents/{inc}")).await;
    let stamps = d["data"]["stamps"].as_array().unwrap();
    let restored = stamps.iter().find(|s| s["clock"] == "restored").unwrap();
    assert_eq!(
        (
            &restored["at_ms"],
            &restored["recorded_ms"],
            &restored["recorded_by"],
            &restored["approved_by"],
        ),
        (
            &json!(claimed),
            &json!(recorded),
            &json!("token:vendor-op"),
            &json!("token:office"),
        ),
        "{d}"
    );
    let r = &d["data"]["requests"][0];
    assert_eq!(
        (&r["status"], &r["reviewed_by"]),
        (&json!("approved"), &json!("token:office")),
        "{d}"
    );
    let a = api.assess(detected).await;
    let restore = clock(&a, &inc, "restore");
    assert_eq!(restore["elapsed_ms"], 10 * MINUTE, "{restore}");
    assert_eq!(restore["status"], "met", "{restore}");
    h.stop().await;
}

async fn a_level_downgrade_waits_for_a_reviewer(backend: &str) {
    let Some(h) = start(backend).await else {
        return;
    };
    let api = Api {
        h: &h,
        http: reqwest::Client::new(),
    };
    let op = api.token("vendor-op", Role::Operator).await;
    let rev = api.token("office", Role::Reviewer).await;
    let admin = common::admin_token(&h.state).await;
    let detected = now_ms() - 30 * MINUTE;
    let (code, v) = api
        .post(
            &op,
            "/api/v1/incidents",
            json!({"title": "门户缓慢", "level": 3, "labels": {"system": "政务服务网"},
                "detected_ms": detected}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let inc = v["data"]["id"].as_str().unwrap().to_string();
    let level = async || h.state.store.incident(&inc).await.unwrap().unwrap().level;

    // A more severe level applies at once.
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/incidents/{inc}/level"),
            json!({"level": 2, "reason": "影响扩大"}),
        )
        .await;
    assert_eq!((code, &v["data"]["pending"]), (200, &Value::Null), "{v}");
    assert_eq!(level().await, 2);

    // A less severe one is a request: the level stays, also in the assessment.
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/incidents/{inc}/level"),
            json!({"level": 4, "reason": "仅个别用户受影响"}),
        )
        .await;
    assert_eq!((code, &v["data"]["pending"]), (200, &json!(true)), "{v}");
    let req = v["data"]["request"].as_str().unwrap().to_string();
    assert_eq!(level().await, 2);
    let d = api.get(&format!("/api/v1/incidents/{inc}")).await;
    let r = &d["data"]["requests"][0];
    assert_eq!(
        (&r["kind"], &r["value"], &r["previous"], &r["status"]),
        (&json!("downgrade"), &json!(4), &json!(2), &json!("pending")),
        "{d}"
    );
    let a = api.assess(detected).await;
    let i = a["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["incident"] == format!("incident:{inc}"))
        .unwrap();
    assert_ne!(i["level"], "P4", "{i}");

    let (code, _) = api
        .post(
            &op,
            &format!("/api/v1/incident-requests/{req}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(code, 403, "the operator cannot approve");
    let (code, v) = api
        .post(
            &rev,
            &format!("/api/v1/incident-requests/{req}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(level().await, 4);
    let a = api.assess(detected).await;
    let i = a["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["incident"] == format!("incident:{inc}"))
        .unwrap();
    assert_eq!(i["level"], "P4", "{i}");

    // Whoever may approve still cannot approve their own request; a rejection changes nothing.
    let (code, v) = api
        .post(
            &admin,
            &format!("/api/v1/incidents/{inc}/level"),
            json!({"level": 4, "reason": "x"}),
        )
        .await;
    assert_eq!(
        (code, &v["data"]["pending"]),
        (200, &Value::Null),
        "same level: {v}"
    );
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/incidents/{inc}/level"),
            json!({"level": 1, "reason": "全部中断"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = api
        .post(
            &admin,
            &format!("/api/v1/incidents/{inc}/level"),
            json!({"level": 3, "reason": "已部分恢复"}),
        )
        .await;
    assert_eq!((code, &v["data"]["pending"]), (200, &json!(true)), "{v}");
    let own = v["data"]["request"].as_str().unwrap().to_string();
    let (code, v) = api
        .post(
            &admin,
            &format!("/api/v1/incident-requests/{own}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(
        (code, v["error"]["field"].as_str()),
        (403, Some("by")),
        "{v}"
    );
    let (code, v) = api
        .post(
            &rev,
            &format!("/api/v1/incident-requests/{own}/reject"),
            json!({"comment": "仍全部中断"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(level().await, 1);
    h.stop().await;
}

async fn resolving_a_group_records_the_user_on_the_restore_stamp(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let notify = ServerConfig::parse(
        "notify:\n  receivers: [{name: nobody, webhook: [{url: 'http://127.0.0.1:9/am'}]}]\n  \
         allow_private_networks: [127.0.0.1/32]\n  \
         route: {receiver: nobody, group_by: [alertname], group_wait: 0s, group_interval: 1s}\n  \
         incidents:\n    levels:\n      - {matchers: ['severity=\"critical\"'], level: 2}\n",
        "n.yaml",
        &Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().to_path_buf()),
            database_url: None,
        },
    )
    .unwrap()
    .notify;
    let Some(h) = Harness::start(backend, move |c| c.notify = notify).await else {
        return;
    };
    let api = Api {
        h: &h,
        http: reqwest::Client::new(),
    };
    let op = api.token("duty", Role::Operator).await;
    h.state.notify.alerts(vec![AlertEntry {
        labels: BTreeMap::from([
            ("alertname".into(), "DbDown".into()),
            ("severity".into(), "critical".into()),
        ]),
        annotations: BTreeMap::new(),
        starts_at_ms: now_ms() - 5_000,
        ends_at_ms: Some(now_ms() + 600_000),
        resolved: false,
    }]);
    let mut inc = None;
    for _ in 0..100 {
        if let Some(i) = h.state.store.incidents(false).await.unwrap().pop() {
            inc = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let inc = inc.expect("an incident");
    let gid = inc.group_id.clone().unwrap();
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/notify/groups/{gid}/resolve"),
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let mut stamp = None;
    for _ in 0..100 {
        let d = api.get(&format!("/api/v1/incidents/{}", inc.id)).await;
        if let Some(s) = d["data"]["stamps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["clock"] == "restored"))
        {
            stamp = Some((s.clone(), d));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stamp, d) = stamp.expect("a restore stamp");
    assert_eq!(stamp["recorded_by"], "token:duty", "{d}");
    let events = d["data"]["events"].as_array().unwrap();
    let restored = events.iter().find(|e| e["kind"] == "restored").unwrap();
    assert_eq!(restored["actor"], "token:duty", "{d}");
    h.stop().await;
}

/// The report of an incident whose restore was backdated and whose level was downgraded, both
/// approved, and whose on-site stamp waits for review: the report lists all three with the
/// clock, recorded and claimed times, requester, approver, decision time and reason, in JSON,
/// HTML and XLSX, in zh-CN and English; the requests are evidence in the appendix.
async fn reports_list_backdatings_and_downgrades_with_their_approver(backend: &str) {
    let Some(h) = start(backend).await else {
        return;
    };
    let api = Api {
        h: &h,
        http: reqwest::Client::new(),
    };
    let op = api.token("vendor-op", Role::Operator).await;
    let rev = api.token("office", Role::Reviewer).await;
    let detected = now_ms() - 120 * MINUTE;
    let (code, v) = api
        .post(
            &op,
            "/api/v1/incidents",
            json!({"title": "门户无法访问", "level": 3, "labels": {"system": "政务服务网"},
                "detected_ms": detected}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let inc = v["data"]["id"].as_str().unwrap().to_string();
    let claimed = detected + 10 * MINUTE;
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/incidents/{inc}/restore"),
            json!({"at_ms": claimed, "reason": "忘记登记"}),
        )
        .await;
    assert_eq!((code, &v["data"]["pending"]), (200, &json!(true)), "{v}");
    let backdate = v["data"]["request"].as_str().unwrap().to_string();
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/incidents/{inc}/level"),
            json!({"level": 4, "reason": "仅个别用户受影响"}),
        )
        .await;
    assert_eq!((code, &v["data"]["pending"]), (200, &json!(true)), "{v}");
    let downgrade = v["data"]["request"].as_str().unwrap().to_string();
    for req in [&backdate, &downgrade] {
        let (code, v) = api
            .post(
                &rev,
                &format!("/api/v1/incident-requests/{req}/approve"),
                json!({"comment": "有现场记录"}),
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = api
        .post(
            &op,
            &format!("/api/v1/incidents/{inc}/onsite"),
            json!({"at_ms": detected + 5 * MINUTE, "reason": "到场后未及时登记"}),
        )
        .await;
    assert_eq!((code, &v["data"]["pending"]), (200, &json!(true)), "{v}");
    let pending = v["data"]["request"].as_str().unwrap().to_string();
    let rows = h
        .state
        .store
        .incident_requests(Some(&inc), None)
        .await
        .unwrap();
    let row = |id: &str| rows.iter().find(|r| r.id == id).unwrap().clone();

    let day = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t + SHANGHAI_MS)
            .unwrap()
            .date_naive()
    };
    let period = format!("{}..{}", day(detected), day(now_ms()));
    let key = yunwei_server::report_keys::load_public(
        &yunwei_server::report_keys::public_key_path(h.dir.path()),
    )
    .unwrap();
    for (lang, words) in [
        (
            "zh-CN",
            [
                "时间补录与降级审批",
                "恢复",
                "到场",
                "已批准",
                "待审批（按记录时间计）",
            ],
        ),
        (
            "en",
            [
                "Backdated clocks and downgrades",
                "restored",
                "on site",
                "approved",
                "pending (recorded time counts)",
            ],
        ),
    ] {
        let (code, v) = api
            .post(
                &rev,
                "/api/v1/reports",
                json!({"contract": "test-contract", "period": period,
                    "formats": ["json", "html", "xlsx"], "lang": lang}),
            )
            .await;
        assert_eq!(code, 201, "{v}");
        let id = v["id"].as_i64().unwrap();

        let json_bytes = api
            .get_bytes(&rev, &format!("/api/v1/reports/{id}/json"))
            .await;
        let doc: Value = serde_json::from_slice(&json_bytes).unwrap();
        let list = doc["report"]["incident_requests"].as_array().unwrap();
        assert_eq!(list.len(), 3, "{doc}");
        let find = |req: &str| {
            list.iter()
                .find(|r| r["id"] == format!("incident_request:{req}"))
                .unwrap_or_else(|| panic!("{req} in {list:?}"))
        };
        let b = find(&backdate);
        let br = row(&backdate);
        assert_eq!(
            (
                &b["incident"],
                &b["kind"],
                &b["clock"],
                &b["recorded_ms"],
                &b["claimed_ms"],
                &b["requested_by"],
                &b["reviewed_by"],
                &b["reviewed_ms"],
                &b["status"],
                &b["reason"],
            ),
            (
                &json!(format!("incident:{inc}")),
                &json!("backdate"),
                &json!("restored"),
                &json!(br.requested_ms),
                &json!(claimed),
                &json!("token:vendor-op"),
                &json!("token:office"),
                &json!(br.reviewed_ms.unwrap()),
                &json!("approved"),
                &json!("忘记登记"),
            ),
            "{b}"
        );
        let d = find(&downgrade);
        assert_eq!(
            (
                &d["kind"],
                &d["clock"],
                &d["level_from"],
                &d["level_to"],
                &d["reviewed_by"],
                &d["status"],
                &d["reason"],
            ),
            (
                &json!("downgrade"),
                &Value::Null,
                &json!("P3"),
                &json!("P4"),
                &json!("token:office"),
                &json!("approved"),
                &json!("仅个别用户受影响"),
            ),
            "{d}"
        );
        let p = find(&pending);
        assert_eq!(
            (
                &p["clock"],
                &p["status"],
                &p["reviewed_by"],
                &p["recorded_ms"]
            ),
            (
                &json!("onsite"),
                &json!("pending"),
                &Value::Null,
                &json!(row(&pending).requested_ms),
            ),
            "{p}"
        );
        let evidence: Vec<&str> = doc["report"]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        for req in [&backdate, &downgrade, &pending] {
            assert!(
                evidence.contains(&format!("incident_request:{req}").as_str()),
                "{req} in the appendix: {evidence:?}"
            );
        }

        let html = String::from_utf8(
            api.get_bytes(&rev, &format!("/api/v1/reports/{id}/html"))
                .await,
        )
        .unwrap();
        for w in words {
            assert!(html.contains(w), "{lang}: {w:?} in the HTML");
        }
        for w in [
            "token:vendor-op",
            "token:office",
            "忘记登记",
            "仅个别用户受影响",
            "到场后未及时登记",
            "P3 → P4",
        ] {
            assert!(html.contains(w), "{lang}: {w:?} in the HTML");
        }
        let xlsx = api
            .get_bytes(&rev, &format!("/api/v1/reports/{id}/xlsx"))
            .await;
        let checked = yunwei_reports::verify(&xlsx, &key).unwrap();
        assert_eq!(checked.report.incident_requests.len(), 3);
        assert_eq!(checked.report.cover.lang.tag(), lang);
    }
    h.stop().await;
}
