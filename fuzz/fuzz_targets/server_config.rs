//! The server's configuration file, its `notify:` section (receivers, routes, escalation,
//! on-call schedules, time intervals) included.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yunwei_server::config::{Overrides, ServerConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ServerConfig::parse(text, "fuzz.server.yaml", &Overrides::default());
    }
});
