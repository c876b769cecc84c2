//! The report's sections, one function each, in the order `layout` calls them: the cover
//! page, sections 1 to 9 and the appendix.

use super::*;

/// The text for `lang` out of a Chinese and an English one, owned.
fn tr(lang: Lang) -> impl Fn(&'static str, &'static str) -> String {
    move |zh, en| lang.pick(zh, en).to_string()
}

fn worst(r: &Report, n: usize) -> Vec<&SystemAvailability> {
    let mut v: Vec<(usize, &SystemAvailability)> = r.availability.iter().enumerate().collect();
    if v.len() > n {
        v.sort_by_key(|(i, a)| (a.actual_pct.unwrap_or(Fixed(0)).0 - a.target_pct.0, *i));
        v.truncate(n);
        v.sort_by_key(|(i, _)| *i);
    }
    v.into_iter().map(|(_, a)| a).collect()
}

fn pf(v: Fixed) -> f32 {
    v.to_f64() as f32
}

/// The cover page: party A, document number, title, contract, period and status.
pub(super) fn cover(l: &mut Layout, r: &Report) {
    let c = &r.cover;
    let lang = l.lang;
    let off = l.off;
    let t = tr(lang);
    l.new_page();
    l.y = 120.0;
    l.text_aligned(
        (LEFT, RIGHT - LEFT),
        l.y,
        22.0,
        RED,
        Align::Center,
        &c.party_a,
    );
    l.y += 12.0;
    l.op(Op::Line {
        x1: LEFT,
        y1: l.y,
        x2: RIGHT,
        y2: l.y,
        color: RED,
        width: 2.0,
    });
    l.y += 18.0;
    let docno = match lang {
        Lang::ZhCn => format!("合同编号 {} · 第 {} 版", c.contract_id, c.version),
        Lang::En => format!("Contract no. {} · version {}", c.contract_id, c.version),
    };
    l.text_aligned((LEFT, RIGHT - LEFT), l.y, 10.0, GREY, Align::Center, &docno);
    l.y += 90.0;
    let title = i18n::title(r);
    for line in l.wrap(&title, RIGHT - LEFT, 24.0) {
        l.text_aligned((LEFT, RIGHT - LEFT), l.y, 24.0, BLACK, Align::Center, &line);
        l.y += 34.0;
    }
    for line in l.wrap(&c.contract_name, RIGHT - LEFT, 14.0) {
        l.text_aligned((LEFT, RIGHT - LEFT), l.y, 14.0, BLACK, Align::Center, &line);
        l.y += 22.0;
    }
    let mark = match (&r.lifecycle, c.provisional) {
        (Some(lc), _) if lc.stage == Stage::Final => Some(t("（终稿）", "(FINAL)")),
        (Some(_), _) => Some(t("（初稿）", "(DRAFT)")),
        (None, true) => Some(t("（暂定）", "(PROVISIONAL)")),
        (None, false) => None,
    };
    if let Some(mark) = mark {
        l.text_aligned(
            (LEFT, RIGHT - LEFT),
            l.y + 6.0,
            14.0,
            RED,
            Align::Center,
            &mark,
        );
        l.y += 24.0;
    }
    l.y += 60.0;
    let end_inclusive = c.period.end_ms - 1;
    l.meta(&[
        (t("甲方（委托单位）", "Party A (client)"), c.party_a.clone()),
        (
            t("乙方（运维单位）", "Party B (O&M provider)"),
            c.party_b.clone(),
        ),
        (
            t("考核周期", "Assessment period"),
            format!("{} {}", c.period.label, period_kind(lang, c.period.kind)),
        ),
        (
            t("起止时间", "From – to"),
            format!(
                "{} — {}",
                datetime(c.period.start_ms, off),
                datetime(end_inclusive, off)
            ),
        ),
        (
            t("时区", "Time zone"),
            format!("{} ({})", c.time_zone, offset_label(off)),
        ),
        (
            t("生成时间", "Generated at"),
            datetime(c.generated_at_ms, off),
        ),
        (
            t("数据完整率", "Data completeness"),
            pct(c.data_completeness_pct),
        ),
        (
            t("报告状态", "Status"),
            match (&r.lifecycle, c.provisional) {
                (Some(lc), _) => stage(lang, lc.stage).to_string(),
                (None, true) => t("暂定", "provisional"),
                (None, false) => t("正式", "final"),
            },
        ),
    ]);
}

/// Section 1: score, grade, calculation, payment effect and the score trend.
pub(super) fn summary(l: &mut Layout, r: &Report) {
    let lang = l.lang;
    let t = tr(lang);
    l.new_page();
    let s = &r.summary;
    l.h2(1, "考核结果摘要", "Summary");
    let mut pay = format!(
        "{} {}",
        t("应付比例", "payable share"),
        payable_share(lang, &s.payment)
    );
    if let (Some(fee), Some(due)) = (s.payment.fee_cents, s.payment.payable_cents) {
        pay.push_str(&match lang {
            Lang::ZhCn => format!("；当期服务费 {} 元，应付 {} 元", yuan(fee), yuan(due)),
            Lang::En => format!("; period fee CNY {}, payable CNY {}", yuan(fee), yuan(due)),
        });
    }
    l.meta(&[
        (
            t("考核得分", "Assessment score"),
            format!("{} {}", s.score.fmt_dp(1), t("分", "points")),
        ),
        (t("等级", "Grade"), summary_grade(lang, s)),
        (
            t("计算", "Calculation"),
            format!(
                "{} − {} + {} = {}",
                s.base_score.fmt_dp(1),
                s.deductions_total.fmt_dp(1),
                s.bonuses_total.fmt_dp(1),
                s.score.fmt_dp(1)
            ),
        ),
        (t("付款影响", "Payment effect"), pay),
        (
            t("合同付款规则", "Contract payment rule"),
            s.payment.rule.clone(),
        ),
    ]);
    if !s.trend.is_empty() {
        l.h3(&t("得分趋势", "Score trend"));
        let rows: Vec<Vec<String>> = s
            .trend
            .iter()
            .map(|p| {
                vec![
                    p.period.clone(),
                    p.score.fmt_dp(1),
                    p.grade.label(lang).into(),
                ]
            })
            .collect();
        l.table(
            &[
                Col(&t("周期", "Period"), 1.0, Align::Left),
                Col(&t("得分", "Score"), 1.0, Align::Right),
                Col(&t("等级", "Grade"), 1.0, Align::Left),
            ],
            &rows,
        );
    }
}

/// Section 2: availability per system (bars, daily trend, table).
pub(super) fn availability(l: &mut Layout, r: &Report) {
    let lang = l.lang;
    let t = tr(lang);
    l.h2(2, "系统可用率", "Availability per system");
    l.paragraph(
        lang.pick(
            "可用率 =（服务时段分钟数 − 不可用分钟数）/ 服务时段分钟数；批准的排除时段不计入不可用；数据缺失时段既不计为可用也不计为不可用。",
            "Availability = (window minutes − downtime) / window minutes; approved exclusions are not downtime; minutes without data count as neither up nor down.",
        ),
        8.5,
        GREY,
    );
    if r.availability.is_empty() {
        l.none();
    } else {
        let rows: Vec<_> = worst(r, 12)
            .into_iter()
            .map(|a| {
                let v = a.actual_pct.map_or(0.0, pf);
                (
                    a.name.clone(),
                    vec![(v, if a.met { BLUE } else { RED })],
                    Some(pf(a.target_pct)),
                )
            })
            .collect();
        let lo = rows
            .iter()
            .flat_map(|r| [r.1[0].0, r.2.unwrap_or(100.0)])
            .fold(100.0f32, f32::min);
        let lo = ((lo - 0.1) * 2.0).floor() / 2.0;
        l.bars(
            &t(
                "各系统可用率（柱）与目标（红线）",
                "Availability per system (bars) vs target (red line)",
            ),
            lo.clamp(0.0, 99.0),
            &rows,
            &[],
        );
        let series: Vec<_> = worst(r, 6)
            .into_iter()
            .map(|a| {
                (
                    a.name.clone(),
                    a.daily.iter().map(|d| d.pct.map(pf)).collect(),
                )
            })
            .collect();
        l.trend(
            &t(
                "每日可用率趋势（横轴：日）",
                "Daily availability (x axis: day of period)",
            ),
            &series,
        );
        let rows: Vec<Vec<String>> = r
            .availability
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    tier(lang, &a.tier),
                    a.window.clone(),
                    pct(a.target_pct),
                    availability_actual(lang, a),
                    a.window_minutes.to_string(),
                    minutes(a.downtime_minutes),
                    minutes(a.excluded_minutes),
                    minutes(a.missing_minutes),
                    availability_result(lang, a).0.into(),
                ]
            })
            .collect();
        l.table(
            &[
                Col(&t("系统", "System"), 2.2, Align::Left),
                Col(&t("等级", "Tier"), 1.0, Align::Left),
                Col(&t("时段", "Window"), 1.05, Align::Left),
                Col(&t("目标", "Target"), 1.2, Align::Right),
                Col(&t("实际可用率", "Availability"), 1.4, Align::Right),
                Col(&t("时段分钟", "Window min"), 1.05, Align::Right),
                Col(&t("不可用分钟", "Downtime min"), 1.3, Align::Right),
                Col(&t("排除分钟", "Excluded min"), 1.2, Align::Right),
                Col(&t("缺失分钟", "Missing min"), 1.05, Align::Right),
                Col(&t("结论", "Result"), 0.9, Align::Center),
            ],
            &rows,
        );
        if let Some(note) = decided_by_note(lang, r) {
            l.paragraph(&note, 8.5, GREY);
        }
    }
    disagreements(l, r);
}

/// Spans in which the agents and the server's own probes disagree; nothing when none.
fn disagreements(l: &mut Layout, r: &Report) {
    if r.disagreements.is_empty() {
        return;
    }
    let off = l.off;
    let t = tr(l.lang);
    l.h3(&t(
        "独立拨测与代理结论不一致",
        "Independent probes disagreeing with the agents",
    ));
    let (up, down) = (t("正常", "up"), t("中断", "down"));
    let rows: Vec<Vec<String>> = r
        .disagreements
        .iter()
        .map(|d| {
            let (agents, server) = if d.agents_up {
                (up.clone(), down.clone())
            } else {
                (down.clone(), up.clone())
            };
            vec![
                d.system.clone(),
                d.probe.clone(),
                datetime(d.from_ms, off),
                datetime(d.to_ms, off),
                agents,
                server,
                minutes(d.minutes),
            ]
        })
        .collect();
    l.table(
        &[
            Col(&t("系统", "System"), 2.0, Align::Left),
            Col(&t("服务端拨测", "Server probe"), 1.6, Align::Left),
            Col(&t("开始", "From"), 1.5, Align::Left),
            Col(&t("结束", "To"), 1.5, Align::Left),
            Col(&t("代理结论", "Agents"), 1.0, Align::Center),
            Col(&t("服务端结论", "Server"), 1.0, Align::Center),
            Col(&t("分钟", "Minutes"), 1.0, Align::Right),
        ],
        &rows,
    );
}

/// Section 3: the incident timeline and the incidents' clocks.
pub(super) fn incidents(l: &mut Layout, r: &Report) {
    let c = &r.cover;
    let lang = l.lang;
    let off = l.off;
    let t = tr(lang);
    l.h2(3, "故障处置", "Incidents");
    if r.incidents.is_empty() {
        l.none();
    } else {
        let span = (c.period.end_ms - c.period.start_ms).max(1) as f32;
        let rows: Vec<_> = r
            .incidents
            .iter()
            .take(15)
            .map(|i| {
                let a = (i.detected_ms - c.period.start_ms) as f32 / span * 100.0;
                let b = (i.restored_ms.unwrap_or(c.period.end_ms) - c.period.start_ms) as f32
                    / span
                    * 100.0;
                let color = match i.level {
                    1 => RED,
                    2 => Rgb(224, 96, 0),
                    3 => Rgb(201, 160, 0),
                    _ => BLUE,
                };
                (
                    format!("{} {}", level(lang, i.level), i.id),
                    vec![(b.max(a + 0.4), color)],
                    Some(a),
                )
            })
            .collect();
        l.bars(&t("故障时间线（横轴：周期进度，红线为发现时刻，柱端为恢复时刻）", "Incident timeline (x axis: share of the period; red line detected, bar end restored)"), 0.0, &rows, &[]);
        let clock = |c: &Clock| match (c.actual_minutes, c.target_minutes) {
            (None, None) => "—".to_string(),
            (a, tg) => format!(
                "{} / {}\n{}",
                a.map_or("—".into(), minutes),
                tg.map_or("—".into(), |t| t.to_string()),
                met(lang, c.met)
            ),
        };
        let rows: Vec<Vec<String>> = r
            .incidents
            .iter()
            .map(|i| {
                vec![
                    i.id.clone(),
                    level(lang, i.level),
                    i.title.clone(),
                    i.system.clone(),
                    datetime(i.detected_ms, off),
                    clock(&i.response),
                    clock(&i.on_site),
                    clock(&i.restore),
                ]
            })
            .collect();
        l.table(
            &[
                Col(&t("编号", "ID"), 2.0, Align::Left),
                Col(&t("等级", "Level"), 0.7, Align::Left),
                Col(&t("故障描述", "Title"), 2.0, Align::Left),
                Col(&t("系统", "System"), 1.1, Align::Left),
                Col(&t("发现时间", "Detected"), 1.3, Align::Left),
                Col(
                    &t("响应 实际/目标 分钟", "Response actual/target min"),
                    1.2,
                    Align::Right,
                ),
                Col(
                    &t("到场 实际/目标 分钟", "On site actual/target min"),
                    1.2,
                    Align::Right,
                ),
                Col(
                    &t("恢复 实际/目标 分钟", "Restore actual/target min"),
                    1.2,
                    Align::Right,
                ),
            ],
            &rows,
        );
    }
    incident_requests(l, r);
}

/// Backdated clocks and downgrades of the incidents, with their review; nothing when none.
fn incident_requests(l: &mut Layout, r: &Report) {
    if r.incident_requests.is_empty() {
        return;
    }
    let lang = l.lang;
    let off = l.off;
    let t = tr(lang);
    l.h3(&t("时间补录与降级审批", "Backdated clocks and downgrades"));
    let rows: Vec<Vec<String>> = r
        .incident_requests
        .iter()
        .map(|q| {
            vec![
                q.incident.clone(),
                request_subject(lang, q),
                datetime(q.recorded_ms, off),
                request_claim(q, |ms| datetime(ms, off)),
                q.requested_by.clone(),
                q.reviewed_by.clone().unwrap_or_else(|| "—".into()),
                q.reviewed_ms
                    .map_or_else(|| "—".into(), |ms| datetime(ms, off)),
                request_status(lang, q.status).to_string(),
                q.reason.clone(),
            ]
        })
        .collect();
    l.table(
        &[
            Col(&t("故障编号", "Incident"), 1.8, Align::Left),
            Col(&t("时钟", "Clock"), 0.9, Align::Left),
            Col(&t("记录时间", "Recorded"), 1.3, Align::Left),
            Col(&t("申报时间/等级", "Claimed"), 1.3, Align::Left),
            Col(&t("申请人", "Requested by"), 1.0, Align::Left),
            Col(&t("审批人", "Approved by"), 1.0, Align::Left),
            Col(&t("审批时间", "Decided"), 1.3, Align::Left),
            Col(&t("状态", "Status"), 1.2, Align::Left),
            Col(&t("理由", "Reason"), 1.6, Align::Left),
        ],
        &rows,
    );
}

/// Appeals and their review, and the sign-off record (contracts with a lifecycle).
pub(super) fn lifecycle(l: &mut Layout, r: &Report) {
    let Some(lc) = &r.lifecycle else {
        return;
    };
    let lang = l.lang;
    let off = l.off;
    let t = tr(lang);
    l.h3(&t("申诉与复核", "Appeals and review"));
    let deadlines = format!(
        "{}{} {}{}",
        t("申诉截止：", "Appeals until: "),
        lc.appeal_deadline_ms
            .map_or_else(|| "—".into(), |ms| datetime(ms, off)),
        t("复核与签认截止：", "Review and sign-off until: "),
        lc.review_deadline_ms
            .map_or_else(|| "—".into(), |ms| datetime(ms, off)),
    );
    l.paragraph(&deadlines, 9.5, GREY);
    if lc.appeals.is_empty() {
        l.none();
    } else {
        let rows: Vec<Vec<String>> = lc
            .appeals
            .iter()
            .map(|a| {
                vec![
                    a.target.clone(),
                    a.filed_by.clone(),
                    datetime(a.filed_ms, off),
                    a.reason.clone(),
                    appeal_decision(lang, a),
                    a.decided_by.clone().unwrap_or_else(|| "—".into()),
                    a.decided_ms
                        .map_or_else(|| "—".into(), |ms| datetime(ms, off)),
                    format!("+{}", a.effect.fmt_dp(1)),
                    a.id.clone(),
                ]
            })
            .collect();
        l.table(
            &[
                Col(&t("申诉内容", "Appealed"), 1.6, Align::Left),
                Col(&t("申诉人", "Appellant"), 1.0, Align::Left),
                Col(&t("申诉时间", "Filed"), 1.2, Align::Left),
                Col(&t("理由", "Reason"), 1.6, Align::Left),
                Col(&t("复核结论", "Decision"), 1.6, Align::Left),
                Col(&t("复核人", "Reviewer"), 1.0, Align::Left),
                Col(&t("复核时间", "Decided"), 1.2, Align::Left),
                Col(&t("得分影响", "Effect"), 0.7, Align::Right),
                Col(&t("证据编号", "Evidence"), 1.2, Align::Left),
            ],
            &rows,
        );
    }
    l.h3(&t("签认记录", "Sign-off record"));
    if lc.signoffs.is_empty() {
        l.paragraph(&t("尚无签认。", "Not signed off yet."), 9.5, GREY);
        return;
    }
    let rows: Vec<Vec<String>> = lc
        .signoffs
        .iter()
        .map(|g| {
            vec![
                signoff_role(lang, &g.role),
                g.signed_by.clone(),
                datetime(g.signed_ms, off),
                format!("v{}", g.version),
            ]
        })
        .collect();
    l.table(
        &[
            Col(&t("签认方", "Party"), 1.5, Align::Left),
            Col(&t("签认人", "Signed by"), 1.5, Align::Left),
            Col(&t("签认时间", "Signed at"), 1.5, Align::Left),
            Col(&t("所签版本", "Version signed"), 1.0, Align::Right),
        ],
        &rows,
    );
}

/// Section 4: deductions and bonuses.
pub(super) fn adjustments(l: &mut Layout, r: &Report) {
    let lang = l.lang;
    let t = tr(lang);
    l.h2(4, "扣分与加分明细", "Deductions and bonuses");
    if r.adjustments.is_empty() {
        l.none();
    } else {
        let rows: Vec<Vec<String>> = r
            .adjustments
            .iter()
            .map(|a| {
                let sign = if a.kind == AdjustmentKind::Deduction {
                    "−"
                } else {
                    "+"
                };
                vec![
                    adjustment(lang, a.kind).into(),
                    a.item.clone(),
                    format!("{sign}{}", a.points.fmt_dp(1)),
                    a.arithmetic.clone(),
                    a.evidence.join(", "),
                ]
            })
            .collect();
        l.table(
            &[
                Col(&t("类别", "Kind"), 1.05, Align::Left),
                Col(&t("考核项", "Item"), 2.2, Align::Left),
                Col(&t("分值", "Points"), 0.8, Align::Right),
                Col(&t("计算过程", "Arithmetic"), 3.6, Align::Left),
                Col(&t("证据编号", "Evidence"), 1.6, Align::Left),
            ],
            &rows,
        );
    }
}

/// Section 5: routine inspections.
pub(super) fn inspections(l: &mut Layout, r: &Report) {
    let lang = l.lang;
    let off = l.off;
    let t = tr(lang);
    l.h2(5, "例行巡检", "Routine inspections");
    if r.inspections.is_empty() {
        l.none();
    } else {
        let rows: Vec<Vec<String>> = r
            .inspections
            .iter()
            .map(|i| {
                vec![
                    i.name.clone(),
                    datetime(i.due_ms, off),
                    i.done_ms.map_or("—".into(), |t| datetime(t, off)),
                    inspection(lang, i.status).into(),
                    i.evidence.join(", "),
                ]
            })
            .collect();
        l.table(
            &[
                Col(&t("巡检项目", "Inspection"), 2.6, Align::Left),
                Col(&t("应完成时间", "Due"), 1.5, Align::Left),
                Col(&t("实际完成时间", "Done"), 1.5, Align::Left),
                Col(&t("状态", "Status"), 1.0, Align::Center),
                Col(&t("证据编号", "Evidence"), 1.3, Align::Left),
            ],
            &rows,
        );
    }
}

/// Section 6: resource use (busiest hosts) and disks forecast to fill.
pub(super) fn resources(l: &mut Layout, r: &Report) {
    let t = tr(l.lang);
    l.h2(6, "资源使用与容量", "Resource use and capacity");
    if r.resources.hosts.is_empty() {
        l.none();
    } else {
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
        let colors = [Rgb(31, 78, 121), GREEN, Rgb(160, 90, 0)];
        let rows: Vec<_> = hosts
            .iter()
            .map(|(_, h)| {
                let vals = [h.cpu_p95_pct, h.memory_p95_pct, h.disk_p95_pct]
                    .into_iter()
                    .zip(colors)
                    .map(|(v, c)| (v.map_or(0.0, pf), c))
                    .collect();
                (h.host.clone(), vals, Some(80.0))
            })
            .collect();
        let names = [
            t("CPU", "CPU"),
            t("内存", "Memory"),
            t("磁盘", "Disk"),
            t("红线：80% 警戒", "red line: 80% warning"),
        ];
        let legend = [
            (names[0].as_str(), colors[0]),
            (names[1].as_str(), colors[1]),
            (names[2].as_str(), colors[2]),
            (names[3].as_str(), RED),
        ];
        l.bars(
            &t(
                "资源使用率 P95（最繁忙主机）",
                "Resource use p95 (busiest hosts)",
            ),
            0.0,
            &rows,
            &legend,
        );
        let rows: Vec<Vec<String>> = r
            .resources
            .hosts
            .iter()
            .map(|h| {
                vec![
                    h.host.clone(),
                    h.system.clone(),
                    opt_pct(h.cpu_p95_pct, 1),
                    opt_pct(h.memory_p95_pct, 1),
                    opt_pct(h.disk_p95_pct, 1),
                ]
            })
            .collect();
        l.table(
            &[
                Col(&t("主机", "Host"), 2.0, Align::Left),
                Col(&t("系统", "System"), 1.6, Align::Left),
                Col(&t("CPU P95", "CPU p95"), 1.0, Align::Right),
                Col(&t("内存 P95", "Memory p95"), 1.0, Align::Right),
                Col(&t("磁盘 P95", "Disk p95"), 1.0, Align::Right),
            ],
            &rows,
        );
    }
    l.h3(&t("预计写满的磁盘", "Disks forecast to fill"));
    if r.resources.disks_filling.is_empty() {
        l.none();
    } else {
        let rows: Vec<Vec<String>> = r
            .resources
            .disks_filling
            .iter()
            .map(|d| {
                vec![
                    d.host.clone(),
                    d.mount.clone(),
                    pct(d.used_pct),
                    d.full_on.clone(),
                ]
            })
            .collect();
        l.table(
            &[
                Col(&t("主机", "Host"), 2.0, Align::Left),
                Col(&t("挂载点", "Mount"), 1.5, Align::Left),
                Col(&t("当前使用率", "Used"), 1.0, Align::Right),
                Col(&t("预计写满日期", "Full on"), 1.2, Align::Left),
            ],
            &rows,
        );
    }
}

/// Section 7: alert statistics and the noisiest rules.
pub(super) fn alerts(l: &mut Layout, r: &Report) {
    let lang = l.lang;
    let t = tr(lang);
    let a = &r.alerts;
    l.h2(7, "告警统计", "Alert statistics");
    let mut rows: Vec<Vec<String>> = vec![vec![t("告警总数", "Total alerts"), a.total.to_string()]];
    rows.extend(
        a.by_severity
            .iter()
            .map(|s| vec![severity(lang, &s.severity), s.count.to_string()]),
    );
    rows.push(vec![
        t("平均确认时长 MTTA（分钟）", "MTTA (min)"),
        a.mtta_minutes.map_or("—".into(), minutes),
    ]);
    rows.push(vec![
        t("平均恢复时长 MTTR（分钟）", "MTTR (min)"),
        a.mttr_minutes.map_or("—".into(), minutes),
    ]);
    l.table(
        &[
            Col(&t("指标", "Measure"), 2.0, Align::Left),
            Col(&t("数值", "Value"), 1.0, Align::Right),
        ],
        &rows,
    );
    l.h3(&t("告警最多的规则", "Noisiest rules"));
    if a.noisiest.is_empty() {
        l.none();
    } else {
        let rows: Vec<Vec<String>> = a
            .noisiest
            .iter()
            .map(|n| vec![n.rule.clone(), n.count.to_string()])
            .collect();
        l.table(
            &[
                Col(&t("规则", "Rule"), 2.0, Align::Left),
                Col(&t("触发次数", "Firings"), 1.0, Align::Right),
            ],
            &rows,
        );
    }
}

/// Section 8: availability exclusion requests.
pub(super) fn exclusions(l: &mut Layout, r: &Report) {
    let lang = l.lang;
    let off = l.off;
    let t = tr(lang);
    l.h2(8, "可用率排除申请", "Exclusions");
    if r.exclusions.is_empty() {
        l.none();
    } else {
        let rows: Vec<Vec<String>> = r
            .exclusions
            .iter()
            .map(|e| {
                vec![
                    e.id.clone(),
                    e.system.clone(),
                    e.reason.clone(),
                    format!(
                        "{}\n— {}",
                        datetime(e.start_ms, off),
                        datetime(e.end_ms, off)
                    ),
                    datetime(e.filed_ms, off),
                    minutes(e.minutes),
                    exclusion(lang, e.status).into(),
                ]
            })
            .collect();
        l.table(
            &[
                Col(&t("编号", "ID"), 1.0, Align::Left),
                Col(&t("系统", "System"), 1.1, Align::Left),
                Col(&t("事由", "Reason"), 2.6, Align::Left),
                Col(&t("时段", "Interval"), 1.7, Align::Left),
                Col(&t("申报时间", "Filed"), 1.5, Align::Left),
                Col(&t("分钟", "Min"), 0.7, Align::Right),
                Col(&t("审批结果", "Decision"), 1.4, Align::Left),
            ],
            &rows,
        );
    }
}

/// Section 9: data completeness.
pub(super) fn completeness(l: &mut Layout, r: &Report) {
    let lang = l.lang;
    let t = tr(lang);
    let cp = &r.completeness;
    l.h2(9, "数据完整性", "Data completeness");
    let line = match lang {
        Lang::ZhCn => format!(
            "整体数据完整率 {}。数据缺失责任方：{}",
            pct(cp.overall_pct),
            cp.borne_by
        ),
        Lang::En => format!(
            "Overall completeness {}. Missing data is borne by: {}",
            pct(cp.overall_pct),
            cp.borne_by
        ),
    };
    l.paragraph(&line, 9.5, BLACK);
    let rows: Vec<Vec<String>> = cp
        .systems
        .iter()
        .map(|s| {
            vec![
                s.system.clone(),
                completeness_pct(lang, s),
                minutes(s.missing_minutes),
            ]
        })
        .collect();
    l.table(
        &[
            Col(&t("系统", "System"), 2.0, Align::Left),
            Col(&t("完整率", "Completeness"), 1.0, Align::Right),
            Col(&t("缺失分钟", "Missing min"), 1.0, Align::Right),
        ],
        &rows,
    );
}

/// Section 10 (new page): the evidence list, the integrity block and the signature lines.
pub(super) fn appendix(l: &mut Layout, signed: &SignedReport) {
    let r = &signed.report;
    let lang = l.lang;
    let off = l.off;
    let t = tr(lang);
    l.new_page();
    l.h2(
        10,
        "附录：证据清单与完整性校验",
        "Appendix: evidence and integrity",
    );
    let rows: Vec<Vec<String>> = r
        .evidence
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                evidence_kind(lang, &e.kind),
                e.summary.clone(),
                format!(
                    "{}\n— {}",
                    datetime(e.start_ms, off),
                    datetime(e.end_ms, off)
                ),
            ]
        })
        .collect();
    l.table(
        &[
            Col(&t("证据编号", "Evidence ID"), 1.2, Align::Left),
            Col(&t("类型", "Kind"), 1.0, Align::Left),
            Col(&t("摘要", "Summary"), 3.2, Align::Left),
            Col(&t("时间范围", "Time range"), 1.6, Align::Left),
        ],
        &rows,
    );
    let i = &signed.integrity;
    l.h3(&t("完整性校验", "Integrity"));
    l.meta(&[
        (t("算法", "Algorithm"), "SHA-256 + Ed25519".into()),
        (
            t("报告摘要（SHA-256）", "Report digest (SHA-256)"),
            i.sha256.clone(),
        ),
        (
            t("签名（Ed25519）", "Signature (Ed25519)"),
            i.signature.clone(),
        ),
        (t("签名密钥标识", "Signing key id"), i.key_id.clone()),
    ]);
    l.paragraph(
        lang.pick(
            "本文件以附件形式内嵌经签名的报告数据（yunwei-report.json.b64）。可使用 yunwei-server report verify 命令与服务器公钥校验签名。",
            "This file embeds the signed report data as an attachment (yunwei-report.json.b64). Check the signature with yunwei-server report verify and the server's public key.",
        ),
        8.5,
        GREY,
    );
    l.ensure(90.0);
    l.y += 30.0;
    let mid = (LEFT + RIGHT) / 2.0;
    l.text(
        LEFT,
        l.y,
        11.0,
        BLACK,
        false,
        lang.pick("甲方（盖章）：", "Party A (seal):"),
    );
    l.text(
        mid + 10.0,
        l.y,
        11.0,
        BLACK,
        false,
        lang.pick("乙方（盖章）：", "Party B (seal):"),
    );
    l.y += 40.0;
    l.text(LEFT, l.y, 11.0, BLACK, false, lang.pick("日期：", "Date:"));
    l.text(
        mid + 10.0,
        l.y,
        11.0,
        BLACK,
        false,
        lang.pick("日期：", "Date:"),
    );
}
