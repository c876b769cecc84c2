//! Benchmark of the assessment engine: a 30-day month for 1,000 hosts and 5,000 probes in 100
//! systems, from status intervals and hourly rollups as the server stores them.
//!
//! `cargo run --release -p yunwei-sla --example assess_bench [-- --hosts N --probes N --runs N]`
//!
//! Prints the time to build the evidence (not measured) and the best and median time of
//! `assess` over the runs. Deterministic inputs (a fixed linear congruential sequence).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use yunwei_sla::assess::*;
use yunwei_sla::calendar::Calendar;
use yunwei_sla::contract::{Cause, parse_contract};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let hosts = arg("--hosts", 1_000);
    let probes = arg("--probes", 5_000);
    let runs = arg("--runs", 5);
    let systems = 100;

    let mut text = String::from(
        "id: bench\nname: bench\nparties: {buyer: a, vendor: b}\nperiod: {start: 2026-01-01, end: 2026-12-31}\n\
         service_windows:\n  office-5x8: {kind: working_days, hours: \"08:30-17:30\"}\nsystems:\n",
    );
    for s in 0..systems {
        let (tier, window) = if s % 3 == 2 {
            ("office", "office-5x8")
        } else {
            ("core", "7x24")
        };
        writeln!(
            text,
            "  - {{id: s{s}, name: s{s}, tier: {tier}, window: {window}, hosts: {{system: s{s}}}, probes: {{system: s{s}}}}}"
        )
        .unwrap();
    }
    text.push_str(
        "objectives:\n  availability:\n    core: {target_percent: 99.95, min_outage: 5m}\n    office: {target_percent: 99.5, min_outage: 1m}\n\
         \x20 incidents:\n    - {id: P1, response: 15m, restore: 4h}\n    - {id: P4, response: 4h, restore: 27h, window: service}\n\
         \x20 resources:\n    - {id: cpu, name: cpu, metric: cpu_usage_ratio, aggregate: p95_hourly_mean, below: 0.8}\n\
         scoring:\n  deductions:\n    - {id: a, name: a, kind: availability_short, per_pp: 0.1, points: 5, cap: 20}\n\
         \x20   - {id: r, name: r, kind: response_late, per_minutes: 5, points: 2}\n    - {id: k, name: k, kind: resource_breach, points: 1, cap: 5}\n\
         grades:\n  - {id: pass, name: 合格, name_en: Pass, min_score: 60}\n  - {id: fail, name: 不合格, name_en: Fail, min_score: 0}\n",
    );
    let contract = parse_contract(&text, "bench.yml").unwrap_or_else(|e| panic!("{e}"));
    let tz = contract.time_zone;
    let period = Period::parse("2026-04", tz).unwrap();
    let (start, end) = (period.start_ms, period.end_ms);

    let t0 = Instant::now();
    let mut rng = Lcg(42);
    let mut ev = Evidence::default();
    let mut n = 0u64;
    for (kind, count) in [(SubjectKind::Host, hosts), (SubjectKind::Probe, probes)] {
        for i in 0..count {
            let id = format!("{kind:?}{i}");
            ev.subjects.push(Subject {
                kind,
                id: id.clone(),
                labels: BTreeMap::from([("system".into(), format!("s{}", i % systems))]),
            });
            // About 4 outages or gaps per subject per month, up otherwise.
            let mut cursor = start;
            while cursor < end {
                let up = (rng.next(14 * 86_400) as i64 + 600) * 1000;
                let bad = (rng.next(3_600) as i64 + 60) * 1000;
                let state = if rng.next(4) == 0 {
                    State::Unknown
                } else {
                    State::Down
                };
                for (len, st) in [(up, State::Up), (bad, state)] {
                    let e = (cursor + len).min(end);
                    n += 1;
                    ev.intervals.push(StatusInterval {
                        id: format!("iv{n}"),
                        kind,
                        subject: id.clone(),
                        start_ms: cursor,
                        end_ms: e,
                        state: st,
                    });
                    cursor = e;
                }
            }
            if kind == SubjectKind::Host {
                for h in 0..(end - start) / 3_600_000 {
                    let mean = rng.next(900) as f64 / 1000.0;
                    n += 1;
                    ev.resources.push(ResourceHour {
                        id: format!("ru{n}"),
                        host: id.clone(),
                        metric: "cpu_usage_ratio".into(),
                        hour_ms: start + h * 3_600_000,
                        min: mean / 2.0,
                        max: mean * 1.1,
                        sum: mean * 240.0,
                        count: 240,
                        last: mean,
                    });
                }
            }
        }
    }
    for i in 0..500 {
        let d = start + rng.next((end - start) as u64) as i64;
        ev.incidents.push(Incident {
            id: format!("inc{i}"),
            system: Some(format!("s{}", i % systems)),
            systems: None,
            labels: BTreeMap::new(),
            level: if i % 2 == 0 { "P1" } else { "P4" }.into(),
            detected_ms: d,
            acknowledged_ms: Some(d + rng.next(3_600_000) as i64),
            on_site_ms: None,
            restored_ms: Some(d + rng.next(40_000_000) as i64),
            pauses: Vec::new(),
            cause: Cause::Vendor,
        });
    }
    eprintln!(
        "evidence: {} subjects, {} intervals, {} hourly rollups, {} incidents (built in {:.2?})",
        ev.subjects.len(),
        ev.intervals.len(),
        ev.resources.len(),
        ev.incidents.len(),
        t0.elapsed()
    );

    let cal = Calendar::shipped();
    let mut times = Vec::new();
    let mut score = 0.0;
    for _ in 0..runs {
        let t = Instant::now();
        let a = assess(&contract, &cal, &period, end, &ev);
        times.push(t.elapsed());
        score = a.score;
    }
    times.sort();
    println!(
        "assess 2026-04 ({hosts} hosts, {probes} probes, {systems} systems): best {:.1?}, median {:.1?} over {runs} runs (score {score})",
        times[0],
        times[times.len() / 2]
    );
}
