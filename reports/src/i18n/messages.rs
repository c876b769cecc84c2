//! The assessment engine's language-neutral messages — notes, provisional reasons and
//! deduction arithmetic, each a code with parameters (`yunwei_sla::assess::{Note, Reason,
//! LineDetail}`) — in zh-CN and English. The console has the same table in `app.js`
//! (`noteText`); a code added to the engine fails to compile here until it has both texts.

use yunwei_sla::assess::{ClockStatus, LineDetail, Note, Reason};
use yunwei_sla::contract::MissingData;

use crate::model::{Fixed, Lang, Payment, Summary, SystemAvailability, SystemCompleteness};

fn num(v: f64) -> String {
    Fixed::from_f64(v).to_string()
}

fn pct2(v: f64) -> String {
    format!("{}%", Fixed::from_f64(v).fmt_dp(2))
}

fn list(lang: Lang, items: &[String]) -> String {
    items.join(lang.pick("、", ", "))
}

/// An incident clock's name as the engine names it (`response`, `on_site`, `restore`).
pub fn clock_name(lang: Lang, clock: &str) -> String {
    match clock {
        "response" => lang.pick("响应", "response").into(),
        "on_site" => lang.pick("到场", "on site").into(),
        "restore" => lang.pick("恢复", "restore").into(),
        other => other.into(),
    }
}

fn clock_status(lang: Lang, s: ClockStatus) -> &'static str {
    match s {
        ClockStatus::Met => lang.pick("按时", "met"),
        ClockStatus::Late => lang.pick("已超时", "late"),
        ClockStatus::Running => lang.pick("计时中", "running"),
        ClockStatus::Breached => lang.pick("计时中，已超时", "running, past target"),
    }
}

/// A note of the assessment.
pub fn note(lang: Lang, n: &Note) -> String {
    match (lang, n) {
        (
            Lang::ZhCn,
            Note::PeriodOutsideContract {
                period,
                start,
                end,
                contract_start,
                contract_end,
            },
        ) => format!(
            "考核周期 {period}（{start}..{end}）不在合同期 {contract_start}..{contract_end} 之内"
        ),
        (
            Lang::En,
            Note::PeriodOutsideContract {
                period,
                start,
                end,
                contract_start,
                contract_end,
            },
        ) => format!(
            "The period {period} ({start}..{end}) is not inside the contract period \
             {contract_start}..{contract_end}."
        ),
        (
            _,
            Note::NoSubjects {
                system,
                name,
                missing_data,
            },
        ) => {
            let policy = match missing_data {
                MissingData::Excluded => lang.pick("不计入分母", "left out of the denominator"),
                MissingData::AsUp => lang.pick("按可用计", "counted as up"),
                MissingData::AsDown => lang.pick("按不可用计", "counted as down"),
            };
            match lang {
                Lang::ZhCn => format!(
                    "系统 {name}（{system}）未选中任何主机或探测，没有任何证据：数据不足，不予评定\
                     （合同对缺失数据的约定为“{policy}”，但不据此给出可用率）"
                ),
                Lang::En => format!(
                    "System {name} ({system}) selects no host or probe, so there is no \
                     evidence: insufficient evidence, not assessed (the contract has missing \
                     data {policy}, but no availability figure is given on that alone)."
                ),
            }
        }
        (
            _,
            Note::InsufficientEvidence {
                system,
                name,
                coverage_percent,
                min_coverage_percent,
            },
        ) => {
            let cov = coverage_percent.map_or_else(|| "—".to_string(), pct2);
            let min = format!("{}%", num(*min_coverage_percent));
            match lang {
                Lang::ZhCn => format!(
                    "系统 {name}（{system}）服务时段内有数据的时间占 {cov}，低于合同约定的证据覆盖率下限 \
                     {min}：数据不足，不予评定（无可用率，不判定达标与否，不扣可用性分）"
                ),
                Lang::En => format!(
                    "System {name} ({system}): data covers {cov} of its service window, below \
                     the contract's minimum evidence coverage of {min}: insufficient evidence, \
                     not assessed (no availability figure, neither met nor breached, no \
                     availability deduction)."
                ),
            }
        }
        (Lang::ZhCn, Note::GradeWithheld { systems }) => format!(
            "因系统 {} 数据不足，本期等级不予评定，付款比例待甲方核定",
            list(lang, systems)
        ),
        (Lang::En, Note::GradeWithheld { systems }) => format!(
            "The grade is withheld because of insufficient evidence for {}; the payable share \
             is for the buyer to decide.",
            list(lang, systems)
        ),
        (Lang::ZhCn, Note::GradeOnPartialEvidence { systems }) => format!(
            "因系统 {} 数据不足，本期等级仅依据部分证据评定",
            list(lang, systems)
        ),
        (Lang::En, Note::GradeOnPartialEvidence { systems }) => format!(
            "The grade rests on partial evidence: insufficient evidence for {}.",
            list(lang, systems)
        ),
        (Lang::ZhCn, Note::UnknownIncidentLevel { incident, level }) => {
            format!("故障 {incident}：合同未定义等级“{level}”，不计时")
        }
        (Lang::En, Note::UnknownIncidentLevel { incident, level }) => format!(
            "Incident {incident}: level \"{level}\" is not defined by the contract; no clocks."
        ),
        (Lang::ZhCn, Note::IncidentWithoutSystem { incident }) => {
            format!("故障 {incident}：未对应合同中的任何系统，按 7x24 计时")
        }
        (Lang::En, Note::IncidentWithoutSystem { incident }) => {
            format!("Incident {incident}: matches no system of the contract; its clocks run 7x24.")
        }
    }
}

/// A reason the assessment is provisional.
pub fn reason(lang: Lang, r: &Reason) -> String {
    match (lang, r) {
        (Lang::ZhCn, Reason::CalendarYearMissing { year }) => {
            format!("节假日日历缺少 {year} 年的数据：周一至周五按工作日计")
        }
        (Lang::En, Reason::CalendarYearMissing { year }) => format!(
            "The calendar has no data for {year}: Monday to Friday were taken as working days."
        ),
        (_, Reason::WindowYearMissing) => lang
            .pick(
                "服务时段用到了节假日日历缺少的年份",
                "A service window needed a year the calendar lacks.",
            )
            .into(),
        (_, Reason::PeriodNotOver) => lang
            .pick("考核周期尚未结束", "The period is not over.")
            .into(),
        (Lang::ZhCn, Reason::InspectionsNotRecorded { count }) => {
            format!("{count} 次巡检应于本系统开始记录巡检之前完成，不予考核")
        }
        (Lang::En, Reason::InspectionsNotRecorded { count }) => format!(
            "{count} inspections were due before yunwei began recording inspections and are \
             not assessed."
        ),
        (Lang::ZhCn, Reason::IncidentsOpen { incidents }) => format!(
            "故障 {} 尚未恢复，其计时仍在进行；恢复后将重新出具本期报告（新版本）",
            list(lang, incidents)
        ),
        (Lang::En, Reason::IncidentsOpen { incidents }) => format!(
            "Incidents {} are still open and their clocks still run; this period's report is \
             issued again (a new version) when they close.",
            list(lang, incidents)
        ),
    }
}

/// The arithmetic of a deduction line.
pub fn line_detail(lang: Lang, d: &LineDetail) -> String {
    match d {
        LineDetail::AvailabilityShort {
            actual_percent,
            target_percent,
            short_pp,
            steps,
            step_pp,
            points,
        } => {
            let (a, t, s) = (
                format!("{actual_percent:.4}%"),
                format!("{target_percent:.4}%"),
                format!("{short_pp:.4}"),
            );
            let (steps, step, points) = (num(*steps), num(*step_pp), num(*points));
            match lang {
                Lang::ZhCn => format!(
                    "实际 {a}，目标 {t}：差 {s} 个百分点 = {steps} 档 × 每档 {step} 个百分点 × {points} 分"
                ),
                Lang::En => format!(
                    "{a} vs target {t}: {s} pp short = {steps} × {step} pp × {points} points"
                ),
            }
        }
        LineDetail::ClockLate {
            clock,
            late_minutes,
            status,
            units,
            per_minutes,
            points,
        } => {
            let (name, late, st, points) = (
                clock_name(lang, clock),
                format!("{late_minutes:.1}"),
                clock_status(lang, *status),
                num(*points),
            );
            match (lang, units, per_minutes) {
                (Lang::ZhCn, Some(u), Some(m)) => format!(
                    "{name}超时 {late} 分钟（{st}）= {} × 每 {m} 分钟 × {points} 分",
                    num(*u)
                ),
                (Lang::En, Some(u), Some(m)) => format!(
                    "{name} {late} min late ({st}) = {} × {m} min × {points} points",
                    num(*u)
                ),
                (Lang::ZhCn, _, _) => format!("{name}超时 {late} 分钟（{st}）：{points} 分"),
                (Lang::En, _, _) => format!("{name} {late} min late ({st}): {points} points"),
            }
        }
        LineDetail::InspectionMissed { points, .. } => match lang {
            Lang::ZhCn => format!("漏巡检：{} 分", num(*points)),
            Lang::En => format!("missed inspection: {} points", num(*points)),
        },
        LineDetail::ResourceBreach {
            value,
            below,
            points,
        } => match lang {
            Lang::ZhCn => format!("{value:.4} ≥ 限值 {}：{} 分", num(*below), num(*points)),
            Lang::En => format!(
                "{value:.4} ≥ limit {}: {} points",
                num(*below),
                num(*points)
            ),
        },
        LineDetail::Manual { evidence, points } => match lang {
            Lang::ZhCn => format!("{evidence}：{} 分", num(*points)),
            Lang::En => format!("{evidence}: {} points", num(*points)),
        },
    }
}

/// The period's grade as the summary shows it: the grade's name, "不予评定" when withheld,
/// marked "（部分证据）" when it rests on partial evidence.
pub fn summary_grade(lang: Lang, s: &Summary) -> String {
    let name = s.grade.label(lang);
    if s.partial_evidence {
        format!("{name}{}", lang.pick("（部分证据）", " (partial evidence)"))
    } else {
        name.to_string()
    }
}

/// A system's availability figure: the percentage, "数据不足" with insufficient evidence, a
/// dash without data.
pub fn availability_actual(lang: Lang, a: &SystemAvailability) -> String {
    if a.insufficient_evidence {
        lang.pick("数据不足", "insufficient evidence").into()
    } else {
        super::opt_pct(a.actual_pct, 3)
    }
}

/// A system's result and whether it is not a breach: met, missed, or (insufficient evidence)
/// neither.
pub fn availability_result(lang: Lang, a: &SystemAvailability) -> (&'static str, bool) {
    if a.insufficient_evidence {
        (lang.pick("不予评定", "not assessed"), true)
    } else {
        (super::met(lang, Some(a.met)), a.met)
    }
}

/// A system's data completeness, with the contract's minimum coverage when the report has it:
/// `32.143%（下限 80%）`.
pub fn completeness_pct(lang: Lang, c: &SystemCompleteness) -> String {
    match c.min_pct {
        Some(min) => format!("{}{}", super::pct(c.pct), minimum(lang, min)),
        None => super::pct(c.pct),
    }
}

/// `（下限 80%）` / ` (minimum 80%)`.
pub fn minimum(lang: Lang, min: Fixed) -> String {
    match lang {
        Lang::ZhCn => format!("（下限 {min}%）"),
        Lang::En => format!(" (minimum {min}%)"),
    }
}

/// The payable share: the percentage, or "待定" while the grade is withheld.
pub fn payable_share(lang: Lang, p: &Payment) -> String {
    if p.pending {
        lang.pick("待甲方核定", "for the buyer to decide").into()
    } else {
        super::pct(p.payable_pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code reads differently in the two languages, and the Chinese text is Chinese.
    #[test]
    fn every_message_in_both_languages() {
        let notes = [
            Note::PeriodOutsideContract {
                period: "2027-03".into(),
                start: chrono::NaiveDate::from_ymd_opt(2027, 3, 1).unwrap(),
                end: chrono::NaiveDate::from_ymd_opt(2027, 3, 31).unwrap(),
                contract_start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                contract_end: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            },
            Note::NoSubjects {
                system: "web".into(),
                name: "门户".into(),
                missing_data: MissingData::AsUp,
            },
            Note::InsufficientEvidence {
                system: "web".into(),
                name: "门户".into(),
                coverage_percent: Some(32.142_857),
                min_coverage_percent: 80.0,
            },
            Note::GradeWithheld {
                systems: vec!["web".into(), "oa".into()],
            },
            Note::GradeOnPartialEvidence {
                systems: vec!["web".into()],
            },
            Note::UnknownIncidentLevel {
                incident: "incident:1".into(),
                level: "P9".into(),
            },
            Note::IncidentWithoutSystem {
                incident: "incident:1".into(),
            },
        ];
        let reasons = [
            Reason::CalendarYearMissing { year: 2027 },
            Reason::WindowYearMissing,
            Reason::PeriodNotOver,
            Reason::InspectionsNotRecorded { count: 3 },
            Reason::IncidentsOpen {
                incidents: vec!["incident:7".into()],
            },
        ];
        let lines = [
            LineDetail::AvailabilityShort {
                actual_percent: 99.8,
                target_percent: 99.95,
                short_pp: 0.15,
                steps: 2.0,
                step_pp: 0.1,
                points: 5.0,
            },
            LineDetail::ClockLate {
                clock: "restore".into(),
                late_minutes: 1920.0,
                status: ClockStatus::Late,
                units: None,
                per_minutes: None,
                points: 5.0,
            },
            LineDetail::ClockLate {
                clock: "response".into(),
                late_minutes: 22.0,
                status: ClockStatus::Late,
                units: Some(5.0),
                per_minutes: Some(5),
                points: 2.0,
            },
            LineDetail::InspectionMissed {
                kind: yunwei_sla::assess::InspectionKind::Daily,
                scheduled_ms: 0,
                points: 5.0,
            },
            LineDetail::ResourceBreach {
                value: 0.93,
                below: 0.8,
                points: 1.0,
            },
            LineDetail::Manual {
                evidence: "通报 2026-02-03".into(),
                points: 5.0,
            },
        ];
        let texts: Vec<(String, String)> = notes
            .iter()
            .map(|n| (note(Lang::ZhCn, n), note(Lang::En, n)))
            .chain(
                reasons
                    .iter()
                    .map(|r| (reason(Lang::ZhCn, r), reason(Lang::En, r))),
            )
            .chain(
                lines
                    .iter()
                    .map(|l| (line_detail(Lang::ZhCn, l), line_detail(Lang::En, l))),
            )
            .collect();
        let cjk = |s: &str| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
        for (zh, en) in &texts {
            assert_ne!(zh, en);
            assert!(cjk(zh), "{zh}");
            assert!(
                !cjk(en) || en.contains("门户") || en.contains("通报"),
                "{en}"
            );
        }
        assert_eq!(
            line_detail(Lang::ZhCn, &lines[1]),
            "恢复超时 1920.0 分钟（已超时）：5 分"
        );
        assert_eq!(
            note(Lang::ZhCn, &notes[2]),
            "系统 门户（web）服务时段内有数据的时间占 32.14%，低于合同约定的证据覆盖率下限 80%：\
             数据不足，不予评定（无可用率，不判定达标与否，不扣可用性分）"
        );
    }
}
