//! Appeals (申诉) against a period's draft report and their review (复核): listing, filing
//! with attachments (base64 in the JSON body), deciding, and downloading an attachment. The
//! acting user is the caller; the policy table decides who may call what (operators file,
//! reviewers decide) and the service refuses a reviewer deciding their own appeal.

use std::sync::Arc;

use axum::{
    Extension,
    body::Bytes,
    extract::State as AxState,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use yunwei_sla::assess::AppealTarget;

use super::extract::{Json, Path, Query};
use crate::{
    AppState,
    appeals::{self, NewAppeal, NewAttachment, NewDecision},
    audit,
    http::{ApiError, ErrorKind, authz::Principal, authz::audit_row, json_body},
    now_ms,
};

/// Query of `GET /api/v1/appeals`.
#[derive(Deserialize)]
pub struct ListQuery {
    contract: Option<String>,
    period: Option<String>,
}

/// `GET /api/v1/appeals?contract=ID&period=2026-10`: appeals by filing time, with their
/// decision, attachments and the period's deadlines.
pub(super) async fn list(
    AxState(state): AxState<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = appeals::list(
        &state.store,
        &state.contracts,
        q.contract.as_deref(),
        q.period.as_deref(),
    )
    .await?;
    Ok(Json(json!({ "status": "success", "data": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentBody {
    name: String,
    content_type: String,
    /// The file, base64 (standard alphabet, padded).
    data: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppealBody {
    report_id: i64,
    target: AppealTarget,
    reason: String,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
}

/// `POST /api/v1/appeals`: files an appeal against a report version's deduction; 201 with
/// the appeal. After the window: 409 `conflict` naming the deadline.
pub(super) async fn file(
    AxState(state): AxState<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    ctx: Option<Extension<audit::Context>>,
    b: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: AppealBody = json_body(&b)?;
    let mut attachments = Vec::new();
    for (i, a) in body.attachments.into_iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.data.as_bytes())
            .map_err(|_| {
                ApiError::new(ErrorKind::InvalidValue, "not base64")
                    .field(format!("attachments[{i}].data"))
            })?;
        attachments.push(NewAttachment {
            name: a.name,
            content_type: a.content_type,
            bytes,
        });
    }
    let now = now_ms();
    let rec = audit_row(
        &ctx,
        now,
        json!({ "report_id": body.report_id, "target": body.target }),
    );
    let row = appeals::file(
        &state.store,
        &state.contracts,
        &p.actor,
        NewAppeal {
            report_id: body.report_id,
            target: body.target,
            reason: body.reason,
            attachments,
        },
        now,
        audit::of(&rec),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "status": "success", "data": { "id": row.id, "filed_ms": row.filed_ms } })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    /// `upheld`, `overturned` or `adjusted`.
    outcome: String,
    reason: String,
    #[serde(default)]
    approved_points: Option<f64>,
    #[serde(default)]
    approved_minutes: Option<f64>,
}

/// `POST /api/v1/appeals/{id}/decision`: a reviewer other than the appellant decides.
pub(super) async fn decide(
    AxState(state): AxState<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(p): Extension<Principal>,
    ctx: Option<Extension<audit::Context>>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: DecisionBody = json_body(&b)?;
    let outcome = appeals::parse_outcome(&body.outcome).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            "must be upheld, overturned or adjusted",
        )
        .field("outcome")
    })?;
    let now = now_ms();
    let rec = audit_row(&ctx, now, json!({ "appeal": id, "outcome": body.outcome }));
    let row = appeals::decide(
        &state.store,
        &state.contracts,
        &p.actor,
        &id,
        NewDecision {
            outcome,
            reason: body.reason,
            approved_points: body.approved_points,
            approved_minutes: body.approved_minutes,
        },
        now,
        audit::of(&rec),
    )
    .await?;
    Ok(Json(
        json!({ "status": "success", "data": { "id": row.id, "status": row.status } }),
    ))
}

/// `POST /api/v1/reports/{id}/sign-off`: the caller signs the period's assessment off for
/// the party their role acts for (operator: 乙方, reviewer: 甲方). When that completes it,
/// the final version is made and archived; the answer lists it.
pub(super) async fn sign_off(
    AxState(state): AxState<Arc<AppState>>,
    Path(id): Path<i64>,
    Extension(p): Extension<Principal>,
    ctx: Option<Extension<audit::Context>>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let rec = audit_row(
        &ctx,
        now,
        json!({ "report_id": id, "role": p.role.as_str() }),
    );
    let made =
        appeals::sign_off(&state.reports, p.role, &p.actor, id, now, audit::of(&rec)).await?;
    Ok(Json(
        json!({ "status": "success", "data": { "final": made } }),
    ))
}

/// `GET /api/v1/appeals/{id}/attachments/{name}`: the file as it was attached.
pub(super) async fn attachment(
    AxState(state): AxState<Arc<AppState>>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (content_type, bytes) = state
        .store
        .appeal_attachment(&id, &name)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("attachment"))?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_DISPOSITION,
                // RFC 6266 / 5987: the UTF-8 name percent-encoded.
                format!("attachment; filename*=UTF-8''{}", percent(&name)),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response())
}

/// Percent-encodes every byte that is not an RFC 5987 attribute character.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
