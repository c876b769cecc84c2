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
/// The set without its metric name, which arithmetic and most functions produce, is a view of
/// the same shared labels that skips the name, so it costs no copy and reads the same memory
/// as the full set (which matters when a selection visits thousands of series).
#[derive(Clone, Default)]
pub struct Labels {
    inner: Arc<Inner>,
    /// Whether this is the view without the metric name (only when `inner` has one).
    no_name: bool,
}

#[derive(Default)]
struct Inner {
    labels: Vec<Label>,
    /// Position of the metric name in `labels`, if there is one.
    name_at: Option<usize>,
    /// A hash of the labels, once computed; what [`Hash`] feeds to a hasher.
    hash: OnceLock<u64>,
    /// The same for the labels without the metric name.
    hash_no_name: OnceLock<u64>,
    /// The labels as one run of bytes, once computed: [`Encoded`].
    encoded: OnceLock<Encoded>,
}

/// Every label as an entry `name length, value length (4 bytes each, little-endian), name,
/// value` in one buffer, so that looking a label up or comparing two sets reads one small block
/// of memory instead of a string per name and value. The lengths make the encoding of a label
/// set unique, so two sets are equal exactly when their bytes are.
struct Encoded {
    bytes: Box<[u8]>,
    /// Where the metric name's entry is in `bytes` (empty without one).
    name: (usize, usize),
}

impl Encoded {
    fn new(labels: &[Label]) -> Self {
        let n: usize = labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 8)
            .sum();
        let mut bytes = Vec::with_capacity(n);
        let mut name = (0, 0);
        for l in labels {
            let start = bytes.len();
            push_entry(&mut bytes, l.name.as_bytes(), l.value.as_bytes());
            if l.name == METRIC_NAME {
                name = (start, bytes.len());
            }
        }
        Encoded {
            bytes: bytes.into_boxed_slice(),
            name,
        }
    }
}

/// Whether `a0 ++ a1` and `b0 ++ b1` are the same bytes.
fn chained_eq(a0: &[u8], a1: &[u8], b0: &[u8], b1: &[u8]) -> bool {
    if a0.len() + a1.len() != b0.len() + b1.len() {
        return false;
    }
    if a0.len() > b0.len() {
        return chained_eq(b0, b1, a0, a1);
    }
    let (b0_head, b0_rest) = b0.split_at(a0.len());
    let (a1_head, a1_rest) = a1.split_at(b0_rest.len());
    a0 == b0_head && a1_head == b0_rest && a1_rest == b1
}

impl Inner {
    fn new(labels: Vec<Label>) -> Self {
        let mut i = Inner {
            labels,
            ..Inner::default()
        };
        i.find_name();
        i
    }

    fn find_name(&mut self) {
        self.name_at = self
            .labels
            .binary_search_by(|l| l.name.as_str().cmp(METRIC_NAME))
            .ok();
    }
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        Inner {
            labels: self.labels.clone(),
            name_at: self.name_at,
            hash: OnceLock::new(),
            hash_no_name: OnceLock::new(),
            encoded: OnceLock::new(),
        }
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.inner, &other.inner) && self.no_name == other.no_name {
            return true;
        }
        if self.len() != other.len() {
            return false;
        }
        let (a0, a1) = self.encoded_parts();
        let (b0, b1) = other.encoded_parts();
        chained_eq(a0, a1, b0, b1)
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
        if Arc::ptr_eq(&self.inner, &other.inner) && self.no_name == other.no_name {
            return Ordering::Equal;
        }
        let (a1, a2) = self.parts();
        let (b1, b2) = other.parts();
        if a2.is_empty() && b2.is_empty() {
            return a1.cmp(b1);
        }
        self.iter().cmp(other.iter())
    }
}

impl Hash for Labels {
    /// Feeds a 64-bit hash of the labels, computed once per shared set (FxHash, fixed keys), so
    /// hashing a label set taken from storage again and again costs little. The hash is that
    /// of the label slice, whichever way the set is held.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let cell = if self.no_name {
            &self.inner.hash_no_name
        } else {
            &self.inner.hash
        };
        let h = *cell.get_or_init(|| {
            let mut h = crate::promql::hash::FxHasher::default();
            h.write_usize(self.len());
            for l in self.iter() {
                l.hash(&mut h);
            }
            h.finish()
        });
        state.write_u64(h);
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Labels")
            .field(&self.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl Labels {
    /// The empty label set.
    pub fn new() -> Self {
        Labels::from_vec(Vec::new())
    }

    fn from_vec(labels: Vec<Label>) -> Self {
        Labels {
            inner: Arc::new(Inner::new(labels)),
            no_name: false,
        }
    }

    /// The labels in order, as two runs (the second is empty unless the metric name is
    /// skipped from the middle).
    fn parts(&self) -> (&[Label], &[Label]) {
        let labels = &self.inner.labels;
        match (self.no_name, self.inner.name_at) {
            (true, Some(i)) => (&labels[..i], &labels[i + 1..]),
            _ => (labels, &[]),
        }
    }

    /// The labels for changing, copied first if shared (or if this is a view).
    fn labels_mut(&mut self) -> &mut Vec<Label> {
        if self.no_name {
            *self = Labels::from_vec(self.iter().cloned().collect());
        }
        let inner = Arc::make_mut(&mut self.inner);
        inner.hash = OnceLock::new();
        inner.hash_no_name = OnceLock::new();
        inner.encoded = OnceLock::new();
        &mut inner.labels
    }

    /// After a change through [`Labels::labels_mut`]: where the metric name is now.
    fn changed(&mut self) {
        Arc::make_mut(&mut self.inner).find_name();
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
        let (a, b) = self.parts();
        a.iter().chain(b)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        let (a, b) = self.parts();
        a.len() + b.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (a, b) = self.encoded_parts();
        let v = find_encoded(a, name.as_bytes()).or_else(|| find_encoded(b, name.as_bytes()))?;
        // An entry's value is the whole UTF-8 text of one label value.
        std::str::from_utf8(v).ok()
    }

    /// The value of `name`, looked up in the labels themselves.
    fn get_direct(&self, name: &str) -> Option<&str> {
        let labels = &self.inner.labels;
        let i = labels
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()?;
        if self.no_name && self.inner.name_at == Some(i) {
            return None;
        }
        Some(labels[i].value.as_str())
    }

    /// The labels encoded ([`Encoded`] entries, in order), as two runs: the second is empty
    /// unless the metric name is skipped from the middle.
    pub(crate) fn encoded_parts(&self) -> (&[u8], &[u8]) {
        let e = self
            .inner
            .encoded
            .get_or_init(|| Encoded::new(&self.inner.labels));
        if self.no_name {
            (&e.bytes[..e.name.0], &e.bytes[e.name.1..])
        } else {
            (&e.bytes, &[])
        }
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
        match (self.get_direct(&name), value.is_empty()) {
            (None, true) => return,
            (Some(v), false) if v == value => return,
            _ => {}
        }
        let labels = self.labels_mut();
        match labels.binary_search_by(|l| l.name.as_str().cmp(&name)) {
            Ok(i) if value.is_empty() => {
                labels.remove(i);
            }
            Ok(i) => labels[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => labels.insert(i, Label { name, value }),
        }
        self.changed();
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        if self.get_direct(name).is_none() {
            return;
        }
        let labels = self.labels_mut();
        if let Ok(i) = labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
            labels.remove(i);
        }
        self.changed();
    }

    /// A copy without the metric name (a view of the same labels: no copy is made).
    pub fn without_metric_name(&self) -> Labels {
        if self.no_name || self.inner.name_at.is_none() {
            return self.clone();
        }
        Labels {
            inner: Arc::clone(&self.inner),
            no_name: true,
        }
    }

    /// A copy with every `(name, value)` of `sets` set, as [`Labels::set`] one after the other
    /// would give, built in one pass. `sets` is sorted by name without repeats; an empty value
    /// removes the label. When nothing changes, the copy shares these labels.
    pub fn with_sorted(&self, sets: &[(&str, &str)]) -> Labels {
        debug_assert!(sets.windows(2).all(|w| w[0].0 < w[1].0));
        if sets
            .iter()
            .all(|(n, v)| self.get_direct(n).unwrap_or("") == *v)
        {
            return self.clone();
        }
        let mut out = Vec::with_capacity(self.len() + sets.len());
        let mut own = self.iter().peekable();
        for &(name, value) in sets {
            while let Some(l) = own.next_if(|l| l.name.as_str() < name) {
                out.push(l.clone());
            }
            own.next_if(|l| l.name == name);
            if !value.is_empty() {
                out.push(Label {
                    name: name.to_string(),
                    value: value.to_string(),
                });
            }
        }
        out.extend(own.cloned());
        Labels::from_vec(out)
    }

    /// A copy keeping only the listed names.
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels::from_vec(
            self.iter()
                .filter(|l| names.contains(&l.name))
                .cloned()
                .collect(),
        )
    }

    /// A copy without the listed names.
    pub fn drop(&self, names: &[String]) -> Labels {
        if !self.iter().any(|l| names.contains(&l.name)) {
            return self.clone();
        }
        if names.len() == 1 && names[0] == METRIC_NAME {
            return self.without_metric_name();
        }
        Labels::from_vec(
            self.iter()
                .filter(|l| !names.contains(&l.name))
                .cloned()
                .collect(),
        )
    }
}

/// Appends the [`Encoded`] entry of one label to `out`.
pub(crate) fn push_entry(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let len = |b: &[u8]| u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(name));
    out.extend_from_slice(&len(value));
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// One entry of encoded labels.
struct Entry<'a> {
    name: &'a [u8],
    value: &'a [u8],
    /// The whole entry.
    bytes: &'a [u8],
    /// What follows it.
    rest: &'a [u8],
}

/// The first entry of encoded labels.
fn next_entry(bytes: &[u8]) -> Option<Entry<'_>> {
    let n = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let v = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
    let end = 8 + n + v;
    let entry = bytes.get(..end)?;
    Some(Entry {
        name: &entry[8..8 + n],
        value: &entry[8 + n..],
        bytes: entry,
        rest: &bytes[end..],
    })
}

/// The entries of encoded labels: each label's name and its whole entry.
pub(crate) fn encoded_entries(mut bytes: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let e = next_entry(bytes)?;
        bytes = e.rest;
        Some((e.name, e.bytes))
    })
}

/// The value of label `name` in encoded labels (sorted by name: byte order is the order of
/// the names as text).
fn find_encoded<'a>(mut bytes: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    while let Some(e) = next_entry(bytes) {
        match e.name.cmp(name) {
            std::cmp::Ordering::Equal => return Some(e.value),
            std::cmp::Ordering::Greater => return None,
            std::cmp::Ordering::Less => bytes = e.rest,
        }
    }
    None
}

impl Labels {
    /// Prometheus's `labels.Labels.String()`: every label, the name too, inside braces
    /// (`{__name__="up", job="a"}`), as Prometheus prints label sets in error messages.
    pub fn go_string(&self) -> String {
        let items: Vec<String> = self
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
        for l in self.iter().filter(|l| l.name != METRIC_NAME) {
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
    fn with_sorted_equals_setting_one_by_one() {
        let full = Labels::from_pairs([("__name__", "m"), ("a", "1"), ("job", "x"), ("z", "9")]);
        let sets: &[&[(&str, &str)]] = &[
            &[],
            &[("__name__", "rec")],
            &[("__name__", "rec"), ("b", "2"), ("job", ""), ("zz", "last")],
            &[("a", "1"), ("job", "x")],
            &[("0", "first"), ("a", ""), ("z", "")],
            &[("job", "")],
        ];
        for base in [full.clone(), full.without_metric_name(), Labels::new()] {
            for set in sets {
                let mut one_by_one = base.clone();
                for (n, v) in *set {
                    one_by_one.set(*n, *v);
                }
                let batch = base.with_sorted(set);
                assert_eq!(batch, one_by_one, "{base} with {set:?}");
                assert_eq!(batch.to_string(), one_by_one.to_string());
                assert_eq!(batch.metric_name(), one_by_one.metric_name());
            }
        }
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
    fn a_view_without_the_name_behaves_like_a_copy_without_it() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        // "A" sorts before "__name__", "a" after it: the name is in the middle.
        let full = Labels::from_pairs([("A", "1"), ("__name__", "m"), ("a", "x\u{ff}y")]);
        let view = full.without_metric_name();
        let copy = Labels::from_pairs([("A", "1"), ("a", "x\u{ff}y")]);
        assert_eq!(view, copy);
        assert_eq!(copy, view);
        assert_ne!(view, full);
        assert_eq!(view.cmp(&copy), std::cmp::Ordering::Equal);
        assert_eq!(hasher.hash_one(&view), hasher.hash_one(&copy));
        assert_eq!(view.len(), 2);
        assert_eq!(view.get("__name__"), None);
        assert_eq!(full.get("__name__"), Some("m"));
        assert_eq!(view.get("a"), Some("x\u{ff}y"));
        assert_eq!(view.get("b"), None);
        assert_eq!(view.to_string(), copy.to_string());
        let names: Vec<_> = view.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["A", "a"]);
        // Changing a view makes a set of its own.
        let mut changed = view.clone();
        changed.set("b", "2");
        assert_eq!(changed.get("__name__"), None);
        assert_eq!(changed.len(), 3);
        assert_eq!(view.len(), 2);
        let mut named = view.clone();
        named.set("__name__", "n");
        assert_eq!(named.metric_name(), Some("n"));
        assert_eq!(full.metric_name(), Some("m"));
        // Label boundaries count: equal bytes in other places are other sets.
        let a = Labels::from_pairs([("a", "bc")]);
        let b = Labels::from_pairs([("ab", "c")]);
        assert_ne!(a, b);
    }

    #[test]
    fn chained_comparison_splits_anywhere() {
        let whole = b"abcdef";
        for i in 0..=6 {
            for j in 0..=6 {
                let (a0, a1) = whole.split_at(i);
                let (b0, b1) = whole.split_at(j);
                assert!(chained_eq(a0, a1, b0, b1));
                assert!(!chained_eq(a0, a1, &b"abcdeg"[..j], &b"abcdeg"[j..]));
            }
        }
    }

    #[test]
    fn display_uses_prometheus_notation() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        assert_eq!(l.to_string(), r#"up{job="a"}"#);
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }
}
