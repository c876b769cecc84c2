//! Store access for the report archive: `reports` (one row per version, with its signed
//! canonical JSON envelope) and `report_files` (every rendered file byte for byte). Versioning,
//! signing and the schedule are the reports service's.

use sqlx::{Row, any::AnyRow};

use super::{Backend, Store};

/// One archived report version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub id: i64,
    pub contract_id: String,
    pub period: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub version: i64,
    pub lang: String,
    pub generated_ms: i64,
    pub score_milli: i64,
    pub grade: String,
    pub provisional: bool,
    pub sha256: String,
    pub origin: String,
    /// Formats stored for the version, as the database lists them.
    pub formats: Vec<String>,
}

/// The score of one archived version, for trends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportScoreRow {
    pub period: String,
    pub score_milli: i64,
    pub grade: String,
    pub version: i64,
    pub end_ms: i64,
}

fn report_from_row(r: &AnyRow) -> ReportRow {
    let formats: Option<String> = r.get(13);
    ReportRow {
        id: r.get(0),
        contract_id: r.get(1),
        period: r.get(2),
        start_ms: r.get(3),
        end_ms: r.get(4),
        version: r.get(5),
        lang: r.get(6),
        generated_ms: r.get(7),
        score_milli: r.get(8),
        grade: r.get(9),
        provisional: r.get::<i64, _>(10) != 0,
        sha256: r.get(11),
        origin: r.get(12),
        formats: formats
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    }
}

const LIST_SQL: &str = "SELECT r.id, r.contract_id, r.period, r.start_ms, r.end_ms, r.version, \
    r.lang, r.generated_ms, r.score_milli, r.grade, r.provisional, r.sha256, r.origin, \
    (SELECT STRING_AGG(f.format, ',') FROM (SELECT format FROM report_files \
      WHERE report_id = r.id ORDER BY format) f) \
    FROM reports r";

impl Store {
    fn report_list_sql(&self) -> String {
        match self.backend {
            Backend::Postgres => LIST_SQL.to_string(),
            // SQLite's GROUP_CONCAT keeps the subquery's order in practice; the reports
            // service sorts the formats again anyway.
            Backend::Sqlite => LIST_SQL.replace("STRING_AGG", "GROUP_CONCAT"),
        }
    }

    /// Scores of `contract_id`'s versions ending at or before `before_ms`, ordered by end,
    /// period and version.
    pub async fn report_scores(
        &self,
        contract_id: &str,
        before_ms: i64,
    ) -> sqlx::Result<Vec<ReportScoreRow>> {
        let rows = sqlx::query(
            "SELECT period, score_milli, grade, version, end_ms FROM reports \
             WHERE contract_id = $1 AND end_ms <= $2 ORDER BY end_ms, period, version",
        )
        .bind(contract_id)
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ReportScoreRow {
                period: r.get(0),
                score_milli: r.get(1),
                grade: r.get(2),
                version: r.get(3),
                end_ms: r.get(4),
            })
            .collect())
    }

    /// The highest archived version of `contract_id`'s `period`; 0 when there is none.
    pub async fn report_max_version(&self, contract_id: &str, period: &str) -> sqlx::Result<i64> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) FROM reports WHERE contract_id = $1 AND period = $2",
        )
        .bind(contract_id)
        .bind(period)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<i64, _>(0))
    }

    /// Archives a version (`r.id` and `r.formats` are ignored) with its envelope and files
    /// `(format, bytes)` in one transaction; returns its id. Fails when the version exists.
    /// A version the schedule makes (origin `schedule`) is fenced ([`Store::check_fence`]):
    /// an ex-leader archives nothing, so no version is made (and mailed) twice.
    pub async fn insert_report(
        &self,
        r: &ReportRow,
        envelope: &[u8],
        files: &[(&str, &[u8])],
    ) -> sqlx::Result<i64> {
        let mut tx = self.begin().await?;
        if r.origin == "schedule" {
            self.check_fence(&mut tx).await?;
        }
        let row = sqlx::query(
            "INSERT INTO reports (contract_id, period, start_ms, end_ms, version, lang, generated_ms, \
             score_milli, grade, provisional, sha256, origin, envelope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(&r.contract_id)
        .bind(&r.period)
        .bind(r.start_ms)
        .bind(r.end_ms)
        .bind(r.version)
        .bind(&r.lang)
        .bind(r.generated_ms)
        .bind(r.score_milli)
        .bind(&r.grade)
        .bind(i64::from(r.provisional))
        .bind(&r.sha256)
        .bind(&r.origin)
        .bind(envelope)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.get(0);
        for (format, bytes) in files {
            sqlx::query("INSERT INTO report_files (report_id, format, bytes) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(*format)
                .bind(*bytes)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Archived versions, optionally of one contract, newest first.
    pub async fn reports(&self, contract_id: Option<&str>) -> sqlx::Result<Vec<ReportRow>> {
        let sql = format!(
            "{} WHERE ($1 = '' OR r.contract_id = $1) ORDER BY r.end_ms DESC, r.contract_id, \
             r.period, r.version DESC",
            self.report_list_sql()
        );
        let rows = sqlx::query(&sql)
            .bind(contract_id.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(report_from_row).collect())
    }

    /// One archived version.
    pub async fn report(&self, id: i64) -> sqlx::Result<Option<ReportRow>> {
        let sql = format!("{} WHERE r.id = $1", self.report_list_sql());
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(report_from_row))
    }

    /// The stored bytes of one format of an archived version.
    pub async fn report_file(&self, id: i64, format: &str) -> sqlx::Result<Option<Vec<u8>>> {
        let row =
            sqlx::query("SELECT bytes FROM report_files WHERE report_id = $1 AND format = $2")
                .bind(id)
                .bind(format)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// The signed canonical JSON envelope of an archived version.
    pub async fn report_envelope(&self, id: i64) -> sqlx::Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT envelope FROM reports WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// The first version of `contract_id`'s `period` in `lang` made by the schedule.
    pub async fn first_scheduled_report(
        &self,
        contract_id: &str,
        period: &str,
        lang: &str,
    ) -> sqlx::Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(id) FROM reports \
             WHERE contract_id = $1 AND period = $2 AND origin = 'schedule' AND lang = $3",
        )
        .bind(contract_id)
        .bind(period)
        .bind(lang)
        .fetch_one(&self.pool)
        .await?;
        row.try_get::<Option<i64>, _>(0)
    }
}
