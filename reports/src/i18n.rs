//! Labels and value formatting shared by the renderers, in zh-CN and en. Every user-facing
//! word of a renderer comes from here or from `Lang::pick` next to it, never a bare literal.

use chrono::{DateTime, Duration};

use crate::model::*;

mod messages;
pub use messages::*;

/// `YYYY-MM-DD HH:MM` in the report's zone.
pub fn datetime(ms: i64, offset_minutes: i32) -> String {
    local(ms, offset_minutes).map_or_else(|| "—".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

/// `YYYY-MM-DD` in the report's zone.
pub fn date(ms: i64, offset_minutes: i32) -> String {
    local(ms, offset_minutes).map_or_else(|| "—".into(), |t| t.format("%Y-%m-%d").to_string())
}

fn local(ms: i64, offset_minutes: i32) -> Option<chrono::NaiveDateTime> {
    let t = DateTime::from_timestamp_millis(ms)?;
    Some(t.naive_utc() + Duration::minutes(i64::from(offset_minutes)))
}

/// `UTC+08:00`.
pub fn offset_label(offset_minutes: i32) -> String {
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let m = offset_minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
}

/// `99.953%` with three decimals.
pub fn pct(v: Fixed) -> String {
    format!("{}%", v.fmt_dp(3))
}

/// Optional percentage; missing is shown as a dash.
pub fn opt_pct(v: Option<Fixed>, decimals: u32) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{}%", v.fmt_dp(decimals)))
}

/// Minutes with up to one decimal.
pub fn minutes(v: Fixed) -> String {
    v.fmt_dp(1)
}

/// Money in yuan from cents: `398,400.00`.
pub fn yuan(cents: i64) -> String {
    let neg = cents < 0;
    let c = cents.unsigned_abs();
    let int = (c / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{}{grouped}.{:02}", if neg { "-" } else { "" }, c % 100)
}

/// Incident level name: 一级 / P1.
pub fn level(lang: Lang, level: u8) -> String {
    match lang {
        Lang::ZhCn => match level {
            1 => "一级".into(),
            2 => "二级".into(),
            3 => "三级".into(),
            4 => "四级".into(),
            n => format!("{n}级"),
        },
        Lang::En => format!("P{level}"),
    }
}

/// Yes / no for a met flag; None (not applicable) is a dash.
pub fn met(lang: Lang, met: Option<bool>) -> &'static str {
    match met {
        Some(true) => lang.pick("达标", "met"),
        Some(false) => lang.pick("未达标", "missed"),
        None => "—",
    }
}

/// Tier names of the shipped contracts; unknown tiers are shown as given.
pub fn tier(lang: Lang, tier: &str) -> String {
    match tier {
        "core" => lang.pick("核心", "core").into(),
        "general" => lang.pick("一般", "general").into(),
        "office" => lang.pick("办公", "office").into(),
        other => other.into(),
    }
}

/// Whose evidence decided a system's availability.
pub fn decided_by(lang: Lang, d: Option<DecidedBy>) -> &'static str {
    match d {
        None => lang.pick("运维方代理", "the vendor's agents"),
        Some(DecidedBy::ServerProbes) => lang.pick("服务端独立拨测", "the server's own probes"),
        Some(DecidedBy::Both) => lang.pick(
            "代理与服务端拨测（任一方判为中断即中断）",
            "agents and server probes (down when either says down)",
        ),
    }
}

/// The sentence under the availability table naming the systems whose availability was not
/// decided by the agents alone; `None` when every system was (the usual case, whose reports
/// keep their bytes).
pub fn decided_by_note(lang: Lang, r: &Report) -> Option<String> {
    let named: Vec<String> = r
        .availability
        .iter()
        .filter(|a| a.decided_by.is_some())
        .map(|a| format!("{}: {}", a.name, decided_by(lang, a.decided_by)))
        .collect();
    if named.is_empty() {
        return None;
    }
    Some(match lang {
        Lang::ZhCn => format!(
            "可用性判定依据（合同 availability_from）：{}；其余系统按运维方代理的监测数据判定。",
            named.join("；")
        ),
        Lang::En => format!(
            "Availability decided by (the contract's availability_from): {}; other systems by the vendor's agents.",
            named.join("; ")
        ),
    })
}

/// Inspection status.
pub fn inspection(lang: Lang, s: InspectionStatus) -> &'static str {
    match s {
        InspectionStatus::Done => lang.pick("按时完成", "done"),
        InspectionStatus::Late => lang.pick("逾期完成", "late"),
        InspectionStatus::Missed => lang.pick("漏检", "missed"),
    }
}

/// Exclusion status.
pub fn exclusion(lang: Lang, s: ExclusionStatus) -> &'static str {
    match s {
        ExclusionStatus::Approved => lang.pick("已批准", "approved"),
        ExclusionStatus::Rejected => lang.pick("已驳回", "rejected"),
        ExclusionStatus::LateFiled => {
            lang.pick("逾期申报（不予排除）", "filed late (not excluded)")
        }
    }
}

/// Adjustment kind.
pub fn adjustment(lang: Lang, k: AdjustmentKind) -> &'static str {
    match k {
        AdjustmentKind::Deduction => lang.pick("扣分", "deduction"),
        AdjustmentKind::Bonus => lang.pick("加分", "bonus"),
    }
}

/// Alert severity names used by the shipped rules.
pub fn severity(lang: Lang, s: &str) -> String {
    match s {
        "critical" => lang.pick("严重", "critical").into(),
        "warning" => lang.pick("警告", "warning").into(),
        "info" => lang.pick("提示", "info").into(),
        other => other.into(),
    }
}

/// Evidence kinds.
pub fn evidence_kind(lang: Lang, k: &str) -> String {
    match k {
        "status_interval" => lang.pick("状态区间", "status interval").into(),
        "data_gap" => lang.pick("数据缺失", "data gap").into(),
        "incident" => lang.pick("故障记录", "incident").into(),
        "notification" => lang.pick("通知记录", "notification").into(),
        "exclusion" => lang.pick("排除审批", "exclusion").into(),
        "inspection" => lang.pick("巡检记录", "inspection").into(),
        "bonus" => lang.pick("加分依据", "bonus record").into(),
        "audit_head" => lang.pick("审计日志链头", "audit log head").into(),
        "incident_request" => lang
            .pick("补录/降级审批", "backdate / downgrade review")
            .into(),
        "note" => lang.pick("说明", "note").into(),
        "rollup" => lang.pick("小时汇总", "hourly rollup").into(),
        "manual_event" => lang.pick("人工登记事件", "manual event").into(),
        "reference" => lang.pick("引用", "reference").into(),
        other => other.into(),
    }
}

/// Period kind.
pub fn period_kind(lang: Lang, k: PeriodKind) -> &'static str {
    match k {
        PeriodKind::Month => lang.pick("月度", "Monthly"),
        PeriodKind::Quarter => lang.pick("季度", "Quarterly"),
        PeriodKind::Year => lang.pick("年度", "Annual"),
        PeriodKind::Custom => lang.pick("专项", "Custom-period"),
    }
}

/// Document title, e.g. 2026-10 月度运维服务绩效考核报告.
pub fn title(r: &Report) -> String {
    let lang = r.cover.lang;
    match lang {
        Lang::ZhCn => format!(
            "{}运维服务绩效考核报告",
            period_kind(lang, r.cover.period.kind)
        ),
        Lang::En => format!(
            "{} O&M Performance Assessment Report",
            period_kind(lang, r.cover.period.kind)
        ),
    }
}

/// Section headings, numbered like a government document (一、二、… / 1. 2. …).
pub fn section(lang: Lang, n: usize, zh: &str, en: &str) -> String {
    const ZH: [&str; 12] = [
        "一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二",
    ];
    match lang {
        Lang::ZhCn => format!("{}、{zh}", ZH.get(n.saturating_sub(1)).unwrap_or(&"")),
        Lang::En => format!("{n}. {en}"),
    }
}

/// An incident clock's name (as stored: `notified`, `ack`, `onsite`, `restored`).
pub fn incident_clock(lang: Lang, clock: &str) -> String {
    match clock {
        "notified" => lang.pick("通知", "notified").into(),
        "ack" => lang.pick("响应（确认）", "acknowledged").into(),
        "onsite" => lang.pick("到场", "on site").into(),
        "restored" => lang.pick("恢复", "restored").into(),
        other => other.into(),
    }
}

/// Review status of a backdate or downgrade request.
pub fn request_status(lang: Lang, s: RequestStatus) -> &'static str {
    match s {
        RequestStatus::Pending => {
            lang.pick("待审批（按记录时间计）", "pending (recorded time counts)")
        }
        RequestStatus::Approved => lang.pick("已批准", "approved"),
        RequestStatus::Rejected => {
            lang.pick("已驳回（按记录时间计）", "rejected (recorded time counts)")
        }
    }
}

/// An appeal's status.
pub fn appeal_status(lang: Lang, s: AppealStatus) -> &'static str {
    match s {
        AppealStatus::Pending => lang.pick("待复核", "pending review"),
        AppealStatus::Upheld => lang.pick("维持扣分", "upheld"),
        AppealStatus::Overturned => lang.pick("撤销扣分", "overturned"),
        AppealStatus::Adjusted => lang.pick("调整扣分", "adjusted"),
    }
}

/// A lifecycle stage, as the cover states it.
pub fn stage(lang: Lang, s: Stage) -> &'static str {
    match s {
        Stage::Draft => lang.pick(
            "初稿（申诉与复核期间）",
            "draft (open for appeal and review)",
        ),
        Stage::Final => lang.pick("终稿", "final report"),
    }
}

/// The party a sign-off role acts for.
pub fn signoff_role(lang: Lang, role: &str) -> String {
    match role {
        "operator" => lang.pick("乙方（运维单位）", "vendor (operator)").into(),
        "reviewer" => lang.pick("甲方（考核单位）", "office (reviewer)").into(),
        other => other.into(),
    }
}

/// An appeal's decision cell: status, approved figure, by whom.
pub fn appeal_decision(lang: Lang, a: &AppealLine) -> String {
    let mut out = appeal_status(lang, a.status).to_string();
    if let Some(v) = a.approved {
        out.push_str(&format!(" ({v})"));
    }
    if let Some(r) = &a.decision_reason {
        out.push_str(lang.pick("：", ": "));
        out.push_str(r);
    }
    out
}

/// What a backdate or downgrade request changes: the clock's name, or "level".
pub fn request_subject(lang: Lang, r: &IncidentRequest) -> String {
    match &r.clock {
        Some(c) => incident_clock(lang, c),
        None => lang.pick("等级", "level").into(),
    }
}

/// The claimed value of a request: the earlier time (formatted by `time`) or the new level.
pub fn request_claim(r: &IncidentRequest, time: impl Fn(i64) -> String) -> String {
    match (r.claimed_ms, &r.level_from, &r.level_to) {
        (Some(ms), _, _) => time(ms),
        (None, Some(from), Some(to)) => format!("{from} → {to}"),
        _ => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(yuan(39_840_000), "398,400.00");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(offset_label(480), "UTC+08:00");
        // 2026-10-14 01:12 UTC is 09:12 in Asia/Shanghai.
        assert_eq!(datetime(1_791_940_320_000, 480), "2026-10-14 09:12");
    }
}
