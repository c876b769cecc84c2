//! Wire protocol between `yunwei-agent` and `yunwei-server`.
//!
//! Version 1 is a gzip-compressed JSON [`Batch`] sent with `POST /api/v1/ingest`, the content type
//! [`CONTENT_TYPE`] and `Content-Encoding: gzip`. The server answers with an [`Ack`] only after the
//! batch is durably committed, or with an [`ErrorBody`] naming the offending field. The codec and
//! the validation rules live here so that both ends agree on them.

mod codec;
mod labels;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use codec::{DecodeError, decode_batch, encode_batch, gunzip_limited, gzip};
pub use labels::{Labels, PassThrough, fast_hasher};
pub use validate::{
    FieldError, Limits, MAX_PROBE_INTERVALS, valid_label_name, valid_metric_name, validate_batch,
};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Content type of an ingest request body (before compression).
pub const CONTENT_TYPE: &str = "application/vnd.yunwei.batch+json; version=1";
/// The only content encoding accepted for ingest bodies.
pub const CONTENT_ENCODING: &str = "gzip";

/// One push from an agent: host facts, a heartbeat, samples and events.
///
/// A batch is identified by `(agent_id, seq)`; the server stores each identity once, so an agent
/// may redeliver a batch whose acknowledgement it did not receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Protocol version; must equal [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Agent identity issued at enrollment.
    pub agent_id: String,
    /// Batch sequence number, strictly increasing per agent, starting at 1.
    pub seq: u64,
    /// The agent's collection interval: the server expects a batch this often and marks the host
    /// unknown after a configured number of missed batches.
    pub interval_ms: u64,
    /// Agent wall-clock time when the batch was collected (Unix milliseconds).
    pub collected_at_ms: i64,
    /// Milliseconds between collection and sending, from the agent's monotonic clock. The server
    /// places the heartbeat at `receive time - age_ms`, so a wrong agent wall clock cannot move
    /// status intervals.
    pub age_ms: u64,
    /// Facts about the host, sent with every batch so the inventory stays current.
    pub host: HostFacts,
    /// Metric samples.
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// Events observed since the previous batch.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Each probe's own interval in milliseconds, by probe name (the `probe` label of its
    /// samples and the `probe` of its events). A probe observation stays valid for its probe's
    /// interval rather than the batch interval, bounded by the server. Absent (older agents, or
    /// no probes): probe observations are valid for `interval_ms`, as before. Omitted from the
    /// JSON when empty, so a batch without probes is what older servers accept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probe_intervals_ms: BTreeMap<String, u64>,
}

/// Host facts and inventory labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub agent_version: String,
    /// Inventory labels such as `department`, `system`, `environment`; they are attached to every
    /// series of the host, like target labels in Prometheus.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One metric sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Metric name, e.g. `node_load1`.
    pub name: String,
    /// The sample's own labels: a map on the wire, interned when decoded ([`Labels`]).
    #[serde(default)]
    pub labels: Labels,
    /// The value. On the wire a number, or one of the strings `"NaN"`, `"+Inf"`, `"-Inf"` (JSON
    /// has no literal for them); the server rejects non-finite values.
    #[serde(with = "float_repr")]
    pub value: f64,
    /// Unix milliseconds.
    pub ts_ms: i64,
}

/// Something that happened on the agent, pushed with the next batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A probe changed state (up → down or down → up).
    ProbeState {
        /// Probe name, unique per agent.
        probe: String,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        up: bool,
        /// Agent wall-clock time of the observation (Unix milliseconds).
        ts_ms: i64,
        /// Why, for a probe that went down (e.g. `"http status 503"`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The agent had to drop spooled data; the loss is recorded, never silent.
    SpoolGap {
        dropped_batches: u64,
        dropped_bytes: u64,
        first_seq: u64,
        last_seq: u64,
        /// Time range covered by the dropped data (Unix milliseconds).
        from_ms: i64,
        to_ms: i64,
        reason: String,
    },
}

/// Successful ingest response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub seq: u64,
    /// True when the batch had been stored before; nothing was written again.
    pub duplicate: bool,
    pub samples: u64,
}

/// Error response for every API failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable machine-readable kind, e.g. `invalid_batch`, `unauthorized`, `overloaded`.
    pub kind: String,
    /// The offending field as a path (`samples[3].value`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// `POST /api/v1/enroll` request: a new agent presents the enrollment secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub secret: String,
    pub host: HostFacts,
}

/// `POST /api/v1/enroll` response: the agent's identity and bearer token. The token is shown
/// once; the server keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollResponse {
    pub agent_id: String,
    pub token: String,
}

pub(crate) mod float_repr {
    //! `f64` as a JSON number, or `"NaN"` / `"+Inf"` / `"-Inf"`, as Prometheus writes them.
    use serde::{Deserializer, Serializer, de::Error, de::Visitor};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if *v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            s.serialize_f64(*v)
        }
    }

    struct FloatVisitor;

    impl Visitor<'_> for FloatVisitor {
        type Value = f64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number, \"NaN\", \"+Inf\" or \"-Inf\"")
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<f64, E> {
            match v {
                "NaN" => Ok(f64::NAN),
                "+Inf" | "Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                other => Err(E::custom(format!(
                    "expected a number, \"NaN\", \"+Inf\" or \"-Inf\", found {other:?}"
                ))),
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(FloatVisitor)
    }
}
