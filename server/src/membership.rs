//! Contract membership, decided on the server: which hosts (agent ids) and probes
//! (`<agent id>/<probe name>`) count for which system of a contract, from when to when.
//!
//! The vendor runs the agents, so what an agent reports about itself (hostname, labels) never
//! decides what an assessment counts. A contract's label selectors (`hosts:` / `probes:`) only
//! *propose* membership: the membership pass ([`sync`]) looks at every observed subject once per
//! contract, the first time it sees it. With `contracts.auto_assign_from_labels` (the default) a
//! subject whose labels then match a system's selector and that has never been assigned in the
//! contract is assigned once, by `system`, from its first appearance (a host's enrollment, a
//! probe's first result), with an audit row; without
//! it the subject is only listed as pending. Afterwards only an admin or reviewer changes
//! membership ([`change`]), effective from now or later (a 5-minute tolerance), audited with who,
//! when and why; label and hostname changes never move a subject again.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::json;
use yunwei_sla::assess::{Membership, SubjectKind};

use crate::{
    audit,
    contracts::{LoadedContract, host_labels, selected},
    ingest::{KIND_HOST, KIND_PROBE},
    store::{Store, membership::MembershipRow},
};

/// The actor of automatic assignments.
pub const SYSTEM_ACTOR: &str = "system";

/// How far in the past an assignment or unassignment may take effect: a change backdated
/// further would rewrite an assessment already shown to both parties.
pub const BACKDATE_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// Why a membership change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// No such system in the contract.
    #[error("the contract has no system {0:?}")]
    UnknownSystem(String),
    /// No such host or probe.
    #[error("{0}")]
    UnknownSubject(String),
    /// The effective time is earlier than now minus the tolerance.
    #[error(
        "effective_from_ms may be at most 5 minutes in the past ({earliest_ms} or later); \
         membership changes take effect from now on"
    )]
    Backdated { earliest_ms: i64 },
    /// Assigning what is assigned, or unassigning what is not.
    #[error("{0}")]
    Conflict(String),
    /// A required field is empty.
    #[error("must not be empty")]
    Empty(&'static str),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// `host` or `probe` as stored.
pub fn kind_str(k: SubjectKind) -> &'static str {
    match k {
        SubjectKind::Host => KIND_HOST,
        SubjectKind::Probe => KIND_PROBE,
    }
}

fn kind_of(s: &str) -> SubjectKind {
    if s == KIND_PROBE {
        SubjectKind::Probe
    } else {
        SubjectKind::Host
    }
}

/// The rows overlapping `[from_ms, to_ms)` as the assessment engine's membership.
pub fn for_period(rows: &[MembershipRow], from_ms: i64, to_ms: i64) -> Vec<Membership> {
    rows.iter()
        .filter(|r| r.from_ms < to_ms && r.to_ms.is_none_or(|t| t > from_ms && t > r.from_ms))
        .map(|r| Membership {
            system: r.system_id.clone(),
            kind: kind_of(&r.kind),
            subject: r.subject.clone(),
            from_ms: r.from_ms,
            to_ms: r.to_ms,
        })
        .collect()
}

/// Whether `r` is in force at `t`.
pub fn in_force(r: &MembershipRow, t: i64) -> bool {
    r.from_ms <= t && r.to_ms.is_none_or(|to| t < to)
}

/// A subject's labels as the contract's selectors see them now, by kind and subject; `None`
/// when its agent is unknown.
pub struct Labels {
    hosts: BTreeMap<String, BTreeMap<String, String>>,
}

impl Labels {
    pub async fn load(store: &Store) -> sqlx::Result<Labels> {
        let hosts = store
            .agents()
            .await?
            .iter()
            .map(|a| {
                (
                    a.agent_id.clone(),
                    host_labels(&a.agent_id, &a.hostname, &a.labels),
                )
            })
            .collect();
        Ok(Labels { hosts })
    }

    pub fn of(&self, kind: SubjectKind, subject: &str) -> Option<BTreeMap<String, String>> {
        match kind {
            SubjectKind::Host => self.hosts.get(subject).cloned(),
            SubjectKind::Probe => {
                let (agent, probe) = subject.split_once('/')?;
                let mut l = self.hosts.get(agent)?.clone();
                l.insert("probe".into(), probe.to_string());
                Some(l)
            }
        }
    }
}

/// The systems of `c` whose selector for `kind` matches `labels`.
pub fn proposed<'c>(
    c: &'c LoadedContract,
    kind: SubjectKind,
    labels: &BTreeMap<String, String>,
) -> Vec<&'c str> {
    c.contract
        .systems
        .iter()
        .filter(|s| {
            let sel = match kind {
                SubjectKind::Host => s.hosts.as_ref(),
                SubjectKind::Probe => s.probes.as_ref(),
            };
            selected(sel, labels)
        })
        .map(|s| s.id.as_str())
        .collect()
}

/// Every subject the server knows with when it first appeared: each enrolled host from its
/// enrollment (or its first stored status interval, if placed earlier), each probe from its
/// first stored status interval.
async fn subjects(store: &Store) -> sqlx::Result<Vec<(SubjectKind, String, i64)>> {
    let observed: BTreeMap<String, i64> = store
        .first_observations(KIND_HOST)
        .await?
        .into_iter()
        .collect();
    let mut out: Vec<(SubjectKind, String, i64)> = store
        .agents()
        .await?
        .into_iter()
        .map(|a| {
            let first = observed
                .get(&a.agent_id)
                .map_or(a.enrolled_ms, |&t| t.min(a.enrolled_ms));
            (SubjectKind::Host, a.agent_id, first)
        })
        .collect();
    out.extend(
        store
            .first_observations(KIND_PROBE)
            .await?
            .into_iter()
            .map(|(s, first)| (SubjectKind::Probe, s, first)),
    );
    Ok(out)
}

/// The membership pass for `c` at `now`: every observed subject not seen before is marked seen
/// and, with `auto_assign` and no membership row in the contract yet, assigned to each system
/// whose selector its labels match, from its first appearance (a host's enrollment, a probe's
/// first result). Returns how many rows it made.
pub async fn sync(
    store: &Store,
    c: &LoadedContract,
    now: i64,
    auto_assign: bool,
) -> Result<usize, sqlx::Error> {
    let id = &c.contract.id;
    let seen: BTreeSet<(String, String)> = store.membership_seen(id).await?.into_iter().collect();
    let mut fresh = Vec::new();
    for (kind, subject, first) in subjects(store).await? {
        if !seen.contains(&(kind_str(kind).to_string(), subject.clone())) {
            fresh.push((kind, subject, first));
        }
    }
    if fresh.is_empty() {
        return Ok(0);
    }
    let labels = Labels::load(store).await?;
    let rows = store.memberships(id).await?;
    let mut made = 0;
    for (kind, subject, first) in fresh {
        // Only the pass that marks the subject seen acts on it.
        if !store
            .mark_membership_seen(id, kind_str(kind), &subject, now)
            .await?
        {
            continue;
        }
        if !auto_assign
            || rows
                .iter()
                .any(|r| r.kind == kind_str(kind) && r.subject == subject)
        {
            continue;
        }
        let Some(l) = labels.of(kind, &subject) else {
            continue;
        };
        for system in proposed(c, kind, &l) {
            let row = MembershipRow {
                id: 0,
                contract_id: id.clone(),
                system_id: system.to_string(),
                kind: kind_str(kind).to_string(),
                subject: subject.clone(),
                from_ms: first,
                to_ms: None,
                assigned_by: SYSTEM_ACTOR.to_string(),
                assigned_ms: now,
                reason: "first seen with labels matching the system's selector \
                         (contracts.auto_assign_from_labels)"
                    .to_string(),
                ended_by: None,
                ended_ms: None,
                end_reason: None,
            };
            let rec = audit::Pending::new(
                now,
                &audit::Entry {
                    actor: SYSTEM_ACTOR.to_string(),
                    action: "membership.assign".to_string(),
                    target: format!("{id}/{system} {} {subject}", row.kind),
                    result: "success".to_string(),
                    source: "local".to_string(),
                    detail: json!({ "from_ms": first, "labels": l, "reason": row.reason }),
                },
            );
            store.insert_membership(&row, Some(&rec)).await?;
            made += 1;
            tracing::info!(contract = %id, system, subject, "membership assigned from labels at first sight");
        }
    }
    Ok(made)
}

/// Assign or unassign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Assign,
    Unassign,
}

/// A membership change requested by a person.
#[derive(Debug, Clone)]
pub struct Change {
    pub action: Action,
    pub system: String,
    pub kind: SubjectKind,
    pub subject: String,
    /// Default: now.
    pub effective_from_ms: Option<i64>,
    pub reason: String,
}

/// Applies `ch` to `c` for `actor` at `now`, audited in the transaction of the change (as
/// the call `ctx` when it comes from the API); returns the row made or ended.
pub async fn change(
    store: &Store,
    c: &LoadedContract,
    ch: &Change,
    actor: &str,
    source: &str,
    ctx: Option<&audit::Context>,
    now: i64,
) -> Result<MembershipRow, MembershipError> {
    let id = &c.contract.id;
    if !c.contract.systems.iter().any(|s| s.id == ch.system) {
        return Err(MembershipError::UnknownSystem(ch.system.clone()));
    }
    let reason = ch.reason.trim();
    if reason.is_empty() {
        return Err(MembershipError::Empty("reason"));
    }
    let at = ch.effective_from_ms.unwrap_or(now);
    let earliest_ms = now - BACKDATE_TOLERANCE_MS;
    if at < earliest_ms {
        return Err(MembershipError::Backdated { earliest_ms });
    }
    let agent = match ch.kind {
        SubjectKind::Host => ch.subject.as_str(),
        SubjectKind::Probe => match ch.subject.split_once('/') {
            Some((a, p)) if !a.is_empty() && !p.is_empty() => a,
            _ => {
                return Err(MembershipError::UnknownSubject(
                    "a probe is named <agent id>/<probe name>".into(),
                ));
            }
        },
    };
    if store.agent(agent).await?.is_none() {
        return Err(MembershipError::UnknownSubject(format!(
            "no agent {agent:?} is enrolled"
        )));
    }
    let kind = kind_str(ch.kind);
    let rows = store.memberships(id).await?;
    let same: Vec<&MembershipRow> = rows
        .iter()
        .filter(|r| r.system_id == ch.system && r.kind == kind && r.subject == ch.subject)
        .collect();
    let target = format!("{id}/{} {kind} {}", ch.system, ch.subject);
    let record = |action: &str, detail: serde_json::Value| {
        let e = audit::Entry {
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.clone(),
            result: "success".to_string(),
            source: source.to_string(),
            detail,
        };
        match ctx {
            Some(c) => c.record_entry(now, &e),
            None => audit::Pending::new(now, &e),
        }
    };
    let row = match ch.action {
        Action::Assign => {
            if let Some(r) = same.iter().find(|r| r.to_ms.is_none_or(|t| t > at)) {
                return Err(MembershipError::Conflict(format!(
                    "{kind} {} is a member of {} from {} (membership {}): unassign it first",
                    ch.subject, ch.system, r.from_ms, r.id
                )));
            }
            let mut row = MembershipRow {
                id: 0,
                contract_id: id.clone(),
                system_id: ch.system.clone(),
                kind: kind.to_string(),
                subject: ch.subject.clone(),
                from_ms: at,
                to_ms: None,
                assigned_by: actor.to_string(),
                assigned_ms: now,
                reason: reason.to_string(),
                ended_by: None,
                ended_ms: None,
                end_reason: None,
            };
            let rec = record(
                "membership.assign",
                json!({ "effective_from_ms": at, "reason": reason }),
            );
            row.id = store.insert_membership(&row, Some(&rec)).await?;
            row
        }
        Action::Unassign => {
            let Some(open) = same.iter().find(|r| r.to_ms.is_none()) else {
                return Err(MembershipError::Conflict(format!(
                    "{kind} {} is not a member of {}",
                    ch.subject, ch.system
                )));
            };
            // Ending a membership before it began leaves it empty: it never counted.
            let at = at.max(open.from_ms);
            let rec = record(
                "membership.unassign",
                json!({ "membership": open.id, "effective_from_ms": at, "reason": reason }),
            );
            if !store
                .end_membership(open.id, at, actor, now, reason, Some(&rec))
                .await?
            {
                return Err(MembershipError::Conflict(format!(
                    "membership {} was ended meanwhile",
                    open.id
                )));
            }
            let mut row = (*open).clone();
            row.to_ms = Some(at);
            row.ended_by = Some(actor.to_string());
            row.ended_ms = Some(now);
            row.end_reason = Some(reason.to_string());
            row
        }
    };
    Ok(row)
}

/// A subject whose labels a system's selector matches now but that is not a member of it now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pending {
    pub system: String,
    pub kind: &'static str,
    pub subject: String,
    pub labels: BTreeMap<String, String>,
}

/// Subjects observed in the store that the selectors of `c` propose for a system they are not a
/// member of at `now` ("pending assignment").
pub async fn pending(
    store: &Store,
    c: &LoadedContract,
    rows: &[MembershipRow],
    now: i64,
) -> sqlx::Result<Vec<Pending>> {
    let labels = Labels::load(store).await?;
    let mut out = Vec::new();
    for (kind, subject, _) in subjects(store).await? {
        let Some(l) = labels.of(kind, &subject) else {
            continue;
        };
        for system in proposed(c, kind, &l) {
            let member = rows.iter().any(|r| {
                r.system_id == system
                    && r.kind == kind_str(kind)
                    && r.subject == subject
                    && in_force(r, now)
            });
            if !member {
                out.push(Pending {
                    system: system.to_string(),
                    kind: kind_str(kind),
                    subject: subject.clone(),
                    labels: l.clone(),
                });
            }
        }
    }
    Ok(out)
}
