//! Contract files: every good fixture and the shipped example load; every bad fixture
//! reports exactly the diagnostics in its `.errors` file (all of them, with file:line:col).
//! `BLESS=1` rewrites the `.errors` files from the current output (review the diff).

use std::path::Path;

use yunwei_sla::contract::{EXAMPLE_CONTRACT, parse_contract};

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

#[test]
fn documents_that_are_not_a_mapping() {
    for (text, want) in [
        ("~\n", "n.yml:1:1: a contract is a mapping, found a null"),
        (
            "- a\n",
            "n.yml:1:1: a contract is a mapping, found a sequence",
        ),
        ("", "n.yml:1:1: empty contract file"),
    ] {
        assert_eq!(parse_contract(text, "n.yml").unwrap_err().to_string(), want);
    }
}

mod never_panics {
    use proptest::prelude::*;
    use yunwei_sla::calendar::{Calendar, SHIPPED_CALENDAR};
    use yunwei_sla::contract::{EXAMPLE_CONTRACT, parse_contract};

    fn mutate(text: &str, at: usize, cut: usize, insert: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let at = at % (chars.len() + 1);
        let end = (at + cut).min(chars.len());
        let mut s: String = chars[..at].iter().collect();
        s.push_str(insert);
        s.extend(&chars[end..]);
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Damaged contract and calendar files give diagnostics with positions, never a panic.
        #[test]
        fn damaged_files_are_reported_not_panicked_on(
            at in 0usize..20_000, cut in 0usize..40, insert in "[ -~\n:{}\\[\\]&*!|>-]{0,12}",
        ) {
            let text = mutate(EXAMPLE_CONTRACT, at, cut, &insert);
            if let Err(e) = parse_contract(&text, "m.yml") {
                prop_assert!(!e.diagnostics.is_empty());
                prop_assert!(e.diagnostics.iter().all(|d| d.pos.is_some()), "{e}");
            }
            let text = mutate(SHIPPED_CALENDAR, at, cut, &insert);
            if let Err(e) = Calendar::parse(&text, "c.yml") {
                prop_assert!(!e.diagnostics.is_empty());
            }
        }
    }
}
