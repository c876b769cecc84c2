//! Simulated history for newcomers (`quickstart --demo`) and for the report benchmark.
//!
//! Everything seeded here is CLEARLY LABELLED: simulated hosts carry the label
//! `simulated: "true"` and a `sim-` host name, and a report built from them says so in its
//! notes (see `reports::prepare`). Nothing is simulated unless asked for.
//!
//! What is seeded, per system label: hosts (agents with no usable token), their probes, status
//! intervals (up, with one outage per system at a fixed, reproducible time), and hourly rollups
//! of `node_cpu_seconds_total` (idle/user) and `node_filesystem_{avail,size}_bytes` so that
//! CPU and disk figures exist, with the derived hourly KPIs the rollup job would store
//! (`store::kpi`). Deterministic: the same spec gives the same rows.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;

use crate::store::{
    AgentRow, HOUR_MS, Rollup, SeriesRow, Store,
    demo::{self, SeedInterval},
    insert_rollups, kpi,
};

/// What to seed.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// `(system label, hosts, probes per host)`.
    pub systems: Vec<(String, usize, usize)>,
    /// Start of the history, UTC ms (rounded down to the hour).
    pub from_ms: i64,
    /// End of the history, UTC ms.
    pub to_ms: i64,
}

/// What was seeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub hosts: usize,
    pub probes: usize,
    pub intervals: usize,
    pub rollups: usize,
    /// True when simulated hosts were there already (nothing was added).
    pub already_seeded: bool,
}

const DAY_MS: i64 = 86_400_000;

/// A small deterministic generator (no dependency, reproducible across platforms).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The simulated outage of system number `k` (0-based) inside `[from, to)`: 15 + 10·k
/// minutes, starting (3 + 9·k) mod 27 days after `from` at 02:00 UTC (10:00 in China).
pub fn outage(k: usize, from_ms: i64, to_ms: i64) -> Option<(i64, i64)> {
    let day0 = from_ms - from_ms.rem_euclid(DAY_MS) + DAY_MS;
    let start = day0 + ((3 + 9 * k as i64) % 27) * DAY_MS + 2 * HOUR_MS;
    let end = start + (15 + 10 * k as i64) * 60_000;
    (end <= to_ms).then_some((start, end))
}

/// Seeds simulated history (once: a store that has simulated hosts is left alone).
pub async fn seed(store: &Store, spec: &DemoSpec) -> anyhow::Result<DemoSummary> {
    let existing = store.simulated_agent_count().await?;
    if existing > 0 {
        return Ok(DemoSummary {
            already_seeded: true,
            ..DemoSummary::default()
        });
    }
    let from = spec.from_ms - spec.from_ms.rem_euclid(HOUR_MS);
    let to = spec.to_ms;
    let mut sum = DemoSummary::default();
    let mut rng = Lcg(0x5eed);
    // (kind, subject, state, start, end)
    let mut intervals: Vec<(&str, String, &str, i64, i64)> = Vec::new();
    // (agent, name, labels)
    let mut series: Vec<(String, &str, BTreeMap<String, String>)> = Vec::new();
    for (k, (system, hosts, probes)) in spec.systems.iter().enumerate() {
        let down = outage(k, from, to);
        for h in 0..*hosts {
            let agent_id = format!("sim-{system}-{h:04}");
            let labels = BTreeMap::from([
                ("system".to_string(), system.clone()),
                ("simulated".to_string(), "true".to_string()),
            ]);
            store
                .insert_agent(
                    &AgentRow {
                        agent_id: agent_id.clone(),
                        token_hash: format!("simulated-no-token-{agent_id}"),
                        enrolled_ms: from,
                        hostname: agent_id.clone(),
                        os: "linux".into(),
                        kernel: "simulated".into(),
                        arch: "x86_64".into(),
                        agent_version: "simulated".into(),
                        labels,
                        first_seen_ms: Some(from),
                        last_seen_ms: Some(to),
                        last_seq: 0,
                        interval_ms: 15_000,
                        pruned_seq: 0,
                    },
                    None,
                )
                .await
                .context("seeding a simulated host")?;
            sum.hosts += 1;
            // Hosts with probes stay up; a system without probes loses its first host.
            match down.filter(|_| *probes == 0 && h == 0) {
                Some((s, e)) => {
                    intervals.push(("host", agent_id.clone(), "up", from, s));
                    intervals.push(("host", agent_id.clone(), "down", s, e));
                    intervals.push(("host", agent_id.clone(), "up", e, to));
                }
                None => intervals.push(("host", agent_id.clone(), "up", from, to)),
            }
            for p in 0..*probes {
                let subject = format!("{agent_id}/sim-probe-{p}");
                match down.filter(|_| h == 0 && p == 0) {
                    Some((s, e)) => {
                        intervals.push(("probe", subject.clone(), "up", from, s));
                        intervals.push(("probe", subject.clone(), "down", s, e));
                        intervals.push(("probe", subject, "up", e, to));
                    }
                    None => intervals.push(("probe", subject, "up", from, to)),
                }
                sum.probes += 1;
            }
            for mode in ["idle", "user"] {
                series.push((
                    agent_id.clone(),
                    "node_cpu_seconds_total",
                    BTreeMap::from([("mode".to_string(), mode.to_string())]),
                ));
            }
            for name in ["node_filesystem_avail_bytes", "node_filesystem_size_bytes"] {
                series.push((
                    agent_id.clone(),
                    name,
                    BTreeMap::from([("mountpoint".to_string(), "/".to_string())]),
                ));
            }
        }
    }
    let mut tx = store.begin().await?;
    sum.intervals = intervals.len();
    let intervals: Vec<SeedInterval> = intervals
        .into_iter()
        .map(|(kind, subject, state, start_ms, end_ms)| SeedInterval {
            kind,
            subject,
            state,
            start_ms,
            end_ms,
        })
        .collect();
    demo::insert_intervals(&mut tx, &intervals).await?;
    let hours: Vec<i64> = (0..)
        .map(|i| from + i * HOUR_MS)
        .take_while(|h| h + HOUR_MS <= to)
        .collect();
    const DISK: f64 = 500.0e9;
    let mut rows: Vec<Rollup> = Vec::new();
    let mut by_id: HashMap<i64, SeriesRow> = HashMap::new();
    for (agent, name, labels) in &series {
        let id = demo::insert_series(&mut tx, agent, name, labels, from).await?;
        by_id.insert(
            id,
            SeriesRow {
                id,
                agent_id: agent.clone(),
                name: name.to_string(),
                labels: labels.clone(),
            },
        );
        let base = 0.2 + 0.5 * rng.next();
        let mut counter = 1.0e6 * rng.next();
        let mut used = 0.3 + 0.5 * rng.next();
        for &h in &hours {
            let (min, max, mean) = match (*name, labels.get("mode").map(String::as_str)) {
                ("node_cpu_seconds_total", Some(mode)) => {
                    let busy = (base + 0.2 * rng.next()).min(0.98);
                    let share = if mode == "idle" { 1.0 - busy } else { busy };
                    let start = counter;
                    counter += share * 3600.0 * 4.0;
                    (start, counter, (start + counter) / 2.0)
                }
                ("node_filesystem_size_bytes", _) => (DISK, DISK, DISK),
                _ => {
                    used = (used + 0.0004 * rng.next()).min(0.97);
                    let avail = DISK * (1.0 - used);
                    (avail, avail, avail)
                }
            };
            rows.push(Rollup {
                series_id: id,
                hour_ms: h,
                min,
                max,
                sum: mean * 240.0,
                count: 240,
                last: max,
                last_ms: None,
            });
        }
    }
    insert_rollups(&mut tx, &rows).await?;
    sum.rollups = rows.len();
    // The derived KPIs, as the rollup job stores them for each hour it rolls up.
    let mut per_hour: BTreeMap<i64, Vec<Rollup>> = BTreeMap::new();
    for r in rows {
        per_hour.entry(r.hour_ms).or_default().push(r);
    }
    for (hour_ms, mut rollups) in per_hour {
        rollups.sort_by_key(|r| r.series_id);
        let kpis = kpi::derive_hour(&by_id, hour_ms, &rollups);
        kpi::write_hour(&mut tx, hour_ms, &kpis).await?;
    }
    tx.commit().await?;
    Ok(sum)
}
