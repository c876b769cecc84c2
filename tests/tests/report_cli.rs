//! `yunwei-server report generate` as a real process against the data directory of a running
//! `yunwei-server serve` (SQLite): it reads the same store while ingest writes, archives its
//! version where the running server lists it, and `report verify` accepts the files and
//! rejects one with a changed figure.

use std::{collections::BTreeMap, process::Command};

use yunwei_proto::Sample;
use yunwei_tests::{AgentClient, Db, ServerProcess, batch, bin, now_ms};

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
    let cdir = tempfile::tempdir().unwrap();
    let contract = cdir.path().join("contract.yml");
    std::fs::write(&contract, CONTRACT).unwrap();
    let extra = format!(
        "contracts:\n  files: [{}]\n  run_inspections: false\n",
        contract.display()
    );
    let server = ServerProcess::start(&Db::Sqlite, &extra).await.unwrap();
    let client = AgentClient::new(&server);
    let e = client.enroll("portal-01").await.unwrap();
    // Probes every 15 s for 15 minutes, down for 5 of them, all within today (Shanghai).
    let now = now_ms();
    let local = now + 8 * 3_600_000;
    let day_start = local - local.rem_euclid(86_400_000) - 8 * 3_600_000;
    let start = (now - 15 * 60_000).max(day_start + 1000);
    let mut seq = 0;
    let mut push = async |t: i64, up: bool| {
        seq += 1;
        let mut b = batch(&e, "portal-01", seq, t, 0);
        b.samples.push(Sample {
            name: "probe_success".into(),
            labels: BTreeMap::from([("probe".to_string(), "home".to_string())]),
            value: if up { 1.0 } else { 0.0 },
            ts_ms: t,
        });
        let (status, body) = client.push(&e.token, &b).await.unwrap();
        assert_eq!(status, 200, "{body}");
    };
    let mut t = start;
    let mut i = 0;
    while t <= now {
        push(t, !(20..40).contains(&i)).await;
        t += 15_000;
        i += 1;
    }
    let day = chrono_free_date(now);
    let period = format!("{day}..{day}");
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
    push(now_ms(), true).await;
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
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("e2e-contract-")),
        "{names:?}"
    );
    let data_dir = server.dir.path().join("data");
    for f in &files {
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
