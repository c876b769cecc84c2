//! Store access for the assessment's lifecycle: `appeals` (申诉 and their review), their
//! `appeal_attachments` (byte for byte, with SHA-256) and `report_signoffs` (签认). Each change
//! commits with its audit row. Deadlines, roles and validation are the appeals service's.

use sqlx::{Row, any::AnyRow};

use super::{
    Store,
    audit::{Audit, commit},
};

/// One appeal as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppealRow {
    pub id: String,
    /// The report version appealed.
    pub report_id: i64,
    pub contract_id: String,
    pub period: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// JSON of the target.
    pub target: String,
    pub reason: String,
    pub filed_by: String,
    pub filed_ms: i64,
    /// `pending`, `upheld`, `overturned` or `adjusted`.
    pub status: String,
    pub approved_points_milli: Option<i64>,
    pub approved_minutes_milli: Option<i64>,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub decision_reason: Option<String>,
}

/// An attachment's description (its bytes are read on their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    pub appeal_id: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

/// A party's sign-off of a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignoffRow {
    pub contract_id: String,
    pub period: String,
    /// `operator` or `reviewer`.
    pub role: String,
    pub signed_by: String,
    pub signed_ms: i64,
    /// The version signed.
    pub report_id: i64,
}

/// What a decision sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub status: &'a str,
    pub approved_points_milli: Option<i64>,
    pub approved_minutes_milli: Option<i64>,
    pub decided_by: &'a str,
    pub decided_ms: i64,
    pub reason: &'a str,
}

const COLUMNS: &str = "id, report_id, contract_id, period, start_ms, end_ms, target, reason, \
    filed_by, filed_ms, status, approved_points_milli, approved_minutes_milli, decided_by, \
    decided_ms, decision_reason";

fn appeal_from(r: &AnyRow) -> AppealRow {
    AppealRow {
        id: r.get(0),
        report_id: r.get(1),
        contract_id: r.get(2),
        period: r.get(3),
        start_ms: r.get(4),
        end_ms: r.get(5),
        target: r.get(6),
        reason: r.get(7),
        filed_by: r.get(8),
        filed_ms: r.get(9),
        status: r.get(10),
        approved_points_milli: r.get(11),
        approved_minutes_milli: r.get(12),
        decided_by: r.get(13),
        decided_ms: r.get(14),
        decision_reason: r.get(15),
    }
}

impl Store {
    /// Stores a new appeal with its attachments `(row, bytes)`, and `audit`, in one
    /// transaction.
    pub async fn insert_appeal(
        &self,
        a: &AppealRow,
        attachments: &[(AttachmentRow, Vec<u8>)],
        audit: Audit<'_>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO appeals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16)"
        ))
        .bind(&a.id)
        .bind(a.report_id)
        .bind(&a.contract_id)
        .bind(&a.period)
        .bind(a.start_ms)
        .bind(a.end_ms)
        .bind(&a.target)
        .bind(&a.reason)
        .bind(&a.filed_by)
        .bind(a.filed_ms)
        .bind(&a.status)
        .bind(a.approved_points_milli)
        .bind(a.approved_minutes_milli)
        .bind(&a.decided_by)
        .bind(a.decided_ms)
        .bind(&a.decision_reason)
        .execute(&mut *tx)
        .await?;
        for (f, bytes) in attachments {
            sqlx::query(
                "INSERT INTO appeal_attachments (appeal_id, name, content_type, size, sha256, \
                 bytes) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&a.id)
            .bind(&f.name)
            .bind(&f.content_type)
            .bind(f.size)
            .bind(&f.sha256)
            .bind(bytes.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        commit(tx, audit).await
    }

    /// Decides a pending appeal, with `audit`; false when it is not pending (nothing written).
    pub async fn decide_appeal(
        &self,
        id: &str,
        d: &Decision<'_>,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE appeals SET status = $1, approved_points_milli = $2, \
             approved_minutes_milli = $3, decided_by = $4, decided_ms = $5, decision_reason = $6 \
             WHERE id = $7 AND status = 'pending'",
        )
        .bind(d.status)
        .bind(d.approved_points_milli)
        .bind(d.approved_minutes_milli)
        .bind(d.decided_by)
        .bind(d.decided_ms)
        .bind(d.reason)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        commit(tx, audit).await?;
        Ok(true)
    }

    /// Appeals, optionally of one contract and period, by filing time.
    pub async fn appeals(
        &self,
        contract_id: Option<&str>,
        period: Option<&str>,
    ) -> sqlx::Result<Vec<AppealRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {COLUMNS} FROM appeals WHERE ($1 = '' OR contract_id = $1) \
             AND ($2 = '' OR period = $2) ORDER BY filed_ms, id"
        ))
        .bind(contract_id.unwrap_or(""))
        .bind(period.unwrap_or(""))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(appeal_from)
        .collect())
    }

    /// One appeal.
    pub async fn appeal(&self, id: &str) -> sqlx::Result<Option<AppealRow>> {
        Ok(
            sqlx::query(&format!("SELECT {COLUMNS} FROM appeals WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.pool())
                .await?
                .as_ref()
                .map(appeal_from),
        )
    }

    /// The attachments of the appeals of `contract_id` (all when `None`), by appeal and name.
    pub async fn appeal_attachments(
        &self,
        contract_id: Option<&str>,
    ) -> sqlx::Result<Vec<AttachmentRow>> {
        Ok(sqlx::query(
            "SELECT f.appeal_id, f.name, f.content_type, f.size, f.sha256 \
             FROM appeal_attachments f JOIN appeals a ON a.id = f.appeal_id \
             WHERE ($1 = '' OR a.contract_id = $1) ORDER BY f.appeal_id, f.name",
        )
        .bind(contract_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| AttachmentRow {
            appeal_id: r.get(0),
            name: r.get(1),
            content_type: r.get(2),
            size: r.get(3),
            sha256: r.get(4),
        })
        .collect())
    }

    /// One attachment's content type and bytes.
    pub async fn appeal_attachment(
        &self,
        appeal_id: &str,
        name: &str,
    ) -> sqlx::Result<Option<(String, Vec<u8>)>> {
        Ok(sqlx::query(
            "SELECT content_type, bytes FROM appeal_attachments WHERE appeal_id = $1 AND name = $2",
        )
        .bind(appeal_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .map(|r| (r.get::<String, _>(0), r.get::<Vec<u8>, _>(1))))
    }

    /// Records a party's sign-off, with `audit`; false when that party has signed already.
    pub async fn insert_signoff(&self, s: &SignoffRow, audit: Audit<'_>) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "INSERT INTO report_signoffs (contract_id, period, role, signed_by, signed_ms, \
             report_id) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (contract_id, period, role) DO NOTHING",
        )
        .bind(&s.contract_id)
        .bind(&s.period)
        .bind(&s.role)
        .bind(&s.signed_by)
        .bind(s.signed_ms)
        .bind(s.report_id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        commit(tx, audit).await?;
        Ok(true)
    }

    /// The sign-offs of a contract's period (all periods when `None`), by time.
    pub async fn signoffs(
        &self,
        contract_id: &str,
        period: Option<&str>,
    ) -> sqlx::Result<Vec<SignoffRow>> {
        Ok(sqlx::query(
            "SELECT contract_id, period, role, signed_by, signed_ms, report_id \
             FROM report_signoffs WHERE contract_id = $1 AND ($2 = '' OR period = $2) \
             ORDER BY signed_ms, role",
        )
        .bind(contract_id)
        .bind(period.unwrap_or(""))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| SignoffRow {
            contract_id: r.get(0),
            period: r.get(1),
            role: r.get(2),
            signed_by: r.get(3),
            signed_ms: r.get(4),
            report_id: r.get(5),
        })
        .collect())
    }

    /// The first archived version of a contract's period: the draft (初稿), whose generation
    /// opens the appeal window.
    pub async fn first_report_of(
        &self,
        contract_id: &str,
        period: &str,
    ) -> sqlx::Result<Option<(i64, i64)>> {
        Ok(sqlx::query(
            "SELECT id, generated_ms FROM reports WHERE contract_id = $1 AND period = $2 \
             ORDER BY version, id LIMIT 1",
        )
        .bind(contract_id)
        .bind(period)
        .fetch_optional(self.pool())
        .await?
        .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1))))
    }
}

/// One lifecycle mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleMailRow {
    pub id: i64,
    pub contract_id: String,
    pub period: String,
    /// `draft`, `appeal`, `decision`, `sign_off`.
    pub step: String,
    /// JSON list.
    pub to_addrs: String,
    pub subject: String,
    pub body: String,
    pub created_ms: i64,
    pub status: String,
    pub due_ms: i64,
    pub attempts: i64,
    pub sent_ms: Option<i64>,
    pub last_error: Option<String>,
}

const MAIL_COLUMNS: &str = "id, contract_id, period, step, to_addrs, subject, body, created_ms, \
    status, due_ms, attempts, sent_ms, last_error";

fn mail_from(r: &AnyRow) -> LifecycleMailRow {
    LifecycleMailRow {
        id: r.get(0),
        contract_id: r.get(1),
        period: r.get(2),
        step: r.get(3),
        to_addrs: r.get(4),
        subject: r.get(5),
        body: r.get(6),
        created_ms: r.get(7),
        status: r.get(8),
        due_ms: r.get(9),
        attempts: r.get(10),
        sent_ms: r.get(11),
        last_error: r.get(12),
    }
}

impl Store {
    /// Queues a lifecycle mail (`id` ignored), due at once.
    pub async fn enqueue_lifecycle_mail(&self, m: &LifecycleMailRow) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO lifecycle_mail (contract_id, period, step, to_addrs, subject, body, \
             created_ms, status, due_ms, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             'pending', $7, 0)",
        )
        .bind(&m.contract_id)
        .bind(&m.period)
        .bind(&m.step)
        .bind(&m.to_addrs)
        .bind(&m.subject)
        .bind(&m.body)
        .bind(m.created_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Pending lifecycle mail due at `now_ms`, oldest first.
    pub async fn due_lifecycle_mail(&self, now_ms: i64) -> sqlx::Result<Vec<LifecycleMailRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {MAIL_COLUMNS} FROM lifecycle_mail WHERE status = 'pending' AND due_ms <= $1 \
             ORDER BY due_ms, id"
        ))
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(mail_from)
        .collect())
    }

    /// Lifecycle mail of a contract's period, oldest first.
    pub async fn lifecycle_mail(
        &self,
        contract_id: &str,
        period: &str,
    ) -> sqlx::Result<Vec<LifecycleMailRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {MAIL_COLUMNS} FROM lifecycle_mail WHERE contract_id = $1 AND period = $2 \
             ORDER BY id"
        ))
        .bind(contract_id)
        .bind(period)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(mail_from)
        .collect())
    }

    /// Takes a due row for one attempt (moving its due time past `lease_until_ms`); false when
    /// another sender took it first. Fenced ([`Store::check_fence`]): an ex-leader leases, and
    /// so sends, nothing.
    pub async fn lease_lifecycle_mail(
        &self,
        id: i64,
        due_ms: i64,
        lease_until_ms: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        let r = sqlx::query(
            "UPDATE lifecycle_mail SET due_ms = $1 WHERE id = $2 AND due_ms = $3 \
             AND status = 'pending'",
        )
        .bind(lease_until_ms)
        .bind(id)
        .bind(due_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records an attempt: the new status, next due time, and the error of a failure. Fenced
    /// ([`Store::check_fence`]) like the lease: an ex-leader records nothing, so the row's lease
    /// runs out and the new leader sends it (once more, if this replica's send got through:
    /// the one in-flight send that can always repeat, which the caller logs).
    pub async fn record_lifecycle_mail(
        &self,
        id: i64,
        status: &str,
        due_ms: i64,
        sent_ms: Option<i64>,
        error: Option<&str>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        sqlx::query(
            "UPDATE lifecycle_mail SET status = $1, due_ms = $2, sent_ms = $3, last_error = $4, \
             attempts = attempts + 1 WHERE id = $5",
        )
        .bind(status)
        .bind(due_ms)
        .bind(sent_ms)
        .bind(error)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}
