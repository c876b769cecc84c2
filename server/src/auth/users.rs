//! Users, sessions and API tokens in the store: argon2 password hashes, the password policy,
//! random secrets that are stored only as SHA-256 hashes.

use super::{Perm, Role};
use crate::store::{
    Store,
    audit::Audit,
    users::{TokenRow, UserRow},
};
use rand::RngCore;
use serde::Serialize;

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
    #[error("user {0:?} is disabled")]
    Disabled(String),
    #[error("password {0}")]
    Password(PasswordError),
    #[error("scopes: {0}")]
    Scope(ScopeError),
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

fn user_from(r: UserRow) -> User {
    User {
        name: r.name,
        role: Role::parse(&r.role).unwrap_or(Role::Auditor),
        password_hash: r.password_hash,
        failed_count: r.failed_count,
        locked_until_ms: r.locked_until_ms,
        disabled: r.disabled,
        created_ms: r.created_ms,
        password_set_ms: r.password_set_ms,
    }
}

pub async fn user(store: &Store, name: &str) -> sqlx::Result<Option<User>> {
    Ok(store.user(name).await?.map(user_from))
}

pub async fn users(store: &Store) -> sqlx::Result<Vec<User>> {
    Ok(store.users().await?.into_iter().map(user_from).collect())
}

/// Adds a user after checking the name and the password policy (set-up and tests; an action
/// someone takes is [`add_user_audited`]).
pub async fn add_user(
    store: &Store,
    name: &str,
    role: Role,
    password: &str,
    now_ms: i64,
) -> Result<(), UserError> {
    add_user_audited(store, name, role, password, now_ms, None).await
}

/// [`add_user`], with `audit` committed in the same transaction as the new user.
pub async fn add_user_audited(
    store: &Store,
    name: &str,
    role: Role,
    password: &str,
    now_ms: i64,
    audit: Audit<'_>,
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
    store
        .insert_user(name, role.as_str(), &hash, now_ms, audit)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => UserError::Exists(name.into()),
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
    audit: Audit<'_>,
) -> Result<(), UserError> {
    check_password(name, password)?;
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(anyhow::Error::from)??;
    let n = store.set_password_hash(name, &hash, now_ms, audit).await?;
    if n == 0 {
        return Err(UserError::NotFound(name.into()));
    }
    end_sessions(store, name).await?;
    Ok(())
}

/// Disables (ending every session) or re-enables a user.
pub async fn set_disabled(
    store: &Store,
    name: &str,
    disabled: bool,
    audit: Audit<'_>,
) -> Result<(), UserError> {
    let n = store.set_user_disabled(name, disabled, audit).await?;
    if n == 0 {
        return Err(UserError::NotFound(name.into()));
    }
    if disabled {
        end_sessions(store, name).await?;
    }
    Ok(())
}

/// Clears a lockout.
pub async fn unlock(store: &Store, name: &str, audit: Audit<'_>) -> Result<(), UserError> {
    let n = store.clear_user_lock(name, audit).await?;
    if n == 0 {
        return Err(UserError::NotFound(name.into()));
    }
    Ok(())
}

/// Counts a failed login; returns the failures in a row so far.
pub async fn count_failure(store: &Store, name: &str) -> sqlx::Result<i64> {
    store.count_user_failure(name).await
}

/// Reserves a password check for `name` before verifying it (see
/// [`Store::reserve_login_attempt`]): `None` while the account is locked or its last allowed
/// guesses are being checked; otherwise the failures in a row this guess will make if wrong.
/// Reaching `limit` locks the account until `until_ms` at once; a right password then clears it
/// ([`create_session`]).
pub async fn reserve_login_attempt(
    store: &Store,
    name: &str,
    limit: u32,
    now_ms: i64,
    until_ms: i64,
) -> sqlx::Result<Option<i64>> {
    store
        .reserve_login_attempt(name, i64::from(limit), now_ms, until_ms)
        .await
}

/// The bounded pool of password checks for logins: at most `permits` argon2 verifications
/// (each about 19 MiB) run at once, each on a blocking thread. A caller first takes a permit
/// with [`PasswordChecks::try_permit`] (none left: answer "too many requests"), then passes it
/// to [`PasswordChecks::verify`], which holds it until the hash is done even if the caller
/// goes away.
pub struct PasswordChecks {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl PasswordChecks {
    pub fn new(permits: usize) -> PasswordChecks {
        PasswordChecks {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(permits)),
        }
    }

    /// A permit for one check, or `None` when every permit is in use.
    pub fn try_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Verifies `password` against the PHC `hash` on a blocking thread, holding `permit`.
    pub async fn verify(
        permit: tokio::sync::OwnedSemaphorePermit,
        password: String,
        hash: String,
    ) -> anyhow::Result<bool> {
        Ok(tokio::task::spawn_blocking(move || {
            let ok = verify_password(&password, &hash);
            drop(permit);
            ok
        })
        .await?)
    }
}

/// Locks `name` until `until_ms` and restarts the failure count.
pub async fn lock(store: &Store, name: &str, until_ms: i64) -> sqlx::Result<()> {
    store.lock_user(name, until_ms).await
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
    store
        .insert_session(&secret_hash(&id), user, &csrf, now_ms, now_ms + lifetime_ms)
        .await?;
    store.clear_user_lock(user, None).await?;
    Ok((id, csrf))
}

pub async fn session(store: &Store, id: &str) -> sqlx::Result<Option<Session>> {
    let r = store.session(&secret_hash(id)).await?;
    Ok(r.map(|r| Session {
        id_hash: r.id_hash,
        user: r.user,
        role: Role::parse(&r.role).unwrap_or(Role::Auditor),
        disabled: r.disabled,
        csrf_token: r.csrf_token,
        created_ms: r.created_ms,
        last_seen_ms: r.last_seen_ms,
        expires_ms: r.expires_ms,
    }))
}

pub async fn touch_session(store: &Store, id_hash: &str, now_ms: i64) -> sqlx::Result<()> {
    store.touch_session(id_hash, now_ms).await
}

pub async fn end_session(store: &Store, id_hash: &str) -> sqlx::Result<()> {
    store.delete_session(id_hash).await
}

/// Deletes sessions that have expired or sat idle longer than `idle_ms`.
pub async fn purge_sessions(store: &Store, now_ms: i64, idle_ms: i64) -> sqlx::Result<u64> {
    store.purge_sessions(now_ms, now_ms - idle_ms).await
}

pub async fn end_sessions(store: &Store, user: &str) -> sqlx::Result<()> {
    store.delete_user_sessions(user).await
}

/// An API token for automation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    /// Permissions the token is limited to (within its role's); empty means all of the role's.
    pub scopes: Vec<Perm>,
    /// Stored scopes that name no permission (or a scope list that does not parse): such a
    /// token grants nothing rather than falling back to its whole role.
    #[serde(skip)]
    pub unknown_scopes: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked: bool,
    /// The user the token belongs to; `None` for a service token.
    pub user: Option<String>,
    /// That user as it is now (only filled by [`token_by_secret`]).
    #[serde(skip)]
    pub owner: TokenOwner,
}

/// The state of a token's user when the token is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenOwner {
    /// A service token, or the owner was not looked up.
    #[default]
    None,
    Active(Role),
    Disabled,
    /// The user was deleted.
    Gone,
}

/// Why a token may not be used at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    #[error("the API token's user is disabled")]
    UserDisabled,
    #[error("the API token's user no longer exists")]
    UserGone,
}

impl Token {
    /// The permissions the token grants now: its role's, limited to its scopes and, for a
    /// user's token, to what the user's role grants. A token with an unknown stored scope
    /// grants nothing (fails closed); a disabled or deleted user's token is refused.
    pub fn perms(&self) -> Result<Vec<Perm>, TokenRefused> {
        let owner_role = match self.owner {
            TokenOwner::Disabled => return Err(TokenRefused::UserDisabled),
            TokenOwner::Gone => return Err(TokenRefused::UserGone),
            TokenOwner::Active(r) => Some(r),
            TokenOwner::None => None,
        };
        if !self.unknown_scopes.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .role
            .perms()
            .iter()
            .copied()
            .filter(|p| owner_role.is_none_or(|r| r.perms().contains(p)))
            .filter(|p| self.scopes.is_empty() || self.scopes.contains(p))
            .collect())
    }
}

/// Why a token cannot be created with the scopes asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("{0:?} is not a permission (read, operate, approve, reports, audit, admin, metrics)")]
    Unknown(String),
    #[error("role {role} does not have {perm}")]
    NotInRole {
        role: &'static str,
        perm: &'static str,
    },
}

/// Parses the scopes asked for a token of `role`: every one must name a permission of the
/// role (an unknown or empty name is refused, never ignored).
pub fn parse_scopes(role: Role, scopes: &[String]) -> Result<Vec<Perm>, ScopeError> {
    scopes
        .iter()
        .map(|s| {
            let p = Perm::parse(s.trim()).ok_or_else(|| ScopeError::Unknown(s.clone()))?;
            if !role.perms().contains(&p) {
                return Err(ScopeError::NotInRole {
                    role: role.as_str(),
                    perm: p.as_str(),
                });
            }
            Ok(p)
        })
        .collect()
}

/// Creates a service token (it belongs to no user) and returns its secret (shown once; only
/// its hash is stored). For set-up and tests; an action someone takes is
/// [`create_token_audited`].
pub async fn create_token(
    store: &Store,
    name: &str,
    role: Role,
    scopes: &[Perm],
    expires_ms: Option<i64>,
    now_ms: i64,
) -> Result<String, UserError> {
    create_token_audited(store, name, role, scopes, expires_ms, now_ms, None).await
}

/// [`create_token`], with `audit` committed in the same transaction as the token.
pub async fn create_token_audited(
    store: &Store,
    name: &str,
    role: Role,
    scopes: &[Perm],
    expires_ms: Option<i64>,
    now_ms: i64,
    audit: Audit<'_>,
) -> Result<String, UserError> {
    insert_token(store, name, role, None, scopes, expires_ms, now_ms, audit).await
}

/// Creates a token belonging to `user`, with the user's role: it stops working as soon as the
/// user is disabled or deleted. Returns its secret (shown once).
pub async fn create_user_token(
    store: &Store,
    name: &str,
    user_name: &str,
    scopes: &[Perm],
    expires_ms: Option<i64>,
    now_ms: i64,
    audit: Audit<'_>,
) -> Result<String, UserError> {
    let u = user(store, user_name)
        .await?
        .ok_or_else(|| UserError::NotFound(user_name.into()))?;
    if u.disabled {
        return Err(UserError::Disabled(user_name.into()));
    }
    insert_token(
        store,
        name,
        u.role,
        Some(user_name),
        scopes,
        expires_ms,
        now_ms,
        audit,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn insert_token(
    store: &Store,
    name: &str,
    role: Role,
    user: Option<&str>,
    scopes: &[Perm],
    expires_ms: Option<i64>,
    now_ms: i64,
    audit: Audit<'_>,
) -> Result<String, UserError> {
    if !valid_name(name) {
        return Err(UserError::BadName);
    }
    if let Some(p) = scopes.iter().find(|p| !role.perms().contains(p)) {
        return Err(UserError::Scope(ScopeError::NotInRole {
            role: role.as_str(),
            perm: p.as_str(),
        }));
    }
    let secret = format!("ywt_{}", random_secret());
    let scopes: Vec<&str> = scopes.iter().map(|p| p.as_str()).collect();
    let row = TokenRow {
        name: name.to_string(),
        role: role.as_str().to_string(),
        scopes: serde_json::to_string(&scopes).map_err(anyhow::Error::from)?,
        created_ms: now_ms,
        expires_ms,
        revoked: false,
        user: user.map(str::to_string),
    };
    store
        .insert_token(&secret_hash(&secret), &row, audit)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => UserError::Exists(name.into()),
            e => UserError::Store(e),
        })?;
    Ok(secret)
}

/// Revokes token `name` (tests; an action someone takes is [`revoke_token_audited`]).
pub async fn revoke_token(store: &Store, name: &str) -> Result<(), UserError> {
    revoke_token_audited(store, name, None).await
}

/// Revokes token `name`, with `audit` committed in the same transaction.
pub async fn revoke_token_audited(
    store: &Store,
    name: &str,
    audit: Audit<'_>,
) -> Result<(), UserError> {
    let n = store.revoke_token(name, audit).await?;
    if n == 0 {
        return Err(UserError::NotFound(name.into()));
    }
    Ok(())
}

fn token_from(r: TokenRow) -> Token {
    let (scopes, unknown_scopes) = match serde_json::from_str::<Vec<String>>(&r.scopes) {
        Ok(names) => {
            let (known, unknown): (Vec<_>, Vec<_>) =
                names.into_iter().partition(|s| Perm::parse(s).is_some());
            (
                known.iter().filter_map(|s| Perm::parse(s)).collect(),
                unknown,
            )
        }
        Err(_) => (Vec::new(), vec![r.scopes.clone()]),
    };
    Token {
        name: r.name,
        role: Role::parse(&r.role).unwrap_or(Role::Auditor),
        scopes,
        unknown_scopes,
        created_ms: r.created_ms,
        expires_ms: r.expires_ms,
        revoked: r.revoked,
        user: r.user,
        owner: TokenOwner::None,
    }
}

/// The token whose secret is `secret`, if any (revoked and expired ones included), with the
/// current state of its user.
pub async fn token_by_secret(store: &Store, secret: &str) -> sqlx::Result<Option<Token>> {
    Ok(store
        .token_by_hash(&secret_hash(secret))
        .await?
        .map(|(row, owner)| {
            let has_user = row.user.is_some();
            let mut t = token_from(row);
            t.owner = match owner {
                _ if !has_user => TokenOwner::None,
                None => TokenOwner::Gone,
                Some(o) if o.disabled => TokenOwner::Disabled,
                // A role the code no longer knows grants nothing beyond the auditor's.
                Some(o) => TokenOwner::Active(Role::parse(&o.role).unwrap_or(Role::Auditor)),
            };
            t
        }))
}

pub async fn tokens(store: &Store) -> sqlx::Result<Vec<Token>> {
    Ok(store.tokens().await?.into_iter().map(token_from).collect())
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

    fn token(scopes: &str, owner: TokenOwner) -> Token {
        let mut t = token_from(TokenRow {
            name: "t".into(),
            role: "operator".into(),
            scopes: scopes.into(),
            created_ms: 0,
            expires_ms: None,
            revoked: false,
            user: Some("u".into()),
        });
        t.owner = owner;
        t
    }

    #[test]
    fn token_scopes_fail_closed() {
        let active = TokenOwner::Active(Role::Operator);
        assert_eq!(token("[]", active).perms().unwrap(), Role::Operator.perms());
        assert_eq!(
            token(r#"["metrics"]"#, active).perms().unwrap(),
            [Perm::Metrics]
        );
        // An unknown scope, alone or beside a known one, or a list that does not parse.
        for s in [r#"["frobnicate"]"#, r#"["metrics","Read"]"#, "metrics", ""] {
            assert_eq!(token(s, active).perms().unwrap(), [], "{s}");
        }
        // A user's token has no more than the user's role now.
        assert_eq!(
            token("[]", TokenOwner::Active(Role::Reviewer))
                .perms()
                .unwrap(),
            [Perm::Read, Perm::Reports]
        );
        assert_eq!(
            token("[]", TokenOwner::Disabled).perms(),
            Err(TokenRefused::UserDisabled)
        );
        assert_eq!(
            token("[]", TokenOwner::Gone).perms(),
            Err(TokenRefused::UserGone)
        );
        assert_eq!(
            parse_scopes(Role::Operator, &["read".into(), "bogus".into()]),
            Err(ScopeError::Unknown("bogus".into()))
        );
        assert_eq!(
            parse_scopes(Role::Operator, &["".into()]),
            Err(ScopeError::Unknown("".into()))
        );
        assert_eq!(
            parse_scopes(Role::Reviewer, &["operate".into()]),
            Err(ScopeError::NotInRole {
                role: "reviewer",
                perm: "operate"
            })
        );
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
