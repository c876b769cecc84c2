//! The assessment's lifecycle for contracts with a `lifecycle:` block: the first archived
//! version of a period is the draft (初稿); the vendor's operators appeal (申诉) a deduction
//! line, an outage, an incident clock or a missed inspection of it within the appeal window
//! (working days of the statutory calendar after the draft's day, `yunwei_sla::lifecycle`),
//! with a reason and attachments (stored with the appeal, at most [`MAX_ATTACHMENTS`] of
//! [`MAX_ATTACHMENT_BYTES`] each, SHA-256 hashed); a reviewer other than the appellant upholds,
//! overturns or adjusts each (复核). Appeals are evidence ([`evidence`]): the assessment applies
//! a decision from its time on, so a report made later cites it and the same inputs still give
//! the same report.
//!
//! `now` is always a parameter; the HTTP layer reads the clock.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use yunwei_sla::{
    assess::{
        self, Appeal, AppealDecision, AppealOutcome, AppealTarget, Assessment, LineDetail, Period,
    },
    contract::SignOffRole,
    lifecycle::{self, Deadline},
};

use crate::{
    contracts::{ContractError, Contracts, LoadedContract},
    store::{
        Store,
        appeals::{AppealRow, AttachmentRow, Decision},
        audit::Audit,
    },
};

/// Most attachments one appeal carries.
pub const MAX_ATTACHMENTS: usize = 4;
/// Largest attachment, bytes: four of them base64-encoded fit the 1 MiB API body.
pub const MAX_ATTACHMENT_BYTES: usize = 160 * 1024;
/// Longest reason, bytes.
pub const MAX_REASON_BYTES: usize = 4096;

/// Why an appeal or a decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppealError {
    /// A value of the request is wrong; `field` names it.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// No such report, appeal or contract.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The state does not allow it (window closed, already decided, no lifecycle).
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// The appellant may not decide their own appeal.
    #[error("the appellant cannot decide their own appeal")]
    OwnAppeal,
    /// The caller's role is not a party that signs this contract's assessments off.
    #[error("{0}")]
    NotAParty(String),
    /// Making the final version failed.
    #[error(transparent)]
    Report(#[from] crate::reports::ReportError),
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

fn invalid(field: &str, message: impl Into<String>) -> AppealError {
    AppealError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A file attached to a new appeal.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A new appeal.
#[derive(Debug, Clone)]
pub struct NewAppeal {
    /// The report version appealed.
    pub report_id: i64,
    pub target: AppealTarget,
    pub reason: String,
    pub attachments: Vec<NewAttachment>,
}

/// A period's lifecycle dates.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// The draft: the period's first archived version.
    pub draft_report_id: i64,
    pub draft_issued_ms: i64,
    /// Appeals are accepted before this instant.
    pub appeal_deadline: Deadline,
    /// Decisions and sign-offs are due before this instant.
    pub review_deadline: Deadline,
}

/// The lifecycle dates of `contract_id`'s `period`; `None` without a draft or a lifecycle.
pub async fn window(
    store: &Store,
    c: &LoadedContract,
    period: &str,
) -> Result<Option<Window>, AppealError> {
    let Some(l) = &c.contract.lifecycle else {
        return Ok(None);
    };
    let Some((draft_report_id, draft_issued_ms)) =
        store.first_report_of(&c.contract.id, period).await?
    else {
        return Ok(None);
    };
    Ok(Some(Window {
        draft_report_id,
        draft_issued_ms,
        appeal_deadline: lifecycle::appeal_deadline(&c.contract, l, &c.calendar, draft_issued_ms),
        review_deadline: lifecycle::review_deadline(&c.contract, l, &c.calendar, draft_issued_ms),
    }))
}

/// `2026-02-25 24:00 Asia/Shanghai`.
fn deadline_text(d: &Deadline, c: &LoadedContract) -> String {
    format!("{} 24:00 {}", d.date, c.contract.time_zone.name())
}

/// Files an appeal by `by` at `now_ms`, with `audit` in its transaction.
pub async fn file(
    store: &Store,
    contracts: &Contracts,
    by: &str,
    req: NewAppeal,
    now_ms: i64,
    audit: Audit<'_>,
) -> Result<AppealRow, AppealError> {
    let report = store
        .report(req.report_id)
        .await?
        .ok_or(AppealError::NotFound("report"))?;
    let c = contracts
        .get(&report.contract_id)
        .ok_or(AppealError::NotFound("contract"))?;
    if c.contract.lifecycle.is_none() {
        return Err(AppealError::Conflict {
            field: "report_id".into(),
            message: format!(
                "contract {} has no lifecycle: its reports are final as made",
                c.contract.id
            ),
        });
    }
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(invalid("reason", "must not be empty"));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(invalid(
            "reason",
            format!("at most {MAX_REASON_BYTES} bytes"),
        ));
    }
    check_attachments(&req.attachments)?;
    if final_of(store, &report.contract_id, &report.period)
        .await?
        .is_some()
    {
        return Err(AppealError::Conflict {
            field: "report_id".into(),
            message: format!("{} {} is final", c.contract.id, report.period),
        });
    }
    let w = window(store, &c, &report.period)
        .await?
        .ok_or(AppealError::NotFound("report"))?;
    if now_ms >= w.appeal_deadline.at_ms {
        return Err(AppealError::Conflict {
            field: "report_id".into(),
            message: format!(
                "the appeal window of {} {} closed at {} ({} working days after the draft of {})",
                c.contract.id,
                report.period,
                deadline_text(&w.appeal_deadline, &c),
                c.contract
                    .lifecycle
                    .as_ref()
                    .map_or(0, |l| l.appeal_window_working_days),
                assess::local_date(w.draft_issued_ms, c.contract.time_zone),
            ),
        });
    }
    // The target must be something the draft deducted: assessed as the store holds it at the
    // draft's generation.
    let period = Period::parse(&report.period, c.contract.time_zone)
        .map_err(|e| invalid("report_id", e.to_string()))?;
    let draft = crate::contracts::assess_period(
        store,
        &c,
        &period,
        w.draft_issued_ms,
        contracts.config.contracts.run_inspections,
        None,
    )
    .await?;
    if !target_in(&draft, &req.target) {
        return Err(invalid(
            "target",
            format!(
                "the draft of {} {} has no such deduction, outage, incident clock or missed \
                 inspection",
                c.contract.id, report.period
            ),
        ));
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    let row = AppealRow {
        id: id.clone(),
        report_id: report.id,
        contract_id: report.contract_id.clone(),
        period: report.period.clone(),
        start_ms: report.start_ms,
        end_ms: report.end_ms,
        target: serde_json::to_string(&req.target).expect("targets serialize"),
        reason: reason.to_string(),
        filed_by: by.to_string(),
        filed_ms: now_ms,
        status: "pending".into(),
        approved_points_milli: None,
        approved_minutes_milli: None,
        decided_by: None,
        decided_ms: None,
        decision_reason: None,
    };
    let files: Vec<(AttachmentRow, Vec<u8>)> = req
        .attachments
        .into_iter()
        .map(|a| {
            (
                AttachmentRow {
                    appeal_id: id.clone(),
                    sha256: hex::encode(Sha256::digest(&a.bytes)),
                    size: a.bytes.len() as i64,
                    name: a.name,
                    content_type: a.content_type,
                },
                a.bytes,
            )
        })
        .collect();
    store.insert_appeal(&row, &files, audit).await?;
    let what = yunwei_reports::from_assessment::appeal_target(
        yunwei_reports::Lang::ZhCn,
        &req.target,
        yunwei_reports::from_assessment::utc_offset_minutes(&c.contract, now_ms),
    );
    let what_en = yunwei_reports::from_assessment::appeal_target(
        yunwei_reports::Lang::En,
        &req.target,
        yunwei_reports::from_assessment::utc_offset_minutes(&c.contract, now_ms),
    );
    mail(
        store,
        &contracts.config.notify.external_url,
        &c,
        &row.period,
        crate::lifecycle_mail::Step::Appeal,
        SignOffRole::Reviewer,
        &format!(
            "{by} 对 {what} 提出申诉：{reason}\n请于 {} 前复核。",
            deadline_text(&w.review_deadline, &c)
        ),
        &format!(
            "{by} appealed {what_en}: {reason}\nPlease decide by {}.",
            deadline_text(&w.review_deadline, &c)
        ),
        now_ms,
    )
    .await;
    Ok(row)
}

/// Queues a lifecycle mail; a failure to queue is logged, never undoes the change it follows.
#[allow(clippy::too_many_arguments)]
async fn mail(
    store: &Store,
    external_url: &str,
    c: &LoadedContract,
    period: &str,
    step: crate::lifecycle_mail::Step,
    party: SignOffRole,
    zh: &str,
    en: &str,
    now_ms: i64,
) {
    if let Err(e) =
        crate::lifecycle_mail::notify(store, external_url, c, period, step, party, zh, en, now_ms)
            .await
    {
        tracing::error!(contract = %c.contract.id, period, error = %e, "queueing lifecycle mail failed");
    }
}

/// Tells the vendor that the draft of `archived`'s period was issued (the first archived
/// version of a contract with a lifecycle), with the appeal deadline. Called by every
/// generator (API, schedule, command line) after archiving.
pub async fn draft_issued(
    store: &Store,
    external_url: &str,
    c: &LoadedContract,
    archived: &crate::reports::ArchivedReport,
    now_ms: i64,
) {
    let Ok(Some(w)) = window(store, c, &archived.period).await else {
        return;
    };
    if w.draft_report_id != archived.id {
        return;
    }
    let score = yunwei_reports::Fixed(archived.score_milli);
    let until = deadline_text(&w.appeal_deadline, c);
    mail(
        store,
        external_url,
        c,
        &archived.period,
        crate::lifecycle_mail::Step::Draft,
        SignOffRole::Operator,
        &format!(
            "初稿 v{}，得分 {score}。对扣分有异议的，请于 {until} 前申诉。",
            archived.version
        ),
        &format!(
            "Draft v{}, score {score}. Appeal a deduction by {until}.",
            archived.version
        ),
        now_ms,
    )
    .await;
}

fn check_attachments(files: &[NewAttachment]) -> Result<(), AppealError> {
    if files.len() > MAX_ATTACHMENTS {
        return Err(invalid(
            "attachments",
            format!("at most {MAX_ATTACHMENTS} files"),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, f) in files.iter().enumerate() {
        let field = format!("attachments[{i}]");
        let name_ok = !f.name.is_empty()
            && f.name.len() <= 128
            && !f.name.starts_with('.')
            && !f
                .name
                .chars()
                .any(|c| c.is_control() || matches!(c, '/' | '\\' | '"'));
        if !name_ok {
            return Err(invalid(
                &format!("{field}.name"),
                "a file name of at most 128 bytes, without / \\ \" or control characters",
            ));
        }
        if !names.insert(f.name.as_str()) {
            return Err(invalid(&format!("{field}.name"), "given twice"));
        }
        if !valid_mime(&f.content_type) {
            return Err(invalid(
                &format!("{field}.content_type"),
                "not a MIME type (e.g. application/pdf)",
            ));
        }
        if f.bytes.is_empty() || f.bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(invalid(
                &format!("{field}.data"),
                format!("1 to {MAX_ATTACHMENT_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// `type/subtype` of RFC 6838 name characters, without parameters.
fn valid_mime(s: &str) -> bool {
    let name = |p: &str| {
        !p.is_empty()
            && p.len() <= 127
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    s.split_once('/').is_some_and(|(t, st)| name(t) && name(st))
}

/// Whether `a` deducted for `target`.
pub fn target_in(a: &Assessment, target: &AppealTarget) -> bool {
    match target {
        AppealTarget::Deduction { item, subject } => a
            .deductions
            .iter()
            .any(|d| d.item == *item && d.lines.iter().any(|l| l.subject == *subject)),
        AppealTarget::Outage { system, start_ms } => a
            .systems
            .iter()
            .any(|s| s.system == *system && s.outages.iter().any(|o| o.start_ms == *start_ms)),
        AppealTarget::IncidentClock { incident, clock } => a.deductions.iter().any(|d| {
            d.lines.iter().any(|l| {
                l.subject == *incident
                    && matches!(&l.detail, LineDetail::ClockLate { clock: c, .. } if c == clock)
            })
        }),
        AppealTarget::Inspection {
            inspection,
            scheduled_ms,
        } => a
            .inspections
            .missed
            .iter()
            .any(|m| m.kind == *inspection && m.scheduled_ms == *scheduled_ms),
    }
}

/// A reviewer's decision.
#[derive(Debug, Clone)]
pub struct NewDecision {
    pub outcome: AppealOutcome,
    pub reason: String,
    pub approved_points: Option<f64>,
    pub approved_minutes: Option<f64>,
}

fn outcome_name(o: AppealOutcome) -> &'static str {
    match o {
        AppealOutcome::Upheld => "upheld",
        AppealOutcome::Overturned => "overturned",
        AppealOutcome::Adjusted => "adjusted",
    }
}

/// Parses `upheld`, `overturned` or `adjusted`.
pub fn parse_outcome(s: &str) -> Option<AppealOutcome> {
    [
        AppealOutcome::Upheld,
        AppealOutcome::Overturned,
        AppealOutcome::Adjusted,
    ]
    .into_iter()
    .find(|o| outcome_name(*o) == s)
}

fn milli(x: f64) -> i64 {
    (x * 1000.0).round() as i64
}

/// Decides appeal `id` by `by` at `now_ms`, with `audit` in its transaction.
pub async fn decide(
    store: &Store,
    contracts: &Contracts,
    by: &str,
    id: &str,
    d: NewDecision,
    now_ms: i64,
    audit: Audit<'_>,
) -> Result<AppealRow, AppealError> {
    let a = store
        .appeal(id)
        .await?
        .ok_or(AppealError::NotFound("appeal"))?;
    if a.filed_by == by {
        return Err(AppealError::OwnAppeal);
    }
    let reason = d.reason.trim();
    if reason.is_empty() {
        return Err(invalid("reason", "must not be empty"));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(invalid(
            "reason",
            format!("at most {MAX_REASON_BYTES} bytes"),
        ));
    }
    let target: AppealTarget =
        serde_json::from_str(&a.target).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let outage = matches!(target, AppealTarget::Outage { .. });
    let (mut points, mut minutes) = (None, None);
    if d.outcome == AppealOutcome::Adjusted {
        let (field, value) = if outage {
            ("approved_minutes", d.approved_minutes)
        } else {
            ("approved_points", d.approved_points)
        };
        match value {
            Some(v) if (0.0..=1e9).contains(&v) => {
                if outage {
                    minutes = Some(milli(v));
                } else {
                    points = Some(milli(v));
                }
            }
            Some(_) => return Err(invalid(field, "must be a number ≥ 0")),
            None => {
                return Err(AppealError::Invalid {
                    field: field.into(),
                    message: if outage {
                        "an adjusted outage needs the minutes that count".into()
                    } else {
                        "an adjusted deduction needs the points that count".into()
                    },
                });
            }
        }
    }
    let decided = store
        .decide_appeal(
            id,
            &Decision {
                status: outcome_name(d.outcome),
                approved_points_milli: points,
                approved_minutes_milli: minutes,
                decided_by: by,
                decided_ms: now_ms,
                reason,
            },
            audit,
        )
        .await?;
    if !decided {
        return Err(AppealError::Conflict {
            field: "id".into(),
            message: format!("already {}", a.status),
        });
    }
    if let Some(c) = contracts.get(&a.contract_id) {
        let (zh, en) = match d.outcome {
            AppealOutcome::Upheld => ("维持扣分", "upheld"),
            AppealOutcome::Overturned => ("撤销扣分", "overturned"),
            AppealOutcome::Adjusted => ("调整扣分", "adjusted"),
        };
        mail(
            store,
            &contracts.config.notify.external_url,
            &c,
            &a.period,
            crate::lifecycle_mail::Step::Decision,
            SignOffRole::Operator,
            &format!("{by} 复核申诉 appeal:{id}：{zh}。理由：{reason}"),
            &format!("{by} decided appeal appeal:{id}: {en}. Reason: {reason}"),
            now_ms,
        )
        .await;
        let pending = store
            .appeals(Some(&a.contract_id), Some(&a.period))
            .await?
            .iter()
            .any(|x| x.status == "pending");
        if !pending && let Some(l) = &c.contract.lifecycle {
            for party in &l.sign_off {
                mail(
                    store,
                    &contracts.config.notify.external_url,
                    &c,
                    &a.period,
                    crate::lifecycle_mail::Step::SignOff,
                    *party,
                    "全部申诉已复核，请签认最新版本。",
                    "Every appeal is decided: please sign the latest version off.",
                    now_ms,
                )
                .await;
            }
        }
    }
    Ok(store.appeal(id).await?.unwrap_or(a))
}

/// An appeal as the assessment's evidence (`appeal:<id>`); `None` for a row that does not
/// decode (never written by this server).
pub fn to_evidence(r: &AppealRow, attachments: &[AttachmentRow]) -> Option<Appeal> {
    let target = serde_json::from_str(&r.target).ok()?;
    let decision = match (
        parse_outcome(&r.status),
        &r.decided_by,
        r.decided_ms,
        &r.decision_reason,
    ) {
        (Some(outcome), Some(by), Some(at), Some(reason)) => Some(AppealDecision {
            outcome,
            approved_points: r.approved_points_milli.map(|m| m as f64 / 1000.0),
            approved_minutes: r.approved_minutes_milli.map(|m| m as f64 / 1000.0),
            decided_by: by.clone(),
            decided_ms: at,
            reason: reason.clone(),
        }),
        _ => None,
    };
    Some(Appeal {
        id: format!("appeal:{}", r.id),
        target,
        filed_by: r.filed_by.clone(),
        filed_ms: r.filed_ms,
        reason: r.reason.clone(),
        attachments: attachments
            .iter()
            .filter(|f| f.appeal_id == r.id)
            .map(|f| format!("{} {}", f.name, f.sha256))
            .collect(),
        decision,
    })
}

/// The appeals of `contract_id`'s `period` as evidence rows.
pub async fn evidence(
    store: &Store,
    contract_id: &str,
    period: &Period,
) -> sqlx::Result<Vec<Appeal>> {
    let rows = store
        .appeals(Some(contract_id), Some(&period.label))
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let files = store.appeal_attachments(Some(contract_id)).await?;
    Ok(rows
        .iter()
        .filter(|r| r.start_ms == period.start_ms && r.end_ms == period.end_ms)
        .filter_map(|r| to_evidence(r, &files))
        .collect())
}

/// An appeal as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AppealView {
    pub id: String,
    pub report_id: i64,
    pub contract_id: String,
    pub period: String,
    pub target: serde_json::Value,
    pub reason: String,
    pub filed_by: String,
    pub filed_ms: i64,
    pub status: String,
    pub approved_points: Option<f64>,
    pub approved_minutes: Option<f64>,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub decision_reason: Option<String>,
    pub attachments: Vec<AttachmentView>,
    /// The period's appeal window closes at this instant (UTC ms).
    pub appeal_deadline_ms: Option<i64>,
    /// Decisions are due before this instant.
    pub review_deadline_ms: Option<i64>,
}

/// An attachment as listed.
#[derive(Debug, Clone, Serialize)]
pub struct AttachmentView {
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

/// The appeals, optionally of one contract and period, with their deadlines.
pub async fn list(
    store: &Store,
    contracts: &Arc<Contracts>,
    contract_id: Option<&str>,
    period: Option<&str>,
) -> Result<Vec<AppealView>, AppealError> {
    let rows = store.appeals(contract_id, period).await?;
    let files = store.appeal_attachments(contract_id).await?;
    let mut windows: std::collections::BTreeMap<(String, String), Option<Window>> =
        Default::default();
    let mut out = Vec::new();
    for r in rows {
        let key = (r.contract_id.clone(), r.period.clone());
        if !windows.contains_key(&key) {
            let w = match contracts.get(&r.contract_id) {
                Some(c) => window(store, &c, &r.period).await?,
                None => None,
            };
            windows.insert(key.clone(), w);
        }
        let w = windows.get(&key).and_then(Option::as_ref);
        out.push(AppealView {
            target: serde_json::from_str(&r.target).unwrap_or(serde_json::Value::Null),
            attachments: files
                .iter()
                .filter(|f| f.appeal_id == r.id)
                .map(|f| AttachmentView {
                    name: f.name.clone(),
                    content_type: f.content_type.clone(),
                    size: f.size,
                    sha256: f.sha256.clone(),
                })
                .collect(),
            appeal_deadline_ms: w.map(|w| w.appeal_deadline.at_ms),
            review_deadline_ms: w.map(|w| w.review_deadline.at_ms),
            approved_points: r.approved_points_milli.map(|m| m as f64 / 1000.0),
            approved_minutes: r.approved_minutes_milli.map(|m| m as f64 / 1000.0),
            id: r.id,
            report_id: r.report_id,
            contract_id: r.contract_id,
            period: r.period,
            reason: r.reason,
            filed_by: r.filed_by,
            filed_ms: r.filed_ms,
            status: r.status,
            decided_by: r.decided_by,
            decided_ms: r.decided_ms,
            decision_reason: r.decision_reason,
        });
    }
    Ok(out)
}

/// The origin recorded with a final version (终稿) in the archive.
pub const FINAL_ORIGIN: &str = "final";

/// Whether `contract_id`'s `period` has a final version in `lang`.
async fn final_in(
    store: &Store,
    contract_id: &str,
    period: &str,
    lang: yunwei_reports::Lang,
) -> Result<bool, AppealError> {
    Ok(store
        .reports(Some(contract_id))
        .await?
        .iter()
        .any(|r| r.period == period && r.origin == FINAL_ORIGIN && r.lang == lang.tag()))
}

/// The final version of a contract's period, if one was made.
pub async fn final_of(
    store: &Store,
    contract_id: &str,
    period: &str,
) -> Result<Option<crate::store::reports::ReportRow>, AppealError> {
    Ok(store
        .reports(Some(contract_id))
        .await?
        .into_iter()
        .filter(|r| r.period == period && r.origin == FINAL_ORIGIN)
        .min_by_key(|r| r.version))
}

/// Records `role`'s sign-off (签认) of report version `report_id` by `actor` at `now_ms`
/// (with `audit`), then makes the final version when nothing else is missing
/// ([`finalize`]). The version must be the period's latest, every appeal decided, no final
/// made yet, and `role` one of the contract's `lifecycle.sign_off` parties.
pub async fn sign_off(
    reports: &crate::reports::Reports,
    role: crate::auth::Role,
    actor: &str,
    report_id: i64,
    now_ms: i64,
    audit: Audit<'_>,
) -> Result<Vec<crate::reports::ArchivedReport>, AppealError> {
    let store = &reports.store;
    let report = store
        .report(report_id)
        .await?
        .ok_or(AppealError::NotFound("report"))?;
    let c = reports
        .contracts
        .get(&report.contract_id)
        .ok_or(AppealError::NotFound("contract"))?;
    let Some(l) = &c.contract.lifecycle else {
        return Err(AppealError::Conflict {
            field: "id".into(),
            message: format!(
                "contract {} has no lifecycle: its reports are final as made",
                c.contract.id
            ),
        });
    };
    if !l.sign_off.iter().any(|r| r.as_str() == role.as_str()) {
        return Err(AppealError::NotAParty(format!(
            "role {} does not sign off contract {} (lifecycle.sign_off: {})",
            role.as_str(),
            c.contract.id,
            l.sign_off
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if final_of(store, &report.contract_id, &report.period)
        .await?
        .is_some()
    {
        return Err(AppealError::Conflict {
            field: "id".into(),
            message: format!("{} {} is final already", c.contract.id, report.period),
        });
    }
    let latest = store
        .report_max_version(&report.contract_id, &report.period)
        .await?;
    if report.version != latest {
        return Err(AppealError::Conflict {
            field: "id".into(),
            message: format!(
                "sign the latest version of {} {} (v{latest}), not v{}",
                c.contract.id, report.period, report.version
            ),
        });
    }
    let pending = store
        .appeals(Some(&report.contract_id), Some(&report.period))
        .await?
        .into_iter()
        .filter(|a| a.status == "pending")
        .count();
    if pending > 0 {
        return Err(AppealError::Conflict {
            field: "id".into(),
            message: format!(
                "{pending} appeal(s) of {} {} still pending review",
                c.contract.id, report.period
            ),
        });
    }
    let signed = store
        .insert_signoff(
            &crate::store::appeals::SignoffRow {
                contract_id: report.contract_id.clone(),
                period: report.period.clone(),
                role: role.as_str().to_string(),
                signed_by: actor.to_string(),
                signed_ms: now_ms,
                report_id,
            },
            audit,
        )
        .await?;
    if !signed {
        return Err(AppealError::Conflict {
            field: "id".into(),
            message: format!(
                "the {} has signed {} {} off already",
                role.as_str(),
                c.contract.id,
                report.period
            ),
        });
    }
    let made = finalize(reports, &c, &report.period, now_ms).await?;
    if made.is_empty() {
        let signed: Vec<String> = store
            .signoffs(&c.contract.id, Some(&report.period))
            .await?
            .into_iter()
            .map(|s| s.role)
            .collect();
        for party in l
            .sign_off
            .iter()
            .filter(|p| !signed.iter().any(|s| s == p.as_str()))
        {
            mail(
                store,
                &reports.config.notify.external_url,
                &c,
                &report.period,
                crate::lifecycle_mail::Step::SignOff,
                *party,
                &format!(
                    "{actor}（{}）已签认 v{}，请签认。",
                    role.as_str(),
                    report.version
                ),
                &format!(
                    "{actor} ({}) signed v{} off; please sign off too.",
                    role.as_str(),
                    report.version
                ),
                now_ms,
            )
            .await;
        }
    }
    Ok(made)
}

/// Makes the final version (终稿) of `c`'s `period` when it is due at `now_ms`: a draft
/// exists, no final yet, every appeal decided, and every `sign_off` party signed (or, with
/// `final_when_unanswered`, the review deadline passed). One version per scheduled language
/// in the scheduled formats, archived with origin [`FINAL_ORIGIN`], mailed to the contract's
/// `report:` recipients. Returns what it made.
pub async fn finalize(
    reports: &crate::reports::Reports,
    c: &Arc<LoadedContract>,
    period: &str,
    now_ms: i64,
) -> Result<Vec<crate::reports::ArchivedReport>, AppealError> {
    let store = &reports.store;
    let Some(l) = &c.contract.lifecycle else {
        return Ok(Vec::new());
    };
    let Some(w) = window(store, c, period).await? else {
        return Ok(Vec::new());
    };
    if final_of(store, &c.contract.id, period).await?.is_some() {
        return Ok(Vec::new());
    }
    let appeals = store.appeals(Some(&c.contract.id), Some(period)).await?;
    if appeals.iter().any(|a| a.status == "pending") {
        return Ok(Vec::new());
    }
    let signed: Vec<String> = store
        .signoffs(&c.contract.id, Some(period))
        .await?
        .into_iter()
        .map(|s| s.role)
        .collect();
    let all_signed = l
        .sign_off
        .iter()
        .all(|r| signed.iter().any(|s| s == r.as_str()));
    let lapsed = l.final_when_unanswered && now_ms >= w.review_deadline.at_ms;
    if !all_signed && !lapsed {
        return Ok(Vec::new());
    }
    let (formats, langs) = crate::reports::scheduled_formats(c);
    let mut made = Vec::new();
    for lang in langs {
        let generated = crate::reports::generate_staged(
            store,
            &reports.config.data_dir,
            c,
            &crate::reports::Request {
                period: period.to_string(),
                formats: formats.clone(),
                lang,
                font: None,
                origin: FINAL_ORIGIN.into(),
                notes: Vec::new(),
                compute_limit: None,
            },
            now_ms,
            reports.config.contracts.run_inspections,
            reports.config.contracts.auto_assign_from_labels,
            yunwei_reports::model::Stage::Final,
        )
        .await;
        let g = match generated {
            Ok(g) => g,
            // Another maker (a sign-off through another replica, the schedule on the leader)
            // archived this language's final first: the store keeps one (`reports_one_final`).
            Err(e) if final_in(store, &c.contract.id, period, lang).await? => {
                tracing::info!(
                    contract = %c.contract.id,
                    period,
                    lang = lang.tag(),
                    error = %e,
                    "final report made meanwhile by another maker; not made again"
                );
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(
            contract = %c.contract.id,
            period,
            version = g.archived.version,
            id = g.archived.id,
            "final report archived"
        );
        if let Some(r) = &c.contract.report {
            let smtp = reports.config.notify.smtp.is_some();
            crate::report_mail::enqueue(
                store,
                g.archived.id,
                &c.contract.id,
                &r.to,
                &r.cc,
                (!smtp).then_some(crate::report_mail::NO_SMTP),
                now_ms,
            )
            .await
            .map_err(|e| AppealError::Report(e.into()))?;
        }
        made.push(g.archived);
    }
    Ok(made)
}

/// The schedule's pass: makes every final version due at `now_ms` (the review deadline of
/// a contract with `final_when_unanswered` passed with every appeal decided).
pub async fn run_due_finals(
    reports: &crate::reports::Reports,
    now_ms: i64,
) -> Result<Vec<crate::reports::ArchivedReport>, AppealError> {
    let mut made = Vec::new();
    for c in reports.contracts.list() {
        if !c
            .contract
            .lifecycle
            .as_ref()
            .is_some_and(|l| l.final_when_unanswered)
        {
            continue;
        }
        let mut periods: Vec<String> = reports
            .store
            .reports(Some(&c.contract.id))
            .await?
            .into_iter()
            .map(|r| r.period)
            .collect();
        periods.sort();
        periods.dedup();
        for p in periods {
            made.extend(finalize(reports, &c, &p, now_ms).await?);
        }
    }
    Ok(made)
}

/// Where an archived version stands in its period's lifecycle, for the reports page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionState {
    /// `appeal_open` (the draft is out, appeals accepted until `deadline_ms`), `in_review`
    /// (the window closed; decisions and sign-offs due by `deadline_ms`), `awaiting_final`
    /// (the review deadline passed without a final version), `final` (终稿), or
    /// `superseded` (a later version of the period exists, see `superseded_by`).
    pub state: &'static str,
    pub deadline_ms: Option<i64>,
    /// The period's appeals not decided yet.
    pub pending_appeals: usize,
    /// Sign-offs (签认) given to this version.
    pub signed_off: Vec<SignedOff>,
    /// The version that replaces this one: the final when there is one, else the latest.
    pub superseded_by: Option<i64>,
}

/// One party's sign-off of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedOff {
    pub role: String,
    pub signed_by: String,
    pub signed_ms: i64,
}

/// Sets [`crate::reports::ArchivedReport::lifecycle`] on every version in `list` whose
/// contract has a lifecycle, as of `now_ms`.
pub async fn annotate_versions(
    store: &Store,
    contracts: &Contracts,
    list: &mut [crate::reports::ArchivedReport],
    now_ms: i64,
) -> Result<(), AppealError> {
    let mut periods: std::collections::BTreeSet<(String, String)> = Default::default();
    for a in list.iter() {
        if contracts
            .get(&a.contract_id)
            .is_some_and(|c| c.contract.lifecycle.is_some())
        {
            periods.insert((a.contract_id.clone(), a.period.clone()));
        }
    }
    for (contract_id, period) in periods {
        let Some(c) = contracts.get(&contract_id) else {
            continue;
        };
        let w = window(store, &c, &period).await?;
        let pending = store
            .appeals(Some(&contract_id), Some(&period))
            .await?
            .iter()
            .filter(|r| r.status == "pending")
            .count();
        let signoffs = store.signoffs(&contract_id, Some(&period)).await?;
        let versions: Vec<_> = list
            .iter()
            .filter(|a| a.contract_id == contract_id && a.period == period)
            .map(|a| (a.id, a.version, a.origin == FINAL_ORIGIN))
            .collect();
        let final_version = versions.iter().filter(|v| v.2).map(|v| v.1).min();
        let latest = versions.iter().map(|v| v.1).max().unwrap_or_default();
        for a in list
            .iter_mut()
            .filter(|a| a.contract_id == contract_id && a.period == period)
        {
            let replacement = final_version.or(Some(latest)).filter(|&v| v != a.version);
            let (state, deadline_ms) = if a.origin == FINAL_ORIGIN && replacement.is_none() {
                ("final", None)
            } else if replacement.is_some() {
                ("superseded", None)
            } else {
                match &w {
                    Some(w) if now_ms < w.appeal_deadline.at_ms => {
                        ("appeal_open", Some(w.appeal_deadline.at_ms))
                    }
                    Some(w) if now_ms < w.review_deadline.at_ms => {
                        ("in_review", Some(w.review_deadline.at_ms))
                    }
                    _ => (
                        "awaiting_final",
                        w.as_ref().map(|w| w.review_deadline.at_ms),
                    ),
                }
            };
            a.lifecycle = Some(VersionState {
                state,
                deadline_ms,
                pending_appeals: pending,
                signed_off: signoffs
                    .iter()
                    .filter(|s| s.report_id == a.id)
                    .map(|s| SignedOff {
                        role: s.role.clone(),
                        signed_by: s.signed_by.clone(),
                        signed_ms: s.signed_ms,
                    })
                    .collect(),
                superseded_by: replacement,
            });
        }
    }
    Ok(())
}
