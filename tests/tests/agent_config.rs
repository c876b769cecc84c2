//! `yunwei-agent check` and `once` as an operator runs them: exit codes and `file:line:col`
//! messages for bad configuration files, and the shipped example passing.

use std::process::Command;

use yunwei_tests::{bin, workspace_root};

/// Runs `yunwei-agent check --config <file with text>`: `(success, stdout + stderr, path)`.
fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(bin("yunwei-agent"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        path.display().to_string(),
    )
}

/// Asserts that `text` is refused with a non-zero exit and each `(line, col, needle)` reported
/// as `<file>:line:col: ...needle...`.
fn refused(text: &str, expected: &[(usize, usize, &str)]) {
    let (ok, output, path) = check(text);
    assert!(!ok, "accepted:\n{text}\n{output}");
    for (line, col, needle) in expected {
        let prefix = format!("{path}:{line}:{col}: ");
        assert!(
            output
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "expected {prefix}...{needle}... in:\n{output}"
        );
    }
}

const GOOD: &str = "server_url: https://yunwei.example.gov.cn\nstate_dir: /var/lib/yunwei-agent\n";

#[test]
fn bad_configs_are_refused_with_file_line_and_column() {
    refused(
        &format!("{GOOD}intervall_secs: 15\n"),
        &[(3, 1, "unknown field `intervall_secs`")],
    );
    refused(
        "server_url: htp://yunwei.example\nstate_dir: /var/lib/yunwei-agent\n",
        &[(1, 1, "must start with http:// or https://")],
    );
    refused(
        &format!("{GOOD}interval_secs: 0\n"),
        &[(3, 1, "interval_secs 0 is outside 1..=3600")],
    );
    refused(
        &format!("{GOOD}metrics_listen: localhost\n"),
        &[(3, 1, "not an IP:port address")],
    );
    // Several problems at once, in a probe list: every one is reported.
    refused(
        &format!(
            "{GOOD}probes:\n  - name: portal\n    http: ftp://x\n  - name: db\n    tcp: db.example\n    \
             interval_secs: 0\n  - name: both\n    dns: a.example\n    process: nginx\n  - name: web\n    \
             http: http://w.example/\n    expect_banner: x\n    labels:\n      probe: x\n"
        ),
        &[
            (5, 5, "url \"ftp://x\""),
            (7, 5, "is not host:port"),
            (8, 5, "interval_secs 0 is outside"),
            (9, 5, "exactly one of http, tcp, dns, process"),
            (14, 5, "expect_banner applies to tcp probes only"),
            (15, 5, "invalid label name \"probe\""),
        ],
    );
    refused(
        &format!("{GOOD}probes:\n  - http: http://w.example/\n"),
        &[(4, 5, "missing field `name`")],
    );
}

#[test]
fn the_example_config_checks_out() {
    let example = workspace_root().join("agent/agent.example.yaml");
    let out = Command::new(bin("yunwei-agent"))
        .args(["check", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(": ok ("), "{text}");
}

#[test]
fn once_prints_prometheus_text_or_json() {
    let out = Command::new(bin("yunwei-agent"))
        .arg("once")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("# TYPE node_cpu_seconds_total counter\n"),
        "{text}"
    );
    assert!(text.contains("\nnode_memory_MemTotal_bytes "), "{text}");
    let out = Command::new(bin("yunwei-agent"))
        .args(["once", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let samples: Vec<yunwei_proto::Sample> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(samples.iter().any(|s| s.name == "node_load1"));
}
