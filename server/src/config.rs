//! Server configuration: a YAML file read into yunwei-conf's position-keeping tree and
//! deserialized strictly through its serde bridge, then validated into [`ServerConfig`]. Every
//! problem (syntax, type, unknown key, bad value) is a [`Diagnostic`] at the node it is about,
//! `file:line:col: message`. Command-line flags override the file.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

pub use crate::notify::config::Cidr;
use yunwei_conf::Diagnostic;
use yunwei_conf::yaml::{self, Lookup, Node};
use yunwei_conf::yaml_de::from_node;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; defaults to `<data_dir>/yunwei.db`.
    pub database_url: String,
    /// Secret a new agent presents to enroll; enrollment is disabled when `None`.
    pub enrollment_secret: Option<String>,
    pub ingest: IngestConfig,
    pub retention: RetentionConfig,
    pub limits: yunwei_proto::Limits,
    pub rules: RulesConfig,
    pub contracts: ContractsConfig,
    /// Notifications (`notify:`); empty when not configured.
    pub notify: crate::notify::config::NotifyConfig,
    pub auth: AuthConfig,
    /// The HTTP listener (`http:`).
    pub http: HttpConfig,
    /// Several replicas on one PostgreSQL (`ha:`); unused on SQLite.
    pub ha: HaConfig,
}

/// The leader election among replicas on one PostgreSQL (see `leader.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaConfig {
    /// How long a leader's lease lasts without renewal: a dead leader is replaced after at most
    /// this plus `renew_every_secs`.
    pub lease_secs: u64,
    /// How often the leader renews its lease and followers try to take an expired one.
    pub renew_every_secs: u64,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            lease_secs: 10,
            renew_every_secs: 2,
        }
    }
}

/// The HTTP listener: which peers are reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Address ranges of the reverse proxies in front of the server. Only a request whose TCP
    /// peer is in one of them has its `X-Forwarded-For` read: the client is the rightmost
    /// address there that is not itself a trusted proxy. Empty (the default): the TCP peer is
    /// the client, whatever the header says.
    pub trusted_proxies: Vec<Cidr>,
    /// A connection that has not sent a request's whole header this long after it began
    /// (or after the previous response, on a kept-alive connection) is closed.
    pub header_read_timeout_secs: u64,
    /// A request whose body has not arrived this long after its header is answered 408
    /// `request_timeout` and its connection closed.
    pub body_read_timeout_secs: u64,
    /// Per-source request rate limits (`http/rate_limit.rs`).
    pub rate_limit: RateLimitConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 60,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// Token buckets per client address (`http.rate_limit`); a rate of 0 turns a class off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Login attempts a client address may make per minute, sustained.
    pub login_per_minute: u32,
    /// Login attempts a client address may make at once before the rate applies.
    pub login_burst: u32,
    /// Requests without credentials (no token, no session) per second per client address.
    pub anonymous_per_sec: u32,
    /// Such requests at once before the rate applies.
    pub anonymous_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            login_per_minute: 30,
            login_burst: 10,
            anonymous_per_sec: 20,
            anonymous_burst: 200,
        }
    }
}

/// O&M contracts the server assesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractsConfig {
    /// Contract files (YAML), resolved against the config file's folder.
    pub files: Vec<PathBuf>,
    /// Whether the server runs the contracts' scheduled inspections (巡检) itself.
    pub run_inspections: bool,
    /// Whether the server makes the contracts' scheduled reports when a period closes and
    /// mails them to each contract's `report:` recipients (one server of several replicas is
    /// enough; the archive and the delivery table keep them from being made or sent twice).
    pub scheduled_reports: bool,
    /// Whether a host or probe seen for the first time is assigned to the systems whose label
    /// selectors match its labels then (once, by `system`, audited). Either way later label
    /// changes never change membership; without it matching subjects are only listed as
    /// pending until an admin or reviewer assigns them.
    pub auto_assign_from_labels: bool,
    /// How often the membership pass looks for hosts and probes not seen before (besides
    /// every status, assessment and report, which run it first).
    pub membership_interval_secs: u64,
    /// The longest an API request may spend on the CPU-heavy part of an assessment or a
    /// report (the engine, building, signing and rendering, on blocking threads; waiting for
    /// one of their `MAX_CONCURRENT_COMPUTE` slots included) before it is answered 503
    /// `unavailable`. The scheduled reports and the command line have no limit.
    pub compute_timeout_ms: u64,
    /// Whether the server probes the contracts' `server_probes` itself (one replica is enough:
    /// each replica would store the same evidence again).
    pub run_server_probes: bool,
    /// The local address the server's probes connect from (none: the system's choice), e.g.
    /// the address the office's firewall knows as the assessor's.
    pub server_probe_source: Option<std::net::IpAddr>,
}

impl Default for ContractsConfig {
    fn default() -> Self {
        ContractsConfig {
            files: Vec::new(),
            run_inspections: true,
            scheduled_reports: true,
            auto_assign_from_labels: true,
            membership_interval_secs: 15,
            compute_timeout_ms: 120_000,
            run_server_probes: true,
            server_probe_source: None,
        }
    }
}

impl ContractsConfig {
    /// [`ContractsConfig::compute_timeout_ms`] as a duration.
    pub fn compute_limit(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.compute_timeout_ms)
    }
}

/// Console login security (等保 2.0: lockout, idle timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Failed logins in a row that lock an account.
    pub lockout_failures: u32,
    /// How long a locked account stays locked.
    pub lockout_secs: u64,
    /// A session unused for this long ends.
    pub session_idle_secs: u64,
    /// A session ends this long after login, used or not.
    pub session_lifetime_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            lockout_failures: 5,
            lockout_secs: 900,
            session_idle_secs: 900,
            session_lifetime_secs: 12 * 3600,
        }
    }
}

/// Alert and recording rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesConfig {
    /// Prometheus rule files, resolved against the config file's folder.
    pub files: Vec<PathBuf>,
    /// Interval for groups that do not set their own.
    pub evaluation_interval_secs: u64,
    /// How much recent data is kept in memory for evaluation; range selectors longer than this
    /// (minus the 5 m lookback) see only part of their range.
    pub live_window_secs: u32,
    /// Evaluate, right after an ingest commit, the groups whose selectors may match the metric
    /// names the committed batches carry, instead of waiting for their next interval.
    pub eval_on_ingest: bool,
    /// Least time between an ingest-triggered evaluation of a group and its previous
    /// evaluation: a busy ingest stream is coalesced into at most one evaluation per group per
    /// this many milliseconds.
    pub eval_on_ingest_min_spacing_ms: u64,
    /// Ingest-triggered evaluations together use at most this share (per cent of one core,
    /// measured as evaluation time over wall time) on top of the scheduled evaluations; past it,
    /// triggered groups wait for the budget to refill or for their next interval.
    pub eval_on_ingest_cpu_percent: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: Vec::new(),
            evaluation_interval_secs: 15,
            live_window_secs: 4_200,
            eval_on_ingest: true,
            eval_on_ingest_min_spacing_ms: 200,
            eval_on_ingest_cpu_percent: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// Largest accepted request body (compressed), bytes.
    pub max_body_bytes: usize,
    /// Largest accepted body after decompression, bytes.
    pub max_decompressed_bytes: usize,
    /// Distinct series one agent may create.
    pub max_series_per_agent: usize,
    /// Batches waiting for the writer before the server answers 503.
    pub queue_batches: usize,
    /// Batches one agent may have waiting before the server answers 429.
    pub max_inflight_per_agent: usize,
    /// A host (or probe) is unknown after this many missed batches.
    pub unknown_after_missed_batches: u32,
    /// The longest an observation vouches for, whatever push interval the agent declares: an
    /// agent's `interval_ms` can shorten how long its heartbeat counts, never stretch it.
    pub max_observation_validity_ms: i64,
    /// The longest a probe observation vouches for, whatever probe interval the agent declares
    /// (`probe_intervals_ms`): a probe's result is valid for its own interval plus the batch's
    /// validity (the batch that carries the next result), at most this.
    pub max_probe_validity_ms: i64,
    /// `FULL` makes every acknowledged batch survive power loss; `NORMAL` survives a process
    /// crash only. SQLite only.
    pub sqlite_synchronous_full: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    pub raw_hours: u32,
    pub rollup_days: u32,
    pub interval_days: u32,
    pub event_days: u32,
    pub run_every_secs: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 1 << 20,
            max_decompressed_bytes: 8 << 20,
            max_series_per_agent: 20_000,
            queue_batches: 2_048,
            max_inflight_per_agent: 8,
            unknown_after_missed_batches: 3,
            max_observation_validity_ms: 60_000,
            max_probe_validity_ms: 300_000,
            sqlite_synchronous_full: true,
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            raw_hours: 48,
            rollup_days: 400,
            interval_days: 400,
            event_days: 400,
            run_every_secs: 60,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    enrollment_secret: Option<String>,
    #[serde(default)]
    ingest: RawIngest,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    contracts: RawContracts,
    #[serde(default)]
    notify: crate::notify::config::RawNotify,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    ha: RawHa,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHa {
    lease_secs: Option<u64>,
    renew_every_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    trusted_proxies: Vec<String>,
    header_read_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
    #[serde(default)]
    rate_limit: RateLimitConfig,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawContracts {
    #[serde(default)]
    files: Vec<PathBuf>,
    run_inspections: Option<bool>,
    scheduled_reports: Option<bool>,
    auto_assign_from_labels: Option<bool>,
    membership_interval_secs: Option<u64>,
    compute_timeout_ms: Option<u64>,
    run_server_probes: Option<bool>,
    server_probe_source: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    lockout_failures: Option<u32>,
    lockout_secs: Option<u64>,
    session_idle_secs: Option<u64>,
    session_lifetime_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    files: Vec<PathBuf>,
    evaluation_interval_secs: Option<u64>,
    live_window_secs: Option<u32>,
    eval_on_ingest: Option<bool>,
    eval_on_ingest_min_spacing_ms: Option<u64>,
    eval_on_ingest_cpu_percent: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    max_body_bytes: Option<usize>,
    max_decompressed_bytes: Option<usize>,
    max_series_per_agent: Option<usize>,
    queue_batches: Option<usize>,
    max_inflight_per_agent: Option<usize>,
    unknown_after_missed_batches: Option<u32>,
    max_observation_validity_secs: Option<u32>,
    max_probe_validity_secs: Option<u32>,
    sqlite_synchronous: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    raw_hours: Option<u32>,
    rollup_days: Option<u32>,
    interval_days: Option<u32>,
    event_days: Option<u32>,
    run_every_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_samples_per_batch: Option<usize>,
    max_labels: Option<usize>,
    max_label_value_len: Option<usize>,
    max_future_secs: Option<i64>,
    max_backfill_hours: Option<i64>,
}

/// Values given on the command line; each overrides the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

/// Every problem found in a config file, one per line, in file order.
#[derive(Debug)]
pub struct ConfigError(pub Vec<Diagnostic>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ServerConfig {
    /// The configuration with no file: defaults plus overrides.
    pub fn from_overrides(o: &Overrides) -> Result<ServerConfig, ConfigError> {
        validate(RawConfig::default(), None, "<defaults>", Path::new("."), o)
    }

    /// Parses and validates `text`, read from `origin` (used in messages).
    pub fn parse(text: &str, origin: &str, o: &Overrides) -> Result<ServerConfig, ConfigError> {
        let base = Path::new(origin).parent().unwrap_or(Path::new("."));
        let fail = |pos, message| {
            ConfigError(vec![Diagnostic {
                origin: origin.to_string(),
                pos,
                message,
            }])
        };
        let root = yaml::parse(text).map_err(|e| fail(Some(e.pos), e.message))?;
        // An empty file (or one of comments only) is all defaults.
        let root = root.filter(|r| !r.is_null());
        let raw: RawConfig = match &root {
            None => RawConfig::default(),
            Some(r) => from_node(r).map_err(|e| fail(e.pos, e.message_with_path()))?,
        };
        validate(raw, root.as_ref(), origin, base, o)
    }

    pub fn load(path: &Path, o: &Overrides) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(vec![Diagnostic {
                origin: path.display().to_string(),
                pos: None,
                message: e.to_string(),
            }])
        })?;
        Self::parse(&text, &path.display().to_string(), o)
    }

    /// True when the store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
    }
}

/// The node at `path` below `doc`, or the deepest one written on the way there (a section
/// whose key is missing), for problems with values that may come from the defaults.
fn nearest<'a>(doc: Option<&'a Node>, path: &str) -> Option<&'a Node> {
    let mut at = doc;
    for key in path.split('.') {
        match at.get(key) {
            Some(n) => at = Some(n),
            None => break,
        }
    }
    at.filter(|n| doc.is_none_or(|d| !std::ptr::eq(*n, d)))
}

/// Checks the values of `raw`, read from the document `doc` (`None`: no file), whose nodes
/// give the positions of the problems.
fn validate(
    mut raw: RawConfig,
    doc: Option<&Node>,
    origin: &str,
    base: &Path,
    o: &Overrides,
) -> Result<ServerConfig, ConfigError> {
    let mut errs = Vec::new();
    let notify = std::mem::take(&mut raw.notify)
        .check(doc.get("notify"), origin, base)
        .unwrap_or_else(|e| {
            errs.extend(e);
            Default::default()
        });
    // A problem with the value of `field` (a dotted path), at its node, or at the section
    // when the value is a default.
    let mut err = |field: &str, msg: String| {
        errs.push(Diagnostic {
            origin: origin.to_string(),
            pos: nearest(doc, field).map(|n| n.pos),
            message: format!("{field}: {msg}"),
        })
    };

    let listen = match (&o.listen, &raw.listen) {
        (Some(a), _) => *a,
        (None, Some(s)) => s.parse().unwrap_or_else(|e| {
            err("listen", format!("{s:?} is not an address:port ({e})"));
            DEFAULT_LISTEN.parse().unwrap()
        }),
        (None, None) => DEFAULT_LISTEN.parse().unwrap(),
    };
    let data_dir = o
        .data_dir
        .clone()
        .or_else(|| {
            raw.data_dir
                .map(|d| if d.is_relative() { base.join(d) } else { d })
        })
        .unwrap_or_else(|| PathBuf::from("data"));
    let database_url = o
        .database_url
        .clone()
        .or(raw.database_url)
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("yunwei.db").display()));
    if !(database_url.starts_with("sqlite:")
        || database_url.starts_with("postgres://")
        || database_url.starts_with("postgresql://"))
    {
        let field = if o.database_url.is_some() {
            "--database-url"
        } else {
            "database_url"
        };
        err(
            field,
            "must start with sqlite:, postgres:// or postgresql://".into(),
        );
    }
    if let Some(s) = &raw.enrollment_secret
        && s.len() < 16
    {
        err("enrollment_secret", "must be at least 16 characters".into());
    }

    let d = IngestConfig::default();
    let i = raw.ingest;
    let synchronous_full = match i.sqlite_synchronous.as_deref() {
        None | Some("full") | Some("FULL") => true,
        Some("normal") | Some("NORMAL") => false,
        Some(other) => {
            err(
                "ingest.sqlite_synchronous",
                format!("{other:?} is not full or normal"),
            );
            true
        }
    };
    let ingest = IngestConfig {
        max_body_bytes: i.max_body_bytes.unwrap_or(d.max_body_bytes),
        max_decompressed_bytes: i.max_decompressed_bytes.unwrap_or(d.max_decompressed_bytes),
        max_series_per_agent: i.max_series_per_agent.unwrap_or(d.max_series_per_agent),
        queue_batches: i.queue_batches.unwrap_or(d.queue_batches),
        max_inflight_per_agent: i.max_inflight_per_agent.unwrap_or(d.max_inflight_per_agent),
        unknown_after_missed_batches: i
            .unknown_after_missed_batches
            .unwrap_or(d.unknown_after_missed_batches),
        max_observation_validity_ms: i
            .max_observation_validity_secs
            .map_or(d.max_observation_validity_ms, |s| i64::from(s) * 1000),
        max_probe_validity_ms: i
            .max_probe_validity_secs
            .map_or(d.max_probe_validity_ms, |s| i64::from(s) * 1000),
        sqlite_synchronous_full: synchronous_full,
    };
    for (name, v) in [
        ("ingest.max_body_bytes", ingest.max_body_bytes),
        (
            "ingest.max_decompressed_bytes",
            ingest.max_decompressed_bytes,
        ),
        ("ingest.max_series_per_agent", ingest.max_series_per_agent),
        ("ingest.queue_batches", ingest.queue_batches),
        (
            "ingest.max_inflight_per_agent",
            ingest.max_inflight_per_agent,
        ),
        (
            "ingest.unknown_after_missed_batches",
            ingest.unknown_after_missed_batches as usize,
        ),
        (
            "ingest.max_observation_validity_secs",
            ingest.max_observation_validity_ms as usize,
        ),
        (
            "ingest.max_probe_validity_secs",
            ingest.max_probe_validity_ms as usize,
        ),
    ] {
        if v == 0 {
            err(name, "must be greater than 0".into());
        }
    }

    let d = RetentionConfig::default();
    let r = raw.retention;
    let retention = RetentionConfig {
        raw_hours: r.raw_hours.unwrap_or(d.raw_hours),
        rollup_days: r.rollup_days.unwrap_or(d.rollup_days),
        interval_days: r.interval_days.unwrap_or(d.interval_days),
        event_days: r.event_days.unwrap_or(d.event_days),
        run_every_secs: r.run_every_secs.unwrap_or(d.run_every_secs),
    };
    if retention.raw_hours < 2 {
        err("retention.raw_hours", "must be at least 2".into());
    }
    for (name, v) in [
        ("retention.rollup_days", retention.rollup_days),
        ("retention.interval_days", retention.interval_days),
    ] {
        if v < 400 {
            err(
                name,
                "must be at least 400: reports need a year of evidence".into(),
            );
        }
    }
    if retention.event_days < 180 {
        err("retention.event_days", "must be at least 180".into());
    }

    let dl = yunwei_proto::Limits::default();
    let l = raw.limits;
    let limits = yunwei_proto::Limits {
        max_samples: l.max_samples_per_batch.unwrap_or(dl.max_samples),
        max_labels: l.max_labels.unwrap_or(dl.max_labels),
        max_label_value_len: l.max_label_value_len.unwrap_or(dl.max_label_value_len),
        max_future_ms: l.max_future_secs.map_or(dl.max_future_ms, |s| s * 1000),
        max_age_ms: l
            .max_backfill_hours
            .map_or(dl.max_age_ms, |h| h * 3_600_000),
        ..dl
    };
    if limits.max_age_ms <= 0 {
        err("limits.max_backfill_hours", "must be positive".into());
    }
    if limits.max_future_ms < 0 {
        err("limits.max_future_secs", "must not be negative".into());
    }

    let dr = RulesConfig::default();
    let rules = RulesConfig {
        files: raw
            .rules
            .files
            .into_iter()
            .map(|f| if f.is_relative() { base.join(f) } else { f })
            .collect(),
        evaluation_interval_secs: raw
            .rules
            .evaluation_interval_secs
            .unwrap_or(dr.evaluation_interval_secs),
        live_window_secs: raw.rules.live_window_secs.unwrap_or(dr.live_window_secs),
        eval_on_ingest: raw.rules.eval_on_ingest.unwrap_or(dr.eval_on_ingest),
        eval_on_ingest_min_spacing_ms: raw
            .rules
            .eval_on_ingest_min_spacing_ms
            .unwrap_or(dr.eval_on_ingest_min_spacing_ms),
        eval_on_ingest_cpu_percent: raw
            .rules
            .eval_on_ingest_cpu_percent
            .unwrap_or(dr.eval_on_ingest_cpu_percent),
    };
    if !(1..=3600).contains(&rules.evaluation_interval_secs) {
        err(
            "rules.evaluation_interval_secs",
            "must be between 1 and 3600".into(),
        );
    }
    if !(600..=86_400).contains(&rules.live_window_secs) {
        err(
            "rules.live_window_secs",
            "must be between 600 and 86400".into(),
        );
    }
    if rules.eval_on_ingest_min_spacing_ms > 60_000 {
        err(
            "rules.eval_on_ingest_min_spacing_ms",
            "must be between 0 and 60000".into(),
        );
    }
    if !(1..=100).contains(&rules.eval_on_ingest_cpu_percent) {
        err(
            "rules.eval_on_ingest_cpu_percent",
            "must be between 1 and 100".into(),
        );
    }

    let contracts = ContractsConfig {
        files: raw
            .contracts
            .files
            .into_iter()
            .map(|f| if f.is_relative() { base.join(f) } else { f })
            .collect(),
        run_inspections: raw
            .contracts
            .run_inspections
            .unwrap_or(ContractsConfig::default().run_inspections),
        scheduled_reports: raw
            .contracts
            .scheduled_reports
            .unwrap_or(ContractsConfig::default().scheduled_reports),
        auto_assign_from_labels: raw
            .contracts
            .auto_assign_from_labels
            .unwrap_or(ContractsConfig::default().auto_assign_from_labels),
        membership_interval_secs: raw
            .contracts
            .membership_interval_secs
            .unwrap_or(ContractsConfig::default().membership_interval_secs),
        compute_timeout_ms: raw
            .contracts
            .compute_timeout_ms
            .unwrap_or(ContractsConfig::default().compute_timeout_ms),
        run_server_probes: raw
            .contracts
            .run_server_probes
            .unwrap_or(ContractsConfig::default().run_server_probes),
        server_probe_source: match &raw.contracts.server_probe_source {
            None => None,
            Some(s) => match s.parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    err(
                        "contracts.server_probe_source",
                        format!("{s:?} is not an IP address"),
                    );
                    None
                }
            },
        },
    };
    if !(1..=3_600_000).contains(&contracts.compute_timeout_ms) {
        err(
            "contracts.compute_timeout_ms",
            "must be between 1 and 3600000".into(),
        );
    }
    if !(1..=86_400).contains(&contracts.membership_interval_secs) {
        err(
            "contracts.membership_interval_secs",
            "must be between 1 and 86400".into(),
        );
    }
    let da = AuthConfig::default();
    let auth = AuthConfig {
        lockout_failures: raw.auth.lockout_failures.unwrap_or(da.lockout_failures),
        lockout_secs: raw.auth.lockout_secs.unwrap_or(da.lockout_secs),
        session_idle_secs: raw.auth.session_idle_secs.unwrap_or(da.session_idle_secs),
        session_lifetime_secs: raw
            .auth
            .session_lifetime_secs
            .unwrap_or(da.session_lifetime_secs),
    };
    if !(1..=10).contains(&auth.lockout_failures) {
        err("auth.lockout_failures", "must be between 1 and 10".into());
    }
    if auth.lockout_secs == 0 {
        err("auth.lockout_secs", "must be greater than 0".into());
    }
    if !(1..=86_400).contains(&auth.session_idle_secs) {
        err(
            "auth.session_idle_secs",
            "must be between 1 and 86400".into(),
        );
    }
    if auth.session_lifetime_secs < auth.session_idle_secs {
        err(
            "auth.session_lifetime_secs",
            "must not be shorter than auth.session_idle_secs".into(),
        );
    }

    let mut trusted_proxies = Vec::new();
    for (i, p) in raw.http.trusted_proxies.iter().enumerate() {
        match Cidr::parse(p) {
            Ok(n) => trusted_proxies.push(n),
            Err(m) => errs.push(Diagnostic {
                origin: origin.to_string(),
                pos: doc
                    .get("http")
                    .get("trusted_proxies")
                    .and_then(|l| l.item(i))
                    .or_else(|| nearest(doc, "http.trusted_proxies"))
                    .map(|n| n.pos),
                message: format!("http.trusted_proxies[{i}]: {m}"),
            }),
        }
    }
    let dh = HttpConfig::default();
    let http = HttpConfig {
        trusted_proxies,
        header_read_timeout_secs: raw
            .http
            .header_read_timeout_secs
            .unwrap_or(dh.header_read_timeout_secs),
        body_read_timeout_secs: raw
            .http
            .body_read_timeout_secs
            .unwrap_or(dh.body_read_timeout_secs),
        rate_limit: raw.http.rate_limit,
    };
    for (name, v) in [
        (
            "http.header_read_timeout_secs",
            http.header_read_timeout_secs,
        ),
        ("http.body_read_timeout_secs", http.body_read_timeout_secs),
    ] {
        if !(1..=3600).contains(&v) {
            errs.push(Diagnostic {
                origin: origin.to_string(),
                pos: nearest(doc, name).map(|n| n.pos),
                message: format!("{name}: must be between 1 and 3600"),
            });
        }
    }

    let dha = HaConfig::default();
    let ha = HaConfig {
        lease_secs: raw.ha.lease_secs.unwrap_or(dha.lease_secs),
        renew_every_secs: raw.ha.renew_every_secs.unwrap_or(dha.renew_every_secs),
    };
    if !(1..=60).contains(&ha.renew_every_secs) {
        errs.push(Diagnostic {
            origin: origin.to_string(),
            pos: nearest(doc, "ha.renew_every_secs").map(|n| n.pos),
            message: "ha.renew_every_secs: must be between 1 and 60".into(),
        });
    } else if ha.lease_secs < 3 * ha.renew_every_secs || ha.lease_secs > 600 {
        errs.push(Diagnostic {
            origin: origin.to_string(),
            pos: nearest(doc, "ha.lease_secs").map(|n| n.pos),
            message: format!(
                "ha.lease_secs: must be at least three renewals ({} s) and at most 600",
                3 * ha.renew_every_secs
            ),
        });
    }

    // File order; the notify calendar file's problems after this file's.
    errs.sort_by_key(|d| (d.origin != origin, d.pos));
    if errs.is_empty() {
        Ok(ServerConfig {
            listen,
            data_dir,
            database_url,
            enrollment_secret: raw.enrollment_secret,
            ingest,
            retention,
            limits,
            rules,
            contracts,
            notify,
            auth,
            http,
            ha,
        })
    } else {
        Err(ConfigError(errs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::parse(text, "server.yaml", &Overrides::default())
    }

    /// `server.yaml:line:col: ` of occurrence `n` (from 0) of `needle` in `text`.
    fn at(text: &str, needle: &str, n: usize) -> String {
        let (offset, _) = text.match_indices(needle).nth(n).expect("needle in text");
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        format!(
            "server.yaml:{}:{}: ",
            before.matches('\n').count() + 1,
            before[line_start..].chars().count() + 1
        )
    }

    #[test]
    fn example_file_parses() {
        let c = ServerConfig::parse(
            include_str!("../server.example.yaml"),
            "server/server.example.yaml",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.retention.raw_hours, 48);
        assert_eq!(
            c.rules,
            RulesConfig::default(),
            "the example shows the defaults"
        );
        assert_eq!(c.ha, HaConfig::default(), "the example shows the defaults");
    }

    #[test]
    fn ha_lease_must_outlast_three_renewals() {
        let e = parse("ha:\n  lease_secs: 4\n  renew_every_secs: 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2:15: ha.lease_secs: must be at least three renewals (6 s)"),
            "{e}"
        );
        let e = parse("ha:\n  renew_every_secs: 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2:21: ha.renew_every_secs: must be between 1 and 60"),
            "{e}"
        );
    }

    #[test]
    fn rate_limits_default_and_misspelt_keys_are_named() {
        let example = ServerConfig::parse(
            include_str!("../server.example.yaml"),
            "server.example.yaml",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            example.http.rate_limit,
            RateLimitConfig::default(),
            "the example shows the defaults"
        );
        let c = parse("http:\n  rate_limit:\n    login_per_minute: 0\n").unwrap();
        assert_eq!(c.http.rate_limit.login_per_minute, 0);
        assert_eq!(c.http.rate_limit.anonymous_burst, 200);
        let text = "http:\n  rate_limit:\n    login_per_minite: 5\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(&at(text, "login_per_minite", 0)), "{e}");
        assert!(e.contains("login_per_minite"), "{e}");
    }

    #[test]
    fn eval_on_ingest_limits_name_their_keys() {
        let e = parse(
            "rules:\n  eval_on_ingest_cpu_percent: 0\n  eval_on_ingest_min_spacing_ms: 70000\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rules.eval_on_ingest_cpu_percent"), "{e}");
        assert!(e.contains("rules.eval_on_ingest_min_spacing_ms"), "{e}");
        assert!(
            !parse("rules:\n  eval_on_ingest: false\n")
                .unwrap()
                .rules
                .eval_on_ingest
        );
    }

    #[test]
    fn example_notify_section_parses_when_uncommented() {
        let text = include_str!("../server.example.yaml");
        let start = text.find("# notify:").unwrap();
        let section: String = text[start..]
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
            .collect();
        let c =
            ServerConfig::parse(&section, "server.example.yaml", &Overrides::default()).unwrap();
        assert_eq!(c.notify.receivers.len(), 2);
        assert_eq!(c.notify.oncall_schedules[0].layers.len(), 2);
        assert_eq!(c.notify.incidents.levels.len(), 2);
        assert_eq!(c.notify.route.unwrap().routes[0].receiver, "office");
    }

    #[test]
    fn cleartext_smtp_credentials_off_loopback_need_insecure() {
        let smtp = |host: &str, tls: &str, extra: &str| {
            format!(
                "notify:\n  smtp:\n    host: {host}\n    tls: {tls}\n    username: alerts\n    \
                 password: secret\n    from: a@example.org\n{extra}"
            )
        };
        // Plain SMTP with a password to a remote relay: refused at `tls`, naming the way out.
        let text = smtp("smtp.example.gov.cn", "none", "");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with(&at(&text, "none", 0)), "{e}");
        assert!(
            e.contains("clear text") && e.contains("insecure: true"),
            "{e}"
        );
        let text = smtp("10.1.2.3", "none", "");
        assert!(parse(&text).is_err());
        // The explicit opt-in, TLS, loopback, or no credentials at all are accepted.
        let ok = [
            smtp("smtp.example.gov.cn", "none", "    insecure: true\n"),
            smtp("smtp.example.gov.cn", "starttls", ""),
            smtp("smtp.example.gov.cn", "tls", ""),
            smtp("127.0.0.1", "none", ""),
            smtp("localhost", "none", ""),
            smtp("'::1'", "none", ""),
            "notify:\n  smtp: {host: smtp.example.gov.cn, tls: none, from: a@example.org}\n".into(),
        ];
        for text in ok {
            let c = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(c.notify.smtp.is_some());
        }
    }

    #[test]
    fn empty_file_equals_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.ingest, IngestConfig::default());
        assert_eq!(c.retention, RetentionConfig::default());
        assert_eq!(c.limits, yunwei_proto::Limits::default());
        assert!(c.database_url.starts_with("sqlite://"));
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let e = parse("listen: 127.0.0.1:1\ningest:\n  queue_batchez: 3\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("server.yaml:3:3: ingest: unknown field `queue_batchez`"),
            "{e}"
        );
    }

    #[test]
    fn all_value_errors_are_collected_at_their_values() {
        let text = "listen: nowhere\nretention:\n  rollup_days: 30\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        let [a, b] = [e.0[0].to_string(), e.0[1].to_string()];
        assert!(
            a.starts_with(&format!("{}listen: ", at(text, "nowhere", 0))),
            "{e}"
        );
        assert!(
            b.starts_with(&format!("{}retention.rollup_days: ", at(text, "30", 0))),
            "{e}"
        );
    }

    #[test]
    fn a_bad_value_deep_in_the_file_names_its_line_and_column() {
        let text = "listen: 127.0.0.1:9470\ningest:\n  queue_batches: 64\nrules:\n  files: [a.yaml, b.yaml]\n  \
                    evaluation_interval_secs: 30\n  eval_on_ingest_cpu_percent: lots\nauth:\n  lockout_secs: 60\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}rules.eval_on_ingest_cpu_percent: invalid type: string \"lots\"",
                at(text, "lots", 0)
            )),
            "{e}"
        );
        let text = text.replace("lots", "101");
        let e = parse(&text).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}rules.eval_on_ingest_cpu_percent: must be between 1 and 100",
                at(&text, "101", 0)
            )
        );
        // A check that fails on a default is reported at the section that sets the other value.
        let text = text
            .replace("101", "10")
            .replace("lockout_secs: 60", "session_idle_secs: 86400");
        let e = parse(&text).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}auth.session_lifetime_secs: must not be shorter than auth.session_idle_secs",
                at(&text, "session_idle_secs", 0)
            )
        );
    }

    #[test]
    fn auth_settings_are_validated() {
        let c = ServerConfig::parse(
            include_str!("../server.example.yaml"),
            "server/server.example.yaml",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.auth, AuthConfig::default());
        let e = parse(
            "auth:\n  lockout_failures: 0\n  session_idle_secs: 600\n  session_lifetime_secs: 60\n",
        )
        .unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(e.0[0].message.starts_with("auth.lockout_failures"), "{e}");
        assert!(
            e.0[1].message.starts_with("auth.session_lifetime_secs"),
            "{e}"
        );
    }

    #[test]
    fn trusted_proxies_are_address_ranges_named_at_their_item() {
        let text = "http:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.1.0.0/33\n    - fd00::/8\n    - proxy.local\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        let all = e.to_string();
        assert!(
            all.starts_with(&format!(
                "{}http.trusted_proxies[1]: ",
                at(text, "10.1.0.0/33", 0)
            )),
            "{all}"
        );
        assert!(
            e.0[1].to_string().starts_with(&format!(
                "{}http.trusted_proxies[3]: ",
                at(text, "proxy.local", 0)
            )),
            "{e}"
        );
        let c = parse("http:\n  trusted_proxies: [10.0.0.0/8, 127.0.0.1, \"fd00::/8\"]\n").unwrap();
        let [a, b, v6] = c.http.trusted_proxies[..] else {
            panic!("{:?}", c.http.trusted_proxies)
        };
        assert!(a.contains("10.200.3.4".parse().unwrap()));
        assert!(!a.contains("11.0.0.1".parse().unwrap()));
        assert!(b.contains("127.0.0.1".parse().unwrap()));
        assert!(!b.contains("127.0.0.2".parse().unwrap()));
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(parse("").unwrap().http.trusted_proxies.is_empty());
    }

    #[test]
    fn read_timeouts_are_validated() {
        let c = ServerConfig::parse(
            include_str!("../server.example.yaml"),
            "server/server.example.yaml",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.http,
            HttpConfig::default(),
            "the example shows the defaults"
        );
        let text = "http:\n  header_read_timeout_secs: 0\n  body_read_timeout_secs: 5000\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(
            e.0[0].to_string().starts_with(&format!(
                "{}http.header_read_timeout_secs: ",
                at(text, "0", 0)
            )),
            "{e}"
        );
        assert!(
            e.0[1].to_string().starts_with(&format!(
                "{}http.body_read_timeout_secs: ",
                at(text, "5000", 0)
            )),
            "{e}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let o = Overrides {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            database_url: Some("postgres://x@127.0.0.1/db".into()),
            ..Default::default()
        };
        let c = ServerConfig::parse("listen: 127.0.0.1:2\n", "s.yaml", &o).unwrap();
        assert_eq!(c.listen.port(), 1);
        assert!(c.is_postgres());
    }
}
