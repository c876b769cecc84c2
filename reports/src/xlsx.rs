//! XLSX workbook: one sheet per section, a bold header row, frozen panes, column widths;
//! numbers are stored as numbers (percentages as fractions with a `0.000%` format, times as
//! Excel date-times in the contract's zone). The signed envelope is kept, base64-encoded in
//! chunks, on the very hidden sheet `yunwei-report`; `verify` reads it back and renders the
//! workbook again from it, which must give the same bytes (the writer is deterministic: fixed
//! zip timestamps and the creation time set to `generated_at`).

use std::io::Read as _;

use base64::Engine as _;
use rust_xlsxwriter::{
    Color, DocProperties, ExcelDateTime, Format, FormatAlign, FormatBorder, Workbook, Worksheet,
};

use crate::i18n::{self, *};
use crate::integrity::SignedReport;
use crate::model::*;
use crate::{Lang, RenderError};

/// Name of the very hidden sheet holding the signed data.
pub const DATA_SHEET: &str = "yunwei-report";
/// Prefix of every chunk of signed data.
const CHUNK_PREFIX: &str = "yunwei-report-v1:";
/// Base64 characters per cell (Excel allows 32,767).
const CHUNK: usize = 32_000;

/// One cell value.
enum V {
    S(String),
    /// Plain number with the `0.###` format.
    N(f64),
    /// Whole number.
    I(i64),
    /// Percent value as in the JSON (99.731 → 0.99731 shown as 99.731%).
    P(Option<Fixed>),
    /// UTC ms shown as a local date-time.
    T(Option<i64>),
}

struct Formats {
    head: Format,
    text: Format,
    num: Format,
    int: Format,
    pct: Format,
    time: Format,
}

fn formats() -> Formats {
    let base = Format::new()
        .set_border(FormatBorder::Thin)
        .set_font_size(10);
    Formats {
        head: base
            .clone()
            .set_bold()
            .set_background_color(Color::RGB(0xE8E8E8))
            .set_align(FormatAlign::Center)
            .set_text_wrap(),
        text: base.clone(),
        num: base.clone().set_num_format("0.0##"),
        int: base.clone().set_num_format("0"),
        pct: base.clone().set_num_format("0.000%"),
        time: base.set_num_format("yyyy-mm-dd hh:mm"),
    }
}

struct Book<'a> {
    wb: Workbook,
    f: Formats,
    lang: Lang,
    off: i32,
    r: &'a Report,
}

impl Book<'_> {
    fn t<'b>(&self, zh: &'b str, en: &'b str) -> &'b str {
        self.lang.pick(zh, en)
    }

    fn sheet(
        &mut self,
        name: &str,
        cols: &[(&str, f64)],
        rows: Vec<Vec<V>>,
    ) -> Result<(), RenderError> {
        let off = i64::from(self.off) * 60;
        let ws: &mut Worksheet = self.wb.add_worksheet();
        ws.set_name(name)?;
        for (c, (title, width)) in cols.iter().enumerate() {
            let c = c as u16;
            ws.write_string_with_format(0, c, *title, &self.f.head)?;
            ws.set_column_width(c, *width)?;
        }
        ws.set_freeze_panes(1, 0)?;
        for (i, row) in rows.iter().enumerate() {
            let r = i as u32 + 1;
            for (c, v) in row.iter().enumerate() {
                let c = c as u16;
                match v {
                    V::S(s) => ws.write_string_with_format(r, c, s, &self.f.text)?,
                    V::N(n) => ws.write_number_with_format(r, c, *n, &self.f.num)?,
                    V::I(n) => ws.write_number_with_format(r, c, *n as f64, &self.f.int)?,
                    V::P(Some(p)) => {
                        ws.write_number_with_format(r, c, p.0 as f64 / 100_000.0, &self.f.pct)?
                    }
                    V::T(Some(ms)) => {
                        let t = ExcelDateTime::from_timestamp(ms.div_euclid(1000) + off)?;
                        ws.write_datetime_with_format(r, c, &t, &self.f.time)?
                    }
                    V::P(None) | V::T(None) => ws.write_blank(r, c, &self.f.text)?,
                };
            }
        }
        Ok(())
    }
}

fn s(v: impl Into<String>) -> V {
    V::S(v.into())
}

fn fx(v: Fixed) -> V {
    V::N(v.to_f64())
}

fn opt_fx(v: Option<Fixed>) -> V {
    v.map_or(V::S(String::new()), fx)
}

/// Renders the workbook.
pub fn render(signed: &SignedReport) -> Result<Vec<u8>, RenderError> {
    let r = &signed.report;
    let lang = r.cover.lang;
    let mut b = Book {
        wb: {
            let mut wb = Workbook::new();
            // Level 3 instead of 6: about half the time for a few percent more bytes.
            wb.set_zip_compression_level(3);
            wb
        },
        f: formats(),
        lang,
        off: r.cover.utc_offset_minutes,
        r,
    };
    let created = ExcelDateTime::from_timestamp(r.cover.generated_at_ms.div_euclid(1000))?;
    b.wb.set_properties(
        &DocProperties::new()
            .set_title(format!("{} {}", r.cover.contract_name, i18n::title(r)))
            .set_author("yunwei")
            .set_company(&r.cover.party_b)
            .set_comment(format!("sha256 {}", signed.integrity.sha256))
            .set_creation_datetime(&created),
    );
    cover(&mut b)?;
    summary(&mut b)?;
    availability(&mut b)?;
    disagreements(&mut b)?;
    incidents(&mut b)?;
    incident_requests(&mut b)?;
    adjustments(&mut b)?;
    appeals(&mut b)?;
    signoffs(&mut b)?;
    inspections(&mut b)?;
    resources(&mut b)?;
    alerts(&mut b)?;
    exclusions(&mut b)?;
    completeness(&mut b)?;
    evidence(&mut b)?;
    integrity(&mut b, signed)?;
    Ok(b.wb.save_to_buffer()?)
}

fn cover(b: &mut Book) -> Result<(), RenderError> {
    let c = &b.r.cover;
    let lang = b.lang;
    let rows = vec![
        vec![s(b.t("报告", "Report")), s(i18n::title(b.r))],
        vec![s(b.t("合同编号", "Contract no.")), s(&c.contract_id)],
        vec![s(b.t("合同名称", "Contract")), s(&c.contract_name)],
        vec![s(b.t("甲方", "Party A")), s(&c.party_a)],
        vec![s(b.t("乙方", "Party B")), s(&c.party_b)],
        vec![s(b.t("考核周期", "Period")), s(&c.period.label)],
        vec![
            s(b.t("周期类型", "Period kind")),
            s(period_kind(lang, c.period.kind)),
        ],
        vec![s(b.t("开始时间", "Start")), V::T(Some(c.period.start_ms))],
        vec![
            s(b.t("结束时间（不含）", "End (exclusive)")),
            V::T(Some(c.period.end_ms)),
        ],
        vec![
            s(b.t("时区", "Time zone")),
            s(format!(
                "{} ({})",
                c.time_zone,
                offset_label(c.utc_offset_minutes)
            )),
        ],
        vec![
            s(b.t("生成时间", "Generated at")),
            V::T(Some(c.generated_at_ms)),
        ],
        vec![
            s(b.t("数据完整率", "Data completeness")),
            V::P(Some(c.data_completeness_pct)),
        ],
        vec![
            s(b.t("报告状态", "Status")),
            s(match (&b.r.lifecycle, c.provisional) {
                (Some(l), _) => stage(lang, l.stage),
                (None, true) => b.t("暂定", "provisional"),
                (None, false) => b.t("正式", "final"),
            }),
        ],
        vec![s(b.t("版本", "Version")), V::I(i64::from(c.version))],
        vec![s(b.t("语言", "Language")), s(lang.tag())],
    ];
    let cols = [(b.t("项目", "Field"), 22.0), (b.t("内容", "Value"), 60.0)];
    let name = b.t("封面", "Cover");
    b.sheet(name, &cols, rows)
}

fn summary(b: &mut Book) -> Result<(), RenderError> {
    let m = &b.r.summary;
    let lang = b.lang;
    let p = &m.payment;
    let cents = |c: Option<i64>| c.map_or(V::S(String::new()), |c| V::N(c as f64 / 100.0));
    let rows = vec![
        vec![s(b.t("基础分", "Base score")), fx(m.base_score)],
        vec![s(b.t("扣分合计", "Deductions")), fx(m.deductions_total)],
        vec![s(b.t("加分合计", "Bonuses")), fx(m.bonuses_total)],
        vec![s(b.t("考核得分", "Score")), fx(m.score)],
        vec![s(b.t("等级", "Grade")), s(summary_grade(lang, m))],
        vec![
            s(b.t("应付比例", "Payable share")),
            if p.pending {
                s(payable_share(lang, p))
            } else {
                V::P(Some(p.payable_pct))
            },
        ],
        vec![
            s(b.t("当期服务费（元）", "Period fee (CNY)")),
            cents(p.fee_cents),
        ],
        vec![
            s(b.t("应付金额（元）", "Payable (CNY)")),
            cents(p.payable_cents),
        ],
        vec![s(b.t("付款规则", "Payment rule")), s(&p.rule)],
    ];
    let cols = [(b.t("项目", "Field"), 22.0), (b.t("数值", "Value"), 40.0)];
    let name = b.t("考核摘要", "Summary");
    b.sheet(name, &cols, rows)?;
    let rows = m
        .trend
        .iter()
        .map(|t| vec![s(&t.period), fx(t.score), s(t.grade.label(lang))])
        .collect();
    let cols = [
        (b.t("周期", "Period"), 14.0),
        (b.t("得分", "Score"), 10.0),
        (b.t("等级", "Grade"), 12.0),
    ];
    let name = b.t("得分趋势", "Score trend");
    b.sheet(name, &cols, rows)
}

fn availability(b: &mut Book) -> Result<(), RenderError> {
    let lang = b.lang;
    // The vantage column only when some system was not decided by the agents alone, so the
    // usual reports keep their bytes.
    let vantage = b.r.availability.iter().any(|a| a.decided_by.is_some());
    let rows =
        b.r.availability
            .iter()
            .map(|a| {
                let mut row = vec![
                    s(&a.system_id),
                    s(&a.name),
                    s(tier(lang, &a.tier)),
                    s(&a.window),
                    V::P(Some(a.target_pct)),
                    V::P(a.actual_pct),
                    V::I(a.period_minutes),
                    V::I(a.window_minutes),
                    fx(a.downtime_minutes),
                    fx(a.excluded_minutes),
                    fx(a.missing_minutes),
                    s(availability_result(lang, a).0),
                    s(a.evidence.join(", ")),
                ];
                if vantage {
                    row.push(s(decided_by(lang, a.decided_by)));
                }
                row
            })
            .collect();
    let mut cols = vec![
        (b.t("系统编号", "System ID"), 14.0),
        (b.t("系统", "System"), 22.0),
        (b.t("等级", "Tier"), 8.0),
        (b.t("服务时段", "Window"), 9.0),
        (b.t("目标可用率", "Target"), 11.0),
        (b.t("实际可用率", "Availability"), 12.0),
        (b.t("周期分钟", "Period min"), 10.0),
        (b.t("服务时段分钟", "Window min"), 12.0),
        (b.t("不可用分钟", "Downtime min"), 11.0),
        (b.t("排除分钟", "Excluded min"), 10.0),
        (b.t("数据缺失分钟", "Missing-data min"), 12.0),
        (b.t("结论", "Result"), 8.0),
        (b.t("证据编号", "Evidence"), 24.0),
    ];
    if vantage {
        cols.push((b.t("判定依据", "Decided by"), 24.0));
    }
    let name = b.t("可用率", "Availability");
    b.sheet(name, &cols, rows)?;
    // Wide layout (a row per system, a column per day): a third of the cells of a long one.
    let mut dates: Vec<&str> = Vec::new();
    for a in &b.r.availability {
        for d in &a.daily {
            if !dates.contains(&d.date.as_str()) {
                dates.push(&d.date);
            }
        }
        if dates.len() >= a.daily.len() && !dates.is_empty() {
            break;
        }
    }
    let col_of: std::collections::HashMap<&str, usize> =
        dates.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    let rows =
        b.r.availability
            .iter()
            .map(|a| {
                let mut row: Vec<V> = Vec::with_capacity(dates.len() + 1);
                row.push(s(&a.system_id));
                row.extend(dates.iter().map(|_| V::P(None)));
                for d in &a.daily {
                    if let Some(&i) = col_of.get(d.date.as_str()) {
                        row[i + 1] = V::P(d.pct);
                    }
                }
                row
            })
            .collect();
    let mut cols: Vec<(&str, f64)> = vec![(b.t("系统编号", "System ID"), 14.0)];
    cols.extend(dates.iter().map(|d| (*d, 11.0)));
    let name = b.t("每日可用率", "Daily availability");
    b.sheet(name, &cols, rows)
}

fn incidents(b: &mut Book) -> Result<(), RenderError> {
    let lang = b.lang;
    let clock = |c: &Clock| {
        [
            opt_fx(c.actual_minutes),
            c.target_minutes.map_or(V::S(String::new()), V::I),
            s(met(lang, c.met)),
        ]
    };
    let rows =
        b.r.incidents
            .iter()
            .map(|i| {
                let mut row = vec![
                    s(&i.id),
                    s(level(lang, i.level)),
                    s(&i.title),
                    s(&i.system),
                    V::T(Some(i.detected_ms)),
                    V::T(i.restored_ms),
                ];
                row.extend(clock(&i.response));
                row.extend(clock(&i.on_site));
                row.extend(clock(&i.restore));
                row.push(s(i.evidence.join(", ")));
                row
            })
            .collect();
    let cols = [
        (b.t("编号", "ID"), 18.0),
        (b.t("等级", "Level"), 6.0),
        (b.t("故障描述", "Title"), 30.0),
        (b.t("系统", "System"), 12.0),
        (b.t("发现时间", "Detected"), 17.0),
        (b.t("恢复时间", "Restored"), 17.0),
        (b.t("响应分钟", "Response min"), 10.0),
        (b.t("响应目标分钟", "Response target"), 10.0),
        (b.t("响应结论", "Response"), 8.0),
        (b.t("到场分钟", "On-site min"), 10.0),
        (b.t("到场目标分钟", "On-site target"), 10.0),
        (b.t("到场结论", "On site"), 8.0),
        (b.t("恢复分钟", "Restore min"), 10.0),
        (b.t("恢复目标分钟", "Restore target"), 10.0),
        (b.t("恢复结论", "Restore"), 8.0),
        (b.t("证据编号", "Evidence"), 24.0),
    ];
    let name = b.t("故障", "Incidents");
    b.sheet(name, &cols, rows)
}

/// Backdated clocks and downgrades: a sheet only when there are any.
/// Spans in which the agents and the server's own probes disagree; no sheet when none.
fn disagreements(b: &mut Book) -> Result<(), RenderError> {
    if b.r.disagreements.is_empty() {
        return Ok(());
    }
    let (up, down) = (b.t("正常", "up"), b.t("中断", "down"));
    let rows =
        b.r.disagreements
            .iter()
            .map(|d| {
                let (agents, server) = if d.agents_up { (up, down) } else { (down, up) };
                vec![
                    s(&d.system),
                    s(&d.probe),
                    V::T(Some(d.from_ms)),
                    V::T(Some(d.to_ms)),
                    s(agents),
                    s(server),
                    V::N(d.minutes.to_f64()),
                    s(d.evidence.join(", ")),
                ]
            })
            .collect();
    let cols = [
        (b.t("系统", "System"), 18.0),
        (b.t("服务端拨测", "Server probe"), 16.0),
        (b.t("开始", "From"), 17.0),
        (b.t("结束", "To"), 17.0),
        (b.t("代理结论", "Agents"), 10.0),
        (b.t("服务端结论", "Server"), 10.0),
        (b.t("分钟", "Minutes"), 10.0),
        (b.t("证据编号", "Evidence"), 30.0),
    ];
    let name = b.t("独立拨测不一致", "Probe disagreements");
    b.sheet(name, &cols, rows)
}

fn incident_requests(b: &mut Book) -> Result<(), RenderError> {
    if b.r.incident_requests.is_empty() {
        return Ok(());
    }
    let lang = b.lang;
    let rows =
        b.r.incident_requests
            .iter()
            .map(|q| {
                vec![
                    s(&q.incident),
                    s(request_subject(lang, q)),
                    V::T(Some(q.recorded_ms)),
                    V::T(q.claimed_ms),
                    s(match (&q.level_from, &q.level_to) {
                        (Some(from), Some(to)) => format!("{from} → {to}"),
                        _ => String::new(),
                    }),
                    s(&q.requested_by),
                    s(q.reviewed_by.clone().unwrap_or_default()),
                    V::T(q.reviewed_ms),
                    s(request_status(lang, q.status)),
                    s(&q.reason),
                    s(&q.id),
                ]
            })
            .collect();
    let cols = [
        (b.t("故障编号", "Incident"), 18.0),
        (b.t("时钟", "Clock"), 12.0),
        (b.t("记录时间", "Recorded"), 17.0),
        (b.t("申报时间", "Claimed time"), 17.0),
        (b.t("等级调整", "Level change"), 12.0),
        (b.t("申请人", "Requested by"), 12.0),
        (b.t("审批人", "Approved by"), 12.0),
        (b.t("审批时间", "Decided"), 17.0),
        (b.t("状态", "Status"), 18.0),
        (b.t("理由", "Reason"), 36.0),
        (b.t("证据编号", "Evidence"), 24.0),
    ];
    let name = b.t("补录与降级审批", "Backdates, downgrades");
    b.sheet(name, &cols, rows)
}

/// Appeals and their review: a sheet for contracts with a lifecycle.
fn appeals(b: &mut Book) -> Result<(), RenderError> {
    let Some(l) = &b.r.lifecycle else {
        return Ok(());
    };
    let lang = b.lang;
    let rows = l
        .appeals
        .iter()
        .map(|a| {
            vec![
                s(&a.target),
                s(&a.filed_by),
                V::T(Some(a.filed_ms)),
                s(&a.reason),
                s(a.attachments.join(", ")),
                s(appeal_status(lang, a.status)),
                a.approved.map_or(s(""), |v| V::N(v.to_f64())),
                s(a.decided_by.clone().unwrap_or_default()),
                V::T(a.decided_ms),
                s(a.decision_reason.clone().unwrap_or_default()),
                V::N(a.effect.to_f64()),
                s(&a.id),
                V::T(l.appeal_deadline_ms),
            ]
        })
        .collect();
    let cols = [
        (b.t("申诉内容", "Appealed"), 30.0),
        (b.t("申诉人", "Appellant"), 14.0),
        (b.t("申诉时间", "Filed"), 17.0),
        (b.t("理由", "Reason"), 36.0),
        (b.t("附件 (SHA-256)", "Attachments (SHA-256)"), 40.0),
        (b.t("复核结论", "Decision"), 12.0),
        (b.t("核定值", "Approved"), 10.0),
        (b.t("复核人", "Reviewer"), 14.0),
        (b.t("复核时间", "Decided"), 17.0),
        (b.t("复核理由", "Decision reason"), 36.0),
        (b.t("得分影响", "Score effect"), 10.0),
        (b.t("证据编号", "Evidence"), 24.0),
        (b.t("申诉截止", "Appeals until"), 17.0),
    ];
    let name = b.t("申诉与复核", "Appeals");
    b.sheet(name, &cols, rows)
}

/// The sign-off record: a sheet for contracts with a lifecycle.
fn signoffs(b: &mut Book) -> Result<(), RenderError> {
    let Some(l) = &b.r.lifecycle else {
        return Ok(());
    };
    let lang = b.lang;
    let rows = l
        .signoffs
        .iter()
        .map(|g| {
            vec![
                s(signoff_role(lang, &g.role)),
                s(&g.signed_by),
                V::T(Some(g.signed_ms)),
                V::I(i64::from(g.version)),
            ]
        })
        .collect();
    let cols = [
        (b.t("签认方", "Party"), 20.0),
        (b.t("签认人", "Signed by"), 16.0),
        (b.t("签认时间", "Signed at"), 17.0),
        (b.t("所签版本", "Version signed"), 10.0),
    ];
    let name = b.t("签认记录", "Sign-off");
    b.sheet(name, &cols, rows)
}

fn adjustments(b: &mut Book) -> Result<(), RenderError> {
    let lang = b.lang;
    let rows =
        b.r.adjustments
            .iter()
            .map(|a| {
                let signed = match a.kind {
                    AdjustmentKind::Deduction => -a.points.to_f64(),
                    AdjustmentKind::Bonus => a.points.to_f64(),
                };
                vec![
                    s(adjustment(lang, a.kind)),
                    s(&a.item),
                    V::N(signed),
                    s(&a.arithmetic),
                    s(a.evidence.join(", ")),
                ]
            })
            .collect();
    let cols = [
        (b.t("类别", "Kind"), 8.0),
        (b.t("考核项", "Item"), 30.0),
        (b.t("分值", "Points"), 8.0),
        (b.t("计算过程", "Arithmetic"), 50.0),
        (b.t("证据编号", "Evidence"), 26.0),
    ];
    let name = b.t("扣分与加分", "Deductions and bonuses");
    b.sheet(name, &cols, rows)
}

fn inspections(b: &mut Book) -> Result<(), RenderError> {
    let lang = b.lang;
    let rows =
        b.r.inspections
            .iter()
            .map(|i| {
                vec![
                    s(&i.name),
                    V::T(Some(i.due_ms)),
                    V::T(i.done_ms),
                    s(inspection(lang, i.status)),
                    s(i.evidence.join(", ")),
                ]
            })
            .collect();
    let cols = [
        (b.t("巡检项目", "Inspection"), 30.0),
        (b.t("应完成时间", "Due"), 17.0),
        (b.t("实际完成时间", "Done"), 17.0),
        (b.t("状态", "Status"), 10.0),
        (b.t("证据编号", "Evidence"), 20.0),
    ];
    let name = b.t("巡检", "Inspections");
    b.sheet(name, &cols, rows)
}

fn resources(b: &mut Book) -> Result<(), RenderError> {
    let rows =
        b.r.resources
            .hosts
            .iter()
            .map(|h| {
                vec![
                    s(&h.host),
                    s(&h.system),
                    V::P(h.cpu_p95_pct),
                    V::P(h.memory_p95_pct),
                    V::P(h.disk_p95_pct),
                ]
            })
            .collect();
    let cols = [
        (b.t("主机", "Host"), 20.0),
        (b.t("系统", "System"), 14.0),
        (b.t("CPU P95", "CPU p95"), 10.0),
        (b.t("内存 P95", "Memory p95"), 11.0),
        (b.t("磁盘 P95", "Disk p95"), 10.0),
    ];
    let name = b.t("资源使用", "Resources");
    b.sheet(name, &cols, rows)?;
    let rows =
        b.r.resources
            .disks_filling
            .iter()
            .map(|d| {
                vec![
                    s(&d.host),
                    s(&d.mount),
                    V::P(Some(d.used_pct)),
                    s(&d.full_on),
                ]
            })
            .collect();
    let cols = [
        (b.t("主机", "Host"), 20.0),
        (b.t("挂载点", "Mount"), 14.0),
        (b.t("当前使用率", "Used"), 11.0),
        (b.t("预计写满日期", "Full on"), 14.0),
    ];
    let name = b.t("磁盘容量预测", "Disks filling");
    b.sheet(name, &cols, rows)
}

fn alerts(b: &mut Book) -> Result<(), RenderError> {
    let lang = b.lang;
    let a = &b.r.alerts;
    let mut rows = vec![vec![
        s(b.t("告警总数", "Total alerts")),
        V::I(a.total as i64),
    ]];
    for sc in &a.by_severity {
        let label = match lang {
            Lang::ZhCn => format!("{}告警", severity(lang, &sc.severity)),
            Lang::En => format!("{} alerts", severity(lang, &sc.severity)),
        };
        rows.push(vec![s(label), V::I(sc.count as i64)]);
    }
    rows.push(vec![
        s(b.t("平均确认时长 MTTA（分钟）", "MTTA (min)")),
        opt_fx(a.mtta_minutes),
    ]);
    rows.push(vec![
        s(b.t("平均恢复时长 MTTR（分钟）", "MTTR (min)")),
        opt_fx(a.mttr_minutes),
    ]);
    let cols = [(b.t("指标", "Measure"), 28.0), (b.t("数值", "Value"), 12.0)];
    let name = b.t("告警统计", "Alert statistics");
    b.sheet(name, &cols, rows)?;
    let rows = a
        .noisiest
        .iter()
        .map(|n| vec![s(&n.rule), V::I(n.count as i64)])
        .collect();
    let cols = [
        (b.t("规则", "Rule"), 28.0),
        (b.t("触发次数", "Firings"), 10.0),
    ];
    let name = b.t("告警最多的规则", "Noisiest rules");
    b.sheet(name, &cols, rows)
}

fn exclusions(b: &mut Book) -> Result<(), RenderError> {
    let lang = b.lang;
    let rows =
        b.r.exclusions
            .iter()
            .map(|e| {
                vec![
                    s(&e.id),
                    s(&e.system),
                    s(&e.reason),
                    V::T(Some(e.start_ms)),
                    V::T(Some(e.end_ms)),
                    V::T(Some(e.filed_ms)),
                    fx(e.minutes),
                    s(exclusion(lang, e.status)),
                ]
            })
            .collect();
    let cols = [
        (b.t("编号", "ID"), 10.0),
        (b.t("系统", "System"), 12.0),
        (b.t("事由", "Reason"), 36.0),
        (b.t("开始", "Start"), 17.0),
        (b.t("结束", "End"), 17.0),
        (b.t("申报时间", "Filed"), 17.0),
        (b.t("分钟", "Minutes"), 8.0),
        (b.t("审批结果", "Decision"), 18.0),
    ];
    let name = b.t("排除申请", "Exclusions");
    b.sheet(name, &cols, rows)
}

fn completeness(b: &mut Book) -> Result<(), RenderError> {
    let c = &b.r.completeness;
    let mut rows = vec![vec![
        s(b.t("（全部）", "(all)")),
        V::P(Some(c.overall_pct)),
        s(""),
        s(&c.borne_by),
    ]];
    let lang = b.lang;
    rows.extend(c.systems.iter().map(|x| {
        vec![
            s(&x.system),
            V::P(Some(x.pct)),
            fx(x.missing_minutes),
            s(x.min_pct
                .map(|m| minimum(lang, m).trim().to_string())
                .unwrap_or_default()),
        ]
    }));
    let cols = [
        (b.t("系统", "System"), 14.0),
        (b.t("完整率", "Completeness"), 12.0),
        (b.t("缺失分钟", "Missing min"), 10.0),
        (b.t("责任方", "Borne by"), 40.0),
    ];
    let name = b.t("数据完整性", "Data completeness");
    b.sheet(name, &cols, rows)
}

fn evidence(b: &mut Book) -> Result<(), RenderError> {
    let lang = b.lang;
    let rows =
        b.r.evidence
            .iter()
            .map(|e| {
                vec![
                    s(&e.id),
                    s(evidence_kind(lang, &e.kind)),
                    s(&e.summary),
                    V::T(Some(e.start_ms)),
                    V::T(Some(e.end_ms)),
                ]
            })
            .collect();
    let cols = [
        (b.t("证据编号", "Evidence ID"), 14.0),
        (b.t("类型", "Kind"), 12.0),
        (b.t("摘要", "Summary"), 44.0),
        (b.t("开始", "Start"), 17.0),
        (b.t("结束", "End"), 17.0),
    ];
    let name = b.t("证据清单", "Evidence");
    b.sheet(name, &cols, rows)
}

fn integrity(b: &mut Book, signed: &SignedReport) -> Result<(), RenderError> {
    let i = &signed.integrity;
    let rows = vec![
        vec![s(b.t("算法", "Algorithm")), s("SHA-256 + Ed25519")],
        vec![s(b.t("报告摘要（SHA-256）", "Report digest (SHA-256)")), s(&i.sha256)],
        vec![s(b.t("签名（Ed25519）", "Signature (Ed25519)")), s(&i.signature)],
        vec![s(b.t("签名密钥标识", "Signing key id")), s(&i.key_id)],
        vec![
            s(b.t("说明", "Note")),
            s(b.t(
                "签名数据保存在隐藏工作表中，可用 yunwei-server report verify 校验。",
                "The signed data is kept on a hidden sheet; check it with yunwei-server report verify.",
            )),
        ],
    ];
    let cols = [(b.t("项目", "Field"), 22.0), (b.t("内容", "Value"), 100.0)];
    let name = b.t("完整性校验", "Integrity");
    b.sheet(name, &cols, rows)?;
    let data = base64::engine::general_purpose::STANDARD.encode(signed.envelope_json());
    let ws = b.wb.add_worksheet();
    ws.set_name(DATA_SHEET)?;
    for (n, chunk) in data.as_bytes().chunks(CHUNK).enumerate() {
        let text = format!("{CHUNK_PREFIX}{n:05}:{}", String::from_utf8_lossy(chunk));
        ws.write_string(n as u32, 0, text)?;
    }
    ws.set_very_hidden(true);
    Ok(())
}

/// Reads the signed envelope back from a workbook written by [`render`]. `Ok(None)` when the
/// workbook has none; `Err` when it is not a readable zip.
///
/// Decompression is bounded (a zip bomb is refused with the limit named): at most
/// `yunwei_conf::limits::MAX_XLSX_ENTRIES` entries, and at most
/// `MAX_XLSX_DECOMPRESSED_BYTES` read, whatever sizes the zip declares.
pub fn extract_envelope(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    use yunwei_conf::limits::{MAX_XLSX_DECOMPRESSED_BYTES, MAX_XLSX_ENTRIES};
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    if zip.len() > MAX_XLSX_ENTRIES {
        return Err(format!(
            "{} zip entries, more than the {MAX_XLSX_ENTRIES} a report may have",
            zip.len()
        ));
    }
    let too_big = || {
        format!(
            "xl/sharedStrings.xml decompresses to more than {} MiB, the limit for a report",
            MAX_XLSX_DECOMPRESSED_BYTES / (1024 * 1024)
        )
    };
    let Ok(f) = zip.by_name("xl/sharedStrings.xml") else {
        return Ok(None);
    };
    if f.size() > MAX_XLSX_DECOMPRESSED_BYTES {
        return Err(too_big());
    }
    // The declared size may lie: read one byte past the limit at most.
    let mut raw = Vec::new();
    f.take(MAX_XLSX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    if raw.len() as u64 > MAX_XLSX_DECOMPRESSED_BYTES {
        return Err(too_big());
    }
    let text =
        String::from_utf8(raw).map_err(|_| "xl/sharedStrings.xml is not UTF-8".to_string())?;
    let mut chunks: Vec<(u32, &str)> = Vec::new();
    for (at, _) in text.match_indices(CHUNK_PREFIX) {
        let rest = &text[at + CHUNK_PREFIX.len()..];
        let end = rest.find('<').unwrap_or(rest.len());
        let Some((n, data)) = rest[..end].split_once(':') else {
            return Err("malformed data chunk".into());
        };
        let n: u32 = n
            .parse()
            .map_err(|_| "malformed data chunk number".to_string())?;
        chunks.push((n, data));
    }
    if chunks.is_empty() {
        return Ok(None);
    }
    chunks.sort_by_key(|c| c.0);
    if chunks.iter().enumerate().any(|(i, c)| c.0 as usize != i) {
        return Err("data chunks missing or repeated".into());
    }
    let joined: String = chunks.iter().map(|c| c.1).collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .map(Some)
        .map_err(|e| format!("data is not base64: {e}"))
}

/// True when two workbooks hold the same content (byte-identical files).
pub fn same_content(a: &[u8], b: &[u8]) -> bool {
    a == b
}
