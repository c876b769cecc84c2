//! Runs Prometheus PromQL test scripts (`*.test`) through yunwei's engine and prints, per file,
//! `FILE: N passed, N failed, N skipped`, each failure and skip, and a total line.
//!
//! `cargo run -p yunwei-rules --example promqltest -- FILE...`

use std::process::ExitCode;

use yunwei_rules::promql::Options;
use yunwei_rules::promql::promqltest::{Outcome, Report, run_script};

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: promqltest FILE...");
        return ExitCode::from(2);
    }
    let opts = Options::default();
    let mut total = Report::default();
    let mut broken = false;
    for file in &files {
        let src = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{file}: {e}");
                broken = true;
                continue;
            }
        };
        let report = match run_script(&src, &opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{file}:{e}");
                broken = true;
                continue;
            }
        };
        println!("{file}: {report}");
        for c in &report.cases {
            match &c.outcome {
                Outcome::Passed => {}
                Outcome::Failed(why) => {
                    println!("  FAIL {file}:{}: {}\n       {why}", c.line, c.expr)
                }
                Outcome::Skipped(why) => println!("  SKIP {file}:{}: {} ({why})", c.line, c.expr),
            }
        }
        total.cases.extend(report.cases);
    }
    println!("{total}");
    if broken || total.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
