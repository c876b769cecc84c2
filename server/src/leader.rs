//! Which replica runs the singletons. On PostgreSQL several `yunwei-server` processes share one
//! database; they elect a leader through a lease row (`leader_lease`, migration 0023): the
//! holder renews it every `ha.renew_every_secs` on a connection of its own, and another replica
//! takes it once it has expired (`ha.lease_secs`, on the database's clock). Each new term gets a
//! higher `epoch`, the fencing token every singleton write checks in its own transaction
//! ([`crate::store::Store::check_fence`]), so an ex-leader that was paused cannot act after a
//! takeover. A leader steps down as soon as a renewal fails or times out — before its lease can
//! expire — and after such a failure waits a lease and two renewals before competing again, so a
//! replica cut off from the database does not snatch the lease back on its first reconnect.
//!
//! On SQLite there is one node: [`Role::Single`], no election, no fence; a second server on the
//! same data directory is refused by [`lock_data_dir`].

use std::{
    fs::File,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use sqlx::AnyConnection;
use tokio::sync::watch;

use crate::{
    config::HaConfig,
    metrics::Metrics,
    store::{Store, ha},
};

/// What this replica is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The only node (SQLite): runs everything.
    Single,
    /// Holds the lease in term `epoch`: runs the singletons.
    Leader { epoch: i64 },
    /// Serves ingest, the API and the console only.
    Follower,
}

impl Role {
    /// Whether the singletons run here.
    pub fn runs_singletons(self) -> bool {
        !matches!(self, Role::Follower)
    }

    /// `single`, `leader` or `follower`, as `/readyz` and `/metrics` show it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Leader { .. } => "leader",
            Role::Follower => "follower",
        }
    }
}

/// This replica's view of the election, shared with the HTTP handlers and the singletons'
/// supervisor.
#[derive(Debug)]
pub struct Leadership {
    /// This process's holder id in `leader_lease` (host name, process id and a random part).
    pub holder: Arc<str>,
    role: watch::Sender<Role>,
}

impl Leadership {
    /// A single node: always [`Role::Single`].
    pub fn single() -> Leadership {
        Leadership {
            holder: Arc::from("single"),
            role: watch::Sender::new(Role::Single),
        }
    }

    /// A replica starting as a follower.
    pub fn replica() -> Leadership {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let host = if host.is_empty() { "host".into() } else { host };
        let holder = format!(
            "{host}-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 4]>())
        );
        Leadership {
            holder: Arc::from(holder.as_str()),
            role: watch::Sender::new(Role::Follower),
        }
    }

    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    fn set(&self, store: &Store, metrics: &Metrics, role: Role) {
        store.set_fence(
            &self.holder,
            match role {
                Role::Leader { epoch } => epoch,
                _ => -1,
            },
        );
        metrics
            .ha_leader
            .set(i64::from(matches!(role, Role::Leader { .. })));
        if let Role::Leader { epoch } = role {
            metrics.ha_epoch.set(epoch);
        }
        self.role.send_replace(role);
    }
}

/// Gives the lease up (a clean shutdown), so another replica takes over at once.
pub async fn release(store: &Store, holder: &str) {
    if let Err(e) = store.release_lease(holder).await {
        tracing::warn!(error = %e, "releasing the leader lease failed");
    }
}

/// One attempt at start-up, before the server serves: a replica that finds the lease free (the
/// first to start, or after a clean shutdown released it) leads from its first request on.
/// A failure here only leaves it a follower; [`run`] keeps trying.
pub async fn first_attempt(
    leadership: &Leadership,
    store: &Store,
    metrics: &Metrics,
    database_url: &str,
    cfg: HaConfig,
) {
    let lease_ms = Duration::from_secs(cfg.lease_secs).as_millis() as i64;
    let attempt = tokio::time::timeout(Duration::from_secs(cfg.renew_every_secs), async {
        let mut c = ha::lease_connection(database_url).await?;
        ha::try_acquire(&mut c, &leadership.holder, lease_ms, false).await
    })
    .await;
    if let Ok(Ok(Some(epoch))) = attempt {
        tracing::info!(holder = %leadership.holder, epoch, "became the leader");
        leadership.set(store, metrics, Role::Leader { epoch });
    }
}

/// Runs the election for this replica until the task is aborted.
pub async fn run(
    leadership: Arc<Leadership>,
    store: Store,
    metrics: Arc<Metrics>,
    database_url: String,
    cfg: HaConfig,
) {
    let lease = Duration::from_secs(cfg.lease_secs);
    let renew = Duration::from_secs(cfg.renew_every_secs);
    let lease_ms = lease.as_millis() as i64;
    let mut conn: Option<AnyConnection> = None;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let started = Instant::now();
        if quiet_until.is_some_and(|q| started < q) {
            tokio::time::sleep(renew).await;
            continue;
        }
        let leading = matches!(leadership.role(), Role::Leader { .. });
        // Each attempt ends within one renewal interval; one that fails or times out makes
        // the leader step down at once, at most a renewal after the last confirmed one and so
        // at least two renewals before the lease can expire on the database's clock.
        let attempt = tokio::time::timeout(renew, async {
            if conn.is_none() {
                conn = Some(ha::lease_connection(&database_url).await?);
            }
            let c = conn.as_mut().expect("connected above");
            ha::try_acquire(c, &leadership.holder, lease_ms, leading).await
        })
        .await;
        match attempt {
            Ok(Ok(Some(epoch))) => {
                if leadership.role() != (Role::Leader { epoch }) {
                    tracing::info!(holder = %leadership.holder, epoch, "became the leader");
                    leadership.set(&store, &metrics, Role::Leader { epoch });
                }
            }
            Ok(Ok(None)) => {
                if leading {
                    tracing::warn!(holder = %leadership.holder, "another replica holds the leader lease; stepping down");
                    leadership.set(&store, &metrics, Role::Follower);
                }
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => format!("{e}"),
                    _ => "timed out".to_string(),
                };
                conn = None;
                if leading {
                    tracing::error!(holder = %leadership.holder, error = %why, "renewing the leader lease failed; stepping down");
                    leadership.set(&store, &metrics, Role::Follower);
                    quiet_until = Some(Instant::now() + lease + 2 * renew);
                } else {
                    tracing::debug!(error = %why, "leader election attempt failed");
                }
            }
        }
        tokio::time::sleep_until((started + renew).into()).await;
    }
}

/// Takes the data directory's lock file (`DATA_DIR/yunwei.lock`) for a single-node (SQLite)
/// server, so a second server on the same data is refused with a message naming the directory.
/// The lock lasts as long as the returned file is open.
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<File> {
    let path = data_dir.join("yunwei.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another yunwei-server is already running on the data directory {} (it holds {}); \
             SQLite allows one server only — use PostgreSQL (database_url) to run several replicas \
             / 数据目录 {} 已有另一个 yunwei-server 在运行；SQLite 只允许单个服务器，多副本请使用 PostgreSQL",
            data_dir.display(),
            path.display(),
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// At the leader: keeps the live window up to date with the batches every replica commits,
/// from commit id `from` on. PostgreSQL's NOTIFY on channel `yunwei_batches` (sent by the
/// numbering trigger on commit) wakes it; it also polls every second, so a notification lost
/// while the listening connection was down only delays a batch. While it runs, this process's
/// ingest writer lists the batches it adds to the window itself, and the tail steps over them
/// ([`crate::live::LiveWindow::added_own`]).
pub async fn tail_loop(
    live: Arc<crate::live::Live>,
    store: Store,
    metrics: Arc<Metrics>,
    trigger: Arc<crate::rules::IngestTrigger>,
    database_url: String,
    from: i64,
) {
    /// Stops the writer's listing when the tail ends (aborted on a change of role).
    struct Tailing(Arc<crate::live::Live>);
    impl Drop for Tailing {
        fn drop(&mut self) {
            if let Ok(mut w) = self.0.window.write() {
                w.set_tailed(false);
            }
        }
    }
    live.window.write().expect("window lock").set_tailed(true);
    let _tailing = Tailing(live.clone());
    let mut tail = crate::live::Tail::after(from, &database_url);
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    loop {
        match tail.poll(&live, &store, crate::now_ms()).await {
            Ok(polled) => {
                if !polled.names.is_empty() {
                    trigger.touched(polled.names.iter().map(|n| &**n));
                }
                metrics.ha_tail_own_batches.inc_by(polled.own as u64);
                for (kind, n) in [
                    ("all", polled.full_series_reads),
                    ("new", polled.new_series_reads),
                ] {
                    metrics
                        .ha_tail_series_reads
                        .with_label_values(&[kind])
                        .inc_by(n as u64);
                }
                let now = crate::now_ms();
                for t in &polled.arrived {
                    metrics
                        .ha_tail_lag_seconds
                        .observe((now - t).max(0) as f64 / 1000.0);
                }
                if let Some(t) = polled.arrived.iter().max() {
                    metrics
                        .ha_window_lag_seconds
                        .set((now - t).max(0) as f64 / 1000.0);
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "reading committed batches failed"),
        }
        if listener.is_none() {
            match sqlx::postgres::PgListener::connect(&database_url).await {
                Ok(mut l) => match l.listen("yunwei_batches").await {
                    Ok(()) => listener = Some(l),
                    Err(e) => tracing::debug!(error = %e, "LISTEN failed; polling"),
                },
                Err(e) => tracing::debug!(error = %e, "LISTEN connection failed; polling"),
            }
        }
        match listener.as_mut() {
            Some(l) => {
                match tokio::time::timeout(Duration::from_secs(1), l.try_recv()).await {
                    Ok(Ok(Some(_))) => {
                        // One poll reads every batch committed so far: the notifications
                        // already received need no poll of their own.
                        while l.next_buffered().is_some() {}
                    }
                    Err(_) => {}
                    // The connection was lost (notifications may have been missed: the poll
                    // above catches up) or failed.
                    Ok(Ok(None)) | Ok(Err(_)) => listener = None,
                }
            }
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// At the leader: wakes the notification dispatcher ([`crate::notify::dispatch::Msg::Forwarded`])
/// whenever a follower records an acknowledgement request (`NOTIFY yunwei_acks`), once when it
/// starts (requests recorded while there was no leader) and every few seconds besides, so a
/// notification lost while the listening connection was down only delays a request.
pub async fn ack_wake_loop(
    database_url: String,
    tx: tokio::sync::mpsc::UnboundedSender<crate::notify::dispatch::Msg>,
) {
    use crate::notify::dispatch::Msg;
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    loop {
        if tx.send(Msg::Forwarded).is_err() {
            return;
        }
        if listener.is_none() {
            match sqlx::postgres::PgListener::connect(&database_url).await {
                Ok(mut l) => match l.listen(ha::ACK_CHANNEL).await {
                    Ok(()) => {
                        listener = Some(l);
                        // Requests recorded before LISTEN took effect.
                        let _ = tx.send(Msg::Forwarded);
                    }
                    Err(e) => tracing::debug!(error = %e, "LISTEN failed; polling"),
                },
                Err(e) => tracing::debug!(error = %e, "LISTEN connection failed; polling"),
            }
        }
        match listener.as_mut() {
            Some(l) => match tokio::time::timeout(Duration::from_secs(5), l.try_recv()).await {
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Ok(None)) | Ok(Err(_)) => listener = None,
            },
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
