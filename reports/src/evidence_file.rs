//! The evidence file (`*.evidence.json`, schema `yunwei.evidence.v1`, documented by
//! `reports/schema/evidence.v1.json`, see [`crate::schema::EVIDENCE_V1`]): everything a report
//! was computed from, so that anyone can compute it again without the server or its database
//! ([`crate::recompute`]).
//!
//! It holds the contract file's text, the calendar files' texts (the shipped statutory
//! calendar included, in overlay order), the period, the assessment instant, the evidence rows
//! exactly as the engine read them, and the few inputs that are stated rather than computed
//! (language, version, generation time, the trend of earlier periods' archived scores, alert
//! statistics, notes, the audit log head). [`build_report`] turns it into the report model:
//! the server makes every report with it, and `report recompute` calls the same function.
//!
//! The file is bound to the report by hash: every signed report made with one names it in
//! [`crate::model::Report::evidence_file`] (file name, byte size, SHA-256 of its bytes), so
//! the report's signature covers the evidence file too. The server writes it once with
//! [`to_bytes`]; readers hash the bytes they have and never re-serialize them.
//!
//! The server stores, serves and writes the file gzip-compressed ([`compress`],
//! `*.evidence.json.gz`, about a tenth of the size); the name, size and SHA-256 the report
//! names are always those of the uncompressed JSON bytes (what `gunzip` gives back), so one
//! file has one hash however it travels. Readers accept it either way ([`decompress`]).

use serde::{Deserialize, Serialize};
use yunwei_sla::assess::{self, Evidence, Period};
use yunwei_sla::calendar::Calendar;
use yunwei_sla::contract::{Contract, parse_contract};

use crate::from_assessment::{self, Inputs};
use crate::model::{AlertStats, Lang, Report, Signoff, Stage, TrendPoint};

/// Schema identifier carried in every evidence file ([`EvidenceFile::schema`]).
pub const SCHEMA: &str = "yunwei.evidence.v1";

/// How an evidence file's name ends: `CONTRACT-PERIOD-vN.evidence.json` beside
/// `CONTRACT-PERIOD-vN.{html,pdf,xlsx,json}`.
pub const SUFFIX: &str = ".evidence.json";

/// How a compressed evidence file's name ends (the server's archive, download and
/// `report generate` output): [`SUFFIX`] + `.gz`.
pub const GZ_SUFFIX: &str = ".evidence.json.gz";

/// One source file (contract or calendar) as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// The file's name (diagnostics name it, with line and column).
    pub name: String,
    /// Its complete text.
    pub text: String,
}

/// The audit log's head when the report was made (the report's `audit_head` evidence item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    /// Sequence number of the last audit row (0: none yet).
    pub seq: i64,
    /// Its chain hash (hex SHA-256).
    pub sha256: String,
}

/// The inputs of a report that are stated, not computed from the evidence rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stated {
    /// Language of the report's text.
    pub lang: Lang,
    /// Version of the report for its contract and period.
    pub version: u32,
    /// When the report was generated, UTC ms.
    pub generated_at_ms: i64,
    /// Earlier periods' archived scores, oldest first (this period is appended).
    pub trend: Vec<TrendPoint>,
    /// Alert statistics of the period.
    pub alerts: AlertStats,
    /// Notes for the report's appendix given by whoever asked for the report (the note on
    /// simulated data is not one of them: it follows from the evidence).
    pub notes: Vec<String>,
    /// The audit log's head at generation; `None`: the report names none.
    pub audit_head: Option<AuditHead>,
    /// The assessment's lifecycle as of generation (contracts with a `lifecycle:`): the
    /// deadlines are counted from it with the contract and calendar of this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<StatedLifecycle>,
}

/// The lifecycle inputs of a report that are stated: which version of the lifecycle it is,
/// when the draft was issued, and the sign-offs recorded by its generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatedLifecycle {
    /// Draft (初稿) or final (终稿).
    pub stage: Stage,
    /// When the draft (the period's first archived version) was issued, UTC ms.
    pub draft_issued_ms: i64,
    /// Sign-offs recorded by generation, by time.
    pub signoffs: Vec<Signoff>,
}

/// Everything one report was computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceFile {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The contract file.
    pub contract: SourceFile,
    /// The calendar files in overlay order (the shipped statutory calendar first when the
    /// contract uses it): a year in a later file replaces the same year of earlier ones.
    pub calendars: Vec<SourceFile>,
    /// The period's label (`2026-10`, `2026-Q3`, `2026`, `2026-10-01..2026-10-15`), in the
    /// contract's time zone.
    pub period: String,
    /// The instant the period was assessed at, UTC ms (evidence known then).
    pub as_of_ms: i64,
    /// Stated inputs.
    pub stated: Stated,
    /// The evidence rows, exactly as the assessment engine read them.
    pub evidence: Evidence,
}

/// Why an evidence file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("the evidence file is not valid JSON of schema {SCHEMA}: {0}")]
    Malformed(String),
    #[error("the evidence file's schema is {0:?}, not {SCHEMA:?}")]
    Schema(String),
    #[error("the contract in the evidence file does not load:\n{0}")]
    Contract(String),
    #[error("the calendar in the evidence file does not load:\n{0}")]
    Calendar(String),
    #[error("the period in the evidence file: {0}")]
    Period(String),
    #[error("the evidence file is not valid gzip: {0}")]
    Gzip(String),
    #[error(
        "the compressed evidence file holds more than the {limit} bytes the report names \
         (it is not the file the report names)"
    )]
    TooLarge { limit: u64 },
}

/// The evidence file's bytes: JSON, written once by the server (deterministic: struct fields
/// in declaration order, maps sorted); its SHA-256 is what the report names.
pub fn to_bytes(file: &EvidenceFile) -> Vec<u8> {
    // Plain data with string keys: serializing cannot fail.
    serde_json::to_vec(file).unwrap_or_default()
}

/// gzip (RFC 1952) of an evidence file's bytes, as the server stores and serves it:
/// deterministic (no file name, modification time 0, level 1), so the same file compresses to
/// the same bytes. Level 1: at 1,000 hosts level 6 took 8 s of a report's generation on a
/// loaded 2-core machine for a file about a tenth smaller.
pub fn compress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut gz = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(bytes);
    gz.finish().unwrap_or_default()
}

/// Whether `data` starts like gzip (`1f 8b`); an evidence file's JSON starts with `{`.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// The evidence file's uncompressed bytes from `data` as given: gzip-compressed (inflated, at
/// most `limit` bytes: more is [`InputError::TooLarge`]) or plain (as is).
pub fn decompress(data: &[u8], limit: u64) -> Result<std::borrow::Cow<'_, [u8]>, InputError> {
    use std::io::Read as _;
    if !is_gzip(data) {
        return Ok(std::borrow::Cow::Borrowed(data));
    }
    let cap = usize::try_from(limit.min(1 << 34)).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(cap.min(data.len().saturating_mul(16)));
    flate2::read::MultiGzDecoder::new(data)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| InputError::Gzip(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(InputError::TooLarge { limit });
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Parses an evidence file.
pub fn parse(bytes: &[u8]) -> Result<EvidenceFile, InputError> {
    let f: EvidenceFile =
        serde_json::from_slice(bytes).map_err(|e| InputError::Malformed(e.to_string()))?;
    if f.schema != SCHEMA {
        return Err(InputError::Schema(f.schema));
    }
    Ok(f)
}

/// The contract, calendar and period of `file`, loaded as the server loads them.
pub fn load_inputs(file: &EvidenceFile) -> Result<(Contract, Calendar, Period), InputError> {
    let contract = parse_contract(&file.contract.text, &file.contract.name)
        .map_err(|e| InputError::Contract(e.to_string()))?;
    let sources: Vec<(&str, &str)> = file
        .calendars
        .iter()
        .map(|c| (c.name.as_str(), c.text.as_str()))
        .collect();
    let calendar =
        Calendar::from_files(&sources).map_err(|e| InputError::Calendar(e.to_string()))?;
    let period = Period::parse(&file.period, contract.time_zone)
        .map_err(|e| InputError::Period(e.to_string()))?;
    Ok((contract, calendar, period))
}

/// Whether the evidence holds simulated subjects (`--demo`): the report then says so.
pub fn simulated(ev: &Evidence) -> bool {
    ev.subjects
        .iter()
        .any(|s| s.labels.contains_key("simulated"))
}

/// The report model computed from `file`: the contract and calendar loaded from their texts,
/// the assessment engine ([`assess::assess`]) over the evidence rows, the report model
/// ([`from_assessment::build`]), the audit head and the simulated-data marks. The server makes
/// every report with this function and `report recompute` calls it again; the report's
/// `evidence_file` reference is left `None` (it names this file's hash, added by the caller).
pub fn build_report(file: &EvidenceFile) -> Result<Report, InputError> {
    let (contract, calendar, period) = load_inputs(file)?;
    Ok(build_report_with(file, &contract, &calendar, &period))
}

/// [`build_report`] with the contract, calendar and period already loaded from `file`
/// ([`load_inputs`]).
pub fn build_report_with(
    file: &EvidenceFile,
    contract: &Contract,
    calendar: &Calendar,
    period: &Period,
) -> Report {
    let ev = &file.evidence;
    let s = &file.stated;
    let lang = s.lang;
    let simulated = simulated(ev);
    let mut notes = s.notes.clone();
    if simulated {
        notes.push(
            lang.pick(
                "本报告所依据的部分或全部数据为模拟数据（--demo），仅用于演示，不得作为考核依据。",
                "Some or all of the data behind this report is SIMULATED (--demo): for \
                 demonstration only, not for assessment.",
            )
            .to_string(),
        );
    }
    let a = assess::assess(contract, calendar, period, file.as_of_ms, ev);
    let mut report = from_assessment::build(&Inputs {
        assessment: &a,
        contract,
        calendar,
        evidence: ev,
        trend: s.trend.clone(),
        alerts: s.alerts.clone(),
        generated_at_ms: s.generated_at_ms,
        lang,
        version: s.version,
        notes,
    });
    if let Some(h) = &s.audit_head {
        let (seq, hash) = (h.seq, &h.sha256);
        report.evidence.push(crate::model::Evidence {
            id: format!("audit:head:{seq}"),
            kind: "audit_head".into(),
            summary: match lang {
                Lang::ZhCn => format!("生成时审计日志链头：第 {seq} 条，SHA-256 {hash}"),
                Lang::En => {
                    format!("Audit log head at generation: row {seq}, SHA-256 {hash}")
                }
            },
            start_ms: s.generated_at_ms,
            end_ms: s.generated_at_ms,
        });
    }
    if let (Some(l), Some(rule), Some(st)) =
        (report.lifecycle.as_mut(), &contract.lifecycle, &s.lifecycle)
    {
        let issued = st.draft_issued_ms;
        l.stage = st.stage;
        l.appeal_deadline_ms =
            Some(yunwei_sla::lifecycle::appeal_deadline(contract, rule, calendar, issued).at_ms);
        l.review_deadline_ms =
            Some(yunwei_sla::lifecycle::review_deadline(contract, rule, calendar, issued).at_ms);
        l.signoffs = st.signoffs.clone();
    }
    if simulated {
        report
            .cover
            .contract_name
            .push_str(lang.pick("（含模拟数据 SIMULATED）", " (SIMULATED DATA)"));
    }
    report
}
