//! The writer's side of Prometheus remote write (`http/remote_write.rs` decodes and checks the
//! request): one request is one transaction of the same writer that stores agent batches, and
//! the handler answers only after it committed.
//!
//! Each `(sender, instance)` is a host of the inventory (an `agents` row made on first sight,
//! with its provenance in `remote_write_hosts`), so its series are presented, assigned to
//! systems and rolled up like an agent's. What remote write does **not** make is availability
//! evidence: no status span is written for a remote-written host. Its samples carry the
//! sender's timestamps, which the server cannot place by its own clock the way it places an
//! agent's heartbeat (receipt minus the agent's monotonic age), and the sender is run by the
//! party the contract assesses; a host fed only by remote write is "unknown" to the agents'
//! view of availability, and a system made of such hosts is assessed by its `server_probes`
//! (`availability_from: server_probes`).
//!
//! Deduplication is per point: `remote_write_marks` holds the newest stored point of each
//! series, read and advanced in the transaction that stores the samples. A sample at that
//! timestamp with the same value is a duplicate (a retried request), with another value a
//! conflict; an older sample is out of order. None of them is stored: what was stored first
//! stays, and each is counted in `yunwei_remote_write_samples_total{outcome}`.

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::oneshot;
use yunwei_proto::{Batch, HostFacts};

use super::{IngestJob, Rejected, Writer, agent_mem, series_hash};
use crate::store::{
    blob,
    remote_write::{self as store_rw, Mark, RemoteHostRow},
    rollup, writes,
};

/// The host label naming the sender whose feed made a host: its provenance, presented on
/// every series of the host.
pub const SENDER_LABEL: &str = "remote_write_sender";

/// One decoded, validated remote-write request for the writer.
pub struct RemoteWriteJob {
    /// The authenticated sender.
    pub sender: String,
    pub received_ms: i64,
    /// The request's samples by host (`instance` label), in request order.
    pub hosts: Vec<RemoteHost>,
    pub reply: oneshot::Sender<Result<RemoteWriteOutcome, Rejected>>,
}

/// The samples of one `instance` in a request. The samples' labels no longer hold
/// `instance` (it is the host's hostname); `index` is each sample's place in the request, so a
/// refusal can name it.
pub struct RemoteHost {
    pub instance: String,
    pub samples: Vec<(usize, yunwei_proto::Sample)>,
}

/// What a committed request did, in samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteWriteOutcome {
    pub stored: u64,
    /// Already stored with the same value at the same time (a retried request).
    pub duplicate: u64,
    /// At or before the newest stored point of its series with another value: refused.
    pub conflict: u64,
    /// Older than the newest stored point of its series: refused.
    pub out_of_order: u64,
}

/// The inventory id of the host a sender's feed makes for `instance`.
pub fn host_agent_id(sender: &str, instance: &str) -> String {
    let h = crate::secret::secret_hash(instance);
    format!("r:{sender}:{}", &h[..16])
}

/// The inventory labels of a remote-written host: its provenance.
pub fn host_labels(sender: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(SENDER_LABEL.to_string(), sender.to_string())])
}

fn host_facts(sender: &str, instance: &str) -> HostFacts {
    HostFacts {
        hostname: instance.to_string(),
        os: String::new(),
        kernel: String::new(),
        arch: String::new(),
        agent_version: store_rw::REMOTE_WRITE_AGENT_VERSION.to_string(),
        labels: host_labels(sender),
    }
}

/// One host's part of the request after deduplication: the batch to present after commit
/// and the series id of each of its stored samples.
struct Stored {
    job: IngestJob,
    ids: Vec<i64>,
}

impl Writer {
    /// Stores one remote-write request in its own transaction and answers it.
    pub(super) async fn remote_write(&mut self, job: RemoteWriteJob) {
        let mut new_series: Vec<(u64, Arc<str>, i64)> = Vec::new();
        let mut new_agents: Vec<Arc<str>> = Vec::new();
        let r = self
            .remote_write_tx(&job, &mut new_series, &mut new_agents)
            .await;
        let m = self.state.metrics.clone();
        let r = match r {
            Ok(Ok((outcome, stored))) => {
                for s in stored {
                    self.after_commit(&s.job, &s.ids);
                    if self.state.config.rules.eval_on_ingest {
                        self.state
                            .rule_trigger
                            .touched(s.job.batch.samples.iter().map(|s| s.name.as_str()));
                    }
                    m.ingest_batches.with_label_values(&["stored"]).inc();
                }
                m.ingest_samples.inc_by(outcome.stored);
                for (k, n) in [
                    ("stored", outcome.stored),
                    ("duplicate", outcome.duplicate),
                    ("conflict", outcome.conflict),
                    ("out_of_order", outcome.out_of_order),
                ] {
                    m.remote_write_samples.with_label_values(&[k]).inc_by(n);
                }
                if outcome.conflict + outcome.out_of_order > 0 {
                    tracing::warn!(
                        sender = %job.sender,
                        conflict = outcome.conflict,
                        out_of_order = outcome.out_of_order,
                        "remote write: samples at or before a stored point refused"
                    );
                }
                Ok(outcome)
            }
            Ok(Err(rejected)) => {
                self.forget(new_series, new_agents);
                m.ingest_rejected
                    .with_label_values(&[rejected.reason()])
                    .inc();
                Err(rejected)
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), sender = %job.sender, "remote write transaction failed");
                m.ingest_rejected.with_label_values(&["store_error"]).inc();
                self.forget(new_series, new_agents);
                self.last_span.clear();
                self.latest_obs.clear();
                if let Err(e) = self.reload().await {
                    tracing::error!(error = %format!("{e:#}"), "reloading writer caches failed");
                }
                Err(Rejected::StoreUnavailable)
            }
        };
        let _ = job.reply.send(r);
    }

    /// Drops from the caches what a transaction that did not commit had added.
    fn forget(&mut self, series: Vec<(u64, Arc<str>, i64)>, agents: Vec<Arc<str>>) {
        for (h, agent, id) in series {
            if let Some(c) = self.series.get_mut(&h) {
                c.retain(|(_, i)| *i != id);
            }
            if let Some(n) = self.series_per_agent.get_mut(&agent) {
                *n = n.saturating_sub(1);
            }
        }
        for a in agents {
            self.agents.remove(&a);
        }
    }

    async fn remote_write_tx(
        &mut self,
        job: &RemoteWriteJob,
        new_series: &mut Vec<(u64, Arc<str>, i64)>,
        new_agents: &mut Vec<Arc<str>>,
    ) -> anyhow::Result<Result<(RemoteWriteOutcome, Vec<Stored>), Rejected>> {
        let mut tx = self.state.store.begin().await?;
        // Checked in the transaction that would store the samples, so a revocation stops the
        // very next request.
        if !store_rw::sender_active(&mut tx, &job.sender).await? {
            return Ok(Err(Rejected::Revoked));
        }
        let now = job.received_ms;

        // The hosts, made on first sight.
        let mut agent_ids: Vec<Arc<str>> = Vec::with_capacity(job.hosts.len());
        for h in &job.hosts {
            let id: Arc<str> = host_agent_id(&job.sender, &h.instance).into();
            if !self.agents.contains_key(&id) {
                let row = match self.state.store.agent(&id).await? {
                    Some(a) => a,
                    None => {
                        let host = RemoteHostRow {
                            agent_id: id.to_string(),
                            sender: job.sender.clone(),
                            instance: h.instance.clone(),
                            created_ms: now,
                        };
                        store_rw::insert_host(&mut tx, &host, &host_labels(&job.sender)).await?;
                        crate::store::AgentRow {
                            agent_id: id.to_string(),
                            token_hash: String::new(),
                            enrolled_ms: now,
                            hostname: h.instance.clone(),
                            os: String::new(),
                            kernel: String::new(),
                            arch: String::new(),
                            agent_version: store_rw::REMOTE_WRITE_AGENT_VERSION.into(),
                            labels: host_labels(&job.sender),
                            first_seen_ms: None,
                            last_seen_ms: None,
                            last_seq: 0,
                            interval_ms: store_rw::REMOTE_WRITE_INTERVAL_MS,
                            pruned_seq: 0,
                        }
                    }
                };
                self.agents.insert(id.clone(), agent_mem(&row));
                new_agents.push(id.clone());
            }
            agent_ids.push(id);
        }

        // Series ids; the whole request is refused before anything is written if it would
        // take the sender past its series limit (over all its hosts).
        let prefix = format!("r:{}:", job.sender);
        let mut have: usize = self
            .series_per_agent
            .iter()
            .filter(|(a, _)| a.starts_with(&prefix))
            .map(|(_, n)| *n)
            .sum();
        let limit = self.state.config.ingest.max_series_per_agent;
        let mut ids: Vec<Vec<i64>> = Vec::with_capacity(job.hosts.len());
        for (h, agent) in job.hosts.iter().zip(&agent_ids) {
            let mut host_ids = Vec::with_capacity(h.samples.len());
            for (index, s) in &h.samples {
                let hash = series_hash(agent, &s.name, &s.labels);
                let id = match self.cached_series(hash, agent, s) {
                    Some(id) => id,
                    None => {
                        if have >= limit {
                            return Ok(Err(Rejected::SeriesLimit {
                                limit,
                                sample: *index,
                            }));
                        }
                        let id =
                            writes::insert_series(&mut tx, agent, &s.name, &s.labels, now).await?;
                        self.series
                            .entry(hash)
                            .or_default()
                            .push(((agent.clone(), s.name.clone(), s.labels.clone()), id));
                        *self.series_per_agent.entry(agent.clone()).or_default() += 1;
                        new_series.push((hash, agent.clone(), id));
                        have += 1;
                        id
                    }
                };
                host_ids.push(id);
            }
            ids.push(host_ids);
        }

        // Deduplication against the newest stored point of each series.
        let mut all: Vec<i64> = ids.iter().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        let mut marks = store_rw::marks(&mut tx, &all).await?;
        let mut outcome = RemoteWriteOutcome::default();
        let mut moved: BTreeMap<i64, Mark> = BTreeMap::new();
        let mut stored = Vec::new();
        let mut dirty = std::collections::BTreeSet::new();
        let mut sealed = Vec::new();
        for ((h, agent), host_ids) in job.hosts.iter().zip(&agent_ids).zip(ids) {
            let mut keep = Vec::new();
            let mut keep_ids = Vec::new();
            for ((_, s), id) in h.samples.iter().zip(host_ids) {
                match marks.get(&id) {
                    Some(m) if s.ts_ms < m.ts_ms => outcome.out_of_order += 1,
                    Some(m) if s.ts_ms == m.ts_ms => {
                        if m.value.to_bits() == s.value.to_bits() {
                            outcome.duplicate += 1;
                        } else {
                            outcome.conflict += 1;
                        }
                    }
                    _ => {
                        let mark = Mark {
                            ts_ms: s.ts_ms,
                            value: s.value,
                        };
                        marks.insert(id, mark);
                        moved.insert(id, mark);
                        keep.push(s.clone());
                        keep_ids.push(id);
                    }
                }
            }
            if keep.is_empty() {
                continue;
            }
            outcome.stored += keep.len() as u64;
            let raw: Vec<blob::RawSample> = keep
                .iter()
                .zip(&keep_ids)
                .map(|(s, &series_id)| blob::RawSample {
                    series_id,
                    ts_ms: s.ts_ms,
                    value: s.value,
                })
                .collect();
            let min_ts = raw.iter().map(|s| s.ts_ms).min().expect("not empty");
            let max_ts = raw.iter().map(|s| s.ts_ms).max().expect("not empty");
            for s in &raw {
                let hour = rollup::hour_of(s.ts_ms);
                if hour < self.sealed_before {
                    sealed.push(*s);
                } else {
                    dirty.insert(hour);
                }
            }
            let seq = store_rw::last_seq(&mut tx, agent).await? + 1;
            let data = blob::encode(&raw);
            let row = writes::NewBatch {
                agent_id: agent,
                seq,
                received_ms: now,
                min_ts,
                max_ts,
                samples: raw.len() as i64,
                data: &data,
            };
            let inserted = writes::insert_batches(&mut tx, &[row], false).await?;
            anyhow::ensure!(inserted == [true], "batch {seq} of {agent} existed");
            writes::touch_agent(&mut tx, agent, now, seq, store_rw::REMOTE_WRITE_INTERVAL_MS)
                .await?;
            let (reply, _) = oneshot::channel();
            stored.push(Stored {
                job: IngestJob {
                    agent_id: agent.clone(),
                    batch: Batch {
                        version: yunwei_proto::PROTOCOL_VERSION,
                        agent_id: agent.to_string(),
                        seq: seq as u64,
                        interval_ms: store_rw::REMOTE_WRITE_INTERVAL_MS as u64,
                        collected_at_ms: max_ts,
                        age_ms: 0,
                        host: host_facts(&job.sender, &h.instance),
                        samples: keep,
                        events: Vec::new(),
                        probe_intervals_ms: BTreeMap::new(),
                    },
                    received_ms: now,
                    reply,
                },
                ids: keep_ids,
            });
        }
        // Late data merges into the stored rollups, never replaces them (as for agents).
        if !sealed.is_empty() {
            let merged = rollup::merge_sealed(&mut tx, &sealed).await?;
            self.state.metrics.rollup_late_merged.inc_by(merged);
        }
        for hour in dirty {
            writes::mark_dirty(&mut tx, hour).await?;
        }
        let moved: Vec<(i64, Mark)> = moved.into_iter().collect();
        store_rw::set_marks(&mut tx, &moved).await?;
        tx.commit().await?;
        Ok(Ok((outcome, stored)))
    }
}

/// Why a sender was not made or revoked.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("a sender name is 1 to 32 characters of a-z, 0-9, '_' and '-'")]
    InvalidName,
    #[error("there is a sender {0:?} already")]
    Exists(String),
    #[error("no sender {0:?}, or its token is revoked already")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// Whether `name` may name a sender (it is part of its hosts' inventory ids).
pub fn valid_sender_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Makes a remote-write sender and returns its token (shown once; only its hash is stored),
/// with `audit` committed in the same transaction.
pub async fn create_sender(
    store: &crate::store::Store,
    name: &str,
    now_ms: i64,
    created_by: &str,
    audit: crate::store::audit::Audit<'_>,
) -> Result<String, SenderError> {
    if !valid_sender_name(name) {
        return Err(SenderError::InvalidName);
    }
    let token = crate::secret::random_hex(32);
    let hash = crate::secret::secret_hash(&token);
    if !store
        .insert_remote_write_sender(name, &hash, now_ms, created_by, audit)
        .await?
    {
        return Err(SenderError::Exists(name.to_string()));
    }
    Ok(token)
}

/// Revokes a sender's token: its next request is refused (the writer checks in the
/// transaction that would store it). Its hosts and data stay.
pub async fn revoke_sender(
    store: &crate::store::Store,
    name: &str,
    now_ms: i64,
    audit: crate::store::audit::Audit<'_>,
) -> Result<(), SenderError> {
    if store
        .revoke_remote_write_sender(name, now_ms, audit)
        .await?
    {
        Ok(())
    } else {
        Err(SenderError::Unknown(name.to_string()))
    }
}
