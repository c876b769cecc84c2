//! A runner for Prometheus's PromQL test scripts (`promql/testdata/*.test`, v2.42 format).
//!
//! A script is a list of commands separated by blank lines (`#` starts a comment line):
//!
//! ```text
//! load 5m
//!     http_requests{job="api", instance="0"}  0+10x10 _ stale 1 2x3
//! eval instant at 50m sum(http_requests)
//!     {} 100
//! eval_ordered instant at 50m sort(http_requests)
//! eval_fail instant at 0m label_replace(x, "dst", "", "src", "(.*")
//! clear
//! ```
//!
//! Each `eval*` command is one case. Like Prometheus's own runner, a case that succeeds as an
//! instant query is also run as a range query from one minute before to one minute after, and
//! the middle step must give the same result (except for `eval_ordered`). Values compare with
//! a relative tolerance of 1e-6. A case is skipped only when it needs a feature the engine does
//! not support (native histograms, or an expression refused with [`EvalError::Unsupported`]),
//! and the reason is kept.
//!
//! The module does no I/O: callers read the files and pass their text.

use std::collections::HashMap;
use std::fmt;

use regex::Regex;

use super::functions::parse_go_float;
use super::storage::MemStorage;
use super::value::{Labels, METRIC_NAME, Value, format_value, stale_nan};
use super::{EvalError, Options, check_supported, eval_instant, eval_range, parse};

/// What kind of `eval` command a case is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseKind {
    /// `eval`: the result must match.
    Eval,
    /// `eval_fail`: evaluation must fail.
    Fail,
    /// `eval_ordered`: the result must match in order.
    Ordered,
}

/// The expected result of a case.
#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// A scalar.
    Scalar(f64),
    /// An instant vector (possibly empty).
    Vector(Vec<(Labels, f64)>),
}

/// One `eval` command.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalCase {
    /// 1-based line of the command.
    pub line: usize,
    /// The PromQL expression.
    pub expr: String,
    /// Evaluation time in milliseconds.
    pub at_ms: i64,
    /// Command kind.
    pub kind: CaseKind,
    /// Expected result.
    pub expected: Expected,
}

/// A series defined by a `load` command: labels and one optional value per interval.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Values at 0, gap, 2·gap, ...; `None` is an omitted sample (`_`).
    pub values: Vec<Option<f64>>,
}

/// A command of a test script.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `load <gap>` and its series.
    Load {
        /// 1-based line of the command.
        line: usize,
        /// Interval between values in milliseconds.
        gap_ms: i64,
        /// The series.
        series: Vec<LoadSeries>,
        /// Set when the block uses a feature the engine does not support.
        unsupported: Option<String>,
    },
    /// `clear`: drop all data.
    Clear,
    /// An `eval` command.
    Eval(EvalCase),
}

/// A script that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ScriptError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ScriptError {
    ScriptError {
        line,
        message: message.into(),
    }
}

/// The outcome of one case.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The engine gave the expected result.
    Passed,
    /// It did not; the message says how.
    Failed(String),
    /// The case needs an unsupported feature, named here.
    Skipped(String),
}

/// One case and its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    /// 1-based line of the `eval` command.
    pub line: usize,
    /// The expression.
    pub expr: String,
    /// What happened.
    pub outcome: Outcome,
}

/// The outcomes of one script.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Every case, in script order.
    pub cases: Vec<CaseResult>,
}

impl Report {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }

    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Cases that were skipped.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }
}

impl fmt::Display for Report {
    /// `N passed, N failed, N skipped`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

pub use yunwei_conf::parse_duration_ms;

/// Parses a test script.
pub fn parse_script(src: &str) -> Result<Vec<Command>, ScriptError> {
    let lines: Vec<&str> = src
        .lines()
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }
        })
        .collect();
    let eval_re = Regex::new(r"^eval(?:_(fail|ordered))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
        .map_err(|e| err(0, e.to_string()))?;
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let lineno = i + 1;
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match word.as_str() {
            "clear" => {
                cmds.push(Command::Clear);
                i += 1;
            }
            "load" => {
                let gap = l[4..].trim();
                let gap_ms = parse_duration_ms(gap)
                    .ok_or_else(|| err(lineno, format!("invalid load interval {gap:?}")))?;
                let mut series = Vec::new();
                let mut unsupported = None;
                i += 1;
                while i < lines.len() && !lines[i].is_empty() {
                    if lines[i].contains("{{") {
                        unsupported = Some("native histograms".to_string());
                    } else {
                        let (labels, values) =
                            parse_series_desc(lines[i]).map_err(|m| err(i + 1, m))?;
                        series.push(LoadSeries { labels, values });
                    }
                    i += 1;
                }
                cmds.push(Command::Load {
                    line: lineno,
                    gap_ms,
                    series,
                    unsupported,
                });
            }
            w if w.starts_with("eval") => {
                let caps = eval_re
                    .captures(l)
                    .ok_or_else(|| err(lineno, format!("invalid eval command {l:?}")))?;
                let kind = match caps.get(1).map(|m| m.as_str()) {
                    Some("fail") => CaseKind::Fail,
                    Some("ordered") => CaseKind::Ordered,
                    _ => CaseKind::Eval,
                };
                let at = caps.get(2).map_or("0", |m| m.as_str());
                let at_ms = parse_duration_ms(at)
                    .ok_or_else(|| err(lineno, format!("invalid evaluation time {at:?}")))?;
                let expr = caps.get(3).map_or("", |m| m.as_str()).to_string();
                let mut expected = Expected::Vector(Vec::new());
                let mut samples = Vec::new();
                i += 1;
                while i < lines.len() && !lines[i].is_empty() {
                    if let Some(v) = parse_go_float(lines[i]) {
                        expected = Expected::Scalar(v);
                        i += 1;
                        break;
                    }
                    let (labels, values) =
                        parse_series_desc(lines[i]).map_err(|m| err(i + 1, m))?;
                    if values.len() != 1 {
                        return Err(err(
                            i + 1,
                            "expecting multiple values in instant evaluation not allowed",
                        ));
                    }
                    let v = values[0]
                        .ok_or_else(|| err(i + 1, "omitted value in an expected result"))?;
                    samples.push((labels, v));
                    i += 1;
                }
                if !samples.is_empty() {
                    expected = Expected::Vector(samples);
                }
                cmds.push(Command::Eval(EvalCase {
                    line: lineno,
                    expr,
                    at_ms,
                    kind,
                    expected,
                }));
            }
            _ => return Err(err(lineno, format!("invalid command {l:?}"))),
        }
    }
    Ok(cmds)
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }

    fn quoted(&mut self) -> Result<String, String> {
        let q = self.peek().ok_or("expected a quoted string")?;
        if !matches!(q, '"' | '\'' | '`') {
            return Err(format!("expected a quoted string at {:?}", self.rest()));
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or("unterminated string")?;
            self.pos += c.len_utf8();
            if c == q {
                return Ok(out);
            }
            if c == '\\' && q != '`' {
                let e = self.peek().ok_or("unterminated escape")?;
                self.pos += e.len_utf8();
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' | 'x' => {
                        let n = if e == 'u' { 4 } else { 2 };
                        let hex = self.rest().get(..n).ok_or("short escape")?;
                        let code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                        out.push(char::from_u32(code).ok_or("invalid escape")?);
                        self.pos += n;
                    }
                    other => out.push(other),
                }
            } else {
                out.push(c);
            }
        }
    }
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses a series description: `metric{a="b"} 1 2+3x4 _ _x2 stale`.
pub fn parse_series_desc(line: &str) -> Result<(Labels, Vec<Option<f64>>), String> {
    let mut c = Cursor { s: line, pos: 0 };
    c.skip_ws();
    let mut labels = Labels::new();
    if c.peek()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
    {
        let name = c.take_while(is_metric_char);
        labels.set(METRIC_NAME, name);
    }
    if c.peek() == Some('{') {
        c.pos += 1;
        loop {
            c.skip_ws();
            match c.peek() {
                Some('}') => {
                    c.pos += 1;
                    break;
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let name = c.take_while(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if name.is_empty() {
                return Err(format!("expected a label name at {:?}", c.rest()));
            }
            c.skip_ws();
            if c.peek() != Some('=') {
                return Err(format!("expected '=' after label {name}"));
            }
            c.pos += 1;
            c.skip_ws();
            let value = c.quoted()?;
            labels.set(name, value);
            c.skip_ws();
            if c.peek() == Some(',') {
                c.pos += 1;
            }
        }
    }
    if labels.is_empty() && !line.contains('{') {
        return Err(format!("expected a metric at {line:?}"));
    }
    let mut values = Vec::new();
    for item in c.rest().split_whitespace() {
        values.extend(parse_series_item(item)?);
    }
    Ok((labels, values))
}

/// Splits a leading number (`-1.5e+3`, `Inf`, `NaN`) or `stale` off `s`.
fn lex_value(s: &str) -> Option<(f64, &str)> {
    if let Some(rest) = s.strip_prefix("stale") {
        return Some((stale_nan(), rest));
    }
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let word = &s[i..];
    for w in ["Inf", "inf", "NaN", "nan"] {
        if word.starts_with(w) {
            let end = i + w.len();
            return parse_go_float(&s[..end]).map(|v| (v, &s[end..]));
        }
    }
    let digits_start = i;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    s[..i].parse().ok().map(|v| (v, &s[i..]))
}

fn parse_times(s: &str) -> Result<u64, String> {
    s.strip_prefix('x')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("invalid repetition {s:?}"))
}

/// Expands one item of a series description.
fn parse_series_item(item: &str) -> Result<Vec<Option<f64>>, String> {
    if item == "_" {
        return Ok(vec![None]);
    }
    if let Some(rest) = item.strip_prefix('_') {
        return Ok(vec![None; parse_times(rest)? as usize]);
    }
    let (v, rest) = lex_value(item).ok_or_else(|| format!("invalid value {item:?}"))?;
    if rest.is_empty() {
        return Ok(vec![Some(v)]);
    }
    if rest.starts_with('x') {
        return Ok(vec![Some(v); parse_times(rest)? as usize + 1]);
    }
    let (delta, rest) = lex_value(rest)
        .filter(|_| rest.starts_with(['+', '-']))
        .ok_or_else(|| format!("invalid value {item:?}"))?;
    let n = parse_times(rest)?;
    let mut out = Vec::with_capacity(n as usize + 1);
    let mut cur = v;
    for _ in 0..=n {
        out.push(Some(cur));
        cur += delta;
    }
    Ok(out)
}

/// Go's `almostEqual` from Prometheus's test runner: relative error below 1e-6, NaN equals NaN.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 0.000_001;
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / (a.abs() + b.abs()) < EPSILON
}

fn describe(v: &Value) -> String {
    match v {
        Value::Scalar(s) => format!("scalar {}", format_value(*s)),
        Value::InstantVector(vec) if vec.is_empty() => "empty vector".into(),
        Value::InstantVector(vec) => {
            let items: Vec<String> = vec
                .iter()
                .take(6)
                .map(|s| format!("{} {}", s.labels, format_value(s.v)))
                .collect();
            let more = if vec.len() > 6 {
                format!(" … ({} in all)", vec.len())
            } else {
                String::new()
            };
            format!("vector [{}]{more}", items.join(", "))
        }
        Value::RangeVector(m) => format!("range vector of {} series", m.len()),
        Value::String(s) => format!("string {s:?}"),
    }
}

/// Compares a result with the expectation, as Prometheus's `compareResult` does.
pub fn compare(got: &Value, expected: &Expected, ordered: bool) -> Result<(), String> {
    match (got, expected) {
        (Value::Scalar(v), Expected::Scalar(e)) => {
            if almost_equal(*e, *v) {
                Ok(())
            } else {
                Err(format!(
                    "expected scalar {} but got {}",
                    format_value(*e),
                    format_value(*v)
                ))
            }
        }
        (Value::InstantVector(vec), Expected::Vector(exp)) => {
            let mut want: HashMap<&Labels, (usize, f64)> = HashMap::new();
            for (pos, (l, v)) in exp.iter().enumerate() {
                want.insert(l, (pos, *v));
            }
            for (pos, s) in vec.iter().enumerate() {
                let Some(&(epos, ev)) = want.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result ({})",
                        s.labels,
                        describe(got)
                    ));
                };
                if ordered && epos != pos {
                    return Err(format!(
                        "expected metric {} at position {} but was at {}",
                        s.labels,
                        epos + 1,
                        pos + 1
                    ));
                }
                if !almost_equal(ev, s.v) {
                    return Err(format!(
                        "expected {} for {} but got {}",
                        format_value(ev),
                        s.labels,
                        format_value(s.v)
                    ));
                }
            }
            if vec.len() != want.len() {
                let missing: Vec<String> = want
                    .keys()
                    .filter(|l| !vec.iter().any(|s| &&s.labels == *l))
                    .map(|l| l.to_string())
                    .collect();
                return Err(format!(
                    "expected {} samples but got {}; missing: {}",
                    want.len(),
                    vec.len(),
                    missing.join(", ")
                ));
            }
            Ok(())
        }
        (Value::RangeVector(_), _) => Err("received range result on instant evaluation".into()),
        (got, Expected::Scalar(e)) => Err(format!(
            "expected scalar {} but got {}",
            format_value(*e),
            describe(got)
        )),
        (got, Expected::Vector(_)) => Err(format!("expected a vector but got {}", describe(got))),
    }
}

/// Runs one case against `storage`.
pub fn run_case(storage: &MemStorage, case: &EvalCase, opts: &Options) -> Outcome {
    let expr = match parse(&case.expr) {
        Ok(e) => e,
        // A parse error is an error too.
        Err(_) if case.kind == CaseKind::Fail => return Outcome::Passed,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if let Err(EvalError::Unsupported(reason)) = check_supported(&expr) {
        return Outcome::Skipped(reason);
    }
    let got = match (eval_instant(&expr, case.at_ms, storage, opts), case.kind) {
        (Err(EvalError::Unsupported(reason)), _) => return Outcome::Skipped(reason),
        (Err(_), CaseKind::Fail) => return Outcome::Passed,
        (Err(e), _) => return Outcome::Failed(format!("error: {e}")),
        (Ok(v), CaseKind::Fail) => {
            return Outcome::Failed(format!("expected an error but got {}", describe(&v)));
        }
        (Ok(v), _) => v,
    };
    if let Err(m) = compare(&got, &case.expected, case.kind == CaseKind::Ordered) {
        return Outcome::Failed(m);
    }
    // Like Prometheus's runner: the same query as a range query must agree at the middle step.
    let matrix = match eval_range(
        &expr,
        case.at_ms - 60_000,
        case.at_ms + 60_000,
        60_000,
        storage,
        opts,
    ) {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(format!("range mode: error: {e}")),
    };
    if case.kind == CaseKind::Ordered {
        return Outcome::Passed;
    }
    let mut vec = Vec::new();
    for s in matrix {
        if let Some(&(t, v)) = s.samples.iter().find(|(t, _)| *t == case.at_ms) {
            vec.push(super::Sample {
                labels: s.labels,
                t_ms: t,
                v,
            });
        }
    }
    let as_value = match got {
        Value::Scalar(_) => match vec.first() {
            Some(s) => Value::Scalar(s.v),
            None => return Outcome::Failed("range mode: no scalar at the evaluation time".into()),
        },
        _ => Value::InstantVector(vec),
    };
    match compare(&as_value, &case.expected, false) {
        Ok(()) => Outcome::Passed,
        Err(m) => Outcome::Failed(format!("range mode: {m}")),
    }
}

/// Runs every case of a parsed script.
pub fn run_commands(cmds: &[Command], opts: &Options) -> Report {
    let mut storage = MemStorage::new();
    let mut unsupported: Option<String> = None;
    let mut report = Report::default();
    for cmd in cmds {
        match cmd {
            Command::Clear => {
                storage.clear();
                unsupported = None;
            }
            Command::Load {
                gap_ms,
                series,
                unsupported: u,
                ..
            } => {
                if let Some(u) = u {
                    unsupported = Some(u.clone());
                }
                for s in series {
                    let samples = s
                        .values
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| (i as i64 * gap_ms, v)));
                    storage.add_samples(&s.labels, samples);
                }
            }
            Command::Eval(case) => {
                let outcome = match &unsupported {
                    Some(reason) => Outcome::Skipped(reason.clone()),
                    None => run_case(&storage, case, opts),
                };
                report.cases.push(CaseResult {
                    line: case.line,
                    expr: case.expr.clone(),
                    outcome,
                });
            }
        }
    }
    report
}

/// Parses and runs a script.
pub fn run_script(src: &str, opts: &Options) -> Result<Report, ScriptError> {
    Ok(run_commands(&parse_script(src)?, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::is_stale_nan;

    #[test]
    fn series_notation_expands() {
        let (l, v) =
            parse_series_desc(r#"m{a="b", c="d"} 0+10x2 _ stale 1x2 8000-10x1 _x2 9.9e+307"#)
                .unwrap();
        assert_eq!(l.to_string(), r#"m{a="b", c="d"}"#);
        let got: Vec<String> = v
            .iter()
            .map(|x| match x {
                None => "_".into(),
                Some(f) if is_stale_nan(*f) => "stale".into(),
                Some(f) => f.to_string(),
            })
            .collect();
        assert_eq!(
            got[..12],
            [
                "0", "10", "20", "_", "stale", "1", "1", "1", "8000", "7990", "_", "_"
            ]
        );
        assert_eq!(v[12], Some(9.9e307));
    }

    #[test]
    fn script_runs_and_counts() {
        let src = "load 5m\n  m{a=\"1\"} 0+1x10\n\neval instant at 50m m\n  m{a=\"1\"} 10\n\n\
                   eval instant at 50m m\n  m{a=\"1\"} 11\n\neval_fail instant at 0m m + on(a) group_left m\n\n\
                   eval instant at 0m histogram_count(m)\n";
        let report = run_script(src, &Options::default()).unwrap();
        assert_eq!(
            (report.passed(), report.failed(), report.skipped()),
            (1, 2, 1),
            "{report:#?}"
        );
        assert_eq!(report.to_string(), "1 passed, 2 failed, 1 skipped");
    }

    #[test]
    fn tolerance_is_relative() {
        assert!(almost_equal(1.0, 1.0000001));
        assert!(!almost_equal(1.0, 1.00001));
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(!almost_equal(0.0, 1e-300));
    }
}
