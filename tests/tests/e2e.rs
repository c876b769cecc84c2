//! End-to-end tests across processes: a real `yunwei-server` (on SQLite, and again on
//! PostgreSQL) and a real `yunwei-agent`, talking over loopback.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use yunwei_tests::{AgentClient, Db, PgDatabase, ServerProcess, batch, bin, ci, free_addr, now_ms};

async fn databases() -> Vec<(Db, Option<PgDatabase>)> {
    let mut v = vec![(Db::Sqlite, None)];
    if let Some(pg) = PgDatabase::create().await {
        v.push((Db::Postgres(pg.url.clone()), Some(pg)));
    }
    v
}

/// Polls `f` until it returns `Some`, or fails after `secs`.
async fn eventually<T, F: AsyncFnMut() -> Option<T>>(secs: u64, what: &str, mut f: F) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_process_reports_host_and_samples() {
    for (db, _pg) in databases().await {
        let server = ServerProcess::start(&db, "").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.yaml");
        std::fs::write(
            &config,
            format!(
                "server_url: {}\nenrollment_secret: {}\nstate_dir: state\ninterval_secs: 1\nlabels:\n  department: 数据局\n  system: e2e\n",
                server.url(""),
                yunwei_tests::SECRET
            ),
        )
        .unwrap();
        let mut agent = Command::new(bin("yunwei-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = AgentClient::new(&server);
        let host = eventually(30, "the host in /api/v1/hosts", async || {
            let v = client.get_json("/api/v1/hosts").await.ok()?;
            let h = v["hosts"].as_array()?.first()?.clone();
            (h["status"] == "up").then_some(h)
        })
        .await;
        assert_eq!(host["labels"]["system"], "e2e", "{db:?}");
        assert!(!host["kernel"].as_str().unwrap().is_empty());
        let id = host["agent_id"].as_str().unwrap().to_string();
        for metric in [
            "node_load1",
            "node_memory_MemTotal_bytes",
            "node_cpu_seconds_total",
        ] {
            let v = eventually(30, metric, async || {
                let v = client
                    .get_json(&format!("/api/v1/yunwei/series?match={metric}"))
                    .await
                    .ok()?;
                let r = v["data"]["result"].as_array()?.clone();
                (!r.is_empty() && !r[0]["values"].as_array()?.is_empty()).then_some(r)
            })
            .await;
            assert_eq!(v[0]["metric"]["system"], "e2e", "{metric} on {db:?}");
        }
        let detail = client
            .get_json(&format!("/api/v1/hosts/{id}"))
            .await
            .unwrap();
        assert!(
            detail["timeline"]["totals_ms"]["up"].as_i64().unwrap() > 0,
            "{detail}"
        );
        let _ = Command::new("kill")
            .args(["-TERM", &agent.id().to_string()])
            .status();
        let status = agent.wait().unwrap();
        assert!(
            status.success(),
            "the agent exits cleanly on SIGTERM: {status}"
        );
    }
}

async fn test_metric_points(client: &AgentClient) -> usize {
    let from = (now_ms() - 3_600_000) / 1000;
    let v = client
        .get_json(&format!(
            "/api/v1/yunwei/series?match=test_metric&from={from}"
        ))
        .await
        .unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_is_harmless_and_acked_batches_survive_sigkill() {
    for (db, _pg) in databases().await {
        let mut server = ServerProcess::start(&db, "").await.unwrap();
        let client = AgentClient::new(&server);
        let e = client.enroll("web-01").await.unwrap();
        let t0 = now_ms() - 20 * 15_000;
        for seq in 1..=20u64 {
            let (status, body) = client
                .push(
                    &e.token,
                    &batch(&e, "web-01", seq, t0 + seq as i64 * 15_000, 10),
                )
                .await
                .unwrap();
            assert_eq!(status, 200, "{body}");
        }
        assert_eq!(test_metric_points(&client).await, 200);
        let (status, body) = client
            .push(&e.token, &batch(&e, "web-01", 5, t0 + 5 * 15_000, 10))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("\"duplicate\":true"), "{body}");
        assert_eq!(
            test_metric_points(&client).await,
            200,
            "a redelivered batch adds nothing ({db:?})"
        );

        // The ack of batch 21 arrives only after the commit, so SIGKILL right after it loses nothing.
        let (status, _) = client
            .push(&e.token, &batch(&e, "web-01", 21, now_ms(), 10))
            .await
            .unwrap();
        assert_eq!(status, 200);
        server.kill9();
        server.restart().await.unwrap();
        let client = AgentClient::new(&server);
        assert_eq!(
            test_metric_points(&client).await,
            210,
            "every acked batch survives SIGKILL ({db:?})"
        );
        let (_, body) = client
            .push(&e.token, &batch(&e, "web-01", 21, now_ms(), 10))
            .await
            .unwrap();
        assert!(
            body.contains("\"duplicate\":true"),
            "dedup survives a restart: {body}"
        );
    }
}

fn rejected(metrics: &str, reason: &str) -> u64 {
    let key = format!("yunwei_ingest_rejected_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_a_4xx_naming_the_field_are_counted_and_change_nothing() {
    for (db, _pg) in databases().await {
        let server = ServerProcess::start(&db, "").await.unwrap();
        let client = AgentClient::new(&server);
        let e = client.enroll("web-01").await.unwrap();
        let now = now_ms();
        let (status, _) = client
            .push(&e.token, &batch(&e, "web-01", 1, now, 5))
            .await
            .unwrap();
        assert_eq!(status, 200);
        let before_points = test_metric_points(&client).await;
        let before_hosts =
            client.get_json("/api/v1/hosts").await.unwrap()["hosts"][0]["last_seq"].clone();

        let good = || batch(&e, "web-01", 2, now, 5);
        let gz = yunwei_proto::gzip;
        let json = |b: &yunwei_proto::Batch| serde_json::to_value(b).unwrap();
        let mut bomb = Vec::new();
        {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(&mut bomb, flate2::Compression::best());
            // Valid JSON start, then 200 MB of spaces: only the decompressed-size limit stops it.
            enc.write_all(b"{\"version\":1,").unwrap();
            let spaces = vec![b' '; 1 << 20];
            for _ in 0..200 {
                enc.write_all(&spaces).unwrap();
            }
            enc.finish().unwrap();
        }
        let encoded = yunwei_proto::encode_batch(&good());
        let mut nan = json(&good());
        nan["samples"][3]["value"] = "NaN".into();
        let mut y2100 = json(&good());
        y2100["collected_at_ms"] = 4_102_444_800_000i64.into();
        let mut y2100_sample = json(&good());
        y2100_sample["samples"][0]["ts_ms"] = 4_102_444_800_000i64.into();
        let mut labels = json(&good());
        labels["samples"][0]["labels"] = (0..10_000)
            .map(|i| (format!("l{i}"), Value::from("v")))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let mut unknown = json(&good());
        unknown["samples"][1]["colour"] = "red".into();
        let mut unknown_top = json(&good());
        unknown_top["extra"] = 1.into();
        let mut version = json(&good());
        version["version"] = 2.into();
        let bytes = |v: &Value| gz(&serde_json::to_vec(v).unwrap());

        struct Case {
            name: &'static str,
            body: Vec<u8>,
            token: String,
            content_type: &'static str,
            status: u16,
            field: &'static str,
            reason: &'static str,
        }
        let case = |name, body, status, field, reason| Case {
            name,
            body,
            token: e.token.clone(),
            content_type: yunwei_proto::CONTENT_TYPE,
            status,
            field,
            reason,
        };
        let cases = vec![
            case(
                "truncated body",
                encoded[..encoded.len() / 2].to_vec(),
                400,
                "body",
                "compression",
            ),
            case(
                "compression bomb",
                bomb,
                413,
                "body",
                "decompressed_too_large",
            ),
            case(
                "NaN value",
                bytes(&nan),
                400,
                "samples[3].value",
                "invalid_value",
            ),
            case(
                "year-2100 batch",
                bytes(&y2100),
                400,
                "collected_at_ms",
                "invalid_value",
            ),
            case(
                "year-2100 sample",
                bytes(&y2100_sample),
                400,
                "samples[0].ts_ms",
                "invalid_value",
            ),
            case(
                "10,000 labels",
                bytes(&labels),
                400,
                "samples[0].labels",
                "invalid_value",
            ),
            case(
                "unknown sample field",
                bytes(&unknown),
                400,
                "samples[1].colour",
                "unknown_field",
            ),
            case(
                "unknown top-level field",
                bytes(&unknown_top),
                400,
                "extra",
                "unknown_field",
            ),
            case(
                "protocol version 2 in the body",
                bytes(&version),
                400,
                "version",
                "version",
            ),
            Case {
                content_type: "application/vnd.yunwei.batch+json; version=2",
                ..case(
                    "protocol version 2 in the header",
                    encoded.clone(),
                    415,
                    "content-type",
                    "content_type",
                )
            },
            Case {
                token: "not-a-token".into(),
                ..case(
                    "wrong token",
                    encoded.clone(),
                    401,
                    "authorization",
                    "unauthenticated",
                )
            },
        ];
        for c in cases {
            let metrics_before = client.get_text("/metrics").await.unwrap();
            let r = client
                .http
                .post(server.url("/api/v1/ingest"))
                .header("content-type", c.content_type)
                .header("content-encoding", "gzip")
                .bearer_auth(&c.token)
                .body(c.body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, c.status, "{}: {body} ({db:?})", c.name);
            assert_eq!(body["error"]["field"], c.field, "{}: {body}", c.name);
            assert_eq!(body["error"]["kind"], c.reason, "{}: {body}", c.name);
            let metrics_after = client.get_text("/metrics").await.unwrap();
            assert_eq!(
                rejected(&metrics_after, c.reason),
                rejected(&metrics_before, c.reason) + 1,
                "{}: counted under reason {}",
                c.name,
                c.reason
            );
        }
        // A 10 MB body: announced by Content-Length it is refused before the body is read; sent
        // chunked (no length) the server stops reading at the limit.
        for chunked in [false, true] {
            let metrics_before = client.get_text("/metrics").await.unwrap();
            let (status, body) = raw_oversized_post(&server, &e.token, 10 << 20, chunked).await;
            assert_eq!(status, 413, "10 MB body, chunked={chunked}: {body}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"]["field"], "body");
            let metrics_after = client.get_text("/metrics").await.unwrap();
            assert_eq!(
                rejected(&metrics_after, "body_too_large"),
                rejected(&metrics_before, "body_too_large") + 1
            );
        }
        assert_eq!(
            test_metric_points(&client).await,
            before_points,
            "stored data unchanged ({db:?})"
        );
        let after_hosts =
            client.get_json("/api/v1/hosts").await.unwrap()["hosts"][0]["last_seq"].clone();
        assert_eq!(after_hosts, before_hosts);
        // The good batch is still accepted afterwards.
        let (status, _) = client.push(&e.token, &good()).await.unwrap();
        assert_eq!(status, 200);
        assert!(
            server.log().lines().all(|l| !l.contains("panicked")),
            "no panic in the server log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_endpoint() {
    let Ok(out) = Command::new("promtool").arg("--version").output() else {
        assert!(
            !ci(),
            "CI=true and promtool (Debian package prometheus) is not installed"
        );
        eprintln!("SKIP: promtool not installed");
        return;
    };
    assert!(out.status.success());
    let server = ServerProcess::start(&Db::Sqlite, "").await.unwrap();
    let client = AgentClient::new(&server);
    let e = client.enroll("web-01").await.unwrap();
    client
        .push(&e.token, &batch(&e, "web-01", 1, now_ms(), 5))
        .await
        .unwrap();
    client
        .push_body(&e.token, b"garbage".to_vec())
        .await
        .unwrap();
    let text = client.get_text("/metrics").await.unwrap();
    assert!(text.contains("yunwei_host_up{agent_id="), "{text}");
    assert!(
        text.contains("yunwei_host_last_batch_age_seconds{"),
        "{text}"
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_serves_a_reporting_local_agent() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    // The read API needs credentials: a token made in the data dir before the start.
    let token = {
        let out = Command::new(bin("yunwei-server"))
            .args([
                "token",
                "create",
                "--name",
                "e2e",
                "--role",
                "reviewer",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let mut qs = Command::new(bin("yunwei-server"))
        .args([
            "quickstart",
            "--listen",
            &addr.to_string(),
            "--agent-interval-secs",
            "1",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = AgentClient::for_base(&format!("http://{addr}")).with_token(&token);
    let host = eventually(60, "the quickstart agent", async || {
        let v = client.get_json("/api/v1/hosts").await.ok()?;
        let h = v["hosts"].as_array()?.first()?.clone();
        (h["status"] == "up" && h["last_seq"].as_i64()? >= 2).then_some(h)
    })
    .await;
    assert_eq!(host["labels"]["system"], "quickstart");
    let rules = client.get_json("/api/v1/rules").await.unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert!(
        groups.len() >= 2,
        "quickstart loads the shipped rules: {rules}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &qs.id().to_string()])
        .status();
    let status = qs.wait().unwrap();
    assert!(
        status.success(),
        "quickstart exits cleanly on SIGTERM: {status}"
    );
    let mut out = String::new();
    use std::io::Read;
    qs.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(
        out.contains(&format!("http://{addr}/api/v1/hosts")),
        "prints the URLs: {out}"
    );
    // A token existed but no user: quickstart made `admin` and printed its password once.
    let password = out
        .split("password: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("prints the admin password: {out}"));
    assert!(password.len() >= 10, "{out}");
}

/// POSTs an oversized ingest body over a raw connection. With `chunked == false` only the
/// headers are sent (Content-Length announces `len`), with `chunked == true` one chunk just over
/// the server's 1 MiB limit is sent and not terminated; then the response is read. Sending all
/// of it would make the server reset the connection with unread data, losing the response.
async fn raw_oversized_post(
    server: &ServerProcess,
    token: &str,
    len: usize,
    chunked: bool,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {len}")
    };
    let head = format!(
        "POST /api/v1/ingest HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: {}\r\n\
         Content-Encoding: gzip\r\n{framing}\r\nConnection: close\r\n\r\n",
        server.addr,
        yunwei_proto::CONTENT_TYPE
    );
    s.write_all(head.as_bytes()).await.unwrap();
    if chunked {
        let n = (1 << 20) + 1;
        s.write_all(format!("{n:x}\r\n").as_bytes()).await.unwrap();
        s.write_all(&vec![0u8; n]).await.unwrap();
    }
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}
