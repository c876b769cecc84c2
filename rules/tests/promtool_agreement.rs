//! yunwei's rule unit-test runner gives the same verdict as the real `promtool test rules`
//! (Debian's v2.42) on Prometheus's own test files (`../shared/peer-tests/promtool`), on the
//! shipped rules' test files, and on the edge cases in `tests/promtool/`.
//!
//! Each file's expected verdict is fixed here, so yunwei's side is checked even without
//! promtool. Without `/usr/bin/promtool` the comparison is skipped, unless `CI=true`, where it
//! fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use yunwei_rules::unittest::run_unit_test_file;

const PROMTOOL: &str = "/usr/bin/promtool";

fn cases() -> Vec<(PathBuf, bool)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let peer = root.join("../../shared/peer-tests/promtool");
    let mut v = vec![
        // Verdicts of promtool 2.42 per ../shared/peer-tests/README.md.
        (peer.join("unittest.yml"), true),
        (peer.join("at-modifier-test.yml"), true),
        (peer.join("failing.yml"), false),
        (peer.join("bad-rules-syntax-test.yml"), false),
        (peer.join("bad-promql.yml"), false),
        (root.join("host.rules.test.yml"), true),
        (root.join("probe.rules.test.yml"), true),
    ];
    let local = root.join("tests/promtool");
    for (name, pass) in [
        ("features.test.yml", true),
        ("templates.test.yml", true),
        ("no-rules.test.yml", true),
        ("failures.test.yml", false),
        ("unknown-field.test.yml", false),
        ("eval-error.test.yml", false),
    ] {
        v.push((local.join(name), pass));
    }
    v
}

fn verdict(passed: bool) -> &'static str {
    if passed { "pass" } else { "fail" }
}

#[test]
fn verdicts_agree_with_promtool() {
    let promtool = Path::new(PROMTOOL).exists();
    if !promtool {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{PROMTOOL} is missing; CI must install Debian's `prometheus` package"
        );
        println!(
            "SKIP promtool comparison: {PROMTOOL} is not installed (apt-get install prometheus)"
        );
    }
    let mut table = vec![format!(
        "{:<28} {:<8} {:<8} {:<8}",
        "file", "expected", "yunwei", "promtool"
    )];
    let mut problems = Vec::new();
    for (path, expected) in cases() {
        assert!(path.exists(), "{} is missing", path.display());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ours = run_unit_test_file(&path);
        let theirs = promtool.then(|| {
            let out = Command::new(PROMTOOL)
                .args(["test", "rules"])
                .arg(&path)
                .output()
                .expect("promtool runs");
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        });
        table.push(format!(
            "{:<28} {:<8} {:<8} {:<8}",
            name,
            verdict(expected),
            verdict(ours.passed),
            theirs.as_ref().map_or("skipped", |t| verdict(t.0)),
        ));
        if ours.passed != expected {
            problems.push(format!(
                "{name}: yunwei expected to {}\n{}",
                verdict(expected),
                ours.output
            ));
        }
        if let Some((passed, out)) = &theirs
            && *passed != ours.passed
        {
            problems.push(format!(
                "{name}: promtool says {}, yunwei {}\n--- promtool\n{out}--- yunwei\n{}",
                verdict(*passed),
                verdict(ours.passed),
                ours.output
            ));
        }
    }
    println!("{}", table.join("\n"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
