//! The store: one interface over SQLite (embedded default, WAL) and PostgreSQL, through sqlx's
//! `Any` driver so both run the same SQL. Where the dialects differ (DDL), each has its own
//! migration files. Only the ingest writer writes samples; everything else reads.
//!
//! What is kept: the agent inventory, series, the raw window (one row per batch, see [`blob`]),
//! hourly rollups, status intervals and agent events.

pub mod agents;
pub mod appeals;
pub mod audit;
pub mod blob;
pub mod demo;
pub mod ha;
pub mod incidents;
pub mod kpi;
pub mod membership;
pub mod notify;
pub mod remote_write;
pub mod report_mail;
pub mod reports;
pub mod rollup;
pub mod users;
pub mod writes;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context;
use sqlx::{
    AnyConnection, AnyPool, Row,
    any::{AnyPoolOptions, AnyRow},
};

mod evidence;

pub use evidence::{ContractEventRow, InspectionRow};

use crate::timeline::{Span, State};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/sqlite/0002_rule_state.sql"),
    ),
    (3, include_str!("../../migrations/sqlite/0003_notify.sql")),
    (4, include_str!("../../migrations/sqlite/0004_auth.sql")),
    (
        5,
        include_str!("../../migrations/sqlite/0005_inspections.sql"),
    ),
    (
        6,
        include_str!("../../migrations/sqlite/0006_incidents.sql"),
    ),
    (7, include_str!("../../migrations/sqlite/0007_reports.sql")),
    (
        8,
        include_str!("../../migrations/sqlite/0008_report_deliveries.sql"),
    ),
    (
        9,
        include_str!("../../migrations/sqlite/0009_kpi_hours.sql"),
    ),
    (
        10,
        include_str!("../../migrations/sqlite/0010_ack_links.sql"),
    ),
    (
        11,
        include_str!("../../migrations/sqlite/0011_incident_stamps.sql"),
    ),
    (
        12,
        include_str!("../../migrations/sqlite/0012_audit_checkpoints.sql"),
    ),
    (
        13,
        include_str!("../../migrations/sqlite/0013_late_rollups.sql"),
    ),
    (
        14,
        include_str!("../../migrations/sqlite/0014_token_owners.sql"),
    ),
    (
        15,
        include_str!("../../migrations/sqlite/0015_membership.sql"),
    ),
    (
        16,
        include_str!("../../migrations/sqlite/0016_agent_credentials.sql"),
    ),
    (20, include_str!("../../migrations/sqlite/0020_appeals.sql")),
    (
        21,
        include_str!("../../migrations/sqlite/0021_ack_requests.sql"),
    ),
    (
        22,
        include_str!("../../migrations/sqlite/0022_remote_write.sql"),
    ),
    (23, include_str!("../../migrations/sqlite/0023_leader.sql")),
    (
        24,
        include_str!("../../migrations/sqlite/0024_login_buckets.sql"),
    ),
    (
        26,
        include_str!("../../migrations/sqlite/0026_one_final_per_language.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/postgres/0002_rule_state.sql"),
    ),
    (3, include_str!("../../migrations/postgres/0003_notify.sql")),
    (4, include_str!("../../migrations/postgres/0004_auth.sql")),
    (
        5,
        include_str!("../../migrations/postgres/0005_inspections.sql"),
    ),
    (
        6,
        include_str!("../../migrations/postgres/0006_incidents.sql"),
    ),
    (
        7,
        include_str!("../../migrations/postgres/0007_reports.sql"),
    ),
    (
        8,
        include_str!("../../migrations/postgres/0008_report_deliveries.sql"),
    ),
    (
        9,
        include_str!("../../migrations/postgres/0009_kpi_hours.sql"),
    ),
    (
        10,
        include_str!("../../migrations/postgres/0010_ack_links.sql"),
    ),
    (
        11,
        include_str!("../../migrations/postgres/0011_incident_stamps.sql"),
    ),
    (
        12,
        include_str!("../../migrations/postgres/0012_audit_checkpoints.sql"),
    ),
    (
        13,
        include_str!("../../migrations/postgres/0013_late_rollups.sql"),
    ),
    (
        14,
        include_str!("../../migrations/postgres/0014_token_owners.sql"),
    ),
    (
        15,
        include_str!("../../migrations/postgres/0015_membership.sql"),
    ),
    (
        16,
        include_str!("../../migrations/postgres/0016_agent_credentials.sql"),
    ),
    (
        20,
        include_str!("../../migrations/postgres/0020_appeals.sql"),
    ),
    (
        21,
        include_str!("../../migrations/postgres/0021_ack_requests.sql"),
    ),
    (
        22,
        include_str!("../../migrations/postgres/0022_remote_write.sql"),
    ),
    (
        23,
        include_str!("../../migrations/postgres/0023_leader.sql"),
    ),
    (
        24,
        include_str!("../../migrations/postgres/0024_login_buckets.sql"),
    ),
    (
        26,
        include_str!("../../migrations/postgres/0026_one_final_per_language.sql"),
    ),
];

/// Milliseconds in an hour; rollups are per series per UTC hour.
pub const HOUR_MS: i64 = 3_600_000;

/// Samples and events of one batch must lie within this distance of its `collected_at_ms`;
/// it bounds the range scanned when the raw window is read by time.
pub const MAX_BATCH_SPAN_MS: i64 = HOUR_MS;

/// The `application_name` of this process's PostgreSQL sessions: `yunwei-server-<pid>`.
pub fn application_name() -> String {
    format!("yunwei-server-{}", std::process::id())
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The fencing token singleton writes check: `None` on a single node (SQLite), else this
    /// replica's lease holder id and the epoch of its term (`-1` while it is a follower).
    fence: Arc<RwLock<Option<Fence>>>,
    /// A random number naming this opening of the store (this process, on a single node).
    incarnation: i64,
}

/// A fencing token: the lease holder id and the epoch of its term.
type Fence = (Arc<str>, i64);

/// Why a fenced write was refused: this replica no longer holds the leader lease of its term.
pub const FENCED: &str = "fenced: this replica no longer holds the leader lease";

/// An enrolled agent and the host it reports for.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub agent_id: String,
    pub token_hash: String,
    pub enrolled_ms: i64,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub first_seen_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    pub last_seq: i64,
    pub interval_ms: i64,
    pub pruned_seq: i64,
}

/// A series: the agent that owns it, its metric name and its own labels (host labels are
/// attached when it is read, so a relabelled host keeps its history).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    pub id: i64,
    pub agent_id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// One hourly rollup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rollup {
    pub series_id: i64,
    pub hour_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
    pub last: f64,
    /// The time of the sample `last` holds; `None` in rows rolled up before it was stored.
    pub last_ms: Option<i64>,
}

/// `insert` (an `INSERT INTO t (…) VALUES ` prefix) followed by the numbered placeholders of
/// `rows` rows of `cols` values each: `($1, $2), ($3, $4)`.
pub fn multi_row_insert(insert: &str, rows: usize, cols: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(insert.len() + rows * cols * 5);
    sql.push_str(insert);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            let sep = if c == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${}", r * cols + c + 1);
        }
        sql.push(')');
    }
    sql
}

/// Inserts rollup rows, 1,000 to a statement.
pub async fn insert_rollups(conn: &mut sqlx::AnyConnection, rows: &[Rollup]) -> sqlx::Result<()> {
    write_rollups(conn, rows, "").await
}

/// Writes rollup rows in multi-row statements, each ending with `tail` (empty, or an
/// `ON CONFLICT` clause).
pub(crate) async fn write_rollups(
    conn: &mut sqlx::AnyConnection,
    rows: &[Rollup],
    tail: &str,
) -> sqlx::Result<()> {
    for chunk in rows.chunks(1000) {
        let mut sql = multi_row_insert(
            "INSERT INTO rollups (series_id, hour_ms, min, max, sum, count, last, last_ms) VALUES ",
            chunk.len(),
            8,
        );
        sql.push_str(tail);
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.series_id)
                .bind(r.hour_ms)
                .bind(r.min)
                .bind(r.max)
                .bind(r.sum)
                .bind(r.count)
                .bind(r.last)
                .bind(r.last_ms);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A stored agent event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRow {
    pub agent_id: String,
    pub kind: String,
    pub subject: String,
    pub ts_ms: i64,
    pub received_ms: i64,
    pub detail: serde_json::Value,
}

pub(crate) fn labels_from_json(s: &str) -> BTreeMap<String, String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// Canonical JSON of a label set (keys sorted), used as the series identity.
pub fn labels_to_json(l: &BTreeMap<String, String>) -> String {
    serde_json::to_string(l).expect("string maps serialize")
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`.
    pub async fn open(url: &str, sqlite_synchronous_full: bool) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                if let Some(dir) = Path::new(path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty() && !d.exists())
                {
                    crate::private_files::private_dir(dir)?;
                }
                // The database holds the link-signing secret and the audit log: owner-only,
                // and SQLite gives its -wal and -shm files the database file's mode.
                if path != ":memory:" && !path.is_empty() && !url.contains("mode=memory") {
                    crate::private_files::create_private_file(Path::new(path))?;
                    for suffix in ["-wal", "-shm", "-journal"] {
                        crate::private_files::private_file(Path::new(&format!("{path}{suffix}")))?;
                    }
                }
                if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                }
            }
            Backend::Postgres => url.to_string(),
        };
        let synchronous = if sqlite_synchronous_full {
            "PRAGMA synchronous=FULL"
        } else {
            "PRAGMA synchronous=NORMAL"
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in [
                            "PRAGMA journal_mode=WAL",
                            synchronous,
                            "PRAGMA busy_timeout=10000",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    } else {
                        // Operators (and the failover test) find a replica's sessions by it.
                        sqlx::query(&format!("SET application_name = '{}'", application_name()))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .with_context(|| format!("connecting to {}", redact(&url)))?;
        let store = Store {
            pool,
            backend,
            fence: Arc::new(RwLock::new(None)),
            incarnation: rand::random::<i64>(),
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies missing migrations, each in its own transaction.
    async fn migrate(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            // Several replicas may start at once.
            sqlx::query("SELECT pg_advisory_lock(947001)")
                .execute(&mut *conn)
                .await?;
        }
        let result = self.migrate_locked(&mut conn).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(947001)")
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    async fn migrate_locked(&self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        let list = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        for (version, sql) in list {
            if applied.contains(version) {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("applying migration {version}"))?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)")
                .bind(version)
                .bind(crate::now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), waiting up to the busy timeout: a deferred transaction that reads first and
    /// writes later fails with "database is locked" when another writer committed in between,
    /// and SQLite cannot wait for that case.
    pub async fn begin(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Sets the fencing token of this replica's singleton writes (see [`Store::check_fence`]).
    pub fn set_fence(&self, holder: &Arc<str>, epoch: i64) {
        *self.fence.write().expect("fence lock") = Some((holder.clone(), epoch));
    }

    /// Who holds the leases this process takes on queued sends: the epoch of its term on
    /// replicas, else the incarnation of this opening of the store.
    pub fn lease_owner(&self) -> i64 {
        match self.fence_epoch() {
            Some(e) if e >= 0 => e,
            _ => self.incarnation,
        }
    }

    /// The epoch singleton writes are fenced with, when fenced.
    pub fn fence_epoch(&self) -> Option<i64> {
        self.fence.read().expect("fence lock").as_ref().map(|f| f.1)
    }

    /// Inside a singleton write's transaction: continues only while this replica holds the
    /// leader lease with the epoch of its term, and share-locks the lease row until the
    /// transaction ends, so another replica cannot take the lease between this check and the
    /// commit. A paused ex-leader that wakes up after a takeover fails here, writing nothing.
    /// On a single node (no fence set) it does nothing.
    pub async fn check_fence(&self, conn: &mut AnyConnection) -> sqlx::Result<()> {
        let fence = self.fence.read().expect("fence lock").clone();
        let Some((holder, epoch)) = fence else {
            return Ok(());
        };
        let lock = match self.backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        };
        let held = sqlx::query(&format!(
            "SELECT epoch FROM leader_lease WHERE name = 'leader' AND holder = $1 AND epoch = $2{lock}"
        ))
        .bind(&*holder)
        .bind(epoch)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
        if held {
            Ok(())
        } else {
            Err(sqlx::Error::Protocol(FENCED.into()))
        }
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    // ---- agents -------------------------------------------------------------------------

    /// Stores a newly enrolled agent, with its enrollment's audit row when given.
    pub async fn insert_agent(&self, a: &AgentRow, audit: audit::Audit<'_>) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO agents (agent_id, token_hash, enrolled_ms, hostname, os, kernel, arch, \
             agent_version, labels, interval_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&a.agent_id)
        .bind(&a.token_hash)
        .bind(a.enrolled_ms)
        .bind(&a.hostname)
        .bind(&a.os)
        .bind(&a.kernel)
        .bind(&a.arch)
        .bind(&a.agent_version)
        .bind(labels_to_json(&a.labels))
        .bind(a.interval_ms)
        .execute(&mut *tx)
        .await?;
        audit::commit(tx, audit).await
    }

    pub async fn agents(&self) -> sqlx::Result<Vec<AgentRow>> {
        let rows = sqlx::query(
            "SELECT agent_id, token_hash, enrolled_ms, hostname, os, kernel, arch, agent_version, \
             labels, first_seen_ms, last_seen_ms, last_seq, interval_ms, pruned_seq \
             FROM agents ORDER BY hostname, agent_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(agent_from_row).collect())
    }

    pub async fn agent(&self, agent_id: &str) -> sqlx::Result<Option<AgentRow>> {
        let row = sqlx::query(
            "SELECT agent_id, token_hash, enrolled_ms, hostname, os, kernel, arch, agent_version, \
             labels, first_seen_ms, last_seen_ms, last_seq, interval_ms, pruned_seq \
             FROM agents WHERE agent_id = $1",
        )
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(agent_from_row))
    }

    // ---- series -------------------------------------------------------------------------

    pub async fn all_series(&self) -> sqlx::Result<Vec<SeriesRow>> {
        let rows = sqlx::query("SELECT id, agent_id, name, labels FROM series ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(series_from_row).collect())
    }

    pub async fn series_named(&self, name: &str) -> sqlx::Result<Vec<SeriesRow>> {
        let rows = sqlx::query(
            "SELECT id, agent_id, name, labels FROM series WHERE name = $1 ORDER BY id",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(series_from_row).collect())
    }

    pub async fn series_count(&self, agent_id: &str) -> sqlx::Result<i64> {
        sqlx::query("SELECT COUNT(*) FROM series WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_one(&self.pool)
            .await
            .map(|r| r.get::<i64, _>(0))
    }

    // ---- raw window and rollups ---------------------------------------------------------

    /// Raw samples of `agent_id` with `from <= ts <= to`, passed to `f`.
    pub async fn raw_samples(
        &self,
        agent_id: &str,
        from: i64,
        to: i64,
        mut f: impl FnMut(blob::RawSample),
    ) -> sqlx::Result<()> {
        let rows = sqlx::query(
            "SELECT data FROM batches WHERE agent_id = $1 AND min_ts >= $2 AND min_ts <= $3 AND max_ts >= $4",
        )
        .bind(agent_id)
        .bind(from - MAX_BATCH_SPAN_MS)
        .bind(to)
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let data: Vec<u8> = row.get(0);
            let ok = blob::decode(&data, |s| {
                if s.ts_ms >= from && s.ts_ms <= to {
                    f(s)
                }
            });
            if ok.is_none() {
                tracing::error!(agent = agent_id, "corrupt raw batch skipped");
            }
        }
        Ok(())
    }

    /// Encoded raw batches with samples at or after `from`, oldest first.
    pub async fn raw_batches_since(&self, from: i64) -> sqlx::Result<Vec<Vec<u8>>> {
        let rows = sqlx::query("SELECT data FROM batches WHERE max_ts >= $1 ORDER BY min_ts")
            .bind(from)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Every raw sample in `[hour, hour + 1h)`, for computing that hour's rollups.
    pub async fn raw_samples_in_hour(
        &self,
        hour_ms: i64,
        mut f: impl FnMut(blob::RawSample),
    ) -> sqlx::Result<()> {
        let rows = sqlx::query(
            "SELECT data FROM batches WHERE min_ts >= $1 AND min_ts < $2 AND max_ts >= $3",
        )
        .bind(hour_ms - MAX_BATCH_SPAN_MS)
        .bind(hour_ms + HOUR_MS)
        .bind(hour_ms)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let data: Vec<u8> = row.get(0);
            let ok = blob::decode(&data, |s| {
                if s.ts_ms >= hour_ms && s.ts_ms < hour_ms + HOUR_MS {
                    f(s)
                }
            });
            if ok.is_none() {
                tracing::error!(hour_ms, "corrupt raw batch skipped in rollup");
            }
        }
        Ok(())
    }

    /// Dirty hours that closed before `before_ms`, as (hour, version, rebuild): `rebuild` when
    /// the hour is to be rebuilt from the raw window (every batch of it is still there), else
    /// late samples were merged into its stored rollups and only its KPIs are derived again
    /// (see [`rollup`]).
    pub async fn dirty_hours(&self, before_ms: i64) -> sqlx::Result<Vec<(i64, i64, bool)>> {
        let rows = sqlx::query(
            "SELECT hour_ms, version, rebuild FROM rollup_dirty WHERE hour_ms + $1 <= $2 ORDER BY hour_ms",
        )
        .bind(HOUR_MS)
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<i64, _>(2) != 0))
            .collect())
    }

    /// Rollups of the given series with `from <= hour_ms <= to`, ordered by series and hour.
    pub async fn rollups(
        &self,
        series_ids: &[i64],
        from: i64,
        to: i64,
    ) -> sqlx::Result<Vec<Rollup>> {
        let mut out = Vec::new();
        for chunk in series_ids.chunks(500) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "SELECT series_id, hour_ms, min, max, sum, count, last, last_ms FROM rollups \
                 WHERE hour_ms >= $1 AND hour_ms <= $2 AND series_id IN ({}) ORDER BY series_id, hour_ms",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(from).bind(to);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(Rollup {
                    series_id: r.get(0),
                    hour_ms: r.get(1),
                    min: r.get(2),
                    max: r.get(3),
                    sum: r.get(4),
                    count: r.get(5),
                    last: r.get(6),
                    last_ms: r.get(7),
                });
            }
        }
        out.sort_by_key(|r| (r.series_id, r.hour_ms));
        Ok(out)
    }

    // ---- status intervals and events ----------------------------------------------------

    /// Stored (up/down) spans of one subject intersecting `[from, to)`.
    pub async fn intervals(
        &self,
        kind: &str,
        subject: &str,
        from: i64,
        to: i64,
    ) -> sqlx::Result<Vec<Span>> {
        let rows = sqlx::query(
            "SELECT id, state, start_ms, end_ms FROM status_intervals \
             WHERE kind = $1 AND subject = $2 AND end_ms > $3 AND start_ms < $4 ORDER BY start_ms",
        )
        .bind(kind)
        .bind(subject)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(span_from_row).collect())
    }

    /// Subjects of a kind whose name starts with `prefix`.
    pub async fn interval_subjects(&self, kind: &str, prefix: &str) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT subject FROM status_intervals WHERE kind = $1 AND subject >= $2 AND subject < $3 ORDER BY subject",
        )
        .bind(kind)
        .bind(prefix)
        .bind(format!("{prefix}\u{10FFFF}"))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn events(&self, agent_id: &str, from: i64, to: i64) -> sqlx::Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT agent_id, kind, subject, ts_ms, received_ms, detail FROM events \
             WHERE agent_id = $1 AND ts_ms >= $2 AND ts_ms <= $3 ORDER BY ts_ms, id",
        )
        .bind(agent_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| EventRow {
                agent_id: r.get(0),
                kind: r.get(1),
                subject: r.get(2),
                ts_ms: r.get(3),
                received_ms: r.get(4),
                detail: serde_json::from_str(&r.get::<String, _>(5)).unwrap_or_default(),
            })
            .collect())
    }

    /// Saved alert-rule state per group key.
    pub async fn rule_states(&self) -> sqlx::Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT group_key, state FROM rule_state")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Saves a group's state as of the evaluation at `now_ms` (fenced, see
    /// [`Store::check_fence`]); a save of an older evaluation that
    /// arrives late (two evaluators finishing out of order) leaves the newer state in place.
    pub async fn save_rule_state(
        &self,
        group_key: &str,
        state: &str,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        sqlx::query(
            "INSERT INTO rule_state (group_key, state, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (group_key) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms \
             WHERE rule_state.updated_ms < excluded.updated_ms",
        )
        .bind(group_key)
        .bind(state)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Row counts per table, for tests and diagnostics.
    pub async fn counts(&self) -> sqlx::Result<BTreeMap<&'static str, i64>> {
        let mut out = BTreeMap::new();
        for t in [
            "agents",
            "series",
            "batches",
            "rollups",
            "rollup_dirty",
            "status_intervals",
            "events",
        ] {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {t}"))
                .fetch_one(&self.pool)
                .await?
                .get(0);
            out.insert(t, n);
        }
        Ok(out)
    }

    /// Total samples held in the raw window.
    pub async fn raw_sample_count(&self) -> sqlx::Result<i64> {
        let r = sqlx::query("SELECT CAST(COALESCE(SUM(samples), 0) AS BIGINT) FROM batches")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.get(0))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn agent_from_row(r: &AnyRow) -> AgentRow {
    AgentRow {
        agent_id: r.get(0),
        token_hash: r.get(1),
        enrolled_ms: r.get(2),
        hostname: r.get(3),
        os: r.get(4),
        kernel: r.get(5),
        arch: r.get(6),
        agent_version: r.get(7),
        labels: labels_from_json(&r.get::<String, _>(8)),
        first_seen_ms: r.get(9),
        last_seen_ms: r.get(10),
        last_seq: r.get(11),
        interval_ms: r.get(12),
        pruned_seq: r.get(13),
    }
}

fn series_from_row(r: &AnyRow) -> SeriesRow {
    SeriesRow {
        id: r.get(0),
        agent_id: r.get(1),
        name: r.get(2),
        labels: labels_from_json(&r.get::<String, _>(3)),
    }
}

pub(crate) fn span_from_row(r: &AnyRow) -> Span {
    Span {
        id: Some(r.get(0)),
        state: State::parse(&r.get::<String, _>(1)),
        start: r.get(2),
        end: r.get(3),
    }
}

/// A database URL with any password removed, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod multi_row_tests {
    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(
            super::multi_row_insert("INSERT INTO t (a, b) VALUES ", 3, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
        assert_eq!(super::multi_row_insert("V ", 1, 1), "V ($1)");
    }
}
