//! HTTP endpoints of notifications: the signed acknowledge link (`GET /ack/{token}` shows a
//! small bilingual confirmation page whose form posts to `POST /ack/{token}`, which
//! acknowledges, so that mail scanners prefetching links acknowledge nothing), alert groups with acknowledge / unacknowledge / resolve, the notification
//! log and queue, silences, exclusion requests, incidents and their backdating / downgrade
//! requests. The acting user is the logged-in caller
//! (`http::authz::Principal`); a `by` field in a request body is ignored for authenticated callers.

use std::sync::Arc;

use axum::{
    Extension,
    body::Bytes,
    extract::State as AxState,
    http::StatusCode,
    response::{Html, IntoResponse, Json, Response},
};

use super::extract::{Path, Query};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::notify::{
    dispatch::AckError,
    incidents::{self as incident_rules, LevelChanged, ReviewRefused, Stamped},
    matcher::Matcher,
    message::html_escape,
    token,
};
use crate::{
    AppState, audit,
    http::authz::{Principal, audit_row},
    http::{ApiError, ErrorKind, json_body},
    now_ms,
    secret::secret_hash,
    store::{
        incidents::{Clock, IncidentRow},
        notify::{ExclusionRow, SilenceRow},
    },
};

/// The acting user: the logged-in caller when there is one (the request body cannot speak for
/// someone else), otherwise the body's `by` (callers the policy lets in unauthenticated).
fn acting(by: &mut String, principal: Option<Extension<Principal>>) {
    if let Some(Extension(p)) = principal {
        *by = p.actor;
    }
}

fn page(status: StatusCode, zh: &str, en: &str) -> Response {
    page_with(status, zh, en, "")
}

/// The bilingual page, with `extra` (trusted HTML) after the text.
fn page_with(status: StatusCode, zh: &str, en: &str, extra: &str) -> Response {
    (
        status,
        Html(format!(
            "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>yunwei</title></head>\
             <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">\
             <p>{}</p><p lang=\"en\">{}</p>{extra}</body></html>",
            html_escape(zh),
            html_escape(en)
        )),
    )
        .into_response()
}

/// The page of an invalid or expired link: not found rather than forbidden, since a link either
/// works or does not exist.
fn invalid_link(why: &str) -> Response {
    page(
        StatusCode::NOT_FOUND,
        "确认链接无效或已过期。",
        &format!("This acknowledge link is not valid ({why})."),
    )
}

/// `GET /ack/{token}`: changes nothing (mail scanners fetch links); asks to confirm by a form
/// that posts to the same address.
pub(super) async fn ack_confirm(
    AxState(state): AxState<Arc<AppState>>,
    Path(t): Path<String>,
) -> Response {
    let claim = match token::verify(&state.notify.secret, &t, now_ms()) {
        Ok(c) => c,
        Err(why) => return invalid_link(why),
    };
    page_with(
        StatusCode::OK,
        &format!("确认此告警？确认人：{}。", claim.recipient),
        &format!("Acknowledge this alert as {}?", claim.recipient),
        "<form method=\"post\"><button type=\"submit\">确认 / Acknowledge</button></form>",
    )
}

/// `POST /ack/{token}`: acknowledges for the link's recipient, once, and only the alert
/// episode the link was sent for. Every use is in the audit log: a success with its own row,
/// a refusal (forged, expired, used before, episode over) through the anonymous refusals
/// (`audit::Refusals`: the first from a source in a window has its row, the rest a summary),
/// so replaying a link cannot fill the log.
pub(super) async fn ack_link(
    AxState(state): AxState<Arc<AppState>>,
    connect: Option<Extension<super::ClientAddr>>,
    Path(t): Path<String>,
) -> Response {
    let now = now_ms();
    let audit = |actor: &str, target: &str, result: String| crate::audit::Entry {
        actor: actor.to_string(),
        action: "POST /ack/{token}".into(),
        target: target.to_string(),
        result,
        source: connect
            .as_ref()
            .map_or_else(|| "unknown".into(), |c| c.0.text()),
        detail: json!({ "via": "link" }),
    };
    let refused = |e: crate::audit::Entry| {
        crate::audit::record_refusal(
            &state.store,
            &state.refusals,
            &state.metrics,
            crate::audit::RefusalKind::AckLink,
            now,
            e,
        )
    };
    let claim = match token::verify(&state.notify.secret, &t, now) {
        Ok(c) => c,
        Err(why) => {
            refused(audit("anonymous", "link", format!("denied: {why}"))).await;
            return invalid_link(why);
        }
    };
    let target = format!("group {}", claim.group_id);
    let hash = secret_hash(&t);
    match state
        .store
        .claim_ack_link(&hash, &claim.group_id, &claim.recipient, now)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            refused(audit(
                &claim.recipient,
                &target,
                "denied: used before".into(),
            ))
            .await;
            return page(
                StatusCode::GONE,
                "此确认链接已使用过，不能再次使用。",
                "This acknowledge link has been used already; it works once.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "recording the use of an acknowledge link failed");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "暂时无法确认，请稍后重试。",
                "The acknowledgement could not be recorded; try again later.",
            );
        }
    }
    // A successful acknowledgement's row commits with its record; a refusal's is written here.
    let rec = crate::audit::Pending::new(now, &audit(&claim.recipient, &target, "success".into()));
    let result = state
        .notify
        .ack(
            &claim.group_id,
            "ack",
            &claim.recipient,
            "link",
            Some(claim.episode_ms),
            Some(rec),
        )
        .await;
    if let Err(e) = &result {
        refused(audit(&claim.recipient, &target, format!("denied: {e}"))).await;
    }
    match result {
        Ok(()) => page(
            StatusCode::OK,
            &format!("已确认告警，确认人：{}。", claim.recipient),
            &format!("Alert acknowledged by {}.", claim.recipient),
        ),
        // A follower replica's request the leader took but did not confirm in time: it will
        // be applied, so the link stays used.
        Err(e @ AckError::Unconfirmed) => page(
            StatusCode::ACCEPTED,
            "确认请求已由主节点接收，稍后生效；请在告警组中查看。",
            &format!("{e}."),
        ),
        Err(e) => {
            // Nothing was acknowledged: the link is not used up.
            if let Err(err) = state.store.release_ack_link(&hash).await {
                tracing::error!(error = %err, "releasing an acknowledge link failed");
            }
            match e {
                AckError::NotRecorded | AckError::NotRunning | AckError::NotLeader => page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "暂时无法确认（未作任何更改），请稍后重试。",
                    &format!("Nothing was acknowledged: {e}."),
                ),
                _ => page(
                    StatusCode::GONE,
                    "该告警已恢复、已进入新一轮告警或不存在，未确认任何告警。",
                    &format!("Nothing was acknowledged: {e}."),
                ),
            }
        }
    }
}

pub(super) async fn groups(AxState(state): AxState<Arc<AppState>>) -> Json<Value> {
    let groups = state.notify.groups().await;
    Json(
        json!({ "status": "success", "data": groups.iter().map(|g| json!({
        "id": g.id,
        "receiver": g.receiver,
        "groupLabels": g.group_labels,
        "alerts": g.alerts.values().collect::<Vec<_>>(),
        "firstNotifiedMs": g.first_notified_ms,
        "lastNotifiedMs": g.last_notified_ms,
        "ackedBy": g.acked_by,
        "ackedMs": g.acked_ms,
        "nextTier": g.next_tier,
    })).collect::<Vec<_>>() }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    /// Ignored when the caller is logged in: the acting user is the caller.
    #[serde(default)]
    by: String,
}

/// The one mapping of a refused acknowledgement to the API's error.
fn ack_error(e: AckError) -> ApiError {
    match e {
        AckError::NoGroup(_) => ApiError::new(ErrorKind::NotFound, e.to_string()).field("id"),
        AckError::EpisodeOver => ApiError::new(ErrorKind::Conflict, e.to_string()).field("id"),
        AckError::UnknownAction(_) => ApiError::not_found("action"),
        AckError::NotRecorded
        | AckError::NotRunning
        | AckError::NotLeader
        | AckError::Unconfirmed => ApiError::unavailable(&e.to_string()),
    }
}

pub(super) async fn group_action(
    AxState(state): AxState<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    principal: Option<Extension<Principal>>,
    ctx: Option<Extension<audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    if !matches!(action.as_str(), "ack" | "unack" | "resolve") {
        return Err(ApiError::not_found("action"));
    }
    let mut a: ActionBody = json_body(&b)?;
    acting(&mut a.by, principal);
    if a.by.trim().is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidValue, "must not be empty").field("by"));
    }
    let rec = audit_row(&ctx, now_ms(), json!({ "via": "api" }));
    state
        .notify
        .ack(&id, &action, a.by.trim(), "api", None, rec)
        .await
        .map_err(ack_error)?;
    Ok(Json(json!({ "status": "success" })))
}

pub(super) async fn group_acks(
    AxState(state): AxState<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rows = state
        .store
        .notify_acks(&id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "status": "success", "data": rows })))
}

#[derive(Deserialize)]
pub(super) struct LogQuery {
    group: Option<String>,
    limit: Option<i64>,
}

pub(super) async fn log(
    AxState(state): AxState<Arc<AppState>>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(500);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::new(ErrorKind::InvalidValue, "must be 1..10000").field("limit"));
    }
    let rows = state
        .store
        .notify_log(q.group.as_deref(), limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "status": "success", "data": rows })))
}

pub(super) async fn queue(AxState(state): AxState<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let rows = state
        .store
        .notify_queue()
        .await
        .map_err(ApiError::internal)?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({"id": r.id, "groupId": r.group_id, "receiver": r.receiver, "channel": r.channel,
                   "dueMs": r.due_ms, "attempts": r.attempts, "createdMs": r.created_ms})
        })
        .collect();
    Ok(Json(json!({ "status": "success", "data": rows })))
}

/// Each silence with its `state` at the server's clock (`pending`, `active` or `expired`, as
/// in Alertmanager), so clients need not compare times against a clock of their own.
pub(super) async fn silences(
    AxState(state): AxState<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let rows = state.store.silences().await.map_err(ApiError::internal)?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let st = if r.starts_ms > now {
                "pending"
            } else if r.ends_ms > now {
                "active"
            } else {
                "expired"
            };
            let mut v = json!(r);
            v["state"] = json!(st);
            v
        })
        .collect();
    Ok(Json(json!({ "status": "success", "data": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    matchers: Vec<String>,
    starts_ms: Option<i64>,
    ends_ms: i64,
    /// Ignored when the caller is logged in: the acting user is the caller.
    #[serde(default)]
    by: String,
    comment: String,
}

pub(super) async fn create_silence(
    AxState(state): AxState<Arc<AppState>>,
    principal: Option<Extension<Principal>>,
    ctx: Option<Extension<audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut s: SilenceBody = json_body(&b)?;
    acting(&mut s.by, principal);
    if s.matchers.is_empty() {
        return Err(
            ApiError::new(ErrorKind::InvalidValue, "at least one matcher").field("matchers"),
        );
    }
    for (i, m) in s.matchers.iter().enumerate() {
        Matcher::parse(m).map_err(|e| {
            ApiError::new(ErrorKind::InvalidValue, e).field(format!("matchers[{i}]"))
        })?;
    }
    let now = now_ms();
    let starts = s.starts_ms.unwrap_or(now);
    if s.ends_ms <= starts {
        return Err(
            ApiError::new(ErrorKind::InvalidValue, "must be after starts_ms").field("ends_ms"),
        );
    }
    if s.by.trim().is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidValue, "must not be empty").field("by"));
    }
    if s.comment.trim().is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidValue, "must not be empty").field("comment"));
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    let row = SilenceRow {
        id: id.clone(),
        matchers: s.matchers,
        starts_ms: starts,
        ends_ms: s.ends_ms,
        created_by: s.by.trim().into(),
        comment: s.comment,
        created_ms: now,
        updated_ms: now,
    };
    let rec = audit_row(&ctx, now, json!({ "silence": id }));
    state
        .store
        .put_silence(&row, audit::of(&rec))
        .await
        .map_err(ApiError::internal)?;
    state.notify.reload();
    Ok(Json(json!({ "status": "success", "data": { "id": id } })))
}

pub(super) async fn expire_silence(
    AxState(state): AxState<Arc<AppState>>,
    ctx: Option<Extension<audit::Context>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let mut row = state
        .store
        .silences()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found("silence").field("id"))?;
    if row.ends_ms > now {
        row.ends_ms = now.max(row.starts_ms);
        row.updated_ms = now;
        let rec = audit_row(&ctx, now, json!({}));
        state
            .store
            .put_silence(&row, audit::of(&rec))
            .await
            .map_err(ApiError::internal)?;
        state.notify.reload();
    }
    Ok(Json(json!({ "status": "success" })))
}

pub(super) async fn exclusions(
    AxState(state): AxState<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let rows = state.store.exclusions().await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "status": "success", "data": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExclusionBody {
    kind: String,
    matchers: Vec<String>,
    from_ms: i64,
    to_ms: i64,
    /// A recurring window inside from..to, in Alertmanager's time-interval fields plus
    /// `calendar`, e.g. `{"weekdays": ["saturday"], "times": [{"start_time": "02:00",
    /// "end_time": "04:00"}]}`.
    recurrence: Option<Value>,
    reason: String,
    /// Ignored when the caller is logged in: the acting user is the caller.
    #[serde(default)]
    by: String,
}

pub(super) async fn request_exclusion(
    AxState(state): AxState<Arc<AppState>>,
    principal: Option<Extension<Principal>>,
    ctx: Option<Extension<audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut e: ExclusionBody = json_body(&b)?;
    acting(&mut e.by, principal);
    if !matches!(
        e.kind.as_str(),
        "maintenance" | "force_majeure" | "buyer_caused"
    ) {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "must be maintenance, force_majeure or buyer_caused",
        )
        .field("kind"));
    }
    for (i, m) in e.matchers.iter().enumerate() {
        Matcher::parse(m).map_err(|err| {
            ApiError::new(ErrorKind::InvalidValue, err).field(format!("matchers[{i}]"))
        })?;
    }
    if e.to_ms <= e.from_ms {
        return Err(ApiError::new(ErrorKind::InvalidValue, "must be after from_ms").field("to_ms"));
    }
    for (name, v) in [("reason", &e.reason), ("by", &e.by)] {
        if v.trim().is_empty() {
            return Err(ApiError::new(ErrorKind::InvalidValue, "must not be empty").field(name));
        }
    }
    let recurrence = match e.recurrence {
        None => None,
        Some(v) => {
            serde_json::from_value::<crate::notify::timeinterval::TimeInterval>(v.clone())
                .map_err(|err| {
                    ApiError::new(ErrorKind::InvalidValue, err.to_string()).field("recurrence")
                })?;
            Some(v.to_string())
        }
    };
    let id = hex::encode(rand::random::<[u8; 8]>());
    let now = now_ms();
    let rec = audit_row(&ctx, now, json!({ "exclusion": id }));
    state
        .store
        .insert_exclusion(
            &ExclusionRow {
                id: id.clone(),
                kind: e.kind,
                matchers: e.matchers,
                from_ms: e.from_ms,
                to_ms: e.to_ms,
                recurrence,
                reason: e.reason,
                requested_by: e.by.trim().into(),
                requested_ms: now,
                status: "pending".into(),
                reviewed_by: None,
                reviewed_ms: None,
                review_comment: None,
            },
            audit::of(&rec),
        )
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "status": "success", "data": { "id": id } })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    /// Ignored when the caller is logged in: the acting user is the caller.
    #[serde(default)]
    by: String,
    comment: Option<String>,
}

/// A review's decision (`approve` or `reject`) and body, with the acting reviewer filled in.
fn review_body(
    decision: &str,
    principal: Option<Extension<Principal>>,
    b: &[u8],
) -> Result<(bool, ReviewBody), ApiError> {
    let approve = match decision {
        "approve" => true,
        "reject" => false,
        _ => return Err(ApiError::not_found("decision")),
    };
    let mut r: ReviewBody = json_body(b)?;
    acting(&mut r.by, principal);
    if r.by.trim().is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidValue, "must not be empty").field("by"));
    }
    Ok((approve, r))
}

pub(super) async fn review_exclusion(
    AxState(state): AxState<Arc<AppState>>,
    Path((id, decision)): Path<(String, String)>,
    principal: Option<Extension<Principal>>,
    ctx: Option<Extension<audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (approve, r) = review_body(&decision, principal, &b)?;
    let status = if approve { "approved" } else { "rejected" };
    let existing = state
        .store
        .exclusions()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ApiError::not_found("exclusion").field("id"))?;
    if r.by.trim() == existing.requested_by {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "the requester cannot review their own request",
        )
        .field("by"));
    }
    let now = now_ms();
    let rec = audit_row(&ctx, now, json!({ "decision": status }));
    let done = state
        .store
        .review_exclusion(
            &id,
            status,
            r.by.trim(),
            r.comment.as_deref(),
            now,
            audit::of(&rec),
        )
        .await
        .map_err(ApiError::internal)?;
    if !done {
        return Err(
            ApiError::new(ErrorKind::Conflict, format!("already {}", existing.status)).field("id"),
        );
    }
    state.notify.reload();
    Ok(Json(json!({ "status": "success" })))
}

#[derive(Deserialize)]
pub(super) struct IncidentQuery {
    open: Option<bool>,
}

pub(super) async fn incidents(
    AxState(state): AxState<Arc<AppState>>,
    Query(q): Query<IncidentQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = state
        .store
        .incidents(q.open.unwrap_or(false))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "status": "success", "data": rows })))
}

pub(super) async fn incident(
    AxState(state): AxState<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = state
        .store
        .incident(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("incident").field("id"))?;
    let events = state
        .store
        .incident_events(&id)
        .await
        .map_err(ApiError::internal)?;
    let stamps = state
        .store
        .incident_stamps(Some(&id))
        .await
        .map_err(ApiError::internal)?;
    let requests = state
        .store
        .incident_requests(Some(&id), None)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "status": "success", "data": {
        "incident": row, "stamps": stamps, "requests": requests, "events": events,
    } })))
}

#[derive(Deserialize)]
pub(super) struct IncidentRequestQuery {
    status: Option<String>,
}

/// Requests to backdate a clock or lower a level, newest first (`?status=pending`).
pub(super) async fn incident_requests(
    AxState(state): AxState<Arc<AppState>>,
    Query(q): Query<IncidentRequestQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = state
        .store
        .incident_requests(None, q.status.as_deref())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "status": "success", "data": rows })))
}

/// Approves (applies) or rejects a request; the reviewer is not its requester.
pub(super) async fn review_incident_request(
    AxState(state): AxState<Arc<AppState>>,
    Path((id, decision)): Path<(String, String)>,
    principal: Option<Extension<Principal>>,
    ctx: Option<Extension<audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (approve, r) = review_body(&decision, principal, &b)?;
    let now = now_ms();
    let rec = audit_row(&ctx, now, json!({ "decision": decision }));
    let outcome = incident_rules::review(
        &state.store,
        &id,
        approve,
        r.by.trim(),
        r.comment.as_deref(),
        now,
        audit::of(&rec),
    )
    .await
    .map_err(ApiError::internal)?;
    match outcome {
        Ok(()) => Ok(Json(json!({ "status": "success" }))),
        Err(ReviewRefused::NotFound) => Err(ApiError::not_found("request").field("id")),
        Err(ReviewRefused::OwnRequest) => Err(ApiError::new(
            ErrorKind::Forbidden,
            "the requester cannot review their own request",
        )
        .field("by")),
        Err(ReviewRefused::Decided(status)) => {
            Err(ApiError::new(ErrorKind::Conflict, format!("already {status}")).field("id"))
        }
    }
}

fn check_level(level: i64) -> Result<(), ApiError> {
    if (1..=4).contains(&level) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::InvalidValue, "must be 1..4 (一级..四级)").field("level"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIncident {
    title: String,
    level: i64,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    /// When the fault began (default: now), e.g. the time of the phone call.
    detected_ms: Option<i64>,
    /// Ignored when the caller is logged in: the acting user is the caller.
    #[serde(default)]
    by: String,
    note: Option<String>,
}

pub(super) async fn create_incident(
    AxState(state): AxState<Arc<AppState>>,
    principal: Option<Extension<Principal>>,
    ctx: Option<Extension<audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut n: NewIncident = json_body(&b)?;
    acting(&mut n.by, principal);
    check_level(n.level)?;
    for (name, v) in [("title", &n.title), ("by", &n.by)] {
        if v.trim().is_empty() {
            return Err(ApiError::new(ErrorKind::InvalidValue, "must not be empty").field(name));
        }
    }
    let now = now_ms();
    let detected = n.detected_ms.unwrap_or(now);
    if detected > now + 60_000 {
        return Err(
            ApiError::new(ErrorKind::InvalidValue, "must not be in the future")
                .field("detected_ms"),
        );
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    let rec = audit_row(&ctx, now, json!({ "incident": id }));
    state
        .store
        .insert_incident(
            &IncidentRow {
                id: id.clone(),
                group_id: None,
                title: n.title.trim().into(),
                level: n.level,
                source: "manual".into(),
                labels: n.labels,
                detected_ms: detected,
                notified_ms: None,
                acknowledged_ms: None,
                acknowledged_by: None,
                onsite_ms: None,
                restored_ms: None,
                rca: None,
                created_by: n.by.trim().into(),
                updated_ms: now,
            },
            false,
            audit::of(&rec),
        )
        .await
        .map_err(ApiError::internal)?;
    if let Some(note) = n.note.filter(|t| !t.trim().is_empty()) {
        state
            .store
            .incident_text(&id, "note", n.by.trim(), &note, now, None)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(Json(json!({ "status": "success", "data": { "id": id } })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentAction {
    /// Ignored when the caller is logged in: the acting user is the caller.
    #[serde(default)]
    by: String,
    /// When it happened (default: now), for ack / onsite / restore. More than
    /// `notify::incidents::BACKDATE_TOLERANCE_MS` before now, the clock is stamped now and the
    /// earlier time becomes a request a reviewer approves.
    at_ms: Option<i64>,
    /// Note or RCA text.
    text: Option<String>,
    level: Option<i64>,
    /// Why (required for a level change; kept with a backdating request).
    reason: Option<String>,
}

/// The answer to a stamp or level change that became a request.
fn pending(request: &str) -> Json<Value> {
    Json(json!({ "status": "success", "data": { "request": request, "pending": true } }))
}

pub(super) async fn incident_action(
    AxState(state): AxState<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    principal: Option<Extension<Principal>>,
    ctx: Option<Extension<audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut a: IncidentAction = json_body(&b)?;
    acting(&mut a.by, principal);
    if a.by.trim().is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidValue, "must not be empty").field("by"));
    }
    let by = a.by.trim();
    let now = now_ms();
    let row = state
        .store
        .incident(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("incident").field("id"))?;
    let at = a.at_ms.unwrap_or(now);
    if at > now + 60_000 || at < row.detected_ms {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "must lie between the detection and now",
        )
        .field("at_ms"));
    }
    let clock = match action.as_str() {
        "ack" => Some(Clock::Acknowledged),
        "onsite" => Some(Clock::Onsite),
        "restore" => Some(Clock::Restored),
        _ => None,
    };
    let rec = audit_row(&ctx, now, json!({ "at_ms": a.at_ms, "level": a.level }));
    if let Some(c) = clock {
        let reason = a.reason.as_deref().unwrap_or("").trim();
        let stamped =
            incident_rules::stamp(&state.store, &id, c, at, by, reason, now, audit::of(&rec))
                .await
                .map_err(ApiError::internal)?;
        return match stamped {
            Stamped::Now => Ok(Json(json!({ "status": "success" }))),
            Stamped::Requested(req) => Ok(pending(&req)),
            Stamped::AlreadyRecorded => {
                Err(ApiError::new(ErrorKind::Conflict, "already recorded").field("action"))
            }
        };
    }
    match action.as_str() {
        "note" | "rca" => {
            let text = a
                .text
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| ApiError::new(ErrorKind::InvalidValue, "required").field("text"))?;
            state
                .store
                .incident_text(&id, &action, by, &text, now, audit::of(&rec))
                .await
                .map_err(ApiError::internal)?;
        }
        "level" => {
            let level = a
                .level
                .ok_or_else(|| ApiError::new(ErrorKind::InvalidValue, "required").field("level"))?;
            check_level(level)?;
            let reason = a.reason.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
                ApiError::new(ErrorKind::InvalidValue, "required").field("reason")
            })?;
            let changed = incident_rules::change_level(
                &state.store,
                &id,
                level,
                by,
                &reason,
                now,
                audit::of(&rec),
            )
            .await
            .map_err(ApiError::internal)?;
            match changed {
                LevelChanged::Now => {}
                LevelChanged::Requested(req) => return Ok(pending(&req)),
                LevelChanged::NotFound => {
                    return Err(ApiError::not_found("incident").field("id"));
                }
            }
        }
        _ => return Err(ApiError::not_found("action")),
    }
    Ok(Json(json!({ "status": "success" })))
}
