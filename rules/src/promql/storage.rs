//! Where the engine reads series from: label matchers, the [`Storage`] trait a caller implements,
//! and [`MemStorage`], an in-memory implementation for tests and for the server's recent window.

use std::collections::HashMap;

use regex::Regex;

use super::EvalError;
use super::value::{Labels, METRIC_NAME, Series};

/// How a [`Matcher`] compares a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored)
    Re,
    /// `!~` (fully anchored)
    NotRe,
}

/// A label matcher. A label that is absent matches as the empty string, as in Prometheus.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value or regular expression as written.
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; a regular expression is anchored at both ends (`^(?:re)$`).
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, EvalError> {
        let value = value.into();
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(anchored_regex(&value)?),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// Whether the label value `v` (`""` for an absent label) matches.
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => self.value == v,
            (MatchOp::NotEqual, _) => self.value != v,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            (MatchOp::Re | MatchOp::NotRe, None) => false,
        }
    }

    /// Whether a series with labels `l` matches.
    pub fn matches_labels(&self, l: &Labels) -> bool {
        self.matches(l.value(&self.name))
    }
}

/// Compiles a PromQL regular expression, anchored at both ends like Prometheus (`^(?:re)$`).
///
/// Go's RE2 accepts a `{` that does not start a repetition as a literal; Rust's `regex` does
/// not, so such a brace is escaped before a second attempt.
pub fn anchored_regex(re: &str) -> Result<Regex, EvalError> {
    Regex::new(&format!("^(?:{re})$"))
        .or_else(|_| Regex::new(&format!("^(?:{})$", escape_literal_braces(re))))
        .map_err(|e| EvalError::InvalidArgument(format!("invalid regular expression {re:?}: {e}")))
}

fn escape_literal_braces(re: &str) -> String {
    let chars: Vec<char> = re.chars().collect();
    let mut out = String::with_capacity(re.len() + 4);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            out.push(c);
            out.push(chars[i + 1]);
            i += 2;
            continue;
        }
        if c == '{' {
            // A repetition is `{n}`, `{n,}` or `{n,m}`.
            let rest: String = chars[i + 1..].iter().collect();
            let is_repeat = rest.find('}').is_some_and(|end| {
                let body = &rest[..end];
                let mut parts = body.splitn(2, ',');
                let first = parts.next().unwrap_or("");
                let second = parts.next();
                !first.is_empty()
                    && first.chars().all(|c| c.is_ascii_digit())
                    && second.is_none_or(|s| s.chars().all(|c| c.is_ascii_digit()))
            });
            if !is_repeat {
                out.push('\\');
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The series store the engine reads. Implementations return every series whose labels match
/// all `matchers`, with its samples in `[start_ms, end_ms]` (both ends included, stale markers
/// included, in time order). Series without samples in the range may be left out.
pub trait Storage {
    /// Selects series by label matchers and time range.
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<Series>;
}

#[derive(Clone, Debug)]
struct MemSeries {
    labels: Labels,
    samples: Vec<(i64, f64)>,
}

/// An in-memory [`Storage`]: series indexed by label set and by metric name.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    series: Vec<MemSeries>,
    by_labels: HashMap<Labels, usize>,
    by_name: HashMap<String, Vec<usize>>,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    fn series_index(&mut self, labels: &Labels) -> usize {
        if let Some(&i) = self.by_labels.get(labels) {
            return i;
        }
        let i = self.series.len();
        self.series.push(MemSeries {
            labels: labels.clone(),
            samples: Vec::new(),
        });
        self.by_labels.insert(labels.clone(), i);
        self.by_name
            .entry(labels.value(METRIC_NAME).to_string())
            .or_default()
            .push(i);
        i
    }

    /// Adds one sample; a sample at an existing timestamp replaces the old value.
    pub fn add_sample(&mut self, labels: &Labels, t_ms: i64, v: f64) {
        self.add_samples(labels, [(t_ms, v)]);
    }

    /// Adds several samples to one series.
    pub fn add_samples(&mut self, labels: &Labels, samples: impl IntoIterator<Item = (i64, f64)>) {
        let i = self.series_index(labels);
        let s = &mut self.series[i].samples;
        for (t_ms, v) in samples {
            match s.last() {
                Some(&(last, _)) if last < t_ms => s.push((t_ms, v)),
                None => s.push((t_ms, v)),
                Some(_) => match s.binary_search_by(|(t, _)| t.cmp(&t_ms)) {
                    Ok(j) => s[j].1 = v,
                    Err(j) => s.insert(j, (t_ms, v)),
                },
            }
        }
    }

    /// Drops samples older than `t_ms`, and series left without samples.
    pub fn truncate_before(&mut self, t_ms: i64) {
        for s in &mut self.series {
            let cut = s.samples.partition_point(|(t, _)| *t < t_ms);
            s.samples.drain(..cut);
        }
        if self.series.iter().any(|s| s.samples.is_empty()) {
            let kept: Vec<MemSeries> = std::mem::take(&mut self.series)
                .into_iter()
                .filter(|s| !s.samples.is_empty())
                .collect();
            self.clear();
            for s in kept {
                let i = self.series_index(&s.labels);
                self.series[i].samples = s.samples;
            }
        }
    }
}

impl Storage for MemStorage {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<Series> {
        let by_name = matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
            .map(|m| self.by_name.get(&m.value).map(Vec::as_slice).unwrap_or(&[]));
        let candidates: Box<dyn Iterator<Item = &MemSeries>> = match by_name {
            Some(ix) => Box::new(ix.iter().map(|&i| &self.series[i])),
            None => Box::new(self.series.iter()),
        };
        let mut out: Vec<Series> = candidates
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .filter_map(|s| {
                let lo = s.samples.partition_point(|(t, _)| *t < start_ms);
                let hi = s.samples.partition_point(|(t, _)| *t <= end_ms);
                (lo < hi).then(|| Series {
                    labels: s.labels.clone(),
                    samples: s.samples[lo..hi].to_vec(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).unwrap()
    }

    #[test]
    fn regex_matchers_are_fully_anchored() {
        let re = m(MatchOp::Re, "job", "api|web");
        assert!(re.matches("api"));
        assert!(re.matches("web"));
        // Without the group, `^api|web$` would match both of these.
        assert!(!re.matches("api-server"));
        assert!(!re.matches("my-web"));
        assert!(!m(MatchOp::Re, "job", "pro").matches("production"));
        assert!(m(MatchOp::NotRe, "job", "pro").matches("production"));
        assert!(m(MatchOp::Re, "group", "(?i:PRO).*").matches("production"));
    }

    #[test]
    fn absent_labels_match_as_empty() {
        let l = Labels::from_pairs([("__name__", "up")]);
        assert!(m(MatchOp::Equal, "z", "").matches_labels(&l));
        assert!(m(MatchOp::NotEqual, "foo", "bar").matches_labels(&l));
        assert!(!m(MatchOp::NotEqual, "z", "").matches_labels(&l));
    }

    #[test]
    fn go_style_literal_braces_compile() {
        assert!(m(MatchOp::Re, "a", "x{y}").matches("x{y}"));
        assert!(m(MatchOp::Re, "a", "x{2}").matches("xx"));
    }

    #[test]
    fn mem_storage_selects_by_name_and_range() {
        let mut s = MemStorage::new();
        let a = Labels::from_pairs([("__name__", "a"), ("i", "1")]);
        let b = Labels::from_pairs([("__name__", "b"), ("i", "1")]);
        s.add_samples(&a, [(0, 1.0), (10, 2.0), (20, 3.0)]);
        s.add_samples(&b, [(0, 1.0)]);
        s.add_sample(&a, 10, 5.0);
        let got = s.select(&[m(MatchOp::Equal, "__name__", "a")], 5, 20);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples, vec![(10, 5.0), (20, 3.0)]);
        let got = s.select(&[m(MatchOp::Equal, "i", "1")], 0, 0);
        assert_eq!(got.len(), 2);
        s.truncate_before(5);
        assert_eq!(s.series_count(), 1);
    }
}
