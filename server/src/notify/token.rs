//! Signed acknowledge links: `base64url(group_id "\n" recipient "\n" expiry_ms "\n" episode_ms)
//! "." base64url(HMAC-SHA256(secret, payload))`. The recipient is who the acknowledgement is
//! recorded for; the episode (when the group's current run of alerts was first notified) is what
//! the link may acknowledge, so a link of an earlier episode acknowledges nothing. Links are
//! single use: the server records each used link's hash.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckClaim {
    pub group_id: String,
    pub recipient: String,
    pub expires_ms: i64,
    pub episode_ms: i64,
}

fn mac(secret: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(payload);
    m.finalize().into_bytes().to_vec()
}

/// A token for `claim`.
pub fn sign(secret: &[u8], c: &AckClaim) -> String {
    let payload = format!(
        "{}\n{}\n{}\n{}",
        c.group_id, c.recipient, c.expires_ms, c.episode_ms
    );
    format!(
        "{}.{}",
        B64.encode(payload.as_bytes()),
        B64.encode(mac(secret, payload.as_bytes()))
    )
}

/// Checks a token's signature and expiry at `now_ms`.
pub fn verify(secret: &[u8], token: &str, now_ms: i64) -> Result<AckClaim, &'static str> {
    let (p, s) = token.split_once('.').ok_or("malformed")?;
    let payload = B64.decode(p).map_err(|_| "malformed")?;
    let sig = B64.decode(s).map_err(|_| "malformed")?;
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(&payload);
    m.verify_slice(&sig).map_err(|_| "bad signature")?;
    let text = String::from_utf8(payload).map_err(|_| "malformed")?;
    let mut parts = text.splitn(4, '\n');
    let (Some(g), Some(r), Some(e), Some(ep)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed");
    };
    let expires_ms: i64 = e.parse().map_err(|_| "malformed")?;
    let episode_ms: i64 = ep.parse().map_err(|_| "malformed")?;
    if expires_ms < now_ms {
        return Err("expired");
    }
    Ok(AckClaim {
        group_id: g.into(),
        recipient: r.into(),
        expires_ms,
        episode_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_tampering_fails() {
        let c = AckClaim {
            group_id: "abc".into(),
            recipient: "ops@example.org".into(),
            expires_ms: 1000,
            episode_ms: 500,
        };
        let t = sign(b"secret", &c);
        assert_eq!(verify(b"secret", &t, 999), Ok(c.clone()));
        assert_eq!(verify(b"secret", &t, 1001), Err("expired"));
        assert_eq!(verify(b"other", &t, 0), Err("bad signature"));
        let forged = sign(
            b"secret",
            &AckClaim {
                recipient: "boss@example.org".into(),
                ..c
            },
        );
        let spliced = format!(
            "{}.{}",
            forged.split('.').next().unwrap(),
            t.split('.').nth(1).unwrap()
        );
        assert_eq!(verify(b"secret", &spliced, 0), Err("bad signature"));
    }
}
