//! Prometheus rule files: parsing and strict validation.
//!
//! A rule file is YAML:
//!
//! ```yaml
//! groups:
//!   - name: host            # unique in the file
//!     interval: 1m          # optional; the caller's default otherwise
//!     limit: 0              # optional; most alerts / series a rule may produce (0: no limit)
//!     rules:
//!       - alert: HostDown   # or `record: level:metric:operation`
//!         expr: up == 0
//!         for: 5m
//!         keep_firing_for: 10m
//!         labels: {severity: critical}
//!         annotations: {summary: "{{ $labels.instance }} is down"}
//! ```
//!
//! The text is first turned into raw types that remember the position of every key and value
//! (unknown keys and wrong types are collected there), then validated into [`RuleFile`]:
//! PromQL is parsed and checked against what the engine evaluates, templates are compiled,
//! names and durations are checked. Every problem is collected, each as a [`Diagnostic`]
//! printed `file:line:col: group "g", rule 3 "Name": message`.
//!
//! [`parse_rule_file`] takes the text and its origin; [`load_rule_files`] is the one function
//! here that reads files.

use std::fmt;
use std::path::Path;

use promql_parser::parser::Expr;

use crate::promql::{self, EvalError, Labels, METRIC_NAME, promqltest::parse_duration_ms};
use crate::template::{self, Template};
use yunwei_conf::yaml::{self, Kind, Node};

pub use yunwei_conf::{Diagnostic, Pos};
use yunwei_proto::{valid_label_name, valid_metric_name};

/// Every problem found in one or more rule files, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RuleFileErrors {
    /// The problems.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for RuleFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A validated rule file.
#[derive(Clone, Debug)]
pub struct RuleFile {
    /// Where the text came from.
    pub origin: String,
    /// The groups, in file order.
    pub groups: Vec<RuleGroup>,
}

/// A validated rule group.
#[derive(Clone, Debug)]
pub struct RuleGroup {
    /// The group's name, unique within its file.
    pub name: String,
    /// The file the group came from.
    pub origin: String,
    /// Evaluation interval; `None` means the caller's default.
    pub interval_ms: Option<i64>,
    /// Most alerts (alerting rule) or series (recording rule) one rule may produce; 0: no limit.
    pub limit: usize,
    /// The rules, in evaluation order.
    pub rules: Vec<Rule>,
}

/// A rule.
#[derive(Clone, Debug)]
pub enum Rule {
    /// An alerting rule.
    Alerting(AlertingRule),
    /// A recording rule.
    Recording(RecordingRule),
}

impl Rule {
    /// The alert name or the recorded metric name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Alerting(a) => &a.name,
            Rule::Recording(r) => &r.name,
        }
    }

    /// The PromQL expression as written.
    pub fn expr(&self) -> &str {
        match self {
            Rule::Alerting(a) => &a.expr,
            Rule::Recording(r) => &r.expr,
        }
    }

    /// The parsed expression.
    pub fn parsed(&self) -> &promql::Prepared {
        match self {
            Rule::Alerting(a) => &a.parsed,
            Rule::Recording(r) => &r.parsed,
        }
    }

    /// The parsed expression, to change its marks ([`share_subexpressions`]).
    pub fn parsed_mut(&mut self) -> &mut promql::Prepared {
        match self {
            Rule::Alerting(a) => &mut a.parsed,
            Rule::Recording(r) => &mut r.parsed,
        }
    }
}

/// A validated alerting rule.
#[derive(Clone, Debug)]
pub struct AlertingRule {
    /// The alert name (`alertname` label).
    pub name: String,
    /// The expression as written.
    pub expr: String,
    /// The parsed expression, with its selectors' matchers compiled once.
    pub parsed: promql::Prepared,
    /// How long an alert stays pending before it fires.
    pub for_ms: i64,
    /// How long an alert keeps firing after its condition cleared.
    pub keep_firing_for_ms: i64,
    /// Labels added to each alert, sorted by name; values are templates.
    pub labels: Vec<(String, Template)>,
    /// Annotations, sorted by name; values are templates.
    pub annotations: Vec<(String, Template)>,
}

/// A validated recording rule.
#[derive(Clone, Debug)]
pub struct RecordingRule {
    /// The recorded metric name.
    pub name: String,
    /// The expression as written.
    pub expr: String,
    /// The parsed expression, with its selectors' matchers compiled once.
    pub parsed: promql::Prepared,
    /// Labels set on every recorded series.
    pub labels: Labels,
}

// ---------------------------------------------------------------------------------------------
// Raw types: what the YAML says, with positions.

#[derive(Clone, Debug)]
struct Sp<T> {
    v: T,
    pos: Pos,
}

#[derive(Debug, Default)]
struct RawGroup {
    pos: Pos,
    name: Option<Sp<String>>,
    interval: Option<Sp<String>>,
    limit: Option<Sp<String>>,
    rules: Vec<RawRule>,
    problems: Vec<(Pos, String)>,
}

#[derive(Debug, Default)]
struct RawRule {
    pos: Pos,
    record: Option<Sp<String>>,
    alert: Option<Sp<String>>,
    expr: Option<Sp<String>>,
    for_: Option<Sp<String>>,
    keep_firing_for: Option<Sp<String>>,
    labels: Vec<(Sp<String>, Sp<String>)>,
    annotations: Vec<(Sp<String>, Sp<String>)>,
    /// Whether an `expr` key is present (its value may have had the wrong type).
    has_expr_key: bool,
    problems: Vec<(Pos, String)>,
}

const FILE_KEYS: &[&str] = &["groups"];
const GROUP_KEYS: &[&str] = &["name", "interval", "limit", "rules"];
const RULE_KEYS: &[&str] = &[
    "record",
    "alert",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

/// Iterates a mapping's entries with string keys, reporting unknown and repeated keys.
fn entries<'n>(
    node: &'n Node,
    known: &[&str],
    what: &str,
    problems: &mut Vec<(Pos, String)>,
) -> Vec<(&'n str, &'n Node)> {
    let Kind::Map(items) = &node.kind else {
        problems.push((
            node.pos,
            format!("{what} must be a mapping, not a {}", node.type_name()),
        ));
        return Vec::new();
    };
    let mut out: Vec<(&str, &Node)> = Vec::new();
    for (k, v) in items {
        let Some(key) = k.scalar() else {
            problems.push((k.pos, format!("{what} has a key that is not a string")));
            continue;
        };
        if !known.contains(&key) {
            problems.push((
                k.pos,
                format!(
                    "unknown field {key:?} in {what} (expected one of: {})",
                    known.join(", ")
                ),
            ));
            continue;
        }
        if out.iter().any(|(seen, _)| *seen == key) {
            problems.push((k.pos, format!("field {key:?} is given twice")));
            continue;
        }
        out.push((key, v));
    }
    out
}

fn string_field(key: &str, v: &Node, problems: &mut Vec<(Pos, String)>) -> Option<Sp<String>> {
    if v.is_null() {
        return None;
    }
    match v.scalar() {
        Some(s) => Some(Sp {
            v: s.to_string(),
            pos: v.pos,
        }),
        None => {
            problems.push((
                v.pos,
                format!("field {key:?} must be a string, not a {}", v.type_name()),
            ));
            None
        }
    }
}

fn string_map(
    key: &str,
    v: &Node,
    problems: &mut Vec<(Pos, String)>,
) -> Vec<(Sp<String>, Sp<String>)> {
    if v.is_null() {
        return Vec::new();
    }
    let Kind::Map(items) = &v.kind else {
        problems.push((
            v.pos,
            format!("field {key:?} must be a mapping, not a {}", v.type_name()),
        ));
        return Vec::new();
    };
    let mut out: Vec<(Sp<String>, Sp<String>)> = Vec::new();
    for (k, val) in items {
        let Some(name) = k.scalar() else {
            problems.push((k.pos, format!("{key} must have string keys")));
            continue;
        };
        if out.iter().any(|(n, _)| n.v == name) {
            problems.push((k.pos, format!("{key} key {name:?} is given twice")));
            continue;
        }
        let value = if val.is_null() {
            String::new()
        } else if let Some(s) = val.scalar() {
            s.to_string()
        } else {
            problems.push((
                val.pos,
                format!(
                    "{key} value for {name:?} must be a string, not a {}",
                    val.type_name()
                ),
            ));
            continue;
        };
        out.push((
            Sp {
                v: name.to_string(),
                pos: k.pos,
            },
            Sp {
                v: value,
                pos: val.pos,
            },
        ));
    }
    out
}

fn raw_rule(node: &Node) -> RawRule {
    let mut r = RawRule {
        pos: node.pos,
        ..RawRule::default()
    };
    let mut problems = Vec::new();
    for (key, v) in entries(node, RULE_KEYS, "rule", &mut problems) {
        match key {
            "record" => r.record = string_field(key, v, &mut problems),
            "alert" => r.alert = string_field(key, v, &mut problems),
            "expr" => {
                r.has_expr_key = !v.is_null();
                r.expr = string_field(key, v, &mut problems);
            }
            "for" => r.for_ = string_field(key, v, &mut problems),
            "keep_firing_for" => r.keep_firing_for = string_field(key, v, &mut problems),
            "labels" => r.labels = string_map(key, v, &mut problems),
            "annotations" => r.annotations = string_map(key, v, &mut problems),
            _ => {}
        }
    }
    r.problems = problems;
    r
}

fn raw_group(node: &Node) -> RawGroup {
    let mut g = RawGroup {
        pos: node.pos,
        ..RawGroup::default()
    };
    let mut problems = Vec::new();
    for (key, v) in entries(node, GROUP_KEYS, "group", &mut problems) {
        match key {
            "name" => g.name = string_field(key, v, &mut problems),
            "interval" => g.interval = string_field(key, v, &mut problems),
            "limit" => g.limit = string_field(key, v, &mut problems),
            "rules" => match &v.kind {
                Kind::Seq(items) => g.rules = items.iter().map(raw_rule).collect(),
                _ if v.is_null() => {}
                _ => problems.push((
                    v.pos,
                    format!(
                        "field \"rules\" must be a sequence, not a {}",
                        v.type_name()
                    ),
                )),
            },
            _ => {}
        }
    }
    g.problems = problems;
    g
}

// ---------------------------------------------------------------------------------------------
// Validation

struct Sink<'a> {
    origin: &'a str,
    out: Vec<Diagnostic>,
}

impl Sink<'_> {
    fn push(&mut self, pos: Pos, message: String) {
        self.out.push(Diagnostic {
            origin: self.origin.to_string(),
            pos: Some(pos),
            message,
        });
    }
}

fn duration(field: &str, d: &Option<Sp<String>>, errs: &mut Vec<(Pos, String)>) -> i64 {
    let Some(d) = d else { return 0 };
    match parse_duration_ms(&d.v) {
        Some(ms) => ms,
        None => {
            errs.push((
                d.pos,
                format!("invalid duration {:?} for field {field:?}", d.v),
            ));
            0
        }
    }
}

/// Parses and checks a PromQL expression the way a rule uses it: syntax, then the constructs
/// the engine evaluates. The message names the construct.
pub fn check_expr(expr: &str) -> Result<Expr, String> {
    let parsed =
        promql::parse(expr).map_err(|e| format!("could not parse expression: {}", unwrap(e)))?;
    match promql::check_supported(&parsed) {
        Ok(()) => Ok(parsed),
        Err(EvalError::Unsupported(what)) => Err(format!("unsupported PromQL: {what}")),
        Err(e) => Err(format!("invalid expression: {e}")),
    }
}

fn unwrap(e: EvalError) -> String {
    match e {
        EvalError::Parse(m) => m,
        other => other.to_string(),
    }
}

fn templates(
    what: &str,
    items: &[(Sp<String>, Sp<String>)],
    errs: &mut Vec<(Pos, String)>,
) -> Vec<(String, Template)> {
    let mut out = Vec::new();
    for (k, v) in items {
        match template::compile(&v.v) {
            Ok(t) => out.push((k.v.clone(), t)),
            Err(e) => errs.push((v.pos, format!("{what} {:?}: {e}", k.v))),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn validate_rule(r: &RawRule) -> Result<Rule, Vec<(Pos, String)>> {
    let mut errs = r.problems.clone();
    let name = match (&r.record, &r.alert) {
        (Some(_), Some(a)) => {
            errs.push((a.pos, "only one of 'record' and 'alert' must be set".into()));
            None
        }
        (None, None) => {
            errs.push((r.pos, "one of 'record' or 'alert' must be set".into()));
            None
        }
        (Some(n), None) | (None, Some(n)) => Some(n),
    };
    let parsed = match &r.expr {
        None if r.has_expr_key => None,
        None => {
            errs.push((r.pos, "field 'expr' must be set in rule".into()));
            None
        }
        Some(e) if e.v.trim().is_empty() => {
            errs.push((e.pos, "field 'expr' must be set in rule".into()));
            None
        }
        Some(e) => match check_expr(&e.v) {
            Ok(p) => Some(p),
            Err(m) => {
                errs.push((e.pos, m));
                None
            }
        },
    };
    let for_ms = duration("for", &r.for_, &mut errs);
    let keep_ms = duration("keep_firing_for", &r.keep_firing_for, &mut errs);
    for (k, _) in &r.labels {
        if !valid_label_name(&k.v) || k.v == METRIC_NAME {
            errs.push((k.pos, format!("invalid label name: {}", k.v)));
        }
    }
    for (k, _) in &r.annotations {
        if !valid_label_name(&k.v) {
            errs.push((k.pos, format!("invalid annotation name: {}", k.v)));
        }
    }
    // Templates are checked for alerting rules, as Prometheus does.
    let (labels, annotations) = if r.alert.is_some() {
        (
            templates("label", &r.labels, &mut errs),
            templates("annotation", &r.annotations, &mut errs),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let rule = if let Some(rec) = &r.record {
        if !r.annotations.is_empty() {
            errs.push((
                rec.pos,
                "invalid field 'annotations' in recording rule".into(),
            ));
        }
        if let Some(f) = &r.for_ {
            errs.push((f.pos, "invalid field 'for' in recording rule".into()));
        }
        if let Some(f) = &r.keep_firing_for {
            errs.push((
                f.pos,
                "invalid field 'keep_firing_for' in recording rule".into(),
            ));
        }
        if !valid_metric_name(&rec.v) {
            errs.push((rec.pos, format!("invalid recording rule name: {}", rec.v)));
        }
        parsed.map(|parsed| {
            Rule::Recording(RecordingRule {
                name: rec.v.clone(),
                expr: r.expr.as_ref().map(|e| e.v.clone()).unwrap_or_default(),
                parsed: promql::Prepared::new(parsed),
                labels: Labels::from_pairs(r.labels.iter().map(|(k, v)| (&k.v, &v.v))),
            })
        })
    } else {
        match (name, parsed) {
            (Some(n), Some(parsed)) => Some(Rule::Alerting(AlertingRule {
                name: n.v.clone(),
                expr: r.expr.as_ref().map(|e| e.v.clone()).unwrap_or_default(),
                parsed: promql::Prepared::new(parsed),
                for_ms,
                keep_firing_for_ms: keep_ms,
                labels,
                annotations,
            })),
            _ => None,
        }
    };
    match rule {
        Some(rule) if errs.is_empty() => Ok(rule),
        _ => Err(errs),
    }
}

/// Parses and validates the text of one rule file; `origin` (usually the path) prefixes every
/// diagnostic.
pub fn parse_rule_file(text: &str, origin: &str) -> Result<RuleFile, RuleFileErrors> {
    let mut sink = Sink {
        origin,
        out: Vec::new(),
    };
    let root = match yaml::parse(text) {
        Ok(r) => r,
        Err(e) => {
            sink.push(e.pos, format!("invalid YAML: {}", e.message));
            return Err(RuleFileErrors {
                diagnostics: sink.out,
            });
        }
    };
    let mut raw_groups = Vec::new();
    if let Some(root) = root.filter(|r| !r.is_null()) {
        let mut problems = Vec::new();
        for (key, v) in entries(&root, FILE_KEYS, "rule file", &mut problems) {
            if key == "groups" {
                match &v.kind {
                    Kind::Seq(items) => raw_groups = items.iter().map(raw_group).collect(),
                    _ if v.is_null() => {}
                    _ => problems.push((
                        v.pos,
                        format!(
                            "field \"groups\" must be a sequence, not a {}",
                            v.type_name()
                        ),
                    )),
                }
            }
        }
        for (pos, m) in problems {
            sink.push(pos, m);
        }
    }
    let mut groups = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for g in &raw_groups {
        let gname = g.name.as_ref().map_or("", |n| n.v.as_str());
        let ctx = format!("group {gname:?}");
        let errs_before = sink.out.len();
        for (pos, m) in &g.problems {
            sink.push(*pos, format!("{ctx}: {m}"));
        }
        match &g.name {
            None => sink.push(g.pos, "group name must not be empty".into()),
            Some(n) if n.v.is_empty() => sink.push(n.pos, "group name must not be empty".into()),
            Some(n) if seen.contains(&n.v.as_str()) => sink.push(
                n.pos,
                format!("{ctx}: group name {:?} is repeated in the same file", n.v),
            ),
            Some(n) => seen.push(&n.v),
        }
        let interval_ms = match &g.interval {
            None => None,
            Some(i) => match parse_duration_ms(&i.v) {
                Some(ms) if ms > 0 => Some(ms),
                Some(_) => None,
                None => {
                    sink.push(
                        i.pos,
                        format!("{ctx}: invalid duration {:?} for field \"interval\"", i.v),
                    );
                    None
                }
            },
        };
        let limit = match &g.limit {
            None => 0,
            Some(l) => l.v.parse::<usize>().unwrap_or_else(|_| {
                sink.push(
                    l.pos,
                    format!(
                        "{ctx}: field \"limit\" must be a non-negative integer, not {:?}",
                        l.v
                    ),
                );
                0
            }),
        };
        let mut rules = Vec::new();
        for (i, r) in g.rules.iter().enumerate() {
            let rname = r
                .alert
                .as_ref()
                .or(r.record.as_ref())
                .map_or("", |n| n.v.as_str());
            match validate_rule(r) {
                Ok(rule) => rules.push(rule),
                Err(errs) => {
                    for (pos, m) in errs {
                        sink.push(pos, format!("{ctx}, rule {} {rname:?}: {m}", i + 1));
                    }
                }
            }
        }
        if sink.out.len() == errs_before {
            groups.push(RuleGroup {
                name: gname.to_string(),
                origin: origin.to_string(),
                interval_ms,
                limit,
                rules,
            });
        }
    }
    if sink.out.is_empty() {
        share_subexpressions(&mut groups);
        Ok(RuleFile {
            origin: origin.to_string(),
            groups,
        })
    } else {
        let mut diagnostics = sink.out;
        diagnostics.sort_by_key(|d| d.pos);
        Err(RuleFileErrors { diagnostics })
    }
}

/// Marks the subexpressions the rules of `groups` have in common, so that groups evaluated at
/// the same time with [`RuleGroup::eval_shared`] compute each once
/// ([`promql::share_subexpressions`]).
pub fn share_subexpressions<'a>(groups: impl IntoIterator<Item = &'a mut RuleGroup>) {
    promql::share_subexpressions(
        groups
            .into_iter()
            .flat_map(|g| g.rules.iter_mut().map(Rule::parsed_mut)),
    );
}

/// Reads and validates rule files, collecting the problems of all of them; subexpressions the
/// files' rules have in common are marked ([`share_subexpressions`]).
pub fn load_rule_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<RuleFile>, RuleFileErrors> {
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    for p in paths {
        let origin = p.as_ref().display().to_string();
        match std::fs::read_to_string(p.as_ref()) {
            Ok(text) => match parse_rule_file(&text, &origin) {
                Ok(f) => files.push(f),
                Err(e) => diagnostics.extend(e.diagnostics),
            },
            Err(e) => diagnostics.push(Diagnostic {
                origin,
                pos: None,
                message: format!("cannot read rule file: {e}"),
            }),
        }
    }
    if diagnostics.is_empty() {
        share_subexpressions(files.iter_mut().flat_map(|f| &mut f.groups));
        Ok(files)
    } else {
        Err(RuleFileErrors { diagnostics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `text` fails with exactly `expected` (`line:col: message substring`).
    fn check_bad(text: &str, expected: &[(usize, usize, &str)]) {
        let err = parse_rule_file(text, "t.yml").expect_err("should fail");
        let shown = err.to_string();
        assert_eq!(err.diagnostics.len(), expected.len(), "{shown}");
        for (d, (line, col, needle)) in err.diagnostics.iter().zip(expected) {
            assert_eq!(
                d.pos,
                Some(Pos {
                    line: *line,
                    col: *col
                }),
                "{shown}"
            );
            assert!(d.message.contains(needle), "{d} should contain {needle:?}");
            assert!(d.to_string().starts_with(&format!("t.yml:{line}:{col}: ")));
        }
    }

    const GOOD: &str = r#"
groups:
  - name: host
    interval: 30s
    limit: 10
    rules:
      - alert: HostDown
        expr: up{job="node"} == 0
        for: 5m
        keep_firing_for: 2m
        labels:
          severity: critical
          team: "{{ $labels.job }}"
        annotations:
          summary: "{{ $labels.instance }} down"
      - record: job:up:sum
        expr: sum by (job) (up)
        labels:
          source: rules
  - name: other
    rules: []
"#;

    #[test]
    fn good_file_validates() {
        let f = parse_rule_file(GOOD, "good.yml").unwrap();
        assert_eq!(f.groups.len(), 2);
        let g = &f.groups[0];
        assert_eq!((g.interval_ms, g.limit), (Some(30_000), 10));
        let Rule::Alerting(a) = &g.rules[0] else {
            panic!()
        };
        assert_eq!((a.for_ms, a.keep_firing_for_ms), (300_000, 120_000));
        assert_eq!(a.labels[0].0, "severity");
        let Rule::Recording(r) = &g.rules[1] else {
            panic!()
        };
        assert_eq!(r.labels.value("source"), "rules");
        assert!(parse_rule_file("", "empty.yml").unwrap().groups.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = r#"groups:
  - name: g
    rules:
      - alert: A
        expr: up ==
        fro: 5m
      - record: "bad name"
        expr: histogram_count(x)
        for: 1m
        labels:
          "0bad": x
      - alert: B
        record: b
        expr: up
        annotations:
          summary: "{{ $value | nope }}"
      - expr: up
        for: 5x
  - name: g
    interval: often
    bogus: 1
"#;
        check_bad(
            text,
            &[
                (
                    5,
                    15,
                    "group \"g\", rule 1 \"A\": could not parse expression",
                ),
                (6, 9, "rule 1 \"A\": unknown field \"fro\" in rule"),
                (
                    7,
                    17,
                    "rule 2 \"bad name\": invalid recording rule name: bad name",
                ),
                (
                    8,
                    15,
                    "unsupported PromQL: function histogram_count (native histograms)",
                ),
                (9, 14, "invalid field 'for' in recording rule"),
                (11, 11, "invalid label name: 0bad"),
                (12, 16, "only one of 'record' and 'alert' must be set"),
                (13, 17, "invalid field 'annotations' in recording rule"),
                (
                    16,
                    20,
                    "annotation \"summary\": template: 1:13: function \"nope\" not defined",
                ),
                (17, 9, "rule 4 \"\": one of 'record' or 'alert' must be set"),
                (18, 14, "invalid duration \"5x\" for field \"for\""),
                (19, 11, "group name \"g\" is repeated in the same file"),
                (20, 15, "invalid duration \"often\""),
                (21, 5, "unknown field \"bogus\" in group"),
            ],
        );
    }

    #[test]
    fn structure_errors() {
        check_bad("groups: {}\n", &[(1, 9, "must be a sequence")]);
        check_bad("group: []\n", &[(1, 1, "unknown field \"group\"")]);
        check_bad(
            "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: [1]\n",
            &[(5, 15, "field \"expr\" must be a string")],
        );
        check_bad(
            "groups:\n  - rules: []\n",
            &[(2, 5, "group name must not be empty")],
        );
        check_bad("groups: [\n", &[(2, 1, "invalid YAML")]);
        check_bad(
            "groups:\n  - name: a\n    limit: -1\n    rules: []\n",
            &[(3, 12, "non-negative integer")],
        );
    }

    #[test]
    fn deeply_nested_expressions_and_templates_are_errors_not_crashes() {
        // Issue 17: 60,000 signs overflowed the parser's stack; a deep template likewise.
        let text = format!(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: {}up\n      \
             - alert: B\n        expr: up\n        annotations:\n          summary: \"{}x{}\"\n",
            "-".repeat(60_000),
            "{{if 1}}".repeat(3000),
            "{{end}}".repeat(3000),
        );
        check_bad(
            &text,
            &[
                (5, 15, "nested more than 64 levels deep (the limit)"),
                (9, 20, "nested more than 64 levels deep (the limit)"),
            ],
        );
        let chain = format!(
            "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: up{}\n",
            " or up".repeat(100)
        );
        check_bad(
            &chain,
            &[(5, 15, "nested 101 levels deep; the limit is 64")],
        );
    }

    #[test]
    fn names() {
        assert!(valid_label_name("_a1"));
        assert!(!valid_label_name("a:b"));
        assert!(!valid_label_name(""));
        assert!(valid_metric_name("job:up:sum"));
        assert!(!valid_metric_name("1abc"));
    }
}
