//! Store queries behind contract assessment: status intervals of every subject in a range,
//! the inspection records the server's inspection runner writes, and the events people record
//! against a contract.

use sqlx::Row;

use super::{
    Store,
    audit::{Audit, commit},
    span_from_row,
};
use crate::timeline::Span;

/// One stored inspection (巡检) run.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionRow {
    pub id: i64,
    pub contract_id: String,
    /// `daily`, `weekly` or `before_holiday`.
    pub kind: String,
    pub scheduled_ms: i64,
    pub done_ms: i64,
    pub ok: bool,
    /// The checklist with each item's outcome, JSON.
    pub result: String,
}

/// An event recorded against a contract (evidence of a manual deduction, bonus or veto).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContractEventRow {
    pub id: i64,
    pub contract_id: String,
    pub category: String,
    pub at_ms: i64,
    pub evidence: String,
    pub recorded_by: String,
    pub recorded_ms: i64,
}

impl Store {
    /// Appends a contract event; returns its id.
    pub async fn insert_contract_event(
        &self,
        e: &ContractEventRow,
        audit: Audit<'_>,
    ) -> sqlx::Result<i64> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "INSERT INTO contract_events (contract_id, category, at_ms, evidence, recorded_by, recorded_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&e.contract_id)
        .bind(&e.category)
        .bind(e.at_ms)
        .bind(&e.evidence)
        .bind(&e.recorded_by)
        .bind(e.recorded_ms)
        .fetch_one(&mut *tx)
        .await?;
        let id = row.try_get(0)?;
        commit(tx, audit).await?;
        Ok(id)
    }

    /// Events of a contract that happened in `[from, to)`, oldest first.
    pub async fn contract_events(
        &self,
        contract_id: &str,
        from: i64,
        to: i64,
    ) -> sqlx::Result<Vec<ContractEventRow>> {
        let rows = sqlx::query(
            "SELECT id, contract_id, category, at_ms, evidence, recorded_by, recorded_ms \
             FROM contract_events WHERE contract_id = $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms, id",
        )
        .bind(contract_id)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| ContractEventRow {
                id: r.get(0),
                contract_id: r.get(1),
                category: r.get(2),
                at_ms: r.get(3),
                evidence: r.get(4),
                recorded_by: r.get(5),
                recorded_ms: r.get(6),
            })
            .collect())
    }

    /// Every stored (up/down) span of `kind` intersecting `[from, to)`, as (subject, span),
    /// ordered by subject and start.
    pub async fn intervals_between(
        &self,
        kind: &str,
        from: i64,
        to: i64,
    ) -> sqlx::Result<Vec<(String, Span)>> {
        let rows = sqlx::query(
            "SELECT id, state, start_ms, end_ms, subject FROM status_intervals \
             WHERE kind = $1 AND end_ms > $2 AND start_ms < $3 ORDER BY subject, start_ms",
        )
        .bind(kind)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(4), span_from_row(r)))
            .collect())
    }

    /// Stores an inspection run; a second run of the same obligation is ignored (returns false).
    /// Fenced ([`Store::check_fence`]).
    pub async fn insert_inspection(&self, row: &InspectionRow) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        let done = sqlx::query(
            "INSERT INTO inspections (contract_id, kind, scheduled_ms, done_ms, ok, result) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (contract_id, kind, scheduled_ms) DO NOTHING",
        )
        .bind(&row.contract_id)
        .bind(&row.kind)
        .bind(row.scheduled_ms)
        .bind(row.done_ms)
        .bind(i64::from(row.ok))
        .bind(&row.result)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Inspections of a contract scheduled in `[from, to)`, oldest first.
    pub async fn inspections(
        &self,
        contract_id: &str,
        from: i64,
        to: i64,
    ) -> sqlx::Result<Vec<InspectionRow>> {
        let rows = sqlx::query(
            "SELECT id, contract_id, kind, scheduled_ms, done_ms, ok, result FROM inspections \
             WHERE contract_id = $1 AND scheduled_ms >= $2 AND scheduled_ms < $3 ORDER BY scheduled_ms, id",
        )
        .bind(contract_id)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| InspectionRow {
                id: r.get(0),
                contract_id: r.get(1),
                kind: r.get(2),
                scheduled_ms: r.get(3),
                done_ms: r.get(4),
                ok: r.get::<i64, _>(5) != 0,
                result: r.get(6),
            })
            .collect())
    }

    /// The start of the earliest stored status interval of any host or probe: when monitoring
    /// began, as far as the evidence goes (`None`: nothing observed yet).
    pub async fn first_interval_ms(&self) -> sqlx::Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(start_ms) FROM status_intervals")
            .fetch_one(self.pool())
            .await?;
        row.try_get::<Option<i64>, _>(0)
    }

    /// The earliest scheduled time of any stored inspection of a contract.
    pub async fn first_inspection_ms(&self, contract_id: &str) -> sqlx::Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(scheduled_ms) FROM inspections WHERE contract_id = $1")
            .bind(contract_id)
            .fetch_one(self.pool())
            .await?;
        row.try_get::<Option<i64>, _>(0)
    }
}
