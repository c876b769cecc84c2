//! Who may do what: console users with roles, sessions (cookie + CSRF token), API tokens with
//! scopes, and the single access [`POLICY`] table that the [`authorize`] middleware applies to
//! every route. A route without an entry is refused (fail closed) and a test fails.
//!
//! Roles (等保 2.0: separate administrator, operator and auditor duties):
//! - `admin`: everything;
//! - `operator` (the O&M vendor): read, operate alerts/silences/incidents/maintenance, reload rules;
//! - `reviewer` (the e-government office): read, approvals, report download;
//! - `auditor`: the audit log only.

pub mod users;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State as AxState},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{AppState, audit, http::ApiError, now_ms};

/// A console role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Reviewer,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Reviewer, Role::Auditor];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
        }
    }

    /// The permissions a role grants.
    pub fn perms(self) -> &'static [Perm] {
        match self {
            Role::Admin => &Perm::ALL,
            // The vendor produces the reports it is judged by, so it may generate and read them.
            Role::Operator => &[Perm::Read, Perm::Operate, Perm::Metrics, Perm::Reports],
            Role::Reviewer => &[Perm::Read, Perm::Approve, Perm::Reports],
            Role::Auditor => &[Perm::Audit],
        }
    }
}

/// A permission: what a route needs. API tokens may be limited to some of their role's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Perm {
    /// Read monitoring data: hosts, series, rules, alerts, incidents, contracts.
    Read,
    /// Act on alerts, silences, incidents, maintenance requests; reload rules.
    Operate,
    /// Approve maintenance and exclusion requests.
    Approve,
    /// List, download and verify reports.
    Reports,
    /// Read the audit log.
    Audit,
    /// Manage users and tokens.
    Admin,
    /// Scrape `/metrics`.
    Metrics,
}

impl Perm {
    pub const ALL: [Perm; 7] = [
        Perm::Read,
        Perm::Operate,
        Perm::Approve,
        Perm::Reports,
        Perm::Audit,
        Perm::Admin,
        Perm::Metrics,
    ];

    pub fn parse(s: &str) -> Option<Perm> {
        Perm::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Perm::Read => "read",
            Perm::Operate => "operate",
            Perm::Approve => "approve",
            Perm::Reports => "reports",
            Perm::Audit => "audit",
            Perm::Admin => "admin",
            Perm::Metrics => "metrics",
        }
    }
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health checks, the login call, the console's static files).
    Public,
    /// Agents, with their own enrollment secret / agent token checked by the handler.
    Agent,
    /// Any logged-in user or valid token.
    Authenticated,
    /// A user or token holding this permission.
    Perm(Perm),
}

impl Access {
    /// The roles that pass.
    pub fn roles(self) -> Vec<Role> {
        match self {
            Access::Public | Access::Agent | Access::Authenticated => Role::ALL.to_vec(),
            Access::Perm(p) => Role::ALL
                .into_iter()
                .filter(|r| r.perms().contains(&p))
                .collect(),
        }
    }
}

/// One entry of the access policy.
#[derive(Debug, Clone, Copy)]
pub struct RoutePolicy {
    pub method: &'static str,
    /// The route template exactly as given to `Router::route`.
    pub path: &'static str,
    pub access: Access,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

const fn p(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> RoutePolicy {
    RoutePolicy {
        method,
        path,
        access,
        summary,
    }
}

use Access::{Agent, Authenticated, Public};
const READ: Access = Access::Perm(Perm::Read);
const OPERATE: Access = Access::Perm(Perm::Operate);
const ADMIN: Access = Access::Perm(Perm::Admin);
const APPROVE: Access = Access::Perm(Perm::Approve);
const REPORTS: Access = Access::Perm(Perm::Reports);

/// Every route's access. Add a line here with each new route (a test fails otherwise).
pub const POLICY: &[RoutePolicy] = &[
    // Contracts and assessment.
    p("GET", "/api/v1/contracts", READ, "the O&M contracts loaded"),
    p(
        "GET",
        "/api/v1/contracts/{id}/status",
        READ,
        "a contract's month to date: availability, error budget, breaches, score",
    ),
    p(
        "GET",
        "/api/v1/contracts/{id}/assessment",
        READ,
        "the full assessment of a period (?period=2026-10|2026-Q3|2026|A..B)",
    ),
    p(
        "GET",
        "/api/v1/contracts/{id}/inspections",
        READ,
        "inspection (巡检) records of a contract",
    ),
    p(
        "GET",
        "/api/v1/contracts/{id}/events",
        READ,
        "events recorded against a contract (manual deductions, bonuses, vetoes)",
    ),
    p(
        "POST",
        "/api/v1/contracts/{id}/events",
        APPROVE,
        "the office records an event a manual deduction, bonus or veto scores",
    ),
    // Assessment reports.
    p(
        "GET",
        "/api/v1/reports",
        REPORTS,
        "archived reports, every version (?contract=ID)",
    ),
    p(
        "POST",
        "/api/v1/reports",
        REPORTS,
        "generate and archive the next version of a period's report",
    ),
    p(
        "GET",
        "/api/v1/reports/{id}/{format}",
        REPORTS,
        "download an archived report (html, pdf, xlsx, json)",
    ),
    // Incidents.
    p(
        "GET",
        "/api/v1/incidents",
        READ,
        "incidents with their clocks",
    ),
    p(
        "POST",
        "/api/v1/incidents",
        OPERATE,
        "open an incident by hand (a fault reported by phone)",
    ),
    p(
        "GET",
        "/api/v1/incidents/{id}",
        READ,
        "one incident with notes and level changes",
    ),
    p(
        "POST",
        "/api/v1/incidents/{id}/{action}",
        OPERATE,
        "acknowledge, on site, restore, note, RCA or level change",
    ),
    // Notifications, acknowledgements, silences, exclusions.
    p(
        "GET",
        "/ack/{token}",
        Public,
        "confirmation page of the signed acknowledge link in a notification",
    ),
    p(
        "POST",
        "/ack/{token}",
        Public,
        "acknowledge an alert group by the signed link (the confirmation page's form)",
    ),
    p(
        "GET",
        "/api/v1/notify/groups",
        READ,
        "alert groups and their state",
    ),
    p(
        "POST",
        "/api/v1/notify/groups/{id}/{action}",
        OPERATE,
        "acknowledge, unacknowledge or resolve an alert group",
    ),
    p(
        "GET",
        "/api/v1/notify/groups/{id}/acks",
        READ,
        "acknowledgements of an alert group",
    ),
    p(
        "GET",
        "/api/v1/notify/log",
        READ,
        "every notification attempt",
    ),
    p("GET", "/api/v1/notify/queue", READ, "pending notifications"),
    p("GET", "/api/v1/silences", READ, "silences"),
    p("POST", "/api/v1/silences", OPERATE, "create a silence"),
    p(
        "POST",
        "/api/v1/silences/{id}/expire",
        OPERATE,
        "expire a silence",
    ),
    p(
        "GET",
        "/api/v1/exclusions",
        READ,
        "maintenance windows and exclusion requests",
    ),
    p(
        "POST",
        "/api/v1/exclusions",
        OPERATE,
        "request a maintenance window or exclusion",
    ),
    p(
        "POST",
        "/api/v1/exclusions/{id}/{decision}",
        APPROVE,
        "approve or reject an exclusion request",
    ),
    p(
        "POST",
        "/api/v1/ingest",
        Agent,
        "agent: push a batch of samples (agent token)",
    ),
    p(
        "POST",
        "/api/v1/enroll",
        Agent,
        "agent: enroll with the enrollment secret",
    ),
    p(
        "GET",
        "/api/v1/hosts",
        READ,
        "hosts with up / down (silent) / unknown (never reported) status",
    ),
    p(
        "GET",
        "/api/v1/probes",
        READ,
        "every probe: current state, since when, last 24 hours, contract systems",
    ),
    p(
        "GET",
        "/api/v1/systems",
        READ,
        "contract systems with their hosts, probes and current state",
    ),
    p(
        "GET",
        "/api/v1/hosts/{id}",
        READ,
        "one host: timeline, probes, events",
    ),
    p(
        "GET",
        "/api/v1/series",
        READ,
        "series values from the raw window or rollups",
    ),
    p(
        "GET",
        "/api/v1/rules",
        READ,
        "alerting and recording rules with state",
    ),
    p("GET", "/api/v1/alerts", READ, "active alerts"),
    p(
        "POST",
        "/api/v1/rules/reload",
        OPERATE,
        "re-read the rule files",
    ),
    p(
        "GET",
        "/metrics",
        Access::Perm(Perm::Metrics),
        "the server's Prometheus metrics",
    ),
    p("GET", "/healthz", Public, "liveness"),
    p(
        "GET",
        "/readyz",
        Public,
        "readiness (writer running, database reachable)",
    ),
    p(
        "POST",
        "/api/v1/auth/login",
        Public,
        "log in; sets the session cookie",
    ),
    p(
        "POST",
        "/api/v1/auth/logout",
        Authenticated,
        "end the current session",
    ),
    p(
        "GET",
        "/api/v1/auth/me",
        Authenticated,
        "the current user, role, permissions, CSRF token",
    ),
    p("GET", "/api/v1/users", ADMIN, "console users"),
    p("POST", "/api/v1/users", ADMIN, "add a user"),
    p(
        "POST",
        "/api/v1/users/{name}/password",
        ADMIN,
        "set a user's password",
    ),
    p(
        "POST",
        "/api/v1/users/{name}/disable",
        ADMIN,
        "disable a user and end their sessions",
    ),
    p(
        "POST",
        "/api/v1/users/{name}/enable",
        ADMIN,
        "re-enable a user",
    ),
    p(
        "POST",
        "/api/v1/users/{name}/unlock",
        ADMIN,
        "clear a login lockout",
    ),
    p(
        "GET",
        "/api/v1/audit",
        Access::Perm(Perm::Audit),
        "the audit log, newest first",
    ),
    p(
        "GET",
        "/api/v1/openapi.json",
        Authenticated,
        "this API's OpenAPI 3 document",
    ),
    p("GET", "/", Public, "the web console"),
    p(
        "GET",
        "/assets/{file}",
        Public,
        "the web console's static files",
    ),
];

/// The policy entry for a matched route.
pub fn policy_for(method: &Method, path: &str) -> Option<&'static RoutePolicy> {
    let m = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    POLICY.iter().find(|r| r.method == m && r.path == path)
}

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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client's address, as the listener saw it.
pub fn source_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string())
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
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
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("malformed Authorization header"))?;
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
        let perms = t
            .role
            .perms()
            .iter()
            .copied()
            .filter(|p| t.scopes.is_empty() || t.scopes.contains(p))
            .collect();
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
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong CSRF token",
            )
            .field(CSRF_HEADER));
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
        tracing::error!(route, method = %req.method(), "route has no access policy");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route has no access policy",
        )
        .into_response();
    };
    let required = match policy.access {
        Access::Public | Access::Agent => return next.run(req).await,
        Access::Authenticated => None,
        Access::Perm(p) => Some(p),
    };
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let action = format!("{} {route}", policy.method);
    let target = req.uri().path().to_string();
    let source = source_of(&req);
    let outcome = match principal(&state, req.method(), req.headers(), source.clone()).await {
        Ok(Some(p)) => match required {
            Some(perm) if !p.perms.contains(&perm) => Err((
                Some(p.actor.clone()),
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
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
            let resp = next.run(req).await;
            if mutating {
                let status = resp.status();
                let result = if status.is_success() {
                    "success".to_string()
                } else {
                    format!("failure: {}", status.as_u16())
                };
                audit::record(
                    &state.store,
                    now_ms(),
                    audit::Entry {
                        actor,
                        action,
                        target,
                        result,
                        source,
                        detail: serde_json::json!({}),
                    },
                )
                .await;
            }
            resp
        }
        Err((actor, e)) => {
            if mutating {
                audit::record(
                    &state.store,
                    now_ms(),
                    audit::Entry {
                        actor: actor.unwrap_or_else(|| "anonymous".into()),
                        action,
                        target,
                        result: format!("denied: {}", e.status.as_u16()),
                        source,
                        detail: serde_json::json!({ "reason": e.message }),
                    },
                )
                .await;
            }
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_get_exactly_the_documented_permissions() {
        assert_eq!(
            Access::Perm(Perm::Operate).roles(),
            vec![Role::Admin, Role::Operator]
        );
        assert_eq!(
            Access::Perm(Perm::Approve).roles(),
            vec![Role::Admin, Role::Reviewer]
        );
        assert_eq!(
            Access::Perm(Perm::Audit).roles(),
            vec![Role::Admin, Role::Auditor]
        );
        assert_eq!(Access::Perm(Perm::Admin).roles(), vec![Role::Admin]);
    }

    #[test]
    fn the_policy_has_no_duplicates() {
        for (i, a) in POLICY.iter().enumerate() {
            for b in &POLICY[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }
}
