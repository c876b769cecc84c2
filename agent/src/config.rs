//! The agent's YAML configuration: parsed into a raw serde struct with defaults, then validated
//! into [`AgentConfig`]. Every problem is reported as `file:line:col: message`, and validation
//! collects all problems instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use yunwei_proto::{Limits, valid_label_name};

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
    /// Batches kept in memory while the server cannot be reached; the oldest are dropped beyond.
    pub max_queue_batches: usize,
    pub request_timeout_secs: u64,
}

impl AgentConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
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
    #[serde(default = "default_max_queue_batches")]
    max_queue_batches: usize,
    #[serde(default = "default_request_timeout_secs")]
    request_timeout_secs: u64,
}

fn default_interval_secs() -> u64 {
    15
}

fn default_max_queue_batches() -> usize {
    1000
}

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
    let mut problem = |path: &[&str], message: String| {
        let (line, column) = locate(text, path).unwrap_or((1, 1));
        problems.push(Problem {
            line,
            column,
            message,
        });
    };

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
    if raw.max_queue_batches == 0 {
        problem(
            &["max_queue_batches"],
            "max_queue_batches must be at least 1".into(),
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
        max_queue_batches: raw.max_queue_batches,
        request_timeout_secs: raw.request_timeout_secs,
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
    }

    #[test]
    fn defaults_apply_and_relative_state_dir_is_resolved_against_the_config_folder() {
        let c = parse("server_url: https://ops.example.com/\nstate_dir: state\n").unwrap();
        assert_eq!(
            c,
            AgentConfig {
                server_url: "https://ops.example.com".into(),
                enrollment_secret: None,
                state_dir: PathBuf::from("/etc/yunwei/state"),
                interval_secs: 15,
                labels: BTreeMap::new(),
                max_queue_batches: 1000,
                request_timeout_secs: 10,
            }
        );
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
            "server_url: ftp://h\nstate_dir: s\ninterval_secs: 0\nlabels:\n  1st: x\n  ok: y\n  a.b: z\nmax_queue_batches: 0\n",
            &[
                (1, 1, "must start with http:// or https://"),
                (3, 1, "interval_secs 0 is outside 1..=3600"),
                (5, 3, "invalid label name \"1st\""),
                (7, 3, "invalid label name \"a.b\""),
                (8, 1, "max_queue_batches must be at least 1"),
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
