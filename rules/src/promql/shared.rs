//! Subexpressions shared by several rules, evaluated once per evaluation time.
//!
//! Rule files repeat themselves: a warning and a critical alert over the same expression with
//! different thresholds, a recording rule and an alert over the same `rate(...)`, the same
//! selector in several teams' copies of a rule. [`share_subexpressions`] finds, across a rule
//! set, the subexpressions that occur more than once (compared by their exact parsed form) and
//! marks the largest of them in each rule's [`Prepared`]. The rule groups evaluated at one time
//! then share a [`SharedEval`]: the first rule to need a marked subexpression evaluates it and
//! keeps the resulting instant vector; the others reuse it and skip its selection and
//! computation.
//!
//! A kept result stays valid while nothing it reads changes. Every selector of a shared
//! subexpression names its metric; the rule groups report each metric they write (recorded
//! series, `ALERTS`, stale markers) with [`SharedEval::wrote`], which drops the results that read
//! it, so a rule that reads what an earlier rule recorded sees it as it would without sharing.
//! Only instant evaluations at the time the [`SharedEval`] was made, with the same options,
//! use it; subqueries evaluate their inner steps as usual.

use std::sync::Arc;

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Expr, VectorSelector};

use super::Options;
use super::engine::{Prepared, unparen};
use super::hash::FastMap;
use super::value::{METRIC_NAME, Sample};

/// A subexpression marked for sharing in a [`Prepared`] expression.
#[derive(Debug)]
pub(crate) struct SharedNode {
    /// The subexpression's parsed form as text (its `Debug` form, which spells out every
    /// field): two subexpressions with the same key are the same expression.
    pub key: Arc<str>,
    /// The metric names its selectors read.
    pub reads: Box<[Box<str>]>,
}

/// A shared subexpression's value at the evaluation time.
#[derive(Clone, Debug)]
pub(crate) enum SharedVal {
    Scalar(f64),
    Vector(Vec<Sample>),
}

/// The shared subexpression results of the rule groups evaluated at one time.
#[derive(Debug)]
pub struct SharedEval {
    t_ms: i64,
    opts: Options,
    entries: FastMap<Arc<str>, Arc<SharedVal>>,
    /// Metric name → keys of the entries that read it.
    readers: FastMap<Box<str>, Vec<Arc<str>>>,
    hits: u64,
    misses: u64,
}

impl SharedEval {
    /// An empty set of results for evaluations at `t_ms` with `opts`.
    pub fn new(t_ms: i64, opts: &Options) -> Self {
        SharedEval {
            t_ms,
            opts: opts.clone(),
            entries: FastMap::default(),
            readers: FastMap::default(),
            hits: 0,
            misses: 0,
        }
    }

    /// Whether an evaluation at `t_ms` with `opts` may use these results.
    pub(crate) fn applies(&self, t_ms: i64, opts: &Options) -> bool {
        self.t_ms == t_ms && self.opts == *opts
    }

    /// Drops every result, as after a write the caller cannot name.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.readers.clear();
    }

    /// Drops every result that reads metric `name`, because samples of it were written.
    pub fn wrote(&mut self, name: &str) {
        if let Some(keys) = self.readers.remove(name) {
            for k in keys {
                self.entries.remove(&k);
            }
        }
    }

    /// How many shared subexpressions were reused, and how many evaluated and kept.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    pub(crate) fn get(&mut self, node: &SharedNode) -> Option<Arc<SharedVal>> {
        let v = self.entries.get(&node.key).cloned();
        if v.is_some() {
            self.hits += 1;
        }
        v
    }

    pub(crate) fn insert(&mut self, node: &SharedNode, val: SharedVal) {
        self.misses += 1;
        for name in &node.reads {
            match self.readers.get_mut(name) {
                Some(keys) => keys.push(node.key.clone()),
                None => {
                    self.readers.insert(name.clone(), vec![node.key.clone()]);
                }
            }
        }
        self.entries.insert(node.key.clone(), Arc::new(val));
    }
}

/// Calls `f` on each direct operand of `e`, left to right. Together with the node itself this
/// defines the pre-order numbering [`Prepared`] records shared nodes by; a matrix selector is
/// one node.
pub(crate) fn for_each_child<'e>(e: &'e Expr, mut f: impl FnMut(&'e Expr)) {
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                f(p);
            }
            f(&a.expr);
        }
        Expr::Unary(u) => f(&u.expr),
        Expr::Binary(b) => {
            f(&b.lhs);
            f(&b.rhs);
        }
        Expr::Paren(p) => f(&p.expr),
        Expr::Subquery(s) => f(&s.expr),
        Expr::Call(c) => c.args.args.iter().for_each(|a| f(a)),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

/// The number of nodes of `e`'s subtree, `e` included.
pub(crate) fn subtree_len(e: &Expr) -> u32 {
    let mut n = 1;
    for_each_child(e, |c| n += subtree_len(c));
    n
}

/// The metric name a selector reads, when it names exactly one.
fn selector_name(vs: &VectorSelector) -> Option<&str> {
    if let Some(n) = &vs.name {
        return Some(n);
    }
    if !vs.matchers.or_matchers.is_empty() {
        return None;
    }
    vs.matchers
        .matchers
        .iter()
        .find(|m| m.name == METRIC_NAME && m.op == PMatchOp::Equal)
        .map(|m| m.value.as_str())
}

/// One node of an expression while marking: its pre-order number, its key if it could be
/// shared, and the nearest ancestor that could.
struct Candidate {
    index: u32,
    key: Option<Arc<str>>,
    reads: Vec<Box<str>>,
    parent: Option<usize>,
}

/// Whether `e` can be shared at all: it gives an instant vector or a scalar, reads at least
/// one selector, every selector names its metric, and it holds no subquery. Returns the
/// names it reads.
fn shareable(e: &Expr, reads: &mut Vec<Box<str>>) -> bool {
    fn walk(e: &Expr, reads: &mut Vec<Box<str>>) -> bool {
        match e {
            Expr::VectorSelector(vs) => push_name(vs, reads),
            Expr::MatrixSelector(ms) => push_name(&ms.vs, reads),
            Expr::Subquery(_) | Expr::Extension(_) => false,
            _ => {
                let mut ok = true;
                for_each_child(e, |c| ok = ok && walk(c, reads));
                ok
            }
        }
    }
    fn push_name(vs: &VectorSelector, reads: &mut Vec<Box<str>>) -> bool {
        match selector_name(vs) {
            Some(n) => {
                if !reads.iter().any(|r| &**r == n) {
                    reads.push(n.into());
                }
                true
            }
            None => false,
        }
    }
    matches!(
        e,
        Expr::VectorSelector(_)
            | Expr::Call(_)
            | Expr::Aggregate(_)
            | Expr::Binary(_)
            | Expr::Unary(_)
    ) && walk(e, reads)
        && !reads.is_empty()
}

/// Collects the nodes of `e` in pre-order. `read_directly` is a node the engine reads without
/// evaluating it (the selector `timestamp` takes its samples' times from), which must not be
/// replaced by a kept result.
fn candidates(
    e: &Expr,
    parent: Option<usize>,
    next: &mut u32,
    read_directly: Option<*const Expr>,
    out: &mut Vec<Candidate>,
) {
    let index = *next;
    *next += 1;
    if matches!(e, Expr::Subquery(_)) {
        // Nothing inside a subquery is shared: it is evaluated at the subquery's own steps.
        *next += subtree_len(e) - 1;
        return;
    }
    let mut reads = Vec::new();
    let key = (read_directly != Some(e as *const Expr) && shareable(e, &mut reads))
        .then(|| Arc::from(format!("{e:?}")));
    let me = out.len();
    let is_candidate = key.is_some();
    out.push(Candidate {
        index,
        key,
        reads,
        parent,
    });
    let parent = if is_candidate { Some(me) } else { parent };
    let read_directly = match e {
        Expr::Call(c) if c.func.name == "timestamp" => c
            .args
            .args
            .first()
            .map(|a| unparen(a) as *const Expr)
            .or(read_directly),
        _ => read_directly,
    };
    for_each_child(e, |c| candidates(c, parent, next, read_directly, out));
}

/// Marks, in every expression of a rule set, the subexpressions that occur more than once in
/// the set (in the same rule or in others), so that evaluations sharing a [`SharedEval`]
/// compute each once. Of nested repeated subexpressions only the outermost is marked, unless an
/// inner one occurs more often than its enclosing one. Replaces earlier marks.
pub fn share_subexpressions<'a>(exprs: impl IntoIterator<Item = &'a mut Prepared>) {
    let mut all: Vec<(&mut Prepared, Vec<Candidate>)> = exprs
        .into_iter()
        .map(|p| {
            let mut out = Vec::new();
            candidates(p.expr(), None, &mut 0, None, &mut out);
            (p, out)
        })
        .collect();
    let mut counts: FastMap<Arc<str>, u32> = FastMap::default();
    for (_, cands) in &all {
        for c in cands {
            if let Some(k) = &c.key {
                *counts.entry(k.clone()).or_default() += 1;
            }
        }
    }
    let count = |c: &Candidate| c.key.as_ref().map_or(0, |k| counts[k]);
    for (p, cands) in &mut all {
        let marked: Vec<(u32, Arc<SharedNode>)> = cands
            .iter()
            .filter(|c| {
                let n = count(c);
                n >= 2 && c.parent.is_none_or(|pi| count(&cands[pi]) < n)
            })
            .map(|c| {
                let node = SharedNode {
                    key: c.key.clone().expect("a counted candidate has a key"),
                    reads: c.reads.clone().into_boxed_slice(),
                };
                (c.index, Arc::new(node))
            })
            .collect();
        p.set_shared(marked);
    }
}

#[cfg(test)]
mod tests {
    use crate::alerting::{EvalOptions, GroupState};
    use crate::promql::{Labels, MemStorage, SharedEval, is_stale_nan};
    use crate::rulefile::{RuleGroup, parse_rule_file};

    fn groups(yaml: &str) -> Vec<RuleGroup> {
        parse_rule_file(yaml, "t.yml")
            .unwrap_or_else(|e| panic!("{e}"))
            .groups
    }

    fn marks(g: &RuleGroup) -> Vec<usize> {
        g.rules.iter().map(|r| r.parsed().shared_count()).collect()
    }

    /// Evaluates every group at each time in order, as the server does a round, with or
    /// without sharing; returns every sample written, as text, in order.
    fn run(yaml: &str, sharing: bool, times: &[i64]) -> (Vec<String>, (u64, u64)) {
        let mut gs = groups(yaml);
        if !sharing {
            // No marks: each rule evaluates everything itself.
            for r in gs.iter_mut().flat_map(|g| &mut g.rules) {
                r.parsed_mut().unshare();
            }
        }
        let mut storage = MemStorage::new();
        for i in 0..=40 {
            let t = i * 15_000;
            for (inst, role) in [("a", "web"), ("b", "web"), ("c", "db")] {
                let l = Labels::from_pairs([
                    ("__name__", "reqs_total"),
                    ("instance", inst),
                    ("role", role),
                ]);
                storage.add_sample(&l, t, (i * if inst == "c" { 30 } else { 3 }) as f64);
            }
        }
        let opts = EvalOptions::default();
        let mut states = vec![GroupState::default(); gs.len()];
        let mut out = Vec::new();
        let mut counts = (0, 0);
        for &t in times {
            let mut shared = SharedEval::new(t, &opts.promql);
            for (g, st) in gs.iter().zip(&mut states) {
                let r = if sharing {
                    g.eval_shared(t, &storage, st, &opts, &mut shared)
                } else {
                    g.eval(t, &storage, st, &opts)
                };
                assert!(r.errors.is_empty(), "{:?}", r.errors);
                for s in &r.samples_to_write {
                    storage.add_sample(&s.labels, s.t_ms, s.v);
                    let v = if is_stale_nan(s.v) {
                        "stale".to_string()
                    } else {
                        s.v.to_string()
                    };
                    out.push(format!("{} {} {v}", s.labels, s.t_ms));
                }
            }
            let (h, m) = shared.hits_and_misses();
            counts = (counts.0 + h, counts.1 + m);
        }
        (out, counts)
    }

    /// Two groups reading the same rate, with a recording rule in between that writes the
    /// metric a shared subexpression reads: the rule after it must see what it wrote.
    const RULES: &str = r#"
groups:
  - name: first
    rules:
      - alert: Busy
        expr: sum by (role) (rate(reqs_total[1m])) > 0.1
      - record: reqs_total
        expr: sum(reqs_total{role="web"}) * 0 + 1000
        labels: {instance: recorded, role: web}
      - alert: BusyAfterRecording
        expr: sum by (role) (rate(reqs_total[1m])) > 0.2
  - name: second
    rules:
      - alert: VeryBusy
        expr: sum by (role) (rate(reqs_total[1m])) > 1
      - alert: Latest
        expr: max(reqs_total) > 5
      - alert: Stamped
        expr: timestamp(reqs_total) > 0
      - record: role:reqs:max
        expr: max(reqs_total)
"#;

    #[test]
    fn repeated_subexpressions_are_marked_outermost_first() {
        let gs = groups(RULES);
        // `sum by (role) (rate(reqs_total[1m]))` in three rules, `max(reqs_total)` in two,
        // `reqs_total{role="web"}` once; the selector `timestamp` reads is not shared, so
        // `reqs_total` inside `max` occurs as often as `max` does.
        assert_eq!(marks(&gs[0]), [1, 0, 1]);
        assert_eq!(marks(&gs[1]), [1, 1, 0, 1]);
        // A selector without a metric name and anything inside a subquery are never shared.
        let gs = groups(
            r#"
groups:
  - name: g
    rules:
      - alert: A
        expr: count({job="x"}) > 1
      - alert: B
        expr: count({job="x"}) > 2
      - alert: C
        expr: max_over_time(rate(m[1m])[5m:1m]) > 1
      - alert: D
        expr: max_over_time(rate(m[1m])[5m:1m]) > 2
"#,
        );
        assert_eq!(marks(&gs[0]), [0, 0, 0, 0]);
    }

    #[test]
    fn sharing_gives_the_same_results_as_evaluating_each_rule() {
        let times = [300_000, 315_000, 330_000, 345_000];
        let (plain, _) = run(RULES, false, &times);
        let (shared, (hits, misses)) = run(RULES, true, &times);
        assert_eq!(plain, shared);
        // Per round: `sum(rate)` computed by Busy, dropped when reqs_total is recorded,
        // computed again by BusyAfterRecording and reused by VeryBusy; `max` computed by
        // Latest, reused by role:reqs:max.
        assert_eq!((hits, misses), (2 * 4, 3 * 4));
        // The recorded series changes the sum the second alert sees.
        assert!(plain.iter().any(|l| l.contains("BusyAfterRecording")));
        // `timestamp` reads its selector's samples itself: that selector is not shared.
        assert!(plain.iter().any(|l| l.contains("Stamped")));
    }
}
