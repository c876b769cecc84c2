//! The stored evidence of a fixed ingest input (SQLite and PostgreSQL).
//!
//! Three agents push a fixed schedule of batches across an hour boundary through the real
//! server, concurrently (so the writer groups batches of different agents into one commit):
//! redeliveries of batches already stored, a spool replayed after newer batches, a gap in the
//! heartbeats, a probe that goes down and up again (samples and events), a spool-gap event, a
//! reserved label and a series that first appears after the boundary. Then the stored rows —
//! series, raw batches and their samples, rollups of both hours, status intervals and events —
//! are rendered as canonical lines (agent ids by hostname, series by identity, times relative
//! to the boundary) and compared with the same lines built by the test from the input alone.
//! The SHA-256 of those lines is pinned, so the stored evidence of this input is the same on
//! both backends and across changes to the ingest path.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::Harness;
use sha2::{Digest, Sha256};
use sqlx::Row;
use yunwei_proto::{Batch, Event, PROTOCOL_VERSION, Sample};
use yunwei_server::{ingest, store::HOUR_MS};
use yunwei_tests::{Enrolled, facts, now_ms};

yunwei_tests::both_backends!(the_stored_evidence_of_a_fixed_input_matches_its_digest);

/// The digest of [`expected_lines`]; computed on `main` before the ingest changes of issue 22.
const PINNED: &str = "cdba9a7c8b998c5a8a0a35f07b2a65a8b520bd96389dc86ea81561f26dd782ab";

const STEP_MS: i64 = 15_000;
/// Batches per agent: `i` in `0..=40`, batch `i` collected at `boundary - 5 min + i * 15 s`,
/// so batch 20 is collected exactly at the hour boundary.
const N: i64 = 41;
/// Agent B sends nothing for these batches: a heartbeat gap longer than three intervals.
const B_GAP: std::ops::Range<i64> = 25..34;
/// Agent A's probe `web` is down for these batches.
const DOWN: std::ops::Range<i64> = 16..28;

fn ts(boundary: i64, i: i64) -> i64 {
    boundary - 5 * 60_000 + i * STEP_MS
}

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

/// The batch `i` of agent `host` (`a`, `b` or `c`), as sent.
fn input_batch(host: &str, agent_id: &str, boundary: i64, i: i64) -> Batch {
    let t = ts(boundary, i);
    let hostname = format!("dg-{host}");
    let mut samples = vec![
        sample("node_load1", &[], (i % 7) as f64, t),
        // A second before the batch: batch 20's lands in the hour before the boundary.
        sample(
            "node_cpu_seconds_total",
            &[("cpu", "0"), ("mode", "idle")],
            (1000 + 10 * i) as f64,
            t - 1000,
        ),
    ];
    let mut events = Vec::new();
    if host == "a" {
        let up = !DOWN.contains(&i);
        samples.push(sample(
            "probe_success",
            &[("probe", "web")],
            if up { 1.0 } else { 0.0 },
            t,
        ));
        // A reserved label (the host's inventory label): stored as `exported_department`.
        samples.push(sample("test_reserved", &[("department", "x")], i as f64, t));
        if i >= 20 {
            samples.push(sample("late_series", &[("k", "v")], (2 * i) as f64, t));
        }
        if i == DOWN.start || i == DOWN.end {
            events.push(Event::ProbeState {
                probe: "web".into(),
                labels: Default::default(),
                up,
                ts_ms: t,
                reason: (!up).then(|| "http status 503".to_string()),
            });
        }
    }
    if host == "c" && i == 20 {
        events.push(Event::SpoolGap {
            dropped_batches: 2,
            dropped_bytes: 4096,
            first_seq: 100,
            last_seq: 101,
            from_ms: ts(boundary, 0) - 60_000,
            to_ms: ts(boundary, 0) - 30_000,
            reason: "spool full".into(),
        });
    }
    Batch {
        version: PROTOCOL_VERSION,
        agent_id: agent_id.into(),
        seq: i as u64 + 1,
        interval_ms: STEP_MS as u64,
        collected_at_ms: t,
        age_ms: 0,
        host: facts(&hostname),
        samples,
        events,
        probe_intervals_ms: Default::default(),
    }
}

/// The order in which each agent delivers its batches (a batch index may repeat: a
/// redelivery).
fn schedule(host: &str) -> Vec<i64> {
    match host {
        // Batch 5 is delivered again right after batch 6.
        "a" => (0..N)
            .flat_map(|i| if i == 6 { vec![6, 5] } else { vec![i] })
            .collect(),
        "b" => (0..N).filter(|i| !B_GAP.contains(i)).collect(),
        // The newest half first, then the spool replayed, then 20..=25 once more.
        _ => (20..N).chain(0..20).chain(20..26).collect(),
    }
}

/// Milliseconds relative to the boundary, rounded to 5 s: heartbeats and probe results are
/// placed by the server's receipt time minus the agent's age, so they carry the (sub-second)
/// delivery delay on top of the 15 s grid of the input.
fn coarse(boundary: i64, t: i64) -> i64 {
    ((t - boundary) as f64 / 5000.0).round() as i64 * 5000
}

fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    serde_json::to_string(l).unwrap()
}

/// `detail` with every `*_ms` number made relative to the boundary.
fn relative_detail(boundary: i64, mut v: serde_json::Value) -> String {
    if let Some(o) = v.as_object_mut() {
        for (k, x) in o.iter_mut() {
            if k.ends_with("_ms")
                && let Some(n) = x.as_i64()
            {
                *x = serde_json::json!(coarse(boundary, n));
            }
        }
    }
    v.to_string()
}

/// The digest's lines, each section sorted.
#[derive(Debug, Default, PartialEq)]
struct Lines {
    series: Vec<String>,
    batches: Vec<String>,
    samples: Vec<String>,
    rollups: Vec<String>,
    intervals: Vec<String>,
    events: Vec<String>,
}

impl Lines {
    fn sort(&mut self) {
        for v in [
            &mut self.series,
            &mut self.batches,
            &mut self.samples,
            &mut self.rollups,
            &mut self.intervals,
            &mut self.events,
        ] {
            v.sort();
        }
    }

    fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (name, v) in [
            ("series", &self.series),
            ("batches", &self.batches),
            ("samples", &self.samples),
            ("rollups", &self.rollups),
            ("intervals", &self.intervals),
            ("events", &self.events),
        ] {
            h.update(format!("[{name}]\n"));
            for l in v {
                h.update(l.as_bytes());
                h.update(b"\n");
            }
        }
        format!("{:x}", h.finalize())
    }
}

/// A series as (hostname, name, labels as JSON).
type SeriesKey = (String, String, String);

/// The stored evidence the input must produce, built from the input alone: the first delivery
/// of each (agent, seq) is stored, reserved labels are renamed, rollups are min/max/sum/count/
/// last per series and hour, heartbeats and probe results join into spans while no more than
/// three intervals apart and a state change closes a span.
fn expected_lines(boundary: i64) -> Lines {
    let mut out = Lines::default();
    // (host, name, labels) -> hour -> (ts, value) samples.
    let mut by_series: BTreeMap<SeriesKey, BTreeMap<i64, Vec<(i64, f64)>>> = BTreeMap::new();
    for host in ["a", "b", "c"] {
        let hostname = format!("dg-{host}");
        let mut stored = std::collections::BTreeSet::new();
        for i in schedule(host) {
            if !stored.insert(i) {
                continue;
            }
            let b = input_batch(host, "x", boundary, i);
            let (mut lo, mut hi) = (b.collected_at_ms, b.collected_at_ms);
            for s in &b.samples {
                lo = lo.min(s.ts_ms);
                hi = hi.max(s.ts_ms);
                let mut labels = s.labels.clone();
                if let Some(v) = labels.remove("department") {
                    labels.insert("exported_department".into(), v);
                }
                let key = (hostname.clone(), s.name.clone(), fmt_labels(&labels));
                out.samples.push(format!(
                    "{} {} {} {} {:?}",
                    key.0,
                    key.1,
                    key.2,
                    s.ts_ms - boundary,
                    s.value
                ));
                by_series
                    .entry(key)
                    .or_default()
                    .entry(s.ts_ms.div_euclid(HOUR_MS) * HOUR_MS)
                    .or_default()
                    .push((s.ts_ms, s.value));
            }
            out.batches.push(format!(
                "{hostname} {} {} {} {}",
                b.seq,
                lo - boundary,
                hi - boundary,
                b.samples.len()
            ));
            for e in &b.events {
                let (kind, subject, t) = match e {
                    Event::ProbeState { probe, ts_ms, .. } => {
                        ("probe_state", probe.clone(), *ts_ms)
                    }
                    Event::SpoolGap { from_ms, .. } => ("spool_gap", String::new(), *from_ms),
                };
                out.events.push(format!(
                    "{hostname} {kind} {subject:?} {} {}",
                    coarse(boundary, t),
                    relative_detail(boundary, serde_json::to_value(e).unwrap())
                ));
            }
        }
        // Heartbeats every 15 s, valid for 15 s, bridged over at most 3 missed: agent b's gap
        // splits its span, agent c's replay fills the time before its first delivery.
        let mut seen: Vec<i64> = schedule(host);
        seen.sort();
        seen.dedup();
        let mut spans: Vec<(i64, i64)> = Vec::new();
        for i in seen {
            let t = ts(boundary, i);
            match spans.last_mut() {
                Some((_, end)) if t - (*end - STEP_MS) <= 3 * STEP_MS => *end = t + STEP_MS,
                _ => spans.push((t, t + STEP_MS)),
            }
        }
        for (start, end) in spans {
            out.intervals.push(format!(
                "host {hostname} up {} {}",
                coarse(boundary, start),
                coarse(boundary, end)
            ));
        }
    }
    // Agent a's probe: up, down from batch 16, up again from batch 28 until the last result
    // runs out.
    let web = "dg-a/web";
    let (t0, tdown, tup) = (
        ts(boundary, 0),
        ts(boundary, DOWN.start),
        ts(boundary, DOWN.end),
    );
    let tend = ts(boundary, N - 1) + STEP_MS;
    for (state, a, b) in [("up", t0, tdown), ("down", tdown, tup), ("up", tup, tend)] {
        out.intervals.push(format!(
            "probe {web} {state} {} {}",
            coarse(boundary, a),
            coarse(boundary, b)
        ));
    }
    for ((host, name, labels), hours) in &by_series {
        out.series.push(format!("{host} {name} {labels}"));
        for (hour, samples) in hours {
            let min = samples.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
            let max = samples
                .iter()
                .map(|s| s.1)
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = samples.iter().map(|s| s.1).sum();
            let last = samples.iter().max_by_key(|s| s.0).unwrap();
            out.rollups.push(format!(
                "{host} {name} {labels} {} {min:?} {max:?} {sum:?} {} {:?} {:?}",
                hour - boundary,
                samples.len(),
                last.1,
                Some(last.0 - boundary)
            ));
        }
    }
    out.sort();
    out
}

/// The same lines read from the store.
async fn stored_lines(h: &Harness, boundary: i64, hosts: &HashMap<String, String>) -> Lines {
    let store = &h.state.store;
    let mut out = Lines::default();
    let series: HashMap<i64, (String, String, String)> = store
        .all_series()
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.id,
                (hosts[&s.agent_id].clone(), s.name, fmt_labels(&s.labels)),
            )
        })
        .collect();
    for (host, name, labels) in series.values() {
        out.series.push(format!("{host} {name} {labels}"));
    }
    for r in sqlx::query("SELECT agent_id, seq, min_ts, max_ts, samples FROM batches")
        .fetch_all(store.pool())
        .await
        .unwrap()
    {
        out.batches.push(format!(
            "{} {} {} {} {}",
            hosts[&r.get::<String, _>(0)],
            r.get::<i64, _>(1),
            r.get::<i64, _>(2) - boundary,
            r.get::<i64, _>(3) - boundary,
            r.get::<i64, _>(4)
        ));
    }
    for agent_id in hosts.keys() {
        store
            .raw_samples(agent_id, boundary - HOUR_MS, boundary + HOUR_MS, |s| {
                let (host, name, labels) = &series[&s.series_id];
                out.samples.push(format!(
                    "{host} {name} {labels} {} {:?}",
                    s.ts_ms - boundary,
                    s.value
                ));
            })
            .await
            .unwrap();
        for e in store
            .events(agent_id, boundary - 2 * HOUR_MS, boundary + HOUR_MS)
            .await
            .unwrap()
        {
            out.events.push(format!(
                "{} {} {:?} {} {}",
                hosts[&e.agent_id],
                e.kind,
                e.subject,
                coarse(boundary, e.ts_ms),
                relative_detail(boundary, e.detail)
            ));
        }
        let hostname = &hosts[agent_id];
        for s in store
            .intervals(
                ingest::KIND_HOST,
                agent_id,
                boundary - HOUR_MS,
                boundary + HOUR_MS,
            )
            .await
            .unwrap()
        {
            out.intervals.push(format!(
                "host {hostname} {} {} {}",
                s.state.as_str(),
                coarse(boundary, s.start),
                coarse(boundary, s.end)
            ));
        }
        for subject in store
            .interval_subjects(ingest::KIND_PROBE, &format!("{agent_id}/"))
            .await
            .unwrap()
        {
            let probe = subject.split_once('/').unwrap().1;
            for s in store
                .intervals(
                    ingest::KIND_PROBE,
                    &subject,
                    boundary - HOUR_MS,
                    boundary + HOUR_MS,
                )
                .await
                .unwrap()
            {
                out.intervals.push(format!(
                    "probe {hostname}/{probe} {} {} {}",
                    s.state.as_str(),
                    coarse(boundary, s.start),
                    coarse(boundary, s.end)
                ));
            }
        }
    }
    let ids: Vec<i64> = series.keys().copied().collect();
    for r in store
        .rollups(&ids, boundary - HOUR_MS, boundary)
        .await
        .unwrap()
    {
        let (host, name, labels) = &series[&r.series_id];
        out.rollups.push(format!(
            "{host} {name} {labels} {} {:?} {:?} {:?} {} {:?} {:?}",
            r.hour_ms - boundary,
            r.min,
            r.max,
            r.sum,
            r.count,
            r.last,
            r.last_ms.map(|t| t - boundary)
        ));
    }
    out.sort();
    out
}

/// Pushes agent `host`'s schedule in order; every push is acknowledged, a redelivery as a
/// duplicate.
async fn deliver(h: &Harness, host: &str, e: &Enrolled, boundary: i64) {
    let mut stored = std::collections::BTreeSet::new();
    for i in schedule(host) {
        let mut b = input_batch(host, &e.agent_id, boundary, i);
        // As an agent replaying its spool sends it: the age is how long ago it was collected.
        b.age_ms = (now_ms() - b.collected_at_ms).max(0) as u64;
        let ack = h.ok(e, &b).await;
        assert_eq!(
            ack["duplicate"],
            !stored.insert(i),
            "agent {host}, batch {i}: {ack}"
        );
    }
}

async fn the_stored_evidence_of_a_fixed_input_matches_its_digest(backend: &str) {
    let Some(h) = Harness::start(backend, |_| {}).await else {
        return;
    };
    // Two hours back, so both hours are closed and the rollup job takes them; well inside the
    // raw window (48 h) and the accepted backfill age (14 days).
    let boundary = now_ms().div_euclid(HOUR_MS) * HOUR_MS - 2 * HOUR_MS;
    let mut enrolled = Vec::new();
    let mut hosts = HashMap::new();
    for host in ["a", "b", "c"] {
        let e = h.client.enroll(&format!("dg-{host}")).await.unwrap();
        hosts.insert(e.agent_id.clone(), format!("dg-{host}"));
        enrolled.push(e);
    }
    tokio::join!(
        deliver(&h, "a", &enrolled[0], boundary),
        deliver(&h, "b", &enrolled[1], boundary),
        deliver(&h, "c", &enrolled[2], boundary),
    );
    ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now_ms())
        .await
        .unwrap();

    let want = expected_lines(boundary);
    let got = stored_lines(&h, boundary, &hosts).await;
    assert_eq!(got.series, want.series, "series");
    assert_eq!(got.batches, want.batches, "raw batches");
    assert_eq!(got.samples, want.samples, "raw samples");
    assert_eq!(got.rollups, want.rollups, "rollups");
    assert_eq!(got.intervals, want.intervals, "status intervals");
    assert_eq!(got.events, want.events, "events");
    let digest = got.digest();
    eprintln!("{backend}: stored evidence digest {digest}");
    assert_eq!(digest, PINNED, "the digest of the stored evidence changed");
    h.stop().await;
}
