//! The store test suite, run against SQLite and PostgreSQL alike: an in-process server on
//! `127.0.0.1:0` is fed batches over HTTP, maintenance passes run with a chosen clock, and the
//! results are read back through the store and the API.

use std::collections::BTreeMap;

use yunwei_proto::{Event, Sample};
mod common;

use common::{Harness, admin_token};
use yunwei_server::{
    AppState, Server,
    config::{Overrides, ServerConfig},
    ingest::{self, KIND_HOST, KIND_PROBE},
    store::HOUR_MS,
    timeline::State,
};
use yunwei_tests::{AgentClient, Enrolled, PgDatabase, SECRET, batch, now_ms};

yunwei_tests::both_backends!(
    redelivery_is_deduplicated,
    backfill_lands_in_its_hour_and_fills_the_unknown_gap,
    rollups_are_exact_and_recomputed_after_late_data,
    derived_resource_kpis_are_stored_with_the_rollups_and_match_them,
    retention_keeps_rollups_and_still_deduplicates_pruned_batches,
    probes_produce_up_and_down_intervals,
    series_limit_rejects_the_whole_batch,
    reopening_the_store_keeps_everything,
    live_window_is_fed_on_ingest_and_refilled_at_start,
    alert_state_survives_a_restart_and_reload_is_validated,
    a_late_save_of_an_older_rule_evaluation_keeps_the_newer_state,
    one_final_version_per_contract_period_and_language,
);

/// Two makers of a final version (终稿) racing — a sign-off through one replica, the schedule on
/// the leader, a paused ex-leader — cannot both archive (and so mail) one: the store keeps one
/// final per contract, period and language; other languages and other origins are unaffected.
async fn one_final_version_per_contract_period_and_language(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let store = &h.state.store;
    let row = common::report_row;
    store
        .insert_report(&row("api", 1, "zh-CN"), b"{}", &[])
        .await
        .unwrap();
    store
        .insert_report(&row("final", 2, "zh-CN"), b"{}", &[])
        .await
        .unwrap();
    store
        .insert_report(&row("final", 3, "en"), b"{}", &[])
        .await
        .unwrap();
    let second = store
        .insert_report(&row("final", 4, "zh-CN"), b"{}", &[])
        .await;
    assert!(
        matches!(&second, Err(sqlx::Error::Database(d)) if d.is_unique_violation()),
        "{second:?}"
    );
    store
        .insert_report(&row("api", 5, "zh-CN"), b"{}", &[])
        .await
        .unwrap();
    let versions: Vec<(i64, String)> = store
        .reports(Some("c1"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.version, r.origin))
        .collect();
    assert_eq!(versions.len(), 4, "{versions:?}");
    assert!(!versions.iter().any(|v| v.0 == 4), "{versions:?}");
    h.stop().await;
}

async fn a_late_save_of_an_older_rule_evaluation_keeps_the_newer_state(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let store = &h.state.store;
    store.save_rule_state("g", "newer", 2_000).await.unwrap();
    store.save_rule_state("g", "older", 1_000).await.unwrap();
    assert_eq!(
        store.rule_states().await.unwrap(),
        vec![("g".to_string(), "newer".to_string())]
    );
    store.save_rule_state("g", "newest", 3_000).await.unwrap();
    assert_eq!(store.rule_states().await.unwrap()[0].1, "newest");
    h.stop().await;
}

async fn redelivery_is_deduplicated(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let e = h.client.enroll("web-01").await.unwrap();
    let t = now_ms();
    let b = batch(&e, "web-01", 1, t, 10);
    let first = h.ok(&e, &b).await;
    assert_eq!(first["duplicate"], false);
    let again = h.ok(&e, &b).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(h.state.store.raw_sample_count().await.unwrap(), 10);
    let counts = h.state.store.counts().await.unwrap();
    assert_eq!(counts["batches"], 1);
    assert_eq!(counts["series"], 10);
    h.stop().await;
}

async fn backfill_lands_in_its_hour_and_fills_the_unknown_gap(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let e = h.client.enroll("web-02").await.unwrap();
    let now = now_ms();
    // Live batches before and after an outage of 10 minutes...
    let before = now - 11 * 60_000;
    h.ok(&e, &batch(&e, "web-02", 1, before, 3)).await;
    // (Sequence numbers follow collection order, as an agent's do: the live batch after the
    // outage is numbered after everything the spool holds.)
    h.ok(&e, &batch(&e, "web-02", 1000, now, 3)).await;
    let spans = h
        .state
        .store
        .intervals(KIND_HOST, &e.agent_id, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(spans.len(), 2, "an outage leaves a gap: {spans:?}");
    // ...then the agent's spool replays the outage every 15 s.
    let mut seq = 2;
    let mut t = before + 15_000;
    while t < now {
        h.ok(&e, &batch(&e, "web-02", seq, t, 3)).await;
        seq += 1;
        t += 15_000;
    }
    let spans = h
        .state
        .store
        .intervals(KIND_HOST, &e.agent_id, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(spans.len(), 1, "backfill joins the spans: {spans:?}");
    assert_eq!(spans[0].state, State::Up);
    assert!(
        spans[0].start <= before + 1000 && spans[0].end >= now,
        "{spans:?}"
    );

    // A batch from 3 hours ago lands in that hour's rollup.
    let old = now - 3 * HOUR_MS;
    h.ok(&e, &batch(&e, "web-02", 100, old, 3)).await;
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    let hour = old.div_euclid(HOUR_MS) * HOUR_MS;
    let ids: Vec<i64> = h
        .state
        .store
        .all_series()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let r = h.state.store.rollups(&ids, hour, hour).await.unwrap();
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(
        r.iter()
            .all(|r| r.count == 1 && r.hour_ms == hour && r.min >= 100_000.0)
    );
    h.stop().await;
}

async fn rollups_are_exact_and_recomputed_after_late_data(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let e = h.client.enroll("db-01").await.unwrap();
    let now = now_ms();
    let hour = (now - 5 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let values = [5.0, -2.0, 7.5, 1.0];
    for (i, v) in values.iter().enumerate() {
        let mut b = batch(&e, "db-01", i as u64 + 1, hour + i as i64 * 60_000, 0);
        b.samples.push(Sample {
            name: "node_load1".into(),
            labels: Default::default(),
            value: *v,
            ts_ms: b.collected_at_ms,
        });
        h.ok(&e, &b).await;
    }
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    let ids: Vec<i64> = h
        .state
        .store
        .series_named("node_load1")
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let r = h.state.store.rollups(&ids, hour, hour).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].min, r[0].max, r[0].sum, r[0].count, r[0].last),
        (-2.0, 7.5, 11.5, 4, 1.0)
    );

    // A late sample for the same hour dirties it again; the next pass includes it exactly once.
    let mut late = batch(&e, "db-01", 99, hour + 59 * 60_000, 0);
    late.samples.push(Sample {
        name: "node_load1".into(),
        labels: Default::default(),
        value: 10.0,
        ts_ms: late.collected_at_ms,
    });
    h.ok(&e, &late).await;
    h.ok(&e, &late).await; // redelivered: no double count
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    let r = h.state.store.rollups(&ids, hour, hour).await.unwrap();
    assert_eq!(
        (r[0].max, r[0].sum, r[0].count, r[0].last),
        (10.0, 21.5, 5, 10.0)
    );
    assert_eq!(h.state.store.counts().await.unwrap()["rollup_dirty"], 0);

    // The series API serves the same figures from rollups.
    let v = h
        .client
        .get_json(&format!(
            "/api/v1/yunwei/series?match=node_load1&from={}&to={}&source=rollup",
            hour / 1000,
            (hour + HOUR_MS) / 1000
        ))
        .await
        .unwrap();
    let series = &v["data"]["result"][0];
    assert_eq!(series["metric"]["instance"], "db-01");
    assert_eq!(series["metric"]["department"], "数据局");
    assert_eq!(series["rollups"][0]["count"], 5);
    assert_eq!(series["values"][0][1], "4.3");
    // `step` takes Prometheus's duration grammar, compound durations included.
    let v = h
        .client
        .get_json(&format!(
            "/api/v1/yunwei/series?match=node_load1&from={}&to={}&source=rollup&step=1h30m",
            hour / 1000,
            (hour + HOUR_MS) / 1000
        ))
        .await
        .unwrap();
    assert_eq!(v["data"]["result"][0]["values"][0][1], "4.3", "{v}");
    let bad = h
        .client
        .get_json("/api/v1/yunwei/series?match=node_load1&step=30m1h")
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("400") && bad.contains("step"), "{bad}");
    h.stop().await;
}

const KPI_CONTRACT: &str = r#"id: kpi
name: 资源指标
parties: { buyer: 甲方, vendor: 乙方 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: s, name: 系统, tier: core, hosts: { hostname: kpi-01 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
  resources:
    - { id: cpu, name: CPU, metric: cpu_usage_ratio, aggregate: max, below: 0.9 }
    - { id: mem, name: 内存, metric: memory_used_ratio, aggregate: max, below: 0.9 }
    - { id: disk, name: 磁盘, metric: disk_used_ratio, aggregate: max, below: 0.9 }
scoring:
  base: 100
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 0 }
"#;

/// The rollup job stores each hour's CPU, memory and disk ratios per host (`kpi_hours`); the
/// evidence read from those rows equals what is derived from the rollups for hours without
/// them (data rolled up before the table existed).
async fn derived_resource_kpis_are_stored_with_the_rollups_and_match_them(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let e = h.client.enroll("kpi-01").await.unwrap();
    let now = now_ms();
    let first = (now - 6 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let sample = |name: &str, labels: &[(&str, &str)], value: f64, ts_ms: i64| Sample {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        ts_ms,
    };
    // Two hours, four batches each: CPU counters growing 30 s idle and 10 s user per minute
    // (first hour; then 20 / 20), memory 3 of 4 GB available, two filesystems.
    let mut seq = 0;
    for (hour, idle_rate) in [(first, 30.0), (first + HOUR_MS, 20.0)] {
        for i in 0..4 {
            seq += 1;
            let t = hour + i * 60_000;
            let m = i as f64;
            let mut b = batch(&e, "kpi-01", seq, t, 0);
            b.samples = vec![
                sample(
                    "node_cpu_seconds_total",
                    &[("cpu", "0"), ("mode", "idle")],
                    1e4 + idle_rate * m,
                    t,
                ),
                sample(
                    "node_cpu_seconds_total",
                    &[("cpu", "0"), ("mode", "user")],
                    5e3 + (40.0 - idle_rate) * m,
                    t,
                ),
                sample("node_memory_MemAvailable_bytes", &[], 3e9, t),
                sample("node_memory_MemTotal_bytes", &[], 4e9, t),
                sample(
                    "node_filesystem_avail_bytes",
                    &[("mountpoint", "/")],
                    60e9 - 1e9 * m,
                    t,
                ),
                sample(
                    "node_filesystem_size_bytes",
                    &[("mountpoint", "/")],
                    100e9,
                    t,
                ),
                sample(
                    "node_filesystem_avail_bytes",
                    &[("mountpoint", "/data")],
                    150e9,
                    t,
                ),
                sample(
                    "node_filesystem_size_bytes",
                    &[("mountpoint", "/data")],
                    200e9,
                    t,
                ),
            ];
            h.ok(&e, &b).await;
        }
    }
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();

    let mut stored = Vec::new();
    let hours = h
        .state
        .store
        .kpi_hours(
            "cpu_usage_ratio",
            first,
            first + HOUR_MS,
            |hour, host, v| stored.push((hour, host.to_string(), v)),
        )
        .await
        .unwrap();
    assert_eq!(hours, vec![first, first + HOUR_MS]);
    assert_eq!(
        stored,
        vec![
            (first, e.agent_id.clone(), 0.25),
            (first + HOUR_MS, e.agent_id.clone(), 0.5)
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kpi.yml");
    std::fs::write(&path, KPI_CONTRACT).unwrap();
    let c = yunwei_server::contracts::load_file(&path).unwrap();
    let (from, to) = (first, first + 2 * HOUR_MS);
    // The membership pass assigns the host (first seen, labels matching) as the server would.
    yunwei_server::membership::sync(&h.state.store, &c, now, true)
        .await
        .unwrap();
    let gather = || yunwei_server::contracts::gather(&h.state.store, &c, from, to, false);
    let derived = gather().await.unwrap();
    let got: Vec<(&str, i64, f64)> = derived
        .resources
        .iter()
        .map(|r| (r.metric.as_str(), r.hour_ms, r.max))
        .collect();
    // Disk: the hourly mean of "/" is 58.5 GB available of 100 GB, fuller than "/data".
    assert_eq!(
        got,
        vec![
            ("cpu_usage_ratio", first, 0.25),
            ("cpu_usage_ratio", first + HOUR_MS, 0.5),
            ("disk_used_ratio", first, 1.0 - 58.5e9 / 100e9),
            ("disk_used_ratio", first + HOUR_MS, 1.0 - 58.5e9 / 100e9),
            ("memory_used_ratio", first, 0.25),
            ("memory_used_ratio", first + HOUR_MS, 0.25),
        ]
    );
    assert_eq!(
        derived.resources[0].id,
        format!("rollup:cpu_usage_ratio:{}:{first}", e.agent_id)
    );

    // Older data: one hour, then both, without derived rows give the same evidence.
    for cutoff in [first + HOUR_MS, to] {
        sqlx::query("DELETE FROM kpi_hours WHERE hour_ms < $1")
            .bind(cutoff)
            .execute(h.state.store.pool())
            .await
            .unwrap();
        assert_eq!(gather().await.unwrap(), derived);
    }
    h.stop().await;
}

async fn retention_keeps_rollups_and_still_deduplicates_pruned_batches(backend: &str) {
    let Some(h) = Harness::start(backend, |c| c.retention.raw_hours = 2).await else {
        return;
    };
    let e = h.client.enroll("app-01").await.unwrap();
    let now = now_ms();
    let old = now - 4 * HOUR_MS;
    let b = batch(&e, "app-01", 1, old, 4);
    h.ok(&e, &b).await;
    h.ok(&e, &batch(&e, "app-01", 2, now, 4)).await;
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    let counts = h.state.store.counts().await.unwrap();
    assert_eq!(
        counts["batches"], 1,
        "the old raw batch is pruned: {counts:?}"
    );
    assert_eq!(counts["rollups"], 4, "its rollups stay: {counts:?}");
    let again = h.ok(&e, &b).await;
    assert_eq!(
        again["duplicate"], true,
        "a pruned batch is still recognised"
    );
    assert_eq!(h.state.store.counts().await.unwrap()["batches"], 1);
    h.stop().await;
}

async fn probes_produce_up_and_down_intervals(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let e = h.client.enroll("probe-01").await.unwrap();
    let start = now_ms() - 20 * 60_000;
    for i in 0..20u64 {
        let t = start + i as i64 * 15_000;
        let mut b = batch(&e, "probe-01", i + 1, t, 0);
        let up = !(8..12).contains(&i);
        b.samples.push(Sample {
            name: "probe_success".into(),
            labels: BTreeMap::from([("probe".to_string(), "portal".to_string())]).into(),
            value: if up { 1.0 } else { 0.0 },
            ts_ms: t,
        });
        if i == 8 {
            b.events.push(Event::ProbeState {
                probe: "portal".into(),
                labels: BTreeMap::new(),
                up: false,
                ts_ms: t,
                reason: Some("http status 503".into()),
            });
        }
        h.ok(&e, &b).await;
    }
    let subject = format!("{}/portal", e.agent_id);
    let spans = h
        .state
        .store
        .intervals(KIND_PROBE, &subject, 0, i64::MAX)
        .await
        .unwrap();
    let states: Vec<State> = spans.iter().map(|s| s.state).collect();
    assert_eq!(states, vec![State::Up, State::Down, State::Up], "{spans:?}");
    // The down span lasts from the first failure to the first success: 4 probes of 15 s. The
    // server places observations with its own clock, so allow for send jitter.
    let down = spans[1].end - spans[1].start;
    assert!((59_000..=61_000).contains(&down), "{spans:?}");
    let host = h
        .client
        .get_json(&format!("/api/v1/hosts/{}", e.agent_id))
        .await
        .unwrap();
    assert_eq!(host["probes"][0]["probe"], "portal");
    assert_eq!(host["events"][0]["kind"], "probe_state");
    h.stop().await;
}

async fn series_limit_rejects_the_whole_batch(backend: &str) {
    let Some(h) = Harness::start(backend, |c| c.ingest.max_series_per_agent = 5).await else {
        return;
    };
    let e = h.client.enroll("big-01").await.unwrap();
    let (status, body) = h
        .client
        .push(&e.token, &batch(&e, "big-01", 1, now_ms(), 6))
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["kind"], "series_limit");
    assert_eq!(v["error"]["field"], "samples[5]");
    let counts = h.state.store.counts().await.unwrap();
    assert_eq!((counts["series"], counts["batches"]), (0, 0), "{counts:?}");
    // Within the limit it is accepted.
    h.ok(&e, &batch(&e, "big-01", 2, now_ms(), 5)).await;
    h.stop().await;
}

async fn reopening_the_store_keeps_everything(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pg = if backend == "postgres" {
        match PgDatabase::create().await {
            Some(p) => Some(p),
            None => return,
        }
    } else {
        None
    };
    let url = pg.as_ref().map_or_else(
        || format!("sqlite://{}/y.db", dir.path().display()),
        |p| p.url.clone(),
    );
    let s = yunwei_server::store::Store::open(&url, true).await.unwrap();
    s.close().await;
    // Migrations are idempotent and data survives.
    let s = yunwei_server::store::Store::open(&url, true).await.unwrap();
    assert_eq!(s.counts().await.unwrap()["agents"], 0);
    s.close().await;
}

/// Overload answers 429 (one agent has too many batches in flight) and 503 (the writer's queue
/// is full), both with `Retry-After`, and the batches already queued still commit. The writer is
/// held up deterministically by a second connection holding SQLite's write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_answers_429_and_503_with_retry_after() {
    use sqlx::{Connection, Executor};
    let Some(h) = Harness::start("sqlite", |c| {
        c.ingest.queue_batches = 1;
        c.ingest.max_inflight_per_agent = 1;
    })
    .await
    else {
        return;
    };
    let (a, b, c) = (
        h.client.enroll("a").await.unwrap(),
        h.client.enroll("b").await.unwrap(),
        h.client.enroll("c").await.unwrap(),
    );
    // The maintenance pass the server runs at start goes through the writer too: let it finish
    // before the lock is taken, or it, not the batch, is what waits for the lock.
    let mut started = false;
    for _ in 0..1500 {
        if prometheus::core::Collector::collect(&h.state.metrics.retention_deleted)
            .iter()
            .any(|f| !f.get_metric().is_empty())
        {
            started = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(started, "the start-up maintenance pass ran");
    let db = h.state.config.data_dir.join("yunwei.db");
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    lock.execute("BEGIN IMMEDIATE").await.unwrap();

    let push = |e: &Enrolled, host: &str, seq| {
        let (client, e, b) = (
            h.client.clone(),
            e.clone(),
            batch(e, host, seq, now_ms(), 3),
        );
        tokio::spawn(async move { client.push(&e.token, &b).await.unwrap() })
    };
    let raw = |e: &Enrolled, host: &str, seq| {
        let body = yunwei_proto::encode_batch(&batch(e, host, seq, now_ms(), 3));
        h.client
            .http
            .post(format!("{}/api/v1/ingest", h.client.base))
            .header("content-type", yunwei_proto::CONTENT_TYPE)
            .header("content-encoding", "gzip")
            .bearer_auth(&e.token)
            .body(body)
            .send()
    };
    // Waits (at most 30 s) until `cond` holds twice 20 ms apart: the handler takes the agent's
    // slot and queues the batch with no await in between, so a state seen twice is settled.
    let settled = async |what: &str, cond: &dyn Fn() -> bool| {
        for _ in 0..1500 {
            if cond() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                if cond() {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("never settled: {what}");
    };
    let queue = || h.state.metrics.ingest_queue.get();
    let inflight = |agent: &str| {
        h.state
            .ingest
            .inflight
            .lock()
            .unwrap()
            .get(agent)
            .copied()
            .unwrap_or(0)
    };
    let first = push(&a, "a", 1); // taken by the writer, which then waits for the lock
    settled("the writer took a's batch", &|| {
        inflight(&a.agent_id) == 1 && queue() == 0
    })
    .await;
    let r = raw(&a, "a", 2).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let queued = push(&b, "b", 1); // fills the queue of one
    settled("b's batch is queued", &|| queue() == 1).await;
    let r = raw(&c, "c", 1).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");

    lock.execute("ROLLBACK").await.unwrap();
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(queued.await.unwrap().0, 200);
    let metrics = h.client.get_text("/metrics").await.unwrap();
    assert!(
        metrics.contains("yunwei_ingest_rejected_total{reason=\"overloaded\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("yunwei_ingest_rejected_total{reason=\"too_many_requests\"} 1"));
    assert_eq!(h.state.store.counts().await.unwrap()["batches"], 2);
    h.stop().await;
}

async fn live_window_is_fed_on_ingest_and_refilled_at_start(backend: &str) {
    use yunwei_rules::promql::{Options, Value, eval_instant};
    let dir = tempfile::tempdir().unwrap();
    let pg = if backend == "postgres" {
        match PgDatabase::create().await {
            Some(p) => Some(p),
            None => return,
        }
    } else {
        None
    };
    let url = pg.as_ref().map(|p| p.url.clone());
    let start = |url: Option<String>| {
        let dir = dir.path().to_path_buf();
        async move {
            let mut config = ServerConfig::from_overrides(&Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                data_dir: Some(dir),
                database_url: url,
            })
            .unwrap();
            config.enrollment_secret = Some(SECRET.into());
            Server::bind(config).await.unwrap()
        }
    };
    let query = |state: &AppState, t: i64| {
        let w = state.live.window.read().unwrap();
        match eval_instant(
            r#"sum by (instance, department) (test_metric)"#,
            t,
            &w.storage,
            &Options::default(),
        )
        .unwrap()
        {
            Value::InstantVector(v) => v
                .iter()
                .map(|s| (s.labels.to_string(), s.v))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    };
    let server = start(url.clone()).await;
    let state = server.state();
    let client = AgentClient::for_base(&format!("http://{}", server.local_addr()))
        .with_token(&admin_token(&state).await);
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let e = client.enroll("web-09").await.unwrap();
    let t = now_ms();
    let (status, _) = client
        .push(&e.token, &batch(&e, "web-09", 1, t - 30_000, 3))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // values 1000, 1001, 1002
    let expected = vec![(
        r#"{department="数据局", instance="web-09"}"#.to_string(),
        3003.0,
    )];
    assert_eq!(query(&state, t), expected);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    drop(state);

    let server = start(url).await;
    assert_eq!(
        query(&server.state(), t),
        expected,
        "refilled from the raw window at start"
    );
}

const TEST_RULES: &str = r#"groups:
  - name: test
    interval: 1s
    rules:
      - record: job:test_metric:sum
        expr: sum without (i) (test_metric)
      - alert: TestPending
        expr: test_metric > 0
        for: 1h
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.instance }} 的 test_metric 为 {{ $value }}"
      - alert: TestFiring
        expr: test_metric > 0
"#;

async fn alert_state_survives_a_restart_and_reload_is_validated(backend: &str) {
    use yunwei_server::rules::eval_due;
    let dir = tempfile::tempdir().unwrap();
    let pg = if backend == "postgres" {
        match PgDatabase::create().await {
            Some(p) => Some(p),
            None => return,
        }
    } else {
        None
    };
    let rules_path = dir.path().join("test.rules.yml");
    std::fs::write(&rules_path, TEST_RULES).unwrap();
    let url = pg.as_ref().map(|p| p.url.clone());
    let start = || {
        let (dir, url, rules_path) = (dir.path().to_path_buf(), url.clone(), rules_path.clone());
        async move {
            let mut config = ServerConfig::from_overrides(&Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                data_dir: Some(dir),
                database_url: url,
            })
            .unwrap();
            config.enrollment_secret = Some(SECRET.into());
            config.rules.files = vec![rules_path];
            let server = Server::bind(config).await.unwrap();
            let state = server.state();
            let client = AgentClient::for_base(&format!("http://{}", server.local_addr()))
                .with_token(&admin_token(&state).await);
            let (stop, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(server.run(async {
                let _ = rx.await;
            }));
            // On PostgreSQL the server first wins the lease, then rebuilds its window and
            // restores the saved rule state; evaluating before that would race the restore.
            if state.config.database_url.starts_with("postgres") {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while !state.live.window.read().unwrap().tailed() {
                    assert!(std::time::Instant::now() < deadline, "never became leader");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            (state, client, stop, task)
        }
    };
    let alerts = |v: &serde_json::Value| -> Vec<(String, String, String, String)> {
        let mut a: Vec<_> = v["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_string(),
                    a["state"].as_str().unwrap().to_string(),
                    a["activeAt"].as_str().unwrap().to_string(),
                    a["firedAt"].to_string(),
                )
            })
            .collect();
        a.sort();
        a
    };

    let (state, client, stop, task) = start().await;
    let e = client.enroll("web-07").await.unwrap();
    let t = now_ms();
    client
        .push(&e.token, &batch(&e, "web-07", 1, t, 1))
        .await
        .unwrap();
    eval_due(&state.rules, t + 2_000).await;
    let before = alerts(&client.get_json("/api/v1/alerts").await.unwrap());
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(
        (before[0].0.as_str(), before[0].1.as_str()),
        ("TestFiring", "firing")
    );
    assert_eq!(
        (before[1].0.as_str(), before[1].1.as_str()),
        ("TestPending", "pending")
    );
    let rules = client.get_json("/api/v1/rules").await.unwrap();
    let alert = &rules["data"]["groups"][0]["rules"][1]["alerts"][0];
    assert_eq!(
        alert["annotations"]["summary"],
        "web-07 的 test_metric 为 1000"
    );
    // The recording rule's series is in the live window.
    {
        let w = state.live.window.read().unwrap();
        let v = yunwei_rules::promql::eval_instant(
            "job:test_metric:sum",
            t + 2_000,
            &w.storage,
            &Default::default(),
        )
        .unwrap();
        assert!(format!("{v:?}").contains("1000"), "{v:?}");
    }

    // An invalid rule file is refused and the running set stays.
    std::fs::write(&rules_path, "groups:\n  - name: x\n    rulez: []\n").unwrap();
    let r = client
        .api(reqwest::Method::POST, "/api/v1/rules/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("test.rules.yml:3:5"),
        "{body}"
    );
    assert_eq!(
        client.get_json("/api/v1/rules").await.unwrap()["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    std::fs::write(&rules_path, TEST_RULES).unwrap();

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    drop(state);

    // After a restart the pending alert keeps its `for` timer and the firing one is not re-fired.
    let (state, client, stop, task) = start().await;
    eval_due(&state.rules, t + 60_000).await;
    let after = alerts(&client.get_json("/api/v1/alerts").await.unwrap());
    assert_eq!(
        after, before,
        "same states, activeAt and firedAt after a restart"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
