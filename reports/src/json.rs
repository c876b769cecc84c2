//! JSON format: the canonical JSON of the [`SignedReport`] envelope, `{"integrity":{..},
//! "report":{..}}`, documented by `reports/schema/report.v1.json` (see [`crate::schema`]).

use crate::integrity::SignedReport;

/// Renders the JSON file (canonical bytes, no trailing newline).
pub fn render(signed: &SignedReport) -> Vec<u8> {
    signed.envelope_json().to_vec()
}
