//! Several servers on one PostgreSQL (issue 19), with real processes only: three
//! `yunwei-server` replicas share a database, agents are spread over them (each lists two
//! replicas in `server_urls`), a probe behind replica B goes down and the leader A mails the
//! on-call person through a real SMTP server (aiosmtpd). A is SIGKILLed mid-escalation: another
//! replica takes the lease, rebuilds its window from the store, the tier-2 mail arrives, the
//! first mail is not sent again, and every batch the agents pushed is stored once with no gap;
//! A, restarted, rejoins as a follower. Then the network-fault variant: the new leader's
//! PostgreSQL sessions are terminated while the process lives; it steps down before another
//! replica becomes leader, and still nothing is mailed twice.
//!
//! A second test: on SQLite a second server on the same data directory is refused, naming it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Connection, Row};
use yunwei_tests::{
    Db, PgDatabase, SECRET, ServerProcess, SmtpSink as Smtp, bin, free_addr, pg_base_url,
    spawn_agent, terminate_child,
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

async fn wait_for<T>(secs: u64, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn subject(m: &Value) -> &str {
    m["subject"].as_str().unwrap_or_default()
}

/// The role a replica's `/readyz` states (`leader`, `follower`), or `None` when not ready.
async fn role(s: &ServerProcess) -> Option<String> {
    let r = reqwest::Client::new()
        .get(s.url("/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body = r.text().await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("role: "))
        .map(str::to_string)
}

/// Writes an agent config pushing to `urls` (in that order of preference) and starts it.
fn agent(dir: &Path, name: &str, urls: &[&ServerProcess], extra: &str) -> Child {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let list: Vec<String> = urls
        .iter()
        .map(|s| format!("  - {}\n", s.url("")))
        .collect();
    let config = d.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "server_urls:\n{}enrollment_secret: {SECRET}\nstate_dir: {}\ninterval_secs: 1\n\
             metrics_listen: \"off\"\nrequest_timeout_secs: 2\nlabels:\n  system: ha\n{extra}",
            list.concat(),
            d.join("state").display()
        ),
    )
    .unwrap();
    spawn_agent(&config, &d.join("agent.log"))
}

/// The time at the start of the first log line containing `needle` (RFC 3339, as the
/// server's log prints it), for ordering events across processes on one machine.
fn logged_at(log: &str, needle: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

const ESCALATE_SECS: u64 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_fail_over_without_losing_or_repeating_anything() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let smtp_port = free_addr().port();
    let Some(smtp) = Smtp::start(smtp_port, &work.path().join("mail")) else {
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
    let config = format!(
        "ha: {{lease_secs: 6, renew_every_secs: 2}}\n\
         rules:\n  files: [{rules}]\n  evaluation_interval_secs: 1\nnotify:\n  \
         smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, from: 'yunwei <alerts@example.org>', timeout_secs: 2}}\n  \
         receivers:\n    - name: oncall\n      email: [{{to: [oncall@example.org], language: en}}]\n    \
         - name: boss\n      email: [{{to: [boss@example.org], language: en}}]\n  \
         route:\n    receiver: oncall\n    group_by: [alertname, probe]\n    group_wait: 0s\n    \
         group_interval: 1s\n    repeat_interval: 1h\n    escalation: up\n  \
         escalation_policies:\n    - name: up\n      tiers: [{{after: {ESCALATE_SECS}s, receiver: boss}}]\n  \
         retry: {{initial: 500ms, max: 1s}}\n",
        rules = rules.display()
    );
    let db = Db::Postgres(pg.url.clone());
    // A starts first and takes the lease; B and C follow.
    let mut a = ServerProcess::start_replica(&db, &config, "replica-a")
        .await
        .unwrap();
    wait_for(10, "A to lead", async || {
        (role(&a).await.as_deref() == Some("leader")).then_some(())
    })
    .await;
    let mut b = ServerProcess::start_replica(&db, &config, "replica-b")
        .await
        .unwrap();
    let mut c = ServerProcess::start_replica(&db, &config, "replica-c")
        .await
        .unwrap();
    assert_eq!(role(&b).await.as_deref(), Some("follower"));
    assert_eq!(role(&c).await.as_deref(), Some("follower"));

    let healthy = Arc::new(AtomicBool::new(true));
    let url = http_target(healthy.clone());
    let probe = format!(
        "probes:\n  - name: portal\n    http: {url}\n    expect_body: ok\n    interval_secs: 1\n    \
         timeout_secs: 1\n"
    );
    // The probe is behind B; one agent pushes to A, one to C.
    let mut agents = vec![
        agent(work.path(), "behind-b", &[&b, &c], &probe),
        agent(work.path(), "behind-a", &[&a, &c], ""),
        agent(work.path(), "behind-c", &[&c, &b], ""),
    ];
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        smtp.mails().is_empty(),
        "nothing fires while the service is up"
    );

    // Down behind B: the leader A, which never received the probe's batches itself, mails.
    healthy.store(false, Ordering::SeqCst);
    let first = wait_for(30, "the first mail", async || {
        smtp.mails()
            .into_iter()
            .find(|m| subject(m).contains("PortalDown"))
    })
    .await;
    let first_at = Instant::now();
    assert_eq!(first["to"], "oncall@example.org", "{first}");
    assert!(subject(&first).contains("probe=portal"), "{first}");
    assert_eq!(
        role(&a).await.as_deref(),
        Some("leader"),
        "A led when the mail went"
    );
    assert!(
        a.log().contains("leading: live window rebuilt"),
        "{}",
        a.log()
    );

    // SIGKILL the leader mid-escalation: B or C takes over and continues.
    a.kill9();
    let (new_leader, other) = wait_for(20, "a new leader", async || {
        if role(&b).await.as_deref() == Some("leader") {
            Some(('B', 'C'))
        } else if role(&c).await.as_deref() == Some("leader") {
            Some(('C', 'B'))
        } else {
            None
        }
    })
    .await;
    eprintln!("{new_leader} leads {:?} after the kill", first_at.elapsed());
    let tier2 = wait_for(ESCALATE_SECS + 30, "the tier-2 mail", async || {
        smtp.mails()
            .into_iter()
            .find(|m| m["to"] == "boss@example.org")
    })
    .await;
    let tier2_after = first_at.elapsed();
    eprintln!("tier-2 mail {tier2_after:?} after the first");
    assert!(subject(&tier2).contains("PortalDown"), "{tier2}");
    assert!(
        tier2_after >= Duration::from_secs(ESCALATE_SECS - 1),
        "tier 2 came {tier2_after:?} after the first mail, before the policy's {ESCALATE_SECS} s"
    );
    let count = |to: &str| {
        smtp.mails()
            .iter()
            .filter(|m| m["to"] == to && subject(m).contains("PortalDown"))
            .count()
    };
    assert_eq!(
        count("oncall@example.org"),
        1,
        "no repeated first mail: {:?}",
        smtp.mails()
    );

    // A comes back as a follower.
    a.restart().await.unwrap();
    assert_eq!(role(&a).await.as_deref(), Some("follower"));

    // Network fault: the leader's database sessions are cut (again and again, for longer than
    // the lease) while its process lives. It steps down; another replica takes over after.
    let (leader, rest): (&mut ServerProcess, [&ServerProcess; 2]) = if new_leader == 'B' {
        (&mut b, [&a, &c])
    } else {
        (&mut c, [&a, &b])
    };
    let _ = other;
    let app = format!("yunwei-server-{}", leader.pid());
    let mut admin = sqlx::PgConnection::connect(&pg_base_url()).await.unwrap();
    // Longer than the lease (6 s): the others take over while it is still cut off.
    let cut_until = Instant::now() + Duration::from_secs(10);
    let mut successor = None;
    while Instant::now() < cut_until || successor.is_none() {
        if Instant::now() < cut_until {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(&app)
            .execute(&mut admin)
            .await
            .unwrap();
        }
        if successor.is_none() {
            for (i, s) in rest.iter().enumerate() {
                if role(s).await.as_deref() == Some("leader") {
                    successor = Some(i);
                }
            }
        }
        assert!(
            Instant::now() < cut_until + Duration::from_secs(20),
            "no replica took over after the leader's sessions were cut"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let successor = rest[successor.unwrap()];
    let stepped = logged_at(&leader.log(), "stepping down")
        .unwrap_or_else(|| panic!("the cut-off leader stepped down:\n{}", leader.log()));
    // The successor may have led before (A led first): its latest election counts.
    let took = successor
        .log()
        .lines()
        .rfind(|l| l.contains("became the leader"))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .expect("the successor logs its election");
    assert!(
        stepped < took,
        "the cut-off leader stepped down ({stepped}) before the successor took over ({took})"
    );
    let (epoch,): (i64,) = {
        let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
        let r = sqlx::query("SELECT epoch FROM leader_lease WHERE name = 'leader'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (r.get(0),)
    };
    assert!(
        epoch >= 3,
        "three terms at least: A, its successor, the next ({epoch})"
    );
    // The alert is still firing at the new leader: nothing is mailed again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count("oncall@example.org"), 1, "{:?}", smtp.mails());
    assert_eq!(count("boss@example.org"), 1, "{:?}", smtp.mails());

    // Every batch the agents pushed is stored once, with no gap: the agents stop (their
    // unacknowledged batches stay spooled) and each one's stored sequence numbers run 1..=N.
    for mut ag in agents.drain(..) {
        terminate_child(&mut ag);
    }
    let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    let rows = sqlx::query(
        "SELECT agent_id, COUNT(seq), MIN(seq), MAX(seq), COUNT(DISTINCT commit_id) \
         FROM batches GROUP BY agent_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    // The three agents run on this one machine: one host name, three agent ids.
    assert_eq!(rows.len(), 3, "three agents stored batches");
    for r in &rows {
        let (n, min, max, numbered): (i64, i64, i64, i64) =
            (r.get(1), r.get(2), r.get(3), r.get(4));
        let host: String = r.get(0);
        assert!(n > 10, "{host}: {n} batches");
        assert_eq!(
            (min, max),
            (1, n),
            "{host}: sequence numbers 1..={n} without a gap"
        );
        assert_eq!(numbered, n, "{host}: every batch has its own commit id");
    }
    drop(pg);
}

/// A counter's or histogram count's value in a `/metrics` text (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Batches the leader's tail stepped over (its own writer had added them) and batches it
/// applied, from the replica's `/metrics`.
async fn tail_counts(c: &yunwei_tests::AgentClient) -> Option<(i64, i64)> {
    let text = c.get_text("/metrics").await.ok()?;
    Some((
        metric(&text, "yunwei_ha_tail_own_batches_total") as i64,
        metric(&text, "yunwei_ha_tail_lag_seconds_count") as i64,
    ))
}

/// How many samples of `test_metric{i="0"}` of host `host` the replica's live window holds (an
/// instant query well inside the window is answered from the window alone).
async fn window_samples(c: &yunwei_tests::AgentClient, host: &str) -> Option<i64> {
    let q = format!("count_over_time(test_metric{{instance=\"{host}\",i=\"0\"}}[30m])");
    let v: Value = c
        .api(reqwest::Method::GET, "/api/v1/query")
        .query(&[("query", q)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let n: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
    Some(n as i64)
}

/// Pushes batch `seq` (3 samples, one second apart per sequence number) of `agent` to `c`.
async fn push_seq(
    c: &yunwei_tests::AgentClient,
    agent: &yunwei_tests::Enrolled,
    host: &str,
    seq: u64,
) {
    let ts = yunwei_tests::now_ms() - 60_000 + seq as i64 * 1_000;
    let (status, body) = c
        .push(&agent.token, &yunwei_tests::batch(agent, host, seq, ts, 3))
        .await
        .unwrap();
    assert_eq!(status, 200, "{host} batch {seq}: {body}");
}

/// The leader's tail adds every batch another replica stores to its window once and steps over
/// the batches its own writer added already; after a failover the new leader's window, rebuilt
/// from the store, holds every batch, and its tail does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_tail_adds_other_replicas_batches_once_and_steps_over_its_own() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let db = Db::Postgres(pg.url.clone());
    let config = "ha: {lease_secs: 6, renew_every_secs: 2}\n";
    let mut a = ServerProcess::start_replica(&db, config, "a")
        .await
        .unwrap();
    wait_for(20, "A to lead", async || {
        (role(&a).await.as_deref() == Some("leader")).then_some(())
    })
    .await;
    let b = ServerProcess::start_replica(&db, config, "b")
        .await
        .unwrap();
    assert_eq!(role(&b).await.as_deref(), Some("follower"));
    let (ca, cb) = (
        yunwei_tests::AgentClient::new(&a),
        yunwei_tests::AgentClient::new(&b),
    );
    let x = ca.enroll("tail-x").await.unwrap();
    let y = cb.enroll("tail-y").await.unwrap();
    // x pushes to the leader A, y to the follower B.
    for seq in 1..=4 {
        push_seq(&ca, &x, "tail-x", seq).await;
        push_seq(&cb, &y, "tail-y", seq).await;
    }
    wait_for(20, "A's window to hold every batch", async || {
        (window_samples(&ca, "tail-x").await == Some(4)
            && window_samples(&ca, "tail-y").await == Some(4))
        .then_some(())
    })
    .await;
    // Each of the 8 batches went through A's tail once: stepped over (x's, added by A's own
    // writer) or applied (y's, and an x batch the tail read before the writer listed it).
    let (own, applied) = wait_for(20, "A's tail to pass all 8 batches", async || {
        tail_counts(&ca).await.filter(|(o, n)| o + n >= 8)
    })
    .await;
    assert_eq!(own + applied, 8, "own {own}, applied {applied}");
    assert!(own >= 1, "A's tail stepped over its own batches: own {own}");
    assert!(
        applied >= 4,
        "A's tail applied B's 4 batches: applied {applied}"
    );
    // A host new to A (series and agent) reaches B: A's tail reads just its series and its
    // host's facts, not every series again (that happens at most every ten minutes).
    let reads = |text: &str, kind: &str| {
        metric(
            text,
            &format!("yunwei_ha_tail_series_reads_total{{kind=\"{kind}\"}}"),
        ) as i64
    };
    let text = ca.get_text("/metrics").await.unwrap();
    let (all_before, new_before) = (reads(&text, "all"), reads(&text, "new"));
    assert!(
        all_before >= 1,
        "A's tail read every series once: {all_before}"
    );
    let z = cb.enroll("tail-z").await.unwrap();
    push_seq(&cb, &z, "tail-z", 1).await;
    wait_for(20, "A's window to hold the new host's batch", async || {
        (window_samples(&ca, "tail-z").await == Some(1)).then_some(())
    })
    .await;
    let text = ca.get_text("/metrics").await.unwrap();
    assert_eq!(
        reads(&text, "all"),
        all_before,
        "no second read of every series"
    );
    assert_eq!(
        reads(&text, "new"),
        new_before + 1,
        "one read of the new series"
    );

    // A dies: B takes over, rebuilds its window from the store, and tails from there.
    a.kill9();
    wait_for(30, "B to lead", async || {
        (role(&b).await.as_deref() == Some("leader")).then_some(())
    })
    .await;
    let before = tail_counts(&cb).await.unwrap();
    a.restart().await.unwrap();
    for seq in 5..=8 {
        push_seq(&cb, &y, "tail-y", seq).await;
        push_seq(&ca, &x, "tail-x", seq).await;
    }
    wait_for(20, "B's window to hold every batch", async || {
        (window_samples(&cb, "tail-x").await == Some(8)
            && window_samples(&cb, "tail-y").await == Some(8))
        .then_some(())
    })
    .await;
    let (own, applied) = wait_for(20, "B's tail to pass the 8 new batches", async || {
        tail_counts(&cb)
            .await
            .map(|(o, n)| (o - before.0, n - before.1))
            .filter(|(o, n)| o + n >= 8)
    })
    .await;
    assert_eq!(own + applied, 8, "own {own}, applied {applied}");
    assert!(own >= 1, "B's tail stepped over its own batches: own {own}");
    assert!(
        applied >= 4,
        "B's tail applied A's 4 batches: applied {applied}"
    );
    assert_eq!(role(&a).await.as_deref(), Some("follower"));
    drop(pg);
}

/// The acknowledge link's token in a mail's text.
fn ack_token(mail: &Value) -> String {
    let text = mail["text"].as_str().unwrap_or_default();
    let at = text.find("/ack/").expect("an acknowledge link");
    text[at + 5..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
}

/// An acknowledgement reaching a follower (behind a load balancer, any replica gets it) is
/// carried out by the leader: the follower answers as the leader would, the acknowledgement
/// and its audit row are stored once, and the acknowledged group's tier-2 mail is not sent —
/// while another group, down later and not acknowledged, escalates (so the tier-2 time of
/// the acknowledged one has passed when that is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_through_a_follower_stops_the_escalation() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let smtp_port = free_addr().port();
    let Some(smtp) = Smtp::start(smtp_port, &work.path().join("mail")) else {
        return;
    };
    let rules = work.path().join("probe.rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: probes\n    interval: 1s\n    rules:\n      - alert: ProbeDown\n        \
         expr: probe_success == 0\n        for: 1s\n        labels:\n          \
         severity: critical\n        annotations:\n          summary: \"{{ $labels.probe }} is down\"\n",
    )
    .unwrap();
    const TIER2_SECS: u64 = 8;
    let config = format!(
        "ha: {{lease_secs: 6, renew_every_secs: 2}}\n\
         rules:\n  files: [{rules}]\n  evaluation_interval_secs: 1\nnotify:\n  \
         smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, from: 'yunwei <alerts@example.org>', timeout_secs: 2}}\n  \
         receivers:\n    - name: oncall\n      email: [{{to: [oncall@example.org], language: en}}]\n    \
         - name: boss\n      email: [{{to: [boss@example.org], language: en}}]\n  \
         route:\n    receiver: oncall\n    group_by: [alertname, probe]\n    group_wait: 0s\n    \
         group_interval: 1s\n    repeat_interval: 1h\n    escalation: up\n  \
         escalation_policies:\n    - name: up\n      tiers: [{{after: {TIER2_SECS}s, receiver: boss}}]\n  \
         retry: {{initial: 500ms, max: 1s}}\n",
        rules = rules.display()
    );
    let db = Db::Postgres(pg.url.clone());
    let a = ServerProcess::start_replica(&db, &config, "replica-a")
        .await
        .unwrap();
    wait_for(10, "A to lead", async || {
        (role(&a).await.as_deref() == Some("leader")).then_some(())
    })
    .await;
    let b = ServerProcess::start_replica(&db, &config, "replica-b")
        .await
        .unwrap();
    assert_eq!(role(&b).await.as_deref(), Some("follower"));

    let portal = Arc::new(AtomicBool::new(true));
    let billing = Arc::new(AtomicBool::new(true));
    let probes = format!(
        "probes:\n  - name: portal\n    http: {}\n    expect_body: ok\n    interval_secs: 1\n    \
         timeout_secs: 1\n  - name: billing\n    http: {}\n    expect_body: ok\n    \
         interval_secs: 1\n    timeout_secs: 1\n",
        http_target(portal.clone()),
        http_target(billing.clone())
    );
    let mut agent = agent(work.path(), "behind-b", &[&b], &probes);
    let is = |m: &Value, to: &str, probe: &str| {
        m["to"] == to && subject(m).contains(&format!("probe={probe}"))
    };

    portal.store(false, Ordering::SeqCst);
    let first = wait_for(30, "the portal's first mail", async || {
        smtp.mails()
            .into_iter()
            .find(|m| is(m, "oncall@example.org", "portal"))
    })
    .await;
    let token = ack_token(&first);

    // The on-call person follows the link; the balancer sends the POST to the follower B.
    assert_eq!(role(&b).await.as_deref(), Some("follower"));
    let done = reqwest::Client::new()
        .post(b.url(&format!("/ack/{token}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = done.status();
    let page = done.text().await.unwrap();
    assert_eq!(status, 200, "{page}\n{}", b.log());
    assert!(
        page.contains("Alert acknowledged by oncall@example.org"),
        "{page}"
    );
    assert!(
        a.log()
            .contains("applied an acknowledgement received by a follower"),
        "the leader applied it:\n{}",
        a.log()
    );
    let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    let acks: Vec<(String, String, String)> =
        sqlx::query("SELECT action, actor, via FROM notify_acks")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    assert_eq!(
        acks,
        vec![("ack".into(), "oncall@example.org".into(), "link".into())]
    );
    let audited: i64 = sqlx::query(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'POST /ack/{token}' AND result = 'success'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get(0);
    assert_eq!(audited, 1, "one audit row for the acknowledgement");
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM ack_requests")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the answered request is removed");
    // The link works once, on any replica.
    let again = reqwest::Client::new()
        .post(a.url(&format!("/ack/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 410);

    // Billing goes down after the portal's acknowledgement: its tier 2 falls due after the
    // portal's would have.
    billing.store(false, Ordering::SeqCst);
    wait_for(30, "billing's first mail", async || {
        smtp.mails()
            .into_iter()
            .find(|m| is(m, "oncall@example.org", "billing"))
    })
    .await;
    wait_for(TIER2_SECS + 30, "billing's tier-2 mail", async || {
        smtp.mails()
            .into_iter()
            .find(|m| is(m, "boss@example.org", "billing"))
    })
    .await;
    assert!(
        !smtp
            .mails()
            .iter()
            .any(|m| is(m, "boss@example.org", "portal")),
        "the acknowledged portal group escalated: {:?}",
        smtp.mails()
    );
    terminate_child(&mut agent);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_second_server_on_the_same_data_directory() {
    let first = ServerProcess::start(&Db::Sqlite, "").await.unwrap();
    let out = Command::new(bin("yunwei-server"))
        .args(["serve", "--config"])
        .arg(&first.config_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second server started");
    let err = String::from_utf8_lossy(&out.stderr);
    let data = first.dir.path().join("data");
    assert!(
        err.contains("another yunwei-server is already running on the data directory")
            && err.contains(&data.display().to_string()),
        "{err}"
    );
    // The first one still serves.
    assert!(
        reqwest::get(first.url("/readyz"))
            .await
            .unwrap()
            .status()
            .is_success()
    );
}
