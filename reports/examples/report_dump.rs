//! Writes the fixture report in every format to a directory (for looking at it).
//! `cargo run -p yunwei-reports --example report_dump -- OUT_DIR [FONT]`

use ed25519_dalek::SigningKey;
use yunwei_reports::{Lang, fixture, html, integrity, json, pdf, xlsx};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let font = args
        .next()
        .map(|path| -> Result<pdf::PdfFont, Box<dyn std::error::Error>> {
            let data = std::sync::Arc::new(std::fs::read(path)?);
            Ok(pdf::PdfFont::new(data, pdf::PdfFont::NOTO_CJK_SC_INDEX)?)
        });
    let font = font.transpose()?;
    let key = SigningKey::from_bytes(&[7; 32]);
    for lang in [Lang::ZhCn, Lang::En] {
        let s = integrity::sign(fixture::scenario(lang), &key);
        let tag = lang.tag();
        std::fs::write(out.join(format!("report-{tag}.json")), json::render(&s))?;
        std::fs::write(
            out.join(format!("report-{tag}.html")),
            html::render_string(&s),
        )?;
        std::fs::write(out.join(format!("report-{tag}.xlsx")), xlsx::render(&s)?)?;
        if let Some(font) = &font {
            std::fs::write(
                out.join(format!("report-{tag}.pdf")),
                pdf::render(&s, font)?,
            )?;
        }
    }
    Ok(())
}
