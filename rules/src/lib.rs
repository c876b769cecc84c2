//! Rule files and PromQL evaluation (the Prometheus rule stack). Pure: no I/O, no clock. The
//! O&M contracts, calendars and SLA assessment are in `yunwei-sla`.
//!
//! - [`promql`]: the PromQL engine and the runner for Prometheus's `.test` scripts.
//! - [`rulefile`]: Prometheus rule files, parsed and validated with `file:line:col` diagnostics.
//! - [`template`]: the Go-template subset used in alert labels and annotations.
//! - [`alerting`]: rule-group evaluation and the alert state machine, with serializable state.
//! - [`unittest`]: promtool's rule unit-test format (`promtool test rules`).
//!
//! Only [`rulefile::load_rule_files`] and [`unittest::run_unit_test_file`] (and its plural)
//! read files, and only the files they are given; evaluation time is always a parameter.

pub mod alerting;
pub mod promql;
pub mod rulefile;
pub mod template;
pub mod unittest;

/// The rule files shipped with the product, as `(file name, contents)`; quickstart installs
/// them, and `rules/tests/shipped_rules.rs` proves each loads and passes its unit tests.
pub const SHIPPED_RULES: &[(&str, &str)] = &[
    ("host.rules.yml", include_str!("../host.rules.yml")),
    ("probe.rules.yml", include_str!("../probe.rules.yml")),
];
