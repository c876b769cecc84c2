//! Verification of a report file in any format: find the embedded signed envelope, check its
//! hash and Ed25519 signature against the given public key, and check that what the file shows
//! is what was signed (HTML, XLSX and JSON are rendered again from the signed JSON and must be
//! byte-identical, so a changed figure anywhere is rejected). A PDF is compared the same way
//! when the caller passes the font it was rendered with ([`verify_with_font`]); without it a
//! PDF does not verify unless the caller explicitly accepts uncompared pages
//! ([`VerifyOptions::allow_uncompared_pages`]), and [`Verified::content_checked`] says so.

use ed25519_dalek::VerifyingKey;

use crate::integrity::{IntegrityError, SignedReport};
use crate::model::Report;

/// File format, detected from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Pdf,
    Xlsx,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Html => "html",
            Format::Json => "json",
            Format::Pdf => "pdf",
            Format::Xlsx => "xlsx",
        })
    }
}

/// A report that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub format: Format,
    pub report: Box<Report>,
    pub sha256: String,
    pub key_id: String,
    /// True when the visible content was compared with the signed data (always except a PDF
    /// verified without its font, whose embedded data alone is then checked).
    pub content_checked: bool,
}

/// Why a file does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("not a yunwei report (unknown format)")]
    UnknownFormat,
    #[error("no signed report data found in the {0} file")]
    NoEnvelope(Format),
    #[error("the signed report data in the {0} file is malformed: {1}")]
    Malformed(Format, String),
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    #[error(
        "the {0} file's visible content differs from the signed report data (a figure was changed)"
    )]
    ContentMismatch(Format),
    #[error(
        "the pdf's pages were not compared with the signed report data (no font to render them \
         again: pass the font the report was made with, or explicitly allow uncompared pages)"
    )]
    PagesNotCompared,
    #[error(
        "the pdf's pages differ from the signed report data rendered again with the given font \
         (a figure was changed, or the pdf was made with another font file)"
    )]
    PdfMismatch,
}

/// Detects the format of `bytes`.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    let trimmed = bytes.trim_ascii_start();
    if bytes.starts_with(b"%PDF-") {
        Some(Format::Pdf)
    } else if bytes.starts_with(b"PK\x03\x04") {
        Some(Format::Xlsx)
    } else if trimmed.starts_with(b"<!DOCTYPE html") || trimmed.starts_with(b"<html") {
        Some(Format::Html)
    } else if trimmed.starts_with(b"{") {
        Some(Format::Json)
    } else {
        None
    }
}

/// How to verify a file.
#[derive(Clone, Copy, Default)]
pub struct VerifyOptions<'a> {
    /// The font a PDF was rendered with: its pages are rendered again and compared.
    pub font: Option<&'a crate::pdf::PdfFont>,
    /// Accept a PDF whose pages could not be compared (no font): only its embedded signed
    /// data is checked, and [`Verified::content_checked`] is false. Off, such a PDF fails with
    /// [`VerifyError::PagesNotCompared`].
    pub allow_uncompared_pages: bool,
}

/// Verifies a report file of any format against `key`; a PDF fails (its pages cannot be
/// compared without the font, see [`verify_with_font`]).
pub fn verify(bytes: &[u8], key: &VerifyingKey) -> Result<Verified, VerifyError> {
    verify_with(bytes, key, &VerifyOptions::default())
}

/// Like [`verify`]; with `font`, a PDF's pages are compared with the signed data.
pub fn verify_with_font(
    bytes: &[u8],
    key: &VerifyingKey,
    font: Option<&crate::pdf::PdfFont>,
) -> Result<Verified, VerifyError> {
    verify_with(
        bytes,
        key,
        &VerifyOptions {
            font,
            ..VerifyOptions::default()
        },
    )
}

/// Verifies a report file of any format against `key` with `options`.
pub fn verify_with(
    bytes: &[u8],
    key: &VerifyingKey,
    options: &VerifyOptions<'_>,
) -> Result<Verified, VerifyError> {
    let font = options.font;
    let format = detect(bytes).ok_or(VerifyError::UnknownFormat)?;
    let envelope = match format {
        Format::Json => bytes.to_vec(),
        Format::Html => html_envelope(bytes).ok_or(VerifyError::NoEnvelope(format))?,
        Format::Xlsx => crate::xlsx::extract_envelope(bytes)
            .map_err(|e| VerifyError::Malformed(format, e))?
            .ok_or(VerifyError::NoEnvelope(format))?,
        Format::Pdf => {
            crate::pdf::extract_envelope(bytes).ok_or(VerifyError::NoEnvelope(format))?
        }
    };
    let signed: SignedReport = serde_json::from_slice(&envelope)
        .map_err(|e| VerifyError::Malformed(format, e.to_string()))?;
    signed.check(key)?;
    let content_checked = match format {
        Format::Json => {
            // Canonical bytes only: a reformatted file is not the signed file.
            if crate::json::render(&signed) != bytes {
                return Err(VerifyError::ContentMismatch(format));
            }
            true
        }
        Format::Html => {
            if crate::html::render_string(&signed).as_bytes() != bytes {
                return Err(VerifyError::ContentMismatch(format));
            }
            true
        }
        Format::Xlsx => {
            let again = crate::xlsx::render(&signed)
                .map_err(|e| VerifyError::Malformed(format, e.to_string()))?;
            if !crate::xlsx::same_content(&again, bytes) {
                return Err(VerifyError::ContentMismatch(format));
            }
            true
        }
        Format::Pdf => match font {
            Some(font) => {
                let again = crate::pdf::render(&signed, font)
                    .map_err(|e| VerifyError::Malformed(format, e.to_string()))?;
                if again != bytes {
                    return Err(VerifyError::PdfMismatch);
                }
                true
            }
            None if options.allow_uncompared_pages => false,
            None => return Err(VerifyError::PagesNotCompared),
        },
    };
    Ok(Verified {
        format,
        sha256: signed.integrity.sha256.clone(),
        key_id: signed.integrity.key_id.clone(),
        report: Box::new(signed.report),
        content_checked,
    })
}

fn html_envelope(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let start = text.find(crate::html::SCRIPT_OPEN)? + crate::html::SCRIPT_OPEN.len();
    let len = text[start..].find("</script>")?;
    Some(text.as_bytes()[start..start + len].to_vec())
}
