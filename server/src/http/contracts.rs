//! Contracts: the list, month-to-date status, assessments, inspection records and the
//! office's manual events.

use std::{collections::BTreeSet, sync::Arc};

use axum::{Extension, body::Bytes, extract::State as AxState, response::Json};

use super::extract::{Path as UrlPath, Query};
use serde::Deserialize;
use serde_json::{Value, json};
use yunwei_sla::{
    assess::{Assessment, Period, SubjectKind},
    contract::Contract,
};

use super::{ApiError, ErrorKind, authz::Principal, json_body};
use crate::{
    AppState,
    contracts::{LoadedContract, assess_period, current_month},
    membership, now_ms,
    store::{ContractEventRow, HOUR_MS},
};

/// The loaded contract `id`, or a 404.
pub(super) fn find(state: &AppState, id: &str) -> Result<Arc<LoadedContract>, ApiError> {
    state
        .contracts
        .get(id)
        .ok_or_else(|| ApiError::not_found("contract"))
}

/// Parses a period of `c` given by the caller (field `period`), refusing one longer than
/// [`yunwei_conf::limits::MAX_ASSESSMENT_PERIOD_DAYS`] and counting the refusal.
pub(super) fn parse_period(
    state: &AppState,
    p: &str,
    c: &LoadedContract,
) -> Result<Period, ApiError> {
    let period = Period::parse(p, c.contract.time_zone)
        .map_err(|e| ApiError::new(ErrorKind::InvalidValue, e.to_string()).field("period"))?;
    crate::contracts::check_period_length(&period).map_err(|m| {
        state
            .metrics
            .api_limited
            .with_label_values(&["assessment_period"])
            .inc();
        ApiError::new(ErrorKind::InvalidValue, m).field("period")
    })?;
    Ok(period)
}

/// Maps an assessment's error, counting one that ran out of time in
/// `yunwei_api_limited_total{limit="compute_time"}` (503 `unavailable` with `Retry-After`).
pub(super) fn compute_error(state: &AppState, e: crate::contracts::ContractError) -> ApiError {
    if let crate::contracts::ContractError::Compute(c) = e {
        return compute_failure(state, c);
    }
    e.into()
}

/// A CPU-heavy step that ran out of time is 503 `unavailable` (counted); one that failed is
/// internal.
pub(super) fn compute_failure(state: &AppState, e: crate::compute::ComputeError) -> ApiError {
    match e {
        crate::compute::ComputeError::TimedOut(_) => {
            state
                .metrics
                .api_limited
                .with_label_values(&["compute_time"])
                .inc();
            ApiError::unavailable(&format!(
                "{e} (contracts.compute_timeout_ms); the server is busy or the period too \
                 large, try again later"
            ))
        }
        crate::compute::ComputeError::Failed(_) => ApiError::internal(e),
    }
}

/// `GET /api/v1/contracts`
pub(super) async fn list(AxState(state): AxState<Arc<AppState>>) -> Json<Value> {
    let now = now_ms();
    let contracts: Vec<Value> = state
        .contracts
        .list()
        .iter()
        .map(|c| {
            let k = &c.contract;
            json!({
                "id": k.id,
                "name": k.name,
                "parties": k.parties,
                "period": { "start": k.period.start, "end": k.period.end },
                "time_zone": k.time_zone.name(),
                "current_period": current_month(k, now).label,
                "systems": k.systems.iter().map(|s| json!({"id": s.id, "name": s.name, "tier": s.tier})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "contracts": contracts }))
}

/// `GET /api/v1/contracts/{id}/status`: the current month to date.
pub(super) async fn status(
    AxState(state): AxState<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &id)?;
    let now = now_ms();
    let period = current_month(&c.contract, now);
    state.contracts.sync_membership(&c, now).await?;
    let a = assess_period(
        &state.store,
        &c,
        &period,
        now,
        state.config.contracts.run_inspections,
        Some(state.config.contracts.compute_limit()),
    )
    .await
    .map_err(|e| compute_error(&state, e))?;
    let systems: Vec<Value> = a
        .systems
        .iter()
        .map(|s| {
            json!({
                "id": s.system,
                "name": s.name,
                "tier": s.tier,
                "target_percent": s.target_percent,
                "actual_percent": s.actual_percent,
                "met": s.met,
                "coverage_percent": s.coverage_percent,
                "min_coverage_percent": s.min_coverage_percent,
                "insufficient_evidence": s.insufficient_evidence,
                "downtime_minutes": s.downtime_minutes,
                "missing_minutes": s.missing_minutes,
                "excluded_minutes": s.excluded_minutes,
                "error_budget_left_minutes": s.error_budget_left_minutes,
                "decided_by": s.decided_by,
            })
        })
        .collect();
    Ok(Json(json!({
        "contract": c.contract.id,
        "period": a.period,
        "as_of_ms": a.as_of_ms,
        "provisional": a.provisional,
        "provisional_reasons": a.provisional_reasons,
        "notes": a.notes,
        "systems": systems,
        "open_breaches": a.deductions,
        "score": a.score,
        "grade": a.grade,
        "grade_withheld": a.grade_withheld,
        "payment": a.payment,
        "disagreements": a.disagreements,
    })))
}

#[derive(Deserialize)]
pub struct AssessmentQuery {
    period: Option<String>,
}

/// `GET /api/v1/contracts/{id}/assessment?period=2026-10|2026-Q3|2026|2026-10-01..2026-10-15`
pub(super) async fn assessment(
    AxState(state): AxState<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<AssessmentQuery>,
) -> Result<Json<Assessment>, ApiError> {
    let c = find(&state, &id)?;
    let now = now_ms();
    let period = match q.period.as_deref() {
        None => current_month(&c.contract, now),
        Some(p) => parse_period(&state, p, &c)?,
    };
    state.contracts.sync_membership(&c, now).await?;
    let a = assess_period(
        &state.store,
        &c,
        &period,
        now,
        state.config.contracts.run_inspections,
        Some(state.config.contracts.compute_limit()),
    )
    .await
    .map_err(|e| compute_error(&state, e))?;
    Ok(Json(a))
}

#[derive(Deserialize)]
pub struct RangeQuery {
    from: Option<i64>,
    to: Option<i64>,
}

/// `GET /api/v1/contracts/{id}/inspections?from=&to=` (UTC ms; default the last 31 days)
pub(super) async fn inspections(
    AxState(state): AxState<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &id)?;
    let to = q.to.unwrap_or_else(now_ms);
    let from = q.from.unwrap_or(to - 31 * 24 * HOUR_MS);
    let rows = state
        .store
        .inspections(&c.contract.id, from, to)
        .await
        .map_err(ApiError::internal)?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "kind": r.kind,
                "scheduled_ms": r.scheduled_ms,
                "done_ms": r.done_ms,
                "ok": r.ok,
                "result": serde_json::from_str::<Value>(&r.result).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(
        json!({ "contract": c.contract.id, "inspections": list }),
    ))
}

/// The event categories a contract scores: manual deductions, bonuses and veto items.
fn event_categories(c: &Contract) -> BTreeSet<&str> {
    let s = &c.scoring;
    s.deductions
        .iter()
        .filter_map(|d| d.category.as_deref())
        .chain(s.bonuses.iter().map(|b| b.category.as_str()))
        .chain(s.vetoes.iter().map(|v| v.category.as_str()))
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEvent {
    category: String,
    /// When it happened (default: now).
    at_ms: Option<i64>,
    /// Document number or description; required.
    evidence: String,
}

/// `POST /api/v1/contracts/{id}/events`: the office records an event that a manual deduction,
/// bonus or veto item scores (通报, a late report, help outside the contract, ...).
pub(super) async fn record_event(
    AxState(state): AxState<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    principal: Option<Extension<Principal>>,
    ctx: Option<Extension<crate::audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &id)?;
    let e: NewEvent = json_body(&b)?;
    let allowed = event_categories(&c.contract);
    if !allowed.contains(e.category.as_str()) {
        let list: Vec<&str> = allowed.into_iter().collect();
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!(
                "the contract scores no event {:?}; its categories: {}",
                e.category,
                list.join(", ")
            ),
        )
        .field("category"));
    }
    if e.evidence.trim().is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidValue, "must not be empty").field("evidence"));
    }
    let now = now_ms();
    let row = ContractEventRow {
        id: 0,
        contract_id: c.contract.id.clone(),
        category: e.category,
        at_ms: e.at_ms.unwrap_or(now),
        evidence: e.evidence.trim().to_string(),
        recorded_by: principal.map_or_else(|| "unknown".to_string(), |Extension(p)| p.actor),
        recorded_ms: now,
    };
    let rec = super::authz::audit_row(&ctx, now, json!({ "category": row.category }));
    let id = state
        .store
        .insert_contract_event(&row, crate::audit::of(&rec))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "status": "success", "data": { "id": id } })))
}

/// `GET /api/v1/contracts/{id}/events?from=&to=` (UTC ms; default the last 400 days)
pub(super) async fn events(
    AxState(state): AxState<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &id)?;
    let to = q.to.unwrap_or_else(now_ms) + 1;
    let from = q.from.unwrap_or(to - 400 * 24 * HOUR_MS);
    let rows = state
        .store
        .contract_events(&c.contract.id, from, to)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "contract": c.contract.id, "events": rows })))
}

/// `GET /api/v1/contracts/{id}/membership`: every membership row (current and history), the
/// rows in force now, and the subjects the contract's selectors propose that are not members
/// ("pending assignment").
pub(super) async fn membership(
    AxState(state): AxState<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &id)?;
    let now = now_ms();
    state.contracts.sync_membership(&c, now).await?;
    let rows = state
        .store
        .memberships(&c.contract.id)
        .await
        .map_err(ApiError::internal)?;
    let pending = membership::pending(&state.store, &c, &rows, now)
        .await
        .map_err(ApiError::internal)?;
    let current: Vec<&_> = rows
        .iter()
        .filter(|r| membership::in_force(r, now))
        .collect();
    Ok(Json(json!({
        "contract": c.contract.id,
        "now": now,
        "auto_assign_from_labels": state.config.contracts.auto_assign_from_labels,
        "current": current,
        "history": rows,
        "pending": pending,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembershipChange {
    action: membership::Action,
    system: String,
    /// `host` (an agent id) or `probe` (`<agent id>/<probe name>`).
    kind: String,
    subject: String,
    /// Default now; at most 5 minutes in the past.
    effective_from_ms: Option<i64>,
    reason: String,
}

/// `POST /api/v1/contracts/{id}/membership`: assign or unassign a host or probe, effective from
/// now (or later; at most 5 minutes back), with the reason; audited.
pub(super) async fn change_membership(
    AxState(state): AxState<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    principal: Option<Extension<Principal>>,
    ctx: Option<Extension<crate::audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let c = find(&state, &id)?;
    let m: MembershipChange = json_body(&b)?;
    let kind = match m.kind.as_str() {
        "host" => SubjectKind::Host,
        "probe" => SubjectKind::Probe,
        _ => return Err(ApiError::invalid("kind", "must be \"host\" or \"probe\"")),
    };
    let (actor, source) = principal.map_or_else(
        || ("unknown".to_string(), "unknown".to_string()),
        |Extension(p)| (p.actor, p.source),
    );
    let ch = membership::Change {
        action: m.action,
        system: m.system,
        kind,
        subject: m.subject,
        effective_from_ms: m.effective_from_ms,
        reason: m.reason,
    };
    let row = membership::change(
        &state.store,
        &c,
        &ch,
        &actor,
        &source,
        ctx.as_ref().map(|c| &c.0),
        now_ms(),
    )
    .await?;
    Ok(Json(json!({ "status": "success", "data": row })))
}
