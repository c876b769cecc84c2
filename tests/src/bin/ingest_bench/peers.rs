//! The peers, measured in the same run as yunwei at the same load shape (N hosts × P series
//! every S seconds, the same node_exporter-like series):
//! - Debian's `prometheus` scraping N targets of P series each from a local exposition (served
//!   by this process) every S seconds; CPU per sample from its own process counters over
//!   `prometheus_tsdb_head_samples_appended_total`.
//! - Debian's `victoria-metrics` receiving each host's P samples every S seconds through its
//!   import API (`/api/v1/import/prometheus`, gzip, like yunwei's agents); CPU per acknowledged
//!   sample.
//!
//! Both start with a fresh data directory; series are created before the window (a first scrape
//! or push per host), as yunwei's are by the priming batch. Neither acknowledges a sample only
//! after an fsync (Prometheus appends to its WAL without fsync per scrape; VictoriaMetrics
//! buffers for about a second), so they do less per sample than yunwei does.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};
use yunwei_tests::{free_addr, now_ms, process_cpu_micros};

use super::{Args, node_sample};

/// One peer's figures for the table.
pub struct PeerRow {
    pub system: &'static str,
    pub how: &'static str,
    pub samples_per_sec: f64,
    pub cpu_us_per_sample: Option<f64>,
    pub rss_mb: Option<f64>,
    pub note: String,
}

/// A child process killed (by its PID) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Where a peer's binary is, or why it is not measured.
fn find(bin: &str) -> Result<std::path::PathBuf, String> {
    let path = Path::new("/usr/bin").join(bin);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "/usr/bin/{bin} is not installed (Debian package {})",
            if bin == "prometheus" {
                "prometheus"
            } else {
                "victoria-metrics"
            }
        ))
    }
}

/// The exposition of host `i` at `ts_ms`: P series in the text format, values as yunwei's
/// batches carry them (the scrape number plays the sequence number). With `stamp`, each line
/// carries the host's `instance` label and the timestamp (for an import).
fn exposition(i: usize, samples: usize, interval_ms: i64, ts_ms: i64, stamp: bool) -> String {
    use std::fmt::Write as _;
    let seq = (ts_ms / interval_ms).max(1) as u64;
    let mut out = String::with_capacity(samples * 96);
    for k in 0..samples {
        let s = node_sample(k, seq, ts_ms);
        out.push_str(&s.name);
        out.push('{');
        let mut first = true;
        if stamp {
            let _ = write!(out, "instance=\"bench-{i:05}\"");
            first = false;
        }
        for (name, value) in &s.labels {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{name}=\"{value}\"");
        }
        let _ = write!(out, "}} {}", s.value);
        if stamp {
            let _ = write!(out, " {ts_ms}");
        }
        out.push('\n');
    }
    out
}

/// A minimal HTTP/1.1 server for Prometheus' scrapes (keep-alive, GET only): `/m/<i>` is host
/// i's exposition. Hand-written to keep the benchmark free of another HTTP stack.
async fn serve_exposition(listener: tokio::net::TcpListener, samples: usize, interval_ms: i64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            loop {
                // Read one request head (scrapes have no body).
                let end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                    let mut chunk = [0u8; 4096];
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let host = path
                    .strip_prefix("/m/")
                    .and_then(|i| i.split('?').next()?.parse::<usize>().ok());
                let (status, body) = match host {
                    Some(i) => (
                        "200 OK",
                        exposition(i, samples, interval_ms, now_ms(), false),
                    ),
                    None => ("404 Not Found", String::new()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if conn.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn get_text(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let r = http.get(url).send().await?;
    if !r.status().is_success() {
        bail!("GET {url}: {}", r.status());
    }
    Ok(r.text().await?)
}

/// Sum of every sample of metric `name` in an exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_ready(http: &reqwest::Client, url: &str, child: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Some(status) = child.0.try_wait()? {
            bail!("exited with {status} before it was ready");
        }
        if Instant::now() > deadline {
            bail!("not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prometheus scraping N targets (one exposition path each, served here) every S seconds.
pub async fn prometheus(args: &Args) -> anyhow::Result<PeerRow> {
    let bin = find("prometheus").map_err(anyhow::Error::msg)?;
    let (n, samples) = (args.agents, args.samples);
    let interval_ms = (args.interval_secs * 1000) as i64;
    // The exposition: GET /m/<i> answers host i's series at the time of the scrape.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let expo = listener.local_addr()?;
    let server = tokio::spawn(serve_exposition(listener, samples, interval_ms));
    let dir = tempfile::tempdir()?;
    let mut cfg = format!(
        "global:\n  scrape_interval: {s}s\n  scrape_timeout: {t}s\nscrape_configs:\n  - job_name: bench\n    static_configs:\n",
        s = args.interval_secs,
        t = args.interval_secs.min(10)
    );
    for i in 0..n {
        // Distinct paths and instance labels: N targets on one listener.
        cfg.push_str(&format!(
            "      - targets: ['{expo}']\n        labels: {{__metrics_path__: '/m/{i}', instance: 'bench-{i:05}'}}\n"
        ));
    }
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, cfg)?;
    let web = free_addr();
    let mut child = Proc(
        Command::new(&bin)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log"))?)
            .spawn()
            .context("spawning prometheus")?,
    );
    let pid = child.0.id();
    let http = reqwest::Client::new();
    wait_ready(&http, &format!("http://{web}/-/ready"), &mut child)
        .await
        .context("prometheus")?;
    // Every target scraped once (its series created), then the warmup.
    let metrics = format!("http://{web}/metrics");
    tokio::time::sleep(Duration::from_secs(args.interval_secs + args.warmup_secs)).await;
    let counter = "prometheus_tsdb_head_samples_appended_total";
    let cpu0 = process_cpu_micros(pid)?;
    let app0 = metric_sum(&get_text(&http, &metrics).await?, counter);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
    let cpu1 = process_cpu_micros(pid)?;
    let text = get_text(&http, &metrics).await?;
    let secs = t0.elapsed().as_secs_f64();
    let app1 = metric_sum(&text, counter);
    let rss = rss_mb(pid);
    let failed = metric_sum(
        &text,
        "prometheus_target_scrapes_exceeded_sample_limit_total",
    ) + metric_sum(
        &text,
        "prometheus_target_scrape_pool_exceeded_target_limit_total",
    );
    drop(child);
    server.abort();
    let appended = app1 - app0;
    Ok(PeerRow {
        system: "prometheus",
        how: "scrape",
        samples_per_sec: appended / secs,
        cpu_us_per_sample: (appended > 0.0).then(|| (cpu1 - cpu0) as f64 / appended),
        rss_mb: rss,
        note: format!(
            "prometheus: {n} targets × {samples} series every {} s; {appended:.0} samples appended in \
             {secs:.1} s (its counter includes its 5 synthetic series per target: up, scrape_*); CPU {:.2} s; \
             {failed:.0} limit failures",
            args.interval_secs,
            (cpu1 - cpu0) as f64 / 1e6
        ),
    })
}

/// Sends host i's samples to VictoriaMetrics' import API; whether it acknowledged them.
async fn push_import(
    http: reqwest::Client,
    url: Arc<String>,
    i: usize,
    samples: usize,
    interval_ms: i64,
) -> bool {
    let body = yunwei_proto::gzip(exposition(i, samples, interval_ms, now_ms(), true).as_bytes());
    let r = http
        .post(url.as_str())
        .header("Content-Encoding", "gzip")
        .body(body)
        .send()
        .await;
    matches!(r, Ok(r) if r.status().is_success())
}

/// VictoriaMetrics receiving each host's samples every S seconds through its import API.
pub async fn victoria_metrics(args: &Args) -> anyhow::Result<PeerRow> {
    let bin = find("victoria-metrics").map_err(anyhow::Error::msg)?;
    let (n, samples) = (args.agents, args.samples);
    let interval_ms = (args.interval_secs * 1000) as i64;
    let dir = tempfile::tempdir()?;
    let web = free_addr();
    let mut child = Proc(
        Command::new(&bin)
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("data").display()
            ))
            .arg(format!("-httpListenAddr={web}"))
            .arg("-loggerLevel=ERROR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log"))?)
            .spawn()
            .context("spawning victoria-metrics")?,
    );
    let pid = child.0.id();
    let http = reqwest::Client::new();
    wait_ready(&http, &format!("http://{web}/health"), &mut child)
        .await
        .context("victoria-metrics")?;
    let url = Arc::new(format!("http://{web}/api/v1/import/prometheus"));
    // Priming: every host's series created before anything is measured.
    let mut failures = 0u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let mut set = JoinSet::new();
        for &i in chunk {
            set.spawn(push_import(
                http.clone(),
                url.clone(),
                i,
                samples,
                interval_ms,
            ));
        }
        while let Some(ok) = set.join_next().await {
            failures += u64::from(!ok.unwrap_or(false));
        }
    }
    let interval = Duration::from_secs(args.interval_secs);
    let start = Instant::now() + Duration::from_millis(200);
    let wstart = start + Duration::from_secs(args.warmup_secs);
    let wend = wstart + Duration::from_secs(args.duration_secs);
    let mut set = JoinSet::new();
    for i in 0..n {
        let (http, url) = (http.clone(), url.clone());
        let offset = interval.mul_f64(i as f64 / n as f64);
        set.spawn(async move {
            let (mut acked, mut failed) = (0u64, 0u64);
            let mut tick = tokio::time::interval_at(start + offset, interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                if tick.tick().await >= wend {
                    break;
                }
                let ok = push_import(http.clone(), url.clone(), i, samples, interval_ms).await;
                let done = Instant::now();
                if done >= wstart && done < wend {
                    if ok {
                        acked += samples as u64;
                    } else {
                        failed += 1;
                    }
                }
            }
            (acked, failed)
        });
    }
    tokio::time::sleep_until(wstart).await;
    let cpu0 = process_cpu_micros(pid)?;
    tokio::time::sleep_until(wend).await;
    let cpu1 = process_cpu_micros(pid)?;
    let rss = rss_mb(pid);
    let (mut acked, mut failed) = (0u64, 0u64);
    while let Some(r) = set.join_next().await {
        if let Ok((a, f)) = r {
            acked += a;
            failed += f;
        }
    }
    drop(child);
    let secs = (wend - wstart).as_secs_f64();
    Ok(PeerRow {
        system: "victoria-metrics",
        how: "import API",
        samples_per_sec: acked as f64 / secs,
        cpu_us_per_sample: (acked > 0).then(|| (cpu1 - cpu0) as f64 / acked as f64),
        rss_mb: rss,
        note: format!(
            "victoria-metrics: {n} hosts × {samples} samples every {} s through /api/v1/import/prometheus \
             (gzip); {acked} samples acknowledged in {secs:.1} s; CPU {:.2} s; {failed} failed pushes \
             ({failures} while priming)",
            args.interval_secs,
            (cpu1 - cpu0) as f64 / 1e6
        ),
    })
}
