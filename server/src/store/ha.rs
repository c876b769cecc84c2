//! Statements of the replicas' coordination (issue 19): reading raw batches in commit order for
//! the leader's live window, and the lease as the API shows it. The lease itself is taken and
//! renewed in `leader.rs` on a connection of its own; fencing is [`Store::check_fence`].

use std::collections::HashMap;

use sqlx::{AnyConnection, Connection, Row};

use super::Store;

/// The database clock in Unix milliseconds, as PostgreSQL computes it.
const DB_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// A connection outside the pool, named like the pool's sessions (so a backend can be told
/// apart, and terminated, by replica).
async fn named_connection<C>(url: &str) -> sqlx::Result<C>
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut c = C::connect(url).await?;
    let set = format!("SET application_name = '{}'", super::application_name());
    sqlx::Executor::execute(&mut c, set.as_str()).await?;
    Ok(c)
}

/// A connection of its own for the lease.
pub async fn lease_connection(url: &str) -> sqlx::Result<AnyConnection> {
    named_connection(url).await
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

/// One committed raw batch, as the leader tails them (its samples are read separately, by
/// [`batch_data`], for the batches the leader did not store itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBatch {
    /// Its place in commit order (migration 0023).
    pub commit_id: i64,
    pub agent_id: String,
    pub seq: i64,
    pub received_ms: i64,
}

/// The leader's tail's own connection: PostgreSQL's driver directly, not the pool, since the
/// tail queries on every commit any replica makes: no pool checkout and release (sqlx pings a
/// connection each time it returns to the pool) and no conversion of rows to the `Any`
/// driver's values.
pub async fn tail_connection(url: &str) -> sqlx::Result<sqlx::PgConnection> {
    named_connection(url).await
}

/// Up to `limit` batches committed after `after`, in commit order, without their samples.
pub async fn batches_committed_after(
    conn: &mut sqlx::PgConnection,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<CommittedBatch>> {
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT commit_id, agent_id, seq, received_ms FROM batches \
         WHERE commit_id > $1 ORDER BY commit_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(commit_id, agent_id, seq, received_ms)| CommittedBatch {
            commit_id,
            agent_id,
            seq,
            received_ms,
        })
        .collect())
}

/// The samples (encoded by [`super::blob::encode`]) of the batches with these commit ids, by
/// commit id; a batch deleted since is missing.
pub async fn batch_data(
    conn: &mut sqlx::PgConnection,
    commit_ids: &[i64],
) -> sqlx::Result<HashMap<i64, Vec<u8>>> {
    if commit_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT commit_id, data FROM batches WHERE commit_id = ANY($1)")
            .bind(commit_ids)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The series with these ids (a series made since by any replica), in id order.
pub async fn series_by_ids(
    conn: &mut sqlx::PgConnection,
    ids: &[i64],
) -> sqlx::Result<Vec<super::SeriesRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT id, agent_id, name, labels FROM series WHERE id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, agent_id, name, labels)| super::SeriesRow {
            id,
            agent_id,
            name,
            labels: super::labels_from_json(&labels),
        })
        .collect())
}

impl Store {
    /// The highest commit id given so far (0 before any).
    pub async fn max_commit_id(&self) -> sqlx::Result<i64> {
        sqlx::query("SELECT COALESCE(MAX(commit_id), 0) FROM batches")
            .fetch_one(self.pool())
            .await?
            .try_get::<i64, _>(0)
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

/// An acknowledgement received by a follower, waiting for the leader (migration 0021).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRequest {
    pub id: i64,
    pub group_id: String,
    pub action: String,
    pub actor: String,
    pub via: String,
    pub episode_ms: Option<i64>,
    /// The audit row to commit with the acknowledgement: its time and its entry as JSON.
    pub audit: Option<(i64, String)>,
}

/// What a follower's request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckRequestState {
    /// No leader has claimed it yet.
    Waiting,
    /// A leader claimed it and has not written the outcome yet.
    Claimed,
    /// Applied (or refused) by the leader: the outcome's JSON.
    Done(String),
    /// The row is gone.
    Gone,
}

/// The channel a follower's `NOTIFY` wakes the leader's dispatcher on.
pub const ACK_CHANNEL: &str = "yunwei_acks";

impl Store {
    /// Records a follower's acknowledgement request and (PostgreSQL) wakes the leader with
    /// `NOTIFY yunwei_acks` on commit; returns the request's id. Not fenced: any replica may
    /// ask.
    pub async fn insert_ack_request(
        &self,
        r: &AckRequest,
        requested_by: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> sqlx::Result<i64> {
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO ack_requests (group_id, action, actor, via, episode_ms, audit_ts_ms, \
             audit_entry, requested_by, requested_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(&r.group_id)
        .bind(&r.action)
        .bind(&r.actor)
        .bind(&r.via)
        .bind(r.episode_ms)
        .bind(r.audit.as_ref().map(|a| a.0))
        .bind(r.audit.as_ref().map(|a| a.1.clone()))
        .bind(requested_by)
        .bind(now_ms)
        .bind(expires_ms)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if self.backend() == super::Backend::Postgres {
            // Delivered on commit.
            sqlx::query(&format!("NOTIFY {ACK_CHANNEL}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Where request `id` stands.
    pub async fn ack_request_state(&self, id: i64) -> sqlx::Result<AckRequestState> {
        let row = sqlx::query("SELECT claimed_epoch, outcome FROM ack_requests WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            None => AckRequestState::Gone,
            Some(r) => match (
                r.try_get::<Option<i64>, _>(0)?,
                r.try_get::<Option<String>, _>(1)?,
            ) {
                (_, Some(outcome)) => AckRequestState::Done(outcome),
                (Some(_), None) => AckRequestState::Claimed,
                (None, None) => AckRequestState::Waiting,
            },
        })
    }

    /// Withdraws request `id` if no leader has claimed it: `true` when it was withdrawn (so
    /// nothing will be done), `false` when a leader claimed it first.
    pub async fn withdraw_ack_request(&self, id: i64) -> sqlx::Result<bool> {
        let r = sqlx::query("DELETE FROM ack_requests WHERE id = $1 AND claimed_epoch IS NULL")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Removes request `id` once its requester has read the outcome.
    pub async fn delete_ack_request(&self, id: i64) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM ack_requests WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The requests the leader of term `epoch` has to apply, oldest first: the unclaimed ones
    /// whose requester still waits (`expires_ms` not before `now_ms`), and the ones an earlier
    /// term claimed but did not finish.
    pub async fn open_ack_requests(
        &self,
        epoch: i64,
        now_ms: i64,
    ) -> sqlx::Result<Vec<AckRequest>> {
        let rows = sqlx::query(
            "SELECT id, group_id, action, actor, via, episode_ms, audit_ts_ms, audit_entry \
             FROM ack_requests WHERE outcome IS NULL AND \
             ((claimed_epoch IS NULL AND expires_ms >= $1) OR claimed_epoch < $2) \
             ORDER BY id LIMIT 100",
        )
        .bind(now_ms)
        .bind(epoch)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| -> sqlx::Result<AckRequest> {
                let ts: Option<i64> = r.try_get(6)?;
                let entry: Option<String> = r.try_get(7)?;
                Ok(AckRequest {
                    id: r.try_get(0)?,
                    group_id: r.try_get(1)?,
                    action: r.try_get(2)?,
                    actor: r.try_get(3)?,
                    via: r.try_get(4)?,
                    episode_ms: r.try_get(5)?,
                    audit: ts.zip(entry),
                })
            })
            .collect()
    }

    /// Claims request `id` for this leader's term (fenced, [`Store::check_fence`]): `false`
    /// when it was withdrawn, finished, or claimed by this term or a later one already.
    pub async fn claim_ack_request(&self, id: i64) -> sqlx::Result<bool> {
        let epoch = self.fence_epoch().unwrap_or(0);
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        let r = sqlx::query(
            "UPDATE ack_requests SET claimed_epoch = $1 WHERE id = $2 AND outcome IS NULL \
             AND (claimed_epoch IS NULL OR claimed_epoch < $1)",
        )
        .bind(epoch)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Inside the transaction that applies request `id`: writes its outcome.
    pub(super) async fn finish_ack_request_in(
        conn: &mut AnyConnection,
        id: i64,
        outcome: &str,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        sqlx::query("UPDATE ack_requests SET outcome = $1, done_ms = $2 WHERE id = $3")
            .bind(outcome)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Writes the outcome of request `id` that was refused (nothing else changed); fenced.
    pub async fn finish_ack_request(
        &self,
        id: i64,
        outcome: &str,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        Store::finish_ack_request_in(&mut tx, id, outcome, now_ms).await?;
        tx.commit().await
    }

    /// Deletes requests finished before `before_ms` (their requester is gone) and unclaimed
    /// ones that expired before it.
    pub async fn purge_ack_requests(&self, before_ms: i64) -> sqlx::Result<u64> {
        let r = sqlx::query(
            "DELETE FROM ack_requests WHERE (done_ms IS NOT NULL AND done_ms < $1) \
             OR (claimed_epoch IS NULL AND expires_ms < $1)",
        )
        .bind(before_ms)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }
}
