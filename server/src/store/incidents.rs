//! Incidents and their event history. The timestamps (detected, notified, acknowledged, on-site,
//! restored) are written once each, the first time they happen, and every change is an event.

use sqlx::Row;

use super::Store;

/// An incident.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentRow {
    pub id: String,
    pub group_id: Option<String>,
    pub title: String,
    /// 1 (一级 / P1, most severe) .. 4.
    pub level: i64,
    /// `alert` or `manual`.
    pub source: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub detected_ms: i64,
    pub notified_ms: Option<i64>,
    pub acknowledged_ms: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub onsite_ms: Option<i64>,
    pub restored_ms: Option<i64>,
    pub rca: Option<String>,
    pub created_by: String,
    pub updated_ms: i64,
}

/// One entry of an incident's history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentEvent {
    pub incident_id: String,
    /// `opened`, `notified`, `ack`, `onsite`, `restored`, `level`, `note`, `rca`.
    pub kind: String,
    pub actor: String,
    pub at_ms: i64,
    pub detail: String,
}

/// A clock column that can be stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Notified,
    Acknowledged,
    Onsite,
    Restored,
}

impl Clock {
    fn column(self) -> &'static str {
        match self {
            Clock::Notified => "notified_ms",
            Clock::Acknowledged => "acknowledged_ms",
            Clock::Onsite => "onsite_ms",
            Clock::Restored => "restored_ms",
        }
    }

    /// The event kind recorded with it.
    pub fn kind(self) -> &'static str {
        match self {
            Clock::Notified => "notified",
            Clock::Acknowledged => "ack",
            Clock::Onsite => "onsite",
            Clock::Restored => "restored",
        }
    }
}

const COLS: &str = "id, group_id, title, level, source, labels, detected_ms, notified_ms, \
                    acknowledged_ms, acknowledged_by, onsite_ms, restored_ms, rca, created_by, \
                    updated_ms";

fn incident(r: &sqlx::any::AnyRow) -> IncidentRow {
    IncidentRow {
        id: r.get(0),
        group_id: r.get(1),
        title: r.get(2),
        level: r.get(3),
        source: r.get(4),
        labels: serde_json::from_str(&r.get::<String, _>(5)).unwrap_or_default(),
        detected_ms: r.get(6),
        notified_ms: r.get(7),
        acknowledged_ms: r.get(8),
        acknowledged_by: r.get(9),
        onsite_ms: r.get(10),
        restored_ms: r.get(11),
        rca: r.get(12),
        created_by: r.get(13),
        updated_ms: r.get(14),
    }
}

impl Store {
    /// Opens an incident and records the `opened` event.
    pub async fn insert_incident(&self, i: &IncidentRow) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO incidents ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15)"
        ))
        .bind(&i.id)
        .bind(&i.group_id)
        .bind(&i.title)
        .bind(i.level)
        .bind(&i.source)
        .bind(super::labels_to_json(&i.labels))
        .bind(i.detected_ms)
        .bind(i.notified_ms)
        .bind(i.acknowledged_ms)
        .bind(&i.acknowledged_by)
        .bind(i.onsite_ms)
        .bind(i.restored_ms)
        .bind(&i.rca)
        .bind(&i.created_by)
        .bind(i.updated_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO incident_events (incident_id, kind, actor, at_ms, detail) \
             VALUES ($1, 'opened', $2, $3, $4)",
        )
        .bind(&i.id)
        .bind(&i.created_by)
        .bind(i.updated_ms)
        .bind(format!("level {}", i.level))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Stamps a clock the first time (later stamps are ignored) and records the event; returns
    /// whether it was stamped. `by` is kept as the acknowledger for [`Clock::Acknowledged`].
    pub async fn stamp_incident(
        &self,
        id: &str,
        clock: Clock,
        at_ms: i64,
        by: &str,
        now_ms: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let col = clock.column();
        let sql = if clock == Clock::Acknowledged {
            format!(
                "UPDATE incidents SET {col} = $1, updated_ms = $2, acknowledged_by = $4 \
                 WHERE id = $3 AND {col} IS NULL"
            )
        } else {
            format!(
                "UPDATE incidents SET {col} = $1, updated_ms = $2 WHERE id = $3 AND {col} IS NULL"
            )
        };
        let mut q = sqlx::query(&sql).bind(at_ms).bind(now_ms).bind(id);
        if clock == Clock::Acknowledged {
            q = q.bind(by);
        }
        let r = q.execute(&mut *tx).await?;
        let stamped = r.rows_affected() == 1;
        if stamped {
            sqlx::query(
                "INSERT INTO incident_events (incident_id, kind, actor, at_ms, detail) \
                 VALUES ($1, $2, $3, $4, '')",
            )
            .bind(id)
            .bind(clock.kind())
            .bind(by)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(stamped)
    }

    /// Changes the level (recorded with the reason).
    pub async fn set_incident_level(
        &self,
        id: &str,
        level: i64,
        by: &str,
        reason: &str,
        now_ms: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let old: Option<i64> = sqlx::query("SELECT level FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get(0));
        let Some(old) = old else {
            return Ok(false);
        };
        sqlx::query("UPDATE incidents SET level = $1, updated_ms = $2 WHERE id = $3")
            .bind(level)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO incident_events (incident_id, kind, actor, at_ms, detail) \
             VALUES ($1, 'level', $2, $3, $4)",
        )
        .bind(id)
        .bind(by)
        .bind(now_ms)
        .bind(format!("{old} -> {level}: {reason}"))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Adds a note, or sets the RCA text (`kind` = `note` or `rca`).
    pub async fn incident_text(
        &self,
        id: &str,
        kind: &str,
        by: &str,
        text: &str,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        if kind == "rca" {
            sqlx::query("UPDATE incidents SET rca = $1, updated_ms = $2 WHERE id = $3")
                .bind(text)
                .bind(now_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO incident_events (incident_id, kind, actor, at_ms, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(kind)
        .bind(by)
        .bind(now_ms)
        .bind(text)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Incidents, newest first.
    pub async fn incidents(&self, open_only: bool) -> sqlx::Result<Vec<IncidentRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {COLS} FROM incidents WHERE ($1 = 0 OR restored_ms IS NULL) \
             ORDER BY detected_ms DESC, id"
        ))
        .bind(i64::from(open_only))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(incident)
        .collect())
    }

    pub async fn incident(&self, id: &str) -> sqlx::Result<Option<IncidentRow>> {
        Ok(
            sqlx::query(&format!("SELECT {COLS} FROM incidents WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.pool())
                .await?
                .as_ref()
                .map(incident),
        )
    }

    /// The open incident of an alert group.
    pub async fn open_incident_of_group(
        &self,
        group_id: &str,
    ) -> sqlx::Result<Option<IncidentRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {COLS} FROM incidents WHERE group_id = $1 AND restored_ms IS NULL \
             ORDER BY detected_ms DESC LIMIT 1"
        ))
        .bind(group_id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(incident))
    }

    pub async fn incident_events(&self, id: &str) -> sqlx::Result<Vec<IncidentEvent>> {
        Ok(sqlx::query(
            "SELECT incident_id, kind, actor, at_ms, detail FROM incident_events \
             WHERE incident_id = $1 ORDER BY at_ms, id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| IncidentEvent {
            incident_id: r.get(0),
            kind: r.get(1),
            actor: r.get(2),
            at_ms: r.get(3),
            detail: r.get(4),
        })
        .collect())
    }
}
