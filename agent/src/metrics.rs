//! The agent's own metrics (`yunwei_agent_*`), declared in one place. They are kept as atomics
//! shared between the main loop and the `/metrics` endpoint, and are also pushed with every
//! host batch so the server sees each agent's spool and delivery health.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use yunwei_proto::Sample;

use crate::spool::Spool;

/// Counters and gauges of one agent process.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    pub batches_sent: AtomicU64,
    pub batches_failed: AtomicU64,
    pub batches_rejected: AtomicU64,
    /// Batches that could not be spooled (state or spool write failed).
    pub spool_errors: AtomicU64,
    spool_bytes: AtomicU64,
    spool_batches: AtomicU64,
    spool_dropped: AtomicU64,
    spool_corrupt: AtomicU64,
    /// Duration of the last collection, `f64` bits.
    collection_seconds: AtomicU64,
    collections: AtomicU64,
    collection_seconds_sum: AtomicU64,
}

/// `(name, type, help)` of every agent metric.
pub const AGENT_METRICS: &[(&str, &str, &str)] = &[
    (
        "yunwei_agent_batches_sent_total",
        "counter",
        "Batches acknowledged by the server.",
    ),
    (
        "yunwei_agent_batches_failed_total",
        "counter",
        "Attempts to send a batch that failed and will be retried.",
    ),
    (
        "yunwei_agent_batches_rejected_total",
        "counter",
        "Batches the server refused for good (dropped).",
    ),
    (
        "yunwei_agent_spool_errors_total",
        "counter",
        "Batches that could not be written to the spool.",
    ),
    (
        "yunwei_agent_spool_bytes",
        "gauge",
        "Size of the on-disk spool.",
    ),
    (
        "yunwei_agent_spool_batches",
        "gauge",
        "Batches in the spool waiting to be sent.",
    ),
    (
        "yunwei_agent_spool_dropped_batches_total",
        "counter",
        "Batches dropped from the spool (bounds, damage) and reported as gaps.",
    ),
    (
        "yunwei_agent_spool_corrupt_records_total",
        "counter",
        "Damaged spool records (torn tails included) skipped when the spool was opened.",
    ),
    (
        "yunwei_agent_collection_duration_seconds",
        "gauge",
        "Duration of the last host metrics collection.",
    ),
    (
        "yunwei_agent_collections_total",
        "counter",
        "Host metrics collections.",
    ),
    (
        "yunwei_agent_collection_seconds_total",
        "counter",
        "Time spent collecting host metrics.",
    ),
];

impl AgentMetrics {
    /// Copies the spool's figures, so `/metrics` can read them without the spool.
    pub fn update_spool(&self, spool: &Spool) {
        let s = spool.stats();
        self.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        self.spool_batches
            .store(spool.len() as u64, Ordering::Relaxed);
        self.spool_dropped
            .store(s.dropped_batches, Ordering::Relaxed);
        self.spool_corrupt
            .store(s.corrupt_records, Ordering::Relaxed);
    }

    pub fn collection_done(&self, took: Duration) {
        let secs = took.as_secs_f64();
        self.collection_seconds
            .store(secs.to_bits(), Ordering::Relaxed);
        self.collections.fetch_add(1, Ordering::Relaxed);
        let _ = self.collection_seconds_sum.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |bits| Some((f64::from_bits(bits) + secs).to_bits()),
        );
    }

    /// The current values, in the order of [`AGENT_METRICS`].
    pub fn values(&self) -> [f64; 11] {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let f = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        [
            n(&self.batches_sent),
            n(&self.batches_failed),
            n(&self.batches_rejected),
            n(&self.spool_errors),
            n(&self.spool_bytes),
            n(&self.spool_batches),
            n(&self.spool_dropped),
            n(&self.spool_corrupt),
            f(&self.collection_seconds),
            n(&self.collections),
            f(&self.collection_seconds_sum),
        ]
    }

    /// The agent metrics as samples at `ts_ms` (spool figures as of the last
    /// [`AgentMetrics::update_spool`]).
    pub fn samples(&self, ts_ms: i64) -> Vec<Sample> {
        AGENT_METRICS
            .iter()
            .zip(self.values())
            .map(|((name, _, _), value)| Sample {
                name: (*name).to_string(),
                labels: Default::default(),
                value,
                ts_ms,
            })
            .collect()
    }
}

/// `(type, help)` of an agent metric.
pub fn meta(name: &str) -> Option<(&'static str, &'static str)> {
    AGENT_METRICS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, help)| (*kind, *help))
}
