//! Performance-assessment reports (考核报告): the [`model`], its renderers ([`html`], [`pdf`],
//! [`xlsx`], [`json`]) and [`integrity`] (canonical JSON, SHA-256, Ed25519, `verify`).
//!
//! Pure: no I/O, no clock. Every time is a parameter (`Cover::generated_at_ms`), fonts are
//! passed in as bytes, renderers write to `impl Write` or return bytes, and the same inputs give
//! byte-identical outputs in every format.

pub mod evidence_file;
pub mod fixture;
pub mod from_assessment;
pub mod html;
pub mod i18n;
pub mod integrity;
pub mod json;
pub mod model;
pub mod pdf;
pub mod recompute;
pub mod schema;
pub mod verify;
pub mod xlsx;

pub use integrity::{Integrity, SignedReport};
pub use model::{Fixed, Lang, Report};
pub use verify::{
    Format, Verified, VerifyError, VerifyOptions, verify, verify_with, verify_with_font,
};

/// Errors of the renderers.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
    #[error("building the xlsx workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("the font could not be read (not a TrueType/OpenType font or collection)")]
    Font,
    #[error("building the pdf: {0}")]
    Pdf(String),
}
