//! Notifications end to end, with real processes only: a `yunwei-agent` probes an HTTP service
//! the test controls, a `yunwei-server` evaluates a rule over it and mails a real SMTP server on
//! loopback (`tests/helpers/smtp_sink.py`, Debian's aiosmtpd). The service goes down → the
//! on-call mail arrives with subject, recipients and a signed acknowledge link; the server is
//! SIGKILLed and restarted mid-escalation → no second first mail, and the tier-2 mail still
//! comes on time; the link acknowledges; the SMTP server goes away while the service recovers →
//! the resolved mail is delivered once it is back, and the notification log shows each attempt.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use yunwei_tests::{
    AgentClient, Db, ServerProcess, SmtpSink as Smtp, free_addr, spawn_agent, terminate_child,
    write_agent_config,
};

/// An HTTP target answering `200 ok` while `healthy` is set, else `503`.
fn http_target(healthy: Arc<AtomicBool>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 2048];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let resp: &[u8] = if healthy.load(Ordering::SeqCst) {
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nstatus ok"
            } else {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
            };
            let _ = c.write_all(resp);
        }
    });
    format!("http://{addr}/healthz")
}

async fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn subject(m: &Value) -> &str {
    m["subject"].as_str().unwrap_or_default()
}

const ESCALATE_SECS: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_mail_ack_link_escalation_across_a_kill_and_resolved_mail_after_smtp_outage() {
    let work = tempfile::tempdir().unwrap();
    let smtp_port = free_addr().port();
    let Some(mut smtp) = Smtp::start(smtp_port, &work.path().join("mail")) else {
        return;
    };
    let rules = work.path().join("probe.rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: probes\n    interval: 1s\n    rules:\n      - alert: PortalDown\n        \
         expr: probe_success{probe=\"portal\"} == 0\n        for: 1s\n        labels:\n          \
         severity: critical\n        annotations:\n          summary: \"{{ $labels.probe }} is down\"\n",
    )
    .unwrap();
    let notify = format!(
        "rules:\n  files: [{rules}]\n  evaluation_interval_secs: 1\nnotify:\n  \
         smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, from: 'yunwei <alerts@example.org>', timeout_secs: 2}}\n  \
         receivers:\n    - name: oncall\n      email: [{{to: [oncall@example.org], cc: [lead@example.org], language: zh-CN}}]\n    \
         - name: boss\n      email: [{{to: [boss@example.org], language: en}}]\n  \
         route:\n    receiver: oncall\n    group_by: [alertname, probe]\n    group_wait: 0s\n    \
         group_interval: 1s\n    repeat_interval: 1h\n    escalation: up\n  \
         escalation_policies:\n    - name: up\n      tiers: [{{after: {ESCALATE_SECS}s, receiver: boss}}]\n  \
         retry: {{initial: 500ms, max: 1s}}\n",
        rules = rules.display()
    );
    let started = Instant::now();
    let mut server = ServerProcess::start(&Db::Sqlite, &notify).await.unwrap();
    eprintln!("server ready in {:?}", started.elapsed());
    let client = AgentClient::new(&server);
    let healthy = Arc::new(AtomicBool::new(true));
    let url = http_target(healthy.clone());
    let extra = format!(
        "metrics_listen: \"off\"\nprobes:\n  - name: portal\n    http: {url}\n    \
         expect_body: ok\n    interval_secs: 1\n    timeout_secs: 1\n"
    );
    let config = write_agent_config(work.path(), &server, &extra);
    let mut agent = spawn_agent(&config, &work.path().join("agent.log"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        smtp.mails().is_empty(),
        "nothing fires while the service is up"
    );

    // Down: the on-call mail.
    let t0 = Instant::now();
    healthy.store(false, Ordering::SeqCst);
    let first = wait_for(30, "the first mail", || {
        smtp.mails()
            .into_iter()
            .find(|m| subject(m).contains("PortalDown"))
    })
    .await;
    let first_at = Instant::now();
    eprintln!("first mail {:?} after the service went down", t0.elapsed());
    assert!(
        subject(&first).starts_with("[告警 1] PortalDown"),
        "{first}"
    );
    assert!(subject(&first).contains("probe=portal"), "{first}");
    assert_eq!(first["to"], "oncall@example.org", "{first}");
    assert_eq!(first["cc"], "lead@example.org", "{first}");
    let rcpts = first["rcpt_tos"].as_array().unwrap();
    assert_eq!(
        rcpts.len(),
        2,
        "to and cc are both envelope recipients: {first}"
    );
    let text = first["text"].as_str().unwrap();
    assert!(text.contains("portal is down"), "{text}");
    let link_at = text.find("/ack/").expect("an acknowledge link");
    let token: String = text[link_at + 5..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert!(
        first["html"]
            .as_str()
            .unwrap()
            .contains(&format!("/ack/{token}"))
    );

    // SIGKILL mid-escalation, restart: no second first mail, tier 2 still on time.
    server.kill9();
    server.restart().await.unwrap();
    let tier2 = wait_for(ESCALATE_SECS + 20, "the tier-2 mail", || {
        smtp.mails()
            .into_iter()
            .find(|m| m["to"] == "boss@example.org")
    })
    .await;
    let tier2_after = first_at.elapsed();
    eprintln!("tier-2 mail {tier2_after:?} after the first");
    assert!(
        subject(&tier2).starts_with("[ESCALATED tier 2] [FIRING:1] PortalDown"),
        "{tier2}"
    );
    assert!(
        tier2_after >= Duration::from_secs(ESCALATE_SECS - 1)
            && tier2_after <= Duration::from_secs(ESCALATE_SECS + 4),
        "tier 2 came {tier2_after:?} after the first mail, policy says {ESCALATE_SECS} s"
    );
    let firsts = smtp
        .mails()
        .iter()
        .filter(|m| subject(m).starts_with("[告警"))
        .count();
    assert_eq!(
        firsts,
        1,
        "no duplicate first notification: {:?}",
        smtp.mails()
    );

    // Following the signed link (a GET, as mail scanners prefetch) only asks to confirm.
    let link = server.url(&format!("/ack/{token}"));
    let page = reqwest::get(&link).await.unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(
        body.contains("确认此告警") && body.contains("oncall@example.org"),
        "{body}"
    );
    let groups = client.get_json("/api/v1/notify/groups").await.unwrap();
    assert!(
        groups["data"][0]["ackedBy"].is_null(),
        "GET acknowledged: {groups}"
    );
    // Submitting the page's form (no action: it posts to the page's own address) acknowledges,
    // recording the recipient.
    assert!(body.contains("<form method=\"post\">"), "{body}");
    let done = reqwest::Client::new()
        .post(&link)
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let body = done.text().await.unwrap();
    assert!(
        body.contains("已确认") && body.contains("oncall@example.org"),
        "{body}"
    );
    let groups = client.get_json("/api/v1/notify/groups").await.unwrap();
    let g = &groups["data"][0];
    assert_eq!(g["ackedBy"], "oncall@example.org", "{groups}");
    let gid = g["id"].as_str().unwrap().to_string();
    let acks = client
        .get_json(&format!("/api/v1/notify/groups/{gid}/acks"))
        .await
        .unwrap();
    assert_eq!(acks["data"][0]["via"], "link", "{acks}");
    // A link works once.
    let again = reqwest::Client::new().post(&link).send().await.unwrap();
    assert_eq!(again.status(), 410);
    let body = again.text().await.unwrap();
    assert!(body.contains("已使用"), "{body}");
    // A tampered link is refused.
    let bad = reqwest::get(server.url(&format!("/ack/{}x", token)))
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);
    let bad = reqwest::Client::new()
        .post(server.url(&format!("/ack/{}x", token)))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);

    // SMTP down while the service recovers: the resolved mail waits for it.
    smtp.stop();
    healthy.store(true, Ordering::SeqCst);
    let failures = wait_for(30, "failed attempts in the log", || {
        let log = futures_lite_block(client.get_json(&format!("/api/v1/notify/log?group={gid}")));
        let failed = log["data"]
            .as_array()?
            .iter()
            .filter(|r| r["ok"] == false && r["status"] == "resolved")
            .count();
        (failed >= 2).then_some(failed)
    })
    .await;
    eprintln!(
        "{failures} failed attempts {:?} after recovery",
        first_at.elapsed()
    );
    smtp.spawn();
    let resolved = wait_for(20, "the resolved mail", || {
        smtp.mails()
            .into_iter()
            .find(|m| subject(m).starts_with("[已恢复]"))
    })
    .await;
    assert_eq!(resolved["to"], "oncall@example.org");
    let log = client
        .get_json(&format!("/api/v1/notify/log?group={gid}"))
        .await
        .unwrap();
    let resolved_attempts: Vec<&Value> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "resolved")
        .collect();
    assert!(
        resolved_attempts.len() > failures
            && resolved_attempts[0]["ok"] == true
            && resolved_attempts[0]["code"] == 250,
        "each attempt is logged, the last one accepted: {log}"
    );
    assert!(
        resolved_attempts[1..]
            .iter()
            .all(|r| r["ok"] == false && r["error"].is_string())
    );

    // Down again: a new episode with a new link. The first episode's link, unused, says it is
    // over and acknowledges nothing; the new one acknowledges.
    let first_link = server.url(&format!("/ack/{token}"));
    healthy.store(false, Ordering::SeqCst);
    let second = wait_for(30, "the second episode's mail", || {
        smtp.mails()
            .into_iter()
            .filter(|m| subject(m).starts_with("[告警"))
            .nth(1)
    })
    .await;
    let text = second["text"].as_str().unwrap();
    let at = text.find("/ack/").expect("an acknowledge link");
    let token2: String = text[at + 5..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert_ne!(token2, token);
    // The used link of episode 1 stays used.
    let old = reqwest::Client::new()
        .post(&first_link)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 410);
    // The tier-2 mail's link (episode 1, never used) acknowledges nothing in episode 2.
    let boss_text = tier2["text"].as_str().unwrap();
    let at = boss_text.find("/ack/").expect("the tier-2 mail has a link");
    let boss_token: String = boss_text[at + 5..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let refused = reqwest::Client::new()
        .post(server.url(&format!("/ack/{boss_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 410);
    let body = refused.text().await.unwrap();
    assert!(body.contains("earlier episode"), "{body}");
    let groups = client.get_json("/api/v1/notify/groups").await.unwrap();
    assert!(
        groups["data"][0]["ackedBy"].is_null(),
        "an old link acknowledged the new episode: {groups}"
    );
    let done = reqwest::Client::new()
        .post(server.url(&format!("/ack/{token2}")))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200, "{}", done.text().await.unwrap());
    let groups = client.get_json("/api/v1/notify/groups").await.unwrap();
    assert_eq!(
        groups["data"][0]["ackedBy"], "oncall@example.org",
        "{groups}"
    );
    let audit = client.get_json("/api/v1/audit?limit=50").await.unwrap();
    let uses = audit.to_string().matches("POST /ack/{token}").count();
    assert!(
        uses >= 3,
        "both acknowledgements and the first refused use are audited: {audit}"
    );

    let status = terminate_child(&mut agent);
    assert!(status.success(), "{status}");
}

/// Runs a future to completion from synchronous test code inside the runtime.
fn futures_lite_block<F: std::future::Future<Output = anyhow::Result<Value>>>(f: F) -> Value {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
        .unwrap_or(Value::Null)
}
