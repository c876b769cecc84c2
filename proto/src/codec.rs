//! Encoding and decoding of batches: JSON inside gzip, with a hard limit on the decompressed size
//! so a compression bomb costs the server at most `max_decompressed` bytes of memory.

use std::io::{Read, Write};

use flate2::{Compression, read::GzDecoder, write::GzEncoder};

use crate::Batch;

/// Why a request body could not be turned into a [`Batch`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The gzip stream is corrupt or ends early.
    #[error("body is not a complete gzip stream: {0}")]
    Compression(String),
    /// The decompressed body exceeds the limit.
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The JSON does not match the v1 schema; `field` is the path of the offending value.
    #[error("{field}: {message}")]
    Json { field: String, message: String },
}

impl DecodeError {
    /// The field path the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::Json { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::fast());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// Decompresses a gzip body, refusing to produce more than `limit` bytes.
pub fn gunzip_limited(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity((body.len() * 4).min(limit));
    let mut dec = GzDecoder::new(body).take(limit as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| DecodeError::Compression(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

/// Serializes and compresses a batch for the wire.
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    let json = serde_json::to_vec(batch).expect("a batch always serializes");
    gzip(&json)
}

/// Decompresses (with a size limit) and parses a batch. Structural errors name the field path;
/// value checks are done by [`crate::validate_batch`].
pub fn decode_batch(body: &[u8], max_decompressed: usize) -> Result<Batch, DecodeError> {
    let json = gunzip_limited(body, max_decompressed)?;
    parse_json(&json)
}

/// Parses a batch. The happy path is a plain `serde_json` parse; only a body that fails it is
/// parsed again with path tracking, so the error still names the field (`samples[3].value`)
/// while a valid batch pays nothing for it.
fn parse_json(json: &[u8]) -> Result<Batch, DecodeError> {
    match serde_json::from_slice(json) {
        Ok(batch) => Ok(batch),
        Err(_) => Err(parse_json_with_path(json)
            .err()
            .unwrap_or_else(|| DecodeError::Json {
                // Unreachable: both parses read the same bytes with the same types.
                field: "body".into(),
                message: "the body does not match the batch schema".into(),
            })),
    }
}

/// The slow path of [`parse_json`]: the same parse, tracking the path of the value it reads.
fn parse_json_with_path(json: &[u8]) -> Result<Batch, DecodeError> {
    let de = &mut serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        DecodeError::Json {
            field,
            message: strip_position(&inner.to_string()),
        }
    })
}

/// serde_json appends " at line L column C"; for a one-line wire body the path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, HostFacts, PROTOCOL_VERSION, Sample};

    fn batch() -> Batch {
        Batch {
            version: PROTOCOL_VERSION,
            agent_id: "a1".into(),
            seq: 7,
            interval_ms: 15_000,
            collected_at_ms: 1_700_000_000_000,
            age_ms: 12,
            host: HostFacts {
                hostname: "web-01".into(),
                ..Default::default()
            },
            samples: vec![
                Sample {
                    name: "node_load1".into(),
                    labels: Default::default(),
                    value: 0.5,
                    ts_ms: 1,
                },
                Sample {
                    name: "x".into(),
                    labels: Default::default(),
                    value: f64::INFINITY,
                    ts_ms: 2,
                },
            ],
            events: vec![Event::ProbeState {
                probe: "portal".into(),
                labels: Default::default(),
                up: false,
                ts_ms: 3,
                reason: Some("http status 503".into()),
            }],
            probe_intervals_ms: [("portal".to_string(), 60_000)].into(),
        }
    }

    #[test]
    fn round_trip_keeps_every_field_including_infinities() {
        let b = batch();
        assert_eq!(decode_batch(&encode_batch(&b), 1 << 20).unwrap(), b);
    }

    #[test]
    fn a_batch_without_probe_intervals_decodes_and_encodes_without_the_field() {
        // What agents before `probe_intervals_ms` send: still accepted, the map empty.
        let json =
            br#"{"version":1,"agent_id":"a","seq":1,"interval_ms":1000,"collected_at_ms":0,"age_ms":0,
            "host":{"hostname":"h","os":"","kernel":"","arch":"","agent_version":""}}"#;
        let b = decode_batch(&gzip(json), 1 << 20).unwrap();
        assert!(b.probe_intervals_ms.is_empty());
        // And an empty map is left out, so older servers accept such a batch.
        let text = serde_json::to_string(&b).unwrap();
        assert!(!text.contains("probe_intervals_ms"), "{text}");
        let with = serde_json::to_string(&batch()).unwrap();
        assert!(
            with.contains(r#""probe_intervals_ms":{"portal":60000}"#),
            "{with}"
        );
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let json =
            br#"{"version":1,"agent_id":"a","seq":1,"interval_ms":1,"collected_at_ms":0,"age_ms":0,
            "host":{"hostname":"h","os":"","kernel":"","arch":"","agent_version":""},
            "samples":[{"name":"m","value":1,"ts_ms":0,"colour":"red"}]}"#;
        let err = decode_batch(&gzip(json), 1 << 20).unwrap_err();
        assert_eq!(err.field(), Some("samples[0].colour"), "{err}");
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn null_value_is_named_with_its_path() {
        let json =
            br#"{"version":1,"agent_id":"a","seq":1,"interval_ms":1,"collected_at_ms":0,"age_ms":0,
            "host":{"hostname":"h","os":"","kernel":"","arch":"","agent_version":""},
            "samples":[{"name":"m","value":1,"ts_ms":0},{"name":"m","value":null,"ts_ms":0}]}"#;
        let err = decode_batch(&gzip(json), 1 << 20).unwrap_err();
        assert_eq!(err.field(), Some("samples[1].value"), "{err}");
    }

    #[test]
    fn a_valid_body_parses_the_same_on_both_paths() {
        let json = serde_json::to_vec(&batch()).unwrap();
        let fast = parse_json(&json).unwrap();
        let slow = parse_json_with_path(&json).unwrap();
        assert_eq!(fast, slow);
        assert_eq!(fast, batch());
    }

    #[test]
    fn a_wrong_type_deep_in_the_body_is_named_by_the_slow_path() {
        let json =
            br#"{"version":1,"agent_id":"a","seq":1,"interval_ms":1,"collected_at_ms":0,"age_ms":0,
            "host":{"hostname":"h","os":"","kernel":"","arch":"","agent_version":""},
            "samples":[{"name":"m","value":1,"ts_ms":0},{"name":"m","value":1,"ts_ms":0},
            {"name":"m","value":1,"ts_ms":0},{"name":"m","value":"high","ts_ms":0}]}"#;
        let err = decode_batch(&gzip(json), 1 << 20).unwrap_err();
        assert_eq!(err.field(), Some("samples[3].value"), "{err}");
        assert!(err.to_string().contains("\"high\""), "{err}");
    }

    #[test]
    fn truncated_gzip_is_a_compression_error() {
        let enc = encode_batch(&batch());
        let err = decode_batch(&enc[..enc.len() / 2], 1 << 20).unwrap_err();
        assert!(matches!(err, DecodeError::Compression(_)), "{err}");
    }

    #[test]
    fn compression_bomb_stops_at_the_limit() {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&vec![b' '; 50 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 100 << 10, "the bomb is small on the wire");
        let err = gunzip_limited(&bomb, 1 << 20).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { limit } if limit == 1 << 20));
    }
}
