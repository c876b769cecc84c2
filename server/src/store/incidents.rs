//! Incidents and their event history. The timestamps (detected, notified, acknowledged, on-site,
//! restored) are written once each, the first time they happen, and every change is an event.
//! Every stamp keeps when it was recorded and by whom (`incident_stamps`); the incidents row
//! holds the time that counts. Requests to move a clock earlier or lower the level wait in
//! `incident_requests` until a reviewer decides; approving applies them.

use sqlx::Row;

use super::{
    Store,
    audit::{Audit, commit},
};

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
    /// `opened`, `notified`, `ack`, `onsite`, `restored`, `level`, `note`, `rca`,
    /// `level_request` (a downgrade filed), `review` (a request approved or rejected).
    pub kind: String,
    pub actor: String,
    pub at_ms: i64,
    /// When it was recorded (differs from `at_ms` for a stamp given an earlier time).
    pub recorded_ms: i64,
    pub detail: String,
}

/// One stamped clock: the time that counts, when and by whom it was recorded, and the reviewer
/// who approved an earlier time than the recording.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentStamp {
    pub incident_id: String,
    /// `notified`, `ack`, `onsite` or `restored`.
    pub clock: String,
    pub at_ms: i64,
    pub recorded_ms: i64,
    pub recorded_by: String,
    pub approved_by: Option<String>,
    pub approved_ms: Option<i64>,
}

/// A request to change what counts for an incident, decided by a reviewer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentRequestRow {
    pub id: String,
    pub incident_id: String,
    /// `backdate` (a clock to an earlier time) or `downgrade` (a less severe level).
    pub kind: String,
    /// For `backdate`: the clock's event kind (`ack`, `onsite`, `restored`, `notified`).
    pub clock: Option<String>,
    /// The requested time (ms) or level.
    pub value: i64,
    /// What counts until approved: the recorded time, or the level at the request.
    pub previous: i64,
    pub reason: String,
    pub requested_by: String,
    pub requested_ms: i64,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub reviewed_by: Option<String>,
    pub reviewed_ms: Option<i64>,
    pub review_comment: Option<String>,
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

    /// The clock of an event kind.
    pub fn from_kind(kind: &str) -> Option<Clock> {
        [
            Clock::Notified,
            Clock::Acknowledged,
            Clock::Onsite,
            Clock::Restored,
        ]
        .into_iter()
        .find(|c| c.kind() == kind)
    }
}

const REQ_COLS: &str = "id, incident_id, kind, clock, value, previous, reason, requested_by, \
                        requested_ms, status, reviewed_by, reviewed_ms, review_comment";

fn request(r: &sqlx::any::AnyRow) -> IncidentRequestRow {
    IncidentRequestRow {
        id: r.get(0),
        incident_id: r.get(1),
        kind: r.get(2),
        clock: r.get(3),
        value: r.get(4),
        previous: r.get(5),
        reason: r.get(6),
        requested_by: r.get(7),
        requested_ms: r.get(8),
        status: r.get(9),
        reviewed_by: r.get(10),
        reviewed_ms: r.get(11),
        review_comment: r.get(12),
    }
}

/// A new request (pending).
pub struct NewRequest<'a> {
    pub id: &'a str,
    pub incident_id: &'a str,
    pub kind: &'a str,
    pub clock: Option<Clock>,
    pub value: i64,
    pub previous: i64,
    pub reason: &'a str,
    pub by: &'a str,
    pub now_ms: i64,
}

async fn insert_request(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    r: &NewRequest<'_>,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO incident_requests ({REQ_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         'pending', NULL, NULL, NULL)"
    ))
    .bind(r.id)
    .bind(r.incident_id)
    .bind(r.kind)
    .bind(r.clock.map(|c| c.kind()))
    .bind(r.value)
    .bind(r.previous)
    .bind(r.reason)
    .bind(r.by)
    .bind(r.now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    kind: &str,
    by: &str,
    at_ms: i64,
    recorded_ms: i64,
    detail: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO incident_events (incident_id, kind, actor, at_ms, recorded_ms, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(kind)
    .bind(by)
    .bind(at_ms)
    .bind(recorded_ms)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stamps `clock` at `at_ms` if not stamped yet, recording `by` and `now_ms`.
async fn stamp(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    clock: Clock,
    at_ms: i64,
    by: &str,
    now_ms: i64,
    detail: &str,
) -> sqlx::Result<bool> {
    let col = clock.column();
    let sql = if clock == Clock::Acknowledged {
        format!(
            "UPDATE incidents SET {col} = $1, updated_ms = $2, acknowledged_by = $4 \
             WHERE id = $3 AND {col} IS NULL"
        )
    } else {
        format!("UPDATE incidents SET {col} = $1, updated_ms = $2 WHERE id = $3 AND {col} IS NULL")
    };
    let mut q = sqlx::query(&sql).bind(at_ms).bind(now_ms).bind(id);
    if clock == Clock::Acknowledged {
        q = q.bind(by);
    }
    if q.execute(&mut **tx).await?.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO incident_stamps (incident_id, clock, at_ms, recorded_ms, recorded_by) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(clock.kind())
    .bind(at_ms)
    .bind(now_ms)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    event(tx, id, clock.kind(), by, at_ms, now_ms, detail).await?;
    Ok(true)
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
    /// Opens an incident and records the `opened` event. `singleton`: written by the leader's
    /// notification dispatcher, so fenced ([`Store::check_fence`]); people's writes (any
    /// replica) are not.
    pub async fn insert_incident(
        &self,
        i: &IncidentRow,
        singleton: bool,
        audit: Audit<'_>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        if singleton {
            self.check_fence(&mut tx).await?;
        }
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
        let detail = format!("level {}", i.level);
        event(
            &mut tx,
            &i.id,
            "opened",
            &i.created_by,
            i.updated_ms,
            i.updated_ms,
            &detail,
        )
        .await?;
        commit(tx, audit).await
    }

    /// Stamps a clock the first time (later stamps are ignored) at `at_ms`, recorded at
    /// `now_ms` by `by`, and records the event; returns whether it was stamped. `by` is kept as
    /// the acknowledger for [`Clock::Acknowledged`]. `singleton` as for
    /// [`Store::insert_incident`].
    #[allow(clippy::too_many_arguments)]
    pub async fn stamp_incident(
        &self,
        id: &str,
        clock: Clock,
        at_ms: i64,
        by: &str,
        now_ms: i64,
        singleton: bool,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        if singleton {
            self.check_fence(&mut tx).await?;
        }
        if !stamp(&mut tx, id, clock, at_ms, by, now_ms, "").await? {
            return Ok(false);
        }
        commit(tx, audit).await?;
        Ok(true)
    }

    /// Stamps a clock at the recording time `req.now_ms` and files `req` (a `backdate` to
    /// `req.value`), in one transaction; false (and nothing filed) when already stamped.
    pub async fn stamp_incident_requesting(
        &self,
        req: &NewRequest<'_>,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let Some(clock) = req.clock else {
            return Ok(false);
        };
        let mut tx = self.begin().await?;
        let detail = format!("earlier time requested ({}), pending review", req.id);
        if !stamp(
            &mut tx,
            req.incident_id,
            clock,
            req.now_ms,
            req.by,
            req.now_ms,
            &detail,
        )
        .await?
        {
            return Ok(false);
        }
        insert_request(&mut tx, req).await?;
        commit(tx, audit).await?;
        Ok(true)
    }

    /// Files a request that changes nothing until approved (a `downgrade`), with its event.
    pub async fn insert_incident_request(
        &self,
        req: &NewRequest<'_>,
        audit: Audit<'_>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        insert_request(&mut tx, req).await?;
        let detail = format!(
            "{} -> {} requested ({}): {}",
            req.previous, req.value, req.id, req.reason
        );
        event(
            &mut tx,
            req.incident_id,
            "level_request",
            req.by,
            req.now_ms,
            req.now_ms,
            &detail,
        )
        .await?;
        commit(tx, audit).await
    }

    /// Decides a pending request (`approved` applies it: the clock or level changes, and an
    /// approved earlier time keeps its reviewer on the stamp); false when not pending.
    pub async fn review_incident_request(
        &self,
        id: &str,
        status: &str,
        by: &str,
        comment: Option<&str>,
        now_ms: i64,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE incident_requests SET status = $1, reviewed_by = $2, reviewed_ms = $3, \
             review_comment = $4 WHERE id = $5 AND status = 'pending'",
        )
        .bind(status)
        .bind(by)
        .bind(now_ms)
        .bind(comment)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        let req = sqlx::query(&format!(
            "SELECT {REQ_COLS} FROM incident_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map(|r| request(&r))?;
        let inc = req.incident_id.as_str();
        let what = match (
            &req.kind[..],
            req.clock.as_deref().and_then(Clock::from_kind),
        ) {
            ("backdate", Some(c)) => {
                if status == "approved" {
                    let col = c.column();
                    sqlx::query(&format!(
                        "UPDATE incidents SET {col} = $1, updated_ms = $2 WHERE id = $3"
                    ))
                    .bind(req.value)
                    .bind(now_ms)
                    .bind(inc)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE incident_stamps SET at_ms = $1, approved_by = $2, \
                         approved_ms = $3 WHERE incident_id = $4 AND clock = $5",
                    )
                    .bind(req.value)
                    .bind(by)
                    .bind(now_ms)
                    .bind(inc)
                    .bind(c.kind())
                    .execute(&mut *tx)
                    .await?;
                }
                format!("{} at {} (recorded {})", c.kind(), req.value, req.previous)
            }
            _ => {
                let old: i64 = sqlx::query("SELECT level FROM incidents WHERE id = $1")
                    .bind(inc)
                    .fetch_one(&mut *tx)
                    .await?
                    .get(0);
                if status == "approved" {
                    sqlx::query("UPDATE incidents SET level = $1, updated_ms = $2 WHERE id = $3")
                        .bind(req.value)
                        .bind(now_ms)
                        .bind(inc)
                        .execute(&mut *tx)
                        .await?;
                    let detail = format!(
                        "{old} -> {}: {} (requested by {}, approved)",
                        req.value, req.reason, req.requested_by
                    );
                    event(&mut tx, inc, "level", by, now_ms, now_ms, &detail).await?;
                }
                format!("level {} -> {}", req.previous, req.value)
            }
        };
        let detail = format!(
            "{} {status}: {what}, requested by {}{}",
            req.id,
            req.requested_by,
            comment.map_or(String::new(), |c| format!(": {c}"))
        );
        event(&mut tx, inc, "review", by, now_ms, now_ms, &detail).await?;
        commit(tx, audit).await?;
        Ok(true)
    }

    /// Requests, newest first: of one incident, or all; only those with `status` if given.
    pub async fn incident_requests(
        &self,
        incident: Option<&str>,
        status: Option<&str>,
    ) -> sqlx::Result<Vec<IncidentRequestRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {REQ_COLS} FROM incident_requests \
             WHERE ($1 = '' OR incident_id = $1) AND ($2 = '' OR status = $2) \
             ORDER BY requested_ms DESC, id"
        ))
        .bind(incident.unwrap_or(""))
        .bind(status.unwrap_or(""))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(request)
        .collect())
    }

    pub async fn incident_request(&self, id: &str) -> sqlx::Result<Option<IncidentRequestRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {REQ_COLS} FROM incident_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(request))
    }

    /// The stamped clocks of an incident (all incidents when `None`), in recording order.
    pub async fn incident_stamps(&self, id: Option<&str>) -> sqlx::Result<Vec<IncidentStamp>> {
        Ok(sqlx::query(
            "SELECT incident_id, clock, at_ms, recorded_ms, recorded_by, approved_by, \
             approved_ms FROM incident_stamps WHERE ($1 = '' OR incident_id = $1) \
             ORDER BY incident_id, recorded_ms, clock",
        )
        .bind(id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| IncidentStamp {
            incident_id: r.get(0),
            clock: r.get(1),
            at_ms: r.get(2),
            recorded_ms: r.get(3),
            recorded_by: r.get(4),
            approved_by: r.get(5),
            approved_ms: r.get(6),
        })
        .collect())
    }

    /// Changes the level (recorded with the reason). `singleton` as for
    /// [`Store::insert_incident`].
    #[allow(clippy::too_many_arguments)]
    pub async fn set_incident_level(
        &self,
        id: &str,
        level: i64,
        by: &str,
        reason: &str,
        now_ms: i64,
        singleton: bool,
        audit: Audit<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        if singleton {
            self.check_fence(&mut tx).await?;
        }
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
        let detail = format!("{old} -> {level}: {reason}");
        event(&mut tx, id, "level", by, now_ms, now_ms, &detail).await?;
        commit(tx, audit).await?;
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
        audit: Audit<'_>,
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
        event(&mut tx, id, kind, by, now_ms, now_ms, text).await?;
        commit(tx, audit).await
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
            "SELECT incident_id, kind, actor, at_ms, recorded_ms, detail FROM incident_events \
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
            recorded_ms: r.get(4),
            detail: r.get(5),
        })
        .collect())
    }
}
