//! The yunwei server as a library: [`Server::bind`] opens the store and binds the listener,
//! [`Server::run`] serves until the shutdown future completes. `main.rs` only parses the command
//! line, so tests start the same server in-process on `127.0.0.1:0`.

pub mod appeals;
pub mod audit;
pub mod auth;
pub mod compute;
pub mod config;
pub mod contracts;
pub mod demo;
pub mod http;
pub mod ingest;
pub mod inventory;
pub mod leader;
pub mod lifecycle_mail;
pub mod live;
pub mod membership;
pub mod membership_cli;
pub mod metrics;
pub mod notify;
pub mod private_files;
pub mod quickstart;
pub mod report_keys;
pub mod report_mail;
pub mod report_recompute;
pub mod reports;
pub mod rules;
pub mod secret;
pub mod selector;
pub mod server_probes;
pub mod store;
pub mod timeline;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::mpsc};

use crate::{config::ServerConfig, live::Live, metrics::Metrics, store::Store};

/// Milliseconds since the Unix epoch, from the server's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The assembled server: its services, each holding what it shares with the others. Only the
/// assembly ([`Server::bind`]) and `http/` see this struct; every service and background loop
/// gets its own service alone (`server/tests/layers.rs` keeps it so).
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Hosts and the live window.
    pub live: Arc<Live>,
    /// Agent tokens, batches in flight, the writer's queue.
    pub ingest: Arc<ingest::Ingest>,
    /// The rule set and its evaluation.
    pub rules: Arc<rules::Engine>,
    /// Loaded contracts and inspections.
    pub contracts: Arc<contracts::Contracts>,
    /// Scheduled reports and their mail.
    pub reports: Arc<reports::Reports>,
    /// Hands alerts and acknowledgements to the notification dispatcher.
    pub notify: notify::dispatch::Handle,
    /// The anonymous refusals of this server, aggregated for the audit log; the summaries
    /// still pending are written when [`Server::run`] ends.
    pub refusals: Arc<audit::Refusals>,
    /// Per-source request rate limits (`http.rate_limit`).
    pub rate_limits: http::rate_limit::RateLimiter,
    /// Whether this replica is the leader (runs the singletons), a follower, or the single node.
    pub leadership: Arc<leader::Leadership>,
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    /// The dispatcher's queue: served by the dispatcher while this replica runs the
    /// singletons, else by [`notify::dispatch::answer_as_follower`].
    notify_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<notify::dispatch::Msg>>>,
    /// On SQLite, the data directory's lock, held while the server lives.
    _data_lock: Option<std::fs::File>,
}

impl Server {
    /// Opens and migrates the store, loads the caches, starts the writer and binds the listener.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        let mut data_lock = None;
        if !config.is_postgres() {
            private_files::private_dir(&config.data_dir)
                .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
            data_lock = Some(leader::lock_data_dir(&config.data_dir)?);
        }
        let store = Store::open(&config.database_url, config.ingest.sqlite_synchronous_full)
            .await
            .context("opening the store")?;
        let metrics = Arc::new(Metrics::new().context("registering metrics")?);
        let live = Arc::new(
            Live::load(
                &store,
                i64::from(config.rules.live_window_secs) * 1000,
                now_ms(),
            )
            .await
            .context("filling the live window")?,
        );
        let (ingest, rx) = ingest::Ingest::load(&store, config.ingest.queue_batches)
            .await
            .context("loading agents")?;
        let groups = rules::load(&config.rules.files)
            .map_err(|e| anyhow::anyhow!("invalid rule files:\n{e}"))?;
        let saved = rules::saved_states(&store)
            .await
            .context("loading saved rule state")?;
        let rule_set = rules::RuleSet::new(config.rules.files.clone(), groups, saved);
        let loaded_contracts = contracts::load(&config.contracts.files)
            .map_err(|e| anyhow::anyhow!("invalid contract files:\n{e}"))?;
        let fresh: [u8; 32] = rand::random();
        let secret = store
            .notify_secret("ack_link", &hex::encode(fresh), now_ms())
            .await
            .context("loading the notification secret")?;
        let (notify_handle, notify_rx) = notify::dispatch::Handle::new(secret.into_bytes());
        // Read once here so that a broken saved state stops the start, as before replicas.
        notify::dispatch::load_engine(&store)
            .await
            .context("loading alert groups")?;
        let leadership = Arc::new(if config.is_postgres() {
            leader::Leadership::replica()
        } else {
            leader::Leadership::single()
        });
        if config.is_postgres() {
            report_keys::check_shared(&store, &config.data_dir, now_ms()).await?;
            // Fenced until elected: a follower's singleton writes are refused.
            store.set_fence(&leadership.holder, -1);
            leader::first_attempt(
                &leadership,
                &store,
                &metrics,
                &config.database_url,
                config.ha,
            )
            .await;
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let config = Arc::new(config);
        let rule_trigger = Arc::new(rules::IngestTrigger::default());
        let contracts = Arc::new(contracts::Contracts::new(
            config.clone(),
            store.clone(),
            live.clone(),
            loaded_contracts,
        ));
        let state = Arc::new(AppState {
            ingest: Arc::new(ingest),
            rules: Arc::new(rules::Engine {
                config: config.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                live: live.clone(),
                notify: notify_handle.clone(),
                set: std::sync::RwLock::new(rule_set),
                rule_trigger: rule_trigger.clone(),
            }),
            reports: Arc::new(reports::Reports {
                config: config.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                contracts: contracts.clone(),
            }),
            contracts,
            notify: notify_handle,
            live: live.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            store: store.clone(),
            refusals: Arc::new(audit::Refusals::default()),
            rate_limits: http::rate_limit::RateLimiter::new(config.http.rate_limit),
            leadership,
        });
        let writer = ingest::Writer::load(ingest::Shared {
            config,
            store,
            metrics,
            live,
            rule_trigger,
        })
        .await
        .context("loading writer caches")?;
        tokio::spawn(writer.run(rx));
        Ok(Server {
            listener,
            state,
            notify_rx: Arc::new(tokio::sync::Mutex::new(notify_rx)),
            _data_lock: data_lock,
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
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let election = state.config.is_postgres().then(|| {
            tokio::spawn(leader::run(
                state.leadership.clone(),
                state.store.clone(),
                state.metrics.clone(),
                state.config.database_url.clone(),
                state.config.ha,
            ))
        });
        let maintenance = tokio::spawn(maintenance_loop(
            state.config.clone(),
            state.store.clone(),
            state.live.clone(),
            state.ingest.clone(),
            state.leadership.subscribe(),
        ));
        let hangup = tokio::spawn(reload_on_sighup(state.rules.clone()));
        let singletons = tokio::spawn(supervise(state.clone(), self.notify_rx.clone()));
        tracing::info!(addr = %self.local_addr(), backend = ?state.store.backend(), "serving");
        http::serve(self.listener, state.clone(), shutdown)
            .await
            .context("serving HTTP")?;
        if let Some(e) = election {
            e.abort();
            let _ = e.await;
        }
        singletons.abort();
        let _ = singletons.await;
        maintenance.abort();
        hangup.abort();
        // Refusals counted in windows still open get their summary rows before the closing
        // checkpoint (the leader's, or the single node's) signs the log.
        audit::flush_all_refusals(&state.store, &state.refusals, now_ms()).await;
        if state.leadership.role().runs_singletons() {
            audit::checkpoint_now(&state.store, &state.config.data_dir, now_ms()).await;
        }
        if matches!(state.leadership.role(), leader::Role::Leader { .. }) {
            leader::release(&state.store, &state.leadership.holder).await;
        }
        state.store.close().await;
        Ok(())
    }
}

/// Runs the singletons — rule evaluation, notification dispatch, scheduled reports,
/// inspections, membership, audit checkpoints, server probes and (replicas) the tail of
/// committed batches — while this replica is the leader or the single node, and stops them
/// (waiting until they have stopped) as soon as it is not. A new leader first rebuilds its
/// live window and reloads rule and alert-group state from the store.
async fn supervise(
    state: Arc<AppState>,
    notify_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<notify::dispatch::Msg>>>,
) {
    let mut roles = state.leadership.subscribe();
    loop {
        let role = *roles.borrow_and_update();
        let tasks = if role.runs_singletons() {
            match start_singletons(&state, role, &notify_rx).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "starting the singletons failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        } else {
            let store = state.store.clone();
            let rx = notify_rx.clone();
            let holder = state.leadership.holder.clone();
            // Long enough for a failover: a new leader applies the request.
            let wait = Duration::from_secs(
                state.config.ha.lease_secs + 2 * state.config.ha.renew_every_secs,
            );
            vec![tokio::spawn(async move {
                let mut rx = rx.lock_owned().await;
                notify::dispatch::answer_as_follower(store, holder, wait, &mut rx).await;
            })]
        };
        let changed = roles.changed().await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        if changed.is_err() {
            return;
        }
        tracing::info!(role = roles.borrow().name(), "role changed");
    }
}

async fn start_singletons(
    state: &Arc<AppState>,
    role: leader::Role,
    notify_rx: &Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<notify::dispatch::Msg>>>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    if let leader::Role::Leader { epoch } = role {
        let from = state.store.max_commit_id().await?;
        state
            .live
            .rebuild(&state.store, now_ms())
            .await
            .context("rebuilding the live window")?;
        rules::restore_saved_states(&state.rules)
            .await
            .context("loading saved rule state")?;
        tracing::info!(
            epoch,
            from_commit = from,
            "leading: live window rebuilt from the store"
        );
        tasks.push(tokio::spawn(leader::tail_loop(
            state.live.clone(),
            state.store.clone(),
            state.metrics.clone(),
            state.rules.rule_trigger.clone(),
            state.config.database_url.clone(),
            from,
        )));
    }
    let engine = notify::dispatch::load_engine(&state.store)
        .await
        .context("loading alert groups")?;
    tasks.push(tokio::spawn(rules::eval_loop(state.rules.clone())));
    tasks.push(tokio::spawn(audit::checkpoint_loop(
        state.store.clone(),
        state.config.data_dir.clone(),
    )));
    tasks.push(tokio::spawn(contracts::membership_loop(
        state.contracts.clone(),
        Duration::from_secs(state.config.contracts.membership_interval_secs),
    )));
    if state.config.contracts.run_inspections {
        tasks.push(tokio::spawn(contracts::inspection_loop(
            state.contracts.clone(),
        )));
    }
    let shared = notify::dispatch::Shared {
        config: state.config.clone(),
        store: state.store.clone(),
        metrics: state.metrics.clone(),
        notify: state.notify.clone(),
    };
    let tx = state.notify.sender();
    if matches!(role, leader::Role::Leader { .. }) {
        tasks.push(tokio::spawn(leader::ack_wake_loop(
            state.config.database_url.clone(),
            tx.clone(),
        )));
    }
    let rx = notify_rx.clone();
    tasks.push(tokio::spawn(async move {
        let mut rx = rx.lock_owned().await;
        notify::dispatch::run(Arc::new(shared), engine, &mut rx, tx).await;
    }));
    if state.config.contracts.scheduled_reports {
        tasks.push(tokio::spawn(reports::schedule_loop(state.reports.clone())));
    }
    if state.config.contracts.run_server_probes {
        tasks.push(tokio::spawn(server_probes::run(
            state.contracts.clone(),
            state.ingest.clone(),
        )));
    }
    Ok(tasks)
}

/// Trims the live window, and (on the leader or single node) rolls up closed hours, applies
/// retention and purges ended sessions, every `retention.run_every_secs`.
async fn maintenance_loop(
    config: Arc<ServerConfig>,
    store: Store,
    live: Arc<Live>,
    ingest: Arc<ingest::Ingest>,
    role: tokio::sync::watch::Receiver<leader::Role>,
) {
    let every = Duration::from_secs(config.retention.run_every_secs.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        live.window.write().expect("window lock").trim(now_ms());
        if config.is_postgres() {
            // Replicas: a token revoked through another replica stops working here too.
            match ingest::Ingest::load(&store, 1).await {
                Ok((fresh, _)) => {
                    let tokens = fresh.tokens.into_inner().expect("fresh lock");
                    *ingest.tokens.write().expect("tokens lock") = tokens;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "reloading agent tokens failed")
                }
            }
        }
        // Rollups, retention and session purges are the leader's (the window is everyone's).
        if !role.borrow().runs_singletons() {
            continue;
        }
        if let Err(e) = ingest::maintenance_pass(&store, &ingest.writer, now_ms()).await {
            tracing::error!(error = %format!("{e:#}"), "maintenance pass failed");
        }
        let idle_ms = config.auth.session_idle_secs as i64 * 1000;
        if let Err(e) = auth::users::purge_sessions(&store, now_ms(), idle_ms).await {
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
async fn reload_on_sighup(state: Arc<rules::Engine>) {
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
