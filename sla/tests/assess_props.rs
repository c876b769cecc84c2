//! Property tests of the assessment engine: the score stays within `floor ..= base +
//! bonus_cap`; an up segment going down never raises availability or the score; the same inputs give
//! byte-identical serialized output, whatever the order of the evidence rows.

use std::collections::BTreeMap;

use proptest::prelude::*;
use yunwei_sla::assess::*;
use yunwei_sla::calendar::Calendar;
use yunwei_sla::contract::{Cause, Contract, parse_contract};

const CONTRACT: &str = r#"
id: props
name: 性质测试
parties: { buyer: 甲方, vendor: 乙方 }
period: { start: 2026-01-01, end: 2026-12-31 }
service_windows:
  office-5x8: { kind: working_days, hours: "08:30-17:30" }
systems:
  - { id: web, name: 门户, tier: core, hosts: { system: web }, probes: { system: web } }
  - { id: oa, name: 办公, tier: office, window: office-5x8, hosts: { system: oa } }
objectives:
  availability:
    core: { target_percent: 99.95, min_outage: 5m, missing_data: excluded }
    office: { target_percent: 99.5, min_outage: 1m, missing_data: as_down }
  incidents:
    - { id: P1, response: 15m, restore: 4h }
    - { id: P4, response: 4h, restore: 27h, window: service }
scoring:
  base: 100
  floor: 10
  bonus_cap: 5
  deductions:
    - { id: availability, name: 可用性, kind: availability_short, per_pp: 0.1, points: 5, cap: 40 }
    - { id: response, name: 响应, kind: response_late, per_minutes: 5, points: 2 }
    - { id: restore, name: 恢复, kind: restore_late, points: 5 }
    - { id: notice, name: 通报, kind: manual, category: notice, points: 7 }
  bonuses:
    - { id: extra, name: 加分, category: extra, points: 2 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

fn contract() -> Contract {
    parse_contract(CONTRACT, "props.yml").unwrap()
}

fn period() -> Period {
    Period::parse("2026-02", chrono_tz::Asia::Shanghai).unwrap()
}

const SUBJECTS: [(SubjectKind, &str, &str); 4] = [
    (SubjectKind::Host, "h1", "web"),
    (SubjectKind::Probe, "p1", "web"),
    (SubjectKind::Probe, "p2", "web"),
    (SubjectKind::Host, "oa1", "oa"),
];

/// Per subject: consecutive segments (minutes, state code 0 up / 1 down / 2 unknown / 3 gap).
type Timelines = Vec<Vec<(u32, u8)>>;

fn timelines() -> impl Strategy<Value = Timelines> {
    prop::collection::vec(
        prop::collection::vec((1u32..3_000, 0u8..4), 1..25),
        SUBJECTS.len(),
    )
}

fn evidence(
    t: &Timelines,
    incidents: &[(u32, u32, u32, bool)],
    events: &[(u32, bool)],
) -> Evidence {
    let p = period();
    let mut ev = Evidence::default();
    for (i, (kind, id, sys)) in SUBJECTS.iter().enumerate() {
        ev.subjects.push(Subject {
            kind: *kind,
            id: (*id).into(),
            labels: BTreeMap::from([("system".into(), (*sys).into())]),
        });
        let mut cursor = p.start_ms;
        for (n, &(len, st)) in t[i].iter().enumerate() {
            let end = cursor + i64::from(len) * 60_000;
            let state = match st {
                0 => Some(State::Up),
                1 => Some(State::Down),
                2 => Some(State::Unknown),
                _ => None,
            };
            if let Some(state) = state {
                ev.intervals.push(StatusInterval {
                    id: format!("iv:{id}:{n}"),
                    kind: *kind,
                    subject: (*id).into(),
                    start_ms: cursor,
                    end_ms: end,
                    state,
                });
            }
            cursor = end;
        }
    }
    for (n, &(start, ack, restore, p1)) in incidents.iter().enumerate() {
        let d = p.start_ms + i64::from(start) * 60_000;
        ev.incidents.push(Incident {
            id: format!("inc:{n}"),
            system: Some(if p1 { "web" } else { "oa" }.into()),
            systems: None,
            labels: BTreeMap::new(),
            level: if p1 { "P1" } else { "P4" }.into(),
            detected_ms: d,
            acknowledged_ms: Some(d + i64::from(ack) * 60_000),
            on_site_ms: None,
            restored_ms: Some(d + i64::from(ack + restore) * 60_000),
            pauses: Vec::new(),
            cause: Cause::Vendor,
        });
    }
    for (n, &(at, bonus)) in events.iter().enumerate() {
        ev.events.push(ManualEvent {
            id: format!("ev:{n}"),
            category: if bonus { "extra" } else { "notice" }.into(),
            at_ms: p.start_ms + i64::from(at) * 60_000,
            evidence: String::new(),
        });
    }
    ev
}

fn incidents() -> impl Strategy<Value = Vec<(u32, u32, u32, bool)>> {
    prop::collection::vec((0u32..40_000, 0u32..600, 0u32..3_000, any::<bool>()), 0..6)
}

fn events() -> impl Strategy<Value = Vec<(u32, bool)>> {
    prop::collection::vec((0u32..40_000, any::<bool>()), 0..12)
}

fn run(ev: &Evidence) -> Assessment {
    let p = period();
    assess(&contract(), &Calendar::shipped(), &p, p.end_ms, ev)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn score_stays_within_floor_and_base_plus_bonus_cap(t in timelines(), i in incidents(), e in events()) {
        let a = run(&evidence(&t, &i, &e));
        prop_assert!(a.score >= 10.0 && a.score <= 105.0, "score {}", a.score);
        prop_assert!(a.grade.is_some());
    }

    #[test]
    fn adding_an_outage_never_raises_availability_or_score(
        t in timelines(), i in incidents(), e in events(), who in 0usize..4, seg in 0usize..25,
    ) {
        let before = run(&evidence(&t, &i, &e));
        let mut t2 = t.clone();
        let segs = &mut t2[who];
        // An up segment goes down. (Unknown time that becomes an outage shorter than
        // `min_outage` counts as available, as contracts say, so it may raise availability.)
        let ups: Vec<usize> = (0..segs.len()).filter(|&k| segs[k].1 == 0).collect();
        prop_assume!(!ups.is_empty());
        segs[ups[seg % ups.len()]].1 = 1;
        let after = run(&evidence(&t2, &i, &e));
        // A down subject can turn a system's unknown time (another subject unknown) into an
        // outage shorter than `min_outage`, which the contract counts as available: the only
        // way availability may rise. Counting short outages as down, it never does.
        let mut short_grew = false;
        for (b, a) in before.systems.iter().zip(&after.systems) {
            prop_assert!(a.downtime_minutes >= b.downtime_minutes - 1e-9,
                "{}: downtime {} → {}", b.system, b.downtime_minutes, a.downtime_minutes);
            let strict = |s: &SystemAvailability| (s.measured_minutes > 0.0).then(|| {
                (s.measured_minutes - s.downtime_minutes - s.ignored_short_minutes)
                    / s.measured_minutes
            });
            if let (Some(x), Some(y)) = (strict(b), strict(a)) {
                prop_assert!(y <= x + 1e-9,
                    "{}: availability with short outages as down {x} → {y}", b.system);
            }
            let grew = a.ignored_short_minutes > b.ignored_short_minutes + 1e-9;
            short_grew |= grew;
            if let (Some(x), Some(y), false) = (b.actual_percent, a.actual_percent, grew) {
                prop_assert!(y <= x + 1e-9, "{}: availability {x} → {y}", b.system);
            }
        }
        if !short_grew {
            prop_assert!(after.score <= before.score + 1e-9,
                "score {} → {}", before.score, after.score);
        }
    }

    #[test]
    fn evaluation_is_deterministic(t in timelines(), i in incidents(), e in events()) {
        let ev = evidence(&t, &i, &e);
        let a = serde_json::to_string(&run(&ev)).unwrap();
        let b = serde_json::to_string(&run(&ev)).unwrap();
        prop_assert_eq!(&a, &b);
        let mut rev = ev.clone();
        rev.subjects.reverse();
        rev.intervals.reverse();
        rev.incidents.reverse();
        rev.events.reverse();
        let c = serde_json::to_string(&run(&rev)).unwrap();
        prop_assert_eq!(&a, &c);
    }
}
