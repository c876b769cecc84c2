//! The audit trail (等保 2.0): every state-changing action — who, when, what, result, source
//! address — appended to `audit_log` as a hash chain. Each row stores
//! `SHA-256(previous row's hash || its own canonical content)`, so editing or deleting a row
//! breaks every later link and [`verify`] names the first broken row. Rows are never pruned
//! (the law asks for at least 180 days; yunwei keeps them all).
//!
//! `audit_head` keeps the newest row's number and hash, written in the same transaction, so
//! deleting rows from the end is detected as well.
//!
//! A row recording a change commits with it: the service hands a [`Pending`] row to the store
//! write making the change, which appends it in its own transaction
//! (`store::audit::append_in`, serialized on the head row across processes), so the change
//! and its row are both stored or neither is. The HTTP layer gives each state-changing call a
//! [`Context`]; it writes a row of its own ([`record`], after the answer) only for calls no
//! store write recorded — refusals, failures, and calls that change nothing stored.
//!
//! The chain alone is unkeyed: someone who can write the database could rewrite rows,
//! recompute every hash and the head. So the chain is anchored: [`checkpoint`] (every
//! [`CHECKPOINT_EVERY`], at start and at shutdown) signs the head with the server's report key
//! (Ed25519 over [`checkpoint_message`]) into `audit_checkpoints`, and keeps the newest
//! checkpoint in `DATA_DIR/audit-checkpoint` too. [`verify`] checks each checkpoint's signature
//! with the public key and that the chain still has that head at that row, so a rewrite breaks
//! a signature the database does not hold; deleting the checkpoints is caught by the copy in
//! the data directory. Signed reports carry the head at generation as a further anchor.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::store::{self, Store};
use anyhow::Context as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use yunwei_conf::limits::{
    AUDIT_REFUSAL_WINDOW_MS, MAX_AUDIT_DETAIL_BYTES, MAX_AUDIT_DETAIL_STRING_BYTES,
    MAX_AUDIT_FIELD_BYTES, MAX_AUDIT_TARGET_BYTES, truncate_marked,
};

/// `prev_hash` of the first row.
pub const GENESIS: &str = store::audit::GENESIS;

/// One action to record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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

/// `e` with every field cut to its limit (`yunwei_conf::limits`: `MAX_AUDIT_*`), the cut
/// marked `…(+N bytes)`; strings inside `detail` are cut one by one, and a detail still over
/// its limit is kept as `{"truncated": <its JSON text, cut>}`. Rows are never pruned, so no
/// caller may make one large.
pub fn bounded(e: &Entry) -> Entry {
    fn cut(s: &str, max: usize) -> String {
        truncate_marked(s, max).into_owned()
    }
    fn cut_strings(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) if s.len() > MAX_AUDIT_DETAIL_STRING_BYTES => {
                *s = cut(s, MAX_AUDIT_DETAIL_STRING_BYTES);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(cut_strings),
            serde_json::Value::Object(map) => map.values_mut().for_each(cut_strings),
            _ => {}
        }
    }
    let mut detail = e.detail.clone();
    cut_strings(&mut detail);
    let text = serde_json::to_string(&detail).unwrap_or_default();
    if text.len() > MAX_AUDIT_DETAIL_BYTES {
        detail = serde_json::json!({ "truncated": cut(&text, MAX_AUDIT_DETAIL_BYTES - 32) });
    }
    Entry {
        actor: cut(&e.actor, MAX_AUDIT_FIELD_BYTES),
        action: cut(&e.action, MAX_AUDIT_FIELD_BYTES),
        target: cut(&e.target, MAX_AUDIT_TARGET_BYTES),
        result: cut(&e.result, MAX_AUDIT_FIELD_BYTES),
        source: cut(&e.source, MAX_AUDIT_FIELD_BYTES),
        detail,
    }
}

/// An action to append in the transaction of the change it records
/// (`store::audit::AuditRecord`): the store write that makes the change appends it before
/// committing, so the change and its row commit together or not at all. Its fields are cut to
/// their limits ([`bounded`]) and its hash computed by [`row_hash`], as every row's.
#[derive(Debug, Clone)]
pub struct Pending {
    ts_ms: i64,
    entry: Entry,
    recorded: Option<Arc<AtomicBool>>,
}

impl Pending {
    /// `e` at `ts_ms`, recorded by no request (the command line, a background pass).
    pub fn new(ts_ms: i64, e: &Entry) -> Pending {
        Pending {
            ts_ms,
            entry: bounded(e),
            recorded: None,
        }
    }

    /// The entry as it will be stored.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Its time (Unix ms).
    pub fn ts_ms(&self) -> i64 {
        self.ts_ms
    }
}

impl store::audit::AuditRecord for Pending {
    fn row(&self, seq: i64, prev_hash: &str) -> store::audit::AuditLogRow {
        let e = &self.entry;
        store::audit::AuditLogRow {
            seq,
            ts_ms: self.ts_ms,
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            result: e.result.clone(),
            source: e.source.clone(),
            detail: serde_json::to_string(&e.detail).expect("json serializes"),
            prev_hash: prev_hash.to_string(),
            hash: row_hash(prev_hash, seq, self.ts_ms, e),
        }
    }

    fn committed(&self) {
        if let Some(r) = &self.recorded {
            r.store(true, Ordering::SeqCst);
        }
    }
}

/// What the HTTP layer knows of a state-changing call, handed to the service that makes the
/// change: who (`actor`), what (`action`, the route), to what (`target`, the path) and from
/// where (`source`). The service's store write appends the row ([`Context::record`]) in the
/// change's transaction and marks the call recorded; for a call nothing marked (refused,
/// failed, or not converted) the HTTP layer writes the row itself, after the answer is known.
#[derive(Debug, Clone)]
pub struct Context {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub source: String,
    recorded: Arc<AtomicBool>,
}

impl Context {
    pub fn new(actor: String, action: String, target: String, source: String) -> Context {
        Context {
            actor,
            action,
            target,
            source,
            recorded: Arc::default(),
        }
    }

    /// The call's row (result `success`) at `ts_ms` with `detail`.
    pub fn record(&self, ts_ms: i64, detail: serde_json::Value) -> Pending {
        self.record_entry(
            ts_ms,
            &Entry {
                actor: self.actor.clone(),
                action: self.action.clone(),
                target: self.target.clone(),
                result: "success".into(),
                source: self.source.clone(),
                detail,
            },
        )
    }

    /// A row of the service's own wording for this call; committing it marks the call
    /// recorded as well.
    pub fn record_entry(&self, ts_ms: i64, e: &Entry) -> Pending {
        Pending {
            recorded: Some(self.recorded.clone()),
            ..Pending::new(ts_ms, e)
        }
    }

    /// Whether a row of this call was committed with its change.
    pub fn recorded(&self) -> bool {
        self.recorded.load(Ordering::SeqCst)
    }
}

/// `p` as the store writes take it.
pub fn of(p: &Option<Pending>) -> store::audit::Audit<'_> {
    p.as_ref().map(|p| p as &dyn store::audit::AuditRecord)
}

/// Appends `e` at `ts_ms` in a transaction of its own, its fields cut to their limits
/// ([`bounded`]); returns its sequence number. For an action that changes stored data, pass a
/// [`Pending`] to the store write instead, so the row commits with the change.
pub async fn append(store: &Store, ts_ms: i64, e: &Entry) -> anyhow::Result<i64> {
    let p = Pending::new(ts_ms, e);
    let mut tx = store.begin().await?;
    let seq = store::audit::append_in(&mut tx, &p)
        .await
        .context("appending to the audit log")?;
    tx.commit().await.context("appending to the audit log")?;
    Ok(seq)
}

/// Appends and logs (instead of failing the caller's action) when the store refuses.
pub async fn record(store: &Store, ts_ms: i64, e: Entry) {
    if let Err(err) = append(store, ts_ms, &e).await {
        tracing::error!(error = %format!("{err:#}"), action = %e.action, "audit append failed");
    }
}

/// The kinds of anonymous refusal [`Refusals`] aggregates (`metrics::REFUSAL_KINDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// A request to a protected route without valid credentials.
    Http,
    /// A login attempt for no usable account (unknown, disabled, locked, or a name no account
    /// can have).
    Login,
    /// A failed enrollment (wrong or no secret, enrollment disabled, a body or host refused).
    Enroll,
    /// A refused use of an acknowledge link (forged, expired, used before, or its alert
    /// episode over).
    AckLink,
}

impl RefusalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Http => "http",
            RefusalKind::Login => "login",
            RefusalKind::Enroll => "enroll",
            RefusalKind::AckLink => "ack_link",
        }
    }
}

/// Most (source, kind) windows kept at once; past it, new sources share one window under the
/// source `other`, so many addresses cannot grow memory without bound.
const MAX_REFUSAL_WINDOWS: usize = 10_000;

struct Window {
    start_ms: i64,
    /// Refusals after the first in this window, not written yet.
    summarised: u64,
    first_ms: i64,
    last_ms: i64,
}

/// Aggregates anonymous refusals so that nobody can fill the never-pruned audit log without
/// credentials: the first refusal of a kind from a source in each
/// [`AUDIT_REFUSAL_WINDOW_MS`] window gets its own row, as before; later ones in the window
/// are only counted, and once the window has passed one summary row (action
/// `refusals.summary`, result `summarised: N`, detail with the count and the first and last
/// times) records how many there were. An auditor thus sees every source that was refused in
/// every minute it was, with one example and the exact count, and at most two rows per source
/// and kind a minute. Summaries are written when the next anonymous refusal arrives or the
/// audit log is read ([`flush_refusals`]), and those of windows still open when the server
/// stops at its graceful end ([`flush_all_refusals`]); only a crash loses them (the counter
/// `yunwei_audit_refusals_total` has them).
#[derive(Default)]
pub struct Refusals {
    windows: std::sync::Mutex<std::collections::HashMap<(String, RefusalKind), Window>>,
}

impl Refusals {
    /// Notes a refusal: `true` when it is the first of its window (write its row).
    fn note(&self, source: &str, kind: RefusalKind, now_ms: i64) -> bool {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (source.to_string(), kind);
        if !w.contains_key(&key) && w.len() >= MAX_REFUSAL_WINDOWS {
            key.0 = "other".into();
        }
        match w.get_mut(&key) {
            Some(win) if now_ms - win.start_ms < AUDIT_REFUSAL_WINDOW_MS => {
                win.summarised += 1;
                if win.summarised == 1 {
                    win.first_ms = now_ms;
                }
                win.last_ms = now_ms;
                false
            }
            _ => {
                // A window that ended with refusals still to write is taken by `due` first.
                w.insert(
                    key,
                    Window {
                        start_ms: now_ms,
                        summarised: 0,
                        first_ms: now_ms,
                        last_ms: now_ms,
                    },
                );
                true
            }
        }
    }

    /// Removes the windows that have ended; returns the summaries to write (those with
    /// refusals not written yet).
    fn due(&self, now_ms: i64) -> Vec<Entry> {
        self.take(|win| now_ms - win.start_ms >= AUDIT_REFUSAL_WINDOW_MS)
    }

    /// Removes the windows `ended` selects; returns the summaries of those with refusals not
    /// written yet.
    fn take(&self, ended: impl Fn(&Window) -> bool) -> Vec<Entry> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        w.retain(|(source, kind), win| {
            if !ended(win) {
                return true;
            }
            if win.summarised > 0 {
                out.push(Entry {
                    actor: "anonymous".into(),
                    action: "refusals.summary".into(),
                    target: kind.as_str().into(),
                    result: format!("summarised: {}", win.summarised),
                    source: source.clone(),
                    detail: serde_json::json!({
                        "kind": kind.as_str(),
                        "count": win.summarised,
                        "first_ms": win.first_ms,
                        "last_ms": win.last_ms,
                        "window_start_ms": win.start_ms,
                        "window_ms": AUDIT_REFUSAL_WINDOW_MS,
                    }),
                });
            }
            false
        });
        out.sort_by(|a, b| (&a.source, &a.target).cmp(&(&b.source, &b.target)));
        out
    }
}

/// Writes the summaries of the refusal windows that have ended.
pub async fn flush_refusals(store: &Store, refusals: &Refusals, now_ms: i64) {
    for e in refusals.due(now_ms) {
        record(store, now_ms, e).await;
    }
}

/// Writes the summaries of every window, ended or not: the graceful end of a server, so that
/// no refusal it counted goes unrecorded. The windows start over afterwards.
pub async fn flush_all_refusals(store: &Store, refusals: &Refusals, now_ms: i64) {
    for e in refusals.take(|_| true) {
        record(store, now_ms, e).await;
    }
}

/// Records an anonymous refusal through [`Refusals`]: its own row when it is the first of its
/// source and kind in the window, otherwise only counted for the window's summary row.
pub async fn record_refusal(
    store: &Store,
    refusals: &Refusals,
    metrics: &crate::metrics::Metrics,
    kind: RefusalKind,
    now_ms: i64,
    e: Entry,
) {
    flush_refusals(store, refusals, now_ms).await;
    let first = refusals.note(&e.source, kind, now_ms);
    metrics
        .audit_refusals
        .with_label_values(&[kind.as_str(), if first { "row" } else { "summarised" }])
        .inc();
    if first {
        record(store, now_ms, e).await;
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
    #[error(
        "checkpoint at seq {seq} does not match the chain (rewritten?): the signed head of row \
         {seq} differs from the stored rows"
    )]
    CheckpointMismatch { seq: i64 },
    #[error("checkpoint at seq {seq} has a bad signature (forged or altered)")]
    BadSignature { seq: i64 },
    #[error(
        "checkpoint at seq {seq} is signed by key {key_id}, not by this server's report key \
         (forged?)"
    )]
    ForeignKey { seq: i64, key_id: String },
    #[error(
        "checkpoint at seq {seq} kept in the data directory is missing from the database \
         (checkpoints deleted?)"
    )]
    CheckpointMissing { seq: i64 },
}

impl ChainError {
    /// The first row found wrong.
    pub fn seq(&self) -> i64 {
        match self {
            ChainError::Missing { seq, .. }
            | ChainError::Changed { seq }
            | ChainError::Unlinked { seq, .. }
            | ChainError::Truncated { seq, .. }
            | ChainError::HeadMismatch { seq }
            | ChainError::CheckpointMismatch { seq }
            | ChainError::BadSignature { seq }
            | ChainError::ForeignKey { seq, .. }
            | ChainError::CheckpointMissing { seq } => *seq,
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
    check_chain_from(0, GENESIS, rows)
}

/// Checks rows given in `seq` order that continue a chain whose row `after` has hash
/// `after_hash` (`0` and [`GENESIS`]: the whole chain).
fn check_chain_from(
    after: i64,
    after_hash: &str,
    rows: impl IntoIterator<Item = AuditRow>,
) -> Result<ChainHead, ChainError> {
    let mut expected = after + 1;
    let mut prev = after_hash.to_string();
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

async fn rows_after(store: &Store, mut after: i64, upto: i64) -> anyhow::Result<Vec<AuditRow>> {
    let mut all = Vec::new();
    loop {
        let rows = store.audit_rows_after(after).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        all.extend(rows.into_iter().filter(|r| r.seq <= upto).map(row_from));
        if after >= upto {
            break;
        }
    }
    Ok(all)
}

/// How often the running server checkpoints the chain (when its head moved).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(600);

/// File under the data directory keeping the newest checkpoint this server signed.
pub const ANCHOR_FILE: &str = "audit-checkpoint";

/// A signed head of the chain: at row `seq` the chain's hash was `hash`; `signature` (hex) is
/// Ed25519 over [`checkpoint_message`] by the key `key_id` (the public key in hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub ts_ms: i64,
    pub key_id: String,
    pub signature: String,
}

/// The bytes a checkpoint signs.
pub fn checkpoint_message(seq: i64, hash: &str, ts_ms: i64) -> String {
    format!("yunwei-audit-checkpoint\n{seq}\n{hash}\n{ts_ms}")
}

/// A key's id in checkpoints: its 32 public bytes in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Signs the head `(seq, hash)` at `ts_ms`.
pub fn sign_checkpoint(key: &SigningKey, seq: i64, hash: &str, ts_ms: i64) -> Checkpoint {
    let sig = key.sign(checkpoint_message(seq, hash, ts_ms).as_bytes());
    Checkpoint {
        seq,
        hash: hash.to_string(),
        ts_ms,
        key_id: key_id(&key.verifying_key()),
        signature: hex::encode(sig.to_bytes()),
    }
}

/// Checks `c`'s signature against `key`.
pub fn check_signature(c: &Checkpoint, key: &VerifyingKey) -> Result<(), ChainError> {
    if c.key_id != key_id(key) {
        return Err(ChainError::ForeignKey {
            seq: c.seq,
            key_id: c.key_id.clone(),
        });
    }
    let sig = hex::decode(&c.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b));
    match sig {
        Some(sig)
            if key
                .verify(checkpoint_message(c.seq, &c.hash, c.ts_ms).as_bytes(), &sig)
                .is_ok() =>
        {
            Ok(())
        }
        _ => Err(ChainError::BadSignature { seq: c.seq }),
    }
}

fn checkpoint_from(r: store::audit::CheckpointRow) -> Checkpoint {
    Checkpoint {
        seq: r.seq,
        hash: r.hash,
        ts_ms: r.ts_ms,
        key_id: r.key_id,
        signature: r.signature,
    }
}

/// Signs the recorded head of the chain at `now_ms` and stores the checkpoint, after checking
/// that the rows since this key's newest checkpoint (all rows the first time) link to it and
/// end at that head — a broken chain is not signed. `Ok(None)`: the head has not moved (or
/// another process checkpointed it first).
pub async fn checkpoint(
    store: &Store,
    key: &SigningKey,
    now_ms: i64,
) -> anyhow::Result<Option<Checkpoint>> {
    let public = key.verifying_key();
    let Some((head_seq, head_hash)) = store.audit_head().await? else {
        return Ok(None);
    };
    let from = store
        .newest_audit_checkpoint(&key_id(&public))
        .await?
        .map(checkpoint_from)
        .filter(|c| check_signature(c, &public).is_ok());
    let (after, after_hash) = from.map_or((0, GENESIS.to_string()), |c| (c.seq, c.hash));
    if after >= head_seq {
        return Ok(None);
    }
    let rows = rows_after(store, after, head_seq).await?;
    let chain = check_chain_from(after, &after_hash, rows)
        .and_then(|c| check_head(&c, Some((head_seq, head_hash))).map(|()| c))
        .map_err(|e| anyhow::anyhow!("not signing a broken audit chain: {e}"))?;
    let c = sign_checkpoint(key, chain.rows, &chain.hash, now_ms);
    let stored = store
        .insert_audit_checkpoint(&store::audit::CheckpointRow {
            seq: c.seq,
            hash: c.hash.clone(),
            ts_ms: c.ts_ms,
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
        })
        .await?;
    Ok(stored.then_some(c))
}

/// The anchor file under `data_dir`.
pub fn anchor_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ANCHOR_FILE)
}

/// Keeps `c` as the newest checkpoint in the data directory (written whole, then renamed).
pub fn save_anchor(data_dir: &Path, c: &Checkpoint) -> anyhow::Result<()> {
    let path = anchor_path(data_dir);
    let tmp = data_dir.join(format!("{ANCHOR_FILE}.tmp"));
    std::fs::write(&tmp, format!("{}\n", serde_json::to_string(c)?))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads the anchor file, if there is one.
pub fn load_anchor(data_dir: &Path) -> anyhow::Result<Option<Checkpoint>> {
    let path = anchor_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(text.trim())
                .with_context(|| format!("{}: not a checkpoint", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Checkpoints with the report key under the data directory and keeps the anchor file;
/// failures are logged.
pub async fn checkpoint_now(store: &Store, data_dir: &Path, now_ms: i64) {
    let result = async {
        let key = crate::report_keys::load_or_create(data_dir)?;
        if let Some(c) = checkpoint(store, &key, now_ms).await? {
            if load_anchor(data_dir)
                .ok()
                .flatten()
                .is_none_or(|a| a.seq < c.seq)
            {
                save_anchor(data_dir, &c)?;
            }
            tracing::debug!(seq = c.seq, "audit chain checkpointed");
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %format!("{e:#}"), "audit checkpoint failed");
    }
}

/// Checkpoints at start and every [`CHECKPOINT_EVERY`].
pub async fn checkpoint_loop(store: Store, data_dir: PathBuf) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        checkpoint_now(&store, &data_dir, crate::now_ms()).await;
    }
}

/// What [`verify`] found intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub chain: ChainHead,
    /// Checkpoints whose signature and head were checked.
    pub checkpoints: usize,
    /// The newest of them.
    pub newest: Option<Checkpoint>,
}

/// Checks checkpoints against an intact chain (`hashes[i]` is row `i + 1`'s hash) and `key`;
/// `anchor` (the copy kept outside the database) must be among them. Pure.
pub fn check_checkpoints(
    hashes: &[String],
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
    anchor: Option<&Checkpoint>,
) -> Result<(), ChainError> {
    for c in checkpoints.iter().chain(anchor) {
        check_signature(c, key)?;
        let at = usize::try_from(c.seq - 1).ok().and_then(|i| hashes.get(i));
        if at != Some(&c.hash) {
            return Err(ChainError::CheckpointMismatch { seq: c.seq });
        }
    }
    if let Some(a) = anchor
        && !checkpoints.contains(a)
    {
        return Err(ChainError::CheckpointMissing { seq: a.seq });
    }
    Ok(())
}

/// Walks the whole stored chain, in pages, checks it against the recorded head, then checks
/// every checkpoint with `key` (the report key's public half) and the `anchor` kept in the
/// data directory. Checkpoints without a key to check them are an error, not a pass.
pub async fn verify(
    store: &Store,
    key: Option<&VerifyingKey>,
    anchor: Option<&Checkpoint>,
) -> anyhow::Result<Result<Verified, ChainError>> {
    let all = rows_after(store, 0, i64::MAX).await?;
    let hashes: Vec<String> = all.iter().map(|r| r.hash.clone()).collect();
    let head = store.audit_head().await?;
    let chain = match check_chain(all).and_then(|chain| check_head(&chain, head).map(|()| chain)) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let checkpoints: Vec<Checkpoint> = store
        .audit_checkpoints()
        .await?
        .into_iter()
        .map(checkpoint_from)
        .collect();
    let Some(key) = key else {
        if checkpoints.is_empty() && anchor.is_none() {
            return Ok(Ok(Verified {
                chain,
                checkpoints: 0,
                newest: None,
            }));
        }
        anyhow::bail!(
            "{} audit checkpoints cannot be checked without the report key's public half",
            checkpoints.len()
        );
    };
    if let Err(e) = check_checkpoints(&hashes, &checkpoints, key, anchor) {
        return Ok(Err(e));
    }
    Ok(Ok(Verified {
        chain,
        checkpoints: checkpoints.len(),
        newest: checkpoints.last().cloned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_cut_to_its_limit() {
        let huge = "x".repeat(1_000_000);
        let e = bounded(&Entry {
            actor: huge.clone(),
            action: huge.clone(),
            target: huge.clone(),
            result: huge.clone(),
            source: huge.clone(),
            detail: serde_json::json!({ "reason": huge, "list": vec!["y".repeat(900); 100] }),
        });
        assert!(e.actor.len() <= MAX_AUDIT_FIELD_BYTES && e.actor.ends_with(" bytes)"));
        assert!(e.target.len() <= MAX_AUDIT_TARGET_BYTES);
        let detail = serde_json::to_string(&e.detail).unwrap();
        assert!(detail.len() <= MAX_AUDIT_DETAIL_BYTES, "{}", detail.len());
        assert!(e.detail["truncated"].as_str().unwrap().ends_with(" bytes)"));
        // Small entries pass unchanged.
        let small = Entry {
            actor: "li".into(),
            action: "login".into(),
            target: "li".into(),
            result: "success".into(),
            source: "127.0.0.1".into(),
            detail: serde_json::json!({ "reason": "x" }),
        };
        assert_eq!(bounded(&small), small);
    }

    #[test]
    fn refusals_get_one_row_per_source_and_kind_a_window_then_a_summary() {
        let r = Refusals::default();
        let w = AUDIT_REFUSAL_WINDOW_MS;
        assert!(r.note("10.0.0.1", RefusalKind::Http, 0));
        assert!(r.note("10.0.0.1", RefusalKind::Login, 1));
        assert!(r.note("10.0.0.2", RefusalKind::Http, 2));
        for t in 10..20 {
            assert!(!r.note("10.0.0.1", RefusalKind::Http, t));
        }
        assert!(r.due(w - 1).is_empty(), "no window has ended");
        let due = r.due(w + 5);
        // Only the window with refusals not written yet gets a summary; all three end.
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].source, "10.0.0.1");
        assert_eq!(due[0].result, "summarised: 10");
        assert_eq!(due[0].detail["count"], 10);
        assert_eq!(
            (
                due[0].detail["first_ms"].as_i64(),
                due[0].detail["last_ms"].as_i64()
            ),
            (Some(10), Some(19))
        );
        assert!(r.due(w + 6).is_empty());
        // A new window starts with a row of its own.
        assert!(r.note("10.0.0.1", RefusalKind::Http, w + 7));
    }

    #[test]
    fn at_the_end_every_open_window_with_refusals_is_summarised() {
        let r = Refusals::default();
        assert!(r.note("10.0.0.1", RefusalKind::Enroll, 0));
        assert!(r.note("10.0.0.2", RefusalKind::AckLink, 0));
        for t in 1..4 {
            assert!(!r.note("10.0.0.1", RefusalKind::Enroll, t));
        }
        assert!(r.due(10).is_empty(), "the window is still open");
        let all = r.take(|_| true);
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(
            (all[0].target.as_str(), all[0].result.as_str()),
            ("enroll", "summarised: 3")
        );
        assert!(r.take(|_| true).is_empty(), "taken once");
    }

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

    #[test]
    fn checkpoints_are_checked_against_the_chain_and_the_key() {
        let rows = chain(5);
        let hashes: Vec<String> = rows.iter().map(|r| r.hash.clone()).collect();
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let c3 = sign_checkpoint(&key, 3, &hashes[2], 10_000);
        let c5 = sign_checkpoint(&key, 5, &hashes[4], 20_000);
        let cps = vec![c3.clone(), c5.clone()];
        assert_eq!(check_checkpoints(&hashes, &cps, &public, Some(&c5)), Ok(()));
        // A rewritten (rehashed) chain no longer has the signed head at row 3.
        let mut forged = hashes.clone();
        forged[2] = "ab".repeat(32);
        assert_eq!(
            check_checkpoints(&forged, &cps, &public, None),
            Err(ChainError::CheckpointMismatch { seq: 3 })
        );
        // A checkpoint moved to the forged head fails its signature.
        let moved = Checkpoint {
            hash: forged[2].clone(),
            ..c3.clone()
        };
        assert_eq!(
            check_checkpoints(&forged, std::slice::from_ref(&moved), &public, None),
            Err(ChainError::BadSignature { seq: 3 })
        );
        // One signed by another key is not accepted.
        let other = sign_checkpoint(&SigningKey::from_bytes(&[9; 32]), 3, &hashes[2], 1);
        assert!(matches!(
            check_checkpoints(&hashes, &[other], &public, None),
            Err(ChainError::ForeignKey { seq: 3, .. })
        ));
        // The copy kept outside the database must still be in it.
        assert_eq!(
            check_checkpoints(&hashes, &cps[..1], &public, Some(&c5)),
            Err(ChainError::CheckpointMissing { seq: 5 })
        );
        // Beyond the chain's end: rows were deleted.
        assert_eq!(
            check_checkpoints(&hashes[..4], &cps, &public, None),
            Err(ChainError::CheckpointMismatch { seq: 5 })
        );
        assert_eq!(
            checkpoint_message(3, "h", 10),
            "yunwei-audit-checkpoint\n3\nh\n10"
        );
    }
}
