//! The step-wise evaluator: fetches the series every selector needs once, then evaluates an
//! expression at a list of step timestamps. Selectors, `offset`, `@`, staleness, the lookback
//! delta and subqueries live here; operators, aggregations and functions have their own modules.

use crate::promql::hash::{FastMap, FastSet};
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::shared::{SharedEval, SharedNode, SharedVal, for_each_child, subtree_len};
use super::storage::{MatchOp, Matcher, SelectedSeries, Storage};
use super::value::{Labels, METRIC_NAME, Matrix, Sample, Series, Value, is_stale_nan};
use super::{EvalError, Options, aggregation, binary, functions};

/// An intermediate value, with one entry per evaluation step.
pub(crate) enum Val<'s> {
    /// A scalar per step.
    Scalar(Vec<f64>),
    /// An instant vector per step; `Sample::t_ms` is the step time.
    Vector(Vec<Vec<Sample>>),
    /// A range vector: series and, per step, the window `[lo, hi]` (both included).
    Range(RangeVal<'s>),
    /// A string.
    Str(String),
}

impl Val<'_> {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Vector(_) => "instant vector",
            Val::Range(_) => "range vector",
            Val::Str(_) => "string",
        }
    }
}

/// Series of a range vector with the window each step looks at.
pub(crate) struct RangeVal<'s> {
    /// Series with their points (no stale markers), in time order; borrowed from the storage
    /// where possible.
    pub series: Vec<SelectedSeries<'s>>,
    /// Per step: the window `[lo, hi]`, both ends included.
    pub windows: Vec<(i64, i64)>,
    /// The range of the selector or subquery in milliseconds.
    pub range_ms: i64,
    /// Whether every series has the same metric name (a selector with `__name__=`).
    pub one_name: bool,
}

impl RangeVal<'_> {
    /// The points of series `s` inside the window of step `i`.
    pub fn window(&self, s: usize, i: usize) -> &[(i64, f64)] {
        let (lo, hi) = self.windows[i];
        let pts: &[(i64, f64)] = &self.series[s].samples;
        match (pts.first(), pts.last()) {
            // An instant query fetches just the window: no need to search.
            (Some(f), Some(l)) if f.0 >= lo && l.0 <= hi => pts,
            (Some(_), Some(_)) => {
                let a = pts.partition_point(|(t, _)| *t < lo);
                let b = pts.partition_point(|(t, _)| *t <= hi);
                &pts[a..b.max(a)]
            }
            _ => &[],
        }
    }
}

pub(crate) struct Evaluator<'a> {
    storage: &'a dyn Storage,
    pub(crate) opts: &'a Options,
    query_start: i64,
    query_end: i64,
    fetch_windows: FastMap<usize, (i64, i64)>,
    /// Per instant selector: the one time it is evaluated at, or `None` when there are several
    /// (a range query, a subquery); with one, only the latest sample is fetched.
    single_time: FastMap<usize, Option<i64>>,
    fetched: FastMap<usize, Vec<SelectedSeries<'a>>>,
    /// Matchers compiled beforehand, one entry per selector in [`selectors`] order.
    prepared: Option<&'a [SelectorMatchers]>,
    /// The evaluation time shared subexpression results are for, when there are any.
    share_t: Option<i64>,
    /// Shared subexpressions (by node address) whose result another rule already computed.
    hits: FastMap<usize, Arc<SharedVal>>,
    /// Shared subexpressions (by node address) this evaluation computes and keeps.
    keep: FastMap<usize, Arc<SharedNode>>,
    kept: RefCell<Vec<(Arc<SharedNode>, SharedVal)>>,
}

fn node_key(e: &Expr) -> usize {
    e as *const Expr as usize
}

fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

pub(crate) fn duration_ms(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}

/// Unwraps parentheses.
pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Checks that every construct in `expr` can be evaluated; names the first one that cannot.
pub fn check_supported(expr: &Expr) -> Result<(), EvalError> {
    match expr {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            check_supported(&a.expr)
        }
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Binary(b) => {
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_) => Ok(()),
        Expr::Call(c) => {
            functions::check_function(c.func.name)?;
            c.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Extension(_) => Err(EvalError::Unsupported("extension expressions".into())),
    }
}

pub(crate) fn instant<'a>(
    expr: &Expr,
    prepared: Option<&'a Prepared>,
    t: i64,
    storage: &'a dyn Storage,
    opts: &'a Options,
    mut shared: Option<&mut SharedEval>,
) -> Result<Value, EvalError> {
    match prepared {
        Some(p) => p.supported.clone()?,
        None => check_supported(expr)?,
    }
    let mut ev = Evaluator::new(storage, opts, t, t);
    ev.prepared = prepared.map(|p| p.matchers.as_slice());
    if let (Some(p), Some(cache)) = (prepared, shared.as_deref_mut())
        && !p.shared.is_empty()
        && cache.applies(t, opts)
    {
        ev.share_t = Some(t);
        ev.find_shared(expr, &mut 0, &p.shared, &mut 0, cache);
    }
    ev.prepare(expr, t, t)?;
    let result = ev.eval(expr, &[t]);
    if let Some(cache) = shared {
        for (node, v) in ev.kept.take() {
            cache.insert(&node, v);
        }
    }
    Ok(match result? {
        Val::Scalar(v) => Value::Scalar(v[0]),
        Val::Vector(mut v) => Value::InstantVector(v.pop().unwrap_or_default()),
        Val::Range(r) => {
            let mut out = Matrix::new();
            for i in 0..r.series.len() {
                let w = r.window(i, 0);
                if !w.is_empty() {
                    out.push(Series {
                        labels: r.series[i].labels.clone().into_owned(),
                        samples: w.to_vec(),
                    });
                }
            }
            Value::RangeVector(out)
        }
        Val::Str(s) => Value::String(s),
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn range<'a>(
    expr: &Expr,
    prepared: Option<&'a Prepared>,
    start: i64,
    end: i64,
    step: i64,
    storage: &'a dyn Storage,
    opts: &'a Options,
) -> Result<Matrix, EvalError> {
    if step <= 0 {
        return Err(EvalError::InvalidQuery(
            "zero or negative query resolution step widths are not accepted".into(),
        ));
    }
    if end < start {
        return Err(EvalError::InvalidQuery(
            "end timestamp must not be before start time".into(),
        ));
    }
    let steps = (end - start) / step + 1;
    if steps as u64 > opts.max_steps as u64 {
        return Err(EvalError::InvalidQuery(format!(
            "exceeded maximum resolution of {} points",
            opts.max_steps
        )));
    }
    match prepared {
        Some(p) => p.supported.clone()?,
        None => check_supported(expr)?,
    }
    let ts: Vec<i64> = (0..steps).map(|i| start + i * step).collect();
    let mut ev = Evaluator::new(storage, opts, start, end);
    ev.prepared = prepared.map(|p| p.matchers.as_slice());
    ev.prepare(expr, start, end)?;
    match ev.eval(expr, &ts)? {
        Val::Scalar(v) => Ok(vec![Series {
            labels: Labels::new(),
            samples: ts.iter().copied().zip(v).collect(),
        }]),
        Val::Vector(steps) => {
            let mut m = vectors_to_series(&ts, steps);
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            Ok(m)
        }
        other => Err(EvalError::InvalidQuery(format!(
            "invalid expression type {:?} for range query, must be scalar or instant vector",
            other.type_name()
        ))),
    }
}

/// Groups per-step vectors into series, in order of first appearance.
fn vectors_to_series(ts: &[i64], steps: Vec<Vec<Sample>>) -> Vec<Series> {
    let mut index: FastMap<Labels, usize> = FastMap::default();
    let mut out: Vec<Series> = Vec::new();
    for (i, vec) in steps.into_iter().enumerate() {
        for s in vec {
            let j = match index.get(&s.labels) {
                Some(&j) => j,
                None => {
                    index.insert(s.labels.clone(), out.len());
                    out.push(Series {
                        labels: s.labels,
                        samples: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            out[j].samples.push((ts[i], s.v));
        }
    }
    out
}

/// Fails when two elements of `vec` have the same labels.
pub(crate) fn check_duplicates(vec: &[Sample]) -> Result<(), EvalError> {
    if vec.len() < 2 {
        return Ok(());
    }
    let mut seen = FastSet::with_capacity_and_hasher(vec.len(), Default::default());
    for s in vec {
        if !seen.insert(&s.labels) {
            return Err(EvalError::DuplicateLabelset);
        }
    }
    Ok(())
}

/// The matcher sets of one selector (several with `or` inside the braces), or why they could
/// not be built.
type SelectorMatchers = Result<Vec<Vec<Matcher>>, EvalError>;

/// Every vector selector in `expr` (those of matrix selectors too), depth first, left to right.
fn selectors<'e>(expr: &'e Expr, out: &mut Vec<&'e VectorSelector>) {
    match expr {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Subquery(sq) => selectors(&sq.expr, out),
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                selectors(p, out);
            }
            selectors(&a.expr, out);
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// A parsed expression with the label matchers of its selectors built once, regular
/// expressions compiled, for an expression evaluated again and again (a rule).
///
/// Evaluating it gives the same results as evaluating [`Prepared::expr`]; a regular
/// expression that does not compile is reported when the expression is evaluated, as it
/// would be otherwise.
#[derive(Clone, Debug)]
pub struct Prepared {
    expr: Expr,
    supported: Result<(), EvalError>,
    matchers: Vec<SelectorMatchers>,
    /// Subexpressions other rules share, by pre-order node number (ascending); see
    /// [`super::share_subexpressions`].
    shared: Vec<(u32, Arc<SharedNode>)>,
}

impl Prepared {
    /// Builds the matchers of every selector of `expr`.
    pub fn new(expr: Expr) -> Self {
        let mut sels = Vec::new();
        selectors(&expr, &mut sels);
        let matchers = sels.into_iter().map(convert_matchers).collect();
        Prepared {
            supported: check_supported(&expr),
            expr,
            matchers,
            shared: Vec::new(),
        }
    }

    /// Forgets the marks of [`super::share_subexpressions`]: the expression is evaluated whole
    /// even beside a [`SharedEval`].
    pub fn unshare(&mut self) {
        self.shared.clear();
    }

    pub(crate) fn set_shared(&mut self, marks: Vec<(u32, Arc<SharedNode>)>) {
        debug_assert!(marks.is_sorted_by_key(|(i, _)| *i));
        self.shared = marks;
    }

    /// How many subexpressions of this expression are marked as shared with other rules.
    pub fn shared_count(&self) -> usize {
        self.shared.len()
    }

    /// The expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

fn convert_matchers(vs: &VectorSelector) -> SelectorMatchers {
    let conv = |m: &promql_parser::label::Matcher| {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Re,
            PMatchOp::NotRe(_) => MatchOp::NotRe,
        };
        Matcher::new(op, m.name.clone(), m.value.clone())
    };
    let mut base = Vec::new();
    if let Some(n) = &vs.name {
        base.push(Matcher::new(MatchOp::Equal, METRIC_NAME, n.clone())?);
    }
    for m in &vs.matchers.matchers {
        base.push(conv(m)?);
    }
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![base]);
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|group| {
            let mut set = base.clone();
            for m in group {
                set.push(conv(m)?);
            }
            Ok(set)
        })
        .collect()
}

impl<'a> Evaluator<'a> {
    fn new(storage: &'a dyn Storage, opts: &'a Options, query_start: i64, query_end: i64) -> Self {
        Evaluator {
            storage,
            opts,
            query_start,
            query_end,
            fetch_windows: FastMap::default(),
            single_time: FastMap::default(),
            fetched: FastMap::default(),
            prepared: None,
            share_t: None,
            hits: FastMap::default(),
            keep: FastMap::default(),
            kept: RefCell::new(Vec::new()),
        }
    }

    /// Walks `e` in pre-order (node numbers from `next`) beside the marked shared nodes
    /// `marks` (from `marks[*j]` on): a marked node whose result `cache` has is a hit and its
    /// subtree is neither fetched nor evaluated; one it lacks is computed and kept.
    fn find_shared(
        &mut self,
        e: &Expr,
        next: &mut u32,
        marks: &[(u32, Arc<SharedNode>)],
        j: &mut usize,
        cache: &mut SharedEval,
    ) {
        let index = *next;
        *next += 1;
        if *j >= marks.len() {
            return;
        }
        if marks[*j].0 == index {
            let node = &marks[*j].1;
            *j += 1;
            if let Some(v) = cache.get(node) {
                self.hits.insert(node_key(e), v);
                *next += subtree_len(e) - 1;
                while *j < marks.len() && marks[*j].0 < *next {
                    *j += 1;
                }
                return;
            }
            self.keep.insert(node_key(e), node.clone());
        }
        if matches!(e, Expr::Subquery(_)) {
            // Nothing inside a subquery is marked.
            *next += subtree_len(e) - 1;
            return;
        }
        for_each_child(e, |c| self.find_shared(c, next, marks, j, cache));
    }

    fn at_ms(&self, at: &AtModifier) -> i64 {
        match at {
            AtModifier::Start => self.query_start,
            AtModifier::End => self.query_end,
            AtModifier::At(t) => system_time_ms(t),
        }
    }

    /// The time a selector looks at for the evaluation step `t`.
    fn effective_time(&self, at: &Option<AtModifier>, offset: &Option<Offset>, t: i64) -> i64 {
        at.as_ref().map_or(t, |a| self.at_ms(a)) - offset_ms(offset)
    }

    fn effective_span(
        &self,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
        lo: i64,
        hi: i64,
    ) -> (i64, i64) {
        (
            self.effective_time(at, offset, lo),
            self.effective_time(at, offset, hi),
        )
    }

    fn subquery_step(&self, sq: &SubqueryExpr) -> i64 {
        match sq.step.as_ref().map(duration_ms) {
            Some(s) if s > 0 => s,
            _ => self.opts.default_subquery_step_ms.max(1),
        }
    }

    /// Works out the time span each selector needs, then fetches every selector once.
    fn prepare(&mut self, expr: &Expr, lo: i64, hi: i64) -> Result<(), EvalError> {
        self.plan(expr, lo, hi);
        let mut sels = Vec::new();
        selectors(expr, &mut sels);
        for (i, vs) in sels.into_iter().enumerate() {
            let pre = self.prepared.and_then(|p| p.get(i));
            self.fetch_selector(vs, pre)?;
        }
        Ok(())
    }

    fn widen(&mut self, vs: &VectorSelector, lo: i64, hi: i64) {
        let e = self.fetch_windows.entry(key(vs)).or_insert((lo, hi));
        e.0 = e.0.min(lo);
        e.1 = e.1.max(hi);
    }

    fn plan(&mut self, expr: &Expr, lo: i64, hi: i64) {
        if !self.hits.is_empty() && self.hits.contains_key(&node_key(expr)) {
            // Computed by another rule: nothing to fetch.
            return;
        }
        match expr {
            Expr::VectorSelector(vs) => {
                let (a, b) = self.effective_span(&vs.at, &vs.offset, lo, hi);
                let lookback = self.opts.lookback_delta_ms;
                self.widen(vs, a - lookback, b);
                let single = (a == b).then_some(a);
                self.single_time
                    .entry(key(vs))
                    .and_modify(|t| {
                        if *t != single {
                            *t = None;
                        }
                    })
                    .or_insert(single);
            }
            Expr::MatrixSelector(ms) => {
                let (a, b) = self.effective_span(&ms.vs.at, &ms.vs.offset, lo, hi);
                self.widen(&ms.vs, a - duration_ms(&ms.range), b);
            }
            Expr::Subquery(sq) => {
                let (a, b) = self.effective_span(&sq.at, &sq.offset, lo, hi);
                self.plan(&sq.expr, a - duration_ms(&sq.range), b);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.plan(p, lo, hi);
                }
                self.plan(&a.expr, lo, hi);
            }
            Expr::Unary(u) => self.plan(&u.expr, lo, hi),
            Expr::Binary(b) => {
                self.plan(&b.lhs, lo, hi);
                self.plan(&b.rhs, lo, hi);
            }
            Expr::Paren(p) => self.plan(&p.expr, lo, hi),
            Expr::Call(c) => c.args.args.iter().for_each(|a| self.plan(a, lo, hi)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn fetch_selector(
        &mut self,
        vs: &VectorSelector,
        prepared: Option<&'a SelectorMatchers>,
    ) -> Result<(), EvalError> {
        let k = key(vs);
        if self.fetched.contains_key(&k) {
            return Ok(());
        }
        let Some(&(lo, hi)) = self.fetch_windows.get(&k) else {
            return Ok(());
        };
        let converted;
        let sets: &[Vec<Matcher>] = match prepared {
            Some(Ok(sets)) => sets,
            Some(Err(e)) => return Err(e.clone()),
            None => {
                converted = convert_matchers(vs)?;
                &converted
            }
        };
        let storage = self.storage;
        let latest = matches!(self.single_time.get(&k), Some(Some(_)));
        let select = |m: &[Matcher]| {
            if latest {
                storage.select_latest(m, lo, hi)
            } else {
                storage.select(m, lo, hi)
            }
        };
        let mut series: Vec<SelectedSeries<'a>> = Vec::new();
        if sets.len() == 1 {
            series = select(&sets[0]);
        } else {
            let mut seen = FastSet::default();
            for set in sets {
                for s in select(set) {
                    if seen.insert(s.labels.clone()) {
                        series.push(s);
                    }
                }
            }
        }
        series.retain(|s| !s.samples.is_empty());
        // A storage returns one selection sorted; several are merged here.
        if sets.len() > 1 {
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        debug_assert!(series.is_sorted_by(|a, b| a.labels <= b.labels));
        self.fetched.insert(k, series);
        Ok(())
    }

    fn series_of(&self, vs: &VectorSelector) -> &[SelectedSeries<'a>] {
        self.fetched.get(&key(vs)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Evaluates `expr` at each of the step timestamps `ts`.
    pub(crate) fn eval(&self, expr: &Expr, ts: &[i64]) -> Result<Val<'_>, EvalError> {
        self.check_cancel()?;
        if self.hits.is_empty() && self.keep.is_empty() {
            return self.eval_node(expr, ts);
        }
        let at_share_t = ts.len() == 1 && Some(ts[0]) == self.share_t;
        let k = node_key(expr);
        if at_share_t && let Some(v) = self.hits.get(&k) {
            return Ok(match &**v {
                SharedVal::Scalar(x) => Val::Scalar(vec![*x]),
                SharedVal::Vector(v) => Val::Vector(vec![v.clone()]),
            });
        }
        let v = self.eval_node(expr, ts)?;
        if at_share_t && let Some(node) = self.keep.get(&k) {
            let kept = match &v {
                Val::Scalar(x) => Some(SharedVal::Scalar(x[0])),
                Val::Vector(steps) => Some(SharedVal::Vector(steps[0].clone())),
                Val::Range(_) | Val::Str(_) => None,
            };
            if let Some(kept) = kept {
                self.kept.borrow_mut().push((node.clone(), kept));
            }
        }
        Ok(v)
    }

    fn eval_node(&self, expr: &Expr, ts: &[i64]) -> Result<Val<'_>, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; ts.len()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(steps) => {
                    let mut out = Vec::with_capacity(steps.len());
                    for vec in steps {
                        let vec: Vec<Sample> = vec
                            .into_iter()
                            .map(|s| Sample {
                                labels: s.labels.without_metric_name(),
                                t_ms: s.t_ms,
                                v: -s.v,
                            })
                            .collect();
                        check_duplicates(&vec)?;
                        out.push(vec);
                    }
                    Ok(Val::Vector(out))
                }
                other => Err(EvalError::Type(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => {
                let mut steps = self.select_instant(vs, ts)?;
                for (vec, &t) in steps.iter_mut().zip(ts) {
                    for s in vec.iter_mut() {
                        s.t_ms = t;
                    }
                }
                Ok(Val::Vector(steps))
            }
            Expr::MatrixSelector(ms) => Ok(Val::Range(self.select_range(ms, ts))),
            Expr::Subquery(sq) => Ok(Val::Range(self.subquery(sq, ts)?)),
            Expr::Aggregate(a) => aggregation::eval(self, a, ts),
            Expr::Binary(b) => binary::eval(self, b, ts),
            Expr::Call(c) => functions::eval(self, c, ts),
            Expr::Extension(_) => Err(EvalError::Unsupported("extension expressions".into())),
        }
    }

    /// Evaluates `expr`, which must be a scalar.
    pub(crate) fn eval_scalar(&self, expr: &Expr, ts: &[i64]) -> Result<Vec<f64>, EvalError> {
        match self.eval(expr, ts)? {
            Val::Scalar(v) => Ok(v),
            other => Err(EvalError::Type(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates `expr`, which must be an instant vector.
    pub(crate) fn eval_vector(
        &self,
        expr: &Expr,
        ts: &[i64],
    ) -> Result<Vec<Vec<Sample>>, EvalError> {
        match self.eval(expr, ts)? {
            Val::Vector(v) => Ok(v),
            other => Err(EvalError::Type(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates `expr`, which must be a range vector.
    pub(crate) fn eval_range_vector(
        &self,
        expr: &Expr,
        ts: &[i64],
    ) -> Result<RangeVal<'_>, EvalError> {
        match self.eval(expr, ts)? {
            Val::Range(r) => Ok(r),
            other => Err(EvalError::Type(format!(
                "expected range vector, got {}",
                other.type_name()
            ))),
        }
    }

    /// [`EvalError::Cancelled`] once the caller has set [`Options::cancel`].
    pub(crate) fn check_cancel(&self) -> Result<(), EvalError> {
        match &self.opts.cancel {
            Some(c) if c.is_cancelled() => Err(EvalError::Cancelled),
            _ => Ok(()),
        }
    }

    /// The latest non-stale sample of every series within the lookback window of each step;
    /// `Sample::t_ms` is the sample's own timestamp.
    pub(crate) fn select_instant(
        &self,
        vs: &VectorSelector,
        ts: &[i64],
    ) -> Result<Vec<Vec<Sample>>, EvalError> {
        let series = self.series_of(vs);
        let lookback = self.opts.lookback_delta_ms;
        ts.iter()
            .map(|&t| {
                self.check_cancel()?;
                let reft = self.effective_time(&vs.at, &vs.offset, t);
                Ok(series
                    .iter()
                    .filter_map(|s| {
                        let i = s.samples.partition_point(|(st, _)| *st <= reft);
                        if i == 0 {
                            return None;
                        }
                        let (st, v) = s.samples[i - 1];
                        if st < reft - lookback || is_stale_nan(v) {
                            return None;
                        }
                        Some(Sample {
                            labels: s.labels.as_ref().clone(),
                            t_ms: st,
                            v,
                        })
                    })
                    .collect::<Vec<_>>())
            })
            .collect()
    }

    fn select_range(&self, ms: &MatrixSelector, ts: &[i64]) -> RangeVal<'_> {
        let range_ms = duration_ms(&ms.range);
        let series = self
            .series_of(&ms.vs)
            .iter()
            .filter_map(|s| {
                let pts: &[(i64, f64)] = &s.samples;
                // Stale markers are left out; the points are copied only when there are some.
                let samples = if !s.no_stale && pts.iter().any(|(_, v)| is_stale_nan(*v)) {
                    Cow::Owned(
                        pts.iter()
                            .copied()
                            .filter(|(_, v)| !is_stale_nan(*v))
                            .collect(),
                    )
                } else {
                    Cow::Borrowed(pts)
                };
                (!samples.is_empty()).then(|| SelectedSeries {
                    labels: s.labels.clone(),
                    samples,
                    no_stale: true,
                })
            })
            .collect();
        let windows = ts
            .iter()
            .map(|&t| {
                let e = self.effective_time(&ms.vs.at, &ms.vs.offset, t);
                (e - range_ms, e)
            })
            .collect();
        RangeVal {
            series,
            windows,
            range_ms,
            one_name: ms.vs.name.is_some()
                || ms
                    .vs
                    .matchers
                    .matchers
                    .iter()
                    .any(|m| m.name == METRIC_NAME && m.op == PMatchOp::Equal),
        }
    }

    fn subquery(&self, sq: &SubqueryExpr, ts: &[i64]) -> Result<RangeVal<'_>, EvalError> {
        let range_ms = duration_ms(&sq.range);
        let step = self.subquery_step(sq);
        let effs: Vec<i64> = ts
            .iter()
            .map(|&t| self.effective_time(&sq.at, &sq.offset, t))
            .collect();
        let (Some(&min_e), Some(&max_e)) = (effs.iter().min(), effs.iter().max()) else {
            return Ok(RangeVal {
                series: Vec::new(),
                windows: Vec::new(),
                range_ms,
                one_name: false,
            });
        };
        let lo = min_e - range_ms;
        // The first timestamp at or after `lo` that is a multiple of the step, as Prometheus
        // computes it (integer division truncates towards zero).
        let mut start = step * (lo / step);
        if start < lo {
            start += step;
        }
        let n = if max_e < start {
            0
        } else {
            (max_e - start) / step + 1
        };
        if n as u64 > self.opts.max_steps as u64 {
            return Err(EvalError::InvalidQuery(format!(
                "subquery exceeds {} steps",
                self.opts.max_steps
            )));
        }
        let inner: Vec<i64> = (0..n).map(|i| start + i * step).collect();
        let series: Vec<SelectedSeries<'_>> = if inner.is_empty() {
            Vec::new()
        } else {
            match self.eval(&sq.expr, &inner)? {
                Val::Scalar(v) => vec![SelectedSeries {
                    labels: Cow::Owned(Labels::new()),
                    samples: Cow::Owned(inner.iter().copied().zip(v).collect()),
                    no_stale: false,
                }],
                Val::Vector(steps) => vectors_to_series(&inner, steps)
                    .into_iter()
                    .map(SelectedSeries::from)
                    .collect(),
                other => {
                    return Err(EvalError::Type(format!(
                        "subquery is only allowed on instant vector or scalar, got {}",
                        other.type_name()
                    )));
                }
            }
        };
        let windows = effs.iter().map(|&e| (e - range_ms, e)).collect();
        Ok(RangeVal {
            series,
            windows,
            range_ms,
            one_name: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::promql::{
        EvalError, Labels, Matcher, MemStorage, Options, SelectedSeries, Storage, Value,
        eval_instant, eval_range, stale_nan,
    };

    fn labels(name: &str, pairs: &[(&str, &str)]) -> Labels {
        let mut l = Labels::from_pairs(pairs.iter().copied());
        l.set("__name__", name);
        l
    }

    fn vector(v: Result<Value, EvalError>) -> Vec<(String, f64)> {
        match v.unwrap() {
            Value::InstantVector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect(),
            other => panic!("expected a vector, got {other:?}"),
        }
    }

    const S: i64 = 1000;

    #[test]
    fn lookback_is_five_minutes_inclusive_and_configurable() {
        let mut s = MemStorage::new();
        s.add_sample(&labels("m", &[]), 0, 1.0);
        let opts = Options::default();
        assert_eq!(
            vector(eval_instant("m", 300 * S, &s, &opts)),
            [("m{}".to_string(), 1.0)]
        );
        assert!(vector(eval_instant("m", 300 * S + 1, &s, &opts)).is_empty());
        let short = Options {
            lookback_delta_ms: 60 * S,
            ..Options::default()
        };
        assert!(vector(eval_instant("m", 61 * S, &s, &short)).is_empty());
    }

    #[test]
    fn a_stale_marker_ends_a_series_until_the_next_sample() {
        let mut s = MemStorage::new();
        let l = labels("m", &[("a", "b")]);
        s.add_samples(&l, [(0, 1.0), (10 * S, stale_nan()), (20 * S, 2.0)]);
        let opts = Options::default();
        assert_eq!(vector(eval_instant("m", 5 * S, &s, &opts)).len(), 1);
        assert!(vector(eval_instant("m", 10 * S, &s, &opts)).is_empty());
        assert!(vector(eval_instant("m", 15 * S, &s, &opts)).is_empty());
        assert_eq!(vector(eval_instant("m", 25 * S, &s, &opts))[0].1, 2.0);
        // Range selectors skip the marker.
        assert_eq!(
            vector(eval_instant("count_over_time(m[1m])", 30 * S, &s, &opts))[0].1,
            2.0
        );
    }

    #[test]
    fn regex_selectors_are_anchored() {
        let mut s = MemStorage::new();
        for job in ["api", "api-server", "web"] {
            s.add_sample(&labels("up", &[("job", job)]), 0, 1.0);
        }
        let got = vector(eval_instant(
            r#"up{job=~"api|web"}"#,
            0,
            &s,
            &Options::default(),
        ));
        let jobs: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(jobs, [r#"up{job="api"}"#, r#"up{job="web"}"#]);
        let got = vector(eval_instant(
            r#"up{job!~"api"}"#,
            0,
            &s,
            &Options::default(),
        ));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn offset_and_at_move_the_selection() {
        let mut s = MemStorage::new();
        s.add_samples(&labels("m", &[]), (0..=100).map(|i| (i * 10 * S, i as f64)));
        let opts = Options::default();
        assert_eq!(
            vector(eval_instant("m offset 100s", 500 * S, &s, &opts))[0].1,
            40.0
        );
        assert_eq!(
            vector(eval_instant("m @ 100", 500 * S, &s, &opts))[0].1,
            10.0
        );
        assert_eq!(
            vector(eval_instant(
                "sum_over_time(m[30s:10s])",
                1000 * S,
                &s,
                &opts
            ))[0]
                .1,
            97.0 + 98.0 + 99.0 + 100.0
        );
    }

    #[test]
    fn range_queries_group_steps_into_sorted_series() {
        let mut s = MemStorage::new();
        s.add_samples(&labels("m", &[("i", "2")]), [(0, 1.0), (60 * S, 2.0)]);
        s.add_samples(&labels("m", &[("i", "1")]), [(60 * S, 5.0)]);
        let m = eval_range("m * 2", 0, 120 * S, 60 * S, &s, &Options::default()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].labels.to_string(), r#"{i="1"}"#);
        assert_eq!(m[0].samples, vec![(60 * S, 10.0), (120 * S, 10.0)]);
        assert_eq!(m[1].samples, vec![(0, 2.0), (60 * S, 4.0), (120 * S, 4.0)]);
        let m = eval_range("time()", 0, 120 * S, 60 * S, &s, &Options::default()).unwrap();
        assert_eq!(
            m[0].samples,
            vec![(0, 0.0), (60 * S, 60.0), (120 * S, 120.0)]
        );
        assert!(matches!(
            eval_range("m[1m]", 0, 60 * S, 60 * S, &s, &Options::default()),
            Err(EvalError::InvalidQuery(_))
        ));
    }

    /// Cancels the evaluation the first time anything is selected from it, as a server
    /// whose request timed out would while the evaluation runs.
    struct CancelOnSelect<'s> {
        inner: &'s MemStorage,
        cancel: crate::promql::Cancel,
    }

    impl Storage for CancelOnSelect<'_> {
        fn select(&self, m: &[Matcher], lo: i64, hi: i64) -> Vec<SelectedSeries<'_>> {
            self.cancel.cancel();
            self.inner.select(m, lo, hi)
        }
    }

    #[test]
    fn a_cancelled_evaluation_stops_with_cancelled_instead_of_finishing() {
        let mut s = MemStorage::new();
        for i in 0..50 {
            let l = labels("m", &[("i", &i.to_string())]);
            s.add_samples(&l, (0..600).map(|k| (k * 15 * S, k as f64)));
        }
        let q = "sum by (i) (rate(m[5m])) > avg_over_time(m[10m:1m])";
        let plain = eval_range(q, 0, 9000 * S, 15 * S, &s, &Options::default()).unwrap();
        assert!(!plain.is_empty());
        // A flag that is never set changes nothing.
        let unset = Options {
            cancel: Some(crate::promql::Cancel::new()),
            ..Options::default()
        };
        assert_eq!(eval_range(q, 0, 9000 * S, 15 * S, &s, &unset), Ok(plain));
        // Set while the evaluation runs: it gives up, for range and instant queries alike.
        for instant in [false, true] {
            let cancel = crate::promql::Cancel::new();
            let storage = CancelOnSelect {
                inner: &s,
                cancel: cancel.clone(),
            };
            let opts = Options {
                cancel: Some(cancel),
                ..Options::default()
            };
            let r = if instant {
                eval_instant(q, 9000 * S, &storage, &opts).map(|_| ())
            } else {
                eval_range(q, 0, 9000 * S, 15 * S, &storage, &opts).map(|_| ())
            };
            assert_eq!(r, Err(EvalError::Cancelled), "instant: {instant}");
        }
    }

    #[test]
    fn unsupported_features_are_named() {
        let s = MemStorage::new();
        let err = eval_instant("histogram_count(m)", 0, &s, &Options::default()).unwrap_err();
        assert_eq!(
            err,
            EvalError::Unsupported("function histogram_count (native histograms)".into())
        );
    }

    #[test]
    fn dropping_the_name_must_not_merge_series() {
        let mut s = MemStorage::new();
        s.add_sample(&labels("a", &[("x", "1")]), 0, 1.0);
        s.add_sample(&labels("b", &[("x", "1")]), 0, 2.0);
        let err = eval_instant(r#"-{__name__=~"a|b"}"#, 0, &s, &Options::default()).unwrap_err();
        assert_eq!(err, EvalError::DuplicateLabelset);
        assert_eq!(
            err.to_string(),
            "vector cannot contain metrics with the same labelset"
        );
    }
}
