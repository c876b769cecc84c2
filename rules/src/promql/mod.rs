//! A PromQL engine for float samples, following Prometheus v2.42 semantics.
//!
//! Expressions are parsed with `promql-parser` and evaluated over a caller-supplied [`Storage`]
//! at a time the caller passes in: the engine never reads the clock. An instant query
//! ([`eval_instant`]) gives a [`Value`]; a range query ([`eval_range`]) gives a [`Matrix`].
//! Both run through the same step-wise evaluator, so an instant query is a range query with one
//! step.
//!
//! Supported: selectors with `=`, `!=`, `=~`, `!~` (regular expressions fully anchored),
//! `offset`, `@`, range vectors, subqueries, staleness markers and the lookback delta, all binary
//! operators with `bool` and vector matching, the aggregation operators and the functions of
//! Prometheus v2.42 over float samples. Native histograms and the functions that need them are
//! refused with [`EvalError::Unsupported`].
//!
//! ```
//! use yunwei_rules::promql::{eval_instant, Labels, MemStorage, Options, Value};
//!
//! let mut storage = MemStorage::new();
//! let up = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
//! storage.add_samples(&up, [(0, 1.0), (15_000, 0.0)]);
//! let v = eval_instant("up == 0", 20_000, &storage, &Options::default()).unwrap();
//! let Value::InstantVector(v) = v else { panic!() };
//! assert_eq!(v.len(), 1);
//! ```

mod aggregation;
mod binary;
mod engine;
mod functions;
pub(crate) mod hash;
mod limits;
pub mod promqltest;
mod shared;
mod storage;
mod value;

use promql_parser::parser::Expr;

pub use engine::{Prepared, check_supported};
pub(crate) use functions::parse_go_float;
pub use shared::{SharedEval, share_subexpressions};
pub use storage::{
    MatchOp, Matcher, MemStorage, SelectedSeries, SeriesRef, Storage, anchored_regex, keep_last,
    merge_selections,
};
pub use value::{
    Label, Labels, METRIC_NAME, Matrix, STALE_NAN_BITS, Sample, Series, Value, Vector,
    format_value, is_stale_nan, stale_nan,
};

/// A parsed PromQL expression (`promql-parser`'s AST).
pub use promql_parser::parser::Expr as PromExpr;

/// Evaluation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// How far back an instant selector looks for the latest sample (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// Step of a subquery written without one (`x[5m:]`); Prometheus uses the rule group's or
    /// the global evaluation interval.
    pub default_subquery_step_ms: i64,
    /// Most steps a range query or a subquery may have.
    pub max_steps: usize,
    /// Set by the caller to stop an evaluation it no longer waits for (a query past its time
    /// limit): the evaluator checks it before each node and each step of a selection or range
    /// function, and gives up with [`EvalError::Cancelled`]. `None`: runs to the end.
    pub cancel: Option<Cancel>,
}

/// A flag the caller sets to stop an evaluation that is under way ([`Options::cancel`]); clones
/// share the flag. Two `Cancel`s are equal when they are the same flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every evaluation holding a clone of this flag to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PartialEq for Cancel {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cancel {}

impl Default for Options {
    fn default() -> Self {
        Options {
            lookback_delta_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            max_steps: 1_000_000,
            cancel: None,
        }
    }
}

/// Why a query could not be evaluated.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The text is not valid PromQL.
    #[error("parse error: {0}")]
    Parse(String),
    /// A construct yunwei does not evaluate (named).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Two elements of one result would have the same label set.
    #[error("vector cannot contain metrics with the same labelset")]
    DuplicateLabelset,
    /// Vector matching found several matches where one was required.
    #[error("{0}")]
    VectorMatching(String),
    /// A function or operator argument is invalid (regex, label name, parameter).
    #[error("{0}")]
    InvalidArgument(String),
    /// An operand has a type the operation does not accept.
    #[error("type error: {0}")]
    Type(String),
    /// The query as a whole cannot be run (for example a range query over a string).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The caller stopped the evaluation ([`Options::cancel`]).
    #[error("the evaluation was cancelled")]
    Cancelled,
}

/// A query: text to parse, or an expression parsed already.
#[derive(Clone, Copy, Debug)]
pub enum Query<'a> {
    /// PromQL text.
    Text(&'a str),
    /// A parsed expression.
    Parsed(&'a Expr),
    /// A parsed expression with its matchers compiled.
    Prepared(&'a Prepared),
}

impl<'a> From<&'a str> for Query<'a> {
    fn from(s: &'a str) -> Self {
        Query::Text(s)
    }
}

impl<'a> From<&'a String> for Query<'a> {
    fn from(s: &'a String) -> Self {
        Query::Text(s)
    }
}

impl<'a> From<&'a Expr> for Query<'a> {
    fn from(e: &'a Expr) -> Self {
        Query::Parsed(e)
    }
}

impl<'a> From<&'a Prepared> for Query<'a> {
    fn from(p: &'a Prepared) -> Self {
        Query::Prepared(p)
    }
}

/// Parses PromQL text. Text longer or more deeply nested than [`yunwei_conf::limits`] allows
/// (`MAX_QUERY_BYTES`, `MAX_QUERY_DEPTH`, `MAX_QUERY_OPERATORS`) is refused before the parser
/// sees it, so no query can overflow the stack; the error names the limit.
pub fn parse(query: &str) -> Result<Expr, EvalError> {
    limits::check_text(query).map_err(EvalError::Parse)?;
    let expr = promql_parser::parser::parse(query).map_err(EvalError::Parse)?;
    limits::check_expr(&expr).map_err(EvalError::Parse)?;
    Ok(expr)
}

fn with_expr<T>(
    query: Query<'_>,
    f: impl FnOnce(&Expr, Option<&Prepared>) -> Result<T, EvalError>,
) -> Result<T, EvalError> {
    match query {
        Query::Text(s) => f(&parse(s)?, None),
        Query::Parsed(e) => f(e, None),
        Query::Prepared(p) => f(p.expr(), Some(p)),
    }
}

/// Evaluates `query` at `t_ms` (Unix milliseconds).
pub fn eval_instant<'a>(
    query: impl Into<Query<'a>>,
    t_ms: i64,
    storage: &dyn Storage,
    opts: &Options,
) -> Result<Value, EvalError> {
    with_expr(query.into(), |e, p| {
        engine::instant(e, p, t_ms, storage, opts, None)
    })
}

/// [`eval_instant`] of a prepared expression, reusing the results of shared subexpressions
/// that `shared` holds and keeping those this evaluation computes (see [`SharedEval`]). The
/// result is the same as without `shared`, provided every write to `storage` since `shared`
/// was made has been reported with [`SharedEval::wrote`].
pub fn eval_instant_shared(
    prepared: &Prepared,
    t_ms: i64,
    storage: &dyn Storage,
    opts: &Options,
    shared: &mut SharedEval,
) -> Result<Value, EvalError> {
    engine::instant(
        prepared.expr(),
        Some(prepared),
        t_ms,
        storage,
        opts,
        Some(shared),
    )
}

/// Evaluates `query` at every step from `start_ms` to `end_ms` (both included); the result's
/// series are sorted by labels. Only scalar and instant-vector expressions are allowed.
pub fn eval_range<'a>(
    query: impl Into<Query<'a>>,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    storage: &dyn Storage,
    opts: &Options,
) -> Result<Matrix, EvalError> {
    with_expr(query.into(), |e, p| {
        engine::range(e, p, start_ms, end_ms, step_ms, storage, opts)
    })
}
