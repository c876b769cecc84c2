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
    // The gzip trailer's ISIZE (the last 4 bytes, little-endian) is the decompressed size
    // modulo 2^32, as the sender claims it: a good first capacity, bounded by the limit (a
    // wrong claim only costs a reallocation), so the output is not grown by doubling.
    let claimed = match body.len().checked_sub(4) {
        Some(at) if body.len() >= 18 => {
            u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]) as usize
        }
        _ => body.len() * 4,
    };
    let mut out = Vec::with_capacity(claimed.min(limit).saturating_add(1));
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
        Err(_) => Err(parse_json_with_path::<Batch>(json)
            .err()
            .unwrap_or_else(|| DecodeError::Json {
                // Unreachable: both parses read the same bytes with the same types.
                field: "body".into(),
                message: "the body does not match the batch schema".into(),
            })),
    }
}

/// The slow path of [`parse_json`]: the same parse, tracking the path of the value it reads.
fn parse_json_with_path<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, DecodeError> {
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
        let slow: Batch = parse_json_with_path(&json).unwrap();
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

/// The decoding of a sample's labels ([`crate::Labels`], interned, strings borrowed from the
/// body) against the way it was decoded before (a `BTreeMap<String, String>` per sample):
/// the same batch from every valid body, and the same error (field and message) from every
/// invalid one.
#[cfg(test)]
mod labels_agree_with_a_map {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;
    use crate::{Event, HostFacts};

    /// `Batch` as it was, with a map per sample.
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OldBatch {
        version: u32,
        agent_id: String,
        seq: u64,
        interval_ms: u64,
        collected_at_ms: i64,
        age_ms: u64,
        host: HostFacts,
        #[serde(default)]
        samples: Vec<OldSample>,
        #[serde(default)]
        events: Vec<Event>,
        #[serde(default)]
        probe_intervals_ms: BTreeMap<String, u64>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OldSample {
        name: String,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(with = "crate::float_repr")]
        value: f64,
        ts_ms: i64,
    }

    fn old_parse(json: &[u8]) -> Result<OldBatch, DecodeError> {
        match serde_json::from_slice(json) {
            Ok(b) => Ok(b),
            Err(_) => {
                Err(parse_json_with_path::<OldBatch>(json).expect_err("the slow path fails too"))
            }
        }
    }

    fn same(new: &Batch, old: &OldBatch) -> bool {
        new.version == old.version
            && new.agent_id == old.agent_id
            && new.seq == old.seq
            && new.interval_ms == old.interval_ms
            && new.collected_at_ms == old.collected_at_ms
            && new.age_ms == old.age_ms
            && new.host == old.host
            && new.events == old.events
            && new.probe_intervals_ms == old.probe_intervals_ms
            && new.samples.len() == old.samples.len()
            && new.samples.iter().zip(&old.samples).all(|(n, o)| {
                n.name == o.name
                    && *n.labels == o.labels
                    && n.labels.content_hash()
                        == crate::Labels::from(o.labels.clone()).content_hash()
                    && n.ts_ms == o.ts_ms
                    && (n.value == o.value || (n.value.is_nan() && o.value.is_nan()))
            })
    }

    /// A JSON string: plain, with escapes, or non-ASCII; some of them repeat across samples
    /// (so interned sets are met again) and some collide in sorting.
    fn json_string() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["cpu", "mode", "device", "a", "b", "ab", "", "门户"])
                .prop_map(|s| serde_json::to_string(s).unwrap()),
            "[a-z_]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            // The same texts escaped: decoded into owned strings, equal to the plain ones.
            prop::sample::select(vec![
                r#""\u0063pu""#,
                r#""a\"b""#,
                r#""\u95e8\u6237""#,
                r#""\\""#
            ])
            .prop_map(str::to_string),
        ]
    }

    /// A label value: mostly a string, sometimes something else (an invalid body).
    fn json_value() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => json_string(),
            1 => prop::sample::select(vec!["1", "null", "true", "[]", "{}", "1.5", r#"["x"]"#])
                .prop_map(str::to_string),
        ]
    }

    /// A `labels` member: an object with possibly repeated, unsorted names; rarely not an
    /// object at all, or absent.
    fn json_labels() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => prop::collection::vec((json_string(), json_value()), 0..6).prop_map(|pairs| {
                let members: Vec<String> =
                    pairs.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!(r#","labels":{{{}}}"#, members.join(","))
            }),
            1 => prop::sample::select(vec![
                r#","labels":null"#,
                r#","labels":[]"#,
                r#","labels":"x""#,
                r#","labels":1"#,
                "",
                r#","labels":{"a":"1","b""#,
            ])
            .prop_map(str::to_string),
        ]
    }

    fn json_sample() -> impl Strategy<Value = String> {
        (
            "[a-z_]{1,8}",
            json_labels(),
            prop_oneof![
                Just("1".to_string()),
                Just("0.25".to_string()),
                Just(r#""NaN""#.to_string()),
                Just(r#""+Inf""#.to_string()),
                (-1e9f64..1e9).prop_map(|v| format!("{v}")),
            ],
            any::<i32>(),
            any::<bool>(),
        )
            .prop_map(|(name, labels, value, ts, labels_last)| {
                if labels_last {
                    format!(r#"{{"name":"{name}","value":{value},"ts_ms":{ts}{labels}}}"#)
                } else {
                    format!(r#"{{"name":"{name}"{labels},"value":{value},"ts_ms":{ts}}}"#)
                }
            })
    }

    fn json_batch() -> impl Strategy<Value = String> {
        prop::collection::vec(json_sample(), 0..8).prop_map(|samples| {
            format!(
                r#"{{"version":1,"agent_id":"a","seq":1,"interval_ms":15000,"collected_at_ms":0,"age_ms":0,"host":{{"hostname":"h","os":"","kernel":"","arch":"","agent_version":"","labels":{{"system":"x"}}}},"samples":[{}]}}"#,
                samples.join(",")
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn both_decodings_agree(json in json_batch()) {
            let new = parse_json(json.as_bytes());
            let old = old_parse(json.as_bytes());
            match (&new, &old) {
                (Ok(n), Ok(o)) => prop_assert!(same(n, o), "{json}\n{n:?}\n{o:?}"),
                (Err(n), Err(o)) => {
                    prop_assert_eq!(n.field(), o.field(), "{}", json);
                    prop_assert_eq!(n.to_string(), o.to_string(), "{}", json);
                }
                _ => prop_assert!(false, "{json}\nnew: {new:?}\nold: {old:?}"),
            }
        }

        #[test]
        fn an_encoded_batch_decodes_to_itself(
            labels in prop::collection::vec(
                prop::collection::btree_map("[a-z]{1,4}", "\\PC{0,6}", 0..5), 0..6),
        ) {
            let batch = Batch {
                version: 1,
                agent_id: "a".into(),
                seq: 1,
                interval_ms: 15_000,
                collected_at_ms: 0,
                age_ms: 0,
                host: HostFacts::default(),
                samples: labels
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| crate::Sample {
                        name: format!("m{i}"),
                        labels: l.into(),
                        value: i as f64,
                        ts_ms: i as i64,
                    })
                    .collect(),
                events: vec![],
                probe_intervals_ms: BTreeMap::new(),
            };
            let json = serde_json::to_vec(&batch).unwrap();
            let old = old_parse(&json).unwrap();
            let new = decode_batch(&encode_batch(&batch), 1 << 20).unwrap();
            prop_assert!(same(&new, &old));
            prop_assert_eq!(new, batch);
        }
    }

    #[test]
    fn a_non_string_label_value_is_named_with_its_path() {
        let json =
            br#"{"version":1,"agent_id":"a","seq":1,"interval_ms":1,"collected_at_ms":0,"age_ms":0,
            "host":{"hostname":"h","os":"","kernel":"","arch":"","agent_version":""},
            "samples":[{"name":"m","labels":{"a":"1"},"value":1,"ts_ms":0},
            {"name":"m","labels":{"a":"1","cpu":7},"value":1,"ts_ms":0}]}"#;
        let err = parse_json(json).unwrap_err();
        assert_eq!(err.field(), Some("samples[1].labels.cpu"), "{err}");
        assert!(err.to_string().contains("expected a string"), "{err}");
    }
}
