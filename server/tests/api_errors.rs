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
                "/api/v1/series?match=test_metric&from={}&to={}&step=1h30m",
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
            "/api/v1/series?match=up&step=soon",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_value",
            Some("step"),
        ),
        (
            Method::GET,
            "/api/v1/series",
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
            .api(Method::GET, &format!("/api/v1/series?match={q}"))
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
        .api(Method::GET, "/api/v1/series?match=test_metric")
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
