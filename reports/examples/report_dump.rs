//! Writes the fixture report in every format to a directory (for looking at it).
//! `cargo run -p yunwei-reports --example report_dump -- OUT_DIR [FONT]`

use ed25519_dalek::SigningKey;
use yunwei_reports::{Lang, fixture, html, integrity, json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let key = SigningKey::from_bytes(&[7; 32]);
    for lang in [Lang::ZhCn, Lang::En] {
        let s = integrity::sign(fixture::scenario(lang), &key);
        let tag = lang.tag();
        std::fs::write(out.join(format!("report-{tag}.json")), json::render(&s))?;
        std::fs::write(
            out.join(format!("report-{tag}.html")),
            html::render_string(&s),
        )?;
    }
    Ok(())
}
