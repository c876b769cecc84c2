//! The HTTP layer, the only part of the server that knows axum: the router (every route with
//! its full path), the one error type, the middleware, and one file of handlers per area.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    Router,
    extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State as AxState},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Json, Response},
    routing::{get, post},
};

pub mod auth;
pub mod authz;
mod console;
mod contracts;
mod error;
mod extract;
mod hosts;
mod ingest;
mod inventory;
pub mod notify;
pub mod openapi;
mod ops;
pub mod policy;
mod reports;
mod rules;

pub use error::{ApiError, ErrorKind, json_body};
pub use hosts::HostView;

use tokio::net::TcpListener;

use crate::AppState;

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.config.ingest.max_body_bytes;
    Router::new()
        .route(
            "/api/v1/ingest",
            post(ingest::ingest).layer(DefaultBodyLimit::max(max_body)),
        )
        .route(
            "/api/v1/enroll",
            post(ingest::enroll).layer(DefaultBodyLimit::max(64 << 10)),
        )
        .route("/api/v1/hosts", get(hosts::hosts))
        .route("/api/v1/hosts/{id}", get(hosts::host))
        .route("/api/v1/probes", get(inventory::probes))
        .route("/api/v1/systems", get(inventory::systems))
        .route("/api/v1/series", get(hosts::series))
        .route("/api/v1/rules", get(rules::rules))
        .route("/api/v1/alerts", get(rules::alerts))
        .route("/api/v1/rules/reload", post(rules::reload_rules))
        .route("/api/v1/contracts", get(contracts::list))
        .route("/api/v1/contracts/{id}/status", get(contracts::status))
        .route(
            "/api/v1/contracts/{id}/assessment",
            get(contracts::assessment),
        )
        .route(
            "/api/v1/contracts/{id}/inspections",
            get(contracts::inspections),
        )
        .route(
            "/api/v1/contracts/{id}/membership",
            get(contracts::membership).post(contracts::change_membership),
        )
        .route(
            "/api/v1/contracts/{id}/events",
            get(contracts::events).post(contracts::record_event),
        )
        .route(
            "/api/v1/reports",
            get(reports::list).post(reports::generate),
        )
        .route("/api/v1/reports/{id}/{format}", get(reports::download))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ops::readyz))
        // Notifications, acknowledgements and silences.
        .route(
            "/ack/{token}",
            get(notify::ack_confirm).post(notify::ack_link),
        )
        .route("/api/v1/notify/groups", get(notify::groups))
        .route(
            "/api/v1/notify/groups/{id}/{action}",
            post(notify::group_action),
        )
        .route("/api/v1/notify/groups/{id}/acks", get(notify::group_acks))
        .route("/api/v1/notify/log", get(notify::log))
        .route("/api/v1/notify/queue", get(notify::queue))
        .route(
            "/api/v1/silences",
            get(notify::silences).post(notify::create_silence),
        )
        .route("/api/v1/silences/{id}/expire", post(notify::expire_silence))
        .route(
            "/api/v1/exclusions",
            get(notify::exclusions).post(notify::request_exclusion),
        )
        .route(
            "/api/v1/exclusions/{id}/{decision}",
            post(notify::review_exclusion),
        )
        .route(
            "/api/v1/incidents",
            get(notify::incidents).post(notify::create_incident),
        )
        .route("/api/v1/incidents/{id}", get(notify::incident))
        .route(
            "/api/v1/incidents/{id}/{action}",
            post(notify::incident_action),
        )
        .route("/api/v1/incident-requests", get(notify::incident_requests))
        .route(
            "/api/v1/incident-requests/{id}/{decision}",
            post(notify::review_incident_request),
        )
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/me", get(auth::me))
        .route("/api/v1/users", get(auth::list_users).post(auth::add_user))
        .route("/api/v1/users/{name}/password", post(auth::set_password))
        .route("/api/v1/users/{name}/disable", post(auth::disable))
        .route("/api/v1/users/{name}/enable", post(auth::enable))
        .route("/api/v1/users/{name}/unlock", post(auth::unlock))
        .route("/api/v1/audit", get(auth::audit_log))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route("/", get(console::index))
        .route("/assets/{file}", get(console::asset))
        .fallback(|| async { ApiError::not_found("route") })
        // Inner layer: runs after routing, so it sees the matched route.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authz::authorize,
        ))
        // The anonymous refusals of this server, aggregated for the audit log.
        .layer(axum::Extension(Arc::new(crate::audit::Refusals::default())))
        // The bounded pool of login password checks.
        .layer(axum::Extension(Arc::new(
            crate::auth::users::PasswordChecks::new(
                yunwei_conf::limits::MAX_CONCURRENT_PASSWORD_CHECKS,
            ),
        )))
        // Every JSON body; ingest and enroll set their own limits above.
        .layer(DefaultBodyLimit::max(
            yunwei_conf::limits::MAX_API_BODY_BYTES,
        ))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        // Outermost: who the client is, before anything records it.
        .layer(middleware::from_fn_with_state(state.clone(), client_addr))
        .with_state(state)
}

/// The client's address as the audit log, login refusals and enrollment record it: the TCP
/// peer, or, when the peer is a trusted reverse proxy (`http.trusted_proxies`), the address
/// it forwarded (see [`client_of`]). Put in every request's extensions by [`client_addr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The address as text, `unknown` without one.
    pub fn text(&self) -> String {
        self.0
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    }
}

/// The client behind `peer`. Only when `peer` is in a trusted range is `X-Forwarded-For`
/// read (every such header, in order, as one list): walking it from the right, the first
/// address not itself a trusted proxy is the client (entries further left were written by
/// the client or proxies we do not trust, so they could be anything). An entry that is not
/// an address stops the walk at the trusted hop after it; when every entry is trusted, the
/// leftmost is the client.
pub fn client_of(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[crate::config::IpNet],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded(entry) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry
        .parse::<SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

async fn client_addr(
    AxState(state): AxState<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = peer.map(|p| client_of(p, req.headers(), &state.config.http.trusted_proxies));
    req.extensions_mut().insert(ClientAddr(client));
    next.run(req).await
}

/// Gives an error that axum or a layer answered in plain text (a body over the limit, a
/// malformed request) the API's JSON shape, with the kind its status stands for. HTML pages
/// (the acknowledgement link's) and JSON errors pass unchanged.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(content_type.is_empty() || content_type.starts_with("text/plain")) {
        return resp;
    }
    let kind = match status {
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorKind::Forbidden,
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorKind::MethodNotAllowed,
        StatusCode::CONFLICT => ErrorKind::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::BodyTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorKind::ContentType,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::TooManyRequests,
        StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
        s if s.is_server_error() => ErrorKind::Internal,
        _ => ErrorKind::InvalidBody,
    };
    let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
    let bytes = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = ApiError::new(kind, message).into_response();
    *out.status_mut() = status;
    if let Some(v) = retry_after {
        out.headers_mut().insert(header::RETRY_AFTER, v);
    }
    out
}

async fn count_requests(
    AxState(state): AxState<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    state
        .metrics
        .http_requests
        .with_label_values(&[&route, resp.status().as_str()])
        .inc();
    resp
}
