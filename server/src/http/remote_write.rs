//! `POST /api/v1/write`: Prometheus remote write 1.0, so an existing Prometheus, vmagent or
//! Grafana Agent feeds yunwei; and the senders' administration
//! (`/api/v1/remote-write/senders`).
//!
//! A request is a snappy-compressed (block format) protobuf `WriteRequest`. It is checked
//! like an agent batch — the sender's token (bearer, or the password of basic credentials),
//! the body size before reading, the decompressed size before decompressing, the same
//! `limits` on samples, labels and timestamps — and handed to the ingest writer
//! (`WriterMsg::RemoteWrite`); the answer, 204, comes only after the commit. Failures answer
//! as Prometheus's senders expect: 4xx for data that will never be accepted (the sender drops
//! it), 429 and 5xx for what a retry may fix; each is counted in
//! `yunwei_ingest_rejected_total{reason}`.
//!
//! The protobuf schema is five small messages (`prometheus/prompb`); it is decoded by hand
//! here ([`decode_write_request`]) rather than through a code generator.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Extension,
    extract::State as AxState,
    http::{HeaderMap, StatusCode, header},
    response::Json,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::{ApiError, ErrorKind, authz::audit_row, extract::Path, ingest::reject};
use crate::{
    AppState, audit,
    ingest::{RemoteHost, RemoteWriteJob, WriterMsg, remote_write as rw},
    now_ms,
    secret::secret_hash,
};

/// `POST /api/v1/write`.
pub async fn write(
    AxState(state): AxState<Arc<AppState>>,
    req: axum::extract::Request,
) -> Result<StatusCode, ApiError> {
    let received_ms = now_ms();
    let headers = req.headers();
    let sender = authenticate(&state, headers)
        .await
        .map_err(|e| reject(&state, e))?;
    check_headers(headers).map_err(|e| reject(&state, e))?;
    let body = super::ingest::read_body(req, state.config.ingest.max_body_bytes)
        .await
        .map_err(|e| reject(&state, e))?;
    let max = state.config.ingest.max_decompressed_bytes;
    let raw = decompress(&body, max).map_err(|e| reject(&state, e))?;
    let request = decode_write_request(&raw).map_err(|e| {
        reject(
            &state,
            ApiError::new(ErrorKind::Schema, e.message).field(e.field),
        )
    })?;
    drop(raw);
    let (hosts, not_finite, origin) = check(&request, &sender, &state.config.limits, received_ms)
        .map_err(|e| {
        reject(
            &state,
            ApiError::new(ErrorKind::InvalidValue, e.message).field(e.field),
        )
    })?;
    if not_finite > 0 {
        state
            .metrics
            .remote_write_samples
            .with_label_values(&["not_finite"])
            .inc_by(not_finite);
    }
    if hosts.is_empty() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let key: Arc<str> = Arc::from(format!("r:{sender}"));
    let _slot = super::ingest::InflightSlot::take(&state, &key).map_err(|e| reject(&state, e))?;
    let (reply, rx) = oneshot::channel();
    let job = RemoteWriteJob {
        sender,
        received_ms,
        hosts,
        reply,
    };
    state
        .ingest
        .writer
        .try_send(WriterMsg::RemoteWrite(Box::new(job)))
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
    let outcome = rx
        .await
        .map_err(|_| ApiError::unavailable("writer stopped"))?;
    match outcome {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        // Counted by the writer.
        Err(crate::ingest::Rejected::SeriesLimit { limit, sample }) => Err(ApiError::new(
            ErrorKind::SeriesLimit,
            format!("the sender would exceed its limit of {limit} series"),
        )
        .field(origin[sample].clone())),
        Err(e) => Err(e.into()),
    }
}

/// The sender whose token the request carries: `Authorization: Bearer TOKEN` (Prometheus's
/// `authorization`) or basic credentials with the token as password (`basic_auth`; the user
/// name is not checked, as for API tokens).
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let unauthorized =
        |m: &str| ApiError::new(ErrorKind::Unauthenticated, m.to_string()).field("authorization");
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing sender token"))?;
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim().to_string(),
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("basic") => {
            basic_password(t).ok_or_else(|| unauthorized("malformed basic credentials"))?
        }
        _ => return Err(unauthorized("expected a bearer token or basic credentials")),
    };
    state
        .store
        .remote_write_sender_by_token(&secret_hash(&token))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| unauthorized("unknown or revoked sender token"))
}

fn basic_password(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (_, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

fn check_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let ct = text(header::CONTENT_TYPE.as_str());
    let base = ct.split(';').next().unwrap_or("").trim();
    if !base.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(
            ApiError::new(ErrorKind::ContentType, "expected application/x-protobuf")
                .field("content-type"),
        );
    }
    // Remote write 2.0 names its message in the content type; this server speaks 1.0.
    if ct
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().strip_prefix("proto="))
        .any(|p| p != "prometheus.WriteRequest")
    {
        return Err(ApiError::new(
            ErrorKind::ContentType,
            "only remote write 1.0 (prometheus.WriteRequest) is supported",
        )
        .field("content-type"));
    }
    if !text(header::CONTENT_ENCODING.as_str()).eq_ignore_ascii_case("snappy") {
        return Err(ApiError::new(
            ErrorKind::ContentEncoding,
            "expected Content-Encoding: snappy",
        )
        .field("content-encoding"));
    }
    let version = text("x-prometheus-remote-write-version");
    if !version.is_empty() && !version.starts_with("0.1.") {
        return Err(ApiError::new(
            ErrorKind::Version,
            format!("unsupported remote write version {version:?} (this server speaks 0.1.0)"),
        )
        .field("x-prometheus-remote-write-version"));
    }
    Ok(())
}

/// Snappy's block format, the decompressed length read from its header and checked against
/// `max` before anything is allocated.
fn decompress(body: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        ApiError::new(ErrorKind::Compression, format!("invalid snappy data: {e}")).field("body")
    })?;
    if len > max {
        return Err(ApiError::new(
            ErrorKind::DecompressedTooLarge,
            format!("decompressed body of {len} bytes exceeds the limit of {max} bytes"),
        )
        .field("body"));
    }
    snap::raw::Decoder::new().decompress_vec(body).map_err(|e| {
        ApiError::new(ErrorKind::Compression, format!("invalid snappy data: {e}")).field("body")
    })
}

// ---- the protobuf messages --------------------------------------------------------------------

/// `prometheus.WriteRequest` (metadata, field 3, is skipped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteRequest {
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (exemplars and histograms are skipped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimeSeries {
    pub labels: Vec<(String, String)>,
    /// (value, timestamp in ms).
    pub samples: Vec<(f64, i64)>,
}

/// A protobuf decoding failure: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub field: String,
    pub message: String,
}

fn derr<T>(field: &str, message: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError {
        field: field.to_string(),
        message: message.into(),
    })
}

/// A protobuf reader over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self, at: &str) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return derr(at, "truncated varint");
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        derr(at, "varint longer than 10 bytes")
    }

    fn take(&mut self, n: usize, at: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return derr(at, "truncated message");
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field as (number, value), or `None` at the end.
    fn field(&mut self, at: &str) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint(at)?;
        let number = key >> 3;
        if number == 0 {
            return derr(at, "field number 0");
        }
        let v = match key & 7 {
            0 => Value::Varint(self.varint(at)?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8, at)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n = self.varint(at)?;
                let n = usize::try_from(n).map_err(|_| DecodeError {
                    field: at.to_string(),
                    message: "length out of range".into(),
                })?;
                Value::Bytes(self.take(n, at)?)
            }
            5 => {
                self.take(4, at)?;
                Value::Fixed32
            }
            w => return derr(at, format!("unsupported wire type {w}")),
        };
        Ok(Some((number, v)))
    }
}

fn utf8(b: &[u8], at: &str) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).or_else(|_| derr(at, "not valid UTF-8"))
}

/// Decodes a `prometheus.WriteRequest`; the error names the element (`timeseries[3].labels[1]`).
/// Unknown fields are skipped, as protobuf requires; a field of the wrong wire type is an error.
pub fn decode_write_request(buf: &[u8]) -> Result<WriteRequest, DecodeError> {
    let mut out = WriteRequest::default();
    let mut r = Reader::new(buf);
    while let Some((n, v)) = r.field("body")? {
        if n != 1 {
            continue;
        }
        let at = format!("timeseries[{}]", out.timeseries.len());
        let Value::Bytes(b) = v else {
            return derr(&at, "expected a message");
        };
        out.timeseries.push(decode_series(b, &at)?);
    }
    Ok(out)
}

fn decode_series(buf: &[u8], at: &str) -> Result<TimeSeries, DecodeError> {
    let mut ts = TimeSeries::default();
    let mut r = Reader::new(buf);
    while let Some((n, v)) = r.field(at)? {
        match (n, v) {
            (1, Value::Bytes(b)) => {
                let at = format!("{at}.labels[{}]", ts.labels.len());
                let (mut name, mut value) = (String::new(), String::new());
                let mut lr = Reader::new(b);
                while let Some((n, v)) = lr.field(&at)? {
                    match (n, v) {
                        (1, Value::Bytes(b)) => name = utf8(b, &format!("{at}.name"))?,
                        (2, Value::Bytes(b)) => value = utf8(b, &format!("{at}.value"))?,
                        (1 | 2, _) => return derr(&at, "expected a string"),
                        _ => {}
                    }
                }
                ts.labels.push((name, value));
            }
            (2, Value::Bytes(b)) => {
                let at = format!("{at}.samples[{}]", ts.samples.len());
                let (mut value, mut t) = (0.0, 0i64);
                let mut sr = Reader::new(b);
                while let Some((n, v)) = sr.field(&at)? {
                    match (n, v) {
                        (1, Value::Fixed64(bits)) => value = f64::from_bits(bits),
                        (2, Value::Varint(x)) => t = x as i64,
                        (1, _) => return derr(&format!("{at}.value"), "expected a double"),
                        (2, _) => return derr(&format!("{at}.timestamp"), "expected an int64"),
                        _ => {}
                    }
                }
                ts.samples.push((value, t));
            }
            (1 | 2, _) => return derr(at, "expected a message"),
            _ => {}
        }
    }
    Ok(ts)
}

// ---- checks -----------------------------------------------------------------------------------

fn fail<T>(field: String, message: impl Into<String>) -> Result<T, yunwei_proto::FieldError> {
    Err(yunwei_proto::FieldError {
        field,
        message: message.into(),
    })
}

/// Checks a decoded request against the agents' `limits` and groups its samples by host
/// (`instance`; a series without one belongs to a host named after the sender). Returns the
/// hosts, how many non-finite samples were left out (Prometheus's staleness markers are NaN;
/// yunwei stores finite values only), and the field naming each kept sample (for a refusal
/// the writer reports by sample index).
#[allow(clippy::type_complexity)]
fn check(
    req: &WriteRequest,
    sender: &str,
    limits: &yunwei_proto::Limits,
    now_ms: i64,
) -> Result<(Vec<RemoteHost>, u64, Vec<String>), yunwei_proto::FieldError> {
    let total: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
    if total > limits.max_samples {
        return fail(
            "timeseries".into(),
            format!("{total} samples exceed the limit of {}", limits.max_samples),
        );
    }
    let host_labels = rw::host_labels(sender);
    let mut hosts: Vec<RemoteHost> = Vec::new();
    let mut by_instance: BTreeMap<String, usize> = BTreeMap::new();
    let mut origin = Vec::new();
    let mut not_finite = 0;
    for (i, ts) in req.timeseries.iter().enumerate() {
        let at = format!("timeseries[{i}]");
        let mut name = None;
        let mut instance = None;
        let mut labels = BTreeMap::new();
        for (j, (k, v)) in ts.labels.iter().enumerate() {
            let lat = format!("{at}.labels[{j}]");
            if !yunwei_proto::valid_label_name(k) {
                return fail(format!("{lat}.name"), format!("invalid label name {k:?}"));
            }
            if k.len() > limits.max_label_name_len {
                return fail(
                    format!("{lat}.name"),
                    format!("longer than {} bytes", limits.max_label_name_len),
                );
            }
            if v.len() > limits.max_label_value_len {
                return fail(
                    format!("{lat}.value"),
                    format!("longer than {} bytes", limits.max_label_value_len),
                );
            }
            let dup = match k.as_str() {
                "__name__" => name.replace(v.clone()).is_some(),
                "instance" => instance.replace(v.clone()).is_some(),
                // An empty value is the label's absence, in Prometheus as here.
                _ if v.is_empty() => false,
                _ => labels.insert(k.clone(), v.clone()).is_some(),
            };
            if dup {
                return fail(format!("{lat}.name"), format!("label {k:?} given twice"));
            }
        }
        let Some(name) = name else {
            return fail(format!("{at}.labels"), "no __name__ label");
        };
        if !yunwei_proto::valid_metric_name(&name) {
            return fail(
                format!("{at}.labels"),
                format!("invalid metric name {name:?}"),
            );
        }
        if labels.len() > limits.max_labels {
            return fail(
                format!("{at}.labels"),
                format!(
                    "{} labels exceed the limit of {}",
                    labels.len(),
                    limits.max_labels
                ),
            );
        }
        // The host's identity and inventory labels are the server's (as for agents).
        crate::live::rename_reserved(&mut labels, &host_labels);
        // One shared set for the series' samples.
        let labels = yunwei_proto::Labels::from(labels);
        let instance = instance
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| sender.to_string());
        if instance.len() > 255 {
            return fail(format!("{at}.labels"), "instance longer than 255 bytes");
        }
        for (j, &(value, t)) in ts.samples.iter().enumerate() {
            let sat = format!("{at}.samples[{j}]");
            if !value.is_finite() {
                not_finite += 1;
                continue;
            }
            if t > now_ms + limits.max_future_ms {
                return fail(
                    format!("{sat}.timestamp"),
                    "more than the allowed skew in the future",
                );
            }
            if t < now_ms - limits.max_age_ms {
                return fail(
                    format!("{sat}.timestamp"),
                    "older than the accepted backfill",
                );
            }
            let h = *by_instance.entry(instance.clone()).or_insert_with(|| {
                hosts.push(RemoteHost {
                    instance: instance.clone(),
                    samples: Vec::new(),
                });
                hosts.len() - 1
            });
            hosts[h].samples.push((
                origin.len(),
                yunwei_proto::Sample {
                    name: name.clone(),
                    labels: labels.clone(),
                    ts_ms: t,
                    value,
                },
            ));
            origin.push(sat);
        }
    }
    Ok((hosts, not_finite, origin))
}

// ---- senders ----------------------------------------------------------------------------------

fn sender_error(e: rw::SenderError) -> ApiError {
    match e {
        rw::SenderError::InvalidName => ApiError::invalid("name", e.to_string()),
        rw::SenderError::Exists(_) => {
            ApiError::new(ErrorKind::Conflict, e.to_string()).field("name")
        }
        rw::SenderError::Unknown(_) => ApiError::new(ErrorKind::NotFound, e.to_string()),
        rw::SenderError::Store(e) => ApiError::internal(e),
    }
}

/// `GET /api/v1/remote-write/senders`: every sender with the hosts its feed made.
pub async fn senders(
    AxState(state): AxState<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let senders = state
        .store
        .remote_write_senders()
        .await
        .map_err(ApiError::internal)?;
    let hosts = state
        .store
        .remote_write_hosts()
        .await
        .map_err(ApiError::internal)?;
    let list: Vec<serde_json::Value> = senders
        .iter()
        .map(|s| {
            let mine: Vec<serde_json::Value> = hosts
                .iter()
                .filter(|h| h.sender == s.name)
                .map(|h| json!({ "agent_id": h.agent_id, "instance": h.instance, "created_ms": h.created_ms }))
                .collect();
            json!({
                "name": s.name,
                "created_ms": s.created_ms,
                "created_by": s.created_by,
                "revoked_ms": s.revoked_ms,
                "hosts": mine,
            })
        })
        .collect();
    Ok(Json(json!({ "senders": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSender {
    name: String,
}

/// `POST /api/v1/remote-write/senders`: a new sender; its token is in the answer, once.
pub async fn create_sender(
    AxState(state): AxState<Arc<AppState>>,
    ctx: Option<Extension<audit::Context>>,
    super::extract::Json(b): super::extract::Json<NewSender>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let now = now_ms();
    let rec = audit_row(&ctx, now, json!({ "sender": b.name }));
    let by = ctx.as_ref().map_or("unknown", |c| c.0.actor.as_str());
    let token = rw::create_sender(&state.store, &b.name, now, by, audit::of(&rec))
        .await
        .map_err(sender_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": b.name, "token": token })),
    ))
}

/// `POST /api/v1/remote-write/senders/{name}/revoke`.
pub async fn revoke_sender(
    AxState(state): AxState<Arc<AppState>>,
    ctx: Option<Extension<audit::Context>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = now_ms();
    let rec = audit_row(&ctx, now, json!({ "sender": name }));
    rw::revoke_sender(&state.store, &name, now, audit::of(&rec))
        .await
        .map_err(sender_error)?;
    Ok(Json(json!({ "name": name, "revoked_ms": now })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes(field: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    #[test]
    fn decodes_a_write_request_and_names_a_truncated_element() {
        let mut label = Vec::new();
        bytes(1, b"__name__", &mut label);
        bytes(2, b"up", &mut label);
        let mut sample = Vec::new();
        varint(1 << 3 | 1, &mut sample);
        sample.extend_from_slice(&1.5f64.to_le_bytes());
        varint(2 << 3, &mut sample);
        varint(1_700_000_000_000, &mut sample);
        let mut series = Vec::new();
        bytes(1, &label, &mut series);
        bytes(2, &sample, &mut series);
        let mut req = Vec::new();
        bytes(1, &series, &mut req);
        // Metadata (field 3) is skipped.
        bytes(3, b"\x08\x01", &mut req);
        let r = decode_write_request(&req).unwrap();
        assert_eq!(
            r.timeseries,
            vec![TimeSeries {
                labels: vec![("__name__".into(), "up".into())],
                samples: vec![(1.5, 1_700_000_000_000)],
            }]
        );
        let mut two = req.clone();
        two.extend_from_slice(&req[..req.len() - 8]);
        let e = decode_write_request(&two).unwrap_err();
        assert!(
            e.field.starts_with("timeseries[1]") || e.field == "body",
            "{e:?}"
        );
        assert!(decode_write_request(&[0x0a, 0xff]).is_err());
    }
}
