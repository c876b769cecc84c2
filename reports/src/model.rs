//! The report model: every section of a performance-assessment report (考核报告) as plain,
//! serde-serializable data. Numbers that are not counts are [`Fixed`] (three decimals), so the
//! canonical JSON of a report never depends on floating-point printing. Times are UTC
//! milliseconds; [`Cover::utc_offset_minutes`] says how to show them in the contract's zone.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Schema identifier carried in every report (`Report::schema`).
pub const SCHEMA: &str = "yunwei.report.v1";

/// A fixed-point decimal with three fractional digits (stored as thousandths).
///
/// Serialized as a JSON number (`99.953`), parsed back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fixed(pub i64);

impl Fixed {
    /// Rounds `v` half away from zero to three decimals; non-finite values become 0.
    pub fn from_f64(v: f64) -> Fixed {
        if v.is_finite() {
            Fixed((v * 1000.0).round() as i64)
        } else {
            Fixed(0)
        }
    }
    /// A whole number.
    pub fn int(v: i64) -> Fixed {
        Fixed(v.saturating_mul(1000))
    }
    /// The value as `f64` (exact for every value a report holds).
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    /// Fixed formatting with `decimals` digits (0..=3), rounding half away from zero.
    pub fn fmt_dp(self, decimals: u32) -> String {
        let decimals = decimals.min(3);
        let div = 10i64.pow(3 - decimals);
        let neg = self.0 < 0;
        let abs = self.0.unsigned_abs() as i64;
        let scaled = (abs + div / 2) / div;
        let unit = 10i64.pow(decimals);
        let (int, frac) = (scaled / unit, scaled % unit);
        let sign = if neg && scaled != 0 { "-" } else { "" };
        if decimals == 0 {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac:0width$}", width = decimals as usize)
        }
    }
}

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.fmt_dp(3);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        f.write_str(s)
    }
}

impl Serialize for Fixed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            s.serialize_i64(self.0 / 1000)
        } else {
            s.serialize_f64(self.to_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fixed, D::Error> {
        let v = f64::deserialize(d)?;
        // Beyond 1e12 the thousandths would no longer survive the trip through f64.
        if !v.is_finite() || v.abs() > 1.0e12 {
            return Err(serde::de::Error::custom("number out of range"));
        }
        Ok(Fixed::from_f64(v))
    }
}

/// Report language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Lang {
    /// Simplified Chinese (default).
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    /// English.
    #[serde(rename = "en")]
    En,
}

impl Lang {
    /// Picks the text for this language.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::ZhCn => zh,
            Lang::En => en,
        }
    }
    /// BCP 47 tag.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// One complete assessment report of one contract over one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    pub cover: Cover,
    pub summary: Summary,
    pub availability: Vec<SystemAvailability>,
    pub incidents: Vec<Incident>,
    /// Deductions and bonuses, in the order they were applied.
    pub adjustments: Vec<Adjustment>,
    pub inspections: Vec<Inspection>,
    pub resources: Resources,
    pub alerts: AlertStats,
    pub exclusions: Vec<Exclusion>,
    pub completeness: Completeness,
    /// Appendix: the evidence every figure refers to.
    pub evidence: Vec<Evidence>,
    /// Requests to backdate an incident clock or downgrade an incident's level, with who
    /// asked and who decided (shown under the incidents); absent when there are none, so a
    /// report without any has the same bytes as before the section existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incident_requests: Vec<IncidentRequest>,
    /// The assessment's lifecycle (contracts with a `lifecycle:`): whether this version is the
    /// draft (初稿) or the final report (终稿), its deadlines, the appeals (申诉) with their
    /// review (复核) and effect, and the sign-offs (签认); absent for other contracts, so their
    /// reports keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Spans in which the vendor's agents and the server's own probes (the contract's
    /// `server_probes`) disagree about a system; absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disagreements: Vec<Disagreement>,
    /// The evidence file this report was computed from (`*.evidence.json`, see
    /// [`crate::evidence_file`]), named by its SHA-256 so that the signature covers it:
    /// `report recompute` computes every figure again from it. Absent in reports made without
    /// one (before the file existed, and the renderers' fixtures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_file: Option<EvidenceFileRef>,
}

/// Which version of the lifecycle a report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// 初稿: issued for appeal and review; figures may still change.
    Draft,
    /// 终稿: every appeal decided and signed off (or the deadline passed); payment follows it.
    Final,
}

/// The lifecycle of the period's assessment as of this version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub stage: Stage,
    /// When the appeal window closes(d), UTC ms (absent before the draft is archived).
    pub appeal_deadline_ms: Option<i64>,
    /// When review and sign-off are due, UTC ms.
    pub review_deadline_ms: Option<i64>,
    /// Appeals filed by this version's generation, by filing time.
    pub appeals: Vec<AppealLine>,
    /// Sign-offs recorded by this version's generation, by time.
    pub signoffs: Vec<Signoff>,
}

/// Status of an appeal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppealStatus {
    /// Not decided yet.
    Pending,
    /// 维持: the deduction stands.
    Upheld,
    /// 撤销: the deduction is withdrawn.
    Overturned,
    /// 调整: the deduction counts what was approved.
    Adjusted,
}

/// One appeal (evidence `appeal:<id>`) and its decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppealLine {
    /// Evidence id.
    pub id: String,
    /// What was appealed, e.g. `deduction notice: event:7`, `outage web @ 2026-02-03 10:00`.
    pub target: String,
    pub filed_by: String,
    pub filed_ms: i64,
    pub reason: String,
    /// Attachments as `name sha256`.
    pub attachments: Vec<String>,
    pub status: AppealStatus,
    /// The approved points (line) or minutes (outage) of an adjustment.
    pub approved: Option<Fixed>,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub decision_reason: Option<String>,
    /// Score points the decision gave back (0 when it changed nothing).
    pub effect: Fixed,
}

/// A party's sign-off (签认).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signoff {
    /// `operator` (乙方) or `reviewer` (甲方).
    pub role: String,
    pub signed_by: String,
    pub signed_ms: i64,
    /// The version signed.
    pub version: u32,
}

/// A span in which the agents' view of a system and one of its server probes disagree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disagreement {
    pub system_id: String,
    /// The system's name from the contract.
    pub system: String,
    /// The server probe's name in the contract.
    pub probe: String,
    /// UTC ms.
    pub from_ms: i64,
    /// UTC ms (exclusive).
    pub to_ms: i64,
    /// True when the agents say up (and the server down); false for the reverse.
    pub agents_up: bool,
    pub minutes: Fixed,
    /// The server probe intervals it rests on.
    pub evidence: Vec<String>,
}

/// The evidence file a report was computed from, as the signed report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceFileRef {
    /// Its schema (`yunwei.evidence.v1`).
    pub schema: String,
    /// Its uncompressed file name (`CONTRACT-PERIOD-vN.evidence.json`); the server stores,
    /// serves and writes it gzip-compressed, under this name + `.gz`.
    pub name: String,
    /// The size of its uncompressed bytes.
    pub bytes: u64,
    /// Hex SHA-256 of its uncompressed bytes (never of the compressed file).
    pub sha256: String,
}

/// What an [`IncidentRequest`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// A clock stamped earlier than its recording.
    Backdate,
    /// A less severe level.
    Downgrade,
}

/// Review status of an [`IncidentRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Not reviewed: the recorded time (or old level) counts.
    Pending,
    /// Approved: the claimed time (or new level) counts.
    Approved,
    /// Rejected: the recorded time (or old level) counts.
    Rejected,
}

/// A backdating or downgrade request of an incident in the period (evidence
/// `incident_request:<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentRequest {
    /// Evidence id.
    pub id: String,
    /// The incident ([`Incident::id`]).
    pub incident: String,
    pub kind: RequestKind,
    /// The clock of a backdate (`notified`, `ack`, `onsite`, `restored`).
    pub clock: Option<String>,
    /// When it was recorded, UTC ms.
    pub recorded_ms: i64,
    /// The earlier time a backdate claims, UTC ms.
    pub claimed_ms: Option<i64>,
    /// A downgrade's level before.
    pub level_from: Option<String>,
    /// A downgrade's requested level.
    pub level_to: Option<String>,
    pub requested_by: String,
    pub status: RequestStatus,
    pub reviewed_by: Option<String>,
    pub reviewed_ms: Option<i64>,
    pub reason: String,
}

/// Kind of assessment period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    Month,
    Quarter,
    Year,
    Custom,
}

/// The assessed period `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub kind: PeriodKind,
    /// `2026-10`, `2026-Q3`, `2026` or a custom label.
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Cover page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cover {
    pub contract_id: String,
    pub contract_name: String,
    /// 甲方: the office that manages and pays.
    pub party_a: String,
    /// 乙方: the O&M company.
    pub party_b: String,
    pub period: Period,
    /// IANA name of the contract's zone, e.g. `Asia/Shanghai`.
    pub time_zone: String,
    /// Offset used to display times (Asia/Shanghai: 480).
    pub utc_offset_minutes: i32,
    /// When the report was generated (a parameter: reports never read the clock).
    pub generated_at_ms: i64,
    /// Share of expected data that was present, percent.
    pub data_completeness_pct: Fixed,
    /// True while the period is not closed or the appeal window is open.
    pub provisional: bool,
    pub lang: Lang,
    /// Report version for this contract and period (regenerating makes a new one).
    pub version: u32,
}

/// Grade of a period (the contract decides the thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// 优秀
    Excellent,
    /// 良好
    Good,
    /// 合格
    Pass,
    /// 一般
    Fair,
    /// 不合格
    Fail,
    /// 不予评定: withheld because a system had insufficient evidence (the contract's
    /// `scoring.insufficient_evidence: withhold_grade`).
    Withheld,
}

impl Grade {
    /// Display name.
    pub fn label(self, lang: Lang) -> &'static str {
        match self {
            Grade::Excellent => lang.pick("优秀", "Excellent"),
            Grade::Good => lang.pick("良好", "Good"),
            Grade::Pass => lang.pick("合格", "Pass"),
            Grade::Fair => lang.pick("一般", "Fair"),
            Grade::Fail => lang.pick("不合格", "Fail"),
            Grade::Withheld => lang.pick("不予评定", "Not graded"),
        }
    }
}

/// Summary: score, grade, payment and trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Points at the start of the period (usually 100).
    pub base_score: Fixed,
    pub deductions_total: Fixed,
    pub bonuses_total: Fixed,
    /// Final score (clamped to 0..=base + bonus cap).
    pub score: Fixed,
    pub grade: Grade,
    pub payment: Payment,
    /// Earlier periods, oldest first, then this one.
    pub trend: Vec<TrendPoint>,
    /// The grade rests on partial evidence: a system had insufficient evidence and the
    /// contract's `scoring.insufficient_evidence` is `mark_partial` (omitted when false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub partial_evidence: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the score means for the fee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    /// Contract fee for the period in cents (分), when the contract states it.
    pub fee_cents: Option<i64>,
    /// Share of the fee payable, percent.
    pub payable_pct: Fixed,
    /// Payable amount in cents, when the fee is known.
    pub payable_cents: Option<i64>,
    /// The contract's rule, as stated (e.g. `fee × score / 100`).
    pub rule: String,
    /// No payable share is stated because the grade is withheld (`payable_pct` and
    /// `payable_cents` then mean nothing; omitted when false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending: bool,
}

/// One period's result in the trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrendPoint {
    pub period: String,
    pub score: Fixed,
    pub grade: Grade,
}

/// Availability of one system over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemAvailability {
    pub system_id: String,
    pub name: String,
    /// Tier name from the contract (`core`, `general`, `office`, ...).
    pub tier: String,
    /// Service window label (`7x24`, `5x8`).
    pub window: String,
    pub target_pct: Fixed,
    /// None when no data at all.
    pub actual_pct: Option<Fixed>,
    /// Calendar minutes in the period (days × 1440).
    pub period_minutes: i64,
    /// Minutes inside the service window.
    pub window_minutes: i64,
    pub downtime_minutes: Fixed,
    pub excluded_minutes: Fixed,
    pub missing_minutes: Fixed,
    pub met: bool,
    /// Insufficient evidence (数据不足，不予评定): data covered less of the window than the
    /// tier's minimum, or the system selected no subject; `actual_pct` is null and `met`
    /// false, meaning neither met nor breached (omitted when false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub insufficient_evidence: bool,
    /// Whose evidence decided the figures when not the vendor's agents (the contract's
    /// `availability_from`); absent for the agents, so such reports keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<DecidedBy>,
    /// One point per local day, for the trend chart.
    pub daily: Vec<DailyAvailability>,
    pub evidence: Vec<String>,
}

/// Whose evidence decided a system's availability, when not (only) the vendor's agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The server's own probes (the office's vantage) alone.
    ServerProbes,
    /// The agents and the server's probes together: down while either says down.
    Both,
}

/// Availability of one local day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyAvailability {
    /// `YYYY-MM-DD` in the contract's zone.
    pub date: String,
    /// None when the day had no data.
    pub pct: Option<Fixed>,
}

/// One incident clock (response, on site, restore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clock {
    /// Target minutes; None when the level has no such clock.
    pub target_minutes: Option<i64>,
    /// Minutes taken; None when not (yet) done.
    pub actual_minutes: Option<Fixed>,
    /// None when the clock does not apply.
    pub met: Option<bool>,
}

/// One incident (故障).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    pub id: String,
    /// 1 = 一级 (most severe) .. 4.
    pub level: u8,
    pub title: String,
    pub system: String,
    pub detected_ms: i64,
    pub restored_ms: Option<i64>,
    pub response: Clock,
    pub on_site: Clock,
    pub restore: Clock,
    pub evidence: Vec<String>,
}

/// Deduction or bonus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentKind {
    Deduction,
    Bonus,
}

/// One scoring item applied in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    pub kind: AdjustmentKind,
    /// Contract item, e.g. `availability_below_target`.
    pub item: String,
    /// Points, always positive; `kind` gives the sign.
    pub points: Fixed,
    /// How the points were computed, e.g. `0.2 pp short × 5 = 10`.
    pub arithmetic: String,
    pub evidence: Vec<String>,
}

/// Outcome of a scheduled inspection (巡检).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InspectionStatus {
    Done,
    Late,
    Missed,
}

/// One scheduled inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inspection {
    pub name: String,
    pub due_ms: i64,
    pub done_ms: Option<i64>,
    pub status: InspectionStatus,
    pub evidence: Vec<String>,
}

/// Resource use and capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub hosts: Vec<HostResources>,
    pub disks_filling: Vec<DiskForecast>,
}

/// p95 use of one host over the period, percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostResources {
    pub host: String,
    pub system: String,
    pub cpu_p95_pct: Option<Fixed>,
    pub memory_p95_pct: Option<Fixed>,
    pub disk_p95_pct: Option<Fixed>,
}

/// A filesystem forecast to fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskForecast {
    pub host: String,
    pub mount: String,
    pub used_pct: Fixed,
    /// `YYYY-MM-DD` in the contract's zone.
    pub full_on: String,
}

/// Alert statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertStats {
    pub total: u64,
    pub by_severity: Vec<SeverityCount>,
    /// Rules that fired most, descending.
    pub noisiest: Vec<RuleCount>,
    /// Mean time to acknowledge, minutes.
    pub mtta_minutes: Option<Fixed>,
    /// Mean time to restore, minutes.
    pub mttr_minutes: Option<Fixed>,
}

/// Alerts of one severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityCount {
    pub severity: String,
    pub count: u64,
}

/// Alerts of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCount {
    pub rule: String,
    pub count: u64,
}

/// Status of an exclusion request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionStatus {
    Approved,
    Rejected,
    /// Filed after the deadline (not counted).
    LateFiled,
}

/// A request to exclude time from availability (planned maintenance, force majeure, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    pub id: String,
    pub system: String,
    pub reason: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub filed_ms: i64,
    pub minutes: Fixed,
    pub status: ExclusionStatus,
}

/// Data completeness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completeness {
    pub overall_pct: Fixed,
    pub systems: Vec<SystemCompleteness>,
    /// Who bears missing data under the contract.
    pub borne_by: String,
}

/// Data completeness of one system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemCompleteness {
    pub system: String,
    pub pct: Fixed,
    pub missing_minutes: Fixed,
    /// The contract's minimum coverage for the system's tier, percent (omitted in reports
    /// made before coverage minimums existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pct: Option<Fixed>,
}

/// One evidence item in the appendix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub id: String,
    /// `status_interval`, `incident`, `exclusion`, `notification`, `inspection`, ...
    pub kind: String,
    pub summary: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_formats_and_round_trips() {
        assert_eq!(Fixed::from_f64(99.9534).0, 99953);
        assert_eq!(Fixed(99953).fmt_dp(2), "99.95");
        assert_eq!(Fixed(99955).fmt_dp(2), "99.96");
        assert_eq!(Fixed(-1500).fmt_dp(0), "-2");
        assert_eq!(Fixed(100000).to_string(), "100");
        assert_eq!(Fixed(87500).to_string(), "87.5");
        for v in [0, 1, -1, 99953, 123_456_789, -5, 999] {
            let s = serde_json::to_string(&Fixed(v)).unwrap();
            assert_eq!(serde_json::from_str::<Fixed>(&s).unwrap(), Fixed(v), "{s}");
        }
        assert_eq!(serde_json::to_string(&Fixed(99953)).unwrap(), "99.953");
        assert_eq!(serde_json::to_string(&Fixed(100000)).unwrap(), "100");
        assert!(serde_json::from_str::<Fixed>("2e12").is_err());
    }

    proptest::proptest! {
        /// Every value a report can hold survives JSON exactly, and formats back to itself.
        #[test]
        fn fixed_json_round_trip(v in -1_000_000_000_000_000i64..=1_000_000_000_000_000) {
            let s = serde_json::to_string(&Fixed(v)).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<Fixed>(&s).unwrap(), Fixed(v));
            let parsed: f64 = Fixed(v).fmt_dp(3).parse().unwrap();
            proptest::prop_assert_eq!(Fixed::from_f64(parsed), Fixed(v));
        }
    }
}
