//! The agent's durable spool, end to end: a real `yunwei-server` and a real `yunwei-agent`
//! process. What is asserted is what the server stored: every batch the agent numbered is either
//! stored exactly once or reported lost in a `spool_gap` event.

use std::time::{Duration, Instant};

use serde_json::Value;
use yunwei_tests::{
    AgentClient, Db, ServerProcess, now_ms, spawn_agent, terminate_child, write_agent_config,
};

/// Polls `f` until it returns `Some`, or fails after `secs` with `what` and the agent's log.
async fn eventually<T, F: AsyncFnMut() -> Option<T>>(
    secs: u64,
    what: &str,
    log: &std::path::Path,
    mut f: F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; agent log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the server holds for the only host: `(agent_id, last_seq)`.
async fn host(client: &AgentClient) -> Option<(String, u64)> {
    let v = client.get_json("/api/v1/hosts").await.ok()?;
    let hosts = v["hosts"].as_array()?;
    assert!(hosts.len() <= 1, "one agent, one identity: {v}");
    let h = hosts.first()?;
    Some((h["agent_id"].as_str()?.to_string(), h["last_seq"].as_u64()?))
}

/// Timestamps (ms) of the stored `node_time_seconds` points: one per host batch, so their number
/// is the number of batches stored.
async fn batch_points(client: &AgentClient) -> Vec<i64> {
    let from = (now_ms() - 3_600_000) / 1000;
    let v = client
        .get_json(&format!(
            "/api/v1/yunwei/series?match=node_time_seconds&from={from}&source=raw"
        ))
        .await
        .unwrap();
    let mut ts: Vec<i64> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().clone())
        .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
        .collect();
    ts.sort_unstable();
    ts
}

/// Batches the agent reported lost, summed over the stored `spool_gap` events.
async fn reported_lost(client: &AgentClient, agent_id: &str) -> u64 {
    let v = client
        .get_json(&format!("/api/v1/hosts/{agent_id}"))
        .await
        .unwrap();
    v["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["kind"] == "spool_gap")
                .map(|e| gap_batches(&e["detail"]))
                .sum()
        })
        .unwrap_or(0)
}

fn gap_batches(detail: &Value) -> u64 {
    let detail = match detail {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    detail["dropped_batches"].as_u64().unwrap_or(0)
}

/// `(last_seq, stored batches, reported lost)` once every numbered batch is accounted for.
async fn accounted(client: &AgentClient) -> Option<(u64, usize, u64)> {
    let (id, last_seq) = host(client).await?;
    let stored = batch_points(client).await.len();
    let lost = reported_lost(client, &id).await;
    (stored as u64 + lost == last_seq).then_some((last_seq, stored, lost))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_spools_while_the_server_is_down_and_every_batch_arrives_exactly_once() {
    let started = Instant::now();
    let mut server = ServerProcess::start(&Db::Sqlite, "").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &server, "metrics_listen: \"off\"\n");
    let log = dir.path().join("agent.log");
    let mut agent = spawn_agent(&config, &log);
    let client = AgentClient::new(&server);
    eventually(30, "two batches", &log, async || {
        host(&client).await.filter(|(_, seq)| *seq >= 2)
    })
    .await;

    server.kill9();
    let down_from = now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let down_to = now_ms();
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent keeps running without its server"
    );
    server.restart().await.unwrap();
    let client = AgentClient::new(&server);
    let (last_seq, stored, lost) = eventually(45, "the spool to drain", &log, async || {
        let a = accounted(&client).await?;
        let points = batch_points(&client).await;
        let during = points
            .iter()
            .filter(|t| (down_from..down_to).contains(t))
            .count();
        (during >= 4).then_some(a)
    })
    .await;
    let status = terminate_child(&mut agent);
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    // After SIGTERM (which flushes), count again on the server.
    let (_, final_seq) = host(&client).await.unwrap();
    let points = batch_points(&client).await;
    let mut distinct = points.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), points.len(), "no batch stored twice");
    assert_eq!(lost, 0, "nothing had to be dropped");
    assert_eq!(
        points.len() as u64,
        final_seq,
        "every batch 1..={final_seq} stored exactly once"
    );
    let during = points
        .iter()
        .filter(|t| (down_from..down_to).contains(t))
        .count();
    assert!(
        during >= 5,
        "the agent kept collecting during the 6 s outage: {during} batches"
    );
    eprintln!(
        "outage test: {last_seq} batches ({stored} stored when drained, {during} collected during \
         the outage, {final_seq} at exit) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A small deterministic generator, so a failing run can be repeated with its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_100_times_restarts_cleanly_without_duplicates_or_silent_loss() {
    let started = Instant::now();
    let server = ServerProcess::start(&Db::Sqlite, "").await.unwrap();
    let client = AgentClient::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let config = write_agent_config(dir.path(), &server, "metrics_listen: \"off\"\n");
    let log = dir.path().join("agent.log");

    // Enroll first: an agent killed during enrollment may enroll again under a new identity,
    // which is not what this test is about.
    let mut agent = spawn_agent(&config, &log);
    eventually(30, "enrollment", &log, async || {
        host(&client).await.filter(|(_, seq)| *seq >= 1)
    })
    .await;
    agent.kill().unwrap();
    agent.wait().unwrap();

    let seed = std::env::var("YUNWEI_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(now_ms() as u64);
    eprintln!("kill test seed {seed} (set YUNWEI_KILL_SEED to repeat)");
    let mut rng = Lcg(seed);
    for round in 0..100 {
        let mut agent = spawn_agent(&config, &log);
        // Most kills land in the first milliseconds (state, spool replay, collection, append,
        // send, ack); the rest anywhere in the first cycle.
        let delay_ms = if rng.next() % 10 < 7 {
            rng.next() % 40
        } else {
            rng.next() % 1100
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if let Some(status) = agent.try_wait().unwrap() {
            panic!(
                "round {round}: the agent exited by itself ({status}) after {delay_ms} ms; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        agent.kill().unwrap();
        agent.wait().unwrap();
    }

    // A last, undisturbed run delivers whatever the spool holds.
    let mut agent = spawn_agent(&config, &log);
    let (last_seq, stored, lost) = eventually(45, "every batch accounted for", &log, async || {
        let a = accounted(&client).await?;
        // At least one batch of this run, so the spool was read and drained.
        (a.1 >= 2).then_some(a)
    })
    .await;
    let status = terminate_child(&mut agent);
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    let (id, final_seq) = host(&client).await.unwrap();
    let points = batch_points(&client).await;
    let mut distinct = points.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), points.len(), "no collection stored twice");
    let final_lost = reported_lost(&client, &id).await;
    assert_eq!(
        points.len() as u64 + final_lost,
        final_seq,
        "every numbered batch is stored once or reported lost"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("panicked"), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(errors.is_empty(), "errors in the agent log: {errors:?}");
    let metrics = client.get_text("/metrics").await.unwrap();
    let duplicates = metrics
        .lines()
        .find_map(|l| l.strip_prefix("yunwei_ingest_batches_total{result=\"duplicate\"} "))
        .unwrap_or("0")
        .trim()
        .to_string();
    eprintln!(
        "kill test: 100 kills, {final_seq} batches numbered, {} stored, {final_lost} reported lost \
         ({last_seq}/{stored}/{lost} when drained), {duplicates} redeliveries deduplicated by the \
         server, {} damaged spool records skipped, in {:.1} s",
        points.len(),
        text.matches("skipped ").count(),
        started.elapsed().as_secs_f64()
    );
}
