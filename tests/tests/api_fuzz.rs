//! API fuzzing against the served OpenAPI document (issue 17): schemathesis (PyPI) generates
//! requests for every documented operation from the document alone — valid and invalid path
//! and query parameters and bodies, missing and wrong credentials, other methods — against a
//! real `yunwei-server` process, once with each role's API token and once without one. A
//! 5xx answer, a crash, or an answer the document does not describe (status, content type,
//! body schema) fails the test.
//!
//! schemathesis is found as `$YUNWEI_SCHEMATHESIS`, else in the venv `.ci/run` makes under the
//! target directory (`<target>/schemathesis-venv`), else on the PATH. Without it the test
//! skips with a message, or fails with `CI=true`. The run is bounded (`-n` examples per
//! operation and phase, a fixed seed); `YUNWEI_API_FUZZ_EXAMPLES` raises it for a longer run.

use std::path::{Path, PathBuf};
use std::process::Command;

use yunwei_tests::{AgentClient, Db, ServerProcess, ci, cli_token, now_ms};

/// The schemathesis version `.ci/run` installs; the test says so when another one is found.
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// Examples per operation and phase unless `YUNWEI_API_FUZZ_EXAMPLES` says otherwise.
const DEFAULT_EXAMPLES: u32 = 8;

const CONTRACT: &str = r#"id: c1
name: 测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

/// The schemathesis executable, or `None` (with the places looked at) when there is none.
fn schemathesis() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("YUNWEI_SCHEMATHESIS") {
        return Ok(PathBuf::from(p));
    }
    // The test runs as <target>/<profile>/deps/<test>.
    let exe = std::env::current_exe().expect("current exe");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target directory")
        .to_path_buf();
    let venv = target.join("schemathesis-venv/bin/schemathesis");
    if venv.exists() {
        return Ok(venv);
    }
    let on_path = Command::new("schemathesis").arg("--version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return Ok(PathBuf::from("schemathesis"));
    }
    Err(format!(
        "schemathesis not found ($YUNWEI_SCHEMATHESIS, {}, PATH); .ci/run installs it \
         (pip install schemathesis=={SCHEMATHESIS_VERSION})",
        venv.display()
    ))
}

/// One schemathesis run against `doc` on `base` with `token` (none: anonymous). Returns its
/// output; `Err` with the output when it failed.
fn run(
    exe: &Path,
    doc: &Path,
    base: &str,
    token: Option<&str>,
    examples: u32,
    report: &Path,
) -> Result<String, String> {
    // Positive data may still name a contract, incident or user that does not exist, and a
    // role may lack the permission: 404 and 403 are right answers there. The resource checks
    // need links between operations, which the document does not declare. `ignored_auth`
    // sends made-up credentials in place of the caller's: the anonymous run has none, while
    // with a token it would add a made-up session cookie beside the valid token.
    let mut excluded = String::from(
        "positive_data_acceptance,use_after_free,ensure_resource_availability,\
         object_level_authorization",
    );
    if token.is_some() {
        excluded.push_str(",ignored_auth");
    }
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg(doc)
        .args(["--url", base])
        .args(["--checks", "all"])
        .args(["--exclude-checks", &excluded])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", "17"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--generation-database", "none"])
        .args(["--suppress-health-check", "all"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(report)
        .args(["--no-color", "--output-truncate", "true"])
        // schemathesis keeps state in `.schemathesis/` of its working directory.
        .current_dir(report.parent().expect("report in a directory"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // A serializer for `application/x-protobuf` (remote write), in tests/api_fuzz_hooks.py.
        .env("SCHEMATHESIS_HOOKS", "api_fuzz_hooks")
        .env("PYTHONPATH", env!("CARGO_MANIFEST_DIR"));
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running schemathesis: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("schemathesis exited with {}:\n{text}", out.status))
    }
}

/// schemathesis's counts from its closing summary: operations tested and test cases, e.g.
/// `56 operations tested; 3306 generated, 3306 passed`.
fn counts(output: &str) -> String {
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    let tested = lines
        .iter()
        .find_map(|l| l.strip_prefix("Tested:"))
        .map_or("?", str::trim);
    let cases = lines
        .iter()
        .position(|l| *l == "Test cases:")
        .and_then(|i| lines.get(i + 1))
        .copied()
        .unwrap_or("?");
    format!("{tested} operations tested; {cases}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_fuzzing_the_openapi_document_gets_no_5xx_and_documented_answers() {
    let exe = match schemathesis() {
        Ok(p) => p,
        Err(e) if ci() => panic!("CI=true and {e}"),
        Err(e) => {
            eprintln!("SKIP: {e}; set CI=true to make this a failure");
            return;
        }
    };
    let version = Command::new(&exe)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    eprintln!("using {} ({version})", exe.display());

    let dir = tempfile::tempdir().unwrap();
    let contract = dir.path().join("contract.yml");
    std::fs::write(&contract, CONTRACT).unwrap();
    let server = ServerProcess::start(
        &Db::Sqlite,
        &format!(
            "contracts:\n  files: [{}]\n  run_inspections: false\n  scheduled_reports: false\n",
            contract.display()
        ),
    )
    .await
    .unwrap();
    // Some data to read: one host with a batch of samples.
    let agent = AgentClient::new(&server);
    let e = agent.enroll("web-01").await.unwrap();
    let (status, body) = agent
        .push(
            &e.token,
            &yunwei_tests::batch(&e, "web-01", 1, now_ms(), 20),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // The document as the server serves it.
    let admin = AgentClient::new(&server).with_token(&server.api_token);
    let doc = admin.get_text("/api/v1/openapi.json").await.unwrap();
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, &doc).unwrap();

    let examples: u32 = std::env::var("YUNWEI_API_FUZZ_EXAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_EXAMPLES);
    // Admin last: its calls change users, and the other roles' tokens must still work first.
    let mut callers: Vec<(String, Option<String>)> = vec![("anonymous".into(), None)];
    for role in ["auditor", "reviewer", "operator"] {
        let t = cli_token(&server.config_path, &format!("fuzz-{role}"), role).unwrap();
        callers.push((role.into(), Some(t)));
    }
    callers.push(("admin".into(), Some(server.api_token.clone())));

    let base = server.url("");
    let mut failures = Vec::new();
    for (who, token) in &callers {
        let report = dir.path().join(format!("junit-{who}.xml"));
        let exe = exe.clone();
        let (doc_path, base, token, report2) = (
            doc_path.clone(),
            base.clone(),
            token.clone(),
            report.clone(),
        );
        let result = tokio::task::spawn_blocking(move || {
            run(&exe, &doc_path, &base, token.as_deref(), examples, &report2)
        })
        .await
        .unwrap();
        match result {
            Ok(out) => {
                eprintln!("api fuzz as {who}: {}", counts(&out));
            }
            Err(out) => {
                eprintln!("api fuzz as {who} FAILED:\n{out}");
                failures.push(who.clone());
            }
        }
        // Still up after each caller's run.
        let r = reqwest::get(server.url("/healthz")).await;
        assert!(
            r.is_ok_and(|r| r.status().is_success()),
            "the server stopped answering after fuzzing as {who}; log:\n{}",
            server.log()
        );
    }
    let log = server.log();
    assert!(
        !log.contains("panicked"),
        "the server panicked while fuzzed:\n{log}"
    );
    assert!(
        failures.is_empty(),
        "schemathesis found failures as {failures:?} (see above)"
    );
}
