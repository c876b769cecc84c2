//! The report verifier on any bytes: format detection, then the HTML, JSON, XLSX (zip) or PDF
//! reader and the signature check, as `yunwei-server report verify` runs it on a file it is
//! handed.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use yunwei_reports::{VerifyOptions, verify_with};

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let _ = verify_with(
        data,
        &key,
        &VerifyOptions {
            allow_uncompared_pages: true,
            ..VerifyOptions::default()
        },
    );
});
