//! O&M contracts, calendars and SLA arithmetic. Pure: no I/O, no clock.
//!
//! - [`calendar`]: the statutory working-day calendar (holidays, make-up working days).
//! - [`contract`]: O&M contract files, validated with `file:line:col` diagnostics.
//! - [`assess`]: the SLA assessment engine (availability, incident clocks, KPIs, inspections,
//!   scoring, grades, payment) over plain evidence rows.
//! - [`lifecycle`]: the deadlines of draft, appeal, review and sign-off in working days.
//!
//! Only the calendar and contract loaders read files, and only the files they are given;
//! the assessment time is always a parameter.

pub mod assess;
pub mod calendar;
pub mod contract;
pub mod lifecycle;

/// The example O&M contract shipped with the product, as `(file name, contents)`; quickstart
/// installs it, and `sla/tests/contract_files.rs` proves it loads.
pub const EXAMPLE_CONTRACT: (&str, &str) = (
    "contract.example.yml",
    include_str!("../examples/contract.example.yml"),
);
