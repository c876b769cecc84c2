//! The SLA assessment engine: a contract, a calendar, a period and the evidence in; an
//! [`Assessment`] out. Pure and deterministic: no I/O, no clock (`as_of_ms` is a parameter),
//! the same inputs give the same (serialized) output.
//!
//! Availability of a system, for the part of the period up to `as_of`:
//! 1. the selected hosts and probes (label selectors) give per-instant system states by the
//!    system's `down_when` rule (default: down when any probe is down or every host is down;
//!    unknown when not down and a deciding subject has no data); the system's
//!    `availability_from` says whether those agents' states decide (default), the server's own
//!    probes (down while any is down, unknown while any has no result), or both (down while
//!    either says down, unknown only while neither has data);
//! 2. each outage (a maximal down run, as it happened) shorter than the tier's `min_outage`
//!    is ignored;
//! 3. the remaining down time is clipped to the service window, and approved exclusions in
//!    scope are subtracted (reported as excluded);
//! 4. missing data inside the window counts per the tier's `missing_data`: `excluded` (out of
//!    the denominator), `as_up`, or `as_down`;
//! 5. actual % = (measured − downtime) / measured × 100; met when actual ≥ target.
//!
//! Incident clocks run from detection to acknowledgement (response), on-site arrival and
//! restoration, counting only time inside the level's window (7x24 or the system's service
//! window) and outside pauses whose reason the level lists.
//!
//! Score = base − deductions + bonuses (bonuses capped), clamped to `floor ..= base +
//! bonus_cap`; a veto makes the grade the lowest. Each deduction lists its evidence ids and
//! the arithmetic as text.

mod evidence;
mod period;
mod spans;
mod text;
mod window;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Days, NaiveDate};
use serde::Serialize;

pub use evidence::*;
pub use period::{Period, PeriodError, local_midnight_ms, local_ms};
pub use text::{LineDetail, Note, Reason};
pub use window::{local_date, window_spans};

use crate::calendar::Calendar;
use crate::contract::{
    AvailabilityFrom, AvailabilityObjective, ClockWindow, Contract, DeductionKind, DownWhen,
    FeePer, Grade, InspectionDays, InsufficientEvidence, KpiAggregate, MissingData, Payment,
    ServiceWindow, System,
};
use spans::{Spans, intersect, normalize, subtract, total};

const MINUTE: f64 = 60_000.0;

fn minutes(ms: i64) -> f64 {
    ms as f64 / MINUTE
}

/// The result of assessing one contract over one period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assessment {
    /// Contract id.
    pub contract_id: String,
    /// The period.
    pub period: Period,
    /// The instant the assessment is for (UTC ms).
    pub as_of_ms: i64,
    /// Evidence up to this instant was assessed: `min(as_of, period end)`.
    pub assessed_until_ms: i64,
    /// Whether the figures may still change.
    pub provisional: bool,
    /// Why they may change (codes with parameters; see [`Reason`]).
    pub provisional_reasons: Vec<Reason>,
    /// Things a reader should know: the period outside the contract period, systems whose
    /// selectors match no host or probe or whose data is below the coverage minimum (no
    /// availability figure), a withheld grade, incidents with a level the contract does not
    /// define, incidents matching no system (codes with parameters; see [`Note`]).
    pub notes: Vec<Note>,
    /// The systems with insufficient evidence (数据不足，不予评定), in contract order; omitted
    /// when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub insufficient_evidence: Vec<String>,
    /// The grade is withheld (不予评定): a system has insufficient evidence and the contract's
    /// `scoring.insufficient_evidence` is `withhold_grade`. `grade` then still holds what the
    /// score alone would give, which must not be shown as the period's grade; `payment` is
    /// `None`. Omitted when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub grade_withheld: bool,
    /// Availability per system, in contract order.
    pub systems: Vec<SystemAvailability>,
    /// Incidents detected in the period, by detection time.
    pub incidents: Vec<IncidentClocks>,
    /// The backdate and downgrade requests of those incidents (every status), by incident
    /// then recording time; omitted when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incident_requests: Vec<IncidentRequest>,
    /// Resource KPI results, per KPI and host.
    pub resources: Vec<KpiResult>,
    /// Inspections due and done.
    pub inspections: InspectionSummary,
    /// Exclusion requests touching the period, and whether they counted.
    pub exclusions: Vec<ExclusionUse>,
    /// Appeals against the period's draft filed by `as_of`, by filing time, with their
    /// decisions and effect; omitted when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub appeals: Vec<AppealResult>,
    /// Deductions, in the contract's item order.
    pub deductions: Vec<Deduction>,
    /// Bonuses, in the contract's item order.
    pub bonuses: Vec<Bonus>,
    /// Veto items hit.
    pub vetoes: Vec<VetoHit>,
    /// Total deducted points (after item caps).
    pub deducted: f64,
    /// Total bonus points (after caps).
    pub bonus: f64,
    /// The score.
    pub score: f64,
    /// The grade.
    pub grade: Option<GradeResult>,
    /// What the grade or score means for payment.
    pub payment: Option<PaymentEffect>,
    /// The date the period's report is due.
    pub report_due: Option<NaiveDate>,
    /// Every span in which the agents' view of a system and one of its server probes disagree
    /// (one up, the other down; unknown on either side is no disagreement), by system, probe
    /// and time; omitted when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disagreements: Vec<Disagreement>,
}

/// A span in which the vendor's agents and the server's own probe disagree about a system.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Disagreement {
    /// System id.
    pub system: String,
    /// The server probe's name.
    pub probe: String,
    /// Start, UTC ms.
    pub from_ms: i64,
    /// End, UTC ms (exclusive).
    pub to_ms: i64,
    /// The system's state from the agents' evidence.
    pub agents: State,
    /// The server probe's state.
    pub server: State,
    /// Length in minutes (two decimals).
    pub minutes: f64,
    /// The server probe intervals it rests on.
    pub evidence: Vec<String>,
}

/// The requests of the assessed incidents, in their order, each incident's by recording time.
fn incident_requests(ev: &Evidence, incidents: &[IncidentClocks]) -> Vec<IncidentRequest> {
    let mut out = Vec::new();
    for i in incidents {
        let mut mine: Vec<&IncidentRequest> = ev
            .incident_requests
            .iter()
            .filter(|r| r.incident == i.incident)
            .collect();
        mine.sort_by(|a, b| (a.recorded_ms, &a.id).cmp(&(b.recorded_ms, &b.id)));
        out.extend(mine.into_iter().cloned());
    }
    out
}

/// Availability of one system.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemAvailability {
    /// System id.
    pub system: String,
    /// System name.
    pub name: String,
    /// Tier.
    pub tier: String,
    /// Target, percent.
    pub target_percent: f64,
    /// Whole period, minutes (days × 1440).
    pub period_minutes: f64,
    /// Service-window minutes up to `assessed_until`.
    pub window_minutes: f64,
    /// Window minutes with data, or all of them unless missing data is excluded.
    pub measured_minutes: f64,
    /// Counted downtime, minutes.
    pub downtime_minutes: f64,
    /// Down minutes forgiven by approved exclusions.
    pub excluded_minutes: f64,
    /// Window minutes without data (数据缺失).
    pub missing_minutes: f64,
    /// Down minutes in the window ignored because their outage was shorter than the minimum.
    pub ignored_short_minutes: f64,
    /// Actual availability, percent; `None` with nothing measured or insufficient evidence.
    pub actual_percent: Option<f64>,
    /// Whether the target is met (true with nothing measured; false with insufficient
    /// evidence, which is neither met nor breached: see `insufficient_evidence`).
    pub met: bool,
    /// Share of the window time up to `assessed_until` with data, percent; `None` without
    /// window time.
    pub coverage_percent: Option<f64>,
    /// The tier's minimum coverage, percent.
    pub min_coverage_percent: f64,
    /// Below the minimum coverage, or no selected subject: no availability figure, neither
    /// met nor breached, no availability deduction (数据不足，不予评定).
    pub insufficient_evidence: bool,
    /// Downtime still allowed this period: target share of the whole period's window minus
    /// the downtime so far (negative when overspent).
    pub error_budget_left_minutes: f64,
    /// Down minutes no longer counted because an appeal about their outage was overturned or
    /// adjusted; omitted when zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub appealed_minutes: f64,
    /// Counted outages.
    pub outages: Vec<Outage>,
    /// Subjects the system selected (`host:ID` / `probe:ID`).
    pub subjects: Vec<String>,
    /// Whose evidence decided the figures (the contract's `availability_from`); omitted when
    /// the agents' (the default).
    #[serde(skip_serializing_if = "AvailabilityFrom::is_agents")]
    pub decided_by: AvailabilityFrom,
}

/// One counted outage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outage {
    /// Start, UTC ms (as it happened).
    pub start_ms: i64,
    /// End, UTC ms.
    pub end_ms: i64,
    /// Minutes counted as downtime (in the window, not excluded).
    pub counted_minutes: f64,
    /// Status-interval ids behind it.
    pub evidence: Vec<String>,
    /// The decided appeal that overturned or adjusted it (its evidence id); omitted when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appeal: Option<String>,
}

/// Status of one incident clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockStatus {
    /// Stopped within target.
    Met,
    /// Stopped after target.
    Late,
    /// Running, still within target.
    Running,
    /// Running and already past target.
    Breached,
}

impl ClockStatus {
    /// The status as serialized (`met`, `late`, `running`, `breached`).
    pub fn name(self) -> &'static str {
        match self {
            ClockStatus::Met => "met",
            ClockStatus::Late => "late",
            ClockStatus::Running => "running",
            ClockStatus::Breached => "breached",
        }
    }
}

/// One clock of one incident.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClockResult {
    /// `response`, `on_site` or `restore`.
    pub clock: String,
    /// Target, ms of window time.
    pub target_ms: i64,
    /// Window time elapsed (to the stop, or to `as_of` while running), ms.
    pub elapsed_ms: i64,
    /// How far past target, ms (0 when not late).
    pub late_ms: i64,
    /// Status.
    pub status: ClockStatus,
}

/// An incident and its clocks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentClocks {
    /// Incident id.
    pub incident: String,
    /// Level id (as in the contract), or the level as written when unknown.
    pub level: String,
    /// Whether the contract knows the level.
    pub level_known: bool,
    /// Systems it affects.
    pub systems: Vec<String>,
    /// Cause.
    pub cause: crate::contract::Cause,
    /// Detection, UTC ms.
    pub detected_ms: i64,
    /// The clocks the level defines.
    pub clocks: Vec<ClockResult>,
}

/// A resource KPI on one host.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KpiResult {
    /// KPI id.
    pub kpi: String,
    /// Host id.
    pub host: String,
    /// The reduced value; `None` without data.
    pub value: Option<f64>,
    /// The limit (must stay below).
    pub below: f64,
    /// Whether breached.
    pub breached: bool,
    /// The rollup row that decided the value (p95 rank or maximum), if any.
    pub evidence: Vec<String>,
}

/// One inspection owed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InspectionDue {
    /// Which obligation.
    pub kind: InspectionKind,
    /// Scheduled time (for before-holiday: the start of the window), UTC ms.
    pub scheduled_ms: i64,
    /// Latest acceptable time, UTC ms.
    pub deadline_ms: i64,
    /// The record that answered it.
    pub record: Option<String>,
}

/// Inspections due and done.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InspectionSummary {
    /// Owed with the deadline passed.
    pub due: usize,
    /// Of those, done in time.
    pub done: usize,
    /// The missed ones.
    pub missed: Vec<InspectionDue>,
    /// Owed before inspection record-keeping began ([`Evidence::inspections_since_ms`]): not
    /// assessed.
    pub not_recorded: usize,
}

/// An exclusion request and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExclusionUse {
    /// Exclusion id.
    pub exclusion: String,
    /// Its status.
    pub status: ExclusionStatus,
    /// Whether it counted (approved).
    pub counted: bool,
    /// Requested after its start.
    pub filed_after_the_fact: bool,
    /// Systems it applies to.
    pub systems: Vec<String>,
}

/// One line of a deduction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeductionLine {
    /// What it concerns (system, incident, host, event id).
    pub subject: String,
    /// The arithmetic in English, e.g. `99.80% vs 99.95%: 0.15 pp short = 2 × 0.1 pp × 5`
    /// (`detail` rendered; readers get `detail` in their language).
    pub arithmetic: String,
    /// The arithmetic as a code with its figures.
    pub detail: LineDetail,
    /// Points.
    pub points: f64,
    /// Evidence ids.
    pub evidence: Vec<String>,
    /// The decided appeal that adjusted the line's points (its evidence id); omitted when
    /// none. An overturned line is not listed (the assessment's `appeals` cite it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appeal: Option<String>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// An appeal and what its decision did to the assessment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppealResult {
    /// The appeal as filed and decided (decisions after `as_of` are left out).
    pub appeal: Appeal,
    /// Whether its decision (counted at `as_of`) changed a line or an outage of this period;
    /// false for an upheld or undecided appeal and for one whose target the period lacks.
    pub applied: bool,
    /// Score points the decision gave back (score with it − score without it); 0 when not
    /// applied.
    pub effect_points: f64,
}

/// A deduction item with the points it took.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deduction {
    /// Item id.
    pub item: String,
    /// Name (zh-CN).
    pub name: String,
    /// Name (en).
    pub name_en: Option<String>,
    /// Points before the cap.
    pub uncapped: f64,
    /// Points deducted.
    pub points: f64,
    /// The lines.
    pub lines: Vec<DeductionLine>,
}

/// A bonus item with the points it gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bonus {
    /// Item id.
    pub item: String,
    /// Name (zh-CN).
    pub name: String,
    /// Name (en).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_en: Option<String>,
    /// Points (after the item cap).
    pub points: f64,
    /// Event ids.
    pub evidence: Vec<String>,
}

/// A veto item that was hit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VetoHit {
    /// Item id.
    pub item: String,
    /// Name (zh-CN).
    pub name: String,
    /// Name (en).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_en: Option<String>,
    /// Event ids.
    pub evidence: Vec<String>,
}

/// The grade reached.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GradeResult {
    /// Grade id.
    pub id: String,
    /// Name (zh-CN).
    pub name: String,
    /// Name (en).
    pub name_en: String,
    /// Forced by a veto.
    pub vetoed: bool,
    /// Rests on partial evidence: a system has insufficient evidence and the contract's
    /// `scoring.insufficient_evidence` is `mark_partial`. Omitted when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial_evidence: bool,
}

/// Effect on payment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PaymentEffect {
    /// The fee for this period (pro rata by days from the contract's fee).
    pub period_fee: f64,
    /// Percent payable.
    pub percent: f64,
    /// Amount payable (rounded to cents).
    pub payable: f64,
    /// Amount withheld.
    pub withheld: f64,
    /// Currency.
    pub currency: String,
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether `system` counts subject `s` at some time: by the evidence's membership rows when it
/// has them, else by the system's label selector.
fn selects(ev: &Evidence, system: &System, s: &Subject) -> bool {
    if ev.membership.is_some() {
        return !ev.membership_of(&system.id, s.kind, &s.id).is_empty();
    }
    let sel = match s.kind {
        SubjectKind::Host => &system.hosts,
        SubjectKind::Probe => &system.probes,
    };
    sel.as_ref().is_some_and(|sel| matches(sel, &s.labels))
}

/// When `system` counts subject `s` within `[from, to)`: the membership rows' spans, or `None`
/// (the whole time) when systems select by label.
fn member_spans(ev: &Evidence, system: &System, s: &Subject, from: i64, to: i64) -> Option<Spans> {
    ev.membership.as_ref()?;
    let spans = ev
        .membership_of(&system.id, s.kind, &s.id)
        .into_iter()
        .map(|m| (m.from_ms.max(from), m.to_ms.unwrap_or(i64::MAX).min(to)))
        .filter(|(a, b)| a < b)
        .collect();
    Some(normalize(spans))
}

fn subject_key(kind: SubjectKind, id: &str) -> String {
    match kind {
        SubjectKind::Host => format!("host:{id}"),
        SubjectKind::Probe => format!("probe:{id}"),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What one assessment looks at: the contract with its calendar, the evidence, the period,
/// and the bounds that `as_of_ms` puts on it.
struct Scope<'a> {
    contract: &'a Contract,
    calendar: &'a Calendar,
    period: &'a Period,
    ev: &'a Evidence,
    /// When the evidence is known.
    as_of_ms: i64,
    /// The period's start.
    start: i64,
    /// Where the assessment stops: `as_of_ms` within the period.
    until: i64,
    /// The appeals whose decision counts (decided by `as_of_ms`, other than overturned or
    /// adjusted ones left out to measure their effect).
    decided: Vec<&'a Appeal>,
}

/// Status intervals per subject (kind and id), in time order.
type BySubject<'e> = BTreeMap<(SubjectKind, &'e str), Vec<&'e StatusInterval>>;

/// Approved exclusion spans per system id.
type ApprovedSpans = BTreeMap<String, Vec<(i64, i64)>>;

/// Assesses `contract` over `period` with the evidence known at `as_of_ms`.
///
/// Decided appeals ([`Evidence::appeals`], decided by `as_of_ms`) apply: an overturned line
/// is dropped, an adjusted one counts its approved points, an overturned outage counts no
/// downtime and an adjusted one its approved minutes. Each appeal's effect on the score is the
/// score with every decision minus the score without its own.
pub fn assess(
    contract: &Contract,
    calendar: &Calendar,
    period: &Period,
    as_of_ms: i64,
    ev: &Evidence,
) -> Assessment {
    let known: Vec<&Appeal> = ev
        .appeals
        .iter()
        .filter(|a| a.filed_ms <= as_of_ms)
        .collect();
    let decided: Vec<&Appeal> = known
        .iter()
        .copied()
        .filter(|a| {
            a.decision
                .as_ref()
                .is_some_and(|d| d.decided_ms <= as_of_ms && d.outcome != AppealOutcome::Upheld)
        })
        .collect();
    let (mut out, applied) = assess_with(contract, calendar, period, as_of_ms, ev, &decided);
    let mut appeals = Vec::new();
    for a in known {
        let mut appeal = a.clone();
        if appeal
            .decision
            .as_ref()
            .is_some_and(|d| d.decided_ms > as_of_ms)
        {
            appeal.decision = None;
        }
        let applied = applied.contains(&a.id);
        let effect_points = if applied {
            let others: Vec<&Appeal> = decided.iter().copied().filter(|o| o.id != a.id).collect();
            let (without, _) = assess_with(contract, calendar, period, as_of_ms, ev, &others);
            round2(out.score - without.score)
        } else {
            0.0
        };
        appeals.push(AppealResult {
            appeal,
            applied,
            effect_points,
        });
    }
    appeals
        .sort_by(|a, b| (a.appeal.filed_ms, &a.appeal.id).cmp(&(b.appeal.filed_ms, &b.appeal.id)));
    out.appeals = appeals;
    out
}

/// [`assess`] applying the decisions of `decided`; also the ids of those that changed
/// something.
fn assess_with(
    contract: &Contract,
    calendar: &Calendar,
    period: &Period,
    as_of_ms: i64,
    ev: &Evidence,
    decided: &[&Appeal],
) -> (Assessment, BTreeSet<String>) {
    let start = period.start_ms;
    let sc = Scope {
        contract,
        calendar,
        period,
        ev,
        as_of_ms,
        start,
        until: as_of_ms.clamp(start, period.end_ms),
        decided: decided.to_vec(),
    };
    let mut applied: BTreeSet<String> = BTreeSet::new();
    let mut reasons = provisional_reasons(&sc);
    let by_subject = intervals_by_subject(ev);
    let (exclusions, approved_by_system) = exclusion_uses(&sc);

    let mut guessed_any = false;
    let mut systems_out = Vec::new();
    for sys in &contract.systems {
        let (out, guessed) =
            system_availability(&sc, sys, &by_subject, &approved_by_system, &mut applied);
        guessed_any |= guessed;
        systems_out.push(out);
    }
    let (incident_out, guessed) = incident_results(&sc);
    guessed_any |= guessed;

    let resources = resource_kpis(contract, ev, start, sc.until);
    // A slot counts in the period it is scheduled in, once its deadline has passed at
    // `as_of_ms` — even when the grace runs past the period's end.
    let inspections = inspection_summary(contract, calendar, ev, period, as_of_ms.max(start));
    if inspections.not_recorded > 0 {
        reasons.push(Reason::InspectionsNotRecorded {
            count: inspections.not_recorded,
        });
    }
    let open = open_incidents(ev, &incident_out, as_of_ms);
    if !open.is_empty() {
        reasons.push(Reason::IncidentsOpen { incidents: open });
    }

    if guessed_any
        && !reasons
            .iter()
            .any(|r| matches!(r, Reason::CalendarYearMissing { .. }))
    {
        reasons.insert(0, Reason::WindowYearMissing);
    }

    let events = period_events(&sc);
    let mut deductions = deductions(
        contract,
        &systems_out,
        &incident_out,
        &resources,
        &inspections,
        &events,
    );
    apply_line_appeals(contract, &sc.decided, &mut deductions, &mut applied);
    // `fold` from +0.0: an empty `sum` of f64 is −0.0, which would serialize as `-0.0`.
    let deducted: f64 = deductions.iter().fold(0.0, |a, d| a + d.points);
    let bonuses = bonuses(contract, &events);
    let bonus = bonuses
        .iter()
        .fold(0.0, |a, b| a + b.points)
        .min(contract.scoring.bonus_cap);
    let vetoes = vetoes(contract, &events);
    let scoring = &contract.scoring;
    let score = round2(
        (scoring.base - deducted + bonus).clamp(scoring.floor, scoring.base + scoring.bonus_cap),
    );
    let vetoed = !vetoes.is_empty();
    let grade = if vetoed {
        contract.grades.last()
    } else {
        contract.grade_for(score)
    };
    let insufficient: Vec<String> = systems_out
        .iter()
        .filter(|s| s.insufficient_evidence)
        .map(|s| s.system.clone())
        .collect();
    let grade_withheld = !insufficient.is_empty()
        && scoring.insufficient_evidence == InsufficientEvidence::WithholdGrade;
    let payment = if grade_withheld {
        None
    } else {
        payment_effect(contract, period, grade, score)
    };
    let report_due = contract
        .report_due_working_day
        .map(|n| nth_working_day_after(calendar, period.end, n));
    let mut notes = notes(&sc, &systems_out, &incident_out);
    if !insufficient.is_empty() {
        notes.push(if grade_withheld {
            Note::GradeWithheld {
                systems: insufficient.clone(),
            }
        } else {
            Note::GradeOnPartialEvidence {
                systems: insufficient.clone(),
            }
        });
    }
    let incident_requests = incident_requests(ev, &incident_out);
    let disagreements = disagreements(&sc, &by_subject);

    let assessment = Assessment {
        contract_id: contract.id.clone(),
        period: period.clone(),
        as_of_ms,
        assessed_until_ms: sc.until,
        provisional: !reasons.is_empty(),
        provisional_reasons: reasons,
        notes,
        insufficient_evidence: insufficient.clone(),
        grade_withheld,
        systems: systems_out,
        incidents: incident_out,
        incident_requests,
        resources,
        inspections,
        exclusions,
        deductions,
        bonuses,
        vetoes,
        deducted,
        bonus,
        score,
        grade: grade.map(|g| GradeResult {
            id: g.id.clone(),
            name: g.name.clone(),
            name_en: g.name_en.clone(),
            vetoed,
            partial_evidence: !insufficient.is_empty() && !grade_withheld,
        }),
        payment,
        report_due,
        appeals: Vec::new(),
        disagreements,
    };
    (assessment, applied)
}

/// The line an appeal contests: its item and line.
fn line_matches(target: &AppealTarget, item: &str, line: &DeductionLine) -> bool {
    match target {
        AppealTarget::Deduction { item: i, subject } => i == item && *subject == line.subject,
        AppealTarget::IncidentClock { incident, clock } => {
            *incident == line.subject
                && matches!(&line.detail, LineDetail::ClockLate { clock: c, .. } if c == clock)
        }
        AppealTarget::Inspection {
            inspection,
            scheduled_ms,
        } => matches!(
            &line.detail,
            LineDetail::InspectionMissed { kind, scheduled_ms: at, .. }
                if kind == inspection && at == scheduled_ms
        ),
        AppealTarget::Outage { .. } => false,
    }
}

/// Applies decided appeals about deduction lines: an overturned line is dropped, an adjusted
/// one counts at most its approved points; items are capped again and dropped when empty.
fn apply_line_appeals(
    contract: &Contract,
    decided: &[&Appeal],
    deductions: &mut Vec<Deduction>,
    applied: &mut BTreeSet<String>,
) {
    if decided.is_empty() {
        return;
    }
    for d in deductions.iter_mut() {
        let mut changed = false;
        d.lines.retain_mut(|line| {
            let Some((a, dec)) = decided.iter().find_map(|a| {
                let dec = a.decision.as_ref()?;
                line_matches(&a.target, &d.item, line).then_some((a, dec))
            }) else {
                return true;
            };
            match dec.outcome {
                AppealOutcome::Overturned => {
                    applied.insert(a.id.clone());
                    changed = true;
                    false
                }
                AppealOutcome::Adjusted => {
                    let p = dec.approved_points.unwrap_or(line.points).max(0.0);
                    if p < line.points {
                        line.points = p;
                        line.appeal = Some(a.id.clone());
                        applied.insert(a.id.clone());
                        changed = true;
                    }
                    true
                }
                AppealOutcome::Upheld => true,
            }
        });
        if changed {
            let cap = contract
                .scoring
                .deductions
                .iter()
                .find(|i| i.id == d.item)
                .and_then(|i| i.cap);
            d.uncapped = d.lines.iter().fold(0.0, |a, l| a + l.points);
            d.points = cap.map_or(d.uncapped, |c| d.uncapped.min(c));
        }
    }
    deductions.retain(|d| !d.lines.is_empty());
}

/// The spans in `[start, until)` where a system's state from the agents' evidence (as its
/// availability reads it) is up and one of its server probes says down, or the reverse.
fn disagreements(sc: &Scope<'_>, by_subject: &BySubject<'_>) -> Vec<Disagreement> {
    let (start, until) = (sc.start, sc.until);
    let mut out = Vec::new();
    if start >= until {
        return out;
    }
    for sys in &sc.contract.systems {
        if sys.server_probes.is_empty() {
            continue;
        }
        let subjects: Vec<&Subject> = {
            let mut v: Vec<&Subject> = sc
                .ev
                .subjects
                .iter()
                .filter(|s| selects(sc.ev, sys, s))
                .collect();
            v.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
            v.dedup_by(|a, b| a.kind == b.kind && a.id == b.id);
            v
        };
        let (down, unknown) = system_states(sc.ev, sys, &subjects, by_subject, start, until);
        let agents_up = subtract(&subtract(&[(start, until)], &down), &unknown);
        for p in &sys.server_probes {
            let (rows, server_up, server_down) = server_probe_spans(sc.ev, &p.name, start, until);
            for (agents, server, spans) in [
                (State::Up, State::Down, intersect(&agents_up, &server_down)),
                (State::Down, State::Up, intersect(&down, &server_up)),
            ] {
                for (a, b) in spans {
                    let evidence = rows
                        .iter()
                        .filter(|r| r.state == server && r.start_ms < b && r.end_ms > a)
                        .map(|r| r.id.clone())
                        .collect();
                    out.push(Disagreement {
                        system: sys.id.clone(),
                        probe: p.name.clone(),
                        from_ms: a,
                        to_ms: b,
                        agents,
                        server,
                        minutes: round2(minutes(b - a)),
                        evidence,
                    });
                }
            }
        }
    }
    out.sort_by(|x, y| (&x.system, &x.probe, x.from_ms).cmp(&(&y.system, &y.probe, y.from_ms)));
    out
}

/// One server probe's intervals overlapping `[start, until)`, and its up and down spans there.
fn server_probe_spans<'e>(
    ev: &'e Evidence,
    probe: &str,
    start: i64,
    until: i64,
) -> (Vec<&'e ServerProbeInterval>, Spans, Spans) {
    let rows: Vec<&ServerProbeInterval> = ev
        .server_probes
        .iter()
        .filter(|r| r.probe == probe && r.end_ms > start && r.start_ms < until)
        .collect();
    let of = |st: State| -> Spans {
        normalize(
            rows.iter()
                .filter(|r| r.state == st)
                .map(|r| (r.start_ms.max(start), r.end_ms.min(until)))
                .collect(),
        )
    };
    let (up, down) = (of(State::Up), of(State::Down));
    (rows, up, down)
}

/// A system's (down, unknown) spans in `[start, until)` as its `availability_from` decides,
/// from the agents' spans and its server probes: `agents` as is; `server_probes` down while
/// any server probe is down, unknown while any has no result (and none is down); `both` down
/// while either side says down, unknown only while neither side has data.
fn decided_states(
    ev: &Evidence,
    sys: &System,
    agents: (Spans, Spans),
    start: i64,
    until: i64,
) -> (Spans, Spans) {
    if sys.availability_from == AvailabilityFrom::Agents || start >= until {
        return agents;
    }
    let mut server_down: Spans = Vec::new();
    let mut server_unknown: Spans = Vec::new();
    if sys.server_probes.is_empty() {
        server_unknown.push((start, until));
    }
    for p in &sys.server_probes {
        let (_, up, down) = server_probe_spans(ev, &p.name, start, until);
        let known = normalize(up.iter().chain(&down).copied().collect());
        server_unknown.extend(subtract(&[(start, until)], &known));
        server_down.extend(down);
    }
    let server_down = normalize(server_down);
    let server_unknown = subtract(&normalize(server_unknown), &server_down);
    match sys.availability_from {
        AvailabilityFrom::Agents => agents,
        AvailabilityFrom::ServerProbes => (server_down, server_unknown),
        AvailabilityFrom::Both => {
            let (agents_down, agents_unknown) = agents;
            let down = normalize(agents_down.into_iter().chain(server_down).collect());
            let unknown = subtract(&intersect(&agents_unknown, &server_unknown), &down);
            (down, unknown)
        }
    }
}

/// The ids of a system's server probe intervals in state down overlapping each outage run
/// (sorted, disjoint).
fn server_outage_evidence(ev: &Evidence, sys: &System, runs: &[(i64, i64)]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|&(a, b)| {
            let mut ids: Vec<String> = ev
                .server_probes
                .iter()
                .filter(|r| {
                    r.state == State::Down
                        && r.start_ms < b
                        && r.end_ms > a
                        && sys.server_probes.iter().any(|p| p.name == r.probe)
                })
                .map(|r| r.id.clone())
                .collect();
            ids.sort();
            ids.dedup();
            ids
        })
        .collect()
}

/// Why the result is provisional so far: years the calendar lacks, a period not yet over.
fn provisional_reasons(sc: &Scope<'_>) -> Vec<Reason> {
    let mut reasons = Vec::new();
    for y in sc.period.years() {
        if !sc.calendar.has_year(y) {
            reasons.push(Reason::CalendarYearMissing { year: y });
        }
    }
    if sc.as_of_ms < sc.period.end_ms {
        reasons.push(Reason::PeriodNotOver);
    }
    reasons
}

/// The assessed incidents not restored as of `as_of_ms`, in their order.
fn open_incidents(ev: &Evidence, incidents: &[IncidentClocks], as_of_ms: i64) -> Vec<String> {
    incidents
        .iter()
        .filter(|i| {
            ev.incidents
                .iter()
                .find(|r| r.id == i.incident)
                .is_some_and(|r| r.restored_ms.is_none_or(|t| t > as_of_ms))
        })
        .map(|i| i.incident.clone())
        .collect()
}

/// Index subjects' intervals.
fn intervals_by_subject(ev: &Evidence) -> BySubject<'_> {
    let mut by_subject: BySubject<'_> = BTreeMap::new();
    for iv in &ev.intervals {
        by_subject
            .entry((iv.kind, iv.subject.as_str()))
            .or_default()
            .push(iv);
    }
    for v in by_subject.values_mut() {
        v.sort_by(|a, b| (a.start_ms, a.end_ms, &a.id).cmp(&(b.start_ms, b.end_ms, &b.id)));
    }
    by_subject
}

/// Exclusions: which systems each applies to; and the approved spans per system.
fn exclusion_uses(sc: &Scope<'_>) -> (Vec<ExclusionUse>, ApprovedSpans) {
    let (contract, ev) = (sc.contract, sc.ev);
    let mut exclusions = Vec::new();
    let mut approved_by_system = ApprovedSpans::new();
    let mut sorted_ex: Vec<&Exclusion> = ev
        .exclusions
        .iter()
        .filter(|x| x.from_ms < sc.period.end_ms && x.to_ms > sc.start)
        .collect();
    sorted_ex.sort_by(|a, b| (a.from_ms, &a.id).cmp(&(b.from_ms, &b.id)));
    for x in sorted_ex {
        let systems: Vec<String> = contract
            .systems
            .iter()
            .filter(|s| {
                x.labels.is_empty()
                    || ev
                        .subjects
                        .iter()
                        .any(|sub| selects(ev, s, sub) && matches(&x.labels, &sub.labels))
            })
            .map(|s| s.id.clone())
            .collect();
        let counted = x.status == ExclusionStatus::Approved;
        if counted {
            for s in &systems {
                approved_by_system
                    .entry(s.clone())
                    .or_default()
                    .push((x.from_ms, x.to_ms));
            }
        }
        exclusions.push(ExclusionUse {
            exclusion: x.id.clone(),
            status: x.status,
            counted,
            filed_after_the_fact: x.requested_at_ms > x.from_ms,
            systems,
        });
    }
    (exclusions, approved_by_system)
}

/// The availability of one system, and whether its service window needed a year the calendar
/// lacks.
fn system_availability(
    sc: &Scope<'_>,
    sys: &System,
    by_subject: &BySubject<'_>,
    approved_by_system: &ApprovedSpans,
    applied: &mut BTreeSet<String>,
) -> (SystemAvailability, bool) {
    let (contract, calendar, period) = (sc.contract, sc.calendar, sc.period);
    let (start, until) = (sc.start, sc.until);
    // A validated contract names only windows and tiers it defines; a hand-built one that
    // does not is assessed 7x24 against a 100 % target rather than panicking.
    let window = contract
        .service_windows
        .get(&sys.window)
        .unwrap_or(&ServiceWindow::Always {});
    let fallback = AvailabilityObjective {
        target_percent: 100.0,
        min_outage: Default::default(),
        missing_data: MissingData::Excluded,
        min_coverage_percent: None,
    };
    let obj = contract.availability.get(&sys.tier).unwrap_or(&fallback);
    let (win, g1) = window_spans(contract, calendar, window, Some(&sys.id), start, until);
    let (full_win, g2) = window_spans(
        contract,
        calendar,
        window,
        Some(&sys.id),
        start,
        period.end_ms,
    );
    let subjects: Vec<&Subject> = {
        let mut v: Vec<&Subject> = sc
            .ev
            .subjects
            .iter()
            .filter(|s| selects(sc.ev, sys, s))
            .collect();
        v.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        v.dedup_by(|a, b| a.kind == b.kind && a.id == b.id);
        v
    };
    let agents = system_states(sc.ev, sys, &subjects, by_subject, start, until);
    let (down, unknown) = decided_states(sc.ev, sys, agents, start, until);
    // Outages as they happened; drop the short ones.
    let min = obj.min_outage.0;
    let (counted_down, short): (Spans, Spans) = down.iter().partition(|(s, e)| e - s >= min);
    let excl: Spans = normalize(approved_by_system.get(&sys.id).cloned().unwrap_or_default());
    let down_in_win = intersect(&counted_down, &win);
    let down_excluded = subtract(&down_in_win, &excl);
    let excluded_ms = total(&down_in_win) - total(&down_excluded);
    // Decided appeals about this system's outages: what they take out of the downtime.
    let mut appealed: Spans = Vec::new();
    let mut outage_appeal: BTreeMap<i64, String> = BTreeMap::new();
    for a in &sc.decided {
        let (AppealTarget::Outage { system, start_ms }, Some(dec)) = (&a.target, &a.decision)
        else {
            continue;
        };
        if *system != sys.id {
            continue;
        }
        let Some(&(s, e)) = counted_down.iter().find(|(s, _)| s == start_ms) else {
            continue;
        };
        let counted = subtract(&intersect(&[(s, e)], &win), &excl);
        let keep_ms = match dec.outcome {
            AppealOutcome::Overturned => 0,
            AppealOutcome::Adjusted => {
                let m = dec.approved_minutes.unwrap_or(f64::INFINITY).max(0.0);
                ((m * MINUTE).round() as i64).min(total(&counted))
            }
            AppealOutcome::Upheld => continue,
        };
        if keep_ms >= total(&counted) {
            continue;
        }
        // Keep the first `keep_ms` of the counted time, take out the rest.
        let mut left = keep_ms;
        for &(cs, ce) in &counted {
            let keep = left.min(ce - cs);
            left -= keep;
            if cs + keep < ce {
                appealed.push((cs + keep, ce));
            }
        }
        outage_appeal.insert(s, a.id.clone());
        applied.insert(a.id.clone());
    }
    let appealed = normalize(appealed);
    let down_counted = subtract(&down_excluded, &appealed);
    let appealed_ms = total(&down_excluded) - total(&down_counted);
    let excl_all = normalize(excl.iter().chain(&appealed).copied().collect());
    let missing = intersect(&unknown, &win);
    let missing_ms = total(&missing);
    let win_ms = total(&win);
    let (measured_ms, down_ms) = match obj.missing_data {
        MissingData::Excluded => (win_ms - missing_ms, total(&down_counted)),
        MissingData::AsUp => (win_ms, total(&down_counted)),
        MissingData::AsDown => (
            win_ms,
            total(&down_counted) + total(&subtract(&missing, &excl_all)),
        ),
    };
    let min_coverage = obj.coverage_floor();
    let coverage = (win_ms > 0).then(|| (win_ms - missing_ms) as f64 / win_ms as f64 * 100.0);
    let no_subject = match sys.availability_from {
        AvailabilityFrom::Agents => subjects.is_empty(),
        AvailabilityFrom::ServerProbes => sys.server_probes.is_empty(),
        AvailabilityFrom::Both => subjects.is_empty() && sys.server_probes.is_empty(),
    };
    let insufficient = no_subject || coverage.is_some_and(|c| c + 1e-9 < min_coverage);
    let actual = (measured_ms > 0 && !insufficient)
        .then(|| (measured_ms - down_ms) as f64 / measured_ms as f64 * 100.0);
    let met = !insufficient && actual.is_none_or(|a| a + 1e-9 >= obj.target_percent);
    let budget = (1.0 - obj.target_percent / 100.0) * minutes(total(&full_win));
    let agent_evidence = match sys.availability_from {
        AvailabilityFrom::ServerProbes => vec![Vec::new(); counted_down.len()],
        _ => outage_evidence(&subjects, by_subject, &counted_down),
    };
    let evidence: Vec<Vec<String>> = match sys.availability_from {
        AvailabilityFrom::Agents => agent_evidence,
        _ => agent_evidence
            .into_iter()
            .zip(server_outage_evidence(sc.ev, sys, &counted_down))
            .map(|(mut a, b)| {
                a.extend(b);
                a.sort();
                a.dedup();
                a
            })
            .collect(),
    };
    let outages = counted_down
        .iter()
        .zip(evidence)
        .map(|(&(s, e), evidence)| Outage {
            start_ms: s,
            end_ms: e,
            counted_minutes: minutes(total(&subtract(&intersect(&[(s, e)], &win), &excl_all))),
            evidence,
            appeal: outage_appeal.get(&s).cloned(),
        })
        .collect();
    let out = SystemAvailability {
        system: sys.id.clone(),
        name: sys.name.clone(),
        tier: sys.tier.clone(),
        target_percent: obj.target_percent,
        period_minutes: minutes(period.end_ms - start),
        window_minutes: minutes(win_ms),
        measured_minutes: minutes(measured_ms),
        downtime_minutes: minutes(down_ms),
        excluded_minutes: minutes(excluded_ms),
        appealed_minutes: minutes(appealed_ms),
        missing_minutes: minutes(missing_ms),
        ignored_short_minutes: minutes(total(&intersect(&short, &win))),
        actual_percent: actual,
        met,
        coverage_percent: coverage,
        min_coverage_percent: min_coverage,
        insufficient_evidence: insufficient,
        error_budget_left_minutes: ((budget - minutes(down_ms)) * 1e6).round() / 1e6,
        outages,
        subjects: subjects
            .iter()
            .map(|s| subject_key(s.kind, &s.id))
            .collect(),
        decided_by: sys.availability_from,
    };
    (out, g1 || g2)
}

/// Incident clocks of the incidents detected in the period, and whether any needed a year the
/// calendar lacks.
fn incident_results(sc: &Scope<'_>) -> (Vec<IncidentClocks>, bool) {
    let mut incidents: Vec<&Incident> = sc
        .ev
        .incidents
        .iter()
        .filter(|i| i.detected_ms >= sc.start && i.detected_ms < sc.period.end_ms)
        .collect();
    incidents.sort_by(|a, b| (a.detected_ms, &a.id).cmp(&(b.detected_ms, &b.id)));
    let mut guessed_any = false;
    let mut incident_out = Vec::new();
    for inc in incidents {
        let (r, g) = incident_clocks(sc.contract, sc.calendar, inc, sc.as_of_ms);
        guessed_any |= g;
        incident_out.push(r);
    }
    (incident_out, guessed_any)
}

/// Manual events in the period.
fn period_events<'e>(sc: &Scope<'e>) -> Vec<&'e ManualEvent> {
    let mut events: Vec<&ManualEvent> = sc
        .ev
        .events
        .iter()
        .filter(|e| e.at_ms >= sc.start && e.at_ms < sc.until)
        .collect();
    events.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
    events
}

/// The bonus items the events hit, each within its cap.
fn bonuses(contract: &Contract, events: &[&ManualEvent]) -> Vec<Bonus> {
    let mut bonuses = Vec::new();
    for b in &contract.scoring.bonuses {
        let hits: Vec<String> = events
            .iter()
            .filter(|e| e.category == b.category)
            .map(|e| e.id.clone())
            .collect();
        if hits.is_empty() {
            continue;
        }
        let mut pts = hits.len() as f64 * b.points;
        if let Some(c) = b.cap {
            pts = pts.min(c);
        }
        bonuses.push(Bonus {
            item: b.id.clone(),
            name: b.name.clone(),
            name_en: b.name_en.clone(),
            points: pts,
            evidence: hits,
        });
    }
    bonuses
}

/// The veto items the events hit.
fn vetoes(contract: &Contract, events: &[&ManualEvent]) -> Vec<VetoHit> {
    contract
        .scoring
        .vetoes
        .iter()
        .filter_map(|v| {
            let hits: Vec<String> = events
                .iter()
                .filter(|e| e.category == v.category)
                .map(|e| e.id.clone())
                .collect();
            (!hits.is_empty()).then(|| VetoHit {
                item: v.id.clone(),
                name: v.name.clone(),
                name_en: v.name_en.clone(),
                evidence: hits,
            })
        })
        .collect()
}

/// The effect on payment, when the contract states a fee.
fn payment_effect(
    contract: &Contract,
    period: &Period,
    grade: Option<&Grade>,
    score: f64,
) -> Option<PaymentEffect> {
    contract.fee.as_ref().map(|fee| {
        let days_in_year = if NaiveDate::from_ymd_opt(period.start.year(), 2, 29).is_some() {
            366.0
        } else {
            365.0
        };
        let per_year = match fee.per {
            FeePer::Year => fee.amount,
            FeePer::Quarter => fee.amount * 4.0,
            FeePer::Month => fee.amount * 12.0,
        };
        let period_fee = round2(per_year * period.days() as f64 / days_in_year);
        let period_fee = match (fee.per, period.days()) {
            (FeePer::Month, 28..=31)
                if period.start.day() == 1
                    && period.end.succ_opt().is_some_and(|d| d.day() == 1) =>
            {
                fee.amount
            }
            _ => period_fee,
        };
        let percent = match contract.payment {
            Payment::PerGrade => grade.and_then(|g| g.payment_percent).unwrap_or(100.0),
            Payment::Proportional => score.min(100.0),
        };
        let payable = round2(period_fee * percent / 100.0);
        PaymentEffect {
            period_fee,
            percent,
            payable,
            withheld: round2(period_fee - payable),
            currency: fee.currency.clone(),
        }
    })
}

/// Notes on the result: a period outside the contract, systems without evidence or below
/// their coverage minimum, incidents with an unknown level or no system.
fn notes(
    sc: &Scope<'_>,
    systems_out: &[SystemAvailability],
    incident_out: &[IncidentClocks],
) -> Vec<Note> {
    let (contract, period) = (sc.contract, sc.period);
    let mut notes = Vec::new();
    if period.start < contract.period.start || period.end > contract.period.end {
        notes.push(Note::PeriodOutsideContract {
            period: period.label.clone(),
            start: period.start,
            end: period.end,
            contract_start: contract.period.start,
            contract_end: contract.period.end,
        });
    }
    for (sys, out) in contract.systems.iter().zip(systems_out) {
        if out.subjects.is_empty() {
            notes.push(Note::NoSubjects {
                system: out.system.clone(),
                name: out.name.clone(),
                missing_data: contract
                    .availability
                    .get(&sys.tier)
                    .map_or(MissingData::Excluded, |o| o.missing_data),
            });
        } else if out.insufficient_evidence {
            notes.push(Note::InsufficientEvidence {
                system: out.system.clone(),
                name: out.name.clone(),
                coverage_percent: out.coverage_percent,
                min_coverage_percent: out.min_coverage_percent,
            });
        }
    }
    for i in incident_out {
        if !i.level_known {
            notes.push(Note::UnknownIncidentLevel {
                incident: i.incident.clone(),
                level: i.level.clone(),
            });
        }
        if i.systems.is_empty() {
            notes.push(Note::IncidentWithoutSystem {
                incident: i.incident.clone(),
            });
        }
    }
    notes
}

/// The `n`th working day after `date` (of the following days).
fn nth_working_day_after(calendar: &Calendar, date: NaiveDate, n: u32) -> NaiveDate {
    let mut d = date;
    let mut left = n;
    while left > 0 {
        d = d + Days::new(1);
        if calendar.is_working_day(d).0 {
            left -= 1;
        }
    }
    d
}

/// Down and unknown spans of a system within `[from, to)`. A subject counts only while it is a
/// member of the system ([`member_spans`]); outside its membership it is neither up, down nor
/// unknown for this system.
fn system_states(
    ev: &Evidence,
    sys: &System,
    subjects: &[&Subject],
    by_subject: &BTreeMap<(SubjectKind, &str), Vec<&StatusInterval>>,
    from: i64,
    to: i64,
) -> (Spans, Spans) {
    if from >= to {
        return (Vec::new(), Vec::new());
    }
    let use_hosts = matches!(
        sys.down_when,
        DownWhen::AnyProbeOrAllHosts | DownWhen::AllHosts | DownWhen::AnySubject
    );
    let use_probes = matches!(
        sys.down_when,
        DownWhen::AnyProbeOrAllHosts | DownWhen::AnyProbe | DownWhen::AnySubject
    );
    let deciding: Vec<&Subject> = subjects
        .iter()
        .copied()
        .filter(|s| match s.kind {
            SubjectKind::Host => use_hosts,
            SubjectKind::Probe => use_probes,
        })
        .collect();
    if deciding.is_empty() {
        return (Vec::new(), vec![(from, to)]);
    }
    // Change events: (time, subject index, state; `None`: not a member then).
    let mut events: Vec<(i64, usize, Option<State>)> = Vec::new();
    for (i, s) in deciding.iter().enumerate() {
        // The subject's states tiling [from, to).
        let mut pieces: Vec<(i64, i64, State)> = Vec::new();
        let mut cursor = from;
        for iv in by_subject
            .get(&(s.kind, s.id.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let (a, b) = (iv.start_ms.max(from), iv.end_ms.min(to));
            if a >= b || b <= cursor {
                continue;
            }
            let a = a.max(cursor);
            if a > cursor {
                pieces.push((cursor, a, State::Unknown));
            }
            pieces.push((a, b, iv.state));
            cursor = b;
        }
        if cursor < to {
            pieces.push((cursor, to, State::Unknown));
        }
        match member_spans(ev, sys, s, from, to) {
            None => events.extend(pieces.iter().map(|&(a, _, st)| (a, i, Some(st)))),
            Some(member) => {
                events.push((from, i, None));
                for &(m_from, m_to) in &member {
                    for &(a, b, st) in &pieces {
                        let (a, b) = (a.max(m_from), b.min(m_to));
                        if a < b {
                            events.push((a, i, Some(st)));
                        }
                    }
                    events.push((m_to, i, None));
                }
            }
        }
    }
    // Stable: at one instant a later event (a membership's start) wins over an earlier one (the
    // previous membership's end).
    events.sort_by_key(|e| e.0);
    let mut state: Vec<Option<State>> = vec![None; deciding.len()];
    // counts[kind][state]
    let mut counts = [[0usize; 3]; 2];
    let idx = |st: State| match st {
        State::Up => 0,
        State::Down => 1,
        State::Unknown => 2,
    };
    let kidx = |k: SubjectKind| match k {
        SubjectKind::Host => 0,
        SubjectKind::Probe => 1,
    };
    let mut down = Vec::new();
    let mut unknown = Vec::new();
    let mut k = 0;
    while k < events.len() {
        let t = events[k].0;
        while k < events.len() && events[k].0 == t {
            let (_, i, st) = events[k];
            let kind = kidx(deciding[i].kind);
            if let Some(old) = state[i] {
                counts[kind][idx(old)] -= 1;
            }
            if let Some(new) = st {
                counts[kind][idx(new)] += 1;
            }
            state[i] = st;
            k += 1;
        }
        let next = if k < events.len() { events[k].0 } else { to };
        if next <= t {
            continue;
        }
        let st = system_state(sys.down_when, counts[0], counts[1]);
        match st {
            State::Down => down.push((t, next)),
            State::Unknown => unknown.push((t, next)),
            State::Up => {}
        }
    }
    (normalize(down), normalize(unknown))
}

/// A system's state from the states of the subjects its `down_when` rule looks at, given as
/// counts `[up, down, unknown]` of its hosts and of its probes. Shared by the assessment and the
/// console's live view, so both apply the contract's rule the same way.
pub fn system_state(down_when: DownWhen, hosts: [usize; 3], probes: [usize; 3]) -> State {
    let (h, p) = (hosts, probes);
    let n_hosts: usize = h.iter().sum();
    let host_state = || {
        if n_hosts == 0 {
            None
        } else if h[1] == n_hosts {
            Some(State::Down)
        } else if h[0] > 0 {
            Some(State::Up)
        } else {
            Some(State::Unknown)
        }
    };
    let probe_state = || {
        if p.iter().sum::<usize>() == 0 {
            None
        } else if p[1] > 0 {
            Some(State::Down)
        } else if p[2] > 0 {
            Some(State::Unknown)
        } else {
            Some(State::Up)
        }
    };
    let parts: Vec<State> = match down_when {
        DownWhen::AnyProbeOrAllHosts => [host_state(), probe_state()]
            .into_iter()
            .flatten()
            .collect(),
        DownWhen::AllHosts => host_state().into_iter().collect(),
        DownWhen::AnyProbe => probe_state().into_iter().collect(),
        DownWhen::AnySubject => vec![if h[1] + p[1] > 0 {
            State::Down
        } else if h[2] + p[2] > 0 {
            State::Unknown
        } else {
            State::Up
        }],
    };
    if parts.contains(&State::Down) {
        State::Down
    } else if parts.is_empty() || parts.contains(&State::Unknown) {
        State::Unknown
    } else {
        State::Up
    }
}

/// For each outage run (sorted, disjoint), the ids of the down intervals overlapping it.
fn outage_evidence(
    subjects: &[&Subject],
    by_subject: &BTreeMap<(SubjectKind, &str), Vec<&StatusInterval>>,
    runs: &[(i64, i64)],
) -> Vec<Vec<String>> {
    let mut out: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); runs.len()];
    for sub in subjects {
        for iv in by_subject
            .get(&(sub.kind, sub.id.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if iv.state != State::Down {
                continue;
            }
            let first = runs.partition_point(|r| r.1 <= iv.start_ms);
            for (k, r) in runs.iter().enumerate().skip(first) {
                if r.0 >= iv.end_ms {
                    break;
                }
                out[k].insert(iv.id.as_str());
            }
        }
    }
    out.into_iter()
        .map(|ids| ids.into_iter().map(str::to_string).collect())
        .collect()
}

fn incident_systems<'c>(contract: &'c Contract, inc: &Incident) -> Vec<&'c System> {
    if let Some(ids) = &inc.systems {
        return contract
            .systems
            .iter()
            .filter(|s| ids.contains(&s.id))
            .collect();
    }
    match &inc.system {
        Some(id) => contract.systems.iter().filter(|s| &s.id == id).collect(),
        None => contract
            .systems
            .iter()
            .filter(|s| {
                [&s.hosts, &s.probes]
                    .into_iter()
                    .flatten()
                    .any(|sel| !sel.is_empty() && matches(sel, &inc.labels))
            })
            .collect(),
    }
}

fn incident_clocks(
    contract: &Contract,
    calendar: &Calendar,
    inc: &Incident,
    as_of_ms: i64,
) -> (IncidentClocks, bool) {
    let systems = incident_systems(contract, inc);
    let level = contract.level(&inc.level);
    let mut out = IncidentClocks {
        incident: inc.id.clone(),
        level: level.map_or(inc.level.clone(), |l| l.id.clone()),
        level_known: level.is_some(),
        systems: systems.iter().map(|s| s.id.clone()).collect(),
        cause: inc.cause,
        detected_ms: inc.detected_ms,
        clocks: Vec::new(),
    };
    let Some(level) = level else {
        return (out, false);
    };
    let mut guessed = false;
    let pauses: Spans = normalize(
        inc.pauses
            .iter()
            .filter(|p| level.pause_states.contains(&p.state))
            .map(|p| (p.from_ms, p.to_ms))
            .collect(),
    );
    for (name, target, stop) in [
        ("response", level.response, inc.acknowledged_ms),
        ("on_site", level.on_site, inc.on_site_ms),
        ("restore", level.restore, inc.restored_ms),
    ] {
        let Some(target) = target else { continue };
        // A stop recorded after `as_of` has not happened yet as of then.
        let stop = stop.filter(|t| *t <= as_of_ms);
        let end = stop.unwrap_or(as_of_ms).max(inc.detected_ms);
        let win: Spans = match (level.window, systems.first()) {
            (ClockWindow::Service, Some(_)) => {
                let mut all = Vec::new();
                for s in &systems {
                    let w = contract
                        .service_windows
                        .get(&s.window)
                        .unwrap_or(&ServiceWindow::Always {});
                    let (sp, g) =
                        window_spans(contract, calendar, w, Some(&s.id), inc.detected_ms, end);
                    guessed |= g;
                    all.extend(sp);
                }
                normalize(all)
            }
            _ => {
                window_spans(
                    contract,
                    calendar,
                    &ServiceWindow::Always {},
                    None,
                    inc.detected_ms,
                    end,
                )
                .0
            }
        };
        let elapsed = total(&subtract(&win, &pauses));
        let late = (elapsed - target.0).max(0);
        let status = match (stop.is_some(), late > 0) {
            (true, false) => ClockStatus::Met,
            (true, true) => ClockStatus::Late,
            (false, false) => ClockStatus::Running,
            (false, true) => ClockStatus::Breached,
        };
        out.clocks.push(ClockResult {
            clock: name.to_string(),
            target_ms: target.0,
            elapsed_ms: elapsed,
            late_ms: late,
            status,
        });
    }
    (out, guessed)
}

/// Whether host `host` belonged to one of `systems` during some of the hour starting at `hour`
/// (always, when systems select by label).
/// The membership rows of hosts in `systems`, by host; `None`: no membership rows (systems
/// select by label), every host always a member. Indexed once per KPI: looking each resource
/// row's host up in every membership row made the engine quadratic (1.5 million rows × 6,000
/// membership rows took seconds).
fn host_memberships<'e>(
    ev: &'e Evidence,
    systems: &[&System],
) -> Option<BTreeMap<&'e str, Vec<&'e Membership>>> {
    ev.membership.as_ref().map(|rows| {
        let mut by_host: BTreeMap<&str, Vec<&Membership>> = BTreeMap::new();
        for m in rows {
            if m.kind == SubjectKind::Host && systems.iter().any(|s| s.id == m.system) {
                by_host.entry(m.subject.as_str()).or_default().push(m);
            }
        }
        by_host
    })
}

/// Whether `host` was a member of one of the systems during the hour starting at `hour`.
fn member_at(members: Option<&BTreeMap<&str, Vec<&Membership>>>, host: &str, hour: i64) -> bool {
    const HOUR_MS: i64 = 3_600_000;
    members.is_none_or(|by_host| {
        by_host.get(host).is_some_and(|rows| {
            rows.iter()
                .any(|m| m.from_ms < hour + HOUR_MS && m.to_ms.is_none_or(|to| hour < to))
        })
    })
}

fn resource_kpis(contract: &Contract, ev: &Evidence, from: i64, to: i64) -> Vec<KpiResult> {
    let mut out = Vec::new();
    for kpi in &contract.resource_kpis {
        let systems: Vec<&System> = contract
            .systems
            .iter()
            .filter(|s| kpi.systems.is_empty() || kpi.systems.contains(&s.id))
            .collect();
        let hosts: BTreeSet<&str> = ev
            .subjects
            .iter()
            .filter(|s| {
                s.kind == SubjectKind::Host && systems.iter().any(|sys| selects(ev, sys, s))
            })
            .map(|s| s.id.as_str())
            .collect();
        let members = host_memberships(ev, &systems);
        let mut rows: BTreeMap<&str, Vec<&ResourceHour>> = BTreeMap::new();
        for r in &ev.resources {
            if r.metric == kpi.metric
                && r.hour_ms >= from
                && r.hour_ms < to
                && hosts.contains(r.host.as_str())
                && member_at(members.as_ref(), &r.host, r.hour_ms)
            {
                rows.entry(r.host.as_str()).or_default().push(r);
            }
        }
        for host in hosts {
            let mut rs = rows.remove(host).unwrap_or_default();
            rs.sort_by(|a, b| (a.hour_ms, &a.id).cmp(&(b.hour_ms, &b.id)));
            rs.retain(|r| r.count > 0);
            let (value, evidence) = match kpi.aggregate {
                _ if rs.is_empty() => (None, Vec::new()),
                KpiAggregate::Max => {
                    let m = rs
                        .iter()
                        .max_by(|a, b| a.max.total_cmp(&b.max))
                        .unwrap_or(&rs[0]);
                    (Some(m.max), vec![m.id.clone()])
                }
                KpiAggregate::Mean => {
                    let sum: f64 = rs.iter().fold(0.0, |a, r| a + r.sum);
                    let n: u64 = rs.iter().map(|r| r.count).sum();
                    (Some(sum / n as f64), Vec::new())
                }
                KpiAggregate::P95HourlyMean => {
                    let mut means: Vec<(f64, &str)> = rs
                        .iter()
                        .map(|r| (r.sum / r.count as f64, r.id.as_str()))
                        .collect();
                    means.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
                    // Nearest rank: ceil(0.95 × n).
                    let rank = (means.len() * 95).div_ceil(100).max(1);
                    let (v, id) = means[rank - 1];
                    (Some(v), vec![id.to_string()])
                }
            };
            out.push(KpiResult {
                kpi: kpi.id.clone(),
                host: host.to_string(),
                value,
                below: kpi.below,
                breached: value.is_some_and(|v| v >= kpi.below),
                evidence,
            });
        }
    }
    out
}

/// The inspections `contract` owes in `period`, in schedule order (daily and weekly ones at their
/// times, before-holiday ones as a window ending when the holiday starts). The server's
/// inspection runner and [`assess`] both use this, so what is run is what is scored.
pub fn inspection_schedule(
    contract: &Contract,
    calendar: &Calendar,
    period: &Period,
) -> Vec<InspectionDue> {
    let Some(ins) = &contract.inspections else {
        return Vec::new();
    };
    let tz = contract.time_zone;
    let grace = ins.grace.0;
    let mut owed: Vec<InspectionDue> = Vec::new();
    for date in period.dates() {
        let working = calendar.is_working_day(date).0;
        if ins.daily_on == InspectionDays::EveryDay || working {
            for t in &ins.daily {
                let at = local_ms(date, t.0, tz);
                owed.push(InspectionDue {
                    kind: InspectionKind::Daily,
                    scheduled_ms: at,
                    deadline_ms: at + grace,
                    record: None,
                });
            }
        }
        if ins.weekly.is_some_and(|d| d.weekday() == date.weekday()) && working {
            let at = local_ms(date, ins.weekly_at.0, tz);
            owed.push(InspectionDue {
                kind: InspectionKind::Weekly,
                scheduled_ms: at,
                deadline_ms: at + grace,
                record: None,
            });
        }
    }
    if let Some(n) = ins.before_holiday_working_days.filter(|n| *n > 0) {
        let mut starts: Vec<NaiveDate> = calendar.holidays().map(|h| h.from).collect();
        starts.sort();
        starts.dedup();
        for h in starts {
            // The n working days before the holiday.
            let mut d = h;
            let mut first = h;
            let mut left = n;
            for _ in 0..60 {
                if left == 0 {
                    break;
                }
                d = d.pred_opt().unwrap_or(d);
                if calendar.is_working_day(d).0 {
                    first = d;
                    left -= 1;
                }
            }
            if h > period.start && h <= period.end + Days::new(1) && first >= period.start {
                owed.push(InspectionDue {
                    kind: InspectionKind::BeforeHoliday,
                    scheduled_ms: local_midnight_ms(first, tz),
                    deadline_ms: local_midnight_ms(h, tz),
                    record: None,
                });
            }
        }
    }
    owed.sort_by_key(|d| (d.scheduled_ms, d.deadline_ms));
    owed
}

fn inspection_summary(
    contract: &Contract,
    calendar: &Calendar,
    ev: &Evidence,
    period: &Period,
    as_of_ms: i64,
) -> InspectionSummary {
    let mut summary = InspectionSummary::default();
    for mut due in inspection_schedule(contract, calendar, period) {
        if due.deadline_ms > as_of_ms {
            continue;
        }
        if ev
            .inspections_since_ms
            .is_some_and(|since| due.scheduled_ms < since)
        {
            summary.not_recorded += 1;
            continue;
        }
        summary.due += 1;
        let rec = ev
            .inspections
            .iter()
            .filter(|r| r.kind == due.kind)
            .find(|r| {
                let Some(done) = r.done_ms else { return false };
                match due.kind {
                    InspectionKind::BeforeHoliday => {
                        done >= due.scheduled_ms && done < due.deadline_ms
                    }
                    _ => r.scheduled_ms == due.scheduled_ms && done <= due.deadline_ms,
                }
            });
        match rec {
            Some(r) => {
                due.record = Some(r.id.clone());
                summary.done += 1;
            }
            None => summary.missed.push(due),
        }
    }
    summary
}

fn deductions(
    contract: &Contract,
    systems: &[SystemAvailability],
    incidents: &[IncidentClocks],
    resources: &[KpiResult],
    inspections: &InspectionSummary,
    events: &[&ManualEvent],
) -> Vec<Deduction> {
    let mut out = Vec::new();
    for item in &contract.scoring.deductions {
        let mut lines = Vec::new();
        match item.kind {
            DeductionKind::AvailabilityShort => {
                let step = item.per_pp.unwrap_or(1.0);
                for s in systems {
                    let Some(actual) = s.actual_percent else {
                        continue;
                    };
                    let short = s.target_percent - actual;
                    if s.met || short <= 0.0 {
                        continue;
                    }
                    let steps = ((short / step) - 1e-9).ceil().max(1.0);
                    let points = steps * item.points;
                    let mut evidence: Vec<String> = s
                        .outages
                        .iter()
                        .flat_map(|o| o.evidence.iter().cloned())
                        .collect();
                    evidence.sort();
                    evidence.dedup();
                    let detail = LineDetail::AvailabilityShort {
                        actual_percent: actual,
                        target_percent: s.target_percent,
                        short_pp: short,
                        steps,
                        step_pp: step,
                        points: item.points,
                    };
                    lines.push(DeductionLine {
                        subject: s.system.clone(),
                        arithmetic: detail.to_string(),
                        detail,
                        points,
                        evidence,
                        appeal: None,
                    });
                }
            }
            DeductionKind::ResponseLate
            | DeductionKind::OnSiteLate
            | DeductionKind::RestoreLate => {
                let clock = match item.kind {
                    DeductionKind::ResponseLate => "response",
                    DeductionKind::OnSiteLate => "on_site",
                    _ => "restore",
                };
                for inc in incidents {
                    // Items may name levels by id or alias; `inc.level` is the id.
                    if !item.levels.is_empty()
                        && !item
                            .levels
                            .iter()
                            .any(|l| contract.level(l).is_some_and(|lv| lv.id == inc.level))
                    {
                        continue;
                    }
                    if !item.causes.is_empty() && !item.causes.contains(&inc.cause) {
                        continue;
                    }
                    let Some(c) = inc.clocks.iter().find(|c| c.clock == clock) else {
                        continue;
                    };
                    if c.late_ms <= 0 {
                        continue;
                    }
                    let units = item
                        .per_minutes
                        .map(|m| (c.late_ms as f64 / (f64::from(m) * MINUTE)).ceil());
                    let points = units.map_or(item.points, |u| u * item.points);
                    let detail = LineDetail::ClockLate {
                        clock: clock.to_string(),
                        late_minutes: c.late_ms as f64 / MINUTE,
                        status: c.status,
                        units,
                        per_minutes: item.per_minutes,
                        points: item.points,
                    };
                    lines.push(DeductionLine {
                        subject: inc.incident.clone(),
                        arithmetic: detail.to_string(),
                        detail,
                        points,
                        evidence: vec![inc.incident.clone()],
                        appeal: None,
                    });
                }
            }
            DeductionKind::InspectionMissed => {
                for m in &inspections.missed {
                    let detail = LineDetail::InspectionMissed {
                        kind: m.kind,
                        scheduled_ms: m.scheduled_ms,
                        points: item.points,
                    };
                    lines.push(DeductionLine {
                        subject: format!("{:?}@{}", m.kind, m.scheduled_ms),
                        arithmetic: detail.to_string(),
                        detail,
                        points: item.points,
                        evidence: Vec::new(),
                        appeal: None,
                    });
                }
            }
            DeductionKind::ResourceBreach => {
                for r in resources {
                    if !r.breached || (!item.kpis.is_empty() && !item.kpis.contains(&r.kpi)) {
                        continue;
                    }
                    let detail = LineDetail::ResourceBreach {
                        value: r.value.unwrap_or_default(),
                        below: r.below,
                        points: item.points,
                    };
                    lines.push(DeductionLine {
                        subject: format!("{}@{}", r.kpi, r.host),
                        arithmetic: detail.to_string(),
                        detail,
                        points: item.points,
                        evidence: r.evidence.clone(),
                        appeal: None,
                    });
                }
            }
            DeductionKind::Manual => {
                for e in events {
                    if Some(&e.category) != item.category.as_ref() {
                        continue;
                    }
                    let detail = LineDetail::Manual {
                        evidence: e.evidence.clone(),
                        points: item.points,
                    };
                    lines.push(DeductionLine {
                        subject: e.id.clone(),
                        arithmetic: detail.to_string(),
                        detail,
                        points: item.points,
                        evidence: vec![e.id.clone()],
                        appeal: None,
                    });
                }
            }
        }
        if lines.is_empty() {
            continue;
        }
        let uncapped: f64 = lines.iter().fold(0.0, |a, l| a + l.points);
        let points = item.cap.map_or(uncapped, |c| uncapped.min(c));
        out.push(Deduction {
            item: item.id.clone(),
            name: item.name.clone(),
            name_en: item.name_en.clone(),
            uncapped,
            points,
            lines,
        });
    }
    out
}
