//! The agent's YAML configuration: read into yunwei-conf's position-keeping YAML tree,
//! deserialized through its serde bridge into a raw struct with defaults, then validated into
//! [`AgentConfig`]. Every problem is a [`Diagnostic`] (`file:line:col: message`) at the YAML node
//! it is about, and validation collects all problems instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use yunwei_conf::Diagnostic;
use yunwei_conf::yaml::{self, Kind, Lookup, Node, Pos};
use yunwei_conf::yaml_de::from_node;
use yunwei_proto::{Limits, valid_label_name};

use crate::collect::{CollectOptions, DEFAULT_EXCLUDE_FSTYPES, DEFAULT_EXCLUDE_MOUNT_POINTS};
use crate::probe::{HttpProbe, ProbeKind, ProbeSpec, parse_url};
use crate::tls::TlsFiles;

/// Default address of the agent's `/metrics` endpoint.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9471";

/// A validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Base URL of the server, `http` or `https`, without a trailing slash: the first of
    /// [`AgentConfig::server_urls`].
    pub server_url: String,
    /// Every server replica the agent may push to, in order of preference (`server_urls`, or
    /// `server_url` alone); the agent moves to the next when one fails.
    pub server_urls: Vec<String>,
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
            server_urls: vec![server_url.trim_end_matches('/').to_string()],
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
    server_urls: Option<Vec<String>>,
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
    /// Allows an `http://` `server_url` that is not loopback, over which the enrollment secret
    /// and the agent's token travel in clear text; refused without it.
    #[serde(default)]
    insecure: bool,
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

/// All problems found in one configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
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
    let fail = |problems: Vec<(Pos, String)>| ConfigError {
        diagnostics: problems
            .into_iter()
            .map(|(pos, message)| Diagnostic {
                origin: origin.to_string(),
                pos: Some(pos),
                message,
            })
            .collect(),
    };
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        // An empty file is an empty mapping, whose missing fields are reported.
        Ok(None) => Node {
            pos: Pos { line: 1, col: 1 },
            kind: Kind::Map(Vec::new()),
        },
        Err(e) => return Err(fail(vec![(e.pos, e.message)])),
    };
    let raw: RawConfig = from_node(&root)
        .map_err(|e| fail(vec![(e.pos.unwrap_or(root.pos), e.message_with_path())]))?;
    let doc = Some(&root);
    let mut problems: Vec<(Pos, String)> = Vec::new();
    // A problem at `node`, or at the document when the node is not written.
    let mut problem = |node: Option<&Node>, message: String| {
        problems.push((node.map_or(root.pos, |n| n.pos), message))
    };

    // One URL (`server_url`) or a list of replicas (`server_urls`), each checked where written.
    let check = |url: &str, key: &str| match check_url(url) {
        Ok(url) if url.starts_with("http://") && !raw.insecure && !url_is_loopback(&url) => {
            Err(format!(
                "{key} {url:?}: http:// would send the agent's token and the \
                 enrollment secret in clear text to a host that is not loopback; use \
                 https://, or set insecure: true to accept that"
            ))
        }
        Ok(url) => Ok(url),
        Err(msg) => Err(format!("{key} {url:?}: {msg}")),
    };
    let mut server_urls: Vec<String> = Vec::new();
    match (&raw.server_url, &raw.server_urls) {
        (None, None) => problem(None, "missing required field `server_url`".into()),
        (Some(url), None) => match check(url, "server_url") {
            Ok(u) => server_urls.push(u),
            Err(m) => problem(doc.get("server_url"), m),
        },
        (None, Some(urls)) if urls.is_empty() => problem(
            doc.get("server_urls"),
            "server_urls: list at least one server".into(),
        ),
        (None, Some(urls)) => {
            for (i, url) in urls.iter().enumerate() {
                match check(url, &format!("server_urls[{i}]")) {
                    Ok(u) => server_urls.push(u),
                    Err(m) => problem(
                        doc.get("server_urls")
                            .item(i)
                            .or_else(|| doc.get("server_urls")),
                        m,
                    ),
                }
            }
        }
        (Some(_), Some(_)) => problem(
            doc.get("server_urls"),
            "server_urls: give either server_url or server_urls, not both".into(),
        ),
    }
    let server_url = server_urls.first().cloned().unwrap_or_default();
    let state_dir = match raw.state_dir {
        None => {
            problem(None, "missing required field `state_dir`".into());
            PathBuf::new()
        }
        Some(dir) if dir.as_os_str().is_empty() => {
            problem(doc.get("state_dir"), "state_dir must not be empty".into());
            PathBuf::new()
        }
        Some(dir) => base_dir.join(dir),
    };
    if !(1..=3600).contains(&raw.interval_secs) {
        problem(
            doc.get("interval_secs"),
            format!("interval_secs {} is outside 1..=3600", raw.interval_secs),
        );
    }
    if raw.spool_max_bytes < MIN_SPOOL_BYTES {
        problem(
            doc.get("spool_max_bytes"),
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
            doc.get("spool_max_age_secs"),
            format!(
                "spool_max_age_secs {} is outside 60..={max_age_secs} (the server refuses older data)",
                raw.spool_max_age_secs
            ),
        );
    }
    if !(1..=600).contains(&raw.request_timeout_secs) {
        problem(
            doc.get("request_timeout_secs"),
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
                    doc.get("metrics_listen"),
                    format!("metrics_listen {addr:?} is not an IP:port address or \"off\""),
                );
                None
            }
        },
    };
    if raw.process_scan_interval_secs > 3600 {
        problem(
            doc.get("process_scan_interval_secs"),
            format!(
                "process_scan_interval_secs {} is outside 0..=3600 (0 turns the scan off)",
                raw.process_scan_interval_secs
            ),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in raw.processes.iter().enumerate() {
        let item = doc.get("processes").item(i);
        if name.is_empty() || name.len() > 255 || name.contains(['/', '\0']) {
            problem(
                item,
                format!("process name {name:?} must be 1 to 255 bytes without '/'"),
            );
        } else if !seen.insert(name) {
            problem(item, format!("process {name:?} is listed twice"));
        }
    }
    if raw.processes.len() > 100 {
        problem(doc.get("processes"), "more than 100 named processes".into());
    }
    if raw.process_scan_interval_secs == 0 && !raw.processes.is_empty() {
        problem(
            doc.get("processes"),
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
            doc.key(if tls.client_cert_file.is_some() {
                "client_cert_file"
            } else {
                "client_key_file"
            }),
            "client_cert_file and client_key_file go together".into(),
        );
    }
    // The server applies these limits to every batch; catch violations here instead.
    let limits = Limits::default();
    if raw.labels.len() > limits.max_labels {
        problem(
            doc.get("labels"),
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
                doc.get("labels").key(name),
                format!(
                    "invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]* \
                     and not start with __"
                ),
            );
        } else if name.len() > limits.max_label_name_len {
            problem(
                doc.get("labels").key(name),
                format!(
                    "label name {name:?} is longer than {} bytes",
                    limits.max_label_name_len
                ),
            );
        }
        if value.len() > limits.max_label_value_len {
            problem(
                doc.get("labels").get(name),
                format!(
                    "value of label {name:?} is longer than {} bytes",
                    limits.max_label_value_len
                ),
            );
        }
    }

    if raw.probes.len() > 100 {
        problem(
            doc.get("probes"),
            format!("{} probes; at most 100", raw.probes.len()),
        );
    }
    let mut probes = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in raw.probes.into_iter().enumerate() {
        // The probe's mapping; a problem about a key not written there is put at the probe.
        let item = doc.get("probes").item(i);
        let mut bad = |node: Option<&Node>, message: String| problem(node.or(item), message);
        let name = p.name.clone();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            bad(
                item.get("name"),
                format!("probe name {name:?} must be 1 to 128 printable bytes"),
            );
        } else if !names.insert(name.clone()) {
            bad(item.get("name"), format!("probe {name:?} is defined twice"));
        }
        let kinds = [&p.http, &p.tcp, &p.dns, &p.process]
            .iter()
            .filter(|k| k.is_some())
            .count();
        if kinds != 1 {
            bad(
                item,
                format!("probe {name:?} needs exactly one of http, tcp, dns, process"),
            );
        }
        if !(1..=3600).contains(&p.interval_secs) {
            bad(
                item.get("interval_secs"),
                format!(
                    "probe {name:?}: interval_secs {} is outside 1..=3600",
                    p.interval_secs
                ),
            );
        }
        if !(1..=60).contains(&p.timeout_secs) || p.timeout_secs > p.interval_secs.max(1) {
            bad(
                item.get("timeout_secs"),
                format!(
                    "probe {name:?}: timeout_secs {} must be within 1..=60 and at most interval_secs",
                    p.timeout_secs
                ),
            );
        }
        for label in p.labels.keys() {
            if !valid_label_name(label) || label.starts_with("__") || label == "probe" {
                bad(
                    item.get("labels").key(label),
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
                bad(
                    item.get("http"),
                    format!("probe {name:?}: url {url:?}: {e}"),
                );
            }
            for (j, code) in p.expect_status.iter().flatten().enumerate() {
                if !(100..=599).contains(code) {
                    bad(
                        item.get("expect_status").item(j),
                        format!("probe {name:?}: {code} is not an HTTP status"),
                    );
                }
            }
            if let Some(m) = only("expect_banner", p.expect_banner.is_some(), "tcp") {
                bad(item.key("expect_banner"), m);
            }
            if p.max_redirects.is_some_and(|m| m > 20) {
                bad(
                    item.get("max_redirects"),
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
                    bad(item.key(key), m);
                }
            }
            if let Some(address) = &p.tcp {
                let port_ok = address.rsplit_once(':').is_some_and(|(h, port)| {
                    !h.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
                if !port_ok {
                    bad(
                        item.get("tcp"),
                        format!("probe {name:?}: tcp {address:?} is not host:port"),
                    );
                }
                Some(ProbeKind::Tcp {
                    address: address.clone(),
                    expect_banner: p.expect_banner.clone(),
                })
            } else {
                if let Some(m) = only("expect_banner", p.expect_banner.is_some(), "tcp") {
                    bad(item.key("expect_banner"), m);
                }
                if let Some(dns) = &p.dns {
                    if dns.is_empty() || dns.contains(char::is_whitespace) {
                        bad(
                            item.get("dns"),
                            format!("probe {name:?}: dns {dns:?} is not a host name"),
                        );
                    }
                    Some(ProbeKind::Dns { name: dns.clone() })
                } else if let Some(process) = &p.process {
                    if process.is_empty() || process.contains('/') {
                        bad(
                            item.get("process"),
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
        problems.sort_by_key(|(pos, _)| *pos);
        return Err(fail(problems));
    }
    Ok(AgentConfig {
        server_url,
        server_urls,
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

/// Whether the host of the http(s) URL `url` is loopback (`127.0.0.0/8`, `::1`, `localhost`).
fn url_is_loopback(url: &str) -> bool {
    yunwei_conf::host::url_host(url).is_some_and(yunwei_conf::host::is_loopback_host)
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

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../agent.example.yaml");

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        parse_config(text, "agent.yaml", Path::new("/etc/yunwei"))
    }

    /// The 1-based line and column of occurrence `n` (from 0) of `needle` in `text`.
    fn at(text: &str, needle: &str, n: usize) -> (usize, usize) {
        let (offset, _) = text.match_indices(needle).nth(n).expect("needle in text");
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (
            before.matches('\n').count() + 1,
            before[line_start..].chars().count() + 1,
        )
    }

    /// Asserts that `text` fails with exactly the `expected` messages (`line:col: substring`).
    fn check_bad(text: &str, expected: &[(usize, usize, &str)]) {
        let err = parse(text).unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.diagnostics.len(), expected.len(), "{shown}");
        for (d, (line, column, needle)) in err.diagnostics.iter().zip(expected) {
            assert_eq!(
                d.pos,
                Some(Pos {
                    line: *line,
                    col: *column
                }),
                "{shown}"
            );
            assert!(d.message.contains(needle), "{shown}");
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
            "User=yunwei-agent",
            "Group=yunwei-agent",
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
        let text = "server_url: https://h:1\nstate_dir: s\nprobes:\n  - name: a\n    tcp: h:1\n  - name: a\n    \
             dns: x\n    timeout_secs: 9\n    interval_secs: 5\n  -   name: c\n      http: http://h/\n      \
             expect_banner: x\n";
        // The second `a` (the name written twice), the 9, and the key that does not apply.
        let (twice, nine, banner) = (
            at(text, "a\n", 1),
            at(text, "9", 0),
            at(text, "expect_banner", 0),
        );
        check_bad(
            text,
            &[
                (twice.0, twice.1, "probe \"a\" is defined twice"),
                (nine.0, nine.1, "timeout_secs 9 must be within"),
                (
                    banner.0,
                    banner.1,
                    "expect_banner applies to tcp probes only",
                ),
            ],
        );
        check_bad(
            "server_url: https://h:1\nstate_dir: s\nclient_cert_file: c.pem\n",
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
        let off =
            parse("server_url: https://h:1\nstate_dir: s\nmetrics_listen: \"off\"\n").unwrap();
        assert_eq!(off.metrics_listen, None);
        let abs = parse("server_url: https://h:1\nstate_dir: /var/lib/yunwei\n").unwrap();
        assert_eq!(abs.state_dir, PathBuf::from("/var/lib/yunwei"));
    }

    #[test]
    fn unknown_key_is_named_with_its_position() {
        check_bad(
            "server_url: https://h:1\nstate_dir: s\nintervall_secs: 5\n",
            &[(3, 1, "unknown field `intervall_secs`")],
        );
    }

    #[test]
    fn wrong_type_is_named_with_its_position() {
        check_bad(
            "server_url: https://h:1\nstate_dir: s\ninterval_secs: often\n",
            &[(3, 16, "interval_secs: invalid type")],
        );
    }

    #[test]
    fn bad_label_name_points_at_the_label() {
        check_bad(
            "server_url: https://h:1\nstate_dir: s\nlabels:\n  system: 门户\n  bad-name: x\n",
            &[(5, 3, "invalid label name \"bad-name\"")],
        );
        check_bad(
            "server_url: https://h:1\nstate_dir: s\nlabels:\n  \"__reserved\": x\n",
            &[(4, 3, "invalid label name \"__reserved\"")],
        );
        // Flow style too: the error points at the label's key.
        let text = "server_url: https://h:1\nstate_dir: s\nlabels: {ok: y, bad-name: x}\n";
        let (line, col) = at(text, "bad-name", 0);
        check_bad(text, &[(line, col, "invalid label name \"bad-name\"")]);
    }

    #[test]
    fn missing_server_url_is_reported() {
        check_bad(
            "# agent\nstate_dir: s\n",
            &[(2, 1, "missing required field `server_url`")],
        );
    }

    #[test]
    fn server_urls_list_the_replicas_each_checked_at_its_item() {
        let c = parse(
            "server_urls:\n  - https://a.example.org/\n  - http://127.0.0.1:9470\nstate_dir: s\n",
        )
        .unwrap();
        assert_eq!(
            c.server_urls,
            ["https://a.example.org", "http://127.0.0.1:9470"]
        );
        assert_eq!(c.server_url, "https://a.example.org");
        let one = parse("server_url: https://h:1\nstate_dir: s\n").unwrap();
        assert_eq!(one.server_urls, ["https://h:1"]);
        check_bad(
            "state_dir: s\nserver_urls:\n  - https://h:1\n  - ftp://h\n",
            &[(4, 5, "server_urls[1] \"ftp://h\"")],
        );
        check_bad(
            "server_url: https://h:1\nserver_urls: [https://h:2]\nstate_dir: s\n",
            &[(2, 14, "give either server_url or server_urls, not both")],
        );
        check_bad(
            "server_urls: []\nstate_dir: s\n",
            &[(1, 14, "list at least one server")],
        );
    }

    #[test]
    fn all_problems_are_collected_in_file_order() {
        // Bad values are reported at the value, bad label names at the key.
        let text = "server_url: ftp://h\nstate_dir: s\ninterval_secs: 0\nlabels:\n  1st: x\n  ok: y\n  a.b: z\nspool_max_bytes: 0\n";
        let url = at(text, "ftp://h", 0);
        let interval = at(text, "0\n", 0);
        let spool = at(text, "0\n", 1);
        check_bad(
            text,
            &[
                (url.0, url.1, "must start with http:// or https://"),
                (
                    interval.0,
                    interval.1,
                    "interval_secs 0 is outside 1..=3600",
                ),
                (5, 3, "invalid label name \"1st\""),
                (7, 3, "invalid label name \"a.b\""),
                (spool.0, spool.1, "spool_max_bytes 0 is below the minimum"),
            ],
        );
    }

    #[test]
    fn a_bad_value_deep_in_the_file_names_its_line_and_column() {
        let text = "server_url: https://h:1\nstate_dir: s\nprobes:\n  - name: web\n    http: http://w/\n    \
                    expect_status: [200, 301]\n  - name: db\n    tcp: db:5432\n    labels:\n      tier: db\n    \
                    interval_secs: [30]\n";
        let (line, col) = at(text, "[30]", 0);
        check_bad(
            text,
            &[(line, col, "probes[1].interval_secs: invalid type: sequence")],
        );
        // A validation error in a flow sequence points at the item.
        let text = text
            .replace("[200, 301]", "[200, 999]")
            .replace("[30]", "30");
        let (line, col) = at(&text, "999", 0);
        check_bad(&text, &[(line, col, "999 is not an HTTP status")]);
    }

    #[test]
    fn yaml_syntax_error_has_a_position() {
        let err = parse("server_url: https://h:1\n  state_dir: [\n").unwrap_err();
        assert_eq!(err.diagnostics.len(), 1);
        assert_eq!(err.diagnostics[0].pos.map(|p| p.line), Some(2), "{err}");
        assert!(err.to_string().starts_with("agent.yaml:2:"), "{err}");
    }

    #[test]
    fn cleartext_token_off_loopback_needs_insecure() {
        let text = "state_dir: s\nserver_url: http://ops.example.gov.cn:9470\n";
        let url = at(text, "http://ops", 0);
        check_bad(
            text,
            &[(url.0, url.1, "clear text to a host that is not loopback")],
        );
        let shown = parse(text).unwrap_err().to_string();
        assert!(shown.contains("insecure: true"), "{shown}");
        assert!(parse("server_url: http://10.0.0.7\nstate_dir: s\n").is_err());
        // The explicit opt-in, HTTPS, and loopback are accepted.
        for ok in [
            "server_url: http://ops.example.gov.cn:9470\nstate_dir: s\ninsecure: true\n",
            "server_url: https://ops.example.gov.cn\nstate_dir: s\n",
            "server_url: http://127.0.0.1:9470\nstate_dir: s\n",
            "server_url: http://localhost:9470/\nstate_dir: s\n",
            "server_url: http://[::1]:9470\nstate_dir: s\n",
        ] {
            parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
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
