//! An alert template: compiled, then rendered with a small label set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yunwei_rules::{
    promql::Labels,
    template::{TemplateData, compile},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = compile(text) else {
        return;
    };
    let labels = Labels::from_pairs([("instance", "web-01"), ("job", "node"), ("severity", "P1")]);
    let external = Labels::new();
    let _ = t.render(&TemplateData {
        labels: &labels,
        external_labels: &external,
        external_url: "http://yunwei.example",
        value: 0.5,
    });
});
