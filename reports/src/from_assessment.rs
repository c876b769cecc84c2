//! Building a [`Report`] from an assessment: the engine's [`Assessment`] of one contract over
//! one period, the [`Contract`], the evidence rows the assessment was computed from (so that
//! the appendix can name and describe every row a figure cites), earlier periods' scores for
//! the trend and alert statistics.
//!
//! Pure: every figure is copied (rounded to three decimals by [`Fixed`]) from the assessment;
//! nothing is recomputed except what the assessment does not carry (the daily availability
//! points for the chart, host p95 figures from the hourly rollups, inspection lateness).
//! The same inputs give the same report.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Offset, TimeZone};
use yunwei_sla::assess::{
    self, Assessment, ClockStatus, Evidence as Rows, ExclusionStatus as RowStatus, InspectionKind,
};
use yunwei_sla::calendar::Calendar;
use yunwei_sla::contract::{AvailabilityFrom, Contract, MissingData, Payment as PaymentRule};

use crate::model::*;

/// Everything besides the assessment a report needs.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The assessment (its `period` is the report's period).
    pub assessment: &'a Assessment,
    /// The contract it assessed.
    pub contract: &'a Contract,
    /// The contract's calendar (for the daily availability of windowed systems).
    pub calendar: &'a Calendar,
    /// The evidence rows the assessment was computed from.
    pub evidence: &'a Rows,
    /// Earlier periods' results, oldest first (this period is appended).
    pub trend: Vec<TrendPoint>,
    /// Alert statistics for the period (see [`AlertStats`]; [`empty_alerts`] when unknown).
    pub alerts: AlertStats,
    /// When the report is generated, UTC ms.
    pub generated_at_ms: i64,
    /// Language of the free text.
    pub lang: Lang,
    /// Version of this report for the contract and period (1 for the first).
    pub version: u32,
    /// Extra notes for the appendix (e.g. that the data is simulated).
    pub notes: Vec<String>,
}

/// Alert statistics with nothing in them.
pub fn empty_alerts() -> AlertStats {
    AlertStats {
        total: 0,
        by_severity: Vec::new(),
        noisiest: Vec::new(),
        mtta_minutes: None,
        mttr_minutes: None,
    }
}

fn f(v: f64) -> Fixed {
    Fixed::from_f64(v)
}

const MINUTE: f64 = 60_000.0;

/// Period kind from its label (`2026-10`, `2026-Q3`, `2026`, anything else custom).
pub fn period_kind(label: &str) -> PeriodKind {
    let b = label.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        4 if digits(b) => PeriodKind::Year,
        7 if digits(&b[..4]) && b[4] == b'-' && digits(&b[5..]) => PeriodKind::Month,
        7 if digits(&b[..4]) && &b[4..6] == b"-Q" && digits(&b[6..]) => PeriodKind::Quarter,
        _ => PeriodKind::Custom,
    }
}

/// The report grade for a contract grade: by its id or names, else by its rank in the
/// contract's grade list (highest first), else by the score.
pub fn grade_of(contract: &Contract, a: &Assessment) -> Grade {
    if a.grade_withheld {
        return Grade::Withheld;
    }
    if let Some(g) = &a.grade {
        let words = format!("{} {} {}", g.id, g.name, g.name_en).to_lowercase();
        let by_word = [
            ("不合格", Grade::Fail),
            ("unqualified", Grade::Fail),
            ("fail", Grade::Fail),
            ("优秀", Grade::Excellent),
            ("excellent", Grade::Excellent),
            ("良好", Grade::Good),
            ("good", Grade::Good),
            ("合格", Grade::Pass),
            ("pass", Grade::Pass),
            ("qualified", Grade::Pass),
            ("一般", Grade::Fair),
            ("fair", Grade::Fair),
            ("basic", Grade::Fair),
        ];
        if let Some((_, grade)) = by_word.iter().find(|(w, _)| words.contains(w)) {
            return *grade;
        }
        if let Some(i) = contract.grades.iter().position(|x| x.id == g.id) {
            let n = contract.grades.len();
            return if i == 0 {
                Grade::Excellent
            } else if i + 1 == n {
                Grade::Fail
            } else {
                [Grade::Good, Grade::Pass, Grade::Fair][(i - 1).min(2)]
            };
        }
    }
    match a.score {
        s if s >= 90.0 => Grade::Excellent,
        s if s >= 80.0 => Grade::Good,
        s if s >= 70.0 => Grade::Pass,
        s if s >= 60.0 => Grade::Fair,
        _ => Grade::Fail,
    }
}

/// The contract's UTC offset at `ms`, in minutes.
pub fn utc_offset_minutes(contract: &Contract, ms: i64) -> i32 {
    let utc = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    contract
        .time_zone
        .offset_from_utc_datetime(&utc.naive_utc())
        .fix()
        .local_minus_utc()
        / 60
}

fn overlap(a: (i64, i64), b: (i64, i64)) -> i64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0)
}

fn clock(c: Option<&assess::ClockResult>) -> Clock {
    match c {
        None => Clock {
            target_minutes: None,
            actual_minutes: None,
            met: None,
        },
        Some(c) => {
            let done = matches!(c.status, ClockStatus::Met | ClockStatus::Late);
            Clock {
                target_minutes: Some(c.target_ms / 60_000),
                actual_minutes: done.then(|| f(c.elapsed_ms as f64 / MINUTE)),
                met: match c.status {
                    ClockStatus::Met => Some(true),
                    ClockStatus::Late | ClockStatus::Breached => Some(false),
                    ClockStatus::Running => None,
                },
            }
        }
    }
}

fn p95(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64) * 0.95).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Builds the report. Deterministic: the same inputs give the same report.
pub fn build(inp: &Inputs<'_>) -> Report {
    let a = inp.assessment;
    let c = inp.contract;
    let lang = inp.lang;
    let tz = c.time_zone;
    let completeness = completeness(inp);
    let period = Period {
        kind: period_kind(&a.period.label),
        label: a.period.label.clone(),
        start_ms: a.period.start_ms,
        end_ms: a.period.end_ms,
    };
    let mut report = Report {
        schema: SCHEMA.to_string(),
        cover: Cover {
            contract_id: c.id.clone(),
            contract_name: c.name.clone(),
            party_a: c.parties.buyer.clone(),
            party_b: c.parties.vendor.clone(),
            period,
            time_zone: tz.name().to_string(),
            utc_offset_minutes: utc_offset_minutes(c, a.period.start_ms),
            generated_at_ms: inp.generated_at_ms,
            data_completeness_pct: completeness.overall_pct,
            provisional: a.provisional,
            lang,
            version: inp.version,
        },
        summary: summary(inp),
        availability: availability(inp),
        incidents: incidents(inp),
        adjustments: adjustments(inp),
        inspections: inspections(inp),
        resources: resources(inp),
        alerts: inp.alerts.clone(),
        exclusions: exclusions(inp),
        completeness,
        evidence: Vec::new(),
        incident_requests: incident_requests(inp),
        lifecycle: c.lifecycle.as_ref().map(|_| Lifecycle {
            stage: Stage::Draft,
            appeal_deadline_ms: None,
            review_deadline_ms: None,
            appeals: appeals(inp),
            signoffs: Vec::new(),
        }),
        disagreements: disagreements(inp),
        evidence_file: None,
    };
    // Appendix: every cited evidence id, described from its row.
    report.evidence = appendix(&cited(&report), inp.evidence, a, lang, &inp.notes);
    report
}

/// The availability of each assessed system, with its daily figures for the chart.
fn availability(inp: &Inputs<'_>) -> Vec<SystemAvailability> {
    let a = inp.assessment;
    let c = inp.contract;
    let tz = c.time_zone;
    let until = a.as_of_ms.clamp(a.period.start_ms, a.period.end_ms);
    let mut availability = Vec::new();
    for s in &a.systems {
        let sys = c.systems.iter().find(|x| x.id == s.system);
        let window_name = sys.map_or("7x24".to_string(), |x| x.window.clone());
        let mut evidence = BTreeSet::new();
        for o in &s.outages {
            evidence.extend(o.evidence.iter().cloned());
        }
        let window = c.service_windows.get(&window_name);
        let daily = a
            .period
            .dates()
            .map(|d| {
                let from = assess::local_midnight_ms(d, tz);
                let to = assess::local_midnight_ms(d + chrono::Days::new(1), tz);
                let pct = if from >= until || s.insufficient_evidence {
                    None
                } else {
                    let to = to.min(until);
                    let spans = match window {
                        Some(w) => {
                            assess::window_spans(c, inp.calendar, w, Some(&s.system), from, to).0
                        }
                        None => vec![(from, to)],
                    };
                    let owed: i64 = spans.iter().map(|sp| sp.1 - sp.0).sum();
                    let down: i64 = spans
                        .iter()
                        .map(|sp| {
                            s.outages
                                .iter()
                                .map(|o| overlap(*sp, (o.start_ms, o.end_ms)))
                                .sum::<i64>()
                        })
                        .sum();
                    (owed > 0).then(|| f((owed - down.min(owed)) as f64 / owed as f64 * 100.0))
                };
                DailyAvailability {
                    date: d.format("%Y-%m-%d").to_string(),
                    pct,
                }
            })
            .collect();
        availability.push(SystemAvailability {
            system_id: s.system.clone(),
            name: s.name.clone(),
            tier: s.tier.clone(),
            window: window_name,
            target_pct: f(s.target_percent),
            actual_pct: s.actual_percent.map(f),
            period_minutes: s.period_minutes.round() as i64,
            window_minutes: s.window_minutes.round() as i64,
            downtime_minutes: f(s.downtime_minutes),
            excluded_minutes: f(s.excluded_minutes),
            missing_minutes: f(s.missing_minutes),
            met: s.met,
            insufficient_evidence: s.insufficient_evidence,
            decided_by: match s.decided_by {
                AvailabilityFrom::Agents => None,
                AvailabilityFrom::ServerProbes => Some(DecidedBy::ServerProbes),
                AvailabilityFrom::Both => Some(DecidedBy::Both),
            },
            daily,
            evidence: evidence.into_iter().collect(),
        });
    }
    availability
}

/// The incidents and their clocks.
fn incidents(inp: &Inputs<'_>) -> Vec<Incident> {
    let a = inp.assessment;
    let c = inp.contract;
    a.incidents
        .iter()
        .map(|i| {
            let row = inp.evidence.incidents.iter().find(|r| r.id == i.incident);
            let level = c
                .incident_levels
                .iter()
                .position(|l| c.level(&i.level).is_some_and(|x| x.id == l.id))
                .map_or(c.incident_levels.len() + 1, |p| p + 1);
            let find = |name: &str| i.clocks.iter().find(|k| k.clock == name);
            let system = i.systems.join(", ");
            Incident {
                id: i.incident.clone(),
                level: u8::try_from(level).unwrap_or(u8::MAX),
                title: format!(
                    "{} {}",
                    i.level,
                    if system.is_empty() { "-" } else { &system }
                ),
                system,
                detected_ms: i.detected_ms,
                restored_ms: row.and_then(|r| r.restored_ms),
                response: clock(find("response")),
                on_site: clock(find("on_site")),
                restore: clock(find("restore")),
                evidence: vec![i.incident.clone()],
            }
        })
        .collect()
}

/// The agents' and the server's probes' disagreements, as the assessment lists them.
fn disagreements(inp: &Inputs<'_>) -> Vec<Disagreement> {
    inp.assessment
        .disagreements
        .iter()
        .map(|d| Disagreement {
            system_id: d.system.clone(),
            system: inp
                .contract
                .systems
                .iter()
                .find(|s| s.id == d.system)
                .map_or_else(|| d.system.clone(), |s| s.name.clone()),
            probe: d.probe.clone(),
            from_ms: d.from_ms,
            to_ms: d.to_ms,
            agents_up: d.agents == assess::State::Up,
            minutes: Fixed::from_f64(d.minutes),
            evidence: d.evidence.clone(),
        })
        .collect()
}

/// The assessed incidents' backdate and downgrade requests, as the assessment lists them.
fn incident_requests(inp: &Inputs<'_>) -> Vec<IncidentRequest> {
    inp.assessment
        .incident_requests
        .iter()
        .map(|r| IncidentRequest {
            id: r.id.clone(),
            incident: r.incident.clone(),
            kind: match r.kind {
                assess::IncidentRequestKind::Backdate => RequestKind::Backdate,
                assess::IncidentRequestKind::Downgrade => RequestKind::Downgrade,
            },
            clock: r.clock.clone(),
            recorded_ms: r.recorded_ms,
            claimed_ms: r.claimed_ms,
            level_from: r.level_from.clone(),
            level_to: r.level_to.clone(),
            requested_by: r.requested_by.clone(),
            status: match r.status {
                assess::RequestStatus::Pending => RequestStatus::Pending,
                assess::RequestStatus::Approved => RequestStatus::Approved,
                assess::RequestStatus::Rejected => RequestStatus::Rejected,
            },
            reviewed_by: r.reviewed_by.clone(),
            reviewed_ms: r.reviewed_ms,
            reason: r.reason.clone(),
        })
        .collect()
}

/// What an appeal contests, in the report's language.
pub fn appeal_target(lang: Lang, t: &assess::AppealTarget, off_minutes: i32) -> String {
    use assess::AppealTarget as T;
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms + i64::from(off_minutes) * 60_000)
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    match t {
        T::Deduction { item, subject } => {
            format!("{} {item}: {subject}", lang.pick("扣分项", "deduction"))
        }
        T::Outage { system, start_ms } => format!(
            "{} {system} @ {}",
            lang.pick("停机", "outage"),
            at(*start_ms)
        ),
        T::IncidentClock { incident, clock } => {
            let clock = match (lang, clock.as_str()) {
                (Lang::ZhCn, "response") => "响应",
                (Lang::ZhCn, "on_site") => "到场",
                (Lang::ZhCn, "restore") => "恢复",
                (_, c) => c,
            };
            format!(
                "{} {incident} {clock}",
                lang.pick("故障时钟", "incident clock")
            )
        }
        T::Inspection {
            inspection,
            scheduled_ms,
        } => format!(
            "{} {} @ {}",
            lang.pick("漏巡检", "missed inspection"),
            inspection_kind(lang, *inspection),
            at(*scheduled_ms)
        ),
    }
}

/// The appeals the assessment lists, with their decision and effect.
fn appeals(inp: &Inputs<'_>) -> Vec<AppealLine> {
    let off = utc_offset_minutes(inp.contract, inp.assessment.period.start_ms);
    inp.assessment
        .appeals
        .iter()
        .map(|r| {
            let a = &r.appeal;
            let d = a.decision.as_ref();
            AppealLine {
                id: a.id.clone(),
                target: appeal_target(inp.lang, &a.target, off),
                filed_by: a.filed_by.clone(),
                filed_ms: a.filed_ms,
                reason: a.reason.clone(),
                attachments: a.attachments.clone(),
                status: match d.map(|d| d.outcome) {
                    None => AppealStatus::Pending,
                    Some(assess::AppealOutcome::Upheld) => AppealStatus::Upheld,
                    Some(assess::AppealOutcome::Overturned) => AppealStatus::Overturned,
                    Some(assess::AppealOutcome::Adjusted) => AppealStatus::Adjusted,
                },
                approved: d
                    .and_then(|d| d.approved_points.or(d.approved_minutes))
                    .map(Fixed::from_f64),
                decided_by: d.map(|d| d.decided_by.clone()),
                decided_ms: d.map(|d| d.decided_ms),
                decision_reason: d.map(|d| d.reason.clone()),
                effect: Fixed::from_f64(r.effect_points),
            }
        })
        .collect()
}

/// An inspection obligation's name.
fn inspection_kind(lang: Lang, k: InspectionKind) -> &'static str {
    match k {
        InspectionKind::Daily => lang.pick("日常巡检", "daily inspection"),
        InspectionKind::Weekly => lang.pick("每周巡检", "weekly inspection"),
        InspectionKind::BeforeHoliday => lang.pick("节前巡检", "before-holiday inspection"),
    }
}

/// Deductions, bonuses and vetoes.
fn adjustments(inp: &Inputs<'_>) -> Vec<Adjustment> {
    let a = inp.assessment;
    let lang = inp.lang;
    let mut adjustments = Vec::new();
    for d in &a.deductions {
        let mut arithmetic: Vec<String> = d
            .lines
            .iter()
            .map(|l| {
                let subject = match &l.detail {
                    assess::LineDetail::InspectionMissed {
                        kind, scheduled_ms, ..
                    } => format!(
                        "{} {}",
                        inspection_kind(lang, *kind),
                        crate::i18n::datetime(
                            *scheduled_ms,
                            utc_offset_minutes(inp.contract, *scheduled_ms)
                        )
                    ),
                    _ => l.subject.clone(),
                };
                format!("{subject}: {}", crate::i18n::line_detail(lang, &l.detail))
            })
            .collect();
        if (d.uncapped - d.points).abs() > 1e-9 {
            arithmetic.push(format!(
                "{} {} → {}",
                lang.pick("封顶", "capped"),
                f(d.uncapped),
                f(d.points)
            ));
        }
        let evidence: BTreeSet<String> = d
            .lines
            .iter()
            .flat_map(|l| l.evidence.iter().cloned())
            .collect();
        adjustments.push(Adjustment {
            kind: AdjustmentKind::Deduction,
            item: d.item.clone(),
            points: f(d.points),
            arithmetic: arithmetic.join("; "),
            evidence: evidence.into_iter().collect(),
        });
    }
    for b in &a.bonuses {
        adjustments.push(Adjustment {
            kind: AdjustmentKind::Bonus,
            item: b.item.clone(),
            points: f(b.points),
            arithmetic: match (lang, &b.name_en) {
                (Lang::En, Some(en)) => en.clone(),
                _ => b.name.clone(),
            },
            evidence: b.evidence.clone(),
        });
    }
    for v in &a.vetoes {
        adjustments.push(Adjustment {
            kind: AdjustmentKind::Deduction,
            item: v.item.clone(),
            points: Fixed(0),
            arithmetic: format!(
                "{}: {}",
                match (lang, &v.name_en) {
                    (Lang::En, Some(en)) => en,
                    _ => &v.name,
                },
                lang.pick("一票否决，等级为最低", "veto: the grade is the lowest")
            ),
            evidence: v.evidence.clone(),
        });
    }
    adjustments
}

/// Inspections: the records in the period (done or late), then the missed ones.
fn inspections(inp: &Inputs<'_>) -> Vec<Inspection> {
    let a = inp.assessment;
    let c = inp.contract;
    let lang = inp.lang;
    let grace = c.inspections.as_ref().map_or(0, |i| i.grace.0);
    let kind_name = |k: InspectionKind| match k {
        InspectionKind::Daily => lang.pick("日常巡检", "daily inspection"),
        InspectionKind::Weekly => lang.pick("每周巡检", "weekly inspection"),
        InspectionKind::BeforeHoliday => lang.pick("节前巡检", "before-holiday inspection"),
    };
    let mut inspections: Vec<Inspection> = inp
        .evidence
        .inspections
        .iter()
        .filter(|r| r.scheduled_ms >= a.period.start_ms && r.scheduled_ms < a.period.end_ms)
        .filter_map(|r| {
            let done = r.done_ms?;
            Some(Inspection {
                name: kind_name(r.kind).to_string(),
                due_ms: r.scheduled_ms,
                done_ms: Some(done),
                status: if done > r.scheduled_ms + grace {
                    InspectionStatus::Late
                } else {
                    InspectionStatus::Done
                },
                evidence: vec![r.id.clone()],
            })
        })
        .collect();
    for m in &a.inspections.missed {
        inspections.push(Inspection {
            name: kind_name(m.kind).to_string(),
            due_ms: m.scheduled_ms,
            done_ms: None,
            status: InspectionStatus::Missed,
            evidence: m.record.iter().cloned().collect(),
        });
    }
    inspections.sort_by(|x, y| (x.due_ms, &x.name).cmp(&(y.due_ms, &y.name)));
    inspections
}

/// Resources: p95 of the hourly means per host and metric.
fn resources(inp: &Inputs<'_>) -> Resources {
    let c = inp.contract;
    let mut series: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for r in &inp.evidence.resources {
        if r.count > 0 {
            series
                .entry((r.host.as_str(), r.metric.as_str()))
                .or_default()
                .push(r.sum / r.count as f64);
        }
    }
    let mut hosts: BTreeMap<&str, HostResources> = BTreeMap::new();
    for ((host, metric), values) in series {
        let scale = if metric.ends_with("ratio") {
            100.0
        } else {
            1.0
        };
        let v = p95(values).map(|x| f(x * scale));
        let subject = inp
            .evidence
            .subjects
            .iter()
            .find(|s| s.kind == assess::SubjectKind::Host && s.id == host);
        let system = subject
            .and_then(|s| {
                c.systems.iter().find(|sys| {
                    sys.hosts
                        .as_ref()
                        .is_some_and(|sel| sel.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
                })
            })
            .map_or(String::new(), |sys| sys.id.clone());
        let e = hosts.entry(host).or_insert_with(|| HostResources {
            host: host.to_string(),
            system,
            cpu_p95_pct: None,
            memory_p95_pct: None,
            disk_p95_pct: None,
        });
        if metric.contains("cpu") {
            e.cpu_p95_pct = v;
        } else if metric.contains("mem") {
            e.memory_p95_pct = v;
        } else if metric.contains("disk") || metric.contains("filesystem") {
            e.disk_p95_pct = v;
        }
    }
    Resources {
        hosts: hosts.into_values().collect(),
        disks_filling: Vec::new(),
    }
}

/// The exclusions the assessment considered, with the report's status for each.
fn exclusions(inp: &Inputs<'_>) -> Vec<Exclusion> {
    let a = inp.assessment;
    let lang = inp.lang;
    a.exclusions
        .iter()
        .filter_map(|u| {
            let row = inp
                .evidence
                .exclusions
                .iter()
                .find(|r| r.id == u.exclusion)?;
            let status = if u.filed_after_the_fact && !u.counted {
                ExclusionStatus::LateFiled
            } else if u.counted {
                ExclusionStatus::Approved
            } else {
                ExclusionStatus::Rejected
            };
            let reason = if row.status == RowStatus::Pending {
                format!("[{}] {}", lang.pick("未审核", "not reviewed"), row.reason)
            } else {
                row.reason.clone()
            };
            Some(Exclusion {
                id: row.id.clone(),
                system: u.systems.join(", "),
                reason,
                start_ms: row.from_ms,
                end_ms: row.to_ms,
                filed_ms: row.requested_at_ms,
                minutes: f(overlap(
                    (row.from_ms, row.to_ms),
                    (a.period.start_ms, a.period.end_ms),
                ) as f64
                    / MINUTE),
                status,
            })
        })
        .collect()
}

/// Data completeness overall and per system, and who bears missing data.
fn completeness(inp: &Inputs<'_>) -> Completeness {
    let a = inp.assessment;
    let c = inp.contract;
    let lang = inp.lang;
    let (mut owed, mut missing) = (0.0, 0.0);
    let mut systems = Vec::new();
    let mut borne = BTreeSet::new();
    for s in &a.systems {
        owed += s.window_minutes;
        missing += s.missing_minutes;
        let pct = if s.window_minutes > 0.0 {
            (s.window_minutes - s.missing_minutes) / s.window_minutes * 100.0
        } else {
            100.0
        };
        systems.push(SystemCompleteness {
            system: s.system.clone(),
            pct: f(pct),
            missing_minutes: f(s.missing_minutes),
            min_pct: Some(f(s.min_coverage_percent)),
        });
        if let Some(obj) = c.availability.get(&s.tier) {
            borne.insert(match obj.missing_data {
                MissingData::Excluded => lang.pick(
                    "不计入考核（从分母中扣除）",
                    "not counted (left out of the denominator)",
                ),
                MissingData::AsUp => lang.pick("甲方承担（按可用计）", "the buyer (counted as up)"),
                MissingData::AsDown => {
                    lang.pick("乙方承担（按不可用计）", "the vendor (counted as down)")
                }
            });
        }
    }
    let overall = if owed > 0.0 {
        (owed - missing) / owed * 100.0
    } else {
        100.0
    };
    Completeness {
        overall_pct: f(overall),
        systems,
        borne_by: borne.into_iter().collect::<Vec<_>>().join("; "),
    }
}

/// The summary: score, grade, payment effect and the trend with this period appended.
fn summary(inp: &Inputs<'_>) -> Summary {
    let a = inp.assessment;
    let c = inp.contract;
    let lang = inp.lang;
    let grade = grade_of(c, a);
    let score = f(a.score);
    let mut trend = inp.trend.clone();
    trend.push(TrendPoint {
        period: a.period.label.clone(),
        score,
        grade,
    });
    let cents = |x: f64| (x * 100.0).round() as i64;
    let payment = match &a.payment {
        None if a.grade_withheld => Payment {
            fee_cents: None,
            payable_pct: Fixed(0),
            payable_cents: None,
            rule: lang
                .pick(
                    "等级不予评定（有系统数据不足），付款比例待甲方核定",
                    "grade withheld (a system had insufficient evidence): the payable share is for the buyer to decide",
                )
                .to_string(),
            pending: true,
        },
        Some(p) => Payment {
            fee_cents: Some(cents(p.period_fee)),
            payable_pct: f(p.percent),
            payable_cents: Some(cents(p.payable)),
            rule: match c.payment {
                PaymentRule::PerGrade => lang.pick(
                    "本期费用 × 考核等级对应的支付比例",
                    "period fee × the grade's payment percent",
                ),
                PaymentRule::Proportional => {
                    lang.pick("本期费用 × 得分 / 100", "period fee × score / 100")
                }
            }
            .to_string(),
            pending: false,
        },
        None => Payment {
            fee_cents: None,
            payable_pct: Fixed::int(100),
            payable_cents: None,
            rule: lang
                .pick("合同未约定费用", "the contract states no fee")
                .to_string(),
            pending: false,
        },
    };
    Summary {
        base_score: f(c.scoring.base),
        deductions_total: f(a.deducted),
        bonuses_total: f(a.bonus),
        score,
        grade,
        payment,
        trend,
        partial_evidence: a.grade.as_ref().is_some_and(|g| g.partial_evidence),
    }
}

/// Every evidence id the report's sections cite, for the appendix.
fn cited(r: &Report) -> BTreeSet<String> {
    let mut cited: BTreeSet<String> = BTreeSet::new();
    for s in &r.availability {
        cited.extend(s.evidence.iter().cloned());
    }
    for i in &r.incidents {
        cited.extend(i.evidence.iter().cloned());
    }
    for x in &r.adjustments {
        cited.extend(x.evidence.iter().cloned());
    }
    for x in &r.inspections {
        cited.extend(x.evidence.iter().cloned());
    }
    for x in &r.exclusions {
        cited.insert(x.id.clone());
    }
    for x in &r.incident_requests {
        cited.insert(x.id.clone());
    }
    for x in r.lifecycle.iter().flat_map(|l| &l.appeals) {
        cited.insert(x.id.clone());
    }
    for x in &r.disagreements {
        cited.extend(x.evidence.iter().cloned());
    }
    cited
}

fn appendix(
    cited: &BTreeSet<String>,
    rows: &Rows,
    a: &Assessment,
    lang: Lang,
    notes: &[String],
) -> Vec<Evidence> {
    let mut out: BTreeMap<String, Evidence> = BTreeMap::new();
    // The summary is only made for cited rows (a month has about a million resource rows).
    let mut put =
        |id: &str, kind: &str, summary: &dyn Fn() -> String, start_ms: i64, end_ms: i64| {
            if cited.contains(id) {
                out.insert(
                    id.to_string(),
                    Evidence {
                        id: id.to_string(),
                        kind: kind.to_string(),
                        summary: summary(),
                        start_ms,
                        end_ms,
                    },
                );
            }
        };
    for r in &rows.intervals {
        let state = match r.state {
            assess::State::Up => lang.pick("正常", "up"),
            assess::State::Down => lang.pick("中断", "down"),
            assess::State::Unknown => lang.pick("无数据", "no data"),
        };
        let kind = match r.kind {
            assess::SubjectKind::Host => lang.pick("主机", "host"),
            assess::SubjectKind::Probe => lang.pick("探测", "probe"),
        };
        put(
            &r.id,
            "status_interval",
            &|| format!("{kind} {}: {state}", r.subject),
            r.start_ms,
            r.end_ms,
        );
    }
    for r in &rows.server_probes {
        let state = match r.state {
            assess::State::Up => lang.pick("正常", "up"),
            assess::State::Down => lang.pick("中断", "down"),
            assess::State::Unknown => lang.pick("无数据", "no data"),
        };
        put(
            &r.id,
            "status_interval",
            &|| {
                format!(
                    "{} {}: {state}",
                    lang.pick("服务端拨测", "server probe"),
                    r.probe
                )
            },
            r.start_ms,
            r.end_ms,
        );
    }
    for r in &rows.incidents {
        put(
            &r.id,
            "incident",
            &|| {
                format!(
                    "{} {}",
                    r.level,
                    r.system.clone().unwrap_or_else(|| "-".to_string())
                )
            },
            r.detected_ms,
            r.restored_ms.unwrap_or(r.detected_ms),
        );
    }
    for r in &rows.exclusions {
        put(&r.id, "exclusion", &|| r.reason.clone(), r.from_ms, r.to_ms);
    }
    for r in &rows.inspections {
        put(
            &r.id,
            "inspection",
            &|| match r.result.as_str() {
                "ok" => lang.pick("正常", "ok").to_string(),
                "findings" => lang.pick("发现问题", "findings").to_string(),
                other => other.to_string(),
            },
            r.scheduled_ms,
            r.done_ms.unwrap_or(r.scheduled_ms),
        );
    }
    for r in &rows.resources {
        put(
            &r.id,
            "rollup",
            &|| {
                format!(
                    "{} {}: {} {}",
                    r.host,
                    r.metric,
                    lang.pick("最大值", "max"),
                    Fixed::from_f64(r.max)
                )
            },
            r.hour_ms,
            r.hour_ms + 3_600_000,
        );
    }
    for r in &rows.incident_requests {
        let what = match (&r.clock, &r.level_from, &r.level_to) {
            (Some(clock), _, _) => format!("{} {clock}", r.incident),
            (None, Some(from), Some(to)) => format!("{} {from} → {to}", r.incident),
            _ => r.incident.clone(),
        };
        let status = match r.status {
            assess::RequestStatus::Pending => lang.pick("待审批", "pending"),
            assess::RequestStatus::Approved => lang.pick("已批准", "approved"),
            assess::RequestStatus::Rejected => lang.pick("已驳回", "rejected"),
        };
        put(
            &r.id,
            "incident_request",
            &|| {
                let by = r.reviewed_by.as_deref().unwrap_or("-");
                match lang {
                    Lang::ZhCn => format!("{what}：{} 申请，{by} {status}", r.requested_by),
                    Lang::En => format!("{what}: asked by {}, {status} by {by}", r.requested_by),
                }
            },
            r.claimed_ms.unwrap_or(r.recorded_ms),
            r.reviewed_ms.unwrap_or(r.recorded_ms),
        );
    }
    for r in &a.appeals {
        let x = &r.appeal;
        let status = match x.decision.as_ref().map(|d| d.outcome) {
            None => lang.pick("待复核", "pending review"),
            Some(assess::AppealOutcome::Upheld) => lang.pick("维持", "upheld"),
            Some(assess::AppealOutcome::Overturned) => lang.pick("撤销", "overturned"),
            Some(assess::AppealOutcome::Adjusted) => lang.pick("调整", "adjusted"),
        };
        let by = x.decision.as_ref().map_or("-", |d| d.decided_by.as_str());
        put(
            &x.id,
            "appeal",
            &|| match lang {
                Lang::ZhCn => format!(
                    "{} 申诉，{by} 复核{status}，影响得分 {}",
                    x.filed_by,
                    Fixed::from_f64(r.effect_points)
                ),
                Lang::En => format!(
                    "appealed by {}, {status} by {by}, score effect {}",
                    x.filed_by,
                    Fixed::from_f64(r.effect_points)
                ),
            },
            x.filed_ms,
            x.decision.as_ref().map_or(x.filed_ms, |d| d.decided_ms),
        );
    }
    for r in &rows.events {
        put(
            &r.id,
            "manual_event",
            &|| r.evidence.clone(),
            r.at_ms,
            r.at_ms,
        );
    }
    // Cited but not among the rows (should not happen): still listed, by id.
    for id in cited {
        out.entry(id.clone()).or_insert_with(|| Evidence {
            id: id.clone(),
            kind: "reference".to_string(),
            summary: id.clone(),
            start_ms: a.period.start_ms,
            end_ms: a.period.start_ms,
        });
    }
    let mut list: Vec<Evidence> = out.into_values().collect();
    let note_texts = notes
        .iter()
        .cloned()
        .chain(
            a.provisional_reasons
                .iter()
                .map(|r| crate::i18n::reason(lang, r)),
        )
        .chain(a.notes.iter().map(|n| crate::i18n::note(lang, n)));
    for (i, text) in note_texts.enumerate() {
        list.push(Evidence {
            id: format!("note:{}", i + 1),
            kind: "note".to_string(),
            summary: text,
            start_ms: a.period.start_ms,
            end_ms: a.period.end_ms,
        });
    }
    list
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use yunwei_sla::assess::{
        Evidence as Rows, Exclusion as ExRow, ExclusionKind, Incident as IncRow, ManualEvent,
        Period as APeriod, State, StatusInterval, Subject, SubjectKind,
    };
    use yunwei_sla::contract::{Cause, parse_contract};

    use super::*;
    use crate::integrity::canonical_json;

    const CONTRACT: &str = r#"
id: t1
name: 测试合同
parties: { buyer: 甲方局, vendor: 乙方公司 }
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
  incidents:
    - { id: P1, aliases: [一级], response: 15m, restore: 4h }
scoring:
  base: 100
  floor: 0
  bonus_cap: 5
  deductions:
    - { id: availability, name: 可用性未达标, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
    - { id: p1-response, name: 一级响应超时, kind: response_late, levels: [一级], per_minutes: 5, points: 2 }
  bonuses:
    - { id: extra, name: 合同外支持, category: extra_support, points: 2, cap: 4 }
grades:
  - { id: excellent, name: 优秀, name_en: Excellent, min_score: 90, payment_percent: 100 }
  - { id: good, name: 良好, name_en: Good, min_score: 75, payment_percent: 95 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0, payment_percent: 70 }
"#;

    /// Asia/Shanghai local time in February 2026 as UTC ms.
    fn at(day: u32, hour: u32, min: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(2026, 2, day)
            .and_then(|d| d.and_hms_opt(hour, min, 0))
            .unwrap()
            .and_utc()
            .timestamp_millis()
            - 8 * 3_600_000
    }

    fn subject(kind: SubjectKind, id: &str, system: &str) -> Subject {
        Subject {
            kind,
            id: id.into(),
            labels: BTreeMap::from([("system".into(), system.into())]),
        }
    }

    fn iv(
        id: &str,
        kind: SubjectKind,
        subject: &str,
        s: i64,
        e: i64,
        state: State,
    ) -> StatusInterval {
        StatusInterval {
            id: id.into(),
            kind,
            subject: subject.into(),
            start_ms: s,
            end_ms: e,
            state,
        }
    }

    fn scenario() -> (Contract, Calendar, APeriod, Rows) {
        let c = parse_contract(CONTRACT, "t.yml").unwrap_or_else(|e| panic!("{e}"));
        let cal = Calendar::shipped();
        let p = APeriod::parse("2026-02", c.time_zone).unwrap();
        let (s, e) = (p.start_ms, p.end_ms);
        let h = SubjectKind::Host;
        let pr = SubjectKind::Probe;
        let rows = Rows {
            subjects: vec![
                subject(h, "web-1", "web"),
                subject(pr, "web-http", "web"),
                subject(h, "oa-1", "oa"),
            ],
            intervals: vec![
                iv("interval:host:1", h, "web-1", s, e, State::Up),
                iv(
                    "interval:probe:1",
                    pr,
                    "web-http",
                    s,
                    at(10, 3, 0),
                    State::Up,
                ),
                iv(
                    "interval:probe:2",
                    pr,
                    "web-http",
                    at(10, 3, 0),
                    at(10, 4, 0),
                    State::Down,
                ),
                iv(
                    "interval:probe:3",
                    pr,
                    "web-http",
                    at(10, 4, 0),
                    e,
                    State::Up,
                ),
                iv("interval:host:2", h, "oa-1", s, at(12, 10, 0), State::Up),
                iv(
                    "interval:host:3",
                    h,
                    "oa-1",
                    at(12, 10, 0),
                    at(12, 10, 30),
                    State::Down,
                ),
                iv("interval:host:4", h, "oa-1", at(12, 10, 30), e, State::Up),
            ],
            incidents: vec![IncRow {
                id: "incident:7".into(),
                system: Some("web".into()),
                systems: None,
                labels: BTreeMap::new(),
                level: "P1".into(),
                detected_ms: at(10, 3, 0),
                acknowledged_ms: Some(at(10, 3, 40)),
                on_site_ms: None,
                restored_ms: Some(at(10, 4, 0)),
                pauses: vec![],
                cause: Cause::Vendor,
            }],
            exclusions: vec![ExRow {
                id: "exclusion:1".into(),
                kind: ExclusionKind::Maintenance,
                labels: BTreeMap::from([("system".into(), "oa".into())]),
                from_ms: at(12, 10, 0),
                to_ms: at(12, 10, 20),
                status: RowStatus::Approved,
                requested_at_ms: at(5, 9, 0),
                reason: "升级".into(),
            }],
            inspections: vec![],
            resources: vec![],
            events: vec![ManualEvent {
                id: "event:1".into(),
                category: "extra_support".into(),
                at_ms: at(20, 9, 0),
                evidence: "help".into(),
            }],
            inspections_since_ms: None,
            membership: None,
            incident_requests: vec![],
            appeals: vec![],
            server_probes: vec![],
            membership_index: Default::default(),
        };
        (c, cal, p, rows)
    }

    fn report(lang: Lang) -> (Assessment, Report) {
        let (c, cal, p, rows) = scenario();
        let a = assess::assess(&c, &cal, &p, p.end_ms + 86_400_000, &rows);
        let r = build(&Inputs {
            assessment: &a,
            contract: &c,
            calendar: &cal,
            evidence: &rows,
            trend: vec![TrendPoint {
                period: "2026-01".into(),
                score: Fixed::int(95),
                grade: Grade::Excellent,
            }],
            alerts: empty_alerts(),
            generated_at_ms: p.end_ms + 3_600_000,
            lang,
            version: 1,
            notes: vec![],
        });
        (a, r)
    }

    #[test]
    fn every_figure_equals_the_assessment() {
        let (a, r) = report(Lang::ZhCn);
        assert!(!a.deductions.is_empty(), "the scenario must deduct");
        assert_eq!(r.summary.score, Fixed::from_f64(a.score));
        assert_eq!(r.summary.deductions_total, Fixed::from_f64(a.deducted));
        assert_eq!(r.summary.bonuses_total, Fixed::from_f64(a.bonus));
        assert_eq!(r.summary.base_score, Fixed::int(100));
        let pay = a.payment.as_ref().unwrap();
        assert_eq!(r.summary.payment.payable_pct, Fixed::from_f64(pay.percent));
        assert_eq!(
            r.summary.payment.payable_cents,
            Some((pay.payable * 100.0).round() as i64)
        );
        assert_eq!(r.summary.trend.len(), 2);
        assert_eq!(r.summary.trend[1].score, r.summary.score);
        assert_eq!(r.availability.len(), a.systems.len());
        for (x, s) in r.availability.iter().zip(&a.systems) {
            assert_eq!(x.system_id, s.system);
            assert_eq!(x.actual_pct, s.actual_percent.map(Fixed::from_f64));
            assert_eq!(x.downtime_minutes, Fixed::from_f64(s.downtime_minutes));
            assert_eq!(x.excluded_minutes, Fixed::from_f64(s.excluded_minutes));
            assert_eq!(x.target_pct, Fixed::from_f64(s.target_percent));
            assert_eq!(x.met, s.met);
            assert_eq!(x.daily.len(), 28);
        }
        // The web probe was down 60 minutes on the 10th: that day is below 100 %.
        let web = &r.availability[0];
        assert_eq!(web.downtime_minutes, Fixed::int(60));
        let d10 = web.daily.iter().find(|d| d.date == "2026-02-10").unwrap();
        assert_eq!(d10.pct, Some(Fixed::from_f64(1380.0 / 1440.0 * 100.0)));
        let deducted: i64 = r
            .adjustments
            .iter()
            .filter(|x| x.kind == AdjustmentKind::Deduction)
            .map(|x| x.points.0)
            .sum();
        assert_eq!(Fixed(deducted), r.summary.deductions_total);
        assert_eq!(r.incidents.len(), 1);
        assert_eq!(r.incidents[0].response.target_minutes, Some(15));
        assert_eq!(r.incidents[0].response.actual_minutes, Some(Fixed::int(40)));
        assert_eq!(r.incidents[0].response.met, Some(false));
        assert_eq!(r.exclusions.len(), 1);
        assert_eq!(r.exclusions[0].status, ExclusionStatus::Approved);
        assert_eq!(r.exclusions[0].minutes, Fixed::int(20));
        assert_eq!(r.cover.utc_offset_minutes, 480);
        assert_eq!(r.cover.time_zone, "Asia/Shanghai");
        assert_eq!(r.cover.period.kind, PeriodKind::Month);
        assert!(!r.cover.provisional || !a.provisional_reasons.is_empty());
    }

    #[test]
    fn the_appendix_names_every_cited_evidence_row() {
        let (a, r) = report(Lang::ZhCn);
        let listed: BTreeSet<&str> = r.evidence.iter().map(|e| e.id.as_str()).collect();
        let mut cited: Vec<&String> = Vec::new();
        for d in &a.deductions {
            for l in &d.lines {
                cited.extend(&l.evidence);
            }
        }
        for s in &a.systems {
            for o in &s.outages {
                cited.extend(&o.evidence);
            }
        }
        assert!(cited.iter().any(|id| id.starts_with("interval:probe:")));
        for id in cited {
            assert!(listed.contains(id.as_str()), "{id} not in the appendix");
        }
        let probe = r
            .evidence
            .iter()
            .find(|e| e.id == "interval:probe:2")
            .unwrap();
        assert_eq!(probe.kind, "status_interval");
        assert_eq!((probe.start_ms, probe.end_ms), (at(10, 3, 0), at(10, 4, 0)));
        // Rows nothing cites stay out.
        assert!(!listed.contains("interval:host:1"));
    }

    #[test]
    fn same_inputs_give_identical_canonical_json() {
        let (_, a) = report(Lang::En);
        let (_, b) = report(Lang::En);
        assert_eq!(canonical_json(&a), canonical_json(&b));
        let (_, zh) = report(Lang::ZhCn);
        assert_ne!(canonical_json(&a), canonical_json(&zh));
    }

    #[test]
    fn period_kinds_from_labels() {
        assert_eq!(period_kind("2026-10"), PeriodKind::Month);
        assert_eq!(period_kind("2026-Q3"), PeriodKind::Quarter);
        assert_eq!(period_kind("2026"), PeriodKind::Year);
        assert_eq!(period_kind("2026-02-01..2026-02-14"), PeriodKind::Custom);
    }
}
