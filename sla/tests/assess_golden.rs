//! Golden tests for the assessment engine against hand-computed scenarios (the computation is
//! written next to each assertion). February 2026 in Asia/Shanghai; the shipped calendar.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use yunwei_sla::assess::*;
use yunwei_sla::calendar::Calendar;
use yunwei_sla::contract::{Cause, Contract, parse_contract};

const CONTRACT: &str = r#"
id: golden
name: 黄金用例合同
parties: { buyer: 甲方, vendor: 乙方 }
period: { start: 2026-01-01, end: 2026-12-31 }
fee: { amount: 120000, per: year }
service_windows:
  office-5x8: { kind: working_days, hours: "08:30-17:30" }
systems:
  - { id: web, name: 门户, tier: core, hosts: { system: web }, probes: { system: web } }
  - { id: oa, name: 办公, tier: office, window: office-5x8, down_when: all_hosts, hosts: { system: oa } }
objectives:
  availability:
    core: { target_percent: 99.95, min_outage: 5m, missing_data: excluded }
    office: { target_percent: 99.5, min_outage: 1m, missing_data: as_up }
  report_due_working_day: 5
  incidents:
    - { id: P1, aliases: [一级], response: 15m, restore: 4h }
    - { id: P4, aliases: [四级], response: 4h, restore: 27h, window: service, pause_states: [awaiting_buyer] }
scoring:
  base: 100
  floor: 0
  bonus_cap: 5
  deductions:
    - { id: availability, name: 可用性未达标, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
    - { id: p1-response, name: 一级响应超时, kind: response_late, levels: [一级], per_minutes: 5, points: 2 }
    - { id: p4-response, name: 四级响应超时, kind: response_late, levels: [P4], points: 1 }
    - { id: notice, name: 通报, kind: manual, category: authority_notice, points: 5 }
  bonuses:
    - { id: extra, name: 合同外支持, category: extra_support, points: 2, cap: 4 }
  vetoes:
    - { id: security, name: 安全事件, category: vendor_security_incident }
grades:
  - { id: excellent, name: 优秀, name_en: Excellent, min_score: 90, payment_percent: 100 }
  - { id: good, name: 良好, name_en: Good, min_score: 75, payment_percent: 95 }
  - { id: pass, name: 合格, name_en: Pass, min_score: 60, payment_percent: 85 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0, payment_percent: 70 }
"#;

fn contract() -> Contract {
    parse_contract(CONTRACT, "golden.yml").unwrap_or_else(|e| panic!("{e}"))
}

/// Local Asia/Shanghai time (UTC+8, no DST) as UTC ms.
fn at(s: &str) -> i64 {
    let n = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    n.and_utc().timestamp_millis() - 8 * 3_600_000
}

fn subject(kind: SubjectKind, id: &str, system: &str) -> Subject {
    Subject {
        kind,
        id: id.into(),
        labels: BTreeMap::from([("system".into(), system.into())]),
    }
}

/// Intervals for one subject over `[from, to)`: the given spans (state, or `None` for no
/// data), up everywhere else.
fn timeline(
    kind: SubjectKind,
    id: &str,
    from: i64,
    to: i64,
    special: &[(i64, i64, Option<State>)],
) -> Vec<StatusInterval> {
    let mut out = Vec::new();
    let mut cursor = from;
    let mut n = 0;
    let mut push = |s: i64, e: i64, st: State, out: &mut Vec<StatusInterval>| {
        n += 1;
        out.push(StatusInterval {
            id: format!("iv:{id}:{n}"),
            kind,
            subject: id.into(),
            start_ms: s,
            end_ms: e,
            state: st,
        });
    };
    for &(s, e, st) in special {
        if s > cursor {
            push(cursor, s, State::Up, &mut out);
        }
        if let Some(st) = st {
            push(s, e, st, &mut out);
        }
        cursor = e;
    }
    if cursor < to {
        push(cursor, to, State::Up, &mut out);
    }
    out
}

fn feb() -> Period {
    Period::parse("2026-02", chrono_tz::Asia::Shanghai).unwrap()
}

fn scenario() -> Evidence {
    let p = feb();
    let (s, e) = (p.start_ms, p.end_ms);
    let mut ev = Evidence::default();
    for (kind, id, sys) in [
        (SubjectKind::Host, "h1", "web"),
        (SubjectKind::Host, "h2", "web"),
        (SubjectKind::Probe, "p1", "web"),
        (SubjectKind::Probe, "p2", "web"),
        (SubjectKind::Host, "oa1", "oa"),
    ] {
        ev.subjects.push(subject(kind, id, sys));
    }
    ev.intervals
        .extend(timeline(SubjectKind::Host, "h1", s, e, &[]));
    ev.intervals
        .extend(timeline(SubjectKind::Host, "h2", s, e, &[]));
    ev.intervals.extend(timeline(
        SubjectKind::Probe,
        "p1",
        s,
        e,
        &[
            // overlapping outages (with p2): 10:00-10:30
            (
                at("2026-02-03 10:00"),
                at("2026-02-03 10:30"),
                Some(State::Down),
            ),
            // 60 min, of which 40 inside an approved maintenance window
            (
                at("2026-02-10 01:00"),
                at("2026-02-10 02:00"),
                Some(State::Down),
            ),
            // a stretch of missing data: 120 min
            (at("2026-02-20 00:00"), at("2026-02-20 02:00"), None),
        ],
    ));
    ev.intervals.extend(timeline(
        SubjectKind::Probe,
        "p2",
        s,
        e,
        &[
            // overlaps p1's: 10:20-10:50
            (
                at("2026-02-03 10:20"),
                at("2026-02-03 10:50"),
                Some(State::Down),
            ),
            // shorter than the 5 min minimum: 3 min
            (
                at("2026-02-12 12:00"),
                at("2026-02-12 12:03"),
                Some(State::Down),
            ),
        ],
    ));
    ev.intervals
        .extend(timeline(SubjectKind::Host, "oa1", s, e, &[]));
    ev.exclusions = vec![
        Exclusion {
            id: "ex:maint".into(),
            kind: ExclusionKind::Maintenance,
            labels: BTreeMap::from([("system".into(), "web".into())]),
            from_ms: at("2026-02-10 00:30"),
            to_ms: at("2026-02-10 01:40"),
            status: ExclusionStatus::Approved,
            requested_at_ms: at("2026-02-07 09:00"),
            reason: "数据库升级".into(),
        },
        Exclusion {
            id: "ex:rejected".into(),
            kind: ExclusionKind::ForceMajeure,
            labels: BTreeMap::new(),
            from_ms: at("2026-02-03 10:00"),
            to_ms: at("2026-02-03 11:00"),
            status: ExclusionStatus::Rejected,
            requested_at_ms: at("2026-02-03 12:00"),
            reason: "claimed power cut".into(),
        },
        Exclusion {
            id: "ex:late".into(),
            kind: ExclusionKind::Maintenance,
            labels: BTreeMap::from([("system".into(), "oa".into())]),
            from_ms: at("2026-02-25 20:00"),
            to_ms: at("2026-02-25 21:00"),
            status: ExclusionStatus::Approved,
            requested_at_ms: at("2026-02-26 09:00"),
            reason: "emergency patch".into(),
        },
    ];
    ev
}

fn sys<'a>(a: &'a Assessment, id: &str) -> &'a SystemAvailability {
    a.systems.iter().find(|s| s.system == id).unwrap()
}

#[test]
fn february_availability_by_hand() {
    let c = contract();
    let cal = Calendar::shipped();
    let p = feb();
    let a = assess(&c, &cal, &p, p.end_ms + 86_400_000, &scenario());
    let web = sys(&a, "web");
    // February 2026: 28 days × 1440 = 40,320 minutes; the core system is 7x24.
    assert_eq!(web.period_minutes, 40_320.0);
    assert_eq!(web.window_minutes, 40_320.0);
    // Probes are deciding (any probe down → down); p1 had no data 02-20 00:00-02:00: 120 min
    // unknown, excluded from the denominator (missing_data: excluded).
    assert_eq!(web.missing_minutes, 120.0);
    assert_eq!(web.measured_minutes, 40_200.0);
    // Overlapping outages 10:00-10:30 (p1) and 10:20-10:50 (p2) merge into one of 50 min;
    // the rejected exclusion over it does not count.
    // 02-10 01:00-02:00 (60 min) minus the approved maintenance 00:30-01:40: 20 min counted,
    // 40 min excluded. The 3 min blip on 02-12 is under the 5 min minimum: ignored.
    assert_eq!(web.downtime_minutes, 70.0);
    assert_eq!(web.excluded_minutes, 40.0);
    assert_eq!(web.ignored_short_minutes, 3.0);
    assert_eq!(web.outages.len(), 2);
    assert_eq!(web.outages[0].counted_minutes, 50.0);
    assert_eq!(web.outages[0].evidence, vec!["iv:p1:2", "iv:p2:2"]);
    assert_eq!(web.outages[1].counted_minutes, 20.0);
    // (40,200 − 70) / 40,200 = 99.825870…%, target 99.95: not met.
    let actual = web.actual_percent.unwrap();
    assert!((actual - 99.825_870_646_766_17).abs() < 1e-9, "{actual}");
    assert!(!web.met);
    // Budget: 0.05% of 40,320 = 20.16 min; 20.16 − 70 = −49.84.
    assert!((web.error_budget_left_minutes + 49.84).abs() < 1e-9);

    // The 5x8 office system: working days in February 2026 = 14 weekdays outside 春节
    // (02-02..06, 09..13, 24..27) + make-up Saturdays 02-14 and 02-28 = 16 days × 540 min.
    let oa = sys(&a, "oa");
    assert_eq!(oa.window_minutes, 16.0 * 540.0);
    assert_eq!(oa.actual_percent, Some(100.0));

    // Exclusions: only approved ones count; the one requested after its start is flagged.
    let ex: Vec<(&str, bool, bool)> = a
        .exclusions
        .iter()
        .map(|x| (x.exclusion.as_str(), x.counted, x.filed_after_the_fact))
        .collect();
    assert_eq!(
        ex,
        vec![
            ("ex:rejected", false, true),
            ("ex:maint", true, false),
            ("ex:late", true, true)
        ]
    );

    // 0.124129 pp short of 99.95 → 2 started steps of 0.1 pp × 5 = 10 points.
    assert_eq!(a.deductions.len(), 1);
    assert_eq!(a.deductions[0].item, "availability");
    assert_eq!(a.deductions[0].points, 10.0);
    assert_eq!(
        a.deductions[0].lines[0].evidence,
        vec!["iv:p1:2", "iv:p1:4", "iv:p2:2"]
    );
    // 100 − 10 = 90 → 优秀, paid in full: 120,000 × 28 / 365 = 9,205.48.
    assert_eq!(a.score, 90.0);
    assert_eq!(a.grade.as_ref().unwrap().name, "优秀");
    let pay = a.payment.as_ref().unwrap();
    assert_eq!(
        (pay.period_fee, pay.payable, pay.withheld),
        (9205.48, 9205.48, 0.0)
    );
    assert!(!a.provisional, "{:?}", a.provisional_reasons);
    // Report due on the 5th working day of March: 03-02 (Mon) .. 03-06 (Fri).
    assert_eq!(a.report_due.unwrap().to_string(), "2026-03-06");
}

#[test]
fn report_due_skips_national_day_and_counts_the_makeup_saturday() {
    // October 2026: 10-01..07 off; 10-08 Thu (1), 10-09 Fri (2), Sat 10-10 make-up (3),
    // 10-12 Mon (4), 10-13 Tue (5).
    let c = contract();
    let p = Period::parse("2026-09", chrono_tz::Asia::Shanghai).unwrap();
    let a = assess(&c, &Calendar::shipped(), &p, p.end_ms, &Evidence::default());
    assert_eq!(a.report_due.unwrap().to_string(), "2026-10-13");
}

#[test]
fn proportional_payment_is_fee_times_score() {
    // Same evidence as above: score 90; fee × 90 / 100 of 9,205.48 = 8,284.93.
    let c = parse_contract(&format!("{CONTRACT}payment: proportional\n"), "prop.yml").unwrap();
    let p = feb();
    let a = assess(&c, &Calendar::shipped(), &p, p.end_ms, &scenario());
    let pay = a.payment.unwrap();
    assert_eq!(
        (pay.percent, pay.payable, pay.withheld),
        (90.0, 8284.93, 920.55)
    );
}

#[test]
fn period_to_date_is_provisional_with_budget_left() {
    let c = contract();
    let cal = Calendar::shipped();
    let p = feb();
    // As of 02-05 00:00 only the 50 min outage of 02-03 has happened.
    let a = assess(&c, &cal, &p, at("2026-02-05 00:00"), &scenario());
    assert!(a.provisional);
    assert!(a.provisional_reasons.contains(&Reason::PeriodNotOver));
    let web = sys(&a, "web");
    // Window so far: 4 days = 5,760 min; budget 20.16 − 50 = −29.84.
    assert_eq!(web.window_minutes, 5_760.0);
    assert_eq!(web.downtime_minutes, 50.0);
    assert!((web.error_budget_left_minutes + 29.84).abs() < 1e-9);
}

#[test]
fn a_year_without_calendar_data_is_provisional() {
    let c = contract();
    let p = Period::parse("2027-03", chrono_tz::Asia::Shanghai).unwrap();
    let a = assess(&c, &Calendar::shipped(), &p, p.end_ms, &Evidence::default());
    assert!(a.provisional);
    assert_eq!(
        a.provisional_reasons[0],
        Reason::CalendarYearMissing { year: 2027 },
        "{:?}",
        a.provisional_reasons
    );
    assert_eq!(
        a.notes[0].to_string(),
        "the period 2027-03 (2027-03-01..2027-03-31) is not inside the contract period 2026-01-01..2026-12-31"
    );
    // No subjects at all: every system is flagged as resting on no evidence, and the grade is
    // withheld (the contract does not set `scoring.insufficient_evidence`).
    assert_eq!(a.notes.len(), 2 + c.systems.len(), "{:?}", a.notes);
    for (note, sys) in a.notes[1..].iter().zip(&c.systems) {
        assert!(
            matches!(note, Note::NoSubjects { system, .. } if *system == sys.id),
            "{note:?}"
        );
        assert!(
            note.to_string().contains("match no host or probe"),
            "{note}"
        );
    }
    assert_eq!(
        a.notes.last(),
        Some(&Note::GradeWithheld {
            systems: vec!["web".into(), "oa".into()]
        })
    );
    // Without data every subject is unknown: nothing measured, nothing missed.
    assert_eq!(sys(&a, "web").actual_percent, None);
    assert_eq!(sys(&a, "web").missing_minutes, 31.0 * 1440.0);
}

fn p4(id: &str, detected: &str, ack: Option<&str>, restored: Option<&str>) -> Incident {
    Incident {
        id: id.into(),
        system: Some("oa".into()),
        systems: None,
        labels: BTreeMap::new(),
        level: "四级".into(),
        detected_ms: at(detected),
        acknowledged_ms: ack.map(at),
        on_site_ms: None,
        restored_ms: restored.map(at),
        pauses: Vec::new(),
        cause: Cause::Vendor,
    }
}

#[test]
fn a_5x8_clock_across_the_makeup_saturday_and_spring_festival() {
    let c = contract();
    let cal = Calendar::shipped();
    let p = feb();
    let mut ev = Evidence::default();
    // Detected Fri 02-13 16:00. Working time: 02-13 16:00-17:30 = 90 min; Sat 02-14 is a
    // make-up working day, 08:30-17:30 = 540 min; 02-15..02-23 is 春节: 0; Tue 02-24 from 08:30.
    // inc:a acknowledged 02-14 10:00: 90 + 90 = 180 min ≤ 240 → met.
    //       restored 02-24 12:00: 90 + 540 + 210 = 840 min ≤ 27 h = 1,620 → met.
    ev.incidents.push(p4(
        "inc:a",
        "2026-02-13 16:00",
        Some("2026-02-14 10:00"),
        Some("2026-02-24 12:00"),
    ));
    // inc:b acknowledged 02-24 09:00: 90 + 540 + 30 = 660 min; 660 − 240 = 420 min late.
    ev.incidents.push(p4(
        "inc:b",
        "2026-02-13 16:00",
        Some("2026-02-24 09:00"),
        None,
    ));
    let a = assess(&c, &cal, &p, at("2026-02-24 12:00"), &ev);
    let ia = &a.incidents[0];
    assert_eq!(ia.level, "P4");
    assert_eq!(ia.clocks[0].clock, "response");
    assert_eq!(ia.clocks[0].elapsed_ms, 180 * 60_000);
    assert_eq!(ia.clocks[0].status, ClockStatus::Met);
    assert_eq!(ia.clocks[1].clock, "restore");
    assert_eq!(ia.clocks[1].elapsed_ms, 840 * 60_000);
    assert_eq!(ia.clocks[1].status, ClockStatus::Met);
    let ib = &a.incidents[1];
    assert_eq!(ib.clocks[0].elapsed_ms, 660 * 60_000);
    assert_eq!(ib.clocks[0].late_ms, 420 * 60_000);
    assert_eq!(ib.clocks[0].status, ClockStatus::Late);
    // inc:b is not restored at as_of (02-24 12:00): 840 min so far, under 1,620: running.
    assert_eq!(ib.clocks[1].status, ClockStatus::Running);
    // As of 02-14 09:00 inc:a's acknowledgement (02-14 10:00) has not happened yet:
    // 90 + 30 = 120 min so far, running.
    let early = assess(&c, &cal, &p, at("2026-02-14 09:00"), &ev);
    let ia = &early.incidents[0];
    assert_eq!(ia.clocks[0].elapsed_ms, 120 * 60_000);
    assert_eq!(ia.clocks[0].status, ClockStatus::Running);
    let d: Vec<(&str, f64)> = a
        .deductions
        .iter()
        .map(|d| (d.item.as_str(), d.points))
        .collect();
    assert_eq!(d, vec![("p4-response", 1.0)]);
    assert_eq!(a.deductions[0].lines[0].evidence, vec!["inc:b"]);
}

#[test]
fn paused_clocks_and_per_minute_deductions() {
    let c = contract();
    let cal = Calendar::shipped();
    let p = feb();
    let mut ev = Evidence::default();
    // P1 is 7x24: detected 02-16 03:00 (a holiday, still counts), acknowledged 03:37:
    // 37 min, 22 min late → ceil(22 / 5) = 5 units × 2 = 10 points.
    ev.incidents.push(Incident {
        id: "inc:p1".into(),
        system: None,
        systems: None,
        labels: BTreeMap::from([
            ("system".into(), "web".into()),
            ("instance".into(), "h1".into()),
        ]),
        level: "P1".into(),
        detected_ms: at("2026-02-16 03:00"),
        acknowledged_ms: Some(at("2026-02-16 03:37")),
        on_site_ms: None,
        restored_ms: Some(at("2026-02-16 08:00")),
        // P1 lists no pause states: this pause does not stop its clock.
        pauses: vec![Pause {
            from_ms: at("2026-02-16 04:00"),
            to_ms: at("2026-02-16 06:00"),
            state: "awaiting_buyer".into(),
        }],
        cause: Cause::ThirdParty,
    });
    // P4 on oa with a 2 h awaiting_buyer pause inside working hours: detected Mon 02-02 09:00,
    // acknowledged 15:00 = 360 min of window − 120 paused = 240 → exactly on target: met.
    let mut i = p4(
        "inc:p4",
        "2026-02-02 09:00",
        Some("2026-02-02 15:00"),
        Some("2026-02-02 16:00"),
    );
    i.pauses.push(Pause {
        from_ms: at("2026-02-02 10:00"),
        to_ms: at("2026-02-02 12:00"),
        state: "awaiting_buyer".into(),
    });
    ev.incidents.push(i);
    // An incident with a level the contract lacks and no system: no clocks, two notes.
    ev.incidents.push(Incident {
        id: "inc:odd".into(),
        system: Some("nope".into()),
        systems: None,
        labels: BTreeMap::new(),
        level: "P9".into(),
        detected_ms: at("2026-02-20 10:00"),
        acknowledged_ms: None,
        on_site_ms: None,
        restored_ms: None,
        pauses: Vec::new(),
        cause: Cause::Unknown,
    });
    let a = assess(&c, &cal, &p, p.end_ms, &ev);
    let incident_notes: Vec<&Note> = a
        .notes
        .iter()
        .filter(|n| n.to_string().starts_with("incident "))
        .collect();
    assert_eq!(incident_notes.len(), 2, "{:?}", a.notes);
    assert!(a.incidents[2].clocks.is_empty());
    assert_eq!(a.incidents[0].incident, "inc:p4");
    assert_eq!(a.incidents[0].clocks[0].elapsed_ms, 240 * 60_000);
    assert_eq!(a.incidents[0].clocks[0].status, ClockStatus::Met);
    let p1 = &a.incidents[1];
    assert_eq!(p1.systems, vec!["web"]);
    assert_eq!(p1.clocks[0].late_ms, 22 * 60_000);
    // Restore: 03:00 → 08:00 = 300 min, 60 over 4 h (the pause does not count for P1).
    assert_eq!(p1.clocks[1].late_ms, 60 * 60_000);
    assert_eq!(a.deductions[0].item, "p1-response");
    assert_eq!(a.deductions[0].points, 10.0);
    assert_eq!(a.score, 90.0);
}

#[test]
fn caps_bonuses_vetoes_and_grades() {
    let c = contract();
    let cal = Calendar::shipped();
    let p = feb();
    let mut ev = scenario();
    let event = |id: &str, cat: &str, day: &str| ManualEvent {
        id: id.into(),
        category: cat.into(),
        at_ms: at(&format!("2026-02-{day} 10:00")),
        evidence: format!("doc {id}"),
    };
    // Availability −10 (above), two notices −10, three extra-support bonuses 3 × 2 = 6,
    // capped at 4 by the item: 100 − 20 + 4 = 84 → 良好, 95% paid.
    ev.events = vec![
        event("ev:n1", "authority_notice", "04"),
        event("ev:n2", "authority_notice", "05"),
        event("ev:b1", "extra_support", "06"),
        event("ev:b2", "extra_support", "07"),
        event("ev:b3", "extra_support", "08"),
    ];
    let a = assess(&c, &cal, &p, p.end_ms, &ev);
    assert_eq!(a.deducted, 20.0);
    assert_eq!(a.bonus, 4.0);
    assert_eq!(a.score, 84.0);
    assert_eq!(a.grade.as_ref().unwrap().id, "good");
    assert_eq!(a.payment.as_ref().unwrap().percent, 95.0);
    // A veto event makes the grade 不合格 whatever the score.
    ev.events
        .push(event("ev:v", "vendor_security_incident", "09"));
    let a = assess(&c, &cal, &p, p.end_ms, &ev);
    assert_eq!(a.score, 84.0);
    let g = a.grade.as_ref().unwrap();
    assert_eq!((g.name.as_str(), g.vetoed), ("不合格", true));
    assert_eq!(a.vetoes[0].evidence, vec!["ev:v"]);
}

fn contract_with(objectives_extra: &str, deduction_extra: &str, top_extra: &str) -> Contract {
    let text = CONTRACT
        .replace("objectives:\n", &format!("objectives:\n{objectives_extra}"))
        .replace(
            "  deductions:\n",
            &format!("  deductions:\n{deduction_extra}"),
        )
        .replace("systems:\n", &format!("{top_extra}systems:\n"));
    parse_contract(&text, "golden-variant.yml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn inspections_due_and_missed() {
    let c = contract_with(
        "  inspections: { daily: [\"09:00\", \"16:00\"], weekly: fri, weekly_at: \"10:00\", before_holiday_working_days: 2, grace: 1h }\n",
        "    - { id: inspection, name: 漏巡检, kind: inspection_missed, points: 5 }\n",
        "",
    );
    let cal = Calendar::shipped();
    let p = feb();
    let mut ev = Evidence::default();
    let mut n = 0;
    let mut rec = |kind, sched: i64, done: i64| {
        n += 1;
        InspectionRecord {
            id: format!("insp:{n}"),
            kind,
            scheduled_ms: sched,
            done_ms: Some(done),
            result: "ok".into(),
        }
    };
    // 16 working days (see above) × 2 daily = 32; Fridays 02-06, 02-13, 02-27 (02-20 is 春节)
    // = 3 weekly; 春节 starts 02-15, its 2 working days before are 02-13 and 02-14 = 1.
    // Due 36. Missing: 02-10 16:00 (no record) and 02-11 09:00 (done 10:30, after the 1 h grace).
    for date in p.dates() {
        if !cal.is_working_day(date).0 {
            continue;
        }
        for hm in ["09:00", "16:00"] {
            let s = at(&format!("{date} {hm}"));
            match (date.to_string().as_str(), hm) {
                ("2026-02-10", "16:00") => {}
                ("2026-02-11", "09:00") => {
                    ev.inspections
                        .push(rec(InspectionKind::Daily, s, s + 90 * 60_000))
                }
                _ => ev
                    .inspections
                    .push(rec(InspectionKind::Daily, s, s + 10 * 60_000)),
            }
        }
    }
    for d in ["06", "13", "27"] {
        let s = at(&format!("2026-02-{d} 10:00"));
        ev.inspections.push(rec(InspectionKind::Weekly, s, s));
    }
    ev.inspections.push(rec(
        InspectionKind::BeforeHoliday,
        0,
        at("2026-02-14 15:00"),
    ));
    let a = assess(&c, &cal, &p, p.end_ms, &ev);
    assert_eq!(a.inspections.due, 36);
    assert_eq!(a.inspections.done, 34);
    let missed: Vec<i64> = a
        .inspections
        .missed
        .iter()
        .map(|m| m.scheduled_ms)
        .collect();
    assert_eq!(missed, vec![at("2026-02-10 16:00"), at("2026-02-11 09:00")]);
    assert_eq!(a.deductions[0].item, "inspection");
    assert_eq!(a.deductions[0].points, 10.0);
}

/// A slot late on the last day whose grace runs into the next month belongs to the month it
/// was scheduled in: assessed after its deadline (the scheduled report runs at 02:00 on the
/// 1st) it is done or missed there, not dropped from both months.
#[test]
fn an_inspection_whose_grace_crosses_month_end_counts_in_its_month() {
    let c = contract_with(
        "  inspections: { daily: [\"23:30\"], daily_on: every_day, grace: 1h }\n",
        "    - { id: inspection, name: 漏巡检, kind: inspection_missed, points: 5 }\n",
        "",
    );
    let cal = Calendar::shipped();
    let p = feb();
    let record = |date: &str, id: usize| InspectionRecord {
        id: format!("insp:{id}"),
        kind: InspectionKind::Daily,
        scheduled_ms: at(&format!("{date} 23:30")),
        done_ms: Some(at(&format!("{date} 23:45"))),
        result: "ok".into(),
    };
    let mut ev = Evidence::default();
    for (i, date) in p.dates().enumerate() {
        ev.inspections.push(record(&date.to_string(), i));
    }
    let after = at("2026-03-01 02:00");
    let a = assess(&c, &cal, &p, after, &ev);
    assert_eq!((a.inspections.due, a.inspections.done), (28, 28));
    // At midnight the last slot is still within its grace: not yet due.
    let a = assess(&c, &cal, &p, p.end_ms, &ev);
    assert_eq!((a.inspections.due, a.inspections.done), (27, 27));
    // Without its record, the last day's slot is missed in February.
    ev.inspections.pop();
    let a = assess(&c, &cal, &p, after, &ev);
    assert_eq!((a.inspections.due, a.inspections.done), (28, 27));
    let missed: Vec<i64> = a
        .inspections
        .missed
        .iter()
        .map(|m| m.scheduled_ms)
        .collect();
    assert_eq!(missed, vec![at("2026-02-28 23:30")]);
}

#[test]
fn resource_kpis_from_hourly_rollups() {
    let c = contract_with(
        "  resources:\n    - { id: cpu-p95, name: CPU, metric: cpu_usage_ratio, aggregate: p95_hourly_mean, below: 0.8, systems: [web] }\n    - { id: disk-max, name: 磁盘, metric: disk_used_ratio, aggregate: max, below: 0.85 }\n",
        "    - { id: resources, name: 资源超标, kind: resource_breach, points: 1 }\n",
        "",
    );
    let p = feb();
    let mut ev = scenario();
    let row = |host: &str, metric: &str, h: i64, mean: f64, max: f64| ResourceHour {
        id: format!("ru:{host}:{metric}:{h}"),
        host: host.into(),
        metric: metric.into(),
        hour_ms: p.start_ms + h * 3_600_000,
        min: 0.0,
        max,
        sum: mean * 60.0,
        count: 60,
        last: mean,
    };
    for h in 1..=100 {
        // h1: hourly means 0.01 .. 1.00; nearest-rank p95 of 100 values = the 95th = 0.95.
        ev.resources
            .push(row("h1", "cpu_usage_ratio", h, h as f64 / 100.0, 1.0));
        ev.resources.push(row("h2", "cpu_usage_ratio", h, 0.5, 0.6));
    }
    // disk on oa1: one hour peaks at 0.9 ≥ 0.85.
    ev.resources
        .push(row("oa1", "disk_used_ratio", 5, 0.7, 0.9));
    ev.resources
        .push(row("oa1", "disk_used_ratio", 6, 0.7, 0.8));
    let a = assess(&c, &Calendar::shipped(), &p, p.end_ms, &ev);
    let r: Vec<(&str, &str, Option<f64>, bool)> = a
        .resources
        .iter()
        .map(|r| (r.kpi.as_str(), r.host.as_str(), r.value, r.breached))
        .collect();
    assert_eq!(
        r,
        vec![
            ("cpu-p95", "h1", Some(0.95), true),
            ("cpu-p95", "h2", Some(0.5), false),
            ("disk-max", "h1", None, false),
            ("disk-max", "h2", None, false),
            ("disk-max", "oa1", Some(0.9), true),
        ]
    );
    assert_eq!(a.resources[0].evidence, vec!["ru:h1:cpu_usage_ratio:95"]);
    let d = a.deductions.iter().find(|d| d.item == "resources").unwrap();
    assert_eq!(d.points, 2.0);
}

#[test]
fn weekly_windows_and_duty_periods_by_hand() {
    let c = contract_with(
        "",
        "",
        "duty_periods:\n  - { name: 春节重保, from: 2026-02-15, to: 2026-02-17, systems: [oa] }\n",
    );
    let text = CONTRACT
        .replace(
            "  office-5x8: { kind: working_days, hours: \"08:30-17:30\" }\n",
            "  office-5x8: { kind: working_days, hours: \"08:30-17:30\" }\n  hall: { kind: weekly, schedule: { mon: [\"08:00-18:00\"], tue: [\"08:00-18:00\"], wed: [\"08:00-18:00\"], thu: [\"08:00-18:00\"], fri: [\"08:00-18:00\"], sat: [\"09:00-12:00\"] } }\n",
        )
        .replace("window: office-5x8", "window: hall");
    let hall = parse_contract(&text, "hall.yml").unwrap_or_else(|e| panic!("{e}"));
    let cal = Calendar::shipped();
    let p = feb();
    let ev = scenario();
    // oa (5x8) with 重保 02-15..02-17: 16 × 540 + 3 × 1,440 = 12,960.
    let a = assess(&c, &cal, &p, p.end_ms, &ev);
    assert_eq!(sys(&a, "oa").window_minutes, 12_960.0);
    // hall: 14 ordinary weekdays × 600; Sat 02-07 180; make-up Saturdays 02-14 and 02-28
    // follow Monday: 2 × 600; Sat 02-21 is in 春节: closed. 8,400 + 180 + 1,200 = 9,780.
    let a = assess(&hall, &cal, &p, p.end_ms, &ev);
    assert_eq!(sys(&a, "oa").window_minutes, 9_780.0);
}

#[test]
fn missing_data_as_down_and_the_late_exclusion() {
    // oa counts missing data as up (as_up); switch the tier to as_down and give oa1 a 60 min
    // gap on a working day plus a 30 min outage in working hours covered by nothing:
    // window 8,640; down 30 + 60 = 90; (8,640 − 90) / 8,640 = 98.958333…%.
    let text = CONTRACT.replace("missing_data: as_up", "missing_data: as_down");
    let c = parse_contract(&text, "as-down.yml").unwrap();
    let p = feb();
    let mut ev = scenario();
    ev.intervals.retain(|iv| iv.subject != "oa1");
    ev.intervals.extend(timeline(
        SubjectKind::Host,
        "oa1",
        p.start_ms,
        p.end_ms,
        &[
            (at("2026-02-09 10:00"), at("2026-02-09 11:00"), None),
            (
                at("2026-02-10 14:00"),
                at("2026-02-10 14:30"),
                Some(State::Down),
            ),
            // Outside working hours (20:00-21:00 on 02-25): not in the window at all, and
            // the late-filed approved exclusion covers it anyway.
            (
                at("2026-02-25 20:00"),
                at("2026-02-25 21:00"),
                Some(State::Down),
            ),
        ],
    ));
    let a = assess(&c, &Calendar::shipped(), &p, p.end_ms, &ev);
    let oa = sys(&a, "oa");
    assert_eq!(oa.missing_minutes, 60.0);
    assert_eq!(oa.downtime_minutes, 90.0);
    assert_eq!(oa.excluded_minutes, 0.0);
    let actual = oa.actual_percent.unwrap();
    assert!(
        (actual - 8_550.0 / 8_640.0 * 100.0).abs() < 1e-9,
        "{actual}"
    );
    // 99.5 − 98.9583 = 0.5417 pp → 6 steps × 5 = 30, capped at 20; web adds its 10 → item
    // uncapped 40, deducted 20.
    let d = &a.deductions[0];
    assert_eq!((d.uncapped, d.points), (40.0, 20.0));
}

#[test]
fn the_example_contract_assesses_the_quickstart_host() {
    // The quickstart agent reports labels {system: quickstart, environment: demo}; the example's
    // `portal` system selects it. A 2027 calendar file makes 2027-01 final, not provisional.
    let c = parse_contract(yunwei_sla::contract::EXAMPLE_CONTRACT, "example.yml").unwrap();
    let cal = c
        .build_calendar(&[(
            "cal-2027.yml",
            "2027:\n  holidays:\n    - {name: 元旦, from: 2027-01-01, to: 2027-01-01}\n",
        )])
        .unwrap();
    let p = Period::parse("2027-01", c.time_zone).unwrap();
    let mut ev = Evidence::default();
    ev.subjects.push(Subject {
        kind: SubjectKind::Host,
        id: "quickstart-host".into(),
        labels: BTreeMap::from([
            ("system".into(), "quickstart".into()),
            ("environment".into(), "demo".into()),
        ]),
    });
    ev.intervals.extend(timeline(
        SubjectKind::Host,
        "quickstart-host",
        p.start_ms,
        p.end_ms,
        &[],
    ));
    let a = assess(&c, &cal, &p, p.end_ms, &ev);
    let portal = sys(&a, "portal");
    assert_eq!(portal.subjects, vec!["host:quickstart-host"]);
    assert_eq!(portal.actual_percent, Some(100.0));
    assert!(!a.provisional, "{:?}", a.provisional_reasons);
    // Without the 2027 file the same period is provisional.
    let a = assess(&c, &Calendar::shipped(), &p, p.end_ms, &ev);
    assert!(a.provisional);
    // The example has inspections: with no records, all due ones are missed (−5 each, no cap),
    // and the other systems select nothing: insufficient evidence, whatever their tier does
    // with missing data (`oa`'s as_up no longer makes it "fully available"), so the grade is
    // withheld (`scoring.insufficient_evidence: withhold_grade`) and no payment is computed.
    assert_eq!(a.score, 0.0);
    assert!(a.grade_withheld);
    assert_eq!(a.payment, None);
    assert_eq!(a.insufficient_evidence, vec!["approval", "oa"]);
    for id in ["approval", "oa"] {
        let s = sys(&a, id);
        assert_eq!((s.actual_percent, s.met), (None, false), "{id}");
        assert!(s.insufficient_evidence, "{id}");
    }
    assert!(!sys(&a, "portal").insufficient_evidence);
}

#[test]
fn serialized_assessment_matches_the_snapshot() {
    // The whole February assessment as pretty JSON: what the report crate and the API will
    // serialize. A change to any figure, field name or order shows up here; review it and
    // rewrite with BLESS=1.
    let c = contract();
    let p = feb();
    let mut ev = scenario();
    ev.incidents.push(p4(
        "inc:a",
        "2026-02-13 16:00",
        Some("2026-02-24 09:00"),
        Some("2026-02-24 12:00"),
    ));
    let a = assess(&c, &Calendar::shipped(), &p, p.end_ms, &ev);
    let got = serde_json::to_string_pretty(&a).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/assessment-2026-02.json");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert!(
        got == want,
        "assessment differs from {}:\n{got}",
        path.display()
    );
}

/// The February scenario with the web probes' and hosts' data cut to what `keep` says.
fn scenario_keeping(keep: impl Fn(&StatusInterval) -> Option<(i64, i64)>) -> Evidence {
    let mut ev = scenario();
    ev.intervals = ev
        .intervals
        .into_iter()
        .filter_map(|mut iv| {
            let (s, e) = keep(&iv)?;
            (iv.start_ms, iv.end_ms) = (iv.start_ms.max(s), iv.end_ms.min(e));
            (iv.start_ms < iv.end_ms).then_some(iv)
        })
        .collect();
    ev
}

#[test]
fn a_system_with_no_evidence_is_not_assessed() {
    // The web system's subjects exist but sent nothing in February: coverage 0 % of its 40,320
    // window minutes. Under `missing_data: excluded` it used to be "nothing measured, target
    // met"; now it is insufficient evidence: no figure, neither met nor breached, no
    // availability deduction, and the grade is withheld (the default policy) with no payment.
    let c = contract();
    let p = feb();
    let ev = scenario_keeping(|iv| (iv.subject == "oa1").then_some((iv.start_ms, iv.end_ms)));
    let a = assess(&c, &Calendar::shipped(), &p, p.end_ms, &ev);
    let web = sys(&a, "web");
    assert_eq!(web.coverage_percent, Some(0.0));
    assert_eq!(web.min_coverage_percent, 80.0);
    assert!(web.insufficient_evidence);
    assert_eq!((web.actual_percent, web.met), (None, false));
    assert_eq!(web.missing_minutes, 40_320.0);
    assert!(a.deductions.iter().all(|d| d.item != "availability"));
    assert_eq!(a.insufficient_evidence, vec!["web"]);
    assert!(a.grade_withheld);
    assert_eq!(a.payment, None);
    assert!(a.notes.contains(&Note::InsufficientEvidence {
        system: "web".into(),
        name: "门户".into(),
        coverage_percent: Some(0.0),
        min_coverage_percent: 80.0,
    }));
    assert!(a.notes.contains(&Note::GradeWithheld {
        systems: vec!["web".into()]
    }));
    // The office system had all its data: assessed as before.
    let oa = sys(&a, "oa");
    assert!(!oa.insufficient_evidence);
    assert_eq!(oa.coverage_percent, Some(100.0));
    assert_eq!(oa.actual_percent, Some(100.0));

    // A system selecting no subject at all is insufficient evidence too, whatever its tier
    // does with missing data (`oa` counts missing data as up).
    let mut ev = scenario();
    ev.subjects.retain(|s| s.id != "oa1");
    let a = assess(&c, &Calendar::shipped(), &p, p.end_ms, &ev);
    let oa = sys(&a, "oa");
    assert!(oa.subjects.is_empty());
    assert!(oa.insufficient_evidence);
    assert_eq!((oa.actual_percent, oa.met), (None, false));
    assert!(matches!(&a.notes[0], Note::NoSubjects { system, .. } if system == "oa"));
}

#[test]
fn a_system_below_its_coverage_minimum_is_not_assessed() {
    // Monitoring of web began on 02-20 00:00: 9 of 28 days with data = 12,960 of 40,320 window
    // minutes = 32.142857…% coverage, below the default 80 %. Its outages (02-03, 02-10) are
    // before then, so there is nothing to deduct anyway; what matters is that no availability
    // figure is claimed for a month mostly unseen.
    let p = feb();
    let began = at("2026-02-20 00:00");
    let keep = |iv: &StatusInterval| {
        Some(if iv.subject == "oa1" {
            (iv.start_ms, iv.end_ms)
        } else {
            (began, p.end_ms)
        })
    };
    let a = assess(
        &contract(),
        &Calendar::shipped(),
        &p,
        p.end_ms,
        &scenario_keeping(keep),
    );
    let web = sys(&a, "web");
    // p1's 120 missing minutes on 02-20 fall inside: 12,960 − 120 = 12,840 with data.
    let cov = web.coverage_percent.unwrap();
    assert!((cov - 12_840.0 / 40_320.0 * 100.0).abs() < 1e-9, "{cov}");
    assert!(web.insufficient_evidence);
    assert_eq!(web.actual_percent, None);
    assert!(a.grade_withheld);

    // `mark_partial`: the grade stands, marked as resting on partial evidence; payment too.
    let c = contract();
    let text = CONTRACT.replace(
        "  vetoes:\n",
        "  insufficient_evidence: mark_partial\n  vetoes:\n",
    );
    let partial = parse_contract(&text, "partial.yml").unwrap();
    assert_eq!(c.scoring.insufficient_evidence, Default::default());
    let a = assess(
        &partial,
        &Calendar::shipped(),
        &p,
        p.end_ms,
        &scenario_keeping(keep),
    );
    assert!(!a.grade_withheld);
    let g = a.grade.as_ref().unwrap();
    assert!(g.partial_evidence);
    assert_eq!(g.name, "优秀");
    assert!(a.payment.is_some());
    assert!(a.notes.contains(&Note::GradeOnPartialEvidence {
        systems: vec!["web".into()]
    }));

    // A tier minimum of 30 % accepts the same evidence: assessed over the measured time.
    let text = CONTRACT.replace(
        "missing_data: excluded }",
        "missing_data: excluded, min_coverage_percent: 30 }",
    );
    let low = parse_contract(&text, "low.yml").unwrap();
    let a = assess(
        &low,
        &Calendar::shipped(),
        &p,
        p.end_ms,
        &scenario_keeping(keep),
    );
    let web = sys(&a, "web");
    assert!(!web.insufficient_evidence);
    assert_eq!(web.min_coverage_percent, 30.0);
    assert_eq!(web.actual_percent, Some(100.0));
    assert!(web.met);
    assert!(!a.grade_withheld);
    assert!(a.insufficient_evidence.is_empty());
    assert!(!a.grade.as_ref().unwrap().partial_evidence);

    // `missing_data: as_down` defaults to no minimum: the vendor bears gaps in full, so a gap
    // never voids the downtime it counts.
    let text = CONTRACT.replace("missing_data: excluded", "missing_data: as_down");
    let down = parse_contract(&text, "down.yml").unwrap();
    let a = assess(
        &down,
        &Calendar::shipped(),
        &p,
        p.end_ms,
        &scenario_keeping(keep),
    );
    let web = sys(&a, "web");
    assert_eq!(web.min_coverage_percent, 0.0);
    assert!(!web.insufficient_evidence);
    assert!(web.actual_percent.unwrap() < 40.0);
}

#[test]
fn an_incident_still_open_keeps_the_assessment_provisional() {
    // Detected 02-27 22:00 (P1: restore within 4 h), restored 03-01 10:00. Assessed at 03-01
    // 02:00 (when the scheduled report is made) the restore clock is still running and the
    // figures are provisional for that reason alone; assessed after the restore it is final,
    // with the exact lateness: 36 h − 4 h = 32 h = 1,920 min late.
    let c = contract();
    let p = feb();
    let mut ev = scenario();
    ev.incidents.push(Incident {
        id: "inc:open".into(),
        system: Some("web".into()),
        systems: None,
        labels: BTreeMap::new(),
        level: "P1".into(),
        detected_ms: at("2026-02-27 22:00"),
        acknowledged_ms: Some(at("2026-02-27 22:05")),
        on_site_ms: None,
        restored_ms: Some(at("2026-03-01 10:00")),
        pauses: Vec::new(),
        cause: Cause::Vendor,
    });
    let a = assess(&c, &Calendar::shipped(), &p, at("2026-03-01 02:00"), &ev);
    assert_eq!(
        a.provisional_reasons,
        vec![Reason::IncidentsOpen {
            incidents: vec!["inc:open".into()]
        }]
    );
    assert_eq!(a.incidents[0].clocks[1].status, ClockStatus::Breached);
    let a = assess(&c, &Calendar::shipped(), &p, at("2026-03-01 10:05"), &ev);
    assert!(!a.provisional, "{:?}", a.provisional_reasons);
    let restore = &a.incidents[0].clocks[1];
    assert_eq!(restore.status, ClockStatus::Late);
    assert_eq!(restore.late_ms, 1_920 * 60_000);
}

fn appeal(id: &str, target: AppealTarget, filed: &str, decision: Option<AppealDecision>) -> Appeal {
    Appeal {
        id: id.into(),
        target,
        filed_by: "op".into(),
        filed_ms: at(filed),
        reason: "not our fault".into(),
        attachments: Vec::new(),
        decision,
    }
}

fn decided(
    outcome: AppealOutcome,
    at_: &str,
    points: Option<f64>,
    minutes: Option<f64>,
) -> AppealDecision {
    AppealDecision {
        outcome,
        approved_points: points,
        approved_minutes: minutes,
        decided_by: "rev".into(),
        decided_ms: at(at_),
        reason: "checked".into(),
    }
}

#[test]
fn appeal_decisions_apply_from_their_decision_on() {
    let c = contract();
    let cal = Calendar::shipped();
    let p = feb();
    let mut ev = scenario();
    // A manual deduction (通报, 5 points) besides the availability one (10 points): 85.
    ev.events.push(ManualEvent {
        id: "event:7".into(),
        category: "authority_notice".into(),
        at_ms: at("2026-02-16 10:00"),
        evidence: "通报 2026-3".into(),
    });
    let as_of = at("2026-03-20 00:00");
    let before = assess(&c, &cal, &p, as_of, &ev);
    assert_eq!(before.score, 85.0);
    assert!(before.appeals.is_empty());

    // The notice is appealed and overturned: the line and its item disappear, the score rises
    // by exactly its 5 points and the appeal cites the decision.
    ev.appeals.push(appeal(
        "appeal:1",
        AppealTarget::Deduction {
            item: "notice".into(),
            subject: "event:7".into(),
        },
        "2026-03-03 10:00",
        Some(decided(
            AppealOutcome::Overturned,
            "2026-03-05 10:00",
            None,
            None,
        )),
    ));
    let after = assess(&c, &cal, &p, as_of, &ev);
    assert_eq!(after.score, 90.0);
    assert!(after.deductions.iter().all(|d| d.item != "notice"));
    assert_eq!(after.appeals.len(), 1);
    assert!(after.appeals[0].applied);
    assert_eq!(after.appeals[0].effect_points, 5.0);

    // As of before the decision the draft's figures stand and the appeal is pending.
    let draft = assess(&c, &cal, &p, at("2026-03-04 00:00"), &ev);
    assert_eq!(draft.score, 85.0);
    assert!(draft.appeals[0].appeal.decision.is_none());
    assert!(!draft.appeals[0].applied);
    // As of before it was filed it is not there at all.
    assert!(
        assess(&c, &cal, &p, at("2026-03-02 00:00"), &ev)
            .appeals
            .is_empty()
    );

    // The 50-minute outage of 02-03 adjusted to 10 approved minutes: downtime 70 → 30,
    // (40,200 − 30) / 40,200 = 99.925373…%: 0.024627 pp short → 1 step × 5 = 5 points
    // instead of 10. Its effect is measured against every other decision: +5.
    let web_outage = before.systems[0].outages[0].start_ms;
    ev.appeals.push(appeal(
        "appeal:2",
        AppealTarget::Outage {
            system: "web".into(),
            start_ms: web_outage,
        },
        "2026-03-03 11:00",
        Some(decided(
            AppealOutcome::Adjusted,
            "2026-03-05 11:00",
            None,
            Some(10.0),
        )),
    ));
    let both = assess(&c, &cal, &p, as_of, &ev);
    let web = sys(&both, "web");
    assert_eq!(web.downtime_minutes, 30.0);
    assert_eq!(web.appealed_minutes, 40.0);
    assert_eq!(web.outages[0].counted_minutes, 10.0);
    assert_eq!(web.outages[0].appeal.as_deref(), Some("appeal:2"));
    assert_eq!(both.score, 95.0);
    assert_eq!(both.appeals[1].effect_points, 5.0);

    // An upheld appeal changes nothing; one about a line the period lacks is not applied.
    ev.appeals[0].decision = Some(decided(
        AppealOutcome::Upheld,
        "2026-03-05 10:00",
        None,
        None,
    ));
    ev.appeals.push(appeal(
        "appeal:3",
        AppealTarget::IncidentClock {
            incident: "incident:404".into(),
            clock: "response".into(),
        },
        "2026-03-03 12:00",
        Some(decided(
            AppealOutcome::Overturned,
            "2026-03-05 12:00",
            None,
            None,
        )),
    ));
    let upheld = assess(&c, &cal, &p, as_of, &ev);
    assert_eq!(upheld.score, 90.0);
    assert!(!upheld.appeals[0].applied);
    assert!(!upheld.appeals[2].applied);
    assert_eq!(upheld.appeals[2].effect_points, 0.0);

    // The same inputs give the same bytes.
    assert_eq!(
        serde_json::to_string(&upheld).unwrap(),
        serde_json::to_string(&assess(&c, &cal, &p, as_of, &ev)).unwrap()
    );
}
