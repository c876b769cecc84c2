//! The dispatcher: one task owning the [`Engine`]. Alerts from the rule evaluator and
//! acknowledgements arrive through a channel and wake it at once; it flushes due groups, fires
//! due escalation tiers, commits group states and new queue rows in one transaction, then
//! delivers due queue rows (each leased first, so a crash mid-send retries it after the lease),
//! logging every attempt, retrying with exponential backoff and queueing the receiver's fallback
//! after `attempts_before_fallback` failures. Groups and the queue live in the store, so a
//! restart continues where it stopped without sending a first notification twice.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::{
    config::NotifyConfig,
    deliver,
    engine::{AlertEntry, Engine, Group, Mute, Notification},
    matcher::Matcher,
    token,
};
use crate::{
    config::ServerConfig,
    now_ms,
    store::{
        Store,
        ha::{AckRequest, AckRequestState},
        incidents::{Clock, IncidentRow},
        notify::{AckRow, LogRow, Outcome, QueueRow},
    },
};

/// How long a delivery in progress holds its queue row.
const LEASE_MS: i64 = 120_000;

/// Messages to the dispatcher.
pub enum Msg {
    Alerts(Vec<AlertEntry>),
    /// `action` is `ack`, `unack` or `resolve`.
    Ack {
        group_id: String,
        action: String,
        actor: String,
        via: String,
        /// For a link: the episode it was sent for; nothing is done in another episode.
        episode_ms: Option<i64>,
        /// The audit row committed with the acknowledgement's record.
        audit: Option<Box<crate::audit::Pending>>,
        reply: oneshot::Sender<Result<(), AckError>>,
    },
    /// Silences or exclusions changed in the store.
    Reload,
    /// A follower recorded an acknowledgement request (`ack_requests`): the leader applies it.
    Forwarded,
    /// A delivery finished.
    Delivered,
    /// Current groups, for the API.
    Groups(oneshot::Sender<Vec<Group>>),
}

/// Why an acknowledgement (or unacknowledgement, resolution) was not done. Serialized as the
/// outcome of a follower's request (`ack_requests.outcome`), so a follower answers as the
/// leader would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum AckError {
    #[error("no active alert group {0:?}")]
    NoGroup(String),
    /// An acknowledge link of an episode that ended; it acknowledges nothing else.
    #[error("the link was sent for an earlier episode of this alert group, which is over")]
    EpisodeOver,
    #[error("unknown action {0:?} (ack, unack or resolve)")]
    UnknownAction(String),
    /// The acknowledgement row could not be written (nothing was changed for good).
    #[error("recording the acknowledgement failed")]
    NotRecorded,
    #[error("the notification dispatcher is not running")]
    NotRunning,
    /// This replica is a follower and no leader took its request in time (a failover in
    /// progress): the request was withdrawn, nothing was done.
    #[error(
        "no leader replica took the acknowledgement in time (a failover in progress?); nothing was changed, retry"
    )]
    NotLeader,
    /// This replica is a follower; the leader took its request but did not confirm it in time.
    /// The leader (or the next one) applies it; the group shows when it has.
    #[error(
        "the leader replica took the acknowledgement but did not confirm it in time; it will be applied, check the alert group"
    )]
    Unconfirmed,
}

/// The sending side, held by the API and the rule engine.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Msg>,
    /// Key of the acknowledge links.
    pub secret: Arc<Vec<u8>>,
}

impl Handle {
    pub fn new(secret: Vec<u8>) -> (Handle, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Handle {
                tx,
                secret: Arc::new(secret),
            },
            rx,
        )
    }

    /// Hands alerts over (never blocks).
    pub fn alerts(&self, alerts: Vec<AlertEntry>) {
        if !alerts.is_empty() {
            let _ = self.tx.send(Msg::Alerts(alerts));
        }
    }

    /// A sender for the dispatcher's own use.
    pub fn sender(&self) -> mpsc::UnboundedSender<Msg> {
        self.tx.clone()
    }

    pub fn reload(&self) {
        let _ = self.tx.send(Msg::Reload);
    }

    /// Acknowledges (or unacknowledges, resolves) a group; recorded with who and how, and with
    /// `audit` in the same transaction as that record. With `episode_ms` (an acknowledge link)
    /// only while the group is in that episode.
    pub async fn ack(
        &self,
        group_id: &str,
        action: &str,
        actor: &str,
        via: &str,
        episode_ms: Option<i64>,
        audit: Option<crate::audit::Pending>,
    ) -> Result<(), AckError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Ack {
                group_id: group_id.into(),
                action: action.into(),
                actor: actor.into(),
                via: via.into(),
                episode_ms,
                audit: audit.map(Box::new),
                reply,
            })
            .map_err(|_| AckError::NotRunning)?;
        rx.await.map_err(|_| AckError::NotRunning)?
    }

    /// The current alert groups.
    pub async fn groups(&self) -> Vec<Group> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Groups(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// Converts an alert of the rule evaluator.
pub fn from_rule_alert(a: &yunwei_rules::alerting::Alert) -> AlertEntry {
    let resolved = a.state == yunwei_rules::alerting::AlertState::Inactive;
    AlertEntry {
        labels: a
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect(),
        annotations: a.annotations.clone(),
        starts_at_ms: a.active_at_ms,
        ends_at_ms: if resolved {
            a.resolved_at_ms
        } else {
            a.valid_until_ms
        },
        resolved,
    }
}

/// Loads the saved groups.
pub async fn load_engine(store: &Store) -> anyhow::Result<Engine> {
    let mut e = Engine::default();
    for (key, json) in store.notify_groups().await? {
        match serde_json::from_str::<Group>(&json) {
            Ok(g) => {
                e.groups.insert(key, g);
            }
            Err(err) => {
                tracing::warn!(group = %key, error = %err, "ignoring unreadable alert group")
            }
        }
    }
    Ok(e)
}

/// The acknowledge link for the episode of the group that `n` notifies, for `recipient`.
pub fn ack_url(
    cfg: &NotifyConfig,
    secret: &[u8],
    n: &Notification,
    recipient: &str,
    now: i64,
) -> String {
    let t = token::sign(
        secret,
        &token::AckClaim {
            group_id: n.group_id.clone(),
            recipient: recipient.into(),
            expires_ms: now + cfg.ack_link_ttl_ms,
            episode_ms: n.episode_ms,
        },
    );
    format!("{}/ack/{t}", cfg.external_url)
}

fn targets(cfg: &NotifyConfig, receiver: &str) -> Vec<(&'static str, usize)> {
    let Some(r) = cfg.receiver(receiver) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    v.extend((0..r.email.len()).map(|i| ("email", i)));
    v.extend((0..r.webhook.len()).map(|i| ("webhook", i)));
    v.extend((0..r.dingtalk.len()).map(|i| ("dingtalk", i)));
    v.extend((0..r.wecom.len()).map(|i| ("wecom", i)));
    v.extend((0..r.feishu.len()).map(|i| ("feishu", i)));
    v
}

fn wants(cfg: &NotifyConfig, receiver: &str, channel: &str, i: usize, n: &Notification) -> bool {
    if !n.firing.is_empty() {
        return true;
    }
    let Some(r) = cfg.receiver(receiver) else {
        return false;
    };
    match channel {
        "email" => r.email.get(i).is_some_and(|t| t.send_resolved),
        "webhook" => r.webhook.get(i).is_some_and(|t| t.send_resolved),
        "dingtalk" => r.dingtalk.get(i).is_some_and(|t| t.send_resolved),
        "wecom" => r.wecom.get(i).is_some_and(|t| t.send_resolved),
        "feishu" => r.feishu.get(i).is_some_and(|t| t.send_resolved),
        _ => false,
    }
}

/// Queue rows for a notification to a receiver: one per target.
pub fn queue_rows(cfg: &NotifyConfig, n: &Notification, receiver: &str, now: i64) -> Vec<QueueRow> {
    let mut n = n.clone();
    n.receiver = receiver.to_string();
    let payload = serde_json::to_string(&n).expect("notifications serialize");
    targets(cfg, receiver)
        .into_iter()
        .filter(|(c, i)| wants(cfg, receiver, c, *i, &n))
        .map(|(channel, i)| QueueRow {
            id: 0,
            group_id: n.group_id.clone(),
            receiver: receiver.to_string(),
            channel: channel.into(),
            target_index: i as i64,
            payload: payload.clone(),
            created_ms: now,
            due_ms: now,
            attempts: 0,
            fallback_done: false,
        })
        .collect()
}

/// What the dispatcher works with: the configuration, the store (queue, log, incidents), the
/// metrics and the handle whose acknowledge-link key it signs with.
pub struct Shared {
    pub config: Arc<ServerConfig>,
    pub store: Store,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub notify: Handle,
}

struct Dispatcher {
    state: Arc<Shared>,
    engine: Engine,
    mutes: Vec<Mute>,
    /// When open incidents were last checked for overdue restoration.
    levels_checked_ms: i64,
    limiter: super::ratelimit::Limiter,
    /// When finished and expired acknowledgement requests were last purged.
    requests_purged_ms: i64,
}

fn mutes_from(rows: &[crate::store::notify::SilenceRow]) -> Vec<Mute> {
    rows.iter()
        .filter_map(|s| {
            let matchers: Result<Vec<Matcher>, _> =
                s.matchers.iter().map(|m| Matcher::parse(m)).collect();
            matchers.ok().map(|matchers| Mute {
                matchers,
                starts_ms: s.starts_ms,
                ends_ms: s.ends_ms,
                during: None,
            })
        })
        .collect()
}

/// Approved exclusions (maintenance windows) as mutes.
fn mutes_from_exclusions(rows: &[crate::store::notify::ExclusionRow]) -> Vec<Mute> {
    rows.iter()
        .filter(|e| e.status == "approved")
        .filter_map(|e| {
            let matchers: Vec<Matcher> = e
                .matchers
                .iter()
                .map(|m| Matcher::parse(m))
                .collect::<Result<_, _>>()
                .ok()?;
            let during = match &e.recurrence {
                Some(r) => Some(serde_json::from_str(r).ok()?),
                None => None,
            };
            Some(Mute {
                matchers,
                starts_ms: e.from_ms,
                ends_ms: e.to_ms,
                during,
            })
        })
        .collect()
}

/// Silences and approved exclusions from the store.
async fn load_mutes(store: &Store) -> Vec<Mute> {
    let mut m = match store.silences().await {
        Ok(rows) => mutes_from(&rows),
        Err(e) => {
            tracing::error!(error = %e, "loading silences failed");
            Vec::new()
        }
    };
    match store.exclusions().await {
        Ok(rows) => m.extend(mutes_from_exclusions(&rows)),
        Err(e) => tracing::error!(error = %e, "loading exclusions failed"),
    }
    m
}

/// Silences and approved exclusions from the store, or `None` when either could not be read
/// (the mutes in force are kept then).
async fn try_load_mutes(store: &Store) -> Option<Vec<Mute>> {
    let mut m = mutes_from(&store.silences().await.ok()?);
    m.extend(mutes_from_exclusions(&store.exclusions().await.ok()?));
    Some(m)
}

/// How often a replica's dispatcher rereads silences and exclusions: they may be written
/// through another replica, whose reload message does not reach this one.
const REPLICA_MUTES_EVERY: Duration = Duration::from_secs(5);

impl Dispatcher {
    fn cfg(&self) -> &NotifyConfig {
        &self.state.config.notify
    }

    async fn save(&self, keys: &[String], queue: &[QueueRow], now: i64) {
        let mut upserts = Vec::new();
        let mut removed = Vec::new();
        for k in keys {
            match self.engine.groups.get(k) {
                Some(g) => upserts.push((
                    k.clone(),
                    g.id.clone(),
                    serde_json::to_string(g).expect("groups serialize"),
                )),
                None => removed.push(k.clone()),
            }
        }
        upserts.sort();
        upserts.dedup();
        removed.sort();
        removed.dedup();
        if let Err(e) = self
            .state
            .store
            .notify_commit(&upserts, &removed, queue, now)
            .await
        {
            tracing::error!(error = %e, "saving alert groups failed");
        }
    }

    async fn handle(&mut self, msg: Msg) {
        let now = now_ms();
        match msg {
            Msg::Alerts(alerts) => {
                let mut changed = Vec::new();
                for a in &alerts {
                    changed.extend(self.engine.ingest(&self.state.config.notify, a, now));
                }
                changed.sort();
                changed.dedup();
                self.open_incidents(&changed, now).await;
                self.save(&changed, &[], now).await;
            }
            Msg::Ack {
                group_id,
                action,
                actor,
                via,
                episode_ms,
                audit,
                reply,
            } => {
                let r = self
                    .ack(
                        &group_id, &action, &actor, &via, episode_ms, audit, now, None,
                    )
                    .await;
                let _ = reply.send(r);
            }
            Msg::Reload => self.mutes = load_mutes(&self.state.store).await,
            Msg::Forwarded => self.apply_requests(now).await,
            Msg::Delivered => {}
            Msg::Groups(tx) => {
                let _ = tx.send(self.engine.groups.values().cloned().collect());
            }
        }
    }

    /// Opens an incident for each of `keys`' groups that has none and whose firing alerts map
    /// to a level.
    async fn open_incidents(&mut self, keys: &[String], now: i64) {
        let cfg = &self.state.config.notify.incidents;
        for k in keys {
            let Some(g) = self.engine.groups.get_mut(k) else {
                continue;
            };
            if g.incident.is_some() {
                continue;
            }
            let firing: Vec<&AlertEntry> =
                g.alerts.values().filter(|a| !a.is_resolved(now)).collect();
            let Some(level) = cfg.level_of(firing.iter().map(|a| &a.labels)) else {
                continue;
            };
            let detected = firing.iter().map(|a| a.starts_at_ms).min().unwrap_or(now);
            let name = g
                .group_labels
                .get("alertname")
                .or_else(|| firing.first().and_then(|a| a.labels.get("alertname")))
                .cloned()
                .unwrap_or_else(|| "alert".into());
            let title = std::iter::once(name)
                .chain(
                    g.group_labels
                        .iter()
                        .filter(|(k, _)| *k != "alertname")
                        .map(|(k, v)| format!("{k}={v}")),
                )
                .collect::<Vec<_>>()
                .join(" ");
            let row = IncidentRow {
                id: hex::encode(rand::random::<[u8; 8]>()),
                group_id: Some(g.id.clone()),
                title,
                level,
                source: "alert".into(),
                labels: g.group_labels.clone(),
                detected_ms: detected,
                notified_ms: None,
                acknowledged_ms: None,
                acknowledged_by: None,
                onsite_ms: None,
                restored_ms: None,
                rca: None,
                created_by: "system".into(),
                updated_ms: now,
            };
            match self.state.store.insert_incident(&row, true, None).await {
                Ok(()) => g.incident = Some(row.id),
                Err(e) => tracing::error!(error = %e, "opening an incident failed"),
            }
        }
    }

    /// Raises the level of open incidents whose restoration is overdue.
    async fn escalate_levels(&mut self, now: i64) {
        let rules = &self.state.config.notify.incidents.escalate_if_not_restored;
        if rules.is_empty() || now - self.levels_checked_ms < 5_000 {
            return;
        }
        self.levels_checked_ms = now;
        let open = match self.state.store.incidents(true).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "reading open incidents failed");
                return;
            }
        };
        for i in open {
            let Some(r) = rules.iter().find(|r| r.level == i.level) else {
                continue;
            };
            if i.level > 1 && now - i.detected_ms >= r.after.0 {
                let reason = format!(
                    "not restored within {} min of detection",
                    r.after.0 / 60_000
                );
                if let Err(e) = self
                    .state
                    .store
                    .set_incident_level(&i.id, i.level - 1, "system", &reason, now, true, None)
                    .await
                {
                    tracing::error!(error = %e, "raising an incident level failed");
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn ack(
        &mut self,
        group_id: &str,
        action: &str,
        actor: &str,
        via: &str,
        episode_ms: Option<i64>,
        audit: Option<Box<crate::audit::Pending>>,
        now: i64,
        request: Option<i64>,
    ) -> Result<(), AckError> {
        let Some(g) = self.engine.by_id(group_id) else {
            return Err(AckError::NoGroup(group_id.to_string()));
        };
        if let Some(ep) = episode_ms
            && g.first_notified_ms != Some(ep)
        {
            return Err(AckError::EpisodeOver);
        }
        match action {
            "ack" => {
                if g.acked_ms.is_none() {
                    g.acked_ms = Some(now);
                    g.acked_by = Some(actor.to_string());
                }
            }
            "unack" => {
                g.acked_ms = None;
                g.acked_by = None;
            }
            "resolve" => {
                for a in g.alerts.values_mut() {
                    a.resolved = true;
                    a.ends_at_ms = Some(now);
                }
                g.next_flush_ms = now;
            }
            other => return Err(AckError::UnknownAction(other.to_string())),
        }
        let key = g.key.clone();
        if action == "ack"
            && let Some(inc) = g.incident.clone()
            && let Err(e) = self
                .state
                .store
                .stamp_incident(&inc, Clock::Acknowledged, now, actor, now, true, None)
                .await
        {
            tracing::error!(error = %e, "recording the incident acknowledgement failed");
        }
        // Resolving by hand restores the incident now, recorded as the user who resolved it (a
        // group that resolves by itself is restored as `system` at the next flush).
        if action == "resolve"
            && let Some(inc) = g.incident.clone()
            && let Err(e) = self
                .state
                .store
                .stamp_incident(&inc, Clock::Restored, now, actor, now, true, None)
                .await
        {
            tracing::error!(error = %e, "recording the incident restoration failed");
        }
        self.save(&[key], &[], now).await;
        self.state
            .store
            .notify_ack(
                &AckRow {
                    group_id: group_id.into(),
                    action: action.into(),
                    actor: actor.into(),
                    via: via.into(),
                    at_ms: now,
                },
                audit
                    .as_deref()
                    .map(|a| a as &dyn crate::store::audit::AuditRecord),
                request.map(|id| (id, OK_OUTCOME)),
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "recording acknowledgement failed");
                AckError::NotRecorded
            })
    }

    /// Applies the acknowledgements followers recorded (`ack_requests`): each is claimed for
    /// this term first (fenced), then applied as [`Dispatcher::ack`] applies a local one, its
    /// outcome written with the acknowledgement's record (or, refused, on its own).
    async fn apply_requests(&mut self, now: i64) {
        let Some(epoch) = self.state.store.fence_epoch().filter(|e| *e >= 0) else {
            return;
        };
        let store = self.state.store.clone();
        if now - self.requests_purged_ms >= 60_000 {
            self.requests_purged_ms = now;
            if let Err(e) = store.purge_ack_requests(now - 600_000).await {
                tracing::warn!(error = %e, "purging old acknowledgement requests failed");
            }
        }
        let open = match store.open_ack_requests(epoch, now).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "reading acknowledgement requests failed");
                return;
            }
        };
        for r in open {
            match store.claim_ack_request(r.id).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "claiming an acknowledgement request failed");
                    return;
                }
            }
            let audit = r.audit.as_ref().and_then(|(ts, entry)| {
                serde_json::from_str::<crate::audit::Entry>(entry)
                    .ok()
                    .map(|e| Box::new(crate::audit::Pending::new(*ts, &e)))
            });
            let result = self
                .ack(
                    &r.group_id,
                    &r.action,
                    &r.actor,
                    &r.via,
                    r.episode_ms,
                    audit,
                    now,
                    Some(r.id),
                )
                .await;
            tracing::info!(request = r.id, group = %r.group_id, action = %r.action, actor = %r.actor, ok = result.is_ok(), "applied an acknowledgement received by a follower");
            if result.is_err()
                && let Err(e) = store
                    .finish_ack_request(r.id, &outcome_json(&result), now)
                    .await
            {
                tracing::error!(error = %e, "recording the outcome of an acknowledgement request failed");
            }
        }
    }

    /// Flushes, escalates and starts due deliveries.
    async fn tick(&mut self, tx: &mpsc::UnboundedSender<Msg>) {
        let now = now_ms();
        let cfg = self.state.config.notify.clone();
        let incidents: Vec<(String, String)> = self
            .engine
            .groups
            .values()
            .filter(|g| g.next_flush_ms <= now)
            .filter_map(|g| g.incident.clone().map(|i| (g.key.clone(), i)))
            .collect();
        let (mut notes, mut keys) = self.engine.flush_due(&cfg, &self.mutes, now);
        for (key, inc) in incidents {
            if !self.engine.groups.contains_key(&key)
                && let Err(e) = self
                    .state
                    .store
                    .stamp_incident(&inc, Clock::Restored, now, "system", now, true, None)
                    .await
            {
                tracing::error!(error = %e, "recording the incident restoration failed");
            }
        }
        self.escalate_levels(now).await;
        let esc = self.engine.escalations_due(&cfg, now);
        keys.extend(esc.iter().map(|n| n.group_key.clone()));
        notes.extend(esc);
        if !keys.is_empty() {
            let queue: Vec<QueueRow> = notes
                .iter()
                .flat_map(|n| queue_rows(&cfg, n, &n.receiver, now))
                .collect();
            self.save(&keys, &queue, now).await;
        }
        let due = match self.state.store.notify_due(now, 64).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading the notification queue failed");
                return;
            }
        };
        // Rate-limited robots: what fits goes one message each, the rest as one digest or later.
        let mut robots: BTreeMap<String, Vec<QueueRow>> = BTreeMap::new();
        for row in due {
            if super::ratelimit::limits(&row.channel).is_empty() {
                self.start(tx, vec![row], now).await;
            } else {
                let key = format!("{}/{}/{}", row.receiver, row.channel, row.target_index);
                robots.entry(key).or_default().push(row);
            }
        }
        for (key, rows) in robots {
            let plan = self.limiter.plan(&rows[0].channel, &key, rows.len(), now);
            let mut rows = rows.into_iter();
            for row in rows.by_ref().take(plan.singles) {
                self.start(tx, vec![row], now).await;
            }
            let digest: Vec<QueueRow> = rows.by_ref().take(plan.digest).collect();
            if !digest.is_empty() {
                self.start(tx, digest, now).await;
            }
            if let Some(at) = plan.postponed_to {
                for row in rows {
                    if let Err(e) = self.state.store.notify_lease(row.id, at, false).await {
                        tracing::error!(error = %e, "postponing a queued notification failed");
                    }
                }
            }
        }
    }

    /// Leases `rows` and delivers them in a task: one row as its own message, several (for one
    /// robot target) as one digest.
    async fn start(&self, tx: &mpsc::UnboundedSender<Msg>, rows: Vec<QueueRow>, now: i64) {
        let mut leased = Vec::new();
        for row in rows {
            match self
                .state
                .store
                .notify_lease(row.id, now + LEASE_MS, true)
                .await
            {
                Ok(repeat) => {
                    if repeat {
                        // The one send that can repeat across a failover or a crash.
                        tracing::warn!(
                            queue_id = row.id,
                            group = %row.group_id,
                            receiver = %row.receiver,
                            channel = %row.channel,
                            "sending a notification that was in flight when the previous leader \
                             or process stopped; it may arrive twice"
                        );
                        self.state.metrics.notify_possible_repeats.inc();
                    }
                    leased.push(row)
                }
                Err(e) => tracing::error!(error = %e, "leasing a queued notification failed"),
            }
        }
        if leased.is_empty() {
            return;
        }
        let state = self.state.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if leased.len() == 1 {
                deliver_row(&state, leased.remove(0)).await;
            } else {
                deliver_digest(&state, leased).await;
            }
            let _ = tx.send(Msg::Delivered);
        });
    }

    async fn next_due(&self) -> Option<i64> {
        let q = self.state.store.notify_next_due().await.ok().flatten();
        [self.engine.next_due(self.cfg()), q]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Delivers one queued row and records the attempt.
async fn deliver_row(state: &Shared, row: QueueRow) {
    let cfg = &state.config.notify;
    let started = now_ms();
    let Some(n) = readable(state, &row, started).await else {
        return;
    };
    let receiver = cfg.receiver(&row.receiver);
    let i = row.target_index as usize;
    let secret = state.notify.secret.as_slice();
    let attempt = match (row.channel.as_str(), receiver) {
        ("email", Some(r)) if i < r.email.len() => {
            let t = &r.email[i];
            let link = (!n.firing.is_empty()).then(|| {
                let to = cfg.resolve_recipients(&t.to, started).join(",");
                ack_url(cfg, secret, &n, &to, started)
            });
            deliver::email(cfg, t, &n, link.as_deref(), started).await
        }
        ("webhook", Some(r)) if i < r.webhook.len() => {
            deliver::webhook(cfg, &r.webhook[i], &n).await
        }
        ("dingtalk" | "wecom" | "feishu", Some(r)) if robot(r, &row.channel, i).is_some() => {
            let t = robot(r, &row.channel, i).expect("checked");
            let link = robot_link(state, &n, &row.channel, &r.name, started);
            match row.channel.as_str() {
                "dingtalk" => deliver::dingtalk(cfg, t, &n, link.as_deref(), started).await,
                "wecom" => deliver::wecom(cfg, t, &n, link.as_deref()).await,
                _ => deliver::feishu(cfg, t, &n, link.as_deref(), started).await,
            }
        }
        _ => gone(),
    };
    record(state, &row, &n, attempt).await;
}

fn gone() -> deliver::Attempt {
    deliver::Attempt {
        ok: false,
        code: None,
        error: Some("the receiver or target no longer exists".into()),
        target: String::new(),
    }
}

/// The robot target `i` of a receiver's `channel`.
fn robot<'a>(
    r: &'a super::config::Receiver,
    channel: &str,
    i: usize,
) -> Option<&'a super::config::RobotTarget> {
    match channel {
        "dingtalk" => r.dingtalk.get(i),
        "wecom" => r.wecom.get(i),
        "feishu" => r.feishu.get(i),
        _ => None,
    }
}

/// The acknowledge link a robot message carries (for firing notifications).
fn robot_link(
    state: &Shared,
    n: &Notification,
    channel: &str,
    receiver: &str,
    now: i64,
) -> Option<String> {
    (!n.firing.is_empty()).then(|| {
        ack_url(
            &state.config.notify,
            &state.notify.secret,
            n,
            &format!("{channel}:{receiver}"),
            now,
        )
    })
}

/// Delivers several queued rows for one robot target as one digest message and records the
/// attempt for each row.
async fn deliver_digest(state: &Shared, rows: Vec<QueueRow>) {
    let cfg = &state.config.notify;
    let started = now_ms();
    let mut items = Vec::new();
    let mut readable_rows = Vec::new();
    for row in rows {
        if let Some(n) = readable(state, &row, started).await {
            readable_rows.push((row, n));
        }
    }
    let Some((first, _)) = readable_rows.first() else {
        return;
    };
    let (channel, i) = (first.channel.clone(), first.target_index as usize);
    let attempt = match cfg.receiver(&first.receiver) {
        Some(r) if robot(r, &channel, i).is_some() => {
            for (_, n) in &readable_rows {
                items.push((n.clone(), robot_link(state, n, &channel, &r.name, started)));
            }
            let t = robot(r, &channel, i).expect("checked");
            deliver::robot_digest(cfg, &channel, t, &items, started).await
        }
        _ => gone(),
    };
    for (row, n) in &readable_rows {
        record(state, row, n, attempt.clone()).await;
    }
}

/// The row's notification, or `None` after giving the unreadable row up (logged).
async fn readable(state: &Shared, row: &QueueRow, started: i64) -> Option<Notification> {
    let Ok(n) = serde_json::from_str::<Notification>(&row.payload) else {
        tracing::error!(id = row.id, "dropping an unreadable queued notification");
        let _ = state
            .store
            .notify_attempt(
                &log_row(
                    row,
                    &deliver::Attempt {
                        ok: false,
                        code: None,
                        error: Some("unreadable payload".into()),
                        target: String::new(),
                    },
                    started,
                    "firing",
                    1,
                ),
                &Outcome::GiveUp,
                &[],
            )
            .await;
        return None;
    };
    Some(n)
}

/// Records an attempt at delivering `row` (`n`): the log, the outcome (done, retry or give up),
/// the fallback receiver, metrics and the incident's notified time.
async fn record(state: &Shared, row: &QueueRow, n: &Notification, attempt: deliver::Attempt) {
    let cfg = &state.config.notify;
    let receiver = cfg.receiver(&row.receiver);
    let now = now_ms();
    let attempts = row.attempts + 1;
    let gone = attempt.target.is_empty() && !attempt.ok;
    let outcome = if attempt.ok {
        Outcome::Done
    } else if gone || now - row.created_ms >= cfg.retry.give_up_after.0 {
        Outcome::GiveUp
    } else {
        Outcome::Retry {
            due_ms: now + cfg.retry.backoff_ms(attempts as u32),
        }
    };
    let mut fallback = Vec::new();
    if !attempt.ok
        && !row.fallback_done
        && attempts >= i64::from(cfg.retry.attempts_before_fallback)
        && let Some(f) = receiver.and_then(|r| r.fallback.as_deref())
    {
        fallback = queue_rows(cfg, n, f, now);
    }
    state
        .metrics
        .notify_attempts
        .with_label_values(&[
            row.channel.as_str(),
            if attempt.ok { "ok" } else { "error" },
        ])
        .inc();
    if attempt.ok {
        state
            .metrics
            .notify_latency
            .with_label_values(&[row.channel.as_str()])
            .observe((now - n.created_ms).max(0) as f64 / 1000.0);
    } else {
        tracing::warn!(channel = %row.channel, receiver = %row.receiver, attempt = attempts, error = attempt.error.as_deref().unwrap_or(""), "notification attempt failed");
    }
    if attempt.ok && n.tier == 1 && !n.firing.is_empty() {
        match state.store.open_incident_of_group(&n.group_id).await {
            Ok(Some(inc)) => {
                if let Err(e) = state
                    .store
                    .stamp_incident(
                        &inc.id,
                        Clock::Notified,
                        now,
                        &row.receiver,
                        now,
                        true,
                        None,
                    )
                    .await
                {
                    tracing::error!(error = %e, "recording the incident notification failed");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "reading the incident failed"),
        }
    }
    let log = log_row(row, &attempt, now, &n.status, n.tier as i64);
    let log = LogRow {
        attempt: attempts,
        ..log
    };
    if let Err(e) = state.store.notify_attempt(&log, &outcome, &fallback).await {
        tracing::error!(error = %e, "recording a notification attempt failed");
    }
}

fn log_row(row: &QueueRow, a: &deliver::Attempt, now: i64, status: &str, tier: i64) -> LogRow {
    LogRow {
        id: 0,
        queue_id: row.id,
        group_id: row.group_id.clone(),
        receiver: row.receiver.clone(),
        channel: row.channel.clone(),
        target: a.target.clone(),
        tier,
        status: status.into(),
        attempt: row.attempts + 1,
        attempted_ms: now,
        ok: a.ok,
        code: a.code,
        error: a.error.clone(),
    }
}

/// The outcome of an acknowledgement applied for a follower, as `ack_requests.outcome` holds it.
fn outcome_json(r: &Result<(), AckError>) -> String {
    serde_json::to_string(r).expect("outcomes serialize")
}

/// [`outcome_json`] of a success.
const OK_OUTCOME: &str = "{\"Ok\":null}";

/// On a follower replica, in place of the dispatcher: answers the API with the alert groups as
/// the leader last saved them, and hands acknowledgements to the leader through the store
/// ([`forward`]). Runs until the task is aborted.
pub async fn answer_as_follower(
    store: Store,
    holder: Arc<str>,
    wait: Duration,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
) {
    while let Some(m) = rx.recv().await {
        match m {
            Msg::Ack {
                group_id,
                action,
                actor,
                via,
                episode_ms,
                audit,
                reply,
            } => {
                let (store, holder) = (store.clone(), holder.clone());
                tokio::spawn(async move {
                    let request = AckRequest {
                        id: 0,
                        group_id,
                        action,
                        actor,
                        via,
                        episode_ms,
                        audit: None,
                    };
                    let r = forward(&store, &holder, wait, request, audit).await;
                    let _ = reply.send(r);
                });
            }
            Msg::Groups(reply) => {
                let groups = match load_engine(&store).await {
                    Ok(e) => e.groups.into_values().collect(),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "reading saved alert groups failed");
                        Vec::new()
                    }
                };
                let _ = reply.send(groups);
            }
            Msg::Alerts(_) | Msg::Reload | Msg::Delivered | Msg::Forwarded => {}
        }
    }
}

/// A follower's acknowledgement: records `request` (with `audit`, the row to commit with it)
/// in `ack_requests`, which wakes the leader, and waits up to `wait` for the leader's outcome,
/// returned as the leader would answer it. When no leader claimed it by then (a failover
/// longer than `wait`), it is withdrawn: [`AckError::NotLeader`], nothing was done. When a
/// leader claimed it but has not finished, it waits `wait` once more, then answers
/// [`AckError::Unconfirmed`] (the request stays, and the leader or its successor applies it).
pub async fn forward(
    store: &Store,
    holder: &str,
    wait: Duration,
    mut request: AckRequest,
    audit: Option<Box<crate::audit::Pending>>,
) -> Result<(), AckError> {
    use crate::store::audit::AuditRecord as _;
    let now = now_ms();
    request.audit = audit.as_ref().map(|a| {
        (
            a.ts_ms(),
            serde_json::to_string(a.entry()).expect("audit entries serialize"),
        )
    });
    let id = store
        .insert_ack_request(&request, holder, now, now + wait.as_millis() as i64)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "recording an acknowledgement request failed");
            AckError::NotRecorded
        })?;
    let mut deadline = tokio::time::Instant::now() + wait;
    let mut withdrawing = true;
    let mut pause = Duration::from_millis(10);
    loop {
        match store.ack_request_state(id).await {
            Ok(AckRequestState::Done(outcome)) => {
                if let Err(e) = store.delete_ack_request(id).await {
                    tracing::warn!(error = %e, request = id, "deleting an answered acknowledgement request failed");
                }
                let result: Result<(), AckError> =
                    serde_json::from_str(&outcome).unwrap_or(Err(AckError::NotRecorded));
                if result.is_ok()
                    && let Some(a) = &audit
                {
                    // The leader committed the audit row with the acknowledgement.
                    a.committed();
                }
                return result;
            }
            Ok(AckRequestState::Gone) => return Err(AckError::NotRecorded),
            Ok(AckRequestState::Waiting | AckRequestState::Claimed) => {}
            Err(e) => {
                tracing::warn!(error = %e, request = id, "reading an acknowledgement request failed")
            }
        }
        if tokio::time::Instant::now() >= deadline {
            if !withdrawing {
                return Err(AckError::Unconfirmed);
            }
            withdrawing = false;
            match store.withdraw_ack_request(id).await {
                Ok(true) => return Err(AckError::NotLeader),
                // Claimed meanwhile (or the database did not answer): wait for the outcome.
                Ok(false) | Err(_) => deadline = tokio::time::Instant::now() + wait,
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Runs the dispatcher until the task is aborted.
pub async fn run(
    state: Arc<Shared>,
    engine: Engine,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let mutes = load_mutes(&state.store).await;
    let mut d = Dispatcher {
        state,
        engine,
        mutes,
        levels_checked_ms: 0,
        limiter: Default::default(),
        requests_purged_ms: 0,
    };
    let replica = d.state.config.is_postgres();
    let mut mutes_read = tokio::time::Instant::now();
    loop {
        if replica && mutes_read.elapsed() >= REPLICA_MUTES_EVERY {
            if let Some(m) = try_load_mutes(&d.state.store).await {
                d.mutes = m;
            }
            mutes_read = tokio::time::Instant::now();
        }
        d.tick(&tx).await;
        let mut wait = match d.next_due().await {
            Some(t) => Duration::from_millis((t - now_ms()).clamp(0, 60_000) as u64),
            None => Duration::from_secs(60),
        };
        if replica {
            wait = wait.min(REPLICA_MUTES_EVERY);
        }
        let msg = if wait.is_zero() {
            rx.try_recv().ok()
        } else {
            tokio::select! {
                m = rx.recv() => match m { Some(m) => Some(m), None => return },
                () = tokio::time::sleep(wait) => None,
            }
        };
        if let Some(m) = msg {
            d.handle(m).await;
            while let Ok(m) = rx.try_recv() {
                d.handle(m).await;
            }
        }
    }
}

/// Counts of groups by receiver, for the API.
pub fn summarize(groups: &[Group]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for g in groups {
        *m.entry(g.receiver.clone()).or_insert(0) += 1;
    }
    m
}
