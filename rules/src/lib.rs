//! Rule files, PromQL evaluation, contracts, calendars and SLA arithmetic. Pure: no I/O, no clock.
//!
//! - [`promql`]: the PromQL engine and the runner for Prometheus's `.test` scripts.
//! - [`rulefile`]: Prometheus rule files, parsed and validated with `file:line:col` diagnostics.
//! - [`template`]: the Go-template subset used in alert labels and annotations.
//! - [`alerting`]: rule-group evaluation and the alert state machine, with serializable state.
//! - [`unittest`]: promtool's rule unit-test format (`promtool test rules`).
//! - [`calendar`]: the statutory working-day calendar (holidays, make-up working days).
//! - [`contract`]: O&M contract files, validated with `file:line:col` diagnostics.
//! - [`assess`]: the SLA assessment engine (availability, incident clocks, KPIs, inspections,
//!   scoring, grades, payment) over plain evidence rows.
//!
//! Only [`rulefile::load_rule_files`] and [`unittest::run_unit_test_file`] (and its plural)
//! read files, and only the files they are given; evaluation time is always a parameter.

pub mod alerting;
pub mod assess;
pub mod calendar;
pub mod contract;
pub mod promql;
pub mod rulefile;
pub mod template;
pub mod unittest;
mod yaml;
mod yaml_de;

/// The rule files shipped with the product, as `(file name, contents)`; quickstart installs
/// them, and `rules/tests/shipped_rules.rs` proves each loads and passes its unit tests.
pub const SHIPPED_RULES: &[(&str, &str)] = &[
    ("host.rules.yml", include_str!("../host.rules.yml")),
    ("probe.rules.yml", include_str!("../probe.rules.yml")),
];

/// The example O&M contract shipped with the product, as `(file name, contents)`; quickstart
/// installs it, and `rules/tests/contract_files.rs` proves it loads.
pub const EXAMPLE_CONTRACT: (&str, &str) = (
    "contract.example.yml",
    include_str!("../examples/contract.example.yml"),
);
