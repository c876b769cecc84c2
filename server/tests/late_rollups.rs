//! Late data merges into an hour's rollups, never replaces them (SQLite and PostgreSQL).
//!
//! Backfill is accepted for `limits.max_age_ms` (14 days) while raw batches are kept only
//! `retention.raw_hours`, so an hour can receive data after its raw batches are gone. Such an
//! hour cannot be rebuilt from raw data: the late samples are merged into its stored rollups and
//! its derived KPIs follow the merged rollups. Nothing stored for an hour shrinks or disappears
//! because of late input. Time is relative to the server's clock; maintenance passes run at a
//! time the test chooses.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use yunwei_proto::{Batch, Sample};
use yunwei_server::{
    ingest,
    store::{HOUR_MS, Rollup},
};
use yunwei_tests::{Enrolled, batch, now_ms};

yunwei_tests::both_backends!(
    a_late_sample_past_raw_retention_merges_into_the_hour_instead_of_replacing_it,
    a_spool_replayed_after_three_days_offline_keeps_every_hour,
);

fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts_ms: i64) -> Sample {
    Sample {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        ts_ms,
    }
}

/// A batch at `t` with `node_load1 = load` and memory `avail` of 4 GB available.
fn load_batch(e: &Enrolled, host: &str, seq: u64, t: i64, load: f64, avail: f64) -> Batch {
    let mut b = batch(e, host, seq, t, 0);
    b.samples = vec![
        sample("node_load1", &[], load, t),
        sample("node_memory_MemAvailable_bytes", &[], avail, t),
        sample("node_memory_MemTotal_bytes", &[], 4e9, t),
    ];
    b
}

/// `batch` with two `test_metric` samples and the host's memory (1 of 4 GB available).
fn spool_batch(e: &Enrolled, seq: u64, t: i64) -> Batch {
    let mut b = batch(e, "spool-01", seq, t, 2);
    b.samples
        .push(sample("node_memory_MemAvailable_bytes", &[], 1e9, t));
    b.samples
        .push(sample("node_memory_MemTotal_bytes", &[], 4e9, t));
    b
}

/// Every rollup of `agent` for hours `from..=to`, as (name, hour, min, max, sum, count, last).
async fn rollups_of(
    h: &Harness,
    agent: &str,
    from: i64,
    to: i64,
) -> Vec<(String, i64, f64, f64, f64, i64, f64)> {
    let series: BTreeMap<i64, String> = h
        .state
        .store
        .all_series()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.agent_id == agent)
        .map(|s| (s.id, s.name))
        .collect();
    let ids: Vec<i64> = series.keys().copied().collect();
    let mut out: Vec<_> = h
        .state
        .store
        .rollups(&ids, from, to)
        .await
        .unwrap()
        .into_iter()
        .map(|r: Rollup| {
            (
                series[&r.series_id].clone(),
                r.hour_ms,
                r.min,
                r.max,
                r.sum,
                r.count,
                r.last,
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

/// Stored `memory_used_ratio` values for hours `from..=to`, as (hour, agent, value).
async fn memory_kpis(h: &Harness, from: i64, to: i64) -> Vec<(i64, String, f64)> {
    let mut out = Vec::new();
    h.state
        .store
        .kpi_hours("memory_used_ratio", from, to, |hour, host, v| {
            out.push((hour, host.to_string(), v))
        })
        .await
        .unwrap();
    out
}

/// Regression (issue 16, finding 2): one late sample into an hour whose raw batches were pruned
/// made the rollup job rebuild that hour from the raw window alone, deleting its rollups and
/// `kpi_hours` row for every host. Now the sample is merged into the stored rollups exactly (a
/// redelivery adds nothing), other hosts keep theirs, and the figures equal what a rebuild from
/// complete raw data gives for the same samples.
async fn a_late_sample_past_raw_retention_merges_into_the_hour_instead_of_replacing_it(
    backend: &str,
) {
    let Some(h) = Harness::start(backend, |c| c.retention.raw_hours = 3).await else {
        return;
    };
    let a = h.client.enroll("late-a").await.unwrap();
    let b = h.client.enroll("late-b").await.unwrap();
    // The same samples go to an hour past raw retention (agent a, merged) and to a recent hour
    // of agent c (rebuilt from complete raw data), so the two paths can be compared.
    let c = h.client.enroll("late-c").await.unwrap();
    let now = now_ms();
    let old = (now - 6 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
    // Closed for at least five minutes, inside the three hours of raw data kept.
    let recent = (now - 5 * 60_000).div_euclid(HOUR_MS) * HOUR_MS - HOUR_MS;
    let loads = [5.0, -2.0, 7.5, 1.0];
    let avails = [3e9, 2e9, 3e9, 2e9];
    for (i, (load, avail)) in loads.iter().zip(avails).enumerate() {
        let seq = i as u64 + 1;
        let dt = i as i64 * 60_000;
        h.ok(&a, &load_batch(&a, "late-a", seq, old + dt, *load, avail))
            .await;
        h.ok(&b, &load_batch(&b, "late-b", seq, old + dt, 1.0, 1e9))
            .await;
    }
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    let counts = h.state.store.counts().await.unwrap();
    assert_eq!(counts["batches"], 0, "raw batches are pruned: {counts:?}");
    let a_before = rollups_of(&h, &a.agent_id, old, old).await;
    let b_before = rollups_of(&h, &b.agent_id, old, old).await;
    assert_eq!(a_before.len(), 3, "{a_before:?}");
    assert_eq!(b_before.len(), 3, "{b_before:?}");
    let kpis_before = memory_kpis(&h, old, old).await;
    assert_eq!(kpis_before.len(), 2, "{kpis_before:?}");

    // One late sample into that hour from agent a, delivered twice.
    let late = load_batch(&a, "late-a", 99, old + 59 * 60_000, 10.0, 0.0);
    assert_eq!(h.ok(&a, &late).await["duplicate"], false);
    assert_eq!(h.ok(&a, &late).await["duplicate"], true);
    for _ in 0..2 {
        ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
            .await
            .unwrap();
    }
    // A redelivery after the late batch itself was pruned is still recognised.
    assert_eq!(h.state.store.counts().await.unwrap()["batches"], 0);
    assert_eq!(h.ok(&a, &late).await["duplicate"], true);
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    let metrics = h.client.get_text("/metrics").await.unwrap();
    assert!(
        metrics.contains("yunwei_store_rollup_late_samples_merged_total 3\n"),
        "the three late samples are counted once"
    );

    let a_after = rollups_of(&h, &a.agent_id, old, old).await;
    let load = a_after
        .iter()
        .find(|r| r.0 == "node_load1")
        .expect("agent a keeps its node_load1 rollup");
    assert_eq!(
        (load.2, load.3, load.4, load.5, load.6),
        (-2.0, 10.0, 21.5, 5, 10.0),
        "the late sample is merged exactly once: {a_after:?}"
    );
    assert_eq!(
        rollups_of(&h, &b.agent_id, old, old).await,
        b_before,
        "another host's rollups of the hour are untouched"
    );
    // Memory: 3, 2, 3, 2 and then 0 GB available of 4 GB for agent a.
    let mean_avail = (3e9 + 2e9 + 3e9 + 2e9 + 0.0) / 5.0;
    let mut want = vec![(old, a.agent_id.clone(), 1.0 - mean_avail / 4e9)];
    want.extend(kpis_before.iter().filter(|k| k.1 == b.agent_id).cloned());
    want.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        memory_kpis(&h, old, old).await,
        want,
        "the hour's KPIs follow the merged rollups"
    );

    // The same samples into a recent hour whose raw batches are kept: rebuilt from raw.
    for (i, (load, avail)) in loads.iter().zip(avails).enumerate() {
        let seq = i as u64 + 1;
        let t = recent + i as i64 * 60_000;
        h.ok(&c, &load_batch(&c, "late-c", seq, t, *load, avail))
            .await;
    }
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    let late_c = load_batch(&c, "late-c", 99, recent + 59 * 60_000, 10.0, 0.0);
    h.ok(&c, &late_c).await;
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    let strip = |v: Vec<(String, i64, f64, f64, f64, i64, f64)>| {
        v.into_iter()
            .map(|r| (r.0, r.2, r.3, r.4, r.5, r.6))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(rollups_of(&h, &c.agent_id, recent, recent).await),
        strip(a_after),
        "merging gives what a rebuild from complete raw data gives"
    );
    let kpi_c: Vec<f64> = memory_kpis(&h, recent, recent)
        .await
        .into_iter()
        .map(|k| k.2)
        .collect();
    assert_eq!(kpi_c, vec![1.0 - mean_avail / 4e9]);
    let metrics = h.client.get_text("/metrics").await.unwrap();
    assert!(
        metrics.contains("yunwei_store_rollup_late_samples_merged_total 3\n"),
        "the recent hour was rebuilt from raw, not merged"
    );
    h.stop().await;
}

/// An honest agent offline for three days replays its spool (large `age_ms`, increasing
/// `seq`) while maintenance passes prune the raw window under it: every hour it sends keeps
/// its rollups and KPIs, including the hour it went offline in, whose rollups were stored and
/// whose raw batches were pruned before the replay reached it.
async fn a_spool_replayed_after_three_days_offline_keeps_every_hour(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let e = h.client.enroll("spool-01").await.unwrap();
    let now = now_ms();
    let base = (now - 80 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let step = 20 * 60_000;
    // Online for 5 h 40 min: three samples an hour, rolled up, raw pruned (older than 48 h).
    let mut seq = 0;
    let mut expected: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    let mut t = base;
    while t < base + 5 * HOUR_MS + 45 * 60_000 {
        seq += 1;
        h.ok(&e, &spool_batch(&e, seq, t)).await;
        let hour = t.div_euclid(HOUR_MS) * HOUR_MS;
        let v = expected.entry(hour).or_default();
        v.0 += 1;
        v.1 = v.1.max((seq * 1000) as f64);
        t += step;
    }
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    assert_eq!(h.state.store.counts().await.unwrap()["batches"], 0);
    let stored_before = rollups_of(&h, &e.agent_id, base, now).await;
    assert_eq!(stored_before.len(), 6 * 4, "{stored_before:?}");

    // Offline from base + 5 h 50 min until now; the spool replays every batch in order, with
    // maintenance running every 20 batches.
    let mut t = base + 5 * HOUR_MS + 50 * 60_000;
    let mut n = 0;
    while t < now - 60_000 {
        seq += 1;
        let b = spool_batch(&e, seq, t);
        if n == 0 {
            assert!(b.age_ms > 72 * 3_600_000, "{}", b.age_ms);
        }
        h.ok(&e, &b).await;
        let hour = t.div_euclid(HOUR_MS) * HOUR_MS;
        let v = expected.entry(hour).or_default();
        v.0 += 1;
        v.1 = v.1.max((seq * 1000) as f64);
        n += 1;
        if n % 20 == 0 {
            ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
                .await
                .unwrap();
        }
        t += step;
    }
    // Every hour closed by now is rolled up.
    let closed = (now - 120_000).div_euclid(HOUR_MS) * HOUR_MS - HOUR_MS;
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now)
        .await
        .unwrap();
    let got = rollups_of(&h, &e.agent_id, base, closed).await;
    let mut per_hour: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    for r in got.iter().filter(|r| r.0 == "test_metric") {
        let v = per_hour.entry(r.1).or_default();
        v.0 += r.5;
        v.1 = v.1.max(r.3);
    }
    // Two series per batch.
    let want: BTreeMap<i64, (i64, f64)> = expected
        .into_iter()
        .filter(|(hour, _)| *hour <= closed)
        .map(|(hour, (count, max))| (hour, (2 * count, max + 1.0)))
        .collect();
    assert_eq!(want.len() as i64, (closed - base) / HOUR_MS + 1);
    assert_eq!(per_hour, want, "every hour keeps every sample it was sent");
    // One memory KPI per hour, from the (merged) rollups.
    let kpis = memory_kpis(&h, base, closed).await;
    let hours: Vec<i64> = kpis.iter().map(|k| k.0).collect();
    assert_eq!(hours, want.keys().copied().collect::<Vec<_>>());
    assert!(
        kpis.iter().all(|k| k.1 == e.agent_id && k.2 == 0.75),
        "{kpis:?}"
    );
    for r in &stored_before {
        assert!(
            got.iter()
                .any(|g| g.0 == r.0 && g.1 == r.1 && g.5 >= r.5 && g.2 <= r.2 && g.3 >= r.3),
            "a stored rollup shrank: {r:?}"
        );
    }
    h.stop().await;
}
