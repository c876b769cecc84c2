//! Prometheus remote write (`POST /api/v1/write`, issue 20): real snappy + protobuf bodies,
//! encoded here independently of the server's decoder, against an in-process server on SQLite
//! and on PostgreSQL. A sender made by an admin (audited) authenticates with bearer or basic
//! credentials; the agents' limits refuse what they refuse for agents, each counted; a retried
//! request stores nothing twice, even after a restart, and a different value for a stored
//! point is refused; the samples are in the Prometheus query API and the inventory under their
//! `instance`, with their provenance.

mod common;

use common::Harness;
use reqwest::Method;
use serde_json::{Value as J, json};
use yunwei_tests::now_ms;

// ---- a minimal protobuf encoder for prometheus.WriteRequest ----------------------------------

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(field: u64, b: &[u8], out: &mut Vec<u8>) {
    varint((field << 3) | 2, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// One series: labels (with `__name__`) and (timestamp ms, value) samples.
struct Series {
    labels: Vec<(String, String)>,
    samples: Vec<(i64, f64)>,
}

fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
    let mut l = vec![("__name__".to_string(), name.to_string())];
    l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Series {
        labels: l,
        samples: samples.to_vec(),
    }
}

fn encode(req: &[Series]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in req {
        let mut ts = Vec::new();
        for (k, v) in &s.labels {
            let mut l = Vec::new();
            len_field(1, k.as_bytes(), &mut l);
            len_field(2, v.as_bytes(), &mut l);
            len_field(1, &l, &mut ts);
        }
        for (t, v) in &s.samples {
            let mut sm = Vec::new();
            varint(1 << 3 | 1, &mut sm);
            sm.extend_from_slice(&v.to_le_bytes());
            varint(2 << 3, &mut sm);
            varint(*t as u64, &mut sm);
            len_field(2, &sm, &mut ts);
        }
        len_field(1, &ts, &mut out);
    }
    // A metadata entry (field 3), which the server skips.
    let mut md = Vec::new();
    varint(1 << 3, &mut md);
    varint(1, &mut md);
    len_field(3, &md, &mut out);
    out
}

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

/// How a request authenticates.
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

async fn post(h: &Harness, auth: Auth<'_>, body: Vec<u8>, encoding: &str) -> (u16, J) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/api/v1/write", h.client.base()))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", encoding)
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("User-Agent", "Prometheus/2.42.0")
        .body(body);
    r = match auth {
        Auth::None => r,
        Auth::Bearer(t) => r.bearer_auth(t),
        Auth::Basic(u, p) => r.basic_auth(u, Some(p)),
    };
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(J::Null))
}

async fn write(h: &Harness, token: &str, req: &[Series]) -> (u16, J) {
    post(h, Auth::Bearer(token), snappy(&encode(req)), "snappy").await
}

async fn query(h: &Harness, q: &str) -> Vec<J> {
    let v = h
        .client
        .get_json(&format!(
            "/api/v1/query?query={}",
            q.replace('+', "%2B")
                .replace(' ', "%20")
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('[', "%5B")
                .replace(']', "%5D")
                .replace('=', "%3D")
        ))
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].as_array().unwrap().clone()
}

/// The value of the first series of an instant query.
async fn value(h: &Harness, q: &str) -> f64 {
    let r = query(h, q).await;
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// A counter of the server's `/metrics`, e.g. `yunwei_ingest_rejected_total{reason="series_limit"}`.
async fn metric(h: &Harness, series: &str) -> f64 {
    let text = h.client.get_text("/metrics").await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

async fn run(backend: &str) {
    let Some(h) = Harness::start(backend, |c| {
        c.ingest.max_series_per_agent = 6;
    })
    .await
    else {
        return;
    };

    // A sender is made by an admin, audited; its token is shown once.
    let resp = h
        .client
        .api(Method::POST, "/api/v1/remote-write/senders")
        .json(&json!({ "name": "prom-a" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let made: J = resp.json().await.unwrap();
    let token = made["token"].as_str().unwrap().to_string();
    let again = h
        .client
        .api(Method::POST, "/api/v1/remote-write/senders")
        .json(&json!({ "name": "prom-a" }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "a sender's name is taken once");
    let bad = h
        .client
        .api(Method::POST, "/api/v1/remote-write/senders")
        .json(&json!({ "name": "Prom A" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let audit = h.client.get_json("/api/v1/audit").await.unwrap();
    let rows = audit["entries"]
        .as_array()
        .or(audit["rows"].as_array())
        .or(audit.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        rows.iter().any(|r| r["target"]
            .as_str()
            .is_some_and(|t| t.contains("remote-write/senders"))
            && r["result"] == "success"),
        "the sender's creation is audited: {audit}"
    );

    let t = (now_ms() / 1000) * 1000 - 120_000;
    let inst = [("instance", "web-01:9100"), ("job", "node")];
    let first = vec![
        series(
            "node_load1",
            &inst,
            &[(t, 0.5), (t + 15_000, 0.75), (t + 30_000, 1.25)],
        ),
        series(
            "up",
            &inst,
            &[(t, 1.0), (t + 15_000, 1.0), (t + 30_000, 1.0)],
        ),
        // A staleness marker (NaN) is left out, not refused.
        series(
            "node_load5",
            &inst,
            &[(t, 0.25), (t + 15_000, f64::from_bits(0x7ff0000000000002))],
        ),
    ];

    // Authentication: none, a wrong token, an API token are all refused.
    let body = snappy(&encode(&first));
    let (s, e) = post(&h, Auth::None, body.clone(), "snappy").await;
    assert_eq!(
        (s, e["error"]["kind"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (s, _) = post(&h, Auth::Bearer("0123abcd"), body.clone(), "snappy").await;
    assert_eq!(s, 401);
    let admin = common::admin_token(&h.state).await;
    let (s, _) = post(&h, Auth::Bearer(&admin), body.clone(), "snappy").await;
    assert_eq!(s, 401, "an API token is not a sender token");

    // Malformed requests: 4xx naming what is wrong, nothing stored.
    let (s, e) = post(&h, Auth::Bearer(&token), body.clone(), "gzip").await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (415, Some("content-encoding"))
    );
    // A snappy header announcing 4 GiB is refused before anything is decompressed.
    let (s, e) = post(
        &h,
        Auth::Bearer(&token),
        b"\xff\xff\xff\xff\x0f".to_vec(),
        "snappy",
    )
    .await;
    assert_eq!(
        (s, e["error"]["kind"].as_str()),
        (413, Some("decompressed_too_large")),
        "{e}"
    );
    let (s, e) = post(
        &h,
        Auth::Bearer(&token),
        b"\x0a\xff\xff\xff".to_vec(),
        "snappy",
    )
    .await;
    assert_eq!(
        (s, e["error"]["kind"].as_str()),
        (400, Some("compression")),
        "{e}"
    );
    let (s, e) = post(
        &h,
        Auth::Bearer(&token),
        snappy(b"\x0a\x05\x0a\x03"),
        "snappy",
    )
    .await;
    assert_eq!(
        (s, e["error"]["kind"].as_str()),
        (400, Some("schema")),
        "{e}"
    );
    let unnamed = vec![Series {
        labels: vec![("job".into(), "node".into())],
        samples: vec![(t, 1.0)],
    }];
    let (s, e) = write(&h, &token, &unnamed).await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (400, Some("timeseries[0].labels")),
        "{e}"
    );
    let many: Vec<(String, String)> = (0..40).map(|i| (format!("l{i}"), "x".into())).collect();
    let mut wide = series("wide", &[], &[(t, 1.0)]);
    wide.labels.extend(many);
    let (s, e) = write(&h, &token, &[wide]).await;
    assert_eq!(
        (s, e["error"]["kind"].as_str()),
        (400, Some("invalid_value")),
        "{e}"
    );
    let (s, e) = write(
        &h,
        &token,
        &[series("old", &inst, &[(t - 15 * 86_400_000, 1.0)])],
    )
    .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (400, Some("timeseries[0].samples[0].timestamp")),
        "{e}"
    );
    assert!(query(&h, "wide").await.is_empty());

    // Stored, acknowledged after commit, visible to the query API with its provenance.
    let (s, e) = write(&h, &token, &first).await;
    assert_eq!(s, 204, "{e}");
    let at = |q: &str| format!("{q}&time={}", (t + 30_000) / 1000);
    let r = query(&h, &at("node_load1")).await;
    assert_eq!(r.len(), 1, "{r:?}");
    let m = &r[0]["metric"];
    assert_eq!(m["instance"], "web-01:9100");
    assert_eq!(m["job"], "node");
    assert_eq!(m["remote_write_sender"], "prom-a");
    assert_eq!(r[0]["value"][1], "1.25");
    let count = format!(
        "count_over_time(node_load1[5m])&time={}",
        (t + 30_000) / 1000
    );
    assert_eq!(value(&h, &count).await, 3.0);
    assert_eq!(
        value(
            &h,
            &format!(
                "count_over_time(node_load5[5m])&time={}",
                (t + 30_000) / 1000
            )
        )
        .await,
        1.0,
        "the staleness marker is not stored"
    );

    // A retried request stores nothing twice; basic credentials work as well.
    let dup_before = metric(
        &h,
        "yunwei_remote_write_samples_total{outcome=\"duplicate\"}",
    )
    .await;
    let (s, _) = post(
        &h,
        Auth::Basic("prom-a", &token),
        snappy(&encode(&first)),
        "snappy",
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(value(&h, &count).await, 3.0, "a retry stores nothing twice");
    let dup_after = metric(
        &h,
        "yunwei_remote_write_samples_total{outcome=\"duplicate\"}",
    )
    .await;
    // node_load1 and up: the newest point of each is a duplicate; the older ones are behind it.
    assert!(dup_after >= dup_before + 2.0, "{dup_before} -> {dup_after}");

    // Another value for a stored point is refused and counted; the first stays.
    let conflicts = metric(
        &h,
        "yunwei_remote_write_samples_total{outcome=\"conflict\"}",
    )
    .await;
    let (s, _) = write(
        &h,
        &token,
        &[series("node_load1", &inst, &[(t + 30_000, 9.0)])],
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(r[0]["value"][1], "1.25");
    assert_eq!(
        query(&h, &at("node_load1")).await[0]["value"][1],
        "1.25",
        "the stored point keeps its first value"
    );
    assert_eq!(
        metric(
            &h,
            "yunwei_remote_write_samples_total{outcome=\"conflict\"}"
        )
        .await,
        conflicts + 1.0
    );

    // Inventory: the host is there by its instance, made by remote write.
    let hosts = h.client.get_json("/api/v1/hosts").await.unwrap();
    let host = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["hostname"] == "web-01:9100")
        .unwrap_or_else(|| panic!("no host web-01:9100 in {hosts}"))
        .clone();
    assert_eq!(host["labels"]["remote_write_sender"], "prom-a", "{host}");
    let senders = h
        .client
        .get_json("/api/v1/remote-write/senders")
        .await
        .unwrap();
    assert_eq!(senders["senders"][0]["hosts"][0]["instance"], "web-01:9100");
    assert_eq!(
        senders["senders"][0]["hosts"][0]["agent_id"],
        host["agent_id"]
    );

    // The series limit is the sender's, over all its hosts (3 stored; 6 allowed).
    let rejected = metric(&h, "yunwei_ingest_rejected_total{reason=\"series_limit\"}").await;
    let other = [("instance", "db-01:9100"), ("job", "node")];
    let four: Vec<Series> = (0..4)
        .map(|i| series(&format!("m{i}"), &other, &[(t, 1.0)]))
        .collect();
    let (s, e) = write(&h, &token, &four).await;
    assert_eq!(
        (s, e["error"]["kind"].as_str()),
        (400, Some("series_limit")),
        "{e}"
    );
    assert_eq!(e["error"]["field"], "timeseries[3].samples[0]");
    assert_eq!(
        metric(&h, "yunwei_ingest_rejected_total{reason=\"series_limit\"}").await,
        rejected + 1.0
    );
    assert!(
        query(&h, "m0").await.is_empty(),
        "a refused request stores nothing"
    );
    let (s, _) = write(&h, &token, &four[..3]).await;
    assert_eq!(s, 204);

    // After a restart a retry is still recognised (the newest points are stored).
    let h = h.restart(|_| {}).await;
    let (s, _) = write(&h, &token, &first).await;
    assert_eq!(s, 204);
    assert_eq!(
        value(&h, &count).await,
        3.0,
        "a retry after a restart stores nothing twice"
    );
    let (s, _) = write(
        &h,
        &token,
        &[series("node_load1", &inst, &[(t + 45_000, 2.0)])],
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        value(
            &h,
            &format!(
                "count_over_time(node_load1[5m])&time={}",
                (t + 45_000) / 1000
            )
        )
        .await,
        4.0
    );

    // A revoked sender is refused from its next request on.
    let resp = h
        .client
        .api(Method::POST, "/api/v1/remote-write/senders/prom-a/revoke")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (s, _) = write(&h, &token, &first).await;
    assert_eq!(s, 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_on_sqlite() {
    run("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_on_postgres() {
    run("postgres").await;
}

/// A remote-written host is assigned to a contract system by the office like an agent host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_written_host_is_assigned_to_a_contract_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(
        &path,
        r#"id: rw-contract
name: 远程写入合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: a, name: 系统甲, tier: core, hosts: { system: A } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
  incidents:
    - { id: P3, aliases: [三级], response: 2h, restore: 24h, window: always }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#,
    )
    .unwrap();
    let h = Harness::start("sqlite", move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
        c.contracts.scheduled_reports = false;
    })
    .await
    .unwrap();
    let made: J = h
        .client
        .api(Method::POST, "/api/v1/remote-write/senders")
        .json(&json!({ "name": "prom-b" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = made["token"].as_str().unwrap();
    let t = (now_ms() / 1000) * 1000 - 60_000;
    let inst = [("instance", "app-01:9100"), ("job", "node")];
    let (s, e) = write(&h, token, &[series("node_load1", &inst, &[(t, 0.5)])]).await;
    assert_eq!(s, 204, "{e}");
    let senders = h
        .client
        .get_json("/api/v1/remote-write/senders")
        .await
        .unwrap();
    let agent_id = senders["senders"][0]["hosts"][0]["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(agent_id.starts_with("r:prom-b:"), "{agent_id}");
    let r = h
        .client
        .api(Method::POST, "/api/v1/contracts/rw-contract/membership")
        .json(
            &json!({"action": "assign", "system": "a", "kind": "host", "subject": agent_id,
                      "reason": "工单 2026-20: fed by Prometheus"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let m = h
        .client
        .get_json("/api/v1/contracts/rw-contract/membership")
        .await
        .unwrap();
    assert!(
        m["current"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["subject"] == agent_id.as_str() && r["system_id"] == "a"),
        "{m}"
    );
    h.stop().await;
}
