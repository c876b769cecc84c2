//! Series selectors for the read API, in PromQL syntax (`node_load1{instance=~"web-.*"}`),
//! parsed with `promql-parser` through `yunwei_rules::promql::parse`, which refuses text over
//! the size and nesting limits (`yunwei_conf::limits`) before the parser sees it.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;

/// One label matcher.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    pub name: String,
    inner: Matcher,
}

impl LabelMatcher {
    /// True when a label value (empty when the label is absent) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        self.inner.is_match(value)
    }
}

/// Parses a selector into an optional metric name and the remaining matchers.
pub fn parse(s: &str) -> Result<(Option<String>, Vec<LabelMatcher>), String> {
    let expr = yunwei_rules::promql::parse(s).map_err(|e| match e {
        yunwei_rules::promql::EvalError::Parse(m) => format!("invalid selector: {m}"),
        other => format!("invalid selector: {other}"),
    })?;
    let Expr::VectorSelector(vs) = expr else {
        return Err("expected a series selector such as node_load1{instance=\"web-01\"}".into());
    };
    if vs.offset.is_some() || vs.at.is_some() {
        return Err("offset and @ are not allowed in a series selector".into());
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err("`or` inside a selector is not supported here".into());
    }
    let mut name = vs.name.clone();
    let mut out = Vec::new();
    for m in vs.matchers.matchers {
        if m.name == "__name__" && matches!(m.op, MatchOp::Equal) {
            name = Some(m.value.clone());
            continue;
        }
        out.push(LabelMatcher {
            name: m.name.clone(),
            inner: m,
        });
    }
    Ok((name, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_and_matchers() {
        let (name, m) = parse(r#"node_load1{instance=~"web-.*",env!="dev"}"#).unwrap();
        assert_eq!(name.as_deref(), Some("node_load1"));
        assert_eq!(m.len(), 2);
        let by = |n: &str| m.iter().find(|x| x.name == n).unwrap().clone();
        assert!(by("instance").matches("web-01"));
        assert!(!by("instance").matches("db-01"));
        assert!(by("env").matches(""));
        assert!(!by("env").matches("dev"));
    }

    #[test]
    fn non_selectors_are_refused() {
        assert!(parse("rate(x[5m])").is_err());
        assert!(parse("{").is_err());
        let deep = parse(&format!("{}up", "-".repeat(60_000))).unwrap_err();
        assert!(deep.contains("nested more than 64 levels deep"), "{deep}");
        let (name, _) = parse(r#"{__name__="up"}"#).unwrap();
        assert_eq!(name.as_deref(), Some("up"));
    }
}
