//! promtool's rule unit tests (`promtool test rules FILE`), with promtool v2.42's verdicts and
//! output.
//!
//! A test file names rule files (relative to itself, globs allowed) and test groups; each group
//! loads `input_series` in the series notation of Prometheus's test scripts (`0+10x5 _ stale`),
//! evaluates every rule group from time 0 every `evaluation_interval` up to the latest
//! `eval_time`, checks the firing alerts of each `alert_rule_test` against the evaluation at or
//! just before its time, and finally runs each `promql_expr_test` query over the inputs and
//! everything the rules wrote. As in promtool, input samples become visible as evaluation time
//! reaches them, expected values must equal exactly, and a rule that fails to evaluate ends its
//! test group.
//!
//! [`run_unit_test_file`] reads the test file and its rule files; that is the only I/O here.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::alerting::{AlertState, EvalOptions, GroupState};
use crate::promql::promqltest::{parse_duration_ms, parse_series_desc};
use crate::promql::{self, Labels, MemStorage, Options, SelectedSeries, Storage, Value};
use crate::rulefile::{Rule, RuleGroup, load_rule_files};
use crate::template::{format_go_e, go_quote};

/// The verdict and the text promtool would print for one test file (stdout and stderr
/// interleaved as on a terminal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitTestOutcome {
    /// Whether every test passed.
    pub passed: bool,
    /// `Unit Testing:  FILE` followed by `  SUCCESS` or `  FAILED:` and the failures.
    pub output: String,
}

// ---------------------------------------------------------------------------------------------
// The file format (promtool's yaml.UnmarshalStrict: unknown fields are errors).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default, deserialize_with = "duration")]
    evaluation_interval: i64,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default, deserialize_with = "duration")]
    interval: i64,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTestCase>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTestCase>,
    #[serde(default, deserialize_with = "string_map")]
    external_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "text")]
    external_url: String,
    #[serde(default, deserialize_with = "text")]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    #[serde(default, deserialize_with = "text")]
    series: String,
    #[serde(default, deserialize_with = "text")]
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTestCase {
    #[serde(default, deserialize_with = "duration")]
    eval_time: i64,
    #[serde(default, deserialize_with = "text")]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default, deserialize_with = "string_map")]
    exp_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "string_map")]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTestCase {
    #[serde(default, deserialize_with = "text")]
    expr: String,
    #[serde(default, deserialize_with = "duration")]
    eval_time: i64,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default, deserialize_with = "text")]
    labels: String,
    #[serde(default)]
    value: f64,
}

/// A YAML scalar as its text, as Go's yaml.v2 decodes any scalar into a string field
/// (`values: 0x10` stays `0x10`); null is the empty string.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m = Option::<BTreeMap<String, Option<String>>>::deserialize(d)?.unwrap_or_default();
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = text(d)?;
    if s.is_empty() {
        return Err(serde::de::Error::custom("empty duration string"));
    }
    parse_duration_ms(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("not a valid duration string: {s:?}")))
}

// ---------------------------------------------------------------------------------------------
// Go-compatible formatting

/// Prometheus's `model.Duration` notation (`0s`, `5m`, `1d`, `2m59s999ms`).
pub fn format_model_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut ms = ms;
    let mut r = String::new();
    let units: [(&str, i64, bool); 7] = [
        ("y", 365 * 86_400_000, true),
        ("w", 7 * 86_400_000, true),
        ("d", 86_400_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ];
    for (unit, mult, exact) in units {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            r.push_str(&format!("{v}{unit}"));
            ms -= v * mult;
        }
    }
    r
}

/// Go's `time.Duration.String()` for a whole number of milliseconds (`0s`, `1m0s`, `1.5s`).
pub fn format_go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let body = if ms < 1000 {
        format!("{ms}ms")
    } else {
        let h = ms / 3_600_000;
        let m = (ms / 60_000) % 60;
        let s = (ms / 1000) % 60;
        let frac = ms % 1000;
        let mut secs = s.to_string();
        if frac != 0 {
            secs.push('.');
            secs.push_str(format!("{frac:03}").trim_end_matches('0'));
        }
        if h > 0 {
            format!("{h}h{m}m{secs}s")
        } else if m > 0 {
            format!("{m}m{secs}s")
        } else {
            format!("{secs}s")
        }
    };
    if neg { format!("-{body}") } else { body }
}

/// A label list printed like Prometheus's `labels.Labels.String()`: `{a="1", b="2"}`.
fn labels_string(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn pairs(l: &Labels) -> Vec<(String, String)> {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

fn indent_lines(s: &str, indent: &str) -> String {
    s.split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

type Pairs = Vec<(String, String)>;
type LabelsAndAnnotations = Vec<(Pairs, Pairs)>;

fn alerts_string(la: &LabelsAndAnnotations) -> String {
    if la.is_empty() {
        return "[]".into();
    }
    let one = |(l, a): &(Pairs, Pairs)| {
        format!(
            "Labels:{}\nAnnotations:{}",
            labels_string(l),
            labels_string(a)
        )
    };
    let mut s = format!("[\n0:{}", indent_lines(&format!("\n{}", one(&la[0])), "  "));
    for (i, x) in la.iter().enumerate().skip(1) {
        s.push_str(&format!(
            ",\n{i}:{}",
            indent_lines(&format!("\n{}", one(x)), "  ")
        ));
    }
    s.push_str("\n]");
    s
}

fn samples_string(s: &[(Vec<(String, String)>, f64)]) -> String {
    if s.is_empty() {
        return "nil".into();
    }
    s.iter()
        .map(|(l, v)| format!("{} {}", labels_string(l), format_go_e(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Paths

/// `filepath.Join` + `Clean`, lexically.
fn go_join(dir: &Path, rel: &str) -> PathBuf {
    let joined = if Path::new(rel).is_absolute() {
        PathBuf::from(rel)
    } else {
        dir.join(rel)
    };
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// Matches a file name against a glob pattern (`*`, `?`, `[...]`).
fn glob_match(pattern: &[char], name: &[char]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some('*') => (0..=name.len()).any(|i| glob_match(&pattern[1..], &name[i..])),
        Some('?') => !name.is_empty() && glob_match(&pattern[1..], &name[1..]),
        Some('[') => {
            let Some(end) = pattern.iter().position(|c| *c == ']') else {
                return false;
            };
            let Some(&c) = name.first() else { return false };
            let class = &pattern[1..end];
            let (neg, class) = match class.first() {
                Some('^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob_match(&pattern[end + 1..], &name[1..])
        }
        Some('\\') if pattern.len() > 1 => {
            name.first() == Some(&pattern[1]) && glob_match(&pattern[2..], &name[1..])
        }
        Some(p) => name.first() == Some(p) && glob_match(&pattern[1..], &name[1..]),
    }
}

/// `filepath.Glob` for patterns with wildcards in the last component only.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let s = pattern.to_string_lossy();
    if !s.contains(['*', '?', '[']) {
        return if std::fs::symlink_metadata(pattern).is_ok() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = pattern.parent().filter(|d| !d.as_os_str().is_empty());
    let Some(name) = pattern.file_name() else {
        return Vec::new();
    };
    let pat: Vec<char> = name.to_string_lossy().chars().collect();
    let Ok(rd) = std::fs::read_dir(dir.unwrap_or(Path::new("."))) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| {
            let n: Vec<char> = e.file_name().to_string_lossy().chars().collect();
            glob_match(&pat, &n)
        })
        .map(|e| match dir {
            Some(d) => d.join(e.file_name()),
            None => PathBuf::from(e.file_name()),
        })
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Running

/// Input samples become visible as evaluation reaches them; what the rules wrote always is.
struct TestStorage {
    inputs: MemStorage,
    loaded_till_ms: i64,
    written: MemStorage,
}

impl Storage for TestStorage {
    fn select(
        &self,
        matchers: &[promql::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedSeries<'_>> {
        let mut out = self
            .inputs
            .select(matchers, start_ms, end_ms.min(self.loaded_till_ms));
        let written = self.written.select(matchers, start_ms, end_ms);
        if written.is_empty() {
            return out;
        }
        for w in written {
            match out.iter_mut().find(|s| s.labels == w.labels) {
                Some(s) => {
                    let e = s.samples.to_mut();
                    for &(t, v) in w.samples.iter() {
                        match e.binary_search_by(|(x, _)| x.cmp(&t)) {
                            Ok(_) => {}
                            Err(i) => e.insert(i, (t, v)),
                        }
                    }
                }
                None => out.push(w),
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// Reads and runs one promtool unit-test file.
pub fn run_unit_test_file(path: impl AsRef<Path>) -> UnitTestOutcome {
    let path = path.as_ref();
    let mut output = format!("Unit Testing:  {}\n", path.display());
    let errs = run_file(path, &mut output);
    if errs.is_empty() {
        output.push_str("  SUCCESS\n");
    } else {
        output.push_str("  FAILED:\n");
        for e in &errs {
            output.push_str(e);
            output.push_str("\n\n");
        }
    }
    output.push('\n');
    UnitTestOutcome {
        passed: errs.is_empty(),
        output,
    }
}

/// Runs several test files in order, as `promtool test rules FILE...` does: the outputs one
/// after the other, passed only if every file passed.
pub fn run_unit_test_files<P: AsRef<Path>>(paths: &[P]) -> UnitTestOutcome {
    let mut all = UnitTestOutcome {
        passed: true,
        output: String::new(),
    };
    for p in paths {
        let o = run_unit_test_file(p);
        all.passed &= o.passed;
        all.output.push_str(&o.output);
    }
    all
}

fn run_file(path: &Path, output: &mut String) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return vec![format!("open {}: {e}", path.display())],
    };
    let mut file: TestFile = match serde_yaml::from_str::<Option<TestFile>>(&text) {
        Ok(Some(f)) => f,
        Ok(None) => TestFile {
            rule_files: Vec::new(),
            evaluation_interval: 0,
            group_eval_order: Vec::new(),
            tests: Vec::new(),
        },
        Err(e) => return vec![format!("yaml: {e}")],
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut rule_files = Vec::new();
    for rf in &file.rule_files {
        let p = if rf.is_empty() {
            PathBuf::new()
        } else {
            go_join(dir, rf)
        };
        let m = glob(&p);
        if m.is_empty() {
            output.push_str(&format!(
                "  WARNING: no file match pattern {}\n",
                p.display()
            ));
        }
        rule_files.extend(m);
    }
    if file.evaluation_interval == 0 {
        file.evaluation_interval = 60_000;
    }
    let mut order: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g.as_str(), i).is_some() {
            return vec![format!("group name repeated in evaluation order: {g}")];
        }
    }
    let mut errs = Vec::new();
    for tg in &file.tests {
        errs.extend(run_group(tg, file.evaluation_interval, &order, &rule_files));
    }
    errs
}

fn run_group(
    tg: &TestGroup,
    eval_interval_ms: i64,
    order: &BTreeMap<&str, usize>,
    rule_files: &[PathBuf],
) -> Vec<String> {
    // Inputs.
    let mut inputs = MemStorage::new();
    for s in &tg.input_series {
        let line = format!("{} {}", s.series, s.values);
        let (labels, values) = match parse_series_desc(&line) {
            Ok(x) => x,
            Err(e) => return vec![format!("error in input series {:?}: {e}", s.series)],
        };
        let mut last_t: Option<i64> = None;
        for (i, v) in values.iter().enumerate() {
            let t = i as i64 * tg.interval;
            if let Some(v) = v {
                // Several values at one time (interval 0): the first one stays.
                if last_t != Some(t) {
                    inputs.add_sample(&labels, t, *v);
                    last_t = Some(t);
                }
            }
        }
    }
    // Rules.
    let files = match load_rule_files(rule_files) {
        Ok(f) => f,
        Err(e) => return e.diagnostics.iter().map(|d| d.to_string()).collect(),
    };
    let mut groups: Vec<&RuleGroup> = files.iter().flat_map(|f| &f.groups).collect();
    groups.sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(0));
    let mut states: Vec<GroupState> = groups.iter().map(|_| GroupState::default()).collect();
    let opts = EvalOptions {
        promql: Options {
            default_subquery_step_ms: eval_interval_ms,
            ..Options::default()
        },
        default_interval_ms: if tg.interval > 0 {
            tg.interval
        } else {
            eval_interval_ms
        },
        external_labels: Labels::from_pairs(tg.external_labels.clone()),
        external_url: tg.external_url.clone(),
        ..EvalOptions::default()
    };

    // Alert tests by evaluation time.
    let mut alert_tests: BTreeMap<i64, Vec<&AlertTestCase>> = BTreeMap::new();
    for a in &tg.alert_rule_test {
        if a.alertname.is_empty() {
            let in_group = if tg.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", tg.name)
            };
            return vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                format_model_duration(a.eval_time)
            )];
        }
        alert_tests.entry(a.eval_time).or_default().push(a);
    }
    let alert_times: Vec<i64> = alert_tests.keys().copied().collect();
    let max_t = tg
        .alert_rule_test
        .iter()
        .map(|a| a.eval_time)
        .chain(tg.promql_expr_test.iter().map(|p| p.eval_time))
        .max()
        .unwrap_or(0)
        .max(0);

    let mut storage = TestStorage {
        inputs,
        loaded_till_ms: 0,
        written: MemStorage::new(),
    };
    let mut errs = Vec::new();
    let mut curr = 0;
    let mut ts = 0;
    while ts <= max_t {
        storage.loaded_till_ms = ts;
        let mut eval_errs = Vec::new();
        for (g, st) in groups.iter().zip(states.iter_mut()) {
            let r = g.eval(ts, &storage, st, &opts);
            for s in r.samples_to_write {
                storage.written.add_sample(&s.labels, s.t_ms, s.v);
            }
            for e in r.errors {
                eval_errs.push(format!(
                    "    rule: {}, time: {}, err: {}",
                    e.rule_name,
                    format_go_duration(ts),
                    e.message
                ));
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        while curr < alert_times.len()
            && ts <= alert_times[curr]
            && alert_times[curr] < ts + eval_interval_ms
        {
            let t = alert_times[curr];
            for tc in &alert_tests[&t] {
                let mut got: LabelsAndAnnotations = Vec::new();
                for (g, st) in groups.iter().zip(&states) {
                    for (i, rule) in g.rules.iter().enumerate() {
                        if !matches!(rule, Rule::Alerting(a) if a.name == tc.alertname) {
                            continue;
                        }
                        for a in &st.rules[i].alerts {
                            if a.state == AlertState::Firing && a.resolved_at_ms.is_none() {
                                got.push((
                                    pairs(&a.labels),
                                    a.annotations
                                        .iter()
                                        .map(|(k, v)| (k.clone(), v.clone()))
                                        .collect(),
                                ));
                            }
                        }
                    }
                }
                let mut exp: LabelsAndAnnotations = tc
                    .exp_alerts
                    .iter()
                    .map(|a| {
                        let mut l = a.exp_labels.clone();
                        l.insert("alertname".into(), tc.alertname.clone());
                        (
                            l.into_iter().collect(),
                            a.exp_annotations.clone().into_iter().collect(),
                        )
                    })
                    .collect();
                got.sort();
                exp.sort();
                if got != exp {
                    let name = if tg.name.is_empty() {
                        String::new()
                    } else {
                        format!("    name: {},\n", tg.name)
                    };
                    errs.push(format!(
                        "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        tc.alertname,
                        format_model_duration(tc.eval_time),
                        indent_lines(&alerts_string(&exp), "            "),
                        indent_lines(&alerts_string(&got), "            "),
                    ));
                }
            }
            curr += 1;
        }
        ts += eval_interval_ms;
    }

    'cases: for tc in &tg.promql_expr_test {
        let at = format_model_duration(tc.eval_time);
        let got = match promql::eval_instant(tc.expr.as_str(), tc.eval_time, &storage, &opts.promql)
        {
            Ok(Value::InstantVector(v)) => v
                .into_iter()
                .map(|s| (pairs(&s.labels), s.v))
                .collect::<Vec<_>>(),
            Ok(Value::Scalar(v)) => vec![(Vec::new(), v)],
            Ok(_) => {
                errs.push(format!(
                    "    expr: {}, time: {at}, err: rule result is not a vector or scalar",
                    go_quote(&tc.expr)
                ));
                continue;
            }
            Err(e) => {
                let msg = match e {
                    promql::EvalError::Parse(m) => m,
                    other => other.to_string(),
                };
                errs.push(format!(
                    "    expr: {}, time: {at}, err: {msg}",
                    go_quote(&tc.expr)
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        for s in &tc.exp_samples {
            match parse_metric(&s.labels) {
                Ok(l) => exp.push((pairs(&l), s.value)),
                Err(e) => {
                    errs.push(format!(
                        "    expr: {}, time: {at}, err: labels {}: {e}",
                        go_quote(&tc.expr),
                        go_quote(&s.labels)
                    ));
                    continue 'cases;
                }
            }
        }
        let mut got = got;
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        // promtool compares with reflect.DeepEqual: exact values, and NaN never equals NaN.
        let equal =
            exp.len() == got.len() && exp.iter().zip(&got).all(|(e, g)| e.0 == g.0 && e.1 == g.1);
        if !equal {
            errs.push(format!(
                "    expr: {}, time: {at},\n        exp: {}\n        got: {}",
                go_quote(&tc.expr),
                samples_string(&exp),
                samples_string(&got)
            ));
        }
    }
    errs
}

/// Prometheus's `parser.ParseMetric`: `name{a="b"}`, `{a="b"}`, `name`, or nothing.
fn parse_metric(s: &str) -> Result<Labels, String> {
    if s.trim().is_empty() {
        return Ok(Labels::new());
    }
    let (labels, values) = parse_series_desc(s)?;
    if !values.is_empty() {
        return Err(format!("unexpected values after the metric in {s:?}"));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_formats() {
        assert_eq!(format_model_duration(0), "0s");
        assert_eq!(format_model_duration(300_000), "5m");
        assert_eq!(format_model_duration(86_400_000), "1d");
        assert_eq!(format_model_duration(179_999), "2m59s999ms");
        assert_eq!(format_model_duration(14 * 86_400_000), "2w");
        assert_eq!(format_go_duration(0), "0s");
        assert_eq!(format_go_duration(60_000), "1m0s");
        assert_eq!(format_go_duration(3_600_000), "1h0m0s");
        assert_eq!(format_go_duration(1_500), "1.5s");
        assert_eq!(format_go_duration(179_999), "2m59.999s");
    }

    #[test]
    fn go_output_formats() {
        assert_eq!(format_go_e(1.0), "1E+00");
        assert_eq!(format_go_e(61.0), "6.1E+01");
        assert_eq!(format_go_e(0.0), "0E+00");
        assert_eq!(format_go_e(-0.00125), "-1.25E-03");
        assert_eq!(
            labels_string(&[("a".into(), "x\"y".into())]),
            r#"{a="x\"y"}"#
        );
        let la = vec![(vec![("alertname".to_string(), "A".to_string())], Vec::new())];
        assert_eq!(
            alerts_string(&la),
            "[\n0:\n  Labels:{alertname=\"A\"}\n  Annotations:{}\n]"
        );
    }

    #[test]
    fn paths_and_globs() {
        assert_eq!(go_join(Path::new("."), "a.yml"), PathBuf::from("a.yml"));
        assert_eq!(
            go_join(Path::new("x/y"), "../a.yml"),
            PathBuf::from("x/a.yml")
        );
        assert_eq!(
            go_join(Path::new("x"), "/abs.yml"),
            PathBuf::from("/abs.yml")
        );
        let g = |p: &str, n: &str| {
            glob_match(
                &p.chars().collect::<Vec<_>>(),
                &n.chars().collect::<Vec<_>>(),
            )
        };
        assert!(g("*.rules.yml", "host.rules.yml"));
        assert!(g("h?st.[a-z]*", "host.yml"));
        assert!(!g("*.yml", "host.yaml"));
    }

    #[test]
    fn metrics_parse_like_parse_metric() {
        assert!(parse_metric("").unwrap().is_empty());
        assert_eq!(parse_metric("up").unwrap().to_string(), "up{}");
        assert_eq!(
            parse_metric(r#"{job="x"}"#).unwrap().to_string(),
            r#"{job="x"}"#
        );
        assert!(parse_metric("up 1").is_err());
    }
}
