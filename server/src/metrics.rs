//! The server's own metrics (`yunwei_*`), declared in one place and registered in a registry
//! passed down explicitly. Labels come from bounded sets only: result, error kind, route, and
//! host identity for the fleet gauges.

use prometheus::{
    CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub ingest_batches: IntCounterVec,
    pub ingest_samples: IntCounter,
    pub ingest_labels_renamed: IntCounter,
    pub ingest_rejected: IntCounterVec,
    pub remote_write_samples: IntCounterVec,
    pub ingest_commit_seconds: Histogram,
    pub ingest_group_batches: Histogram,
    pub ingest_queue: IntGauge,
    pub spool_gap_batches: IntCounter,
    pub observations_refused: IntCounter,
    pub http_requests: IntCounterVec,
    pub rollup_hours: IntCounter,
    pub rollup_late_merged: IntCounter,
    pub retention_deleted: IntCounterVec,
    pub host_up: GaugeVec,
    pub host_last_batch_age: GaugeVec,
    pub hosts: IntGaugeVec,
    pub hostnames_duplicated: IntGauge,
    pub build_info: Gauge,
    pub notify_attempts: IntCounterVec,
    pub notify_latency: HistogramVec,
    pub rule_group_evaluations: IntCounterVec,
    pub rule_group_evaluation_seconds: CounterVec,
    pub report_mail_attempts: IntCounterVec,
    pub report_mail_given_up: IntCounter,
    pub audit_refusals: IntCounterVec,
    pub api_limited: IntCounterVec,
    pub http_rate_limited: IntCounterVec,
    /// 1 while this replica holds the leader lease (always 0 on a single node).
    pub ha_leader: IntGauge,
    pub ha_epoch: IntGauge,
    /// `single`, `leader` or `follower`: the one series at 1 is this replica's role.
    pub ha_role: IntGaugeVec,
    /// At the leader: how far its live window trails the batches committed by any replica.
    pub ha_window_lag_seconds: Gauge,
    /// At the leader: per batch the tail applies, seconds from its arrival at a replica to its
    /// arrival in the live window.
    pub ha_tail_lag_seconds: Histogram,
    /// At the leader: batches its tail stepped over because this replica's writer had added
    /// them to the window already.
    pub ha_tail_own_batches: IntCounter,
    /// At the leader: reads of series by its tail, `{kind="all"}` (every series, at most every
    /// ten minutes) or `{kind="new"}` (only the series a batch named that it did not know).
    pub ha_tail_series_reads: IntCounterVec,
    /// Sends of notifications another term or process had in flight when it stopped.
    pub notify_possible_repeats: IntCounter,
}

/// The read limits of the API (`yunwei_conf::limits`) whose refusals are counted in
/// `yunwei_api_limited_total{limit}`.
pub const API_LIMITS: &[&str] = &[
    "assessment_period",
    "series_points_per_series",
    "series_response_points",
    "series_raw_range_without_step",
    "compute_time",
    "query_points_per_series",
    "query_result_series",
    "query_response_points",
    "query_time",
];

/// The classes of the per-source rate limits (`http::rate_limit::Class`), counted in
/// `yunwei_http_rate_limited_total{class}`.
pub const RATE_LIMIT_CLASSES: &[&str] = &["login", "anonymous"];

/// Why a rule group was evaluated: its interval came round, or an ingest commit touched a
/// metric it may read.
pub const RULE_TRIGGERS: &[&str] = &["interval", "ingest"];

/// Kinds of anonymous refusal the audit log aggregates (`audit::Refusals`): a request without
/// valid credentials, a login attempt for no usable account, a failed enrollment, a refused
/// use of an acknowledge link.
pub const REFUSAL_KINDS: &[&str] = &["http", "login", "enroll", "ack_link"];

/// Every rejection kind, so each counter series exists from the start (at zero).
pub const REJECT_KINDS: &[&str] = &[
    "unauthenticated",
    "agent_mismatch",
    "content_type",
    "content_encoding",
    "version",
    "body_too_large",
    "body_unreadable",
    "compression",
    "decompressed_too_large",
    "unknown_field",
    "schema",
    "invalid_value",
    "series_limit",
    "overloaded",
    "too_many_requests",
    "unavailable",
    "store_error",
    "enrollment_disabled",
];

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let m = Metrics {
            ingest_batches: IntCounterVec::new(
                Opts::new(
                    "yunwei_ingest_batches_total",
                    "Batches accepted, by result (stored or duplicate).",
                ),
                &["result"],
            )?,
            ingest_samples: IntCounter::new("yunwei_ingest_samples_total", "Samples stored.")?,
            ingest_labels_renamed: IntCounter::new(
                "yunwei_ingest_labels_renamed_total",
                "Sample labels with a reserved name (instance, agent_id, hostname, the host's \
                 inventory labels) stored as exported_<name>.",
            )?,
            ingest_rejected: IntCounterVec::new(
                Opts::new(
                    "yunwei_ingest_rejected_total",
                    "Ingest and enrollment requests rejected, by reason.",
                ),
                &["reason"],
            )?,
            remote_write_samples: IntCounterVec::new(
                Opts::new(
                    "yunwei_remote_write_samples_total",
                    "Samples of committed remote-write requests, by outcome: stored, duplicate \
                     (already stored with the same value), conflict (another value at a stored \
                     point, refused), out_of_order (older than the series' newest stored point, \
                     refused).",
                ),
                &["outcome"],
            )?,
            ingest_commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "yunwei_ingest_commit_duration_seconds",
                    "Time to write and commit one group of batches.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
            ingest_group_batches: Histogram::with_opts(
                HistogramOpts::new(
                    "yunwei_ingest_commit_group_batches",
                    "Batches per committed transaction.",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            )?,
            ingest_queue: IntGauge::new(
                "yunwei_ingest_queue_batches",
                "Batches waiting for the writer.",
            )?,
            spool_gap_batches: IntCounter::new(
                "yunwei_ingest_spool_gap_batches_total",
                "Batches agents reported as dropped from their spool.",
            )?,
            observations_refused: IntCounter::new(
                "yunwei_ingest_observations_refused_total",
                "Observations that contradicted stored status history and were kept as events only.",
            )?,
            http_requests: IntCounterVec::new(
                Opts::new(
                    "yunwei_http_requests_total",
                    "HTTP requests, by route template and status code.",
                ),
                &["route", "code"],
            )?,
            rollup_hours: IntCounter::new(
                "yunwei_store_rollups_computed_total",
                "Hourly rollup windows (re)computed.",
            )?,
            rollup_late_merged: IntCounter::new(
                "yunwei_store_rollup_late_samples_merged_total",
                "Late samples merged into the stored rollups of hours whose raw batches retention had begun to delete.",
            )?,
            retention_deleted: IntCounterVec::new(
                Opts::new(
                    "yunwei_store_retention_deleted_total",
                    "Rows deleted by retention, by kind.",
                ),
                &["kind"],
            )?,
            host_up: GaugeVec::new(
                Opts::new(
                    "yunwei_host_up",
                    "1 when the host's agent reported within its allowed missed batches.",
                ),
                &["agent_id", "hostname"],
            )?,
            host_last_batch_age: GaugeVec::new(
                Opts::new(
                    "yunwei_host_last_batch_age_seconds",
                    "Seconds since the host's last batch arrived.",
                ),
                &["agent_id", "hostname"],
            )?,
            hosts: IntGaugeVec::new(
                Opts::new("yunwei_hosts", "Enrolled hosts by current state."),
                &["state"],
            )?,
            hostnames_duplicated: IntGauge::new(
                "yunwei_hostnames_duplicated",
                "Hostnames reported by more than one agent (each agent is still its own host).",
            )?,
            build_info: Gauge::with_opts(
                Opts::new("yunwei_build_info", "Build information; always 1.")
                    .const_label("version", env!("CARGO_PKG_VERSION")),
            )?,
            notify_attempts: IntCounterVec::new(
                Opts::new(
                    "yunwei_notify_attempts_total",
                    "Notification delivery attempts, by channel and result (ok or error).",
                ),
                &["channel", "result"],
            )?,
            notify_latency: HistogramVec::new(
                HistogramOpts::new(
                    "yunwei_notify_delivery_latency_seconds",
                    "From a notification's creation (group flush) to its accepted delivery.",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0]),
                &["channel"],
            )?,
            rule_group_evaluations: IntCounterVec::new(
                Opts::new(
                    "yunwei_rules_group_evaluations_total",
                    "Rule group evaluations, by trigger (interval or ingest).",
                ),
                &["trigger"],
            )?,
            rule_group_evaluation_seconds: CounterVec::new(
                Opts::new(
                    "yunwei_rules_group_evaluation_seconds_total",
                    "Time spent evaluating rule groups, by trigger (interval or ingest).",
                ),
                &["trigger"],
            )?,
            report_mail_attempts: IntCounterVec::new(
                Opts::new(
                    "yunwei_report_mail_attempts_total",
                    "Attempts to mail a scheduled report, by result (ok or error).",
                ),
                &["result"],
            )?,
            report_mail_given_up: IntCounter::new(
                "yunwei_report_mail_given_up_total",
                "Scheduled report mails given up after retrying for 7 days (the report stays archived).",
            )?,
            audit_refusals: IntCounterVec::new(
                Opts::new(
                    "yunwei_audit_refusals_total",
                    "Anonymous refusals, by kind and by whether they got their own audit row \
                     (row) or were counted in a per-source summary row (summarised).",
                ),
                &["kind", "audit"],
            )?,
            api_limited: IntCounterVec::new(
                Opts::new(
                    "yunwei_api_limited_total",
                    "API requests refused because they exceeded a read or compute limit, by limit.",
                ),
                &["limit"],
            )?,
            http_rate_limited: IntCounterVec::new(
                Opts::new(
                    "yunwei_http_rate_limited_total",
                    "Requests answered 429 by a per-source rate limit (http.rate_limit), by class: \
                     login attempts, or requests without credentials.",
                ),
                &["class"],
            )?,
            ha_leader: IntGauge::new(
                "yunwei_ha_leader",
                "1 while this replica holds the leader lease and runs the singletons.",
            )?,
            ha_epoch: IntGauge::new(
                "yunwei_ha_epoch",
                "The epoch (fencing token) of the last term this replica led.",
            )?,
            ha_role: IntGaugeVec::new(
                Opts::new(
                    "yunwei_ha_role",
                    "This replica's role: the series of the current role is 1.",
                ),
                &["role"],
            )?,
            ha_window_lag_seconds: Gauge::new(
                "yunwei_ha_window_lag_seconds",
                "At the leader: seconds between the newest batch committed by any replica and \
                 its arrival in the live window.",
            )?,
            ha_tail_lag_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "yunwei_ha_tail_lag_seconds",
                    "At the leader: per batch committed by any replica, seconds from its arrival \
                     at that replica to its arrival in the live window.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
            ha_tail_own_batches: IntCounter::new(
                "yunwei_ha_tail_own_batches_total",
                "At the leader: committed batches its tail stepped over, this replica's own \
                 writer having added them to the live window already.",
            )?,
            ha_tail_series_reads: IntCounterVec::new(
                Opts::new(
                    "yunwei_ha_tail_series_reads_total",
                    "At the leader: reads of series by its tail: kind=all (every series, at most \
                     every ten minutes, also picking up changed host facts) or kind=new (only \
                     the series a batch named that the tail did not know).",
                ),
                &["kind"],
            )?,
            notify_possible_repeats: IntCounter::new(
                "yunwei_notify_possible_repeats_total",
                "Notifications sent again because the previous leader or process had them in \
                 flight when it stopped (each may have arrived twice).",
            )?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.notify_possible_repeats.clone()))?;
        r.register(Box::new(m.ha_leader.clone()))?;
        r.register(Box::new(m.ha_epoch.clone()))?;
        r.register(Box::new(m.ha_role.clone()))?;
        r.register(Box::new(m.ha_window_lag_seconds.clone()))?;
        r.register(Box::new(m.ha_tail_lag_seconds.clone()))?;
        r.register(Box::new(m.ha_tail_own_batches.clone()))?;
        r.register(Box::new(m.ha_tail_series_reads.clone()))?;
        r.register(Box::new(m.ingest_batches.clone()))?;
        r.register(Box::new(m.hostnames_duplicated.clone()))?;
        r.register(Box::new(m.ingest_samples.clone()))?;
        r.register(Box::new(m.ingest_labels_renamed.clone()))?;
        r.register(Box::new(m.ingest_rejected.clone()))?;
        r.register(Box::new(m.remote_write_samples.clone()))?;
        r.register(Box::new(m.ingest_commit_seconds.clone()))?;
        r.register(Box::new(m.ingest_group_batches.clone()))?;
        r.register(Box::new(m.ingest_queue.clone()))?;
        r.register(Box::new(m.spool_gap_batches.clone()))?;
        r.register(Box::new(m.observations_refused.clone()))?;
        r.register(Box::new(m.http_requests.clone()))?;
        r.register(Box::new(m.rollup_hours.clone()))?;
        r.register(Box::new(m.rollup_late_merged.clone()))?;
        r.register(Box::new(m.retention_deleted.clone()))?;
        r.register(Box::new(m.host_up.clone()))?;
        r.register(Box::new(m.host_last_batch_age.clone()))?;
        r.register(Box::new(m.hosts.clone()))?;
        r.register(Box::new(m.build_info.clone()))?;
        r.register(Box::new(m.notify_attempts.clone()))?;
        r.register(Box::new(m.notify_latency.clone()))?;
        r.register(Box::new(m.rule_group_evaluations.clone()))?;
        r.register(Box::new(m.rule_group_evaluation_seconds.clone()))?;
        r.register(Box::new(m.report_mail_attempts.clone()))?;
        r.register(Box::new(m.report_mail_given_up.clone()))?;
        r.register(Box::new(m.audit_refusals.clone()))?;
        r.register(Box::new(m.api_limited.clone()))?;
        r.register(Box::new(m.http_rate_limited.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        m.build_info.set(1.0);
        for k in REJECT_KINDS {
            m.ingest_rejected.with_label_values(&[k]);
        }
        for t in RULE_TRIGGERS {
            m.rule_group_evaluations.with_label_values(&[t]);
            m.rule_group_evaluation_seconds.with_label_values(&[t]);
        }
        for r in ["stored", "duplicate"] {
            m.ingest_batches.with_label_values(&[r]);
        }
        for o in ["stored", "duplicate", "conflict", "out_of_order"] {
            m.remote_write_samples.with_label_values(&[o]);
        }
        for r in ["ok", "error"] {
            m.report_mail_attempts.with_label_values(&[r]);
        }
        for k in REFUSAL_KINDS {
            for a in ["row", "summarised"] {
                m.audit_refusals.with_label_values(&[k, a]);
            }
        }
        for l in API_LIMITS {
            m.api_limited.with_label_values(&[l]);
        }
        for c in RATE_LIMIT_CLASSES {
            m.http_rate_limited.with_label_values(&[c]);
        }
        Ok(m)
    }
}
