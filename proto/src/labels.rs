//! [`Labels`]: a sample's own label set, shared and interned.
//!
//! A sample's labels are an ordered map of names to values, as before, but held behind an
//! `Arc` with a hash of their content computed once. Decoding interns them: the label sets a
//! thread has decoded recently are kept, and a sample whose labels are already known gets a
//! reference to the kept set instead of a map of its own. Hosts send the same label sets in
//! every batch, so on the happy path decoding a sample's labels allocates nothing, dropping
//! them frees nothing, and the server's series lookup hashes one `u64` instead of every name
//! and value. On the wire the labels are the same JSON object as a `BTreeMap<String, String>`'s.

use std::{
    cell::RefCell,
    cmp::Ordering,
    collections::{BTreeMap, HashMap},
    fmt,
    hash::{BuildHasher, Hash, Hasher},
    ops::{Deref, DerefMut},
    sync::{Arc, OnceLock},
};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{MapAccess, Visitor},
};
use smallvec::SmallVec;

/// A sample's label set: an ordered map (read through `Deref`), shared, with its content hash.
///
/// Cloning is a reference-count increment; changing the labels copies a shared set first, like
/// `Cow`: through [`Labels::modify`], which computes the hash again, or through `DerefMut`,
/// after which the hash is computed each time it is asked for (until the next `modify`).
/// Equality, ordering and `Hash` are those of the map.
#[derive(Clone)]
pub struct Labels(Arc<Inner>);

#[derive(Clone)]
struct Inner {
    map: BTreeMap<String, String>,
    /// [`hash_pairs`] of `map`, or 0 when the map was changed through `DerefMut` since.
    hash: u64,
}

/// The process's hashing state for label sets: seeded at random once, so the hashes are stable
/// within a process (the server's series cache relies on that) and not predictable from
/// outside (a sender cannot aim many label sets at one bucket).
fn hash_state() -> &'static foldhash::fast::RandomState {
    static STATE: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    STATE.get_or_init(foldhash::fast::RandomState::default)
}

/// A hasher of the process's label-hashing state (also for callers that combine a label set's
/// [`Labels::content_hash`] with other fields, like the server's series key).
pub fn fast_hasher() -> impl Hasher {
    hash_state().build_hasher()
}

/// Hashes sorted, distinct `(name, value)` pairs. 0xff never occurs in UTF-8, so it separates
/// the strings unambiguously.
/// Never 0 (which marks a hash not computed yet).
fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = fast_hasher();
    for (k, v) in pairs {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish().max(1)
}

impl Labels {
    /// The empty label set (shared; no allocation).
    pub fn new() -> Labels {
        static EMPTY: OnceLock<Labels> = OnceLock::new();
        EMPTY
            .get_or_init(|| Labels::from_map(BTreeMap::new()))
            .clone()
    }

    fn from_map(map: BTreeMap<String, String>) -> Labels {
        let hash = hash_pairs(map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Labels(Arc::new(Inner { map, hash }))
    }

    /// The labels as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0.map
    }

    /// A hash of the content, the same for equal label sets within one process (not across
    /// processes: the hashing state is seeded at random).
    pub fn content_hash(&self) -> u64 {
        match self.0.hash {
            0 => hash_pairs(self.0.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            h => h,
        }
    }

    /// Changes the labels through `f` (copying them first when they are shared), and keeps
    /// their hash.
    pub fn modify<R>(&mut self, f: impl FnOnce(&mut BTreeMap<String, String>) -> R) -> R {
        let inner = Arc::make_mut(&mut self.0);
        let r = f(&mut inner.map);
        inner.hash = hash_pairs(inner.map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        r
    }

    /// The map itself (copied when shared).
    pub fn into_map(self) -> BTreeMap<String, String> {
        match Arc::try_unwrap(self.0) {
            Ok(inner) => inner.map,
            Err(shared) => shared.map.clone(),
        }
    }

    /// Whether both are the same shared set (then they are equal; the converse does not hold).
    pub fn ptr_eq(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for Labels {
    fn default() -> Labels {
        Labels::new()
    }
}

impl Deref for Labels {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &BTreeMap<String, String> {
        &self.0.map
    }
}

impl DerefMut for Labels {
    /// Copies a shared set first; from then on the content hash is computed when asked for.
    fn deref_mut(&mut self) -> &mut BTreeMap<String, String> {
        let inner = Arc::make_mut(&mut self.0);
        inner.hash = 0;
        &mut inner.map
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.map.fmt(f)
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        self.ptr_eq(other)
            || (self.content_hash() == other.content_hash() && self.0.map == other.0.map)
    }
}

impl Eq for Labels {}

impl PartialEq<BTreeMap<String, String>> for Labels {
    fn eq(&self, other: &BTreeMap<String, String>) -> bool {
        self.0.map == *other
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Labels) -> Ordering {
        self.0.map.cmp(&other.0.map)
    }
}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Consistent with `Eq`: equal maps have equal content hashes.
        state.write_u64(self.content_hash());
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Labels {
        Labels::from_map(map)
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(pairs: [(String, String); N]) -> Labels {
        Labels::from_map(BTreeMap::from(pairs))
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Labels {
        Labels::from_map(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.map.iter()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.map.serialize(s)
    }
}

// ---- decoding ---------------------------------------------------------------------------------

/// A string from the decoder: borrowed from the input when it has no escapes.
enum Str<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Str<'_> {
    fn as_str(&self) -> &str {
        match self {
            Str::Borrowed(s) => s,
            Str::Owned(s) => s,
        }
    }
    fn into_string(self) -> String {
        match self {
            Str::Borrowed(s) => s.to_string(),
            Str::Owned(s) => s,
        }
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;

    // The same expectation as `String`'s, so errors read as before.
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
        Ok(Str::Borrowed(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Str<'de>, E> {
        Ok(Str::Owned(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Str<'de>, E> {
        Ok(Str::Owned(v))
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Str<'de>, E> {
        match std::str::from_utf8(v) {
            Ok(s) => Ok(Str::Owned(s.to_string())),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
        }
    }
    fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Str<'de>, E> {
        match std::str::from_utf8(v) {
            Ok(s) => Ok(Str::Borrowed(s)),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str<'de>, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

/// Most label sets one thread keeps; past it the thread starts over (a sender cycling
/// through new label sets costs what decoding cost before interning, no more memory).
const INTERN_MAX_SETS: usize = 50_000;
/// Larger label sets are not kept (the server refuses more than its `max_labels` anyway).
const INTERN_MAX_LABELS: usize = 64;

/// A thread's recently decoded label sets, by content hash.
#[derive(Default)]
struct Interner {
    sets: HashMap<u64, SmallVec<[Labels; 1]>, PassThrough>,
    count: usize,
}

/// The hashing of a map whose `u64` keys are hashes already (this interner's, the server's
/// series cache): the key is its own hash.
#[derive(Default, Clone, Copy)]
pub struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// [`PassThrough`]'s hasher: a `u64` written is the hash.
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

thread_local! {
    static INTERNER: RefCell<Interner> = RefCell::new(Interner::default());
}

type Pairs<'de> = SmallVec<[(Str<'de>, Str<'de>); 8]>;

fn same(labels: &Labels, pairs: &Pairs<'_>) -> bool {
    labels.0.map.len() == pairs.len()
        && labels
            .0
            .map
            .iter()
            .zip(pairs)
            .all(|((k, v), (pk, pv))| k == pk.as_str() && v == pv.as_str())
}

/// The label set of `pairs` (sorted by name, names distinct): a kept one when this thread has
/// decoded it before.
fn intern(pairs: Pairs<'_>) -> Labels {
    if pairs.is_empty() {
        return Labels::new();
    }
    let hash = hash_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let build = |pairs: Pairs<'_>| {
        let map = pairs
            .into_iter()
            .map(|(k, v)| (k.into_string(), v.into_string()))
            .collect();
        Labels(Arc::new(Inner { map, hash }))
    };
    if pairs.len() > INTERN_MAX_LABELS {
        return build(pairs);
    }
    INTERNER.with(|cell| {
        let Ok(mut interner) = cell.try_borrow_mut() else {
            return build(pairs);
        };
        if let Some(found) = interner
            .sets
            .get(&hash)
            .and_then(|c| c.iter().find(|l| same(l, &pairs)))
        {
            return found.clone();
        }
        if interner.count >= INTERN_MAX_SETS {
            interner.sets.clear();
            interner.count = 0;
        }
        let labels = build(pairs);
        interner.sets.entry(hash).or_default().push(labels.clone());
        interner.count += 1;
        labels
    })
}

struct LabelsVisitor;

impl<'de> Visitor<'de> for LabelsVisitor {
    type Value = Labels;

    // The same expectation as `BTreeMap`'s, so errors read as before.
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Labels, A::Error> {
        let mut pairs: Pairs<'de> = SmallVec::new();
        while let Some(k) = access.next_key::<Str<'de>>()? {
            let v = access.next_value::<Str<'de>>()?;
            pairs.push((k, v));
        }
        // Agents send a `BTreeMap`: sorted, names distinct. Anything else is made what a map
        // would have made of it: sorted by name, the last value of a repeated name kept.
        let canonical = pairs.windows(2).all(|w| w[0].0.as_str() < w[1].0.as_str());
        if !canonical {
            // Stable, so repeated names stay in input order and the last one can be kept.
            pairs.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            let mut kept: Pairs<'de> = SmallVec::with_capacity(pairs.len());
            for p in pairs {
                match kept.last_mut() {
                    Some(last) if last.0.as_str() == p.0.as_str() => *last = p,
                    _ => kept.push(p),
                }
            }
            pairs = kept;
        }
        Ok(intern(pairs))
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        d.deserialize_map(LabelsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decoding_the_same_labels_twice_shares_one_set() {
        let a: Labels = serde_json::from_str(r#"{"cpu":"0","mode":"idle"}"#).unwrap();
        let b: Labels = serde_json::from_str(r#"{"cpu":"0","mode":"idle"}"#).unwrap();
        assert!(a.ptr_eq(&b));
        assert_eq!(*a, map(&[("cpu", "0"), ("mode", "idle")]));
        let c: Labels = serde_json::from_str(r#"{"cpu":"1","mode":"idle"}"#).unwrap();
        assert!(!a.ptr_eq(&c));
        assert_ne!(a, c);
    }

    #[test]
    fn unsorted_and_repeated_names_decode_as_a_map_would() {
        let json = r#"{"b":"1","a":"2","b":"3","a\u0041":"x"}"#;
        let l: Labels = serde_json::from_str(json).unwrap();
        let m: BTreeMap<String, String> = serde_json::from_str(json).unwrap();
        assert_eq!(*l, m);
        assert_eq!(l.content_hash(), Labels::from(m).content_hash());
    }

    #[test]
    fn equal_sets_hash_alike_whichever_way_they_were_made() {
        let decoded: Labels = serde_json::from_str(r#"{"x":"1"}"#).unwrap();
        let built = Labels::from(map(&[("x", "1")]));
        assert_eq!(decoded, built);
        assert_eq!(decoded.content_hash(), built.content_hash());
        let mut changed = built.clone();
        changed.insert("y".into(), "2".into());
        let mut modified = built.clone();
        modified.modify(|m| m.insert("y".into(), "2".into()));
        assert_eq!(changed, modified);
        assert_eq!(changed.content_hash(), modified.content_hash());
        assert_eq!(
            built,
            Labels::from(map(&[("x", "1")])),
            "the shared copy stays"
        );
        assert_eq!(
            changed.content_hash(),
            Labels::from(map(&[("x", "1"), ("y", "2")])).content_hash()
        );
    }

    #[test]
    fn serializes_as_the_map() {
        let l = Labels::from(map(&[("b", "2"), ("a", "1")]));
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"{"a":"1","b":"2"}"#);
        assert_eq!(serde_json::to_string(&Labels::new()).unwrap(), "{}");
    }
}
