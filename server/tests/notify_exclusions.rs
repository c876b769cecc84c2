//! Maintenance windows through the API: requested by an operator, refused when the requester
//! reviews their own request, approved by a reviewer; while approved and active they mute the
//! notifications of the alerts in their scope, and alerts outside the scope still go out.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use serde_json::{Value, json};
use yunwei_server::{
    Server,
    config::{Overrides, ServerConfig},
    notify::engine::AlertEntry,
};
use yunwei_tests::now_ms;

type Seen = Arc<Mutex<Vec<Value>>>;

async fn record(State(seen): State<Seen>, body: Bytes) -> &'static str {
    seen.lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    "ok"
}

fn alert(instance: &str) -> AlertEntry {
    AlertEntry {
        labels: BTreeMap::from([
            ("alertname".into(), "HostDown".into()),
            ("instance".into(), instance.into()),
        ]),
        annotations: BTreeMap::new(),
        starts_at_ms: now_ms(),
        ends_at_ms: Some(now_ms() + 600_000),
        resolved: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_window_mutes_its_scope_only() {
    let seen: Seen = Arc::default();
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let app = Router::new()
        .route("/am", post(record))
        .with_state(seen.clone());
    let hook_task = tokio::spawn(async move { axum::serve(hook, app).await });
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "notify:\n  receivers: [{{name: hook, webhook: [{{url: 'http://{hook_addr}/am'}}]}}]\n  \
         route: {{receiver: hook, group_by: [instance], group_wait: 0s, group_interval: 1s}}\n  \
         allow_private_networks: [127.0.0.1/32]\n"
    );
    let config = ServerConfig::parse(
        &yaml,
        "x.yaml",
        &Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().to_path_buf()),
            database_url: None,
        },
    )
    .unwrap();
    let server = Server::bind(config).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let state = server.state();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let token = async |name: &str, role| {
        yunwei_server::auth::users::create_token(&state.store, name, role, &[], None, now_ms())
            .await
            .unwrap()
    };
    use yunwei_server::auth::Role;
    let (op, rev, admin) = (
        token("operator", Role::Operator).await,
        token("office-reviewer", Role::Reviewer).await,
        token("admin", Role::Admin).await,
    );
    let c = reqwest::Client::new();
    let post = async |who: &str, path: &str, body: Value| {
        let r = c
            .post(format!("{base}{path}"))
            .bearer_auth(who)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };

    let now = now_ms();
    let (code, v) = post(
        &op,
        "/api/v1/exclusions",
        json!({"kind": "maintenance", "matchers": ["instance=\"db1\""], "from_ms": now - 1000,
               "to_ms": now + 3_600_000, "reason": "数据库升级"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let id = v["data"]["id"].as_str().unwrap().to_string();
    let (code, v) = post(
        &op,
        "/api/v1/exclusions",
        json!({"kind": "holiday", "matchers": [], "from_ms": now, "to_ms": now + 1,
               "reason": "x", "by": "operator"}),
    )
    .await;
    assert_eq!((code, v["error"]["field"].as_str()), (400, Some("kind")));
    // The vendor's operator may not approve at all; an admin may not approve a request filed
    // under their own name, and a body's `by` cannot pretend to be someone else.
    let (code, _) = post(&op, &format!("/api/v1/exclusions/{id}/approve"), json!({})).await;
    assert_eq!(code, 403, "operators cannot approve");
    let (code, v) = post(
        &admin,
        "/api/v1/exclusions",
        json!({"kind": "maintenance", "matchers": ["instance=\"db9\""], "from_ms": now,
               "to_ms": now + 60_000, "reason": "自审测试", "by": "someone-else"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let own = v["data"]["id"].as_str().unwrap().to_string();
    let (code, _) = post(
        &admin,
        &format!("/api/v1/exclusions/{own}/approve"),
        json!({"by": "office-reviewer"}),
    )
    .await;
    assert_eq!(code, 403, "no self-approval");
    // Pending: not muting yet.
    state.notify.alerts(vec![alert("db1")]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a pending window mutes nothing"
    );

    let (code, v) = post(
        &rev,
        &format!("/api/v1/exclusions/{id}/approve"),
        json!({"comment": "同意"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = post(&rev, &format!("/api/v1/exclusions/{id}/reject"), json!({})).await;
    assert_eq!(code, 409, "reviewed once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    state
        .notify
        .alerts(vec![alert("db2"), alert("db1-replica")]);
    let mut second = alert("db1");
    second.labels.insert("job".into(), "mysql".into());
    state.notify.alerts(vec![second]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .skip(1)
        .map(|v| v["groupLabels"]["instance"].as_str().unwrap().to_string())
        .collect();
    assert!(!got.contains(&"db1".to_string()), "db1 is muted: {got:?}");
    assert!(
        got.contains(&"db2".to_string()) && got.contains(&"db1-replica".to_string()),
        "{got:?}"
    );
    let rows = state.store.exclusions().await.unwrap();
    let row = rows.iter().find(|r| r.id == id).unwrap();
    assert_eq!(row.status, "approved");
    assert_eq!(row.requested_by, "token:operator");
    assert_eq!(row.reviewed_by.as_deref(), Some("token:office-reviewer"));
    let own = rows.iter().find(|r| r.id == own).unwrap();
    assert_eq!(
        (own.requested_by.as_str(), own.status.as_str()),
        ("token:admin", "pending")
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    hook_task.abort();
}
