//! Reserved label names on SQLite and PostgreSQL: a sample cannot carry another host's identity.
//! The server attaches `instance` (and selects hosts by `agent_id`, `hostname` and inventory
//! labels) itself; a sample's own label of such a name is stored as `exported_<name>`.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use yunwei_proto::Sample;
use yunwei_rules::promql::{Options, Value, eval_instant};
use yunwei_tests::{batch, now_ms};

yunwei_tests::both_backends!(a_sample_cannot_present_as_another_host);

async fn a_sample_cannot_present_as_another_host(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let a = h.client.enroll("db-01").await.unwrap();
    let b = h.client.enroll("web-01").await.unwrap();
    let t = now_ms() - 1_000;
    let load = |labels: &[(&str, &str)], value: f64| Sample {
        name: "node_load1".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        ts_ms: t,
    };
    let mut ba = batch(&a, "db-01", 1, t, 0);
    ba.samples.push(load(&[], 1.0));
    h.ok(&a, &ba).await;
    // Host B claims host A's instance, and an inventory label of its own.
    let mut bb = batch(&b, "web-01", 1, t, 0);
    bb.samples
        .push(load(&[("instance", "db-01"), ("system", "别的系统")], 99.0));
    h.ok(&b, &bb).await;

    // Stored renamed, so it can never collide.
    let stored = h.state.store.series_named("node_load1").await.unwrap();
    let theirs = stored.iter().find(|s| s.agent_id == b.agent_id).unwrap();
    assert_eq!(
        theirs.labels,
        BTreeMap::from([
            ("exported_instance".to_string(), "db-01".to_string()),
            ("exported_system".to_string(), "别的系统".to_string()),
        ])
    );

    // The read API: only host A's series answers to A's instance.
    let v = h
        .client
        .get_json(r#"/api/v1/yunwei/series?match=node_load1%7Binstance%3D%22db-01%22%7D"#)
        .await
        .unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{v}");
    assert_eq!(result[0]["values"][0][1], "1", "{v}");
    let v = h
        .client
        .get_json(r#"/api/v1/yunwei/series?match=node_load1%7Bexported_instance%3D%22db-01%22%7D"#)
        .await
        .unwrap();
    let m = &v["data"]["result"][0]["metric"];
    assert_eq!(
        (
            &m["instance"],
            &m["system"],
            &m["exported_system"],
            &v["data"]["result"].as_array().unwrap().len()
        ),
        (
            &serde_json::json!("web-01"),
            &serde_json::json!("政务服务网"),
            &serde_json::json!("别的系统"),
            &1
        ),
        "{v}"
    );

    // The live window the rules read: the same.
    let rows = {
        let w = h.state.live.window.read().unwrap();
        match eval_instant(
            r#"node_load1{instance="db-01"}"#,
            t + 1,
            &w.storage,
            &Options::default(),
        )
        .unwrap()
        {
            Value::InstantVector(v) => v.iter().map(|s| s.v).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(rows, vec![1.0]);

    let metrics = h.client.get_text("/metrics").await.unwrap();
    assert!(
        metrics.contains("yunwei_ingest_labels_renamed_total 2"),
        "{metrics}"
    );
    h.stop().await;
}
