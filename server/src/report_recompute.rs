//! `yunwei-server report recompute FILE`: verifies a report file of any format as `report
//! verify` does, finds the evidence file its signed data names (`*.evidence.json`, by
//! SHA-256), computes every figure again from it with the same engine and report model, and
//! names each figure that differs. No server, no database.
//!
//! Exit status: 0 every figure matches (`OK`), 1 figures differ (each named), 2 the report
//! cannot be recomputed (its signature does not verify with the given key, it names no
//! evidence file, or the evidence file is missing, not the one named, or unreadable).

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

use yunwei_reports::{VerifyOptions, recompute};

/// What the command line gives.
pub struct Args {
    pub file: PathBuf,
    /// The evidence file; default: the name the report gives, beside `file`.
    pub evidence: Option<PathBuf>,
    /// Public key file (64 hex digits).
    pub public_key: PathBuf,
    /// PDF font path (pages compared) and whether uncompared pages are accepted.
    pub font: Option<PathBuf>,
    pub allow_uncompared_pages: bool,
}

/// Exit status of a recomputation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every figure matches.
    Ok = 0,
    /// Figures differ.
    Differs = 1,
    /// Not recomputed.
    Refused = 2,
}

/// The evidence file of `file`, compressed or not: `named` (the report's name for it) or
/// `named.gz` beside `file`, else `file`'s stem with `.evidence.json` or `.evidence.json.gz`;
/// the first that exists (none: `named` beside `file`, for the message).
fn find_evidence(file: &Path, named: &str) -> PathBuf {
    use yunwei_reports::evidence_file::{GZ_SUFFIX, SUFFIX};
    let dir = file.parent().unwrap_or(Path::new("."));
    let beside = dir.join(named);
    let mut candidates = vec![beside.clone(), dir.join(format!("{named}.gz"))];
    if let Some(stem) = file.file_stem().map(|s| s.to_string_lossy().into_owned()) {
        candidates.push(dir.join(format!("{stem}{SUFFIX}")));
        candidates.push(dir.join(format!("{stem}{GZ_SUFFIX}")));
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or(beside)
}

/// Runs the command, writing its findings to `out` and its refusals to `err`.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Status> {
    let file = &args.file;
    let key = crate::report_keys::load_public(&args.public_key)?;
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    let font_path = args.font.clone().or_else(|| {
        let p = PathBuf::from(crate::reports::DEFAULT_FONT);
        p.exists().then_some(p)
    });
    let font = match (&font_path, bytes.starts_with(b"%PDF-")) {
        (Some(path), true) => Some(crate::reports::load_font(Some(path))?),
        _ => None,
    };
    let verified = match yunwei_reports::verify_with(
        &bytes,
        &key,
        &VerifyOptions {
            font: font.as_ref(),
            allow_uncompared_pages: args.allow_uncompared_pages,
        },
    ) {
        Ok(v) => v,
        Err(e) => {
            writeln!(
                err,
                "{}: NOT RECOMPUTED: the report does not verify: {e}",
                file.display()
            )?;
            writeln!(
                err,
                "  only a report whose signature verifies with the given public key is \
                 recomputed (key file {})",
                args.public_key.display()
            )?;
            return Ok(Status::Refused);
        }
    };
    let c = &verified.report.cover;
    writeln!(
        out,
        "{}: signature OK ({}, key {}): contract {} period {} version {}, sha256 {}",
        file.display(),
        verified.format,
        verified.key_id,
        c.contract_id,
        c.period.label,
        c.version,
        verified.sha256
    )?;
    if !verified.content_checked {
        writeln!(
            out,
            "  PAGES NOT COMPARED (--allow-uncompared-pages): the figures recomputed are the \
             embedded signed data's; the pages shown may differ from it (pass --font to compare \
             them)"
        )?;
    }
    let Some(named) = verified.report.evidence_file.as_ref() else {
        writeln!(
            err,
            "{}: NOT RECOMPUTED: {}",
            file.display(),
            recompute::RecomputeError::NoEvidenceFile
        )?;
        return Ok(Status::Refused);
    };
    let evidence_path = args
        .evidence
        .clone()
        .unwrap_or_else(|| find_evidence(file, &named.name));
    let evidence = match std::fs::read(&evidence_path) {
        Ok(b) => b,
        Err(e) => {
            writeln!(
                err,
                "{}: NOT RECOMPUTED: cannot read the evidence file {}: {e} (the report names \
                 {}, {} bytes, SHA-256 {}; give its path with --evidence)",
                file.display(),
                evidence_path.display(),
                named.name,
                named.bytes,
                named.sha256
            )?;
            return Ok(Status::Refused);
        }
    };
    let t = Instant::now();
    let outcome = match recompute::recompute(&verified.report, &evidence) {
        Ok(o) => o,
        Err(e) => {
            writeln!(
                err,
                "{}: NOT RECOMPUTED: {}: {e}",
                file.display(),
                evidence_path.display()
            )?;
            return Ok(Status::Refused);
        }
    };
    let secs = t.elapsed().as_secs_f64();
    writeln!(
        out,
        "  evidence {} ({} bytes, SHA-256 {}): the file the signed report names",
        evidence_path.display(),
        named.bytes,
        named.sha256
    )?;
    if outcome.differences.is_empty() {
        writeln!(out, "OK")?;
        writeln!(
            out,
            "  every figure recomputed from the evidence matches the report ({} values \
             compared, {secs:.2} s)",
            outcome.compared
        )?;
        Ok(Status::Ok)
    } else {
        writeln!(
            out,
            "DIFFERS: {} of {} values differ from the recomputation from the evidence file \
             (report value, recomputed value):",
            outcome.differences.len(),
            outcome.compared
        )?;
        for d in &outcome.differences {
            writeln!(out, "  {d}")?;
        }
        Ok(Status::Differs)
    }
}
