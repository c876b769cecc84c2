//! `yunwei-server report generate` as a real process against the data directory of a running
//! `yunwei-server serve` (SQLite): it reads the same store while ingest writes, archives its
//! version where the running server lists it, and `report verify` accepts the files and
//! rejects one with a changed figure; `report recompute` computes every figure again from the
//! evidence file the report names, without server or database.

use std::{collections::BTreeMap, process::Command};

use yunwei_proto::Sample;
use yunwei_tests::{AgentClient, Db, Enrolled, ServerProcess, batch, bin, now_ms};

const CONTRACT: &str = r#"id: e2e-contract
name: 端到端测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 }, probes: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_generate_runs_beside_a_running_server() {
    let mut o = server_with_an_outage().await;
    let (server, period) = (&o.server, o.period.clone());
    let out = tempfile::tempdir().unwrap();

    // While the server runs (and keeps ingesting in between).
    let gen_out = Command::new(bin("yunwei-server"))
        .args(["report", "generate", "--config"])
        .arg(&server.config_path)
        .args(["--contract", "e2e-contract", "--period", &period])
        .args(["--format", "json,html,xlsx", "--lang", "en", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&gen_out.stdout).into_owned();
    assert!(
        gen_out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&gen_out.stderr)
    );
    assert!(stdout.contains("version 1"), "{stdout}");
    o.push(now_ms(), true).await;
    let server = &o.server;
    let health = reqwest::get(server.url("/readyz")).await.unwrap();
    assert!(health.status().is_success());

    let mut files: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Three formats and the evidence file they name.
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("e2e-contract-")),
        "{names:?}"
    );
    let data_dir = server.dir.path().join("data");
    for f in files
        .iter()
        .filter(|f| !f.to_string_lossy().ends_with(".evidence.json.gz"))
    {
        let v = Command::new(bin("yunwei-server"))
            .args(["report", "verify", "--data-dir"])
            .arg(&data_dir)
            .arg(f)
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&v.stderr)
        );
    }
    // A changed figure does not verify.
    let json_path = files
        .iter()
        .find(|p| p.extension().unwrap() == "json")
        .unwrap();
    let text = std::fs::read_to_string(json_path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let down = doc["report"]["availability"][0]["downtime_minutes"].clone();
    assert!(down.as_f64().unwrap() >= 4.0, "{down}");
    let forged = text.replacen(
        &format!("\"downtime_minutes\":{down}"),
        "\"downtime_minutes\":0",
        1,
    );
    assert_ne!(forged, text);
    let forged_path = out.path().join("forged.json");
    std::fs::write(&forged_path, forged).unwrap();
    let v = Command::new(bin("yunwei-server"))
        .args(["report", "verify", "--data-dir"])
        .arg(&data_dir)
        .arg(&forged_path)
        .output()
        .unwrap();
    assert!(!v.status.success());

    // The running server lists the version the command archived.
    let list: serde_json::Value = reqwest::Client::new()
        .get(server.url("/api/v1/reports"))
        .bearer_auth(&server.api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["contract_id"], "e2e-contract");
    assert_eq!(list[0]["origin"], "cli");
    assert_eq!(list[0]["version"], 1);
}

/// A server with the test contract, an enrolled agent and 15 minutes of its probe results,
/// down for 5 of them.
struct Outage {
    server: ServerProcess,
    _contract_dir: tempfile::TempDir,
    client: AgentClient,
    agent: Enrolled,
    seq: u64,
    /// From the day (Shanghai) of the first result to today's, so that a run just after
    /// midnight still has the whole 15 minutes, down time included.
    period: String,
}

impl Outage {
    /// Pushes the probe's result at `t` in the agent's next batch.
    async fn push(&mut self, t: i64, up: bool) {
        self.seq += 1;
        let mut b = batch(&self.agent, "portal-01", self.seq, t, 0);
        b.samples.push(Sample {
            name: "probe_success".into(),
            labels: BTreeMap::from([("probe".to_string(), "home".to_string())]).into(),
            value: if up { 1.0 } else { 0.0 },
            ts_ms: t,
        });
        let (status, body) = self.client.push(&self.agent.token, &b).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

async fn server_with_an_outage() -> Outage {
    let cdir = tempfile::tempdir().unwrap();
    let contract = cdir.path().join("contract.yml");
    std::fs::write(&contract, CONTRACT).unwrap();
    let extra = format!(
        "contracts:\n  files: [{}]\n  run_inspections: false\n",
        contract.display()
    );
    let server = ServerProcess::start(&Db::Sqlite, &extra).await.unwrap();
    let client = AgentClient::new(&server);
    let agent = client.enroll("portal-01").await.unwrap();
    let now = now_ms();
    let start = now - 15 * 60_000;
    let mut o = Outage {
        server,
        _contract_dir: cdir,
        client,
        agent,
        seq: 0,
        period: format!("{}..{}", chrono_free_date(start), chrono_free_date(now)),
    };
    let (mut t, mut i) = (start, 0);
    while t <= now {
        o.push(t, !(20..40).contains(&i)).await;
        t += 15_000;
        i += 1;
    }
    o
}

/// `report recompute` with `args`: (exit code, stdout, stderr).
fn recompute(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(bin("yunwei-server"))
        .args(["report", "recompute"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Signs `report` with `key` (as a dishonest server with its own key would) and writes the
/// JSON file and the key's public half; returns their paths.
fn resign(
    dir: &std::path::Path,
    name: &str,
    report: yunwei_reports::Report,
    key: &ed25519_dalek::SigningKey,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let signed = yunwei_reports::integrity::sign(report, key);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, yunwei_reports::json::render(&signed)).unwrap();
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&public, hex::encode(key.verifying_key().as_bytes())).unwrap();
    (path, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_recompute_checks_every_figure_against_the_evidence_file() {
    use std::ffi::OsStr;
    let o = server_with_an_outage().await;
    let (server, period) = (&o.server, o.period.clone());
    let out = tempfile::tempdir().unwrap();
    let gen_out = Command::new(bin("yunwei-server"))
        .args(["report", "generate", "--config"])
        .arg(&server.config_path)
        .args(["--contract", "e2e-contract", "--period", &period])
        .args(["--format", "json,html,xlsx", "--lang", "zh-CN", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&gen_out.stdout).into_owned();
    assert!(
        gen_out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&gen_out.stderr)
    );
    let mut files: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    let evidence_path = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".evidence.json.gz"))
        .unwrap_or_else(|| panic!("no evidence file written: {files:?}"))
        .clone();
    assert!(
        stdout.contains(&*evidence_path.to_string_lossy()),
        "{stdout}"
    );
    // The server is not needed any more: recompute runs without it and without its store,
    // with the public key the office was given.
    let keys = tempfile::tempdir().unwrap();
    let office_key = keys.path().join("report-signing.pub");
    std::fs::copy(
        server.dir.path().join("data").join("report-signing.pub"),
        &office_key,
    )
    .unwrap();
    drop(o);

    // 1. Every format recomputes: OK, exit 0.
    let reports: Vec<_> = files.iter().filter(|p| **p != evidence_path).collect();
    assert_eq!(reports.len(), 3, "{files:?}");
    for f in &reports {
        let (code, stdout, stderr) = recompute(&[
            OsStr::new("--public-key"),
            office_key.as_os_str(),
            f.as_os_str(),
        ]);
        assert_eq!(code, 0, "{}: {stdout}\n{stderr}", f.display());
        assert!(stdout.lines().any(|l| l == "OK"), "{stdout}");
        assert!(stdout.contains("signature OK"), "{stdout}");
    }
    let json_path = reports
        .iter()
        .find(|p| p.extension().unwrap() == "json")
        .unwrap()
        .to_path_buf();
    let genuine: yunwei_reports::SignedReport =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let named = genuine.report.evidence_file.clone().unwrap();
    // Written gzip-compressed; the report names the uncompressed file (name, size, SHA-256).
    assert_eq!(
        evidence_path.file_name().unwrap().to_string_lossy(),
        format!("{}.gz", named.name)
    );
    let compressed = std::fs::read(&evidence_path).unwrap();
    let plain = yunwei_reports::evidence_file::decompress(&compressed, named.bytes)
        .unwrap()
        .into_owned();
    assert!(compressed.len() < plain.len(), "not compressed");
    assert_eq!(plain.len() as u64, named.bytes);
    assert_eq!(yunwei_reports::integrity::sha256_hex(&plain), named.sha256);
    // The plain (gunzipped) file recomputes just as well, found beside the report by its name.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain_report = plain_dir.path().join(json_path.file_name().unwrap());
    std::fs::copy(&json_path, &plain_report).unwrap();
    std::fs::write(plain_dir.path().join(&named.name), &plain).unwrap();
    let (code, stdout, stderr) = recompute(&[
        OsStr::new("--public-key"),
        office_key.as_os_str(),
        plain_report.as_os_str(),
    ]);
    assert_eq!(code, 0, "plain evidence: {stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l == "OK"), "{stdout}");
    let down = genuine.report.availability[0].downtime_minutes;
    assert!(down.0 >= 4000, "{down:?}");
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let forged_dir = tempfile::tempdir().unwrap();

    // 2. Evidence edited (the outage's probe intervals turned up) and the report made from it
    //    signed with another key: the figures the genuine evidence gives differ, each named.
    let mut ev: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let mut edited = 0;
    for iv in ev["evidence"]["intervals"].as_array_mut().unwrap() {
        if iv["state"] == "down" {
            iv["state"] = "up".into();
            edited += 1;
        }
    }
    assert!(edited > 0, "no down interval in the evidence");
    let edited_bytes = serde_json::to_vec(&ev).unwrap();
    let mut report = genuine.report.clone();
    report.evidence_file = Some(yunwei_reports::model::EvidenceFileRef {
        bytes: edited_bytes.len() as u64,
        sha256: yunwei_reports::integrity::sha256_hex(&edited_bytes),
        ..named.clone()
    });
    let (path, public) = resign(forged_dir.path(), "edited-evidence", report, &other);
    let edited_path = forged_dir.path().join("edited.evidence.json");
    std::fs::write(&edited_path, &edited_bytes).unwrap();
    let (code, stdout, stderr) = recompute(&[
        OsStr::new("--public-key"),
        public.as_os_str(),
        OsStr::new("--evidence"),
        edited_path.as_os_str(),
        path.as_os_str(),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("DIFFERS"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "availability[portal].downtime_minutes: report {}, recomputed 0",
            down
        )),
        "{stdout}"
    );
    // The interval the report cited as the outage is not in the evidence any more as one.
    assert!(
        stdout.contains("availability[portal].evidence[0]: report \"interval:probe:"),
        "{stdout}"
    );
    assert!(!stdout.lines().any(|l| l == "OK"), "{stdout}");

    // 3. A figure altered (the downtime zeroed) and re-signed with another key: named, with
    //    the value the genuine evidence gives.
    let mut report = genuine.report.clone();
    report.availability[0].downtime_minutes = yunwei_reports::Fixed(0);
    report.summary.score = yunwei_reports::Fixed(100_000);
    let (path, public) = resign(forged_dir.path(), "altered-figures", report, &other);
    let (code, stdout, stderr) = recompute(&[
        OsStr::new("--public-key"),
        public.as_os_str(),
        OsStr::new("--evidence"),
        evidence_path.as_os_str(),
        path.as_os_str(),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "availability[portal].downtime_minutes: report 0, recomputed {down}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "summary.score: report 100, recomputed {}",
            genuine.report.summary.score
        )) || genuine.report.summary.score.0 == 100_000,
        "{stdout}"
    );
    // ... and with the office's key it is refused before any recomputation.
    let (code, stdout, stderr) = recompute(&[
        OsStr::new("--public-key"),
        office_key.as_os_str(),
        OsStr::new("--evidence"),
        evidence_path.as_os_str(),
        path.as_os_str(),
    ]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("NOT RECOMPUTED"), "{stderr}");
    assert!(stderr.contains("not by the given key"), "{stderr}");

    // 4. A bad signature (a figure edited in the signed file): refused, exit 2.
    let text = std::fs::read_to_string(&json_path).unwrap();
    let forged = text.replacen(
        &format!("\"downtime_minutes\":{down}"),
        "\"downtime_minutes\":0",
        1,
    );
    assert_ne!(forged, text);
    let forged_path = out.path().join("forged.json");
    std::fs::write(&forged_path, forged).unwrap();
    let (code, stdout, stderr) = recompute(&[
        OsStr::new("--public-key"),
        office_key.as_os_str(),
        OsStr::new("--evidence"),
        evidence_path.as_os_str(),
        forged_path.as_os_str(),
    ]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("NOT RECOMPUTED: the report does not verify"),
        "{stderr}"
    );
    assert!(!stdout.contains("OK"), "{stdout}");

    // 5. The evidence edited under the genuine report: not the file it names, refused.
    let (code, stdout, stderr) = recompute(&[
        OsStr::new("--public-key"),
        office_key.as_os_str(),
        OsStr::new("--evidence"),
        edited_path.as_os_str(),
        json_path.as_os_str(),
    ]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("not the one the signed report names"),
        "{stderr}"
    );
}

/// `YYYY-MM-DD` of `t_ms` in UTC+8 (civil-from-days, no date library needed here).
fn chrono_free_date(t_ms: i64) -> String {
    let days = (t_ms + 8 * 3_600_000).div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
