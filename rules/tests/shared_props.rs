//! Property: evaluating rule groups with shared subexpressions and remembered output labels
//! gives exactly what evaluating every rule on its own, from its saved state, gives, whatever
//! the rules are built from (selectors, `offset`, `timestamp`, subqueries, aggregations,
//! `absent`, recording rules that write what later rules read, `ALERTS`, label templates that
//! read the labels, the value or everything).

use proptest::prelude::*;
use yunwei_rules::alerting::{EvalOptions, GroupState};
use yunwei_rules::promql::{Labels, MemStorage, SharedEval, is_stale_nan};
use yunwei_rules::rulefile::{RuleGroup, parse_rule_file};

/// Subexpressions rules are built from; `{M}` is a metric name.
const PARTS: &[&str] = &[
    "{M}",
    "{M} offset 1m",
    "rate({M}[2m])",
    "sum by (job) (rate({M}[2m]))",
    "sum by (job) ({M})",
    "max({M})",
    "timestamp({M})",
    "timestamp(({M}))",
    "max_over_time(rate({M}[1m])[3m:30s])",
    "deriv({M}[3m])",
    "predict_linear({M}[3m], 60)",
    "absent({M}{job=\"none\"})",
    "count_values(\"v\", {M} > 1000)",
    "topk(1, {M})",
    "label_replace({M}, \"x\", \"$1\", \"job\", \"(.*)\")",
    "{M} * scalar(max({M}))",
    "{M} and on (job) sum by (job) ({M})",
    "ALERTS",
    "time() - timestamp({M})",
];

const METRICS: &[&str] = &["a_total", "b_total", "rec_a", "rec_b"];
const CMPS: &[&str] = &["> 0", "> 5", "< 100000", ">= 2", "!= 0"];
/// Alert label templates: the labels only (remembered), the value, the whole data.
const LABEL_TEMPLATES: &[&str] = &[
    "{{ $labels.job }}",
    "{{ if gt $value 100.0 }}high{{ else }}low{{ end }}",
    "{{ . }}",
];

#[derive(Clone, Debug)]
struct RuleSpec {
    part: usize,
    metric: usize,
    cmp: usize,
    label: usize,
    /// Record into `rec_a`/`rec_b` (by parity) instead of alerting.
    record: Option<usize>,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        0..PARTS.len(),
        0..METRICS.len(),
        0..CMPS.len(),
        0..LABEL_TEMPLATES.len(),
        prop::option::weighted(0.3, 0..2usize),
    )
        .prop_map(|(part, metric, cmp, label, record)| RuleSpec {
            part,
            metric,
            cmp,
            label,
            record,
        })
}

fn yaml(groups: &[Vec<RuleSpec>]) -> String {
    let mut y = String::from("groups:\n");
    for (g, rules) in groups.iter().enumerate() {
        y.push_str(&format!("  - name: g{g}\n    rules:\n"));
        for (i, r) in rules.iter().enumerate() {
            let part = PARTS[r.part].replace("{M}", METRICS[r.metric]);
            match r.record {
                // Recorded series keep one series per job: `sum by (job)` of the part.
                Some(k) => y.push_str(&format!(
                    "      - record: {}\n        expr: 'sum by (job) ({part})'\n        labels: {{src: r{g}x{i}}}\n",
                    if k == 0 { "rec_a" } else { "rec_b" }
                )),
                None => y.push_str(&format!(
                    "      - alert: A{g}x{i}\n        expr: '{part} {}'\n        labels: {{team: '{}'}}\n        annotations: {{v: '{{{{ $value }}}}'}}\n",
                    CMPS[r.cmp],
                    LABEL_TEMPLATES[r.label]
                )),
            }
        }
    }
    y
}

fn storage() -> MemStorage {
    let mut s = MemStorage::new();
    for i in 0..=30 {
        let t = i * 15_000;
        for (name, mult) in [("a_total", 3), ("b_total", 7)] {
            for job in ["api", "web", "db"] {
                let l = Labels::from_pairs([("__name__", name), ("job", job)]);
                let v = (i * mult * (job.len() as i64)) as f64;
                s.add_sample(&l, t, v);
            }
        }
    }
    s
}

/// Every sample written, in order, as text.
fn run(groups: &mut [RuleGroup], sharing: bool) -> Vec<String> {
    if !sharing {
        for r in groups.iter_mut().flat_map(|g| &mut g.rules) {
            r.parsed_mut().unshare();
        }
    }
    let mut storage = storage();
    let opts = EvalOptions::default();
    let mut states = vec![GroupState::default(); groups.len()];
    let mut out = Vec::new();
    for t in [300_000, 315_000, 330_000] {
        let mut shared = SharedEval::new(t, &opts.promql);
        for (g, st) in groups.iter().zip(&mut states) {
            if !sharing {
                // From the saved state: nothing remembered between evaluations.
                *st = serde_json::from_str(&serde_json::to_string(st).unwrap()).unwrap();
            }
            let r = g.eval_shared(t, &storage, st, &opts, &mut shared);
            for e in &r.errors {
                out.push(format!("error {} {}", e.rule_name, e.message));
            }
            for s in &r.samples_to_write {
                storage.add_sample(&s.labels, s.t_ms, s.v);
                let v = if is_stale_nan(s.v) {
                    "stale".to_string()
                } else {
                    format!("{:x}", s.v.to_bits())
                };
                out.push(format!("{} {} {v}", s.labels, s.t_ms));
            }
            for a in &r.alerts {
                out.push(format!("{} {:?} {:?}", a.labels, a.state, a.annotations));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn shared_evaluation_equals_evaluating_each_rule(
        groups in prop::collection::vec(prop::collection::vec(rule_spec(), 1..6), 1..4)
    ) {
        let text = yaml(&groups);
        let file = parse_rule_file(&text, "p.yml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut shared_groups = file.groups.clone();
        let mut plain_groups = file.groups;
        let shared = run(&mut shared_groups, true);
        let plain = run(&mut plain_groups, false);
        prop_assert_eq!(shared, plain, "rules:\n{}", text);
    }
}
