//! The live window: the most recent samples of every series, in memory, in the PromQL engine's
//! storage, so rules evaluate without touching the database. The writer appends each batch after
//! its commit; start-up refills the window from the raw window on disk; maintenance trims it.

use std::collections::BTreeMap;

use yunwei_rules::promql::{Labels, MemStorage};

use crate::store::{AgentRow, Store, blob};

/// Recent samples, with the time span they cover.
#[derive(Debug)]
pub struct LiveWindow {
    pub storage: MemStorage,
    pub window_ms: i64,
}

impl LiveWindow {
    pub fn new(window_ms: i64) -> LiveWindow {
        LiveWindow {
            storage: MemStorage::new(),
            window_ms,
        }
    }

    /// Drops samples older than the window.
    pub fn trim(&mut self, now_ms: i64) {
        self.storage.truncate_before(now_ms - self.window_ms);
    }
}

/// The label set a series is presented with, to rules and to the read API alike: its own
/// labels, then the host's `instance` (hostname) and inventory labels where the series does not
/// set them, and `__name__`.
pub fn presented_labels(
    name: &str,
    labels: &BTreeMap<String, String>,
    hostname: &str,
    host_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = labels.clone();
    if !hostname.is_empty() {
        l.entry("instance".into())
            .or_insert_with(|| hostname.to_string());
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

/// Fills a window from the raw batches stored since `now - window`.
pub async fn warm(store: &Store, window: &mut LiveWindow, now_ms: i64) -> anyhow::Result<usize> {
    let agents: BTreeMap<String, AgentRow> = store
        .agents()
        .await?
        .into_iter()
        .map(|a| (a.agent_id.clone(), a))
        .collect();
    let labels: std::collections::HashMap<i64, Labels> = store
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
        .collect();
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
