//! Load-and-abuse benchmark (issue 17): a real `yunwei-server` process takes steady ingest from
//! simulated agents, first alone (`baseline`), then while hostile callers run the abuse cases
//! of the issue at the same time (`abuse`):
//! - a deep PromQL selector (`-` × 60,000 then `up`) in `GET /api/v1/yunwei/series` with a read-only
//!   token (once a crash of the whole server);
//! - logins with a 1 MB user name, anonymous (once a 2 MB audit row each);
//! - parallel wrong-password logins against one account (once past the lockout, 19 MiB each);
//! - assessment periods of 1000 years (once 113 MB an answer) and of a whole year (the
//!   heaviest read allowed);
//! - slow clients: half a request header, or a header and a stalled body, re-opened as soon as
//!   the server closes them;
//! - oversized bodies: 8 MiB ingest and login bodies.
//!
//! Measured per phase: acknowledged batches, lost batches (a batch not acknowledged after five
//! attempts — a failed push is sent again as the agent does —, or an acknowledged batch the
//! server did not count as stored), attempts sent again, ack latency (p50 / p99 / max, first
//! send to acknowledgement) of the batches sent inside the window, the server's peak resident memory (sampled every 50 ms
//! from `/proc/<pid>/status`), and the abusers' requests by answer. Exits non-zero when a
//! batch was lost or the server stopped answering; it asserts nothing about time, so a short
//! run is part of the test suite (`tests/tests/abuse.rs`). Everything talks to 127.0.0.1.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};
use yunwei_proto::Ack;
use yunwei_tests::{AgentClient, Db, Enrolled, PgDatabase, ServerProcess, batch, cli_token};

/// A request not answered within this time is a failed attempt (ingest) or `timeout` (abuse).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at one batch before it counts as lost, and the pause between two.
const MAX_ATTEMPTS: u32 = 5;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

const CONTRACT: &str = r#"id: c1
name: 压测合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(
    name = "abuse-bench",
    about = "Steady ingest with and without the hostile callers of issue 17, on 127.0.0.1"
)]
struct Args {
    /// Simulated agents pushing at a steady rate.
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// Seconds between two batches of one agent.
    #[arg(long, default_value_t = 5)]
    interval_secs: u64,
    /// Samples per batch.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Measured seconds of each phase.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Seconds of each phase before its window opens.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// Concurrent slow clients.
    #[arg(long, default_value_t = 64)]
    slow_clients: usize,
    /// Concurrent wrong-password logins.
    #[arg(long, default_value_t = 30)]
    guessers: usize,
    /// The server's `http.header_read_timeout_secs` and `http.body_read_timeout_secs`
    /// (default: the server's defaults).
    #[arg(long)]
    read_timeout_secs: Option<u64>,
    /// Which store.
    #[arg(long, value_enum, default_value_t = BackendArg::Sqlite)]
    backend: BackendArg,
    /// The abuses to run (default: all): deep_selector, huge_login_name, login_guess,
    /// huge_period, year_assessment, oversized_ingest, oversized_login, slow_client.
    #[arg(long, value_delimiter = ',')]
    abuse: Vec<String>,
}

/// Every kind of abuse, as `--abuse` names them.
const KINDS: [&str; 8] = [
    "deep_selector",
    "huge_login_name",
    "login_guess",
    "huge_period",
    "year_assessment",
    "oversized_ingest",
    "oversized_login",
    "slow_client",
];

impl Args {
    fn runs(&self, kind: &str) -> bool {
        self.abuse.is_empty() || self.abuse.iter().any(|k| k == kind)
    }
}

/// One simulated agent.
struct Agent {
    enrolled: Enrolled,
    hostname: String,
    next_seq: AtomicU64,
}

/// What the ingest side of a phase saw.
#[derive(Default)]
struct Ingest {
    /// Ack latencies, microseconds, of pushes sent inside the window.
    latencies_us: Vec<u64>,
    /// Every batch of the phase (warmup included), and how many were acknowledged.
    sent: u64,
    acked: u64,
    /// Attempts sent again after a failed one.
    retries: u64,
    /// Failed attempts by status (`timeout`, `transport`, or the HTTP status).
    failed: BTreeMap<String, u64>,
    first_failure: Option<String>,
}

/// Abusers' answers: kind → answer → count.
type AbuseTally = Arc<Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>>;

fn count(t: &AbuseTally, kind: &'static str, answer: String) {
    let mut m = t.lock().unwrap_or_else(|e| e.into_inner());
    *m.entry(kind).or_default().entry(answer).or_default() += 1;
}

/// The resident set of `pid` in kB (`VmRSS`), or the peak (`VmHWM`).
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `yunwei_ingest_batches_total{result="stored"}` from the server's `/metrics`.
async fn stored_batches(client: &AgentClient) -> anyhow::Result<u64> {
    let text = client.get_text("/metrics").await?;
    text.lines()
        .find_map(|l| l.strip_prefix("yunwei_ingest_batches_total{result=\"stored\"} "))
        .context("no stored batches counter in /metrics")?
        .trim()
        .parse()
        .context("stored batches counter")
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// Sends the agent's next batch like the agent does: a failed push is sent again (same
/// sequence number, so a batch stored but not acknowledged is answered as a duplicate) after
/// `RETRY_BACKOFF`, up to `MAX_ATTEMPTS` times. Records it in `tally`; the latency is the
/// agent's, from the first send to the acknowledgement.
async fn push(
    client: &AgentClient,
    agent: &Agent,
    args: &Args,
    measured: bool,
    tally: &mut Ingest,
) {
    let seq = agent.next_seq.fetch_add(1, Ordering::Relaxed);
    let ts = yunwei_tests::now_ms();
    let mut b = batch(&agent.enrolled, &agent.hostname, seq, ts, args.samples);
    b.interval_ms = args.interval_secs * 1000;
    let body = yunwei_proto::encode_batch(&b);
    let sent = Instant::now();
    tally.sent += 1;
    for attempt in 1..=MAX_ATTEMPTS {
        let res = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.push_body(&agent.enrolled.token, body.clone()),
        )
        .await;
        let failure = match res {
            Ok(Ok((200, text))) => match serde_json::from_str::<Ack>(&text) {
                Ok(_) => {
                    tally.acked += 1;
                    if measured {
                        tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                    }
                    return;
                }
                Err(e) => ("bad_ack".to_string(), format!("{e}: {text}")),
            },
            Ok(Ok((status, text))) => (status.to_string(), text),
            Ok(Err(e)) => ("transport".into(), format!("{e:#}")),
            Err(_) => (
                "timeout".into(),
                format!("no answer in {REQUEST_TIMEOUT:?}"),
            ),
        };
        *tally.failed.entry(failure.0).or_default() += 1;
        tally.first_failure.get_or_insert(failure.1);
        if attempt < MAX_ATTEMPTS {
            tally.retries += 1;
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }
}

/// Steady ingest for warmup + duration: every agent pushes once an interval, start times
/// spread over the interval.
async fn ingest(client: &AgentClient, agents: &Arc<Vec<Agent>>, args: &Arc<Args>) -> Ingest {
    let interval = Duration::from_secs(args.interval_secs);
    let start = Instant::now() + Duration::from_millis(100);
    let window_start = start + Duration::from_secs(args.warmup_secs);
    let end = window_start + Duration::from_secs(args.duration_secs);
    let n = agents.len();
    let mut set = JoinSet::new();
    for i in 0..n {
        let (client, agents, args) = (client.clone(), agents.clone(), args.clone());
        let offset = interval.mul_f64(i as f64 / n as f64);
        set.spawn(async move {
            let mut tally = Ingest::default();
            let mut tick = tokio::time::interval_at(start + offset, interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                let t = tick.tick().await;
                if t >= end {
                    break;
                }
                push(&client, &agents[i], &args, t >= window_start, &mut tally).await;
            }
            tally
        });
    }
    let mut total = Ingest::default();
    while let Some(r) = set.join_next().await {
        let t = r.expect("an ingest task panicked");
        total.latencies_us.extend(t.latencies_us);
        total.sent += t.sent;
        total.acked += t.acked;
        total.retries += t.retries;
        for (k, v) in t.failed {
            *total.failed.entry(k).or_default() += v;
        }
        if total.first_failure.is_none() {
            total.first_failure = t.first_failure;
        }
    }
    total.latencies_us.sort_unstable();
    total
}

/// One HTTP request of an abuser; counts its answer under `kind`.
async fn send(tally: &AbuseTally, kind: &'static str, req: reqwest::RequestBuilder) {
    let answer = match tokio::time::timeout(REQUEST_TIMEOUT, req.send()).await {
        Ok(Ok(r)) => {
            let status = r.status().as_u16().to_string();
            // Read the answer whole, as a client would.
            let _ = r.bytes().await;
            status
        }
        Ok(Err(e)) if e.is_connect() => "connect".into(),
        Ok(Err(_)) => "transport".into(),
        Err(_) => "timeout".into(),
    };
    count(tally, kind, answer);
}

/// A slow client: half a header (even `i`) or a header and a stalled body (odd `i`), one
/// byte a second, until the server closes the connection; then again.
async fn slow_client(addr: String, i: usize, tally: AbuseTally, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
            count(&tally, "slow_client", "connect".into());
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head: &[u8] = if i.is_multiple_of(2) {
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
        } else {
            b"POST /api/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\n\r\n{\"secret\":\""
        };
        if s.write_all(head).await.is_err() {
            count(&tally, "slow_client", "closed".into());
            continue;
        }
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        let answer = loop {
            if stop.load(Ordering::Relaxed) {
                break None;
            }
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break Some(got),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => {
                    if s.write_all(b"a").await.is_err() {
                        break Some(got);
                    }
                }
            }
        };
        if let Some(got) = answer {
            let text = String::from_utf8_lossy(&got);
            let answer = match text.split_whitespace().nth(1) {
                Some(status) if text.starts_with("HTTP/") => format!("{status}+closed"),
                _ => "closed".into(),
            };
            count(&tally, "slow_client", answer);
        }
    }
}

/// Starts every abuser; they run until `stop`.
fn start_abusers(
    base: &str,
    reader_token: &str,
    agent_token: &str,
    args: &Args,
    tally: &AbuseTally,
    stop: &Arc<AtomicBool>,
) -> JoinSet<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()
        .expect("client");
    let mut set = JoinSet::new();
    let looped = |set: &mut JoinSet<()>,
                  kind: &'static str,
                  make: Arc<dyn Fn() -> reqwest::RequestBuilder + Send + Sync>| {
        if !args.runs(kind) {
            return;
        }
        let (tally, stop) = (tally.clone(), stop.clone());
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                send(&tally, kind, make()).await;
            }
        });
    };
    let deep = format!("{base}/api/v1/yunwei/series?match={}up", "-".repeat(60_000));
    let (h, t) = (http.clone(), reader_token.to_string());
    looped(
        &mut set,
        "deep_selector",
        Arc::new(move || h.get(&deep).bearer_auth(&t)),
    );
    let login = format!("{base}/api/v1/auth/login");
    let huge_name = serde_json::json!({ "user": "a".repeat(1_000_000), "password": "x" });
    let (h, l) = (http.clone(), login.clone());
    looped(
        &mut set,
        "huge_login_name",
        Arc::new(move || h.post(&l).json(&huge_name)),
    );
    for g in 0..args.guessers {
        let (h, l) = (http.clone(), login.clone());
        let guess = serde_json::json!({ "user": "victim", "password": format!("guess-{g}") });
        looped(
            &mut set,
            "login_guess",
            Arc::new(move || h.post(&l).json(&guess)),
        );
    }
    for period in ["2020-01-01..2999-12-31", "2025"] {
        let url = format!("{base}/api/v1/contracts/c1/assessment?period={period}");
        let (h, t) = (http.clone(), reader_token.to_string());
        let kind = if period == "2025" {
            "year_assessment"
        } else {
            "huge_period"
        };
        looped(
            &mut set,
            kind,
            Arc::new(move || h.get(&url).bearer_auth(&t)),
        );
    }
    let big = vec![b'x'; 8 << 20];
    let (h, url, t, body) = (
        http.clone(),
        format!("{base}/api/v1/ingest"),
        agent_token.to_string(),
        big.clone(),
    );
    looped(
        &mut set,
        "oversized_ingest",
        Arc::new(move || {
            h.post(&url)
                .header("content-type", yunwei_proto::CONTENT_TYPE)
                .header("content-encoding", "gzip")
                .bearer_auth(&t)
                .body(body.clone())
        }),
    );
    let (h, l) = (http.clone(), login);
    looped(
        &mut set,
        "oversized_login",
        Arc::new(move || {
            h.post(&l)
                .header("content-type", "application/json")
                .body(big.clone())
        }),
    );
    let addr = base.trim_start_matches("http://").to_string();
    for i in (0..args.slow_clients).filter(|_| args.runs("slow_client")) {
        set.spawn(slow_client(addr.clone(), i, tally.clone(), stop.clone()));
    }
    set
}

/// One phase's figures.
struct Phase {
    name: &'static str,
    ingest: Ingest,
    /// Batches the server counted as stored during the phase.
    stored: u64,
    peak_rss_kb: u64,
    abuse: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

impl Phase {
    /// Batches never acknowledged plus acknowledged batches the server did not store.
    fn lost(&self) -> u64 {
        (self.ingest.sent - self.ingest.acked) + self.ingest.acked.saturating_sub(self.stored)
    }
}

async fn phase(
    name: &'static str,
    server: &ServerProcess,
    client: &AgentClient,
    agents: &Arc<Vec<Agent>>,
    args: &Arc<Args>,
    abusers: Option<(&str, &str)>,
) -> anyhow::Result<Phase> {
    let before = stored_batches(client).await?;
    let tally: AbuseTally = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Peak RSS of the server during the phase.
    let pid = server.pid();
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let abuse = abusers
        .map(|(reader, agent)| start_abusers(&server.url(""), reader, agent, args, &tally, &stop));
    eprintln!(
        "  {name}: {} agents, a batch of {} samples every {} s each{}; warmup {} s, measuring {} s",
        agents.len(),
        args.samples,
        args.interval_secs,
        if abuse.is_some() {
            ", hostile callers running"
        } else {
            ""
        },
        args.warmup_secs,
        args.duration_secs
    );
    let ingest = ingest(client, agents, args).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(mut set) = abuse {
        let deadline = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(5);
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, set.join_next()).await {}
        set.abort_all();
    }
    let _ = sampler.await;
    let stored = stored_batches(client).await? - before;
    let abuse = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Phase {
        name,
        ingest,
        stored,
        peak_rss_kb: peak.load(Ordering::Relaxed),
        abuse,
    })
}

fn ms(us: Option<u64>) -> String {
    us.map_or("-".into(), |v| format!("{:.1}", v as f64 / 1000.0))
}

fn print(phases: &[Phase], args: &Args, backend: &str, hwm_kb: Option<u64>) {
    println!(
        "\nabuse-bench ({backend}): {} agents × {} samples every {} s; {} s measured per phase",
        args.agents, args.samples, args.interval_secs, args.duration_secs
    );
    println!(
        "| phase | batches | acked | lost | retried | ack p50 ms | ack p99 ms | ack max ms | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in phases {
        let l = &p.ingest.latencies_us;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            p.name,
            p.ingest.sent,
            p.ingest.acked,
            p.lost(),
            p.ingest.retries,
            ms(percentile(l, 0.50)),
            ms(percentile(l, 0.99)),
            ms(l.last().copied()),
            p.peak_rss_kb as f64 / 1024.0
        );
    }
    if let Some(hwm) = hwm_kb {
        println!(
            "server peak RSS over the whole run (VmHWM): {:.1} MiB",
            hwm as f64 / 1024.0
        );
    }
    for p in phases.iter().filter(|p| !p.abuse.is_empty()) {
        println!("\nhostile requests during {} (answers by status):", p.name);
        println!("| abuse | requests | answers |");
        println!("|---|---:|---|");
        for (kind, answers) in &p.abuse {
            let total: u64 = answers.values().sum();
            let list = answers
                .iter()
                .map(|(a, n)| format!("{a}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!("| {kind} | {total} | {list} |");
        }
    }
    for p in phases {
        if !p.ingest.failed.is_empty() {
            println!(
                "\n{}: failed attempts {:?}; first: {}",
                p.name,
                p.ingest.failed,
                p.ingest.first_failure.as_deref().unwrap_or("")
            );
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(k) = args.abuse.iter().find(|k| !KINDS.contains(&k.as_str())) {
        bail!("--abuse {k}: not one of {}", KINDS.join(", "));
    }
    let args = Arc::new(args);
    let dir = tempfile::tempdir()?;
    let contract = dir.path().join("contract.yml");
    std::fs::write(&contract, CONTRACT)?;
    let pg = match args.backend {
        BackendArg::Sqlite => None,
        BackendArg::Postgres => Some(
            PgDatabase::create()
                .await
                .context("PostgreSQL is unreachable")?,
        ),
    };
    let db = match &pg {
        None => Db::Sqlite,
        Some(p) => Db::Postgres(p.url.clone()),
    };
    let timeouts = args.read_timeout_secs.map_or(String::new(), |s| {
        format!("http:\n  header_read_timeout_secs: {s}\n  body_read_timeout_secs: {s}\n")
    });
    let mut server = ServerProcess::start(
        &db,
        &format!(
            "contracts:\n  files: [{}]\n  run_inspections: false\n  scheduled_reports: false\n{timeouts}",
            contract.display()
        ),
    )
    .await?;
    let backend = match args.backend {
        BackendArg::Sqlite => "sqlite",
        BackendArg::Postgres => "postgres",
    };
    let client = AgentClient::new(&server);
    // The account the guessers try, and a read-only token for the deep selector.
    let r = client
        .api(reqwest::Method::POST, "/api/v1/users")
        .json(&serde_json::json!({
            "name": "victim", "role": "operator", "password": "Correct-Horse-42-Battery",
        }))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("adding the user: {} {}", r.status(), r.text().await?);
    }
    let reader = cli_token(&server.config_path, "abuse-reader", "reviewer")?;

    eprintln!("enrolling {} agents", args.agents);
    let mut agents = Vec::new();
    for i in 0..args.agents {
        let hostname = format!("abuse-{i:05}");
        let enrolled = client.enroll(&hostname).await?;
        agents.push(Agent {
            enrolled,
            hostname,
            next_seq: AtomicU64::new(1),
        });
    }
    let agents = Arc::new(agents);
    // First batches create the series: a one-time cost kept out of both phases.
    for a in agents.iter() {
        let mut t = Ingest::default();
        push(&client, a, &args, false, &mut t).await;
        if t.acked != 1 {
            bail!(
                "priming {}: {:?} {:?}",
                a.hostname,
                t.failed,
                t.first_failure
            );
        }
    }

    let baseline = phase("baseline", &server, &client, &agents, &args, None).await?;
    let abuse_agent = agents[0].enrolled.token.clone();
    let abuse = phase(
        "abuse",
        &server,
        &client,
        &agents,
        &args,
        Some((&reader, &abuse_agent)),
    )
    .await?;
    let hwm = proc_status_kb(server.pid(), "VmHWM:");
    let up = reqwest::get(server.url("/healthz"))
        .await
        .is_ok_and(|r| r.status().is_success());
    let phases = [baseline, abuse];
    print(&phases, &args, backend, hwm);
    let lost: u64 = phases.iter().map(Phase::lost).sum();
    if !up {
        bail!(
            "the server stopped answering during the abuse; log:\n{}",
            server.log()
        );
    }
    if server.log().contains("panicked") {
        bail!("the server panicked; log:\n{}", server.log());
    }
    if lost > 0 {
        bail!("{lost} batches lost");
    }
    println!("\nno batch lost; the server answered throughout");
    server.terminate();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}
