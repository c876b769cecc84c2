//! Every API failure has one shape, `{"error":{"kind","field?","message"}}`, with a kind from
//! `ErrorKind`: the handlers' own errors, the extractors' (query string, path, JSON body),
//! an unknown route, a known route with the wrong method, and a body over the limit. Also the
//! Prometheus durations `?step=` accepts (`1h30m`).

mod common;

use common::Harness;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use yunwei_server::http::ErrorKind;
use yunwei_tests::now_ms;

/// Checks the shape and returns `(kind, field)`.
async fn error_of(r: reqwest::Response, status: StatusCode) -> (String, Option<String>) {
    assert_eq!(r.status(), status, "{:?}", r.url().path());
    assert!(
        r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.headers()
    );
    let v: Value = r.json().await.unwrap();
    let e = v["error"].as_object().unwrap_or_else(|| panic!("{v}"));
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    let kind = e["kind"].as_str().unwrap().to_string();
    let known = ErrorKind::ALL.into_iter().find(|k| k.as_str() == kind);
    assert_eq!(
        known.map(ErrorKind::status),
        Some(status),
        "{kind} is an ErrorKind whose status is {status}: {v}"
    );
    (
        kind,
        e.get("field").and_then(Value::as_str).map(str::to_string),
    )
}

/// Method, path, optional (content type, body), expected status, kind and field.
type Case = (
    Method,
    &'static str,
    Option<(&'static str, &'static str)>,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_has_the_one_error_shape() {
    let h = Harness::start("sqlite", |_| {}).await.unwrap();
    let c = &h.client;
    let e = c.enroll("web-01").await.unwrap();
    let now = now_ms();
    let (status, body) = c
        .push(&e.token, &yunwei_tests::batch(&e, "web-01", 1, now, 3))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // Prometheus durations, compound ones included, are accepted as the step.
    let r = c
        .api(
            Method::GET,
            &format!(
                "/api/v1/yunwei/series?match=test_metric&from={}&to={}&step=1h30m",
                (now - 6 * 3_600_000) / 1000,
                now / 1000 + 1
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let cases: Vec<Case> = vec![
        // A handler's own check.
        (
            Method::GET,
            "/api/v1/yunwei/series?match=up&step=soon",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_value",
            Some("step"),
        ),
        (
            Method::GET,
            "/api/v1/yunwei/series",
            None,
            StatusCode::BAD_REQUEST,
            "missing",
            Some("match"),
        ),
        // The query-string extractor: an unknown parameter is named.
        (
            Method::GET,
            "/api/v1/hosts/x?form=1",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            Some("form"),
        ),
        // The path extractor: a report id is a number.
        (
            Method::GET,
            "/api/v1/reports/abc/json",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_path",
            Some("path"),
        ),
        // The JSON extractor: no JSON content type, malformed JSON, an unknown field.
        (
            Method::POST,
            "/api/v1/reports",
            Some(("text/plain", "{}")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            Some("content-type"),
        ),
        (
            Method::POST,
            "/api/v1/reports",
            Some(("application/json", "{")),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            Some("body"),
        ),
        (
            Method::POST,
            "/api/v1/reports",
            Some((
                "application/json",
                r#"{"contract":"c","period":"2026-10","colour":1}"#,
            )),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            Some("colour"),
        ),
        // Routing.
        (
            Method::GET,
            "/api/v1/nothing-here",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::DELETE,
            "/api/v1/hosts",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
    ];
    for (method, path, body, status, kind, field) in cases {
        let mut req = c.api(method.clone(), path);
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b.to_string());
        }
        let r = req.send().await.unwrap();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(r.headers()["allow"], "GET", "{method} {path}");
        }
        let (k, f) = error_of(r, status).await;
        assert_eq!(k, kind, "{method} {path}");
        assert_eq!(f.as_deref(), field, "{method} {path}");
    }

    // A body over the limit, refused by axum's body limit before any handler: the same shape.
    let big = format!(r#"{{"user":"{}","password":"x"}}"#, "a".repeat(3 << 20));
    let r = c
        .http
        .post(format!("{}/api/v1/auth/login", c.base))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (k, _) = error_of(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(k, "body_too_large");

    // Unauthenticated reads: one kind for a missing and a wrong credential.
    for token in [None, Some("nope")] {
        let mut req = c.http.get(format!("{}/api/v1/hosts", c.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let (k, _) = error_of(req.send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
        assert_eq!(k, "unauthenticated");
    }
    h.stop().await;
}

/// Issue 17, finding 1: a selector of 60,000 `-` overflowed a worker's stack inside the PromQL
/// parser and aborted the whole server (this test process with it). It is refused before
/// parsing with a 400 naming the field and the limit, and the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_selector_is_a_400_and_the_server_stays_up() {
    let h = Harness::start("sqlite", |_| {}).await.unwrap();
    let c = &h.client;
    let e = c.enroll("web-01").await.unwrap();
    let (status, body) = c
        .push(&e.token, &yunwei_tests::batch(&e, "web-01", 1, now_ms(), 3))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    let hostile = [
        format!("{}up", "-".repeat(60_000)),
        format!("{}up{}", "(".repeat(20_000), ")".repeat(20_000)),
        format!("up{}", "%2Bup".repeat(5_000)),
    ];
    for q in &hostile {
        let r = c
            .api(Method::GET, &format!("/api/v1/yunwei/series?match={q}"))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["kind"], "invalid_value", "{v}");
        assert_eq!(v["error"]["field"], "match", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("limit"), "{m}");
    }

    // Still up: a normal request is answered.
    let r = c
        .api(Method::GET, "/api/v1/yunwei/series?match=test_metric")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    h.stop().await;
}

/// JSON bodies are limited in size (`MAX_API_BODY_BYTES`) and, by serde_json's recursion limit
/// of 128, in nesting: a deeply nested body is an `invalid_body`, not a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_json_body_is_a_400() {
    let h = Harness::start("sqlite", |_| {}).await.unwrap();
    let c = &h.client;
    let deep = format!(
        r#"{{"user":"a","password":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let r = c
        .http
        .post(format!("{}/api/v1/auth/login", c.base))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    let (k, _) = error_of(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(k, "invalid_body");
    let r = c
        .http
        .post(format!("{}/api/v1/auth/login", c.base))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"user":"{}","password":"x"}}"#,
            "a".repeat(1_100_000)
        ))
        .send()
        .await
        .unwrap();
    let (k, _) = error_of(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(k, "body_too_large");
    h.stop().await;
}

const CONTRACT: &str = r#"id: c1
name: 测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

/// The value of `yunwei_api_limited_total{limit="LIMIT"}` in the server's `/metrics`.
async fn limited(c: &yunwei_tests::AgentClient, limit: &str) -> u64 {
    let text = c.get_text("/metrics").await.unwrap();
    let prefix = format!("yunwei_api_limited_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .parse()
        .unwrap()
}

/// Reads whose answer grows without bound are refused before they are made, with a 400 naming
/// the parameter to change, and counted in `yunwei_api_limited_total{limit}`: an assessment or
/// report period longer than a year (a 1000-year period used to return 113 MB), a series
/// answer with more than 11,000 points in a series or 250,000 in all, and raw points without
/// `step` over more than 6 hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_reads_are_refused_naming_the_parameter_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, CONTRACT).unwrap();
    let h = Harness::start("sqlite", |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
        c.contracts.scheduled_reports = false;
    })
    .await
    .unwrap();
    let c = &h.client;
    let e = c.enroll("web-01").await.unwrap();
    let now = now_ms();
    // 12,000 raw points of one series in the last 50 minutes, and 30 more series.
    let mut b = yunwei_tests::batch(&e, "web-01", 1, now, 0);
    let start = now - 50 * 60_000;
    b.samples = (0..12_000i64)
        .map(|k| yunwei_proto::Sample {
            name: "dense".into(),
            labels: Default::default(),
            value: k as f64,
            ts_ms: start + k * 250,
        })
        .collect();
    let (status, body) = c.push(&e.token, &b).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = c
        .push(&e.token, &yunwei_tests::batch(&e, "web-01", 2, now, 30))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let get = |path: String| c.api(Method::GET, &path).send();
    let secs = |ms: i64| ms / 1000;

    // Raw points without a step: every stored point would be returned.
    let r = get(format!(
        "/api/v1/yunwei/series?match=dense&from={}",
        secs(now - 3_600_000)
    ))
    .await
    .unwrap();
    let (k, f) = error_of(r, StatusCode::BAD_REQUEST).await;
    assert_eq!((k.as_str(), f.as_deref()), ("invalid_value", Some("step")));
    assert_eq!(limited(c, "series_points_per_series").await, 1);
    // With a step the same range is answered, at most one point a step.
    let r = get(format!(
        "/api/v1/yunwei/series?match=dense&from={}&to={}&step=1s",
        secs(now - 3_600_000),
        secs(now) + 1
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let n = v["data"]["result"][0]["values"].as_array().unwrap().len();
    assert!((3_000..=3_602).contains(&n), "{n}");
    // Raw points without a step over more than 6 hours: refused before reading.
    let r = get(format!(
        "/api/v1/yunwei/series?match=test_metric&from={}&source=raw",
        secs(now - 24 * 3_600_000)
    ))
    .await
    .unwrap();
    let (_, f) = error_of(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(f.as_deref(), Some("step"));
    assert_eq!(limited(c, "series_raw_range_without_step").await, 1);
    // 30 series of 10,801 points each: over the response's 250,000.
    let r = get(format!(
        "/api/v1/yunwei/series?match=test_metric&from={}&to={}&step=1s",
        secs(now - 3 * 3_600_000),
        secs(now)
    ))
    .await
    .unwrap();
    let (_, f) = error_of(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(f.as_deref(), Some("step"));
    assert_eq!(limited(c, "series_response_points").await, 1);

    // Assessment and report periods: at most a year.
    let r = get("/api/v1/contracts/c1/assessment?period=2020-01-01..2999-12-31".into())
        .await
        .unwrap();
    let (k, f) = error_of(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        (k.as_str(), f.as_deref()),
        ("invalid_value", Some("period"))
    );
    let r = c
        .api(Method::POST, "/api/v1/reports")
        .json(&serde_json::json!({
            "contract": "c1", "period": "2020-01-01..2021-01-01", "formats": ["json"],
        }))
        .send()
        .await
        .unwrap();
    let (_, f) = error_of(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(f.as_deref(), Some("period"));
    assert_eq!(limited(c, "assessment_period").await, 2);
    // A leap year (366 days) is a period.
    let r = get("/api/v1/contracts/c1/assessment?period=2024".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    h.stop().await;
}

/// The assessment engine and report rendering run on blocking threads within
/// `contracts.compute_timeout_ms`: with the default they answer as before; with a limit of
/// 1 ms a report is answered 503 `unavailable` with `Retry-After` (an assessment too, when it
/// takes longer), counted in `yunwei_api_limited_total{limit="compute_time"}`, and the server
/// keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_heavy_work_answers_within_its_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, CONTRACT).unwrap();
    for limit_ms in [120_000, 1] {
        let p = path.clone();
        let h = Harness::start("sqlite", move |c| {
            c.contracts.files = vec![p];
            c.contracts.run_inspections = false;
            c.contracts.scheduled_reports = false;
            c.contracts.compute_timeout_ms = limit_ms;
        })
        .await
        .unwrap();
        let c = &h.client;
        let report = || {
            c.api(Method::POST, "/api/v1/reports")
                .json(&serde_json::json!({
                    "contract": "c1", "period": "2025", "formats": ["json", "html", "xlsx"],
                }))
                .send()
        };
        let assessment = || {
            c.api(Method::GET, "/api/v1/contracts/c1/assessment?period=2024")
                .send()
        };
        if limit_ms > 1 {
            let r = report().await.unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            let r = assessment().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            assert_eq!(limited(c, "compute_time").await, 0);
        } else {
            let r = report().await.unwrap();
            assert!(r.headers().contains_key(reqwest::header::RETRY_AFTER));
            let (k, _) = error_of(r, StatusCode::SERVICE_UNAVAILABLE).await;
            assert_eq!(k, "unavailable");
            // An empty year's assessment may take less than 1 ms; if not, the same answer.
            let r = assessment().await.unwrap();
            let timed_out = r.status() == StatusCode::SERVICE_UNAVAILABLE;
            if timed_out {
                let (k, _) = error_of(r, StatusCode::SERVICE_UNAVAILABLE).await;
                assert_eq!(k, "unavailable");
            } else {
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            }
            assert_eq!(limited(c, "compute_time").await, 1 + u64::from(timed_out));
            // Nothing was archived, and the server still answers.
            let r = c.api(Method::GET, "/api/v1/reports").send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");
        }
        h.stop().await;
    }
}

/// Reads from `s` until the server closes the connection; returns what it sent, or `None`
/// when it neither answered nor closed within `within`.
async fn read_until_closed(
    s: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// A client that sends half a request header and stalls is disconnected after
/// `http.header_read_timeout_secs`; one that sends a header and stalls in the body gets 408
/// `request_timeout` after `http.body_read_timeout_secs` and the connection is closed. Either
/// used to hold its connection for as long as it liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_disconnected_after_the_read_timeouts() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start("sqlite", |c| {
        c.http.header_read_timeout_secs = 1;
        c.http.body_read_timeout_secs = 1;
    })
    .await
    .unwrap();
    let addr = h.client.base.trim_start_matches("http://").to_string();
    let patience = std::time::Duration::from_secs(8);

    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = read_until_closed(&mut s, patience).await;
    assert!(
        answer.is_some(),
        "a half-sent header still held the connection after {patience:?}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    s.write_all(
        b"POST /api/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"secret\":",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut s, patience)
        .await
        .expect("a stalled body still held the connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    // A whole request on a fresh connection is answered as before.
    let r = h.client.api(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.stop().await;
}
