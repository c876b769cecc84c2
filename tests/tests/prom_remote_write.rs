//! A real Prometheus feeding yunwei (issue 20): Debian's `prometheus` (2.42) scrapes a real
//! `prometheus-node-exporter` on 127.0.0.1 and sends what it scrapes with `remote_write` to a
//! `yunwei-server` process, authenticated with a sender token made by `yunwei-server
//! remote-write add`. The node_exporter series appear in yunwei's Prometheus query API under
//! their `instance` with their provenance, the host is in the inventory, a yunwei alert rule
//! over them fires, and Prometheus counts no failed sample (every request was acknowledged).
//! With `CI=true` a missing `prometheus` or `prometheus-node-exporter` fails the test.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use yunwei_tests::{Db, ServerProcess, ci, free_addr};

/// A Debian package binary, or `None` (a skip; a failure under `CI=true`).
fn tool(path: &str, package: &str) -> Option<PathBuf> {
    match Command::new(path).arg("--version").output() {
        Ok(o) if o.status.success() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                !ci(),
                "CI=true and {path} (Debian package {package}) is not installed"
            );
            eprintln!("SKIP: {path} not installed; the test did not run");
            None
        }
    }
}

/// A child process killed (by its own PID) when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 250 ms until it gives a value; fails after `secs` naming `what`.
async fn wait_for<T>(
    secs: u64,
    what: &str,
    logs: &dyn Fn() -> String,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn get(url: &str, token: Option<&str>, query: &[(&str, &str)]) -> Option<Value> {
    let mut r = reqwest::Client::new().get(url).query(query);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.ok()?;
    resp.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_feeds_queries_inventory_and_alerts() {
    let (Some(prometheus), Some(node_exporter)) = (
        tool("/usr/bin/prometheus", "prometheus"),
        tool(
            "/usr/bin/prometheus-node-exporter",
            "prometheus-node-exporter",
        ),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // yunwei, with one alert rule over node_exporter's names.
    let rules = dir.path().join("feed.rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: remote-write\n    interval: 1s\n    rules:\n      \
         - alert: NodeMemoryReported\n        \
         expr: node_memory_MemTotal_bytes{job=\"node\", remote_write_sender=\"prom-e2e\"} > 0\n        \
         for: 2s\n        labels:\n          severity: info\n        \
         annotations:\n          summary: \"{{ $labels.instance }} reports its memory\"\n",
    )
    .unwrap();
    let server = ServerProcess::start(
        &Db::Sqlite,
        &format!(
            "rules:\n  files: [{}]\n  evaluation_interval_secs: 1\n",
            rules.display()
        ),
    )
    .await
    .unwrap();
    let sender_token = server
        .cli(&["remote-write", "add", "prom-e2e"])
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(sender_token.len(), 64, "{sender_token}");

    // node_exporter on loopback, and Prometheus scraping it and writing to yunwei.
    let node_addr = free_addr();
    let node = Proc::spawn(
        Command::new(&node_exporter)
            .arg(format!("--web.listen-address={node_addr}"))
            .arg("--no-collector.systemd"),
        &dir.path().join("node_exporter.log"),
    );
    let prom_addr = free_addr();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{node_addr}']\n\
             remote_write:\n  - url: {}\n    authorization:\n      credentials: {sender_token}\n    \
             queue_config:\n      batch_send_deadline: 1s\n      max_samples_per_send: 2000\n      \
             min_backoff: 100ms\n      max_backoff: 1s\n      retry_on_http_429: true\n",
            server.url("/api/v1/write")
        ),
    )
    .unwrap();
    let prom = Proc::spawn(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}")),
        &dir.path().join("prometheus.log"),
    );
    let started = Instant::now();
    let logs = || {
        format!(
            "--- prometheus:\n{}\n--- node_exporter:\n{}\n--- yunwei:\n{}",
            tail(&prom.log()),
            tail(&node.log()),
            tail(&server.log())
        )
    };

    // The series appear in yunwei's query API, under node_exporter's instance.
    let token = server.api_token.clone();
    let instance = node_addr.to_string();
    let query_url = server.url("/api/v1/query");
    let result = wait_for(120, "node_exporter series in yunwei", &logs, async || {
        let v = get(
            &query_url,
            Some(&token),
            &[("query", "node_memory_MemTotal_bytes{job=\"node\"}")],
        )
        .await?;
        let r = v["data"]["result"].as_array()?.first()?.clone();
        Some(r)
    })
    .await;
    println!("series in yunwei after {:?}", started.elapsed());
    assert_eq!(result["metric"]["instance"], instance.as_str(), "{result}");
    assert_eq!(result["metric"]["remote_write_sender"], "prom-e2e");
    let bytes: f64 = result["value"][1].as_str().unwrap().parse().unwrap();
    assert!(bytes > 0.0, "{result}");
    // Counters arrive as counters: a rate over them works.
    wait_for(
        60,
        "a CPU rate over the remote-written counters",
        &logs,
        async || {
            let v = get(
                &query_url,
                Some(&token),
                &[(
                    "query",
                    "sum(rate(node_cpu_seconds_total{job=\"node\"}[30s]))",
                )],
            )
            .await?;
            let r = v["data"]["result"].as_array()?.first()?.clone();
            let x: f64 = r["value"][1].as_str()?.parse().ok()?;
            (x > 0.0).then_some(())
        },
    )
    .await;

    println!("rate after {:?}", started.elapsed());
    // The yunwei alert rule over them fires.
    let alerts_url = server.url("/api/v1/alerts");
    let alert = wait_for(
        60,
        "the alert NodeMemoryReported firing",
        &logs,
        async || {
            let v = get(&alerts_url, Some(&token), &[]).await?;
            v["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "NodeMemoryReported" && a["state"] == "firing"
                })
                .cloned()
        },
    )
    .await;
    println!("alert firing after {:?}", started.elapsed());
    assert_eq!(alert["labels"]["instance"], instance.as_str(), "{alert}");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("{instance} reports its memory")
    );

    // The host is in the inventory by its instance, with its provenance.
    let hosts = get(&server.url("/api/v1/hosts"), Some(&token), &[])
        .await
        .unwrap();
    let host = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hostname"] == instance.as_str())
        .unwrap_or_else(|| panic!("no host {instance}: {hosts}"))
        .clone();
    assert_eq!(host["labels"]["remote_write_sender"], "prom-e2e");
    assert_eq!(host["agent_version"], "remote_write");
    let listed = server.cli(&["remote-write", "list"]).unwrap();
    assert!(listed.contains("prom-e2e"), "{listed}");

    // Prometheus had every request acknowledged: nothing failed or was dropped (its own
    // counters, read from its /metrics).
    let prom_metrics = format!("http://{prom_addr}/metrics");
    let counter = |text: &str, name: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let text = wait_for(
        60,
        "Prometheus's remote-write counters",
        &logs,
        async || {
            let text = reqwest::get(&prom_metrics).await.ok()?.text().await.ok()?;
            (counter(&text, "prometheus_remote_storage_samples_total") > 0.0).then_some(text)
        },
    )
    .await;
    println!("counters after {:?}", started.elapsed());
    let sent = counter(&text, "prometheus_remote_storage_samples_total");
    let failed = counter(&text, "prometheus_remote_storage_samples_failed_total")
        + counter(&text, "prometheus_remote_storage_samples_dropped_total");
    assert_eq!(
        failed,
        0.0,
        "Prometheus sent {sent} samples; some failed\n{}",
        logs()
    );
    println!("remote write: Prometheus sent {sent} samples to yunwei, 0 failed");
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
