//! The live window: the most recent samples of every series, in memory, in the PromQL engine's
//! storage, so rules evaluate without touching the database. The writer appends each batch after
//! its commit; start-up refills the window from the raw window on disk; maintenance trims it.
//! [`Live`] holds the window with what the server knows about each host between requests.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use yunwei_rules::promql::{Labels, MemStorage, SeriesRef};

use crate::store::{
    AgentRow, Store,
    blob::{self, RawSample},
    ha::{self, CommittedBatch},
};

/// What the server knows about a host between requests.
#[derive(Debug, Clone)]
pub struct HostLive {
    pub hostname: String,
    pub last_seen_ms: i64,
    pub interval_ms: i64,
    /// Inventory labels (department, system, environment, ...).
    pub labels: BTreeMap<String, String>,
    /// Highest batch sequence number stored.
    pub last_seq: i64,
}

impl HostLive {
    /// Up while no more than `missed` batches in a row are missing.
    pub fn is_up(&self, now_ms: i64, missed: u32) -> bool {
        now_ms - self.last_seen_ms <= i64::from(missed) * self.interval_ms
    }
}

/// The in-memory view of the fleet: written by the ingest writer (and the rule engine's recorded
/// series), read by rules, inspections, inventory and the API.
#[derive(Debug)]
pub struct Live {
    /// agent id → what its latest stored batch said.
    pub hosts: RwLock<HashMap<Arc<str>, HostLive>>,
    /// Recent samples, for rule evaluation and live queries.
    pub window: RwLock<LiveWindow>,
}

impl Live {
    /// The hosts as the store last saw them, and a window of `window_ms` filled from the raw
    /// batches kept on disk.
    pub async fn load(store: &Store, window_ms: i64, now_ms: i64) -> anyhow::Result<Live> {
        let hosts = store
            .agents()
            .await?
            .into_iter()
            .filter_map(|a| {
                let last_seen_ms = a.last_seen_ms?;
                Some((
                    Arc::from(a.agent_id.as_str()),
                    HostLive {
                        hostname: a.hostname,
                        last_seen_ms,
                        interval_ms: a.interval_ms,
                        labels: a.labels,
                        last_seq: a.last_seq,
                    },
                ))
            })
            .collect();
        let mut window = LiveWindow::new(window_ms);
        let warmed = warm(store, &mut window, now_ms).await?;
        tracing::debug!(samples = warmed, "live window filled from the raw window");
        Ok(Live {
            hosts: RwLock::new(hosts),
            window: RwLock::new(window),
        })
    }

    /// Refills the hosts and the window from the store, replacing what is in memory: a new
    /// leader does this before its first evaluation, since other replicas stored batches it
    /// never saw.
    pub async fn rebuild(&self, store: &Store, now_ms: i64) -> anyhow::Result<()> {
        let window_ms = self.window.read().expect("window lock").window_ms;
        let fresh = Live::load(store, window_ms, now_ms).await?;
        *self.hosts.write().expect("live lock") = fresh.hosts.into_inner().expect("fresh lock");
        *self.window.write().expect("window lock") = fresh.window.into_inner().expect("fresh lock");
        Ok(())
    }

    /// A copy of every host's state (the lock is not held by the caller).
    pub fn hosts(&self) -> HashMap<Arc<str>, HostLive> {
        self.hosts.read().expect("live lock").clone()
    }
}

/// Recent samples, with the time span they cover.
#[derive(Debug)]
pub struct LiveWindow {
    pub storage: MemStorage,
    pub window_ms: i64,
    /// While the leader's tail runs ([`LiveWindow::set_tailed`]): the batches this process's
    /// ingest writer added to `storage` itself, by agent id, as `(seq, received_ms)`, so the
    /// tail does not read and add them a second time. Kept with the samples under one lock, so
    /// a batch is listed only if its samples are in this very window (a rebuilt window starts
    /// with an empty list).
    own: HashMap<Arc<str>, Vec<(i64, i64)>>,
    /// Whether a tail runs on this window and takes its batches out of `own`.
    tailed: bool,
}

/// How long a batch stays in [`LiveWindow`]'s own list if the tail never takes it (it read the
/// batch before the writer listed it, and added it again then): dropped by [`LiveWindow::trim`].
const OWN_KEEP_MS: i64 = 10 * 60_000;

impl LiveWindow {
    pub fn new(window_ms: i64) -> LiveWindow {
        LiveWindow {
            storage: MemStorage::new(),
            window_ms,
            own: HashMap::new(),
            tailed: false,
        }
    }

    /// Drops samples older than the window, and own batches the tail never took.
    pub fn trim(&mut self, now_ms: i64) {
        self.storage.truncate_before(now_ms - self.window_ms);
        self.own.retain(|_, v| {
            v.retain(|(_, received)| *received >= now_ms - OWN_KEEP_MS);
            !v.is_empty()
        });
    }

    /// Called by the ingest writer after it added batch `seq` of `agent`, received at
    /// `received_ms`, to this window: listed for the tail, if one runs.
    pub fn added_own(&mut self, agent: &Arc<str>, seq: i64, received_ms: i64) {
        if self.tailed {
            self.own
                .entry(agent.clone())
                .or_default()
                .push((seq, received_ms));
        }
    }

    /// Whether this process's writer added batch `seq` of `agent` to this window (taking it
    /// off the list).
    fn take_own(&mut self, agent: &str, seq: i64) -> bool {
        let Some(v) = self.own.get_mut(agent) else {
            return false;
        };
        let Some(i) = v.iter().position(|(s, _)| *s == seq) else {
            return false;
        };
        v.swap_remove(i);
        if v.is_empty() {
            self.own.remove(agent);
        }
        true
    }

    /// Starts or stops listing the writer's batches for a tail.
    pub fn set_tailed(&mut self, tailed: bool) {
        self.tailed = tailed;
        if !tailed {
            self.own.clear();
        }
    }

    /// Whether the leader's tail runs on this window: this replica leads, and its window was
    /// rebuilt and its rule state restored from the store (the tail starts after both).
    pub fn tailed(&self) -> bool {
        self.tailed
    }
}

/// Label names the server attaches to an agent's series itself, whatever the host's inventory:
/// `instance` (presented on every series), and `agent_id` and `hostname` (the labels hosts are
/// selected by, and the fleet series carry). With the host's inventory label names they form
/// the reserved set a sample may not set (see [`rename_reserved`]).
pub const RESERVED_LABELS: &[&str] = &["instance", "agent_id", "hostname"];

/// Whether `name` is reserved for the server on the series of a host with `host_labels`.
pub fn is_reserved(name: &str, host_labels: &BTreeMap<String, String>) -> bool {
    RESERVED_LABELS.contains(&name) || host_labels.contains_key(name)
}

/// Renames every reserved label of a sample's own `labels` to `exported_<name>` (prefixed again
/// while that name is taken too), as Prometheus does with `honor_labels: false`, so a sample can
/// never present another host's identity. Returns how many labels were renamed.
pub fn rename_reserved(
    labels: &mut BTreeMap<String, String>,
    host_labels: &BTreeMap<String, String>,
) -> usize {
    let reserved: Vec<String> = labels
        .keys()
        .filter(|k| is_reserved(k, host_labels))
        .cloned()
        .collect();
    for name in &reserved {
        let value = labels.remove(name).expect("listed above");
        let mut to = format!("exported_{name}");
        while labels.contains_key(&to) || is_reserved(&to, host_labels) {
            to.insert_str(0, "exported_");
        }
        labels.insert(to, value);
    }
    reserved.len()
}

/// The label set a series is presented with, to rules and to the read API alike: its own
/// labels with any reserved name renamed to `exported_<name>` (ingest already stores them so;
/// this covers series stored earlier and inventory labels added since), then the host's
/// `instance` (hostname) and inventory labels, and `__name__`. The host's values are the only
/// ones under the reserved names.
pub fn presented_labels(
    name: &str,
    labels: &BTreeMap<String, String>,
    hostname: &str,
    host_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = labels.clone();
    rename_reserved(&mut l, host_labels);
    if !hostname.is_empty() {
        l.insert("instance".into(), hostname.to_string());
    }
    for (k, v) in host_labels {
        l.entry(k.clone()).or_insert_with(|| v.clone());
    }
    l.insert("__name__".into(), name.to_string());
    l
}

/// Engine labels from a label map.
pub fn to_labels(l: &BTreeMap<String, String>) -> Labels {
    Labels::from_pairs(l.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Every stored series with the labels the read API presents (its agent's hostname and
/// inventory labels added), by series id.
pub async fn stored_series(store: &Store) -> anyhow::Result<Vec<(i64, Labels)>> {
    let agents: BTreeMap<String, AgentRow> = store
        .agents()
        .await?
        .into_iter()
        .map(|a| (a.agent_id.clone(), a))
        .collect();
    Ok(store
        .all_series()
        .await?
        .into_iter()
        .map(|s| {
            let l = match agents.get(&s.agent_id) {
                Some(a) => presented_labels(&s.name, &s.labels, &a.hostname, &a.labels),
                None => presented_labels(&s.name, &s.labels, "", &BTreeMap::new()),
            };
            (s.id, to_labels(&l))
        })
        .collect())
}

/// Fills a window from the raw batches stored since `now - window`.
pub async fn warm(store: &Store, window: &mut LiveWindow, now_ms: i64) -> anyhow::Result<usize> {
    let labels: HashMap<i64, Labels> = stored_series(store).await?.into_iter().collect();
    let from = now_ms - window.window_ms;
    let mut n = 0;
    for data in store.raw_batches_since(from).await? {
        blob::decode(&data, |s| {
            if s.ts_ms >= from
                && let Some(l) = labels.get(&s.series_id)
            {
                window.storage.add_sample(l, s.ts_ms, s.value);
                n += 1;
            }
        });
    }
    Ok(n)
}

/// Batches read from the store per query of the tail.
const TAIL_PAGE: i64 = 1024;

/// Batches the tail adds to the window per taking of its lock.
const LOCKED_BATCHES: usize = 64;

/// What the tail knows of a series: its presented labels, its metric name, and its handle in
/// the window (re-taken when the window renumbers its series or is rebuilt).
struct TailSeries {
    labels: Labels,
    name: Arc<str>,
    at: Option<SeriesRef>,
}

impl TailSeries {
    /// Series `s` as presented with its host's facts (none when the host is unknown), without
    /// a handle yet; its name is shared through `names`.
    fn new(
        names: &mut HashMap<String, Arc<str>>,
        s: crate::store::SeriesRow,
        agent: Option<&AgentRow>,
    ) -> TailSeries {
        let l = match agent {
            Some(a) => presented_labels(&s.name, &s.labels, &a.hostname, &a.labels),
            None => presented_labels(&s.name, &s.labels, "", &BTreeMap::new()),
        };
        let name = names
            .entry(s.name)
            .or_insert_with_key(|n| Arc::from(n.as_str()))
            .clone();
        TailSeries {
            labels: to_labels(&l),
            name,
            at: None,
        }
    }
}

/// Hashes a series id (a database sequence number) with one multiplication, as FxHash does:
/// the tail looks a series up for every sample it reads.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_i64(&mut self, v: i64) {
        self.0 = (self.0.rotate_left(5) ^ v as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<i64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The leader's view of batches committed by every replica: reads them in commit order after
/// the last one it applied and adds their samples to the window and their arrival to the hosts.
/// A batch this process's own writer stored and added already ([`LiveWindow::added_own`]) is
/// only stepped over; so is the samples' data of such a batch never read.
pub struct Tail {
    /// The last commit id applied (or stepped over).
    pub last: i64,
    /// Where the batches are read from, on a connection of the tail's own
    /// ([`crate::store::ha::tail_connection`]), made again after an error.
    database_url: String,
    conn: Option<sqlx::PgConnection>,
    /// series id → what the tail knows of it.
    series: IdMap<TailSeries>,
    /// One name shared by all its series, so names are told apart by pointer.
    names: HashMap<String, Arc<str>>,
    /// When every series was last read ([`Tail::reload_series`]), in ms.
    full_reload_ms: Option<i64>,
}

/// How often at most the tail reads every series again (also picking up changed host facts of
/// known series); in between, a batch naming series it does not know makes it read those only.
const FULL_RELOAD_EVERY_MS: i64 = 10 * 60 * 1000;

/// What one [`Tail::poll`] did.
#[derive(Debug, Default)]
pub struct Polled {
    /// The metric names the applied batches carried (for rules evaluated on ingest).
    pub names: Vec<Arc<str>>,
    /// The arrival time (at the replica that stored it) of each batch applied, in commit order.
    pub arrived: Vec<i64>,
    /// Batches this process's writer had added already, stepped over.
    pub own: usize,
    /// Reads of every series (at most every ten minutes).
    pub full_series_reads: usize,
    /// Reads of only the series the batches named that the tail did not know.
    pub new_series_reads: usize,
}

impl Tail {
    /// Starts after commit id `last`, reading from the PostgreSQL database at `database_url`.
    pub fn after(last: i64, database_url: &str) -> Tail {
        Tail {
            last,
            database_url: database_url.to_string(),
            conn: None,
            series: IdMap::default(),
            names: HashMap::new(),
            full_reload_ms: None,
        }
    }

    async fn reload_series(&mut self, store: &Store) -> anyhow::Result<()> {
        let agents: BTreeMap<String, AgentRow> = store
            .agents()
            .await?
            .into_iter()
            .map(|a| (a.agent_id.clone(), a))
            .collect();
        self.names.clear();
        let names = &mut self.names;
        let mut old = std::mem::take(&mut self.series);
        self.series = store
            .all_series()
            .await?
            .into_iter()
            .map(|s| {
                let id = s.id;
                let agent = agents.get(&s.agent_id);
                let mut series = TailSeries::new(names, s, agent);
                // A series known before keeps its handle while its labels are the same.
                series.at = old
                    .remove(&id)
                    .filter(|o| o.labels == series.labels)
                    .and_then(|o| o.at);
                (id, series)
            })
            .collect();
        Ok(())
    }

    /// Reads the series `ids` only (made since by any replica), with their hosts' current
    /// facts: a new series costs one query for it, not a read of every series.
    async fn load_series(&mut self, store: &Store, ids: &[i64]) -> anyhow::Result<()> {
        let conn = self.conn.as_mut().expect("connected by poll_on");
        let rows = ha::series_by_ids(conn, ids).await?;
        let mut agents: HashMap<String, Option<AgentRow>> = HashMap::new();
        for s in rows {
            if !agents.contains_key(&s.agent_id) {
                let a = store.agent(&s.agent_id).await?;
                agents.insert(s.agent_id.clone(), a);
            }
            let id = s.id;
            let agent = agents.get(&s.agent_id).and_then(Option::as_ref);
            let series = TailSeries::new(&mut self.names, s, agent);
            self.series.insert(id, series);
        }
        Ok(())
    }

    /// Applies every batch committed since the last call; `now_ms` paces the full reads of
    /// the series (at most every ten minutes).
    pub async fn poll(
        &mut self,
        live: &Live,
        store: &Store,
        now_ms: i64,
    ) -> anyhow::Result<Polled> {
        let r = self.poll_on(live, store, now_ms).await;
        if r.is_err() {
            // The connection may be what failed.
            self.conn = None;
        }
        r
    }

    async fn poll_on(&mut self, live: &Live, store: &Store, now_ms: i64) -> anyhow::Result<Polled> {
        let mut out = Polled::default();
        if self.conn.is_none() {
            self.conn = Some(ha::tail_connection(&self.database_url).await?);
        }
        loop {
            let conn = self.conn.as_mut().expect("connected above");
            let page = ha::batches_committed_after(conn, self.last, TAIL_PAGE).await?;
            let Some(end) = page.last().map(|b| b.commit_id) else {
                break;
            };
            // Which of them this process's writer added itself: only the others' samples are
            // read (in commit order, as the page lists them).
            let foreign: Vec<&CommittedBatch> = {
                let mut window = live.window.write().expect("window lock");
                page.iter()
                    .filter(|b| !window.take_own(&b.agent_id, b.seq))
                    .collect()
            };
            out.own += page.len() - foreign.len();
            let ids: Vec<i64> = foreign.iter().map(|b| b.commit_id).collect();
            let data = ha::batch_data(conn, &ids).await?;
            // Decoded outside the window's lock; series the tail does not know yet (made by
            // another replica since) are read: those only, or every series when the last full
            // read is older than FULL_RELOAD_EVERY_MS (the first time, and to pick up changed
            // host facts of known series).
            let mut decoded: Vec<Vec<RawSample>> = Vec::with_capacity(foreign.len());
            let mut unknown: Vec<i64> = Vec::new();
            for b in &foreign {
                let mut samples = Vec::new();
                if let Some(d) = data.get(&b.commit_id) {
                    blob::decode(d, |s| {
                        if !self.series.contains_key(&s.series_id) {
                            unknown.push(s.series_id);
                        }
                        samples.push(s);
                    });
                }
                decoded.push(samples);
            }
            if !unknown.is_empty() {
                let full_due = self
                    .full_reload_ms
                    .is_none_or(|t| now_ms - t >= FULL_RELOAD_EVERY_MS);
                if full_due {
                    self.reload_series(store).await?;
                    self.full_reload_ms = Some(now_ms);
                    out.full_series_reads += 1;
                } else {
                    unknown.sort_unstable();
                    unknown.dedup();
                    self.load_series(store, &unknown).await?;
                    out.new_series_reads += 1;
                }
            }
            // The lock is taken per few batches, so rules and the writer wait little.
            for chunk in decoded.chunks(LOCKED_BATCHES) {
                let mut window = live.window.write().expect("window lock");
                for samples in chunk {
                    for s in samples {
                        let Some(series) = self.series.get_mut(&s.series_id) else {
                            continue;
                        };
                        window.storage.add_sample_cached(
                            &mut series.at,
                            &series.labels,
                            s.ts_ms,
                            s.value,
                        );
                        if out
                            .names
                            .last()
                            .is_none_or(|n| !Arc::ptr_eq(n, &series.name))
                        {
                            out.names.push(series.name.clone());
                        }
                    }
                }
            }
            let mut unknown_hosts = Vec::new();
            {
                let mut hosts = live.hosts.write().expect("live lock");
                for b in &foreign {
                    match hosts.get_mut(b.agent_id.as_str()) {
                        Some(h) => {
                            h.last_seen_ms = h.last_seen_ms.max(b.received_ms);
                            h.last_seq = h.last_seq.max(b.seq);
                        }
                        None => unknown_hosts.push(*b),
                    }
                }
            }
            for b in unknown_hosts {
                if let Some(a) = store.agent(&b.agent_id).await? {
                    let mut hosts = live.hosts.write().expect("live lock");
                    let h = hosts
                        .entry(Arc::from(a.agent_id.as_str()))
                        .or_insert_with(|| HostLive {
                            hostname: a.hostname,
                            last_seen_ms: b.received_ms,
                            interval_ms: a.interval_ms,
                            labels: a.labels,
                            last_seq: b.seq,
                        });
                    h.last_seen_ms = h.last_seen_ms.max(b.received_ms);
                    h.last_seq = h.last_seq.max(b.seq);
                }
            }
            out.arrived.extend(foreign.iter().map(|b| b.received_ms));
            self.last = end;
            if (page.len() as i64) < TAIL_PAGE {
                // The end for now: a batch committed since wakes the next poll.
                break;
            }
        }
        // Each name once.
        out.names
            .sort_unstable_by_key(|n| Arc::as_ptr(n).cast::<u8>());
        out.names.dedup_by(|a, b| Arc::ptr_eq(a, b));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rename_reserved_moves_identity_and_inventory_labels_aside() {
        let host = map(&[("system", "政务服务网"), ("environment", "prod")]);
        let mut l = map(&[
            ("instance", "db-01"),
            ("agent_id", "a1"),
            ("hostname", "db-01"),
            ("system", "other"),
            ("exported_system", "taken"),
            ("device", "sda"),
            ("probe", "home"),
        ]);
        assert_eq!(rename_reserved(&mut l, &host), 4);
        assert_eq!(
            l,
            map(&[
                ("exported_instance", "db-01"),
                ("exported_agent_id", "a1"),
                ("exported_hostname", "db-01"),
                ("exported_exported_system", "other"),
                ("exported_system", "taken"),
                ("device", "sda"),
                ("probe", "home"),
            ])
        );
        // Idempotent: stored labels are renamed again when presented, to no effect.
        assert_eq!(rename_reserved(&mut l, &host), 0);
    }

    #[test]
    fn presented_labels_carry_only_the_hosts_identity() {
        let host = map(&[("system", "政务服务网")]);
        let own = map(&[("instance", "db-01"), ("system", "x"), ("cpu", "0")]);
        let l = presented_labels("node_load1", &own, "web-01", &host);
        assert_eq!(
            l,
            map(&[
                ("__name__", "node_load1"),
                ("cpu", "0"),
                ("exported_instance", "db-01"),
                ("exported_system", "x"),
                ("instance", "web-01"),
                ("system", "政务服务网"),
            ])
        );
    }
}
