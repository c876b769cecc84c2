//! Statements of the replicas' coordination (issue 19): reading raw batches in commit order for
//! the leader's live window, and the lease as the API shows it. The lease itself is taken and
//! renewed in `leader.rs` on a connection of its own; fencing is [`Store::check_fence`].

use sqlx::Row;

use super::Store;

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
