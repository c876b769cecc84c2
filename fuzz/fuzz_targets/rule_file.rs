//! A Prometheus rule file: YAML with positions, groups, rules, expressions and templates.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = yunwei_rules::rulefile::parse_rule_file(text, "fuzz.rules.yml");
    }
});
