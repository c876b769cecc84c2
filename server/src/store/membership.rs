//! Contract membership rows (`memberships`) and the subjects the membership pass has seen
//! (`membership_seen`). See `crate::membership`.

use sqlx::Row;

use super::{
    Store,
    audit::{Audit, commit},
};

/// One assignment of a subject to a contract system over `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MembershipRow {
    pub id: i64,
    pub contract_id: String,
    pub system_id: String,
    /// `host` or `probe`.
    pub kind: String,
    /// An agent id, or `<agent id>/<probe name>`.
    pub subject: String,
    pub from_ms: i64,
    pub to_ms: Option<i64>,
    pub assigned_by: String,
    pub assigned_ms: i64,
    pub reason: String,
    pub ended_by: Option<String>,
    pub ended_ms: Option<i64>,
    pub end_reason: Option<String>,
}

const COLUMNS: &str = "id, contract_id, system_id, kind, subject, from_ms, to_ms, assigned_by, \
                       assigned_ms, reason, ended_by, ended_ms, end_reason";

fn from_row(r: &sqlx::any::AnyRow) -> MembershipRow {
    MembershipRow {
        id: r.get(0),
        contract_id: r.get(1),
        system_id: r.get(2),
        kind: r.get(3),
        subject: r.get(4),
        from_ms: r.get(5),
        to_ms: r.get(6),
        assigned_by: r.get(7),
        assigned_ms: r.get(8),
        reason: r.get(9),
        ended_by: r.get(10),
        ended_ms: r.get(11),
        end_reason: r.get(12),
    }
}

impl Store {
    /// Every membership row of a contract (history included), oldest first.
    pub async fn memberships(&self, contract_id: &str) -> sqlx::Result<Vec<MembershipRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM memberships WHERE contract_id = $1 ORDER BY from_ms, id"
        ))
        .bind(contract_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Stores a new assignment; returns its id.
    pub async fn insert_membership(
        &self,
        m: &MembershipRow,
        audit: Audit<'_>,
    ) -> sqlx::Result<i64> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "INSERT INTO memberships (contract_id, system_id, kind, subject, from_ms, to_ms, \
             assigned_by, assigned_ms, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&m.contract_id)
        .bind(&m.system_id)
        .bind(&m.kind)
        .bind(&m.subject)
        .bind(m.from_ms)
        .bind(m.to_ms)
        .bind(&m.assigned_by)
        .bind(m.assigned_ms)
        .bind(&m.reason)
        .fetch_one(&mut *tx)
        .await?;
        let id = row.try_get(0)?;
        commit(tx, audit).await?;
        Ok(id)
    }

    /// Ends the open assignment `id` at `to_ms`; `false` when it is not open (any more).
    pub async fn end_membership(
        &self,
        id: i64,
        to_ms: i64,
        by: &str,
        at_ms: i64,
        reason: &str,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE memberships SET to_ms = $1, ended_by = $2, ended_ms = $3, end_reason = $4 \
             WHERE id = $5 AND to_ms IS NULL",
        )
        .bind(to_ms)
        .bind(by)
        .bind(at_ms)
        .bind(reason)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        commit(tx, audit).await?;
        Ok(true)
    }

    /// Subjects (kind, subject) the membership pass has seen for a contract.
    pub async fn membership_seen(&self, contract_id: &str) -> sqlx::Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT kind, subject FROM membership_seen WHERE contract_id = $1")
            .bind(contract_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Records that the membership pass saw a subject; `false` when it was seen already (by
    /// this process or another), so exactly one pass acts on a subject's first sight.
    pub async fn mark_membership_seen(
        &self,
        contract_id: &str,
        kind: &str,
        subject: &str,
        now_ms: i64,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO membership_seen (contract_id, kind, subject, seen_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (contract_id, kind, subject) DO NOTHING",
        )
        .bind(contract_id)
        .bind(kind)
        .bind(subject)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Each subject of `kind` with a stored status interval, and the start of its first one
    /// (when it was first observed).
    pub async fn first_observations(&self, kind: &str) -> sqlx::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT subject, MIN(start_ms) FROM status_intervals WHERE kind = $1 GROUP BY subject",
        )
        .bind(kind)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
