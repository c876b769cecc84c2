//! Size and nesting limits on PromQL text, checked before `promql-parser` sees it (the parser,
//! the checks after it and the evaluator recurse once per level, so a query of 60,000 `-`
//! would overflow the stack and abort the process), and on the parsed expression. The limits
//! are in [`yunwei_conf::limits`].

use promql_parser::parser::Expr;
use yunwei_conf::limits::{MAX_QUERY_BYTES, MAX_QUERY_DEPTH, MAX_QUERY_OPERATORS};

/// A cheap scan of the text: its length, bracket nesting plus runs of signs, and the number of
/// operators. Strings and comments are skipped. An error names the limit.
pub(crate) fn check_text(q: &str) -> Result<(), String> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(format!(
            "the query is {} bytes long; the limit is {MAX_QUERY_BYTES}",
            q.len()
        ));
    }
    let b = q.as_bytes();
    let mut depth = 0usize;
    // Signs in a row (`- - -x`), each a level of nesting, and the operator count.
    let mut signs = 0usize;
    let mut operators = 0usize;
    let too_deep =
        || format!("the query is nested more than {MAX_QUERY_DEPTH} levels deep (the limit)");
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                // Skip the string; a backslash escapes the next byte except in raw strings.
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                signs = 0;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                signs = 0;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                signs = 0;
            }
            b'+' | b'-' => {
                signs += 1;
                operators += 1;
            }
            b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' => {
                // `==`, `!=`, `<=`, `>=` (and matchers inside braces) count once.
                if !(c == b'=' && i > 0 && matches!(b[i - 1], b'=' | b'!' | b'<' | b'>')) {
                    operators += 1;
                }
                signs = 0;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b':' => {
                let start = i;
                while i + 1 < b.len()
                    && (b[i + 1].is_ascii_alphanumeric() || matches!(b[i + 1], b'_' | b':' | b'.'))
                {
                    i += 1;
                }
                let word = &q[start..=i];
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    operators += 1;
                }
                // `1e-5`: the sign after an exponent is part of the number; counting it as an
                // operator only makes the count higher.
                signs = 0;
            }
            _ => {}
        }
        if depth + signs > MAX_QUERY_DEPTH {
            return Err(too_deep());
        }
        if operators > MAX_QUERY_OPERATORS {
            return Err(format!(
                "the query has more than {MAX_QUERY_OPERATORS} operators (the limit)"
            ));
        }
        i += 1;
    }
    Ok(())
}

/// The parsed expression's depth (a selector or literal alone is 1), computed without
/// recursion.
pub(crate) fn expr_depth(e: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        match e {
            Expr::Aggregate(a) => {
                stack.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    stack.push((p, d + 1));
                }
            }
            Expr::Unary(u) => stack.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                stack.push((&b.lhs, d + 1));
                stack.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => stack.push((&p.expr, d + 1)),
            Expr::Subquery(s) => stack.push((&s.expr, d + 1)),
            Expr::Call(c) => stack.extend(c.args.args.iter().map(|a| (&**a, d + 1))),
            Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => {}
        }
    }
    deepest
}

/// Checks the parsed expression's depth against [`MAX_QUERY_DEPTH`].
pub(crate) fn check_expr(e: &Expr) -> Result<(), String> {
    let d = expr_depth(e);
    if d > MAX_QUERY_DEPTH {
        return Err(format!(
            "the query is nested {d} levels deep; the limit is {MAX_QUERY_DEPTH}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{EvalError, parse};

    fn refused(q: &str) -> String {
        match parse(q) {
            Err(EvalError::Parse(m)) => m,
            other => panic!("{q:.40}: {other:?}"),
        }
    }

    #[test]
    fn a_long_run_of_signs_is_refused_before_parsing() {
        // The query of issue 17: without the scan this overflows the stack in the parser.
        let m = refused(&format!("{}up", "-".repeat(60_000)));
        assert!(m.contains("nested more than 64 levels"), "{m}");
        assert!(parse(&format!("{}up", "-".repeat(30))).is_ok());
    }

    #[test]
    fn deep_brackets_calls_and_chains_are_refused() {
        for q in [
            format!("{}up{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("{}up{}", "abs(".repeat(65), ")".repeat(65)),
            format!(
                "{}up{}",
                "max_over_time((".repeat(30),
                ")[5m:1m])".repeat(30)
            ),
            format!("up{}", " or up".repeat(64)),
            format!("up{}", "+up".repeat(20_000)),
        ] {
            let m = refused(&q);
            assert!(m.contains("limit"), "{m}");
        }
        let m = refused(&"x".repeat(MAX_QUERY_BYTES + 1));
        assert!(m.contains("65537 bytes long; the limit is 65536"), "{m}");
        let m = refused(&format!("up{}", "+up".repeat(1001)));
        assert!(m.contains("more than 1000 operators"), "{m}");
    }

    #[test]
    fn real_queries_are_well_inside_the_limits() {
        for q in [
            r#"sum by (job) (rate(http_requests_total{code=~"5..", path!="/a-b-c"}[5m])) / sum by (job) (rate(http_requests_total[5m])) > 0.05"#,
            "1 - -1 + -(-2) * 1e-5",
            r#"up{a="((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((("} # ((((("#,
            &format!("{}up{}", "abs(".repeat(63), ")".repeat(63)),
            &format!("up{}", " or up".repeat(63)),
        ] {
            let e = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert!(expr_depth(&e) <= MAX_QUERY_DEPTH);
        }
        assert_eq!(expr_depth(&parse("up").unwrap()), 1);
        assert_eq!(expr_depth(&parse("-(a + b)").unwrap()), 4);
    }
}
