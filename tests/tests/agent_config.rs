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

const GOOD: &str = "server_url: https://yunwei.example.gov.cn\nstate_dir: /var/lib/yunwei-agent\n";

#[test]
fn bad_configs_are_refused_with_file_line_and_column() {
    refused(
        &format!("{GOOD}intervall_secs: 15\n"),
        &[(3, 1, "unknown field `intervall_secs`")],
    );
    // A bad value is reported at the value.
    let text = "server_url: htp://yunwei.example\nstate_dir: /var/lib/yunwei-agent\n";
    let (l, c) = at(text, "htp://", 0);
    refused(text, &[(l, c, "must start with http:// or https://")]);
    // The token in clear text to a remote server needs the explicit opt-in.
    let text = "server_url: http://yunwei.example.gov.cn\nstate_dir: /var/lib/yunwei-agent\n";
    let (l, c) = at(text, "http://", 0);
    refused(text, &[(l, c, "insecure: true")]);
    assert!(check(&format!("{text}insecure: true\n")).0);
    let text = format!("{GOOD}interval_secs: 0\n");
    let (l, c) = at(&text, "0\n", 0);
    refused(&text, &[(l, c, "interval_secs 0 is outside 1..=3600")]);
    let text = format!("{GOOD}metrics_listen: localhost\n");
    let (l, c) = at(&text, "localhost", 0);
    refused(&text, &[(l, c, "not an IP:port address")]);
    // Several problems at once, in a probe list: every one is reported, at the value, the key
    // that does not apply, or the probe.
    let text = format!(
        "{GOOD}probes:\n  - name: portal\n    http: ftp://x\n  - name: db\n    tcp: db.example\n    \
         interval_secs: 0\n  - name: both\n    dns: a.example\n    process: nginx\n  - name: web\n    \
         http: http://w.example/\n    expect_banner: x\n    labels:\n      probe: x\n"
    );
    let p = |needle: &str, n: usize| at(&text, needle, n);
    let [url, tcp, interval, both, banner, label] = [
        p("ftp://x", 0),
        p("db.example", 0),
        p("0\n", 0),
        p("name: both", 0),
        p("expect_banner", 0),
        p("probe: x", 0),
    ];
    refused(
        &text,
        &[
            (url.0, url.1, "url \"ftp://x\""),
            (tcp.0, tcp.1, "is not host:port"),
            (interval.0, interval.1, "interval_secs 0 is outside"),
            (both.0, both.1, "exactly one of http, tcp, dns, process"),
            (
                banner.0,
                banner.1,
                "expect_banner applies to tcp probes only",
            ),
            (label.0, label.1, "invalid label name \"probe\""),
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
