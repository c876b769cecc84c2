//! Robots and webhooks through the real dispatcher: an in-process server sends one alert group
//! to a receiver on loopback (allow-listed) that records what DingTalk, Feishu, WeCom and a
//! generic webhook would receive. The DingTalk and Feishu signatures are checked against values
//! computed independently by Python's `hmac` module (`/usr/bin/python3 -c ...`), both for the
//! live requests and for a fixed known-answer vector.

use std::{
    collections::BTreeMap,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::Uri, routing::post};
use serde_json::Value;
use yunwei_server::{
    Server,
    config::{Overrides, ServerConfig},
    notify::{
        deliver::{dingtalk_sign, feishu_sign},
        engine::AlertEntry,
    },
};
use yunwei_tests::ci;

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn record(State(seen): State<Seen>, uri: Uri, body: Bytes) -> &'static str {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((uri.to_string(), v));
    "{\"errcode\":0,\"code\":0}"
}

/// Python's answer, or `None` (SKIP) without a Python 3 when not on CI.
fn python(code: &str) -> Option<String> {
    match Command::new("/usr/bin/python3").args(["-c", code]).output() {
        Ok(o) if o.status.success() => Some(String::from_utf8(o.stdout).unwrap().trim().into()),
        other => {
            assert!(!ci(), "/usr/bin/python3 is required on CI: {other:?}");
            eprintln!("SKIP: /usr/bin/python3 not usable");
            None
        }
    }
}

fn py_dingtalk(secret: &str, ts_ms: &str) -> Option<String> {
    python(&format!(
        "import base64,hashlib,hmac,urllib.parse;s={secret:?};t={ts_ms:?};\
         print(urllib.parse.quote_plus(base64.b64encode(hmac.new(s.encode(),(t+'\\n'+s).encode(),hashlib.sha256).digest())))"
    ))
}

fn py_feishu(secret: &str, ts_s: &str) -> Option<String> {
    python(&format!(
        "import base64,hashlib,hmac;s={secret:?};t={ts_s:?};\
         print(base64.b64encode(hmac.new((t+'\\n'+s).encode(),b'',hashlib.sha256).digest()).decode())"
    ))
}

#[test]
fn signatures_match_known_answers_from_python() {
    let Some(d) = py_dingtalk("SECabc123", "1700000000000") else {
        return;
    };
    assert_eq!(dingtalk_sign("SECabc123", 1_700_000_000_000), d);
    let f = py_feishu("feishu-secret", "1700000000").unwrap();
    assert_eq!(feishu_sign("feishu-secret", 1_700_000_000), f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alert_reaches_every_robot_signed_and_as_plain_text() {
    if python("print(1)").is_none() {
        return;
    }
    let seen: Seen = Arc::default();
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let app = Router::new()
        .route("/{*path}", post(record))
        .with_state(seen.clone());
    let hook_task = tokio::spawn(async move { axum::serve(hook, app).await });

    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://{hook_addr}");
    let yaml = format!(
        "notify:\n  \
         receivers:\n    - name: robots\n      \
         dingtalk: [{{url: '{base}/dingtalk?access_token=TOKEN', secret: SECdd}}]\n      \
         feishu: [{{url: '{base}/feishu/hook', secret: fs-secret}}]\n      \
         wecom: [{{url: '{base}/wecom?key=KEY'}}]\n      \
         webhook: [{{url: '{base}/am'}}]\n  \
         route: {{receiver: robots, group_by: [alertname], group_wait: 0s, group_interval: 1s}}\n  \
         allow_private_networks: [127.0.0.1/32]\n"
    );
    let config = ServerConfig::parse(
        &yaml,
        "robots.yaml",
        &Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().to_path_buf()),
            database_url: None,
        },
    )
    .unwrap();
    let server = Server::bind(config).await.unwrap();
    let state = server.state();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));

    let hostile = "web1 **@all** [x](http://evil)\n<b>";
    state.notify.alerts(vec![AlertEntry {
        labels: BTreeMap::from([
            ("alertname".into(), "PortalDown".into()),
            ("instance".into(), hostile.into()),
        ]),
        annotations: BTreeMap::from([("summary".into(), "门户网站不可用".into())]),
        starts_at_ms: yunwei_tests::now_ms(),
        ends_at_ms: Some(yunwei_tests::now_ms() + 60_000),
        resolved: false,
    }]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "got {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let by = |p: &str| seen.iter().find(|(u, _)| u.starts_with(p)).unwrap().clone();

    // DingTalk: timestamp in ms and the signature Python computes for it.
    let (uri, body) = by("/dingtalk");
    let q: BTreeMap<&str, &str> = uri
        .split_once('?')
        .unwrap()
        .1
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(q["access_token"], "TOKEN");
    let ts = q["timestamp"];
    assert!(ts.len() == 13, "milliseconds: {ts}");
    assert_eq!(q["sign"], py_dingtalk("SECdd", ts).unwrap());
    assert_eq!(body["msgtype"], "markdown");
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.contains("门户网站不可用"), "{text}");
    assert!(
        !text.contains("@all") && !text.contains("**@") && !text.contains("](http://evil)"),
        "{text}"
    );
    assert_eq!(body["at"]["isAtAll"], false);

    // Feishu: timestamp in seconds, key and message the other way round.
    let (_, body) = by("/feishu/hook");
    let ts = body["timestamp"].as_str().unwrap();
    assert!(ts.len() == 10, "seconds: {ts}");
    assert_eq!(
        body["sign"].as_str().unwrap(),
        py_feishu("fs-secret", ts).unwrap()
    );
    assert_eq!(body["msg_type"], "text");

    // WeCom: markdown, the key stays in the URL.
    let (uri, body) = by("/wecom");
    assert!(uri.ends_with("key=KEY"), "{uri}");
    assert!(
        body["markdown"]["content"]
            .as_str()
            .unwrap()
            .contains("PortalDown")
    );

    // The generic webhook: Alertmanager's v4 payload with the label value verbatim.
    let (_, body) = by("/am");
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "robots");
    assert_eq!(body["groupLabels"]["alertname"], "PortalDown");
    assert_eq!(body["alerts"][0]["labels"]["instance"], hostile);
    assert_eq!(body["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);

    // Every delivery is in the log.
    let log = state.store.notify_log(None, 10).await.unwrap();
    let mut channels: Vec<&str> = log
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.channel.as_str())
        .collect();
    channels.sort();
    assert_eq!(channels, ["dingtalk", "feishu", "webhook", "wecom"]);
    assert!(
        log.iter()
            .all(|r| !r.target.contains("KEY") && !r.target.contains("TOKEN"))
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    hook_task.abort();
}

/// A burst of 30 alert groups for one DingTalk robot: what its limit (20 a minute, kept at 19)
/// lets through goes as 18 single messages, and the 19th is one digest of the other 12; every
/// notification's delivery is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_robot_limit_goes_as_a_digest() {
    let seen: Seen = Arc::default();
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let app = Router::new()
        .route("/{*path}", post(record))
        .with_state(seen.clone());
    let hook_task = tokio::spawn(async move { axum::serve(hook, app).await });
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "notify:\n  \
         receivers:\n    - name: robots\n      \
         dingtalk: [{{url: 'http://{hook_addr}/dingtalk?access_token=T', secret: SECdd}}]\n  \
         route: {{receiver: robots, group_by: [alertname], group_wait: 0s, group_interval: 1s}}\n  \
         allow_private_networks: [127.0.0.1/32]\n"
    );
    let config = ServerConfig::parse(
        &yaml,
        "robots.yaml",
        &Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().to_path_buf()),
            database_url: None,
        },
    )
    .unwrap();
    let server = Server::bind(config).await.unwrap();
    let state = server.state();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));

    let now = yunwei_tests::now_ms();
    state.notify.alerts(
        (0..30)
            .map(|i| AlertEntry {
                labels: BTreeMap::from([("alertname".into(), format!("Down{i:02}"))]),
                annotations: BTreeMap::new(),
                starts_at_ms: now,
                ends_at_ms: Some(now + 600_000),
                resolved: false,
            })
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = state
            .store
            .notify_log(None, 100)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.ok && r.channel == "dingtalk")
            .count();
        if ok == 30 {
            break;
        }
        assert!(Instant::now() < deadline, "{ok} of 30 delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing else follows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 19, "one message per minute slot");
    let texts: Vec<&str> = seen
        .iter()
        .map(|(_, b)| b["markdown"]["text"].as_str().unwrap())
        .collect();
    let digests: Vec<&&str> = texts.iter().filter(|t| t.contains("汇总")).collect();
    assert_eq!(digests.len(), 1, "{texts:?}");
    assert!(digests[0].contains("12 条告警通知"), "{}", digests[0]);
    // Every alert is in exactly one message.
    for i in 0..30 {
        let name = format!("Down{i:02}");
        assert_eq!(
            texts.iter().filter(|t| t.contains(&name)).count(),
            1,
            "{name}"
        );
    }

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    hook_task.abort();
}
