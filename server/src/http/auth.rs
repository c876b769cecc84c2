//! HTTP handlers for login, logout, the current user, user management (admin) and the audit
//! log (auditor, admin).

use std::sync::Arc;

use axum::{
    Extension,
    extract::State as AxState,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::extract::{Json, Path, Query};
use serde::Deserialize;
use serde_json::json;

use super::{
    ErrorKind,
    authz::{COOKIE, Principal, audit_row, cookie_value},
};
use crate::auth::{Role, users};
use crate::{AppState, audit, http::ApiError, now_ms};
use yunwei_conf::limits::MAX_LOGIN_NAME_BYTES;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    user: String,
    password: String,
}

fn session_cookie(id: &str, max_age_secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_secs}"
    ))
    .expect("hex ids are valid header values")
}

fn source(ci: Option<&Extension<super::ClientAddr>>) -> String {
    ci.map_or_else(|| "unknown".into(), |c| c.0.text())
}

/// A hash to verify against when the user does not exist, so both cases take as long.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| users::hash_password("dummy-Password-1").unwrap_or_default());

/// `POST /api/v1/auth/login`: checks the password, counts failures, locks the account after
/// `auth.lockout_failures` in a row, and starts a session. Each guess reserves its place in
/// the failure count before its password is checked, so concurrent guesses never check more
/// than the limit; password checks run in a bounded pool ([`users::PasswordChecks`]) and a
/// login finding it full is answered 429 with `Retry-After`.
pub async fn login(
    AxState(state): AxState<Arc<AppState>>,
    ci: Option<Extension<super::ClientAddr>>,
    Extension(refusals): Extension<Arc<audit::Refusals>>,
    Extension(checks): Extension<Arc<users::PasswordChecks>>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let src = source(ci.as_ref());
    let entry = |action: &str, result: String| audit::Entry {
        actor: req.user.clone(),
        action: action.into(),
        target: req.user.clone(),
        result,
        source: src.clone(),
        detail: json!({}),
    };
    // Attempts for no usable account are anonymous: at most one row per source a minute.
    let refused = |result: &str| {
        audit::record_refusal(
            &state.store,
            &refusals,
            &state.metrics,
            audit::RefusalKind::Login,
            now,
            entry("login", result.into()),
        )
    };
    let bad = || ApiError::new(ErrorKind::InvalidCredentials, "wrong user name or password");
    let locked = |until: i64| {
        let secs = ((until - now + 999) / 1000).max(1) as u64;
        ApiError {
            retry_after_secs: Some(secs),
            ..ApiError::new(
                ErrorKind::Locked,
                format!(
                    "the account is locked after too many failed logins; try again in {secs} s"
                ),
            )
        }
    };
    if req.user.len() > MAX_LOGIN_NAME_BYTES {
        // No account has such a name: refused before the store and the password hash.
        refused("refused: name too long").await;
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!("a user name is at most {MAX_LOGIN_NAME_BYTES} bytes"),
        )
        .field("user"));
    }
    let Some(permit) = checks.try_permit() else {
        return Err(ApiError::too_many(
            "too many logins are being checked at once; try again shortly",
            1,
        ));
    };
    let user = users::user(&state.store, &req.user)
        .await
        .map_err(ApiError::internal)?;
    let disabled = user.as_ref().is_some_and(|u| u.disabled);
    let usable = user.filter(|u| !u.disabled);
    let Some(user) = usable else {
        // A hash is checked anyway, so an unknown or disabled name takes as long.
        users::PasswordChecks::verify(permit, req.password.clone(), DUMMY_HASH.clone())
            .await
            .map_err(ApiError::internal)?;
        refused(if disabled {
            "refused: disabled"
        } else {
            "failure: unknown user"
        })
        .await;
        return Err(bad());
    };
    let limit = state.config.auth.lockout_failures;
    let lock_until = now + state.config.auth.lockout_secs as i64 * 1000;
    let reserved = users::reserve_login_attempt(&state.store, &user.name, limit, now, lock_until)
        .await
        .map_err(ApiError::internal)?;
    let Some(failures) = reserved else {
        // Locked, or the last guesses the limit allows are being checked right now.
        drop(permit);
        refused("refused: locked").await;
        let until = users::user(&state.store, &user.name)
            .await
            .map_err(ApiError::internal)?
            .and_then(|u| u.locked_until_ms)
            .filter(|&u| u > now)
            .unwrap_or(lock_until);
        return Err(locked(until));
    };
    let ok =
        users::PasswordChecks::verify(permit, req.password.clone(), user.password_hash.clone())
            .await
            .map_err(ApiError::internal)?;
    if !ok {
        audit::record(
            &state.store,
            now,
            entry(
                "login",
                format!("failure: wrong password ({failures} in a row)"),
            ),
        )
        .await;
        if failures >= i64::from(limit) {
            // The reservation locked the account already; lock again from now, in case a
            // right password cleared it meanwhile.
            users::lock(&state.store, &user.name, lock_until)
                .await
                .map_err(ApiError::internal)?;
            audit::record(
                &state.store,
                now,
                audit::Entry {
                    detail: json!({ "locked_until_ms": lock_until, "failures": failures }),
                    ..entry("lockout", "locked".into())
                },
            )
            .await;
            let secs = state.config.auth.lockout_secs;
            return Err(ApiError {
                retry_after_secs: Some(secs),
                ..ApiError::new(
                    ErrorKind::Locked,
                    format!("too many failed logins: the account is locked for {secs} s"),
                )
            });
        }
        return Err(bad());
    }
    let lifetime = state.config.auth.session_lifetime_secs;
    let (id, csrf) = users::create_session(&state.store, &user.name, now, lifetime as i64 * 1000)
        .await
        .map_err(ApiError::internal)?;
    audit::record(&state.store, now, entry("login", "success".into())).await;
    let mut resp = Json(json!({
        "user": user.name,
        "role": user.role,
        "permissions": user.role.perms(),
        "csrf_token": csrf,
    }))
    .into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id, lifetime));
    Ok(resp)
}

/// `POST /api/v1/auth/logout`.
pub async fn logout(
    AxState(state): AxState<Arc<AppState>>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    if let Some(id) = &p.session {
        users::end_session(&state.store, id)
            .await
            .map_err(ApiError::internal)?;
    }
    let mut resp = Json(json!({ "status": "success" })).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(resp)
}

/// `GET /api/v1/auth/me`.
pub async fn me(
    AxState(state): AxState<Arc<AppState>>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let csrf = match &p.session {
        Some(_) => {
            let id = cookie_value(&headers, COOKIE).unwrap_or_default();
            users::session(&state.store, id)
                .await
                .map_err(ApiError::internal)?
                .map(|s| s.csrf_token)
        }
        None => None,
    };
    Ok(Json(json!({
        "user": p.actor,
        "role": p.role,
        "permissions": p.perms,
        "csrf_token": csrf,
    })))
}

fn user_error(e: users::UserError) -> ApiError {
    use users::UserError as E;
    match e {
        E::Exists(_) => ApiError::new(ErrorKind::Exists, e.to_string()).field("name"),
        E::NotFound(_) => ApiError::not_found("user"),
        E::BadName => ApiError::new(ErrorKind::InvalidValue, e.to_string()).field("name"),
        E::Password(_) => ApiError::new(ErrorKind::WeakPassword, e.to_string()).field("password"),
        E::Disabled(_) => ApiError::new(ErrorKind::InvalidValue, e.to_string()).field("user"),
        E::Scope(_) => ApiError::new(ErrorKind::InvalidValue, e.to_string()).field("scopes"),
        E::Store(e) => ApiError::internal(e),
        E::Other(e) => ApiError::internal(format!("{e:#}")),
    }
}

/// `GET /api/v1/users`.
pub async fn list_users(
    AxState(state): AxState<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = now_ms();
    let list: Vec<_> = users::users(&state.store)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|u| {
            let locked = u.locked_until_ms.is_some_and(|t| t > now);
            json!({
                "name": u.name,
                "role": u.role,
                "disabled": u.disabled,
                "locked": locked,
                "locked_until_ms": u.locked_until_ms.filter(|_| locked),
                "failed_count": u.failed_count,
                "created_ms": u.created_ms,
                "password_set_ms": u.password_set_ms,
            })
        })
        .collect();
    Ok(Json(json!({ "users": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    role: String,
    password: String,
}

/// `POST /api/v1/users`.
pub async fn add_user(
    AxState(state): AxState<Arc<AppState>>,
    ctx: Option<Extension<audit::Context>>,
    Json(u): Json<NewUser>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let role = Role::parse(&u.role).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            format!("{:?} is not admin, operator, reviewer or auditor", u.role),
        )
        .field("role")
    })?;
    let now = now_ms();
    let rec = audit_row(&ctx, now, json!({ "user": u.name, "role": role }));
    users::add_user_audited(
        &state.store,
        &u.name,
        role,
        &u.password,
        now,
        audit::of(&rec),
    )
    .await
    .map_err(user_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": u.name, "role": role })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

/// `POST /api/v1/users/{name}/password`.
pub async fn set_password(
    AxState(state): AxState<Arc<AppState>>,
    ctx: Option<Extension<audit::Context>>,
    Path(name): Path<String>,
    Json(b): Json<NewPassword>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = now_ms();
    let rec = audit_row(&ctx, now, json!({}));
    users::set_password(&state.store, &name, &b.password, now, audit::of(&rec))
        .await
        .map_err(user_error)?;
    Ok(Json(json!({ "status": "success" })))
}

/// `POST /api/v1/users/{name}/disable`.
pub async fn disable(
    AxState(state): AxState<Arc<AppState>>,
    ctx: Option<Extension<audit::Context>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rec = audit_row(&ctx, now_ms(), json!({}));
    users::set_disabled(&state.store, &name, true, audit::of(&rec))
        .await
        .map_err(user_error)?;
    Ok(Json(json!({ "status": "success" })))
}

/// `POST /api/v1/users/{name}/enable`.
pub async fn enable(
    AxState(state): AxState<Arc<AppState>>,
    ctx: Option<Extension<audit::Context>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rec = audit_row(&ctx, now_ms(), json!({}));
    users::set_disabled(&state.store, &name, false, audit::of(&rec))
        .await
        .map_err(user_error)?;
    Ok(Json(json!({ "status": "success" })))
}

/// `POST /api/v1/users/{name}/unlock`.
pub async fn unlock(
    AxState(state): AxState<Arc<AppState>>,
    ctx: Option<Extension<audit::Context>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rec = audit_row(&ctx, now_ms(), json!({}));
    users::unlock(&state.store, &name, audit::of(&rec))
        .await
        .map_err(user_error)?;
    Ok(Json(json!({ "status": "success" })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/audit?before=SEQ&limit=N`.
pub async fn audit_log(
    AxState(state): AxState<Arc<AppState>>,
    Extension(refusals): Extension<Arc<audit::Refusals>>,
    Query(q): Query<AuditParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Refusal counts of windows that have ended are written before the log is read.
    audit::flush_refusals(&state.store, &refusals, now_ms()).await;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::new(ErrorKind::InvalidValue, "must be between 1 and 1000").field("limit"),
        );
    }
    let rows = audit::list(&state.store, q.before, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "entries": rows })))
}
