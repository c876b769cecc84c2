//! The one place secrets are made, hashed and compared: agent tokens, API tokens, session ids,
//! CSRF tokens and the generated enrollment secret.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Hex of `bytes` random bytes from the operating system.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Hex of 32 random bytes: a session id, a CSRF token, the body of an API or agent token.
pub fn random_secret() -> String {
    random_hex(32)
}

/// SHA-256 hex of a secret; only this is stored (agent tokens, API tokens, session ids).
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two secrets in time independent of where they differ, and of their lengths (the
/// digests are compared, not the secrets).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_hashes_stable_and_comparison_exact() {
        assert_eq!(random_secret().len(), 64);
        assert_ne!(random_secret(), random_secret());
        assert_eq!(random_hex(8).len(), 16);
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"samE"));
        assert!(!constant_time_eq(b"same", b"same-but-longer"));
    }
}
