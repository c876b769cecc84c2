//! The JSON schema of the report (`reports/schema/report.v1.json`), shipped inside the crate so
//! callers can serve it, and checked by tests against the model.

/// JSON Schema (draft 2020-12) of the JSON format, i.e. of [`crate::SignedReport`].
pub const REPORT_V1: &str = include_str!("../schema/report.v1.json");

/// JSON Schema (draft 2020-12) of the evidence file (`*.evidence.json`), i.e. of
/// [`crate::evidence_file::EvidenceFile`].
pub const EVIDENCE_V1: &str = include_str!("../schema/evidence.v1.json");
