//! The contract's parts, as written in the file (serde) and as validated.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{NaiveDate, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use yunwei_conf::parse_duration_ms;

/// A duration written like Prometheus's (`15m`, `1h30m`, `3d`), kept in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationMs(pub i64);

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match parse_duration_ms(&s) {
            Some(ms) if ms >= 0 => Ok(DurationMs(ms)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid duration {s:?} (examples: 15m, 4h, 1h30m, 3d)"
            ))),
        }
    }
}

impl Serialize for DurationMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

/// A time of day `HH:MM`, as minutes after midnight (`24:00` allowed as an end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(pub u32);

impl TimeOfDay {
    fn parse(s: &str) -> Option<TimeOfDay> {
        let (h, m) = s.split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(TimeOfDay(h * 60 + m))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TimeOfDay::parse(&s)
            .filter(|t| t.0 < 24 * 60)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid time of day {s:?} (HH:MM)")))
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Opening hours within a day, `HH:MM-HH:MM` (end may be `24:00`), as minutes after midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hours {
    /// Opening, minutes after midnight.
    pub start: u32,
    /// Closing, minutes after midnight (exclusive), greater than `start`.
    pub end: u32,
}

impl<'de> Deserialize<'de> for Hours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = s.split_once('-').and_then(|(a, b)| {
            let (a, b) = (TimeOfDay::parse(a.trim())?, TimeOfDay::parse(b.trim())?);
            (a.0 < b.0).then_some(Hours {
                start: a.0,
                end: b.0,
            })
        });
        parsed.ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid hours {s:?} (HH:MM-HH:MM with the start before the end, e.g. 08:30-17:30)"
            ))
        })
    }
}

impl Serialize for Hours {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!(
            "{}-{}",
            TimeOfDay(self.start),
            TimeOfDay(self.end)
        ))
    }
}

/// A day of the week, written `mon` .. `sun`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    /// The chrono weekday.
    pub fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }

    /// From a chrono weekday.
    pub fn from_weekday(w: Weekday) -> Day {
        match w {
            Weekday::Mon => Day::Mon,
            Weekday::Tue => Day::Tue,
            Weekday::Wed => Day::Wed,
            Weekday::Thu => Day::Thu,
            Weekday::Fri => Day::Fri,
            Weekday::Sat => Day::Sat,
            Weekday::Sun => Day::Sun,
        }
    }
}

/// 甲方 and 乙方.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Parties {
    /// 甲方: the office that buys and pays.
    pub buyer: String,
    /// 乙方: the O&M company.
    pub vendor: String,
}

/// Inclusive date range, local dates in the contract's time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DateRange {
    /// First day.
    pub start: NaiveDate,
    /// Last day (inclusive).
    pub end: NaiveDate,
}

/// What the fee amount covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeePer {
    /// Per month.
    Month,
    /// Per quarter.
    Quarter,
    /// Per year.
    Year,
}

/// The O&M fee.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    /// Amount, in `currency`.
    pub amount: f64,
    /// The period the amount covers.
    pub per: FeePer,
    /// Currency code.
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_currency() -> String {
    "CNY".into()
}

/// Which calendars apply. The caller loads `files` and overlays them on the shipped one.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarRef {
    /// Use the shipped statutory calendar.
    #[serde(default = "yes")]
    pub shipped: bool,
    /// Operator calendar files (paths as written; the caller resolves and loads them).
    #[serde(default)]
    pub files: Vec<String>,
}

impl Default for CalendarRef {
    fn default() -> Self {
        CalendarRef {
            shipped: true,
            files: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Whether a weekly schedule is open on statutory holidays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HolidayRule {
    /// Holidays are closed (the usual case).
    #[default]
    Closed,
    /// Holidays follow the weekday's schedule.
    AsWeekday,
}

/// A service window (服务时间): when the service is owed.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "RawWindow")]
pub enum ServiceWindow {
    /// 7x24: always.
    Always {},
    /// 5x8 style: the given hours on every working day of the statutory calendar (make-up
    /// working days included, holidays excluded).
    WorkingDays {
        /// Hours, e.g. `08:30-17:30`.
        hours: Hours,
    },
    /// A custom weekly schedule.
    Weekly {
        /// Hours per weekday; days not listed are closed.
        schedule: BTreeMap<Day, Vec<Hours>>,
        /// Holidays: closed, or as their weekday.
        holidays: HolidayRule,
        /// The schedule a make-up working day follows.
        makeup_days_as: Day,
    },
}

/// A service window as written: one flat mapping, so that every field error has its position.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    kind: WindowKind,
    #[serde(default)]
    hours: Option<Hours>,
    #[serde(default)]
    schedule: Option<BTreeMap<Day, Vec<Hours>>>,
    #[serde(default)]
    holidays: Option<HolidayRule>,
    #[serde(default)]
    makeup_days_as: Option<Day>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WindowKind {
    Always,
    WorkingDays,
    Weekly,
}

impl TryFrom<RawWindow> for ServiceWindow {
    type Error = String;

    fn try_from(r: RawWindow) -> Result<Self, String> {
        let extra = |names: &[(&str, bool)]| -> Result<(), String> {
            match names.iter().find(|(_, present)| *present) {
                Some((n, _)) => Err(format!("`{n}` does not apply to this kind of window")),
                None => Ok(()),
            }
        };
        match r.kind {
            WindowKind::Always => {
                extra(&[
                    ("hours", r.hours.is_some()),
                    ("schedule", r.schedule.is_some()),
                    ("holidays", r.holidays.is_some()),
                    ("makeup_days_as", r.makeup_days_as.is_some()),
                ])?;
                Ok(ServiceWindow::Always {})
            }
            WindowKind::WorkingDays => {
                extra(&[
                    ("schedule", r.schedule.is_some()),
                    ("holidays", r.holidays.is_some()),
                    ("makeup_days_as", r.makeup_days_as.is_some()),
                ])?;
                let hours = r
                    .hours
                    .ok_or("missing field `hours` (kind working_days; e.g. \"08:30-17:30\")")?;
                Ok(ServiceWindow::WorkingDays { hours })
            }
            WindowKind::Weekly => {
                extra(&[("hours", r.hours.is_some())])?;
                let schedule = r
                    .schedule
                    .ok_or("missing field `schedule` (kind weekly; hours per day, mon .. sun)")?;
                let mut all: Vec<&Vec<Hours>> = schedule.values().collect();
                for hours in all.drain(..) {
                    let mut hs = hours.clone();
                    hs.sort();
                    if hs.windows(2).any(|p| p[1].start < p[0].end) {
                        return Err("hours overlap within a day".into());
                    }
                }
                Ok(ServiceWindow::Weekly {
                    schedule,
                    holidays: r.holidays.unwrap_or_default(),
                    makeup_days_as: r.makeup_days_as.unwrap_or(Day::Mon),
                })
            }
        }
    }
}

/// The name of the built-in 7x24 window.
pub const WINDOW_7X24: &str = "7x24";

/// A 重保 period: local dates during which the listed systems (all when empty) are owed 7x24.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DutyPeriod {
    /// Name, e.g. 春节重保.
    pub name: String,
    /// First day.
    pub from: NaiveDate,
    /// Last day (inclusive).
    pub to: NaiveDate,
    /// System ids; empty means all systems.
    #[serde(default)]
    pub systems: Vec<String>,
}

/// When a system counts as down, from the states of the hosts and probes it selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DownWhen {
    /// Down when any selected probe is down, or when every selected host is down (default: a
    /// failing end-to-end check is an outage; one host of a redundant pool is not).
    #[default]
    AnyProbeOrAllHosts,
    /// Down when any selected probe is down (hosts ignored).
    AnyProbe,
    /// Down when every selected host is down (probes ignored).
    AllHosts,
    /// Down when any selected host or probe is down.
    AnySubject,
}

/// Whose evidence decides a system's availability (`availability_from`, 可用性判定依据).
///
/// Every mode still lists the spans in which the agents and the server probes disagree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AvailabilityFrom {
    /// The vendor's agents: the hosts and probes the system selects, under `down_when`
    /// (default; the server probes only show disagreements).
    #[default]
    Agents,
    /// The server's own probes alone (the office's vantage): down while any of the system's
    /// `server_probes` is down, unknown while any has no result, else up. The agents' evidence
    /// only shows disagreements.
    ServerProbes,
    /// Both vantages: down while either says down (the agents' view under `down_when`, or any
    /// server probe), up while neither says down and at least one says up, unknown only when
    /// neither has data. Neither side can hide an outage the other saw, and either side's data
    /// covers the other's gaps.
    Both,
}

impl AvailabilityFrom {
    /// The default, which contracts and reports leave out.
    pub fn is_agents(&self) -> bool {
        *self == AvailabilityFrom::Agents
    }

    /// The name used in contract files.
    pub fn name(self) -> &'static str {
        match self {
            AvailabilityFrom::Agents => "agents",
            AvailabilityFrom::ServerProbes => "server_probes",
            AvailabilityFrom::Both => "both",
        }
    }
}

/// A business system (业务系统) in scope.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Tier: a key of `objectives.availability`.
    pub tier: String,
    /// Service window name (`7x24` built in).
    #[serde(default = "default_window")]
    pub window: String,
    /// When the system counts as down.
    #[serde(default)]
    pub down_when: DownWhen,
    /// Whose evidence decides the system's availability: the vendor's agents (default), the
    /// server's own probes (`server_probes`), or both together.
    #[serde(default, skip_serializing_if = "AvailabilityFrom::is_agents")]
    pub availability_from: AvailabilityFrom,
    /// Label selector over hosts (all labels must be equal); absent: no hosts.
    #[serde(default)]
    pub hosts: Option<BTreeMap<String, String>>,
    /// Label selector over probes; absent: no probes.
    #[serde(default)]
    pub probes: Option<BTreeMap<String, String>>,
    /// Endpoints the server probes itself (the office's own vantage), apart from the agents.
    /// Parsed item by item on their own (see `parse_contract`), so every mistake in them is
    /// reported at its position.
    #[serde(skip_deserializing, skip_serializing_if = "Vec::is_empty")]
    pub server_probes: Vec<ServerProbe>,
}

/// An endpoint of a system that the *server* probes on a schedule, independently of the
/// vendor's agents: exactly one of `http` (an `http://` or `https://` URL) or `tcp`
/// (`host:port`). Its results are stored as separate evidence (source `server`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerProbe {
    /// Name, unique within the contract (letters, digits, `_`, `-`, `.`).
    pub name: String,
    /// URL to GET; the probe succeeds when the status is expected and the body (if asked)
    /// contains `expect_body`. Redirects are not followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// `host:port` to connect to; the probe succeeds when the connection is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Accepted HTTP status codes; empty: any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    /// A string the HTTP body must contain (within its first 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// How often, 5s to 1h (default 1m).
    #[serde(default = "default_server_probe_interval")]
    pub interval: DurationMs,
    /// Give up after, 1s to 60s and at most `interval` (default 10s).
    #[serde(default = "default_server_probe_timeout")]
    pub timeout: DurationMs,
}

fn default_server_probe_interval() -> DurationMs {
    DurationMs(60_000)
}

fn default_server_probe_timeout() -> DurationMs {
    DurationMs(10_000)
}

/// The part of `host:port` before the port, when the port is a number above 0.
pub fn tcp_target_host(target: &str) -> Option<&str> {
    let (host, port) = target.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)).then_some(host)
}

/// The host of an `http://` or `https://` URL, when it has one.
pub fn http_target_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

fn default_window() -> String {
    WINDOW_7X24.into()
}

/// How time without data counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingData {
    /// Neither up nor down: left out of the denominator (the default, 数据缺失 shown apart).
    #[default]
    Excluded,
    /// Counts as available (the buyer bears it).
    AsUp,
    /// Counts as unavailable (the vendor bears it).
    AsDown,
}

/// Availability objective for a tier.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityObjective {
    /// Target, percent (e.g. 99.95).
    pub target_percent: f64,
    /// Outages shorter than this (as they happened, before clipping) are not counted.
    #[serde(default)]
    pub min_outage: DurationMs,
    /// How time without data counts.
    #[serde(default)]
    pub missing_data: MissingData,
    /// The least evidence coverage (share of the assessed service-window time with data,
    /// percent) a system of this tier needs for an availability figure; below it, or with no
    /// selected subject, the system is "insufficient evidence" (数据不足，不予评定). `None`:
    /// the default, [`AvailabilityObjective::coverage_floor`].
    #[serde(default)]
    pub min_coverage_percent: Option<f64>,
}

/// [`AvailabilityObjective::min_coverage_percent`] when a contract does not state it, for tiers
/// whose missing data is excluded or counted as up.
pub const DEFAULT_MIN_COVERAGE_PERCENT: f64 = 80.0;

impl AvailabilityObjective {
    /// The minimum coverage in force: the stated one, else [`DEFAULT_MIN_COVERAGE_PERCENT`],
    /// except for `missing_data: as_down`, where the vendor bears missing time in full and the
    /// default is 0 (a gap must not void the downtime it counts).
    pub fn coverage_floor(&self) -> f64 {
        self.min_coverage_percent
            .unwrap_or(match self.missing_data {
                MissingData::AsDown => 0.0,
                MissingData::Excluded | MissingData::AsUp => DEFAULT_MIN_COVERAGE_PERCENT,
            })
    }
}

/// What the grade of a period becomes when a system has insufficient evidence
/// (`scoring.insufficient_evidence`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InsufficientEvidence {
    /// No grade (不予评定): the score is shown, the grade and a grade-based payment are not
    /// (the default).
    #[default]
    WithholdGrade,
    /// The grade stands, marked as resting on partial evidence (部分证据).
    MarkPartial,
}

/// Which window an incident clock runs in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockWindow {
    /// Around the clock.
    #[default]
    Always,
    /// The affected system's service window (a 5x8 system's clock stops at night, at
    /// weekends and on holidays, and runs on make-up working days); 7x24 when the incident
    /// names no system of the contract. With several systems, the union of their windows.
    Service,
}

/// An incident level (故障等级) and its clocks; `None` means no such obligation.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentLevel {
    /// Id, e.g. `P1`.
    pub id: String,
    /// Other names accepted in evidence, e.g. `一级`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Time to respond (acknowledge).
    #[serde(default)]
    pub response: Option<DurationMs>,
    /// Time to be on site.
    #[serde(default)]
    pub on_site: Option<DurationMs>,
    /// Time to restore service.
    #[serde(default)]
    pub restore: Option<DurationMs>,
    /// The window the clocks run in.
    #[serde(default)]
    pub window: ClockWindow,
    /// Pause reasons that stop the clocks (e.g. `awaiting_buyer`); others do not.
    #[serde(default)]
    pub pause_states: Vec<String>,
}

/// How a resource KPI reduces a host's hourly aggregates over the period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiAggregate {
    /// 95th percentile (nearest rank) of the hourly means (sum / count).
    P95HourlyMean,
    /// Mean over the period (total sum / total count).
    Mean,
    /// Largest hourly maximum.
    Max,
}

/// A resource KPI, e.g. p95 CPU below 80 %, evaluated per host of the listed systems.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceKpi {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Metric name as stored in the rollups.
    pub metric: String,
    /// Reduction over the period.
    pub aggregate: KpiAggregate,
    /// The value must stay below this.
    pub below: f64,
    /// System ids whose hosts are checked; empty: all systems.
    #[serde(default)]
    pub systems: Vec<String>,
}

/// Which days daily inspections are owed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InspectionDays {
    /// Working days of the calendar.
    #[default]
    WorkingDays,
    /// Every day.
    EveryDay,
}

/// Inspection obligations (巡检).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Inspections {
    /// Daily inspection times, local.
    #[serde(default)]
    pub daily: Vec<TimeOfDay>,
    /// Which days the daily inspections are owed.
    #[serde(default)]
    pub daily_on: InspectionDays,
    /// Weekly inspection day (owed at `weekly_at`).
    #[serde(default)]
    pub weekly: Option<Day>,
    /// Time of the weekly inspection.
    #[serde(default = "nine")]
    pub weekly_at: TimeOfDay,
    /// An inspection is owed within this many working days before each holiday block.
    #[serde(default)]
    pub before_holiday_working_days: Option<u32>,
    /// A scheduled inspection done later than this after its time is missed.
    #[serde(default = "one_hour")]
    pub grace: DurationMs,
}

fn nine() -> TimeOfDay {
    TimeOfDay(9 * 60)
}

fn one_hour() -> DurationMs {
    DurationMs(3_600_000)
}

/// What a deduction item counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeductionKind {
    /// Availability below target; needs `per_pp` (points per started step short).
    AvailabilityShort,
    /// Response clock exceeded; per occurrence, or per started `per_minutes` late.
    ResponseLate,
    /// On-site clock exceeded.
    OnSiteLate,
    /// Restore clock exceeded.
    RestoreLate,
    /// A scheduled inspection missed.
    InspectionMissed,
    /// A resource KPI breached (per host).
    ResourceBreach,
    /// A manual event of `category` (e.g. 通报, report late).
    Manual,
}

/// Cause of an incident, for deductions that only count the vendor's faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// 乙方.
    Vendor,
    /// 甲方.
    Buyer,
    /// A third party.
    ThirdParty,
    /// Not established.
    Unknown,
}

/// A deduction item of the scoring table.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeductionItem {
    /// Stable id.
    pub id: String,
    /// Name (zh-CN).
    pub name: String,
    /// Name (en).
    #[serde(default)]
    pub name_en: Option<String>,
    /// What it counts.
    pub kind: DeductionKind,
    /// Points per unit (or per occurrence).
    pub points: f64,
    /// For `availability_short`: the step, in percentage points (e.g. 0.1).
    #[serde(default)]
    pub per_pp: Option<f64>,
    /// For clock items: points per started this many minutes late (else per occurrence).
    #[serde(default)]
    pub per_minutes: Option<u32>,
    /// For clock items: levels counted (empty: all).
    #[serde(default)]
    pub levels: Vec<String>,
    /// For clock items: causes counted (empty: all).
    #[serde(default)]
    pub causes: Vec<Cause>,
    /// For `resource_breach`: KPI ids counted (empty: all).
    #[serde(default)]
    pub kpis: Vec<String>,
    /// For `manual`: the event category.
    #[serde(default)]
    pub category: Option<String>,
    /// Most points this item can deduct in a period.
    #[serde(default)]
    pub cap: Option<f64>,
}

/// A bonus item, counted from manual events of its category.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BonusItem {
    /// Stable id.
    pub id: String,
    /// Name (zh-CN).
    pub name: String,
    /// Name (en).
    #[serde(default)]
    pub name_en: Option<String>,
    /// Event category.
    pub category: String,
    /// Points per event.
    pub points: f64,
    /// Most points from this item.
    #[serde(default)]
    pub cap: Option<f64>,
}

/// A veto item (一票否决): one event of its category makes the grade the lowest.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VetoItem {
    /// Stable id.
    pub id: String,
    /// Name (zh-CN).
    pub name: String,
    /// Name (en).
    #[serde(default)]
    pub name_en: Option<String>,
    /// Event category.
    pub category: String,
}

/// The scoring table (扣分制).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scoring {
    /// Points at the start of a period.
    #[serde(default = "hundred")]
    pub base: f64,
    /// The score never goes below this (扣完即止).
    #[serde(default)]
    pub floor: f64,
    /// Most bonus points in a period.
    #[serde(default)]
    pub bonus_cap: f64,
    /// Deduction items.
    #[serde(default)]
    pub deductions: Vec<DeductionItem>,
    /// Bonus items.
    #[serde(default)]
    pub bonuses: Vec<BonusItem>,
    /// Veto items.
    #[serde(default)]
    pub vetoes: Vec<VetoItem>,
    /// The grade when a system has insufficient evidence.
    #[serde(default)]
    pub insufficient_evidence: InsufficientEvidence,
}

fn hundred() -> f64 {
    100.0
}

/// A grade and its threshold.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grade {
    /// Stable id, e.g. `excellent`.
    pub id: String,
    /// Name (zh-CN), e.g. 优秀.
    pub name: String,
    /// Name (en).
    pub name_en: String,
    /// Lowest score with this grade.
    pub min_score: f64,
    /// Share of the period fee paid at this grade, percent (for `payment: per_grade`).
    #[serde(default)]
    pub payment_percent: Option<f64>,
}

/// How the score changes what is paid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Payment {
    /// The grade's `payment_percent` of the period fee.
    #[default]
    PerGrade,
    /// Fee × score / 100 (at most the fee).
    Proportional,
}

/// A rendered report format, as named in `report.formats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFileFormat {
    Html,
    Pdf,
    Xlsx,
    Json,
}

impl ReportFileFormat {
    /// Every format, in the order files are attached.
    pub const ALL: [ReportFileFormat; 4] = [
        ReportFileFormat::Html,
        ReportFileFormat::Pdf,
        ReportFileFormat::Xlsx,
        ReportFileFormat::Json,
    ];
}

/// The language(s) of the scheduled report and its mail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum ReportLanguage {
    /// Simplified Chinese (the mail adds an English summary).
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
    /// One report in each language, each mailed.
    #[serde(rename = "both")]
    Both,
}

/// `report:` — who receives the scheduled report by email, in which formats and language.
/// The server mails it through its `notify.smtp` settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportDelivery {
    /// `To:` addresses (at least one).
    pub to: Vec<String>,
    /// `Cc:` addresses.
    pub cc: Vec<String>,
    /// Formats made and attached (default: all; PDF needs the server's CJK font).
    pub formats: Vec<ReportFileFormat>,
    pub language: ReportLanguage,
}

/// Whether `s` is a plain email address (`local@domain`, no display name): an ASCII local
/// part of RFC 5322 atoms separated by dots, and a domain of letter/digit/hyphen labels.
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let atom = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    local.len() <= 64
        && domain.len() <= 253
        && local.split('.').all(atom)
        && domain.split('.').all(label)
}

/// A party that signs the final assessment off (签认), by the server role that acts for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignOffRole {
    /// The vendor (乙方), acting through its operators.
    Operator,
    /// The office (甲方), acting through its reviewers.
    Reviewer,
}

impl SignOffRole {
    /// The role's name, as the server's roles spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            SignOffRole::Operator => "operator",
            SignOffRole::Reviewer => "reviewer",
        }
    }
}

fn three() -> u32 {
    3
}

fn five() -> u32 {
    5
}

fn both_parties() -> Vec<SignOffRole> {
    vec![SignOffRole::Operator, SignOffRole::Reviewer]
}

/// `lifecycle:` — how a period's assessment becomes final: the draft (初稿) is issued, the
/// vendor may appeal (申诉) within `appeal_window_working_days` working days of the statutory
/// calendar after the day it was issued, the office decides each appeal (复核) within
/// `review_working_days` working days after the window closes, the `sign_off` roles sign
/// (签认), and the final version (终稿) is made. Days are counted in the contract's time zone;
/// a deadline is the end (24:00) of its last working day.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// Working days after the draft's issue day in which an appeal may be filed (default 3).
    #[serde(default = "three")]
    pub appeal_window_working_days: u32,
    /// Working days after the appeal window in which the office decides appeals and the
    /// parties sign off (default 5).
    #[serde(default = "five")]
    pub review_working_days: u32,
    /// Who must sign the assessment off before it is final (default both parties).
    #[serde(default = "both_parties")]
    pub sign_off: Vec<SignOffRole>,
    /// Whether a draft with every appeal decided becomes final at the review deadline without
    /// the missing signatures (default false: it waits for them).
    #[serde(default)]
    pub final_when_unanswered: bool,
    /// Who is mailed when a party must act (the draft is issued, an appeal awaits review, a
    /// decision or a signature is due), per party; a party without addresses gets no mail.
    #[serde(default)]
    pub mail: LifecycleMail,
}

/// `lifecycle.mail`: the addresses of each party.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleMail {
    /// The vendor's (乙方) addresses: drafts to appeal, decisions, signatures due.
    #[serde(default)]
    pub operator: Vec<String>,
    /// The office's (甲方) addresses: appeals to review, signatures due.
    #[serde(default)]
    pub reviewer: Vec<String>,
}

impl LifecycleMail {
    /// The addresses of the party a role acts for.
    pub fn of(&self, role: SignOffRole) -> &[String] {
        match role {
            SignOffRole::Operator => &self.operator,
            SignOffRole::Reviewer => &self.reviewer,
        }
    }
}
