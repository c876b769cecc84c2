//! Independent probes: every span where the agents' view of a system and one of its server
//! probes disagree is listed, with its minutes and the server intervals it rests on.

use std::collections::BTreeMap;

use yunwei_sla::assess::{
    Evidence, Period, ServerProbeInterval, State, StatusInterval, Subject, SubjectKind, assess,
};
use yunwei_sla::calendar::Calendar;
use yunwei_sla::contract::parse_contract;

const CONTRACT: &str = "id: c\nname: 独立拨测\nparties: { buyer: 甲, vendor: 乙 }\n\
period: { start: 2026-01-01, end: 2026-12-31 }\nsystems:\n  - id: web\n    name: 门户\n    \
tier: core\n    down_when: any_probe\n    probes: { system: web }\n    server_probes:\n      \
- { name: office-home, http: \"https://portal.example.gov.cn/\" }\nobjectives:\n  \
availability:\n    core: { target_percent: 99.9 }\nscoring: {}\ngrades:\n  - { id: pass, \
name: 合格, name_en: Pass, min_score: 0 }\n";

const MIN: i64 = 60_000;

#[test]
fn spans_where_agents_and_server_disagree_are_listed_with_their_minutes() {
    let contract = parse_contract(CONTRACT, "c.yml").unwrap();
    let p = Period::month(2026, 3, contract.time_zone).unwrap();
    let t0 = p.start_ms;
    let mut ev = Evidence::default();
    ev.subjects.push(Subject {
        kind: SubjectKind::Probe,
        id: "a1/home".into(),
        labels: BTreeMap::from([("system".to_string(), "web".to_string())]),
    });
    // Agents: up for two hours, down 100..110 min, up again; unknown after 120 min.
    for (i, (a, b, st)) in [
        (0, 100, State::Up),
        (100, 110, State::Down),
        (110, 120, State::Up),
    ]
    .into_iter()
    .enumerate()
    {
        ev.intervals.push(StatusInterval {
            id: format!("interval:probe:{i}"),
            kind: SubjectKind::Probe,
            subject: "a1/home".into(),
            start_ms: t0 + a * MIN,
            end_ms: t0 + b * MIN,
            state: st,
        });
    }
    // Server: down 30..45 min (agents up), up 45..180 min (agents down 100..110, unknown
    // after 120: no disagreement there).
    for (i, (a, b, st)) in [(30, 45, State::Down), (45, 180, State::Up)]
        .into_iter()
        .enumerate()
    {
        ev.server_probes.push(ServerProbeInterval {
            id: format!("interval:server_probe:{i}"),
            probe: "office-home".into(),
            start_ms: t0 + a * MIN,
            end_ms: t0 + b * MIN,
            state: st,
        });
    }
    let a = assess(&contract, &Calendar::shipped(), &p, p.end_ms, &ev);
    let got: Vec<_> = a
        .disagreements
        .iter()
        .map(|d| {
            (
                d.system.as_str(),
                d.probe.as_str(),
                (d.from_ms - t0) / MIN,
                (d.to_ms - t0) / MIN,
                d.agents,
                d.server,
                d.minutes,
                d.evidence.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "web",
                "office-home",
                30,
                45,
                State::Up,
                State::Down,
                15.0,
                vec!["interval:server_probe:0".to_string()]
            ),
            (
                "web",
                "office-home",
                100,
                110,
                State::Down,
                State::Up,
                10.0,
                vec!["interval:server_probe:1".to_string()]
            ),
        ]
    );
    // Without server evidence nothing is listed, and the field is left out.
    ev.server_probes.clear();
    let a = assess(&contract, &Calendar::shipped(), &p, p.end_ms, &ev);
    assert!(a.disagreements.is_empty());
    assert!(!serde_json::to_string(&a).unwrap().contains("disagreements"));
}
