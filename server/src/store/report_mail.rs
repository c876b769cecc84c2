//! Store access for the mail of scheduled reports: the `report_deliveries` queue (one row per
//! archived report, recipients as JSON arrays) and every attempt in
//! `report_delivery_attempts`. When to send and retry is the report-mail service's decision.

use sqlx::Row;

use super::Store;

/// One queued report mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub report_id: i64,
    /// JSON array of addresses.
    pub to_addrs: String,
    /// JSON array of addresses.
    pub cc_addrs: String,
    pub created_ms: i64,
    pub status: String,
    pub due_ms: i64,
    pub sent_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// A pending report mail that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDeliveryRow {
    pub report_id: i64,
    /// JSON array of addresses.
    pub to_addrs: String,
    /// JSON array of addresses.
    pub cc_addrs: String,
    pub created_ms: i64,
    pub due_ms: i64,
    pub attempts: i64,
}

/// One attempt at mailing a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttemptRow {
    pub report_id: i64,
    pub attempt: i64,
    pub attempted_ms: i64,
    pub ok: bool,
    pub code: Option<i64>,
    pub error: Option<String>,
    pub target: String,
}

impl Store {
    /// Queues the mail of archived report `report_id`, due at `now_ms`; `false` when it was
    /// queued before.
    pub async fn enqueue_report_delivery(
        &self,
        report_id: i64,
        contract_id: &str,
        to_addrs: &str,
        cc_addrs: &str,
        note: Option<&str>,
        now_ms: i64,
    ) -> sqlx::Result<bool> {
        let r = sqlx::query(
            "INSERT INTO report_deliveries (report_id, contract_id, to_addrs, cc_addrs, created_ms, \
             due_ms, attempts, status, last_error) VALUES ($1, $2, $3, $4, $5, $6, 0, 'pending', $7) \
             ON CONFLICT (report_id) DO NOTHING",
        )
        .bind(report_id)
        .bind(contract_id)
        .bind(to_addrs)
        .bind(cc_addrs)
        .bind(now_ms)
        .bind(now_ms)
        .bind(note)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Queued report mails; `only` restricts to one report.
    pub async fn report_deliveries(&self, only: Option<i64>) -> sqlx::Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT report_id, to_addrs, cc_addrs, created_ms, status, due_ms, sent_ms, last_error \
             FROM report_deliveries WHERE ($1 < 0 OR report_id = $1)",
        )
        .bind(only.unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DeliveryRow {
                report_id: r.get(0),
                to_addrs: r.get(1),
                cc_addrs: r.get(2),
                created_ms: r.get(3),
                status: r.get(4),
                due_ms: r.get(5),
                sent_ms: r.get(6),
                last_error: r.get(7),
            })
            .collect())
    }

    /// Attempts at mailing reports, oldest first; `only` restricts to one report.
    pub async fn report_delivery_attempts(
        &self,
        only: Option<i64>,
    ) -> sqlx::Result<Vec<DeliveryAttemptRow>> {
        let rows = sqlx::query(
            "SELECT report_id, attempt, attempted_ms, ok, code, error, target \
             FROM report_delivery_attempts WHERE ($1 < 0 OR report_id = $1) ORDER BY id",
        )
        .bind(only.unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DeliveryAttemptRow {
                report_id: r.get(0),
                attempt: r.get(1),
                attempted_ms: r.get(2),
                ok: r.get::<i64, _>(3) != 0,
                code: r.get(4),
                error: r.get(5),
                target: r.get(6),
            })
            .collect())
    }

    /// Pending report mails due at `now_ms`, oldest due first, at most 32.
    pub async fn due_report_deliveries(&self, now_ms: i64) -> sqlx::Result<Vec<DueDeliveryRow>> {
        let rows = sqlx::query(
            "SELECT report_id, to_addrs, cc_addrs, created_ms, due_ms, attempts \
             FROM report_deliveries WHERE status = 'pending' AND due_ms <= $1 \
             ORDER BY due_ms, report_id LIMIT 32",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DueDeliveryRow {
                report_id: r.get(0),
                to_addrs: r.get(1),
                cc_addrs: r.get(2),
                created_ms: r.get(3),
                due_ms: r.get(4),
                attempts: r.get(5),
            })
            .collect())
    }

    /// Moves pending row `report_id` from `due_ms` to `until_ms`; `false` when it was not
    /// pending at `due_ms` any more (another sender took it first). Fenced
    /// ([`Store::check_fence`]): an ex-leader leases, and so sends, nothing.
    pub async fn lease_report_delivery(
        &self,
        report_id: i64,
        due_ms: i64,
        until_ms: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        let r = sqlx::query(
            "UPDATE report_deliveries SET due_ms = $1 \
             WHERE report_id = $2 AND status = 'pending' AND due_ms = $3",
        )
        .bind(until_ms)
        .bind(report_id)
        .bind(due_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records attempt `a` and, in the same transaction, leaves its row with `status`, due at
    /// `due_ms` (sent at the attempt's time when it succeeded).
    pub async fn record_report_delivery_attempt(
        &self,
        a: &DeliveryAttemptRow,
        status: &str,
        due_ms: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        sqlx::query(
            "INSERT INTO report_delivery_attempts (report_id, attempt, attempted_ms, ok, code, error, \
             target) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.report_id)
        .bind(a.attempt)
        .bind(a.attempted_ms)
        .bind(i64::from(a.ok))
        .bind(a.code)
        .bind(&a.error)
        .bind(&a.target)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE report_deliveries SET attempts = $1, status = $2, due_ms = $3, sent_ms = $4, \
             last_error = $5 WHERE report_id = $6",
        )
        .bind(a.attempt)
        .bind(status)
        .bind(due_ms)
        .bind(a.ok.then_some(a.attempted_ms))
        .bind(&a.error)
        .bind(a.report_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
