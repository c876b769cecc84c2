//! Alert-latency benchmark, side by side with Alertmanager: a real `yunwei-server` process
//! (SQLite) with one rule group (`probe_success == 0`, no `for`, evaluated every
//! `--interval-secs` and on ingest), a route with `group_wait: 0s` and an email receiver; Debian's
//! `/usr/bin/prometheus-alertmanager` with the same route and an email receiver; and one real
//! SMTP server on loopback both send to (`tests/helpers/smtp_sink.py`, Debian's aiosmtpd run
//! with `/usr/bin/python3`).
//!
//! Each sample, in turn for each system:
//! - yunwei: an enrolled agent pushes `probe_success{probe="yN"} 0` (a new alert group each
//!   time), as an agent does at once when a probe changes state. The clock starts when the
//!   server has acknowledged the batch (the failure is committed: observed by the server); the
//!   rule evaluation, grouping, queueing and the SMTP exchange are inside it.
//! - Alertmanager: a ready alert `ProbeDown{probe="aN"}` is POSTed to `/api/v2/alerts`; the
//!   clock starts when that POST is answered. No rule evaluation is inside it: Alertmanager
//!   receives an alert some Prometheus has already evaluated.
//!
//! Both clocks stop at the `received_at` the SMTP server records when it accepts the mail whose
//! subject names the probe. A second set of figures starts both clocks when the request is sent.
//! Samples are spaced 1 s plus a varying offset. Everything listens on 127.0.0.1 (Alertmanager's
//! clustering is off); the SMTP server, yunwei and Alertmanager are ended by PID.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use yunwei_proto::Sample;
use yunwei_tests::{AgentClient, Db, ServerProcess, batch, free_addr, workspace_root};

#[derive(Debug, Parser)]
#[command(
    name = "notify-bench",
    about = "Alert latency: probe_success 0 ingested → mail accepted by an SMTP server on 127.0.0.1"
)]
struct Args {
    /// Number of samples (alerts) per system.
    #[arg(long, default_value_t = 60)]
    samples: usize,
    /// The yunwei rule group's evaluation interval, seconds.
    #[arg(long, default_value_t = 15)]
    interval_secs: u64,
    /// The Alertmanager binary (Debian's package by default).
    #[arg(long, default_value = "/usr/bin/prometheus-alertmanager")]
    alertmanager: PathBuf,
}

/// The SMTP sink, killed by its PID when dropped.
struct Sink {
    child: Child,
    dir: PathBuf,
}

impl Sink {
    fn start(port: u16, dir: &Path) -> anyhow::Result<Sink> {
        let mut child = Command::new("/usr/bin/python3")
            .arg(workspace_root().join("tests/helpers/smtp_sink.py"))
            .arg(port.to_string())
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting /usr/bin/python3 tests/helpers/smtp_sink.py (python3-aiosmtpd)")?;
        let mut buf = [0u8; 6];
        child
            .stdout
            .take()
            .context("sink stdout")?
            .read_exact(&mut buf)
            .context("the SMTP sink did not start (is python3-aiosmtpd installed?)")?;
        if &buf != b"ready\n" {
            bail!("the SMTP sink said {buf:?}");
        }
        Ok(Sink {
            child,
            dir: dir.to_path_buf(),
        })
    }

    /// `received_at` (Unix seconds) of the first mail whose subject contains `needle`.
    fn received(&self, needle: &str) -> Option<f64> {
        let dir = std::fs::read_dir(&self.dir).ok()?;
        dir.filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .find(|m| m["subject"].as_str().is_some_and(|s| s.contains(needle)))
            .and_then(|m| m["received_at"].as_f64())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alertmanager on 127.0.0.1 with clustering off, killed by its PID when dropped.
struct Alertmanager {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Alertmanager {
    async fn start(bin: &Path, dir: &Path, smtp_port: u16) -> anyhow::Result<Alertmanager> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: oncall\n  group_by: [alertname, probe]\n  group_wait: 0s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: oncall\n    \
                 email_configs:\n      - to: oncall@example.org\n        from: alerts@example.org\n        \
                 smarthost: 127.0.0.1:{smtp_port}\n        require_tls: false\n        \
                 headers:\n          Subject: 'probe={{{{ .GroupLabels.probe }}}}'\n"
            ),
        )?;
        let addr = free_addr();
        let log = dir.join("alertmanager.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut am = Alertmanager {
            child,
            url: format!("http://{addr}"),
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/-/ready", am.url)).send().await
                && r.status().is_success()
            {
                return Ok(am);
            }
            if let Some(status) = am.child.try_wait()? {
                bail!("alertmanager exited with {status}; log:\n{}", am.log());
            }
            if Instant::now() > deadline {
                bail!("alertmanager not ready after 30 s; log:\n{}", am.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Latencies of one system: from the acknowledgement, and from sending the request.
#[derive(Default)]
struct Series {
    from_ack: Vec<f64>,
    from_send: Vec<f64>,
}

fn row(name: &str, v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "| {name} | {:.3} s | {:.3} s | {:.3} s | {:.3} s |",
        v[0],
        percentile(v, 50.0),
        percentile(v, 99.0),
        v[v.len() - 1]
    )
}

/// Waits for the mail naming `needle`; its acceptance time (Unix seconds).
async fn mail(sink: &Sink, needle: &str, log: impl Fn() -> String) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(at) = sink.received(needle) {
            return Ok(at);
        }
        if Instant::now() > deadline {
            bail!("no mail for {needle} within 10 s; log:\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let work = tempfile::tempdir()?;
    let smtp_port = free_addr().port();
    let sink = Sink::start(smtp_port, &work.path().join("mail"))?;
    let rules = work.path().join("bench.rules.yml");
    std::fs::write(
        &rules,
        format!(
            "groups:\n  - name: probes\n    interval: {}s\n    rules:\n      - alert: ProbeDown\n        \
             expr: probe_success == 0\n        labels:\n          severity: critical\n",
            args.interval_secs
        ),
    )?;
    let config = format!(
        "rules:\n  files: [{rules}]\nnotify:\n  \
         smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, from: 'yunwei <alerts@example.org>', timeout_secs: 5}}\n  \
         receivers:\n    - name: oncall\n      email: [{{to: [oncall@example.org], language: en}}]\n  \
         route:\n    receiver: oncall\n    group_by: [alertname, probe]\n    group_wait: 0s\n    \
         group_interval: 1s\n    repeat_interval: 1h\n",
        rules = rules.display()
    );
    let server = ServerProcess::start(&Db::Sqlite, &config).await?;
    let am = Alertmanager::start(&args.alertmanager, &work.path().join("am"), smtp_port).await?;
    let client = AgentClient::new(&server);
    let agent = client.enroll("bench-host").await?;
    let http = reqwest::Client::new();
    let (mut yunwei, mut alertmanager) = (Series::default(), Series::default());
    for i in 0..args.samples {
        // 1 s plus an offset that walks through a second's phases (379 is coprime with 1000).
        tokio::time::sleep(Duration::from_millis(1_000 + (i as u64 * 379) % 1_000)).await;
        let probe = format!("y{i:03}");
        let ts = yunwei_tests::now_ms();
        let mut b = batch(&agent, "bench-host", i as u64 + 1, ts, 0);
        b.samples = vec![Sample {
            name: "probe_success".into(),
            labels: [("probe".to_string(), probe.clone())].into(),
            value: 0.0,
            ts_ms: ts,
        }];
        let sent = unix_secs();
        let (status, body) = client.push(&agent.token, &b).await?;
        let acked = unix_secs();
        if status != 200 {
            bail!("push answered {status}: {body}");
        }
        let at = mail(&sink, &format!("probe={probe}"), || server.log()).await?;
        yunwei.from_ack.push(at - acked);
        yunwei.from_send.push(at - sent);

        tokio::time::sleep(Duration::from_millis(1_000 + (i as u64 * 379) % 1_000)).await;
        let probe = format!("a{i:03}");
        let alert = serde_json::json!([{
            "labels": {"alertname": "ProbeDown", "probe": probe, "severity": "critical"},
            "annotations": {"summary": format!("probe {probe} is down")},
            "generatorURL": "http://127.0.0.1/notify-bench",
        }]);
        let sent = unix_secs();
        let r = http
            .post(format!("{}/api/v2/alerts", am.url))
            .json(&alert)
            .send()
            .await?;
        let acked = unix_secs();
        if !r.status().is_success() {
            bail!("alertmanager answered {}: {}", r.status(), r.text().await?);
        }
        let at = mail(&sink, &format!("probe={probe}"), || am.log()).await?;
        alertmanager.from_ack.push(at - acked);
        alertmanager.from_send.push(at - sent);
    }
    let build = if cfg!(debug_assertions) {
        "DEBUG build: figures not representative, use --release"
    } else {
        "release build"
    };
    println!(
        "notify-bench: {} samples per system, {build}, yunwei group interval {} s, load average {}",
        args.samples,
        args.interval_secs,
        load_average()
    );
    println!("\nclock from the acknowledgement to the SMTP server accepting the mail:\n");
    println!("| system | min | p50 | p99 | max |\n|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "yunwei: batch committed → rule evaluated → mail",
            &mut yunwei.from_ack
        )
    );
    println!(
        "{}",
        row(
            "Alertmanager 0.25: alert accepted by /api/v2/alerts → mail",
            &mut alertmanager.from_ack
        )
    );
    println!("\nclock from sending the request:\n");
    println!("| system | min | p50 | p99 | max |\n|---|---|---|---|---|");
    println!("{}", row("yunwei: push sent", &mut yunwei.from_send));
    println!(
        "{}",
        row("Alertmanager 0.25: POST sent", &mut alertmanager.from_send)
    );
    let (p50, p99) = (
        percentile(&yunwei.from_ack, 50.0),
        percentile(&yunwei.from_ack, 99.0),
    );
    println!(
        "\nyunwei targets: p50 ≤ 0.5 s ({}), p99 ≤ 1 s ({})",
        if p50 <= 0.5 { "met" } else { "MISSED" },
        if p99 <= 1.0 { "met" } else { "MISSED" }
    );
    drop(am);
    drop(sink);
    drop(server);
    Ok(())
}

/// `/proc/loadavg`'s three averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
