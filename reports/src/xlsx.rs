//! XLSX (in progress).
use crate::{RenderError, SignedReport};
/// Renders the workbook.
pub fn render(_s: &SignedReport) -> Result<Vec<u8>, RenderError> {
    Ok(Vec::new())
}
/// Extracts the envelope.
pub fn extract_envelope(_b: &[u8]) -> Result<Option<Vec<u8>>, String> {
    Ok(None)
}
/// Compares.
pub fn same_content(a: &[u8], b: &[u8]) -> bool {
    a == b
}
