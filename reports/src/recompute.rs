//! Recomputation of a signed report from its evidence file (`report recompute`): the office's
//! and any auditor's check that the server computed the report honestly from what it says it
//! read, without the server or its database.
//!
//! The report names its evidence file by SHA-256 ([`crate::model::Report::evidence_file`]),
//! so once the report's signature is verified ([`crate::verify()`]) the evidence file is as
//! authentic as the report. [`recompute`] checks the file against that reference, computes
//! the report model again with the very function the server made it with
//! ([`crate::evidence_file::build_report`]: the assessment engine, then the report model) and
//! compares every value of the two, naming each one that differs by its path in the JSON
//! format (`summary.score`, `availability[portal].downtime_minutes`).

use serde_json::Value;

use crate::evidence_file::{self, InputError};
use crate::integrity::sha256_hex;
use crate::model::Report;

/// One value that differs between the signed report and the recomputation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Where, as a path in the JSON format; array items are named by their id when they have
    /// one (`availability[portal]`), else by their index (`evidence[3]`).
    pub path: String,
    /// The value in the signed report (JSON; `(absent)` when it has none).
    pub report: String,
    /// The recomputed value (JSON; `(absent)` when the recomputation has none).
    pub recomputed: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: report {}, recomputed {}",
            self.path, self.report, self.recomputed
        )
    }
}

/// The result of a recomputation.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How many values (leaves of the JSON format) were compared.
    pub compared: usize,
    /// The values that differ, in document order; empty: the report is what its evidence
    /// gives.
    pub differences: Vec<Difference>,
}

/// Why a report could not be recomputed at all.
#[derive(Debug, thiserror::Error)]
pub enum RecomputeError {
    #[error(
        "the report names no evidence file (made before evidence files existed, or not by \
         yunwei): it cannot be recomputed"
    )]
    NoEvidenceFile,
    #[error(
        "the evidence file is not the one the signed report names: it has {found_bytes} bytes \
         and SHA-256 {found}, the report names {expected_bytes} bytes and SHA-256 {expected} \
         (the evidence was changed, or this is another report's file)"
    )]
    EvidenceMismatch {
        expected: String,
        expected_bytes: u64,
        found: String,
        found_bytes: u64,
    },
    #[error(transparent)]
    Input(#[from] InputError),
}

/// Checks `evidence` (the evidence file's bytes, plain or gzip-compressed) against the
/// reference in `report` (a report whose signature the caller has verified), computes the
/// report again from it and compares every value. The size and SHA-256 checked are those of
/// the uncompressed bytes.
pub fn recompute(report: &Report, evidence: &[u8]) -> Result<Outcome, RecomputeError> {
    let named = report
        .evidence_file
        .as_ref()
        .ok_or(RecomputeError::NoEvidenceFile)?;
    let evidence = evidence_file::decompress(evidence, named.bytes)?;
    let evidence: &[u8] = &evidence;
    // Hash and parse side by side (each reads the whole file); a parse is only used once the
    // hash is the one the report names.
    let (found, parsed) = std::thread::scope(|s| {
        let hash = s.spawn(|| sha256_hex(evidence));
        let parsed = evidence_file::parse(evidence);
        // The hashing thread does not panic; should it, hash here instead.
        let found = hash.join().unwrap_or_else(|_| sha256_hex(evidence));
        (found, parsed)
    });
    let found_bytes = evidence.len() as u64;
    if found != named.sha256 || found_bytes != named.bytes {
        return Err(RecomputeError::EvidenceMismatch {
            expected: named.sha256.clone(),
            expected_bytes: named.bytes,
            found,
            found_bytes,
        });
    }
    let file = parsed?;
    let mut again = evidence_file::build_report(&file)?;
    again.evidence_file = report.evidence_file.clone();
    Ok(compare(report, &again))
}

/// Compares two reports value by value.
pub fn compare(report: &Report, recomputed: &Report) -> Outcome {
    // Plain data: serializing to a value cannot fail.
    let a = serde_json::to_value(report).unwrap_or(Value::Null);
    let b = serde_json::to_value(recomputed).unwrap_or(Value::Null);
    let mut out = Outcome {
        compared: 0,
        differences: Vec::new(),
    };
    diff("", Some(&a), Some(&b), &mut out);
    out
}

const ABSENT: &str = "(absent)";

fn show(v: Option<&Value>) -> String {
    match v {
        None => ABSENT.to_string(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 200 {
                let cut: String = s.chars().take(200).collect();
                format!("{cut}…")
            } else {
                s
            }
        }
    }
}

/// Keys that identify an item of an array, in order of preference.
const ID_KEYS: [&str; 6] = ["id", "system_id", "system", "host", "period", "date"];

/// The key each item of `items` is known by, when every item has one and they are unique.
fn item_keys(items: &[Value]) -> Option<(&'static str, Vec<String>)> {
    'key: for k in ID_KEYS {
        let mut keys = Vec::with_capacity(items.len());
        for item in items {
            match item.get(k) {
                Some(Value::String(s)) => keys.push(s.clone()),
                _ => continue 'key,
            }
        }
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() == keys.len() {
            return Some((k, keys));
        }
    }
    None
}

fn diff(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Outcome) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff(&join(k), x.get(k), y.get(k), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            let keyed = match (item_keys(x), item_keys(y)) {
                (Some((kx, ix)), Some((ky, iy))) if kx == ky => Some((ix, iy)),
                _ => None,
            };
            match keyed {
                Some((ix, iy)) => {
                    // Matched by id: the report's order, then items only recomputed.
                    let at_y: std::collections::HashMap<&str, usize> = iy
                        .iter()
                        .enumerate()
                        .map(|(j, k)| (k.as_str(), j))
                        .collect();
                    let at_x: std::collections::HashSet<&str> =
                        ix.iter().map(String::as_str).collect();
                    for (i, key) in ix.iter().enumerate() {
                        let other = at_y.get(key.as_str()).map(|&j| &y[j]);
                        diff(&format!("{path}[{key}]"), Some(&x[i]), other, out);
                    }
                    for (j, key) in iy.iter().enumerate() {
                        if !at_x.contains(key.as_str()) {
                            diff(&format!("{path}[{key}]"), None, Some(&y[j]), out);
                        }
                    }
                    // Same items in another order.
                    if ix.len() == iy.len()
                        && ix != iy
                        && ix.iter().all(|k| at_y.contains_key(k.as_str()))
                    {
                        out.differences.push(Difference {
                            path: format!("{path} (order)"),
                            report: show(Some(&Value::from(ix.clone()))),
                            recomputed: show(Some(&Value::from(iy.clone()))),
                        });
                    }
                }
                None => {
                    for i in 0..x.len().max(y.len()) {
                        diff(&format!("{path}[{i}]"), x.get(i), y.get(i), out);
                    }
                }
            }
        }
        (Some(x), Some(y)) => {
            out.compared += 1;
            if x != y {
                out.differences.push(Difference {
                    path: path.to_string(),
                    report: show(a),
                    recomputed: show(b),
                });
            }
        }
        (None, None) => {}
        _ => {
            out.compared += 1;
            out.differences.push(Difference {
                path: path.to_string(),
                report: show(a),
                recomputed: show(b),
            });
        }
    }
}
