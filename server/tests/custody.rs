//! Evidence custody on SQLite and PostgreSQL: what an agent (run by the assessed vendor) sends
//! later cannot change status history the server has stored. A later batch claiming a large
//! `age_ms` is not placed before the batches it follows, an agent's declared `interval_ms`
//! cannot make one observation vouch for an hour, and an observation older than the subject's
//! latest one only fills unknown time: it never flips a stored up/down span, and is kept as an
//! `observation_refused` event and counted.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use yunwei_proto::{Batch, Sample};
use yunwei_server::{ingest::KIND_PROBE, timeline::State};
use yunwei_tests::{Enrolled, batch, now_ms};

yunwei_tests::both_backends!(
    agent_time_cannot_rewrite_status_history,
    probe_results_are_valid_for_the_probe_interval_within_the_server_bound
);

/// A batch collected at `t` (its `age_ms` says so) with a result of the probe `home` at
/// `sample_t`.
fn probe_batch(e: &Enrolled, seq: u64, t: i64, sample_t: i64, up: bool, interval_ms: u64) -> Batch {
    let mut b = batch(e, "web-01", seq, t, 0);
    b.interval_ms = interval_ms;
    b.samples.push(Sample {
        name: "probe_success".into(),
        labels: BTreeMap::from([("probe".to_string(), "home".to_string())]).into(),
        value: if up { 1.0 } else { 0.0 },
        ts_ms: sample_t,
    });
    b
}

async fn probe_spans(h: &Harness, from: i64, to: i64) -> Vec<(State, i64, i64)> {
    probe_spans_of(h, "home", from, to).await
}

async fn probe_spans_of(h: &Harness, probe: &str, from: i64, to: i64) -> Vec<(State, i64, i64)> {
    let suffix = format!("/{probe}");
    h.state
        .store
        .intervals_between(KIND_PROBE, from, to)
        .await
        .unwrap()
        .into_iter()
        .filter(|(subject, _)| subject.ends_with(&suffix))
        .map(|(_, s)| (s.state, s.start, s.end))
        .collect()
}

/// Whether `[from, to)` is covered by `state` in `spans`.
fn covered(spans: &[(State, i64, i64)], state: State, from: i64, to: i64) -> bool {
    let mut t = from;
    for &(s, a, b) in spans {
        if s == state && a <= t && t < b {
            t = b;
        }
    }
    t >= to
}

async fn agent_time_cannot_rewrite_status_history(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    let c = &h.client;
    let e = c.enroll("web-01").await.unwrap();
    let now = now_ms();
    let t0 = now - 120_000;
    // Down, observed every 15 s from t0 to t0 + 45 s.
    for k in 0..4u64 {
        let t = t0 + k as i64 * 15_000;
        let (st, body) = c
            .push(&e.token, &probe_batch(&e, k + 1, t, t, false, 15_000))
            .await
            .unwrap();
        assert_eq!(st, 200, "{body}");
    }
    // (Placed at server receipt minus the batch's age: a few ms after `t`.)
    let last_down = t0 + 45_000;
    let before = probe_spans(&h, t0 - 60_000, now + 60_000).await;
    assert!(
        covered(&before, State::Down, t0 + 1_000, last_down),
        "{before:?}"
    );

    // A later batch claiming to be 110 s old, with an "up" that would vouch for an hour.
    let forged = probe_batch(&e, 5, now - 110_000, now - 110_000, true, 3_600_000);
    let (st, body) = c.push(&e.token, &forged).await.unwrap();
    assert_eq!(st, 200, "{body}");
    // A batch of now carrying an "up" result stamped 100 s ago, inside the stored down span.
    let late = probe_batch(&e, 6, now, now - 100_000, true, 15_000);
    let (st, body) = c.push(&e.token, &late).await.unwrap();
    assert_eq!(st, 200, "{body}");

    let after = probe_spans(&h, t0 - 60_000, now + 60_000).await;
    assert!(
        covered(&after, State::Down, t0 + 1_000, last_down),
        "the stored down span was rewritten: {before:?} became {after:?}"
    );
    // Whatever became up, it vouches for at most the server's bound, not an hour.
    for &(s, a, b) in &after {
        if s == State::Up {
            assert!(
                b - a <= 120_000,
                "an up span of {} s: {after:?}",
                (b - a) / 1000
            );
        }
    }
    let metrics = c.get_text("/metrics").await.unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("yunwei_ingest_observations_refused_total "))
        .map_or(0, |v| v.trim().parse().unwrap());
    assert!(refused >= 1, "the contradicting result is counted");
    h.stop().await;
}

/// A probe result is valid for the probe's own interval (`probe_intervals_ms`), not the batch's:
/// a probe every 60 s under 15 s batches has no unknown time between its results, while the same
/// results without the interval (an older agent) leave a gap in every cycle. The agent's claim
/// is bounded by `ingest.max_probe_validity_secs`: a probe declaring an hour vouches for the
/// server's bound only.
async fn probe_results_are_valid_for_the_probe_interval_within_the_server_bound(backend: &str) {
    let Some(h) = Harness::start(backend, |c| c.ingest.max_probe_validity_ms = 120_000).await
    else {
        return;
    };
    let c = &h.client;
    let e = c.enroll("web-01").await.unwrap();
    let now = now_ms();
    let t0 = now - 300_000;
    for k in 0..17u64 {
        let t = t0 + k as i64 * 15_000;
        let mut b = batch(&e, "web-01", k + 1, t, 0);
        if k % 4 == 0 {
            for probe in ["slow", "legacy"] {
                b.samples.push(Sample {
                    name: "probe_success".into(),
                    labels: BTreeMap::from([("probe".to_string(), probe.to_string())]).into(),
                    value: 1.0,
                    ts_ms: t,
                });
            }
            b.probe_intervals_ms.insert("slow".into(), 60_000);
        }
        if k == 0 {
            b.samples.push(Sample {
                name: "probe_success".into(),
                labels: BTreeMap::from([("probe".to_string(), "greedy".to_string())]).into(),
                value: 1.0,
                ts_ms: t,
            });
            b.probe_intervals_ms.insert("greedy".into(), 3_600_000);
        }
        let (st, body) = c.push(&e.token, &b).await.unwrap();
        assert_eq!(st, 200, "{body}");
    }
    let last = t0 + 240_000;
    // (Placed at server receipt minus the batch's age: a few ms after `t`.)
    let slow = probe_spans_of(&h, "slow", t0 - 60_000, now + 600_000).await;
    assert!(
        covered(&slow, State::Up, t0 + 1_000, last),
        "a 60 s probe has no unknown time between its results: {slow:?}"
    );
    assert!(
        slow.last().is_some_and(|&(_, _, end)| end >= last + 74_000),
        "the last result vouches for the probe and batch intervals: {slow:?}"
    );
    let legacy = probe_spans_of(&h, "legacy", t0 - 60_000, now + 600_000).await;
    assert!(
        !covered(&legacy, State::Up, t0 + 1_000, last) && legacy.len() == 5,
        "without the probe interval the batch interval applies (gaps): {legacy:?}"
    );
    let greedy = probe_spans_of(&h, "greedy", t0 - 60_000, now + 7_200_000).await;
    assert_eq!(greedy.len(), 1, "{greedy:?}");
    let (_, a, b) = greedy[0];
    assert_eq!(
        b - a,
        120_000,
        "an hour claimed, the server's bound applied: {greedy:?}"
    );
    h.stop().await;
}
