//! O&M contract files (运维合同), one YAML file per contract, parsed strictly into a validated
//! [`Contract`]. See `sla/examples/contract.example.yml` for every field, commented.
//!
//! Top-level keys: `id`, `name`, `parties`, `period`, `time_zone` (IANA, default
//! `Asia/Shanghai`), `fee`, `calendar`, `service_windows`, `duty_periods` (重保), `systems`
//! (each with its optional `server_probes`, the endpoints the server probes itself),
//! `objectives` (`availability` per tier, `incidents` levels, `resources` KPIs,
//! `inspections`, `report_due_working_day`), `scoring`, `grades`, `payment`, `report` (who
//! receives the scheduled report by email: `to`, `cc`, `formats`, `language`), `lifecycle`
//! (draft, appeal window and review deadline in working days, who signs off, whether an
//! unanswered draft becomes final at the deadline).
//!
//! Each section, and each item of a list, is deserialized on its own, then references and
//! values are checked; every problem is reported at once as `file:line:col: message`.
//! [`parse_contract`] takes the text; the caller reads files (the `rules` crate does no I/O).

mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono_tz::Tz;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use types::*;

use yunwei_conf::Diagnostic;
use yunwei_conf::yaml::{self, Kind, Node, Pos};
use yunwei_conf::yaml_de::from_node;

/// A validated contract.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contract {
    /// Where it was read from.
    pub origin: String,
    /// Stable id.
    pub id: String,
    /// Name.
    pub name: String,
    /// 甲方 and 乙方.
    pub parties: Parties,
    /// Contract period.
    pub period: DateRange,
    /// Time zone in which days, hours and periods are counted.
    #[serde(serialize_with = "ser_tz")]
    pub time_zone: Tz,
    /// Fee.
    pub fee: Option<Fee>,
    /// Calendars.
    pub calendar: CalendarRef,
    /// Named service windows (`7x24` is always present).
    pub service_windows: BTreeMap<String, ServiceWindow>,
    /// 重保 periods.
    pub duty_periods: Vec<DutyPeriod>,
    /// Systems in scope.
    pub systems: Vec<System>,
    /// Availability objective per tier.
    pub availability: BTreeMap<String, AvailabilityObjective>,
    /// Incident levels, most severe first.
    pub incident_levels: Vec<IncidentLevel>,
    /// Resource KPIs.
    pub resource_kpis: Vec<ResourceKpi>,
    /// Inspection obligations.
    pub inspections: Option<Inspections>,
    /// The period report is due on this working day of the following month.
    pub report_due_working_day: Option<u32>,
    /// Scoring table.
    pub scoring: Scoring,
    /// Grades, highest threshold first.
    pub grades: Vec<Grade>,
    /// Payment effect.
    pub payment: Payment,
    /// Email delivery of the scheduled report.
    pub report: Option<ReportDelivery>,
    /// Draft, appeal, review, sign-off and final report; `None`: reports are final as made.
    pub lifecycle: Option<Lifecycle>,
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl Contract {
    /// The incident level with this id or alias.
    pub fn level(&self, name: &str) -> Option<&IncidentLevel> {
        self.incident_levels
            .iter()
            .find(|l| l.id == name || l.aliases.iter().any(|a| a == name))
    }

    /// The calendar this contract uses: the shipped one (unless `calendar.shipped` is false)
    /// overlaid with `files`, the `(origin, text)` of each file named in `calendar.files`, in
    /// that order, which the caller has read.
    pub fn build_calendar(
        &self,
        files: &[(&str, &str)],
    ) -> Result<crate::calendar::Calendar, crate::calendar::CalendarErrors> {
        crate::calendar::Calendar::from_files(&self.calendar_sources(files))
    }

    /// The source files of the calendar this contract uses, in overlay order: the shipped
    /// calendar file first (unless `calendar.shipped` is false), then `files` (see
    /// [`Contract::build_calendar`]). [`crate::calendar::Calendar::from_files`] of them is the
    /// contract's calendar; a report's evidence file carries them so that the calendar can be
    /// rebuilt without this build's shipped file.
    pub fn calendar_sources<'a>(&self, files: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut out = Vec::with_capacity(files.len() + 1);
        if self.calendar.shipped {
            out.push((
                crate::calendar::SHIPPED_ORIGIN,
                crate::calendar::SHIPPED_CALENDAR,
            ));
        }
        out.extend_from_slice(files);
        out
    }

    /// The grade for a score (the lowest grade when none matches).
    pub fn grade_for(&self, score: f64) -> Option<&Grade> {
        self.grades
            .iter()
            .find(|g| score + 1e-9 >= g.min_score)
            .or(self.grades.last())
    }
}

/// Every problem found in a contract file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ContractErrors {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ContractErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

const TOP_KEYS: &[&str] = &[
    "id",
    "name",
    "parties",
    "period",
    "time_zone",
    "fee",
    "calendar",
    "service_windows",
    "duty_periods",
    "systems",
    "objectives",
    "scoring",
    "grades",
    "payment",
    "report",
    "lifecycle",
];
const REPORT_KEYS: &[&str] = &["to", "cc", "formats", "language"];
const LIFECYCLE_KEYS: &[&str] = &[
    "appeal_window_working_days",
    "review_working_days",
    "sign_off",
    "final_when_unanswered",
    "mail",
];
const OBJECTIVE_KEYS: &[&str] = &[
    "availability",
    "incidents",
    "resources",
    "inspections",
    "report_due_working_day",
];
const SCORING_KEYS: &[&str] = &[
    "base",
    "floor",
    "bonus_cap",
    "deductions",
    "bonuses",
    "vetoes",
    "insufficient_evidence",
];

struct Walker<'a> {
    origin: &'a str,
    diags: Vec<(Pos, String)>,
}

impl Walker<'_> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push((pos, message.into()));
    }

    /// Deserializes `node`, reporting every independent error: serde stops at the first, so
    /// after each error the offending key, value or list item is cut from a copy of the tree
    /// and the rest is tried again ("missing field" errors for cut keys are not reported).
    fn de<T: DeserializeOwned>(&mut self, node: &Node, what: &str) -> Option<T> {
        let mut copy: Option<Node> = None;
        let mut cut_keys: Vec<String> = Vec::new();
        let mut failed = false;
        for _ in 0..64 {
            let current = copy.as_ref().unwrap_or(node);
            match from_node::<T>(current) {
                Ok(v) => return (!failed).then_some(v),
                Err(e) => {
                    let pos = e.pos.unwrap_or(current.pos);
                    let spurious = cut_keys
                        .iter()
                        .any(|k| e.message.starts_with(&format!("missing field `{k}`")));
                    if !spurious {
                        self.err(pos, format!("{what}: {}", e.message));
                    }
                    failed = true;
                    // A missing field is reported at its mapping, which for a block mapping is
                    // also where its first key starts: nothing to cut.
                    if e.message.starts_with("missing field") {
                        return None;
                    }
                    let mut next = current.clone();
                    match cut_at(&mut next, pos) {
                        Some(key) if pos != current.pos => {
                            cut_keys.extend(key);
                            copy = Some(next);
                        }
                        _ => return None,
                    }
                }
            }
        }
        None
    }

    /// The entries of a mapping with only `allowed` keys; unknown and repeated keys reported.
    fn map<'n>(
        &mut self,
        node: &'n Node,
        allowed: &[&str],
        what: &str,
    ) -> BTreeMap<String, (&'n Node, &'n Node)> {
        let mut out = BTreeMap::new();
        let Kind::Map(entries) = &node.kind else {
            if !node.is_null() {
                self.err(
                    node.pos,
                    format!("{what}: expected a mapping, found a {}", node.type_name()),
                );
            }
            return out;
        };
        for (k, v) in entries {
            let Some(key) = k.scalar() else {
                self.err(k.pos, format!("{what}: keys must be names"));
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&key) {
                self.err(
                    k.pos,
                    format!(
                        "{what}: unknown field `{key}`, expected one of {}",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            }
            if out.insert(key.to_string(), (k, v)).is_some() {
                self.err(k.pos, format!("{what}: `{key}` given twice"));
            }
        }
        out
    }

    /// Each item of a sequence, deserialized on its own.
    fn list<T: DeserializeOwned>(&mut self, node: &Node, what: &str) -> Vec<(Pos, T)> {
        match &node.kind {
            Kind::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    self.de(n, &format!("{what}[{}]", i + 1))
                        .map(|v| (n.pos, v))
                })
                .collect(),
            _ if node.is_null() => Vec::new(),
            _ => {
                self.err(
                    node.pos,
                    format!("{what}: expected a list, found a {}", node.type_name()),
                );
                Vec::new()
            }
        }
    }
}

/// Removes the map entry whose key or value starts at `pos`, or the list item that does,
/// from `node`'s descendants. `Some(Some(key))` for a removed map entry, `Some(None)` for a
/// removed list item, `None` when nothing starts there.
fn cut_at(node: &mut Node, pos: Pos) -> Option<Option<String>> {
    // Deepest first: a block mapping starts where its first key does.
    match &mut node.kind {
        Kind::Map(entries) => {
            if let Some(r) = entries.iter_mut().find_map(|(_, v)| cut_at(v, pos)) {
                return Some(r);
            }
            let i = entries
                .iter()
                .position(|(k, v)| k.pos == pos || v.pos == pos)?;
            let (k, _) = entries.remove(i);
            Some(k.scalar().map(str::to_string))
        }
        Kind::Seq(items) => {
            if let Some(r) = items.iter_mut().find_map(|v| cut_at(v, pos)) {
                return Some(r);
            }
            let i = items.iter().position(|v| v.pos == pos)?;
            items.remove(i);
            Some(None)
        }
        Kind::Scalar { .. } => None,
    }
}

/// The `systems` list: each item deserialized on its own, its `server_probes` cut from it and
/// deserialized item by item, so a mistake in one probe neither hides the system nor the others.
fn parse_systems(w: &mut Walker<'_>, node: &Node) -> Vec<(Pos, System, Vec<Pos>)> {
    let Kind::Seq(items) = &node.kind else {
        return w
            .list(node, "system")
            .into_iter()
            .map(|(p, s)| (p, s, Vec::new()))
            .collect();
    };
    let mut out = Vec::new();
    for (i, n) in items.iter().enumerate() {
        let what = format!("system[{}]", i + 1);
        let mut copy = n.clone();
        let mut probes_node = None;
        if let Kind::Map(entries) = &mut copy.kind
            && let Some(at) = entries
                .iter()
                .position(|(k, _)| k.scalar() == Some("server_probes"))
        {
            probes_node = Some(entries.remove(at).1);
        }
        let (positions, probes): (Vec<Pos>, Vec<ServerProbe>) = probes_node
            .map(|p| w.list(&p, &format!("{what}.server_probes")))
            .unwrap_or_default()
            .into_iter()
            .unzip();
        if let Some(mut s) = w.de::<System>(&copy, &what) {
            s.server_probes = probes;
            out.push((n.pos, s, positions));
        }
    }
    out
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Parses and validates a contract; `origin` names the file in diagnostics.
pub fn parse_contract(text: &str, origin: &str) -> Result<Contract, ContractErrors> {
    let mut w = Walker {
        origin,
        diags: Vec::new(),
    };
    let contract = parse_inner(text, &mut w);
    let Walker { origin, mut diags } = w;
    if diags.is_empty()
        && let Some(c) = contract
    {
        return Ok(c);
    }
    if diags.is_empty() {
        // Every path that yields no contract reports why; this only guards that promise.
        diags.push((Pos { line: 1, col: 1 }, "invalid contract".to_string()));
    }
    diags.sort_by_key(|(p, _)| *p);
    Err(ContractErrors {
        diagnostics: diags
            .into_iter()
            .map(|(pos, message)| Diagnostic {
                origin: origin.to_string(),
                pos: Some(pos),
                message,
            })
            .collect(),
    })
}

fn parse_inner(text: &str, w: &mut Walker<'_>) -> Option<Contract> {
    let root = match yaml::parse(text) {
        Ok(Some(r)) => r,
        Ok(None) => {
            w.err(Pos { line: 1, col: 1 }, "empty contract file");
            return None;
        }
        Err(e) => {
            w.err(e.pos, e.message);
            return None;
        }
    };
    if !matches!(root.kind, Kind::Map(_)) {
        w.err(
            root.pos,
            format!("a contract is a mapping, found a {}", root.type_name()),
        );
        return None;
    }
    let top = w.map(&root, TOP_KEYS, "contract");
    let get = |k: &str| top.get(k).map(|(_, v)| *v);
    let required = |w: &mut Walker<'_>, k: &str| -> Option<&Node> {
        let n = get(k);
        if n.is_none() {
            w.err(root.pos, format!("contract: missing field `{k}`"));
        }
        n
    };

    let id: Option<String> = required(w, "id").and_then(|n| w.de(n, "id"));
    if let (Some(id), Some(n)) = (&id, get("id"))
        && !valid_id(id)
    {
        w.err(
            n.pos,
            format!("id {id:?}: use letters, digits, `_`, `-` or `.`"),
        );
    }
    let name: Option<String> = required(w, "name").and_then(|n| w.de(n, "name"));
    let parties: Option<Parties> = required(w, "parties").and_then(|n| w.de(n, "parties"));
    let period: Option<DateRange> = required(w, "period").and_then(|n| w.de(n, "period"));
    if let (Some(p), Some(n)) = (&period, get("period"))
        && p.start > p.end
    {
        w.err(
            n.pos,
            format!("period: start {} is after end {}", p.start, p.end),
        );
    }
    let time_zone = match get("time_zone") {
        None => Some(chrono_tz::Asia::Shanghai),
        Some(n) => w
            .de::<String>(n, "time_zone")
            .and_then(|s| match s.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    w.err(
                        n.pos,
                        format!("time_zone: unknown time zone {s:?} (e.g. Asia/Shanghai)"),
                    );
                    None
                }
            }),
    };
    let fee: Option<Fee> = get("fee").and_then(|n| w.de(n, "fee"));
    if let (Some(f), Some(n)) = (&fee, get("fee"))
        && !(f.amount.is_finite() && f.amount >= 0.0)
    {
        w.err(n.pos, "fee: amount must be a number ≥ 0");
    }
    let calendar: CalendarRef = get("calendar")
        .and_then(|n| w.de(n, "calendar"))
        .unwrap_or_default();

    // Service windows.
    let mut service_windows = BTreeMap::new();
    service_windows.insert(WINDOW_7X24.to_string(), ServiceWindow::Always {});
    if let Some(n) = get("service_windows") {
        for (name, (k, v)) in w.map(n, &[], "service_windows") {
            if name == WINDOW_7X24 {
                w.err(k.pos, "service_windows: `7x24` is built in");
                continue;
            }
            if let Some(sw) = w.de::<ServiceWindow>(v, &format!("service window {name}")) {
                service_windows.insert(name, sw);
            }
        }
    }

    // Objectives.
    let mut availability = BTreeMap::new();
    let mut levels: Vec<(Pos, IncidentLevel)> = Vec::new();
    let mut kpis: Vec<(Pos, ResourceKpi)> = Vec::new();
    let mut inspections = None;
    let mut report_due_working_day = None;
    if let Some(n) = required(w, "objectives") {
        let obj = w.map(n, OBJECTIVE_KEYS, "objectives");
        if let Some((_, a)) = obj.get("availability") {
            for (tier, (_, v)) in w.map(a, &[], "objectives.availability") {
                if let Some(o) =
                    w.de::<AvailabilityObjective>(v, &format!("availability tier {tier}"))
                {
                    if !(o.target_percent > 0.0 && o.target_percent <= 100.0) {
                        w.err(
                            v.pos,
                            format!("availability tier {tier}: target_percent must be in (0, 100]"),
                        );
                    }
                    if let Some(m) = o.min_coverage_percent
                        && !(0.0..=100.0).contains(&m)
                    {
                        let at = v.get("min_coverage_percent").map_or(v.pos, |x| x.pos);
                        w.err(
                            at,
                            format!(
                                "availability tier {tier}: min_coverage_percent must be in [0, 100]"
                            ),
                        );
                    }
                    availability.insert(tier, o);
                }
            }
        }
        if let Some((_, l)) = obj.get("incidents") {
            levels = w.list(l, "incident level");
        }
        if let Some((_, r)) = obj.get("resources") {
            kpis = w.list(r, "resource KPI");
        }
        if let Some((_, i)) = obj.get("inspections") {
            inspections = w.de::<Inspections>(i, "inspections");
        }
        if let Some((_, r)) = obj.get("report_due_working_day") {
            report_due_working_day = w.de::<u32>(r, "report_due_working_day");
            if let Some(d) = report_due_working_day
                && !(1..=23).contains(&d)
            {
                w.err(r.pos, "report_due_working_day must be between 1 and 23");
            }
        }
    }

    // Systems.
    let (systems, probe_positions): (Vec<(Pos, System)>, Vec<Vec<Pos>>) = required(w, "systems")
        .map(|n| parse_systems(w, n))
        .unwrap_or_default()
        .into_iter()
        .map(|(pos, s, probes)| ((pos, s), probes))
        .unzip();
    let mut seen = BTreeSet::new();
    for (pos, s) in &systems {
        if !valid_id(&s.id) {
            w.err(*pos, format!("system {:?}: invalid id", s.id));
        }
        if !seen.insert(s.id.clone()) {
            w.err(*pos, format!("system {}: id given twice", s.id));
        }
        if !availability.contains_key(&s.tier) {
            w.err(
                *pos,
                format!(
                    "system {}: tier {:?} has no availability objective (objectives.availability)",
                    s.id, s.tier
                ),
            );
        }
        if !service_windows.contains_key(&s.window) {
            w.err(
                *pos,
                format!("system {}: unknown service window {:?}", s.id, s.window),
            );
        }
        if s.hosts.is_none()
            && s.probes.is_none()
            && s.availability_from != AvailabilityFrom::ServerProbes
        {
            w.err(
                *pos,
                format!("system {}: select hosts or probes (or both)", s.id),
            );
        }
    }
    let system_nodes: Vec<&Node> = match get("systems").map(|n| &n.kind) {
        Some(Kind::Seq(items)) => items.iter().collect(),
        _ => Vec::new(),
    };
    // A system decided by its server probes must have some.
    for (pos, s) in &systems {
        if s.availability_from != AvailabilityFrom::Agents && s.server_probes.is_empty() {
            let at = system_nodes
                .iter()
                .find(|n| n.pos == *pos)
                .and_then(|n| n.get("availability_from"))
                .map_or(*pos, |n| n.pos);
            w.err(
                at,
                format!(
                    "system {}: availability_from: {} needs at least one of the system's server_probes",
                    s.id,
                    s.availability_from.name()
                ),
            );
        }
    }
    // Server probes: checked at each one's position in the file.
    let mut probe_names = BTreeSet::new();
    for ((pos, s), positions) in systems.iter().zip(&probe_positions) {
        let node = system_nodes.iter().find(|n| n.pos == *pos);
        let items: Vec<&Node> = match node.and_then(|n| n.get("server_probes")).map(|l| &l.kind) {
            Some(Kind::Seq(items)) => items.iter().collect(),
            _ => Vec::new(),
        };
        for (p, item_pos) in s.server_probes.iter().zip(positions) {
            let at_item = items.iter().find(|n| n.pos == *item_pos).copied();
            let at = |key: &str| {
                at_item
                    .and_then(|n| n.get(key))
                    .or(at_item)
                    .map_or(*pos, |n| n.pos)
            };
            let what = format!("system {}: server probe {:?}", s.id, p.name);
            if !valid_id(&p.name) {
                w.err(
                    at("name"),
                    format!("{what}: use letters, digits, `_`, `-` or `.`"),
                );
            } else if !probe_names.insert(p.name.clone()) {
                w.err(
                    at("name"),
                    format!("{what}: name given twice in the contract"),
                );
            }
            match (&p.http, &p.tcp) {
                (Some(url), None) => {
                    if http_target_host(url).is_none() {
                        w.err(
                            at("http"),
                            format!("{what}: http must be an http:// or https:// URL with a host (no user info)"),
                        );
                    }
                }
                (None, Some(target)) => {
                    if tcp_target_host(target).is_none() {
                        w.err(at("tcp"), format!("{what}: tcp must be host:port"));
                    }
                    if !p.expect_status.is_empty() || p.expect_body.is_some() {
                        w.err(
                            at("tcp"),
                            format!("{what}: expect_status and expect_body are for http probes"),
                        );
                    }
                }
                _ => w.err(
                    at_item.map_or(*pos, |n| n.pos),
                    format!("{what}: give exactly one of `http` or `tcp`"),
                ),
            }
            if let Some(c) = p.expect_status.iter().find(|c| !(100..=599).contains(*c)) {
                w.err(
                    at("expect_status"),
                    format!("{what}: status {c} is not an HTTP status (100 to 599)"),
                );
            }
            if !(5_000..=3_600_000).contains(&p.interval.0) {
                w.err(at("interval"), format!("{what}: interval must be 5s to 1h"));
            }
            if !(1_000..=60_000).contains(&p.timeout.0) || p.timeout.0 > p.interval.0 {
                w.err(
                    at("timeout"),
                    format!("{what}: timeout must be 1s to 60s and at most the interval"),
                );
            }
        }
    }
    let system_ids: BTreeSet<&str> = systems.iter().map(|(_, s)| s.id.as_str()).collect();

    let duty_periods: Vec<(Pos, DutyPeriod)> = get("duty_periods")
        .map(|n| w.list(n, "duty period"))
        .unwrap_or_default();
    for (pos, d) in &duty_periods {
        if d.from > d.to {
            w.err(*pos, format!("duty period {}: from is after to", d.name));
        }
        for s in &d.systems {
            if !system_ids.contains(s.as_str()) {
                w.err(
                    *pos,
                    format!("duty period {}: unknown system {s:?}", d.name),
                );
            }
        }
    }

    let mut level_names = BTreeSet::new();
    for (pos, l) in &levels {
        for n in std::iter::once(&l.id).chain(&l.aliases) {
            if !level_names.insert(n.clone()) {
                w.err(
                    *pos,
                    format!("incident level {}: name {n:?} used twice", l.id),
                );
            }
        }
    }
    let mut kpi_ids = BTreeSet::new();
    for (pos, k) in &kpis {
        if !kpi_ids.insert(k.id.clone()) {
            w.err(*pos, format!("resource KPI {}: id given twice", k.id));
        }
        for s in &k.systems {
            if !system_ids.contains(s.as_str()) {
                w.err(*pos, format!("resource KPI {}: unknown system {s:?}", k.id));
            }
        }
    }

    // Scoring.
    let mut scoring = Scoring {
        base: 100.0,
        floor: 0.0,
        bonus_cap: 0.0,
        deductions: Vec::new(),
        bonuses: Vec::new(),
        vetoes: Vec::new(),
        insufficient_evidence: InsufficientEvidence::default(),
    };
    if let Some(n) = required(w, "scoring") {
        let sc = w.map(n, SCORING_KEYS, "scoring");
        for (key, slot) in [
            ("base", &mut scoring.base),
            ("floor", &mut scoring.floor),
            ("bonus_cap", &mut scoring.bonus_cap),
        ] {
            if let Some((_, v)) = sc.get(key)
                && let Some(x) = w.de::<f64>(v, &format!("scoring.{key}"))
            {
                if !(x.is_finite() && x >= 0.0) {
                    w.err(v.pos, format!("scoring.{key} must be a number ≥ 0"));
                }
                *slot = x;
            }
        }
        if scoring.floor >= scoring.base {
            w.err(n.pos, "scoring: floor must be below base");
        }
        let mut item_ids = BTreeSet::new();
        if let Some((_, d)) = sc.get("deductions") {
            for (pos, item) in w.list::<DeductionItem>(d, "deduction") {
                check_deduction(w, pos, &item, &level_names, &kpi_ids);
                if !item_ids.insert(item.id.clone()) {
                    w.err(pos, format!("deduction {}: id given twice", item.id));
                }
                scoring.deductions.push(item);
            }
        }
        if let Some((_, b)) = sc.get("bonuses") {
            for (pos, item) in w.list::<BonusItem>(b, "bonus") {
                if !(item.points.is_finite() && item.points >= 0.0) {
                    w.err(pos, format!("bonus {}: points must be ≥ 0", item.id));
                }
                if !item_ids.insert(item.id.clone()) {
                    w.err(pos, format!("bonus {}: id given twice", item.id));
                }
                scoring.bonuses.push(item);
            }
        }
        if let Some((_, v)) = sc.get("insufficient_evidence")
            && let Some(x) = w.de(v, "scoring.insufficient_evidence")
        {
            scoring.insufficient_evidence = x;
        }
        if let Some((_, v)) = sc.get("vetoes") {
            for (pos, item) in w.list::<VetoItem>(v, "veto") {
                if !item_ids.insert(item.id.clone()) {
                    w.err(pos, format!("veto {}: id given twice", item.id));
                }
                scoring.vetoes.push(item);
            }
        }
    }

    let payment: Payment = get("payment")
        .and_then(|n| w.de(n, "payment"))
        .unwrap_or_default();
    let mut grades: Vec<(Pos, Grade)> = required(w, "grades")
        .map(|n| w.list(n, "grade"))
        .unwrap_or_default();
    if let Some(n) = get("grades")
        && matches!(&n.kind, Kind::Seq(items) if items.is_empty())
    {
        w.err(n.pos, "grades: at least one grade is needed");
    }
    let mut grade_ids = BTreeSet::new();
    for (pos, g) in &grades {
        if !grade_ids.insert(g.id.clone()) {
            w.err(*pos, format!("grade {}: id given twice", g.id));
        }
        if payment == Payment::PerGrade && fee.is_some() && g.payment_percent.is_none() {
            w.err(
                *pos,
                format!(
                    "grade {}: payment_percent is needed with `payment: per_grade`",
                    g.id
                ),
            );
        }
        if let Some(p) = g.payment_percent
            && !(0.0..=100.0).contains(&p)
        {
            w.err(
                *pos,
                format!("grade {}: payment_percent must be in [0, 100]", g.id),
            );
        }
    }
    grades.sort_by(|a, b| b.1.min_score.total_cmp(&a.1.min_score));

    let report = get("report").and_then(|n| parse_report(w, n));
    if let (Some(_), Some((k, _)), None) = (&report, top.get("report"), report_due_working_day) {
        w.err(
            k.pos,
            "report: the mailed report is the scheduled one, which needs \
             objectives.report_due_working_day",
        );
    }

    let lifecycle = get("lifecycle").and_then(|n| parse_lifecycle(w, n));

    Some(Contract {
        origin: w.origin.to_string(),
        id: id?,
        name: name?,
        parties: parties?,
        period: period?,
        time_zone: time_zone?,
        fee,
        calendar,
        service_windows,
        duty_periods: duty_periods.into_iter().map(|(_, d)| d).collect(),
        systems: systems.into_iter().map(|(_, s)| s).collect(),
        availability,
        incident_levels: levels.into_iter().map(|(_, l)| l).collect(),
        resource_kpis: kpis.into_iter().map(|(_, k)| k).collect(),
        inspections,
        report_due_working_day,
        scoring,
        grades: grades.into_iter().map(|(_, g)| g).collect(),
        payment,
        report,
        lifecycle,
    })
}

/// The `lifecycle:` block, each key on its own: day counts in range, sign-off roles named
/// once each.
fn parse_lifecycle(w: &mut Walker<'_>, node: &Node) -> Option<Lifecycle> {
    if !matches!(node.kind, Kind::Map(_)) {
        w.err(
            node.pos,
            format!(
                "lifecycle: expected a mapping, found a {}",
                node.type_name()
            ),
        );
        return None;
    }
    let before = w.diags.len();
    let m = w.map(node, LIFECYCLE_KEYS, "lifecycle");
    let days = |w: &mut Walker<'_>, key: &str, default: u32, max: u32| -> u32 {
        let Some((_, v)) = m.get(key) else {
            return default;
        };
        let what = format!("lifecycle.{key}");
        match w.de::<u32>(v, &what) {
            Some(n) if (1..=max).contains(&n) => n,
            Some(_) => {
                w.err(v.pos, format!("{what} must be between 1 and {max}"));
                default
            }
            None => default,
        }
    };
    let appeal_window_working_days = days(w, "appeal_window_working_days", 3, 30);
    let review_working_days = days(w, "review_working_days", 5, 60);
    let mut sign_off = vec![SignOffRole::Operator, SignOffRole::Reviewer];
    if let Some((_, v)) = m.get("sign_off") {
        let roles: Vec<(Pos, SignOffRole)> = w.list(v, "lifecycle.sign_off");
        let mut seen = BTreeSet::new();
        for (pos, r) in &roles {
            if !seen.insert(*r) {
                w.err(
                    *pos,
                    format!("lifecycle.sign_off: {} is listed twice", r.as_str()),
                );
            }
        }
        if roles.is_empty() && matches!(&v.kind, Kind::Seq(items) if items.is_empty()) {
            w.err(
                v.pos,
                "lifecycle.sign_off: name at least one of operator, reviewer",
            );
        }
        sign_off = seen.into_iter().collect();
    }
    let final_when_unanswered = match m.get("final_when_unanswered") {
        Some((_, v)) => w
            .de::<bool>(v, "lifecycle.final_when_unanswered")
            .unwrap_or(false),
        None => false,
    };
    let mut mail = LifecycleMail::default();
    if let Some((_, v)) = m.get("mail") {
        let parties = w.map(v, &["operator", "reviewer"], "lifecycle.mail");
        for (party, slot) in [
            ("operator", &mut mail.operator),
            ("reviewer", &mut mail.reviewer),
        ] {
            let Some((_, list)) = parties.get(party) else {
                continue;
            };
            let what = format!("lifecycle.mail.{party}");
            for (pos, a) in w.list::<String>(list, &what) {
                if !valid_email(&a) {
                    w.err(
                        pos,
                        format!("{what}: {a:?} is not an email address (like name@example.gov.cn)"),
                    );
                }
                slot.push(a);
            }
        }
    }
    (w.diags.len() == before).then_some(Lifecycle {
        appeal_window_working_days,
        review_working_days,
        sign_off,
        final_when_unanswered,
        mail,
    })
}

/// The `report:` block: recipients checked one by one (position of each bad address).
fn parse_report(w: &mut Walker<'_>, node: &Node) -> Option<ReportDelivery> {
    if !matches!(node.kind, Kind::Map(_)) {
        w.err(
            node.pos,
            format!("report: expected a mapping, found a {}", node.type_name()),
        );
        return None;
    }
    let m = w.map(node, REPORT_KEYS, "report");
    let mut ok = true;
    let mut seen = BTreeSet::new();
    let mut addresses = |w: &mut Walker<'_>, key: &str| -> Vec<String> {
        let Some((_, v)) = m.get(key) else {
            return Vec::new();
        };
        let what = format!("report.{key}");
        let before = w.diags.len();
        let items: Vec<(Pos, String)> = w.list(v, &what);
        ok &= w.diags.len() == before;
        let mut out = Vec::new();
        for (pos, a) in items {
            if !valid_email(&a) {
                w.err(
                    pos,
                    format!("{what}: {a:?} is not an email address (like name@example.gov.cn)"),
                );
                ok = false;
            } else if !seen.insert(a.to_ascii_lowercase()) {
                w.err(pos, format!("{what}: {a:?} is listed twice"));
                ok = false;
            }
            out.push(a);
        }
        out
    };
    let to = addresses(w, "to");
    let cc = addresses(w, "cc");
    if to.is_empty() && ok {
        w.err(node.pos, "report: `to` needs at least one address");
        ok = false;
    }
    let formats = match m.get("formats") {
        None => ReportFileFormat::ALL.to_vec(),
        Some((_, v)) => {
            let before = w.diags.len();
            let mut f: Vec<ReportFileFormat> = w
                .list(v, "report.formats")
                .into_iter()
                .map(|(_, f)| f)
                .collect();
            let listed = w.diags.len() == before;
            ok &= listed;
            if f.is_empty() && listed {
                w.err(
                    v.pos,
                    "report.formats: name at least one of html, pdf, xlsx, json",
                );
                ok = false;
            }
            f.sort();
            f.dedup();
            f
        }
    };
    let language = match m.get("language") {
        None => Some(ReportLanguage::default()),
        Some((_, v)) => w.de::<ReportLanguage>(v, "report.language"),
    };
    let language = language?;
    ok.then_some(ReportDelivery {
        to,
        cc,
        formats,
        language,
    })
}

fn check_deduction(
    w: &mut Walker<'_>,
    pos: Pos,
    d: &DeductionItem,
    levels: &BTreeSet<String>,
    kpis: &BTreeSet<String>,
) {
    let id = &d.id;
    if !(d.points.is_finite() && d.points >= 0.0) {
        w.err(pos, format!("deduction {id}: points must be ≥ 0"));
    }
    if let Some(c) = d.cap
        && !(c.is_finite() && c >= 0.0)
    {
        w.err(pos, format!("deduction {id}: cap must be ≥ 0"));
    }
    let clock = matches!(
        d.kind,
        DeductionKind::ResponseLate | DeductionKind::OnSiteLate | DeductionKind::RestoreLate
    );
    match d.kind {
        DeductionKind::AvailabilityShort => match d.per_pp {
            Some(p) if p > 0.0 && p.is_finite() => {}
            _ => w.err(
                pos,
                format!("deduction {id}: availability_short needs per_pp > 0"),
            ),
        },
        DeductionKind::Manual if d.category.is_none() => {
            w.err(pos, format!("deduction {id}: manual needs a category"));
        }
        _ => {}
    }
    if d.per_pp.is_some() && d.kind != DeductionKind::AvailabilityShort {
        w.err(
            pos,
            format!("deduction {id}: per_pp only applies to availability_short"),
        );
    }
    if !clock && (d.per_minutes.is_some() || !d.levels.is_empty() || !d.causes.is_empty()) {
        w.err(
            pos,
            format!("deduction {id}: per_minutes, levels and causes only apply to incident clocks"),
        );
    }
    if d.per_minutes == Some(0) {
        w.err(pos, format!("deduction {id}: per_minutes must be > 0"));
    }
    for l in &d.levels {
        if !levels.contains(l) {
            w.err(pos, format!("deduction {id}: unknown incident level {l:?}"));
        }
    }
    for k in &d.kpis {
        if !kpis.contains(k) {
            w.err(pos, format!("deduction {id}: unknown resource KPI {k:?}"));
        }
    }
}

/// The example contract shipped with the product.
pub const EXAMPLE_CONTRACT: &str = include_str!("../../examples/contract.example.yml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_contract_loads() {
        let c = parse_contract(EXAMPLE_CONTRACT, "contract.example.yml")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.systems.len(), 3);
        assert_eq!(c.availability["core"].target_percent, 99.95);
        assert_eq!(c.availability["core"].min_outage, DurationMs(300_000));
        assert_eq!(c.level("四级").unwrap().id, "P4");
        assert_eq!(c.level("P4").unwrap().window, ClockWindow::Service);
        assert_eq!(c.grade_for(89.9).unwrap().name, "良好");
        assert_eq!(c.grade_for(90.0).unwrap().name, "优秀");
        assert_eq!(c.grade_for(12.0).unwrap().name_en, "Fail");
        assert_eq!(
            c.service_windows["office-5x8"],
            ServiceWindow::WorkingDays {
                hours: Hours {
                    start: 510,
                    end: 1050
                }
            }
        );
        assert_eq!(c.time_zone, chrono_tz::Asia::Shanghai);
        let r = c.report.as_ref().unwrap();
        assert_eq!(r.to, ["kaohe@example.org"]);
        assert_eq!(r.cc, ["xiangmu@example.com"]);
        assert_eq!(r.formats, ReportFileFormat::ALL);
        assert_eq!(r.language, ReportLanguage::ZhCn);
    }

    #[test]
    fn email_addresses() {
        for ok in [
            "a@example.org",
            "li.si+report@mail.example.gov.cn",
            "ops@intranet",
            "x@政务.cn",
        ] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@example.org",
            "a@",
            "a@b@c",
            "a b@example.org",
            ".a@example.org",
            "a..b@example.org",
            "a@-x.org",
            "a@x..org",
            "Li Si <a@example.org>",
            "a@example.org\r\nBcc: b@example.org",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
