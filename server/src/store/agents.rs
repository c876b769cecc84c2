//! Agent credentials: revoked agent tokens and the rotated enrollment secret (migration 16).

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::{
    Store,
    audit::{Audit, commit},
};

impl Store {
    /// Revoked agents: agent id → when the token was revoked.
    pub async fn revoked_agents(&self) -> sqlx::Result<HashMap<String, i64>> {
        let rows =
            sqlx::query("SELECT agent_id, revoked_ms FROM agents WHERE revoked_ms IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The agent whose unrevoked token has this hash (SHA-256, hex), if any: how a replica
    /// accepts an agent enrolled through another replica.
    pub async fn agent_by_token(&self, token_hash: &str) -> sqlx::Result<Option<String>> {
        Ok(
            sqlx::query("SELECT agent_id FROM agents WHERE token_hash = $1 AND revoked_ms IS NULL")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0)),
        )
    }

    /// Revokes the agent's token at `now_ms`; `false` when there is no such agent or its token
    /// was revoked already.
    pub async fn revoke_agent(
        &self,
        agent_id: &str,
        now_ms: i64,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE agents SET revoked_ms = $1 WHERE agent_id = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(agent_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        commit(tx, audit).await?;
        Ok(true)
    }

    /// The hash of the rotated enrollment secret and when it was made, if one was.
    pub async fn enrollment_secret_hash(&self) -> sqlx::Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT secret_hash, rotated_ms FROM enrollment_secret WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Replaces the enrollment secret by the one hashing to `secret_hash`.
    pub async fn set_enrollment_secret_hash(
        &self,
        secret_hash: &str,
        now_ms: i64,
        audit: Audit<'_>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO enrollment_secret (id, secret_hash, rotated_ms) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, \
             rotated_ms = excluded.rotated_ms",
        )
        .bind(secret_hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        commit(tx, audit).await
    }
}

/// Which of `agent_ids` have their token revoked, read inside the writer's transaction (so a
/// batch is never stored after the revocation committed).
pub async fn revoked_among(
    conn: &mut AnyConnection,
    agent_ids: &[&str],
) -> sqlx::Result<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    for chunk in agent_ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT agent_id FROM agents WHERE revoked_ms IS NOT NULL AND agent_id IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for a in chunk {
            q = q.bind(*a);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(r.get(0));
        }
    }
    Ok(out)
}
