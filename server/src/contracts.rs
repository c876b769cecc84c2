//! O&M contracts in the server: loading and validating contract files, gathering the evidence
//! the assessment engine (`yunwei_sla::assess`, pure) needs from the store, the contract API
//! (list, live status, full assessment of a period), and the inspection runner (巡检) that runs
//! each contract's checklist at its scheduled times and stores the result as evidence.
//!
//! Evidence ids name their source row so every figure can be traced: `interval:host:<row>`,
//! `interval:probe:<row>`, `inspection:<row>`, `rollup:<metric>:<host>:<hour_ms>`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::Datelike;
use serde_json::{Value, json};
use yunwei_rules::promql::{self, Options, Value as PromValue};
use yunwei_sla::{
    assess::{
        self, Assessment, Evidence, Exclusion, ExclusionKind, ExclusionStatus, Incident,
        IncidentRequest, IncidentRequestKind, InspectionKind, InspectionRecord, ManualEvent,
        Period, RequestStatus, ResourceHour, ServerProbeInterval, StatusInterval, Subject,
        SubjectKind,
    },
    calendar::Calendar,
    contract::{Cause, Contract, parse_contract},
};

use crate::{
    config::ServerConfig,
    ingest::{KIND_HOST, KIND_PROBE, KIND_SERVER_PROBE},
    live::Live,
    notify::matcher::{Matcher, all_match},
    now_ms,
    store::{HOUR_MS, InspectionRow, Store, incidents::IncidentRequestRow, kpi},
    timeline::State,
};

/// Why contracts did not load, or an assessment or inspection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// Contract or calendar files that do not load: every problem, each with `file:line:col`.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// The evidence could not be read from (or an inspection written to) the store.
    #[error("reading the evidence: {0}")]
    Store(#[from] sqlx::Error),
    /// A period that cannot be formed.
    #[error(transparent)]
    Period(#[from] assess::PeriodError),
    /// The engine did not finish within its time limit (or panicked).
    #[error(transparent)]
    Compute(#[from] crate::compute::ComputeError),
}

/// The contracts service: the validated contracts, and the inspections run against them over
/// the live window.
pub struct Contracts {
    pub config: Arc<ServerConfig>,
    pub store: Store,
    pub live: Arc<Live>,
    loaded: RwLock<Vec<Arc<LoadedContract>>>,
}

impl Contracts {
    pub fn new(
        config: Arc<ServerConfig>,
        store: Store,
        live: Arc<Live>,
        loaded: Vec<Arc<LoadedContract>>,
    ) -> Contracts {
        Contracts {
            config,
            store,
            live,
            loaded: RwLock::new(loaded),
        }
    }

    /// The loaded contracts, in file order.
    pub fn list(&self) -> Vec<Arc<LoadedContract>> {
        self.loaded.read().expect("contracts lock").clone()
    }

    /// Runs the membership pass for `c` (`crate::membership::sync`): subjects seen for the
    /// first time are proposed, and assigned when `contracts.auto_assign_from_labels` is set.
    pub async fn sync_membership(&self, c: &LoadedContract, now: i64) -> Result<(), ContractError> {
        crate::membership::sync(
            &self.store,
            c,
            now,
            self.config.contracts.auto_assign_from_labels,
        )
        .await?;
        Ok(())
    }

    /// The loaded contract `id`.
    pub fn get(&self, id: &str) -> Option<Arc<LoadedContract>> {
        self.loaded
            .read()
            .expect("contracts lock")
            .iter()
            .find(|c| c.contract.id == id)
            .cloned()
    }
}

/// A validated contract with the calendar it is evaluated with.
#[derive(Debug)]
pub struct LoadedContract {
    pub path: PathBuf,
    pub contract: Contract,
    pub calendar: Calendar,
    /// The contract file's text as loaded (reports carry it in their evidence file).
    pub source: String,
    /// The calendar files' `(name as the contract writes it, text)` as loaded, in the
    /// contract's order (without the shipped calendar).
    pub calendar_files: Vec<(String, String)>,
}

impl LoadedContract {
    /// The contract and calendar source files for a report's evidence file: the contract's
    /// text and the calendar files in overlay order, the shipped one first when used.
    pub fn sources(
        &self,
    ) -> (
        yunwei_reports::evidence_file::SourceFile,
        Vec<yunwei_reports::evidence_file::SourceFile>,
    ) {
        use yunwei_reports::evidence_file::SourceFile;
        let name = self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let files: Vec<(&str, &str)> = self
            .calendar_files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let calendars = self
            .contract
            .calendar_sources(&files)
            .into_iter()
            .map(|(name, text)| SourceFile {
                name: name.to_string(),
                text: text.to_string(),
            })
            .collect();
        (
            SourceFile {
                name,
                text: self.source.clone(),
            },
            calendars,
        )
    }
}

/// Reads and validates one contract file and the calendar files it names (relative to the
/// contract's folder). Every problem is reported, each with `file:line:col`.
pub fn load_file(path: &Path) -> Result<LoadedContract, ContractError> {
    let invalid = |m: String| ContractError::Invalid(vec![m]);
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("{origin}: {e}")))?;
    let contract = parse_contract(&text, &origin).map_err(|e| invalid(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for file in &contract.calendar.files {
        let cal_path = dir.join(file);
        let cal_origin = cal_path.display().to_string();
        match std::fs::read_to_string(&cal_path) {
            Ok(t) => texts.push((cal_origin, file.clone(), t)),
            Err(e) => errors.push(format!(
                "{cal_origin}: {e} (calendar file named by {origin})"
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ContractError::Invalid(errors));
    }
    let files: Vec<(&str, &str)> = texts
        .iter()
        .map(|(o, _, t)| (o.as_str(), t.as_str()))
        .collect();
    let calendar = contract
        .build_calendar(&files)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(LoadedContract {
        path: path.to_path_buf(),
        contract,
        calendar,
        source: text,
        calendar_files: texts.into_iter().map(|(_, name, t)| (name, t)).collect(),
    })
}

/// Loads every contract file; ids must be unique.
pub fn load(files: &[PathBuf]) -> Result<Vec<Arc<LoadedContract>>, ContractError> {
    let mut out: Vec<Arc<LoadedContract>> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match load_file(f) {
            Ok(c) => {
                if let Some(other) = out.iter().find(|o| o.contract.id == c.contract.id) {
                    errors.push(format!(
                        "{}: contract id {:?} is also used by {}",
                        f.display(),
                        c.contract.id,
                        other.path.display()
                    ));
                } else {
                    out.push(Arc::new(c));
                }
            }
            Err(ContractError::Invalid(e)) => errors.extend(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ContractError::Invalid(errors))
    }
}

pub(crate) fn selected(
    sel: Option<&BTreeMap<String, String>>,
    labels: &BTreeMap<String, String>,
) -> bool {
    sel.is_some_and(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn assess_state(s: State) -> assess::State {
    match s {
        State::Up => assess::State::Up,
        State::Down => assess::State::Down,
        State::Unknown => assess::State::Unknown,
    }
}

/// Labels a host is selected by: its inventory labels plus `hostname`, `instance` and `agent_id`.
pub(crate) fn host_labels(
    agent_id: &str,
    hostname: &str,
    inventory: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = inventory.clone();
    l.entry("hostname".into())
        .or_insert_with(|| hostname.to_string());
    l.entry("instance".into())
        .or_insert_with(|| hostname.to_string());
    l.insert("agent_id".into(), agent_id.to_string());
    l
}

/// Everything the store holds that bears on `c` between `from_ms` and `to_ms`.
///
/// With `inspections_recorded` (the server runs inspections itself), inspections are assessed
/// from the first one the runner stored: earlier obligations predate yunwei's record-keeping.
pub async fn gather(
    store: &Store,
    c: &LoadedContract,
    from_ms: i64,
    to_ms: i64,
    inspections_recorded: bool,
) -> Result<Evidence, ContractError> {
    let contract = &c.contract;
    let mut ev = Evidence::default();
    if inspections_recorded {
        ev.inspections_since_ms = Some(
            store
                .first_inspection_ms(&contract.id)
                .await?
                .unwrap_or(to_ms),
        );
    }
    // Membership is the server's (`crate::membership`): the rows in force during the period,
    // never the labels the agents report now.
    let membership_rows = store.memberships(&contract.id).await?;
    let membership = crate::membership::for_period(&membership_rows, from_ms, to_ms);
    let labels = crate::membership::Labels::load(store).await?;
    let subjects_of = IncidentSubjects::load(store).await?;
    let members: BTreeSet<(SubjectKind, &str)> = membership
        .iter()
        .map(|m| (m.kind, m.subject.as_str()))
        .collect();
    // Hosts counted by some system in the period, with their labels now (for display and
    // exclusion scopes only).
    let mut hosts: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for &(kind, id) in &members {
        let l = labels.of(kind, id).unwrap_or_else(|| {
            let mut l = BTreeMap::new();
            match id.split_once('/').filter(|_| kind == SubjectKind::Probe) {
                Some((agent, probe)) => {
                    l.insert("agent_id".to_string(), agent.to_string());
                    l.insert("probe".to_string(), probe.to_string());
                }
                None => {
                    l.insert("agent_id".to_string(), id.to_string());
                }
            }
            l
        });
        if kind == SubjectKind::Host {
            hosts.insert(id.to_string(), l.clone());
        }
        ev.subjects.push(Subject {
            kind,
            id: id.to_string(),
            labels: l,
        });
    }
    for (subject, span) in store.intervals_between(KIND_HOST, from_ms, to_ms).await? {
        if members.contains(&(SubjectKind::Host, subject.as_str())) {
            ev.intervals.push(StatusInterval {
                id: format!("interval:host:{}", span.id.unwrap_or_default()),
                kind: SubjectKind::Host,
                subject,
                start_ms: span.start,
                end_ms: span.end,
                state: assess_state(span.state),
            });
        }
    }
    for (subject, span) in store.intervals_between(KIND_PROBE, from_ms, to_ms).await? {
        if members.contains(&(SubjectKind::Probe, subject.as_str())) {
            ev.intervals.push(StatusInterval {
                id: format!("interval:probe:{}", span.id.unwrap_or_default()),
                kind: SubjectKind::Probe,
                subject,
                start_ms: span.start,
                end_ms: span.end,
                state: assess_state(span.state),
            });
        }
    }
    // The server's own probes of this contract (source `server`), subject `<contract>/<probe>`.
    let prefix = format!("{}/", contract.id);
    for (subject, span) in store
        .intervals_between(KIND_SERVER_PROBE, from_ms, to_ms)
        .await?
    {
        if let Some(probe) = subject.strip_prefix(&prefix) {
            ev.server_probes.push(ServerProbeInterval {
                id: format!("interval:server_probe:{}", span.id.unwrap_or_default()),
                probe: probe.to_string(),
                start_ms: span.start,
                end_ms: span.end,
                state: assess_state(span.state),
            });
        }
    }
    ev.membership = Some(membership.clone());
    for row in store.inspections(&contract.id, from_ms, to_ms).await? {
        ev.inspections.push(InspectionRecord {
            id: format!("inspection:{}", row.id),
            kind: match row.kind.as_str() {
                "weekly" => InspectionKind::Weekly,
                "before_holiday" => InspectionKind::BeforeHoliday,
                _ => InspectionKind::Daily,
            },
            scheduled_ms: row.scheduled_ms,
            done_ms: Some(row.done_ms),
            result: if row.ok { "ok" } else { "findings" }.to_string(),
        });
    }
    let mut requests: BTreeMap<String, Vec<IncidentRequestRow>> = BTreeMap::new();
    for r in store.incident_requests(None, None).await? {
        requests.entry(r.incident_id.clone()).or_default().push(r);
    }
    for row in store.incidents(false).await? {
        let ends = row.restored_ms.unwrap_or(i64::MAX);
        if row.detected_ms >= to_ms || ends < from_ms {
            continue;
        }
        for r in requests.remove(&row.id).unwrap_or_default() {
            ev.incident_requests.push(incident_request(
                contract,
                &format!("incident:{}", row.id),
                r,
            ));
        }
        ev.incidents.push(Incident {
            id: format!("incident:{}", row.id),
            system: None,
            systems: subjects_of.systems(&row.labels, row.detected_ms, &membership_rows),
            labels: row.labels.clone(),
            level: incident_level(contract, row.level),
            detected_ms: row.detected_ms,
            acknowledged_ms: row.acknowledged_ms,
            on_site_ms: row.onsite_ms,
            restored_ms: row.restored_ms,
            pauses: Vec::new(),
            cause: Cause::Unknown,
        });
    }
    let scope = Scope {
        contract,
        subjects: &ev.subjects,
        membership: &membership,
    };
    ev.exclusions = exclusions(store, &scope, from_ms, to_ms, &c.calendar).await?;
    for e in store.contract_events(&contract.id, from_ms, to_ms).await? {
        ev.events.push(ManualEvent {
            id: format!("event:{}", e.id),
            category: e.category,
            at_ms: e.at_ms,
            evidence: format!("{} (recorded by {})", e.evidence, e.recorded_by),
        });
    }
    let metrics: BTreeSet<&str> = contract
        .resource_kpis
        .iter()
        .map(|k| k.metric.as_str())
        .collect();
    for metric in metrics {
        ev.resources
            .extend(resource_hours(store, metric, &hosts, from_ms, to_ms).await?);
    }
    Ok(ev)
}

/// Which monitored subjects an incident concerns, from the labels the server attaches to every
/// series (`agent_id`, `instance` — the host's name as enrolled —, `probe`), so that the
/// systems it counts for are decided by membership, never by labels an agent reports.
struct IncidentSubjects {
    agents: BTreeSet<String>,
    by_hostname: BTreeMap<String, Vec<String>>,
}

impl IncidentSubjects {
    async fn load(store: &Store) -> Result<IncidentSubjects, ContractError> {
        let mut agents = BTreeSet::new();
        let mut by_hostname: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in store.agents().await? {
            by_hostname
                .entry(a.hostname.clone())
                .or_default()
                .push(a.agent_id.clone());
            agents.insert(a.agent_id);
        }
        Ok(IncidentSubjects {
            agents,
            by_hostname,
        })
    }

    /// The systems an incident with `labels` detected at `detected_ms` counts for: when its
    /// labels name an enrolled host (`agent_id`, else `instance` / `hostname` by the enrolled
    /// hostname; a name several hosts share names them all), the systems that host — or, with
    /// a `probe` label, that probe when it is a member of some system then — belonged to at
    /// detection (`Some`, possibly empty: a host of no system counts for none). `None` when the
    /// labels name no monitored subject (an incident opened by hand, an alert aggregated over
    /// hosts): the assessment then matches the systems' selectors against the labels.
    fn systems(
        &self,
        labels: &BTreeMap<String, String>,
        detected_ms: i64,
        rows: &[crate::store::membership::MembershipRow],
    ) -> Option<Vec<String>> {
        let hosts: Vec<&str> = match labels.get("agent_id").filter(|a| self.agents.contains(*a)) {
            Some(a) => vec![a.as_str()],
            None => ["instance", "hostname"]
                .iter()
                .filter_map(|k| labels.get(*k))
                .find_map(|h| self.by_hostname.get(h))?
                .iter()
                .map(String::as_str)
                .collect(),
        };
        let systems_of = |kind: &str, subject: &str| -> BTreeSet<String> {
            rows.iter()
                .filter(|r| {
                    r.kind == kind
                        && r.subject == subject
                        && crate::membership::in_force(r, detected_ms)
                })
                .map(|r| r.system_id.clone())
                .collect()
        };
        let mut out = BTreeSet::new();
        for host in hosts {
            let probe = labels
                .get("probe")
                .map(|p| systems_of(KIND_PROBE, &format!("{host}/{p}")))
                .filter(|s| !s.is_empty());
            out.extend(probe.unwrap_or_else(|| systems_of(KIND_HOST, host)));
        }
        Some(out.into_iter().collect())
    }
}

/// A stored backdate or downgrade request as evidence (`incident_request:<id>`).
fn incident_request(contract: &Contract, incident: &str, r: IncidentRequestRow) -> IncidentRequest {
    let downgrade = r.kind == "downgrade";
    IncidentRequest {
        id: format!("incident_request:{}", r.id),
        incident: incident.to_string(),
        kind: if downgrade {
            IncidentRequestKind::Downgrade
        } else {
            IncidentRequestKind::Backdate
        },
        clock: r.clock,
        recorded_ms: r.requested_ms,
        claimed_ms: (!downgrade).then_some(r.value),
        level_from: downgrade.then(|| incident_level(contract, r.previous)),
        level_to: downgrade.then(|| incident_level(contract, r.value)),
        requested_by: r.requested_by,
        reason: r.reason,
        status: match r.status.as_str() {
            "approved" => RequestStatus::Approved,
            "rejected" => RequestStatus::Rejected,
            _ => RequestStatus::Pending,
        },
        reviewed_by: r.reviewed_by,
        reviewed_ms: r.reviewed_ms,
    }
}

/// The contract's id for a stored incident level (1 = 一级 / P1, most severe): `P<n>` when the
/// contract defines it (by id or alias), else the Chinese name, else `P<n>` (which the
/// assessment reports as an unknown level).
fn incident_level(contract: &Contract, level: i64) -> String {
    const CN: [&str; 4] = ["一级", "二级", "三级", "四级"];
    let p = format!("P{level}");
    if contract.level(&p).is_some() {
        return p;
    }
    match usize::try_from(level - 1).ok().and_then(|i| CN.get(i)) {
        Some(cn) if contract.level(cn).is_some() => (*cn).to_string(),
        _ => p,
    }
}

/// Exclusion requests overlapping `[from, to)` as the engine's evidence. A request's scope is
/// label matchers (`instance="db1"`, `job=~"web.*"`, `system="oa"`); the engine scopes by
/// labels a subject carries, so each request becomes one entry per subject its matchers select
/// (ids `exclusion:<row>` or `exclusion:<row>#<n>`), or one unscoped entry when it has no
/// matchers. Scopes are resolved by membership (`Scope::labels`), never by the `system` label
/// (or other selector labels) an agent reports.
/// A recurring window counts as each of its occurrences inside `[from, to)`, in the contract's
/// calendar (`exclusion:<row>@<start ms>`, split per subject as above).
async fn exclusions(
    store: &Store,
    scope: &Scope<'_>,
    from_ms: i64,
    to_ms: i64,
    cal: &yunwei_sla::calendar::Calendar,
) -> Result<Vec<Exclusion>, ContractError> {
    let mut out = Vec::new();
    for row in store.exclusions().await? {
        if row.to_ms <= from_ms || row.from_ms >= to_ms {
            continue;
        }
        let windows: Vec<(String, i64, i64)> = match &row.recurrence {
            None => vec![(format!("exclusion:{}", row.id), row.from_ms, row.to_ms)],
            Some(r) => {
                let Ok(during) =
                    serde_json::from_str::<crate::notify::timeinterval::TimeInterval>(r)
                else {
                    tracing::warn!(exclusion = %row.id, "unreadable recurrence: not excluded");
                    continue;
                };
                during
                    .occurrences(row.from_ms.max(from_ms), row.to_ms.min(to_ms), cal)
                    .into_iter()
                    .map(|(a, b)| (format!("exclusion:{}@{a}", row.id), a, b))
                    .collect()
            }
        };
        for (base_id, win_from, win_to) in windows {
            exclusion_entries(&mut out, &row, &base_id, win_from, win_to, scope);
        }
    }
    Ok(out)
}

/// What an exclusion scope is resolved against: the contract's subjects and their membership.
struct Scope<'a> {
    contract: &'a Contract,
    subjects: &'a [Subject],
    membership: &'a [yunwei_sla::assess::Membership],
}

impl Scope<'_> {
    /// The label sets subject `s` answers a scope with during `[from_ms, to_ms)`: for each
    /// system it was a member of then, its labels with that system's selector labels (for its
    /// kind) laid over the ones its agent reports, and `system` set to the system's id when the
    /// selector does not name it — the labels an honest agent of that system reports; with no
    /// membership then, its labels without `system`. An agent relabelling its host therefore
    /// never brings it under (or out of) a scope naming a system.
    fn labels(&self, s: &Subject, from_ms: i64, to_ms: i64) -> Vec<BTreeMap<String, String>> {
        let systems: BTreeSet<&str> = self
            .membership
            .iter()
            .filter(|m| m.kind == s.kind && m.subject == s.id)
            .filter(|m| m.from_ms < to_ms && m.to_ms.is_none_or(|t| t > from_ms))
            .map(|m| m.system.as_str())
            .collect();
        let mut base = s.labels.clone();
        base.remove("system");
        if systems.is_empty() {
            return vec![base];
        }
        systems
            .into_iter()
            .map(|id| {
                let mut l = base.clone();
                let selector = self
                    .contract
                    .systems
                    .iter()
                    .find(|sys| sys.id == id)
                    .and_then(|sys| match s.kind {
                        SubjectKind::Host => sys.hosts.as_ref(),
                        SubjectKind::Probe => sys.probes.as_ref(),
                    });
                for (k, v) in selector.into_iter().flatten() {
                    l.insert(k.clone(), v.clone());
                }
                l.entry("system".into()).or_insert_with(|| id.to_string());
                l
            })
            .collect()
    }
}

/// One exclusion window of `row` as entries of the engine's evidence: unscoped without
/// matchers, else one per subject the matchers select.
fn exclusion_entries(
    out: &mut Vec<Exclusion>,
    row: &crate::store::notify::ExclusionRow,
    base_id: &str,
    from_ms: i64,
    to_ms: i64,
    scope: &Scope<'_>,
) {
    let kind = match row.kind.as_str() {
        "force_majeure" => ExclusionKind::ForceMajeure,
        "buyer_caused" => ExclusionKind::BuyerCaused,
        _ => ExclusionKind::Maintenance,
    };
    let status = match row.status.as_str() {
        "approved" => ExclusionStatus::Approved,
        "rejected" => ExclusionStatus::Rejected,
        _ => ExclusionStatus::Pending,
    };
    let entry = |id: String, labels: BTreeMap<String, String>| Exclusion {
        id,
        kind,
        labels,
        from_ms,
        to_ms,
        status,
        requested_at_ms: row.requested_ms,
        reason: row.reason.clone(),
    };
    if row.matchers.is_empty() {
        out.push(entry(base_id.to_string(), BTreeMap::new()));
        return;
    }
    let Ok(matchers) = row
        .matchers
        .iter()
        .map(|m| Matcher::parse(m))
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    let hits: Vec<&Subject> = scope
        .subjects
        .iter()
        .filter(|s| {
            scope
                .labels(s, from_ms, to_ms)
                .iter()
                .any(|l| all_match(&matchers, l))
        })
        .collect();
    for (n, s) in hits.iter().enumerate() {
        let id = if hits.len() == 1 {
            base_id.to_string()
        } else {
            format!("{base_id}#{}", n + 1)
        };
        let agent = s.labels.get("agent_id").cloned().unwrap_or_default();
        let mut labels = BTreeMap::from([("agent_id".to_string(), agent)]);
        if let Some(p) = s
            .labels
            .get("probe")
            .filter(|_| s.kind == SubjectKind::Probe)
        {
            labels.insert("probe".into(), p.clone());
        }
        out.push(entry(id, labels));
    }
}

/// Hourly figures of a resource metric per host. `cpu_usage_ratio`, `memory_used_ratio` and
/// `disk_used_ratio` (the fullest filesystem) are derived from the node_exporter series
/// (`store::kpi`): read from `kpi_hours`, which the rollup job fills, and derived from the
/// rollups here for hours without a row (rolled up before that table existed). Any other name
/// is read from the rollups as stored (the worst series of a host per hour). Evidence ids are
/// `rollup:<metric>:<host>:<hour_ms>` either way: the host's rollups of that hour.
async fn resource_hours(
    store: &Store,
    metric: &str,
    hosts: &BTreeMap<String, BTreeMap<String, String>>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<ResourceHour>, ContractError> {
    let from_h = from_ms - from_ms.rem_euclid(HOUR_MS);
    let to_h = to_ms - 1;
    // Hosts by index, in id order, so that sorting by index sorts by id.
    let names: Vec<&str> = hosts.keys().map(String::as_str).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    // (host index, hour, value)
    let mut values: Vec<(usize, i64, f64)> = Vec::new();
    if kpi::is_derived(metric) {
        let stored = store
            .kpi_hours(metric, from_h, to_h, |hour, host, v| {
                if let Some(&i) = index.get(host) {
                    values.push((i, hour, v));
                }
            })
            .await?;
        let missing = missing_runs(&stored, from_h, to_h);
        // Ranges may be merged over stored hours: those are skipped below.
        let stored: HashSet<i64> = stored.into_iter().collect();
        for (from, to) in missing {
            for ((host, hour), v) in from_rollups(store, metric, hosts, from, to).await? {
                if let Some(&i) = index.get(host.as_str())
                    && !stored.contains(&hour)
                {
                    values.push((i, hour, v));
                }
            }
        }
    } else {
        for ((host, hour), v) in from_rollups(store, metric, hosts, from_h, to_h).await? {
            if let Some(&i) = index.get(host.as_str()) {
                values.push((i, hour, v));
            }
        }
    }
    values.sort_unstable_by_key(|&(i, hour, _)| (i, hour));
    Ok(values
        .into_iter()
        .map(|(i, hour_ms, v)| ResourceHour {
            id: format!("rollup:{metric}:{}:{hour_ms}", names[i]),
            host: names[i].to_string(),
            metric: metric.to_string(),
            hour_ms,
            min: v,
            max: v,
            sum: v,
            count: 1,
            last: v,
        })
        .collect())
}

/// Most rollup reads for the hours without a derived row: hours that never had data have no
/// row either, so scattered gaps are read as a few wider ranges rather than one query each.
const MAX_MISSING_RUNS: usize = 8;

/// Hour ranges `[from, to]` (inclusive, UTC hour starts) within `[from_h, to_h]` covering every
/// hour not in `stored` (ascending), at most [`MAX_MISSING_RUNS`] of them: the closest runs are
/// merged, so a range may also cover stored hours.
fn missing_runs(stored: &[i64], from_h: i64, to_h: i64) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    let mut next = from_h;
    for &h in stored {
        if h > next {
            runs.push((next, h - HOUR_MS));
        }
        next = next.max(h + HOUR_MS);
    }
    if next <= to_h {
        runs.push((next, to_h));
    }
    while runs.len() > MAX_MISSING_RUNS {
        let Some(i) = (0..runs.len() - 1).min_by_key(|&i| runs[i + 1].0 - runs[i].1) else {
            break;
        };
        runs[i].1 = runs[i + 1].1;
        runs.remove(i + 1);
    }
    runs
}

/// Hourly values of `metric` per (host, hour) derived from the rollups of hours
/// `from_h <= hour <= to_h`.
async fn from_rollups(
    store: &Store,
    metric: &str,
    hosts: &BTreeMap<String, BTreeMap<String, String>>,
    from_h: i64,
    to_h: i64,
) -> Result<BTreeMap<(String, i64), f64>, ContractError> {
    let mut series = HashMap::new();
    for name in kpi::sources(metric) {
        series.extend(
            store
                .series_named(name)
                .await?
                .into_iter()
                .filter(|s| hosts.contains_key(&s.agent_id))
                .map(|s| (s.id, s)),
        );
    }
    let mut ids: Vec<i64> = series.keys().copied().collect();
    ids.sort_unstable();
    let rollups = store.rollups(&ids, from_h, to_h).await?;
    Ok(kpi::derive(metric, &series, &rollups))
}

/// Assesses `c` over `period` with what the store holds at `as_of_ms`: the evidence is read
/// here, the engine runs on a blocking thread within `limit` ([`crate::compute::run`]).
pub async fn assess_period(
    store: &Store,
    c: &Arc<LoadedContract>,
    period: &Period,
    as_of_ms: i64,
    inspections_recorded: bool,
    limit: Option<std::time::Duration>,
) -> Result<Assessment, ContractError> {
    let until = as_of_ms.min(period.end_ms);
    let mut ev = gather(
        store,
        c,
        period.start_ms,
        until.max(period.start_ms),
        inspections_recorded,
    )
    .await?;
    ev.appeals = crate::appeals::evidence(store, &c.contract.id, period).await?;
    let (c, period) = (c.clone(), period.clone());
    Ok(crate::compute::run(limit, move || {
        assess::assess(&c.contract, &c.calendar, &period, as_of_ms, &ev)
    })
    .await?)
}

/// Refuses a period longer than [`yunwei_conf::limits::MAX_ASSESSMENT_PERIOD_DAYS`] (a
/// year): assessing it reads and returns evidence in proportion to its length.
pub fn check_period_length(period: &Period) -> Result<(), String> {
    let max = yunwei_conf::limits::MAX_ASSESSMENT_PERIOD_DAYS;
    if period.days() > max {
        return Err(format!(
            "period {} is {} days long; at most {max} days (a year) are assessed at once",
            period.label,
            period.days()
        ));
    }
    Ok(())
}

/// The calendar month containing `t_ms` in the contract's time zone.
pub fn current_month(c: &Contract, t_ms: i64) -> Period {
    let d = assess::local_date(t_ms, c.time_zone);
    Period::month(d.year(), d.month(), c.time_zone).expect("a date's month is a valid period")
}

/// One checklist item: a PromQL expression whose result lists the findings.
struct CheckItem {
    id: &'static str,
    zh: &'static str,
    en: &'static str,
    expr: &'static str,
}

/// The inspection checklist, over the live window (what the agents reported last).
const CHECKLIST: &[CheckItem] = &[
    CheckItem {
        id: "cpu",
        zh: "CPU 使用率低于 80%（5 分钟）",
        en: "CPU usage below 80% (5 minutes)",
        expr: r#"1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{mode="idle"}[5m])) >= 0.8"#,
    },
    CheckItem {
        id: "memory",
        zh: "内存使用率低于 90%",
        en: "Memory usage below 90%",
        expr: "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes >= 0.9",
    },
    CheckItem {
        id: "disk",
        zh: "磁盘使用率低于 85%",
        en: "Disk usage below 85%",
        expr: r#"1 - node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|squashfs|overlay"} / node_filesystem_size_bytes{fstype!~"tmpfs|ramfs|squashfs|overlay"} >= 0.85"#,
    },
    CheckItem {
        id: "certificates",
        zh: "证书 30 天内不到期",
        en: "No certificate expires within 30 days",
        expr: "probe_ssl_earliest_cert_expiry - time() < 30 * 86400",
    },
    CheckItem {
        id: "probes",
        zh: "拨测（含备份检查）全部成功",
        en: "All probes (backup checks included) succeed",
        expr: "probe_success == 0",
    },
];

/// Runs the checklist for `c` at `t_ms`: hosts in scope reporting, then each item over the live
/// window, limited to the contract's hosts. Returns (all ok, result JSON).
pub fn run_checklist(state: &Contracts, c: &LoadedContract, t_ms: i64) -> (bool, Value) {
    let contract = &c.contract;
    let missed = state.config.ingest.unknown_after_missed_batches;
    let in_scope = |labels: &BTreeMap<String, String>| {
        contract
            .systems
            .iter()
            .any(|s| selected(s.hosts.as_ref(), labels) || selected(s.probes.as_ref(), labels))
    };
    let mut items = Vec::new();
    let mut all_ok = true;
    {
        let live = state.live.hosts.read().expect("live lock");
        let mut silent = Vec::new();
        let mut total = 0;
        for (id, h) in live.iter() {
            if in_scope(&host_labels(id, &h.hostname, &h.labels)) {
                total += 1;
                if !h.is_up(t_ms, missed) {
                    silent.push(json!({ "agent_id": id.as_ref(), "hostname": h.hostname }));
                }
            }
        }
        let ok = silent.is_empty();
        all_ok &= ok;
        items.push(json!({
            "item": "reporting", "zh": "主机数据上报正常", "en": "Hosts reporting",
            "ok": ok, "hosts": total, "findings": silent,
        }));
    }
    let window = state.live.window.read().expect("window lock");
    for item in CHECKLIST {
        let result = promql::eval_instant(item.expr, t_ms, &window.storage, &Options::default());
        let (ok, findings) = match result {
            Ok(PromValue::InstantVector(v)) => {
                let findings: Vec<Value> = v
                    .iter()
                    .filter(|s| {
                        let l: BTreeMap<String, String> = s
                            .labels
                            .iter()
                            .map(|l| (l.name.to_string(), l.value.to_string()))
                            .collect();
                        in_scope(&l)
                    })
                    .map(|s| {
                        let l: BTreeMap<&str, &str> = s
                            .labels
                            .iter()
                            .map(|l| (l.name.as_ref(), l.value.as_ref()))
                            .collect();
                        json!({ "labels": l, "value": s.v })
                    })
                    .collect();
                (findings.is_empty(), findings)
            }
            Ok(_) => (true, Vec::new()),
            Err(e) => (false, vec![json!({ "error": e.to_string() })]),
        };
        all_ok &= ok;
        items.push(json!({
            "item": item.id, "zh": item.zh, "en": item.en, "ok": ok, "findings": findings,
        }));
    }
    (all_ok, json!({ "items": items }))
}

fn kind_name(k: InspectionKind) -> &'static str {
    match k {
        InspectionKind::Daily => "daily",
        InspectionKind::Weekly => "weekly",
        InspectionKind::BeforeHoliday => "before_holiday",
    }
}

/// Runs every inspection that is due at `now` and not yet stored. Returns how many ran.
pub async fn run_due_inspections(state: &Contracts, now: i64) -> Result<usize, ContractError> {
    let contracts = state.list();
    let mut ran = 0;
    for c in contracts {
        let k = &c.contract;
        let today = assess::local_date(now, k.time_zone);
        let Some(yesterday) = today.pred_opt() else {
            continue;
        };
        if today < k.period.start || yesterday > k.period.end {
            continue;
        }
        // Before-holiday windows are found from the holiday's start, so look a little ahead.
        let ahead = today
            .checked_add_days(chrono::Days::new(31))
            .unwrap_or(today);
        let period = Period::custom("inspections", yesterday, ahead, k.time_zone)?;
        for due in assess::inspection_schedule(k, &c.calendar, &period) {
            if due.scheduled_ms > now || due.deadline_ms <= now {
                continue;
            }
            let (ok, result) = run_checklist(state, &c, now);
            let row = InspectionRow {
                id: 0,
                contract_id: k.id.clone(),
                kind: kind_name(due.kind).to_string(),
                scheduled_ms: due.scheduled_ms,
                done_ms: now,
                ok,
                result: result.to_string(),
            };
            if state.store.insert_inspection(&row).await? {
                tracing::info!(contract = %k.id, kind = row.kind, ok, "inspection stored");
                ran += 1;
            }
        }
    }
    Ok(ran)
}

/// Runs the membership pass of every contract every `interval` (`contracts.membership_interval_secs`),
/// so a new subject is seen (and proposed or assigned) with the labels it first reported.
pub async fn membership_loop(state: Arc<Contracts>, interval: Duration) {
    // The first pass one interval after start, not at once: status, assessments and reports
    // run the pass themselves before they read membership.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for c in state.list() {
            if let Err(e) = state.sync_membership(&c, now_ms()).await {
                tracing::error!(error = %format!("{e:#}"), contract = %c.contract.id, "membership pass failed");
            }
        }
    }
}

/// Runs due inspections every 30 seconds.
pub async fn inspection_loop(state: Arc<Contracts>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = run_due_inspections(&state, now_ms()).await {
            tracing::error!(error = %format!("{e:#}"), "inspection run failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_runs_cover_every_hour_without_a_row() {
        let h = |n: i64| n * HOUR_MS;
        assert_eq!(missing_runs(&[], h(0), h(9)), vec![(h(0), h(9))]);
        assert_eq!(
            missing_runs(&[h(0), h(1), h(4), h(9)], h(0), h(9)),
            vec![(h(2), h(3)), (h(5), h(8))]
        );
        assert_eq!(missing_runs(&[h(0), h(1), h(2)], h(0), h(2)), vec![]);
        // Every other hour missing: merged into at most MAX_MISSING_RUNS ranges that still
        // cover every missing hour.
        let stored: Vec<i64> = (0..100).map(|n| h(2 * n)).collect();
        let runs = missing_runs(&stored, h(0), h(199));
        assert!(runs.len() <= MAX_MISSING_RUNS, "{runs:?}");
        for n in 0..100 {
            let hour = h(2 * n + 1);
            assert!(runs.iter().any(|(a, b)| *a <= hour && hour <= *b), "{n}");
        }
    }
}
