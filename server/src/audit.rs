//! The audit trail (等保 2.0): every state-changing action — who, when, what, result, source
//! address — appended to `audit_log` as a hash chain. Each row stores
//! `SHA-256(previous row's hash || its own canonical content)`, so editing or deleting a row
//! breaks every later link and [`verify`] names the first broken row. Rows are never pruned
//! (the law asks for at least 180 days; yunwei keeps them all).
//!
//! `audit_head` keeps the newest row's number and hash, written in the same transaction, so
//! deleting rows from the end is detected as well. Someone who can rewrite both tables can
//! still forge a shorter history; [`verify`] prints the head hash so it can be compared with
//! an earlier copy kept elsewhere.

use std::sync::LazyLock;

use crate::store::{self, Store};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Serialises appends within one process; across processes the primary key on `seq` makes a
/// racing writer retry.
static APPEND: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

/// One action to record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    /// User name, `token:<name>` for API tokens, `cli` for the command line.
    pub actor: String,
    /// What was done, e.g. `login`, `POST /api/v1/rules/reload`, `user.add`.
    pub action: String,
    /// What it was done to (a path, a user name).
    pub target: String,
    /// `success`, `failure: ...`, or an HTTP status.
    pub result: String,
    /// Client IP address, or `local` for the command line.
    pub source: String,
    /// Extra JSON; `{}` when there is nothing to add.
    pub detail: serde_json::Value,
}

/// A stored row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRow {
    pub seq: i64,
    pub ts_ms: i64,
    #[serde(flatten)]
    pub entry: Entry,
    pub prev_hash: String,
    pub hash: String,
}

fn canonical(seq: i64, ts_ms: i64, e: &Entry) -> String {
    serde_json::to_string(&serde_json::json!([
        seq,
        ts_ms,
        e.actor,
        e.action,
        e.target,
        e.result,
        e.source,
        serde_json::to_string(&e.detail).expect("json serializes"),
    ]))
    .expect("json serializes")
}

/// The hash a row must have.
pub fn row_hash(prev_hash: &str, seq: i64, ts_ms: i64, e: &Entry) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical(seq, ts_ms, e).as_bytes());
    hex::encode(h.finalize())
}

/// Appends `e` at `ts_ms`; returns its sequence number.
pub async fn append(store: &Store, ts_ms: i64, e: &Entry) -> anyhow::Result<i64> {
    let _guard = APPEND.lock().await;
    let mut last_err = None;
    for _ in 0..20 {
        let mut tx = store.begin().await?;
        let (seq, prev) = match store::audit::newest(&mut tx).await? {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS.to_string()),
        };
        let hash = row_hash(&prev, seq, ts_ms, e);
        let row = store::audit::AuditLogRow {
            seq,
            ts_ms,
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            result: e.result.clone(),
            source: e.source.clone(),
            detail: serde_json::to_string(&e.detail)?,
            prev_hash: prev,
            hash,
        };
        let inserted = store::audit::insert(&mut tx, &row).await;
        let head = match inserted {
            Ok(()) => store::audit::set_head(&mut tx, seq, &row.hash).await,
            Err(e) => Err(e),
        };
        match head {
            Ok(_) => {
                tx.commit().await?;
                return Ok(seq);
            }
            // Another process took this sequence number: read the new head and retry.
            Err(err) => {
                let _ = tx.rollback().await;
                last_err = Some(err);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }
    Err(anyhow::anyhow!(
        "appending to the audit log: {}",
        last_err.map_or_else(String::new, |e| e.to_string())
    ))
}

/// Appends and logs (instead of failing the caller's action) when the store refuses.
pub async fn record(store: &Store, ts_ms: i64, e: Entry) {
    if let Err(err) = append(store, ts_ms, &e).await {
        tracing::error!(error = %format!("{err:#}"), action = %e.action, "audit append failed");
    }
}

fn row_from(r: store::audit::AuditLogRow) -> AuditRow {
    AuditRow {
        seq: r.seq,
        ts_ms: r.ts_ms,
        entry: Entry {
            actor: r.actor,
            action: r.action,
            target: r.target,
            result: r.result,
            source: r.source,
            detail: serde_json::from_str(&r.detail).unwrap_or_default(),
        },
        prev_hash: r.prev_hash,
        hash: r.hash,
    }
}

/// The newest rows with `seq < before` (all when `None`), newest first.
pub async fn list(store: &Store, before: Option<i64>, limit: i64) -> sqlx::Result<Vec<AuditRow>> {
    let rows = store
        .audit_rows_before(before.unwrap_or(i64::MAX), limit)
        .await?;
    Ok(rows.into_iter().map(row_from).collect())
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("audit row {seq} is missing (deleted); the chain breaks before row {next}")]
    Missing { seq: i64, next: i64 },
    #[error("audit row {seq} was changed: its content does not match its hash")]
    Changed { seq: i64 },
    #[error("audit row {seq} does not link to row {prev}: it or row {prev} was changed")]
    Unlinked { seq: i64, prev: i64 },
    #[error("audit row {seq} is missing (deleted): rows {seq} to {last} were removed from the end")]
    Truncated { seq: i64, last: i64 },
    #[error("audit row {seq} was changed: it does not match the recorded head of the chain")]
    HeadMismatch { seq: i64 },
}

impl ChainError {
    /// The first row found wrong.
    pub fn seq(&self) -> i64 {
        match self {
            ChainError::Missing { seq, .. }
            | ChainError::Changed { seq }
            | ChainError::Unlinked { seq, .. }
            | ChainError::Truncated { seq, .. }
            | ChainError::HeadMismatch { seq } => *seq,
        }
    }
}

/// The intact chain's length and newest hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub rows: i64,
    pub hash: String,
}

/// Checks rows given in `seq` order. Pure, so it is tested without a database.
pub fn check_chain(rows: impl IntoIterator<Item = AuditRow>) -> Result<ChainHead, ChainError> {
    let mut expected = 1;
    let mut prev = GENESIS.to_string();
    for r in rows {
        if r.seq != expected {
            return Err(ChainError::Missing {
                seq: expected,
                next: r.seq,
            });
        }
        if row_hash(&r.prev_hash, r.seq, r.ts_ms, &r.entry) != r.hash {
            return Err(ChainError::Changed { seq: r.seq });
        }
        if r.prev_hash != prev {
            return Err(ChainError::Unlinked {
                seq: r.seq,
                prev: r.seq - 1,
            });
        }
        prev = r.hash;
        expected += 1;
    }
    Ok(ChainHead {
        rows: expected - 1,
        hash: prev,
    })
}

/// Compares an intact chain with the recorded head `(seq, hash)` (`None`: no row was ever
/// appended).
pub fn check_head(chain: &ChainHead, head: Option<(i64, String)>) -> Result<(), ChainError> {
    let (seq, hash) = head.unwrap_or((0, GENESIS.to_string()));
    if seq > chain.rows {
        return Err(ChainError::Truncated {
            seq: chain.rows + 1,
            last: seq,
        });
    }
    if seq < chain.rows || hash != chain.hash {
        return Err(ChainError::HeadMismatch { seq: chain.rows });
    }
    Ok(())
}

/// Walks the whole stored chain, in pages, and checks it against the recorded head.
pub async fn verify(store: &Store) -> anyhow::Result<Result<ChainHead, ChainError>> {
    let mut all = Vec::new();
    let mut after = 0i64;
    loop {
        let rows = store.audit_rows_after(after).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        all.extend(rows.into_iter().map(row_from));
    }
    let head = store.audit_head().await?;
    Ok(check_chain(all).and_then(|chain| check_head(&chain, head).map(|()| chain)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let entry = Entry {
                    actor: format!("user{seq}"),
                    action: "login".into(),
                    target: "console".into(),
                    result: "success".into(),
                    source: "127.0.0.1".into(),
                    detail: serde_json::json!({}),
                };
                let hash = row_hash(&prev, seq, seq * 1000, &entry);
                let row = AuditRow {
                    seq,
                    ts_ms: seq * 1000,
                    entry,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                row
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(5);
        let head = rows[4].hash.clone();
        assert_eq!(
            check_chain(rows),
            Ok(ChainHead {
                rows: 5,
                hash: head
            })
        );
    }

    #[test]
    fn a_changed_field_names_its_row() {
        let mut rows = chain(5);
        rows[2].entry.result = "failure".into();
        assert_eq!(check_chain(rows), Err(ChainError::Changed { seq: 3 }));
    }

    #[test]
    fn a_deleted_row_is_named() {
        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(
            check_chain(rows),
            Err(ChainError::Missing { seq: 2, next: 3 })
        );
    }

    #[test]
    fn rows_deleted_from_the_end_are_caught_by_the_head() {
        let rows = chain(5);
        let head = Some((5, rows[4].hash.clone()));
        let shorter = check_chain(rows[..3].to_vec()).unwrap();
        assert_eq!(
            check_head(&shorter, head.clone()),
            Err(ChainError::Truncated { seq: 4, last: 5 })
        );
        let full = check_chain(rows).unwrap();
        assert_eq!(check_head(&full, head), Ok(()));
        assert_eq!(
            check_head(&full, Some((5, GENESIS.into()))),
            Err(ChainError::HeadMismatch { seq: 5 })
        );
        assert_eq!(
            check_head(
                &ChainHead {
                    rows: 0,
                    hash: GENESIS.into()
                },
                None
            ),
            Ok(())
        );
    }

    #[test]
    fn a_rehashed_row_breaks_the_next_link() {
        let mut rows = chain(4);
        rows[1].entry.actor = "mallory".into();
        rows[1].hash = row_hash(&rows[1].prev_hash, 2, rows[1].ts_ms, &rows[1].entry);
        assert_eq!(
            check_chain(rows),
            Err(ChainError::Unlinked { seq: 3, prev: 2 })
        );
    }
}
