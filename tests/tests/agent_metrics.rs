//! The agent's `/metrics` endpoint, scraped from a real `yunwei-agent` process and checked with
//! the real `promtool`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use yunwei_tests::{ci, free_addr, spawn_agent, terminate_child};

/// Starts an agent (whose server is unreachable: `/metrics` does not depend on it) serving
/// `/metrics` on a free port, and returns one scrape once it answers.
async fn scrape_agent(extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_addr();
    let nowhere = free_addr();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "server_url: http://{nowhere}\nenrollment_secret: s\nstate_dir: state\n\
             metrics_listen: {metrics}\n{extra}"
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = spawn_agent(&config, &log);
    let url = format!("http://{metrics}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
            break r.text().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no /metrics; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = terminate_child(&mut agent);
    assert!(status.success(), "{status}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_metrics_pass_promtool_and_carry_the_node_exporter_names_alert_rules_use() {
    let text = scrape_agent("process_scan_interval_secs: 1\nprocesses: [yunwei-agent]\n").await;
    let has = |line_start: &str| text.lines().any(|l| l.starts_with(line_start));
    // The series behind common node_exporter alerts (node-mixin, awesome-prometheus-alerts):
    // memory (MemAvailable / MemTotal), disk space (avail / size), CPU (idle rate), load, network.
    for series in [
        "node_memory_MemAvailable_bytes ",
        "node_memory_MemTotal_bytes ",
        "node_filesystem_avail_bytes{",
        "node_filesystem_size_bytes{",
        "node_filesystem_files_free{",
        "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} ",
        "node_load1 ",
        "node_network_receive_bytes_total{",
        "node_disk_io_time_seconds_total{",
        "node_boot_time_seconds ",
        "node_processes_pids ",
        "yunwei_process_present{name=\"yunwei-agent\"} 1",
        "yunwei_agent_spool_bytes ",
        "yunwei_agent_batches_sent_total ",
        "yunwei_agent_batches_failed_total ",
        "yunwei_agent_collection_duration_seconds ",
    ] {
        assert!(has(series), "{series:?} missing from /metrics:\n{text}");
    }
    assert!(has("# TYPE node_cpu_seconds_total counter"));
    assert!(has("# TYPE node_memory_MemAvailable_bytes gauge"));
    // Filesystem labels as node_exporter sets them.
    let fs = text
        .lines()
        .find(|l| l.starts_with("node_filesystem_avail_bytes{"))
        .unwrap();
    for label in ["device=\"", "fstype=\"", "mountpoint=\""] {
        assert!(fs.contains(label), "{fs}");
    }
    assert!(
        !text.contains("fstype=\"proc\"") && !text.contains("fstype=\"sysfs\""),
        "pseudo filesystems are excluded"
    );

    let Ok(version) = Command::new("promtool").arg("--version").output() else {
        assert!(
            !ci(),
            "CI=true and promtool (Debian package prometheus) is not installed"
        );
        eprintln!("SKIP: promtool not installed; the promtool check did not run");
        return;
    };
    assert!(version.status.success());
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 1 is a parse error; 3 means lint findings. node_exporter's own meminfo names
    // (node_memory_MemTotal_bytes, ...) are camelCase, which promtool's linter flags for
    // node_exporter too; they are kept on purpose, so that is the only finding allowed.
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(3),
        "promtool check metrics failed to parse:\n{report}"
    );
    let findings: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    for f in &findings {
        assert!(
            f.starts_with("node_memory_")
                && f.ends_with("metric names should be written in 'snake_case' not 'camelCase'"),
            "unexpected promtool finding: {f}\n{report}"
        );
    }
    eprintln!(
        "promtool: {} lines of metrics, {} camelCase findings (node_memory_*), nothing else",
        text.lines().count(),
        findings.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_off_serves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = free_addr();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "server_url: http://{nowhere}\nenrollment_secret: s\nstate_dir: state\nmetrics_listen: \"off\"\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = spawn_agent(&config, &log);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = terminate_child(&mut agent);
    assert!(status.success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("serving /metrics"), "{log}");
}
