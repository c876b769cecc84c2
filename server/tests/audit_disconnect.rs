//! A client that disconnects right after sending a state-changing call cannot leave a change
//! without its audit row: the call and its audit record run to the end together, whatever
//! happens to the connection (custody finding 6).

mod common;

use std::time::Duration;

use common::Harness;
use tokio::io::AsyncWriteExt;
use yunwei_tests::now_ms;

yunwei_tests::both_backends!(a_disconnecting_client_leaves_no_change_without_its_audit_row);

async fn a_disconnecting_client_leaves_no_change_without_its_audit_row(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let token = h.client.api_token.clone().unwrap();
    let addr = h.client.base.trim_start_matches("http://").to_string();
    let rounds = 20;
    for i in 0..rounds {
        let body = serde_json::json!({
            "matchers": [format!("alertname=\"Disconnect{i}\"")],
            "ends_ms": now_ms() + 3_600_000,
            "comment": format!("round {i}"),
        })
        .to_string();
        let request = format!(
            "POST /api/v1/silences HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        // Gone before the answer: varied by a few hundred microseconds a round, so some rounds
        // leave while the call is under way.
        tokio::time::sleep(Duration::from_micros(150 * (i % 8))).await;
        drop(s);
    }
    // Let every call that started finish.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let silences = h.state.store.silences().await.unwrap();
    let audited = h.state.store.audit_rows_after(0).await.unwrap();
    let created = audited
        .iter()
        .filter(|r| r.action.contains("/api/v1/silences") && r.result == "success")
        .count();
    assert_eq!(
        silences.len(),
        created,
        "every silence created has its audit row ({} silences, {created} rows: {:?})",
        silences.len(),
        audited
            .iter()
            .map(|r| (&r.action, &r.result))
            .collect::<Vec<_>>()
    );
    h.stop().await;
}
