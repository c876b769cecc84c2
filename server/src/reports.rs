//! Report generation and the signed report archive.
//!
//! [`prepare`] reads the store (evidence of one contract over one period, earlier archived
//! scores for the trend), runs the assessment engine and builds the report model
//! (`yunwei_reports::from_assessment`); [`generate`] signs it with the server's report key,
//! renders the requested formats and archives them. It only reads the store and inserts into
//! the `reports` / `report_files` tables, so `yunwei-server report generate` is safe while the
//! server runs (SQLite WAL with a busy timeout; it never takes the ingest writer's role).
//!
//! The archive is immutable: regenerating a contract's period makes version N+1 and keeps the
//! earlier versions. Each version keeps its signed canonical JSON and every rendered file
//! byte for byte (re-rendering would depend on the font file installed at the time).
//!
//! API: `GET /api/v1/reports`, `POST /api/v1/reports`, `GET /api/v1/reports/{id}/{format}`.
//!
//! The schedule ([`run_due_reports`]) makes each closed period's report once and queues its
//! mail to the contract's `report:` recipients; [`crate::report_mail`] delivers it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use yunwei_reports::{
    Lang, Report, SignedReport,
    evidence_file::{self, AuditHead, EvidenceFile, Stated, StatedLifecycle},
    from_assessment, integrity,
    model::{EvidenceFileRef, Grade, Stage, TrendPoint},
    pdf::PdfFont,
};
use yunwei_sla::assess::{self, Period};

use crate::{
    config::ServerConfig,
    contracts::{Contracts, LoadedContract},
    metrics::Metrics,
    store::{Store, reports::ReportRow},
};

/// The scheduled-reports service: generation when a period's report falls due, and the mail of
/// archived reports to their contract's recipients.
pub struct Reports {
    pub config: Arc<ServerConfig>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub contracts: Arc<Contracts>,
}

/// The PDF font used when none is configured (Debian `fonts-noto-cjk`).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

/// A rendered format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Html,
    Pdf,
    Xlsx,
    Json,
}

impl ReportFormat {
    /// Every format.
    pub const ALL: [ReportFormat; 4] = [
        ReportFormat::Html,
        ReportFormat::Pdf,
        ReportFormat::Xlsx,
        ReportFormat::Json,
    ];

    /// File extension and name in the API.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Html => "html",
            ReportFormat::Pdf => "pdf",
            ReportFormat::Xlsx => "xlsx",
            ReportFormat::Json => "json",
        }
    }

    /// HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Html => "text/html; charset=utf-8",
            ReportFormat::Pdf => "application/pdf",
            ReportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
            ReportFormat::Json => "application/json",
        }
    }

    /// Parses one name.
    pub fn parse(s: &str) -> Option<ReportFormat> {
        ReportFormat::ALL
            .into_iter()
            .find(|f| f.name() == s.trim().to_ascii_lowercase())
    }

    /// Parses a comma-separated list (`html,pdf`); duplicates collapse, order is kept sorted.
    pub fn parse_list(s: &str) -> Result<Vec<ReportFormat>, String> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            match ReportFormat::parse(part) {
                Some(f) => out.push(f),
                None => return Err(format!("unknown format {part:?} (html, pdf, xlsx, json)")),
            }
        }
        if out.is_empty() {
            return Err("no format given (html, pdf, xlsx, json)".into());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Parses a language tag (`zh-CN` or `en`).
pub fn parse_lang(s: &str) -> Result<Lang, String> {
    match s.trim() {
        "zh-CN" | "zh" | "zh-cn" => Ok(Lang::ZhCn),
        "en" | "en-US" | "en-GB" => Ok(Lang::En),
        other => Err(format!("unknown language {other:?} (zh-CN, en)")),
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Request {
    /// Period label: `2026-10`, `2026-Q3`, `2026` or `2026-10-01..2026-10-15`.
    pub period: String,
    pub formats: Vec<ReportFormat>,
    pub lang: Lang,
    /// PDF font file; `None`: [`DEFAULT_FONT`].
    pub font: Option<PathBuf>,
    /// Who asked: `cli`, `api`, `schedule`.
    pub origin: String,
    /// Notes for the report's appendix (e.g. that the data is simulated).
    pub notes: Vec<String>,
    /// How long each CPU-heavy step (assessing and building; signing and rendering) may take
    /// on its blocking thread ([`crate::compute::run`]); `None`: no limit (command line,
    /// schedule).
    pub compute_limit: Option<std::time::Duration>,
}

/// One archived report version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchivedReport {
    pub id: i64,
    pub contract_id: String,
    pub period: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub version: i64,
    pub lang: String,
    pub generated_ms: i64,
    /// Score, thousandths.
    pub score_milli: i64,
    pub grade: String,
    pub provisional: bool,
    pub sha256: String,
    pub origin: String,
    /// Formats stored for this version.
    pub formats: Vec<String>,
    /// Whether the version has its evidence file (`GET /api/v1/reports/{id}/evidence`; every
    /// version made since evidence files exist).
    pub evidence_file: bool,
    /// Its mail to the contract's recipients (scheduled reports of contracts with a `report:`
    /// block), with every attempt.
    pub delivery: Option<crate::report_mail::Delivery>,
    /// Where the version stands in its period's lifecycle (contracts with a `lifecycle:`,
    /// in listings: [`crate::appeals::annotate_versions`]); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<crate::appeals::VersionState>,
}

/// A generated and archived report.
#[derive(Debug)]
pub struct Generated {
    pub archived: ArchivedReport,
    pub signed: SignedReport,
    /// The rendered files, in the order requested.
    pub files: Vec<(ReportFormat, Vec<u8>)>,
    /// The evidence file every format names, gzip-compressed as archived
    /// (`*.evidence.json.gz`; the report names the uncompressed bytes' size and SHA-256).
    pub evidence: Vec<u8>,
}

/// The archive's name for a version's evidence file (`report_files.format`, and the API's
/// `GET /api/v1/reports/{id}/evidence`); not one of the rendered formats. Stored
/// gzip-compressed since issue 21's evidence-size fix (older versions' rows are plain JSON;
/// readers tell them apart with `evidence_file::is_gzip`).
pub const EVIDENCE: &str = "evidence";

fn grade_name(g: Grade) -> &'static str {
    match g {
        Grade::Excellent => "excellent",
        Grade::Good => "good",
        Grade::Pass => "pass",
        Grade::Fair => "fair",
        Grade::Fail => "fail",
        Grade::Withheld => "withheld",
    }
}

pub(crate) fn grade_from_name(s: &str) -> Grade {
    match s {
        "excellent" => Grade::Excellent,
        "good" => Grade::Good,
        "pass" => Grade::Pass,
        "fair" => Grade::Fair,
        "withheld" => Grade::Withheld,
        _ => Grade::Fail,
    }
}

/// Loads the PDF font: `path` or [`DEFAULT_FONT`]; a collection uses its simplified-Chinese
/// face when it has one.
pub fn load_font(path: Option<&Path>) -> anyhow::Result<PdfFont> {
    let path = path.unwrap_or(Path::new(DEFAULT_FONT));
    let data = std::fs::read(path).with_context(|| {
        format!(
            "the PDF needs a CJK font: cannot read {} (install Debian fonts-noto-cjk, or name a \
             TrueType/OpenType font with `--font FILE`)",
            path.display()
        )
    })?;
    let data = Arc::new(data);
    PdfFont::new(data.clone(), PdfFont::NOTO_CJK_SC_INDEX)
        .or_else(|_| PdfFont::new(data, 0))
        .map_err(|_| {
            anyhow::anyhow!(
                "{}: not a font with Chinese characters (use `--font FILE`)",
                path.display()
            )
        })
}

/// Earlier archived periods of `contract_id` of the same kind as `label` (months for a
/// month, ...) ending at or before `before_ms`: the latest version of each, oldest first, at
/// most `max`.
pub async fn trend(
    store: &Store,
    contract_id: &str,
    label: &str,
    before_ms: i64,
    max: usize,
) -> anyhow::Result<Vec<TrendPoint>> {
    let kind = from_assessment::period_kind(label);
    let rows = store.report_scores(contract_id, before_ms).await?;
    let mut out: Vec<TrendPoint> = Vec::new();
    for r in rows {
        if from_assessment::period_kind(&r.period) != kind {
            continue;
        }
        let p = TrendPoint {
            period: r.period,
            score: yunwei_reports::Fixed(r.score_milli),
            grade: grade_from_name(&r.grade),
        };
        // Rows are ordered by version within a period: the last one wins.
        match out.last_mut() {
            Some(last) if last.period == p.period => *last = p,
            _ => out.push(p),
        }
    }
    let skip = out.len().saturating_sub(max);
    Ok(out.split_off(skip))
}

async fn next_version(store: &Store, contract_id: &str, period: &str) -> anyhow::Result<i64> {
    Ok(store.report_max_version(contract_id, period).await? + 1)
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The period is malformed or has not started: the caller's mistake.
    #[error("{0}")]
    Period(String),
    /// A CPU-heavy step did not finish within `Request::compute_limit` (or panicked).
    #[error(transparent)]
    Compute(#[from] crate::compute::ComputeError),
    /// Anything else (the store, rendering, the archive).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<crate::contracts::ContractError> for ReportError {
    fn from(e: crate::contracts::ContractError) -> ReportError {
        match e {
            crate::contracts::ContractError::Period(e) => ReportError::Period(e.to_string()),
            crate::contracts::ContractError::Compute(e) => ReportError::Compute(e),
            other => ReportError::Other(other.into()),
        }
    }
}

impl From<sqlx::Error> for ReportError {
    fn from(e: sqlx::Error) -> ReportError {
        ReportError::Other(e.into())
    }
}

/// Builds the report of `c` over `req.period` as the store holds it at `now_ms` (reads
/// only). The same store, request, `version` and `now_ms` give the same report.
pub async fn prepare(
    store: &Store,
    c: &Arc<LoadedContract>,
    req: &Request,
    version: u32,
    now_ms: i64,
    inspections_recorded: bool,
) -> Result<Report, ReportError> {
    Ok(prepare_with_evidence(
        store,
        c,
        req,
        version,
        now_ms,
        inspections_recorded,
        Stage::Draft,
    )
    .await?
    .0)
}

/// Like [`prepare`], as the lifecycle `stage` (contracts with a `lifecycle:`; ignored
/// otherwise), and also the report's evidence file (`*.evidence.json`, see
/// `yunwei_reports::evidence_file`): the report is computed from that file alone, with the
/// function `report recompute` calls, and names it by its SHA-256 (`Report::evidence_file`).
/// The lifecycle's stage, the draft's issue time (the first archived version, or `now_ms`
/// when this is it) and the sign-offs recorded by `now_ms` are stated inputs of the file; the
/// deadlines are counted from them.
pub async fn prepare_with_evidence(
    store: &Store,
    c: &Arc<LoadedContract>,
    req: &Request,
    version: u32,
    now_ms: i64,
    inspections_recorded: bool,
    stage: Stage,
) -> Result<(Report, Vec<u8>), ReportError> {
    let contract = &c.contract;
    let period = Period::parse(&req.period, contract.time_zone)
        .map_err(|e| ReportError::Period(e.to_string()))?;
    crate::contracts::check_period_length(&period).map_err(ReportError::Period)?;
    if period.start_ms >= now_ms {
        return Err(ReportError::Period(format!(
            "period {} has not started yet",
            period.label
        )));
    }
    let until = now_ms.clamp(period.start_ms, period.end_ms);
    let mut ev =
        crate::contracts::gather(store, c, period.start_ms, until, inspections_recorded).await?;
    // Appeals and their review (contracts with a lifecycle): evidence like the rest.
    ev.appeals = crate::appeals::evidence(store, &contract.id, &period).await?;
    let trend = trend(store, &contract.id, &period.label, period.start_ms, 12).await?;
    // The audit chain's head at generation, so the signed report anchors the audit log too:
    // rewriting audit rows up to it no longer matches this (signed) hash.
    let (head_seq, head_hash) = store
        .audit_head()
        .await?
        .unwrap_or((0, crate::audit::GENESIS.to_string()));
    let lifecycle = match &contract.lifecycle {
        None => None,
        Some(_) => {
            let issued = match crate::appeals::window(store, c, &req.period)
                .await
                .map_err(|e| ReportError::Other(e.into()))?
            {
                Some(w) => w.draft_issued_ms,
                None => now_ms,
            };
            let mut signoffs = Vec::new();
            for s in store.signoffs(&contract.id, Some(&req.period)).await? {
                if s.signed_ms > now_ms {
                    continue;
                }
                let version = store.report(s.report_id).await?.map_or(0, |r| r.version);
                signoffs.push(yunwei_reports::model::Signoff {
                    role: s.role,
                    signed_by: s.signed_by,
                    signed_ms: s.signed_ms,
                    version: u32::try_from(version).unwrap_or(0),
                });
            }
            Some(StatedLifecycle {
                stage,
                draft_issued_ms: issued,
                signoffs,
            })
        }
    };
    let (contract_file, calendars) = c.sources();
    let file = EvidenceFile {
        schema: evidence_file::SCHEMA.to_string(),
        contract: contract_file,
        calendars,
        period: period.label.clone(),
        as_of_ms: now_ms,
        stated: Stated {
            lang: req.lang,
            version,
            generated_at_ms: now_ms,
            trend,
            alerts: from_assessment::empty_alerts(),
            notes: req.notes.clone(),
            audit_head: Some(AuditHead {
                seq: head_seq,
                sha256: head_hash,
            }),
            lifecycle,
        },
        evidence: ev,
    };
    let name = evidence_file_name(&contract.id, &period.label, version);
    // The engine, the model and the evidence file's bytes on a blocking thread; the store
    // reads above stay async. The report is computed from the evidence file alone, exactly as
    // `report recompute` computes it again.
    let (report, bytes) = crate::compute::run(req.compute_limit, move || {
        let mut report = evidence_file::build_report(&file)?;
        let bytes = evidence_file::to_bytes(&file);
        report.evidence_file = Some(EvidenceFileRef {
            schema: evidence_file::SCHEMA.to_string(),
            name,
            bytes: bytes.len() as u64,
            sha256: integrity::sha256_hex(&bytes),
        });
        anyhow::Ok((report, bytes))
    })
    .await??;
    Ok((report, bytes))
}

/// The evidence file's name beside the report's files ([`file_name`]'s stem).
pub fn evidence_file_name(contract_id: &str, period: &str, version: u32) -> String {
    format!(
        "{}-{}-v{}{}",
        clean_name(contract_id),
        clean_name(period),
        version,
        evidence_file::SUFFIX
    )
}

/// Renders `signed` in `format`.
pub fn render(
    signed: &SignedReport,
    format: ReportFormat,
    font: Option<&PdfFont>,
) -> anyhow::Result<Vec<u8>> {
    Ok(match format {
        ReportFormat::Html => yunwei_reports::html::render_string(signed).into_bytes(),
        ReportFormat::Json => yunwei_reports::json::render(signed),
        ReportFormat::Xlsx => yunwei_reports::xlsx::render(signed)?,
        ReportFormat::Pdf => {
            let font = font.context("no PDF font loaded")?;
            yunwei_reports::pdf::render(signed, font)?
        }
    })
}

/// Generates, signs (with the report key under `data_dir`, created on first use), renders and
/// archives the next version of `c`'s report for `req.period`.
pub async fn generate(
    store: &Store,
    data_dir: &Path,
    c: &Arc<LoadedContract>,
    req: &Request,
    now_ms: i64,
    inspections_recorded: bool,
    auto_assign: bool,
) -> Result<Generated, ReportError> {
    generate_staged(
        store,
        data_dir,
        c,
        req,
        now_ms,
        inspections_recorded,
        auto_assign,
        Stage::Draft,
    )
    .await
}

/// [`generate`] as the lifecycle `stage` ([`prepare_with_evidence`]).
#[allow(clippy::too_many_arguments)]
pub async fn generate_staged(
    store: &Store,
    data_dir: &Path,
    c: &Arc<LoadedContract>,
    req: &Request,
    now_ms: i64,
    inspections_recorded: bool,
    auto_assign: bool,
    stage: Stage,
) -> Result<Generated, ReportError> {
    crate::membership::sync(store, c, now_ms, auto_assign).await?;
    let font = if req.formats.contains(&ReportFormat::Pdf) {
        Some(Arc::new(load_font(req.font.as_deref())?))
    } else {
        None
    };
    let key = crate::report_keys::load_or_create(data_dir)?;
    // Another generator may take the same version between reading it and inserting: retry.
    let mut last_err = None;
    for _ in 0..3 {
        let version = next_version(store, &c.contract.id, &req.period).await?;
        let (report, evidence) = prepare_with_evidence(
            store,
            c,
            req,
            u32::try_from(version).unwrap_or(u32::MAX),
            now_ms,
            inspections_recorded,
            stage,
        )
        .await?;
        // Signing and rendering on a blocking thread, within the request's limit.
        let (key, font, formats) = (key.clone(), font.clone(), req.formats.clone());
        let (signed, files, evidence) = crate::compute::run(req.compute_limit, move || {
            let signed = integrity::sign(report, &key);
            let mut files = Vec::new();
            for f in formats {
                files.push((f, render(&signed, f, font.as_deref())?));
            }
            // Archived and served compressed; the report names the uncompressed bytes.
            let evidence = evidence_file::compress(&evidence);
            anyhow::Ok((signed, files, evidence))
        })
        .await??;
        match insert(store, &signed, &req.origin, &files, &evidence).await {
            Ok(archived) => {
                return Ok(Generated {
                    archived,
                    signed,
                    files,
                    evidence,
                });
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err
        .unwrap_or_else(|| anyhow::anyhow!("archiving the report failed"))
        .into())
}

async fn insert(
    store: &Store,
    signed: &SignedReport,
    origin: &str,
    files: &[(ReportFormat, Vec<u8>)],
    evidence: &[u8],
) -> anyhow::Result<ArchivedReport> {
    let r = &signed.report;
    let row = ReportRow {
        id: 0,
        contract_id: r.cover.contract_id.clone(),
        period: r.cover.period.label.clone(),
        start_ms: r.cover.period.start_ms,
        end_ms: r.cover.period.end_ms,
        version: i64::from(r.cover.version),
        lang: r.cover.lang.tag().to_string(),
        generated_ms: r.cover.generated_at_ms,
        score_milli: r.summary.score.0,
        grade: grade_name(r.summary.grade).to_string(),
        provisional: r.cover.provisional,
        sha256: signed.integrity.sha256.clone(),
        origin: origin.to_string(),
        formats: files
            .iter()
            .map(|(f, _)| f.name().to_string())
            .chain(std::iter::once(EVIDENCE.to_string()))
            .collect(),
    };
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(f, bytes)| (f.name(), bytes.as_slice()))
        .chain(std::iter::once((EVIDENCE, evidence)))
        .collect();
    let id = store
        .insert_report(&row, signed.envelope_json(), &files)
        .await?;
    Ok(archived_from_row(ReportRow { id, ..row }))
}

fn archived_from_row(mut r: ReportRow) -> ArchivedReport {
    let evidence_file = r.formats.iter().any(|f| f == EVIDENCE);
    r.formats.retain(|f| f != EVIDENCE);
    ArchivedReport {
        id: r.id,
        contract_id: r.contract_id,
        period: r.period,
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        version: r.version,
        lang: r.lang,
        generated_ms: r.generated_ms,
        score_milli: r.score_milli,
        grade: r.grade,
        provisional: r.provisional,
        sha256: r.sha256,
        origin: r.origin,
        formats: r.formats,
        evidence_file,
        delivery: None,
        lifecycle: None,
    }
}

/// Archived reports, optionally of one contract, newest first.
pub async fn list(store: &Store, contract_id: Option<&str>) -> anyhow::Result<Vec<ArchivedReport>> {
    let rows = store.reports(contract_id).await?;
    let mut deliveries = crate::report_mail::load(store, None).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut a = archived_from_row(r);
            a.formats.sort();
            a.delivery = deliveries.remove(&a.id);
            a
        })
        .collect())
}

/// One archived report version.
pub async fn get(store: &Store, id: i64) -> anyhow::Result<Option<ArchivedReport>> {
    let Some(r) = store.report(id).await? else {
        return Ok(None);
    };
    let mut a = archived_from_row(r);
    a.formats.sort();
    a.delivery = crate::report_mail::load(store, Some(id)).await?.remove(&id);
    Ok(Some(a))
}

/// The stored bytes of one format of an archived report.
pub async fn file(store: &Store, id: i64, format: ReportFormat) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(store.report_file(id, format.name()).await?)
}

/// The signed canonical JSON envelope of an archived report.
pub async fn envelope(store: &Store, id: i64) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(store.report_envelope(id).await?)
}

/// File name for a download: `CONTRACT-PERIOD-vN.EXT` with anything but `[A-Za-z0-9._-]`
/// replaced by `_`.
pub fn file_name(a: &ArchivedReport, format: ReportFormat) -> String {
    format!(
        "{}-{}-v{}.{}",
        clean_name(&a.contract_id),
        clean_name(&a.period),
        a.version,
        format.name()
    )
}

fn clean_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `yunwei-server report generate`: what the command line gives.
#[derive(Debug, Clone)]
pub struct CliGenerate {
    /// The server's config file (store, data dir, contracts).
    pub config: Option<PathBuf>,
    /// `--data-dir` / `--database-url` (override the file).
    pub overrides: crate::config::Overrides,
    /// Contract files in addition to the config's (needed without `--config`).
    pub contract_files: Vec<PathBuf>,
    pub contract: String,
    pub request: Request,
    /// Folder the files are written to (created if needed).
    pub out: PathBuf,
}

/// Runs `report generate`: opens the same store as `serve` (read-only use plus the archive
/// insert), generates, archives and writes the files to `out`. Returns the archived version
/// and the paths written.
pub async fn run_cli(
    args: &CliGenerate,
    now_ms: i64,
) -> anyhow::Result<(ArchivedReport, Vec<PathBuf>)> {
    let config = match &args.config {
        Some(path) => crate::config::ServerConfig::load(path, &args.overrides),
        None => crate::config::ServerConfig::from_overrides(&args.overrides),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut files = config.contracts.files.clone();
    files.extend(args.contract_files.iter().cloned());
    let contracts = crate::contracts::load(&files).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(c) = contracts.iter().find(|c| c.contract.id == args.contract) else {
        let known: Vec<&str> = contracts.iter().map(|c| c.contract.id.as_str()).collect();
        bail!(
            "no contract {:?} (known: {}; name contract files with --config or --contract-file)",
            args.contract,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    if !config.is_postgres() && !config.data_dir.exists() {
        bail!(
            "data directory {} does not exist (use the same --data-dir or --config as `serve`)",
            config.data_dir.display()
        );
    }
    let store =
        crate::store::Store::open(&config.database_url, config.ingest.sqlite_synchronous_full)
            .await
            .context("opening the store")?;
    let result = generate(
        &store,
        &config.data_dir,
        c,
        &args.request,
        now_ms,
        config.contracts.run_inspections,
        config.contracts.auto_assign_from_labels,
    )
    .await;
    if let Ok(g) = &result {
        crate::appeals::draft_issued(&store, &config.notify.external_url, c, &g.archived, now_ms)
            .await;
    }
    store.close().await;
    let g = result?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut written = Vec::new();
    for (f, bytes) in &g.files {
        let path = args.out.join(file_name(&g.archived, *f));
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let path = args.out.join(format!(
        "{}.gz",
        evidence_file_name(
            &g.archived.contract_id,
            &g.archived.period,
            u32::try_from(g.archived.version).unwrap_or(u32::MAX),
        )
    ));
    std::fs::write(&path, &g.evidence).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok((g.archived, written))
}

/// The periods of `c` whose scheduled report is due at `now_ms`: the previous month from the
/// 1st at 02:00 contract-local, the previous quarter and year likewise; each for seven days
/// after it closes (a server down longer than that does not backfill old periods), and only
/// while the contract runs.
pub fn due_periods(c: &yunwei_sla::contract::Contract, now_ms: i64) -> Vec<Period> {
    use chrono::Datelike;
    const DUE_AFTER_MS: i64 = 2 * 3_600_000;
    const CATCH_UP_MS: i64 = 7 * 86_400_000;
    let tz = c.time_zone;
    let today = assess::local_date(now_ms, tz);
    let (y, m) = (today.year(), today.month());
    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    let mut candidates = Vec::new();
    candidates.extend(Period::month(py, pm, tz));
    if m % 3 == 1 {
        let (qy, q) = if m == 1 { (y - 1, 4) } else { (y, (m - 1) / 3) };
        candidates.extend(Period::quarter(qy, q, tz));
    }
    if m == 1 {
        candidates.extend(Period::year(y - 1, tz));
    }
    candidates
        .into_iter()
        .filter(|p| {
            let due = p.end_ms + DUE_AFTER_MS;
            now_ms >= due
                && now_ms < p.end_ms + CATCH_UP_MS
                && p.end >= c.period.start
                && p.start <= c.period.end
        })
        .collect()
}

/// The first scheduled report of `contract_id`'s `period` in `lang`, if one was made.
async fn scheduled_report(
    store: &Store,
    contract_id: &str,
    period: &str,
    lang: Lang,
) -> anyhow::Result<Option<i64>> {
    Ok(store
        .first_scheduled_report(contract_id, period, lang.tag())
        .await?)
}

/// The formats and languages of `c`'s scheduled reports: its `report:` block, else every
/// format in zh-CN. PDF is left out (with a warning) when the default font is not installed.
pub(crate) fn scheduled_formats(c: &LoadedContract) -> (Vec<ReportFormat>, Vec<Lang>) {
    use yunwei_sla::contract::{ReportFileFormat, ReportLanguage};
    let (mut formats, langs) = match &c.contract.report {
        None => (ReportFormat::ALL.to_vec(), vec![Lang::ZhCn]),
        Some(r) => (
            r.formats
                .iter()
                .map(|f| match f {
                    ReportFileFormat::Html => ReportFormat::Html,
                    ReportFileFormat::Pdf => ReportFormat::Pdf,
                    ReportFileFormat::Xlsx => ReportFormat::Xlsx,
                    ReportFileFormat::Json => ReportFormat::Json,
                })
                .collect(),
            match r.language {
                ReportLanguage::ZhCn => vec![Lang::ZhCn],
                ReportLanguage::En => vec![Lang::En],
                ReportLanguage::Both => vec![Lang::ZhCn, Lang::En],
            },
        ),
    };
    if formats.contains(&ReportFormat::Pdf) && !Path::new(DEFAULT_FONT).exists() {
        tracing::warn!(
            font = DEFAULT_FONT,
            contract = %c.contract.id,
            "no CJK font installed: the scheduled report is made without PDF"
        );
        formats.retain(|f| *f != ReportFormat::Pdf);
    }
    if formats.is_empty() {
        formats.push(ReportFormat::Json);
    }
    (formats, langs)
}

/// Generates and archives every scheduled report due at `now_ms` that was not generated yet
/// (restart safe: the archive says what was done), and queues the mail of each (new or made
/// before) to the contract's `report:` recipients once. Contracts take part when they set
/// `report_due_working_day`. Returns the reports made by this call.
pub async fn run_due_reports(state: &Reports, now_ms: i64) -> anyhow::Result<Vec<ArchivedReport>> {
    let contracts: Vec<Arc<LoadedContract>> = state
        .contracts
        .list()
        .iter()
        .filter(|c| c.contract.report_due_working_day.is_some())
        .cloned()
        .collect();
    let mut done = Vec::new();
    // When monitoring began: a period that closed before it is not reported at all (there is
    // nothing to assess; a report would claim a month nobody watched). Read once, and only
    // when some period is due and not made yet.
    let mut began: Option<Option<i64>> = None;
    for c in contracts {
        done.extend(reissue_closed_incidents(state, &c, now_ms).await?);
        let periods = due_periods(&c.contract, now_ms);
        if periods.is_empty() {
            continue;
        }
        let (formats, langs) = scheduled_formats(&c);
        for p in periods {
            for &lang in &langs {
                let id =
                    match scheduled_report(&state.store, &c.contract.id, &p.label, lang).await? {
                        Some(id) => id,
                        None => {
                            if began.is_none() {
                                began = Some(state.store.first_interval_ms().await?);
                            }
                            if began.flatten().is_none_or(|t| t >= p.end_ms) {
                                tracing::info!(
                                    contract = %c.contract.id,
                                    period = %p.label,
                                    "no scheduled report: the period closed before monitoring \
                                     began (no status evidence before its end)"
                                );
                                continue;
                            }
                            let req = Request {
                                period: p.label.clone(),
                                formats: formats.clone(),
                                lang,
                                font: None,
                                origin: "schedule".into(),
                                notes: Vec::new(),
                                compute_limit: None,
                            };
                            let g = generate(
                                &state.store,
                                &state.config.data_dir,
                                &c,
                                &req,
                                now_ms,
                                state.config.contracts.run_inspections,
                                state.config.contracts.auto_assign_from_labels,
                            )
                            .await
                            .with_context(|| {
                                format!("scheduled report {} {}", c.contract.id, p.label)
                            })?;
                            tracing::info!(
                                contract = %c.contract.id,
                                period = %g.archived.period,
                                version = g.archived.version,
                                id = g.archived.id,
                                "scheduled report archived"
                            );
                            let id = g.archived.id;
                            crate::appeals::draft_issued(
                                &state.store,
                                &state.config.notify.external_url,
                                &c,
                                &g.archived,
                                now_ms,
                            )
                            .await;
                            done.push(g.archived);
                            id
                        }
                    };
                if let Some(r) = &c.contract.report {
                    let smtp = state.config.notify.smtp.is_some();
                    let queued = crate::report_mail::enqueue(
                        &state.store,
                        id,
                        &c.contract.id,
                        &r.to,
                        &r.cc,
                        (!smtp).then_some(crate::report_mail::NO_SMTP),
                        now_ms,
                    )
                    .await?;
                    if queued && !smtp {
                        tracing::warn!(
                            contract = %c.contract.id,
                            period = %p.label,
                            id,
                            "scheduled report archived; notify.smtp is not configured, so its \
                             mail to the contract's recipients waits until it is"
                        );
                    }
                }
            }
        }
    }
    Ok(done)
}

/// The incidents (evidence ids, `incident:<id>`) a report lists as not restored.
fn open_in_report(report: &yunwei_reports::model::Report) -> Vec<String> {
    report
        .incidents
        .iter()
        .filter(|i| i.restored_ms.is_none())
        .map(|i| i.id.clone())
        .collect()
}

/// Re-issues the scheduled reports of `c` whose incidents were open when they were made and
/// have closed since: a period's report stays provisional while an incident it assesses is
/// open, and the schedule makes a new version (origin `schedule`, mailed like the first) as
/// soon as one of them is restored, with the exact late minutes. The latest version of each
/// period and language that has a scheduled report is looked at; only provisional ones are
/// read. Returns the new versions.
pub async fn reissue_closed_incidents(
    state: &Reports,
    c: &Arc<LoadedContract>,
    now_ms: i64,
) -> anyhow::Result<Vec<ArchivedReport>> {
    let rows = state.store.reports(Some(&c.contract.id)).await?;
    // Newest first: the first row of each (period, lang) is its latest version.
    let mut latest: BTreeMap<(String, String), &ReportRow> = BTreeMap::new();
    let mut scheduled: std::collections::BTreeSet<(String, String)> = Default::default();
    for r in &rows {
        let key = (r.period.clone(), r.lang.clone());
        if r.origin == "schedule" {
            scheduled.insert(key.clone());
        }
        latest
            .entry(key)
            .and_modify(|cur| {
                if r.version > cur.version {
                    *cur = r;
                }
            })
            .or_insert(r);
    }
    let mut restored: Option<BTreeMap<String, i64>> = None;
    let mut made = Vec::new();
    for (key, r) in latest {
        if !r.provisional || !scheduled.contains(&key) || r.end_ms > now_ms {
            continue;
        }
        let Some(env) = state.store.report_envelope(r.id).await? else {
            continue;
        };
        let signed: SignedReport = serde_json::from_slice(&env)
            .with_context(|| format!("archived report {} does not parse", r.id))?;
        let open = open_in_report(&signed.report);
        if open.is_empty() {
            continue;
        }
        if restored.is_none() {
            restored = Some(
                state
                    .store
                    .incidents(false)
                    .await?
                    .into_iter()
                    .filter_map(|i| Some((format!("incident:{}", i.id), i.restored_ms?)))
                    .collect(),
            );
        }
        let closed = restored.as_ref().is_some_and(|m| {
            open.iter()
                .any(|id| m.get(id).is_some_and(|t| *t <= now_ms))
        });
        if !closed {
            continue;
        }
        let Ok(lang) = parse_lang(&r.lang) else {
            continue;
        };
        let formats = r
            .formats
            .iter()
            .filter_map(|f| ReportFormat::parse(f))
            .collect();
        let req = Request {
            period: r.period.clone(),
            formats,
            lang,
            font: None,
            origin: "schedule".into(),
            notes: Vec::new(),
            compute_limit: None,
        };
        let g = generate(
            &state.store,
            &state.config.data_dir,
            c,
            &req,
            now_ms,
            state.config.contracts.run_inspections,
            state.config.contracts.auto_assign_from_labels,
        )
        .await
        .with_context(|| format!("re-issuing report {} {}", c.contract.id, r.period))?;
        tracing::info!(
            contract = %c.contract.id,
            period = %g.archived.period,
            version = g.archived.version,
            id = g.archived.id,
            "scheduled report re-issued: an incident it assessed as open has closed"
        );
        if let Some(d) = &c.contract.report {
            let smtp = state.config.notify.smtp.is_some();
            crate::report_mail::enqueue(
                &state.store,
                g.archived.id,
                &c.contract.id,
                &d.to,
                &d.cc,
                (!smtp).then_some(crate::report_mail::NO_SMTP),
                now_ms,
            )
            .await?;
        }
        made.push(g.archived);
    }
    Ok(made)
}

/// Every five minutes makes the scheduled reports that are due; every 30 seconds mails the
/// queued ones that are due (first attempts and retries).
pub async fn schedule_loop(state: Arc<Reports>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if n.is_multiple_of(10)
            && let Err(e) = run_due_reports(&state, crate::now_ms()).await
        {
            tracing::error!(error = %format!("{e:#}"), "scheduled reports failed");
        }
        if n.is_multiple_of(10)
            && let Err(e) = crate::appeals::run_due_finals(&state, crate::now_ms()).await
        {
            tracing::error!(error = %format!("{e:#}"), "final reports failed");
        }
        n += 1;
        if let Err(e) = crate::report_mail::deliver_due(&state, crate::now_ms()).await {
            tracing::error!(error = %format!("{e:#}"), "mailing scheduled reports failed");
        }
        if let Err(e) = crate::lifecycle_mail::deliver_due(&state, crate::now_ms()).await {
            tracing::error!(error = %format!("{e:#}"), "mailing lifecycle steps failed");
        }
    }
}
