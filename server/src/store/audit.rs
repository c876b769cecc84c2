//! Store access for the audit trail: the hash-chained `audit_log` rows, `audit_head` (the
//! newest row's number and hash) and `audit_checkpoints` (signed heads). The chaining and the
//! signatures are computed by the audit service; the store only reads and writes rows.

use sqlx::{AnyConnection, Row, any::AnyRow};

use super::Store;

/// One `audit_log` row as stored (`detail` is JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLogRow {
    pub seq: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub source: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

const COLUMNS: &str = "seq, ts_ms, actor, action, target, result, source, detail, prev_hash, hash";

fn row_from(r: &AnyRow) -> AuditLogRow {
    AuditLogRow {
        seq: r.get(0),
        ts_ms: r.get(1),
        actor: r.get(2),
        action: r.get(3),
        target: r.get(4),
        result: r.get(5),
        source: r.get(6),
        detail: r.get(7),
        prev_hash: r.get(8),
        hash: r.get(9),
    }
}

/// An audit row to append in the transaction of the change it records, so that the change
/// and its row commit together or not at all. The audit service implements it (the row's hash
/// is computed there); the store decides the row's number and predecessor.
pub trait AuditRecord: Send + Sync {
    /// The row to store as number `seq`, following the row whose hash is `prev_hash`.
    fn row(&self, seq: i64, prev_hash: &str) -> AuditLogRow;
    /// Called once the transaction holding the row has committed.
    fn committed(&self) {}
}

/// The audit row a store write appends with its change (`None`: the caller records nothing
/// in the transaction).
pub type Audit<'a> = Option<&'a dyn AuditRecord>;

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Appends `rec` inside the caller's transaction, after every other write of it; returns its
/// sequence number. Appenders are serialized on the head row: SQLite transactions begun by
/// [`Store::begin`] hold the one write lock already; on PostgreSQL the `audit_head` row is
/// locked (`FOR UPDATE`, created first if the chain is empty), so a concurrent appender — in
/// this process or another — waits for the commit and then reads the new newest row instead of
/// clashing on `seq` (which would fail the whole change).
pub async fn append_in(conn: &mut AnyConnection, rec: &dyn AuditRecord) -> sqlx::Result<i64> {
    sqlx::query(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING",
    )
    .bind(GENESIS)
    .execute(&mut *conn)
    .await?;
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
            .fetch_optional(&mut *conn)
            .await?;
    }
    let (seq, prev) = match newest(conn).await? {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let row = rec.row(seq, &prev);
    insert(conn, &row).await?;
    set_head(conn, seq, &row.hash).await?;
    Ok(seq)
}

/// Commits `tx`, with `audit` appended first when given ([`append_in`]); tells `audit` once
/// committed.
pub async fn commit(
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    audit: Audit<'_>,
) -> sqlx::Result<()> {
    if let Some(a) = audit {
        append_in(&mut tx, a).await?;
    }
    tx.commit().await?;
    if let Some(a) = audit {
        a.committed();
    }
    Ok(())
}

/// The newest row's `(seq, hash)`, inside the appending transaction.
pub async fn newest(conn: &mut AnyConnection) -> sqlx::Result<Option<(i64, String)>> {
    let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(head.map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))))
}

/// Inserts one row; fails (primary key) when another writer took its `seq`.
pub async fn insert(conn: &mut AnyConnection, row: &AuditLogRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (seq, ts_ms, actor, action, target, result, source, detail, \
         prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(row.seq)
    .bind(row.ts_ms)
    .bind(&row.actor)
    .bind(&row.action)
    .bind(&row.target)
    .bind(&row.result)
    .bind(&row.source)
    .bind(&row.detail)
    .bind(&row.prev_hash)
    .bind(&row.hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records `(seq, hash)` as the head of the chain.
pub async fn set_head(conn: &mut AnyConnection, seq: i64, hash: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )
    .bind(seq)
    .bind(hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One `audit_checkpoints` row: the chain's head `hash` at `seq`, signed (hex) at `ts_ms` by
/// the key `key_id` (the public key in hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: String,
    pub ts_ms: i64,
    pub key_id: String,
    pub signature: String,
}

fn checkpoint_from(r: &AnyRow) -> CheckpointRow {
    CheckpointRow {
        seq: r.get(0),
        hash: r.get(1),
        ts_ms: r.get(2),
        key_id: r.get(3),
        signature: r.get(4),
    }
}

impl Store {
    /// Stores a checkpoint; `false` when one at the same `seq` exists already (another
    /// process checkpointed the same head). Fenced ([`Store::check_fence`]): only the leader
    /// (or the single node, or the command line, which set no fence) checkpoints.
    pub async fn insert_audit_checkpoint(&self, c: &CheckpointRow) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        let done = sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, ts_ms, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.ts_ms)
        .bind(&c.key_id)
        .bind(&c.signature)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every checkpoint, oldest first.
    pub async fn audit_checkpoints(&self) -> sqlx::Result<Vec<CheckpointRow>> {
        let rows = sqlx::query(
            "SELECT seq, hash, ts_ms, key_id, signature FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(checkpoint_from).collect())
    }

    /// The newest checkpoint signed by `key_id`.
    pub async fn newest_audit_checkpoint(
        &self,
        key_id: &str,
    ) -> sqlx::Result<Option<CheckpointRow>> {
        Ok(sqlx::query(
            "SELECT seq, hash, ts_ms, key_id, signature FROM audit_checkpoints \
             WHERE key_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(checkpoint_from))
    }

    /// The newest rows with `seq < before`, newest first, at most `limit`.
    pub async fn audit_rows_before(
        &self,
        before: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<AuditLogRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row_from).collect())
    }

    /// Up to 5,000 rows with `seq > after`, oldest first.
    pub async fn audit_rows_after(&self, after: i64) -> sqlx::Result<Vec<AuditLogRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 5000"
        ))
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row_from).collect())
    }

    /// The recorded head `(seq, hash)`, if a row was ever appended.
    pub async fn audit_head(&self) -> sqlx::Result<Option<(i64, String)>> {
        Ok(sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
            .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))))
    }
}
