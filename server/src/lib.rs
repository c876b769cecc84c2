//! The yunwei server as a library: [`Server::bind`] opens the store and binds the listener,
//! [`Server::run`] serves until the shutdown future completes. `main.rs` only parses the command
//! line, so tests start the same server in-process on `127.0.0.1:0`.

pub mod audit;
pub mod auth;
pub mod config;
pub mod contracts;
pub mod demo;
pub mod http;
pub mod ingest;
pub mod inventory;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod quickstart;
pub mod report_keys;
pub mod report_mail;
pub mod reports;
pub mod rules;
pub mod secret;
pub mod selector;
pub mod store;
pub mod timeline;

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use anyhow::Context;
use tokio::{net::TcpListener, sync::mpsc};

use crate::{config::ServerConfig, ingest::WriterMsg, metrics::Metrics, store::Store};

/// Milliseconds since the Unix epoch, from the server's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the server knows about a host between requests.
#[derive(Debug, Clone)]
pub struct HostLive {
    pub hostname: String,
    pub last_seen_ms: i64,
    pub interval_ms: i64,
    /// Inventory labels (department, system, environment, ...).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Highest batch sequence number stored.
    pub last_seq: i64,
}

impl HostLive {
    /// Up while no more than `missed` batches in a row are missing.
    pub fn is_up(&self, now_ms: i64, missed: u32) -> bool {
        now_ms - self.last_seen_ms <= i64::from(missed) * self.interval_ms
    }
}

/// State shared by the handlers.
pub struct AppState {
    pub config: ServerConfig,
    pub store: Store,
    pub metrics: Metrics,
    /// token hash → agent id.
    pub tokens: RwLock<HashMap<String, Arc<str>>>,
    pub live: RwLock<HashMap<Arc<str>, HostLive>>,
    pub writer: mpsc::Sender<WriterMsg>,
    /// Recent samples in memory, for rule evaluation.
    pub window: RwLock<live::LiveWindow>,
    pub inflight: Mutex<HashMap<Arc<str>, usize>>,
    /// Loaded alert and recording rules with their state.
    pub rules: RwLock<rules::RuleSet>,
    /// Metric names of committed batches, for the rule loop (`rules.eval_on_ingest`).
    pub rule_trigger: rules::IngestTrigger,
    /// Validated O&M contracts.
    pub contracts: RwLock<Vec<Arc<contracts::LoadedContract>>>,
    /// Hands alerts and acknowledgements to the notification dispatcher.
    pub notify: notify::dispatch::Handle,
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    notify: Option<(
        notify::engine::Engine,
        mpsc::UnboundedReceiver<notify::dispatch::Msg>,
    )>,
}

impl Server {
    /// Opens and migrates the store, loads the caches, starts the writer and binds the listener.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        if !config.is_postgres() {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        }
        let store = Store::open(&config.database_url, config.ingest.sqlite_synchronous_full)
            .await
            .context("opening the store")?;
        let metrics = Metrics::new().context("registering metrics")?;
        let agents = store.agents().await.context("loading agents")?;
        let tokens = agents
            .iter()
            .map(|a| (a.token_hash.clone(), Arc::from(a.agent_id.as_str())))
            .collect();
        let live = agents
            .iter()
            .filter_map(|a| {
                a.last_seen_ms.map(|t| {
                    (
                        Arc::from(a.agent_id.as_str()),
                        HostLive {
                            hostname: a.hostname.clone(),
                            last_seen_ms: t,
                            interval_ms: a.interval_ms,
                            labels: a.labels.clone(),
                            last_seq: a.last_seq,
                        },
                    )
                })
            })
            .collect();
        let mut window = live::LiveWindow::new(i64::from(config.rules.live_window_secs) * 1000);
        let warmed = live::warm(&store, &mut window, now_ms())
            .await
            .context("filling the live window")?;
        tracing::debug!(samples = warmed, "live window filled from the raw window");
        let groups = rules::load(&config.rules.files)
            .map_err(|e| anyhow::anyhow!("invalid rule files:\n{e}"))?;
        let saved = rules::saved_states(&store)
            .await
            .context("loading saved rule state")?;
        let rule_set = rules::RuleSet::new(config.rules.files.clone(), groups, saved);
        let loaded_contracts = contracts::load(&config.contracts.files)
            .map_err(|e| anyhow::anyhow!("invalid contract files:\n{e}"))?;
        let (tx, rx) = mpsc::channel(config.ingest.queue_batches);
        let fresh: [u8; 32] = rand::random();
        let secret = store
            .notify_secret("ack_link", &hex::encode(fresh), now_ms())
            .await
            .context("loading the notification secret")?;
        let (notify_handle, notify_rx) = notify::dispatch::Handle::new(secret.into_bytes());
        let engine = notify::dispatch::load_engine(&store)
            .await
            .context("loading alert groups")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let state = Arc::new(AppState {
            config,
            store,
            metrics,
            tokens: RwLock::new(tokens),
            live: RwLock::new(live),
            writer: tx,
            window: RwLock::new(window),
            inflight: Mutex::new(HashMap::new()),
            rules: RwLock::new(rule_set),
            rule_trigger: rules::IngestTrigger::default(),
            contracts: RwLock::new(loaded_contracts),
            notify: notify_handle,
        });
        let writer = ingest::Writer::load(state.clone())
            .await
            .context("loading writer caches")?;
        tokio::spawn(writer.run(rx));
        Ok(Server {
            listener,
            state,
            notify: Some((engine, notify_rx)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests (every accepted
    /// batch is committed and acknowledged) and closes the store.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let maintenance = tokio::spawn(maintenance_loop(state.clone()));
        let evaluator = tokio::spawn(rules::eval_loop(state.clone()));
        let hangup = tokio::spawn(reload_on_sighup(state.clone()));
        let checkpoints = tokio::spawn(audit::checkpoint_loop(state.clone()));
        let inspections = state
            .config
            .contracts
            .run_inspections
            .then(|| tokio::spawn(contracts::inspection_loop(state.clone())));
        let dispatcher = self.notify.take().map(|(engine, rx)| {
            tokio::spawn(notify::dispatch::run(
                state.clone(),
                engine,
                rx,
                state.notify.sender(),
            ))
        });
        let scheduled_reports = state
            .config
            .contracts
            .scheduled_reports
            .then(|| tokio::spawn(reports::schedule_loop(state.clone())));
        tracing::info!(addr = %self.local_addr(), backend = ?state.store.backend(), "serving");
        http::serve(self.listener, state.clone(), shutdown)
            .await
            .context("serving HTTP")?;
        maintenance.abort();
        evaluator.abort();
        hangup.abort();
        checkpoints.abort();
        if let Some(s) = scheduled_reports {
            s.abort();
        }
        if let Some(i) = inspections {
            i.abort();
        }
        if let Some(d) = dispatcher {
            d.abort();
        }
        audit::checkpoint_now(&state, now_ms()).await;
        state.store.close().await;
        Ok(())
    }
}

async fn maintenance_loop(state: Arc<AppState>) {
    let every = Duration::from_secs(state.config.retention.run_every_secs.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.window.write().expect("window lock").trim(now_ms());
        if let Err(e) = ingest::maintenance_pass(&state, now_ms()).await {
            tracing::error!(error = %format!("{e:#}"), "maintenance pass failed");
        }
        let idle_ms = state.config.auth.session_idle_secs as i64 * 1000;
        if let Err(e) = auth::users::purge_sessions(&state.store, now_ms(), idle_ms).await {
            tracing::error!(error = %e, "purging ended sessions failed");
        }
    }
}

/// Completes on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// Reloads the rule files on SIGHUP; an invalid set is refused and the running one kept.
async fn reload_on_sighup(state: Arc<AppState>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(e) = rules::reload(&state) {
                tracing::error!(errors = %e, "rule reload refused; the running rules are kept");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}
