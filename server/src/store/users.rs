//! Store access for console users, their sessions and API tokens. Roles and scopes are kept as
//! text here; password hashing, secrets and the policy are the auth service's.

use sqlx::{Row, any::AnyRow};

use super::{
    Store,
    audit::{Audit, commit},
};

/// One `users` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub failed_count: i64,
    pub locked_until_ms: Option<i64>,
    pub disabled: bool,
    pub created_ms: i64,
    pub password_set_ms: i64,
}

/// A session joined with its user's role and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id_hash: String,
    pub user: String,
    pub role: String,
    pub disabled: bool,
    pub csrf_token: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub expires_ms: i64,
}

/// One `api_tokens` row (without its hash); `scopes` is a JSON array of permission names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub name: String,
    pub role: String,
    pub scopes: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked: bool,
    /// The user the token belongs to; `None` for a service token.
    pub user: Option<String>,
}

/// The user a token belongs to, as it is now (`None` in [`Store::token_by_hash`]'s answer
/// when that user no longer exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwnerRow {
    pub role: String,
    pub disabled: bool,
}

const TOKEN_COLUMNS: &str =
    "t.name, t.role, t.scopes, t.created_ms, t.expires_ms, t.revoked, t.user_name";

const USER_COLUMNS: &str = "name, role, password_hash, failed_count, locked_until_ms, disabled, \
                            created_ms, password_set_ms";

fn user_from(r: &AnyRow) -> UserRow {
    UserRow {
        name: r.get(0),
        role: r.get(1),
        password_hash: r.get(2),
        failed_count: r.get(3),
        locked_until_ms: r.get(4),
        disabled: r.get::<i64, _>(5) != 0,
        created_ms: r.get(6),
        password_set_ms: r.get(7),
    }
}

fn token_from(r: &AnyRow) -> TokenRow {
    TokenRow {
        name: r.get(0),
        role: r.get(1),
        scopes: r.get(2),
        created_ms: r.get(3),
        expires_ms: r.get(4),
        revoked: r.get::<i64, _>(5) != 0,
        user: r.get(6),
    }
}

impl Store {
    pub async fn user(&self, name: &str) -> sqlx::Result<Option<UserRow>> {
        let r = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(user_from))
    }

    pub async fn users(&self) -> sqlx::Result<Vec<UserRow>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(user_from).collect())
    }

    /// Inserts a new user (unlocked, enabled) whose password was set at `now_ms`.
    pub async fn insert_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        now_ms: i64,
        audit: Audit<'_>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO users (name, role, password_hash, failed_count, disabled, created_ms, \
             password_set_ms) VALUES ($1, $2, $3, 0, 0, $4, $4)",
        )
        .bind(name)
        .bind(role)
        .bind(password_hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        commit(tx, audit).await
    }

    /// Sets a password hash and clears any lock; returns the rows changed.
    pub async fn set_password_hash(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
        audit: Audit<'_>,
    ) -> sqlx::Result<u64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE users SET password_hash = $1, password_set_ms = $2, failed_count = 0, \
             locked_until_ms = NULL WHERE name = $3",
        )
        .bind(password_hash)
        .bind(now_ms)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            commit(tx, audit).await?;
        }
        Ok(n)
    }

    /// Returns the rows changed.
    pub async fn set_user_disabled(
        &self,
        name: &str,
        disabled: bool,
        audit: Audit<'_>,
    ) -> sqlx::Result<u64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
            .bind(i64::from(disabled))
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            commit(tx, audit).await?;
        }
        Ok(n)
    }

    /// Clears the failure count and any lock; returns the rows changed.
    pub async fn clear_user_lock(&self, name: &str, audit: Audit<'_>) -> sqlx::Result<u64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE users SET failed_count = 0, locked_until_ms = NULL WHERE name = $1",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            commit(tx, audit).await?;
        }
        Ok(n)
    }

    /// Counts a failed login; returns the failures in a row so far.
    pub async fn count_user_failure(&self, name: &str) -> sqlx::Result<i64> {
        let r = sqlx::query(
            "UPDATE users SET failed_count = failed_count + 1 WHERE name = $1 RETURNING failed_count",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(r.get(0))
    }

    /// Reserves one password check for `name` before the password is verified, in one atomic
    /// statement (so concurrent logins, in this process or another, never check more than
    /// `limit` guesses in a lock window): refused (`None`) while the account is locked;
    /// otherwise the failure count goes up by one (restarting at 1 after an expired lock) and
    /// returns, and the reservation that reaches `limit` locks the account until `until_ms` at
    /// once — a right password clears the lock again ([`Store::clear_user_lock`]).
    pub async fn reserve_login_attempt(
        &self,
        name: &str,
        limit: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> sqlx::Result<Option<i64>> {
        let r = sqlx::query(
            "UPDATE users SET \
             failed_count = CASE WHEN locked_until_ms IS NOT NULL AND locked_until_ms <= $3 \
                 THEN 1 ELSE failed_count + 1 END, \
             locked_until_ms = CASE WHEN (CASE WHEN locked_until_ms IS NOT NULL \
                 AND locked_until_ms <= $3 THEN 1 ELSE failed_count + 1 END) >= $2 \
                 THEN $4 ELSE NULL END \
             WHERE name = $1 AND (locked_until_ms IS NULL OR locked_until_ms <= $3) \
             RETURNING failed_count",
        )
        .bind(name)
        .bind(limit)
        .bind(now_ms)
        .bind(until_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| r.get(0)))
    }

    /// Locks `name` until `until_ms` and restarts the failure count.
    pub async fn lock_user(&self, name: &str, until_ms: i64) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET locked_until_ms = $1, failed_count = 0 WHERE name = $2")
            .bind(until_ms)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Inserts a session (by the hash of its id) created and last seen at `now_ms`.
    pub async fn insert_session(
        &self,
        id_hash: &str,
        user: &str,
        csrf_token: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_name, csrf_token, created_ms, last_seen_ms, \
             expires_ms) VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(id_hash)
        .bind(user)
        .bind(csrf_token)
        .bind(now_ms)
        .bind(expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, id_hash: &str) -> sqlx::Result<Option<SessionRow>> {
        let r = sqlx::query(
            "SELECT s.id_hash, s.user_name, u.role, u.disabled, s.csrf_token, s.created_ms, \
             s.last_seen_ms, s.expires_ms FROM sessions s JOIN users u ON u.name = s.user_name \
             WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| SessionRow {
            id_hash: r.get(0),
            user: r.get(1),
            role: r.get(2),
            disabled: r.get::<i64, _>(3) != 0,
            csrf_token: r.get(4),
            created_ms: r.get(5),
            last_seen_ms: r.get(6),
            expires_ms: r.get(7),
        }))
    }

    pub async fn touch_session(&self, id_hash: &str, now_ms: i64) -> sqlx::Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_ms = $1 WHERE id_hash = $2")
            .bind(now_ms)
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes sessions that expired at `now_ms` or were last seen before `idle_before_ms`.
    pub async fn purge_sessions(&self, now_ms: i64, idle_before_ms: i64) -> sqlx::Result<u64> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1 OR last_seen_ms < $2")
                .bind(now_ms)
                .bind(idle_before_ms)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    pub async fn delete_user_sessions(&self, user: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Inserts an API token (by the hash of its secret), not revoked.
    pub async fn insert_token(
        &self,
        token_hash: &str,
        row: &TokenRow,
        audit: Audit<'_>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, name, role, scopes, created_ms, expires_ms, \
             revoked, user_name) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        )
        .bind(token_hash)
        .bind(&row.name)
        .bind(&row.role)
        .bind(&row.scopes)
        .bind(row.created_ms)
        .bind(row.expires_ms)
        .bind(row.user.as_deref())
        .execute(&mut *tx)
        .await?;
        commit(tx, audit).await
    }

    /// Returns the rows changed.
    pub async fn revoke_token(&self, name: &str, audit: Audit<'_>) -> sqlx::Result<u64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            commit(tx, audit).await?;
        }
        Ok(n)
    }

    /// The token whose secret hashes to `token_hash`, if any (revoked and expired included),
    /// with its user's current role and state when it belongs to one that still exists.
    pub async fn token_by_hash(
        &self,
        token_hash: &str,
    ) -> sqlx::Result<Option<(TokenRow, Option<TokenOwnerRow>)>> {
        let r = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS}, u.role, u.disabled FROM api_tokens t \
             LEFT JOIN users u ON u.name = t.user_name WHERE t.token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| {
            let owner = r.get::<Option<String>, _>(7).map(|role| TokenOwnerRow {
                role,
                disabled: r.get::<Option<i64>, _>(8).unwrap_or(1) != 0,
            });
            (token_from(&r), owner)
        }))
    }

    pub async fn tokens(&self) -> sqlx::Result<Vec<TokenRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t ORDER BY t.name"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(token_from).collect())
    }
}

impl Store {
    /// Takes one token from the shared login bucket of `source` (see migration 0024): a
    /// bucket of `burst` tokens refilled at `per_ms` tokens a millisecond, as of `now_ms`.
    /// Returns `Ok(None)` when there was a token, else `Ok(Some(ms until the next one))`.
    /// One statement, so concurrent attempts on several replicas each see the other's draw.
    /// PostgreSQL only (a single SQLite node has only its in-memory bucket).
    pub async fn take_login_token(
        &self,
        source: &str,
        burst: f64,
        per_ms: f64,
        now_ms: i64,
    ) -> sqlx::Result<Option<i64>> {
        let refilled = "LEAST($2, login_buckets.tokens \
             + GREATEST($3 - login_buckets.last_ms, 0) * $4)";
        let sql = format!(
            "INSERT INTO login_buckets (source, tokens, last_ms, taken) VALUES ($1, $2 - 1, $3, TRUE) \
             ON CONFLICT (source) DO UPDATE SET \
             tokens = CASE WHEN {refilled} >= 1 THEN {refilled} - 1 ELSE {refilled} END, \
             taken = {refilled} >= 1, \
             last_ms = GREATEST(login_buckets.last_ms, $3) \
             RETURNING taken, tokens"
        );
        let row = sqlx::query(&sql)
            .bind(source)
            .bind(burst)
            .bind(now_ms)
            .bind(per_ms)
            .fetch_one(&self.pool)
            .await?;
        let taken: bool = row.get(0);
        let tokens: f64 = row.get(1);
        Ok((!taken).then(|| ((1.0 - tokens) / per_ms).ceil().max(1.0) as i64))
    }

    /// Deletes the shared login buckets untouched since `before_ms` (full again by then).
    pub async fn forget_login_buckets(&self, before_ms: i64) -> sqlx::Result<u64> {
        Ok(sqlx::query("DELETE FROM login_buckets WHERE last_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
