//! The pure core of notification: alerts in, notifications out, with Alertmanager's semantics —
//! routing (with `continue`), grouping by `group_by`, the group timers (`group_wait`,
//! `group_interval`, `repeat_interval`), inhibition, silences and time-interval muting — plus
//! escalation tiers for unacknowledged groups. No I/O and no clock: `now` is a parameter; the
//! dispatcher persists [`Group`]s and the [`Notification`]s this produces.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    config::{NotifyConfig, Route},
    matcher::{LabelSet, Matcher, all_match},
};

/// Stable identity of a label set (hex, 16 characters).
pub fn fingerprint(l: &LabelSet) -> String {
    let json = serde_json::to_string(l).expect("string maps serialize");
    hex::encode(&Sha256::digest(json.as_bytes())[..8])
}

/// An alert as the rule evaluator hands it over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEntry {
    pub labels: LabelSet,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    /// When it resolved, or until when a firing alert is valid without a refresh.
    pub ends_at_ms: Option<i64>,
    /// Resolved by the evaluator.
    pub resolved: bool,
}

impl AlertEntry {
    /// Resolved at `now`: resolved explicitly, or not refreshed before it expired.
    pub fn is_resolved(&self, now: i64) -> bool {
        self.resolved || self.ends_at_ms.is_some_and(|e| e <= now)
    }
}

/// An alert group: the alerts one route collected under the same group labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Route id plus the group labels.
    pub key: String,
    /// Short stable id (for links and the API).
    pub id: String,
    pub route_id: String,
    pub receiver: String,
    pub group_labels: LabelSet,
    /// By fingerprint.
    pub alerts: BTreeMap<String, AlertEntry>,
    pub created_ms: i64,
    pub next_flush_ms: i64,
    /// Firing alerts (fingerprints) in the last notification.
    pub notified_firing: BTreeSet<String>,
    pub last_notified_ms: Option<i64>,
    pub first_notified_ms: Option<i64>,
    /// Escalation policy and the index of the next tier to notify.
    pub escalation: Option<String>,
    pub next_tier: usize,
    pub acked_by: Option<String>,
    pub acked_ms: Option<i64>,
    /// The incident the group opened, if its labels map to a level.
    #[serde(default)]
    pub incident: Option<String>,
    /// Notified alerts that resolved and then fired again before the resolve was notified
    /// (flapping), by fingerprint: their resolve goes out with the next notification, while
    /// [`Group::alerts`] holds the new occurrence.
    #[serde(default)]
    pub resolved_unsent: BTreeMap<String, AlertEntry>,
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The group's first notification, or a change, or a repeat.
    Group,
    /// An escalation tier (1-based tier number in [`Notification::tier`]).
    Escalation,
}

/// One message to deliver to one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub group_key: String,
    pub group_id: String,
    pub receiver: String,
    pub reason: Reason,
    /// 1 for the route's receiver, 2.. for escalation tiers.
    pub tier: usize,
    /// `firing` when any alert fires, else `resolved`.
    pub status: String,
    pub group_labels: LabelSet,
    pub firing: Vec<AlertEntry>,
    pub resolved: Vec<AlertEntry>,
    pub created_ms: i64,
    /// When the group's current episode was first notified: what an acknowledge link in this
    /// message is bound to (a link of an earlier episode acknowledges nothing). 0 in rows queued
    /// before episodes were recorded.
    #[serde(default)]
    pub episode_ms: i64,
}

/// An active silence or an approved maintenance window, by its matchers and time range.
#[derive(Debug, Clone, PartialEq)]
pub struct Mute {
    pub matchers: Vec<Matcher>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    /// For recurring maintenance windows: only while this interval contains the instant.
    pub during: Option<super::timeinterval::TimeInterval>,
}

impl Mute {
    pub fn mutes(&self, l: &LabelSet, now: i64, cal: &yunwei_sla::calendar::Calendar) -> bool {
        self.starts_ms <= now
            && now < self.ends_ms
            && self.during.as_ref().is_none_or(|d| d.contains(now, cal))
            && all_match(&self.matchers, l)
    }
}

/// All groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Engine {
    pub groups: BTreeMap<String, Group>,
}

fn group_key(route: &Route, gl: &LabelSet) -> String {
    format!(
        "{}:{}",
        route.id,
        serde_json::to_string(gl).expect("maps serialize")
    )
}

impl Engine {
    /// Adds or refreshes `alert` in the group of every route it matches; returns the keys of
    /// the groups that changed. A resolved alert no group holds is dropped.
    pub fn ingest(&mut self, cfg: &NotifyConfig, alert: &AlertEntry, now: i64) -> Vec<String> {
        let Some(root) = &cfg.route else {
            return Vec::new();
        };
        let fp = fingerprint(&alert.labels);
        let mut changed = Vec::new();
        for r in root.matching(&alert.labels) {
            let gl = r.group_by.labels_of(&alert.labels);
            let key = group_key(r, &gl);
            if !self.groups.contains_key(&key) {
                if alert.is_resolved(now) {
                    continue;
                }
                self.groups.insert(
                    key.clone(),
                    Group {
                        id: fingerprint(&LabelSet::from([("k".to_string(), key.clone())])),
                        key: key.clone(),
                        route_id: r.id.clone(),
                        receiver: r.receiver.clone(),
                        group_labels: gl,
                        alerts: BTreeMap::new(),
                        created_ms: now,
                        next_flush_ms: now + r.group_wait_ms,
                        notified_firing: BTreeSet::new(),
                        last_notified_ms: None,
                        first_notified_ms: None,
                        escalation: r.escalation.clone(),
                        next_tier: 0,
                        acked_by: None,
                        acked_ms: None,
                        incident: None,
                        resolved_unsent: BTreeMap::new(),
                    },
                );
            }
            let g = self.groups.get_mut(&key).expect("inserted above");
            let mut a = alert.clone();
            if let Some(old) = g.alerts.get(&fp) {
                if !old.is_resolved(now) {
                    a.starts_at_ms = a.starts_at_ms.min(old.starts_at_ms);
                } else if !a.is_resolved(now) && g.notified_firing.remove(&fp) {
                    // A new occurrence of a notified alert whose resolve is not sent yet: keep
                    // the resolve for the next notification, and notify the new firing as new.
                    g.resolved_unsent.insert(fp.clone(), old.clone());
                }
            }
            g.alerts.insert(fp.clone(), a);
            changed.push(key);
        }
        changed
    }

    /// Whether `l` is inhibited by a firing alert of any group.
    fn inhibited(&self, cfg: &NotifyConfig, l: &LabelSet, now: i64) -> bool {
        cfg.inhibit_rules.iter().any(|rule| {
            all_match(&rule.target_matchers, l)
                && self
                    .groups
                    .values()
                    .flat_map(|g| g.alerts.values())
                    .any(|s| {
                        !s.is_resolved(now)
                            && &s.labels != l
                            && all_match(&rule.source_matchers, &s.labels)
                            && rule.equal.iter().all(|n| s.labels.get(n) == l.get(n))
                    })
        })
    }

    /// Flushes every group due at `now`; returns the notifications to deliver and the keys of
    /// groups that changed (removed groups included).
    pub fn flush_due(
        &mut self,
        cfg: &NotifyConfig,
        mutes: &[Mute],
        now: i64,
    ) -> (Vec<Notification>, Vec<String>) {
        let Some(root) = &cfg.route else {
            return (Vec::new(), Vec::new());
        };
        let due: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.next_flush_ms <= now)
            .map(|g| g.key.clone())
            .collect();
        let mut out = Vec::new();
        for key in &due {
            let muted_alert = |l: &LabelSet| {
                mutes.iter().any(|m| m.mutes(l, now, &cfg.calendar)) || self.inhibited(cfg, l, now)
            };
            let g = &self.groups[key];
            let route = root.find(&g.route_id);
            let (interval, muted_route) = match route {
                Some(r) => (
                    r.group_interval_ms,
                    r.mute_time_intervals
                        .iter()
                        .any(|n| cfg.interval_active(n, now))
                        || !r.active_time_intervals.is_empty()
                            && !r
                                .active_time_intervals
                                .iter()
                                .any(|n| cfg.interval_active(n, now)),
                ),
                None => (300_000, false),
            };
            let repeat = route.map_or(4 * 3_600_000, |r| r.repeat_interval_ms);
            let firing: BTreeMap<&String, &AlertEntry> = g
                .alerts
                .iter()
                .filter(|(_, a)| !a.is_resolved(now) && !muted_alert(&a.labels))
                .collect();
            let resolved: Vec<&AlertEntry> = g
                .resolved_unsent
                .values()
                .chain(
                    g.alerts
                        .iter()
                        .filter(|(fp, a)| a.is_resolved(now) && g.notified_firing.contains(*fp))
                        .map(|(_, a)| a),
                )
                .collect();
            let firing_set: BTreeSet<String> = firing.keys().map(|k| (*k).clone()).collect();
            let changed = !firing_set.is_subset(&g.notified_firing) || !resolved.is_empty();
            let repeat_due =
                !firing.is_empty() && g.last_notified_ms.is_some_and(|t| t + repeat <= now);
            let send = !muted_route && (changed || repeat_due);
            let note = send.then(|| Notification {
                group_key: g.key.clone(),
                group_id: g.id.clone(),
                receiver: g.receiver.clone(),
                reason: Reason::Group,
                tier: 1,
                status: if firing.is_empty() {
                    "resolved"
                } else {
                    "firing"
                }
                .into(),
                group_labels: g.group_labels.clone(),
                firing: firing.values().map(|a| (*a).clone()).collect(),
                resolved: resolved.into_iter().cloned().collect(),
                created_ms: now,
                episode_ms: 0,
            });
            let g = self.groups.get_mut(key).expect("due groups exist");
            g.next_flush_ms = now + interval;
            if let Some(n) = note {
                if !n.firing.is_empty()
                    && g.first_notified_ms.is_some()
                    && !g
                        .notified_firing
                        .iter()
                        .any(|fp| g.alerts.get(fp).is_some_and(|a| !a.is_resolved(now)))
                {
                    // Everything notified before has resolved: a new episode, with its own
                    // acknowledgement and escalation.
                    g.first_notified_ms = None;
                    g.next_tier = 0;
                    g.acked_ms = None;
                    g.acked_by = None;
                }
                g.notified_firing = firing_set;
                g.last_notified_ms = Some(now);
                g.resolved_unsent.clear();
                if !n.firing.is_empty() {
                    g.first_notified_ms.get_or_insert(now);
                }
                let mut n = n;
                n.episode_ms = g.first_notified_ms.unwrap_or(now);
                out.push(n);
                // Resolved alerts are forgotten once they have been notified.
                g.alerts.retain(|_, a| !a.is_resolved(now));
            } else if !muted_route {
                // Resolved alerts nobody was told about are dropped silently.
                let notified = g.notified_firing.clone();
                g.alerts
                    .retain(|fp, a| !a.is_resolved(now) || notified.contains(fp));
            }
            if g.alerts.is_empty() && g.resolved_unsent.is_empty() {
                self.groups.remove(key);
            }
        }
        (out, due)
    }

    /// Escalation tiers due at `now` for unacknowledged groups that still fire.
    pub fn escalations_due(&mut self, cfg: &NotifyConfig, now: i64) -> Vec<Notification> {
        let mut out = Vec::new();
        for g in self.groups.values_mut() {
            let (Some(p), Some(first), None) = (
                g.escalation.as_deref().and_then(|p| cfg.policy(p)),
                g.first_notified_ms,
                g.acked_ms,
            ) else {
                continue;
            };
            while let Some(t) = p.tiers.get(g.next_tier) {
                if first + t.after.0 > now {
                    break;
                }
                g.next_tier += 1;
                let firing: Vec<AlertEntry> = g
                    .alerts
                    .values()
                    .filter(|a| !a.is_resolved(now))
                    .cloned()
                    .collect();
                if firing.is_empty() {
                    continue;
                }
                out.push(Notification {
                    group_key: g.key.clone(),
                    group_id: g.id.clone(),
                    receiver: t.receiver.clone(),
                    reason: Reason::Escalation,
                    tier: g.next_tier + 1,
                    status: "firing".into(),
                    group_labels: g.group_labels.clone(),
                    firing,
                    resolved: Vec::new(),
                    created_ms: now,
                    episode_ms: first,
                });
            }
        }
        out
    }

    /// The earliest time anything is due (a flush or an escalation tier).
    pub fn next_due(&self, cfg: &NotifyConfig) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|g| {
                let esc = match (&g.escalation, g.first_notified_ms, g.acked_ms) {
                    (Some(p), Some(first), None) => cfg
                        .policy(p)
                        .and_then(|p| p.tiers.get(g.next_tier))
                        .map(|t| first + t.after.0),
                    _ => None,
                };
                std::iter::once(g.next_flush_ms).chain(esc)
            })
            .min()
    }

    /// The group with the short id.
    pub fn by_id(&mut self, id: &str) -> Option<&mut Group> {
        self.groups.values_mut().find(|g| g.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> NotifyConfig {
        crate::notify::config::from_yaml(yaml, "t", None).unwrap()
    }

    const CFG: &str = "
receivers:
  - {name: ops, webhook: [{url: 'http://h'}]}
  - {name: boss, webhook: [{url: 'http://b'}]}
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
  escalation: up
escalation_policies:
  - name: up
    tiers: [{after: 10m, receiver: boss}]
inhibit_rules:
  - source_matchers: ['severity=\"critical\"']
    target_matchers: ['severity=\"warning\"']
    equal: [instance]
";

    fn alert(name: &str, inst: &str, sev: &str) -> AlertEntry {
        AlertEntry {
            labels: [("alertname", name), ("instance", inst), ("severity", sev)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at_ms: 0,
            ends_at_ms: None,
            resolved: false,
        }
    }

    const S: i64 = 1_000;
    const M: i64 = 60 * S;

    fn flush(e: &mut Engine, c: &NotifyConfig, now: i64) -> Vec<Notification> {
        e.flush_due(c, &[], now).0
    }

    #[test]
    fn group_wait_then_group_interval_then_repeat() {
        let c = cfg(CFG);
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        assert!(flush(&mut e, &c, 29 * S).is_empty(), "waits group_wait");
        let n = flush(&mut e, &c, 30 * S);
        assert_eq!(n.len(), 1);
        assert_eq!((n[0].firing.len(), n[0].status.as_str()), (1, "firing"));
        // A second alert of the same group waits for the group interval.
        e.ingest(&c, &alert("Down", "b", "critical"), 31 * S);
        assert!(flush(&mut e, &c, 31 * S + 4 * M).is_empty());
        let n = flush(&mut e, &c, 30 * S + 5 * M);
        assert_eq!(n[0].firing.len(), 2);
        // Nothing new: silent until repeat_interval has passed since the last notification.
        assert!(flush(&mut e, &c, 30 * S + 10 * M).is_empty());
        assert_eq!(flush(&mut e, &c, 30 * S + 65 * M).len(), 1);
    }

    #[test]
    fn resolved_alerts_are_notified_once_and_the_group_goes_away() {
        let c = cfg(CFG);
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        flush(&mut e, &c, 30 * S);
        let mut r = alert("Down", "a", "critical");
        r.resolved = true;
        r.ends_at_ms = Some(M);
        e.ingest(&c, &r, M);
        let n = flush(&mut e, &c, 30 * S + 5 * M);
        assert_eq!((n[0].status.as_str(), n[0].resolved.len()), ("resolved", 1));
        assert!(e.groups.is_empty());
        // A resolved alert that was never notified creates nothing.
        e.ingest(&c, &r, 6 * M);
        assert!(e.groups.is_empty());
    }

    #[test]
    fn an_alert_not_refreshed_before_it_expires_resolves() {
        let c = cfg(CFG);
        let mut e = Engine::default();
        let mut a = alert("Down", "a", "critical");
        a.ends_at_ms = Some(M);
        e.ingest(&c, &a, 0);
        flush(&mut e, &c, 30 * S);
        let n = flush(&mut e, &c, 30 * S + 5 * M);
        assert_eq!(n[0].status, "resolved");
    }

    #[test]
    fn group_by_splits_groups() {
        let c = cfg(&CFG.replace("group_by: [alertname]", "group_by: [instance]"));
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        e.ingest(&c, &alert("Slow", "a", "critical"), 0);
        e.ingest(&c, &alert("Down", "b", "critical"), 0);
        assert_eq!(e.groups.len(), 2);
        let mut n = flush(&mut e, &c, 30 * S);
        n.sort_by_key(|n| n.group_labels["instance"].clone());
        assert_eq!(n[0].firing.len(), 2);
        assert_eq!(n[1].firing.len(), 1);
    }

    #[test]
    fn inhibition_needs_equal_labels() {
        let c = cfg(&CFG.replace("group_by: [alertname]", "group_by: ['...']"));
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        e.ingest(&c, &alert("Slow", "a", "warning"), 0);
        e.ingest(&c, &alert("Slow", "b", "warning"), 0);
        let n = flush(&mut e, &c, 30 * S);
        let names: BTreeSet<(String, String)> = n
            .iter()
            .map(|n| {
                let l = &n.firing[0].labels;
                (l["alertname"].clone(), l["instance"].clone())
            })
            .collect();
        assert_eq!(
            names,
            BTreeSet::from([("Down".into(), "a".into()), ("Slow".into(), "b".into())])
        );
    }

    #[test]
    fn silences_mute_and_time_intervals_postpone() {
        let c = cfg(CFG);
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        let mute = Mute {
            matchers: vec![Matcher::parse("instance=\"a\"").unwrap()],
            starts_ms: 0,
            ends_ms: 10 * M,
            during: None,
        };
        assert!(
            e.flush_due(&c, std::slice::from_ref(&mute), 30 * S)
                .0
                .is_empty()
        );
        // After the silence ends the next flush notifies.
        assert_eq!(e.flush_due(&c, &[mute], 30 * S + 10 * M).0.len(), 1);

        let c = cfg(&format!(
            "{}time_intervals:\n  - name: always\n    time_intervals: [{{}}]\n",
            CFG.replace(
                "  escalation: up\n",
                "  escalation: up\n  mute_time_intervals: [always]\n"
            )
        ));
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        assert!(flush(&mut e, &c, 30 * S).is_empty());
        assert_eq!(e.groups.len(), 1, "muted groups keep their alerts");
    }

    #[test]
    fn continue_sends_to_both_routes() {
        let c = cfg("
receivers:
  - {name: ops, webhook: [{url: 'http://h'}]}
  - {name: dba, webhook: [{url: 'http://d'}]}
route:
  receiver: ops
  group_wait: 0s
  routes:
    - {matchers: ['team=\"db\"'], receiver: dba, continue: true}
    - {matchers: ['team=~\".+\"'], receiver: ops}
");
        let mut e = Engine::default();
        let mut a = alert("Down", "a", "critical");
        a.labels.insert("team".into(), "db".into());
        e.ingest(&c, &a, 0);
        let mut r: Vec<String> = flush(&mut e, &c, 0)
            .into_iter()
            .map(|n| n.receiver)
            .collect();
        r.sort();
        assert_eq!(r, ["dba", "ops"]);
    }

    fn resolved(mut a: AlertEntry, at: i64) -> AlertEntry {
        a.resolved = true;
        a.ends_at_ms = Some(at);
        a
    }

    #[test]
    fn a_flapping_alert_is_notified_again_after_its_resolve() {
        let c = cfg(CFG);
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        assert_eq!(flush(&mut e, &c, 30 * S).len(), 1);
        // Resolves, then fires again before the group's next flush (30s + 5m).
        e.ingest(&c, &resolved(alert("Down", "a", "critical"), M), M);
        let mut again = alert("Down", "a", "critical");
        again.starts_at_ms = 2 * M;
        e.ingest(&c, &again, 2 * M);
        let n = flush(&mut e, &c, 30 * S + 5 * M);
        assert_eq!(n.len(), 1, "the new firing is notified at the next flush");
        assert_eq!(n[0].status, "firing");
        assert_eq!(n[0].firing.len(), 1);
        assert_eq!(n[0].firing[0].starts_at_ms, 2 * M, "the new occurrence");
        assert_eq!(n[0].resolved.len(), 1, "and the old occurrence's resolve");
        assert_eq!(n[0].resolved[0].ends_at_ms, Some(M));
        // When it resolves again, that is notified too.
        e.ingest(&c, &resolved(again, 6 * M), 6 * M);
        let n = flush(&mut e, &c, 30 * S + 10 * M);
        assert_eq!((n[0].status.as_str(), n[0].resolved.len()), ("resolved", 1));
        assert!(e.groups.is_empty());
    }

    /// Fires at 0 (notified at 30s), resolves at 1m, fires again at 2m.
    fn flap(e: &mut Engine, c: &NotifyConfig, name: &str) {
        e.ingest(c, &alert(name, "a", "critical"), 0);
        flush(e, c, 30 * S);
        e.ingest(c, &resolved(alert(name, "a", "critical"), M), M);
        let mut again = alert(name, "a", "critical");
        again.starts_at_ms = 2 * M;
        e.ingest(c, &again, 2 * M);
    }

    #[test]
    fn repeat_interval_counts_from_the_new_occurrence() {
        let c = cfg(CFG);
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "b", "critical"), 0);
        flap(&mut e, &c, "Down");
        let n = flush(&mut e, &c, 30 * S + 5 * M);
        assert_eq!(n[0].firing.len(), 2, "not postponed to the repeat interval");
        assert!(flush(&mut e, &c, 30 * S + 60 * M).is_empty());
        assert_eq!(flush(&mut e, &c, 30 * S + 65 * M).len(), 1);
    }

    #[test]
    fn a_new_occurrence_after_everything_resolved_needs_a_new_acknowledgement() {
        let c = cfg(CFG);
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        flush(&mut e, &c, 30 * S);
        e.groups.values_mut().next().unwrap().acked_ms = Some(40 * S);
        e.ingest(&c, &resolved(alert("Down", "a", "critical"), M), M);
        e.ingest(&c, &alert("Down", "a", "critical"), 2 * M);
        assert_eq!(flush(&mut e, &c, 30 * S + 5 * M).len(), 1);
        let g = e.groups.values().next().unwrap();
        assert_eq!(
            (g.acked_ms, g.first_notified_ms),
            (None, Some(30 * S + 5 * M))
        );
        let n = e.escalations_due(&c, 30 * S + 15 * M);
        assert_eq!(
            n.len(),
            1,
            "the new occurrence escalates when nobody acknowledges"
        );

        // While another notified alert of the group still fires (silenced), the
        // acknowledgement stands.
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        flush(&mut e, &c, 30 * S);
        e.groups.values_mut().next().unwrap().acked_ms = Some(40 * S);
        e.ingest(&c, &alert("Down", "b", "critical"), M);
        let mute = Mute {
            matchers: vec![Matcher::parse("instance=\"a\"").unwrap()],
            starts_ms: 0,
            ends_ms: 60 * M,
            during: None,
        };
        let n = e.flush_due(&c, &[mute], 30 * S + 5 * M).0;
        assert_eq!(n[0].firing[0].labels["instance"], "b");
        assert_eq!(e.groups.values().next().unwrap().acked_ms, Some(40 * S));
    }

    #[test]
    fn a_resolved_source_no_longer_inhibits() {
        let c = cfg(&CFG.replace("group_by: [alertname]", "group_by: ['...']"));
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        e.ingest(&c, &alert("Slow", "a", "warning"), 0);
        let n = flush(&mut e, &c, 30 * S);
        assert_eq!(n.len(), 1, "Slow is inhibited");
        // The source resolves; its group still holds it until its resolve is sent.
        e.ingest(&c, &resolved(alert("Down", "a", "critical"), M), M);
        let mut n = flush(&mut e, &c, 30 * S + 5 * M);
        n.sort_by_key(|n| n.status.clone());
        let got: Vec<(&str, &str)> = n
            .iter()
            .map(|n| (n.status.as_str(), n.group_labels["alertname"].as_str()))
            .collect();
        assert_eq!(got, [("firing", "Slow"), ("resolved", "Down")]);
        // A flapping source inhibits again once it fires again.
        let mut e = Engine::default();
        flap(&mut e, &c, "Down");
        e.ingest(&c, &alert("Slow", "a", "warning"), 2 * M);
        let n = flush(&mut e, &c, 30 * S + 5 * M);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].group_labels["alertname"], "Down");
    }

    #[test]
    fn a_flap_under_a_silence_is_notified_when_the_silence_expires() {
        let c = cfg(CFG);
        let mut e = Engine::default();
        flap(&mut e, &c, "Down");
        let mute = Mute {
            matchers: vec![Matcher::parse("instance=\"a\"").unwrap()],
            starts_ms: 90 * S,
            ends_ms: 20 * M,
            during: None,
        };
        let n = e
            .flush_due(&c, std::slice::from_ref(&mute), 30 * S + 5 * M)
            .0;
        assert_eq!(
            (n[0].status.as_str(), n[0].firing.len(), n[0].resolved.len()),
            ("resolved", 0, 1),
            "the resolve is told, the silenced new firing is not"
        );
        for t in [10, 15] {
            assert!(
                e.flush_due(&c, std::slice::from_ref(&mute), 30 * S + t * M)
                    .0
                    .is_empty()
            );
        }
        let n = e.flush_due(&c, &[mute], 30 * S + 20 * M).0;
        assert_eq!((n[0].status.as_str(), n[0].firing.len()), ("firing", 1));
    }

    #[test]
    fn escalation_fires_when_nobody_acknowledges() {
        let c = cfg(CFG);
        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        flush(&mut e, &c, 30 * S);
        assert_eq!(e.next_due(&c), Some(30 * S + 5 * M));
        assert!(e.escalations_due(&c, 30 * S + 9 * M).is_empty());
        let n = e.escalations_due(&c, 30 * S + 10 * M);
        assert_eq!((n[0].receiver.as_str(), n[0].tier), ("boss", 2));
        assert!(e.escalations_due(&c, 30 * S + 20 * M).is_empty(), "once");

        let mut e = Engine::default();
        e.ingest(&c, &alert("Down", "a", "critical"), 0);
        flush(&mut e, &c, 30 * S);
        let g = e.groups.values_mut().next().unwrap();
        g.acked_ms = Some(M);
        assert!(e.escalations_due(&c, 30 * S + 10 * M).is_empty());
    }
}
