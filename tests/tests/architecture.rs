//! Architecture invariants that the build graph can check.

use std::process::Command;

fn normal_deps(package: &str) -> String {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(yunwei_tests::workspace_root())
        .env_remove("LD_PRELOAD") // cargo on the real clock under `.ci/date-sweep`
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_agent_links_none_of_the_server_dependencies() {
    let deps = normal_deps("yunwei-agent");
    for forbidden in [
        "sqlx",
        "axum",
        "lettre",
        "tokio ",
        "hyper ",
        "yunwei-server",
    ] {
        assert!(
            !deps.lines().any(|l| l.starts_with(forbidden.trim_end())
                && l[forbidden.trim_end().len()..].starts_with(' ')),
            "yunwei-agent depends on {forbidden}:\n{deps}"
        );
    }
}

#[test]
fn the_pure_crates_do_no_io_through_dependencies() {
    for pure in [
        "yunwei-conf",
        "yunwei-rules",
        "yunwei-sla",
        "yunwei-reports",
        "yunwei-proto",
    ] {
        let deps = normal_deps(pure);
        for forbidden in ["tokio", "sqlx", "reqwest", "ureq", "axum"] {
            assert!(
                !deps
                    .lines()
                    .any(|l| l.starts_with(&format!("{forbidden} "))),
                "{pure} depends on {forbidden}:\n{deps}"
            );
        }
    }
}

/// Contracts, assessment and reports stand apart from the Prometheus rule stack: a report is
/// built and checked without the PromQL engine.
#[test]
fn reports_and_the_sla_link_no_promql_engine() {
    for package in ["yunwei-reports", "yunwei-sla"] {
        let deps = normal_deps(package);
        for forbidden in ["yunwei-rules", "promql-parser"] {
            assert!(
                !deps
                    .lines()
                    .any(|l| l.starts_with(&format!("{forbidden} "))),
                "{package} depends on {forbidden}:\n{deps}"
            );
        }
    }
}
