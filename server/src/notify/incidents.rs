//! What incident clocks and levels may count. The operator recording a stamp is usually the
//! vendor being assessed, so a stamp that claims an earlier time than its recording (by more
//! than [`BACKDATE_TOLERANCE_MS`]) and a level downgrade are requests: until a reviewer other
//! than the requester approves, the recording time (or the old level) counts.

use crate::store::{
    Store,
    audit::Audit,
    incidents::{Clock, NewRequest},
};

/// How much earlier than its recording a stamp may be and still count as given (the time it
/// takes to reach a keyboard after acting). Earlier stamps need a reviewer's approval.
pub const BACKDATE_TOLERANCE_MS: i64 = 5 * 60_000;

/// What a stamp did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamped {
    /// Stamped at the time given.
    Now,
    /// Stamped at the recording time; the earlier time given is this pending request.
    Requested(String),
    /// The clock was stamped before: nothing changed.
    AlreadyRecorded,
}

/// What a level change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelChanged {
    /// Applied (the same or a more severe level).
    Now,
    /// A downgrade: this pending request.
    Requested(String),
    NotFound,
}

/// Why a review was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewRefused {
    NotFound,
    /// The requester cannot review their own request.
    OwnRequest,
    /// Already decided (the status).
    Decided(String),
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Stamps `clock` of incident `id` as happened at `at_ms`, recorded by `by` at `now_ms`, with
/// `audit` committed in the same transaction.
#[allow(clippy::too_many_arguments)]
pub async fn stamp(
    store: &Store,
    id: &str,
    clock: Clock,
    at_ms: i64,
    by: &str,
    reason: &str,
    now_ms: i64,
    audit: Audit<'_>,
) -> sqlx::Result<Stamped> {
    if at_ms >= now_ms - BACKDATE_TOLERANCE_MS {
        return Ok(
            if store
                .stamp_incident(id, clock, at_ms, by, now_ms, false, audit)
                .await?
            {
                Stamped::Now
            } else {
                Stamped::AlreadyRecorded
            },
        );
    }
    let req = new_id();
    let filed = store
        .stamp_incident_requesting(
            &NewRequest {
                id: &req,
                incident_id: id,
                kind: "backdate",
                clock: Some(clock),
                value: at_ms,
                previous: now_ms,
                reason,
                by,
                now_ms,
            },
            audit,
        )
        .await?;
    Ok(if filed {
        Stamped::Requested(req)
    } else {
        Stamped::AlreadyRecorded
    })
}

/// Sets the level of incident `id` (1 = most severe); a less severe level is a request.
pub async fn change_level(
    store: &Store,
    id: &str,
    level: i64,
    by: &str,
    reason: &str,
    now_ms: i64,
    audit: Audit<'_>,
) -> sqlx::Result<LevelChanged> {
    let Some(row) = store.incident(id).await? else {
        return Ok(LevelChanged::NotFound);
    };
    if level <= row.level {
        return Ok(
            if store
                .set_incident_level(id, level, by, reason, now_ms, false, audit)
                .await?
            {
                LevelChanged::Now
            } else {
                LevelChanged::NotFound
            },
        );
    }
    let req = new_id();
    store
        .insert_incident_request(
            &NewRequest {
                id: &req,
                incident_id: id,
                kind: "downgrade",
                clock: None,
                value: level,
                previous: row.level,
                reason,
                by,
                now_ms,
            },
            audit,
        )
        .await?;
    Ok(LevelChanged::Requested(req))
}

/// Approves (applies) or rejects request `id`, as `by`, who must not be its requester.
pub async fn review(
    store: &Store,
    id: &str,
    approve: bool,
    by: &str,
    comment: Option<&str>,
    now_ms: i64,
    audit: Audit<'_>,
) -> sqlx::Result<Result<(), ReviewRefused>> {
    let Some(req) = store.incident_request(id).await? else {
        return Ok(Err(ReviewRefused::NotFound));
    };
    if req.requested_by == by {
        return Ok(Err(ReviewRefused::OwnRequest));
    }
    let status = if approve { "approved" } else { "rejected" };
    if !store
        .review_incident_request(id, status, by, comment, now_ms, audit)
        .await?
    {
        let now = store
            .incident_request(id)
            .await?
            .map_or(req.status, |r| r.status);
        return Ok(Err(ReviewRefused::Decided(now)));
    }
    Ok(Ok(()))
}
