//! Status timelines: turning point observations (a heartbeat, a probe result) into
//! non-overlapping up/down spans. Unknown is never stored: it is whatever no span covers, so a
//! late (backfilled) observation can fill it in without rewriting anything else.
//!
//! Each observation at `t` vouches for `[t, t + validity)`. Two observations of the same state
//! join into one span when they are at most `missed * validity` apart: an agent pushing every
//! 15 s with `missed = 3` is unknown after three batches in a row went missing. A state change
//! closes the previous span at the time of the change. The validity is the observation's own: the
//! batch interval for a heartbeat, the probe's interval plus the batch interval for a probe
//! result (`ingest`), each bounded by the server's configuration.
//!
//! Stored evidence is not rewritten: an observation older than the subject's latest one that
//! contradicts a stored span changes nothing and is reported as [`Observed::Contradicts`]; a
//! late observation only fills time no span covers. State changes move forward in time only.

use serde::Serialize;

/// The stored states. `Unknown` only appears in read results (gaps between spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Up,
    Down,
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> State {
        match s {
            "up" => State::Up,
            "down" => State::Down,
            _ => State::Unknown,
        }
    }
}

/// A span `[start, end)` in Unix milliseconds; `id` is the store's row id, `None` for new spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    #[serde(skip)]
    pub id: Option<i64>,
    pub state: State,
    pub start: i64,
    pub end: i64,
}

/// How far from `t` an observation can change spans: callers load every span intersecting
/// `[t - reach, t + reach]` into the window passed to [`observe`].
pub fn reach(validity: i64, missed: i64) -> i64 {
    validity * (missed + 1)
}

/// What an observation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Applied (possibly changing nothing, when the time was already covered in its state).
    Applied,
    /// Refused: it is older than the subject's latest observation and contradicts a stored
    /// span. The window is unchanged.
    Contradicts { state: State, start: i64, end: i64 },
}

/// Applies one observation to `window`, a sorted, non-overlapping list holding at least every
/// span within [`reach`] of `t`. `latest` is the time of the subject's latest observation so
/// far (`i64::MIN` for none): only an observation at or after it may change a stored state.
pub fn observe(
    window: &mut Vec<Span>,
    t: i64,
    state: State,
    validity: i64,
    missed: i64,
    latest: i64,
) -> Observed {
    debug_assert!(state != State::Unknown && validity > 0 && missed >= 1);
    let bridge = validity * missed;
    if let Some(i) = window
        .iter()
        .position(|s| s.start <= t && t < s.end && s.state != state)
    {
        let s = window[i];
        if t < latest {
            // Something was observed after `t`: this is history, not a change.
            return Observed::Contradicts {
                state: s.state,
                start: s.start,
                end: s.end,
            };
        }
        // A contradicting observation inside a span: the new state holds for its validity.
        let new_end = (t + validity).min(s.end);
        window[i].end = t;
        let mut tail = vec![Span {
            id: None,
            state,
            start: t,
            end: new_end,
        }];
        if new_end < s.end {
            tail.push(Span {
                id: None,
                state: s.state,
                start: new_end,
                end: s.end,
            });
        }
        window.splice(i + 1..i + 1, tail);
        normalize(window);
        return Observed::Applied;
    }
    let i = window.partition_point(|s| s.start <= t);
    let next_start = window.get(i).map_or(i64::MAX, |n| n.start);
    let mut new = Span {
        id: None,
        state,
        start: t,
        end: (t + validity).min(next_start),
    };
    let mut remove_prev = false;
    if i > 0 {
        let p = window[i - 1];
        if t - (p.end - validity) <= bridge {
            if p.state == state {
                new.start = p.start;
                new.end = new.end.max(p.end);
                new.id = p.id;
                remove_prev = true;
            } else {
                window[i - 1].end = t;
            }
        }
    }
    let mut remove_next = false;
    if let Some(n) = window.get(i).copied()
        && n.start - t <= bridge
    {
        if n.state == state {
            new.end = n.end;
            new.id = new.id.or(n.id);
            remove_next = true;
        } else {
            new.end = n.start;
        }
    }
    let lo = if remove_prev { i - 1 } else { i };
    let hi = if remove_next { i + 1 } else { i };
    window.splice(lo..hi, [new]);
    normalize(window);
    Observed::Applied
}

/// Drops empty spans and joins touching spans of the same state.
fn normalize(window: &mut Vec<Span>) {
    window.retain(|s| s.end > s.start);
    let mut out: Vec<Span> = Vec::with_capacity(window.len());
    for s in window.drain(..) {
        match out.last_mut() {
            Some(last) if last.state == s.state && last.end == s.start => {
                last.end = s.end;
                last.id = last.id.or(s.id);
            }
            _ => out.push(s),
        }
    }
    *window = out;
}

/// Spans clipped to `[from, to)` with the uncovered parts filled in as `Unknown`.
pub fn fill_unknown(spans: &[Span], from: i64, to: i64) -> Vec<Span> {
    let mut out = Vec::new();
    let mut cursor = from;
    for s in spans {
        let (start, end) = (s.start.max(from), s.end.min(to));
        if end <= start {
            continue;
        }
        if start > cursor {
            out.push(Span {
                id: None,
                state: State::Unknown,
                start: cursor,
                end: start,
            });
        }
        out.push(Span {
            id: None,
            state: s.state,
            start,
            end,
        });
        cursor = end;
    }
    if cursor < to {
        out.push(Span {
            id: None,
            state: State::Unknown,
            start: cursor,
            end: to,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V: i64 = 15;
    const N: i64 = 3;

    fn run(obs: &[(i64, State)]) -> Vec<(State, i64, i64)> {
        let mut w = Vec::new();
        let mut latest = i64::MIN;
        for &(t, s) in obs {
            observe(&mut w, t, s, V, N, latest);
            latest = latest.max(t);
        }
        w.iter().map(|s| (s.state, s.start, s.end)).collect()
    }

    use State::{Down, Up};

    #[test]
    fn regular_heartbeats_make_one_span() {
        let obs: Vec<_> = (0..10).map(|i| (i * V, Up)).collect();
        assert_eq!(run(&obs), vec![(Up, 0, 150)]);
    }

    #[test]
    fn two_missed_batches_stay_up_three_make_unknown() {
        assert_eq!(run(&[(0, Up), (45, Up)]), vec![(Up, 0, 60)]);
        assert_eq!(run(&[(0, Up), (60, Up)]), vec![(Up, 0, 15), (Up, 60, 75)]);
    }

    #[test]
    fn a_probe_validity_longer_than_the_batch_bridges_its_own_interval() {
        // A 60 s probe under 15 s batches: with the batch's validity every result is alone...
        let results: Vec<_> = (0..4).map(|i| i * 60).collect();
        let mut w = Vec::new();
        for &t in &results {
            observe(&mut w, t, Up, 15, N, i64::MIN);
        }
        assert_eq!(w.len(), 4, "{w:?}");
        // ...with the probe's (60 s + the 15 s batch) they make one span.
        let mut w = Vec::new();
        for &t in &results {
            observe(&mut w, t, Up, 75, N, i64::MIN);
        }
        let got: Vec<_> = w.iter().map(|s| (s.state, s.start, s.end)).collect();
        assert_eq!(got, vec![(Up, 0, 255)]);
    }

    #[test]
    fn state_change_closes_previous_span_at_the_change() {
        assert_eq!(
            run(&[(0, Up), (15, Up), (30, Down), (45, Down), (60, Up)]),
            vec![(Up, 0, 30), (Down, 30, 60), (Up, 60, 75)]
        );
    }

    #[test]
    fn backfill_fills_an_unknown_gap() {
        // live data at 0 and 300, then the spool replays 15..285
        let mut obs = vec![(0, Up), (300, Up)];
        obs.extend((1..20).map(|i| (i * V, Up)));
        assert_eq!(run(&obs), vec![(Up, 0, 315)]);
    }

    #[test]
    fn a_change_within_the_last_validity_closes_the_span() {
        // Up observed until 45 (vouching to 60); down seen at 50: the change is at 50.
        assert_eq!(
            run(&[(0, Up), (15, Up), (30, Up), (45, Up), (50, Down)]),
            vec![(Up, 0, 50), (Down, 50, 60)]
        );
    }

    #[test]
    fn an_observation_contradicting_history_changes_nothing() {
        // Down observed from 0 to 45; a late "up" at 20 contradicts observations after it.
        let mut w = Vec::new();
        for t in [0, 15, 30, 45] {
            assert_eq!(observe(&mut w, t, Down, V, N, t - 15), Observed::Applied);
        }
        let before = w.clone();
        // Even with a validity of an hour, as an agent may declare.
        assert_eq!(
            observe(&mut w, 20, Up, 3_600, N, 45),
            Observed::Contradicts {
                state: Down,
                start: 0,
                end: 60
            }
        );
        assert_eq!(w, before);
    }

    #[test]
    fn fill_unknown_covers_the_range_exactly() {
        let spans = [
            Span {
                id: None,
                state: Up,
                start: 10,
                end: 20,
            },
            Span {
                id: None,
                state: Down,
                start: 30,
                end: 50,
            },
        ];
        let f = fill_unknown(&spans, 0, 40);
        let got: Vec<_> = f.iter().map(|s| (s.state, s.start, s.end)).collect();
        assert_eq!(
            got,
            vec![
                (State::Unknown, 0, 10),
                (Up, 10, 20),
                (State::Unknown, 20, 30),
                (Down, 30, 40)
            ]
        );
    }

    fn well_formed(w: &[Span]) -> bool {
        w.iter().all(|s| s.start < s.end)
            && w.windows(2).all(|p| {
                p[0].end <= p[1].start && !(p[0].state == p[1].state && p[0].end == p[1].start)
            })
    }

    proptest! {
        #[test]
        fn spans_stay_sorted_and_disjoint(obs in prop::collection::vec((0i64..2000, any::<bool>()), 0..60)) {
            let mut w = Vec::new();
            let mut latest = i64::MIN;
            for (t, up) in obs {
                observe(&mut w, t, if up { Up } else { Down }, V, N, latest);
                latest = latest.max(t);
                prop_assert!(well_formed(&w), "{w:?}");
            }
        }

        /// Whatever arrives, in any order and with any validity, a stored state before the
        /// subject's latest observation never changes: late data only fills unknown time.
        #[test]
        fn stored_history_is_never_rewritten(
            obs in prop::collection::vec((0i64..2000, any::<bool>(), 1i64..200), 0..60),
        ) {
            let mut w: Vec<Span> = Vec::new();
            let mut latest = i64::MIN;
            for (t, up, validity) in obs {
                let stored: Vec<(i64, i64, State)> = w
                    .iter()
                    .map(|s| (s.start, s.end.min(latest.max(s.start)), s.state))
                    .collect();
                observe(&mut w, t, if up { Up } else { Down }, validity, N, latest);
                latest = latest.max(t);
                for (a, b, st) in stored {
                    for x in a..b {
                        prop_assert!(
                            w.iter().any(|s| s.start <= x && x < s.end && s.state == st),
                            "{x} lost its state {st:?}: {w:?}"
                        );
                    }
                }
            }
        }

        #[test]
        fn single_state_result_does_not_depend_on_arrival_order(
            mut ts in prop::collection::vec(0i64..3000, 1..80),
            seed in any::<u64>(),
        ) {
            ts.sort();
            ts.dedup();
            let ordered: Vec<_> = ts.iter().map(|&t| (t, Up)).collect();
            let mut shuffled = ordered.clone();
            // deterministic shuffle from the seed
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(run(&ordered), run(&shuffled));
        }

        #[test]
        fn every_observation_is_covered_by_its_own_state_when_states_do_not_conflict(
            ts in prop::collection::vec(0i64..3000, 1..80),
        ) {
            let mut w = Vec::new();
            for &t in &ts { observe(&mut w, t, Up, V, N, i64::MIN); }
            for &t in &ts {
                prop_assert!(w.iter().any(|s| s.start <= t && t < s.end && s.state == Up));
            }
        }
    }
}
