//! `yunwei-server contract check`: the shipped example passes; a contract with three mistakes
//! fails with all three as file:line:col in one run; a missing calendar file is reported.

use std::path::Path;
use std::process::Command;

fn check(files: &[&Path]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_yunwei-server"))
        .arg("contract")
        .arg("check")
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sla_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sla"))
}

#[test]
fn example_contract_passes() {
    let (ok, out, err) = check(&[&sla_dir().join("examples/contract.example.yml")]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("ok (contract gov-cloud-om-2026, 3 systems)"),
        "{out}"
    );
}

#[test]
fn three_mistakes_are_all_reported() {
    let bad = sla_dir().join("tests/contracts/bad/three_mistakes.yml");
    let good = sla_dir().join("examples/contract.example.yml");
    let (ok, out, err) = check(&[&bad, &good]);
    assert!(!ok);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    for (line, pos) in lines.iter().zip(["10:5", "12:5", "15:47"]) {
        assert!(
            line.contains(&format!("three_mistakes.yml:{pos}: ")),
            "{line}"
        );
    }
    // The good file after the bad one is still checked.
    assert!(out.contains("contract.example.yml: ok"), "{out}");
}

#[test]
fn calendar_files_are_loaded_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(sla_dir().join("examples/contract.example.yml")).unwrap();
    let contract = dir.path().join("c.yml");
    std::fs::write(
        &contract,
        example.replace("files: []", "files: [cal-2027.yml]"),
    )
    .unwrap();
    let (ok, _, err) = check(&[&contract]);
    assert!(!ok);
    assert!(
        err.contains("cal-2027.yml") && err.contains("calendar file named by"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("cal-2027.yml"),
        "2027:\n  workdays: [2027-01-06]\n",
    )
    .unwrap();
    let (ok, _, err) = check(&[&contract]);
    assert!(!ok);
    assert!(
        err.contains("cal-2027.yml:2:14: make-up working day 2027-01-06 is a Wed"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("cal-2027.yml"),
        "2027:\n  workdays: [2027-01-09]\n",
    )
    .unwrap();
    let (ok, out, err) = check(&[&contract]);
    assert!(ok, "{out}{err}");
}
