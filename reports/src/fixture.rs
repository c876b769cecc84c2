//! Report fixtures: a realistic month for one contract (tests, snapshots, demos) and a large
//! synthetic report for the benchmark. The data is made up and says so in the contract name.

use chrono::{Duration, NaiveDate};

use crate::model::*;

const OFFSET_MIN: i32 = 480;

/// UTC milliseconds of a local (UTC+8) time in October 2026.
fn at(day: u32, hour: u32, min: u32) -> i64 {
    let t = NaiveDate::from_ymd_opt(2026, 10, day)
        .and_then(|d| d.and_hms_opt(hour, min, 0))
        .unwrap_or_default();
    (t - Duration::minutes(i64::from(OFFSET_MIN)))
        .and_utc()
        .timestamp_millis()
}

fn f(v: f64) -> Fixed {
    Fixed::from_f64(v)
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn daily(base: f64, dips: &[(u32, Option<f64>)]) -> Vec<DailyAvailability> {
    (1..=31)
        .map(|d| {
            let pct = dips
                .iter()
                .find(|(day, _)| *day == d)
                .map_or(Some(f(base)), |(_, v)| v.map(f));
            DailyAvailability {
                date: format!("2026-10-{d:02}"),
                pct,
            }
        })
        .collect()
}

/// October 2026 of a made-up contract: three systems (one misses its target), a P1 incident
/// with a late response and a P3 incident, deductions and a bonus, a missed inspection, an
/// exclusion filed too late, and a system with missing data. Free text is in `lang`.
pub fn scenario(lang: Lang) -> Report {
    let t = |zh: &'static str, en: &'static str| lang.pick(zh, en).to_string();
    Report {
        schema: SCHEMA.to_string(),
        cover: Cover {
            contract_id: "ZWY-2026-017".into(),
            contract_name: t(
                "示例市政务云运维服务（模拟数据）",
                "Example City government cloud O&M (simulated data)",
            ),
            party_a: t(
                "示例市政务服务数据管理局",
                "Example City Government Data Administration",
            ),
            party_b: t("示例信息技术有限公司", "Example IT Services Co., Ltd."),
            period: Period {
                kind: PeriodKind::Month,
                label: "2026-10".into(),
                start_ms: at(1, 0, 0),
                end_ms: at(31, 0, 0) + 86_400_000,
            },
            time_zone: "Asia/Shanghai".into(),
            utc_offset_minutes: OFFSET_MIN,
            generated_at_ms: at(31, 0, 0) + 86_400_000 + 2 * 3_600_000 + 17_000,
            data_completeness_pct: f(99.212),
            provisional: false,
            lang,
            version: 1,
        },
        summary: Summary {
            base_score: Fixed::int(100),
            deductions_total: Fixed::int(19),
            bonuses_total: Fixed::int(2),
            score: Fixed::int(83),
            grade: Grade::Good,
            payment: Payment {
                fee_cents: Some(48_000_000),
                payable_pct: Fixed::int(83),
                payable_cents: Some(39_840_000),
                rule: t("当期服务费 × 考核得分 / 100", "period fee × score / 100"),
                pending: false,
            },
            trend: vec![
                TrendPoint {
                    period: "2026-07".into(),
                    score: f(96.0),
                    grade: Grade::Excellent,
                },
                TrendPoint {
                    period: "2026-08".into(),
                    score: f(91.5),
                    grade: Grade::Excellent,
                },
                TrendPoint {
                    period: "2026-09".into(),
                    score: f(88.0),
                    grade: Grade::Good,
                },
                TrendPoint {
                    period: "2026-10".into(),
                    score: f(83.0),
                    grade: Grade::Good,
                },
            ],
            partial_evidence: false,
        },
        availability: vec![
            SystemAvailability {
                system_id: "gov-portal".into(),
                name: t("政务服务门户", "Government services portal"),
                tier: "core".into(),
                window: "7x24".into(),
                target_pct: f(99.95),
                actual_pct: Some(f(99.731)),
                period_minutes: 44_640,
                window_minutes: 44_640,
                downtime_minutes: f(120.0),
                excluded_minutes: f(0.0),
                missing_minutes: f(0.0),
                met: false,
                insufficient_evidence: false,
                decided_by: None,
                daily: daily(100.0, &[(14, Some(91.667))]),
                evidence: ids(&["EV-INT-0001", "EV-INC-0001"]),
            },
            SystemAvailability {
                system_id: "one-net".into(),
                name: t("一网通办审批系统", "One-stop approval system"),
                tier: "general".into(),
                window: "7x24".into(),
                target_pct: f(99.9),
                actual_pct: Some(f(99.937)),
                period_minutes: 44_640,
                window_minutes: 44_640,
                downtime_minutes: f(28.0),
                excluded_minutes: f(90.0),
                missing_minutes: f(0.0),
                met: true,
                insufficient_evidence: false,
                decided_by: None,
                daily: daily(100.0, &[(9, Some(98.056)), (22, Some(100.0))]),
                evidence: ids(&["EV-INT-0002", "EV-EXC-0001"]),
            },
            SystemAvailability {
                system_id: "oa".into(),
                name: t("协同办公系统", "Office collaboration system"),
                tier: "office".into(),
                window: "5x8".into(),
                target_pct: f(99.5),
                actual_pct: Some(f(99.769)),
                period_minutes: 44_640,
                window_minutes: 9_180,
                downtime_minutes: f(20.0),
                excluded_minutes: f(0.0),
                missing_minutes: f(525.0),
                met: true,
                insufficient_evidence: false,
                decided_by: None,
                daily: daily(100.0, &[(20, None), (21, Some(97.0)), (27, Some(99.2))]),
                evidence: ids(&["EV-INT-0003", "EV-GAP-0001"]),
            },
        ],
        incidents: vec![
            Incident {
                id: "INC-2026-1014-01".into(),
                level: 1,
                title: t(
                    "门户数据库主库宕机，业务中断",
                    "Portal primary database down, service interrupted",
                ),
                system: "gov-portal".into(),
                detected_ms: at(14, 9, 12),
                restored_ms: Some(at(14, 11, 12)),
                response: Clock {
                    target_minutes: Some(15),
                    actual_minutes: Some(f(27.0)),
                    met: Some(false),
                },
                on_site: Clock {
                    target_minutes: Some(60),
                    actual_minutes: Some(f(48.0)),
                    met: Some(true),
                },
                restore: Clock {
                    target_minutes: Some(240),
                    actual_minutes: Some(f(120.0)),
                    met: Some(true),
                },
                evidence: ids(&["EV-INC-0001", "EV-NTF-0001"]),
            },
            Incident {
                id: "INC-2026-1021-02".into(),
                level: 3,
                title: t(
                    "协同办公附件上传缓慢",
                    "Office system attachment upload slow",
                ),
                system: "oa".into(),
                detected_ms: at(21, 10, 5),
                restored_ms: Some(at(22, 9, 0)),
                response: Clock {
                    target_minutes: Some(120),
                    actual_minutes: Some(f(35.5)),
                    met: Some(true),
                },
                on_site: Clock {
                    target_minutes: None,
                    actual_minutes: None,
                    met: None,
                },
                restore: Clock {
                    target_minutes: Some(1440),
                    actual_minutes: Some(f(1375.0)),
                    met: Some(true),
                },
                evidence: ids(&["EV-INC-0002"]),
            },
        ],
        adjustments: vec![
            Adjustment {
                kind: AdjustmentKind::Deduction,
                item: t(
                    "可用率未达标（政务服务门户）",
                    "Availability below target (portal)",
                ),
                points: Fixed::int(10),
                arithmetic: t(
                    "差 0.219 个百分点 → 满 0.1 个百分点计 1 档，共 2 档 × 5 分 = 10 分（上限 20）",
                    "0.219 pp short → 2 full steps of 0.1 pp × 5 points = 10 points (cap 20)",
                ),
                evidence: ids(&["EV-INT-0001"]),
            },
            Adjustment {
                kind: AdjustmentKind::Deduction,
                item: t("一级故障响应超时", "P1 response late"),
                points: Fixed::int(4),
                arithmetic: t(
                    "超时 12 分钟 → 每 5 分钟扣 2 分，2 档 = 4 分",
                    "12 min late → 2 points per 5 min, 2 steps = 4 points",
                ),
                evidence: ids(&["EV-INC-0001", "EV-NTF-0001"]),
            },
            Adjustment {
                kind: AdjustmentKind::Deduction,
                item: t("漏巡检", "Missed inspection"),
                points: Fixed::int(5),
                arithmetic: t("1 次 × 5 分 = 5 分", "1 × 5 points = 5 points"),
                evidence: ids(&["EV-INS-0009"]),
            },
            Adjustment {
                kind: AdjustmentKind::Bonus,
                item: t(
                    "合同范围外协助（国庆保障）",
                    "Help outside contract scope (National Day duty)",
                ),
                points: Fixed::int(2),
                arithmetic: t(
                    "1 次 × 2 分 = 2 分（上限 2）",
                    "1 × 2 points = 2 points (cap 2)",
                ),
                evidence: ids(&["EV-BON-0001"]),
            },
        ],
        inspections: vec![
            Inspection {
                name: t("节前巡检（国庆）", "Pre-holiday inspection (National Day)"),
                due_ms: at(1, 9, 0) - 2 * 86_400_000,
                done_ms: Some(at(1, 9, 0) - 2 * 86_400_000 - 3_600_000),
                status: InspectionStatus::Done,
                evidence: ids(&["EV-INS-0001"]),
            },
            Inspection {
                name: t("周巡检（第 2 周）", "Weekly inspection (week 2)"),
                due_ms: at(9, 17, 30),
                done_ms: Some(at(9, 16, 10)),
                status: InspectionStatus::Done,
                evidence: ids(&["EV-INS-0002"]),
            },
            Inspection {
                name: t("周巡检（第 3 周）", "Weekly inspection (week 3)"),
                due_ms: at(16, 17, 30),
                done_ms: Some(at(17, 10, 2)),
                status: InspectionStatus::Late,
                evidence: ids(&["EV-INS-0003"]),
            },
            Inspection {
                name: t("周巡检（第 4 周）", "Weekly inspection (week 4)"),
                due_ms: at(23, 17, 30),
                done_ms: None,
                status: InspectionStatus::Missed,
                evidence: ids(&["EV-INS-0009"]),
            },
            Inspection {
                name: t("月度健康与容量检查", "Monthly health and capacity review"),
                due_ms: at(30, 17, 30),
                done_ms: Some(at(30, 15, 0)),
                status: InspectionStatus::Done,
                evidence: ids(&["EV-INS-0004"]),
            },
        ],
        resources: Resources {
            hosts: vec![
                HostResources {
                    host: "portal-web-01".into(),
                    system: "gov-portal".into(),
                    cpu_p95_pct: Some(f(62.4)),
                    memory_p95_pct: Some(f(71.03)),
                    disk_p95_pct: Some(f(48.5)),
                },
                HostResources {
                    host: "portal-db-01".into(),
                    system: "gov-portal".into(),
                    cpu_p95_pct: Some(f(81.7)),
                    memory_p95_pct: Some(f(88.25)),
                    disk_p95_pct: Some(f(86.9)),
                },
                HostResources {
                    host: "onenet-app-01".into(),
                    system: "one-net".into(),
                    cpu_p95_pct: Some(f(44.0)),
                    memory_p95_pct: Some(f(58.6)),
                    disk_p95_pct: Some(f(35.2)),
                },
                HostResources {
                    host: "oa-app-01".into(),
                    system: "oa".into(),
                    cpu_p95_pct: Some(f(23.9)),
                    memory_p95_pct: Some(f(40.1)),
                    disk_p95_pct: None,
                },
            ],
            disks_filling: vec![DiskForecast {
                host: "portal-db-01".into(),
                mount: "/data".into(),
                used_pct: f(86.9),
                full_on: "2026-12-08".into(),
            }],
        },
        alerts: AlertStats {
            total: 57,
            by_severity: vec![
                SeverityCount {
                    severity: "critical".into(),
                    count: 6,
                },
                SeverityCount {
                    severity: "warning".into(),
                    count: 39,
                },
                SeverityCount {
                    severity: "info".into(),
                    count: 12,
                },
            ],
            noisiest: vec![
                RuleCount {
                    rule: "HostHighCpu".into(),
                    count: 21,
                },
                RuleCount {
                    rule: "DiskWillFillIn7d".into(),
                    count: 11,
                },
                RuleCount {
                    rule: "ProbeHttpSlow".into(),
                    count: 9,
                },
            ],
            mtta_minutes: Some(f(9.4)),
            mttr_minutes: Some(f(86.25)),
        },
        exclusions: vec![
            Exclusion {
                id: "EXC-0007".into(),
                system: "one-net".into(),
                reason: t(
                    "计划内数据库升级（提前 72 小时报备）",
                    "Planned database upgrade (announced 72 h ahead)",
                ),
                start_ms: at(9, 0, 30),
                end_ms: at(9, 2, 0),
                filed_ms: at(6, 0, 0),
                minutes: f(90.0),
                status: ExclusionStatus::Approved,
            },
            Exclusion {
                id: "EXC-0008".into(),
                system: "gov-portal".into(),
                reason: t(
                    "声称第三方网络故障，证据不足",
                    "Claimed third-party network fault, insufficient evidence",
                ),
                start_ms: at(14, 9, 12),
                end_ms: at(14, 10, 0),
                filed_ms: at(15, 9, 0),
                minutes: f(48.0),
                status: ExclusionStatus::Rejected,
            },
            Exclusion {
                id: "EXC-0009".into(),
                system: "oa".into(),
                reason: t(
                    "紧急补丁窗口（事后补报）",
                    "Emergency patch window (filed afterwards)",
                ),
                start_ms: at(27, 22, 0),
                end_ms: at(27, 22, 20),
                filed_ms: at(28, 10, 0),
                minutes: f(20.0),
                status: ExclusionStatus::LateFiled,
            },
        ],
        completeness: Completeness {
            overall_pct: f(99.212),
            systems: vec![
                SystemCompleteness {
                    system: "gov-portal".into(),
                    pct: f(100.0),
                    missing_minutes: f(0.0),
                    min_pct: None,
                },
                SystemCompleteness {
                    system: "one-net".into(),
                    pct: f(100.0),
                    missing_minutes: f(0.0),
                    min_pct: None,
                },
                SystemCompleteness {
                    system: "oa".into(),
                    pct: f(94.281),
                    missing_minutes: f(525.0),
                    min_pct: None,
                },
            ],
            borne_by: t(
                "乙方（监测代理离线期间不计为可用）",
                "Party B (time with the agent offline is not counted as up)",
            ),
        },
        evidence: vec![
            Evidence {
                id: "EV-INT-0001".into(),
                kind: "status_interval".into(),
                summary: t(
                    "政务服务门户 不可用区间 1 段，共 120 分钟",
                    "Portal down intervals: 1, 120 min",
                ),
                start_ms: at(14, 9, 12),
                end_ms: at(14, 11, 12),
            },
            Evidence {
                id: "EV-INT-0002".into(),
                kind: "status_interval".into(),
                summary: t(
                    "一网通办 不可用区间 2 段，共 118 分钟（含排除 90 分钟）",
                    "One-stop down intervals: 2, 118 min (90 excluded)",
                ),
                start_ms: at(9, 0, 30),
                end_ms: at(9, 2, 28),
            },
            Evidence {
                id: "EV-INT-0003".into(),
                kind: "status_interval".into(),
                summary: t(
                    "协同办公 服务时段内不可用 20 分钟",
                    "Office system down 20 min in window",
                ),
                start_ms: at(27, 22, 0),
                end_ms: at(27, 22, 20),
            },
            Evidence {
                id: "EV-GAP-0001".into(),
                kind: "data_gap".into(),
                summary: t(
                    "oa-app-01 代理离线，数据缺失 525 分钟",
                    "oa-app-01 agent offline, 525 min missing",
                ),
                start_ms: at(20, 8, 15),
                end_ms: at(20, 17, 0),
            },
            Evidence {
                id: "EV-INC-0001".into(),
                kind: "incident".into(),
                summary: t(
                    "一级故障 INC-2026-1014-01 时间线",
                    "P1 incident INC-2026-1014-01 timeline",
                ),
                start_ms: at(14, 9, 12),
                end_ms: at(14, 11, 12),
            },
            Evidence {
                id: "EV-INC-0002".into(),
                kind: "incident".into(),
                summary: t(
                    "三级故障 INC-2026-1021-02 时间线",
                    "P3 incident INC-2026-1021-02 timeline",
                ),
                start_ms: at(21, 10, 5),
                end_ms: at(22, 9, 0),
            },
            Evidence {
                id: "EV-NTF-0001".into(),
                kind: "notification".into(),
                summary: t(
                    "告警邮件送达与值班确认记录",
                    "Alert mail delivery and on-call acknowledgement",
                ),
                start_ms: at(14, 9, 12),
                end_ms: at(14, 9, 39),
            },
            Evidence {
                id: "EV-EXC-0001".into(),
                kind: "exclusion".into(),
                summary: t(
                    "排除申请 EXC-0007 审批记录",
                    "Exclusion EXC-0007 approval record",
                ),
                start_ms: at(6, 0, 0),
                end_ms: at(9, 2, 0),
            },
            Evidence {
                id: "EV-INS-0009".into(),
                kind: "inspection".into(),
                summary: t("第 4 周巡检无记录", "No record of the week 4 inspection"),
                start_ms: at(23, 17, 30),
                end_ms: at(23, 17, 30),
            },
            Evidence {
                id: "EV-BON-0001".into(),
                kind: "bonus".into(),
                summary: t(
                    "甲方确认的国庆保障值守记录",
                    "National Day duty confirmed by Party A",
                ),
                start_ms: at(1, 0, 0),
                end_ms: at(7, 23, 59),
            },
        ],
        incident_requests: Vec::new(),
        lifecycle: None,
        disagreements: Vec::new(),
        evidence_file: None,
    }
}

/// [`scenario`] with the fields of an assessment on insufficient evidence: the office system's
/// data fell below its tier's coverage minimum, so it has no figure and the grade is withheld
/// with the payment pending; the trend shows a withheld grade.
pub fn scenario_insufficient(lang: Lang) -> Report {
    let mut r = scenario(lang);
    for a in &mut r.availability {
        if a.system_id == "oa" {
            a.insufficient_evidence = true;
            a.actual_pct = None;
            a.met = false;
            for d in &mut a.daily {
                d.pct = None;
            }
        }
    }
    for c in &mut r.completeness.systems {
        c.min_pct = Some(f(95.0));
    }
    r.summary.grade = Grade::Withheld;
    r.summary.payment.pending = true;
    r.summary.payment.payable_cents = None;
    if let Some(t) = r.summary.trend.last_mut() {
        t.grade = Grade::Withheld;
    }
    r
}

/// [`scenario`] with the portal's server probe disagreeing with the agents twice: down for
/// 15 minutes while the agents said up, then up for 6.5 minutes while they said down; the
/// portal's availability is decided by both vantages (`availability_from: both`).
pub fn scenario_disagreement(lang: Lang) -> Report {
    let mut r = scenario(lang);
    r.availability[0].decided_by = Some(DecidedBy::Both);
    let name = r.availability[0].name.clone();
    for (from, to, agents_up, ev) in [
        (
            at(3, 10, 0),
            at(3, 10, 15),
            true,
            "interval:server_probe:41",
        ),
        (
            at(9, 0, 30),
            at(9, 0, 30) + 390_000,
            false,
            "interval:server_probe:57",
        ),
    ] {
        r.disagreements.push(Disagreement {
            system_id: "gov-portal".into(),
            system: name.clone(),
            probe: "office-home".into(),
            from_ms: from,
            to_ms: to,
            agents_up,
            minutes: Fixed::from_f64((to - from) as f64 / 60_000.0),
            evidence: vec![ev.into()],
        });
    }
    r
}

/// [`scenario`] with a grade resting on partial evidence.
pub fn scenario_partial(lang: Lang) -> Report {
    let mut r = scenario_insufficient(lang);
    r.summary.grade = Grade::Good;
    r.summary.partial_evidence = true;
    r.summary.payment.pending = false;
    r
}

/// A large synthetic month: `hosts` hosts, `probes` probed systems (one availability row each,
/// with a daily series) over `days` days, and proportionate incidents and evidence. For the
/// benchmark; the figures follow a fixed pseudo-random pattern, so the output is reproducible.
pub fn synthetic(hosts: usize, probes: usize, days: u32) -> Report {
    let mut r = scenario(Lang::ZhCn);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let minutes = i64::from(days) * 1440;
    r.availability = (0..probes)
        .map(|i| {
            let down = (next() % 60) as f64;
            let actual = 100.0 * (minutes as f64 - down) / minutes as f64;
            let target = [99.95, 99.9, 99.5][i % 3];
            SystemAvailability {
                system_id: format!("probe-{i:05}"),
                name: format!("业务探测 {i:05}"),
                tier: ["core", "general", "office"][i % 3].into(),
                window: "7x24".into(),
                target_pct: f(target),
                actual_pct: Some(f(actual)),
                period_minutes: minutes,
                window_minutes: minutes,
                downtime_minutes: f(down),
                excluded_minutes: Fixed(0),
                missing_minutes: Fixed(0),
                met: actual >= target,
                insufficient_evidence: false,
                decided_by: None,
                daily: (1..=days)
                    .map(|d| DailyAvailability {
                        date: format!("2026-10-{d:02}"),
                        pct: Some(f(100.0 - (next() % 100) as f64 / 1000.0)),
                    })
                    .collect(),
                evidence: vec![format!("EV-P-{i:05}")],
            }
        })
        .collect();
    r.resources.hosts = (0..hosts)
        .map(|i| HostResources {
            host: format!("host-{i:04}"),
            system: format!("probe-{:05}", i % probes.max(1)),
            cpu_p95_pct: Some(Fixed((next() % 100_000) as i64)),
            memory_p95_pct: Some(Fixed((next() % 100_000) as i64)),
            disk_p95_pct: Some(Fixed((next() % 100_000) as i64)),
        })
        .collect();
    r.evidence = (0..probes)
        .map(|i| Evidence {
            id: format!("EV-P-{i:05}"),
            kind: "status_interval".into(),
            summary: format!("探测 {i:05} 状态区间"),
            start_ms: r.cover.period.start_ms,
            end_ms: r.cover.period.end_ms,
        })
        .collect();
    r
}

/// [`scenario`] as the final version (终稿) of a contract with a lifecycle: one appeal
/// overturned (5 points back) with an attachment, one upheld, both parties signed off.
pub fn scenario_final(lang: Lang) -> Report {
    let mut r = scenario(lang);
    let t = |zh: &'static str, en: &'static str| lang.pick(zh, en).to_string();
    let at =
        |d: u32, h: u32| 1_762_012_800_000 + i64::from(d) * 86_400_000 + i64::from(h) * 3_600_000;
    r.cover.version = 3;
    r.cover.provisional = false;
    r.lifecycle = Some(Lifecycle {
        stage: Stage::Final,
        appeal_deadline_ms: Some(at(5, 16)),
        review_deadline_ms: Some(at(12, 16)),
        appeals: vec![
            AppealLine {
                id: "appeal:5f1c".into(),
                target: format!("{} notice: event:7", t("扣分项", "deduction")),
                filed_by: "vendor-op".into(),
                filed_ms: at(3, 2),
                reason: t("通报对象为其他单位", "the notice named another company"),
                attachments: vec![
                    "更正函.pdf 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                        .into(),
                ],
                status: AppealStatus::Overturned,
                approved: None,
                decided_by: Some("office".into()),
                decided_ms: Some(at(4, 3)),
                decision_reason: Some(t("更正函属实", "the correction is genuine")),
                effect: Fixed(5_000),
            },
            AppealLine {
                id: "appeal:77aa".into(),
                target: format!("{} web @ 2026-10-03 10:00", t("停机", "outage")),
                filed_by: "vendor-op".into(),
                filed_ms: at(3, 4),
                reason: t("运营商线路故障", "carrier line failure"),
                attachments: Vec::new(),
                status: AppealStatus::Upheld,
                approved: None,
                decided_by: Some("office".into()),
                decided_ms: Some(at(4, 5)),
                decision_reason: Some(t("属乙方监控范围", "within the vendor's duty")),
                effect: Fixed(0),
            },
        ],
        signoffs: vec![
            Signoff {
                role: "operator".into(),
                signed_by: "vendor-op".into(),
                signed_ms: at(5, 2),
                version: 2,
            },
            Signoff {
                role: "reviewer".into(),
                signed_by: "office".into(),
                signed_ms: at(5, 3),
                version: 2,
            },
        ],
    });
    r
}
