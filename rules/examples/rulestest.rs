//! Runs promtool-format rule unit tests through yunwei's runner, printing what
//! `promtool test rules` prints; exits 1 if any file fails.
//!
//! `cargo run -p yunwei-rules --example rulestest -- FILE...`

use std::process::ExitCode;

use yunwei_rules::unittest::run_unit_test_file;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: rulestest FILE...");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for f in &files {
        let outcome = run_unit_test_file(f);
        print!("{}", outcome.output);
        ok &= outcome.passed;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
