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

mod appeals;
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
mod prom;
pub mod rate_limit;
mod remote_write;
mod reports;
mod rules;

pub use error::{ApiError, ErrorKind, json_body};
pub use hosts::HostView;

use tokio::net::TcpListener;

use crate::AppState;

/// Serves the API on `listener` until `shutdown` completes, then lets the requests in flight
/// finish. HTTP/1.1 only, through hyper-util's connection builder rather than `axum::serve`,
/// which sets no timer: a client that does not send a whole request header within
/// `http.header_read_timeout_secs` is disconnected, so slow clients cannot hold connections
/// open (the body has its own deadline, `body_deadline`).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo, TokioTimer},
        server::conn::auto,
        service::TowerToHyperService,
    };
    use tower::ServiceExt as _;

    let header_timeout = std::time::Duration::from_secs(state.config.http.header_read_timeout_secs);
    let app = router(state);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = builder.http1_only();
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        ));
        let builder = builder.clone();
        let mut closed = closed.clone();
        connections.spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = closed.wait_for(|c| *c) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Gives every request body `http.body_read_timeout_secs` from the end of its header to
/// arrive. A body still incomplete then fails to read, whatever the handler makes of that,
/// and the request is answered 408 `request_timeout` with `Connection: close`.
async fn body_deadline(
    AxState(state): AxState<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let limit = std::time::Duration::from_secs(state.config.http.body_read_timeout_secs);
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = expired.clone();
    let req = req.map(|body| {
        axum::body::Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(limit)),
            expired: flag,
        })
    });
    let resp = next.run(req).await;
    if !expired.load(std::sync::atomic::Ordering::SeqCst) {
        return resp;
    }
    let mut resp = ApiError::new(
        ErrorKind::RequestTimeout,
        format!(
            "the request body did not arrive within {} s (http.body_read_timeout_secs)",
            limit.as_secs()
        ),
    )
    .into_response();
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    expired: Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let std::task::Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return std::task::Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return std::task::Poll::Ready(Some(Err(axum::Error::new(
                "the request body did not arrive in time",
            ))));
        }
        std::task::Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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
        // Prometheus remote write 1.0 (Prometheus, vmagent, Grafana Agent), with the agents'
        // body limit; its senders are made by an admin.
        .route(
            "/api/v1/write",
            post(remote_write::write).layer(DefaultBodyLimit::max(max_body)),
        )
        .route(
            "/api/v1/remote-write/senders",
            get(remote_write::senders).post(remote_write::create_sender),
        )
        .route(
            "/api/v1/remote-write/senders/{name}/revoke",
            post(remote_write::revoke_sender),
        )
        .route("/api/v1/hosts", get(hosts::hosts))
        .route("/api/v1/hosts/{id}", get(hosts::host))
        .route("/api/v1/probes", get(inventory::probes))
        .route("/api/v1/systems", get(inventory::systems))
        .route("/api/v1/yunwei/series", get(hosts::series))
        // Prometheus's query API (Grafana, promtool): GET and form POST, Prometheus's JSON.
        .route("/api/v1/query", get(prom::query).post(prom::query))
        .route(
            "/api/v1/query_range",
            get(prom::query_range).post(prom::query_range),
        )
        .route("/api/v1/series", get(prom::series).post(prom::series))
        .route("/api/v1/labels", get(prom::labels).post(prom::labels))
        .route("/api/v1/label/{name}/values", get(prom::label_values))
        .route("/api/v1/metadata", get(prom::metadata))
        .route("/api/v1/status/buildinfo", get(prom::buildinfo))
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
        .route("/api/v1/appeals", get(appeals::list).post(appeals::file))
        .route("/api/v1/appeals/{id}/decision", post(appeals::decide))
        .route("/api/v1/reports/{id}/sign-off", post(appeals::sign_off))
        .route(
            "/api/v1/appeals/{id}/attachments/{name}",
            get(appeals::attachment),
        )
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
        // Per-source rate limits on logins and requests without credentials, before the
        // store is touched.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit,
        ))
        // The anonymous refusals of this server, aggregated for the audit log.
        .layer(axum::Extension(state.refusals.clone()))
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
        // The request body's deadline, around everything that may read the body.
        .layer(middleware::from_fn_with_state(state.clone(), body_deadline))
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
/// it forwarded (see [`client_of`]). Put in every request's extensions by `client_addr`.
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
    trusted: &[crate::config::Cidr],
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
        StatusCode::REQUEST_TIMEOUT => ErrorKind::RequestTimeout,
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
