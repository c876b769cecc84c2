//! PromQL text through the one entry every caller uses (`promql::parse`: length and nesting
//! limits, then the parser).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = yunwei_rules::promql::parse(text);
    }
});
