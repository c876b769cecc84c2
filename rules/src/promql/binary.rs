//! Binary operators: arithmetic, comparison (with `bool`), `atan2`, and the set operators
//! `and` / `or` / `unless`, with vector matching (`on`, `ignoring`, `group_left`,
//! `group_right`) and the errors Prometheus gives for ambiguous matches.

use crate::promql::hash::{FastMap, FastSet};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::EvalError;
use super::engine::{Evaluator, Val, check_duplicates};
use super::value::{Labels, METRIC_NAME, Sample, encoded_entries};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// A matching key: the label set itself, or its chosen labels in the encoded form of label
/// sets (an entry with both lengths, the name and the value, per label).
#[derive(PartialEq, Eq, Hash)]
enum Sig {
    Labels(Labels),
    Bytes(Vec<u8>),
}

/// How two vectors are matched.
struct Matching {
    card: Card,
    on: bool,
    labels: Vec<String>,
    include: Vec<String>,
}

impl Matching {
    fn from_expr(e: &BinaryExpr, set_op: bool) -> Matching {
        let mut m = Matching {
            card: Card::OneToOne,
            on: false,
            labels: Vec::new(),
            include: Vec::new(),
        };
        if let Some(modifier) = &e.modifier {
            match &modifier.card {
                VectorMatchCardinality::OneToOne => {}
                VectorMatchCardinality::ManyToOne(l) => {
                    m.card = Card::ManyToOne;
                    m.include = l.labels.clone();
                }
                VectorMatchCardinality::OneToMany(l) => {
                    m.card = Card::OneToMany;
                    m.include = l.labels.clone();
                }
                VectorMatchCardinality::ManyToMany => m.card = Card::ManyToMany,
            }
            match &modifier.matching {
                Some(LabelModifier::Include(l)) => {
                    m.on = true;
                    m.labels = l.labels.clone();
                }
                Some(LabelModifier::Exclude(l)) => m.labels = l.labels.clone(),
                None => {}
            }
        }
        if set_op {
            m.card = Card::ManyToMany;
        }
        m
    }

    /// The matching key of a label set: the `on` labels, or every label but the `ignoring` ones
    /// and the metric name. Without `on` or `ignoring` that is the label set without its name,
    /// which label sets from storage keep at hand.
    fn signature(&self, l: &Labels) -> Sig {
        if !self.on && self.labels.is_empty() {
            return Sig::Labels(l.without_metric_name());
        }
        let mut key = Vec::new();
        let (a, b) = l.encoded_parts();
        for (name, entry) in encoded_entries(a).chain(encoded_entries(b)) {
            let listed = self.labels.iter().any(|n| n.as_bytes() == name);
            let take = if self.on {
                listed
            } else {
                !listed && name != METRIC_NAME.as_bytes()
            };
            if take {
                key.extend_from_slice(entry);
            }
        }
        Sig::Bytes(key)
    }

    /// The labels a signature was made of, for error messages.
    fn matched_labels(&self, l: &Labels) -> Labels {
        if self.on {
            l.keep(&self.labels)
        } else {
            let mut dropped = self.labels.clone();
            dropped.push(METRIC_NAME.to_string());
            l.drop(&dropped)
        }
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic operators drop the metric name; comparisons and `atan2` keep it.
fn should_drop_metric_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD)
}

/// Applies `op` to two sample values; the flag says whether a comparison holds.
fn vector_elem_binop(op: TokenId, lhs: f64, rhs: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op {
        T_ADD => (lhs + rhs, true),
        T_SUB => (lhs - rhs, true),
        T_MUL => (lhs * rhs, true),
        T_DIV => (lhs / rhs, true),
        T_POW => (lhs.powf(rhs), true),
        T_MOD => (lhs % rhs, true),
        T_EQLC => (lhs, lhs == rhs),
        T_NEQ => (lhs, lhs != rhs),
        T_GTR => (lhs, lhs > rhs),
        T_LSS => (lhs, lhs < rhs),
        T_GTE => (lhs, lhs >= rhs),
        T_LTE => (lhs, lhs <= rhs),
        T_ATAN2 => (lhs.atan2(rhs), true),
        _ => {
            return Err(EvalError::Unsupported(format!(
                "binary operator with token id {op}"
            )));
        }
    })
}

fn scalar_binop(op: TokenId, lhs: f64, rhs: f64) -> Result<f64, EvalError> {
    let (v, keep) = vector_elem_binop(op, lhs, rhs)?;
    Ok(if is_comparison(op) {
        f64::from(u8::from(keep))
    } else {
        v
    })
}

pub(crate) fn eval<'s>(
    ev: &'s Evaluator<'_>,
    e: &BinaryExpr,
    ts: &[i64],
) -> Result<Val<'s>, EvalError> {
    let op = e.op.id();
    let return_bool = e.modifier.as_ref().is_some_and(|m| m.return_bool);
    let set_op = matches!(op, T_LAND | T_LOR | T_LUNLESS);
    let lhs = ev.eval(&e.lhs, ts)?;
    let rhs = ev.eval(&e.rhs, ts)?;
    match (lhs, rhs) {
        (Val::Scalar(a), Val::Scalar(b)) => {
            if set_op {
                return Err(EvalError::Type(
                    "set operator not allowed between scalars".into(),
                ));
            }
            let v = a
                .into_iter()
                .zip(b)
                .map(|(x, y)| scalar_binop(op, x, y))
                .collect::<Result<_, _>>()?;
            Ok(Val::Scalar(v))
        }
        (Val::Vector(a), Val::Scalar(b)) => {
            vector_scalar_steps(op, a, &b, false, return_bool, set_op)
        }
        (Val::Scalar(a), Val::Vector(b)) => {
            vector_scalar_steps(op, b, &a, true, return_bool, set_op)
        }
        (Val::Vector(a), Val::Vector(b)) => {
            let m = Matching::from_expr(e, set_op);
            let mut out = Vec::with_capacity(ts.len());
            for ((l, r), &t) in a.into_iter().zip(b).zip(ts) {
                let v = match op {
                    // Subsets of the left-hand side: no new label sets.
                    T_LAND => vector_and(l, &r, &m),
                    T_LUNLESS => vector_unless(l, &r, &m),
                    T_LOR => vector_or(l, r, &m),
                    _ => vector_binop(op, l, r, &m, return_bool, t)?,
                };
                if !matches!(op, T_LAND | T_LUNLESS) {
                    check_duplicates(&v)?;
                }
                out.push(v);
            }
            Ok(Val::Vector(out))
        }
        (l, r) => Err(EvalError::Type(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar_steps(
    op: TokenId,
    vecs: Vec<Vec<Sample>>,
    scalars: &[f64],
    swap: bool,
    return_bool: bool,
    set_op: bool,
) -> Result<Val<'static>, EvalError> {
    if set_op {
        return Err(EvalError::Type(
            "set operator not allowed in binary scalar expression".into(),
        ));
    }
    let mut out = Vec::with_capacity(vecs.len());
    for (vec, &s) in vecs.into_iter().zip(scalars) {
        let v = vector_scalar(op, vec, s, swap, return_bool)?;
        // Only a changed label set (metric name dropped) can collide.
        if should_drop_metric_name(op) || return_bool {
            check_duplicates(&v)?;
        }
        out.push(v);
    }
    Ok(Val::Vector(out))
}

/// A vector and a scalar; `swap` says the scalar was the left operand.
fn vector_scalar(
    op: TokenId,
    vec: Vec<Sample>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let mut out = Vec::with_capacity(vec.len());
    for mut sample in vec {
        let (lv, rv) = if swap { (s, sample.v) } else { (sample.v, s) };
        let (mut value, mut keep) = vector_elem_binop(op, lv, rv)?;
        // A comparison keeps the vector element's value even when the scalar is on the left.
        if is_comparison(op) && swap {
            value = sample.v;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            sample.v = value;
            if should_drop_metric_name(op) || return_bool {
                sample.labels = sample.labels.without_metric_name();
            }
            out.push(sample);
        }
    }
    Ok(out)
}

fn result_metric(lhs: &Labels, rhs: &Labels, op: TokenId, m: &Matching) -> Labels {
    let mut l = if should_drop_metric_name(op) {
        lhs.without_metric_name()
    } else {
        lhs.clone()
    };
    if m.card == Card::OneToOne {
        l = if m.on {
            l.keep(&m.labels)
        } else {
            l.drop(&m.labels)
        };
    }
    for name in &m.include {
        match rhs.get(name) {
            Some(v) => l.set(name.clone(), v.to_string()),
            None => l.remove(name),
        }
    }
    l
}

/// Arithmetic and comparison between two vectors, one-to-one or many-to-one / one-to-many.
fn vector_binop(
    op: TokenId,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: &Matching,
    return_bool: bool,
    t: i64,
) -> Result<Vec<Sample>, EvalError> {
    // The code below handles one-to-one and many-to-one; one-to-many swaps the sides.
    let (lhs, rhs) = if m.card == Card::OneToMany {
        (rhs, lhs)
    } else {
        (lhs, rhs)
    };
    // Signature → index in `rhs`; a signature and a right-hand element go one to one.
    let mut right: FastMap<Sig, usize> =
        FastMap::with_capacity_and_hasher(rhs.len(), Default::default());
    for (ri, rs) in rhs.iter().enumerate() {
        let sig = m.signature(&rs.labels);
        if let Some(&dup) = right.get(&sig) {
            let dup = &rhs[dup];
            let side = if m.card == Card::OneToMany {
                "left"
            } else {
                "right"
            };
            return Err(EvalError::VectorMatching(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];\
                 many-to-many matching not allowed: matching labels must be unique on one side",
                m.matched_labels(&rs.labels),
                rs.labels.go_string(),
                dup.labels.go_string()
            )));
        }
        right.insert(sig, ri);
    }
    // Per right-hand element: matched already (one-to-one), or the result label sets it gave.
    let mut matched_once = vec![false; rhs.len()];
    let mut matched: FastMap<usize, FastSet<Labels>> = FastMap::default();
    let mut out = Vec::new();
    for ls in &lhs {
        let Some(&ri) = right.get(&m.signature(&ls.labels)) else {
            continue;
        };
        let rs = &rhs[ri];
        let (vl, vr) = if m.card == Card::OneToMany {
            (rs.v, ls.v)
        } else {
            (ls.v, rs.v)
        };
        let (mut value, keep) = vector_elem_binop(op, vl, vr)?;
        if return_bool {
            value = f64::from(u8::from(keep));
        } else if !keep {
            continue;
        }
        let mut metric = result_metric(&ls.labels, &rs.labels, op, m);
        if return_bool {
            metric = metric.without_metric_name();
        }
        if m.card == Card::OneToOne {
            if matched_once[ri] {
                return Err(EvalError::VectorMatching(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            matched_once[ri] = true;
        } else if !matched.entry(ri).or_default().insert(metric.clone()) {
            return Err(EvalError::VectorMatching(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample {
            labels: metric,
            t_ms: t,
            v: value,
        });
    }
    Ok(out)
}

fn vector_and(lhs: Vec<Sample>, rhs: &[Sample], m: &Matching) -> Vec<Sample> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right: FastSet<Sig> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| right.contains(&m.signature(&s.labels)))
        .collect()
}

fn vector_or(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    if lhs.is_empty() {
        return rhs;
    }
    if rhs.is_empty() {
        return lhs;
    }
    let left: FastSet<Sig> = lhs.iter().map(|s| m.signature(&s.labels)).collect();
    let mut out = lhs;
    out.extend(
        rhs.into_iter()
            .filter(|s| !left.contains(&m.signature(&s.labels))),
    );
    out
}

fn vector_unless(lhs: Vec<Sample>, rhs: &[Sample], m: &Matching) -> Vec<Sample> {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs;
    }
    let right: FastSet<Sig> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| !right.contains(&m.signature(&s.labels)))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::promql::{EvalError, Labels, MemStorage, Options, Value, eval_instant};

    fn storage() -> MemStorage {
        let mut s = MemStorage::new();
        for (name, pairs, v) in [
            ("cpu", vec![("instance", "a"), ("mode", "idle")], 3.0),
            ("cpu", vec![("instance", "a"), ("mode", "user")], 1.0),
            ("cpu", vec![("instance", "b"), ("mode", "idle")], 8.0),
            ("role", vec![("instance", "a"), ("role", "db")], 1.0),
        ] {
            let mut l = Labels::from_pairs(pairs);
            l.set("__name__", name);
            s.add_sample(&l, 0, v);
        }
        s
    }

    fn run(q: &str) -> Result<Value, EvalError> {
        eval_instant(q, 0, &storage(), &Options::default())
    }

    #[test]
    fn one_to_one_with_duplicates_on_the_left_needs_group_left() {
        let err = run("cpu * on(instance) role").unwrap_err();
        assert_eq!(
            err.to_string(),
            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
        );
    }

    #[test]
    fn duplicates_on_the_one_side_are_many_to_many() {
        let err = run("role * on(instance) group_left cpu").unwrap_err();
        let EvalError::VectorMatching(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.starts_with(r#"found duplicate series for the match group {instance="a"} on the right hand-side"#), "{msg}");
        assert!(msg.contains("many-to-many matching not allowed"));
        let err = run("cpu * on(instance) group_right role").unwrap_err();
        assert!(err.to_string().contains("on the left hand-side"), "{err}");
    }

    #[test]
    fn grouping_labels_must_make_results_unique() {
        let err = run("cpu * ignoring(mode, role) group_left cpu").unwrap_err();
        assert!(matches!(err, EvalError::VectorMatching(_)), "{err:?}");
    }

    #[test]
    fn group_left_copies_labels_from_the_one_side() {
        let Value::InstantVector(v) = run("cpu * on(instance) group_left(role) role").unwrap()
        else {
            panic!()
        };
        assert_eq!(v.len(), 2);
        assert!(
            v.iter()
                .all(|s| s.labels.value("role") == "db" && s.labels.metric_name().is_none())
        );
    }

    #[test]
    fn comparison_keeps_name_unless_bool() {
        let Value::InstantVector(v) = run("cpu > 2").unwrap() else {
            panic!()
        };
        assert!(v.iter().all(|s| s.labels.metric_name() == Some("cpu")));
        let Value::InstantVector(v) = run("cpu > bool 2").unwrap() else {
            panic!()
        };
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|s| s.labels.metric_name().is_none()));
    }
}
