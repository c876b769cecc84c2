//! Audit rows commit with their change, on SQLite and PostgreSQL (custody finding 6): a
//! state-changing call's row is written in the transaction of the change it records, so when
//! the row cannot be written the change is not made and the caller gets an error; a change
//! that is made has exactly one row (the HTTP layer adds none of its own); refusals are still
//! recorded; and appenders in two processes wait for each other instead of failing.

mod common;

use common::Harness;
use reqwest::Method;
use serde_json::{Value, json};
use yunwei_server::{
    audit,
    store::{Backend, Store, notify::SilenceRow},
};
use yunwei_tests::{PgDatabase, now_ms};

yunwei_tests::both_backends!(
    each_change_has_exactly_one_audit_row_committed_with_it,
    a_change_whose_audit_row_cannot_be_written_is_not_made,
    appenders_in_two_processes_wait_for_each_other,
);

async fn post(h: &Harness, path: &str, body: Value) -> (u16, Value) {
    let r = h
        .client
        .api(Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The audit rows of calls to `route` (`POST /api/v1/...` as in the policy), oldest first.
async fn rows(h: &Harness, action: &str) -> Vec<audit::AuditRow> {
    let mut all = audit::list(&h.state.store, None, 10_000).await.unwrap();
    all.reverse();
    all.retain(|r| r.entry.action == action);
    all
}

/// The whole chain and its checkpoints still verify.
async fn verified(h: &Harness) {
    let key = yunwei_server::report_keys::load_or_create(h.dir.path())
        .unwrap()
        .verifying_key();
    let anchor = audit::load_anchor(h.dir.path()).unwrap();
    let v = audit::verify(&h.state.store, Some(&key), anchor.as_ref())
        .await
        .unwrap();
    assert!(v.is_ok(), "{v:?}");
}

fn silence(comment: &str) -> Value {
    json!({
        "matchers": ["alertname=\"Atomic\""],
        "ends_ms": now_ms() + 3_600_000,
        "comment": comment,
    })
}

fn exclusion(reason: &str) -> Value {
    json!({
        "kind": "maintenance",
        "matchers": ["instance=\"db-01\""],
        "from_ms": now_ms() + 3_600_000,
        "to_ms": now_ms() + 7_200_000,
        "reason": reason,
    })
}

async fn each_change_has_exactly_one_audit_row_committed_with_it(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let (st, body) = post(&h, "/api/v1/silences", silence("one row")).await;
    assert_eq!(st, 200, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let r = rows(&h, "POST /api/v1/silences").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].entry.result, "success");
    assert_eq!(r[0].entry.detail["silence"], id.as_str(), "{r:?}");
    assert!(r[0].entry.actor.starts_with("token:"), "{r:?}");

    let (st, body) = post(&h, "/api/v1/exclusions", exclusion("补丁")).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = post(
        &h,
        "/api/v1/incidents",
        json!({"title": "电话报障", "level": 3}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let incident = body["data"]["id"].as_str().unwrap().to_string();
    let (st, body) = post(&h, &format!("/api/v1/incidents/{incident}/ack"), json!({})).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = post(
        &h,
        "/api/v1/users",
        json!({"name": "zhou.ops", "role": "operator", "password": "Operator-Pass-1"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = post(&h, "/api/v1/users/zhou.ops/disable", json!({})).await;
    assert_eq!(st, 200, "{body}");
    for action in [
        "POST /api/v1/exclusions",
        "POST /api/v1/incidents",
        "POST /api/v1/incidents/{id}/{action}",
        "POST /api/v1/users",
        "POST /api/v1/users/{name}/disable",
    ] {
        let r = rows(&h, action).await;
        assert_eq!(r.len(), 1, "{action}: {r:?}");
        assert_eq!(r[0].entry.result, "success", "{action}: {r:?}");
    }

    // A refused call changes nothing and still has its row (written after the answer).
    let (st, _) = post(&h, "/api/v1/incidents/nope/ack", json!({})).await;
    assert_eq!(st, 404);
    let (st, _) = post(&h, "/api/v1/users/nobody/disable", json!({})).await;
    assert_eq!(st, 404);
    let r = rows(&h, "POST /api/v1/incidents/{id}/{action}").await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[1].entry.result, "failure: 404");
    let r = rows(&h, "POST /api/v1/users/{name}/disable").await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[1].entry.result, "failure: 404");
    verified(&h).await;
    h.stop().await;
}

/// Makes every insert into `audit_log` fail, as a full disk or a broken table would.
async fn sabotage(store: &Store) {
    let statements: &[&str] = match store.backend() {
        Backend::Sqlite => &["CREATE TRIGGER audit_sabotage BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END"],
        Backend::Postgres => &[
            "CREATE FUNCTION audit_sabotage() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$",
            "CREATE TRIGGER audit_sabotage BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_sabotage()",
        ],
    };
    for s in statements {
        sqlx::raw_sql(s).execute(store.pool()).await.unwrap();
    }
}

async fn repair(store: &Store) {
    let s = match store.backend() {
        Backend::Sqlite => "DROP TRIGGER audit_sabotage",
        Backend::Postgres => "DROP TRIGGER audit_sabotage ON audit_log",
    };
    sqlx::raw_sql(s).execute(store.pool()).await.unwrap();
}

async fn a_change_whose_audit_row_cannot_be_written_is_not_made(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let store = &h.state.store;
    let (st, body) = post(&h, "/api/v1/silences", silence("before")).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = post(
        &h,
        "/api/v1/incidents",
        json!({"title": "电话报障", "level": 3}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let incident = body["data"]["id"].as_str().unwrap().to_string();
    let audited = audit::list(store, None, 10_000).await.unwrap().len();

    sabotage(store).await;
    let (st, body) = post(&h, "/api/v1/silences", silence("unaudited")).await;
    assert_eq!(st, 500, "{body}");
    let (st, body) = post(&h, "/api/v1/exclusions", exclusion("unaudited")).await;
    assert_eq!(st, 500, "{body}");
    let (st, body) = post(&h, &format!("/api/v1/incidents/{incident}/ack"), json!({})).await;
    assert_eq!(st, 500, "{body}");
    let (st, body) = post(
        &h,
        "/api/v1/users",
        json!({"name": "wu.ops", "role": "operator", "password": "Operator-Pass-1"}),
    )
    .await;
    assert_eq!(st, 500, "{body}");
    // None of the four changes was made.
    let silences = store.silences().await.unwrap();
    assert_eq!(silences.len(), 1, "{silences:?}");
    assert!(store.exclusions().await.unwrap().is_empty());
    let row = store.incident(&incident).await.unwrap().unwrap();
    assert_eq!(row.acknowledged_ms, None, "{row:?}");
    let stamps = store.incident_stamps(Some(&incident)).await.unwrap();
    assert!(stamps.iter().all(|s| s.clock != "ack"), "{stamps:?}");
    assert!(store.user("wu.ops").await.unwrap().is_none());

    // Repaired, the same calls succeed, each with its row, and the chain is whole.
    repair(store).await;
    assert_eq!(
        audit::list(store, None, 10_000).await.unwrap().len(),
        audited,
        "nothing was appended while the log was unavailable"
    );
    let (st, body) = post(&h, &format!("/api/v1/incidents/{incident}/ack"), json!({})).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = post(&h, "/api/v1/silences", silence("after")).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(store.silences().await.unwrap().len(), 2);
    assert_eq!(
        audit::list(store, None, 10_000).await.unwrap().len(),
        audited + 2
    );
    verified(&h).await;
    h.stop().await;
}

/// Two stores on one database stand for two server processes: changes audited in both at once
/// all succeed, and the chain links every row once.
async fn appenders_in_two_processes_wait_for_each_other(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pg = if backend == "postgres" {
        let Some(pg) = PgDatabase::create().await else {
            return;
        };
        Some(pg)
    } else {
        None
    };
    let url = pg.as_ref().map_or_else(
        || format!("sqlite://{}", dir.path().join("yunwei.db").display()),
        |p| p.url.clone(),
    );
    let one = Store::open(&url, true).await.unwrap();
    let two = Store::open(&url, true).await.unwrap();
    let per = 12;
    let mut tasks = Vec::new();
    for (p, store) in [(1, one.clone()), (2, two.clone())] {
        for i in 0..per {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let now = now_ms();
                let id = format!("p{p}-{i}");
                let rec = audit::Pending::new(
                    now,
                    &audit::Entry {
                        actor: format!("process-{p}"),
                        action: "silence.create".into(),
                        target: id.clone(),
                        result: "success".into(),
                        source: "local".into(),
                        detail: json!({}),
                    },
                );
                let row = SilenceRow {
                    id,
                    matchers: vec!["alertname=\"Race\"".into()],
                    starts_ms: now,
                    ends_ms: now + 60_000,
                    created_by: format!("process-{p}"),
                    comment: "race".into(),
                    created_ms: now,
                    updated_ms: now,
                };
                store.put_silence(&row, Some(&rec)).await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(one.silences().await.unwrap().len(), 2 * per);
    let v = audit::verify(&two, None, None).await.unwrap().unwrap();
    assert_eq!(v.chain.rows, 2 * per as i64);
    one.close().await;
    two.close().await;
}
