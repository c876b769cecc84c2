//! Alert and recording rules in the server: the loaded rule set, each group evaluated on its
//! interval over the live window, results (recorded series, `ALERTS`) written back into the
//! window, and every group's alert state saved to the store after each evaluation so that a
//! restart keeps pending `for` timers and does not re-fire. Reloads (SIGHUP, API) validate the
//! new files completely before they replace the running set, and carry state over by rule.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use yunwei_rules::{
    alerting::{Alert, EvalOptions, GroupState, RuleHealth},
    promql::{Labels, Options},
    rulefile::{Rule, RuleGroup, load_rule_files},
};

use crate::{AppState, live, now_ms};

/// One group with its state and the outcome of its last evaluation.
pub struct GroupRuntime {
    pub key: String,
    pub group: Arc<RuleGroup>,
    pub state: GroupState,
    pub alerts: Vec<Alert>,
    pub next_eval_ms: i64,
    pub last_duration: Duration,
}

/// The running rule set.
#[derive(Default)]
pub struct RuleSet {
    pub files: Vec<PathBuf>,
    pub groups: Vec<GroupRuntime>,
    pub loaded_at_ms: i64,
}

fn group_key(g: &RuleGroup) -> String {
    format!("{};{}", g.origin, g.name)
}

/// Loads and validates rule files; every problem is reported with `file:line:col`.
pub fn load(files: &[PathBuf]) -> Result<Vec<Arc<RuleGroup>>, String> {
    let parsed = load_rule_files(files).map_err(|e| e.to_string())?;
    Ok(parsed
        .into_iter()
        .flat_map(|f| f.groups)
        .map(Arc::new)
        .collect())
}

impl RuleSet {
    /// A rule set from loaded groups, with saved states (by group key) where they exist.
    pub fn new(
        files: Vec<PathBuf>,
        groups: Vec<Arc<RuleGroup>>,
        mut saved: HashMap<String, GroupState>,
    ) -> RuleSet {
        let now = now_ms();
        let groups = groups
            .into_iter()
            .map(|group| {
                let key = group_key(&group);
                let mut state = saved.remove(&key).unwrap_or_default();
                state.align(&group);
                GroupRuntime {
                    key,
                    alerts: Vec::new(),
                    state,
                    group,
                    next_eval_ms: now,
                    last_duration: Duration::ZERO,
                }
            })
            .collect();
        RuleSet {
            files,
            groups,
            loaded_at_ms: now,
        }
    }

    /// Replaces the groups, keeping the state of groups and rules that still exist.
    pub fn replace(&mut self, groups: Vec<Arc<RuleGroup>>) {
        let saved: HashMap<String, GroupState> =
            self.groups.drain(..).map(|g| (g.key, g.state)).collect();
        *self = RuleSet::new(std::mem::take(&mut self.files), groups, saved);
    }
}

/// Reads saved group states from the store.
pub async fn saved_states(
    state: &crate::store::Store,
) -> anyhow::Result<HashMap<String, GroupState>> {
    let mut out = HashMap::new();
    for (key, json) in state.rule_states().await? {
        match serde_json::from_str::<GroupState>(&json) {
            Ok(s) => {
                out.insert(key, s);
            }
            Err(e) => {
                tracing::warn!(group = %key, error = %e, "ignoring unreadable saved rule state")
            }
        }
    }
    Ok(out)
}

/// Re-reads the configured rule files; on any error the running set is kept.
pub fn reload(state: &AppState) -> Result<usize, String> {
    let files = state.rules.read().expect("rules lock").files.clone();
    let groups = load(&files)?;
    let n = groups.len();
    state.rules.write().expect("rules lock").replace(groups);
    tracing::info!(groups = n, "rules reloaded");
    Ok(n)
}

fn eval_options(state: &AppState) -> EvalOptions {
    EvalOptions {
        promql: Options::default(),
        default_interval_ms: state.config.rules.evaluation_interval_secs as i64 * 1000,
        ..EvalOptions::default()
    }
}

/// Writes the fleet series rules can use (`yunwei_host_up`, `yunwei_host_last_batch_age_seconds`)
/// into the live window at `t`.
fn record_fleet(state: &AppState, t: i64) {
    let missed = state.config.ingest.unknown_after_missed_batches;
    let hosts: Vec<(String, crate::HostLive)> = state
        .live
        .read()
        .expect("live lock")
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut w = state.window.write().expect("window lock");
    for (id, h) in hosts {
        let mut base = h.labels.clone();
        base.insert("agent_id".into(), id.clone());
        base.insert("instance".into(), h.hostname.clone());
        let mut up = base.clone();
        up.insert("__name__".into(), "yunwei_host_up".into());
        w.storage.add_sample(
            &live::to_labels(&up),
            t,
            if h.is_up(t, missed) { 1.0 } else { 0.0 },
        );
        let mut age = base;
        age.insert(
            "__name__".into(),
            "yunwei_host_last_batch_age_seconds".into(),
        );
        w.storage.add_sample(
            &live::to_labels(&age),
            t,
            (t - h.last_seen_ms).max(0) as f64 / 1000.0,
        );
    }
}

/// Evaluates every group that is due at `t`; returns how many were evaluated.
pub async fn eval_due(state: &AppState, t: i64) -> usize {
    let opts = eval_options(state);
    let due: Vec<usize> = {
        let rules = state.rules.read().expect("rules lock");
        rules
            .groups
            .iter()
            .enumerate()
            // Never evaluate a group at or before its last evaluation: two evaluators (the loop
            // and a caller) or a clock stepping back must not rewrite newer state.
            .filter(|(_, g)| g.next_eval_ms <= t && g.state.last_eval_ms.is_none_or(|l| l < t))
            .map(|(i, _)| i)
            .collect()
    };
    if due.is_empty() {
        return 0;
    }
    record_fleet(state, t);
    let mut saves = Vec::new();
    for i in &due {
        let (group, mut gstate) = {
            let rules = state.rules.read().expect("rules lock");
            let Some(g) = rules.groups.get(*i) else {
                continue;
            };
            (g.group.clone(), g.state.clone())
        };
        let started = Instant::now();
        let result = {
            let w = state.window.read().expect("window lock");
            group.eval(t, &w.storage, &mut gstate, &opts)
        };
        for e in &result.errors {
            tracing::warn!(group = %group.name, rule = %e.rule_name, error = %e.message, "rule evaluation failed");
        }
        let interval = group.interval_or(opts.default_interval_ms);
        let json = serde_json::to_string(&gstate).unwrap_or_default();
        {
            let mut rules = state.rules.write().expect("rules lock");
            // The set may have been reloaded meanwhile; only store into the same group.
            // Nor over a newer evaluation that finished meanwhile.
            let Some(g) = rules.groups.get_mut(*i).filter(|g| {
                Arc::ptr_eq(&g.group, &group) && g.state.last_eval_ms.is_none_or(|l| l < t)
            }) else {
                continue;
            };
            g.state = gstate;
            g.alerts = result.alerts;
            g.last_duration = started.elapsed();
            g.next_eval_ms = (t / interval + 1) * interval;
            saves.push((g.key.clone(), json));
        }
        {
            let mut w = state.window.write().expect("window lock");
            for s in &result.samples_to_write {
                w.storage.add_sample(&s.labels, s.t_ms, s.v);
            }
        }
        for a in &result.to_notify {
            tracing::debug!(alert = %a.labels, state = a.state.as_str(), "alert to notify");
        }
        state.notify.alerts(
            result
                .to_notify
                .iter()
                .map(crate::notify::dispatch::from_rule_alert)
                .collect(),
        );
    }
    for (key, json) in saves {
        if let Err(e) = state.store.save_rule_state(&key, &json, t).await {
            tracing::error!(group = %key, error = %e, "saving rule state failed");
        }
    }
    due.len()
}

/// Evaluates due groups once a second until the task is aborted.
pub async fn eval_loop(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        eval_due(&state, now_ms()).await;
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}

fn alert_json(a: &Alert) -> Value {
    json!({
        "labels": labels_json(&a.labels),
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at_ms),
        "firedAt": a.fired_at_ms.map(rfc3339),
        "value": yunwei_rules::promql::format_value(a.value),
    })
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|l| (l.name.to_string(), Value::from(l.value.to_string())))
            .collect(),
    )
}

/// `GET /api/v1/rules` body, in Prometheus's shape.
pub fn rules_json(set: &RuleSet, default_interval_ms: i64) -> Value {
    let groups: Vec<Value> = set
        .groups
        .iter()
        .map(|g| {
            let rules: Vec<Value> = g
                .group
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let st = g.state.rules.get(i);
                    let health = match st.map(|s| s.health) {
                        Some(RuleHealth::Ok) => "ok",
                        Some(RuleHealth::Err) => "err",
                        _ => "unknown",
                    };
                    let last_error = st.and_then(|s| s.last_error.clone()).unwrap_or_default();
                    let last_eval = st.and_then(|s| s.last_eval_ms).map(rfc3339);
                    match r {
                        Rule::Alerting(a) => {
                            let alerts: Vec<Value> = st.map(|s| s.alerts.iter().map(alert_json).collect()).unwrap_or_default();
                            let state = st
                                .and_then(|s| s.alerts.iter().map(|a| a.state).max())
                                .map_or("inactive", |s| s.as_str());
                            json!({
                                "type": "alerting", "name": a.name, "query": a.expr,
                                "duration": secs(a.for_ms), "keepFiringFor": secs(a.keep_firing_for_ms),
                                "labels": a.labels.iter().map(|(k, t)| (k.clone(), t.source().to_string())).collect::<std::collections::BTreeMap<_, _>>(),
                                "annotations": a.annotations.iter().map(|(k, t)| (k.clone(), t.source().to_string())).collect::<std::collections::BTreeMap<_, _>>(),
                                "state": state, "alerts": alerts, "health": health, "lastError": last_error,
                                "lastEvaluation": last_eval,
                            })
                        }
                        Rule::Recording(rr) => json!({
                            "type": "recording", "name": rr.name, "query": rr.expr,
                            "labels": labels_json(&rr.labels), "health": health, "lastError": last_error,
                            "lastEvaluation": last_eval,
                        }),
                    }
                })
                .collect();
            json!({
                "name": g.group.name,
                "file": g.group.origin,
                "interval": secs(g.group.interval_or(default_interval_ms)),
                "limit": g.group.limit,
                "rules": rules,
                "evaluationTime": g.last_duration.as_secs_f64(),
                "lastEvaluation": g.state.last_eval_ms.map(rfc3339),
            })
        })
        .collect();
    json!({ "status": "success", "data": { "groups": groups } })
}

/// `GET /api/v1/alerts` body: pending and firing alerts, in Prometheus's shape.
pub fn alerts_json(set: &RuleSet) -> Value {
    let alerts: Vec<Value> = set
        .groups
        .iter()
        .flat_map(|g| g.state.rules.iter().flat_map(|r| r.alerts.iter()))
        .filter(|a| a.state != yunwei_rules::alerting::AlertState::Inactive)
        .map(alert_json)
        .collect();
    json!({ "status": "success", "data": { "alerts": alerts } })
}
