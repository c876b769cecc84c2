//! Reports built from assessments that rest on too little evidence say so, in the report's
//! language: a system with no evidence and one below its coverage minimum have no availability
//! figure and are neither met nor breached, the grade is withheld (or marked as resting on
//! partial evidence), and every note, provisional reason and deduction line reads in zh-CN or
//! English. The files verify (the new fields survive the signed round trip).

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use yunwei_reports::from_assessment::{self, Inputs};
use yunwei_reports::model::{Grade, Report};
use yunwei_reports::{Lang, html, integrity, json, verify, xlsx};
use yunwei_sla::assess::{
    Evidence, Incident, Period, State, StatusInterval, Subject, SubjectKind, assess,
};
use yunwei_sla::calendar::Calendar;
use yunwei_sla::contract::{Cause, Contract, parse_contract};

const CONTRACT: &str = r#"
id: honest
name: 证据合同
parties: { buyer: 甲方局, vendor: 乙方公司 }
period: { start: 2026-01-01, end: 2026-12-31 }
fee: { amount: 120000, per: year }
service_windows:
  office-5x8: { kind: working_days, hours: "08:30-17:30" }
systems:
  - { id: web, name: 门户, tier: core, hosts: { system: web } }
  - { id: oa, name: 办公, tier: office, window: office-5x8, down_when: all_hosts, hosts: { system: oa } }
objectives:
  availability:
    core: { target_percent: 99.95, min_outage: 5m, missing_data: excluded, min_coverage_percent: 90 }
    office: { target_percent: 99.5, min_outage: 1m, missing_data: as_up }
  incidents:
    - { id: P1, aliases: [一级], response: 15m, restore: 4h }
  inspections: { daily: ["09:00"], grace: 1h }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
    - { id: restore, name: 故障恢复超时, name_en: Restore overdue, kind: restore_late, points: 5 }
    - { id: inspection, name: 漏巡检, name_en: Missed inspection, kind: inspection_missed, points: 1, cap: 10 }
  bonuses:
    - { id: extra, name: 合同外支持, name_en: Extra support, category: extra_support, points: 2, cap: 4 }
grades:
  - { id: excellent, name: 优秀, name_en: Excellent, min_score: 90, payment_percent: 100 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0, payment_percent: 70 }
"#;

/// Local Asia/Shanghai (UTC+8) day of February 2026 at `h` o'clock, as UTC ms.
fn feb(day: u32, h: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(2026, 2, day)
        .unwrap()
        .and_hms_opt(h, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
        - 8 * 3_600_000
}

/// February 2026: `web`'s only host reports from 02-20 (9 of 28 days, below its 90 %
/// minimum); `oa` selects nothing; a 一级 incident detected 02-27 22:00 is still open when
/// the report is made on 03-01 at 02:00.
fn inputs(contract: &Contract) -> (Period, Evidence) {
    let p = Period::parse("2026-02", contract.time_zone).unwrap();
    let mut ev = Evidence::default();
    ev.subjects.push(Subject {
        kind: SubjectKind::Host,
        id: "h1".into(),
        labels: BTreeMap::from([("system".into(), "web".into())]),
    });
    ev.intervals.push(StatusInterval {
        id: "interval:host:1".into(),
        kind: SubjectKind::Host,
        subject: "h1".into(),
        start_ms: feb(20, 0),
        end_ms: p.end_ms,
        state: State::Up,
    });
    ev.incidents.push(Incident {
        id: "incident:7".into(),
        system: Some("web".into()),
        systems: None,
        labels: BTreeMap::new(),
        level: "P1".into(),
        detected_ms: feb(27, 22),
        acknowledged_ms: Some(feb(27, 22) + 5 * 60_000),
        on_site_ms: None,
        restored_ms: None,
        pauses: Vec::new(),
        cause: Cause::Vendor,
    });
    (p, ev)
}

fn build(contract: &Contract, lang: Lang) -> Report {
    let cal = Calendar::shipped();
    let (p, ev) = inputs(contract);
    let as_of = p.end_ms + 2 * 3_600_000;
    let a = assess(contract, &cal, &p, as_of, &ev);
    from_assessment::build(&Inputs {
        assessment: &a,
        contract,
        calendar: &cal,
        evidence: &ev,
        trend: Vec::new(),
        alerts: from_assessment::empty_alerts(),
        generated_at_ms: as_of,
        lang,
        version: 1,
        notes: Vec::new(),
    })
}

fn notes(r: &Report) -> Vec<&str> {
    r.evidence
        .iter()
        .filter(|e| e.kind == "note")
        .map(|e| e.summary.as_str())
        .collect()
}

fn has_cjk(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[test]
fn no_evidence_and_low_coverage_are_not_assessed_and_the_grade_is_withheld() {
    let c = parse_contract(CONTRACT, "honest.yml").unwrap();
    let r = build(&c, Lang::ZhCn);
    for a in &r.availability {
        // web: 9 days of 28 ≈ 32 % < 90 %; oa: nothing selected.
        assert!(a.insufficient_evidence, "{}", a.system_id);
        assert_eq!((a.actual_pct, a.met), (None, false), "{}", a.system_id);
        assert!(a.daily.iter().all(|d| d.pct.is_none()), "{}", a.system_id);
    }
    assert!(
        r.adjustments.iter().all(|x| x.item != "availability"),
        "no availability deduction: {:?}",
        r.adjustments
    );
    assert_eq!(r.summary.grade, Grade::Withheld);
    assert!(r.summary.payment.pending);
    assert!(r.cover.provisional, "the incident is open");
    let web = r
        .completeness
        .systems
        .iter()
        .find(|s| s.system == "web")
        .unwrap();
    assert_eq!(web.min_pct.map(|f| f.to_string()), Some("90".to_string()));
    // Rendered: the grade and the systems say it.
    let html = html::render_string(&integrity::sign(r, &SigningKey::from_bytes(&[3; 32])));
    assert!(html.contains("不予评定"));
    assert!(html.contains("数据不足"));
    assert!(!html.contains("优秀"));

    // `mark_partial`: the grade stands, marked as resting on partial evidence.
    let partial = parse_contract(
        &CONTRACT.replace(
            "  bonuses:\n",
            "  insufficient_evidence: mark_partial\n  bonuses:\n",
        ),
        "partial.yml",
    )
    .unwrap();
    for lang in [Lang::ZhCn, Lang::En] {
        let r = build(&partial, lang);
        assert!(r.summary.partial_evidence);
        assert!(!r.summary.payment.pending);
        assert_ne!(r.summary.grade, Grade::Withheld);
        let html = html::render_string(&integrity::sign(r, &SigningKey::from_bytes(&[3; 32])));
        assert!(html.contains(lang.pick("（部分证据）", "(partial evidence)")));
    }
}

#[test]
fn notes_reasons_and_deduction_lines_read_in_the_reports_language() {
    let c = parse_contract(CONTRACT, "honest.yml").unwrap();
    let zh = build(&c, Lang::ZhCn);
    let en = build(&c, Lang::En);
    let (zn, en_notes) = (notes(&zh), notes(&en));
    // Same notes, one per message: the open incident, the two systems, the withheld grade.
    assert_eq!(zn.len(), 4, "{zn:#?}");
    assert_eq!(en_notes.len(), zn.len(), "{en_notes:#?}");
    for n in &zn {
        assert!(has_cjk(n), "zh-CN note in English: {n}");
    }
    for n in &en_notes {
        // Names stay as the contract writes them (门户, 办公); nothing else is Chinese.
        let rest = n.replace("门户", "").replace("办公", "");
        assert!(!has_cjk(&rest), "English note in Chinese: {n}");
    }
    assert!(
        zn.iter().any(|n| n.contains("故障 incident:7 尚未恢复")),
        "{zn:#?}"
    );
    assert!(
        zn.iter().any(
            |n| n.starts_with("系统 门户（web）服务时段内有数据的时间占 32.14%")
                && n.contains("低于合同约定的证据覆盖率下限 90%")
        ),
        "{zn:#?}"
    );
    assert!(
        zn.iter()
            .any(|n| n.starts_with("系统 办公（oa）未选中任何主机或探测")),
        "{zn:#?}"
    );
    assert!(
        en_notes
            .iter()
            .any(|n| n.starts_with("System 门户 (web): data covers 32.14% of its service window")),
        "{en_notes:#?}"
    );
    assert!(
        en_notes
            .iter()
            .any(|n| n
                .starts_with("The grade is withheld because of insufficient evidence for web, oa")),
        "{en_notes:#?}"
    );
    // The restore clock still running past its target: one deduction line, in each language.
    let line = |r: &Report| {
        r.adjustments
            .iter()
            .find(|x| x.item == "restore")
            .unwrap()
            .arithmetic
            .clone()
    };
    // 02-27 22:00 → 03-01 02:00 = 28 h; 24 h = 1,440 min past the 4 h target.
    assert_eq!(
        line(&zh),
        "incident:7: 恢复超时 1440.0 分钟（计时中，已超时）：5 分"
    );
    assert_eq!(
        line(&en),
        "incident:7: restore 1440.0 min late (running, past target): 5 points"
    );
    // A missed inspection names its obligation and local time, not an internal id.
    let first = |r: &Report| {
        r.adjustments
            .iter()
            .find(|x| x.item == "inspection")
            .unwrap()
            .arithmetic
            .split("; ")
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(first(&zh), "日常巡检 2026-02-02 09:00: 漏巡检：1 分");
    assert_eq!(
        first(&en),
        "daily inspection 2026-02-02 09:00: missed inspection: 1 points"
    );
    // The files carry it and verify.
    let key = SigningKey::from_bytes(&[4; 32]);
    for r in [zh, en] {
        let s = integrity::sign(r, &key);
        for bytes in [
            json::render(&s),
            html::render_string(&s).into_bytes(),
            xlsx::render(&s).unwrap(),
        ] {
            let v = verify::verify(&bytes, &key.verifying_key()).unwrap();
            assert!(v.content_checked);
            assert_eq!(*v.report, s.report);
        }
    }
}
