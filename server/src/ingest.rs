//! Ingest: the single writer task, rollups and retention (the handlers are in `http/ingest.rs`).
//!
//! Handlers hand validated batches to the writer through a bounded queue. The writer drains whatever is queued into one transaction (group commit),
//! and answers each handler only after that transaction committed, so an acknowledged batch is
//! durable. Deduplication is on `(agent_id, seq)`: the batch row's primary key, plus a per-agent
//! watermark for batches already pruned from the raw window.

use std::{
    collections::{BTreeSet, HashMap},
    hash::Hasher,
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use sqlx::{Any, Transaction};
use tokio::sync::{mpsc, oneshot};
use yunwei_proto::{Ack, Batch, Event, HostFacts, Labels};

use crate::{
    config::ServerConfig,
    live::{HostLive, Live},
    metrics::Metrics,
    now_ms, rules,
    store::{AgentRow, HOUR_MS, Rollup, Store, blob, kpi, rollup, writes},
    timeline::{self, Span, State},
};

pub use crate::store::MAX_BATCH_SPAN_MS;

pub mod remote_write;
pub use remote_write::{
    RemoteHost, RemoteWriteJob, RemoteWriteOutcome, SENDER_LABEL, host_agent_id, host_labels,
};

/// How stale the stored `last_seen_ms` of an agent may get; the exact value is kept in memory.
const LAST_SEEN_PERSIST_MS: i64 = 30_000;

/// Most batches committed in one transaction.
const MAX_GROUP: usize = 256;

/// Status-interval kinds.
pub const KIND_HOST: &str = "host";
pub const KIND_PROBE: &str = "probe";
/// Results of the contracts' `server_probes`, which the server probes itself (source
/// `server`); subject `<contract id>/<probe name>`.
pub const KIND_SERVER_PROBE: &str = "server_probe";

/// Messages the writer task handles, in order.
pub enum WriterMsg {
    Ingest(Box<IngestJob>),
    /// One Prometheus remote-write request (`ingest/remote_write.rs`), in its own transaction.
    RemoteWrite(Box<RemoteWriteJob>),
    /// Replace one hour's rollups, if the hour was not dirtied again since `version` was read.
    /// The hour's derived resource KPIs (`store::kpi`) are replaced with it. `rollups` is `None`
    /// for an hour before the rollup horizon: its stored rollups (late samples merged) stay.
    Rollup {
        hour_ms: i64,
        version: i64,
        rollups: Option<Vec<Rollup>>,
        kpis: Vec<kpi::KpiHour>,
        reply: oneshot::Sender<bool>,
    },
    /// A result of one of the server's own probes (`server_probes`), observed at `t_ms` by the
    /// server's clock and valid for `validity_ms`.
    ServerProbe {
        subject: String,
        t_ms: i64,
        up: bool,
        validity_ms: i64,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    /// Delete data past its retention.
    Retention {
        now_ms: i64,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
}

/// Why the writer refused a batch. Nothing of a refused batch is stored.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// The agent was removed after its token was checked.
    #[error("unknown agent")]
    UnknownAgent,
    /// The agent's token was revoked (`agent revoke`).
    #[error("the agent's token was revoked")]
    Revoked,
    /// Storing the batch would create more series than the agent may have.
    #[error("the agent would exceed its limit of {limit} series")]
    SeriesLimit { limit: usize, sample: usize },
    /// The transaction failed; the batch may be retried.
    #[error("storage is unavailable, retry later")]
    StoreUnavailable,
}

impl Rejected {
    /// The `reason` label of `yunwei_ingest_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::UnknownAgent | Rejected::Revoked => "unauthenticated",
            Rejected::SeriesLimit { .. } => "series_limit",
            Rejected::StoreUnavailable => "store_error",
        }
    }
}

/// One validated batch for the writer, with where to send the outcome.
pub struct IngestJob {
    pub agent_id: Arc<str>,
    pub batch: Batch,
    pub received_ms: i64,
    pub reply: oneshot::Sender<Result<Ack, Rejected>>,
}

// ---- the service ----------------------------------------------------------------------------

/// The ingest service as the API sees it: the enrolled agents' tokens, the batches in flight
/// per agent, and the writer's queue.
#[derive(Debug)]
pub struct Ingest {
    /// token hash → agent id.
    pub tokens: RwLock<HashMap<String, Arc<str>>>,
    /// Batches between a handler and the writer's reply, per agent.
    pub inflight: Mutex<HashMap<Arc<str>, usize>>,
    pub writer: mpsc::Sender<WriterMsg>,
}

impl Ingest {
    /// The service for the agents enrolled in `store`, and the receiving end of its writer's
    /// queue (of `queue_batches` batches).
    pub async fn load(
        store: &Store,
        queue_batches: usize,
    ) -> anyhow::Result<(Ingest, mpsc::Receiver<WriterMsg>)> {
        let revoked = store.revoked_agents().await?;
        let tokens = store
            .agents()
            .await?
            .into_iter()
            .filter(|a| !revoked.contains_key(&a.agent_id))
            .map(|a| (a.token_hash, Arc::from(a.agent_id.as_str())))
            .collect();
        let (tx, rx) = mpsc::channel(queue_batches);
        Ok((
            Ingest {
                tokens: RwLock::new(tokens),
                inflight: Mutex::new(HashMap::new()),
                writer: tx,
            },
            rx,
        ))
    }
}

impl Ingest {
    /// Drops the token of `agent_id` from memory (its token was revoked): its next batch is
    /// refused before it reaches the writer.
    pub fn forget(&self, agent_id: &str) {
        self.tokens
            .write()
            .expect("tokens lock")
            .retain(|_, a| &**a != agent_id);
    }
}

/// One enrolled agent as `yunwei-server agent list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentListing {
    pub agent_id: String,
    pub hostname: String,
    pub enrolled_ms: i64,
    pub last_seen_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// Every enrolled agent, revoked ones included.
pub async fn list_agents(store: &Store) -> sqlx::Result<Vec<AgentListing>> {
    let revoked = store.revoked_agents().await?;
    Ok(store
        .agents()
        .await?
        .into_iter()
        .map(|a| AgentListing {
            revoked_ms: revoked.get(&a.agent_id).copied(),
            agent_id: a.agent_id,
            hostname: a.hostname,
            enrolled_ms: a.enrolled_ms,
            last_seen_ms: a.last_seen_ms,
        })
        .collect())
}

/// Why `agent revoke` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no agent {0:?}")]
    Unknown(String),
    #[error("the token of agent {0:?} is revoked already")]
    AlreadyRevoked(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// Revokes the token of `agent_id` in the store at `now_ms`. A running server (and every
/// replica on the same database) refuses the agent's next batch: the writer checks the flag
/// in the transaction that would store it. The agent's data stays; it can enroll again only
/// with the enrollment secret. Returns the agent's hostname.
pub async fn revoke_agent(
    store: &Store,
    agent_id: &str,
    now_ms: i64,
    actor: &str,
    source: &str,
) -> Result<String, RevokeError> {
    let Some(a) = store.agent(agent_id).await? else {
        return Err(RevokeError::Unknown(agent_id.to_string()));
    };
    let rec = crate::audit::Pending::new(
        now_ms,
        &crate::audit::Entry {
            actor: actor.to_string(),
            action: "agent.revoke".into(),
            target: agent_id.to_string(),
            result: "success".into(),
            source: source.to_string(),
            detail: serde_json::json!({ "hostname": a.hostname }),
        },
    );
    if !store.revoke_agent(agent_id, now_ms, Some(&rec)).await? {
        return Err(RevokeError::AlreadyRevoked(agent_id.to_string()));
    }
    Ok(a.hostname)
}

/// Makes a new random enrollment secret, stores its hash and returns it (shown once). From
/// then on enrollment accepts only this secret, on running servers too (each enrollment reads
/// it from the store); the config file's `enrollment_secret` is ignored. Agents enrolled
/// before keep their tokens.
pub async fn rotate_enrollment_secret(
    store: &Store,
    now_ms: i64,
    audit: crate::store::audit::Audit<'_>,
) -> sqlx::Result<String> {
    let secret = crate::secret::random_hex(32);
    store
        .set_enrollment_secret_hash(&crate::secret::secret_hash(&secret), now_ms, audit)
        .await?;
    Ok(secret)
}

/// What the writer shares with the rest of the server.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<ServerConfig>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Hosts and the live window, updated after each commit.
    pub live: Arc<Live>,
    /// Wakes the rule engine with the metric names of committed batches.
    pub rule_trigger: Arc<rules::IngestTrigger>,
}

// ---- the writer -----------------------------------------------------------------------------

/// What the writer remembers of an agent between batches.
struct AgentMem {
    pruned_seq: i64,
    /// Bumped when the host's facts change, invalidating its cached presented labels.
    generation: u64,
    /// `last_seen_ms` and `interval_ms` as last written to the store: the current values live
    /// in memory (`HostLive`) and are written at most every [`LAST_SEEN_PERSIST_MS`].
    persisted_last_seen_ms: i64,
    persisted_interval_ms: i64,
    facts: HostFacts,
    first_seen_ms: Option<i64>,
    /// The highest sequence number applied since the writer started, with its observation time
    /// (server receipt minus the agent's `age_ms`): a later batch may not be placed before it.
    observed: Option<(i64, i64)>,
}

type SeriesKey = (Arc<str>, String, Labels);

/// The series cache: [`series_hash`] → candidates.
type SeriesCache = HashMap<u64, Vec<(SeriesKey, i64)>, yunwei_proto::PassThrough>;

/// The writer task's state. Caches are reloaded from the store after a failed transaction.
pub struct Writer {
    state: Shared,
    agents: HashMap<Arc<str>, AgentMem>,
    /// hash of (agent, name, labels) → candidates; collisions are resolved by comparison.
    series: SeriesCache,
    series_per_agent: HashMap<Arc<str>, usize>,
    /// Latest span per (kind, subject).
    last_span: HashMap<(&'static str, String), Span>,
    /// Time of the latest observation applied per (kind, subject): an older observation may
    /// fill unknown time but never change a stored state. Estimated from the latest span after
    /// a restart or a failed transaction.
    latest_obs: HashMap<(&'static str, String), i64>,
    /// Presented labels per series id, with the host facts generation they were built from.
    labels: HashMap<
        i64,
        (
            u64,
            yunwei_rules::promql::Labels,
            Option<yunwei_rules::promql::SeriesRef>,
        ),
    >,
    /// Hours this writer has marked dirty that are still open: the rollup job leaves an hour
    /// alone until two minutes after it closes, so marking it again before then is redundant.
    open_dirty: BTreeSet<i64>,
    /// The rollup horizon (`store::rollup`): samples of earlier hours are merged into the stored
    /// rollups, not rebuilt from raw batches retention may have deleted.
    sealed_before: i64,
}

/// The series cache's key: agent and name hashed with the process's seeded fast hash, and the
/// labels by the hash they carry (computed once per label set, when it was decoded or built).
/// Collisions are resolved by comparing the full identity.
fn series_hash(agent: &str, name: &str, labels: &Labels) -> u64 {
    let mut h = yunwei_proto::fast_hasher();
    h.write(agent.as_bytes());
    h.write_u8(0xff);
    h.write(name.as_bytes());
    h.write_u8(0xff);
    h.write_u64(labels.content_hash());
    h.finish()
}

/// One batch's outcome inside a group: the ack and, when it was stored (not a duplicate), the
/// series id of each sample; or this batch's own rejection.
type Applied = Result<(Ack, Option<Vec<i64>>), Rejected>;

/// A batch of a group after its checks: either its outcome already (refused, or a duplicate
/// by the agent's watermark), or its raw row to write with its samples' series ids.
enum Prepared {
    Done(Applied),
    Write {
        row: BatchRow,
        raw: Vec<blob::RawSample>,
        ids: Vec<i64>,
    },
}

/// A batch's series ids as far as the cache knows them (`-1` for the rest), and the samples
/// whose series the cache does not know, with their hashes.
struct Resolved {
    ids: Vec<i64>,
    missing: Vec<(usize, u64)>,
}

/// The raw row of one batch, without its agent id (borrowed from the job when written).
struct BatchRow {
    seq: i64,
    received_ms: i64,
    min_ts: i64,
    max_ts: i64,
    samples: i64,
    data: Vec<u8>,
}

impl BatchRow {
    fn as_new_batch<'a>(&'a self, agent_id: &'a str) -> writes::NewBatch<'a> {
        writes::NewBatch {
            agent_id,
            seq: self.seq,
            received_ms: self.received_ms,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
            samples: self.samples,
            data: &self.data,
        }
    }
}

/// The ack of a batch stored before: nothing was written again.
fn duplicate(job: &IngestJob) -> Ack {
    Ack {
        seq: job.batch.seq,
        duplicate: true,
        samples: 0,
    }
}

/// Undo log for the caches, applied when a transaction fails.
#[derive(Default)]
struct Undo {
    series: Vec<(u64, Arc<str>)>,
    spans: Vec<(&'static str, String)>,
}

impl Writer {
    pub async fn load(state: Shared) -> anyhow::Result<Writer> {
        let mut w = Writer {
            state,
            agents: HashMap::new(),
            series: SeriesCache::default(),
            series_per_agent: HashMap::new(),
            last_span: HashMap::new(),
            latest_obs: HashMap::new(),
            labels: HashMap::new(),
            open_dirty: BTreeSet::new(),
            sealed_before: 0,
        };
        w.reload().await?;
        Ok(w)
    }

    async fn reload(&mut self) -> anyhow::Result<()> {
        let store = &self.state.store;
        self.agents.clear();
        for a in store.agents().await? {
            self.agents
                .insert(a.agent_id.as_str().into(), agent_mem(&a));
        }
        self.series.clear();
        self.series_per_agent.clear();
        for s in store.all_series().await? {
            let agent: Arc<str> = s.agent_id.as_str().into();
            let labels = Labels::from(s.labels);
            let h = series_hash(&agent, &s.name, &labels);
            *self.series_per_agent.entry(agent.clone()).or_default() += 1;
            self.series
                .entry(h)
                .or_default()
                .push(((agent, s.name, labels), s.id));
        }
        self.last_span.clear();
        self.latest_obs.clear();
        self.sealed_before = store.rollup_sealed_before().await?;
        Ok(())
    }

    /// Runs until every sender is dropped.
    pub async fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                WriterMsg::Ingest(job) => {
                    // Group commit: what is queued when the writer takes a batch shares one
                    // transaction (and one fsync); acks wait for that commit. The writer does
                    // not wait for more: an 8 ms window added 8 ms to every ack at 1,000
                    // agents / 15 s (batches arrive ~15 ms apart) and grouped nothing
                    // (BENCHMARKS.md), and under load the queue groups by itself.
                    let mut group = vec![*job];
                    let mut deferred = Vec::new();
                    while group.len() < MAX_GROUP {
                        let next = rx.try_recv().ok();
                        match next {
                            Some(WriterMsg::Ingest(j)) => group.push(*j),
                            Some(other) => {
                                deferred.push(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    self.state.metrics.ingest_queue.sub(group.len() as i64);
                    self.commit_group(group).await;
                    for m in deferred {
                        self.handle_other(m).await;
                    }
                }
                other => self.handle_other(other).await,
            }
        }
        tracing::debug!("writer stopped");
    }

    async fn handle_other(&mut self, msg: WriterMsg) {
        match msg {
            WriterMsg::Ingest(_) => unreachable!("ingest jobs are grouped by run"),
            WriterMsg::RemoteWrite(job) => self.remote_write(*job).await,
            WriterMsg::Rollup {
                hour_ms,
                version,
                rollups,
                kpis,
                reply,
            } => {
                let r = self
                    .state
                    .store
                    .replace_rollup_hour(hour_ms, version, rollups.as_deref(), &kpis)
                    .await;
                let done = match r {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::error!(hour_ms, error = %e, "writing rollups failed");
                        false
                    }
                };
                if done {
                    self.state.metrics.rollup_hours.inc();
                }
                let _ = reply.send(done);
            }
            WriterMsg::Retention { now_ms, reply } => {
                let r = self.retention(now_ms).await;
                let _ = reply.send(r);
            }
            WriterMsg::ServerProbe {
                subject,
                t_ms,
                up,
                validity_ms,
                reply,
            } => {
                let mut undo = Undo::default();
                let r = self
                    .server_probe(&mut undo, subject, t_ms, up, validity_ms)
                    .await;
                if r.is_err() {
                    for key in undo.spans {
                        self.last_span.remove(&key);
                    }
                    self.latest_obs.clear();
                }
                let _ = reply.send(r);
            }
        }
    }

    /// Stores one result of a server probe in its own transaction.
    async fn server_probe(
        &mut self,
        undo: &mut Undo,
        subject: String,
        t: i64,
        up: bool,
        validity: i64,
    ) -> anyhow::Result<()> {
        let missed = i64::from(self.state.config.ingest.unknown_after_missed_batches);
        let state = if up { State::Up } else { State::Down };
        let mut tx = self.state.store.begin().await?;
        self.state.store.check_fence(&mut tx).await?;
        self.observe(
            &mut tx,
            undo,
            KIND_SERVER_PROBE,
            subject,
            t,
            state,
            validity,
            missed,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_group(&mut self, group: Vec<IngestJob>) {
        let started = Instant::now();
        let mut undo = Undo::default();
        let mut newly_open = Vec::new();
        let mut results: Vec<Applied> = Vec::with_capacity(group.len());
        let outcome = async {
            let mut tx = self.state.store.begin().await?;
            let mut dirty = BTreeSet::new();
            // Revocation is checked in the transaction that would store the batches, so a
            // revocation made by the command line (or another replica) stops the very next
            // batch. Series ids are resolved from the cache first: when a batch of the group
            // creates series (or names an agent not in memory), the revoked flags are read
            // before anything is written, so a refused batch creates none. Otherwise (the
            // steady state) the raw-batch INSERT itself skips the batches of revoked agents,
            // and the flags are read afterwards only for the batches it did not store
            // (redeliveries, or revoked): one statement fewer per group.
            let resolved: Vec<Resolved> = group.iter().map(|j| self.resolve(j)).collect();
            let up_front = group
                .iter()
                .zip(&resolved)
                .any(|(j, r)| !r.missing.is_empty() || !self.agents.contains_key(&j.agent_id));
            let mut revoked = if up_front {
                let mut agents: Vec<&str> = group.iter().map(|j| &*j.agent_id).collect();
                agents.sort_unstable();
                agents.dedup();
                Some(crate::store::agents::revoked_among(&mut tx, &agents).await?)
            } else {
                None
            };
            // Series ids and raw rows first, then every raw batch of the group in one
            // statement (its `(agent_id, seq)` key deduplicates), then the rest of each stored
            // batch in the group's order.
            let mut prepared = Vec::with_capacity(group.len());
            for (job, r) in group.iter().zip(resolved) {
                prepared.push(
                    self.prepare(&mut tx, job, r, revoked.as_ref(), &mut undo)
                        .await?,
                );
            }
            let rows: Vec<writes::NewBatch<'_>> = group
                .iter()
                .zip(&prepared)
                .filter_map(|(job, p)| match p {
                    Prepared::Write { row, .. } => Some(row.as_new_batch(&job.agent_id)),
                    Prepared::Done(_) => None,
                })
                .collect();
            let flags = writes::insert_batches(&mut tx, &rows, revoked.is_none()).await?;
            drop(rows);
            if revoked.is_none() {
                // Not stored: a duplicate, or refused as revoked. Which, for those only.
                let mut flag = flags.iter();
                let mut unstored: Vec<&str> = Vec::new();
                for (job, p) in group.iter().zip(&prepared) {
                    let check = match p {
                        Prepared::Write { .. } => {
                            !*flag.next().expect("one flag per written batch")
                        }
                        // A duplicate by the watermark; a refusal stays one.
                        Prepared::Done(r) => r.is_ok(),
                    };
                    if check {
                        unstored.push(&job.agent_id);
                    }
                }
                unstored.sort_unstable();
                unstored.dedup();
                revoked = Some(if unstored.is_empty() {
                    Default::default()
                } else {
                    crate::store::agents::revoked_among(&mut tx, &unstored).await?
                });
            }
            let revoked = revoked.unwrap_or_default();
            let mut inserted = flags.into_iter();
            for (job, p) in group.iter().zip(prepared) {
                let applied = match p {
                    Prepared::Done(Ok(_)) if revoked.contains(&*job.agent_id) => {
                        Err(Rejected::Revoked)
                    }
                    Prepared::Done(r) => r,
                    Prepared::Write { raw, ids, .. } => {
                        if inserted.next().expect("one flag per written batch") {
                            self.apply(&mut tx, job, raw, ids, &mut dirty, &mut undo)
                                .await?
                        } else if revoked.contains(&*job.agent_id) {
                            Err(Rejected::Revoked)
                        } else {
                            Ok((duplicate(job), None))
                        }
                    }
                };
                results.push(applied);
            }
            let now = now_ms();
            for hour in &dirty {
                // Skipped only while the hour is well before the rollup job may read it.
                let open = hour + HOUR_MS + 60_000 > now;
                if open && self.open_dirty.contains(hour) {
                    continue;
                }
                if open {
                    newly_open.push(*hour);
                }
                writes::mark_dirty(&mut tx, *hour).await?;
            }
            tx.commit().await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        let state = self.state.clone();
        let m = &state.metrics;
        m.ingest_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        m.ingest_group_batches.observe(group.len() as f64);
        match outcome {
            Ok(()) => {
                let now = now_ms();
                self.open_dirty.extend(newly_open);
                self.open_dirty.retain(|h| h + HOUR_MS + 60_000 > now);
                for (job, result) in group.into_iter().zip(results) {
                    let result = result.map(|(ack, stored)| {
                        if let Some(ids) = stored {
                            self.after_commit(&job, &ids);
                            if state.config.rules.eval_on_ingest {
                                state
                                    .rule_trigger
                                    .touched(job.batch.samples.iter().map(|s| s.name.as_str()));
                            }
                            m.ingest_batches.with_label_values(&["stored"]).inc();
                            m.ingest_samples.inc_by(ack.samples);
                        } else {
                            m.ingest_batches.with_label_values(&["duplicate"]).inc();
                        }
                        ack
                    });
                    if let Err(e) = &result {
                        m.ingest_rejected.with_label_values(&[e.reason()]).inc();
                    }
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), batches = group.len(), "ingest transaction failed");
                m.ingest_rejected
                    .with_label_values(&["store_error"])
                    .inc_by(group.len() as u64);
                for (h, agent) in undo.series {
                    self.series.remove(&h);
                    self.series_per_agent.remove(&agent);
                }
                for key in undo.spans {
                    self.last_span.remove(&key);
                }
                self.latest_obs.clear();
                if let Err(e) = self.reload().await {
                    tracing::error!(error = %format!("{e:#}"), "reloading writer caches failed");
                }
                for job in group {
                    let _ = job.reply.send(Err(Rejected::StoreUnavailable));
                }
            }
        }
    }

    /// The series ids of a batch's samples found in the cache (`-1` where not), and the
    /// samples whose series are not, with their hashes.
    fn resolve(&self, job: &IngestJob) -> Resolved {
        let agent = &job.agent_id;
        let samples = &job.batch.samples;
        let mut ids = Vec::with_capacity(samples.len());
        let mut missing = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            let h = series_hash(agent, &s.name, &s.labels);
            let id = self.cached_series(h, agent, s);
            ids.push(id.unwrap_or(-1));
            if id.is_none() {
                missing.push((i, h));
            }
        }
        Resolved { ids, missing }
    }

    /// Checks one batch of a group and completes its series ids (creating new series inside
    /// the group's transaction); `Prepared::Done` when nothing of it is to be written.
    /// `revoked`: the group's revoked agents, when read before the batches are written.
    async fn prepare(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        job: &IngestJob,
        resolved: Resolved,
        revoked: Option<&std::collections::HashSet<String>>,
        undo: &mut Undo,
    ) -> anyhow::Result<Prepared> {
        let b = &job.batch;
        let agent = &job.agent_id;
        let seq = b.seq as i64;
        if !self.agents.contains_key(agent) {
            match self.state.store.agent(agent).await? {
                Some(a) => {
                    self.agents.insert(agent.clone(), agent_mem(&a));
                }
                None => {
                    return Ok(Prepared::Done(Err(Rejected::UnknownAgent)));
                }
            }
        }
        if revoked.is_some_and(|r| r.contains(&**agent)) {
            return Ok(Prepared::Done(Err(Rejected::Revoked)));
        }
        if seq <= self.agents[agent].pruned_seq {
            return Ok(Prepared::Done(Ok((duplicate(job), None))));
        }

        // Refuse the batch before writing anything if it would exceed the per-agent series
        // limit.
        let Resolved { mut ids, missing } = resolved;
        if !missing.is_empty() {
            let have = self.series_per_agent.get(agent).copied().unwrap_or(0);
            let mut distinct_missing: Vec<u64> = missing.iter().map(|(_, h)| *h).collect();
            distinct_missing.sort_unstable();
            distinct_missing.dedup();
            let limit = self.state.config.ingest.max_series_per_agent;
            if have + distinct_missing.len() > limit {
                let (i, _) = missing[limit.saturating_sub(have).min(missing.len() - 1)];
                return Ok(Prepared::Done(Err(Rejected::SeriesLimit {
                    limit,
                    sample: i,
                })));
            }
        }
        for (i, h) in missing {
            let s = &b.samples[i];
            let existing = self.cached_series(h, agent, s);
            let id = match existing {
                Some(id) => id,
                None => {
                    let id = writes::insert_series(tx, agent, &s.name, &s.labels, job.received_ms)
                        .await?;
                    self.series
                        .entry(h)
                        .or_default()
                        .push(((agent.clone(), s.name.clone(), s.labels.clone()), id));
                    *self.series_per_agent.entry(agent.clone()).or_default() += 1;
                    undo.series.push((h, agent.clone()));
                    id
                }
            };
            ids[i] = id;
        }

        let raw: Vec<blob::RawSample> = b
            .samples
            .iter()
            .zip(&ids)
            .map(|(s, &series_id)| blob::RawSample {
                series_id,
                ts_ms: s.ts_ms,
                value: s.value,
            })
            .collect();
        let (min_ts, max_ts) = raw
            .iter()
            .fold((b.collected_at_ms, b.collected_at_ms), |(lo, hi), s| {
                (lo.min(s.ts_ms), hi.max(s.ts_ms))
            });
        let row = BatchRow {
            seq,
            received_ms: job.received_ms,
            min_ts,
            max_ts,
            samples: raw.len() as i64,
            data: blob::encode(&raw),
        };
        Ok(Prepared::Write { row, raw, ids })
    }

    /// Writes the rest of one batch whose raw row the group's transaction just stored.
    /// `Ok(Err(..))` rejects this batch only.
    async fn apply(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        job: &IngestJob,
        raw: Vec<blob::RawSample>,
        ids: Vec<i64>,
        dirty: &mut BTreeSet<i64>,
        undo: &mut Undo,
    ) -> anyhow::Result<Applied> {
        let b = &job.batch;
        let agent = &job.agent_id;
        let seq = b.seq as i64;
        // Late data merges, never replaces: an hour before the rollup horizon may have lost
        // raw batches, so its samples are added to its stored rollups instead of dirtying it
        // for a rebuild from what is left.
        let sealed: Vec<blob::RawSample> = raw
            .iter()
            .filter(|s| rollup::hour_of(s.ts_ms) < self.sealed_before)
            .copied()
            .collect();
        if !sealed.is_empty() {
            let merged = rollup::merge_sealed(tx, &sealed).await?;
            self.state.metrics.rollup_late_merged.inc_by(merged);
        }
        let mut last_hour = None;
        for s in &raw {
            let hour = rollup::hour_of(s.ts_ms);
            // A batch's samples are mostly of one hour: one set insertion for a run of them.
            if hour >= self.sealed_before && last_hour != Some(hour) {
                dirty.insert(hour);
                last_hour = Some(hour);
            }
        }

        // Inventory. last_seen and last_seq are served from memory; the row is refreshed when
        // something else changes or every LAST_SEEN_PERSIST_MS.
        let mem = self.agents.get_mut(agent).expect("loaded above");
        let facts_changed = mem.facts != b.host;
        let persist = facts_changed
            || mem.first_seen_ms.is_none()
            || mem.persisted_interval_ms != b.interval_ms as i64
            || job.received_ms - mem.persisted_last_seen_ms >= LAST_SEEN_PERSIST_MS;
        if persist {
            mem.persisted_last_seen_ms = job.received_ms;
            mem.persisted_interval_ms = b.interval_ms as i64;
        }
        if persist {
            writes::touch_agent(tx, agent, job.received_ms, seq, b.interval_ms as i64).await?;
        }
        if facts_changed {
            writes::set_agent_facts(tx, agent, &b.host).await?;
        }

        // Status intervals. The heartbeat is placed with the server's clock and the agent's
        // monotonic age, so a wrong agent wall clock cannot move it; probe results are shifted
        // by the same offset.
        //
        // Server time is the authority: the observation time may not go backwards across
        // sequence numbers (a later batch claiming a large age cannot place itself before an
        // earlier one), and how long an observation vouches for is bounded by the server's
        // `max_observation_validity`, whatever interval the agent declares.
        let cfg = &self.state.config.ingest;
        let missed = i64::from(cfg.unknown_after_missed_batches);
        let validity = (b.interval_ms as i64).min(cfg.max_observation_validity_ms);
        // A probe's result is valid for the probe's own interval when the agent names it, plus
        // the batch's validity: the next result is due after the probe's interval and reaches
        // the server with the batch after it, so a probe slower than its agent has no unknown
        // time between results. Bounded by the server's `max_probe_validity`, whatever the agent
        // declares. Without it (older agents), the batch's validity, as before.
        let max_probe_validity = cfg.max_probe_validity_ms.max(validity);
        let probe_validity = |probe: &str| {
            b.probe_intervals_ms.get(probe).map_or(validity, |&ms| {
                i64::try_from(ms)
                    .unwrap_or(i64::MAX)
                    .saturating_add(validity)
                    .min(max_probe_validity)
            })
        };
        let age = b.age_ms.min(self.state.config.limits.max_age_ms as u64) as i64;
        let mut observed = job.received_ms - age;
        if let Some(mem) = self.agents.get_mut(agent) {
            match mem.observed {
                Some((s, o)) if seq > s => observed = observed.max(o),
                Some((s, o)) if seq < s => observed = observed.min(o),
                _ => {}
            }
            if mem.observed.is_none_or(|(s, _)| seq > s) {
                mem.observed = Some((seq, observed));
            }
        }
        let offset = observed - b.collected_at_ms;
        let mut refused = Vec::new();
        let r = self
            .observe(
                tx,
                undo,
                KIND_HOST,
                agent.to_string(),
                observed,
                State::Up,
                validity,
                missed,
            )
            .await?;
        refused.extend(contradiction(r, KIND_HOST, agent, observed, State::Up));
        for s in &b.samples {
            if s.name == "probe_success"
                && let Some(probe) = s.labels.get("probe")
            {
                let st = if s.value > 0.5 {
                    State::Up
                } else {
                    State::Down
                };
                let subject = format!("{agent}/{probe}");
                let r = self
                    .observe(
                        tx,
                        undo,
                        KIND_PROBE,
                        subject.clone(),
                        s.ts_ms + offset,
                        st,
                        probe_validity(probe),
                        missed,
                    )
                    .await?;
                refused.extend(contradiction(r, KIND_PROBE, &subject, s.ts_ms + offset, st));
            }
        }
        for e in &b.events {
            let (kind, subject, ts, detail) = match e {
                Event::ProbeState {
                    probe, up, ts_ms, ..
                } => {
                    let st = if *up { State::Up } else { State::Down };
                    let subject = format!("{agent}/{probe}");
                    let r = self
                        .observe(
                            tx,
                            undo,
                            KIND_PROBE,
                            subject.clone(),
                            ts_ms + offset,
                            st,
                            probe_validity(probe),
                            missed,
                        )
                        .await?;
                    refused.extend(contradiction(r, KIND_PROBE, &subject, ts_ms + offset, st));
                    (
                        "probe_state",
                        probe.clone(),
                        ts_ms + offset,
                        serde_json::to_string(e)?,
                    )
                }
                Event::SpoolGap {
                    dropped_batches,
                    from_ms,
                    ..
                } => {
                    self.state
                        .metrics
                        .spool_gap_batches
                        .inc_by(*dropped_batches);
                    tracing::warn!(agent = %agent, dropped_batches, "agent reported a spool gap");
                    (
                        "spool_gap",
                        String::new(),
                        from_ms + offset,
                        serde_json::to_string(e)?,
                    )
                }
            };
            writes::insert_event(
                tx,
                &writes::NewEvent {
                    agent_id: agent,
                    kind,
                    subject: &subject,
                    ts_ms: ts,
                    received_ms: job.received_ms,
                    detail,
                },
            )
            .await?;
        }
        // Kept as late evidence: what the agent claimed, and the stored span it contradicts.
        for (kind, subject, detail, ts) in refused {
            self.state.metrics.observations_refused.inc();
            writes::insert_event(
                tx,
                &writes::NewEvent {
                    agent_id: agent,
                    kind: "observation_refused",
                    subject: &subject,
                    ts_ms: ts,
                    received_ms: job.received_ms,
                    detail: serde_json::json!({ "status_kind": kind, "claimed": detail.0, "stored": detail.1 }).to_string(),
                },
            )
            .await?;
        }
        Ok(Ok((
            Ack {
                seq: b.seq,
                duplicate: false,
                samples: b.samples.len() as u64,
            },
            Some(ids),
        )))
    }

    /// The id of a series already in the cache, by its hash and full identity.
    fn cached_series(&self, h: u64, agent: &Arc<str>, s: &yunwei_proto::Sample) -> Option<i64> {
        self.series.get(&h).and_then(|c| {
            c.iter()
                .find(|((a, n, l), _)| {
                    (Arc::ptr_eq(a, agent) || a == agent) && *n == s.name && *l == s.labels
                })
                .map(|(_, id)| *id)
        })
    }

    fn after_commit(&mut self, job: &IngestJob, ids: &[i64]) {
        let b = &job.batch;
        let generation = match self.agents.get_mut(&job.agent_id) {
            Some(mem) => {
                if mem.facts != b.host {
                    mem.facts = b.host.clone();
                    mem.generation += 1;
                }
                mem.first_seen_ms.get_or_insert(job.received_ms);
                mem.generation
            }
            None => 0,
        };
        {
            let mut window = self.state.live.window.write().expect("window lock");
            for (s, id) in b.samples.iter().zip(ids) {
                // The presented labels are built once per series (and host facts generation),
                // and the series' handle in the window taken once (again after the window
                // renumbers its series), so adding a sample hashes no labels.
                let cached = matches!(self.labels.get(id), Some((g, ..)) if *g == generation);
                if !cached {
                    let l = crate::live::to_labels(&crate::live::presented_labels(
                        &s.name,
                        &s.labels,
                        &b.host.hostname,
                        &b.host.labels,
                    ));
                    self.labels.insert(*id, (generation, l, None));
                }
                let (_, labels, at) = self.labels.get_mut(id).expect("cached above");
                window
                    .storage
                    .add_sample_cached(at, labels, s.ts_ms, s.value);
            }
            // For the leader's tail, which then need not read this batch back.
            window.added_own(&job.agent_id, b.seq as i64, job.received_ms);
        }
        let mut live = self.state.live.hosts.write().expect("live lock");
        let entry = live
            .entry(job.agent_id.clone())
            .or_insert_with(|| HostLive {
                hostname: b.host.hostname.clone(),
                last_seen_ms: job.received_ms,
                interval_ms: b.interval_ms as i64,
                labels: b.host.labels.clone(),
                last_seq: b.seq as i64,
            });
        entry.last_seq = entry.last_seq.max(b.seq as i64);
        entry.hostname.clone_from(&b.host.hostname);
        entry.labels.clone_from(&b.host.labels);
        entry.last_seen_ms = entry.last_seen_ms.max(job.received_ms);
        entry.interval_ms = b.interval_ms as i64;
    }

    #[allow(clippy::too_many_arguments)]
    async fn observe(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        undo: &mut Undo,
        kind: &'static str,
        subject: String,
        t: i64,
        state: State,
        validity: i64,
        missed: i64,
    ) -> anyhow::Result<timeline::Observed> {
        let key = (kind, subject);
        if !self.last_span.contains_key(&key)
            && let Some(span) = writes::latest_span(tx, kind, &key.1).await?
        {
            self.last_span.insert(key.clone(), span);
        }
        let last = self.last_span.get(&key).copied();
        let latest = self
            .latest_obs
            .get(&key)
            .copied()
            .or(last.map(|l| l.end - validity))
            .unwrap_or(i64::MIN);
        let before: Vec<Span> = match last {
            None => Vec::new(),
            Some(l) if t >= l.start => vec![l],
            Some(_) => {
                let reach = timeline::reach(validity, missed);
                writes::spans_touching(tx, kind, &key.1, t - reach, t + reach).await?
            }
        };
        let mut window = before.clone();
        let observed = timeline::observe(&mut window, t, state, validity, missed, latest);
        if observed == timeline::Observed::Applied {
            self.latest_obs.insert(key.clone(), latest.max(t));
        }
        if window == before {
            return Ok(observed);
        }
        undo.spans.push(key.clone());
        for old in &before {
            if !window.iter().any(|w| w.id == old.id) {
                writes::delete_span(tx, old.id).await?;
            }
        }
        for w in &mut window {
            match w.id {
                Some(id) => {
                    if before.iter().find(|o| o.id == Some(id)) != Some(w) {
                        writes::update_span(tx, id, w).await?;
                    }
                }
                None => {
                    let id = writes::insert_span(tx, kind, &key.1, w).await?;
                    w.id = Some(id);
                }
            }
        }
        // Keep the cache on the latest span of the subject.
        let newest = window.last().copied();
        match (last, newest) {
            (Some(l), Some(n)) if n.start >= l.start || window.iter().any(|w| w.id == l.id) => {
                let keep = if n.start >= l.start {
                    n
                } else {
                    *window.iter().find(|w| w.id == l.id).unwrap()
                };
                self.last_span.insert(key, keep);
            }
            (Some(_), _) => {
                self.last_span.remove(&key);
            }
            (None, Some(n)) => {
                self.last_span.insert(key, n);
            }
            (None, None) => {}
        }
        Ok(observed)
    }

    /// Deletes data past retention. Raw batches are deleted only once their hours are rolled
    /// up; the per-agent watermark keeps deduplicating pruned sequence numbers.
    async fn retention(&mut self, now: i64) -> anyhow::Result<()> {
        let r = &self.state.config.retention;
        let raw_cutoff = now - i64::from(r.raw_hours) * HOUR_MS;
        let day = 24 * HOUR_MS;
        let cutoffs = writes::RetentionCutoffs {
            raw_ms: raw_cutoff,
            rollups_ms: now - i64::from(r.rollup_days) * day,
            intervals_ms: now - i64::from(r.interval_days) * day,
            events_ms: now - i64::from(r.event_days) * day,
        };
        let mut tx = self.state.store.begin().await?;
        self.state.store.check_fence(&mut tx).await?;
        let writes::Pruned {
            marks: mark_updates,
            deleted,
            sealed_before_ms,
        } = writes::prune(&mut tx, &cutoffs).await?;
        tx.commit().await?;
        self.sealed_before = sealed_before_ms;
        for (agent, seq) in mark_updates {
            if let Some(mem) = self.agents.get_mut(agent.as_str()) {
                mem.pruned_seq = mem.pruned_seq.max(seq);
            }
        }
        // Spans may have been deleted under the cache.
        self.last_span.clear();
        self.latest_obs.clear();
        for (what, n) in deleted {
            self.state
                .metrics
                .retention_deleted
                .with_label_values(&[what])
                .inc_by(n);
        }
        Ok(())
    }
}

/// A refused observation as (status kind, subject, (claimed, stored), time), for the event log.
type Refused = (&'static str, String, (String, String), i64);

fn contradiction(
    r: timeline::Observed,
    kind: &'static str,
    subject: &str,
    t: i64,
    claimed: State,
) -> Option<Refused> {
    match r {
        timeline::Observed::Applied => None,
        timeline::Observed::Contradicts { state, start, end } => Some((
            kind,
            subject.to_string(),
            (
                claimed.as_str().to_string(),
                format!("{} {start}..{end}", state.as_str()),
            ),
            t,
        )),
    }
}

fn agent_mem(a: &AgentRow) -> AgentMem {
    AgentMem {
        pruned_seq: a.pruned_seq,
        generation: 0,
        persisted_last_seen_ms: a.last_seen_ms.unwrap_or(0),
        persisted_interval_ms: a.interval_ms,
        facts: HostFacts {
            hostname: a.hostname.clone(),
            os: a.os.clone(),
            kernel: a.kernel.clone(),
            arch: a.arch.clone(),
            agent_version: a.agent_version.clone(),
            labels: a.labels.clone(),
        },
        first_seen_ms: a.first_seen_ms,
        observed: None,
    }
}

/// Computes the rollups of one hour from the raw window. Duplicate (series, timestamp) pairs
/// count once, so the result depends only on what is stored.
pub async fn compute_rollups(store: &Store, hour_ms: i64) -> sqlx::Result<Vec<Rollup>> {
    let mut samples = Vec::new();
    store
        .raw_samples_in_hour(hour_ms, |s| samples.push(s))
        .await?;
    Ok(rollup::summarize(samples))
}

/// One maintenance pass: roll up every closed dirty hour, then apply retention.
pub async fn maintenance_pass(
    store: &Store,
    writer: &mpsc::Sender<WriterMsg>,
    now: i64,
) -> anyhow::Result<()> {
    // An hour is rolled up once it has been closed for two minutes; later backfill dirties it
    // again and it is recomputed.
    let dirty = store.dirty_hours(now - 120_000).await?;
    // Read after the dirty hours: a series created later comes with a batch that dirties its
    // hour again, so an hour rolled up without it is not written (its version moved on).
    let series = if dirty.is_empty() {
        HashMap::new()
    } else {
        store.kpi_source_series().await?
    };
    for (hour_ms, version, rebuild) in dirty {
        // An hour before the rollup horizon keeps its stored (merged) rollups; its KPIs follow.
        let (rollups, kpis) = if rebuild {
            let rollups = compute_rollups(store, hour_ms).await?;
            let kpis = kpi::derive_hour(&series, hour_ms, &rollups);
            (Some(rollups), kpis)
        } else {
            let ids: Vec<i64> = series.keys().copied().collect();
            let stored = store.rollups(&ids, hour_ms, hour_ms).await?;
            (None, kpi::derive_hour(&series, hour_ms, &stored))
        };
        let (reply, rx) = oneshot::channel();
        writer
            .send(WriterMsg::Rollup {
                hour_ms,
                version,
                rollups,
                kpis,
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("writer stopped"))?;
        rx.await?;
    }
    let (reply, rx) = oneshot::channel();
    writer
        .send(WriterMsg::Retention { now_ms: now, reply })
        .await
        .map_err(|_| anyhow::anyhow!("writer stopped"))?;
    rx.await?
}
