//! Agent benchmark, side by side with Debian's `prometheus-node-exporter` on the same machine:
//! CPU per collection cycle (with and without the process scan), steady resident memory with
//! probes, CPU per `/metrics` scrape, and binary sizes.
//!
//! ```sh
//! cargo build --release -p yunwei-agent
//! cargo run --release -p yunwei-agent --example agent_bench -- \
//!     --agent target/release/yunwei-agent [--seconds 30] \
//!     [--node-exporter /usr/bin/prometheus-node-exporter]
//! ```
//!
//! CPU time is read from `/proc/<pid>/task/*/schedstat` (nanoseconds on CPU, all threads), so
//! idle wake-ups between cycles are counted too. The agent pushes to a minimal acknowledging
//! HTTP server inside this program, so the server's own cost is not measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use yunwei_agent::collect::{CollectOptions, Collector, scan_processes};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let agent =
        PathBuf::from(arg("--agent").unwrap_or_else(|| "target/release/yunwei-agent".into()));
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(30);
    let node_exporter = PathBuf::from(
        arg("--node-exporter").unwrap_or_else(|| "/usr/bin/prometheus-node-exporter".into()),
    );
    assert!(
        agent.exists(),
        "{} not found: build it first",
        agent.display()
    );

    println!("# yunwei-agent benchmark ({} CPUs)\n", cpus());
    in_process();
    let server = FakeServer::start();
    let cycle = |label: &str, extra: &str| {
        let (cpu_us, rss_kb, _) = agent_run(&agent, &server, label, extra, seconds, None);
        println!(
            "| {label} | {cpu_us:.0} µs | {:.1} MB |",
            rss_kb as f64 / 1024.0
        );
    };
    println!(
        "\n## Agent process, one batch per second for {seconds} s (collect, spool with fsync, gzip, push)\n"
    );
    println!("| run | CPU per cycle | RSS at end |\n|---|---|---|");
    cycle("no process scan", "process_scan_interval_secs: 0\n");
    let procs = count_pids();
    cycle(
        &format!("process scan every cycle ({procs} processes)"),
        "process_scan_interval_secs: 1\nprocesses: [sshd, cron, systemd, nginx]\n",
    );

    println!("\n## Steady memory with 20 probes and named processes (interval 15 s)\n");
    let tls = TlsTarget::start();
    let probes = twenty_probes(&server, tls.as_ref());
    let extra = format!(
        "interval_secs: 15\nprocess_scan_interval_secs: 60\nprocesses: [sshd, cron, systemd]\n{probes}"
    );
    let (_, rss_kb, hwm_kb) = agent_run(
        &agent,
        &server,
        "20 probes",
        &extra,
        seconds.max(35),
        tls.as_ref().map(|t| t.ca.as_path()),
    );
    println!(
        "| agent, 20 probes{} | RSS {:.1} MB | peak {:.1} MB |",
        if tls.is_some() { " (4 HTTPS)" } else { "" },
        rss_kb as f64 / 1024.0,
        hwm_kb as f64 / 1024.0
    );
    drop(tls);

    println!("\n## /metrics scrape, side by side\n");
    println!("| exporter | CPU per scrape | series | RSS after | binary |\n|---|---|---|---|---|");
    agent_scrapes(&agent, &server);
    if node_exporter.exists() {
        node_exporter_scrapes(&node_exporter);
    } else {
        println!(
            "| node_exporter | not installed ({}): apt-get install prometheus-node-exporter | | | |",
            node_exporter.display()
        );
    }
    println!("\nAgent binary: {}", size_line(&agent));
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time of the calling thread in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of all threads of `pid` in nanoseconds.
fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// `(VmRSS, VmHWM)` of `pid` in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn count_pids() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|c| c.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0)
}

/// Collection and process scan inside this process, many times, on one thread.
fn in_process() {
    let mut c = Collector::new(CollectOptions::default());
    let mut out = Vec::with_capacity(512);
    for _ in 0..50 {
        out.clear();
        c.collect(0, false, &mut out).unwrap();
    }
    let n = 2000;
    let t = thread_cpu_ns();
    for _ in 0..n {
        out.clear();
        c.collect(0, false, &mut out).unwrap();
    }
    let collect_us = (thread_cpu_ns() - t) as f64 / n as f64 / 1000.0;
    let samples = out.len();
    let batch = yunwei_proto::Batch {
        version: 1,
        agent_id: "bench".into(),
        seq: 1,
        interval_ms: 15_000,
        collected_at_ms: 0,
        age_ms: 0,
        host: yunwei_agent::facts::host_facts(&Default::default()),
        samples: out.clone(),
        events: vec![],
        probe_intervals_ms: Default::default(),
    };
    let mut encoder = yunwei_agent::spool::Encoder::default();
    let t = thread_cpu_ns();
    let mut bytes = 0;
    for _ in 0..200 {
        bytes = encoder.encode(&batch).len();
    }
    let encode_us = (thread_cpu_ns() - t) as f64 / 200.0 / 1000.0;
    let names: Vec<String> = ["sshd", "cron", "systemd", "nginx"]
        .map(String::from)
        .to_vec();
    let scans = 200;
    let t = thread_cpu_ns();
    let mut pids = 0.0;
    for _ in 0..scans {
        let s = scan_processes(&names, 0);
        pids = s
            .iter()
            .find(|s| s.name == "node_processes_pids")
            .map_or(0.0, |s| s.value);
    }
    let scan_us = (thread_cpu_ns() - t) as f64 / scans as f64 / 1000.0;
    println!("## In process (one thread, {n} collections)\n");
    println!("| step | CPU |\n|---|---|");
    println!("| host collection without processes ({samples} samples) | {collect_us:.0} µs |");
    println!("| batch encoding (JSON + gzip, {bytes} bytes) | {encode_us:.0} µs |");
    println!(
        "| process scan, {pids} processes, 4 named | {scan_us:.0} µs ({:.1} µs per process) |",
        scan_us / pids.max(1.0)
    );
}

/// Runs the agent binary against `server` for `seconds` after a warm-up; returns CPU µs per
/// batch, and RSS and peak RSS in kB at the end.
fn agent_run(
    agent: &Path,
    server: &FakeServer,
    label: &str,
    extra: &str,
    seconds: u64,
    ca: Option<&Path>,
) -> (f64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let ca_line = ca.map_or(String::new(), |p| format!("ca_file: {}\n", p.display()));
    let config = dir.path().join("agent.yaml");
    let yaml = format!(
        "server_url: http://{}\nenrollment_secret: s\nstate_dir: state\ninterval_secs: 1\n\
         metrics_listen: \"off\"\n{ca_line}{extra}",
        server.addr
    );
    // A later interval_secs in `extra` wins.
    let yaml = if extra.contains("interval_secs: 15") {
        yaml.replace("interval_secs: 1\n", "")
    } else {
        yaml
    };
    std::fs::write(&config, yaml).unwrap();
    let mut child = Command::new(agent)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, batches0) = (process_cpu_ns(pid), server.ingests.load(Ordering::SeqCst));
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, batches1) = (process_cpu_ns(pid), server.ingests.load(Ordering::SeqCst));
    let (rss, hwm) = memory_kb(pid);
    stop(&mut child);
    let batches = batches1.saturating_sub(batches0).max(1);
    let _ = label;
    ((cpu1 - cpu0) as f64 / batches as f64 / 1000.0, rss, hwm)
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// 20 probes against local targets: HTTP to the fake server, TCP, DNS, processes, and HTTPS to
/// `openssl s_server` when available.
fn twenty_probes(server: &FakeServer, tls: Option<&TlsTarget>) -> String {
    let mut s = String::from("probes:\n");
    for i in 0..20 {
        let (key, target) = match i % 5 {
            0 | 1 => ("http", format!("http://{}/healthz", server.addr)),
            2 => ("tcp", server.addr.to_string()),
            3 => ("dns", "localhost".to_string()),
            _ => match tls {
                Some(t) => ("http", format!("https://localhost:{}/", t.port)),
                None => ("process", "systemd".to_string()),
            },
        };
        s.push_str(&format!(
            "  - name: p{i}\n    {key}: {target}\n    interval_secs: 15\n    labels:\n      tier: t{}\n",
            i % 3
        ));
    }
    s
}

/// Starts the agent with `/metrics` on and scrapes it 200 times.
fn agent_scrapes(agent: &Path, server: &FakeServer) {
    let dir = tempfile::tempdir().unwrap();
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "server_url: http://{}\nenrollment_secret: s\nstate_dir: state\ninterval_secs: 3600\n\
             metrics_listen: {addr}\nprocess_scan_interval_secs: 0\n",
            server.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(agent)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (cpu, series, rss) = scrape_bench(child.id(), addr, 200);
    stop(&mut child);
    println!(
        "| yunwei-agent /metrics (no process scan) | {cpu:.0} µs | {series} | {:.1} MB | {} |",
        rss as f64 / 1024.0,
        size_line(agent)
    );
}

fn node_exporter_scrapes(bin: &Path) {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(bin)
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (cpu, series, rss) = scrape_bench(child.id(), addr, 50);
    stop(&mut child);
    let version = Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .next()
                .unwrap_or("")
                .split_whitespace()
                .nth(2)
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    println!(
        "| node_exporter {version} (Debian, default collectors) | {cpu:.0} µs | {series} | {:.1} MB | {} |",
        rss as f64 / 1024.0,
        size_line(bin)
    );
}

/// Waits for `addr` to serve `/metrics`, warms up, then scrapes `n` times: CPU µs of `pid` per
/// scrape, series per scrape, RSS (kB) after.
fn scrape_bench(pid: u32, addr: SocketAddr, n: usize) -> (f64, usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(addr, "/metrics").is_none() {
        assert!(Instant::now() < deadline, "{addr} does not serve /metrics");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..5 {
        get(addr, "/metrics");
    }
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = process_cpu_ns(pid);
    let mut series = 0;
    for _ in 0..n {
        let body = get(addr, "/metrics").unwrap_or_default();
        series = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
    }
    let cpu = (process_cpu_ns(pid) - cpu0) as f64 / n as f64 / 1000.0;
    (cpu, series, memory_kb(pid).0)
}

/// `GET path` with `Connection: close`; the body on a 200.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn size_line(path: &Path) -> String {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let stripped = tempfile::tempdir().ok().and_then(|d| {
        let out = d.path().join("stripped");
        let ok = Command::new("strip")
            .arg("-o")
            .arg(&out)
            .arg(path)
            .status()
            .ok()?
            .success();
        ok.then(|| std::fs::metadata(&out).ok().map(|m| m.len()))?
    });
    match stripped {
        Some(s) => format!(
            "{:.2} MB ({:.2} MB stripped)",
            size as f64 / 1e6,
            s as f64 / 1e6
        ),
        None => format!("{:.2} MB", size as f64 / 1e6),
    }
}

/// Answers enroll and ingest requests on keep-alive connections, counting ingests.
struct FakeServer {
    addr: SocketAddr,
    ingests: Arc<AtomicU64>,
}

impl FakeServer {
    fn start() -> FakeServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let ingests = Arc::new(AtomicU64::new(0));
        let count = ingests.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let count = count.clone();
                std::thread::spawn(move || serve(conn, &count));
            }
        });
        FakeServer { addr, ingests }
    }
}

fn serve(conn: TcpStream, ingests: &AtomicU64) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = match path.as_str() {
            "/api/v1/enroll" => r#"{"agent_id":"bench","token":"t"}"#,
            "/api/v1/ingest" => {
                ingests.fetch_add(1, Ordering::SeqCst);
                r#"{"seq":0,"duplicate":false,"samples":0}"#
            }
            _ => "ok",
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// `openssl s_server -www` with a throwaway CA, for HTTPS probes.
struct TlsTarget {
    child: Child,
    port: u16,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsTarget {
    fn start() -> Option<TlsTarget> {
        let dir = tempfile::tempdir().ok()?;
        let d = dir.path();
        let run = |args: &[&str]| {
            Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost\n").ok()?;
        let ok = run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=bench CA",
        ]) && run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ]) && run(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "7",
            "-extfile",
            "ext.cnf",
        ]);
        if !ok {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("openssl")
            .args([
                "s_server", "-quiet", "-www", "-cert", "srv.pem", "-key", "srv.key", "-accept",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(500));
        Some(TlsTarget {
            child,
            port,
            ca: d.join("ca.pem"),
            _dir: dir,
        })
    }
}

impl Drop for TlsTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
