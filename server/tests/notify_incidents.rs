//! Incidents: an alert group whose severity maps to a level opens one with its detection time;
//! delivery stamps "notified", acknowledging the group stamps "acknowledged" with who, an
//! overdue restoration raises the level (recorded), and resolution stamps "restored". Manual
//! incidents (faults reported by phone) get on-site, restore, notes, RCA and level changes
//! through the API, each recorded once.

use std::{collections::BTreeMap, time::Duration};

use axum::{Router, routing::post};
use serde_json::{Value, json};
use yunwei_server::{
    Server,
    config::{Overrides, ServerConfig},
    notify::engine::AlertEntry,
};
use yunwei_tests::now_ms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_and_manual_incidents_keep_their_clocks() {
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let hook_task = tokio::spawn(async move {
        axum::serve(hook, Router::new().route("/am", post(|| async { "ok" }))).await
    });
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "notify:\n  receivers: [{{name: hook, webhook: [{{url: 'http://{hook_addr}/am'}}]}}]\n  \
         route: {{receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s}}\n  \
         allow_private_networks: [127.0.0.1/32]\n  \
         incidents:\n    levels:\n      - {{matchers: ['severity=\"critical\"'], level: 2}}\n      \
         - {{matchers: ['severity=\"warning\"'], level: 4}}\n    \
         escalate_if_not_restored: [{{level: 2, after: 2s}}]\n"
    );
    let config = ServerConfig::parse(
        &yaml,
        "i.yaml",
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
    // The on-duty operator acts with their own token; the server records that user.
    let duty = yunwei_server::auth::users::create_token(
        &state.store,
        "duty",
        yunwei_server::auth::Role::Operator,
        &[],
        None,
        yunwei_tests::now_ms(),
    )
    .await
    .unwrap();
    let c = reqwest::Client::new();
    let post = async |path: &str, body: Value| {
        let r = c
            .post(format!("{base}{path}"))
            .bearer_auth(&duty)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };

    let started = now_ms() - 5_000;
    let mut a = AlertEntry {
        labels: BTreeMap::from([
            ("alertname".into(), "DbDown".into()),
            ("severity".into(), "critical".into()),
        ]),
        annotations: BTreeMap::new(),
        starts_at_ms: started,
        ends_at_ms: Some(now_ms() + 600_000),
        resolved: false,
    };
    state.notify.alerts(vec![a.clone()]);
    // An info alert maps to no level: no incident.
    state.notify.alerts(vec![AlertEntry {
        labels: BTreeMap::from([("alertname".into(), "Info".into())]),
        ..a.clone()
    }]);
    let mut inc = None;
    for _ in 0..100 {
        let all = state.store.incidents(false).await.unwrap();
        if let Some(i) = all.first().filter(|i| i.notified_ms.is_some()) {
            assert_eq!(all.len(), 1, "{all:?}");
            inc = Some(i.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let inc = inc.expect("an incident, notified");
    assert_eq!((inc.level, inc.source.as_str()), (2, "alert"));
    assert_eq!(inc.detected_ms, started);
    assert_eq!(inc.title, "DbDown");
    let gid = inc.group_id.clone().unwrap();
    let (code, _) = post(
        &format!("/api/v1/notify/groups/{gid}/ack"),
        json!({"by": "张三"}),
    )
    .await;
    assert_eq!(code, 200);
    let i = state.store.incident(&inc.id).await.unwrap().unwrap();
    assert_eq!(i.acknowledged_by.as_deref(), Some("token:duty"));
    // Not restored 2 s after detection (which was 5 s ago): level 2 → 1 at the next check.
    let mut level = 2;
    for _ in 0..160 {
        level = state.store.incident(&inc.id).await.unwrap().unwrap().level;
        if level == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(level, 1, "the level went up");
    a.resolved = true;
    a.ends_at_ms = Some(now_ms());
    state.notify.alerts(vec![a]);
    let mut restored = None;
    for _ in 0..100 {
        restored = state
            .store
            .incident(&inc.id)
            .await
            .unwrap()
            .unwrap()
            .restored_ms;
        if restored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(restored.is_some(), "restored when the group resolved");
    let r = c
        .get(format!("{base}/api/v1/incidents/{}", inc.id))
        .bearer_auth(&duty)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let kinds: Vec<&str> = v["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["opened", "notified", "ack", "level", "restored"],
        "{v}"
    );

    // A fault reported by phone.
    let (code, v) = post(
        "/api/v1/incidents",
        json!({"title": "网站无法访问", "level": 5, "by": "值班员"}),
    )
    .await;
    assert_eq!((code, v["error"]["field"].as_str()), (400, Some("level")));
    let detected = now_ms() - 60_000;
    let (code, v) = post(
        "/api/v1/incidents",
        json!({"title": "网站无法访问", "level": 3, "by": "值班员", "detected_ms": detected, "note": "用户电话报障"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let id = v["data"]["id"].as_str().unwrap().to_string();
    for (action, body) in [
        ("onsite", json!({"by": "工程师"})),
        ("note", json!({"by": "工程师", "text": "更换交换机"})),
        (
            "level",
            json!({"by": "主管", "level": 2, "reason": "影响扩大"}),
        ),
        ("restore", json!({"by": "工程师"})),
        ("rca", json!({"by": "工程师", "text": "交换机电源故障"})),
    ] {
        let (code, v) = post(&format!("/api/v1/incidents/{id}/{action}"), body).await;
        assert_eq!(code, 200, "{action}: {v}");
    }
    let (code, _) = post(
        &format!("/api/v1/incidents/{id}/restore"),
        json!({"by": "x"}),
    )
    .await;
    assert_eq!(code, 409, "restored once");
    let i = state.store.incident(&id).await.unwrap().unwrap();
    assert_eq!(
        (i.level, i.source.as_str(), i.detected_ms),
        (2, "manual", detected)
    );
    assert!(i.onsite_ms.is_some() && i.restored_ms.is_some());
    assert_eq!(i.rca.as_deref(), Some("交换机电源故障"));
    let open = state.store.incidents(true).await.unwrap();
    assert!(open.is_empty(), "{open:?}");

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    hook_task.abort();
}
