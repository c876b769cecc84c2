//! An O&M contract file, and the calendar it builds from the shipped holidays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = yunwei_sla::contract::parse_contract(text, "fuzz.contract.yml") {
        let _ = c.build_calendar(&[]);
    }
});
