//! Where the engine reads series from: label matchers, the [`Storage`] trait a caller implements,
//! and [`MemStorage`], an in-memory implementation for tests and for the server's recent window.

use crate::promql::hash::FastMap;
use std::borrow::Cow;
use std::collections::BTreeMap;

use regex::Regex;

use super::EvalError;
use super::value::{Labels, Series, is_stale_nan};

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

/// A series as a [`Storage`] returns it: its labels and the samples in the requested range,
/// borrowed from the store where possible.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectedSeries<'a> {
    /// Labels, including `__name__`.
    pub labels: Cow<'a, Labels>,
    /// Samples in increasing timestamp order (stale markers included).
    pub samples: Cow<'a, [(i64, f64)]>,
    /// Whether the store knows `samples` hold no stale marker, so that a range selector need
    /// not look for them; `false` when it does not know.
    pub no_stale: bool,
}

impl SelectedSeries<'_> {
    /// An owned [`Series`].
    pub fn into_series(self) -> Series {
        Series {
            labels: self.labels.into_owned(),
            samples: self.samples.into_owned(),
        }
    }
}

impl From<Series> for SelectedSeries<'_> {
    fn from(s: Series) -> Self {
        SelectedSeries {
            labels: Cow::Owned(s.labels),
            samples: Cow::Owned(s.samples),
            no_stale: false,
        }
    }
}

/// The series store the engine reads. Implementations return every series whose labels match
/// all `matchers`, with its samples in `[start_ms, end_ms]` (both ends included, stale markers
/// included, in time order), sorted by labels. Series without samples in the range may be left
/// out. Samples may be borrowed from the store, so an evaluation copies only what it keeps.
pub trait Storage {
    /// Selects series by label matchers and time range.
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<SelectedSeries<'_>>;

    /// Like [`Storage::select`], for a caller that needs only the latest sample in the range of
    /// each series (an instant selector evaluated at one time): a store may return just that
    /// sample. The default keeps the last sample of what `select` returns.
    fn select_latest(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedSeries<'_>> {
        let mut v = self.select(matchers, start_ms, end_ms);
        for s in &mut v {
            keep_last(&mut s.samples);
        }
        v
    }
}

/// Keeps only the last sample.
pub fn keep_last(samples: &mut Cow<'_, [(i64, f64)]>) {
    match samples {
        Cow::Borrowed(b) => *b = &b[b.len().saturating_sub(1)..],
        Cow::Owned(v) => {
            let n = v.len();
            if n > 1 {
                v.drain(..n - 1);
            }
        }
    }
}

/// Merges two label-sorted selections; where both hold a series, `over`'s samples win at equal
/// timestamps. The result is sorted by labels.
pub fn merge_selections<'a>(
    base: Vec<SelectedSeries<'a>>,
    over: Vec<SelectedSeries<'a>>,
) -> Vec<SelectedSeries<'a>> {
    if over.is_empty() {
        return base;
    }
    if base.is_empty() {
        return over;
    }
    let mut out = Vec::with_capacity(base.len() + over.len());
    let mut b = base.into_iter().peekable();
    let mut o = over.into_iter().peekable();
    loop {
        let ord = match (b.peek(), o.peek()) {
            (Some(x), Some(y)) => x.labels.cmp(&y.labels),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match ord {
            std::cmp::Ordering::Less => out.extend(b.next()),
            std::cmp::Ordering::Greater => out.extend(o.next()),
            std::cmp::Ordering::Equal => {
                let (Some(mut x), Some(y)) = (b.next(), o.next()) else {
                    break;
                };
                x.no_stale &= y.no_stale;
                let e = x.samples.to_mut();
                for &(t, v) in y.samples.iter() {
                    match e.binary_search_by(|(s, _)| s.cmp(&t)) {
                        Ok(i) => e[i].1 = v,
                        Err(i) => e.insert(i, (t, v)),
                    }
                }
                out.push(x);
            }
        }
    }
    out
}

type FxMap<K, V> = crate::promql::hash::FastMap<K, V>;

/// Label names and values as integers.
#[derive(Clone, Debug, Default)]
struct Symbols {
    ids: FastMap<String, u32>,
    strs: Vec<String>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.strs.len()).expect("fewer than 2^32 label strings");
        self.strs.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn str(&self, id: u32) -> &str {
        &self.strs[id as usize]
    }
}

/// Label symbols kept inline for a series with up to this many labels.
const INLINE_SYMS: usize = 11;

/// `(name, value)` symbols of a series' labels, in label order; inline for the usual series, so
/// checking a candidate reads one place in memory.
#[derive(Clone, Debug)]
struct Syms {
    len: usize,
    inline: [(u32, u32); INLINE_SYMS],
    spill: Option<Box<[(u32, u32)]>>,
}

impl Syms {
    fn new(syms: Vec<(u32, u32)>) -> Self {
        let mut inline = [(0, 0); INLINE_SYMS];
        if syms.len() <= INLINE_SYMS {
            inline[..syms.len()].copy_from_slice(&syms);
            Syms {
                len: syms.len(),
                inline,
                spill: None,
            }
        } else {
            Syms {
                len: syms.len(),
                inline,
                spill: Some(syms.into_boxed_slice()),
            }
        }
    }

    fn as_slice(&self) -> &[(u32, u32)] {
        match &self.spill {
            Some(s) => s,
            None => &self.inline[..self.len],
        }
    }
}

/// A series. What a selection reads first (time span, symbols) comes first, so that checking a
/// candidate and finding its window touch as little memory as possible.
#[derive(Clone, Debug)]
#[repr(C)]
struct MemSeries {
    /// Time of the first sample (`i64::MAX` without samples).
    first_t: i64,
    /// A copy of the last sample (time `i64::MIN` without samples): an instant selector at the
    /// present needs nothing else.
    last: (i64, f64),
    /// The samples are `samples[start..]`; truncation moves `start` and compacts now and then.
    samples: Vec<(i64, f64)>,
    start: usize,
    /// The latest time a stale marker was added at (`i64::MIN` if none): a window that starts
    /// after it holds no stale marker.
    stale_max: i64,
    syms: Syms,
    labels: Labels,
}

impl MemSeries {
    /// The samples, in time order.
    fn pts(&self) -> &[(i64, f64)] {
        &self.samples[self.start..]
    }

    fn update_span(&mut self) {
        let pts = &self.samples[self.start..];
        self.first_t = pts.first().map_or(i64::MAX, |s| s.0);
        self.last = pts.last().copied().unwrap_or((i64::MIN, f64::NAN));
    }

    /// Adds a sample; one at an existing time replaces the value.
    fn add(&mut self, t_ms: i64, v: f64) {
        let start = self.start;
        if self.samples.len() == start || self.last.0 < t_ms {
            self.samples.push((t_ms, v));
        } else {
            match self.samples[start..].binary_search_by(|(t, _)| t.cmp(&t_ms)) {
                Ok(j) => self.samples[start + j].1 = v,
                Err(j) => self.samples.insert(start + j, (t_ms, v)),
            }
        }
        self.first_t = self.first_t.min(t_ms);
        if is_stale_nan(v) {
            self.stale_max = self.stale_max.max(t_ms);
        }
        if t_ms >= self.last.0 {
            self.last = (t_ms, v);
        }
    }

    /// Drops the samples before `t_ms`; the storage is compacted once the dropped part
    /// outgrows half the rest, so truncating often stays cheap.
    fn truncate_before(&mut self, t_ms: i64) {
        if self.first_t >= t_ms {
            return;
        }
        let cut = self.pts().partition_point(|(t, _)| *t < t_ms);
        self.start += cut;
        if self.start * 2 > self.samples.len() {
            self.samples.drain(..self.start);
            self.start = 0;
        }
        self.update_span();
    }

    /// The samples in `[start, end]`, or only the latest of them. The first and last times are
    /// kept in the series, so the samples themselves are read only where the window cuts into
    /// them; the cut is searched from where evenly spaced samples would put it, so that usually
    /// only the cache lines at the window's start are touched (the caller reads on from there).
    fn window(&self, start: i64, end: i64, latest: bool) -> &[(i64, f64)] {
        let last_t = self.last.0;
        if latest && last_t <= end {
            return if last_t >= start {
                std::slice::from_ref(&self.last)
            } else {
                &[]
            };
        }
        let pts = self.pts();
        let (first_t, n) = (self.first_t, pts.len());
        if n == 0 || first_t > end || last_t < start {
            return &[];
        }
        let hi = if last_t <= end {
            n
        } else {
            search_from(pts, spaced_index(first_t, last_t, n, end), |t| t <= end)
        };
        let pts = &pts[..hi];
        let lo = if first_t >= start {
            0
        } else {
            search_from(pts, spaced_index(first_t, last_t, n, start), |t| t < start)
        };
        let w = &pts[lo.min(hi)..];
        if latest {
            &w[w.len().saturating_sub(1)..]
        } else {
            w
        }
    }

    /// The value symbol of label `name`, if the series has the label.
    fn value_of(&self, name: u32) -> Option<u32> {
        self.syms
            .as_slice()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// A matcher resolved against the store's symbols.
enum Check<'m> {
    /// The label has this value.
    Is(u32, u32),
    /// The label is absent (`= ""`).
    Absent(u32),
    /// The label is present (`!= ""`).
    Present(u32),
    /// The label is absent or has another value.
    IsNot(u32, u32),
    /// A regular expression (`=~` or `!~`), with its verdict per value symbol once computed.
    Regex {
        name: u32,
        matcher: &'m Matcher,
        if_absent: bool,
        memo: FxMap<u32, bool>,
    },
}

/// The samples of `pts` in `[start, end]`. The window is usually at the end of the series (an
/// instant selector) or the whole series (a long range), so the search starts there.
#[cfg(test)]
fn window(pts: &[(i64, f64)], start: i64, end: i64) -> &[(i64, f64)] {
    let last = pts.len().saturating_sub(1);
    let hi = search_from(pts, last, |t| t <= end);
    let pts = &pts[..hi];
    let lo = search_from(pts, pts.len().saturating_sub(1), |t| t < start);
    &pts[lo..]
}

/// Where time `t` would be among `n` samples spread evenly from `first_t` to `last_t`.
fn spaced_index(first_t: i64, last_t: i64, n: usize, t: i64) -> usize {
    if n < 2 || last_t <= first_t || t <= first_t {
        return 0;
    }
    let span = i128::from(last_t) - i128::from(first_t);
    let i = (i128::from(t) - i128::from(first_t)) * (n as i128 - 1) / span;
    usize::try_from(i).unwrap_or(usize::MAX).min(n - 1)
}

/// The number of leading samples whose time satisfies `before` (true for a prefix of `pts`),
/// searched by galloping from index `hint` in the direction of the answer.
fn search_from(pts: &[(i64, f64)], hint: usize, before: impl Fn(i64) -> bool) -> usize {
    let n = pts.len();
    if n == 0 {
        return 0;
    }
    let hint = hint.min(n - 1);
    if before(pts[hint].0) {
        // The answer is in (hint, n].
        let mut lo = hint + 1;
        let mut step = 1;
        loop {
            let probe = lo + step - 1;
            if probe >= n {
                return lo + pts[lo..].partition_point(|p| before(p.0));
            }
            if !before(pts[probe].0) {
                return lo + pts[lo..probe].partition_point(|p| before(p.0));
            }
            lo = probe + 1;
            step *= 2;
        }
    }
    // The answer is in [0, hint].
    let mut hi = hint;
    let mut step = 1;
    loop {
        if hi == 0 {
            return 0;
        }
        let probe = hi.saturating_sub(step);
        if before(pts[probe].0) {
            return probe + 1 + pts[probe + 1..hi].partition_point(|p| before(p.0));
        }
        hi = probe;
        step *= 2;
    }
}

/// Space between the ranks of neighbouring series when ranks are handed out afresh.
const RANK_GAP: u64 = 1 << 32;

/// An in-memory [`Storage`]: series with an inverted index from every label name and value to
/// the ids of the series that carry it. A selection intersects the lists of its equality
/// matchers, checks the other matchers on integer symbols, and orders what it found by each
/// series' rank, a number kept in label-set order. Selected samples are borrowed, not copied.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    series: Vec<MemSeries>,
    by_labels: FastMap<Labels, u32>,
    symbols: Symbols,
    /// `(name, value)` → ids of the series with that label, ascending.
    postings: FxMap<(u32, u32), Vec<u32>>,
    /// Label name → its values.
    values: FxMap<u32, Vec<u32>>,
    /// Label sets in order, with their ids: where a new series' rank goes.
    order: BTreeMap<Labels, u32>,
    /// Per series id: its rank; ranks follow the label-set order, with gaps.
    ranks: Vec<u64>,
    /// Counts changes: see [`MemStorage::generation`].
    generation: u64,
    /// Names the current numbering of `series`: see [`SeriesRef`].
    layout: Layout,
}

/// A number naming one numbering of a [`MemStorage`]'s series, unique in the process: a new
/// store, a clone, [`MemStorage::clear`] and a [`MemStorage::truncate_before`] that renumbers
/// all take a fresh one, so a [`SeriesRef`] taken before is recognised as stale.
#[derive(Debug, PartialEq, Eq)]
struct Layout(u64);

impl Layout {
    fn fresh() -> Layout {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Layout(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl Default for Layout {
    fn default() -> Layout {
        Layout::fresh()
    }
}

impl Clone for Layout {
    /// A clone numbers its new series independently of the original: a ref into one is not
    /// valid in the other.
    fn clone(&self) -> Layout {
        Layout::fresh()
    }
}

/// A handle to one series of a [`MemStorage`], so a caller adding many samples to the same
/// series (the live window's writers) does not hash and compare its labels for each sample.
/// It is valid until the store renumbers its series ([`MemStorage::clear`], or
/// [`MemStorage::truncate_before`] dropping a series); [`MemStorage::add_sample_ref`] refuses a
/// stale one instead of adding to whatever series now has its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesRef {
    index: u32,
    layout: u64,
}

/// Intersects ascending id lists: `a` (the shorter) with `b`, galloping through `b`.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let mut b = b;
    for &x in a {
        // Gallop to the first element >= x.
        let mut step = 1;
        let mut hi = 0;
        while hi < b.len() && b[hi] < x {
            hi += step;
            step *= 2;
        }
        let lo = hi - (step / 2).min(hi);
        let hi = hi.min(b.len());
        let i = lo + b[lo..hi].partition_point(|&y| y < x);
        b = &b[i..];
        match b.first() {
            Some(&y) if y == x => {
                out.push(x);
                b = &b[1..];
            }
            Some(_) => {}
            None => break,
        }
    }
    out
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

    /// Number of samples, over all series.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.pts().len()).sum()
    }

    /// Removes everything. Every [`SeriesRef`] taken before is stale afterwards.
    pub fn clear(&mut self) {
        let generation = self.generation;
        *self = Self::default();
        self.generation = generation + 1;
    }

    /// A number that changes whenever the stored samples do (adding, truncating, clearing), so
    /// a caller holding results computed over them can tell whether anyone wrote since.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn series_index(&mut self, labels: &Labels) -> usize {
        if let Some(&i) = self.by_labels.get(labels) {
            return i as usize;
        }
        let i = self.series.len();
        let id = u32::try_from(i).expect("fewer than 2^32 series");
        let syms: Vec<(u32, u32)> = labels
            .iter()
            .map(|l| (self.symbols.intern(&l.name), self.symbols.intern(&l.value)))
            .collect();
        for &(n, v) in &syms {
            self.postings
                .entry((n, v))
                .or_insert_with(|| {
                    self.values.entry(n).or_default().push(v);
                    Vec::new()
                })
                .push(id);
        }
        let rank = self.rank_between(labels);
        self.ranks.push(rank);
        self.order.insert(labels.clone(), id);
        self.series.push(MemSeries {
            first_t: i64::MAX,
            last: (i64::MIN, f64::NAN),
            samples: Vec::new(),
            start: 0,
            stale_max: i64::MIN,
            syms: Syms::new(syms),
            labels: labels.clone(),
        });
        self.by_labels.insert(labels.clone(), id);
        i
    }

    /// Adds one sample; a sample at an existing timestamp replaces the old value.
    pub fn add_sample(&mut self, labels: &Labels, t_ms: i64, v: f64) {
        self.add_samples(labels, [(t_ms, v)]);
    }

    /// A handle to the series with `labels`, made (without samples) if there is none; see
    /// [`SeriesRef`].
    pub fn series_ref(&mut self, labels: &Labels) -> SeriesRef {
        let i = self.series_index(labels);
        SeriesRef {
            index: u32::try_from(i).expect("fewer than 2^32 series"),
            layout: self.layout.0,
        }
    }

    /// Whether `r` still names the series it was taken for.
    pub fn is_current(&self, r: SeriesRef) -> bool {
        r.layout == self.layout.0 && (r.index as usize) < self.series.len()
    }

    /// Adds one sample to the series `r` names, as [`MemStorage::add_sample`] does; `false`,
    /// adding nothing, when `r` is stale (take a new one with [`MemStorage::series_ref`]).
    pub fn add_sample_ref(&mut self, r: SeriesRef, t_ms: i64, v: f64) -> bool {
        if !self.is_current(r) {
            return false;
        }
        self.generation += 1;
        self.series[r.index as usize].add(t_ms, v);
        true
    }

    /// Adds one sample to the series with `labels` through the handle `at` caches, taking it
    /// (again) when there is none or it is stale: only then are the labels hashed.
    pub fn add_sample_cached(
        &mut self,
        at: &mut Option<SeriesRef>,
        labels: &Labels,
        t_ms: i64,
        v: f64,
    ) {
        if at.is_some_and(|r| self.add_sample_ref(r, t_ms, v)) {
            return;
        }
        let r = self.series_ref(labels);
        self.add_sample_ref(r, t_ms, v);
        *at = Some(r);
    }

    /// Adds several samples to one series.
    pub fn add_samples(&mut self, labels: &Labels, samples: impl IntoIterator<Item = (i64, f64)>) {
        self.generation += 1;
        let i = self.series_index(labels);
        let series = &mut self.series[i];
        for (t_ms, v) in samples {
            series.add(t_ms, v);
        }
    }

    /// A rank between those of the neighbours `labels` will have in label-set order; the ranks
    /// are handed out afresh when there is no room.
    fn rank_between(&mut self, labels: &Labels) -> u64 {
        use std::ops::Bound::{Excluded, Unbounded};
        loop {
            let below = self
                .order
                .range::<Labels, _>((Unbounded, Excluded(labels)))
                .next_back()
                .map(|(_, &i)| self.ranks[i as usize]);
            let above = self
                .order
                .range::<Labels, _>((Excluded(labels), Unbounded))
                .next()
                .map(|(_, &i)| self.ranks[i as usize]);
            let rank = match (below, above) {
                (None, None) => Some(RANK_GAP),
                (Some(b), None) => b.checked_add(RANK_GAP),
                (None, Some(a)) => a.checked_sub(RANK_GAP).filter(|&r| r > 0).or(Some(a / 2)),
                (Some(b), Some(a)) => (a - b >= 2).then(|| b + (a - b) / 2),
            };
            match rank {
                Some(r) if r > 0 && below.is_none_or(|b| r > b) && above.is_none_or(|a| r < a) => {
                    return r;
                }
                _ => {
                    for (k, &i) in self.order.values().enumerate() {
                        self.ranks[i as usize] = (k as u64 + 1) * RANK_GAP;
                    }
                }
            }
        }
    }

    /// Drops samples older than `t_ms`, and series left without samples (renumbering the rest:
    /// every [`SeriesRef`] is stale then).
    pub fn truncate_before(&mut self, t_ms: i64) {
        self.generation += 1;
        for s in &mut self.series {
            s.truncate_before(t_ms);
        }
        if self.series.iter().any(|s| s.pts().is_empty()) {
            let mut kept: Vec<MemSeries> = std::mem::take(&mut self.series)
                .into_iter()
                .filter(|s| !s.pts().is_empty())
                .collect();
            // In label order, every posting list is built by appending.
            kept.sort_by(|a, b| a.labels.cmp(&b.labels));
            self.clear();
            for s in kept {
                let i = self.series_index(&s.labels);
                let new = &mut self.series[i];
                new.samples = s.samples;
                new.start = s.start;
                new.stale_max = s.stale_max;
                new.update_span();
            }
        }
    }

    /// The matchers as checks on symbols; `None` when no series can match.
    fn resolve<'m>(&self, matchers: &'m [Matcher]) -> Option<Vec<Check<'m>>> {
        let mut checks = Vec::with_capacity(matchers.len());
        for m in matchers {
            let Some(name) = self.symbols.get(&m.name) else {
                // No series has the label: it matches as the empty string everywhere.
                if m.matches("") {
                    continue;
                }
                return None;
            };
            let value = self.symbols.get(&m.value);
            checks.push(match (m.op, m.value.is_empty(), value) {
                (MatchOp::Equal, true, _) => Check::Absent(name),
                (MatchOp::Equal, false, Some(v)) => Check::Is(name, v),
                (MatchOp::Equal, false, None) => return None,
                (MatchOp::NotEqual, true, _) => Check::Present(name),
                (MatchOp::NotEqual, false, Some(v)) => Check::IsNot(name, v),
                (MatchOp::NotEqual, false, None) => continue,
                (MatchOp::Re | MatchOp::NotRe, _, _) => Check::Regex {
                    name,
                    matcher: m,
                    if_absent: m.matches(""),
                    memo: FxMap::default(),
                },
            });
        }
        Some(checks)
    }

    /// Whether series `s` passes every check.
    fn passes(&self, s: &MemSeries, checks: &mut [Check<'_>]) -> bool {
        checks.iter_mut().all(|c| match c {
            Check::Is(n, v) => s.value_of(*n) == Some(*v),
            Check::Absent(n) => s.value_of(*n).is_none(),
            Check::Present(n) => s.value_of(*n).is_some(),
            Check::IsNot(n, v) => s.value_of(*n) != Some(*v),
            Check::Regex {
                name,
                matcher,
                if_absent,
                memo,
            } => match s.value_of(*name) {
                None => *if_absent,
                Some(v) => *memo
                    .entry(v)
                    .or_insert_with(|| matcher.matches(self.symbols.str(v))),
            },
        })
    }

    /// The ids (ascending) of the series that can match. The equality matchers with a value
    /// are settled here, by intersecting their lists, and taken out of `checks`.
    fn candidates(&self, checks: &mut Vec<Check<'_>>) -> Cow<'_, [u32]> {
        let mut lists: Vec<&[u32]> = checks
            .iter()
            .filter_map(|c| match c {
                Check::Is(n, v) => {
                    Some(self.postings.get(&(*n, *v)).map_or(&[][..], Vec::as_slice))
                }
                _ => None,
            })
            .collect();
        if !lists.is_empty() {
            checks.retain(|c| !matches!(c, Check::Is(..)));
            lists.sort_by_key(|l| l.len());
            let Some((first, rest)) = lists.split_first() else {
                return Cow::Borrowed(&[]);
            };
            let mut ids = Cow::Borrowed(*first);
            for l in rest {
                if ids.is_empty() {
                    break;
                }
                ids = Cow::Owned(intersect(&ids, l));
            }
            return ids;
        }
        // Otherwise a regular expression that does not match the empty string: the series of
        // every value it matches.
        for c in checks.iter_mut() {
            if let Check::Regex {
                name,
                matcher,
                if_absent: false,
                memo,
            } = c
            {
                let mut ids: Vec<u32> = Vec::new();
                for &v in self.values.get(name).map_or(&[][..], Vec::as_slice) {
                    let ok = *memo
                        .entry(v)
                        .or_insert_with(|| matcher.matches(self.symbols.str(v)));
                    if ok && let Some(list) = self.postings.get(&(*name, v)) {
                        ids.extend_from_slice(list);
                    }
                }
                ids.sort_unstable();
                return Cow::Owned(ids);
            }
        }
        let all = u32::try_from(self.series.len()).expect("fewer than 2^32 series");
        Cow::Owned((0..all).collect())
    }
}

impl MemStorage {
    fn select_impl(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        latest: bool,
    ) -> Vec<SelectedSeries<'_>> {
        let Some(mut checks) = self.resolve(matchers) else {
            return Vec::new();
        };
        let ids = self.candidates(&mut checks);
        // Short loops of plain reads, so the processor overlaps the cache misses of one series
        // with those of the next: the matching series, then their windows.
        let mut hits: Vec<(u64, &MemSeries)> = Vec::with_capacity(ids.len());
        hits.extend(
            ids.iter()
                .map(|&i| (self.ranks[i as usize], &self.series[i as usize]))
                .filter(|(_, s)| s.first_t <= end_ms && s.last.0 >= start_ms)
                .filter(|(_, s)| checks.is_empty() || self.passes(s, &mut checks)),
        );
        // Label-set order.
        if !hits.is_sorted_by_key(|(r, _)| *r) {
            hits.sort_unstable_by_key(|(r, _)| *r);
        }
        let mut out = Vec::with_capacity(hits.len());
        out.extend(hits.into_iter().filter_map(|(_, s)| {
            let w = s.window(start_ms, end_ms, latest);
            (!w.is_empty()).then(|| SelectedSeries {
                labels: Cow::Borrowed(&s.labels),
                samples: Cow::Borrowed(w),
                no_stale: w[0].0 > s.stale_max,
            })
        }));
        out
    }
}

impl Storage for MemStorage {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<SelectedSeries<'_>> {
        self.select_impl(matchers, start_ms, end_ms, false)
    }

    fn select_latest(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedSeries<'_>> {
        self.select_impl(matchers, start_ms, end_ms, true)
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

    /// The samples of the series with `labels`, in time order.
    fn samples_of(s: &MemStorage, labels: &Labels) -> Vec<(i64, f64)> {
        let name = labels.value("__name__");
        s.select(&[m(MatchOp::Equal, "__name__", name)], i64::MIN, i64::MAX)
            .into_iter()
            .find(|x| *x.labels == *labels)
            .map(|x| x.samples.into_owned())
            .unwrap_or_default()
    }

    #[test]
    fn series_refs_add_like_labels_and_stale_ones_are_refused() {
        let a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        let mut s = MemStorage::new();
        let ra = s.series_ref(&a);
        assert_eq!(s.series_ref(&a), ra, "the same series, the same ref");
        let rb = s.series_ref(&b);
        assert!(s.add_sample_ref(ra, 1_000, 1.0));
        assert!(s.add_sample_ref(rb, 1_000, 2.0));
        s.add_sample(&a, 2_000, 3.0);
        assert!(
            s.add_sample_ref(ra, 2_000, 4.0),
            "replaces the value at 2 s"
        );
        assert_eq!(samples_of(&s, &a), vec![(1_000, 1.0), (2_000, 4.0)]);
        assert_eq!(samples_of(&s, &b), vec![(1_000, 2.0)]);

        // Dropping `a` renumbers the series: `b` is now where `a` was, and both old refs are
        // stale. Adding through them must not reach `b`.
        s.add_sample_ref(rb, 5_000, 5.0);
        s.truncate_before(3_000);
        assert_eq!(s.series_count(), 1);
        assert!(!s.is_current(ra) && !s.is_current(rb));
        assert!(!s.add_sample_ref(ra, 6_000, 99.0));
        assert!(!s.add_sample_ref(rb, 6_000, 99.0));
        assert_eq!(samples_of(&s, &b), vec![(5_000, 5.0)]);
        assert!(samples_of(&s, &a).is_empty());
        let rb = s.series_ref(&b);
        assert!(s.add_sample_ref(rb, 6_000, 6.0));
        assert_eq!(samples_of(&s, &b), vec![(5_000, 5.0), (6_000, 6.0)]);

        // A truncation that drops no series keeps the numbering.
        s.truncate_before(5_500);
        assert!(s.is_current(rb));

        // Cleared, or another store (even a clone) with a series at the same number: stale.
        let mut other = MemStorage::new();
        other.series_ref(&a);
        assert!(!other.add_sample_ref(rb, 7_000, 99.0));
        let mut clone = s.clone();
        assert!(!clone.add_sample_ref(rb, 7_000, 99.0));
        s.clear();
        assert!(!s.add_sample_ref(rb, 7_000, 99.0));
        assert_eq!(s.sample_count(), 0);
        assert!(samples_of(&other, &a).is_empty());
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

    /// A small deterministic generator for the tests below.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    #[test]
    fn intersect_matches_a_naive_intersection() {
        let mut st = 7;
        for _ in 0..200 {
            let mut a: Vec<u32> = (0..lcg(&mut st) % 40)
                .map(|_| (lcg(&mut st) % 100) as u32)
                .collect();
            let mut b: Vec<u32> = (0..lcg(&mut st) % 400)
                .map(|_| (lcg(&mut st) % 100) as u32)
                .collect();
            for v in [&mut a, &mut b] {
                v.sort_unstable();
                v.dedup();
            }
            let naive: Vec<u32> = a.iter().copied().filter(|x| b.contains(x)).collect();
            assert_eq!(intersect(&a, &b), naive, "{a:?} {b:?}");
        }
    }

    #[test]
    fn window_matches_a_naive_filter() {
        let pts: Vec<(i64, f64)> = (0..50).map(|i| (i * 10, i as f64)).collect();
        for start in -20..520 {
            for end in [start - 1, start, start + 5, start + 55, start + 300, 1000] {
                let naive: Vec<(i64, f64)> = pts
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= start && *t <= end)
                    .collect();
                assert_eq!(window(&pts, start, end), naive.as_slice(), "{start} {end}");
            }
        }
    }

    #[test]
    fn searches_from_any_hint_agree_with_partition_point() {
        let mut st = 5;
        for _ in 0..100 {
            let mut t = 0;
            let pts: Vec<(i64, f64)> = (0..lcg(&mut st) % 60)
                .map(|_| {
                    t += 1 + (lcg(&mut st) % 20) as i64;
                    (t, 0.0)
                })
                .collect();
            for x in -5..t + 5 {
                let want = pts.partition_point(|p| p.0 < x);
                for hint in 0..pts.len() + 2 {
                    assert_eq!(search_from(&pts, hint, |t| t < x), want, "{x} {hint}");
                }
                if let (Some(f), Some(l)) = (pts.first(), pts.last()) {
                    let i = spaced_index(f.0, l.0, pts.len(), x);
                    assert!(i < pts.len());
                }
            }
        }
    }

    /// What a selection must give: every series matching all matchers with samples in range,
    /// sorted by labels.
    fn naive_select(
        all: &[(Labels, Vec<(i64, f64)>)],
        ms: &[Matcher],
        lo: i64,
        hi: i64,
    ) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let mut out: Vec<(Labels, Vec<(i64, f64)>)> = all
            .iter()
            .filter(|(l, _)| ms.iter().all(|m| m.matches_labels(l)))
            .map(|(l, pts)| {
                let w = pts.iter().copied().filter(|(t, _)| *t >= lo && *t <= hi);
                (l.clone(), w.collect::<Vec<_>>())
            })
            .filter(|(_, w)| !w.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn selections_agree_with_a_naive_scan() {
        let mut st = 11;
        let mut s = MemStorage::new();
        let mut all: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
        // Series arrive in random label order, so ranks are handed out between neighbours.
        for _ in 0..400 {
            let l = Labels::from_pairs([
                ("__name__", format!("m{}", lcg(&mut st) % 4)),
                ("a", format!("{}", lcg(&mut st) % 5)),
                (
                    "b",
                    ["", "x", "y", "xy"][(lcg(&mut st) % 4) as usize].to_string(),
                ),
                ("c", format!("v{}", lcg(&mut st) % 30)),
            ]);
            if all.iter().any(|(x, _)| *x == l) {
                continue;
            }
            let first = (lcg(&mut st) % 50) as i64;
            let pts: Vec<(i64, f64)> = (0..(lcg(&mut st) % 8) as i64 + 1)
                .map(|i| (first + 10 * i, i as f64))
                .collect();
            s.add_samples(&l, pts.iter().copied());
            all.push((l, pts));
        }
        let sets = vec![
            vec![m(MatchOp::Equal, "__name__", "m1")],
            vec![
                m(MatchOp::Equal, "__name__", "m2"),
                m(MatchOp::Equal, "a", "3"),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "m0"),
                m(MatchOp::Equal, "a", "1"),
                m(MatchOp::Equal, "b", "x"),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "m3"),
                m(MatchOp::Equal, "b", ""),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "m3"),
                m(MatchOp::NotEqual, "b", ""),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "m1"),
                m(MatchOp::NotEqual, "a", "2"),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "m1"),
                m(MatchOp::Re, "b", "x.*"),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "m1"),
                m(MatchOp::NotRe, "b", "x.*"),
            ],
            vec![
                m(MatchOp::Re, "__name__", "m[12]"),
                m(MatchOp::Re, "c", "v1.*"),
            ],
            vec![m(MatchOp::Re, "c", "v2.|v3")],
            vec![m(MatchOp::NotEqual, "b", "")],
            vec![
                m(MatchOp::Equal, "__name__", "m1"),
                m(MatchOp::Equal, "nope", ""),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "m1"),
                m(MatchOp::Equal, "nope", "x"),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "m1"),
                m(MatchOp::Equal, "a", "none"),
            ],
        ];
        let check = |s: &MemStorage, all: &[(Labels, Vec<(i64, f64)>)]| {
            for ms in &sets {
                for (lo, hi) in [(0, 200), (25, 45), (60, 60), (-10, 5), (90, 1000)] {
                    let want = naive_select(all, ms, lo, hi);
                    let got: Vec<(Labels, Vec<(i64, f64)>)> = s
                        .select(ms, lo, hi)
                        .into_iter()
                        .map(|x| (x.labels.into_owned(), x.samples.into_owned()))
                        .collect();
                    assert_eq!(got, want, "{ms:?} [{lo}, {hi}]");
                    let latest: Vec<(Labels, Vec<(i64, f64)>)> = s
                        .select_latest(ms, lo, hi)
                        .into_iter()
                        .map(|x| (x.labels.into_owned(), x.samples.into_owned()))
                        .collect();
                    let want_latest: Vec<(Labels, Vec<(i64, f64)>)> = want
                        .into_iter()
                        .map(|(l, w)| (l, w[w.len() - 1..].to_vec()))
                        .collect();
                    assert_eq!(latest, want_latest, "latest {ms:?} [{lo}, {hi}]");
                }
            }
        };
        check(&s, &all);
        // Late samples go in place; a repeated time replaces the value.
        for (i, (l, pts)) in all.iter_mut().enumerate().step_by(7) {
            let t = pts[0].0 + 5;
            let last_t = pts[pts.len() - 1].0;
            s.add_sample(l, t, -1.0);
            s.add_sample(l, last_t, i as f64);
            if !pts.iter().any(|p| p.0 == t) {
                pts.push((t, -1.0));
                pts.sort_by_key(|p| p.0);
            }
            for p in pts.iter_mut() {
                if p.0 == t {
                    p.1 = -1.0;
                }
                if p.0 == last_t {
                    p.1 = i as f64;
                }
            }
        }
        check(&s, &all);
        // Truncation keeps the rest; series left empty go.
        for cut in [20, 40, 70] {
            s.truncate_before(cut);
            for (_, pts) in all.iter_mut() {
                pts.retain(|(t, _)| *t >= cut);
            }
            all.retain(|(_, pts)| !pts.is_empty());
            assert_eq!(s.series_count(), all.len());
            assert_eq!(
                s.sample_count(),
                all.iter().map(|(_, p)| p.len()).sum::<usize>()
            );
            check(&s, &all);
        }
    }

    #[test]
    fn ranks_stay_in_label_order_when_a_gap_fills_up() {
        let mut s = MemStorage::new();
        let l = |v: &str| Labels::from_pairs([("__name__", "m"), ("v", v)]);
        s.add_sample(&l("a"), 0, 0.0);
        s.add_sample(&l("b"), 0, 0.0);
        // Each new value sorts between the last one and "b": the gap halves every time.
        let mut v = String::from("a");
        for _ in 0..80 {
            v.push('a');
            s.add_sample(&l(&v), 0, 0.0);
        }
        let got = s.select(&[m(MatchOp::Equal, "__name__", "m")], 0, 0);
        assert_eq!(got.len(), 82);
        assert!(got.is_sorted_by(|a, b| a.labels < b.labels));
    }
}
