//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`,
//! `topk`, `bottomk`, `quantile`, `count_values`) with `by` / `without`, computed the way
//! Prometheus v2.42 does, including its order of results and its NaN handling.

use crate::promql::hash::FastMap;
use std::cmp::Ordering;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK, TokenId,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::EvalError;
use super::engine::{Evaluator, Val, unparen};
use super::value::{Labels, METRIC_NAME, Sample, encoded_entries, push_entry};

pub(crate) use yunwei_proto::valid_label_name as is_valid_label_name;

enum Param {
    None,
    Scalar(Vec<f64>),
    Str(String),
}

pub(crate) fn eval<'s>(
    ev: &'s Evaluator<'_>,
    a: &AggregateExpr,
    ts: &[i64],
) -> Result<Val<'s>, EvalError> {
    let op = a.op.id();
    let (without, mut grouping) = match &a.modifier {
        None => (false, Vec::new()),
        Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
    };
    grouping.sort();
    let param = match (&a.param, op) {
        (Some(p), T_COUNT_VALUES) => match ev.eval(unparen(p), ts)? {
            Val::Str(s) => Param::Str(s),
            other => {
                return Err(EvalError::Type(format!(
                    "count_values needs a string parameter, got {}",
                    other.type_name()
                )));
            }
        },
        (Some(p), T_TOPK | T_BOTTOMK | T_QUANTILE) => Param::Scalar(ev.eval_scalar(p, ts)?),
        (None, T_COUNT_VALUES | T_TOPK | T_BOTTOMK | T_QUANTILE) => {
            return Err(EvalError::Type(format!(
                "aggregation {} needs a parameter",
                a.op
            )));
        }
        _ => Param::None,
    };
    let input = ev.eval_vector(&a.expr, ts)?;
    let mut out = Vec::with_capacity(ts.len());
    for (i, (vec, &t)) in input.into_iter().zip(ts).enumerate() {
        let step_param = match &param {
            Param::None => StepParam::None,
            Param::Scalar(v) => StepParam::Scalar(v[i]),
            Param::Str(s) => StepParam::Str(s),
        };
        out.push(aggregate(op, &grouping, without, step_param, vec, t)?);
    }
    Ok(Val::Vector(out))
}

enum StepParam<'a> {
    None,
    Scalar(f64),
    Str(&'a str),
}

struct Group {
    labels: Labels,
    value: f64,
    mean: f64,
    count: f64,
    heap: Vec<Sample>,
}

/// The grouping key of `l`, into a reused buffer.
fn grouping_key(l: &Labels, grouping: &[String], without: bool, key: &mut Vec<u8>) {
    key.clear();
    if !without {
        // `by`: look the few grouping labels up (`grouping` is sorted, like the labels).
        for name in grouping {
            if let Some(v) = l.get(name) {
                push_entry(key, name.as_bytes(), v.as_bytes());
            }
        }
        return;
    }
    // `without`: every label but the listed ones and the metric name, copied from the
    // labels' encoded form, which has the same layout as the key.
    let (a, b) = l.encoded_parts();
    for (name, entry) in encoded_entries(a).chain(encoded_entries(b)) {
        if name != METRIC_NAME.as_bytes() && !grouping.iter().any(|g| g.as_bytes() == name) {
            key.extend_from_slice(entry);
        }
    }
}

/// Formats a float like Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn format_float_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn aggregate(
    op: TokenId,
    grouping: &[String],
    without: bool,
    param: StepParam<'_>,
    vec: Vec<Sample>,
    t: i64,
) -> Result<Vec<Sample>, EvalError> {
    let mut k: i64 = 0;
    let mut q = 0.0;
    let mut value_label = "";
    let mut grouping: Vec<String> = grouping.to_vec();
    match (op, param) {
        (T_TOPK | T_BOTTOMK, StepParam::Scalar(f)) => {
            if !(f >= i64::MIN as f64 && f <= i64::MAX as f64) {
                return Err(EvalError::InvalidArgument(format!(
                    "scalar value {f} overflows int64"
                )));
            }
            k = f as i64;
            if k < 1 {
                return Ok(Vec::new());
            }
        }
        (T_QUANTILE, StepParam::Scalar(f)) => q = f,
        (T_COUNT_VALUES, StepParam::Str(s)) => {
            if !is_valid_label_name(s) {
                return Err(EvalError::InvalidArgument(format!(
                    "invalid label name {s:?}"
                )));
            }
            value_label = s;
            if !without {
                grouping.push(s.to_string());
                grouping.sort();
            }
        }
        _ => {}
    }

    let mut groups: Vec<Group> = Vec::new();
    let mut index: FastMap<Vec<u8>, usize> = FastMap::default();
    let mut key = Vec::new();
    for mut s in vec {
        if op == T_COUNT_VALUES {
            s.labels.set(value_label, format_float_f(s.v));
        }
        grouping_key(&s.labels, &grouping, without, &mut key);
        let Some(&gi) = index.get(key.as_slice()) else {
            let labels = if without {
                let mut drop = grouping.clone();
                drop.push(METRIC_NAME.to_string());
                s.labels.drop(&drop)
            } else if !grouping.is_empty() {
                s.labels.keep(&grouping)
            } else {
                Labels::new()
            };
            let mut g = Group {
                labels,
                value: s.v,
                mean: s.v,
                count: 1.0,
                heap: Vec::new(),
            };
            match op {
                T_STDVAR | T_STDDEV => g.value = 0.0,
                T_TOPK | T_BOTTOMK | T_QUANTILE => g.heap.push(s),
                T_GROUP => g.value = 1.0,
                _ => {}
            }
            index.insert(key.clone(), groups.len());
            groups.push(g);
            continue;
        };
        let g = &mut groups[gi];
        match op {
            T_SUM => g.value += s.v,
            T_AVG => {
                g.count += 1.0;
                if g.mean.is_infinite() {
                    if s.v.is_infinite() && (g.mean > 0.0) == (s.v > 0.0) {
                        continue;
                    }
                    if !s.v.is_infinite() && !s.v.is_nan() {
                        continue;
                    }
                }
                g.mean += s.v / g.count - g.mean / g.count;
            }
            T_GROUP => {}
            T_MAX => {
                if g.value < s.v || g.value.is_nan() {
                    g.value = s.v;
                }
            }
            T_MIN => {
                if g.value > s.v || g.value.is_nan() {
                    g.value = s.v;
                }
            }
            T_COUNT | T_COUNT_VALUES => g.count += 1.0,
            T_STDVAR | T_STDDEV => {
                g.count += 1.0;
                let delta = s.v - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (s.v - g.mean);
            }
            T_TOPK => {
                if (g.heap.len() as i64) < k || g.heap[0].v < s.v || g.heap[0].v.is_nan() {
                    if g.heap.len() as i64 == k {
                        heap_pop(&mut g.heap, top_less);
                    }
                    heap_push(&mut g.heap, s, top_less);
                }
            }
            T_BOTTOMK => {
                if (g.heap.len() as i64) < k || g.heap[0].v > s.v || g.heap[0].v.is_nan() {
                    if g.heap.len() as i64 == k {
                        heap_pop(&mut g.heap, bottom_less);
                    }
                    heap_push(&mut g.heap, s, bottom_less);
                }
            }
            T_QUANTILE => g.heap.push(s),
            _ => {
                return Err(EvalError::Unsupported(format!(
                    "aggregation with token id {op}"
                )));
            }
        }
    }

    let mut out = Vec::with_capacity(groups.len());
    for mut g in groups {
        let value = match op {
            T_AVG => g.mean,
            T_COUNT | T_COUNT_VALUES => g.count,
            T_STDVAR => g.value / g.count,
            T_STDDEV => (g.value / g.count).sqrt(),
            T_TOPK | T_BOTTOMK => {
                let less = if op == T_TOPK { top_less } else { bottom_less };
                // The heap keeps the weakest element on top; sort it the other way round.
                go_sort(&mut g.heap, |a, b| less(b, a));
                out.extend(g.heap.into_iter().map(|s| Sample {
                    labels: s.labels,
                    t_ms: t,
                    v: s.v,
                }));
                continue;
            }
            T_QUANTILE => {
                let mut values: Vec<f64> = g.heap.iter().map(|s| s.v).collect();
                quantile(q, &mut values)
            }
            _ => g.value,
        };
        out.push(Sample {
            labels: g.labels,
            t_ms: t,
            v: value,
        });
    }
    Ok(out)
}

/// `vectorByValueHeap.Less`: NaN sorts first.
fn top_less(a: &Sample, b: &Sample) -> bool {
    a.v.is_nan() || a.v < b.v
}

/// `vectorByReverseValueHeap.Less`: NaN sorts first.
fn bottom_less(a: &Sample, b: &Sample) -> bool {
    a.v.is_nan() || a.v > b.v
}

// Go's container/heap, so that ties come out in the same order as in Prometheus.
fn heap_up<T>(h: &mut [T], mut j: usize, less: fn(&T, &T) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down<T>(h: &mut [T], i0: usize, n: usize, less: fn(&T, &T) -> bool) {
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(&h[j2], &h[j1]) {
            j = j2;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn heap_push<T>(h: &mut Vec<T>, x: T, less: fn(&T, &T) -> bool) {
    h.push(x);
    let j = h.len() - 1;
    heap_up(h, j, less);
}

fn heap_pop<T>(h: &mut Vec<T>, less: fn(&T, &T) -> bool) {
    let n = h.len() - 1;
    h.swap(0, n);
    heap_down(h, 0, n, less);
    h.pop();
}

/// Go's `sort.Sort` on short slices is an insertion sort; longer ones are sorted stably here.
pub(crate) fn go_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    if v.len() <= 12 {
        for i in 1..v.len() {
            let mut j = i;
            while j > 0 && less(&v[j], &v[j - 1]) {
                v.swap(j, j - 1);
                j -= 1;
            }
        }
    } else {
        v.sort_by(|a, b| {
            if less(a, b) {
                Ordering::Less
            } else if less(b, a) {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        });
    }
}

/// Prometheus's `quantile`: linear interpolation between the closest ranks; `q` outside
/// `[0, 1]` gives ±Inf, an empty input or a NaN `q` gives NaN.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(0.5, &mut [0.0, 1.0]), 0.5);
        assert!((quantile(0.8, &mut [0.0, 1.0, 4.0]) - 2.8).abs() < 1e-12);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
        assert!(quantile(f64::NAN, &mut [1.0]).is_nan());
    }

    #[test]
    fn label_names() {
        assert!(is_valid_label_name("le"));
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("invalid-label-name"));
        assert!(!is_valid_label_name(""));
    }
}
