//! Who is calling: the session cookie (with its CSRF token) or an API token, checked against
//! [`super::policy::POLICY`] for every matched route; state-changing calls are audited.

use std::sync::Arc;

use axum::{
    extract::{MatchedPath, Request, State as AxState},
    http::{HeaderMap, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{
    ApiError, ErrorKind,
    policy::{Access, POLICY, READ_ONLY_POSTS, policy_for},
};
use crate::{
    AppState, audit,
    auth::{Perm, Role, users},
    now_ms,
    secret::constant_time_eq,
};

/// Who is making a request, put in the request's extensions by [`authorize`].
#[derive(Debug, Clone)]
pub struct Principal {
    /// User name, or `token:<name>`.
    pub actor: String,
    pub role: Role,
    pub perms: Vec<Perm>,
    /// The session's id hash, for logout.
    pub session: Option<String>,
    pub source: String,
}

/// The audit row of this state-changing call (result `success`, detail `detail`) for the
/// service to commit with its change; `None` outside an authenticated state-changing call.
pub fn audit_row(
    ctx: &Option<axum::Extension<audit::Context>>,
    ts_ms: i64,
    detail: serde_json::Value,
) -> Option<audit::Pending> {
    ctx.as_ref().map(|c| c.0.record(ts_ms, detail))
}

/// The session cookie's name.
pub const COOKIE: &str = "yunwei_session";
/// The header a cookie-authenticated state-changing request must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name`.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client's address ([`super::ClientAddr`]: the TCP peer or, behind a trusted proxy,
/// the address it forwarded).
pub fn source_of(req: &Request) -> String {
    req.extensions()
        .get::<super::ClientAddr>()
        .map_or_else(|| "unknown".to_string(), super::ClientAddr::text)
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unauthenticated, message)
}

/// The password of HTTP basic credentials (`base64(user:password)`): an API token sent as
/// basic auth, the only way Prometheus clients without custom headers (`promtool query`, a
/// URL `http://user:TOKEN@host`) can send one; the user name is ignored.
fn basic_password(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (_, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

/// Finds the caller from a bearer token or the session cookie; `Ok(None)` when there is
/// neither.
async fn principal(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    source: String,
) -> Result<Option<Principal>, ApiError> {
    let now = now_ms();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let secret = auth
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .map(str::to_string)
                    .or_else(|| v.strip_prefix("Basic ").and_then(basic_password))
            })
            .ok_or_else(|| unauthenticated("malformed Authorization header"))?;
        let secret = secret.as_str();
        let t = users::token_by_secret(&state.store, secret.trim())
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| unauthenticated("unknown API token"))?;
        if t.revoked {
            return Err(unauthenticated("the API token was revoked"));
        }
        if t.expires_ms.is_some_and(|e| e <= now) {
            return Err(unauthenticated("the API token has expired"));
        }
        // A disabled or deleted user's token is refused; an unknown scope grants nothing.
        let perms = t.perms().map_err(|e| unauthenticated(&e.to_string()))?;
        if !t.unknown_scopes.is_empty() {
            tracing::warn!(
                token = %t.name,
                scopes = ?t.unknown_scopes,
                "API token has unknown scopes and grants nothing"
            );
        }
        return Ok(Some(Principal {
            actor: format!("token:{}", t.name),
            role: t.role,
            perms,
            session: None,
            source,
        }));
    }
    let Some(id) = cookie_value(headers, COOKIE) else {
        return Ok(None);
    };
    let s = users::session(&state.store, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| unauthenticated("not logged in or the session has ended"))?;
    let idle_ms = state.config.auth.session_idle_secs as i64 * 1000;
    if s.disabled || now - s.last_seen_ms > idle_ms || now >= s.expires_ms {
        users::end_session(&state.store, &s.id_hash)
            .await
            .map_err(ApiError::internal)?;
        return Err(unauthenticated("the session has ended; log in again"));
    }
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let sent = headers
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !constant_time_eq(sent, s.csrf_token.as_bytes()) {
            return Err(
                ApiError::new(ErrorKind::Csrf, "missing or wrong CSRF token").field(CSRF_HEADER),
            );
        }
    }
    users::touch_session(&state.store, &s.id_hash, now)
        .await
        .map_err(ApiError::internal)?;
    Ok(Some(Principal {
        actor: s.user,
        role: s.role,
        perms: s.role.perms().to_vec(),
        session: Some(s.id_hash),
        source,
    }))
}

/// The middleware: applies [`POLICY`] to every matched route and records every
/// state-changing call (allowed or refused) in the audit log.
pub async fn authorize(
    AxState(state): AxState<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        // Unmatched: the fallback answers 404.
        return next.run(req).await;
    };
    let Some(policy) = policy_for(req.method(), &route) else {
        let allowed: Vec<&str> = POLICY
            .iter()
            .filter(|p| p.path == route)
            .map(|p| p.method)
            .collect();
        if !allowed.is_empty() {
            // The route exists with other methods: what axum would answer, in the API's shape.
            let mut resp = ApiError::new(
                ErrorKind::MethodNotAllowed,
                format!("{route} accepts {}", allowed.join(", ")),
            )
            .into_response();
            if let Ok(v) = header::HeaderValue::from_str(&allowed.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            return resp;
        }
        tracing::error!(route, method = %req.method(), "route has no access policy");
        return ApiError::new(ErrorKind::Forbidden, "this route has no access policy")
            .into_response();
    };
    let required = match policy.access {
        Access::Public | Access::Agent => return next.run(req).await,
        Access::Authenticated => None,
        Access::Perm(p) => Some(p),
    };
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || (policy.method == "POST" && READ_ONLY_POSTS.contains(&policy.path));
    let mutating = !read_only;
    let action = format!("{} {route}", policy.method);
    let target = req.uri().path().to_string();
    let source = source_of(&req);
    let outcome = match principal(&state, req.method(), req.headers(), source.clone()).await {
        Ok(Some(p)) => match required {
            Some(perm) if !p.perms.contains(&perm) => Err((
                Some(p.actor.clone()),
                ApiError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "{} {} may not do this (needs the {} permission)",
                        if p.session.is_some() { "user" } else { "token" },
                        p.actor,
                        perm.as_str()
                    ),
                ),
            )),
            _ => Ok(p),
        },
        Ok(None) => Err((None, unauthenticated("log in or send an API token"))),
        Err(e) => Err((None, e)),
    };
    match outcome {
        Ok(p) => {
            let actor = p.actor.clone();
            req.extensions_mut().insert(p);
            if !mutating {
                return next.run(req).await;
            }
            // The handler hands the context to the service, whose store write appends the row
            // in the change's own transaction and marks the call recorded; a call nothing
            // marked (refused, failed, or a route whose change is not audited with it) gets
            // its row here, once the answer is known.
            let ctx = audit::Context::new(actor, action, target, source);
            req.extensions_mut().insert(ctx.clone());
            // A state-changing call runs to its end, audit row included, in a task of its own:
            // a client that disconnects (which drops this future) cancels neither the change
            // half-way nor the record of it.
            let store = state.store.clone();
            let call = tokio::spawn(async move {
                let resp = next.run(req).await;
                if ctx.recorded() {
                    return resp;
                }
                let status = resp.status();
                let result = if status.is_success() {
                    "success".to_string()
                } else {
                    format!("failure: {}", status.as_u16())
                };
                audit::record(
                    &store,
                    now_ms(),
                    audit::Entry {
                        actor: ctx.actor,
                        action: ctx.action,
                        target: ctx.target,
                        result,
                        source: ctx.source,
                        detail: serde_json::json!({}),
                    },
                )
                .await;
                resp
            });
            match call.await {
                Ok(resp) => resp,
                Err(e) => ApiError::internal(e).into_response(),
            }
        }
        Err((actor, e)) => {
            if mutating {
                let entry = audit::Entry {
                    actor: actor.clone().unwrap_or_else(|| "anonymous".into()),
                    action,
                    target,
                    result: format!("denied: {}", e.status().as_u16()),
                    source,
                    detail: serde_json::json!({ "reason": e.message }),
                };
                let refusals = req.extensions().get::<Arc<audit::Refusals>>();
                match (actor, refusals) {
                    // Without credentials: at most one row per source a minute, the rest
                    // counted (see `audit::Refusals`).
                    (None, Some(r)) => {
                        audit::record_refusal(
                            &state.store,
                            r,
                            &state.metrics,
                            audit::RefusalKind::Http,
                            now_ms(),
                            entry,
                        )
                        .await
                    }
                    _ => audit::record(&state.store, now_ms(), entry).await,
                }
            }
            e.into_response()
        }
    }
}
