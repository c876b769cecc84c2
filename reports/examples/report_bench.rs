//! Report rendering benchmark: a synthetic monthly report for 1,000 hosts / 5,000 probes /
//! 30 days, signed and rendered as JSON, HTML and XLSX (target together ≤ 3 s, the design's
//! table), then PDF separately when the CJK font is present.
//!
//! `cargo run --release -p yunwei-reports --example report_bench [-- FONT_FILE]`

use std::time::Instant;

use ed25519_dalek::SigningKey;
use yunwei_reports::{fixture, html, integrity, json, pdf, xlsx};

const DEFAULT_FONT: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (hosts, probes, days) = (1000, 5000, 30);
    let t = Instant::now();
    let report = fixture::synthetic(hosts, probes, days);
    let build = t.elapsed();
    println!(
        "synthetic report: {hosts} hosts, {probes} probes, {days} days (built in {build:.2?})"
    );

    let t = Instant::now();
    let signed = integrity::sign(report, &SigningKey::from_bytes(&[7; 32]));
    let sign = t.elapsed();
    let t = Instant::now();
    let j = json::render(&signed);
    let tj = t.elapsed();
    let t = Instant::now();
    let h = html::render_string(&signed);
    let th = t.elapsed();
    let t = Instant::now();
    let x = xlsx::render(&signed)?;
    let tx = t.elapsed();
    let total = sign + tj + th + tx;
    println!("sign (canonical JSON + SHA-256 + Ed25519) {sign:>10.2?}");
    println!("json  {:>8} KiB {tj:>10.2?}", j.len() / 1024);
    println!("html  {:>8} KiB {th:>10.2?}", h.len() / 1024);
    println!("xlsx  {:>8} KiB {tx:>10.2?}", x.len() / 1024);
    println!(
        "sign + json + html + xlsx: {total:.2?} (target ≤ 3 s, rendering only: {})",
        if total.as_secs_f64() <= 3.0 {
            "met"
        } else {
            "MISSED"
        }
    );

    let font_path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_FONT.into());
    match std::fs::read(&font_path) {
        Ok(data) => {
            let font =
                pdf::PdfFont::new(std::sync::Arc::new(data), pdf::PdfFont::NOTO_CJK_SC_INDEX)?;
            let t = Instant::now();
            let p = pdf::render(&signed, &font)?;
            println!(
                "pdf   {:>8} KiB {:>10.2?} (timed separately)",
                p.len() / 1024,
                t.elapsed()
            );
        }
        Err(e) => println!("pdf   skipped: {font_path}: {e}"),
    }
    Ok(())
}
