//! A rule file with a syntax error, an unknown key and an unsupported function reports all
//! three, each with `file:line:col`, in one run.

use std::path::PathBuf;

use yunwei_rules::rulefile::{Pos, load_rule_files};

#[test]
fn syntax_error_unknown_key_and_unsupported_function_are_all_reported() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad.rules.yml");
    let err = load_rule_files(&[&path]).expect_err("the fixture is invalid");
    let shown = err.to_string();
    println!("{shown}");
    let origin = path.display().to_string();
    let expected = [
        (
            6,
            15,
            r#"group "bad", rule 1 "SyntaxError": could not parse expression: unclosed left parenthesis"#,
        ),
        (
            9,
            9,
            r#"group "bad", rule 2 "UnknownKey": unknown field "severty" in rule"#,
        ),
        (
            11,
            15,
            r#"group "bad", rule 3 "job:requests:count": unsupported PromQL: function histogram_count (native histograms)"#,
        ),
    ];
    assert_eq!(err.diagnostics.len(), expected.len(), "{shown}");
    for (d, (line, col, msg)) in err.diagnostics.iter().zip(expected) {
        assert_eq!(d.origin, origin);
        assert_eq!(d.pos, Some(Pos { line, col }), "{d}");
        assert!(
            d.to_string()
                .starts_with(&format!("{origin}:{line}:{col}: {msg}")),
            "{d}\n  should start with {origin}:{line}:{col}: {msg}"
        );
    }
}

#[test]
fn unreadable_files_are_reported_with_the_others() {
    let bad = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad.rules.yml");
    let missing = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/missing.yml");
    let err = load_rule_files(&[&bad, &missing]).expect_err("both are bad");
    assert_eq!(err.diagnostics.len(), 4, "{err}");
    let last = err.diagnostics.last().unwrap();
    assert_eq!(last.pos, None);
    assert!(
        last.to_string()
            .contains("missing.yml: cannot read rule file"),
        "{last}"
    );
}
