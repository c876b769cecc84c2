//! PDF (in progress).
/// Extracts the envelope.
pub fn extract_envelope(_b: &[u8]) -> Option<Vec<u8>> {
    None
}
