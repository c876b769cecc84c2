//! Hourly rollups from samples, and late data: late data merges into an hour's rollups, never
//! replaces them.
//!
//! The rollup job rebuilds a dirty hour from the raw window, which is exact while every batch
//! of the hour is still there. Backfill is accepted far longer (`limits.max_age_ms`) than raw
//! batches are kept (`retention.raw_hours`), so an hour can receive samples after retention
//! deleted some of its batches: rebuilt from what is left, it would lose everything else. The
//! store keeps a horizon (`rollup_horizon.sealed_before_ms`, moved forward by retention past
//! the newest hour of every batch it deletes): a sample of an hour before it is merged into
//! that hour's stored rollups in the ingest transaction (min, max, sum and count added, `last`
//! replaced only by a later sample, by `last_ms`) and the hour is marked dirty with `rebuild =
//! 0`, so the rollup job derives its KPIs again from the merged rollups without touching them.
//! Hours at or after the horizon are rebuilt as before: no batch of theirs was ever deleted,
//! and retention deletes none while they are dirty.
//!
//! Merging is exact for samples the hour has not counted: a redelivered batch is deduplicated
//! by `(agent_id, seq)` before it gets here, and a sample at the stored `last_ms` of its series
//! is the sample `last` holds and is not counted again. A sample re-sent under a new sequence
//! number after its batch was pruned cannot be recognised and counts again (agents never reuse
//! a sample in another batch). Sums are added in another order than a rebuild adds them, so
//! they may differ from a rebuild in the last bits.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, Row};

use super::{HOUR_MS, Rollup, Store, blob::RawSample};

/// The UTC hour `ts_ms` falls in.
pub fn hour_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The rollups of `samples` per series and hour, sorted by (series id, hour). Duplicate
/// (series, timestamp) pairs count once (the first given).
pub fn summarize(mut samples: Vec<RawSample>) -> Vec<Rollup> {
    samples.sort_by_key(|s| (s.series_id, s.ts_ms));
    samples.dedup_by(|a, b| a.series_id == b.series_id && a.ts_ms == b.ts_ms);
    let mut out: Vec<Rollup> = Vec::new();
    for s in samples {
        let hour_ms = hour_of(s.ts_ms);
        match out.last_mut() {
            Some(r) if r.series_id == s.series_id && r.hour_ms == hour_ms => {
                r.min = r.min.min(s.value);
                r.max = r.max.max(s.value);
                r.sum += s.value;
                r.count += 1;
                r.last = s.value;
                r.last_ms = Some(s.ts_ms);
            }
            _ => out.push(Rollup {
                series_id: s.series_id,
                hour_ms,
                min: s.value,
                max: s.value,
                sum: s.value,
                count: 1,
                last: s.value,
                last_ms: Some(s.ts_ms),
            }),
        }
    }
    out
}

/// `stored` with `late` (the same series and hour, samples it has not counted) added: `last`
/// is `late`'s only when it is known to be later (a stored row without `last_ms` keeps its own).
pub fn merge(stored: &Rollup, late: &Rollup) -> Rollup {
    let later = matches!((stored.last_ms, late.last_ms), (Some(a), Some(b)) if b > a);
    Rollup {
        min: stored.min.min(late.min),
        max: stored.max.max(late.max),
        sum: stored.sum + late.sum,
        count: stored.count + late.count,
        last: if later { late.last } else { stored.last },
        last_ms: if later { late.last_ms } else { stored.last_ms },
        ..*stored
    }
}

/// The horizon: hours before it may have lost raw batches to retention.
pub async fn sealed_before(conn: &mut AnyConnection) -> sqlx::Result<i64> {
    Ok(
        sqlx::query("SELECT sealed_before_ms FROM rollup_horizon WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?
            .map_or(0, |r| r.get(0)),
    )
}

/// Moves the horizon past the hour of `max_ts` (the newest sample of a batch retention is
/// deleting); returns the horizon.
pub async fn seal_through(conn: &mut AnyConnection, max_ts: i64) -> sqlx::Result<i64> {
    sqlx::query(
        "UPDATE rollup_horizon SET sealed_before_ms = $1 WHERE id = 1 AND sealed_before_ms < $1",
    )
    .bind(hour_of(max_ts) + HOUR_MS)
    .execute(&mut *conn)
    .await?;
    sealed_before(conn).await
}

/// Merges late samples of hours before the horizon into their hours' stored rollups (in the
/// caller's transaction) and marks those hours dirty for their KPIs only. Returns how many
/// samples were counted.
pub async fn merge_sealed(conn: &mut AnyConnection, samples: &[RawSample]) -> sqlx::Result<u64> {
    let mut by_hour: BTreeMap<i64, Vec<RawSample>> = BTreeMap::new();
    for s in samples {
        by_hour.entry(hour_of(s.ts_ms)).or_default().push(*s);
    }
    let mut counted = 0;
    for (hour_ms, samples) in by_hour {
        let mut ids: Vec<i64> = samples.iter().map(|s| s.series_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let stored = stored_rollups(conn, hour_ms, &ids).await?;
        let fresh: Vec<RawSample> = samples
            .into_iter()
            .filter(|s| stored.get(&s.series_id).and_then(|r| r.last_ms) != Some(s.ts_ms))
            .collect();
        let merged: Vec<Rollup> = summarize(fresh)
            .into_iter()
            .map(|late| {
                counted += late.count as u64;
                match stored.get(&late.series_id) {
                    Some(s) => merge(s, &late),
                    None => late,
                }
            })
            .collect();
        upsert_rollups(conn, &merged).await?;
        sqlx::query(
            "INSERT INTO rollup_dirty (hour_ms, version, rebuild) VALUES ($1, 1, 0) \
             ON CONFLICT (hour_ms) DO UPDATE SET version = rollup_dirty.version + 1",
        )
        .bind(hour_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(counted)
}

/// The stored rollups of `series_ids` (ascending) for one hour, by series id.
async fn stored_rollups(
    conn: &mut AnyConnection,
    hour_ms: i64,
    series_ids: &[i64],
) -> sqlx::Result<HashMap<i64, Rollup>> {
    let mut out = HashMap::new();
    for chunk in series_ids.chunks(500) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT series_id, min, max, sum, count, last, last_ms FROM rollups \
             WHERE hour_ms = $1 AND series_id IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(hour_ms);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let series_id: i64 = r.get(0);
            out.insert(
                series_id,
                Rollup {
                    series_id,
                    hour_ms,
                    min: r.get(1),
                    max: r.get(2),
                    sum: r.get(3),
                    count: r.get(4),
                    last: r.get(5),
                    last_ms: r.get(6),
                },
            );
        }
    }
    Ok(out)
}

/// Writes rollup rows over the stored ones of the same series and hour.
async fn upsert_rollups(conn: &mut AnyConnection, rows: &[Rollup]) -> sqlx::Result<()> {
    super::write_rollups(
        conn,
        rows,
        " ON CONFLICT (series_id, hour_ms) DO UPDATE SET min = excluded.min, \
         max = excluded.max, sum = excluded.sum, count = excluded.count, \
         last = excluded.last, last_ms = excluded.last_ms",
    )
    .await
}

impl Store {
    /// The horizon before which late samples are merged (see the module documentation).
    pub async fn rollup_sealed_before(&self) -> sqlx::Result<i64> {
        let mut conn = self.pool.acquire().await?;
        sealed_before(&mut conn).await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn s(series_id: i64, ts_ms: i64, value: f64) -> RawSample {
        RawSample {
            series_id,
            ts_ms,
            value,
        }
    }

    #[test]
    fn last_follows_time_and_an_unknown_stored_time_keeps_the_stored_last() {
        let h = 5 * HOUR_MS;
        let stored = summarize(vec![s(1, h + 10, 1.0), s(1, h + 30, 3.0)])[0];
        let earlier = summarize(vec![s(1, h + 20, 9.0)])[0];
        let later = summarize(vec![s(1, h + 40, -1.0)])[0];
        let m = merge(&stored, &earlier);
        assert_eq!((m.min, m.max, m.sum, m.count), (1.0, 9.0, 13.0, 3));
        assert_eq!((m.last, m.last_ms), (3.0, Some(h + 30)));
        let m = merge(&stored, &later);
        assert_eq!((m.last, m.last_ms), (-1.0, Some(h + 40)));
        let legacy = Rollup {
            last_ms: None,
            ..stored
        };
        let m = merge(&legacy, &later);
        assert_eq!((m.last, m.last_ms, m.count), (3.0, None, 3));
    }

    proptest! {
        /// Merging the rollups of any split of distinct samples gives what summarizing them all
        /// at once gives (integer values, so the sums are exact in any order).
        #[test]
        fn merging_a_split_equals_summarizing_the_whole(
            samples in proptest::collection::btree_map(
                (0i64..3, 0i64..3 * HOUR_MS),
                -1000i32..1000,
                1..60,
            ),
            late in proptest::collection::vec(any::<bool>(), 60),
        ) {
            let all: Vec<RawSample> = samples
                .iter()
                .map(|(&(id, ts), &v)| s(id, ts, f64::from(v)))
                .collect();
            let (a, b): (Vec<(usize, RawSample)>, Vec<_>) =
                all.iter().copied().enumerate().partition(|(i, _)| !late[*i]);
            let stored = summarize(a.into_iter().map(|(_, s)| s).collect());
            let mut merged: BTreeMap<(i64, i64), Rollup> =
                stored.into_iter().map(|r| ((r.series_id, r.hour_ms), r)).collect();
            for r in summarize(b.into_iter().map(|(_, s)| s).collect()) {
                match merged.get_mut(&(r.series_id, r.hour_ms)) {
                    Some(e) => *e = merge(e, &r),
                    None => {
                        merged.insert((r.series_id, r.hour_ms), r);
                    }
                }
            }
            prop_assert_eq!(merged.into_values().collect::<Vec<_>>(), summarize(all));
        }
    }
}
