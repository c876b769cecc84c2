//! `POST /api/v1/ingest` and `POST /api/v1/enroll`: authenticate, decode and validate a batch
//! before handing it to the writer (full queue: 503, too many batches in flight for one agent:
//! 429, both with `Retry-After`); enrollment with the shared secret, each success in the audit
//! log and each failure through its anonymous refusals (the route is public, so the middleware
//! does not audit it).

use std::sync::Arc;

use axum::{
    Extension,
    extract::State as AxState,
    http::{HeaderMap, header},
    response::Json,
};
use tokio::sync::{mpsc, oneshot};
use yunwei_proto::{Ack, Batch, EnrollRequest, EnrollResponse, Event};

use super::{ApiError, ErrorKind};
use crate::{
    AppState,
    ingest::{IngestJob, MAX_BATCH_SPAN_MS, WriterMsg},
    now_ms,
    secret::{constant_time_eq, random_hex, secret_hash},
    store::AgentRow,
};

/// Counts `e` in `yunwei_ingest_rejected_total{reason}` and returns it (agent ingest and
/// remote write).
pub(super) fn reject(state: &AppState, e: ApiError) -> ApiError {
    state
        .metrics
        .ingest_rejected
        .with_label_values(&[e.kind.as_str()])
        .inc();
    e
}

/// Reads a pushed body of at most `limit` bytes: refused from its `Content-Length` before a
/// byte is read when that announces more, else read up to the limit (agent ingest and remote
/// write). Errors name the `body` field.
pub(super) async fn read_body(
    req: axum::extract::Request,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::BodyTooLarge,
            format!("request body exceeds the limit of {limit} bytes"),
        )
        .field("body")
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_big {
                too_large()
            } else {
                ApiError::new(
                    ErrorKind::BodyUnreadable,
                    "the request body could not be read",
                )
                .field("body")
            }
        })
}

/// `POST /api/v1/ingest`.
pub async fn ingest(
    AxState(state): AxState<Arc<AppState>>,
    req: axum::extract::Request,
) -> Result<Json<Ack>, ApiError> {
    let received_ms = now_ms();
    // Everything that can be decided from the headers is decided before a byte of the body is
    // read, so an unauthenticated or oversized request costs the server nothing.
    let headers = req.headers();
    let agent_id = authenticate(&state, headers)
        .await
        .map_err(|e| reject(&state, e))?;
    check_headers(headers).map_err(|e| reject(&state, e))?;
    let body = read_body(req, state.config.ingest.max_body_bytes)
        .await
        .map_err(|e| reject(&state, e))?;
    let max = state.config.ingest.max_decompressed_bytes;
    let batch = yunwei_proto::decode_batch(&body, max).map_err(|e| {
        let err = match &e {
            yunwei_proto::DecodeError::Compression(_) => {
                ApiError::new(ErrorKind::Compression, e.to_string()).field("body")
            }
            yunwei_proto::DecodeError::TooLarge { .. } => {
                ApiError::new(ErrorKind::DecompressedTooLarge, e.to_string()).field("body")
            }
            yunwei_proto::DecodeError::Json { field, message } => {
                let kind = if message.contains("unknown field") {
                    ErrorKind::UnknownField
                } else {
                    ErrorKind::Schema
                };
                ApiError::new(kind, message.clone()).field(field)
            }
        };
        reject(&state, err)
    })?;
    yunwei_proto::validate_batch(&batch, &state.config.limits, received_ms)
        .and_then(|()| check_span(&batch))
        .map_err(|e| {
            let kind = if e.field == "version" {
                ErrorKind::Version
            } else {
                ErrorKind::InvalidValue
            };
            reject(&state, ApiError::new(kind, e.message).field(e.field))
        })?;
    if *batch.agent_id != *agent_id {
        return Err(reject(
            &state,
            ApiError::new(
                ErrorKind::AgentMismatch,
                "the token belongs to another agent",
            )
            .field("agent_id"),
        ));
    }
    // Reserved label names (the host's identity and inventory) are the server's to attach:
    // a sample's own are stored as `exported_<name>`, so no host can present as another.
    let mut batch = batch;
    let mut renamed = 0;
    let host_labels = &batch.host.labels;
    for s in &mut batch.samples {
        // Checked first: a decoded label set is shared (interned), and writing to it copies it.
        if s.labels
            .keys()
            .any(|k| crate::live::is_reserved(k, host_labels))
        {
            renamed += s
                .labels
                .modify(|l| crate::live::rename_reserved(l, host_labels));
        }
    }
    if renamed > 0 {
        state.metrics.ingest_labels_renamed.inc_by(renamed as u64);
    }
    let _slot = InflightSlot::take(&state, &agent_id).map_err(|e| reject(&state, e))?;
    let (reply, rx) = oneshot::channel();
    let agent = agent_id.clone();
    let job = IngestJob {
        agent_id,
        batch,
        received_ms,
        reply,
    };
    state
        .ingest
        .writer
        .try_send(WriterMsg::Ingest(Box::new(job)))
        .map_err(|e| {
            reject(
                &state,
                match e {
                    mpsc::error::TrySendError::Full(_) => {
                        ApiError::overloaded("ingest queue is full", 5)
                    }
                    mpsc::error::TrySendError::Closed(_) => {
                        ApiError::unavailable("server is shutting down")
                    }
                },
            )
        })?;
    state.metrics.ingest_queue.inc();
    let ack = rx
        .await
        .map_err(|_| ApiError::unavailable("writer stopped"))?;
    if matches!(ack, Err(crate::ingest::Rejected::Revoked)) {
        // Revoked in the store (by the command line or another replica): refused from now on
        // without asking the writer.
        state.ingest.forget(&agent);
    }
    Ok(Json(ack?))
}

/// Counts batches per agent (and remote-write requests per sender, `r:<sender>`) between the
/// handler and the writer's reply.
pub(super) struct InflightSlot {
    state: Arc<AppState>,
    agent: Arc<str>,
}

impl InflightSlot {
    pub(super) fn take(state: &Arc<AppState>, agent: &Arc<str>) -> Result<InflightSlot, ApiError> {
        let mut map = state.ingest.inflight.lock().expect("inflight lock");
        let n = map.entry(agent.clone()).or_insert(0);
        if *n >= state.config.ingest.max_inflight_per_agent {
            return Err(ApiError::too_many(
                "too many batches in flight for this agent",
                1,
            ));
        }
        *n += 1;
        Ok(InflightSlot {
            state: state.clone(),
            agent: agent.clone(),
        })
    }
}

impl Drop for InflightSlot {
    fn drop(&mut self) {
        let mut map = self.state.ingest.inflight.lock().expect("inflight lock");
        if let Some(n) = map.get_mut(&self.agent) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.agent);
            }
        }
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Arc<str>, ApiError> {
    let unauthorized =
        |m: &str| ApiError::new(ErrorKind::Unauthenticated, m.to_string()).field("authorization");
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing bearer token"))?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("expected a bearer token"))?;
    let hash = secret_hash(token.trim());
    let known = state
        .ingest
        .tokens
        .read()
        .expect("tokens lock")
        .get(&hash)
        .cloned();
    match known {
        Some(id) => Ok(id),
        // Replicas: the agent may have enrolled through another one.
        None if state.config.is_postgres() => {
            let id = state
                .store
                .agent_by_token(&hash)
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(|| unauthorized("unknown token"))?;
            let id: Arc<str> = Arc::from(id.as_str());
            state
                .ingest
                .tokens
                .write()
                .expect("tokens lock")
                .insert(hash, id.clone());
            Ok(id)
        }
        None => Err(unauthorized("unknown token")),
    }
}

fn check_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = ct.split(';').map(str::trim);
    if parts.next() != Some("application/vnd.yunwei.batch+json") {
        return Err(ApiError::new(
            ErrorKind::ContentType,
            format!("expected {}", yunwei_proto::CONTENT_TYPE),
        )
        .field("content-type"));
    }
    let version = parts.find_map(|p| p.strip_prefix("version=")).unwrap_or("");
    if version != yunwei_proto::PROTOCOL_VERSION.to_string() {
        return Err(ApiError::new(
            ErrorKind::ContentType,
            format!(
                "unsupported protocol version {version:?} (this server speaks {})",
                yunwei_proto::PROTOCOL_VERSION
            ),
        )
        .field("content-type"));
    }
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !enc.eq_ignore_ascii_case(yunwei_proto::CONTENT_ENCODING) {
        return Err(ApiError::new(
            ErrorKind::ContentEncoding,
            "expected Content-Encoding: gzip",
        )
        .field("content-encoding"));
    }
    Ok(())
}

fn check_span(b: &Batch) -> Result<(), yunwei_proto::FieldError> {
    let far = |ts: i64| (ts - b.collected_at_ms).abs() > MAX_BATCH_SPAN_MS;
    let err = |field: String| yunwei_proto::FieldError {
        field,
        message: "more than 1 h away from collected_at_ms".into(),
    };
    if let Some(i) = b.samples.iter().position(|s| far(s.ts_ms)) {
        return Err(err(format!("samples[{i}].ts_ms")));
    }
    if let Some(i) = b
        .events
        .iter()
        .position(|e| matches!(e, Event::ProbeState { ts_ms, .. } if far(*ts_ms)))
    {
        return Err(err(format!("events[{i}].ts_ms")));
    }
    Ok(())
}

/// `POST /api/v1/enroll`: a new agent presenting the enrollment secret gets an id and a token.
pub async fn enroll(
    AxState(state): AxState<Arc<AppState>>,
    connect: Option<Extension<super::ClientAddr>>,
    body: Result<Json<EnrollRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let now = now_ms();
    let source = connect.map_or_else(|| "unknown".into(), |c| c.0.text());
    let entry = |target: String, result: String, hostname: Option<&str>| crate::audit::Entry {
        actor: "agent".into(),
        action: "agent.enroll".into(),
        target,
        result,
        source: source.clone(),
        detail: serde_json::json!({ "hostname": hostname }),
    };
    let req = match body {
        Ok(Json(req)) => req,
        Err(e) => {
            let err = reject(
                &state,
                ApiError::new(ErrorKind::Schema, e.body_text()).field("body"),
            );
            let e = entry(String::new(), format!("failure: {}", err.message), None);
            refused(&state, now, e).await;
            return Err(err);
        }
    };
    let hostname = req.host.hostname.clone();
    // A successful enrollment's row commits with the new agent; a refusal goes through the
    // anonymous refusals.
    let result = enroll_checked(&state, req, now, |agent_id| {
        entry(agent_id.to_string(), "success".into(), Some(&hostname))
    })
    .await;
    if let Err(err) = &result {
        let e = entry(
            String::new(),
            format!("failure: {}", err.message),
            Some(&hostname),
        );
        refused(&state, now, e).await;
    }
    result.map(Json)
}

/// A failed enrollment goes through the anonymous refusals (`audit::Refusals`): its own
/// audit row when it is the first from its source in the window, otherwise counted for the
/// window's summary, so that nobody can fill the audit log by enrolling with a wrong secret.
async fn refused(state: &AppState, now: i64, e: crate::audit::Entry) {
    crate::audit::record_refusal(
        &state.store,
        &state.refusals,
        &state.metrics,
        crate::audit::RefusalKind::Enroll,
        now,
        e,
    )
    .await;
}

async fn enroll_checked(
    state: &AppState,
    req: EnrollRequest,
    now: i64,
    audit: impl FnOnce(&str) -> crate::audit::Entry,
) -> Result<EnrollResponse, ApiError> {
    // A secret made by `enrollment rotate` (read at each enrollment, so a rotation applies to
    // running servers at once) replaces the config file's.
    let rotated = state
        .store
        .enrollment_secret_hash()
        .await
        .map_err(ApiError::internal)?;
    let matches = match (&rotated, &state.config.enrollment_secret) {
        (Some((hash, _)), _) => {
            constant_time_eq(hash.as_bytes(), secret_hash(&req.secret).as_bytes())
        }
        (None, Some(secret)) => constant_time_eq(secret.as_bytes(), req.secret.as_bytes()),
        (None, None) => {
            return Err(reject(
                state,
                ApiError::new(
                    ErrorKind::EnrollmentDisabled,
                    "enrollment is disabled on this server",
                ),
            ));
        }
    };
    if !matches {
        return Err(reject(
            state,
            ApiError::new(ErrorKind::Unauthenticated, "wrong enrollment secret").field("secret"),
        ));
    }
    if req.host.hostname.is_empty() || req.host.hostname.len() > 255 {
        return Err(reject(
            state,
            ApiError::new(ErrorKind::InvalidValue, "must be 1 to 255 bytes").field("host.hostname"),
        ));
    }
    let agent_id = format!("a{}", random_hex(8));
    let token = random_hex(32);
    let row = AgentRow {
        agent_id: agent_id.clone(),
        token_hash: secret_hash(&token),
        enrolled_ms: now,
        hostname: req.host.hostname.clone(),
        os: req.host.os.clone(),
        kernel: req.host.kernel.clone(),
        arch: req.host.arch.clone(),
        agent_version: req.host.agent_version.clone(),
        labels: req.host.labels.clone(),
        first_seen_ms: None,
        last_seen_ms: None,
        last_seq: 0,
        interval_ms: 15_000,
        pruned_seq: 0,
    };
    let rec = crate::audit::Pending::new(now, &audit(&agent_id));
    state
        .store
        .insert_agent(&row, Some(&rec))
        .await
        .map_err(ApiError::internal)?;
    state
        .ingest
        .tokens
        .write()
        .expect("tokens lock")
        .insert(row.token_hash.clone(), agent_id.as_str().into());
    tracing::info!(agent = %agent_id, hostname = %row.hostname, "agent enrolled");
    Ok(EnrollResponse { agent_id, token })
}
