//! Report benchmark: a monthly report for 1,000 hosts / 5,000 probes / 30 days seeded into
//! SQLite (simulated history, see `yunwei_server::demo`), timed step by step: store queries
//! (evidence), assessment + report model from the evidence file, the evidence file itself,
//! signature, HTML, XLSX, JSON, PDF separately, and `report recompute` of each format.
//! Afterwards, for comparison: the bare rollup fetch, and the evidence query with half the
//! month's derived KPI rows removed (older data), which must give the same evidence.
//!
//! `cargo run --release -p yunwei-server --example monthly_report_bench [-- HOSTS PROBES_PER_HOST]`
//! (`BENCH_DB=/path/bench.db` keeps the seeded database for the next run;
//! `BENCH_DB=postgres://...` uses PostgreSQL)

use std::path::PathBuf;
use std::time::Instant;

use yunwei_reports::{Lang, evidence_file, from_assessment, integrity};
use yunwei_server::{contracts, demo, reports, store::Store};
use yunwei_sla::assess::Period;

const TARGET_S: f64 = 3.0;
const PEER_ROLLUP_QUERIES_S: f64 = 4.5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let hosts: usize = args.get(1).map_or(Ok(1000), |s| s.parse())?;
    let probes_per_host: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let systems = 10;
    let dir = tempfile::tempdir()?;
    let mut yaml = String::from(
        "id: bench\nname: 基准测试合同（模拟数据）\nparties: { buyer: 甲方, vendor: 乙方 }\n\
         period: { start: 2026-01-01, end: 2026-12-31 }\nfee: { amount: 1200000, per: year }\n\
         systems:\n",
    );
    for k in 0..systems {
        yaml.push_str(&format!(
            "  - {{ id: s{k}, name: 系统{k}, tier: core, hosts: {{ system: s{k} }}, probes: {{ system: s{k} }} }}\n"
        ));
    }
    yaml.push_str(
        "objectives:\n  availability:\n    core: { target_percent: 99.95, min_outage: 5m, missing_data: excluded }\n\
         \x20 resources:\n\
         \x20   - { id: cpu-p95, name: CPU P95, metric: cpu_usage_ratio, aggregate: p95_hourly_mean, below: 0.8 }\n\
         \x20   - { id: disk-max, name: 磁盘峰值, metric: disk_used_ratio, aggregate: max, below: 0.85 }\n\
         scoring:\n  base: 100\n  deductions:\n\
         \x20   - { id: availability, name: 可用性未达标, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }\n\
         \x20   - { id: resources, name: 资源指标超标, kind: resource_breach, points: 1, cap: 5 }\n\
         grades:\n  - { id: pass, name: 合格, name_en: Pass, min_score: 60, payment_percent: 100 }\n\
         \x20 - { id: fail, name: 不合格, name_en: Fail, min_score: 0, payment_percent: 70 }\n",
    );
    let path = dir.path().join("bench.yml");
    std::fs::write(&path, yaml)?;
    let c = contracts::load_file(&path).map_err(|e| anyhow::anyhow!(e))?;
    let period = Period::parse("2026-10", c.contract.time_zone)?;
    // BENCH_DB=path keeps the seeded database for later runs (seeding is slow and untimed);
    // BENCH_DB=postgres://... runs against PostgreSQL.
    let db = std::env::var("BENCH_DB")
        .unwrap_or_else(|_| dir.path().join("bench.db").display().to_string());
    let url = if db.starts_with("postgres") {
        db.clone()
    } else {
        format!("sqlite://{db}")
    };
    let store = Store::open(&url, false).await?;

    let t = Instant::now();
    let per = hosts / systems;
    let spec = demo::DemoSpec {
        systems: (0..systems)
            .map(|k| (format!("s{k}"), per, probes_per_host))
            .collect(),
        from_ms: period.start_ms - 3_600_000,
        to_ms: period.end_ms + 3_600_000,
    };
    let seeded = demo::seed(&store, &spec).await?;
    if seeded.already_seeded {
        println!("reusing the database seeded earlier at {db}");
    }
    println!(
        "seeded {} hosts, {} probes, {} intervals, {} hourly rollups in {:.1} s (not timed below)",
        seeded.hosts,
        seeded.probes,
        seeded.intervals,
        seeded.rollups,
        t.elapsed().as_secs_f64()
    );
    let now = period.end_ms + 86_400_000;
    // Membership as the server's pass makes it: the seeded hosts and probes, first seen.
    yunwei_server::membership::sync(&store, &c, now, true).await?;

    let t0 = Instant::now();
    let ev = contracts::gather(&store, &c, period.start_ms, period.end_ms, false).await?;
    let t1 = Instant::now();
    // As `reports::prepare_with_evidence` does: the report is computed from its evidence file.
    let (contract_file, calendars) = c.sources();
    let file = evidence_file::EvidenceFile {
        schema: evidence_file::SCHEMA.to_string(),
        contract: contract_file,
        calendars,
        period: period.label.clone(),
        as_of_ms: now,
        stated: evidence_file::Stated {
            lang: Lang::ZhCn,
            version: 1,
            generated_at_ms: now,
            trend: reports::trend(&store, "bench", &period.label, period.start_ms, 12).await?,
            alerts: from_assessment::empty_alerts(),
            notes: vec![],
            audit_head: None,
            lifecycle: None,
        },
        evidence: ev,
    };
    // The engine alone, for the breakdown (not in the total).
    let a0 = Instant::now();
    let (bc, bcal, bp) = evidence_file::load_inputs(&file)?;
    let engine = yunwei_sla::assess::assess(&bc, &bcal, &bp, now, &file.evidence);
    let assess_s = a0.elapsed().as_secs_f64();
    drop(engine);
    let t1b = Instant::now();
    let mut report = evidence_file::build_report(&file)?;
    let t2 = Instant::now();
    let evidence_bytes = evidence_file::to_bytes(&file);
    report.evidence_file = Some(yunwei_reports::model::EvidenceFileRef {
        schema: evidence_file::SCHEMA.to_string(),
        name: reports::evidence_file_name("bench", &period.label, 1),
        bytes: evidence_bytes.len() as u64,
        sha256: integrity::sha256_hex(&evidence_bytes),
    });
    // Archived, served and written gzip-compressed, as `reports::generate` does.
    let gz0 = Instant::now();
    let evidence_gz = evidence_file::compress(&evidence_bytes);
    let t2b = Instant::now();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let signed = integrity::sign(report, &key);
    let t3 = Instant::now();
    let html = reports::render(&signed, reports::ReportFormat::Html, None)?;
    let t4 = Instant::now();
    let xlsx = reports::render(&signed, reports::ReportFormat::Xlsx, None)?;
    let t5 = Instant::now();
    let json = reports::render(&signed, reports::ReportFormat::Json, None)?;
    let t6 = Instant::now();
    let pdf = match reports::load_font(None) {
        Ok(font) => {
            let p0 = Instant::now();
            let bytes = reports::render(&signed, reports::ReportFormat::Pdf, Some(&font))?;
            Some((p0.elapsed().as_secs_f64(), bytes))
        }
        Err(e) => {
            eprintln!("PDF not timed: {e:#}");
            None
        }
    };
    // `report recompute` of each format, as the command runs it (reading the files, verifying
    // the signature and the shown content, inflating, hashing and parsing the evidence file,
    // the assessment and the report model again, comparing every value), in this process,
    // with the compressed evidence file as `report generate` writes it; then the JSON file
    // once more with the plain (gunzipped) evidence file.
    let files_dir = tempfile::tempdir_in(dir.path())?;
    let evidence_name = reports::evidence_file_name("bench", &period.label, 1);
    let gz_path = files_dir.path().join(format!("{evidence_name}.gz"));
    std::fs::write(&gz_path, &evidence_gz)?;
    let plain_dir = tempfile::tempdir_in(dir.path())?;
    let plain_path = plain_dir.path().join(&evidence_name);
    std::fs::write(&plain_path, &evidence_bytes)?;
    let public = files_dir.path().join("report-signing.pub");
    std::fs::write(&public, hex::encode(key.verifying_key().as_bytes()))?;
    let mut recomputed = Vec::new();
    let mut formats: Vec<(&str, &[u8], Option<PathBuf>)> = vec![
        ("json", &json, None),
        ("html", &html, None),
        ("xlsx", &xlsx, None),
    ];
    if let Some((_, p)) = &pdf {
        formats.push(("pdf", p, None));
    }
    formats.push(("json", &json, Some(plain_path.clone())));
    for (ext, bytes, evidence) in formats {
        let path = files_dir
            .path()
            .join(format!("bench-{}-v1.{ext}", period.label));
        std::fs::write(&path, bytes)?;
        let label = if evidence.is_some() {
            format!("{ext} file with the plain evidence file")
        } else {
            format!("{ext} file")
        };
        let args = yunwei_server::report_recompute::Args {
            file: path,
            evidence,
            public_key: public.clone(),
            font: None,
            allow_uncompared_pages: false,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r0 = Instant::now();
        let status = yunwei_server::report_recompute::run(&args, &mut out, &mut err)?;
        let secs = r0.elapsed().as_secs_f64();
        anyhow::ensure!(
            status == yunwei_server::report_recompute::Status::Ok,
            "recompute of the {label}: {}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
        recomputed.push((label, secs));
    }
    // For the diagnosis: the bare rollup fetch of the same series and hours.
    let f0 = Instant::now();
    let mut ids = Vec::new();
    for name in [
        "node_cpu_seconds_total",
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
    ] {
        ids.extend(store.series_named(name).await?.iter().map(|s| s.id));
    }
    let hour = 3_600_000;
    let fetched = store
        .rollups(
            &ids,
            period.start_ms - period.start_ms.rem_euclid(hour),
            period.end_ms - 1,
        )
        .await?
        .len();
    let fetch_s = f0.elapsed().as_secs_f64();
    // Hours without derived rows (rolled up before `kpi_hours` existed) are derived from the
    // rollups when read: drop the first half of the month's rows and require the same evidence.
    let half = period.start_ms + (period.end_ms - period.start_ms) / 2;
    // (DDL takes no bind parameters on PostgreSQL; `half` is a number.)
    for sql in [
        format!("CREATE TABLE kpi_hours_kept AS SELECT * FROM kpi_hours WHERE hour_ms < {half}"),
        format!("DELETE FROM kpi_hours WHERE hour_ms < {half}"),
    ] {
        sqlx::query(&sql).execute(store.pool()).await?;
    }
    let m0 = Instant::now();
    let mixed = contracts::gather(&store, &c, period.start_ms, period.end_ms, false).await?;
    let mixed_s = m0.elapsed().as_secs_f64();
    for sql in [
        "INSERT INTO kpi_hours SELECT * FROM kpi_hours_kept",
        "DROP TABLE kpi_hours_kept",
    ] {
        sqlx::query(sql).execute(store.pool()).await?;
    }
    anyhow::ensure!(
        mixed == file.evidence,
        "evidence derived from the rollups differs from the stored derived rows"
    );
    let s = |a: Instant, b: Instant| (b - a).as_secs_f64();
    let total = s(t0, t6);
    let ev = &file.evidence;
    println!(
        "\nmonthly report, {} hosts / {} probes / 31 days, {:?}, evidence rows: {} intervals, {} resource hours\n",
        hosts,
        hosts * probes_per_host,
        store.backend(),
        ev.intervals.len(),
        ev.resources.len()
    );
    println!("| step | seconds |\n|---|---|");
    println!("| store queries (evidence) | {:.3} |", s(t0, t1));
    println!(
        "| of which the bare `Store::rollups` fetch ({fetched} rows, measured again after) | {fetch_s:.3} |"
    );
    println!(
        "| (not in the total) store queries with half the month's derived rows missing, derived from the rollups instead: same evidence | {mixed_s:.3} |"
    );
    println!(
        "| assessment + report model, from the evidence file (contract and calendars parsed from its texts) | {:.3} |",
        s(t1b, t2)
    );
    println!(
        "| evidence file ({} KB): serialize + SHA-256 | {:.3} |",
        evidence_bytes.len() / 1024,
        s(t2, gz0)
    );
    println!(
        "| evidence file gzip ({} KB → {} KB) | {:.3} |",
        evidence_bytes.len() / 1024,
        evidence_gz.len() / 1024,
        s(gz0, t2b)
    );
    println!("| signature | {:.3} |", s(t2b, t3));
    println!("| HTML ({} KB) | {:.3} |", html.len() / 1024, s(t3, t4));
    println!("| XLSX ({} KB) | {:.3} |", xlsx.len() / 1024, s(t4, t5));
    println!("| JSON ({} KB) | {:.3} |", json.len() / 1024, s(t5, t6));
    println!(
        "| **total (queries + assessment + evidence file and its gzip + HTML + XLSX + JSON)** | **{total:.3}** (target ≤ {TARGET_S} s; design's peer: SQLite hourly-rollup queries alone {PEER_ROLLUP_QUERIES_S} s) |"
    );
    if let Some((secs, bytes)) = &pdf {
        println!(
            "| PDF, separately ({} KB) | {secs:.3} |",
            bytes.len() / 1024
        );
    }
    // Breakdown of one recomputation (JSON file's evidence): inflate, hash, parse, build,
    // compare (`recompute` hashes and parses side by side).
    let i0 = Instant::now();
    let inflated = evidence_file::decompress(&evidence_gz, evidence_bytes.len() as u64)?;
    let inflate_s = i0.elapsed().as_secs_f64();
    anyhow::ensure!(*inflated == *evidence_bytes, "gzip round trip differs");
    drop(inflated);
    let b0 = Instant::now();
    let _ = integrity::sha256_hex(&evidence_bytes);
    let b1 = Instant::now();
    let parsed = evidence_file::parse(&evidence_bytes)?;
    let b2 = Instant::now();
    let again = evidence_file::build_report(&parsed)?;
    let b3 = Instant::now();
    let cmp = yunwei_reports::recompute::compare(&signed.report, &again);
    let b4 = Instant::now();
    println!(
        "| (breakdown, not in the total) assessment engine alone {assess_s:.3}; recompute: inflate {inflate_s:.3}, SHA-256 {:.3}, parse {:.3}, assessment + model {:.3}, compare {:.3} ({} values) |  |",
        s(b0, b1),
        s(b1, b2),
        s(b2, b3),
        s(b3, b4),
        cmp.compared
    );
    for (label, secs) in &recomputed {
        println!("| `report recompute` of the {label}: OK (target ≤ {TARGET_S} s) | {secs:.3} |");
    }
    println!(
        "\nsizes: json {} KB, html {} KB, xlsx {} KB, pdf {}, evidence file {} KB, compressed {} KB",
        json.len() / 1024,
        html.len() / 1024,
        xlsx.len() / 1024,
        pdf.as_ref()
            .map_or("-".to_string(), |(_, p)| format!("{} KB", p.len() / 1024)),
        evidence_bytes.len() / 1024,
        evidence_gz.len() / 1024
    );
    // The same data must give the same report: compare these across versions.
    println!(
        "\nreport: score {}, sha256 of the canonical JSON {}\nevidence: sha256 of its JSON {}",
        signed.report.summary.score,
        signed.integrity.sha256,
        integrity::sha256_hex(&serde_json::to_vec(ev)?)
    );
    store.close().await;
    Ok(())
}
