//! Independent probes: every span where the agents' view of a system and one of its server
//! probes disagree is listed, with its minutes and the server intervals it rests on; and a
//! system's `availability_from` decides whose view its availability follows.

use std::collections::BTreeMap;

use yunwei_sla::assess::{
    Evidence, Period, ServerProbeInterval, State, StatusInterval, Subject, SubjectKind, assess,
};
use yunwei_sla::calendar::Calendar;
use yunwei_sla::contract::{AvailabilityFrom, parse_contract};

const CONTRACT: &str = "id: c\nname: 独立拨测\nparties: { buyer: 甲, vendor: 乙 }\n\
period: { start: 2026-01-01, end: 2026-12-31 }\nsystems:\n  - id: web\n    name: 门户\n    \
tier: core\n    down_when: any_probe\n    probes: { system: web }\n    server_probes:\n      \
- { name: office-home, http: \"https://portal.example.gov.cn/\" }\nobjectives:\n  \
availability:\n    core: { target_percent: 99.9 }\nscoring: {}\ngrades:\n  - { id: pass, \
name: 合格, name_en: Pass, min_score: 0 }\n";

const MIN: i64 = 60_000;

/// The agents' and the server's evidence of [`CONTRACT`]'s system `web`, from `t0`: agents up
/// 0..100 min, down 100..110, up 110..120, no data after; server down 30..45, up 45..180, no
/// data before 30 or after 180.
fn evidence(t0: i64) -> Evidence {
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
    ev
}

#[test]
fn spans_where_agents_and_server_disagree_are_listed_with_their_minutes() {
    let contract = parse_contract(CONTRACT, "c.yml").unwrap();
    let p = Period::month(2026, 3, contract.time_zone).unwrap();
    let t0 = p.start_ms;
    let mut ev = evidence(t0);
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

#[test]
fn availability_follows_the_vantage_the_contract_names() {
    let t0 = Period::month(2026, 3, chrono_tz::Asia::Shanghai)
        .unwrap()
        .start_ms;
    let ev = evidence(t0);
    // (setting, downtime, missing minutes, outages as (from, to, evidence)).
    type Outages = Vec<(i64, i64, Vec<&'static str>)>;
    let cases: [(&str, AvailabilityFrom, f64, f64, Outages); 3] = [
        // The agents: their outage 100..110; no data 120..180.
        (
            "",
            AvailabilityFrom::Agents,
            10.0,
            60.0,
            vec![(100, 110, vec!["interval:probe:1"])],
        ),
        // The server alone: its outage 30..45; no data 0..30.
        (
            "    availability_from: server_probes\n",
            AvailabilityFrom::ServerProbes,
            15.0,
            30.0,
            vec![(30, 45, vec!["interval:server_probe:0"])],
        ),
        // Both: down while either says down; missing only while neither has data (never).
        (
            "    availability_from: both\n",
            AvailabilityFrom::Both,
            25.0,
            0.0,
            vec![
                (30, 45, vec!["interval:server_probe:0"]),
                (100, 110, vec!["interval:probe:1"]),
            ],
        ),
    ];
    for (setting, from, downtime, missing, outages) in cases {
        let text = CONTRACT.replace(
            "    server_probes:\n",
            &format!("{setting}    server_probes:\n"),
        );
        let contract = parse_contract(&text, "c.yml").unwrap();
        assert_eq!(contract.systems[0].availability_from, from);
        let p = Period::month(2026, 3, contract.time_zone).unwrap();
        let a = assess(&contract, &Calendar::shipped(), &p, t0 + 180 * MIN, &ev);
        let web = &a.systems[0];
        assert_eq!(web.decided_by, from, "{from:?}");
        assert_eq!(web.downtime_minutes, downtime, "{from:?}");
        assert_eq!(web.missing_minutes, missing, "{from:?}");
        assert_eq!(web.window_minutes, 180.0, "{from:?}");
        let got: Vec<(i64, i64, Vec<&str>)> = web
            .outages
            .iter()
            .map(|o| {
                (
                    (o.start_ms - t0) / MIN,
                    (o.end_ms - t0) / MIN,
                    o.evidence.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(got, outages, "{from:?}");
        // Whichever decides, the disagreements are the same two spans.
        assert_eq!(a.disagreements.len(), 2, "{from:?}");
        // The default is left out of the serialized assessment.
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json.contains("decided_by"),
            from != AvailabilityFrom::Agents,
            "{from:?}"
        );
    }
}
