//! The rule files shipped in `rules/` load and validate, follow the conventions (severity,
//! zh-CN and English annotations, a runbook section per alert), and each has a unit-test file,
//! in promtool's format, that passes and covers every alert.

use std::path::{Path, PathBuf};

use yunwei_rules::rulefile::{Rule, load_rule_files};
use yunwei_rules::unittest::run_unit_test_file;

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".rules.yml"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn shipped_rule_files_load_and_validate() {
    let files = shipped();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["host.rules.yml", "probe.rules.yml"]);
    let loaded = load_rule_files(&files).unwrap_or_else(|e| panic!("{e}"));
    let mut alerts = 0;
    for (file, path) in loaded.iter().zip(&files) {
        let test_file = path.with_file_name(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .replace(".rules.yml", ".rules.test.yml"),
        );
        let tests = std::fs::read_to_string(&test_file)
            .unwrap_or_else(|e| panic!("{}: {e}", test_file.display()));
        for g in &file.groups {
            for r in &g.rules {
                let Rule::Alerting(a) = r else { continue };
                alerts += 1;
                let label = |k: &str| {
                    a.labels
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, t)| t.source())
                };
                assert!(
                    matches!(label("severity"), Some("critical" | "warning" | "info")),
                    "{}: severity",
                    a.name
                );
                let ann = |k: &str| {
                    a.annotations
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, t)| t.source().to_string())
                        .unwrap_or_else(|| panic!("{}: annotation {k} missing", a.name))
                };
                for k in ["summary", "summary_en", "description", "description_en"] {
                    assert!(!ann(k).is_empty(), "{}: {k}", a.name);
                }
                let has_cjk = |s: &str| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
                assert!(has_cjk(&ann("summary")), "{}: summary is zh-CN", a.name);
                assert!(
                    has_cjk(&ann("description")),
                    "{}: description is zh-CN",
                    a.name
                );
                assert!(
                    !has_cjk(&ann("summary_en")),
                    "{}: summary_en is English",
                    a.name
                );
                // The runbook annotation points at a section that exists.
                let runbook = ann("runbook");
                let (doc, anchor) = runbook.split_once('#').expect("runbook has an anchor");
                let doc_path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .parent()
                    .unwrap()
                    .join(doc);
                let text = std::fs::read_to_string(&doc_path)
                    .unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));
                assert!(
                    text.lines().any(|l| l
                        .strip_prefix("## ")
                        .is_some_and(|h| h.to_lowercase() == anchor)),
                    "{}: no section #{anchor} in {doc}",
                    a.name
                );
                assert!(
                    tests.contains(&format!("alertname: {}\n", a.name)),
                    "{} has no alert_rule_test in {}",
                    a.name,
                    test_file.display()
                );
            }
        }
    }
    assert_eq!(alerts, 9);
}

#[test]
fn shipped_rule_tests_pass() {
    for path in shipped() {
        let test_file = path.with_file_name(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .replace(".rules.yml", ".rules.test.yml"),
        );
        let outcome = run_unit_test_file(&test_file);
        print!("{}", outcome.output);
        assert!(outcome.passed, "{}", outcome.output);
    }
}
