//! Sets of half-open time spans `[start, end)` in milliseconds, kept sorted and disjoint.

/// A sorted list of disjoint, non-empty half-open spans.
pub type Spans = Vec<(i64, i64)>;

/// Sorts and merges overlapping or touching spans; drops empty ones.
pub fn normalize(mut v: Spans) -> Spans {
    v.retain(|(a, b)| a < b);
    v.sort_unstable();
    let mut out: Spans = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The intersection of two normalized span sets.
pub fn intersect(a: &[(i64, i64)], b: &[(i64, i64)]) -> Spans {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let s = a[i].0.max(b[j].0);
        let e = a[i].1.min(b[j].1);
        if s < e {
            out.push((s, e));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// `a` minus `b`, both normalized.
pub fn subtract(a: &[(i64, i64)], b: &[(i64, i64)]) -> Spans {
    let mut out = Vec::new();
    let mut j = 0;
    for &(mut s, e) in a {
        while j < b.len() && b[j].1 <= s {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 < e {
            if b[k].0 > s {
                out.push((s, b[k].0));
            }
            s = s.max(b[k].1);
            k += 1;
        }
        if s < e {
            out.push((s, e));
        }
    }
    out
}

/// Total length in milliseconds.
pub fn total(a: &[(i64, i64)]) -> i64 {
    a.iter().map(|(s, e)| e - s).sum()
}

/// The spans clipped to `[from, to)`.
pub fn clip(a: &[(i64, i64)], from: i64, to: i64) -> Spans {
    intersect(a, &[(from, to)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let a = normalize(vec![(5, 10), (0, 3), (2, 4), (10, 12)]);
        assert_eq!(a, vec![(0, 4), (5, 12)]);
        assert_eq!(
            intersect(&a, &[(3, 6), (11, 20)]),
            vec![(3, 4), (5, 6), (11, 12)]
        );
        assert_eq!(
            subtract(&a, &[(1, 2), (6, 7), (11, 30)]),
            vec![(0, 1), (2, 4), (5, 6), (7, 11)]
        );
        assert_eq!(total(&a), 11);
    }
}
