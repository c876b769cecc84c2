//! Integrity of a report: the canonical JSON of the [`Report`], its SHA-256 and an Ed25519
//! signature over the canonical bytes. Every format carries the [`SignedReport`] envelope (the
//! report plus this [`Integrity`] block), so any single file can be verified on its own.
//!
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, strings escaped the
//! way `serde_json` does, numbers as written by [`crate::model::Fixed`] (integers or at most
//! three decimals). The signature covers exactly `canonical_json(report)`.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::Report;

/// Signature algorithm name carried in [`Integrity::algorithm`].
pub const ALGORITHM: &str = "ed25519";

/// The integrity block (appendix of every format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Integrity {
    /// Always [`ALGORITHM`].
    pub algorithm: String,
    /// Hex SHA-256 of the canonical JSON of the report.
    pub sha256: String,
    /// Hex Ed25519 signature of the canonical JSON of the report.
    pub signature: String,
    /// [`key_id`] of the signing key.
    pub key_id: String,
}

/// A report with its integrity block: what every renderer takes and every file carries.
///
/// Made by [`sign`] or parsed from a file. The canonical envelope is computed once and shared
/// by the renderers, so change a report before signing it, not after.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport {
    pub report: Report,
    pub integrity: Integrity,
    #[serde(skip)]
    envelope: std::sync::OnceLock<Vec<u8>>,
}

impl PartialEq for SignedReport {
    fn eq(&self, other: &Self) -> bool {
        self.report == other.report && self.integrity == other.integrity
    }
}

/// Why a signed report does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error("unsupported signature algorithm {0:?}")]
    Algorithm(String),
    #[error("the report was signed by key {found}, not by the given key {expected}")]
    KeyId { expected: String, found: String },
    #[error("the sha256 in the integrity block does not match the report")]
    Hash,
    #[error("the signature is malformed")]
    MalformedSignature,
    #[error("the signature does not match the report")]
    Signature,
}

/// Canonical JSON bytes of any serializable value (see the module docs).
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serializing plain data to a `Value` cannot fail (all keys are strings).
    let v = serde_json::to_value(value).unwrap_or(Value::Null);
    let mut out = Vec::with_capacity(4096);
    write_canonical(&v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is deterministic; writing a &str cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Key id: the first 16 hex digits of the SHA-256 of the 32-byte public key.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_string()
}

/// Signs `report` with `key`.
pub fn sign(report: Report, key: &SigningKey) -> SignedReport {
    let canonical = canonical_json(&report);
    let signature = key.sign(&canonical);
    SignedReport {
        integrity: Integrity {
            algorithm: ALGORITHM.to_string(),
            sha256: sha256_hex(&canonical),
            signature: hex::encode(signature.to_bytes()),
            key_id: key_id(&key.verifying_key()),
        },
        report,
        envelope: std::sync::OnceLock::new(),
    }
}

impl SignedReport {
    /// Canonical JSON of the whole envelope (`{"integrity":..,"report":..}`), computed once.
    pub fn envelope_json(&self) -> &[u8] {
        self.envelope.get_or_init(|| canonical_json(self))
    }

    /// Checks the hash and the signature of the report against `key`.
    pub fn check(&self, key: &VerifyingKey) -> Result<(), IntegrityError> {
        let i = &self.integrity;
        if i.algorithm != ALGORITHM {
            return Err(IntegrityError::Algorithm(i.algorithm.clone()));
        }
        let expected = key_id(key);
        if i.key_id != expected {
            return Err(IntegrityError::KeyId {
                expected,
                found: i.key_id.clone(),
            });
        }
        let canonical = canonical_json(&self.report);
        if sha256_hex(&canonical) != i.sha256 {
            return Err(IntegrityError::Hash);
        }
        let bytes: [u8; 64] = hex::decode(&i.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(IntegrityError::MalformedSignature)?;
        key.verify(&canonical, &Signature::from_bytes(&bytes))
            .map_err(|_| IntegrityError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level_without_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{"b": {"z": 1, "a": [true, null]}, "a": "x\"y"}"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":"x\"y","b":{"a":[true,null],"z":1}}"#
        );
    }

    #[test]
    fn a_changed_figure_breaks_the_hash_and_a_foreign_key_is_named() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = sign(crate::fixture::scenario(crate::Lang::ZhCn), &key);
        signed.check(&key.verifying_key()).unwrap();

        let mut changed = signed.clone();
        changed.report.summary.score.0 += 1000;
        assert_eq!(
            changed.check(&key.verifying_key()),
            Err(IntegrityError::Hash)
        );
        // Recomputing the hash is not enough: the signature no longer matches.
        changed.integrity.sha256 = sha256_hex(&canonical_json(&changed.report));
        assert_eq!(
            changed.check(&key.verifying_key()),
            Err(IntegrityError::Signature)
        );

        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(matches!(
            signed.check(&other.verifying_key()),
            Err(IntegrityError::KeyId { .. })
        ));
    }
}
