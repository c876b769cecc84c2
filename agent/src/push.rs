//! The agent's main loop: enroll once, then every interval collect a batch, append it to the
//! durable spool and send the spool oldest first to `POST /api/v1/ingest` over one keep-alive
//! HTTP client. A batch leaves the spool only when the server acknowledged it (or refused it for
//! good); transient failures are retried with exponential backoff and jitter, honouring
//! `Retry-After`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use yunwei_proto::{
    Ack, Batch, CONTENT_ENCODING, CONTENT_TYPE, EnrollRequest, EnrollResponse, ErrorBody, Event,
    PROTOCOL_VERSION, Sample,
};

use std::sync::Mutex;

use crate::collect::Collector;
use crate::config::AgentConfig;
use crate::expose::{MetricsServer, Scrape, render};
use crate::facts::host_facts;
use crate::metrics::AgentMetrics;
use crate::probe::{ProbeHub, ProbeSpec, Probes};
use crate::spool::{MonoClock, Spool, SpoolLimits};
use crate::state::{State, load_state, save_state, state_path};
use crate::tls::{client_config, load_client_cert, load_roots};

/// Longest sleep between checks of the shutdown flag.
const SLEEP_STEP: Duration = Duration::from_millis(100);
/// Backoff delays double from this ...
const BACKOFF_START: Duration = Duration::from_secs(1);
/// ... up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A server's `Retry-After` is honoured up to this.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);
/// Response bodies read for logging are cut at this size.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;
/// Sequence numbers reserved in `state.json` at a time: the spool records the numbers it used,
/// and the reservation keeps a number from being reused if the spool folder is lost.
const SEQ_RESERVE: u64 = 1000;
/// On shutdown, spooled batches are sent for at most this long; the rest stay in the spool.
const FLUSH_BUDGET: Duration = Duration::from_secs(1);

/// How the caller steers a running agent.
pub struct Control {
    /// Set to stop the agent.
    pub shutdown: Arc<AtomicBool>,
    /// Set to reload the configuration from `config_path`.
    pub reload: Arc<AtomicBool>,
    pub config_path: Option<PathBuf>,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
    /// Whether whoever sets the flags also wakes the loop, so it need not poll them often.
    notified: bool,
}

impl Control {
    /// Stops when `shutdown` is set; the flag is checked every 100 ms.
    pub fn new(shutdown: Arc<AtomicBool>) -> Control {
        let (wake_tx, wake_rx) = mpsc::channel();
        Control {
            shutdown,
            reload: Arc::new(AtomicBool::new(false)),
            config_path: None,
            wake_tx,
            wake_rx,
            notified: false,
        }
    }

    /// Reloads the configuration from `path` whenever `flag` is set.
    pub fn reload_from(mut self, path: PathBuf, flag: Arc<AtomicBool>) -> Control {
        self.config_path = Some(path);
        self.reload = flag;
        self
    }

    /// A sender that wakes the loop at once. Taking it promises to send after setting
    /// `shutdown` or `reload`; the flags are then polled only every 5 s, as a safety net.
    pub fn waker(&mut self) -> Sender<()> {
        self.notified = true;
        self.wake_tx.clone()
    }
}

/// Runs the agent until `shutdown` is set: enrolls if there is no saved state, then collects and
/// pushes a batch every `interval_secs`. Blocks; returns within about 100 ms of `shutdown` being
/// set (plus at most a short flush of the spool, or the request in flight). What could not be
/// sent stays in the spool for the next start.
pub fn run(config: AgentConfig, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    run_with(config, Control::new(shutdown))
}

/// [`run`] with reloads and prompt wake-ups (see [`Control`]).
pub fn run_with(config: AgentConfig, control: Control) -> anyhow::Result<()> {
    let shutdown = control.shutdown.clone();
    // Polling costs a wake-up; with a waker the flags are only re-checked as a safety net.
    let poll = if control.notified {
        Duration::from_secs(5)
    } else {
        SLEEP_STEP
    };
    let metrics = Arc::new(AgentMetrics::default());
    let collector = Arc::new(Mutex::new(Collector::new(config.collect.clone())));
    let hub = Arc::new(ProbeHub::default());
    let scrape = scrape_fn(collector.clone(), metrics.clone(), hub.clone());
    let metrics_server = start_metrics_server(config.metrics_listen, &scrape);
    let client = Client::new(&config)?;
    let Some(state) = enrolled_state(&config, &client, &shutdown)? else {
        return Ok(());
    };
    let spool_dir = config.spool_dir();
    let spool = Spool::open(
        &spool_dir,
        spool_limits(&config),
        state.next_seq,
        MonoClock::new(),
    )
    .with_context(|| format!("opening the spool in {}", spool_dir.display()))?;
    let recovered = spool.stats();
    if recovered.corrupt_records > 0 || recovered.dropped_batches > 0 {
        eprintln!(
            "warn: spool: skipped {} damaged records ({} bytes); {} batches lost and reported",
            recovered.corrupt_records, recovered.corrupt_bytes, recovered.dropped_batches
        );
    }
    eprintln!(
        "info: agent {} pushing to {} every {} s; {} batches spooled; {} probes",
        state.agent_id,
        config.server_urls.join(", "),
        config.interval_secs,
        spool.len(),
        config.probes.len()
    );
    let probes = start_probes(&config, &hub, &control.wake_tx);
    let mut agent = Agent {
        config,
        client,
        state,
        spool,
        backoff: Backoff::default(),
        metrics,
        collector,
        hub,
        probes: Some(probes),
        metrics_server,
        scrape,
        wake: control.wake_tx.clone(),
        facts: None,
    };
    agent.metrics.update_spool(&agent.spool);
    let mut next_collect = Instant::now();
    while !shutdown.load(Ordering::Relaxed) {
        if control.reload.swap(false, Ordering::Relaxed)
            && let Some(path) = &control.config_path
        {
            agent.reload(path);
        }
        let now = Instant::now();
        let interval = agent.config.interval();
        if now >= next_collect {
            let mut samples = agent.collect_host();
            let (probe_samples, events) = agent.hub.drain();
            samples.extend(probe_samples);
            agent.spool_batch(samples, events, now);
            next_collect += interval;
            if next_collect <= now {
                // Fell behind (suspended host, slow disk): skip the missed collections.
                next_collect = now + interval;
            }
        } else if agent.hub.has_events() {
            // A probe changed state: push it now, not at the next interval.
            let (samples, events) = agent.hub.drain();
            agent.spool_batch(samples, events, now);
        } else if !agent.spool.is_empty() && agent.backoff.ready(now) {
            agent.send_oldest();
        } else {
            let wake = if agent.spool.is_empty() {
                next_collect
            } else {
                next_collect.min(agent.backoff.until)
            };
            let wait = wake.saturating_duration_since(now).min(poll);
            match control.wake_rx.recv_timeout(wait) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
    }
    if let Some(probes) = agent.probes.take() {
        probes.stop();
    }
    // Probe results not yet in a batch are spooled, so they are not lost.
    let (samples, events) = agent.hub.drain();
    if !samples.is_empty() || !events.is_empty() {
        agent.spool_batch(samples, events, Instant::now());
    }
    agent.flush();
    if let Some(server) = agent.metrics_server.take() {
        server.stop();
    }
    let m = &agent.metrics;
    eprintln!(
        "info: stopping; sent {} batches, rejected {}, dropped {}, {} left in the spool",
        m.batches_sent.load(Ordering::Relaxed),
        m.batches_rejected.load(Ordering::Relaxed),
        agent.spool.stats().dropped_batches,
        agent.spool.len()
    );
    Ok(())
}

/// One collection with `config`'s collectors, and one run of each of its probes (in parallel),
/// rendered in the Prometheus text format or, with `json`, as a JSON array of samples.
pub fn once(config: &AgentConfig, json: bool) -> anyhow::Result<String> {
    let ts_ms = unix_ms();
    let mut samples = Vec::with_capacity(512);
    Collector::new(config.collect.clone()).collect(ts_ms, true, &mut samples)?;
    let hub = ProbeHub::default();
    let tls = if config.probes.iter().any(ProbeSpec::needs_tls) {
        load_roots(config.tls.ca_file.as_deref())
            .and_then(|r| client_config(&r))
            .ok()
    } else {
        None
    };
    std::thread::scope(|s| {
        let runs: Vec<_> = config
            .probes
            .iter()
            .map(|p| (p, s.spawn(|| crate::probe::run_probe(p, tls.as_ref()))))
            .collect();
        for (p, run) in runs {
            if let Ok(outcome) = run.join() {
                hub.record(p, &outcome, ts_ms);
            }
        }
    });
    samples.extend(hub.latest());
    Ok(if json {
        let mut text = serde_json::to_string_pretty(&samples).expect("samples serialize");
        text.push('\n');
        text
    } else {
        render(&samples, meta)
    })
}

fn spool_limits(config: &AgentConfig) -> SpoolLimits {
    SpoolLimits {
        max_bytes: config.spool_max_bytes,
        max_age: Duration::from_secs(config.spool_max_age_secs),
    }
}

/// The interval of each configured probe that has a sample or an event among `samples` and
/// `events`: the server keeps a probe's observation valid for its own interval, not the batch's.
fn probe_intervals(
    probes: &[ProbeSpec],
    samples: &[Sample],
    events: &[Event],
) -> std::collections::BTreeMap<String, u64> {
    if probes.is_empty() {
        return Default::default();
    }
    let mut seen: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name == "probe_success")
        .filter_map(|s| s.labels.get("probe").map(String::as_str))
        .collect();
    for e in events {
        if let Event::ProbeState { probe, .. } = e {
            seen.insert(probe);
        }
    }
    probes
        .iter()
        .filter(|p| seen.contains(p.name.as_str()))
        .map(|p| (p.name.clone(), p.interval.as_millis() as u64))
        .collect()
}

/// Starts the probe threads, with a TLS configuration when an HTTPS probe needs one.
fn start_probes(config: &AgentConfig, hub: &Arc<ProbeHub>, wake: &Sender<()>) -> Probes {
    let tls = if config.probes.iter().any(ProbeSpec::needs_tls) {
        match load_roots(config.tls.ca_file.as_deref()).and_then(|r| client_config(&r)) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: https probes cannot verify servers: {e:#}");
                None
            }
        }
    } else {
        None
    };
    Probes::start(&config.probes, hub, tls, wake)
}

/// The running agent's state, owned by the main loop.
struct Agent {
    config: AgentConfig,
    client: Client,
    state: State,
    spool: Spool,
    backoff: Backoff,
    metrics: Arc<AgentMetrics>,
    collector: Arc<Mutex<Collector>>,
    hub: Arc<ProbeHub>,
    probes: Option<Probes>,
    metrics_server: Option<MetricsServer>,
    scrape: Arc<Scrape>,
    wake: Sender<()>,
    facts: Option<(Instant, yunwei_proto::HostFacts)>,
}

/// What `/metrics` serves: a fresh collection, the latest probe results and the agent's own
/// metrics.
fn scrape_fn(
    collector: Arc<Mutex<Collector>>,
    metrics: Arc<AgentMetrics>,
    hub: Arc<ProbeHub>,
) -> Arc<Scrape> {
    Arc::new(move || {
        let ts_ms = unix_ms();
        let mut samples = Vec::with_capacity(512);
        let started = Instant::now();
        let result =
            collector
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .collect(ts_ms, true, &mut samples);
        if let Err(e) = result {
            eprintln!("error: collecting host metrics for /metrics: {e}");
        }
        metrics.collection_done(started.elapsed());
        samples.extend(hub.latest());
        samples.extend(metrics.samples(ts_ms));
        render(&samples, meta)
    })
}

/// `(type, help)` of any metric the agent produces.
pub(crate) fn meta(name: &str) -> Option<(&'static str, &'static str)> {
    crate::collect::meta(name)
        .or_else(|| crate::probe::meta(name))
        .or_else(|| crate::metrics::meta(name))
}

/// Starts `/metrics` on `addr`. A failure to listen is logged, not fatal: pushing to the server
/// is the agent's first duty.
fn start_metrics_server(
    addr: Option<std::net::SocketAddr>,
    scrape: &Arc<Scrape>,
) -> Option<MetricsServer> {
    let addr = addr?;
    match MetricsServer::start(addr, scrape.clone()) {
        Ok(server) => {
            eprintln!("info: serving /metrics on http://{}/metrics", server.addr());
            Some(server)
        }
        Err(e) => {
            eprintln!("error: cannot serve /metrics on {addr}: {e}");
            None
        }
    }
}

/// Host facts are re-read this often (and on a reload), not for every batch.
const FACTS_TTL: Duration = Duration::from_secs(300);

impl Agent {
    /// The host facts, re-read when older than [`FACTS_TTL`].
    fn facts(&mut self) -> yunwei_proto::HostFacts {
        let now = Instant::now();
        match &self.facts {
            Some((at, f)) if now.duration_since(*at) < FACTS_TTL => f.clone(),
            _ => {
                let f = host_facts(&self.config.labels);
                self.facts = Some((now, f.clone()));
                f
            }
        }
    }

    /// Applies the configuration in `path`. What cannot change while running (server, state
    /// folder) is kept and a restart is asked for; an invalid file changes nothing.
    fn reload(&mut self, path: &Path) {
        let mut new = match crate::config::load_config(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: not reloading {}: {e:#}", path.display());
                return;
            }
        };
        let old = &self.config;
        if new.server_urls != old.server_urls || new.state_dir != old.state_dir {
            eprintln!("warn: server_url(s) and state_dir changes take effect after a restart");
            new.server_url = old.server_url.clone();
            new.server_urls = old.server_urls.clone();
            new.state_dir = old.state_dir.clone();
        }
        if new.tls != old.tls || new.request_timeout_secs != old.request_timeout_secs {
            match Client::new(&new) {
                Ok(c) => self.client = c,
                Err(e) => {
                    eprintln!("error: not reloading {}: {e:#}", path.display());
                    return;
                }
            }
        }
        self.collector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_options(new.collect.clone());
        self.spool.set_limits(spool_limits(&new));
        if new.metrics_listen != old.metrics_listen {
            if let Some(server) = self.metrics_server.take() {
                server.stop();
            }
            self.metrics_server = start_metrics_server(new.metrics_listen, &self.scrape);
        }
        if new.probes != old.probes || new.tls != old.tls {
            if let Some(probes) = self.probes.take() {
                probes.stop();
            }
            let names: Vec<&str> = new.probes.iter().map(|p| p.name.as_str()).collect();
            self.hub.retain(&names);
            self.probes = Some(start_probes(&new, &self.hub, &self.wake));
        }
        eprintln!(
            "info: configuration reloaded from {} ({} probes, every {} s)",
            path.display(),
            new.probes.len(),
            new.interval_secs
        );
        self.config = new;
        self.facts = None;
    }

    /// Collects host metrics. On error the batch still goes out: it is the host's heartbeat.
    fn collect_host(&mut self) -> Vec<Sample> {
        let started = Instant::now();
        let mut samples = Vec::with_capacity(512);
        let result = self
            .collector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .collect(unix_ms(), false, &mut samples);
        if let Err(e) = result {
            eprintln!("error: collecting host metrics: {e}");
        }
        self.metrics.collection_done(started.elapsed());
        samples
    }

    /// Appends a batch of `samples` and `events`, collected at `collected`, to the spool.
    fn spool_batch(&mut self, samples: Vec<Sample>, events: Vec<Event>, collected: Instant) {
        if self.spool.next_seq() >= self.state.next_seq {
            let mut state = self.state.clone();
            state.next_seq = self.spool.next_seq() + SEQ_RESERVE;
            if let Err(e) = save_state(&self.config.state_dir, &state) {
                // Never use a sequence number that a restart could hand out again.
                eprintln!("error: not spooling a batch: saving the sequence number failed: {e:#}");
                self.metrics.spool_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.state = state;
        }
        let now_ms = unix_ms();
        let probe_intervals_ms = probe_intervals(&self.config.probes, &samples, &events);
        let mut batch = Batch {
            version: PROTOCOL_VERSION,
            agent_id: self.state.agent_id.clone(),
            seq: 0,
            interval_ms: self.config.interval_secs * 1000,
            collected_at_ms: now_ms,
            age_ms: 0,
            host: self.facts(),
            samples,
            events,
            probe_intervals_ms,
        };
        self.metrics.update_spool(&self.spool);
        batch.samples.extend(self.metrics.samples(now_ms));
        if let Err(e) = self.spool.append(&mut batch, collected, now_ms) {
            eprintln!("error: writing batch {} to the spool: {e}", batch.seq);
            self.metrics.spool_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.update_spool(&self.spool);
    }

    /// Sends the oldest spooled batch; it leaves the spool unless the failure is worth a retry.
    /// Returns false if it was not delivered.
    fn send_oldest(&mut self) -> bool {
        let Some(out) = self.spool.front() else {
            return false;
        };
        let seq = out.seq;
        let delivered = match self.client.ingest(&out.body, &self.state.token) {
            Ok(ack) => {
                if ack.seq != seq && ack.seq != 0 {
                    eprintln!("warn: server acknowledged seq {} for batch {seq}", ack.seq);
                }
                self.complete_front();
                self.metrics.batches_sent.fetch_add(1, Ordering::Relaxed);
                if self.backoff.failures > 0 {
                    eprintln!(
                        "info: ingest recovered after {} failed attempts",
                        self.backoff.failures
                    );
                }
                self.backoff.reset();
                true
            }
            Err(Failure::Retry {
                reason,
                retry_after,
            }) => {
                self.metrics.batches_failed.fetch_add(1, Ordering::Relaxed);
                let delay = self.backoff.fail(Instant::now(), retry_after);
                eprintln!(
                    "warn: sending batch {seq} failed: {reason}; {} spooled, retrying in {:.1} s",
                    self.spool.len(),
                    delay.as_secs_f64()
                );
                false
            }
            Err(Failure::Rejected { status, message }) => {
                // A retry cannot fix what the server refuses; drop the batch and go on.
                self.complete_front();
                self.metrics
                    .batches_rejected
                    .fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "error: server rejected batch {seq} (http {status}), dropping it: {message}"
                );
                false
            }
        };
        self.metrics.update_spool(&self.spool);
        delivered
    }

    fn complete_front(&mut self) {
        if let Err(e) = self.spool.complete_front() {
            // The batch may be sent again after a restart; the server deduplicates it.
            eprintln!("warn: recording a delivered batch in the spool: {e}");
        }
    }

    /// On shutdown: sends what the spool holds while the server answers, for at most
    /// [`FLUSH_BUDGET`]; the rest stays in the spool.
    fn flush(&mut self) {
        let deadline = Instant::now() + FLUSH_BUDGET;
        while !self.spool.is_empty()
            && Instant::now() < deadline
            && self.backoff.ready(Instant::now())
        {
            if !self.send_oldest() && self.backoff.failures > 0 {
                break;
            }
        }
    }
}

/// Loads the saved state, or enrolls and saves it. `None` if shut down before enrolling.
fn enrolled_state(
    config: &AgentConfig,
    client: &Client,
    shutdown: &AtomicBool,
) -> anyhow::Result<Option<State>> {
    if let Some(state) = load_state(&config.state_dir)? {
        return Ok(Some(state));
    }
    let secret = config.enrollment_secret.clone().with_context(|| {
        format!(
            "{} does not exist and enrollment_secret is not set, so the agent cannot enroll",
            state_path(&config.state_dir).display()
        )
    })?;
    // Fail on an unusable state folder before the server issues an identity we could not keep.
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state folder {}", config.state_dir.display()))?;
    let mut backoff = Backoff::default();
    while !shutdown.load(Ordering::Relaxed) {
        let request = EnrollRequest {
            secret: secret.clone(),
            host: host_facts(&config.labels),
        };
        match client.enroll(&request) {
            Ok(resp) => {
                // Batches spooled under an earlier identity cannot be sent with the new one.
                let spool = config.spool_dir();
                match std::fs::remove_dir_all(&spool) {
                    Ok(()) => eprintln!("warn: removed the spool of an earlier identity"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("removing {}", spool.display()));
                    }
                }
                let state = State {
                    agent_id: resp.agent_id,
                    token: resp.token,
                    next_seq: 1,
                };
                save_state(&config.state_dir, &state)?;
                eprintln!("info: enrolled as agent {}", state.agent_id);
                return Ok(Some(state));
            }
            Err(Failure::Retry {
                reason,
                retry_after,
            }) => {
                let delay = backoff.fail(Instant::now(), retry_after);
                eprintln!(
                    "warn: enrollment failed: {reason}; retrying in {:.1} s",
                    delay.as_secs_f64()
                );
                sleep_until(backoff.until, shutdown);
            }
            Err(Failure::Rejected { status, message }) => {
                anyhow::bail!("enrollment rejected by the server (http {status}): {message}");
            }
        }
    }
    Ok(None)
}

/// Why a request did not succeed.
#[derive(Debug)]
enum Failure {
    /// Connection error, timeout, 408, 429 or 5xx: try again later.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Any other status: the request itself is wrong.
    Rejected { status: u16, message: String },
}

/// The HTTP client, one connection pool kept for the agent's lifetime.
struct Client {
    http: ureq::Agent,
    /// Per server replica: its enroll and ingest URLs.
    servers: Vec<(String, String)>,
    /// The replica in use; a push or enrollment that fails for a reason worth retrying moves
    /// to the next one, so the retry goes elsewhere.
    current: std::sync::atomic::AtomicUsize,
}

impl Client {
    fn new(config: &AgentConfig) -> anyhow::Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
        if config.server_urls.iter().any(|u| u.starts_with("https://")) {
            use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts};
            let roots = load_roots(config.tls.ca_file.as_deref())?;
            let roots: Vec<Certificate<'static>> = roots
                .iter()
                .map(|c| Certificate::from_der(c).to_owned())
                .collect();
            tls = tls.root_certs(RootCerts::new_with_certs(&roots));
            // Checked (and named in errors) by load_client_cert; ureq wants its own key type.
            if let (Some((chain, _)), Some(key_file)) =
                (load_client_cert(&config.tls)?, &config.tls.client_key_file)
            {
                let chain: Vec<Certificate<'static>> = chain
                    .iter()
                    .map(|c| Certificate::from_der(c).to_owned())
                    .collect();
                let pem = std::fs::read(key_file)
                    .with_context(|| format!("reading {}", key_file.display()))?;
                let key = PrivateKey::from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?;
                tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
            }
        }
        let http = ureq::Agent::config_builder()
            .tls_config(tls.build())
            // Statuses are handled here, so 4xx/5xx must not become errors before the headers
            // and body can be read.
            .http_status_as_error(false)
            // Per phase rather than global: with a resolve timeout ureq resolves on a new thread
            // for every request, which costs more CPU than the rest of a push. Name resolution
            // is bounded by the resolver's own timeouts (resolv.conf).
            .timeout_connect(Some(config.request_timeout()))
            .timeout_send_request(Some(config.request_timeout()))
            .timeout_send_body(Some(config.request_timeout()))
            .timeout_recv_response(Some(config.request_timeout()))
            .timeout_recv_body(Some(config.request_timeout()))
            // Keep the connection between pushes.
            .max_idle_age(config.interval() + Duration::from_secs(30))
            .user_agent(format!("yunwei-agent/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            http,
            servers: config
                .server_urls
                .iter()
                .map(|u| (format!("{u}/api/v1/enroll"), format!("{u}/api/v1/ingest")))
                .collect(),
            current: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The replica in use: its enroll and ingest URLs.
    fn server(&self) -> &(String, String) {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.servers[i % self.servers.len()]
    }

    /// After a failure worth retrying, the next attempt goes to the next replica.
    fn fail_over<T>(&self, r: Result<T, Failure>) -> Result<T, Failure> {
        if let Err(Failure::Retry { reason, .. }) = &r
            && self.servers.len() > 1
        {
            let i = self
                .current
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            eprintln!(
                "warn: {} failed ({reason}); trying {} next",
                self.servers[i % self.servers.len()].1,
                self.servers[(i + 1) % self.servers.len()].1
            );
        }
        r
    }

    fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse, Failure> {
        let body = serde_json::to_vec(request).expect("an enroll request always serializes");
        let resp = self
            .http
            .post(&self.server().0)
            .header("Content-Type", "application/json")
            .send(&body[..]);
        let body = self.fail_over(check_response(resp))?;
        let resp: EnrollResponse = serde_json::from_str(&body).map_err(|e| Failure::Retry {
            reason: format!("unreadable enroll response: {e}"),
            retry_after: None,
        })?;
        if resp.agent_id.is_empty() || resp.token.is_empty() {
            return Err(Failure::Retry {
                reason: "enroll response has an empty agent_id or token".into(),
                retry_after: None,
            });
        }
        Ok(resp)
    }

    fn ingest(&self, body: &[u8], token: &str) -> Result<Ack, Failure> {
        let resp = self
            .http
            .post(&self.server().1)
            .header("Content-Type", CONTENT_TYPE)
            .header("Content-Encoding", CONTENT_ENCODING)
            .header("Authorization", format!("Bearer {token}"))
            .send(body);
        let body = self.fail_over(check_response(resp))?;
        // The server acknowledged a durable commit; an unreadable ack body does not undo that.
        Ok(serde_json::from_str(&body).unwrap_or_else(|e| {
            eprintln!("warn: unreadable ack ({e}): {}", truncate(&body, 200));
            Ack {
                seq: 0,
                duplicate: false,
                samples: 0,
            }
        }))
    }
}

/// Sorts a response into success (its body), retry or rejection.
fn check_response(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, Failure> {
    let mut resp = resp.map_err(|e| Failure::Retry {
        reason: e.to_string(),
        retry_after: None,
    })?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()
        .unwrap_or_else(|e| format!("(unreadable body: {e})"));
    match status {
        200..=299 => Ok(body),
        408 | 429 | 500..=599 => Err(Failure::Retry {
            reason: format!("http {status}: {}", error_message(&body)),
            retry_after,
        }),
        _ => Err(Failure::Rejected {
            status,
            message: error_message(&body),
        }),
    }
}

/// The server's error body as `kind: field: message`, or the raw body if it is not one.
fn error_message(body: &str) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody { error: e }) => match e.field {
            Some(field) => format!("{}: {field}: {}", e.kind, e.message),
            None => format!("{}: {}", e.kind, e.message),
        },
        Err(_) => truncate(body.trim(), 500).to_string(),
    }
}

fn truncate(s: &str, max_bytes: usize) -> &str {
    let mut end = s.len().min(max_bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Exponential backoff with jitter for consecutive failures.
#[derive(Debug)]
struct Backoff {
    failures: u32,
    /// No attempt before this.
    until: Instant,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            failures: 0,
            until: Instant::now(),
        }
    }
}

impl Backoff {
    fn ready(&self, now: Instant) -> bool {
        now >= self.until
    }

    fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure at `now` and returns the delay before the next attempt: the server's
    /// `Retry-After` if it sent one, else the jittered exponential delay.
    fn fail(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay = match retry_after {
            Some(d) => d.min(RETRY_AFTER_CAP),
            None => backoff_delay(self.failures, jitter()),
        };
        self.until = now + delay;
        delay
    }
}

/// Delay after `failures` consecutive failures: 1 s, 2 s, 4 s, ... capped at 60 s, scaled by
/// `0.5 + jitter / 2` (`jitter` in `[0, 1)`) so that agents that failed together spread out.
fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_START.saturating_mul(1 << exp).min(BACKOFF_CAP);
    base.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// A number in `[0, 1)` from the clock's sub-second nanoseconds; enough to spread retries
/// without a random number generator.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Multiplicative hashing, so that clocks with coarse resolution still vary in the high bits.
    let mixed = nanos.wrapping_mul(0x9E37_79B9);
    f64::from(mixed >> 8) / f64::from(1u32 << 24)
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sleeps until `deadline` in steps of at most [`SLEEP_STEP`], returning early on shutdown.
fn sleep_until(deadline: Instant, shutdown: &AtomicBool) {
    while !shutdown.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(SLEEP_STEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_names_the_interval_of_each_probe_it_carries() {
        let spec = |name: &str, secs| ProbeSpec {
            name: name.into(),
            kind: crate::probe::ProbeKind::Dns { name: "x".into() },
            interval: Duration::from_secs(secs),
            timeout: Duration::from_secs(1),
            labels: Default::default(),
        };
        let probes = [spec("web", 60), spec("db", 30), spec("dns", 5)];
        let result = |probe: &str| Sample {
            name: "probe_success".into(),
            labels: [("probe".to_string(), probe.to_string())].into(),
            value: 1.0,
            ts_ms: 0,
        };
        let samples = [result("web"), result("gone")];
        let events = [Event::ProbeState {
            probe: "db".into(),
            labels: Default::default(),
            up: false,
            ts_ms: 0,
            reason: None,
        }];
        let got = probe_intervals(&probes, &samples, &events);
        assert_eq!(
            got,
            [("db".to_string(), 30_000), ("web".to_string(), 60_000)].into()
        );
        assert!(probe_intervals(&probes, &[], &[]).is_empty());
    }

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_a_minute() {
        let secs: Vec<f64> = (1..=9)
            .map(|n| backoff_delay(n, 0.999_999).as_secs_f64().round())
            .collect();
        assert_eq!(secs, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]);
        assert_eq!(backoff_delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(u32::MAX, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let values: Vec<f64> = (0..200)
            .map(|_| {
                std::thread::sleep(Duration::from_micros(50));
                jitter()
            })
            .collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let distinct = values
            .iter()
            .map(|v| v.to_bits())
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 100, "{} distinct values", distinct.len());
    }

    #[test]
    fn retry_after_overrides_the_exponential_delay() {
        let now = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(
            b.fail(now, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert!(!b.ready(now + Duration::from_secs(6)));
        assert!(b.ready(now + Duration::from_secs(7)));
        assert_eq!(
            b.fail(now, Some(Duration::from_secs(1 << 20))),
            RETRY_AFTER_CAP
        );
        let d = b.fail(now, None);
        assert!(
            d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
            "{d:?}"
        );
        b.reset();
        assert!(b.fail(now, None) <= Duration::from_secs(1));
    }

    #[test]
    fn error_bodies_are_summarised() {
        let body = r#"{"error":{"kind":"invalid_batch","field":"samples[3].value","message":"non-finite value NaN"}}"#;
        assert_eq!(
            error_message(body),
            "invalid_batch: samples[3].value: non-finite value NaN"
        );
        assert_eq!(
            error_message("<html>bad gateway</html>\n"),
            "<html>bad gateway</html>"
        );
        assert_eq!(truncate("运维", 4), "运");
    }
}
