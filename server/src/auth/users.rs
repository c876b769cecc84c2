//! Users, sessions and API tokens in the store: argon2 password hashes, the password policy,
//! random secrets that are stored only as SHA-256 hashes.

use rand::RngCore;
use serde::Serialize;
use sqlx::Row;

use super::{Perm, Role};
use crate::store::Store;

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error(
        "must contain at least three of: lower-case letters, upper-case letters, digits, symbols"
    )]
    TooSimple,
    #[error("must not contain the user name")]
    ContainsName,
}

/// Shortest accepted password.
pub const MIN_PASSWORD_LEN: usize = 10;

/// The password policy (等保 2.0 三级: complexity).
pub fn check_password(name: &str, password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|&&b| b).count() < 3 {
        return Err(PasswordError::TooSimple);
    }
    if !name.is_empty() && password.to_lowercase().contains(&name.to_lowercase()) {
        return Err(PasswordError::ContainsName);
    }
    Ok(())
}

/// A password that passes the policy, for the CLI and quickstart to print once.
pub fn generate_password() -> String {
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"-_.+=";
    let mut rng = rand::rngs::OsRng;
    let mut pick = |set: &[u8]| set[(rng.next_u32() as usize) % set.len()] as char;
    let mut out = String::new();
    for i in 0..16 {
        let set = match i % 8 {
            3 => DIGIT,
            5 => UPPER,
            7 => SYMBOL,
            _ => LOWER,
        };
        out.push(pick(set));
    }
    out
}

pub use crate::secret::{random_secret, secret_hash};

/// Argon2id hash in PHC string format. CPU-heavy: call from `spawn_blocking` in handlers.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::{PasswordHasher, password_hash::SaltString};
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// True when `password` matches the stored PHC `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A console user.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    #[serde(skip)]
    pub password_hash: String,
    pub failed_count: i64,
    pub locked_until_ms: Option<i64>,
    pub disabled: bool,
    pub created_ms: i64,
    pub password_set_ms: i64,
}

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} already exists")]
    Exists(String),
    #[error("no user {0:?}")]
    NotFound(String),
    #[error("user name must be 1-64 letters, digits, '.', '_' or '-'")]
    BadName,
    #[error("password {0}")]
    Password(PasswordError),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<PasswordError> for UserError {
    fn from(e: PasswordError) -> UserError {
        UserError::Password(e)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

const USER_COLUMNS: &str = "name, role, password_hash, failed_count, locked_until_ms, disabled, \
                            created_ms, password_set_ms";

fn user_from(r: &sqlx::any::AnyRow) -> User {
    User {
        name: r.get(0),
        role: Role::parse(&r.get::<String, _>(1)).unwrap_or(Role::Auditor),
        password_hash: r.get(2),
        failed_count: r.get(3),
        locked_until_ms: r.get(4),
        disabled: r.get::<i64, _>(5) != 0,
        created_ms: r.get(6),
        password_set_ms: r.get(7),
    }
}

pub async fn user(store: &Store, name: &str) -> sqlx::Result<Option<User>> {
    let r = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
        .bind(name)
        .fetch_optional(store.pool())
        .await?;
    Ok(r.as_ref().map(user_from))
}

pub async fn users(store: &Store) -> sqlx::Result<Vec<User>> {
    let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
        .fetch_all(store.pool())
        .await?;
    Ok(rows.iter().map(user_from).collect())
}

/// Adds a user after checking the name and the password policy.
pub async fn add_user(
    store: &Store,
    name: &str,
    role: Role,
    password: &str,
    now_ms: i64,
) -> Result<(), UserError> {
    if !valid_name(name) {
        return Err(UserError::BadName);
    }
    check_password(name, password)?;
    if user(store, name).await?.is_some() {
        return Err(UserError::Exists(name.into()));
    }
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(anyhow::Error::from)??;
    sqlx::query(
        "INSERT INTO users (name, role, password_hash, failed_count, disabled, created_ms, \
         password_set_ms) VALUES ($1, $2, $3, 0, 0, $4, $4)",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(hash)
    .bind(now_ms)
    .execute(store.pool())
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(_) => UserError::Exists(name.into()),
        e => UserError::Store(e),
    })?;
    Ok(())
}

/// Sets a new password (policy checked), clears any lock, and ends the user's sessions.
pub async fn set_password(
    store: &Store,
    name: &str,
    password: &str,
    now_ms: i64,
) -> Result<(), UserError> {
    check_password(name, password)?;
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(anyhow::Error::from)??;
    let n = sqlx::query(
        "UPDATE users SET password_hash = $1, password_set_ms = $2, failed_count = 0, \
         locked_until_ms = NULL WHERE name = $3",
    )
    .bind(hash)
    .bind(now_ms)
    .bind(name)
    .execute(store.pool())
    .await?
    .rows_affected();
    if n == 0 {
        return Err(UserError::NotFound(name.into()));
    }
    end_sessions(store, name).await?;
    Ok(())
}

/// Disables (ending every session) or re-enables a user.
pub async fn set_disabled(store: &Store, name: &str, disabled: bool) -> Result<(), UserError> {
    let n = sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
        .bind(i64::from(disabled))
        .bind(name)
        .execute(store.pool())
        .await?
        .rows_affected();
    if n == 0 {
        return Err(UserError::NotFound(name.into()));
    }
    if disabled {
        end_sessions(store, name).await?;
    }
    Ok(())
}

/// Clears a lockout.
pub async fn unlock(store: &Store, name: &str) -> Result<(), UserError> {
    let n =
        sqlx::query("UPDATE users SET failed_count = 0, locked_until_ms = NULL WHERE name = $1")
            .bind(name)
            .execute(store.pool())
            .await?
            .rows_affected();
    if n == 0 {
        return Err(UserError::NotFound(name.into()));
    }
    Ok(())
}

/// Counts a failed login; returns the failures in a row so far.
pub async fn count_failure(store: &Store, name: &str) -> sqlx::Result<i64> {
    let r = sqlx::query(
        "UPDATE users SET failed_count = failed_count + 1 WHERE name = $1 RETURNING failed_count",
    )
    .bind(name)
    .fetch_one(store.pool())
    .await?;
    Ok(r.get(0))
}

/// Locks `name` until `until_ms` and restarts the failure count.
pub async fn lock(store: &Store, name: &str, until_ms: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET locked_until_ms = $1, failed_count = 0 WHERE name = $2")
        .bind(until_ms)
        .bind(name)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// A logged-in session, as looked up by its id.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub user: String,
    pub role: Role,
    pub disabled: bool,
    pub csrf_token: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub expires_ms: i64,
}

/// Starts a session; returns `(session id, csrf token)`. Only the id's hash is stored.
pub async fn create_session(
    store: &Store,
    user: &str,
    now_ms: i64,
    lifetime_ms: i64,
) -> sqlx::Result<(String, String)> {
    let id = random_secret();
    let csrf = random_secret();
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_name, csrf_token, created_ms, last_seen_ms, \
         expires_ms) VALUES ($1, $2, $3, $4, $4, $5)",
    )
    .bind(secret_hash(&id))
    .bind(user)
    .bind(&csrf)
    .bind(now_ms)
    .bind(now_ms + lifetime_ms)
    .execute(store.pool())
    .await?;
    sqlx::query("UPDATE users SET failed_count = 0, locked_until_ms = NULL WHERE name = $1")
        .bind(user)
        .execute(store.pool())
        .await?;
    Ok((id, csrf))
}

pub async fn session(store: &Store, id: &str) -> sqlx::Result<Option<Session>> {
    let r = sqlx::query(
        "SELECT s.id_hash, s.user_name, u.role, u.disabled, s.csrf_token, s.created_ms, \
         s.last_seen_ms, s.expires_ms FROM sessions s JOIN users u ON u.name = s.user_name \
         WHERE s.id_hash = $1",
    )
    .bind(secret_hash(id))
    .fetch_optional(store.pool())
    .await?;
    Ok(r.map(|r| Session {
        id_hash: r.get(0),
        user: r.get(1),
        role: Role::parse(&r.get::<String, _>(2)).unwrap_or(Role::Auditor),
        disabled: r.get::<i64, _>(3) != 0,
        csrf_token: r.get(4),
        created_ms: r.get(5),
        last_seen_ms: r.get(6),
        expires_ms: r.get(7),
    }))
}

pub async fn touch_session(store: &Store, id_hash: &str, now_ms: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE sessions SET last_seen_ms = $1 WHERE id_hash = $2")
        .bind(now_ms)
        .bind(id_hash)
        .execute(store.pool())
        .await?;
    Ok(())
}

pub async fn end_session(store: &Store, id_hash: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Deletes sessions that have expired or sat idle longer than `idle_ms`.
pub async fn purge_sessions(store: &Store, now_ms: i64, idle_ms: i64) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1 OR last_seen_ms < $2")
            .bind(now_ms)
            .bind(now_ms - idle_ms)
            .execute(store.pool())
            .await?
            .rows_affected(),
    )
}

pub async fn end_sessions(store: &Store, user: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE user_name = $1")
        .bind(user)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// An API token for automation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    /// Permissions the token is limited to (within its role's); empty means all of the role's.
    pub scopes: Vec<Perm>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked: bool,
}

/// Creates a token and returns its secret (shown once; only its hash is stored).
pub async fn create_token(
    store: &Store,
    name: &str,
    role: Role,
    scopes: &[Perm],
    expires_ms: Option<i64>,
    now_ms: i64,
) -> Result<String, UserError> {
    if !valid_name(name) {
        return Err(UserError::BadName);
    }
    let secret = format!("ywt_{}", random_secret());
    let scopes: Vec<&str> = scopes.iter().map(|p| p.as_str()).collect();
    sqlx::query(
        "INSERT INTO api_tokens (token_hash, name, role, scopes, created_ms, expires_ms, revoked) \
         VALUES ($1, $2, $3, $4, $5, $6, 0)",
    )
    .bind(secret_hash(&secret))
    .bind(name)
    .bind(role.as_str())
    .bind(serde_json::to_string(&scopes).map_err(anyhow::Error::from)?)
    .bind(now_ms)
    .bind(expires_ms)
    .execute(store.pool())
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(_) => UserError::Exists(name.into()),
        e => UserError::Store(e),
    })?;
    Ok(secret)
}

pub async fn revoke_token(store: &Store, name: &str) -> Result<(), UserError> {
    let n = sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE name = $1")
        .bind(name)
        .execute(store.pool())
        .await?
        .rows_affected();
    if n == 0 {
        return Err(UserError::NotFound(name.into()));
    }
    Ok(())
}

fn token_from(r: &sqlx::any::AnyRow) -> Token {
    let scopes: Vec<String> = serde_json::from_str(&r.get::<String, _>(2)).unwrap_or_default();
    Token {
        name: r.get(0),
        role: Role::parse(&r.get::<String, _>(1)).unwrap_or(Role::Auditor),
        scopes: scopes.iter().filter_map(|s| Perm::parse(s)).collect(),
        created_ms: r.get(3),
        expires_ms: r.get(4),
        revoked: r.get::<i64, _>(5) != 0,
    }
}

/// The token whose secret is `secret`, if any (revoked and expired ones included).
pub async fn token_by_secret(store: &Store, secret: &str) -> sqlx::Result<Option<Token>> {
    let r = sqlx::query(
        "SELECT name, role, scopes, created_ms, expires_ms, revoked FROM api_tokens \
         WHERE token_hash = $1",
    )
    .bind(secret_hash(secret))
    .fetch_optional(store.pool())
    .await?;
    Ok(r.as_ref().map(token_from))
}

pub async fn tokens(store: &Store) -> sqlx::Result<Vec<Token>> {
    let rows = sqlx::query(
        "SELECT name, role, scopes, created_ms, expires_ms, revoked FROM api_tokens ORDER BY name",
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows.iter().map(token_from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        assert_eq!(check_password("li", "Ab1-"), Err(PasswordError::TooShort));
        assert_eq!(
            check_password("li", "abcdefghijkl"),
            Err(PasswordError::TooSimple)
        );
        assert_eq!(
            check_password("zhangsan", "Zhangsan-2026"),
            Err(PasswordError::ContainsName)
        );
        assert_eq!(check_password("li", "Correct-Horse-9"), Ok(()));
        for _ in 0..20 {
            let p = generate_password();
            assert_eq!(check_password("admin", &p), Ok(()), "{p}");
        }
    }

    #[test]
    fn argon2_hashes_verify_only_the_right_password() {
        let h = hash_password("Correct-Horse-9").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("Correct-Horse-9", &h));
        assert!(!verify_password("correct-horse-9", &h));
        assert!(!verify_password("Correct-Horse-9", "not a hash"));
    }
}
