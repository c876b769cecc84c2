//! A working-day calendar file (holidays and make-up working days).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = yunwei_sla::calendar::Calendar::parse(text, "fuzz.calendar.yaml");
    }
});
