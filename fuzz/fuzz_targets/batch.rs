//! The agent batch as the ingest handler reads it: gzip, JSON decoding into `Batch`, then
//! validation. The first byte chooses whether the rest is sent as is (exercising the gzip
//! reader) or gzipped first (exercising the JSON decoder and the validator).
#![no_main]

use libfuzzer_sys::fuzz_target;
use yunwei_proto::{Limits, decode_batch, gzip, validate_batch};

/// 2027-01-01T00:00:00Z: a fixed clock, so a run is reproducible.
const NOW_MS: i64 = 1_798_761_600_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let body = if mode & 1 == 0 { rest.to_vec() } else { gzip(rest) };
    if let Ok(batch) = decode_batch(&body, 1 << 20) {
        let _ = validate_batch(&batch, &Limits::default(), NOW_MS);
    }
});
