//! The agent's YAML configuration: parsed into a raw serde struct with defaults, then validated
//! into [`AgentConfig`]. Every problem is reported as `file:line:col: message`, and validation
//! collects all problems instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use yunwei_proto::{Limits, valid_label_name};

use crate::collect::{CollectOptions, DEFAULT_EXCLUDE_FSTYPES, DEFAULT_EXCLUDE_MOUNT_POINTS};
use crate::probe::{HttpProbe, ProbeKind, ProbeSpec, parse_url};
use crate::tls::TlsFiles;

/// Default address of the agent's `/metrics` endpoint.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9471";

/// A validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Base URL of the server, `http` or `https`, without a trailing slash.
    pub server_url: String,
    /// Secret presented once at enrollment; not needed after the agent has a token.
    pub enrollment_secret: Option<String>,
    /// Folder for `state.json` (agent identity and sequence number); absolute.
    pub state_dir: PathBuf,
    pub interval_secs: u64,
    /// Inventory labels sent with the host facts.
    pub labels: BTreeMap<String, String>,
    /// Bound of the on-disk spool (`<state_dir>/spool/`); the oldest data is dropped beyond.
    pub spool_max_bytes: u64,
    /// Spooled batches older than this are dropped (the server refuses very old data anyway).
    pub spool_max_age_secs: u64,
    pub request_timeout_secs: u64,
    /// Where `/metrics` is served; `None` when turned off.
    pub metrics_listen: Option<SocketAddr>,
    /// Filesystems, process scan and named processes.
    pub collect: CollectOptions,
    pub probes: Vec<ProbeSpec>,
    /// CA bundle and client certificate for HTTPS (push and probes).
    pub tls: TlsFiles,
}

impl AgentConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// A configuration with every optional key at its default.
    pub fn new(server_url: &str, state_dir: &Path) -> AgentConfig {
        AgentConfig {
            server_url: server_url.trim_end_matches('/').to_string(),
            enrollment_secret: None,
            state_dir: state_dir.to_path_buf(),
            interval_secs: default_interval_secs(),
            labels: BTreeMap::new(),
            spool_max_bytes: default_spool_max_bytes(),
            spool_max_age_secs: default_spool_max_age_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            metrics_listen: Some(DEFAULT_METRICS_LISTEN.parse().expect("valid default")),
            collect: CollectOptions {
                process_scan_interval: Some(Duration::from_secs(default_process_scan_secs())),
                ..CollectOptions::default()
            },
            probes: Vec::new(),
            tls: TlsFiles::default(),
        }
    }

    /// The spool folder.
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir.join("spool")
    }
}

/// The file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server_url: Option<String>,
    enrollment_secret: Option<String>,
    state_dir: Option<PathBuf>,
    #[serde(default = "default_interval_secs")]
    interval_secs: u64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default = "default_spool_max_bytes")]
    spool_max_bytes: u64,
    #[serde(default = "default_spool_max_age_secs")]
    spool_max_age_secs: u64,
    #[serde(default = "default_request_timeout_secs")]
    request_timeout_secs: u64,
    metrics_listen: Option<String>,
    exclude_fstypes: Option<Vec<String>>,
    exclude_mount_points: Option<Vec<String>>,
    #[serde(default = "default_process_scan_secs")]
    process_scan_interval_secs: u64,
    #[serde(default)]
    processes: Vec<String>,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    #[serde(default)]
    probes: Vec<RawProbe>,
}

/// One probe as written: exactly one of `http`, `tcp`, `dns`, `process` says what it checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: String,
    http: Option<String>,
    tcp: Option<String>,
    dns: Option<String>,
    process: Option<String>,
    #[serde(default = "default_probe_interval_secs")]
    interval_secs: u64,
    #[serde(default = "default_probe_timeout_secs")]
    timeout_secs: u64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    expect_status: Option<Vec<u16>>,
    expect_body: Option<String>,
    max_redirects: Option<u32>,
    expect_banner: Option<String>,
}

fn default_probe_interval_secs() -> u64 {
    30
}

fn default_probe_timeout_secs() -> u64 {
    5
}

/// Redirects an HTTP probe follows by default, as blackbox_exporter does.
const DEFAULT_MAX_REDIRECTS: u32 = 10;

fn default_process_scan_secs() -> u64 {
    60
}

fn default_interval_secs() -> u64 {
    15
}

fn default_spool_max_bytes() -> u64 {
    128 << 20
}

fn default_spool_max_age_secs() -> u64 {
    7 * 24 * 3600
}

/// Smallest accepted `spool_max_bytes`.
const MIN_SPOOL_BYTES: u64 = 64 << 10;

fn default_request_timeout_secs() -> u64 {
    10
}

/// One configuration problem at a position in the file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// All problems found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name used in messages.
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}:{}: {}", self.origin, p.line, p.column, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the configuration file at `path`; relative paths in it are resolved
/// against the file's folder.
pub fn load_config(path: &Path) -> anyhow::Result<AgentConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let abs = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    let base_dir = abs.parent().unwrap_or(Path::new("/"));
    Ok(parse_config(&text, &path.display().to_string(), base_dir)?)
}

/// Parses and validates configuration text. `origin` names the file in messages; relative paths
/// are resolved against `base_dir`.
pub fn parse_config(text: &str, origin: &str, base_dir: &Path) -> Result<AgentConfig, ConfigError> {
    let fail = |problems| ConfigError {
        origin: origin.to_string(),
        problems,
    };
    let raw: RawConfig = match serde_yaml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(fail(vec![yaml_problem(&e)])),
    };
    let mut problems = Vec::new();
    let mut problem_at = |at: Option<(usize, usize)>, message: String| {
        let (line, column) = at.unwrap_or((1, 1));
        problems.push(Problem {
            line,
            column,
            message,
        });
    };
    let mut problem = |path: &[&str], message: String| problem_at(locate(text, path), message);

    let server_url = match raw.server_url {
        None => {
            problem(&[], "missing required field `server_url`".into());
            String::new()
        }
        Some(url) => match check_url(&url) {
            Ok(url) => url,
            Err(msg) => {
                problem(&["server_url"], format!("server_url {url:?}: {msg}"));
                String::new()
            }
        },
    };
    let state_dir = match raw.state_dir {
        None => {
            problem(&[], "missing required field `state_dir`".into());
            PathBuf::new()
        }
        Some(dir) if dir.as_os_str().is_empty() => {
            problem(&["state_dir"], "state_dir must not be empty".into());
            PathBuf::new()
        }
        Some(dir) => base_dir.join(dir),
    };
    if !(1..=3600).contains(&raw.interval_secs) {
        problem(
            &["interval_secs"],
            format!("interval_secs {} is outside 1..=3600", raw.interval_secs),
        );
    }
    if raw.spool_max_bytes < MIN_SPOOL_BYTES {
        problem(
            &["spool_max_bytes"],
            format!(
                "spool_max_bytes {} is below the minimum of {MIN_SPOOL_BYTES}",
                raw.spool_max_bytes
            ),
        );
    }
    // The server accepts backfill up to Limits::max_age_ms; older batches would be refused.
    let max_age_secs = (Limits::default().max_age_ms / 1000) as u64;
    if !(60..=max_age_secs).contains(&raw.spool_max_age_secs) {
        problem(
            &["spool_max_age_secs"],
            format!(
                "spool_max_age_secs {} is outside 60..={max_age_secs} (the server refuses older data)",
                raw.spool_max_age_secs
            ),
        );
    }
    if !(1..=600).contains(&raw.request_timeout_secs) {
        problem(
            &["request_timeout_secs"],
            format!(
                "request_timeout_secs {} is outside 1..=600",
                raw.request_timeout_secs
            ),
        );
    }
    let metrics_listen = match raw.metrics_listen.as_deref() {
        None => Some(DEFAULT_METRICS_LISTEN.parse().expect("valid default")),
        Some("off" | "") => None,
        Some(addr) => match addr.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problem(
                    &["metrics_listen"],
                    format!("metrics_listen {addr:?} is not an IP:port address or \"off\""),
                );
                None
            }
        },
    };
    if raw.process_scan_interval_secs > 3600 {
        problem(
            &["process_scan_interval_secs"],
            format!(
                "process_scan_interval_secs {} is outside 0..=3600 (0 turns the scan off)",
                raw.process_scan_interval_secs
            ),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in &raw.processes {
        if name.is_empty() || name.len() > 255 || name.contains(['/', '\0']) {
            problem(
                &["processes"],
                format!("process name {name:?} must be 1 to 255 bytes without '/'"),
            );
        } else if !seen.insert(name) {
            problem(&["processes"], format!("process {name:?} is listed twice"));
        }
    }
    if raw.processes.len() > 100 {
        problem(&["processes"], "more than 100 named processes".into());
    }
    if raw.process_scan_interval_secs == 0 && !raw.processes.is_empty() {
        problem(
            &["processes"],
            "named processes need the process scan (process_scan_interval_secs > 0)".into(),
        );
    }
    let tls = TlsFiles {
        ca_file: raw.ca_file.map(|p| base_dir.join(p)),
        client_cert_file: raw.client_cert_file.map(|p| base_dir.join(p)),
        client_key_file: raw.client_key_file.map(|p| base_dir.join(p)),
    };
    if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
        problem(
            &[if tls.client_cert_file.is_some() {
                "client_cert_file"
            } else {
                "client_key_file"
            }],
            "client_cert_file and client_key_file go together".into(),
        );
    }
    // The server applies these limits to every batch; catch violations here instead.
    let limits = Limits::default();
    if raw.labels.len() > limits.max_labels {
        problem(
            &["labels"],
            format!(
                "{} labels exceed the limit of {}",
                raw.labels.len(),
                limits.max_labels
            ),
        );
    }
    for (name, value) in &raw.labels {
        if !valid_label_name(name) || name.starts_with("__") {
            problem(
                &["labels", name],
                format!(
                    "invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]* \
                     and not start with __"
                ),
            );
        } else if name.len() > limits.max_label_name_len {
            problem(
                &["labels", name],
                format!(
                    "label name {name:?} is longer than {} bytes",
                    limits.max_label_name_len
                ),
            );
        }
        if value.len() > limits.max_label_value_len {
            problem(
                &["labels", name],
                format!(
                    "value of label {name:?} is longer than {} bytes",
                    limits.max_label_value_len
                ),
            );
        }
    }

    if raw.probes.len() > 100 {
        problem(
            &["probes"],
            format!("{} probes; at most 100", raw.probes.len()),
        );
    }
    let mut probes = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in raw.probes.into_iter().enumerate() {
        let at = |key: &str| locate_item(text, "probes", i, key);
        let mut bad = |key: &str, message: String| problem_at(at(key), message);
        let name = p.name.clone();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            bad(
                "name",
                format!("probe name {name:?} must be 1 to 128 printable bytes"),
            );
        } else if !names.insert(name.clone()) {
            bad("name", format!("probe {name:?} is defined twice"));
        }
        let kinds = [&p.http, &p.tcp, &p.dns, &p.process]
            .iter()
            .filter(|k| k.is_some())
            .count();
        if kinds != 1 {
            bad(
                "name",
                format!("probe {name:?} needs exactly one of http, tcp, dns, process"),
            );
        }
        if !(1..=3600).contains(&p.interval_secs) {
            bad(
                "interval_secs",
                format!(
                    "probe {name:?}: interval_secs {} is outside 1..=3600",
                    p.interval_secs
                ),
            );
        }
        if !(1..=60).contains(&p.timeout_secs) || p.timeout_secs > p.interval_secs.max(1) {
            bad(
                "timeout_secs",
                format!(
                    "probe {name:?}: timeout_secs {} must be within 1..=60 and at most interval_secs",
                    p.timeout_secs
                ),
            );
        }
        for label in p.labels.keys() {
            if !valid_label_name(label) || label.starts_with("__") || label == "probe" {
                bad(
                    "labels",
                    format!(
                        "probe {name:?}: invalid label name {label:?} (\"probe\" is set by the agent)"
                    ),
                );
            }
        }
        let only = |key: &str, set: bool, kind: &str| -> Option<String> {
            set.then(|| format!("probe {name:?}: {key} applies to {kind} probes only"))
        };
        let kind = if let Some(url) = &p.http {
            if let Err(e) = parse_url(url) {
                bad("http", format!("probe {name:?}: url {url:?}: {e}"));
            }
            for code in p.expect_status.iter().flatten() {
                if !(100..=599).contains(code) {
                    bad(
                        "expect_status",
                        format!("probe {name:?}: {code} is not an HTTP status"),
                    );
                }
            }
            if let Some(m) = only("expect_banner", p.expect_banner.is_some(), "tcp") {
                bad("expect_banner", m);
            }
            if p.max_redirects.is_some_and(|m| m > 20) {
                bad(
                    "max_redirects",
                    format!("probe {name:?}: max_redirects is at most 20"),
                );
            }
            Some(ProbeKind::Http(HttpProbe {
                url: url.clone(),
                expect_status: p.expect_status.clone().unwrap_or_default(),
                expect_body: p.expect_body.clone(),
                max_redirects: p.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
            }))
        } else {
            for (key, set) in [
                ("expect_status", p.expect_status.is_some()),
                ("expect_body", p.expect_body.is_some()),
                ("max_redirects", p.max_redirects.is_some()),
            ] {
                if let Some(m) = only(key, set, "http") {
                    bad(key, m);
                }
            }
            if let Some(address) = &p.tcp {
                let port_ok = address.rsplit_once(':').is_some_and(|(h, port)| {
                    !h.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
                if !port_ok {
                    bad(
                        "tcp",
                        format!("probe {name:?}: tcp {address:?} is not host:port"),
                    );
                }
                Some(ProbeKind::Tcp {
                    address: address.clone(),
                    expect_banner: p.expect_banner.clone(),
                })
            } else {
                if let Some(m) = only("expect_banner", p.expect_banner.is_some(), "tcp") {
                    bad("expect_banner", m);
                }
                if let Some(dns) = &p.dns {
                    if dns.is_empty() || dns.contains(char::is_whitespace) {
                        bad(
                            "dns",
                            format!("probe {name:?}: dns {dns:?} is not a host name"),
                        );
                    }
                    Some(ProbeKind::Dns { name: dns.clone() })
                } else if let Some(process) = &p.process {
                    if process.is_empty() || process.contains('/') {
                        bad(
                            "process",
                            format!("probe {name:?}: process {process:?} is not a command name"),
                        );
                    }
                    Some(ProbeKind::Process {
                        name: process.clone(),
                    })
                } else {
                    None
                }
            }
        };
        if let Some(kind) = kind {
            probes.push(ProbeSpec {
                name,
                kind,
                interval: Duration::from_secs(p.interval_secs),
                timeout: Duration::from_secs(p.timeout_secs),
                labels: p.labels,
            });
        }
    }

    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.line, p.column));
        return Err(fail(problems));
    }
    Ok(AgentConfig {
        server_url,
        enrollment_secret: raw.enrollment_secret,
        state_dir,
        interval_secs: raw.interval_secs,
        labels: raw.labels,
        spool_max_bytes: raw.spool_max_bytes,
        spool_max_age_secs: raw.spool_max_age_secs,
        request_timeout_secs: raw.request_timeout_secs,
        metrics_listen,
        collect: CollectOptions {
            exclude_fstypes: raw.exclude_fstypes.unwrap_or_else(|| {
                DEFAULT_EXCLUDE_FSTYPES
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }),
            exclude_mount_points: raw.exclude_mount_points.unwrap_or_else(|| {
                DEFAULT_EXCLUDE_MOUNT_POINTS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }),
            process_scan_interval: (raw.process_scan_interval_secs > 0)
                .then(|| Duration::from_secs(raw.process_scan_interval_secs)),
            processes: raw.processes,
        },
        probes,
        tls,
    })
}

/// A serde_yaml error as a problem; its message ends in " at line L column C", which the
/// `file:line:col` prefix replaces.
fn yaml_problem(e: &serde_yaml::Error) -> Problem {
    let message = e.to_string();
    match e.location() {
        Some(loc) => Problem {
            line: loc.line(),
            column: loc.column(),
            message: message.replacen(
                &format!(" at line {} column {}", loc.line(), loc.column()),
                "",
                1,
            ),
        },
        None => Problem {
            line: 1,
            column: 1,
            message,
        },
    }
}

/// Checks that `url` is an absolute http(s) URL with a host; returns it without a trailing slash.
fn check_url(url: &str) -> Result<String, &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err("has no host");
    }
    if url.contains(['?', '#']) || url.contains(char::is_whitespace) {
        return Err("must not contain a query, fragment or whitespace");
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Finds the 1-based `(line, column)` of the key at `path` in block-style YAML, or of the first
/// key for an empty path. serde_yaml reports positions only for its own errors, so validation
/// errors are placed by this scan; flow-style mappings fall back to the nearest found parent.
fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    let mut start = 0;
    let mut parent_indent: Option<usize> = None;
    // An empty path means the document's first key.
    let keys: &[&str] = if path.is_empty() { &[""] } else { path };
    for key in keys {
        let mut level_indent = None;
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if parent_indent.is_some_and(|p| indent <= p) {
                break;
            }
            let level = *level_indent.get_or_insert(indent);
            if indent == level && (key.is_empty() || key_of(trimmed) == Some(key)) {
                hit = Some((i, indent));
                break;
            }
        }
        let Some((i, indent)) = hit else { return found };
        found = Some((i + 1, indent + 1));
        start = i + 1;
        parent_indent = Some(indent);
    }
    found
}

/// Finds the 1-based position of `key` in item `index` of the top-level block sequence `list`
/// (`- name: x` items), or of the item itself when the key is not written there.
fn locate_item(text: &str, list: &str, index: usize, key: &str) -> Option<(usize, usize)> {
    let (list_line, list_col) = locate(text, &[list])?;
    let lines: Vec<&str> = text.lines().collect();
    let mut item = None;
    let mut item_indent = None;
    let mut count = 0;
    for (i, line) in lines.iter().enumerate().skip(list_line) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent < list_col - 1 || (indent == list_col - 1 && !trimmed.starts_with('-')) {
            break;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            if item_indent.is_none() {
                item_indent = Some(indent);
            }
            if Some(indent) == item_indent {
                if item.is_some() {
                    break;
                }
                if count == index {
                    item = Some((i, indent));
                    let first = trimmed[1..].trim_start();
                    if key_of(first) == Some(key) {
                        return Some((i + 1, line.len() - first.len() + 1));
                    }
                }
                count += 1;
                continue;
            }
        }
        if item.is_some() && key_of(trimmed) == Some(key) {
            return Some((i + 1, indent + 1));
        }
    }
    item.map(|(i, indent)| (i + 1, indent + 1))
        .or(Some((list_line, list_col)))
}

/// The key of a block mapping line such as `name: value`, `"name": value` or `name:`.
fn key_of(line: &str) -> Option<&str> {
    for quote in ['"', '\''] {
        if let Some(rest) = line.strip_prefix(quote) {
            return rest.find(quote).map(|end| &rest[..end]);
        }
    }
    let end = line
        .find(": ")
        .or_else(|| line.strip_suffix(':').map(str::len))?;
    Some(line[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../agent.example.yaml");

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        parse_config(text, "agent.yaml", Path::new("/etc/yunwei"))
    }

    /// Asserts that `text` fails with exactly the `expected` messages (`line:col: substring`).
    fn check_bad(text: &str, expected: &[(usize, usize, &str)]) {
        let err = parse(text).unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.problems.len(), expected.len(), "{shown}");
        for (p, (line, column, needle)) in err.problems.iter().zip(expected) {
            assert_eq!((p.line, p.column), (*line, *column), "{shown}");
            assert!(p.message.contains(needle), "{shown}");
            assert!(
                shown.contains(&format!("agent.yaml:{line}:{column}: ")),
                "{shown}"
            );
        }
    }

    #[test]
    fn example_file_parses_and_validates() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.server_url, "http://127.0.0.1:9470");
        assert_eq!(c.interval_secs, 15);
        assert!(c.enrollment_secret.is_some());
        assert!(c.state_dir.is_absolute(), "{:?}", c.state_dir);
        assert_eq!(
            c.labels.keys().collect::<Vec<_>>(),
            ["department", "environment", "system"]
        );
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9471".parse().unwrap()));
        assert_eq!(c.collect.processes, ["sshd", "nginx"]);
        let probes: Vec<(&str, Duration)> = c
            .probes
            .iter()
            .map(|p| (p.name.as_str(), p.interval))
            .collect();
        assert_eq!(
            probes,
            [
                ("portal-home", Duration::from_secs(30)),
                ("portal-db", Duration::from_secs(30)),
                ("ssh", Duration::from_secs(30)),
                ("dns-portal", Duration::from_secs(30)),
                ("nginx", Duration::from_secs(15)),
            ]
        );
        match &c.probes[0].kind {
            ProbeKind::Http(h) => {
                assert_eq!(h.expect_status, [200]);
                assert_eq!(h.max_redirects, 10);
                assert_eq!(h.expect_body.as_deref(), Some("政务服务"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.probes[1].labels["tier"], "db");
    }

    #[test]
    fn the_systemd_unit_runs_unprivileged_checks_the_config_and_reloads_with_sighup() {
        let unit = include_str!("../yunwei-agent.service");
        let has = |line: &str| unit.lines().any(|l| l.trim() == line);
        for line in [
            "User=yunwei",
            "Group=yunwei",
            "ExecStartPre=/usr/local/bin/yunwei-agent check --config /etc/yunwei/agent.yaml",
            "ExecStart=/usr/local/bin/yunwei-agent run --config /etc/yunwei/agent.yaml",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "StateDirectory=yunwei-agent",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=",
            "ProtectSystem=strict",
        ] {
            assert!(has(line), "{line} missing from yunwei-agent.service");
        }
        // The example's state_dir is the folder systemd creates for the service user.
        let example = parse(EXAMPLE).unwrap();
        assert_eq!(example.state_dir, PathBuf::from("/var/lib/yunwei-agent"));
    }

    #[test]
    fn probe_problems_point_into_the_list() {
        check_bad(
            "server_url: http://h:1\nstate_dir: s\nprobes:\n  - name: a\n    tcp: h:1\n  - name: a\n    \
             dns: x\n    timeout_secs: 9\n    interval_secs: 5\n  -   name: c\n      http: http://h/\n      \
             expect_banner: x\n",
            &[
                (6, 5, "probe \"a\" is defined twice"),
                (8, 5, "timeout_secs 9 must be within"),
                (12, 7, "expect_banner applies to tcp probes only"),
            ],
        );
        check_bad(
            "server_url: http://h:1\nstate_dir: s\nclient_cert_file: c.pem\n",
            &[(3, 1, "client_cert_file and client_key_file go together")],
        );
    }

    #[test]
    fn defaults_apply_and_relative_state_dir_is_resolved_against_the_config_folder() {
        let c = parse("server_url: https://ops.example.com/\nstate_dir: state\n").unwrap();
        assert_eq!(
            c,
            AgentConfig::new("https://ops.example.com", Path::new("/etc/yunwei/state"))
        );
        assert_eq!(c.spool_max_bytes, 128 << 20);
        assert_eq!(c.spool_max_age_secs, 604_800);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9471".parse().unwrap()));
        assert!(c.collect.exclude_fstypes.iter().any(|t| t == "proc"));
        let off = parse("server_url: http://h:1\nstate_dir: s\nmetrics_listen: \"off\"\n").unwrap();
        assert_eq!(off.metrics_listen, None);
        let abs = parse("server_url: http://h:1\nstate_dir: /var/lib/yunwei\n").unwrap();
        assert_eq!(abs.state_dir, PathBuf::from("/var/lib/yunwei"));
    }

    #[test]
    fn unknown_key_is_named_with_its_position() {
        check_bad(
            "server_url: http://h:1\nstate_dir: s\nintervall_secs: 5\n",
            &[(3, 1, "unknown field `intervall_secs`")],
        );
    }

    #[test]
    fn wrong_type_is_named_with_its_position() {
        check_bad(
            "server_url: http://h:1\nstate_dir: s\ninterval_secs: often\n",
            &[(3, 16, "interval_secs: invalid type")],
        );
    }

    #[test]
    fn bad_label_name_points_at_the_label() {
        check_bad(
            "server_url: http://h:1\nstate_dir: s\nlabels:\n  system: 门户\n  bad-name: x\n",
            &[(5, 3, "invalid label name \"bad-name\"")],
        );
        check_bad(
            "server_url: http://h:1\nstate_dir: s\nlabels:\n  \"__reserved\": x\n",
            &[(4, 3, "invalid label name \"__reserved\"")],
        );
        // Flow style has no per-key positions here; the error points at the mapping's key.
        check_bad(
            "server_url: http://h:1\nstate_dir: s\nlabels: {ok: y, bad-name: x}\n",
            &[(3, 1, "invalid label name \"bad-name\"")],
        );
    }

    #[test]
    fn missing_server_url_is_reported() {
        check_bad(
            "# agent\nstate_dir: s\n",
            &[(2, 1, "missing required field `server_url`")],
        );
    }

    #[test]
    fn all_problems_are_collected_in_file_order() {
        check_bad(
            "server_url: ftp://h\nstate_dir: s\ninterval_secs: 0\nlabels:\n  1st: x\n  ok: y\n  a.b: z\nspool_max_bytes: 0\n",
            &[
                (1, 1, "must start with http:// or https://"),
                (3, 1, "interval_secs 0 is outside 1..=3600"),
                (5, 3, "invalid label name \"1st\""),
                (7, 3, "invalid label name \"a.b\""),
                (8, 1, "spool_max_bytes 0 is below the minimum"),
            ],
        );
    }

    #[test]
    fn yaml_syntax_error_has_a_position() {
        let err = parse("server_url: http://h:1\n  state_dir: [\n").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].line, 2, "{err}");
        assert!(!err.to_string().contains(" at line 2"), "{err}");
    }

    #[test]
    fn url_checks() {
        assert_eq!(
            check_url("http://127.0.0.1:9470").unwrap(),
            "http://127.0.0.1:9470"
        );
        assert_eq!(
            check_url("https://a.example/yunwei/").unwrap(),
            "https://a.example/yunwei"
        );
        assert!(check_url("127.0.0.1:9470").is_err());
        assert!(check_url("http:///x").is_err());
        assert!(check_url("http://h/?q=1").is_err());
    }
}
