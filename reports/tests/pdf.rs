//! PDF: rendered with poppler (`pdftoppm`, `pdftotext`) every page has content, the headings
//! are found as text in both languages, the CJK font is embedded as a subset, rendering is
//! reproducible, and `verify` accepts an untouched file and rejects changed signed data.

use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use yunwei_reports::{Lang, SignedReport, VerifyError, fixture, integrity, pdf, verify};

const FONT: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

/// Missing tools fail under CI and skip locally.
fn missing(what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required with CI=true");
    }
    eprintln!("SKIP: {what} not available");
    true
}

fn font() -> Option<pdf::PdfFont> {
    match std::fs::read(FONT) {
        Ok(data) => {
            Some(pdf::PdfFont::new(Arc::new(data), pdf::PdfFont::NOTO_CJK_SC_INDEX).unwrap())
        }
        Err(_) => {
            missing(&format!("font {FONT} (fonts-noto-cjk)"));
            None
        }
    }
}

fn tool(name: &str) -> bool {
    Command::new(name).arg("-v").output().is_ok() || !missing(name)
}

fn signed(lang: Lang) -> SignedReport {
    integrity::sign(fixture::scenario(lang), &SigningKey::from_bytes(&[7; 32]))
}

/// Pages rendered as 8-bit grey PGM at 30 dpi: (width, height, pixels) each.
fn pages(pdf_bytes: &[u8]) -> Vec<(usize, usize, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.pdf");
    std::fs::write(&file, pdf_bytes).unwrap();
    let st = Command::new("pdftoppm")
        .args(["-gray", "-r", "30"])
        .arg(&file)
        .arg(dir.path().join("p"))
        .status()
        .unwrap();
    assert!(st.success());
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pgm"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let b = std::fs::read(p).unwrap();
            // Header: "P5\n<w> <h>\n255\n".
            let mut fields = Vec::new();
            let mut at = 0;
            while fields.len() < 4 {
                while b[at].is_ascii_whitespace() {
                    at += 1;
                }
                let start = at;
                while !b[at].is_ascii_whitespace() {
                    at += 1;
                }
                fields.push(String::from_utf8_lossy(&b[start..at]).to_string());
            }
            assert_eq!(fields[0], "P5");
            let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
            (w, h, b[at + 1..].to_vec())
        })
        .collect()
}

fn text(pdf_bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.pdf");
    std::fs::write(&file, pdf_bytes).unwrap();
    let out = Command::new("pdftotext")
        .arg(&file)
        .arg("-")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_page_has_content_and_the_headings_are_text() {
    let Some(font) = font() else { return };
    if !tool("pdftoppm") || !tool("pdftotext") {
        return;
    }
    for (lang, headings) in [
        (
            Lang::ZhCn,
            &[
                "可用率",
                "考核得分",
                "甲方",
                "故障处置",
                "扣分与加分明细",
                "第 1 页 / 共",
            ][..],
        ),
        (
            Lang::En,
            &[
                "Availability",
                "Assessment score",
                "Party A",
                "Incidents",
                "Page 1 /",
            ][..],
        ),
    ] {
        let bytes = pdf::render(&signed(lang), &font).unwrap();
        // The 19 MB collection is subset: only the glyphs used are embedded.
        assert!(
            bytes.len() < 1_000_000,
            "{} bytes: the font was not subset",
            bytes.len()
        );
        let pages = pages(&bytes);
        assert!(pages.len() >= 4, "{} pages", pages.len());
        for (n, (w, h, px)) in pages.iter().enumerate() {
            assert_eq!(px.len(), w * h);
            // Content above the footer: at least 0.5% dark pixels.
            let body = &px[..w * h * 88 / 100];
            let dark = body.iter().filter(|&&p| p < 160).count();
            assert!(
                dark * 200 > body.len(),
                "page {} is blank ({dark} dark pixels)",
                n + 1
            );
        }
        // pdftotext's spacing between CJK characters varies: compare without spaces.
        let t = text(&bytes).replace(' ', "");
        for h in headings {
            let h = &h.replace(' ', "");
            assert!(t.contains(h), "{h:?} not found in the {lang:?} PDF text");
        }
        let total = pages.len();
        let last = match lang {
            Lang::ZhCn => format!("第 {total} 页 / 共 {total} 页"),
            Lang::En => format!("Page {total} / {total}"),
        };
        assert!(
            t.contains(&last.replace(' ', "")),
            "footer {last:?} missing"
        );
    }
}

#[test]
fn long_tables_break_across_pages_with_their_header_repeated() {
    let Some(font) = font() else { return };
    if !tool("pdftotext") {
        return;
    }
    let report = fixture::synthetic(150, 120, 31);
    let bytes = pdf::render(
        &integrity::sign(report, &SigningKey::from_bytes(&[7; 32])),
        &font,
    )
    .unwrap();
    let t = text(&bytes);
    // The availability table's header appears on each page it spans.
    assert!(t.matches("实际可用率").count() >= 3);
    assert!(t.contains("probe-00119") || t.contains("业务探测 00119"));
}

#[test]
fn rendering_is_reproducible_and_verifies() {
    let Some(font) = font() else { return };
    let s = signed(Lang::ZhCn);
    let a = pdf::render(&s, &font).unwrap();
    assert_eq!(a, pdf::render(&s, &font).unwrap());
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    // Issue 17 (hostile callers): without the font the pages cannot be compared, and that
    // is a failure unless uncompared pages are explicitly allowed.
    assert!(matches!(
        verify(&a, &key),
        Err(VerifyError::PagesNotCompared)
    ));
    let allow = yunwei_reports::VerifyOptions {
        allow_uncompared_pages: true,
        ..Default::default()
    };
    let v = yunwei_reports::verify_with(&a, &key, &allow).unwrap();
    assert_eq!(v.format, yunwei_reports::Format::Pdf);
    assert_eq!(v.sha256, s.integrity.sha256);
    assert!(!v.content_checked);
    let v = yunwei_reports::verify_with_font(&a, &key, Some(&font)).unwrap();
    assert!(v.content_checked);

    // With the font, any change outside the signed data is caught, because the pages are
    // rendered again and compared byte for byte. (Page streams are compressed, so the test
    // changes one byte of the uncompressed document information instead of a drawn figure.)
    let forged = forge_page(&a);
    assert!(matches!(
        yunwei_reports::verify_with_font(&forged, &key, Some(&font)),
        Err(VerifyError::PdfMismatch)
    ));

    // Change the score inside the embedded signed data (same length, so the file stays valid).
    let b64 = base64::engine::general_purpose::STANDARD;
    let old = b64.encode(s.envelope_json());
    let changed = String::from_utf8(s.envelope_json().to_vec())
        .unwrap()
        .replace("\"score\":83,", "\"score\":93,");
    let new = b64.encode(changed.as_bytes());
    assert_eq!(old.len(), new.len());
    let text = unsafe_free_replace(&a, old.as_bytes(), new.as_bytes());
    assert!(matches!(
        verify(&text, &key),
        Err(VerifyError::Integrity(_))
    ));
}

/// Changes one byte of the document that is not the embedded signed data: the PDF's
/// producer string in the document information (stored uncompressed).
fn forge_page(pdf: &[u8]) -> Vec<u8> {
    let at = pdf
        .windows(b"yunwei".len())
        .position(|w| w == b"yunwei")
        .expect("producer string present");
    let mut out = pdf.to_vec();
    out[at] = b'Y';
    out
}

fn unsafe_free_replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("embedded data present");
    let mut out = hay.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}
