//! Load and abuse at once (issue 17): a short run of `abuse-bench` — steady ingest from
//! simulated agents while the hostile callers of the issue run (deep selector, huge login
//! names, parallel login guesses, huge periods, slow clients, oversized bodies) — must lose no
//! batch and leave the server answering. No timing is asserted; the figures are printed, and
//! `BENCHMARKS.md` has those of a full run.

use std::process::Command;

#[test]
fn ingest_loses_nothing_and_the_server_stays_up_while_hostile_callers_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_abuse-bench"))
        .args([
            "--agents",
            "20",
            "--interval-secs",
            "1",
            "--samples",
            "20",
            "--duration-secs",
            "5",
            "--warmup-secs",
            "1",
            "--slow-clients",
            "8",
            "--guessers",
            "8",
            "--read-timeout-secs",
            "2",
        ])
        .output()
        .expect("running abuse-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "abuse-bench failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("no batch lost"), "{stdout}");
    // Every kind of abuse was actually tried.
    for kind in [
        "deep_selector",
        "huge_login_name",
        "login_guess",
        "huge_period",
        "year_assessment",
        "oversized_ingest",
        "oversized_login",
        "slow_client",
    ] {
        assert!(
            stdout.contains(&format!("| {kind} |")),
            "{kind} missing:\n{stdout}"
        );
    }
}
