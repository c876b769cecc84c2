//! The evidence an assessment is computed from: plain rows the server fills from its store.
//! Every row carries a stable `id` (e.g. the store's primary key, prefixed by its table) that
//! deductions cite, so a reader can find the row behind every figure.
//!
//! All times are UTC milliseconds; spans are half-open `[start, end)`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::contract::Cause;

/// Whether a subject is a host (agent) or a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A host reported by an agent.
    Host,
    /// A probe (http, tcp, dns, process check).
    Probe,
}

/// A host or probe and its labels; systems select subjects by these labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Host or probe.
    pub kind: SubjectKind,
    /// Host id or probe id, unique per kind.
    pub id: String,
    /// Labels (for a host: its inventory labels; for a probe: its labels).
    pub labels: BTreeMap<String, String>,
}

/// Up, down, or no data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Working.
    Up,
    /// Failing.
    Down,
    /// No data (missed batches, agent gone): neither up nor down.
    Unknown,
}

/// One status interval of a subject. Time a subject has no interval for is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInterval {
    /// Stable evidence id.
    pub id: String,
    /// Host or probe.
    pub kind: SubjectKind,
    /// The subject's id.
    pub subject: String,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End, UTC ms (exclusive).
    pub end_ms: i64,
    /// State during the interval.
    pub state: State,
}

/// A span during which an incident's clocks may be paused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Start, UTC ms.
    pub from_ms: i64,
    /// End, UTC ms.
    pub to_ms: i64,
    /// The reason (state); only the level's `pause_states` stop its clocks.
    pub state: String,
}

/// An incident (故障) with the times that decide its clocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable evidence id.
    pub id: String,
    /// The affected system's id, when known.
    pub system: Option<String>,
    /// The affected systems as decided from membership (the systems the host or probe the
    /// incident concerns belonged to when it was detected); when given, `system` and `labels`
    /// are not consulted, and an empty list means a subject of no system of the contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systems: Option<Vec<String>>,
    /// Labels (e.g. the alert's); used to find the system when `system` and `systems` are
    /// absent: a system whose host or probe selector is contained in these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Level, by id or alias (`P1`, `一级`).
    pub level: String,
    /// When it was detected (the clocks start).
    pub detected_ms: i64,
    /// When it was acknowledged (response).
    pub acknowledged_ms: Option<i64>,
    /// When staff were on site.
    pub on_site_ms: Option<i64>,
    /// When service was restored.
    pub restored_ms: Option<i64>,
    /// Pauses.
    #[serde(default)]
    pub pauses: Vec<Pause>,
    /// Whose fault it was.
    pub cause: Cause,
}

/// Why downtime is excluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionKind {
    /// Planned maintenance.
    Maintenance,
    /// Force majeure.
    ForceMajeure,
    /// Caused by the buyer or a third party.
    BuyerCaused,
}

/// Review status of an exclusion request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionStatus {
    /// Approved by the buyer: counts.
    Approved,
    /// Rejected: does not count.
    Rejected,
    /// Not reviewed yet: does not count.
    Pending,
}

/// A request to exclude a span from availability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    /// Stable evidence id.
    pub id: String,
    /// Why.
    pub kind: ExclusionKind,
    /// Scope: applies to systems that select at least one subject carrying all these labels;
    /// empty: every system.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Start, UTC ms.
    pub from_ms: i64,
    /// End, UTC ms.
    pub to_ms: i64,
    /// Review status.
    pub status: ExclusionStatus,
    /// When it was requested; after `from_ms` it is flagged as filed after the fact.
    pub requested_at_ms: i64,
    /// The reason given.
    #[serde(default)]
    pub reason: String,
}

/// Which inspection obligation a record answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InspectionKind {
    /// A daily inspection.
    Daily,
    /// The weekly inspection.
    Weekly,
    /// The inspection before a holiday.
    BeforeHoliday,
}

/// An inspection (巡检) record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionRecord {
    /// Stable evidence id.
    pub id: String,
    /// Which obligation.
    pub kind: InspectionKind,
    /// The scheduled time it answers (UTC ms).
    pub scheduled_ms: i64,
    /// When it was done; `None`: not done.
    pub done_ms: Option<i64>,
    /// Result summary (e.g. `ok`, `3 findings`).
    #[serde(default)]
    pub result: String,
}

/// One hourly rollup of one metric of one host, as the server stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceHour {
    /// Stable evidence id.
    pub id: String,
    /// Host id.
    pub host: String,
    /// Metric name.
    pub metric: String,
    /// Start of the hour, UTC ms.
    pub hour_ms: i64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Sum of samples.
    pub sum: f64,
    /// Number of samples.
    pub count: u64,
    /// Last sample.
    pub last: f64,
}

/// A manual event: a deduction, bonus or veto cause recorded by a person (e.g. 通报 by an
/// authority, a late report, help outside the contract), with its evidence text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualEvent {
    /// Stable evidence id.
    pub id: String,
    /// Category, matched against deduction / bonus / veto items.
    pub category: String,
    /// When it happened, UTC ms.
    pub at_ms: i64,
    /// Evidence text (document number, description).
    #[serde(default)]
    pub evidence: String,
}

/// Everything an assessment reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Hosts and probes.
    pub subjects: Vec<Subject>,
    /// Status intervals.
    pub intervals: Vec<StatusInterval>,
    /// Incidents.
    pub incidents: Vec<Incident>,
    /// Exclusion requests (all statuses).
    pub exclusions: Vec<Exclusion>,
    /// Inspection records.
    pub inspections: Vec<InspectionRecord>,
    /// Hourly resource rollups.
    pub resources: Vec<ResourceHour>,
    /// Manual events.
    pub events: Vec<ManualEvent>,
    /// When inspection record-keeping began (the inspection runner's first run for this
    /// contract); inspections scheduled earlier are not assessed (neither done nor missed) and
    /// the assessment says so. `None`: every scheduled inspection in the period is assessed.
    #[serde(default)]
    pub inspections_since_ms: Option<i64>,
    /// Which system each subject belonged to and when, as the office decided it on the server.
    /// `Some`: only these rows place a subject in a system, each from its `from_ms` to its
    /// `to_ms` (the contract's label selectors are not consulted); `None`: systems select
    /// subjects by label, for the whole period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<Vec<Membership>>,
    /// Requests to change an incident's record: clocks stamped earlier than their recording
    /// and level downgrades, with their review. The incident rows already hold what counts
    /// (the claimed value once approved, the recorded one until then); these rows say who
    /// asked and who approved, for the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incident_requests: Vec<IncidentRequest>,
    /// Appeals (申诉) against the period's draft and their review (复核). A decision counts
    /// from its `decided_ms` on: an assessment as of an earlier instant does not apply it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub appeals: Vec<Appeal>,
    /// Status intervals of the contract's `server_probes`: what the server observed itself
    /// (source `server`), apart from the agents' evidence. Compared with the agents' view of
    /// each system as [`Disagreement`](crate::assess::Disagreement)s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_probes: Vec<ServerProbeInterval>,
    /// `membership` indexed by system and subject, built on first use; not data (never
    /// serialized, equal to any other, empty in a clone).
    #[doc(hidden)]
    #[serde(skip)]
    pub membership_index: MembershipIndex,
}

/// Row numbers of [`Evidence::membership`] by system id, then subject id. Looking a subject up
/// in every membership row made availability and resource KPIs quadratic (6,000 subjects ×
/// 6,000 rows per system).
/// Built for the rows it was built from (their address and count): rows replaced or added
/// later are looked up by scanning them, never through a stale index.
#[derive(Default)]
pub struct MembershipIndex(std::sync::OnceLock<IndexOf>);

/// An index and the rows it indexes.
struct IndexOf {
    rows: (usize, usize),
    by: HashMap<String, HashMap<String, Vec<usize>>>,
}

impl Clone for MembershipIndex {
    fn clone(&self) -> Self {
        MembershipIndex::default()
    }
}

impl PartialEq for MembershipIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for MembershipIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MembershipIndex")
    }
}

impl Evidence {
    /// The membership rows placing subject `kind`/`subject` in `system`, in their order;
    /// empty without membership rows.
    pub fn membership_of(
        &self,
        system: &str,
        kind: SubjectKind,
        subject: &str,
    ) -> Vec<&Membership> {
        let rows = self.membership.as_deref().unwrap_or_default();
        let key = (rows.as_ptr() as usize, rows.len());
        let index = self.membership_index.0.get_or_init(|| {
            let mut by: HashMap<String, HashMap<String, Vec<usize>>> = HashMap::new();
            for (i, m) in rows.iter().enumerate() {
                by.entry(m.system.clone())
                    .or_default()
                    .entry(m.subject.clone())
                    .or_default()
                    .push(i);
            }
            IndexOf { rows: key, by }
        });
        let of = |m: &&Membership| m.kind == kind;
        if index.rows == key {
            index
                .by
                .get(system)
                .and_then(|by| by.get(subject))
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|&i| &rows[i])
                .filter(of)
                .collect()
        } else {
            rows.iter()
                .filter(|m| m.system == system && m.subject == subject)
                .filter(of)
                .collect()
        }
    }
}

/// What an [`Appeal`] contests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AppealTarget {
    /// A deduction line: the contract's deduction item id and the line's subject.
    Deduction {
        /// Deduction item id.
        item: String,
        /// The line's subject (system, incident id, event id, ...).
        subject: String,
    },
    /// A system's outage, by its start as it happened.
    Outage {
        /// System id.
        system: String,
        /// The outage's start, UTC ms.
        start_ms: i64,
    },
    /// An incident's clock (`response`, `on_site`, `restore`): every deduction line it caused.
    IncidentClock {
        /// The incident's evidence id.
        incident: String,
        /// The clock.
        clock: String,
    },
    /// A missed inspection.
    Inspection {
        /// Which obligation.
        inspection: InspectionKind,
        /// The scheduled time, UTC ms.
        scheduled_ms: i64,
    },
}

/// How the reviewer decided an appeal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppealOutcome {
    /// The deduction stands (维持).
    Upheld,
    /// The deduction is withdrawn (撤销): the line, or the outage's downtime, no longer counts.
    Overturned,
    /// The deduction is changed (调整): a line counts `approved_points`, an outage
    /// `approved_minutes` of downtime.
    Adjusted,
}

/// The review (复核) of an appeal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppealDecision {
    /// The outcome.
    pub outcome: AppealOutcome,
    /// For an adjusted deduction line, incident clock or inspection: the points each line
    /// counts now (never more than before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_points: Option<f64>,
    /// For an adjusted outage: the minutes of downtime it counts now (its first minutes in
    /// the service window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_minutes: Option<f64>,
    /// The reviewer.
    pub decided_by: String,
    /// When, UTC ms.
    pub decided_ms: i64,
    /// The reviewer's reason.
    pub reason: String,
}

/// An appeal (申诉) by the vendor against a deduction of the period's draft, with its review.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Appeal {
    /// Stable evidence id (`appeal:<id>`).
    pub id: String,
    /// What is contested.
    pub target: AppealTarget,
    /// Who filed it.
    pub filed_by: String,
    /// When, UTC ms.
    pub filed_ms: i64,
    /// The appellant's reason.
    pub reason: String,
    /// The attachments, as `name sha256-hex`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    /// The review, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<AppealDecision>,
}

/// One status interval of a server probe (a contract's `server_probes` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerProbeInterval {
    /// Stable evidence id (`interval:server_probe:<row>`).
    pub id: String,
    /// The probe's name in the contract.
    pub probe: String,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End, UTC ms (exclusive).
    pub end_ms: i64,
    /// Up or down.
    pub state: State,
}

/// What an [`IncidentRequest`] asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentRequestKind {
    /// A clock stamped earlier than its recording (by more than the tolerance).
    Backdate,
    /// A less severe level.
    Downgrade,
}

/// Review status of an [`IncidentRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Not reviewed yet: the recorded time (or the old level) counts.
    Pending,
    /// Approved: the claimed time (or the new level) counts.
    Approved,
    /// Rejected: the recorded time (or the old level) counts.
    Rejected,
}

/// A request to backdate an incident clock or downgrade its level, and its review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRequest {
    /// Stable evidence id (`incident_request:<id>`).
    pub id: String,
    /// The incident's evidence id ([`Incident::id`]).
    pub incident: String,
    /// Backdate or downgrade.
    pub kind: IncidentRequestKind,
    /// The clock (`notified`, `ack`, `onsite`, `restored`) of a backdate.
    #[serde(default)]
    pub clock: Option<String>,
    /// When the request was recorded, UTC ms (for a backdate, the clock's recorded time).
    pub recorded_ms: i64,
    /// The earlier time a backdate claims, UTC ms.
    #[serde(default)]
    pub claimed_ms: Option<i64>,
    /// A downgrade's level before and requested (contract level ids).
    #[serde(default)]
    pub level_from: Option<String>,
    /// The level a downgrade asks for.
    #[serde(default)]
    pub level_to: Option<String>,
    /// Who asked.
    pub requested_by: String,
    /// The reason given.
    #[serde(default)]
    pub reason: String,
    /// Review status.
    pub status: RequestStatus,
    /// Who reviewed it.
    #[serde(default)]
    pub reviewed_by: Option<String>,
    /// When it was reviewed, UTC ms.
    #[serde(default)]
    pub reviewed_ms: Option<i64>,
}

/// A subject's membership in a system over `[from_ms, to_ms)` (`to_ms` `None`: still a member).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The system's id.
    pub system: String,
    /// Host or probe.
    pub kind: SubjectKind,
    /// The subject's id.
    pub subject: String,
    /// Member from (UTC ms).
    pub from_ms: i64,
    /// Member until (UTC ms, exclusive); `None`: open.
    pub to_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, kind: SubjectKind, subject: &str, from_ms: i64) -> Membership {
        Membership {
            system: system.into(),
            kind,
            subject: subject.into(),
            from_ms,
            to_ms: None,
        }
    }

    #[test]
    fn membership_lookups_follow_the_rows_even_when_they_are_replaced() {
        let mut ev = Evidence {
            membership: Some(vec![
                row("web", SubjectKind::Host, "h1", 1),
                row("web", SubjectKind::Probe, "h1", 2),
                row("db", SubjectKind::Host, "h1", 3),
                row("web", SubjectKind::Host, "h1", 4),
            ]),
            ..Evidence::default()
        };
        let from = |ev: &Evidence, s: &str, k, id: &str| -> Vec<i64> {
            ev.membership_of(s, k, id)
                .iter()
                .map(|m| m.from_ms)
                .collect()
        };
        assert_eq!(from(&ev, "web", SubjectKind::Host, "h1"), [1, 4]);
        assert_eq!(from(&ev, "web", SubjectKind::Probe, "h1"), [2]);
        assert!(from(&ev, "web", SubjectKind::Host, "h2").is_empty());
        // Rows replaced after the index was built: answered from the new rows.
        ev.membership = Some(vec![row("web", SubjectKind::Host, "h2", 5)]);
        assert_eq!(from(&ev, "web", SubjectKind::Host, "h2"), [5]);
        assert!(from(&ev, "web", SubjectKind::Host, "h1").is_empty());
        // A clone starts without an index and answers the same.
        let c = ev.clone();
        assert_eq!(c, ev);
        assert_eq!(from(&c, "web", SubjectKind::Host, "h2"), [5]);
    }
}
