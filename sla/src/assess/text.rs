//! What the assessment says in words, kept language-neutral: each note, provisional reason and
//! deduction line is a code with its parameters (serialized as `{"code": "...", ...}`), which
//! the reports crate (`yunwei_reports::i18n`) and the console render in zh-CN or English. The
//! engine never formats a sentence a user reads, so its output stays the same bytes whatever
//! the reader's language. `Display` gives the English text, for logs and the command line.

use std::fmt;

use chrono::NaiveDate;
use serde::Serialize;

use crate::contract::MissingData;

use super::{ClockStatus, InspectionKind};

/// Something a reader of the assessment should know.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Note {
    /// The assessed period is not inside the contract period.
    PeriodOutsideContract {
        /// Period label.
        period: String,
        /// Period start date.
        start: NaiveDate,
        /// Period end date.
        end: NaiveDate,
        /// Contract start date.
        contract_start: NaiveDate,
        /// Contract end date.
        contract_end: NaiveDate,
    },
    /// A system selects no host or probe: its availability rests on no evidence.
    NoSubjects {
        /// System id.
        system: String,
        /// System name.
        name: String,
        /// How the tier counts missing data.
        missing_data: MissingData,
    },
    /// A system's evidence covers less of its service window than its tier's minimum:
    /// insufficient evidence (数据不足，不予评定).
    InsufficientEvidence {
        /// System id.
        system: String,
        /// System name.
        name: String,
        /// Share of the assessed window time with data, percent (`None`: no window time).
        coverage_percent: Option<f64>,
        /// The tier's minimum, percent.
        min_coverage_percent: f64,
    },
    /// The grade is withheld because a system has insufficient evidence.
    GradeWithheld {
        /// The systems with insufficient evidence.
        systems: Vec<String>,
    },
    /// The grade stands but rests on partial evidence.
    GradeOnPartialEvidence {
        /// The systems with insufficient evidence.
        systems: Vec<String>,
    },
    /// An incident's level is not defined by the contract: no clocks.
    UnknownIncidentLevel {
        /// Incident id.
        incident: String,
        /// The level as written.
        level: String,
    },
    /// An incident matches no system of the contract: its clocks run 7x24.
    IncidentWithoutSystem {
        /// Incident id.
        incident: String,
    },
}

/// Why the figures may still change.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// The calendar has no data for a year of the period: Monday to Friday were working days.
    CalendarYearMissing {
        /// The year.
        year: i32,
    },
    /// A service window needed a year the calendar lacks.
    WindowYearMissing,
    /// The period is not over.
    PeriodNotOver,
    /// Inspections were due before yunwei began recording them.
    InspectionsNotRecorded {
        /// How many.
        count: usize,
    },
    /// Incidents assessed in the period are still open: their clocks still run, and the report
    /// is issued again when they close.
    IncidentsOpen {
        /// Their ids.
        incidents: Vec<String>,
    },
}

/// The arithmetic of one deduction line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum LineDetail {
    /// Availability below target: started steps of `step_pp` short, `points` each.
    AvailabilityShort {
        /// Actual, percent.
        actual_percent: f64,
        /// Target, percent.
        target_percent: f64,
        /// Percentage points short.
        short_pp: f64,
        /// Started steps.
        steps: f64,
        /// The step, percentage points.
        step_pp: f64,
        /// Points per step.
        points: f64,
    },
    /// An incident clock past its target.
    ClockLate {
        /// `response`, `on_site` or `restore`.
        clock: String,
        /// Minutes past target.
        late_minutes: f64,
        /// The clock's status (`late` stopped, `breached` still running).
        status: ClockStatus,
        /// Started units of `per_minutes` late, when the item counts per minutes.
        units: Option<f64>,
        /// The unit, minutes.
        per_minutes: Option<u32>,
        /// Points (per unit, or for the incident).
        points: f64,
    },
    /// An inspection owed and not done in time.
    InspectionMissed {
        /// Which obligation.
        kind: InspectionKind,
        /// When it was scheduled, UTC ms.
        scheduled_ms: i64,
        /// Points.
        points: f64,
    },
    /// A resource KPI at or above its limit.
    ResourceBreach {
        /// The value.
        value: f64,
        /// The limit.
        below: f64,
        /// Points.
        points: f64,
    },
    /// A manual event (its evidence text as entered).
    Manual {
        /// The event's evidence text.
        evidence: String,
        /// Points.
        points: f64,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::PeriodOutsideContract {
                period,
                start,
                end,
                contract_start,
                contract_end,
            } => write!(
                f,
                "the period {period} ({start}..{end}) is not inside the contract period \
                 {contract_start}..{contract_end}"
            ),
            Note::NoSubjects {
                system,
                name,
                missing_data: _,
            } => write!(
                f,
                "system {system} ({name}): its selectors match no host or probe, so there is \
                 no evidence: insufficient evidence, not assessed"
            ),
            Note::InsufficientEvidence {
                system,
                name,
                coverage_percent,
                min_coverage_percent,
            } => write!(
                f,
                "system {system} ({name}): data covers {} of its service window, below the \
                 minimum {min_coverage_percent}%: insufficient evidence, not assessed",
                coverage_percent.map_or("none".to_string(), |c| format!("{c:.2}%"))
            ),
            Note::GradeWithheld { systems } => write!(
                f,
                "the grade is withheld: insufficient evidence for {}",
                systems.join(", ")
            ),
            Note::GradeOnPartialEvidence { systems } => write!(
                f,
                "the grade rests on partial evidence: insufficient evidence for {}",
                systems.join(", ")
            ),
            Note::UnknownIncidentLevel { incident, level } => write!(
                f,
                "incident {incident}: level {level:?} is not defined by the contract; no clocks"
            ),
            Note::IncidentWithoutSystem { incident } => write!(
                f,
                "incident {incident}: matches no system of the contract; clocks run 7x24"
            ),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::CalendarYearMissing { year } => write!(
                f,
                "the calendar has no data for {year}: Monday to Friday were taken as working days"
            ),
            Reason::WindowYearMissing => {
                write!(f, "a service window needed a year the calendar lacks")
            }
            Reason::PeriodNotOver => write!(f, "the period is not over"),
            Reason::InspectionsNotRecorded { count } => write!(
                f,
                "{count} inspections were due before yunwei began recording inspections and are \
                 not assessed"
            ),
            Reason::IncidentsOpen { incidents } => write!(
                f,
                "incidents still open (their clocks run; the report is issued again when they \
                 close): {}",
                incidents.join(", ")
            ),
        }
    }
}

impl fmt::Display for LineDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineDetail::AvailabilityShort {
                actual_percent,
                target_percent,
                short_pp,
                steps,
                step_pp,
                points,
            } => write!(
                f,
                "{actual_percent:.4}% vs target {target_percent:.4}%: {short_pp:.4} pp short = \
                 {steps} × {step_pp} pp × {points} points"
            ),
            LineDetail::ClockLate {
                clock,
                late_minutes,
                status,
                units,
                per_minutes,
                points,
            } => match (units, per_minutes) {
                (Some(u), Some(m)) => write!(
                    f,
                    "{clock} {late_minutes:.1} min late ({}) = {u} × {m} min × {points} points",
                    status.name()
                ),
                _ => write!(
                    f,
                    "{clock} {late_minutes:.1} min late ({}): {points} points",
                    status.name()
                ),
            },
            LineDetail::InspectionMissed { points, .. } => {
                write!(f, "missed inspection: {points} points")
            }
            LineDetail::ResourceBreach {
                value,
                below,
                points,
            } => write!(f, "{value:.4} ≥ {below}: {points} points"),
            LineDetail::Manual { evidence, points } => write!(f, "{evidence}: {points} points"),
        }
    }
}
