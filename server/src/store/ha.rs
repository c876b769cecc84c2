//! Statements of the replicas' coordination (issue 19): reading raw batches in commit order for
//! the leader's live window, and the lease as the API shows it. The lease itself is taken and
//! renewed in `leader.rs` on a connection of its own; fencing is [`Store::check_fence`].

use sqlx::{AnyConnection, Connection, Row};

use super::Store;

/// The database clock in Unix milliseconds, as PostgreSQL computes it.
const DB_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// A connection of its own for the lease, named like the pool's sessions.
pub async fn lease_connection(url: &str) -> sqlx::Result<AnyConnection> {
    let mut c = AnyConnection::connect(url).await?;
    sqlx::query(&format!(
        "SET application_name = '{}'",
        super::application_name()
    ))
    .execute(&mut c)
    .await?;
    Ok(c)
}

/// One renewal (or acquisition): the epoch of the term `holder` now holds, or `None` when
/// another replica holds an unexpired lease. `leading` says whether `holder` believes it holds
/// the lease now; when it does not, taking the lease (even its own expired one) begins a new
/// term.
pub async fn try_acquire(
    conn: &mut AnyConnection,
    holder: &str,
    lease_ms: i64,
    leading: bool,
) -> sqlx::Result<Option<i64>> {
    let row = sqlx::query(&format!(
        "UPDATE leader_lease SET \
         epoch = CASE WHEN holder = $1 AND $3 = 1 THEN epoch ELSE epoch + 1 END, \
         acquired_ms = CASE WHEN holder = $1 AND $3 = 1 THEN acquired_ms ELSE {DB_NOW} END, \
         holder = $1, expires_ms = {DB_NOW} + $2 \
         WHERE name = 'leader' AND (holder = $1 OR expires_ms < {DB_NOW}) RETURNING epoch"
    ))
    .bind(holder)
    .bind(lease_ms)
    .bind(i64::from(leading))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.get::<i64, _>(0)))
}

/// One committed raw batch, as the leader tails them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBatch {
    /// Its place in commit order (migration 0023).
    pub commit_id: i64,
    pub agent_id: String,
    pub seq: i64,
    pub received_ms: i64,
    /// The samples, encoded by [`super::blob::encode`].
    pub data: Vec<u8>,
}

impl Store {
    /// The highest commit id given so far (0 before any).
    pub async fn max_commit_id(&self) -> sqlx::Result<i64> {
        sqlx::query("SELECT COALESCE(MAX(commit_id), 0) FROM batches")
            .fetch_one(self.pool())
            .await?
            .try_get::<i64, _>(0)
    }

    /// Up to `limit` batches committed after `after`, in commit order.
    pub async fn batches_committed_after(
        &self,
        after: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<CommittedBatch>> {
        Ok(sqlx::query(
            "SELECT commit_id, agent_id, seq, received_ms, data FROM batches \
             WHERE commit_id > $1 ORDER BY commit_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| CommittedBatch {
            commit_id: r.get(0),
            agent_id: r.get(1),
            seq: r.get(2),
            received_ms: r.get(3),
            data: r.get(4),
        })
        .collect())
    }

    /// Ends `holder`'s lease now (a clean shutdown).
    pub async fn release_lease(&self, holder: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE leader_lease SET expires_ms = 0 WHERE name = 'leader' AND holder = $1")
            .bind(holder)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The lease row: holder, epoch and expiry (database clock, Unix ms).
    pub async fn leader_lease(&self) -> sqlx::Result<Option<(String, i64, i64)>> {
        Ok(
            sqlx::query("SELECT holder, epoch, expires_ms FROM leader_lease WHERE name = 'leader'")
                .fetch_optional(self.pool())
                .await?
                .map(|r| (r.get(0), r.get(1), r.get(2))),
        )
    }
}
