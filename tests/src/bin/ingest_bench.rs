//! Ingest benchmark: a real `yunwei-server` process per backend, N simulated agents on loopback.
//!
//! After enrolling the agents, each sends its first batch once (creating its series, a one-time
//! cost kept out of the measurements). Then two phases per backend:
//! - `steady`: N agents each push one batch of P samples every S seconds, start times spread
//!   uniformly over the interval (the production shape). Measured after a warmup.
//! - `saturation`: a fixed number of concurrent pushers send batches back to back (round robin
//!   over the enrolled agents) for D/2 seconds: the most the server sustains on this machine.
//!
//! Measured per phase, inside the measured window only: ack latency (send → full response),
//! acked samples, non-200 responses by status, and the server process's CPU time from
//! `/proc/<pid>/stat` (plus, for PostgreSQL, the CPU of the PostgreSQL backends serving the
//! server's database). Everything talks to 127.0.0.1 only, and every phase has a deadline.
//!
//! Then the peers at the same steady load shape, in the same run (`peers`): Prometheus
//! scraping, VictoriaMetrics through its import API; the table shows yunwei's CPU per sample
//! beside theirs with the ratio.

#[path = "ingest_bench/peers.rs"]
mod peers;
#[path = "ingest_bench/replicas.rs"]
mod replicas;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use sqlx::Connection;
use tokio::{
    sync::Semaphore,
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};
use yunwei_proto::{Ack, Sample};
use yunwei_tests::{
    AgentClient, Db, Enrolled, PgDatabase, ServerProcess, batch, now_ms, process_cpu_micros,
};

/// A request not answered within this time counts as an error (`timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Enrollment requests in flight at once.
const ENROLL_CONCURRENCY: usize = 16;
/// Pause of a saturation pusher after a failed request, so a refusing server is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Parser)]
#[command(
    name = "ingest-bench",
    about = "Ingest benchmark: real yunwei-server, simulated agents on 127.0.0.1"
)]
struct Args {
    /// Simulated agents (each enrolled with the server).
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Seconds between two batches of one agent in the steady phase.
    #[arg(long, default_value_t = 15)]
    interval_secs: u64,
    /// Samples per batch.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Measured seconds of the steady phase; the saturation phase measures half of it.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Which store(s) to benchmark.
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// Seconds of load before the steady phase is measured (the saturation phase warms up for
    /// min(this, 5) s).
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
    /// Concurrent pushers in the saturation phase (at most one per agent).
    #[arg(long, default_value_t = 64)]
    pushers: usize,
    /// Load the shipped rules (`rules/host.rules.yml`, `rules/probe.rules.yml`) with evaluation
    /// on ingest on (the server's default), so the figures include the rule engine.
    #[arg(long)]
    rules: bool,
    /// Peers measured at the steady load shape after yunwei (`none` for none).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "prometheus,victoria-metrics"
    )]
    peers: Vec<String>,
    /// Replicas on one PostgreSQL (`--backend postgres` only): above 1, runs the steady phase
    /// with the agents spread over them instead (`ingest_bench/replicas.rs`).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
}

/// One enrolled, simulated agent.
struct Agent {
    enrolled: Enrolled,
    hostname: String,
    next_seq: AtomicU64,
}

/// The measured window of a phase.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
    fn secs(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
}

/// What one task saw; merged per phase.
#[derive(Default)]
struct Tally {
    /// Ack latencies of 200 responses completed inside the window, microseconds.
    latencies_us: Vec<u64>,
    acked_samples: u64,
    acked_batches: u64,
    duplicates: u64,
    /// Failures completed inside the window, by HTTP status or `timeout` / `transport`.
    errors: BTreeMap<String, u64>,
    /// Failures outside the window (warmup), reported separately.
    errors_outside: BTreeMap<String, u64>,
    /// First few error bodies, for the report.
    error_samples: Vec<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.latencies_us.extend(o.latencies_us);
        self.acked_samples += o.acked_samples;
        self.acked_batches += o.acked_batches;
        self.duplicates += o.duplicates;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.errors_outside {
            *self.errors_outside.entry(k).or_default() += v;
        }
        for e in o.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e);
            }
        }
    }

    fn error(&mut self, counted: bool, kind: String, detail: String) {
        let map = if counted {
            &mut self.errors
        } else {
            &mut self.errors_outside
        };
        *map.entry(kind.clone()).or_default() += 1;
        if self.error_samples.len() < 5 {
            let detail: String = detail.chars().take(300).collect();
            self.error_samples.push(format!("{kind}: {detail}"));
        }
    }
}

/// Counters read before and after a window.
#[derive(Default, Clone)]
struct Snapshot {
    server_cpu_us: u64,
    client_cpu_us: u64,
    /// CPU of each PostgreSQL backend serving the server's database, by PID.
    pg_cpu_us: Option<HashMap<i32, u64>>,
    writer: WriterStats,
}

/// The server's own group-commit metrics (from `/metrics`).
#[derive(Default, Clone, Copy)]
struct WriterStats {
    commit_seconds_sum: f64,
    commits: f64,
    group_batches_sum: f64,
}

fn parse_writer_stats(text: &str) -> WriterStats {
    let value = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    WriterStats {
        commit_seconds_sum: value("yunwei_ingest_commit_duration_seconds_sum"),
        commits: value("yunwei_ingest_commit_duration_seconds_count"),
        group_batches_sum: value("yunwei_ingest_commit_group_batches_sum"),
    }
}

/// Connection used only to list the PostgreSQL backends of the server's database.
struct PgWatch {
    conn: sqlx::PgConnection,
}

impl PgWatch {
    async fn cpu(&mut self) -> anyhow::Result<HashMap<i32, u64>> {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut self.conn)
        .await?;
        Ok(pids
            .into_iter()
            .filter_map(|pid| Some((pid, process_cpu_micros(u32::try_from(pid).ok()?).ok()?)))
            .collect())
    }
}

async fn snapshot(
    server: &ServerProcess,
    client: &AgentClient,
    pg: &mut Option<PgWatch>,
) -> Snapshot {
    let server_cpu_us = process_cpu_micros(server.pid()).unwrap_or(0);
    let client_cpu_us = process_cpu_micros(std::process::id()).unwrap_or(0);
    let pg_cpu_us = match pg {
        Some(w) => match w.cpu().await {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("  warning: reading PostgreSQL backend CPU failed: {e:#}");
                None
            }
        },
        None => None,
    };
    let writer =
        match tokio::time::timeout(Duration::from_secs(5), client.get_text("/metrics")).await {
            Ok(Ok(text)) => parse_writer_stats(&text),
            _ => WriterStats::default(),
        };
    Snapshot {
        server_cpu_us,
        client_cpu_us,
        pg_cpu_us,
        writer,
    }
}

/// Metric families shaped like node_exporter's; `(family, instance)` maps to distinct series.
fn node_sample(k: usize, seq: u64, ts_ms: i64) -> Sample {
    const MODES: [&str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    const FAMILIES: usize = 8;
    let (f, j) = (k % FAMILIES, k / FAMILIES);
    let l = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    };
    let counter = (seq as f64) * (15.0 + k as f64 * 1.37);
    let (name, labels, value) = match f {
        0 => (
            "node_cpu_seconds_total",
            l(&[
                ("cpu", (j / 8).to_string()),
                ("mode", MODES[j % 8].to_string()),
            ]),
            counter,
        ),
        1 => (
            "node_filesystem_avail_bytes",
            l(&[
                ("device", format!("/dev/vda{j}")),
                ("fstype", "ext4".into()),
                (
                    "mountpoint",
                    if j == 0 {
                        "/".into()
                    } else {
                        format!("/data{j}")
                    },
                ),
            ]),
            5.0e10 - (seq % 1000) as f64 * 4096.0,
        ),
        2 => (
            "node_network_receive_bytes_total",
            l(&[("device", format!("eth{j}"))]),
            counter * 1500.0,
        ),
        3 => (
            "node_network_transmit_bytes_total",
            l(&[("device", format!("eth{j}"))]),
            counter * 900.0,
        ),
        4 => (
            "node_disk_read_bytes_total",
            l(&[("device", format!("vd{j}"))]),
            counter * 4096.0,
        ),
        5 => (
            "node_disk_written_bytes_total",
            l(&[("device", format!("vd{j}"))]),
            counter * 8192.0,
        ),
        6 => (
            "node_hwmon_temp_celsius",
            l(&[
                ("chip", "platform_coretemp_0".into()),
                ("sensor", format!("temp{j}")),
            ]),
            40.0 + ((seq + k as u64) % 17) as f64 * 0.5,
        ),
        _ => (
            "node_softnet_processed_total",
            l(&[("cpu", j.to_string())]),
            counter * 11.0,
        ),
    };
    Sample {
        name: name.into(),
        labels: labels.into(),
        value,
        ts_ms,
    }
}

/// Builds, encodes (once) and sends the agent's next batch; records the outcome if it
/// completes inside the window. Returns whether the server acknowledged it.
async fn push_once(
    client: &AgentClient,
    agent: &Agent,
    interval_ms: u64,
    samples: usize,
    window: &Window,
    tally: &mut Tally,
) -> bool {
    let seq = agent.next_seq.fetch_add(1, Ordering::Relaxed);
    let ts = now_ms();
    let mut b = batch(&agent.enrolled, &agent.hostname, seq, ts, 0);
    b.interval_ms = interval_ms;
    b.samples = (0..samples).map(|k| node_sample(k, seq, ts)).collect();
    let body = yunwei_proto::encode_batch(&b);
    let sent = Instant::now();
    let res = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.push_body(&agent.enrolled.token, body),
    )
    .await;
    let done = Instant::now();
    let counted = window.contains(done);
    match res {
        Ok(Ok((200, text))) => match serde_json::from_str::<Ack>(&text) {
            Ok(ack) => {
                if counted {
                    tally.latencies_us.push((done - sent).as_micros() as u64);
                    tally.acked_samples += ack.samples;
                    tally.acked_batches += 1;
                    tally.duplicates += u64::from(ack.duplicate);
                }
                true
            }
            Err(e) => {
                tally.error(counted, "bad_ack".into(), format!("{e}: {text}"));
                false
            }
        },
        Ok(Ok((status, text))) => {
            tally.error(counted, status.to_string(), text);
            false
        }
        Ok(Err(e)) => {
            tally.error(counted, "transport".into(), format!("{e:#}"));
            false
        }
        Err(_) => {
            tally.error(
                counted,
                "timeout".into(),
                format!("no response within {REQUEST_TIMEOUT:?}"),
            );
            false
        }
    }
}

/// Joins every task, aborting the ones still running at `deadline`.
async fn join_all(mut set: JoinSet<Tally>, deadline: Instant) -> Tally {
    let mut total = Tally::default();
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(t))) => total.merge(t),
            Ok(Some(Err(e))) => eprintln!("  warning: a load task failed: {e}"),
            Ok(None) => break,
            Err(_) => {
                eprintln!(
                    "  warning: {} load tasks still running at the deadline; aborted",
                    set.len()
                );
                set.abort_all();
                break;
            }
        }
    }
    total
}

/// One row of the result table.
struct Row {
    backend: &'static str,
    phase: &'static str,
    agents: String,
    interval: String,
    samples_per_batch: usize,
    window_secs: f64,
    tally: Tally,
    server_cpu_us: u64,
    /// yunwei-server plus the PostgreSQL backends (PostgreSQL only).
    pg_cpu_us: Option<u64>,
    client_cpu_us: u64,
    writer: WriterStats,
}

impl Row {
    fn samples_per_sec(&self) -> f64 {
        self.tally.acked_samples as f64 / self.window_secs
    }
    fn per_sample(&self, us: u64) -> Option<f64> {
        (self.tally.acked_samples > 0).then(|| us as f64 / self.tally.acked_samples as f64)
    }
    fn percentile_ms(&self, q: f64) -> Option<f64> {
        let v = &self.tally.latencies_us;
        if v.is_empty() {
            return None;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1] as f64 / 1000.0)
    }
    fn errors(&self) -> String {
        if self.tally.errors.is_empty() {
            return "0".into();
        }
        self.tally
            .errors
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn diff(before: &Snapshot, after: &Snapshot) -> (u64, Option<u64>, u64, WriterStats) {
    let server = after.server_cpu_us.saturating_sub(before.server_cpu_us);
    let client = after.client_cpu_us.saturating_sub(before.client_cpu_us);
    let pg = match (&before.pg_cpu_us, &after.pg_cpu_us) {
        (Some(b), Some(a)) => Some(
            a.iter()
                .map(|(pid, us)| us.saturating_sub(b.get(pid).copied().unwrap_or(0)))
                .sum::<u64>(),
        ),
        _ => None,
    };
    let w = WriterStats {
        commit_seconds_sum: after.writer.commit_seconds_sum - before.writer.commit_seconds_sum,
        commits: after.writer.commits - before.writer.commits,
        group_batches_sum: after.writer.group_batches_sum - before.writer.group_batches_sum,
    };
    (server, pg, client, w)
}

async fn enroll_all(client: &AgentClient, n: usize) -> anyhow::Result<Vec<Agent>> {
    let sem = Arc::new(Semaphore::new(ENROLL_CONCURRENCY));
    let mut set = JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let hostname = format!("bench-{i:05}");
            let mut last = None;
            for _ in 0..3 {
                match tokio::time::timeout(REQUEST_TIMEOUT, client.enroll(&hostname)).await {
                    Ok(Ok(enrolled)) => {
                        return Ok((
                            i,
                            Agent {
                                enrolled,
                                hostname,
                                next_seq: AtomicU64::new(1),
                            },
                        ));
                    }
                    Ok(Err(e)) => last = Some(e),
                    Err(_) => last = Some(anyhow::anyhow!("enroll timed out")),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(last.unwrap().context(format!("enrolling {hostname}")))
        });
    }
    let mut agents: Vec<Option<Agent>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, a) = r??;
        agents[i] = Some(a);
    }
    Ok(agents
        .into_iter()
        .map(|a| a.expect("every agent enrolled"))
        .collect())
}

/// Sends every agent's first batch (sequence number 1), so that creating its series, a one-time
/// cost, falls outside the measured windows. Returns the seconds taken and the failures.
async fn prime_all(client: &AgentClient, agents: &Arc<Vec<Agent>>, args: &Args) -> (f64, Tally) {
    let t = Instant::now();
    let never = Window { start: t, end: t };
    let sem = Arc::new(Semaphore::new(ENROLL_CONCURRENCY));
    let mut set = JoinSet::new();
    for i in 0..agents.len() {
        let (client, agents, sem) = (client.clone(), agents.clone(), sem.clone());
        let (interval_ms, samples) = (args.interval_secs * 1000, args.samples);
        set.spawn(async move {
            let mut tally = Tally::default();
            let Ok(_permit) = sem.acquire_owned().await else {
                return tally;
            };
            push_once(
                &client,
                &agents[i],
                interval_ms,
                samples,
                &never,
                &mut tally,
            )
            .await;
            tally
        });
    }
    let tally = join_all(set, Instant::now() + Duration::from_secs(300)).await;
    (t.elapsed().as_secs_f64(), tally)
}

/// Common inputs of a phase.
struct Ctx<'a> {
    backend: &'static str,
    server: &'a ServerProcess,
    client: AgentClient,
    agents: Arc<Vec<Agent>>,
    pg: Option<PgWatch>,
}

async fn measure(
    ctx: &mut Ctx<'_>,
    window: Window,
    set: JoinSet<Tally>,
) -> (Snapshot, Snapshot, Tally) {
    tokio::time::sleep_until(window.start).await;
    let before = snapshot(ctx.server, &ctx.client, &mut ctx.pg).await;
    tokio::time::sleep_until(window.end).await;
    let after = snapshot(ctx.server, &ctx.client, &mut ctx.pg).await;
    let mut tally = join_all(set, window.end + REQUEST_TIMEOUT + Duration::from_secs(5)).await;
    tally.latencies_us.sort_unstable();
    (before, after, tally)
}

async fn steady(ctx: &mut Ctx<'_>, args: &Args) -> Row {
    let interval = Duration::from_secs(args.interval_secs);
    let start = Instant::now() + Duration::from_millis(200);
    let wstart = start + Duration::from_secs(args.warmup_secs);
    let window = Window {
        start: wstart,
        end: wstart + Duration::from_secs(args.duration_secs),
    };
    let n = ctx.agents.len();
    let mut set = JoinSet::new();
    for i in 0..n {
        let (client, agents) = (ctx.client.clone(), ctx.agents.clone());
        let (interval_ms, samples) = (args.interval_secs * 1000, args.samples);
        // Uniform spread of start times over one interval.
        let offset = interval.mul_f64(i as f64 / n as f64);
        set.spawn(async move {
            let mut tally = Tally::default();
            let mut tick = tokio::time::interval_at(start + offset, interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                let t = tick.tick().await;
                if t >= window.end {
                    break;
                }
                push_once(
                    &client,
                    &agents[i],
                    interval_ms,
                    samples,
                    &window,
                    &mut tally,
                )
                .await;
            }
            tally
        });
    }
    eprintln!(
        "  steady: {n} agents, one batch of {} samples every {} s each; warmup {} s, measuring {} s",
        args.samples, args.interval_secs, args.warmup_secs, args.duration_secs
    );
    let (before, after, tally) = measure(ctx, window, set).await;
    let (server_cpu_us, pg, client_cpu_us, writer) = diff(&before, &after);
    Row {
        backend: ctx.backend,
        phase: "steady",
        agents: n.to_string(),
        interval: format!("{} s", args.interval_secs),
        samples_per_batch: args.samples,
        window_secs: window.secs(),
        tally,
        server_cpu_us,
        pg_cpu_us: pg,
        client_cpu_us,
        writer,
    }
}

async fn saturation(ctx: &mut Ctx<'_>, args: &Args) -> Row {
    let n = ctx.agents.len();
    let pushers = args.pushers.clamp(1, n);
    let start = Instant::now();
    let wstart = start + Duration::from_secs(args.warmup_secs.min(5));
    let window = Window {
        start: wstart,
        end: wstart
            + Duration::from_millis(args.duration_secs * 1000 / 2).max(Duration::from_secs(1)),
    };
    let mut set = JoinSet::new();
    for p in 0..pushers {
        let (client, agents) = (ctx.client.clone(), ctx.agents.clone());
        let (interval_ms, samples) = (args.interval_secs * 1000, args.samples);
        set.spawn(async move {
            let mut tally = Tally::default();
            // Pusher p owns agents p, p + pushers, ...: one request per agent at a time.
            let mut i = p;
            while Instant::now() < window.end {
                if !push_once(
                    &client,
                    &agents[i],
                    interval_ms,
                    samples,
                    &window,
                    &mut tally,
                )
                .await
                {
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
                i += pushers;
                if i >= n {
                    i = p;
                }
            }
            tally
        });
    }
    eprintln!(
        "  saturation: {pushers} concurrent pushers back to back over {n} agents; warmup {} s, measuring {:.0} s",
        (window.start - start).as_secs(),
        window.secs()
    );
    let (before, after, tally) = measure(ctx, window, set).await;
    let (server_cpu_us, pg, client_cpu_us, writer) = diff(&before, &after);
    Row {
        backend: ctx.backend,
        phase: "saturation",
        agents: format!("{n} ({pushers} conc.)"),
        interval: "b2b".into(),
        samples_per_batch: args.samples,
        window_secs: window.secs(),
        tally,
        server_cpu_us,
        pg_cpu_us: pg,
        client_cpu_us,
        writer,
    }
}

async fn run_backend(
    backend: &'static str,
    args: &Args,
) -> anyhow::Result<Option<(Vec<Row>, String)>> {
    eprintln!("== {backend}");
    let pg_db = if backend == "postgres" {
        match PgDatabase::create().await {
            Some(db) => Some(db),
            None => {
                println!(
                    "PostgreSQL was skipped: no PostgreSQL reachable at {}",
                    yunwei_tests::pg_base_url()
                );
                return Ok(None);
            }
        }
    } else {
        None
    };
    let db = match &pg_db {
        Some(p) => Db::Postgres(p.url.clone()),
        None => Db::Sqlite,
    };
    let extra = if args.rules {
        let root = yunwei_tests::workspace_root();
        format!(
            "rules:\n  files: [{:?}, {:?}]\n  eval_on_ingest: true\n",
            root.join("rules/host.rules.yml"),
            root.join("rules/probe.rules.yml")
        )
    } else {
        String::new()
    };
    let server = ServerProcess::start(&db, &extra)
        .await
        .context("starting yunwei-server")?;
    if !server.addr.ip().is_loopback() {
        bail!("the server listens on {}, not on loopback", server.addr);
    }
    let client = AgentClient::new(&server);
    let t = std::time::Instant::now();
    let agents = tokio::time::timeout(Duration::from_secs(300), enroll_all(&client, args.agents))
        .await
        .context("enrollment took more than 300 s")??;
    eprintln!(
        "  enrolled {} agents in {:.1} s",
        agents.len(),
        t.elapsed().as_secs_f64()
    );
    let pg = match &pg_db {
        Some(p) => Some(PgWatch {
            conn: sqlx::PgConnection::connect(&p.url).await?,
        }),
        None => None,
    };
    let agents = Arc::new(agents);
    let (secs, primed) = prime_all(&client, &agents, args).await;
    let prime_errors: u64 = primed.errors_outside.values().sum();
    let note = format!(
        "{backend}: enrolled {} agents, then primed each with its first batch (creates {} series per agent) \
         in {secs:.1} s ({:.0} new series/s), {prime_errors} failures{}",
        agents.len(),
        args.samples,
        (agents.len() * args.samples) as f64 / secs,
        if prime_errors > 0 {
            format!(" {:?}", primed.errors_outside)
        } else {
            String::new()
        },
    );
    eprintln!("  {note}");
    for e in &primed.error_samples {
        eprintln!("    {e}");
    }
    let mut ctx = Ctx {
        backend,
        server: &server,
        client,
        agents,
        pg,
    };
    let rows = vec![
        steady(&mut ctx, args).await,
        saturation(&mut ctx, args).await,
    ];
    drop(ctx);
    let log = server.log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    if !bad.is_empty() {
        eprintln!("  server log: {} WARN/ERROR lines; first ones:", bad.len());
        for l in bad.iter().take(5) {
            eprintln!("    {l}");
        }
    }
    drop(server);
    drop(pg_db);
    Ok(Some((rows, note)))
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

fn print_table(rows: &[Row]) {
    let header = [
        "backend",
        "phase",
        "agents",
        "interval",
        "samples/batch",
        "samples/s",
        "server CPU µs/sample",
        "+PG backends µs/sample",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.backend.to_string(),
                r.phase.to_string(),
                r.agents.clone(),
                r.interval.clone(),
                r.samples_per_batch.to_string(),
                format!("{:.0}", r.samples_per_sec()),
                fmt_opt(r.per_sample(r.server_cpu_us), 2),
                fmt_opt(
                    r.pg_cpu_us
                        .and_then(|pg| r.per_sample(r.server_cpu_us + pg)),
                    2,
                ),
                fmt_opt(r.percentile_ms(0.50), 1),
                fmt_opt(r.percentile_ms(0.99), 1),
                fmt_opt(r.percentile_ms(1.0), 1),
                r.errors(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            body.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let cells: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", cells.join(" | "));
    };
    line(header.iter().map(|h| h.to_string()).collect());
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in body {
        line(r);
    }
}

fn print_details(rows: &[Row]) {
    println!();
    println!("Details per row (measured window only):");
    for r in rows {
        let w = &r.writer;
        let (group, commit_ms, busy) = if w.commits > 0.0 {
            (
                w.group_batches_sum / w.commits,
                w.commit_seconds_sum * 1000.0 / w.commits,
                100.0 * w.commit_seconds_sum / r.window_secs,
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        println!(
            "- {} {}: {:.1} s window, {} acked batches ({} duplicates), {} acked samples; server CPU {:.2} s \
             ({:.0}% of one core){}; load generator CPU {:.2} µs/sample; writer: {:.0} commits, {:.1} batches/commit, \
             {:.2} ms/commit, busy {:.0}% of the window",
            r.backend,
            r.phase,
            r.window_secs,
            r.tally.acked_batches,
            r.tally.duplicates,
            r.tally.acked_samples,
            r.server_cpu_us as f64 / 1e6,
            100.0 * r.server_cpu_us as f64 / 1e6 / r.window_secs,
            r.pg_cpu_us
                .map(|pg| format!(", PostgreSQL backends CPU {:.2} s", pg as f64 / 1e6))
                .unwrap_or_default(),
            r.per_sample(r.client_cpu_us).unwrap_or(0.0),
            w.commits,
            group,
            commit_ms,
            busy,
        );
        if !r.tally.errors_outside.is_empty() {
            println!(
                "  errors during warmup (not in the table): {:?}",
                r.tally.errors_outside
            );
        }
        for e in &r.tally.error_samples {
            println!("  error sample: {e}");
        }
    }
}

fn print_peers(rows: &[Row], peer_rows: &[peers::PeerRow], skipped: &[String]) {
    println!();
    println!("Peers at the same steady load shape, measured in this run:");
    // yunwei's steady figure per backend: the server, plus PostgreSQL's backends on PostgreSQL.
    let ours: Vec<(&str, f64)> = rows
        .iter()
        .filter(|r| r.phase == "steady")
        .filter_map(|r| {
            let us = r.server_cpu_us + r.pg_cpu_us.unwrap_or(0);
            Some((r.backend, r.per_sample(us)?))
        })
        .collect();
    let mut header = vec![
        "system".to_string(),
        "how".into(),
        "samples/s".into(),
        "CPU µs/sample".into(),
        "RSS MB".into(),
    ];
    for (b, _) in &ours {
        header.push(format!("yunwei {b} ÷ this"));
    }
    println!("| {} |", header.join(" | "));
    println!(
        "|{}|",
        header
            .iter()
            .map(|h| "-".repeat(h.chars().count() + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for (b, us) in &ours {
        let mut cells = vec![
            format!("yunwei ({b})"),
            "push, ack after commit".into(),
            "-".into(),
            format!("{us:.2}"),
            "-".into(),
        ];
        for (b2, us2) in &ours {
            cells.push(if b == b2 {
                "1.00".into()
            } else {
                format!("{:.2}", us2 / us)
            });
        }
        println!("| {} |", cells.join(" | "));
    }
    for p in peer_rows {
        let mut cells = vec![
            p.system.to_string(),
            p.how.to_string(),
            format!("{:.0}", p.samples_per_sec),
            fmt_opt(p.cpu_us_per_sample, 2),
            fmt_opt(p.rss_mb, 0),
        ];
        for (_, us) in &ours {
            cells.push(fmt_opt(p.cpu_us_per_sample.map(|peer| us / peer), 2));
        }
        println!("| {} |", cells.join(" | "));
    }
    for p in peer_rows {
        println!("- {}", p.note);
    }
    for s in skipped {
        println!("- not measured: {s}");
    }
    println!();
    println!(
        "Notes: yunwei's CPU is the yunwei-server process (utime+stime from /proc, 10 ms ticks), plus on"
    );
    println!(
        "PostgreSQL the backend processes serving its database (not the WAL writer/checkpointer); a peer's is"
    );
    println!(
        "its own process. yunwei acknowledges a batch only after its commit (fsync on SQLite); neither peer"
    );
    println!(
        "fsyncs per sample. The load generator (and Prometheus' exposition) runs on the same cores. Hourly"
    );
    println!("rollups run only after an hour has closed, so they are not inside these windows.");
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.agents == 0 || args.samples == 0 || args.duration_secs == 0 {
        bail!("--agents, --samples and --duration-secs must be positive");
    }
    if !(1..=3600).contains(&args.interval_secs) {
        bail!("--interval-secs must be between 1 and 3600 (the protocol's interval range)");
    }
    if args.replicas > 1 {
        if args.backend != BackendArg::Postgres {
            bail!("--replicas needs --backend postgres (replicas share one PostgreSQL)");
        }
        return replicas::run(&args).await;
    }
    let backends: &[&'static str] = match args.backend {
        BackendArg::Sqlite => &["sqlite"],
        BackendArg::Postgres => &["postgres"],
        BackendArg::Both => &["sqlite", "postgres"],
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "ingest-bench: {} agents, {} s interval, {} samples/batch, {} s measured (+{} s warmup), {cores} cores",
        args.agents, args.interval_secs, args.samples, args.duration_secs, args.warmup_secs
    );
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for b in backends {
        if let Some((r, note)) = run_backend(b, &args).await? {
            rows.extend(r);
            notes.push(note);
        }
    }
    let mut peer_rows = Vec::new();
    let mut skipped = Vec::new();
    for p in &args.peers {
        eprintln!("== {p}");
        let r = match p.as_str() {
            "none" => continue,
            "prometheus" => peers::prometheus(&args).await,
            "victoria-metrics" => peers::victoria_metrics(&args).await,
            other => bail!("unknown peer {other:?} (prometheus, victoria-metrics or none)"),
        };
        match r {
            Ok(row) => peer_rows.push(row),
            Err(e) => {
                eprintln!("  {p}: {e:#}");
                skipped.push(format!("{p}: {e:#}"));
            }
        }
    }
    println!();
    println!(
        "yunwei ingest benchmark: {} agents, {} s interval, {} samples/batch, {} s measured after {} s warmup; \
         saturation: {} pushers for {} s; {cores} cores (shared with the load generator)",
        args.agents,
        args.interval_secs,
        args.samples,
        args.duration_secs,
        args.warmup_secs,
        args.pushers.clamp(1, args.agents),
        args.duration_secs / 2
    );
    println!();
    print_table(&rows);
    print_details(&rows);
    println!();
    println!("Setup (not measured):");
    for n in &notes {
        println!("- {n}");
    }
    print_peers(&rows, &peer_rows, &skipped);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}
