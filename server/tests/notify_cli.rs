//! `yunwei-server alerts ...` and `silences ...` against an in-process server: acknowledge and
//! unacknowledge a group (each recorded with who and how), add, list and expire a silence.

use std::{collections::BTreeMap, process::Command, time::Duration};

use yunwei_server::{
    Server,
    config::{Overrides, ServerConfig},
    notify::engine::AlertEntry,
};

fn cli(server: &str, token: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_yunwei-server"))
        .args(args.iter().take(1))
        .args(["--server", server])
        .env("YUNWEI_TOKEN", token)
        .args(&args[1..])
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_unack_and_silences_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "notify:\n  receivers: [{name: hook, webhook: [{url: 'http://127.0.0.1:9/x'}]}]\n  \
                route: {receiver: hook, group_wait: 1h}\n";
    let config = ServerConfig::parse(
        yaml,
        "cli.yaml",
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
    state.notify.alerts(vec![AlertEntry {
        labels: BTreeMap::from([("alertname".into(), "DiskFull".into())]),
        annotations: BTreeMap::new(),
        starts_at_ms: 0,
        ends_at_ms: None,
        resolved: false,
    }]);
    let mut groups = Vec::new();
    for _ in 0..100 {
        groups = state.notify.groups().await;
        if !groups.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = groups[0].id.clone();

    // Each operator acts with a token of their own; the server records the token's user, so
    // `--by` cannot speak for someone else.
    let mut tokens = Vec::new();
    for name in ["zhangsan", "lisi", "wangwu"] {
        tokens.push(
            yunwei_server::auth::users::create_token(
                &state.store,
                name,
                yunwei_server::auth::Role::Operator,
                &[],
                None,
                yunwei_tests::now_ms(),
            )
            .await
            .unwrap(),
        );
    }
    let (t1, t2, t3) = (tokens[0].clone(), tokens[1].clone(), tokens[2].clone());
    let b = base.clone();
    let id2 = id.clone();
    let out = tokio::task::spawn_blocking(move || {
        vec![
            cli(&b, &t1, &["alerts", "ack", &id2, "--by", "张三"]),
            cli(&b, &t2, &["alerts", "unack", &id2, "--by", "张三"]),
            cli(&b, &t1, &["alerts", "list"]),
            cli(&b, &t1, &["alerts", "ack", "nosuchgroup"]),
            cli(
                &b,
                &t3,
                &[
                    "silences",
                    "add",
                    "alertname=\"DiskFull\"",
                    "--for",
                    "2h",
                    "--by",
                    "王五",
                    "--comment",
                    "扩容",
                ],
            ),
        ]
    })
    .await
    .unwrap();
    assert!(out[0].0 && out[1].0 && out[2].0, "{out:?}");
    assert!(
        out[2].1.contains(&id) && out[2].1.contains("acked_by=-"),
        "{out:?}"
    );
    assert!(!out[3].0 && out[3].1.contains("404"), "{out:?}");
    assert!(out[4].0, "{out:?}");
    let acks = state.store.notify_acks(&id).await.unwrap();
    assert_eq!(
        acks.iter()
            .map(|a| (a.action.as_str(), a.actor.as_str(), a.via.as_str()))
            .collect::<Vec<_>>(),
        [
            ("ack", "token:zhangsan", "api"),
            ("unack", "token:lisi", "api")
        ]
    );
    let silences = state.store.silences().await.unwrap();
    assert_eq!(silences.len(), 1);
    assert_eq!(silences[0].created_by, "token:wangwu");
    assert!(silences[0].ends_ms - silences[0].starts_ms >= 7_190_000);
    let sid = silences[0].id.clone();
    let b = base.clone();
    let t = tokens[0].clone();
    let (ok, _) = tokio::task::spawn_blocking(move || cli(&b, &t, &["silences", "expire", &sid]))
        .await
        .unwrap();
    assert!(ok);
    // The list states each silence's state at the server's clock.
    let b = base.clone();
    let t = tokens[0].clone();
    let (ok, out) = tokio::task::spawn_blocking(move || cli(&b, &t, &["silences", "list"]))
        .await
        .unwrap();
    assert!(ok && out.contains("  expired  "), "{out}");
    // Without a token the server refuses.
    let b = base.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || cli(&b, "", &["alerts", "list"]))
        .await
        .unwrap();
    assert!(!ok && out.contains("401"), "{out}");
    let s = &state.store.silences().await.unwrap()[0];
    assert!(s.ends_ms <= yunwei_tests::now_ms());

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
