//! Prometheus remote write (migration 22): the senders and their token hashes, the hosts their
//! feeds made (provenance), and the newest stored point of each remote-written series, which
//! the ingest writer reads and advances in the transaction that stores the samples.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, Row};

use super::{
    Store,
    audit::{Audit, commit},
    labels_to_json,
};

/// One remote-write sender as stored (its token only as a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRow {
    pub name: String,
    pub created_ms: i64,
    pub created_by: String,
    pub revoked_ms: Option<i64>,
}

/// A host made by a sender's feed: the inventory row's agent id and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHostRow {
    pub agent_id: String,
    pub sender: String,
    pub instance: String,
    pub created_ms: i64,
}

/// The newest stored point of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    pub ts_ms: i64,
    pub value: f64,
}

impl Store {
    /// Stores a new sender whose token hashes to `token_hash`; `false` when the name is taken.
    pub async fn insert_remote_write_sender(
        &self,
        name: &str,
        token_hash: &str,
        now_ms: i64,
        created_by: &str,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO remote_write_senders (name, token_hash, created_ms, created_by) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(token_hash)
        .bind(now_ms)
        .bind(created_by)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        commit(tx, audit).await?;
        Ok(true)
    }

    /// Revokes a sender's token at `now_ms`; `false` when there is no such sender or it was
    /// revoked already.
    pub async fn revoke_remote_write_sender(
        &self,
        name: &str,
        now_ms: i64,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE remote_write_senders SET revoked_ms = $1 WHERE name = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        commit(tx, audit).await?;
        Ok(true)
    }

    /// Every sender, revoked ones included, by name.
    pub async fn remote_write_senders(&self) -> sqlx::Result<Vec<SenderRow>> {
        let rows = sqlx::query(
            "SELECT name, created_ms, created_by, revoked_ms FROM remote_write_senders ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SenderRow {
                name: r.get(0),
                created_ms: r.get(1),
                created_by: r.get(2),
                revoked_ms: r.get(3),
            })
            .collect())
    }

    /// The name of the unrevoked sender whose token has this hash, if any.
    pub async fn remote_write_sender_by_token(
        &self,
        token_hash: &str,
    ) -> sqlx::Result<Option<String>> {
        Ok(sqlx::query(
            "SELECT name FROM remote_write_senders WHERE token_hash = $1 AND revoked_ms IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.get(0)))
    }

    /// Every host a remote-write feed made, by agent id.
    pub async fn remote_write_hosts(&self) -> sqlx::Result<Vec<RemoteHostRow>> {
        let rows = sqlx::query(
            "SELECT agent_id, sender, instance, created_ms FROM remote_write_hosts ORDER BY agent_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| RemoteHostRow {
                agent_id: r.get(0),
                sender: r.get(1),
                instance: r.get(2),
                created_ms: r.get(3),
            })
            .collect())
    }
}

/// Whether `sender` exists with a working token, read inside the writer's transaction (so a
/// request is never stored after the revocation committed).
pub async fn sender_active(conn: &mut AnyConnection, sender: &str) -> sqlx::Result<bool> {
    Ok(
        sqlx::query("SELECT revoked_ms FROM remote_write_senders WHERE name = $1")
            .bind(sender)
            .fetch_optional(&mut *conn)
            .await?
            .is_some_and(|r| r.get::<Option<i64>, _>(0).is_none()),
    )
}

/// The host a sender's feed makes for one `instance`: an `agents` row (hostname the instance,
/// no usable token: `token_hash` is not a SHA-256 digest, so no secret hashes to it) and its
/// provenance row. Nothing happens when it exists already.
pub async fn insert_host(
    conn: &mut AnyConnection,
    host: &RemoteHostRow,
    host_labels: &BTreeMap<String, String>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO agents (agent_id, token_hash, enrolled_ms, hostname, os, kernel, arch, \
         agent_version, labels, interval_ms) VALUES ($1, $2, $3, $4, '', '', '', $5, $6, $7) \
         ON CONFLICT (agent_id) DO NOTHING",
    )
    .bind(&host.agent_id)
    .bind(format!("remote_write:{}", host.agent_id))
    .bind(host.created_ms)
    .bind(&host.instance)
    .bind(REMOTE_WRITE_AGENT_VERSION)
    .bind(labels_to_json(host_labels))
    .bind(REMOTE_WRITE_INTERVAL_MS)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO remote_write_hosts (agent_id, sender, instance, created_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id) DO NOTHING",
    )
    .bind(&host.agent_id)
    .bind(&host.sender)
    .bind(&host.instance)
    .bind(host.created_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The `agent_version` of a host made by remote write (its inventory row says where it came
/// from; no agent runs there).
pub const REMOTE_WRITE_AGENT_VERSION: &str = "remote_write";

/// The nominal reporting interval of a remote-written host (Prometheus's default
/// `scrape_interval`); it only decides when the fleet view calls the host silent.
pub const REMOTE_WRITE_INTERVAL_MS: i64 = 60_000;

/// The highest batch sequence number stored for `agent_id` (0 before the first).
pub async fn last_seq(conn: &mut AnyConnection, agent_id: &str) -> sqlx::Result<i64> {
    let seq: Option<i64> = sqlx::query("SELECT MAX(seq) FROM batches WHERE agent_id = $1")
        .bind(agent_id)
        .fetch_one(&mut *conn)
        .await?
        .get(0);
    let watermark: Option<i64> = sqlx::query("SELECT last_seq FROM agents WHERE agent_id = $1")
        .bind(agent_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.get(0));
    Ok(seq.unwrap_or(0).max(watermark.unwrap_or(0)))
}

/// Ids per statement in [`marks`].
const IDS_PER_STATEMENT: usize = 500;

/// The newest stored point of each of `series_ids` that has one.
pub async fn marks(
    conn: &mut AnyConnection,
    series_ids: &[i64],
) -> sqlx::Result<HashMap<i64, Mark>> {
    let mut out = HashMap::new();
    for chunk in series_ids.chunks(IDS_PER_STATEMENT) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT series_id, ts_ms, value FROM remote_write_marks WHERE series_id IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(
                r.get(0),
                Mark {
                    ts_ms: r.get(1),
                    value: r.get(2),
                },
            );
        }
    }
    Ok(out)
}

/// Rows per statement in [`set_marks`] (3 values each).
const MARKS_PER_STATEMENT: usize = 300;

/// Moves each series' newest stored point forward to the given one.
pub async fn set_marks(conn: &mut AnyConnection, marks: &[(i64, Mark)]) -> sqlx::Result<()> {
    for chunk in marks.chunks(MARKS_PER_STATEMENT) {
        let mut sql = super::multi_row_insert(
            "INSERT INTO remote_write_marks (series_id, ts_ms, value) VALUES ",
            chunk.len(),
            3,
        );
        sql.push_str(
            " ON CONFLICT (series_id) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value \
             WHERE excluded.ts_ms > remote_write_marks.ts_ms",
        );
        let mut q = sqlx::query(&sql);
        for (id, m) in chunk {
            q = q.bind(*id).bind(m.ts_ms).bind(m.value);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
