//! PromQL functions over float samples, following Prometheus v2.42: range-vector functions
//! (`rate` and its extrapolation, `*_over_time`, `deriv`, `predict_linear`, ...), element-wise
//! math, label manipulation, sorting, `histogram_quantile` over classic `le` buckets, and the
//! calendar functions (UTC).

use crate::promql::hash::{FastMap, FastSet};
use std::cmp::Ordering;

use promql_parser::parser::{Call, Expr};

use super::EvalError;
use super::aggregation::{go_sort, is_valid_label_name, quantile};
use super::engine::{Evaluator, Val, check_duplicates, unparen};
use super::storage::anchored_regex;
use super::value::{Labels, METRIC_NAME, Sample};

/// Functions evaluated here.
const SUPPORTED: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "label_join",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Fails with [`EvalError::Unsupported`] for a function the engine does not evaluate.
pub(crate) fn check_function(name: &str) -> Result<(), EvalError> {
    match name {
        "histogram_count" | "histogram_sum" | "histogram_fraction" => Err(EvalError::Unsupported(
            format!("function {name} (native histograms)"),
        )),
        "sort_by_label" | "sort_by_label_desc" => Err(EvalError::Unsupported(format!(
            "function {name} (experimental)"
        ))),
        n if SUPPORTED.contains(&n) => Ok(()),
        n => Err(EvalError::Unsupported(format!("function {n}"))),
    }
}

fn arg(c: &Call, i: usize) -> Result<&Expr, EvalError> {
    c.args.args.get(i).map(|b| unparen(b)).ok_or_else(|| {
        EvalError::Type(format!(
            "function {} is missing argument {}",
            c.func.name,
            i + 1
        ))
    })
}

fn string_arg(c: &Call, i: usize) -> Result<String, EvalError> {
    match arg(c, i)? {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(EvalError::Type(format!(
            "argument {} of {} must be a string literal",
            i + 1,
            c.func.name
        ))),
    }
}

pub(crate) fn eval<'s>(ev: &'s Evaluator<'_>, c: &Call, ts: &[i64]) -> Result<Val<'s>, EvalError> {
    let name = c.func.name;
    check_function(name)?;
    match name {
        "time" => Ok(Val::Scalar(ts.iter().map(|&t| t as f64 / 1000.0).collect())),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; ts.len()])),
        "vector" => {
            let s = ev.eval_scalar(arg(c, 0)?, ts)?;
            Ok(Val::Vector(
                s.into_iter()
                    .zip(ts)
                    .map(|(v, &t)| {
                        vec![Sample {
                            labels: Labels::new(),
                            t_ms: t,
                            v,
                        }]
                    })
                    .collect(),
            ))
        }
        "scalar" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            Ok(Val::Scalar(
                v.iter()
                    .map(|vec| if vec.len() == 1 { vec[0].v } else { f64::NAN })
                    .collect(),
            ))
        }
        "timestamp" => timestamp(ev, c, ts),
        "absent" => {
            let a = arg(c, 0)?;
            let v = ev.eval_vector(a, ts)?;
            let labels = absent_labels(a);
            Ok(Val::Vector(
                v.iter()
                    .zip(ts)
                    .map(|(vec, &t)| {
                        if vec.is_empty() {
                            vec![Sample {
                                labels: labels.clone(),
                                t_ms: t,
                                v: 1.0,
                            }]
                        } else {
                            Vec::new()
                        }
                    })
                    .collect(),
            ))
        }
        "label_replace" => label_replace(ev, c, ts),
        "label_join" => label_join(ev, c, ts),
        "sort" | "sort_desc" => {
            let desc = name == "sort_desc";
            let mut v = ev.eval_vector(arg(c, 0)?, ts)?;
            for vec in &mut v {
                // NaN goes last either way.
                go_sort(vec, |a, b| {
                    if b.v.is_nan() {
                        return !a.v.is_nan();
                    }
                    if desc { a.v > b.v } else { a.v < b.v }
                });
            }
            Ok(Val::Vector(v))
        }
        "histogram_quantile" => histogram_quantile(ev, c, ts),
        "round" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            let to_nearest = if c.args.len() >= 2 {
                ev.eval_scalar(arg(c, 1)?, ts)?
            } else {
                vec![1.0; ts.len()]
            };
            map_steps(v, |i, x| {
                let inv = 1.0 / to_nearest[i];
                Some((x * inv + 0.5).floor() / inv)
            })
        }
        "clamp" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            let min = ev.eval_scalar(arg(c, 1)?, ts)?;
            let max = ev.eval_scalar(arg(c, 2)?, ts)?;
            // Nothing when max < min; a NaN bound makes every value NaN.
            map_steps(v, |i, x| {
                (max[i].partial_cmp(&min[i]) != Some(Ordering::Less))
                    .then(|| go_max(min[i], go_min(max[i], x)))
            })
        }
        "clamp_min" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            let min = ev.eval_scalar(arg(c, 1)?, ts)?;
            map_steps(v, |i, x| Some(go_max(min[i], x)))
        }
        "clamp_max" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            let max = ev.eval_scalar(arg(c, 1)?, ts)?;
            map_steps(v, |i, x| Some(go_min(max[i], x)))
        }
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => {
            let f = |secs: i64| date_part(name, secs);
            if c.args.is_empty() {
                Ok(Val::Vector(
                    ts.iter()
                        .map(|&t| {
                            vec![Sample {
                                labels: Labels::new(),
                                t_ms: t,
                                v: f(t / 1000),
                            }]
                        })
                        .collect(),
                ))
            } else {
                let v = ev.eval_vector(arg(c, 0)?, ts)?;
                map_steps(v, |_, x| Some(f(x as i64)))
            }
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sgn" | "acos"
        | "acosh" | "asin" | "asinh" | "atan" | "atanh" | "cos" | "cosh" | "sin" | "sinh"
        | "tan" | "tanh" | "deg" | "rad" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sgn" => |x| {
                    if x < 0.0 {
                        -1.0
                    } else if x > 0.0 {
                        1.0
                    } else {
                        x
                    }
                },
                "acos" => f64::acos,
                "acosh" => f64::acosh,
                "asin" => f64::asin,
                "asinh" => f64::asinh,
                "atan" => f64::atan,
                "atanh" => f64::atanh,
                "cos" => f64::cos,
                "cosh" => f64::cosh,
                "sin" => f64::sin,
                "sinh" => f64::sinh,
                "tan" => f64::tan,
                "tanh" => f64::tanh,
                "deg" => |x| x * 180.0 / std::f64::consts::PI,
                _ => |x| x * std::f64::consts::PI / 180.0,
            };
            map_steps(v, |_, x| Some(f(x)))
        }
        _ => range_function(ev, c, ts),
    }
}

/// Applies `f(step, value)` to every element, dropping the metric name; `None` drops the element.
fn map_steps(
    v: Vec<Vec<Sample>>,
    f: impl Fn(usize, f64) -> Option<f64>,
) -> Result<Val<'static>, EvalError> {
    let mut out = Vec::with_capacity(v.len());
    for (i, vec) in v.into_iter().enumerate() {
        let vec: Vec<Sample> = vec
            .into_iter()
            .filter_map(|s| {
                f(i, s.v).map(|v| Sample {
                    labels: s.labels.without_metric_name(),
                    t_ms: s.t_ms,
                    v,
                })
            })
            .collect();
        check_duplicates(&vec)?;
        out.push(vec);
    }
    Ok(Val::Vector(out))
}

/// Go's `math.Max`: NaN wins, then +Inf.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: NaN wins, then -Inf.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

fn timestamp<'s>(ev: &'s Evaluator<'_>, c: &Call, ts: &[i64]) -> Result<Val<'s>, EvalError> {
    // A selector's samples carry their own timestamps; anything else is stamped with the
    // evaluation time.
    let steps = match arg(c, 0)? {
        Expr::VectorSelector(vs) => ev.select_instant(vs, ts)?,
        other => ev.eval_vector(other, ts)?,
    };
    let mut out = Vec::with_capacity(ts.len());
    for (vec, &t) in steps.into_iter().zip(ts) {
        let vec: Vec<Sample> = vec
            .into_iter()
            .map(|s| Sample {
                labels: s.labels.without_metric_name(),
                t_ms: t,
                v: s.t_ms as f64 / 1000.0,
            })
            .collect();
        check_duplicates(&vec)?;
        out.push(vec);
    }
    Ok(Val::Vector(out))
}

/// The labels `absent()` and `absent_over_time()` give: the selector's equality matchers, except
/// for names matched more than once.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unparen(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::new(),
    };
    let mut l = Labels::new();
    let mut has = FastSet::default();
    for m in vs
        .matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
    {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name) {
            l.set(m.name.clone(), m.value.clone());
            has.insert(m.name.clone());
        } else {
            l.remove(&m.name);
        }
    }
    l
}

fn label_replace<'s>(ev: &'s Evaluator<'_>, c: &Call, ts: &[i64]) -> Result<Val<'s>, EvalError> {
    let dst = string_arg(c, 1)?;
    let repl = string_arg(c, 2)?;
    let src = string_arg(c, 3)?;
    let re_src = string_arg(c, 4)?;
    let re = anchored_regex(&re_src).map_err(|_| {
        EvalError::InvalidArgument(format!(
            "invalid regular expression in label_replace(): {re_src}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return Err(EvalError::InvalidArgument(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
    let mut cache: FastMap<Labels, Labels> = FastMap::default();
    let mut out = Vec::with_capacity(v.len());
    for vec in v {
        let mut res = Vec::with_capacity(vec.len());
        for s in vec {
            let labels = match cache.get(&s.labels) {
                Some(l) => l.clone(),
                None => {
                    let src_val = s.labels.value(&src);
                    let l = match re.captures(src_val) {
                        None => s.labels.clone(),
                        Some(caps) => {
                            let mut expanded = String::new();
                            caps.expand(&repl, &mut expanded);
                            let mut l = s.labels.clone();
                            l.remove(&dst);
                            l.set(dst.clone(), expanded);
                            l
                        }
                    };
                    cache.insert(s.labels.clone(), l.clone());
                    l
                }
            };
            res.push(Sample {
                labels,
                t_ms: s.t_ms,
                v: s.v,
            });
        }
        check_duplicates(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

fn label_join<'s>(ev: &'s Evaluator<'_>, c: &Call, ts: &[i64]) -> Result<Val<'s>, EvalError> {
    let dst = string_arg(c, 1)?;
    let sep = string_arg(c, 2)?;
    let mut srcs = Vec::new();
    for i in 3..c.args.len() {
        let s = string_arg(c, i)?;
        if !is_valid_label_name(&s) {
            return Err(EvalError::InvalidArgument(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !is_valid_label_name(&dst) {
        return Err(EvalError::InvalidArgument(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
    let mut out = Vec::with_capacity(v.len());
    for vec in v {
        let res: Vec<Sample> = vec
            .into_iter()
            .map(|s| {
                let joined = srcs
                    .iter()
                    .map(|n| s.labels.value(n))
                    .collect::<Vec<_>>()
                    .join(&sep);
                let mut labels = s.labels;
                if joined.is_empty() {
                    labels.remove(&dst);
                } else {
                    labels.set(dst.clone(), joined);
                }
                Sample {
                    labels,
                    t_ms: s.t_ms,
                    v: s.v,
                }
            })
            .collect();
        check_duplicates(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

/// Parses a float like Go's `strconv.ParseFloat` (accepting `Inf`, `+Inf`, `NaN`).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn histogram_quantile<'s>(
    ev: &'s Evaluator<'_>,
    c: &Call,
    ts: &[i64],
) -> Result<Val<'s>, EvalError> {
    let q = ev.eval_scalar(arg(c, 0)?, ts)?;
    let v = ev.eval_vector(arg(c, 1)?, ts)?;
    let mut out = Vec::with_capacity(ts.len());
    for (i, vec) in v.into_iter().enumerate() {
        let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
        let mut index: FastMap<Labels, usize> = FastMap::default();
        for s in vec {
            let Some(upper) = s.labels.get("le").and_then(parse_go_float) else {
                continue;
            };
            // The metric name is part of the key so that two histograms never mix.
            let key = s.labels.drop(&["le".to_string()]);
            let gi = *index.entry(key).or_insert_with(|| {
                groups.push((
                    s.labels.drop(&["le".to_string(), METRIC_NAME.to_string()]),
                    Vec::new(),
                ));
                groups.len() - 1
            });
            groups[gi].1.push((upper, s.v));
        }
        let res: Vec<Sample> = groups
            .into_iter()
            .map(|(labels, mut buckets)| Sample {
                labels,
                t_ms: ts[i],
                v: bucket_quantile(q[i], &mut buckets),
            })
            .collect();
        check_duplicates(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

/// Prometheus's `bucketQuantile` over classic buckets `(upper bound, cumulative count)`.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, count) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += count,
            _ => merged.push((ub, count)),
        }
    }
    // Make the counts monotonic.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|b| b.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Civil date `(year, month, day)` of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// One calendar field of a Unix time in seconds, in UTC.
fn date_part(name: &str, secs: i64) -> f64 {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let v = match name {
        "year" => y,
        "month" => m,
        "day_of_month" => d,
        "day_of_week" => (days + 4).rem_euclid(7),
        "day_of_year" => (1..m).map(|mm| days_in_month(y, mm)).sum::<i64>() + d,
        "days_in_month" => days_in_month(y, m),
        "hour" => sod / 3600,
        _ => (sod % 3600) / 60,
    };
    v as f64
}

/// Inputs of a range-vector function for one series at one step.
struct RangeCtx {
    /// The evaluation time of the step.
    t: i64,
    /// The selection window `[lo, hi]`.
    window: (i64, i64),
    /// The selector's range in milliseconds.
    range_ms: i64,
    /// Scalar parameters at this step.
    params: [f64; 2],
}

fn range_function<'s>(ev: &'s Evaluator<'_>, c: &Call, ts: &[i64]) -> Result<Val<'s>, EvalError> {
    let name = c.func.name;
    let (matrix_idx, scalar_idx): (usize, &[usize]) = match name {
        "quantile_over_time" => (1, &[0]),
        "predict_linear" => (0, &[1]),
        "holt_winters" => (0, &[1, 2]),
        _ => (0, &[]),
    };
    let r = ev.eval_range_vector(arg(c, matrix_idx)?, ts)?;
    let mut scalars = Vec::new();
    for &i in scalar_idx {
        scalars.push(ev.eval_scalar(arg(c, i)?, ts)?);
    }
    if name == "absent_over_time" {
        let labels = absent_labels(arg(c, 0)?);
        return Ok(Val::Vector(
            ts.iter()
                .enumerate()
                .map(|(i, &t)| {
                    let present = (0..r.series.len()).any(|s| !r.window(s, i).is_empty());
                    if present {
                        Vec::new()
                    } else {
                        vec![Sample {
                            labels: labels.clone(),
                            t_ms: t,
                            v: 1.0,
                        }]
                    }
                })
                .collect(),
        ));
    }
    let labels: Vec<Labels> = r
        .series
        .iter()
        .map(|s| {
            if name == "last_over_time" {
                s.labels.as_ref().clone()
            } else {
                s.labels.without_metric_name()
            }
        })
        .collect();
    let mut produced = vec![false; r.series.len()];
    let mut out = Vec::with_capacity(ts.len());
    for (i, &t) in ts.iter().enumerate() {
        ev.check_cancel()?;
        let mut params = [0.0; 2];
        for (p, s) in params.iter_mut().zip(&scalars) {
            *p = s[i];
        }
        let ctx = RangeCtx {
            t,
            window: r.windows[i],
            range_ms: r.range_ms,
            params,
        };
        let mut vec = Vec::new();
        let mut xs = RegressionX::default();
        for s in 0..r.series.len() {
            let w = r.window(s, i);
            if w.is_empty() {
                continue;
            }
            if let Some(v) = apply_range(name, w, &ctx, &mut xs)? {
                produced[s] = true;
                vec.push(Sample {
                    labels: labels[s].clone(),
                    t_ms: t,
                    v,
                });
            }
        }
        out.push(vec);
    }
    // The series have distinct label sets; without the metric name they can collide only when
    // the selector allows several names.
    if !r.one_name {
        let mut seen = FastSet::default();
        for (s, p) in produced.iter().enumerate() {
            if *p && !seen.insert(&labels[s]) {
                return Err(EvalError::DuplicateLabelset);
            }
        }
    }
    Ok(Val::Vector(out))
}

fn apply_range(
    name: &str,
    w: &[(i64, f64)],
    ctx: &RangeCtx,
    xs: &mut RegressionX,
) -> Result<Option<f64>, EvalError> {
    let values = || w.iter().map(|p| p.1);
    Ok(match name {
        "rate" => extrapolated_rate(w, ctx, true, true),
        "increase" => extrapolated_rate(w, ctx, true, false),
        "delta" => extrapolated_rate(w, ctx, false, false),
        "irate" => instant_value(w, true),
        "idelta" => instant_value(w, false),
        "deriv" => (w.len() >= 2).then(|| linear_regression(w, w[0].0, xs).0),
        "predict_linear" => (w.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(w, ctx.t, xs);
            slope * ctx.params[0] + intercept
        }),
        "holt_winters" => holt_winters(w, ctx.params[0], ctx.params[1])?,
        "changes" => {
            let mut changes = 0;
            let mut prev = w[0].1;
            for &(_, cur) in &w[1..] {
                if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    changes += 1;
                }
                prev = cur;
            }
            Some(f64::from(changes))
        }
        "resets" => {
            let mut resets = 0;
            let mut prev = w[0].1;
            for &(_, cur) in &w[1..] {
                if cur < prev {
                    resets += 1;
                }
                prev = cur;
            }
            Some(f64::from(resets))
        }
        "avg_over_time" => Some(avg_over_time(w)),
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0, 0.0);
            for v in values() {
                (sum, c) = kahan_sum_inc(v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        "count_over_time" => Some(w.len() as f64),
        "min_over_time" => {
            let mut min = w[0].1;
            for v in values() {
                if v < min || min.is_nan() {
                    min = v;
                }
            }
            Some(min)
        }
        "max_over_time" => {
            let mut max = w[0].1;
            for v in values() {
                if v > max || max.is_nan() {
                    max = v;
                }
            }
            Some(max)
        }
        "last_over_time" => Some(w[w.len() - 1].1),
        "present_over_time" => Some(1.0),
        "stdvar_over_time" => Some(stdvar(w)),
        "stddev_over_time" => Some(stdvar(w).sqrt()),
        "quantile_over_time" => {
            let mut v: Vec<f64> = values().collect();
            Some(quantile(ctx.params[0], &mut v))
        }
        other => return Err(EvalError::Unsupported(format!("function {other}"))),
    })
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated towards the window's
/// ends (Prometheus v2.42's `extrapolatedRate`).
fn extrapolated_rate(
    w: &[(i64, f64)],
    ctx: &RangeCtx,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (range_start, range_end) = ctx.window;
    let (first_t, first_v) = w[0];
    let (last_t, last_v) = w[w.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut last = 0.0;
        for &(_, v) in w {
            if v < last {
                result += last;
            }
            last = v;
        }
    }
    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let duration_to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_between_samples = sampled_interval / (w.len() - 1) as f64;
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // Counters cannot go below zero: do not extrapolate past the zero point.
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between_samples * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_between_samples / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_between_samples / 2.0
    };
    result *= extrapolate_to / sampled_interval;
    if is_rate {
        result /= ctx.range_ms as f64 / 1000.0;
    }
    Some(result)
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(w: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (last_t, last_v) = w[w.len() - 1];
    let (prev_t, prev_v) = w[w.len() - 2];
    let mut result = if is_rate && last_v < prev_v {
        last_v
    } else {
        last_v - prev_v
    };
    let interval = last_t - prev_t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// One step of Neumaier's compensated sum, as Prometheus's `kahanSumInc`: the larger operand
/// (by magnitude) is picked without a branch, so the loops that call this stay branch-free.
#[inline]
fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let sum_larger = sum.abs() >= inc.abs();
    let big = if sum_larger { sum } else { inc };
    let small = if sum_larger { inc } else { sum };
    (t, c + ((big - t) + small))
}

/// The part of a regression that depends on the sample times only: each `x` (seconds from
/// the intercept time) and the compensated sums of `x` and `x²`. Series scraped together have
/// the same times in a window, so the next series usually reuses it.
#[derive(Default)]
struct RegressionX {
    times: Vec<i64>,
    intercept_t: i64,
    x: Vec<f64>,
    /// `(sum_x, c_x, sum_x2, c_x2)`
    sums: (f64, f64, f64, f64),
}

impl RegressionX {
    /// Makes `self` describe the times of `w` with `intercept_t`.
    fn update(&mut self, w: &[(i64, f64)], intercept_t: i64) {
        if self.intercept_t == intercept_t
            && self.times.len() == w.len()
            && self.times.iter().zip(w).all(|(a, (b, _))| a == b)
        {
            return;
        }
        self.intercept_t = intercept_t;
        self.times.clear();
        self.x.clear();
        let (mut sum_x, mut c_x, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
        for &(t, _) in w {
            let x = (t - intercept_t) as f64 / 1e3;
            (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
            (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
            self.times.push(t);
            self.x.push(x);
        }
        self.sums = (sum_x, c_x, sum_x2, c_x2);
    }
}

/// Least-squares slope and the intercept at `intercept_t`, as Prometheus computes them (the
/// same operations in the same order); `xs` carries the time-only part from series to series.
fn linear_regression(w: &[(i64, f64)], intercept_t: i64, xs: &mut RegressionX) -> (f64, f64) {
    xs.update(w, intercept_t);
    let (mut n, mut sum_y, mut c_y) = (0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let init_y = w[0].1;
    let mut const_y = true;
    for (i, (&(_, v), &x)) in w.iter().zip(&xs.x).enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        (sum_y, c_y) = kahan_sum_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * v, sum_xy, c_xy);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, c_x, sum_x2, c_x2) = xs.sums;
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn avg_over_time(w: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0_f64, 0.0, 0.0);
    for &(_, v) in w {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_sum_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

fn stdvar(w: &[(i64, f64)]) -> f64 {
    let (mut aux, mut count, mut mean) = (0.0, 0.0, 0.0);
    for &(_, v) in w {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
}

fn holt_winters(w: &[(i64, f64)], sf: f64, tf: f64) -> Result<Option<f64>, EvalError> {
    if sf.is_nan() || sf <= 0.0 || sf >= 1.0 {
        return Err(EvalError::InvalidArgument(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
        )));
    }
    if tf.is_nan() || tf <= 0.0 || tf >= 1.0 {
        return Err(EvalError::InvalidArgument(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
        )));
    }
    if w.len() < 2 {
        return Ok(None);
    }
    let mut s0 = 0.0;
    let mut s1 = w[0].1;
    let mut b = w[1].1 - w[0].1;
    for (i, &(_, v)) in w.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(lo: i64, hi: i64) -> RangeCtx {
        RangeCtx {
            t: hi,
            window: (lo, hi),
            range_ms: hi - lo,
            params: [0.0; 2],
        }
    }

    #[test]
    fn rate_extrapolates_to_the_window_edges() {
        // Samples every 60 s covering most of a 5-minute window: extrapolated to both edges.
        let w: Vec<(i64, f64)> = (1..=4).map(|i| (i * 60_000, i as f64 * 60.0)).collect();
        let r = extrapolated_rate(&w, &ctx(30_000, 270_000), true, true).unwrap();
        // 180 over 180 s, extrapolated by 30 s at each end, per second over 240 s.
        assert!((r - 240.0 / 240.0).abs() < 1e-12, "{r}");
    }

    #[test]
    fn rate_does_not_extrapolate_a_counter_below_zero() {
        // Counter starting at 300 with slope 1/s: the zero point (300 s before) is farther than
        // the window start, so the start gap is only half a sample interval.
        let w = vec![(600_000, 300.0), (840_000, 540.0), (1_080_000, 780.0)];
        let r = extrapolated_rate(&w, &ctx(0, 1_200_000), true, true).unwrap();
        assert!((r - 0.6).abs() < 1e-12, "{r}");
        // Starting at 240: the zero point is 240 s before, less than 1.1 sample intervals.
        let w = vec![(600_000, 240.0), (840_000, 480.0), (1_080_000, 720.0)];
        let r = extrapolated_rate(&w, &ctx(0, 1_200_000), true, true).unwrap();
        assert!((r - 0.7).abs() < 1e-12, "{r}");
    }

    #[test]
    fn counter_resets_add_the_value_before_the_reset() {
        let w = vec![
            (0, 0.0),
            (300_000, 1.0),
            (600_000, 2.0),
            (900_000, 3.0),
            (1_200_000, 2.0),
            (1_500_000, 3.0),
            (1_800_000, 4.0),
        ];
        let r = extrapolated_rate(&w, &ctx(0, 1_800_000), true, false).unwrap();
        assert!((r - 7.0).abs() < 1e-12, "{r}");
        assert_eq!(
            extrapolated_rate(&w[..1], &ctx(0, 1_800_000), true, false),
            None
        );
    }

    #[test]
    fn calendar_fields() {
        assert_eq!(date_part("year", 1_136_239_445), 2006.0);
        assert_eq!(date_part("day_of_week", 1_136_239_445), 1.0);
        assert_eq!(date_part("hour", 1_136_239_445), 22.0);
        assert_eq!(date_part("minute", 1_136_239_445), 4.0);
        assert_eq!(date_part("days_in_month", 1_454_284_800), 29.0);
        assert_eq!(date_part("day_of_year", 1_483_191_420), 366.0);
        assert_eq!(date_part("day_of_week", 0), 4.0);
    }

    #[test]
    fn go_min_max_propagate_nan() {
        assert!(go_max(0.0, f64::NAN).is_nan());
        assert!(go_min(f64::NAN, 1.0).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(go_min(-25.0, 75.0), -25.0);
    }

    #[test]
    fn bucket_quantile_interpolates_within_a_bucket() {
        let mut b = vec![(0.1, 10.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
        assert!((bucket_quantile(0.75, &mut b) - 0.3).abs() < 1e-12);
        let mut b = vec![(0.1, 10.0)];
        assert!(bucket_quantile(0.5, &mut b).is_nan());
    }
}
