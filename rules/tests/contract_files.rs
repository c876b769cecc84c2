//! Contract files: every good fixture and the shipped example load; every bad fixture
//! reports exactly the diagnostics in its `.errors` file (all of them, with file:line:col).
//! `BLESS=1` rewrites the `.errors` files from the current output (review the diff).

use std::path::Path;

use yunwei_rules::contract::{EXAMPLE_CONTRACT, parse_contract};

fn fixtures(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/contracts")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn good_contracts_load() {
    for f in fixtures("good") {
        let text = std::fs::read_to_string(&f).unwrap();
        if let Err(e) = parse_contract(&text, &f.display().to_string()) {
            panic!("{e}");
        }
    }
    parse_contract(EXAMPLE_CONTRACT, "contract.example.yml").unwrap();
}

#[test]
fn bad_contracts_report_every_problem() {
    for f in fixtures("bad") {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let got = parse_contract(&text, &name).expect_err(&name).to_string();
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(f.with_extension("errors"), format!("{got}\n")).unwrap();
        }
        let expected = std::fs::read_to_string(f.with_extension("errors"))
            .unwrap_or_else(|_| panic!("{name}: no .errors file; got:\n{got}"));
        assert_eq!(got.trim_end(), expected.trim_end(), "{name}");
    }
}

#[test]
fn three_mistakes_in_one_run() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contracts/bad/three_mistakes.yml"),
    )
    .unwrap();
    let e = parse_contract(&text, "c.yml").unwrap_err();
    assert_eq!(e.diagnostics.len(), 3, "{e}");
    for d in &e.diagnostics {
        assert!(d.pos.is_some(), "{d}");
    }
}
