//! Store access for notifications: alert groups (their timers as JSON), the delivery queue, the
//! notification log (every attempt, kept as evidence), acknowledgements, silences and the
//! server's signing secret. A flush's group states and the queue rows it creates are written in
//! one transaction, so that after a restart a notification is neither lost nor queued twice.

use sqlx::Row;

use super::{
    Store,
    audit::{Audit, commit},
};

/// A queued delivery: one notification to one target of one receiver.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueRow {
    pub id: i64,
    pub group_id: String,
    pub receiver: String,
    /// `email`, `webhook`, `dingtalk`, `wecom` or `feishu`.
    pub channel: String,
    /// Index of the target in the receiver's list for the channel.
    pub target_index: i64,
    /// The notification as JSON.
    pub payload: String,
    pub created_ms: i64,
    pub due_ms: i64,
    pub attempts: i64,
    pub fallback_done: bool,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogRow {
    pub id: i64,
    pub queue_id: i64,
    pub group_id: String,
    pub receiver: String,
    pub channel: String,
    /// Recipients or the URL's host, never a secret.
    pub target: String,
    pub tier: i64,
    /// `firing` or `resolved`.
    pub status: String,
    pub attempt: i64,
    pub attempted_ms: i64,
    pub ok: bool,
    /// SMTP reply code or HTTP status.
    pub code: Option<i64>,
    pub error: Option<String>,
}

/// An acknowledgement, unacknowledgement or resolution.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AckRow {
    pub group_id: String,
    pub action: String,
    pub actor: String,
    pub via: String,
    pub at_ms: i64,
}

/// A silence.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SilenceRow {
    pub id: String,
    /// Matchers in text form.
    pub matchers: Vec<String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub created_by: String,
    pub comment: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What happened to a queued delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Delivered: the row goes.
    Done,
    /// Failed: try again at `due_ms`.
    Retry { due_ms: i64 },
    /// Failed for good: the row goes.
    GiveUp,
}

fn queue_row(r: &sqlx::any::AnyRow) -> QueueRow {
    QueueRow {
        id: r.get(0),
        group_id: r.get(1),
        receiver: r.get(2),
        channel: r.get(3),
        target_index: r.get(4),
        payload: r.get(5),
        created_ms: r.get(6),
        due_ms: r.get(7),
        attempts: r.get(8),
        fallback_done: r.get::<i64, _>(9) != 0,
    }
}

const QUEUE_COLS: &str = "id, group_id, receiver, channel, target_index, payload, created_ms, \
                          due_ms, attempts, fallback_done";

async fn insert_queue(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    q: &QueueRow,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO notify_queue (group_id, receiver, channel, target_index, payload, created_ms, \
         due_ms, attempts, fallback_done) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&q.group_id)
    .bind(&q.receiver)
    .bind(&q.channel)
    .bind(q.target_index)
    .bind(&q.payload)
    .bind(q.created_ms)
    .bind(q.due_ms)
    .bind(q.attempts)
    .bind(i64::from(q.fallback_done))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Saved alert groups: (key, state JSON).
    pub async fn notify_groups(&self) -> sqlx::Result<Vec<(String, String)>> {
        Ok(
            sqlx::query("SELECT group_key, state FROM notify_groups ORDER BY group_key")
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        )
    }

    /// Saves group states (key, id, JSON), deletes `removed` groups and queues `queue`, all in
    /// one transaction.
    pub async fn notify_commit(
        &self,
        upserts: &[(String, String, String)],
        removed: &[String],
        queue: &[QueueRow],
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        for (key, id, json) in upserts {
            sqlx::query(
                "INSERT INTO notify_groups (group_key, group_id, state, updated_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (group_key) DO UPDATE SET \
                 state = excluded.state, updated_ms = excluded.updated_ms",
            )
            .bind(key)
            .bind(id)
            .bind(json)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        for key in removed {
            sqlx::query("DELETE FROM notify_groups WHERE group_key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        for q in queue {
            insert_queue(&mut tx, q).await?;
        }
        tx.commit().await
    }

    /// Queued deliveries due at `now_ms`, oldest first.
    pub async fn notify_due(&self, now_ms: i64, limit: i64) -> sqlx::Result<Vec<QueueRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {QUEUE_COLS} FROM notify_queue WHERE due_ms <= $1 ORDER BY due_ms, id LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(queue_row)
        .collect())
    }

    /// The whole queue.
    pub async fn notify_queue(&self) -> sqlx::Result<Vec<QueueRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {QUEUE_COLS} FROM notify_queue ORDER BY id"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(queue_row)
        .collect())
    }

    /// Holds a row until `until_ms`: for a delivery in progress (`sending`; a crash mid-send
    /// retries it then), or postponed. Returns true when another term or process had leased the
    /// row to send it and recorded no attempt: that send was in flight when it stopped, and this
    /// one may repeat it. Fenced: a replica that is no longer the leader of its term leases (and
    /// so sends) nothing.
    pub async fn notify_lease(&self, id: i64, until_ms: i64, sending: bool) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        let owner = self.lease_owner();
        let before: Option<i64> = sqlx::query("SELECT leased_by FROM notify_queue WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .and_then(|r| r.get::<Option<i64>, _>(0));
        sqlx::query("UPDATE notify_queue SET due_ms = $1, leased_by = $2 WHERE id = $3")
            .bind(until_ms)
            .bind(sending.then_some(owner))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(before.is_some_and(|b| b != owner))
    }

    /// When the next queued delivery is due.
    pub async fn notify_next_due(&self) -> sqlx::Result<Option<i64>> {
        sqlx::query("SELECT MIN(due_ms) FROM notify_queue")
            .fetch_one(self.pool())
            .await?
            .try_get::<Option<i64>, _>(0)
    }

    /// Records an attempt and its outcome; `fallback` rows are queued for the fallback receiver
    /// (and the row is marked so it happens once). One transaction.
    pub async fn notify_attempt(
        &self,
        log: &LogRow,
        outcome: &Outcome,
        fallback: &[QueueRow],
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        sqlx::query(
            "INSERT INTO notify_log (queue_id, group_id, receiver, channel, target, tier, status, \
             attempt, attempted_ms, ok, code, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(log.queue_id)
        .bind(&log.group_id)
        .bind(&log.receiver)
        .bind(&log.channel)
        .bind(&log.target)
        .bind(log.tier)
        .bind(&log.status)
        .bind(log.attempt)
        .bind(log.attempted_ms)
        .bind(i64::from(log.ok))
        .bind(log.code)
        .bind(&log.error)
        .execute(&mut *tx)
        .await?;
        match outcome {
            Outcome::Done | Outcome::GiveUp => {
                sqlx::query("DELETE FROM notify_queue WHERE id = $1")
                    .bind(log.queue_id)
                    .execute(&mut *tx)
                    .await?;
            }
            Outcome::Retry { due_ms } => {
                sqlx::query(
                    "UPDATE notify_queue SET due_ms = $1, attempts = $2, \
                     fallback_done = fallback_done + $3, leased_by = NULL WHERE id = $4",
                )
                .bind(due_ms)
                .bind(log.attempt)
                .bind(i64::from(!fallback.is_empty()))
                .bind(log.queue_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        for q in fallback {
            insert_queue(&mut tx, q).await?;
        }
        tx.commit().await
    }

    /// The notification log, newest first; only `group_id`'s when given.
    pub async fn notify_log(
        &self,
        group_id: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<LogRow>> {
        let rows = sqlx::query(
            "SELECT id, queue_id, group_id, receiver, channel, target, tier, status, attempt, \
             attempted_ms, ok, code, error FROM notify_log \
             WHERE ($1 = '' OR group_id = $1) ORDER BY attempted_ms DESC, id DESC LIMIT $2",
        )
        .bind(group_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| LogRow {
                id: r.get(0),
                queue_id: r.get(1),
                group_id: r.get(2),
                receiver: r.get(3),
                channel: r.get(4),
                target: r.get(5),
                tier: r.get(6),
                status: r.get(7),
                attempt: r.get(8),
                attempted_ms: r.get(9),
                ok: r.get::<i64, _>(10) != 0,
                code: r.get(11),
                error: r.get(12),
            })
            .collect())
    }

    /// Records an acknowledgement (or `unack`, `resolve`).
    ///
    /// Fenced ([`Store::check_fence`]): an ex-leader records nothing. With `request` (a
    /// follower's request, migration 0021: its id and the outcome to write) the request is
    /// finished in the same transaction, so its outcome and the record commit together.
    pub async fn notify_ack(
        &self,
        a: &AckRow,
        audit: Audit<'_>,
        request: Option<(i64, &str)>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        if let Some((id, outcome)) = request {
            Store::finish_ack_request_in(&mut tx, id, outcome, a.at_ms).await?;
        }
        sqlx::query(
            "INSERT INTO notify_acks (group_id, action, actor, via, at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&a.group_id)
        .bind(&a.action)
        .bind(&a.actor)
        .bind(&a.via)
        .bind(a.at_ms)
        .execute(&mut *tx)
        .await?;
        commit(tx, audit).await
    }

    /// Marks an acknowledge link (by its hash) as used; `false` when it was used before.
    pub async fn claim_ack_link(
        &self,
        token_hash: &str,
        group_id: &str,
        actor: &str,
        now_ms: i64,
    ) -> sqlx::Result<bool> {
        let r = sqlx::query(
            "INSERT INTO ack_links_used (token_hash, group_id, actor, used_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(token_hash)
        .bind(group_id)
        .bind(actor)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives a claimed link back (its acknowledgement could not be carried out).
    pub async fn release_ack_link(&self, token_hash: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM ack_links_used WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Acknowledgements of a group, oldest first.
    pub async fn notify_acks(&self, group_id: &str) -> sqlx::Result<Vec<AckRow>> {
        Ok(sqlx::query(
            "SELECT group_id, action, actor, via, at_ms FROM notify_acks WHERE group_id = $1 \
             ORDER BY at_ms, id",
        )
        .bind(group_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| AckRow {
            group_id: r.get(0),
            action: r.get(1),
            actor: r.get(2),
            via: r.get(3),
            at_ms: r.get(4),
        })
        .collect())
    }

    /// Inserts or replaces a silence.
    pub async fn put_silence(&self, s: &SilenceRow, audit: Audit<'_>) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO silences (id, matchers, starts_ms, ends_ms, created_by, comment, \
             created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, \
             starts_ms = excluded.starts_ms, ends_ms = excluded.ends_ms, \
             comment = excluded.comment, updated_ms = excluded.updated_ms",
        )
        .bind(&s.id)
        .bind(serde_json::to_string(&s.matchers).expect("strings serialize"))
        .bind(s.starts_ms)
        .bind(s.ends_ms)
        .bind(&s.created_by)
        .bind(&s.comment)
        .bind(s.created_ms)
        .bind(s.updated_ms)
        .execute(&mut *tx)
        .await?;
        commit(tx, audit).await
    }

    /// All silences, newest first.
    pub async fn silences(&self) -> sqlx::Result<Vec<SilenceRow>> {
        Ok(sqlx::query(
            "SELECT id, matchers, starts_ms, ends_ms, created_by, comment, created_ms, updated_ms \
             FROM silences ORDER BY created_ms DESC, id",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| SilenceRow {
            id: r.get(0),
            matchers: serde_json::from_str(&r.get::<String, _>(1)).unwrap_or_default(),
            starts_ms: r.get(2),
            ends_ms: r.get(3),
            created_by: r.get(4),
            comment: r.get(5),
            created_ms: r.get(6),
            updated_ms: r.get(7),
        })
        .collect())
    }

    /// The named secret, created from `fresh` on first use (the first writer wins).
    pub async fn notify_secret(
        &self,
        name: &str,
        fresh: &str,
        now_ms: i64,
    ) -> sqlx::Result<String> {
        sqlx::query(
            "INSERT INTO notify_secrets (name, value, created_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        sqlx::query("SELECT value FROM notify_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await?
            .try_get(0)
    }
}

/// A maintenance window or other exclusion and its review.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExclusionRow {
    pub id: String,
    /// `maintenance`, `force_majeure` or `buyer_caused`.
    pub kind: String,
    /// Matchers in text form (the scope).
    pub matchers: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// A time interval (JSON, Alertmanager's fields) for recurring windows.
    pub recurrence: Option<String>,
    pub reason: String,
    pub requested_by: String,
    pub requested_ms: i64,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub reviewed_by: Option<String>,
    pub reviewed_ms: Option<i64>,
    pub review_comment: Option<String>,
}

impl Store {
    pub async fn insert_exclusion(&self, e: &ExclusionRow, audit: Audit<'_>) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO exclusions (id, kind, matchers, from_ms, to_ms, recurrence, reason, \
             requested_by, requested_ms, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&e.id)
        .bind(&e.kind)
        .bind(serde_json::to_string(&e.matchers).expect("strings serialize"))
        .bind(e.from_ms)
        .bind(e.to_ms)
        .bind(&e.recurrence)
        .bind(&e.reason)
        .bind(&e.requested_by)
        .bind(e.requested_ms)
        .bind(&e.status)
        .execute(&mut *tx)
        .await?;
        commit(tx, audit).await
    }

    /// Approves or rejects a pending exclusion; false when it is not pending.
    pub async fn review_exclusion(
        &self,
        id: &str,
        status: &str,
        by: &str,
        comment: Option<&str>,
        now_ms: i64,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE exclusions SET status = $1, reviewed_by = $2, reviewed_ms = $3, \
             review_comment = $4 WHERE id = $5 AND status = 'pending'",
        )
        .bind(status)
        .bind(by)
        .bind(now_ms)
        .bind(comment)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        commit(tx, audit).await?;
        Ok(true)
    }

    /// All exclusions, newest request first.
    pub async fn exclusions(&self) -> sqlx::Result<Vec<ExclusionRow>> {
        Ok(sqlx::query(
            "SELECT id, kind, matchers, from_ms, to_ms, recurrence, reason, requested_by, \
             requested_ms, status, reviewed_by, reviewed_ms, review_comment FROM exclusions \
             ORDER BY requested_ms DESC, id",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| ExclusionRow {
            id: r.get(0),
            kind: r.get(1),
            matchers: serde_json::from_str(&r.get::<String, _>(2)).unwrap_or_default(),
            from_ms: r.get(3),
            to_ms: r.get(4),
            recurrence: r.get(5),
            reason: r.get(6),
            requested_by: r.get(7),
            requested_ms: r.get(8),
            status: r.get(9),
            reviewed_by: r.get(10),
            reviewed_ms: r.get(11),
            review_comment: r.get(12),
        })
        .collect())
    }
}
