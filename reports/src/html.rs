//! Self-contained HTML: one file with inline CSS and inline SVG charts, no external resources,
//! styled like a filed government document (title block, 甲方/乙方, bordered tables, page
//! numbers in print). The signed envelope is embedded in
//! `<script type="application/json" id="yunwei-report">`, so the file verifies on its own.

use std::fmt::Write as _;

use crate::i18n::{self, *};
use crate::integrity::SignedReport;
use crate::model::*;

/// Id of the script element that carries the signed JSON.
pub const SCRIPT_ID: &str = "yunwei-report";

/// Opening tag of the embedded JSON (what `verify` looks for).
pub const SCRIPT_OPEN: &str = r#"<script type="application/json" id="yunwei-report">"#;

/// Renders the report as one HTML file.
pub fn render(signed: &SignedReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    out.write_all(render_string(signed).as_bytes())
}

/// Renders the report as an HTML string.
pub fn render_string(signed: &SignedReport) -> String {
    let mut h = Html {
        s: String::with_capacity(64 * 1024),
        r: &signed.report,
        lang: signed.report.cover.lang,
        off: signed.report.cover.utc_offset_minutes,
    };
    h.document(signed);
    h.s
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
:root{--ink:#111;--rule:#333;--red:#b3121b;--muted:#555;--ok:#1d6b33;--bad:#b3121b;--grid:#bbb}
*{box-sizing:border-box}
body{margin:0;background:#e9e9e9;color:var(--ink);font:15px/1.7 "Songti SC","SimSun","Noto Serif CJK SC","Source Han Serif SC",serif}
.doc{width:210mm;margin:12px auto;background:#fff;padding:22mm 20mm;box-shadow:0 0 6px rgba(0,0,0,.2)}
h1,h2,h3,th,.label{font-family:"Heiti SC","SimHei","Noto Sans CJK SC","Source Han Sans SC",sans-serif}
.redhead{text-align:center;color:var(--red);font-size:26px;letter-spacing:4px;font-weight:bold;border-bottom:3px solid var(--red);padding-bottom:6px;margin:0 0 4px}
.docno{text-align:center;color:var(--muted);font-size:13px;margin-bottom:26px}
h1{text-align:center;font-size:24px;margin:18px 0 4px}
.subtitle{text-align:center;font-size:16px;margin:0 0 20px}
.stamp{display:inline-block;border:2px solid var(--red);color:var(--red);padding:0 8px;font-size:13px;margin-left:8px;vertical-align:middle}
h2{font-size:18px;margin:26px 0 8px;border-left:5px solid var(--red);padding-left:8px;break-after:avoid}
h3{font-size:15px;margin:14px 0 6px}
table{width:100%;border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid var(--rule);padding:3px 6px;vertical-align:top}
th{background:#f0f0f0;font-weight:bold;text-align:center}
td.k{white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.meta th{width:24%;text-align:left}
tr{break-inside:avoid}
thead{display:table-header-group}
.bad{color:var(--bad);font-weight:bold}
.ok{color:var(--ok)}
.big{font-size:30px;font-weight:bold}
.note{color:var(--muted);font-size:12px}
.chart{margin:6px 0 12px}
.chart svg{width:100%;height:auto;font-family:sans-serif}
.mono{font-family:"DejaVu Sans Mono",monospace;font-size:11px;word-break:break-all}
.sign{margin-top:34px;display:flex;justify-content:space-between}
.sign div{width:45%}
footer{margin-top:30px;border-top:1px solid var(--rule);padding-top:4px;font-size:12px;color:var(--muted);text-align:center}
@page{size:A4;margin:18mm 16mm 20mm;@bottom-center{content:counter(page) " / " counter(pages);font-size:10pt}}
@media print{body{background:#fff}.doc{width:auto;margin:0;padding:0;box-shadow:none}h2{break-before:auto}.pb{break-before:page}footer{display:none}}
"#;

struct Html<'a> {
    s: String,
    r: &'a Report,
    lang: Lang,
    off: i32,
}

impl Html<'_> {
    fn t<'b>(&self, zh: &'b str, en: &'b str) -> &'b str {
        self.lang.pick(zh, en)
    }

    fn push(&mut self, s: &str) {
        self.s.push_str(s);
    }

    fn row(&mut self, cells: &[Cell]) {
        self.push("<tr>");
        for c in cells {
            match c {
                Cell::T(s) if s.chars().count() <= 6 => {
                    let _ = write!(self.s, "<td class=\"k\">{}</td>", esc(s));
                }
                Cell::T(s) => {
                    let _ = write!(self.s, "<td>{}</td>", esc(s));
                }
                Cell::N(s) => {
                    let _ = write!(self.s, "<td class=\"n\">{}</td>", esc(s));
                }
                Cell::Flag(s, good) => {
                    let class = if *good { "ok" } else { "bad" };
                    let _ = write!(self.s, "<td class=\"{class}\">{}</td>", esc(s));
                }
            }
        }
        self.push("</tr>\n");
    }

    fn head(&mut self, cols: &[&str]) {
        self.push("<table><thead><tr>");
        for c in cols {
            let _ = write!(self.s, "<th>{}</th>", esc(c));
        }
        self.push("</tr></thead><tbody>\n");
    }

    fn end_table(&mut self) {
        self.push("</tbody></table>\n");
    }

    fn h2(&mut self, n: usize, zh: &str, en: &str) {
        let text = section(self.lang, n, zh, en);
        let _ = writeln!(self.s, "<h2>{}</h2>", esc(&text));
    }

    fn none(&mut self) {
        let text = self.t("本期无。", "None in this period.").to_string();
        let _ = writeln!(self.s, "<p class=\"note\">{}</p>", esc(&text));
    }

    fn document(&mut self, signed: &SignedReport) {
        let r = self.r;
        let title = i18n::title(r);
        let _ = write!(
            self.s,
            "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"generator\" content=\"yunwei\">\n<title>{} {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<div class=\"doc\">\n",
            self.lang.tag(),
            esc(&r.cover.contract_name),
            esc(&title)
        );
        self.cover(&title);
        self.summary();
        self.availability();
        self.incidents();
        self.adjustments();
        self.lifecycle();
        self.inspections();
        self.resources();
        self.alerts();
        self.exclusions();
        self.completeness();
        self.appendix(signed);
        let _ = writeln!(
            self.s,
            "<footer>{} · {} · {} {}</footer>",
            esc(&r.cover.contract_id),
            esc(&r.cover.period.label),
            esc(self.t("报告摘要 SHA-256", "Report SHA-256")),
            esc(&signed.integrity.sha256[..16])
        );
        // The envelope, with '<' escaped so no string inside can close the script element.
        let json = String::from_utf8_lossy(signed.envelope_json()).replace('<', "\\u003c");
        let _ = write!(
            self.s,
            "</div>\n{SCRIPT_OPEN}{json}</script>\n</body>\n</html>\n"
        );
    }

    fn cover(&mut self, title: &str) {
        let r = self.r;
        let c = &r.cover;
        let _ = write!(
            self.s,
            "<div class=\"redhead\">{}</div>\n<div class=\"docno\">{} {} · {}</div>\n<h1>{}{}</h1>\n<p class=\"subtitle\">{}</p>\n",
            esc(&c.party_a),
            esc(self.t("合同编号", "Contract no.")),
            esc(&c.contract_id),
            esc(&match self.lang {
                Lang::ZhCn => format!("第 {} 版", c.version),
                Lang::En => format!("version {}", c.version),
            }),
            esc(title),
            if c.provisional {
                format!(
                    "<span class=\"stamp\">{}</span>",
                    esc(self.t("暂定", "PROVISIONAL"))
                )
            } else {
                String::new()
            },
            esc(&c.contract_name),
        );
        self.push("<table class=\"meta\"><tbody>\n");
        let end_inclusive = c.period.end_ms - 1;
        let rows: Vec<(String, String)> = vec![
            (
                self.t("甲方（委托单位）", "Party A (client)").into(),
                c.party_a.clone(),
            ),
            (
                self.t("乙方（运维单位）", "Party B (O&M provider)").into(),
                c.party_b.clone(),
            ),
            (
                self.t("合同编号", "Contract no.").into(),
                c.contract_id.clone(),
            ),
            (
                self.t("考核周期", "Assessment period").into(),
                format!(
                    "{} {}",
                    c.period.label,
                    period_kind(self.lang, c.period.kind)
                ),
            ),
            (
                self.t("起止时间", "From – to").into(),
                format!(
                    "{} — {}",
                    datetime(c.period.start_ms, self.off),
                    datetime(end_inclusive, self.off)
                ),
            ),
            (
                self.t("时区", "Time zone").into(),
                format!("{} ({})", c.time_zone, offset_label(self.off)),
            ),
            (
                self.t("生成时间", "Generated at").into(),
                datetime(c.generated_at_ms, self.off),
            ),
            (
                self.t("数据完整率", "Data completeness").into(),
                pct(c.data_completeness_pct),
            ),
            (
                self.t("报告状态", "Status").into(),
                match (&self.r.lifecycle, c.provisional) {
                    (Some(l), _) => stage(self.lang, l.stage).into(),
                    (None, true) => self
                        .t(
                            "暂定（周期未结束、申诉期内或有故障尚未恢复，见附录说明）",
                            "provisional (period open, appeal window running or incidents still open; see the notes in the appendix)",
                        )
                        .into(),
                    (None, false) => self.t("正式", "final").into(),
                },
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(self.s, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
        }
        self.push("</tbody></table>\n");
    }

    fn summary(&mut self) {
        let s = &self.r.summary;
        self.h2(1, "考核结果摘要", "Summary");
        let _ = write!(
            self.s,
            "<table class=\"meta\"><tbody>\n<tr><th>{}</th><td><span class=\"big\">{}</span> {} · {} <b>{}</b></td></tr>\n",
            esc(self.t("考核得分", "Assessment score")),
            esc(&s.score.fmt_dp(1)),
            esc(self.t("分", "points")),
            esc(self.t("等级", "grade")),
            esc(&summary_grade(self.lang, s)),
        );
        let calc = format!(
            "{} − {} + {} = {}",
            s.base_score.fmt_dp(1),
            s.deductions_total.fmt_dp(1),
            s.bonuses_total.fmt_dp(1),
            s.score.fmt_dp(1)
        );
        let _ = writeln!(
            self.s,
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(self.t("计算", "Calculation")),
            esc(&match self.lang {
                Lang::ZhCn => format!("基础分 − 扣分 + 加分：{calc}"),
                Lang::En => format!("base − deductions + bonuses: {calc}"),
            })
        );
        let p = &s.payment;
        let mut pay = format!(
            "{} {}",
            self.t("应付比例", "payable share"),
            payable_share(self.lang, p)
        );
        if let (Some(fee), Some(due)) = (p.fee_cents, p.payable_cents) {
            let text = match self.lang {
                Lang::ZhCn => format!("；当期服务费 {} 元，应付 {} 元", yuan(fee), yuan(due)),
                Lang::En => format!("; period fee CNY {}, payable CNY {}", yuan(fee), yuan(due)),
            };
            pay.push_str(&text);
        }
        let _ = write!(
            self.s,
            "<tr><th>{}</th><td>{}<br><span class=\"note\">{}{}</span></td></tr>\n</tbody></table>\n",
            esc(self.t("付款影响", "Payment effect")),
            esc(&pay),
            esc(self.t("合同规则：", "Contract rule: ")),
            esc(&p.rule)
        );
        if !s.trend.is_empty() {
            let _ = writeln!(
                self.s,
                "<h3>{}</h3>",
                esc(self.t("得分趋势", "Score trend"))
            );
            self.chart(charts::score_trend(self.r, self.lang));
            self.head(&[
                self.t("周期", "Period"),
                self.t("得分", "Score"),
                self.t("等级", "Grade"),
            ]);
            let lang = self.lang;
            for p in &s.trend {
                self.row(&[
                    Cell::T(p.period.clone()),
                    Cell::N(p.score.fmt_dp(1)),
                    Cell::T(p.grade.label(lang).into()),
                ]);
            }
            self.end_table();
        }
    }

    fn availability(&mut self) {
        let lang = self.lang;
        self.h2(2, "系统可用率", "Availability per system");
        let _ = writeln!(
            self.s,
            "<p class=\"note\">{}</p>",
            esc(self.t(
                "可用率 =（服务时段分钟数 − 不可用分钟数）/ 服务时段分钟数；批准的排除时段不计入不可用；数据缺失时段既不计为可用也不计为不可用。",
                "Availability = (window minutes − downtime) / window minutes; approved exclusions are not downtime; minutes without data count as neither up nor down."
            ))
        );
        if self.r.availability.is_empty() {
            return self.none();
        }
        self.chart(charts::availability_bars(self.r, lang));
        self.chart(charts::daily_trend(self.r, lang));
        self.head(&[
            self.t("系统", "System"),
            self.t("等级", "Tier"),
            self.t("服务时段", "Window"),
            self.t("目标", "Target"),
            self.t("实际可用率", "Availability"),
            self.t("时段分钟", "Window min"),
            self.t("不可用分钟", "Downtime min"),
            self.t("排除分钟", "Excluded min"),
            self.t("数据缺失分钟", "Missing-data min"),
            self.t("结论", "Result"),
        ]);
        for a in &self.r.availability {
            self.row(&[
                Cell::T(a.name.clone()),
                Cell::T(tier(lang, &a.tier)),
                Cell::T(a.window.clone()),
                Cell::N(pct(a.target_pct)),
                Cell::N(availability_actual(lang, a)),
                Cell::N(a.window_minutes.to_string()),
                Cell::N(minutes(a.downtime_minutes)),
                Cell::N(minutes(a.excluded_minutes)),
                Cell::N(minutes(a.missing_minutes)),
                {
                    let (text, ok) = availability_result(lang, a);
                    Cell::Flag(text.into(), ok)
                },
            ]);
        }
        self.end_table();
        if let Some(note) = decided_by_note(lang, self.r) {
            let _ = writeln!(self.s, "<p class=\"note\">{}</p>", esc(&note));
        }
        self.disagreements();
    }

    /// Spans in which the agents and the server's own probes disagree; nothing when none.
    fn disagreements(&mut self) {
        if self.r.disagreements.is_empty() {
            return;
        }
        let _ = writeln!(
            self.s,
            "<h3>{}</h3>",
            esc(self.t(
                "独立拨测与代理结论不一致",
                "Independent probes disagreeing with the agents"
            ))
        );
        let _ = writeln!(
            self.s,
            "<p class=\"note\">{}</p>",
            esc(self.t(
                "服务端（采购方视角）自行拨测的结果与运维方代理的结论相反的时段：代理判为正常而服务端判为中断，或相反。",
                "Spans in which the server's own probes (the office's vantage) and the vendor's agents reach opposite results: the agents say up and the server down, or the reverse."
            ))
        );
        self.head(&[
            self.t("系统", "System"),
            self.t("服务端拨测", "Server probe"),
            self.t("开始", "From"),
            self.t("结束", "To"),
            self.t("代理结论", "Agents"),
            self.t("服务端结论", "Server"),
            self.t("分钟", "Minutes"),
            self.t("证据编号", "Evidence"),
        ]);
        let (up, down) = (self.t("正常", "up"), self.t("中断", "down"));
        let rows: Vec<[Cell; 8]> = self
            .r
            .disagreements
            .iter()
            .map(|d| {
                let (agents, server) = if d.agents_up { (up, down) } else { (down, up) };
                [
                    Cell::T(d.system.clone()),
                    Cell::T(d.probe.clone()),
                    Cell::T(datetime(d.from_ms, self.off)),
                    Cell::T(datetime(d.to_ms, self.off)),
                    Cell::T(agents.to_string()),
                    Cell::Flag(server.to_string(), !d.agents_up),
                    Cell::N(minutes(d.minutes)),
                    Cell::T(d.evidence.join(", ")),
                ]
            })
            .collect();
        for r in &rows {
            self.row(r);
        }
        self.end_table();
    }

    fn incidents(&mut self) {
        let lang = self.lang;
        self.h2(3, "故障处置", "Incidents");
        if self.r.incidents.is_empty() {
            return self.none();
        }
        self.chart(charts::incident_timeline(self.r, lang));
        self.head(&[
            self.t("编号", "ID"),
            self.t("等级", "Level"),
            self.t("故障描述", "Title"),
            self.t("系统", "System"),
            self.t("发现时间", "Detected"),
            self.t("响应（实际/目标 分钟）", "Response (actual/target min)"),
            self.t("到场（实际/目标 分钟）", "On site (actual/target min)"),
            self.t("恢复（实际/目标 分钟）", "Restore (actual/target min)"),
        ]);
        for i in &self.r.incidents {
            let clock = |c: &Clock| -> Cell {
                let text = match (c.actual_minutes, c.target_minutes) {
                    (None, None) => "—".to_string(),
                    (a, t) => format!(
                        "{} / {} {}",
                        a.map_or("—".into(), minutes),
                        t.map_or("—".into(), |t| t.to_string()),
                        met(lang, c.met)
                    ),
                };
                Cell::Flag(text, c.met != Some(false))
            };
            self.row(&[
                Cell::T(i.id.clone()),
                Cell::T(level(lang, i.level)),
                Cell::T(i.title.clone()),
                Cell::T(i.system.clone()),
                Cell::T(datetime(i.detected_ms, self.off)),
                clock(&i.response),
                clock(&i.on_site),
                clock(&i.restore),
            ]);
        }
        self.end_table();
        self.incident_requests();
    }

    /// Backdated clocks and downgrades of the incidents above, with their review; nothing
    /// when there are none.
    fn incident_requests(&mut self) {
        let lang = self.lang;
        if self.r.incident_requests.is_empty() {
            return;
        }
        let _ = writeln!(
            self.s,
            "<h3>{}</h3>",
            esc(self.t("时间补录与降级审批", "Backdated clocks and downgrades"))
        );
        let _ = writeln!(
            self.s,
            "<p class=\"note\">{}</p>",
            esc(self.t(
                "早于记录时间 5 分钟以上的时间戳与等级下调须经审批后生效；未批准前按记录时间（原等级）计算。",
                "A stamp more than 5 minutes earlier than its recording, and a level downgrade, count only once approved; until then the recorded time (the old level) counts."
            ))
        );
        self.head(&[
            self.t("故障编号", "Incident"),
            self.t("时钟", "Clock"),
            self.t("记录时间", "Recorded"),
            self.t("申报时间/等级", "Claimed"),
            self.t("申请人", "Requested by"),
            self.t("审批人", "Approved by"),
            self.t("审批时间", "Decided"),
            self.t("状态", "Status"),
            self.t("理由", "Reason"),
            self.t("证据编号", "Evidence"),
        ]);
        for q in &self.r.incident_requests {
            self.row(&[
                Cell::T(q.incident.clone()),
                Cell::T(request_subject(lang, q)),
                Cell::T(datetime(q.recorded_ms, self.off)),
                Cell::T(request_claim(q, |ms| datetime(ms, self.off))),
                Cell::T(q.requested_by.clone()),
                Cell::T(q.reviewed_by.clone().unwrap_or_else(|| "—".into())),
                Cell::T(
                    q.reviewed_ms
                        .map_or_else(|| "—".into(), |ms| datetime(ms, self.off)),
                ),
                Cell::Flag(
                    request_status(lang, q.status).into(),
                    q.status != RequestStatus::Pending,
                ),
                Cell::T(q.reason.clone()),
                Cell::T(q.id.clone()),
            ]);
        }
        self.end_table();
    }

    /// Appeals and their review, then the sign-off record (contracts with a lifecycle).
    fn lifecycle(&mut self) {
        let lang = self.lang;
        let Some(l) = &self.r.lifecycle else {
            return;
        };
        let _ = writeln!(
            self.s,
            "<h3>{}</h3>",
            esc(self.t("申诉与复核", "Appeals and review"))
        );
        let deadlines = format!(
            "{}{} {}{}",
            self.t("申诉截止：", "Appeals until: "),
            l.appeal_deadline_ms
                .map_or_else(|| "—".into(), |ms| datetime(ms, self.off)),
            self.t("复核与签认截止：", "Review and sign-off until: "),
            l.review_deadline_ms
                .map_or_else(|| "—".into(), |ms| datetime(ms, self.off)),
        );
        let _ = writeln!(self.s, "<p class=\"note\">{}</p>", esc(&deadlines));
        if l.appeals.is_empty() {
            self.none();
        } else {
            self.head(&[
                self.t("申诉内容", "Appealed"),
                self.t("申诉人", "Appellant"),
                self.t("申诉时间", "Filed"),
                self.t("理由", "Reason"),
                self.t("附件", "Attachments"),
                self.t("复核结论", "Decision"),
                self.t("复核人", "Reviewer"),
                self.t("复核时间", "Decided"),
                self.t("得分影响", "Score effect"),
                self.t("证据编号", "Evidence"),
            ]);
            for a in &l.appeals {
                self.row(&[
                    Cell::T(a.target.clone()),
                    Cell::T(a.filed_by.clone()),
                    Cell::T(datetime(a.filed_ms, self.off)),
                    Cell::T(a.reason.clone()),
                    Cell::T(a.attachments.join(", ")),
                    Cell::Flag(appeal_decision(lang, a), a.status != AppealStatus::Pending),
                    Cell::T(a.decided_by.clone().unwrap_or_else(|| "—".into())),
                    Cell::T(
                        a.decided_ms
                            .map_or_else(|| "—".into(), |ms| datetime(ms, self.off)),
                    ),
                    Cell::N(format!("+{}", a.effect.fmt_dp(1))),
                    Cell::T(a.id.clone()),
                ]);
            }
            self.end_table();
        }
        let _ = writeln!(
            self.s,
            "<h3>{}</h3>",
            esc(self.t("签认记录", "Sign-off record"))
        );
        if l.signoffs.is_empty() {
            let text = self.t("尚无签认。", "Not signed off yet.").to_string();
            let _ = writeln!(self.s, "<p class=\"note\">{}</p>", esc(&text));
            return;
        }
        self.head(&[
            self.t("签认方", "Party"),
            self.t("签认人", "Signed by"),
            self.t("签认时间", "Signed at"),
            self.t("所签版本", "Version signed"),
        ]);
        for g in &l.signoffs {
            self.row(&[
                Cell::T(signoff_role(lang, &g.role)),
                Cell::T(g.signed_by.clone()),
                Cell::T(datetime(g.signed_ms, self.off)),
                Cell::N(format!("v{}", g.version)),
            ]);
        }
        self.end_table();
    }

    fn adjustments(&mut self) {
        let lang = self.lang;
        self.h2(4, "扣分与加分明细", "Deductions and bonuses");
        if self.r.adjustments.is_empty() {
            return self.none();
        }
        self.head(&[
            self.t("类别", "Kind"),
            self.t("考核项", "Item"),
            self.t("分值", "Points"),
            self.t("计算过程", "Arithmetic"),
            self.t("证据编号", "Evidence"),
        ]);
        for a in &self.r.adjustments {
            let sign = if a.kind == AdjustmentKind::Deduction {
                "−"
            } else {
                "+"
            };
            self.row(&[
                Cell::T(adjustment(lang, a.kind).into()),
                Cell::T(a.item.clone()),
                Cell::N(format!("{sign}{}", a.points.fmt_dp(1))),
                Cell::T(a.arithmetic.clone()),
                Cell::T(a.evidence.join(", ")),
            ]);
        }
        self.end_table();
    }

    fn inspections(&mut self) {
        let lang = self.lang;
        self.h2(5, "例行巡检", "Routine inspections");
        if self.r.inspections.is_empty() {
            return self.none();
        }
        self.head(&[
            self.t("巡检项目", "Inspection"),
            self.t("应完成时间", "Due"),
            self.t("实际完成时间", "Done"),
            self.t("状态", "Status"),
            self.t("证据编号", "Evidence"),
        ]);
        for i in &self.r.inspections {
            self.row(&[
                Cell::T(i.name.clone()),
                Cell::T(datetime(i.due_ms, self.off)),
                Cell::T(i.done_ms.map_or("—".into(), |t| datetime(t, self.off))),
                Cell::Flag(
                    inspection(lang, i.status).into(),
                    i.status == InspectionStatus::Done,
                ),
                Cell::T(i.evidence.join(", ")),
            ]);
        }
        self.end_table();
    }

    fn resources(&mut self) {
        self.h2(6, "资源使用与容量", "Resource use and capacity");
        let res = &self.r.resources;
        if res.hosts.is_empty() {
            self.none();
        } else {
            self.chart(charts::resource_p95(self.r, self.lang));
            self.head(&[
                self.t("主机", "Host"),
                self.t("系统", "System"),
                self.t("CPU P95", "CPU p95"),
                self.t("内存 P95", "Memory p95"),
                self.t("磁盘 P95", "Disk p95"),
            ]);
            for h in &res.hosts {
                self.row(&[
                    Cell::T(h.host.clone()),
                    Cell::T(h.system.clone()),
                    Cell::N(opt_pct(h.cpu_p95_pct, 1)),
                    Cell::N(opt_pct(h.memory_p95_pct, 1)),
                    Cell::N(opt_pct(h.disk_p95_pct, 1)),
                ]);
            }
            self.end_table();
        }
        let _ = writeln!(
            self.s,
            "<h3>{}</h3>",
            esc(self.t("预计写满的磁盘", "Disks forecast to fill"))
        );
        if res.disks_filling.is_empty() {
            return self.none();
        }
        self.head(&[
            self.t("主机", "Host"),
            self.t("挂载点", "Mount"),
            self.t("当前使用率", "Used"),
            self.t("预计写满日期", "Full on"),
        ]);
        for d in &res.disks_filling {
            self.row(&[
                Cell::T(d.host.clone()),
                Cell::T(d.mount.clone()),
                Cell::N(pct(d.used_pct)),
                Cell::Flag(d.full_on.clone(), false),
            ]);
        }
        self.end_table();
    }

    fn alerts(&mut self) {
        let lang = self.lang;
        let a = &self.r.alerts;
        self.h2(7, "告警统计", "Alert statistics");
        let mut line = match lang {
            Lang::ZhCn => format!("告警总数 {} 条", a.total),
            Lang::En => format!("{} alerts in total", a.total),
        };
        let _ = write!(
            line,
            "; MTTA {} {}; MTTR {} {}",
            a.mtta_minutes.map_or("—".into(), minutes),
            self.t("分钟", "min"),
            a.mttr_minutes.map_or("—".into(), minutes),
            self.t("分钟", "min"),
        );
        if lang == Lang::ZhCn {
            line = line.replace("; ", "；");
        }
        let _ = writeln!(self.s, "<p>{}</p>", esc(&line));
        self.head(&[self.t("级别", "Severity"), self.t("数量", "Count")]);
        for s in &a.by_severity {
            self.row(&[
                Cell::T(severity(lang, &s.severity)),
                Cell::N(s.count.to_string()),
            ]);
        }
        self.end_table();
        let _ = writeln!(
            self.s,
            "<h3>{}</h3>",
            esc(self.t("告警最多的规则", "Noisiest rules"))
        );
        if a.noisiest.is_empty() {
            return self.none();
        }
        self.head(&[self.t("规则", "Rule"), self.t("触发次数", "Firings")]);
        for n in &a.noisiest {
            self.row(&[Cell::T(n.rule.clone()), Cell::N(n.count.to_string())]);
        }
        self.end_table();
    }

    fn exclusions(&mut self) {
        let lang = self.lang;
        self.h2(8, "可用率排除申请", "Exclusions");
        if self.r.exclusions.is_empty() {
            return self.none();
        }
        self.head(&[
            self.t("编号", "ID"),
            self.t("系统", "System"),
            self.t("事由", "Reason"),
            self.t("时段", "Interval"),
            self.t("申报时间", "Filed"),
            self.t("分钟", "Minutes"),
            self.t("审批结果", "Decision"),
        ]);
        for e in &self.r.exclusions {
            self.row(&[
                Cell::T(e.id.clone()),
                Cell::T(e.system.clone()),
                Cell::T(e.reason.clone()),
                Cell::T(format!(
                    "{} — {}",
                    datetime(e.start_ms, self.off),
                    datetime(e.end_ms, self.off)
                )),
                Cell::T(datetime(e.filed_ms, self.off)),
                Cell::N(minutes(e.minutes)),
                Cell::Flag(
                    exclusion(lang, e.status).into(),
                    e.status == ExclusionStatus::Approved,
                ),
            ]);
        }
        self.end_table();
    }

    fn completeness(&mut self) {
        let c = &self.r.completeness;
        self.h2(9, "数据完整性", "Data completeness");
        let line = match self.lang {
            Lang::ZhCn => format!(
                "整体数据完整率 {}。数据缺失责任方：{}",
                pct(c.overall_pct),
                c.borne_by
            ),
            Lang::En => format!(
                "Overall completeness {}. Missing data is borne by: {}",
                pct(c.overall_pct),
                c.borne_by
            ),
        };
        let _ = writeln!(self.s, "<p>{}</p>", esc(&line));
        self.head(&[
            self.t("系统", "System"),
            self.t("完整率", "Completeness"),
            self.t("缺失分钟", "Missing min"),
        ]);
        for s in &c.systems {
            self.row(&[
                Cell::T(s.system.clone()),
                Cell::N(completeness_pct(self.lang, s)),
                Cell::N(minutes(s.missing_minutes)),
            ]);
        }
        self.end_table();
    }

    fn appendix(&mut self, signed: &SignedReport) {
        let lang = self.lang;
        self.push("<div class=\"pb\"></div>\n");
        self.h2(
            10,
            "附录：证据清单与完整性校验",
            "Appendix: evidence and integrity",
        );
        self.head(&[
            self.t("证据编号", "Evidence ID"),
            self.t("类型", "Kind"),
            self.t("摘要", "Summary"),
            self.t("时间范围", "Time range"),
        ]);
        for e in &self.r.evidence {
            self.row(&[
                Cell::T(e.id.clone()),
                Cell::T(evidence_kind(lang, &e.kind)),
                Cell::T(e.summary.clone()),
                Cell::T(format!(
                    "{} — {}",
                    datetime(e.start_ms, self.off),
                    datetime(e.end_ms, self.off)
                )),
            ]);
        }
        self.end_table();
        let i = &signed.integrity;
        let _ = write!(
            self.s,
            "<h3>{}</h3>\n<table class=\"meta\"><tbody>\n",
            esc(self.t("完整性校验", "Integrity"))
        );
        for (k, v) in [
            (
                self.t("算法", "Algorithm"),
                format!("SHA-256 + {}", "Ed25519"),
            ),
            (
                self.t("报告摘要（SHA-256）", "Report digest (SHA-256)"),
                i.sha256.clone(),
            ),
            (
                self.t("签名（Ed25519）", "Signature (Ed25519)"),
                i.signature.clone(),
            ),
            (self.t("签名密钥标识", "Signing key id"), i.key_id.clone()),
        ] {
            let _ = writeln!(
                self.s,
                "<tr><th>{}</th><td class=\"mono\">{}</td></tr>",
                esc(k),
                esc(&v)
            );
        }
        let _ = write!(
            self.s,
            "</tbody></table>\n<p class=\"note\">{}</p>\n",
            esc(self.t(
                "本文件内嵌经签名的报告数据（JSON）。可使用 yunwei-server report verify 命令与服务器公钥校验签名，并核对页面数字与签名数据一致。",
                "This file embeds the signed report data (JSON). Run yunwei-server report verify with the server's public key to check the signature and that the figures shown match the signed data."
            ))
        );
        let _ = writeln!(
            self.s,
            "<div class=\"sign\"><div>{}<br><br>{}</div><div>{}<br><br>{}</div></div>",
            esc(self.t("甲方（盖章）：", "Party A (seal):")),
            esc(self.t("日期：", "Date:")),
            esc(self.t("乙方（盖章）：", "Party B (seal):")),
            esc(self.t("日期：", "Date:")),
        );
    }

    fn chart(&mut self, svg: String) {
        let _ = writeln!(self.s, "<div class=\"chart\">{svg}</div>");
    }
}

enum Cell {
    /// Text.
    T(String),
    /// Number (right-aligned).
    N(String),
    /// Coloured outcome: good or bad.
    Flag(String, bool),
}

/// Inline SVG charts (shared with nothing: the PDF draws its own).
pub mod charts {
    use std::fmt::Write as _;

    use super::esc;
    use crate::i18n::{self, level};
    use crate::model::*;

    const W: f64 = 680.0;

    fn svg_open(h: f64, title: &str) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"{t}\"><text x=\"{x}\" y=\"16\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">{t}</text>",
            x = W / 2.0,
            t = esc(title)
        )
    }

    /// Horizontal bars of actual availability per system, with each system's target marked.
    pub fn availability_bars(r: &Report, lang: Lang) -> String {
        let rows: Vec<&SystemAvailability> = worst(r, 12);
        let lo = rows
            .iter()
            .flat_map(|a| [a.actual_pct.unwrap_or(a.target_pct), a.target_pct])
            .min()
            .unwrap_or(Fixed::int(99));
        // Axis from a round value below the lowest figure up to 100%.
        let lo = ((lo.0 - 100).max(0) / 500 * 500).min(99_000);
        let (x0, x1) = (190.0, W - 20.0);
        let sx =
            |v: Fixed| x0 + (v.0 - lo).max(0) as f64 / (100_000 - lo).max(1) as f64 * (x1 - x0);
        let h = 50.0 + rows.len() as f64 * 26.0 + 26.0;
        let mut s = svg_open(
            h,
            lang.pick(
                "各系统可用率（柱）与目标（红线）",
                "Availability per system (bars) vs target (red line)",
            ),
        );
        for k in 0..=4 {
            let v = Fixed(lo + (100_000 - lo) * k / 4);
            let x = sx(v);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"30\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ccc\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}%</text>",
                h - 22.0,
                h - 8.0,
                v.fmt_dp(2)
            );
        }
        for (i, a) in rows.iter().enumerate() {
            let y = 36.0 + i as f64 * 26.0;
            let color = if a.met { "#4a6fa5" } else { "#b3121b" };
            let label: String = a.name.chars().take(14).collect();
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
                x0 - 6.0,
                y + 13.0,
                esc(&label)
            );
            if let Some(v) = a.actual_pct {
                let _ = write!(
                    s,
                    "<rect x=\"{x0}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"18\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#fff\" text-anchor=\"end\">{}</text>",
                    (sx(v) - x0).max(0.0),
                    (sx(v) - 4.0).max(x0 + 40.0),
                    y + 13.0,
                    i18n::pct(v)
                );
            }
            let tx = sx(a.target_pct);
            let _ = write!(
                s,
                "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#d40000\" stroke-width=\"2\"/>",
                y - 3.0,
                y + 21.0
            );
        }
        s.push_str("</svg>");
        s
    }

    /// Scores of the earlier periods and this one, as columns with the grade under each.
    pub fn score_trend(r: &Report, lang: Lang) -> String {
        let points = &r.summary.trend[r.summary.trend.len().saturating_sub(12)..];
        let (y0, y1) = (30.0, 150.0);
        let col = (W - 80.0) / points.len().max(1) as f64;
        let mut s = svg_open(190.0, lang.pick("各期考核得分", "Score per period"));
        for k in 0..=4 {
            let v = k * 25;
            let y = y1 - f64::from(v) / 100.0 * (y1 - y0);
            let _ = write!(
                s,
                "<line x1=\"60\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"54\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{v}</text>",
                W - 20.0,
                y + 3.0
            );
        }
        for (i, p) in points.iter().enumerate() {
            let h = p.score.to_f64().clamp(0.0, 100.0) / 100.0 * (y1 - y0);
            let x = 60.0 + i as f64 * col + col * 0.25;
            let last = i + 1 == points.len();
            let color = if last { "#b3121b" } else { "#4a6fa5" };
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{} {}</text>",
                y1 - h,
                col * 0.5,
                x + col * 0.25,
                y1 - h - 4.0,
                p.score.fmt_dp(1),
                x + col * 0.25,
                y1 + 16.0,
                esc(&p.period),
                esc(p.grade.label(lang))
            );
        }
        s.push_str("</svg>");
        s
    }

    /// Systems with the lowest availability first, at most `n`, in report order.
    fn worst(r: &Report, n: usize) -> Vec<&SystemAvailability> {
        if r.availability.len() <= n {
            return r.availability.iter().collect();
        }
        let mut v: Vec<(usize, &SystemAvailability)> = r.availability.iter().enumerate().collect();
        v.sort_by_key(|(i, a)| (a.actual_pct.unwrap_or(Fixed(0)).0 - a.target_pct.0, *i));
        v.truncate(n);
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, a)| a).collect()
    }

    const COLORS: [&str; 6] = [
        "#1f4e79", "#b3121b", "#2e7d32", "#a05a00", "#6a1b9a", "#00838f",
    ];

    /// Daily availability lines per system (gaps where a day had no data).
    pub fn daily_trend(r: &Report, lang: Lang) -> String {
        let rows = worst(r, 6);
        let days = rows.iter().map(|a| a.daily.len()).max().unwrap_or(0).max(2);
        let lo = rows
            .iter()
            .flat_map(|a| a.daily.iter().filter_map(|d| d.pct))
            .min()
            .unwrap_or(Fixed::int(99));
        let lo = ((lo.0 - 100).max(0) / 1000 * 1000).min(99_000);
        let (x0, x1, y0, y1) = (50.0, W - 150.0, 36.0, 216.0);
        let sx = |i: usize| x0 + i as f64 / (days - 1) as f64 * (x1 - x0);
        let sy =
            |v: Fixed| y1 - (v.0 - lo).max(0) as f64 / (100_000 - lo).max(1) as f64 * (y1 - y0);
        let mut s = svg_open(246.0, lang.pick("每日可用率趋势", "Daily availability"));
        for k in 0..=4 {
            let v = Fixed(lo + (100_000 - lo) * k / 4);
            let y = sy(v);
            let _ = write!(
                s,
                "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}%</text>",
                x0 - 4.0,
                y + 3.0,
                v.fmt_dp(1)
            );
        }
        for (i, d) in rows
            .first()
            .map_or(&[][..], |a| &a.daily[..])
            .iter()
            .enumerate()
        {
            if i % 5 == 0 || i + 1 == days {
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                    sx(i),
                    y1 + 14.0,
                    esc(d.date.get(5..).unwrap_or(&d.date))
                );
            }
        }
        for (k, a) in rows.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let mut seg = String::new();
            let flush = |seg: &mut String, s: &mut String| {
                if !seg.is_empty() {
                    let _ = write!(
                        s,
                        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\" points=\"{}\"/>",
                        seg.trim_end()
                    );
                    seg.clear();
                }
            };
            for (i, d) in a.daily.iter().enumerate() {
                match d.pct {
                    Some(v) => {
                        let _ = write!(seg, "{:.1},{:.1} ", sx(i), sy(v));
                    }
                    None => flush(&mut seg, &mut s),
                }
            }
            flush(&mut seg, &mut s);
            let label: String = a.name.chars().take(10).collect();
            let ly = y0 + 4.0 + k as f64 * 16.0;
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
                x1 + 12.0,
                ly,
                x1 + 28.0,
                ly + 4.0,
                esc(&label)
            );
        }
        s.push_str("</svg>");
        s
    }

    /// Incidents on the period's time axis: a bar from detection to restoration per incident.
    pub fn incident_timeline(r: &Report, lang: Lang) -> String {
        let p = &r.cover.period;
        let span = (p.end_ms - p.start_ms).max(1) as f64;
        let (x0, x1) = (150.0, W - 20.0);
        let sx = |ms: i64| {
            x0 + ((ms - p.start_ms).clamp(0, p.end_ms - p.start_ms)) as f64 / span * (x1 - x0)
        };
        let list: Vec<&Incident> = r.incidents.iter().take(20).collect();
        let h = 56.0 + list.len() as f64 * 22.0 + 20.0;
        let mut s = svg_open(h, lang.pick("故障时间线", "Incident timeline"));
        let axis_y = h - 24.0;
        let _ = write!(
            s,
            "<line x1=\"{x0}\" y1=\"{axis_y:.1}\" x2=\"{x1}\" y2=\"{axis_y:.1}\" stroke=\"#333\"/>"
        );
        let days = ((p.end_ms - p.start_ms) / 86_400_000).max(1);
        let step = if days > 62 { 30 } else { 5 };
        let mut d = 0;
        while d <= days {
            let ms = p.start_ms + d * 86_400_000;
            let x = sx(ms);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"30\" x2=\"{x:.1}\" y2=\"{axis_y:.1}\" stroke=\"#e3e3e3\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                axis_y + 14.0,
                i18n::date(ms, r.cover.utc_offset_minutes)
                    .get(5..)
                    .unwrap_or("")
            );
            d += step;
        }
        for (i, inc) in list.iter().enumerate() {
            let y = 36.0 + i as f64 * 22.0;
            let color = match inc.level {
                1 => "#b3121b",
                2 => "#e06000",
                3 => "#c9a000",
                _ => "#4a6fa5",
            };
            let a = sx(inc.detected_ms);
            let b = sx(inc.restored_ms.unwrap_or(p.end_ms)).max(a + 3.0);
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{} {}</text><rect x=\"{a:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"14\" fill=\"{color}\"/>",
                x0 - 6.0,
                y + 11.0,
                esc(&level(lang, inc.level)),
                esc(&inc.id),
                b - a
            );
        }
        s.push_str("</svg>");
        s
    }

    /// p95 CPU / memory / disk of the busiest hosts.
    pub fn resource_p95(r: &Report, lang: Lang) -> String {
        let mut hosts: Vec<(usize, &HostResources)> =
            r.resources.hosts.iter().enumerate().collect();
        let peak = |h: &HostResources| {
            [h.cpu_p95_pct, h.memory_p95_pct, h.disk_p95_pct]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(Fixed(0))
        };
        hosts.sort_by_key(|(i, h)| (std::cmp::Reverse(peak(h)), *i));
        hosts.truncate(12);
        let (x0, x1) = (150.0, W - 20.0);
        let sx = |v: Fixed| x0 + v.0.clamp(0, 100_000) as f64 / 100_000.0 * (x1 - x0);
        let h = 60.0 + hosts.len() as f64 * 34.0 + 20.0;
        let title = lang.pick(
            "资源使用率 P95（CPU / 内存 / 磁盘，最繁忙主机）",
            "Resource use p95 (CPU / memory / disk, busiest hosts)",
        );
        let mut s = svg_open(h, title);
        let names = [
            lang.pick("CPU", "CPU"),
            lang.pick("内存", "Memory"),
            lang.pick("磁盘", "Disk"),
        ];
        let colors = ["#1f4e79", "#2e7d32", "#a05a00"];
        for (k, (n, c)) in names.iter().zip(colors).enumerate() {
            let x = x0 + k as f64 * 90.0;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"26\" width=\"12\" height=\"8\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"34\" font-size=\"11\">{}</text>",
                x + 16.0,
                esc(n)
            );
        }
        for k in 0..=4 {
            let x = sx(Fixed(k * 25_000));
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"40\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}%</text>",
                h - 22.0,
                h - 8.0,
                k * 25
            );
        }
        let x80 = sx(Fixed::int(80));
        let _ = write!(
            s,
            "<line x1=\"{x80:.1}\" y1=\"40\" x2=\"{x80:.1}\" y2=\"{:.1}\" stroke=\"#d40000\" stroke-dasharray=\"4 3\"/>",
            h - 22.0
        );
        for (i, (_, host)) in hosts.iter().enumerate() {
            let y = 46.0 + i as f64 * 34.0;
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
                x0 - 6.0,
                y + 17.0,
                esc(&host.host)
            );
            for (k, v) in [host.cpu_p95_pct, host.memory_p95_pct, host.disk_p95_pct]
                .into_iter()
                .enumerate()
            {
                if let Some(v) = v {
                    let _ = write!(
                        s,
                        "<rect x=\"{x0}\" y=\"{:.1}\" width=\"{:.1}\" height=\"9\" fill=\"{}\"/>",
                        y + k as f64 * 10.0,
                        sx(v) - x0,
                        colors[k]
                    );
                }
            }
        }
        s.push_str("</svg>");
        s
    }
}
