//! The ingest writer's statements: what one group-commit transaction writes per batch (the
//! raw batch, agent inventory, status spans, events, new series, dirty hours), replacing an
//! hour's rollups, and retention. Which rows to write — caching, deduplication, span merging,
//! retention periods — is the ingest service's; these functions only run the SQL, mostly
//! inside a transaction the writer holds.

use std::collections::{BTreeMap, HashSet};

use sqlx::{AnyConnection, Row};
use yunwei_proto::HostFacts;

use super::{Rollup, Store, insert_rollups, kpi, labels_to_json, rollup, span_from_row};
use crate::timeline::Span;

/// One raw batch to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch<'a> {
    pub agent_id: &'a str,
    pub seq: i64,
    pub received_ms: i64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub samples: i64,
    /// The samples, encoded by [`super::blob::encode`].
    pub data: &'a [u8],
}

/// One agent event to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent<'a> {
    pub agent_id: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub ts_ms: i64,
    pub received_ms: i64,
    /// JSON.
    pub detail: String,
}

/// Where retention cuts, each "delete before this time", in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCutoffs {
    /// Raw batches whose newest sample is older (once their hours are rolled up).
    pub raw_ms: i64,
    /// Rollups and hourly KPIs of earlier hours.
    pub rollups_ms: i64,
    /// Status intervals that ended earlier.
    pub intervals_ms: i64,
    /// Events that happened earlier.
    pub events_ms: i64,
}

/// What a retention pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Per agent, the highest sequence number of its pruned raw batches (now its
    /// `pruned_seq` watermark, unless that was higher).
    pub marks: Vec<(String, i64)>,
    /// Rows deleted per kind: `raw_batches`, `rollups`, `kpi_hours`, `status_intervals`,
    /// `events`.
    pub deleted: Vec<(&'static str, u64)>,
    /// The rollup horizon after the pass: hours before it may have lost raw batches, so their
    /// late samples are merged, not rebuilt ([`rollup`]).
    pub sealed_before_ms: i64,
}

/// Marks `hour_ms` as needing its rollups rebuilt from the raw window, bumping its version.
/// Only for hours at or after the rollup horizon, whose raw batches are all kept
/// ([`rollup`]; late samples of earlier hours are merged by [`rollup::merge_sealed`]).
pub async fn mark_dirty(conn: &mut AnyConnection, hour_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO rollup_dirty (hour_ms, version, rebuild) VALUES ($1, 1, 1) \
         ON CONFLICT (hour_ms) DO UPDATE SET version = rollup_dirty.version + 1, rebuild = 1",
    )
    .bind(hour_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Raw batches per statement in [`insert_batches`] (7 values each).
const BATCHES_PER_STATEMENT: usize = 128;

/// Stores raw batches in multi-row statements; for each, in order, `false` when its
/// `(agent_id, seq)` was stored already (before, or earlier in `batches`), or, with
/// `skip_revoked`, when its agent's token is revoked (nothing of it is stored then).
pub async fn insert_batches(
    conn: &mut AnyConnection,
    batches: &[NewBatch<'_>],
    skip_revoked: bool,
) -> sqlx::Result<Vec<bool>> {
    let mut out = Vec::with_capacity(batches.len());
    for chunk in batches.chunks(BATCHES_PER_STATEMENT) {
        let mut sql = if skip_revoked {
            // `columnN`: the names SQLite and PostgreSQL both give a VALUES list's columns.
            let mut sql = super::multi_row_insert(
                "INSERT INTO batches (agent_id, seq, received_ms, min_ts, max_ts, samples, data) \
                 SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, \
                 v.column7 FROM (VALUES ",
                chunk.len(),
                7,
            );
            sql.push_str(
                ") AS v WHERE NOT EXISTS (SELECT 1 FROM agents a \
                 WHERE a.agent_id = v.column1 AND a.revoked_ms IS NOT NULL)",
            );
            sql
        } else {
            super::multi_row_insert(
                "INSERT INTO batches (agent_id, seq, received_ms, min_ts, max_ts, samples, data) VALUES ",
                chunk.len(),
                7,
            )
        };
        sql.push_str(" ON CONFLICT (agent_id, seq) DO NOTHING RETURNING agent_id, seq");
        let mut q = sqlx::query(&sql);
        for b in chunk {
            q = q
                .bind(b.agent_id)
                .bind(b.seq)
                .bind(b.received_ms)
                .bind(b.min_ts)
                .bind(b.max_ts)
                .bind(b.samples)
                .bind(b.data);
        }
        let mut stored: HashSet<(String, i64)> = q
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // A key given twice is stored once: the first of them.
        for b in chunk {
            out.push(stored.remove(&(b.agent_id.to_string(), b.seq)));
        }
    }
    Ok(out)
}

/// Records that the agent was seen at `seen_ms` with batch `seq` and its reporting interval
/// (last seen and last sequence only move forward; first seen is set once).
pub async fn touch_agent(
    conn: &mut AnyConnection,
    agent_id: &str,
    seen_ms: i64,
    seq: i64,
    interval_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE agents SET last_seen_ms = CASE WHEN last_seen_ms IS NULL OR last_seen_ms < $1 THEN $1 ELSE last_seen_ms END, \
         first_seen_ms = COALESCE(first_seen_ms, $1), \
         last_seq = CASE WHEN last_seq < $2 THEN $2 ELSE last_seq END, interval_ms = $3 WHERE agent_id = $4",
    )
    .bind(seen_ms)
    .bind(seq)
    .bind(interval_ms)
    .bind(agent_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replaces the agent's host facts.
pub async fn set_agent_facts(
    conn: &mut AnyConnection,
    agent_id: &str,
    facts: &HostFacts,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE agents SET hostname = $1, os = $2, kernel = $3, arch = $4, agent_version = $5, labels = $6 \
         WHERE agent_id = $7",
    )
    .bind(&facts.hostname)
    .bind(&facts.os)
    .bind(&facts.kernel)
    .bind(&facts.arch)
    .bind(&facts.agent_version)
    .bind(labels_to_json(&facts.labels))
    .bind(agent_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn insert_event(conn: &mut AnyConnection, e: &NewEvent<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO events (agent_id, kind, subject, ts_ms, received_ms, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(e.agent_id)
    .bind(e.kind)
    .bind(e.subject)
    .bind(e.ts_ms)
    .bind(e.received_ms)
    .bind(&e.detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The latest span (by start) of one subject.
pub async fn latest_span(
    conn: &mut AnyConnection,
    kind: &str,
    subject: &str,
) -> sqlx::Result<Option<Span>> {
    let row = sqlx::query(
        "SELECT id, state, start_ms, end_ms FROM status_intervals WHERE kind = $1 AND subject = $2 \
         ORDER BY start_ms DESC LIMIT 1",
    )
    .bind(kind)
    .bind(subject)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(span_from_row))
}

/// Spans of one subject touching `[from, to]` (`end >= from`, `start <= to`), by start.
pub async fn spans_touching(
    conn: &mut AnyConnection,
    kind: &str,
    subject: &str,
    from: i64,
    to: i64,
) -> sqlx::Result<Vec<Span>> {
    Ok(sqlx::query(
        "SELECT id, state, start_ms, end_ms FROM status_intervals WHERE kind = $1 AND subject = $2 \
         AND end_ms >= $3 AND start_ms <= $4 ORDER BY start_ms",
    )
    .bind(kind)
    .bind(subject)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(span_from_row)
    .collect())
}

pub async fn delete_span(conn: &mut AnyConnection, id: Option<i64>) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM status_intervals WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Rewrites the state and bounds of span `id`.
pub async fn update_span(conn: &mut AnyConnection, id: i64, span: &Span) -> sqlx::Result<()> {
    sqlx::query("UPDATE status_intervals SET state = $1, start_ms = $2, end_ms = $3 WHERE id = $4")
        .bind(span.state.as_str())
        .bind(span.start)
        .bind(span.end)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts a span of one subject (its `id` is ignored); returns the new id.
pub async fn insert_span(
    conn: &mut AnyConnection,
    kind: &str,
    subject: &str,
    span: &Span,
) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO status_intervals (kind, subject, state, start_ms, end_ms) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(kind)
    .bind(subject)
    .bind(span.state.as_str())
    .bind(span.start)
    .bind(span.end)
    .fetch_one(&mut *conn)
    .await?
    .get(0))
}

/// The id of the series `(agent, name, labels)`, created at `now` if it is new.
pub async fn insert_series(
    conn: &mut AnyConnection,
    agent: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    now: i64,
) -> sqlx::Result<i64> {
    let json = labels_to_json(labels);
    let row = sqlx::query(
        "INSERT INTO series (agent_id, name, labels, created_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (agent_id, name, labels) DO NOTHING RETURNING id",
    )
    .bind(agent)
    .bind(name)
    .bind(&json)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(r.get(0)),
        None => {
            sqlx::query("SELECT id FROM series WHERE agent_id = $1 AND name = $2 AND labels = $3")
                .bind(agent)
                .bind(name)
                .bind(&json)
                .fetch_one(&mut *conn)
                .await
                .map(|r| r.get(0))
        }
    }
}

/// Deletes what lies before the cutoffs; raw batches only once no dirty hour overlaps them,
/// raising each agent's `pruned_seq` watermark to its newest pruned batch and the rollup
/// horizon past the newest hour they touch first.
pub async fn prune(conn: &mut AnyConnection, cutoffs: &RetentionCutoffs) -> sqlx::Result<Pruned> {
    let prunable = "max_ts < $1 AND NOT EXISTS (SELECT 1 FROM rollup_dirty d \
                    WHERE d.hour_ms >= batches.min_ts - 3600000 AND d.hour_ms <= batches.max_ts)";
    let rows = sqlx::query(&format!(
        "SELECT agent_id, MAX(seq), MAX(max_ts) FROM batches WHERE {prunable} GROUP BY agent_id"
    ))
    .bind(cutoffs.raw_ms)
    .fetch_all(&mut *conn)
    .await?;
    let sealed_before_ms = match rows.iter().map(|m| m.get::<i64, _>(2)).max() {
        Some(newest) => rollup::seal_through(conn, newest).await?,
        None => rollup::sealed_before(conn).await?,
    };
    let mut marks = Vec::new();
    for m in &rows {
        let agent: String = m.get(0);
        let seq: i64 = m.get(1);
        sqlx::query("UPDATE agents SET pruned_seq = $1 WHERE agent_id = $2 AND pruned_seq < $1")
            .bind(seq)
            .bind(&agent)
            .execute(&mut *conn)
            .await?;
        marks.push((agent, seq));
    }
    let mut deleted = Vec::new();
    let raw = sqlx::query(&format!("DELETE FROM batches WHERE {prunable}"))
        .bind(cutoffs.raw_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    deleted.push(("raw_batches", raw));
    for (what, sql, cutoff) in [
        (
            "rollups",
            "DELETE FROM rollups WHERE hour_ms < $1",
            cutoffs.rollups_ms,
        ),
        (
            "kpi_hours",
            "DELETE FROM kpi_hours WHERE hour_ms < $1",
            cutoffs.rollups_ms,
        ),
        (
            "status_intervals",
            "DELETE FROM status_intervals WHERE end_ms < $1",
            cutoffs.intervals_ms,
        ),
        (
            "events",
            "DELETE FROM events WHERE ts_ms < $1",
            cutoffs.events_ms,
        ),
    ] {
        let n = sqlx::query(sql)
            .bind(cutoff)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        deleted.push((what, n));
    }
    Ok(Pruned {
        marks,
        deleted,
        sealed_before_ms,
    })
}

impl Store {
    /// Replaces one hour's rollups (unless `None`: late samples were merged into the stored
    /// ones, which stay) and derived KPIs if the hour is still dirty at `version`; `false`
    /// (nothing written) when it was dirtied again or rolled up already.
    pub async fn replace_rollup_hour(
        &self,
        hour_ms: i64,
        version: i64,
        rollups: Option<&[Rollup]>,
        kpis: &[kpi::KpiHour],
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        // A singleton write (the leader's maintenance pass).
        self.check_fence(&mut tx).await?;
        let cleared = sqlx::query("DELETE FROM rollup_dirty WHERE hour_ms = $1 AND version = $2")
            .bind(hour_ms)
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if cleared == 0 {
            return Ok(false);
        }
        if let Some(rollups) = rollups {
            sqlx::query("DELETE FROM rollups WHERE hour_ms = $1")
                .bind(hour_ms)
                .execute(&mut *tx)
                .await?;
            insert_rollups(&mut tx, rollups).await?;
        }
        kpi::write_hour(&mut tx, hour_ms, kpis).await?;
        tx.commit().await?;
        Ok(true)
    }
}
