//! Values the engine works with: label sets, samples, series, instant vectors, matrices and the
//! result of a query, plus Prometheus's stale marker.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// Bit pattern of Prometheus's stale marker: a NaN that ends a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The stale marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the stale marker (and not any other NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One label: a name and a non-empty value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value.
    pub value: String,
}

/// A label set sorted by name, without empty values; ordered like Prometheus's `labels.Compare`.
///
/// The labels are shared: cloning a label set is cheap, and changing one copies it first.
/// The set without its metric name, which arithmetic and most functions produce, is computed
/// once per shared set and kept with it.
#[derive(Clone, Default)]
pub struct Labels(Arc<Inner>);

#[derive(Default)]
struct Inner {
    labels: Vec<Label>,
    /// [`Labels::without_metric_name`], once computed (only for a set that has a name).
    without_name: OnceLock<Labels>,
    /// A hash of the labels, once computed; what [`Hash`] feeds to a hasher.
    hash: OnceLock<u64>,
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        Inner {
            labels: self.labels.clone(),
            without_name: OnceLock::new(),
            hash: OnceLock::new(),
        }
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.labels == other.0.labels
    }
}

impl Eq for Labels {}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return Ordering::Equal;
        }
        self.0.labels.cmp(&other.0.labels)
    }
}

impl Hash for Labels {
    /// Feeds a 64-bit hash of the labels, computed once per shared set (FxHash, fixed keys), so
    /// hashing a label set taken from storage again and again costs little.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let h = *self.0.hash.get_or_init(|| {
            let mut h = crate::promql::hash::FxHasher::default();
            self.0.labels.hash(&mut h);
            h.finish()
        });
        state.write_u64(h);
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Labels").field(&self.0.labels).finish()
    }
}

impl Labels {
    /// The empty label set.
    pub fn new() -> Self {
        Labels::from_vec(Vec::new())
    }

    fn from_vec(labels: Vec<Label>) -> Self {
        Labels(Arc::new(Inner {
            labels,
            without_name: OnceLock::new(),
            hash: OnceLock::new(),
        }))
    }

    /// The labels for changing, copied first if shared.
    fn labels_mut(&mut self) -> &mut Vec<Label> {
        let inner = Arc::make_mut(&mut self.0);
        inner.without_name = OnceLock::new();
        inner.hash = OnceLock::new();
        &mut inner.labels
    }

    /// Builds a label set from pairs; a later pair wins over an earlier one with the same name,
    /// and pairs with an empty value are left out.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut l = Labels::new();
        for (k, v) in pairs {
            l.set(k.into(), v.into());
        }
        l
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.labels.iter()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.labels.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.labels.is_empty()
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        let labels = &self.0.labels;
        labels
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| labels[i].value.as_str())
    }

    /// The value of `name`, or `""` when absent (PromQL treats both alike).
    pub fn value(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// The metric name, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self
            .0
            .labels
            .binary_search_by(|l| l.name.as_str().cmp(&name))
        {
            Ok(i) if value.is_empty() => {
                self.labels_mut().remove(i);
            }
            Ok(i) if self.0.labels[i].value == value => {}
            Ok(i) => self.labels_mut()[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.labels_mut().insert(i, Label { name, value }),
        }
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self
            .0
            .labels
            .binary_search_by(|l| l.name.as_str().cmp(name))
        {
            self.labels_mut().remove(i);
        }
    }

    /// A copy without the metric name.
    pub fn without_metric_name(&self) -> Labels {
        if let Some(l) = self.0.without_name.get() {
            return l.clone();
        }
        if self.get(METRIC_NAME).is_none() {
            return self.clone();
        }
        self.0
            .without_name
            .get_or_init(|| {
                Labels::from_vec(
                    self.0
                        .labels
                        .iter()
                        .filter(|l| l.name != METRIC_NAME)
                        .cloned()
                        .collect(),
                )
            })
            .clone()
    }

    /// A copy keeping only the listed names.
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels::from_vec(
            self.0
                .labels
                .iter()
                .filter(|l| names.contains(&l.name))
                .cloned()
                .collect(),
        )
    }

    /// A copy without the listed names.
    pub fn drop(&self, names: &[String]) -> Labels {
        if !self.0.labels.iter().any(|l| names.contains(&l.name)) {
            return self.clone();
        }
        if names.len() == 1 && names[0] == METRIC_NAME {
            return self.without_metric_name();
        }
        Labels::from_vec(
            self.0
                .labels
                .iter()
                .filter(|l| !names.contains(&l.name))
                .cloned()
                .collect(),
        )
    }
}

impl Labels {
    /// Prometheus's `labels.Labels.String()`: every label, the name too, inside braces
    /// (`{__name__="up", job="a"}`), as Prometheus prints label sets in error messages.
    pub fn go_string(&self) -> String {
        let items: Vec<String> = self
            .0
            .labels
            .iter()
            .map(|l| format!("{}={:?}", l.name, l.value))
            .collect();
        format!("{{{}}}", items.join(", "))
    }
}

impl fmt::Display for Labels {
    /// Prometheus's notation: `name{a="b", c="d"}`, or `{a="b"}` without a metric name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.metric_name() {
            write!(f, "{n}")?;
        }
        write!(f, "{{")?;
        let mut first = true;
        for l in self.0.labels.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        write!(f, "}}")
    }
}

impl serde::Serialize for Labels {
    /// A label set serializes as a map from name to value, in name order.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.len()))?;
        for l in self.iter() {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = <std::collections::BTreeMap<String, String>>::deserialize(d)?;
        Ok(Labels::from_pairs(m))
    }
}

/// A series: its labels (including `__name__`) and its samples `(timestamp ms, value)` in time
/// order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Labels, including `__name__`.
    pub labels: Labels,
    /// Samples in increasing timestamp order.
    pub samples: Vec<(i64, f64)>,
}

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The element's labels.
    pub labels: Labels,
    /// Evaluation timestamp in milliseconds.
    pub t_ms: i64,
    /// The value.
    pub v: f64,
}

/// An instant vector.
pub type Vector = Vec<Sample>;

/// A range vector, or the result of a range query.
pub type Matrix = Vec<Series>;

/// The result of an instant query.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar.
    Scalar(f64),
    /// An instant vector, in the order the engine produced it.
    InstantVector(Vector),
    /// A range vector (a matrix selector or subquery at the top level).
    RangeVector(Matrix),
    /// A string literal.
    String(String),
}

/// Formats a float the way Prometheus prints sample values (`+Inf`, `-Inf`, `NaN`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_drop_empty_values() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("b", "3")]);
        let names: Vec<_> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(l.value("b"), "3");
        assert_eq!(l.value("c"), "");
    }

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert!(stale_nan().is_nan());
    }

    #[test]
    fn cached_forms_follow_changes() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let mut a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs([("job", "a"), ("__name__", "up")]);
        assert_eq!(a, b);
        assert_eq!(hasher.hash_one(&a), hasher.hash_one(&b));
        let shared = a.clone();
        assert_eq!(a.without_metric_name().to_string(), r#"{job="a"}"#);
        // Changing a set drops what was cached for it; the other holder keeps its own.
        a.set("job", "b");
        assert_eq!(a.without_metric_name().to_string(), r#"{job="b"}"#);
        assert_ne!(hasher.hash_one(&a), hasher.hash_one(&b));
        assert_eq!(shared.without_metric_name().to_string(), r#"{job="a"}"#);
        let mut only = Labels::from_pairs([("__name__", "x"), ("i", "1")]);
        let _ = only.without_metric_name();
        only.set("i", "2");
        assert_eq!(only.without_metric_name().to_string(), r#"{i="2"}"#);
        assert_eq!(
            hasher.hash_one(&only),
            hasher.hash_one(Labels::from_pairs([("i", "2"), ("__name__", "x")]))
        );
        let nameless = Labels::from_pairs([("i", "1")]);
        assert_eq!(nameless.without_metric_name(), nameless);
    }

    #[test]
    fn display_uses_prometheus_notation() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        assert_eq!(l.to_string(), r#"up{job="a"}"#);
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }
}
