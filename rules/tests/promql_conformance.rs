//! Runs Prometheus v2.42's PromQL test scripts (`../shared/peer-tests/promql/*.test`) through the
//! engine, prints the conformance figures per file and in total, and holds the targets: at least
//! 95% of the cases that are not skipped pass, and at most 15% of all cases are skipped.

use std::path::PathBuf;

use yunwei_rules::promql::Options;
use yunwei_rules::promql::promqltest::{Outcome, Report, run_script};

const PEER_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peer-tests/promql"
);

#[test]
fn prometheus_promql_conformance() {
    let dir = PathBuf::from(PEER_TESTS);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "peer test folder {} is missing ({e}); it holds Prometheus's promql/testdata scripts",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test files in {}", dir.display());

    let opts = Options::default();
    let mut total = Report::default();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let src =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let report = run_script(&src, &opts).unwrap_or_else(|e| panic!("{name}:{e}"));
        println!("{name}: {report}");
        for c in &report.cases {
            match &c.outcome {
                Outcome::Passed => {}
                Outcome::Failed(why) => {
                    println!("  FAIL {name}:{}: {}\n       {why}", c.line, c.expr)
                }
                Outcome::Skipped(why) => println!("  SKIP {name}:{}: {} ({why})", c.line, c.expr),
            }
        }
        total.cases.extend(report.cases);
    }
    println!("promql conformance total: {total}");

    let all = total.cases.len();
    let (passed, skipped) = (total.passed(), total.skipped());
    let evaluated = all - skipped;
    assert!(all > 0, "no eval cases found");
    assert!(
        passed as f64 >= 0.95 * evaluated as f64,
        "pass rate {passed}/{evaluated} is below 95% of the non-skipped cases"
    );
    assert!(
        skipped as f64 <= 0.15 * all as f64,
        "{skipped} of {all} cases skipped, more than 15%"
    );
}
