//! Alert and recording rules in the server: the loaded rule set, each group evaluated on its
//! interval over the live window, results (recorded series, `ALERTS`) written back into the
//! window, and every group's alert state saved to the store after each evaluation so that a
//! restart keeps pending `for` timers and does not re-fire. Reloads (SIGHUP, API) validate the
//! new files completely before they replace the running set, and carry state over by rule.
//!
//! Evaluation on ingest (`rules.eval_on_ingest`): the writer hands the metric names of each
//! committed batch to [`IngestTrigger`]; the rule loop marks the groups whose selectors may read
//! one of them (or a series recorded by another marked group) and evaluates them at once, at
//! most one such evaluation per group per `eval_on_ingest_min_spacing_ms`, and all of them
//! within `eval_on_ingest_cpu_percent` of one core ([`EarlyBudget`]). An early evaluation is an
//! ordinary evaluation at the current time: it does not move the group's interval schedule,
//! and `for` keeps counting real time from the evaluation that first saw the condition.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use promql_parser::{
    label::{MatchOp, Matcher},
    parser::{Expr, VectorSelector},
};
use serde_json::{Value, json};
use yunwei_rules::{
    alerting::{
        ALERTS_FOR_STATE_METRIC, ALERTS_METRIC, Alert, EvalOptions, GroupState, RuleHealth,
    },
    promql::{Labels, METRIC_NAME, MemStorage, Options, SharedEval},
    rulefile::{Rule, RuleGroup, load_rule_files},
};

use crate::{
    config::ServerConfig,
    live::{self, Live},
    metrics::Metrics,
    notify, now_ms,
    store::Store,
};

/// The rule engine: the running rule set and what its evaluation reads (the live window, the
/// commit trigger) and writes (recorded series, alert state in the store, alerts to notify).
pub struct Engine {
    pub config: Arc<ServerConfig>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub live: Arc<Live>,
    pub notify: notify::dispatch::Handle,
    /// Loaded alert and recording rules with their state.
    pub set: RwLock<RuleSet>,
    /// Metric names of committed batches, for the rule loop (`rules.eval_on_ingest`).
    pub rule_trigger: Arc<IngestTrigger>,
}

/// One group with its state and the outcome of its last evaluation.
pub struct GroupRuntime {
    pub key: String,
    pub group: Arc<RuleGroup>,
    pub state: GroupState,
    pub alerts: Vec<Alert>,
    pub next_eval_ms: i64,
    pub last_duration: Duration,
    /// The metric names the group's selectors may read.
    pub reads: Reads,
    /// The metric names the group writes: its recording rules, and `ALERTS` /
    /// `ALERTS_FOR_STATE` when it has alerting rules.
    pub writes: Vec<String>,
    /// Set when an ingest commit touched a metric the group may read: the earliest time the
    /// resulting evaluation may run. Cleared by the next evaluation of the group.
    pub triggered_ms: Option<i64>,
}

/// The running rule set.
#[derive(Default)]
pub struct RuleSet {
    pub files: Vec<PathBuf>,
    pub groups: Vec<GroupRuntime>,
    pub loaded_at_ms: i64,
    /// The time budget of ingest-triggered evaluations.
    pub early: EarlyBudget,
}

/// The metric names a group's selectors may match.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reads {
    /// Names selected by equality (`foo`, `{__name__="foo"}`).
    pub names: HashSet<String>,
    /// Some selector may match any name: no name, or a `__name__` regex or negation.
    pub any: bool,
}

impl Reads {
    /// The names read by every selector of the group's rules.
    pub fn of(group: &RuleGroup) -> Reads {
        let mut r = Reads::default();
        for rule in &group.rules {
            r.walk(rule.parsed().expr());
        }
        r
    }

    fn walk(&mut self, expr: &Expr) {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            Expr::Subquery(sq) => self.walk(&sq.expr),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p);
                }
                self.walk(&a.expr);
            }
            Expr::Unary(u) => self.walk(&u.expr),
            Expr::Binary(b) => {
                self.walk(&b.lhs);
                self.walk(&b.rhs);
            }
            Expr::Paren(p) => self.walk(&p.expr),
            Expr::Call(c) => c.args.args.iter().for_each(|a| self.walk(a)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            // Not produced by the parser for rules; if it ever is, assume the worst.
            Expr::Extension(_) => self.any = true,
        }
    }

    fn selector(&mut self, vs: &VectorSelector) {
        let equal_name = |ms: &[Matcher]| {
            ms.iter()
                .find(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        };
        if let Some(n) = vs
            .name
            .clone()
            .or_else(|| equal_name(&vs.matchers.matchers))
        {
            self.names.insert(n);
            return;
        }
        // `{__name__="a" or __name__="b"}`: names only if every alternative has one.
        let alternatives: Option<Vec<String>> = (!vs.matchers.or_matchers.is_empty())
            .then(|| {
                vs.matchers
                    .or_matchers
                    .iter()
                    .map(|alt| equal_name(alt))
                    .collect()
            })
            .flatten();
        match alternatives {
            Some(names) => self.names.extend(names),
            None => self.any = true,
        }
    }

    /// Whether a selector may match one of `touched`.
    pub fn may_match(&self, touched: &HashSet<&str>) -> bool {
        self.any || self.names.iter().any(|n| touched.contains(n.as_str()))
    }
}

fn writes_of(group: &RuleGroup) -> Vec<String> {
    let mut w: Vec<String> = group
        .rules
        .iter()
        .filter_map(|r| match r {
            Rule::Recording(rr) => Some(rr.name.clone()),
            Rule::Alerting(_) => None,
        })
        .collect();
    if group.rules.iter().any(|r| matches!(r, Rule::Alerting(_))) {
        w.push(ALERTS_METRIC.to_string());
        w.push(ALERTS_FOR_STATE_METRIC.to_string());
    }
    w.sort();
    w.dedup();
    w
}

/// A token bucket of evaluation time for ingest-triggered evaluations: it fills at `share` ms
/// per ms of wall time, up to ten seconds' worth, and each early evaluation spends what it took.
/// An evaluation may start while the balance is not negative, so one long evaluation can
/// overdraw it; the next then waits until it is repaid.
#[derive(Debug, Default, Clone)]
pub struct EarlyBudget {
    balance_ms: f64,
    at_ms: i64,
}

impl EarlyBudget {
    const BURST_MS: f64 = 10_000.0;

    fn refill(&mut self, now_ms: i64, share: f64) {
        let elapsed = (now_ms - self.at_ms).max(0) as f64;
        self.at_ms = self.at_ms.max(now_ms);
        self.balance_ms = (self.balance_ms + elapsed * share).min(Self::BURST_MS * share);
    }

    /// `None` when an early evaluation may start at `now_ms`, else when it may.
    pub fn wait_until(&mut self, now_ms: i64, share: f64) -> Option<i64> {
        self.refill(now_ms, share);
        (self.balance_ms < 0.0).then(|| self.at_ms + (-self.balance_ms / share).ceil() as i64)
    }

    /// Records an early evaluation that took `ms`.
    pub fn spend(&mut self, ms: f64) {
        self.balance_ms -= ms;
    }
}

/// The metric names of committed batches, handed from the ingest writer to the rule loop,
/// which takes them all at once: many commits between two rounds cost one round.
#[derive(Default)]
pub struct IngestTrigger {
    names: Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
}

impl IngestTrigger {
    /// Notes the metric names of a committed batch and wakes the rule loop.
    pub fn touched<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        {
            let mut set = self.names.lock().expect("trigger lock");
            let mut last = None;
            for n in names {
                // Samples of one metric usually come together.
                if last == Some(n) {
                    continue;
                }
                last = Some(n);
                if !set.contains(n) {
                    set.insert(n.to_string());
                }
            }
        }
        self.wake.notify_one();
    }

    /// The names noted since the last call.
    pub fn take(&self) -> HashSet<String> {
        std::mem::take(&mut *self.names.lock().expect("trigger lock"))
    }
}

fn group_key(g: &RuleGroup) -> String {
    format!("{};{}", g.origin, g.name)
}

/// Rule files that do not load: every problem, one per line, each with `file:line:col`. The
/// running set is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRules(pub String);

/// Loads and validates rule files; every problem is reported with `file:line:col`.
pub fn load(files: &[PathBuf]) -> Result<Vec<Arc<RuleGroup>>, InvalidRules> {
    let parsed = load_rule_files(files).map_err(|e| InvalidRules(e.to_string()))?;
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
                    reads: Reads::of(&group),
                    writes: writes_of(&group),
                    group,
                    next_eval_ms: now,
                    last_duration: Duration::ZERO,
                    triggered_ms: None,
                }
            })
            .collect();
        RuleSet {
            files,
            groups,
            loaded_at_ms: now,
            early: EarlyBudget::default(),
        }
    }

    /// Marks the groups that may read one of `names` (metrics an ingest commit touched at
    /// `now_ms`) for an evaluation as soon as `min_spacing_ms` has passed since their last one.
    /// Groups reading what a marked group records are marked too; marked groups run in rule
    /// file order. Returns how many groups were marked.
    pub fn trigger(&mut self, names: &HashSet<String>, now_ms: i64, min_spacing_ms: i64) -> usize {
        let mut hit = vec![false; self.groups.len()];
        {
            let mut touched: HashSet<&str> = names.iter().map(String::as_str).collect();
            loop {
                let mut grew = false;
                for (g, hit) in self.groups.iter().zip(hit.iter_mut()) {
                    if *hit || !g.reads.may_match(&touched) {
                        continue;
                    }
                    *hit = true;
                    for w in &g.writes {
                        grew |= touched.insert(w.as_str());
                    }
                }
                if !grew {
                    break;
                }
            }
        }
        let mut n = 0;
        for (g, hit) in self.groups.iter_mut().zip(hit) {
            if !hit {
                continue;
            }
            n += 1;
            let earliest = g
                .state
                .last_eval_ms
                .map_or(now_ms, |l| (l + min_spacing_ms).max(now_ms));
            g.triggered_ms = Some(g.triggered_ms.map_or(earliest, |t| t.min(earliest)));
        }
        n
    }

    /// The earliest time a marked group may be evaluated.
    pub fn next_triggered_ms(&self) -> Option<i64> {
        self.groups.iter().filter_map(|g| g.triggered_ms).min()
    }

    /// Replaces the groups, keeping the state of groups and rules that still exist.
    pub fn replace(&mut self, groups: Vec<Arc<RuleGroup>>) {
        let saved: HashMap<String, GroupState> =
            self.groups.drain(..).map(|g| (g.key, g.state)).collect();
        *self = RuleSet::new(std::mem::take(&mut self.files), groups, saved);
    }
}

/// Replaces every group's state with the one saved in the store (`for` timers, active alerts,
/// last evaluations): a new leader continues where the previous one stopped.
pub async fn restore_saved_states(engine: &Engine) -> anyhow::Result<()> {
    let saved = saved_states(&engine.store).await?;
    let mut set = engine.set.write().expect("rules lock");
    let groups = set.groups.drain(..).map(|g| g.group).collect();
    let files = std::mem::take(&mut set.files);
    *set = RuleSet::new(files, groups, saved);
    Ok(())
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
pub fn reload(state: &Engine) -> Result<usize, InvalidRules> {
    let files = state.set.read().expect("rules lock").files.clone();
    let groups = load(&files)?;
    let n = groups.len();
    state.set.write().expect("rules lock").replace(groups);
    tracing::info!(groups = n, "rules reloaded");
    Ok(n)
}

fn eval_options(state: &Engine) -> EvalOptions {
    EvalOptions {
        promql: Options::default(),
        default_interval_ms: state.config.rules.evaluation_interval_secs as i64 * 1000,
        ..EvalOptions::default()
    }
}

/// Writes the fleet series rules can use (`yunwei_host_up`, `yunwei_host_last_batch_age_seconds`)
/// into the live window at `t`.
fn record_fleet(state: &Engine, t: i64) {
    let missed = state.config.ingest.unknown_after_missed_batches;
    let hosts: Vec<(String, live::HostLive)> = state
        .live
        .hosts
        .read()
        .expect("live lock")
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut w = state.live.window.write().expect("window lock");
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

/// Evaluates every group that is due at `t`: its interval came round, or an ingest commit
/// marked it ([`RuleSet::trigger`]) and the early-evaluation budget allows; returns how many
/// were evaluated.
pub async fn eval_due(state: &Engine, t: i64) -> usize {
    let opts = eval_options(state);
    let share = f64::from(state.config.rules.eval_on_ingest_cpu_percent) / 100.0;
    // (index, evaluated early: only because an ingest commit marked it)
    let due: Vec<(usize, bool)> = {
        let mut guard = state.set.write().expect("rules lock");
        let rules = &mut *guard;
        let mut budget_wait = None;
        let mut due = Vec::new();
        for (i, g) in rules.groups.iter_mut().enumerate() {
            // Never evaluate a group at or before its last evaluation: two evaluators (the loop
            // and a caller) or a clock stepping back must not rewrite newer state.
            if g.state.last_eval_ms.is_some_and(|l| l >= t) {
                continue;
            }
            if g.next_eval_ms <= t {
                due.push((i, false));
            } else if g.triggered_ms.is_some_and(|m| m <= t) {
                match *budget_wait.get_or_insert_with(|| rules.early.wait_until(t, share)) {
                    None => due.push((i, true)),
                    // Over budget: try again once it is repaid (or at the next interval).
                    Some(at) => g.triggered_ms = Some(at),
                }
            }
        }
        due
    };
    if due.is_empty() {
        return 0;
    }
    // The fleet series are written for scheduled rounds only: an ingest-triggered round can
    // come every few hundred milliseconds, and two samples per host each time would swell the
    // window; the last ones written stay visible within the lookback.
    if due.iter().any(|(_, early)| !early) {
        record_fleet(state, t);
    }
    let mut saves = Vec::new();
    // Subexpressions the due groups share are computed once for the round, as long as the
    // window holds what they were computed over: each group reads the window under one read
    // lock, and a write by anyone else between two groups (an ingest commit, a trim, another
    // evaluator) drops the kept results, so that no rule mixes two states of the window.
    let mut shared = RoundShare::new(t, &opts.promql);
    for &(i, early) in &due {
        let (group, mut gstate) = {
            let rules = state.set.read().expect("rules lock");
            let Some(g) = rules.groups.get(i) else {
                continue;
            };
            (g.group.clone(), g.state.clone())
        };
        let started = Instant::now();
        let (result, eval_gen) = {
            let w = state.live.window.read().expect("window lock");
            let (results, g) = shared.for_eval(&w.storage);
            (
                group.eval_shared(t, &w.storage, &mut gstate, &opts, results),
                g,
            )
        };
        let took = started.elapsed();
        let trigger = if early { "ingest" } else { "interval" };
        state
            .metrics
            .rule_group_evaluations
            .with_label_values(&[trigger])
            .inc();
        state
            .metrics
            .rule_group_evaluation_seconds
            .with_label_values(&[trigger])
            .inc_by(took.as_secs_f64());
        for e in &result.errors {
            tracing::warn!(group = %group.name, rule = %e.rule_name, error = %e.message, "rule evaluation failed");
        }
        let interval = group.interval_or(opts.default_interval_ms);
        let json = serde_json::to_string(&gstate).unwrap_or_default();
        {
            let mut guard = state.set.write().expect("rules lock");
            let rules = &mut *guard;
            if early {
                rules.early.spend(took.as_secs_f64() * 1000.0);
            }
            // The set may have been reloaded meanwhile; only store into the same group.
            // Nor over a newer evaluation that finished meanwhile.
            let Some(g) = rules.groups.get_mut(i).filter(|g| {
                Arc::ptr_eq(&g.group, &group) && g.state.last_eval_ms.is_none_or(|l| l < t)
            }) else {
                // Its output is not written back, so results computed over it must go.
                shared.forget();
                continue;
            };
            g.state = gstate;
            g.alerts = result.alerts;
            g.last_duration = took;
            // An early evaluation leaves the interval schedule where it was.
            g.next_eval_ms = (t / interval + 1) * interval;
            // Marks are set between rounds, so this evaluation saw the data behind them.
            g.triggered_ms = None;
            saves.push((g.key.clone(), json));
        }
        {
            let mut w = state.live.window.write().expect("window lock");
            let before = w.storage.generation();
            for s in &result.samples_to_write {
                w.storage.add_sample(&s.labels, s.t_ms, s.v);
            }
            shared.written_back(eval_gen, before, &w.storage);
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

/// The shared subexpression results of one evaluation round, kept only while the window holds
/// what they were computed over.
struct RoundShare {
    shared: SharedEval,
    /// The window generation the kept results match, if any.
    generation: Option<u64>,
}

impl RoundShare {
    fn new(t: i64, opts: &Options) -> Self {
        RoundShare {
            shared: SharedEval::new(t, opts),
            generation: None,
        }
    }

    /// The results to evaluate the next group with over `window` (dropped first if the window
    /// changed since they were kept), and the window's generation now.
    fn for_eval(&mut self, window: &MemStorage) -> (&mut SharedEval, u64) {
        let g = window.generation();
        if self.generation != Some(g) {
            self.shared.clear();
        }
        (&mut self.shared, g)
    }

    /// After a group's output was written back: the window was at `before` just before, and
    /// the group was evaluated at `evaluated`. Unchanged in between, the window now holds
    /// exactly what the kept results (which saw the group's output) were computed over.
    fn written_back(&mut self, evaluated: u64, before: u64, window: &MemStorage) {
        self.generation = (before == evaluated).then(|| window.generation());
    }

    /// Drops the kept results before the next group.
    fn forget(&mut self) {
        self.generation = None;
    }
}

/// Evaluates due groups once a second, and groups marked by ingest commits as soon as they may
/// run, until the task is aborted.
pub async fn eval_loop(state: Arc<Engine>) {
    let cfg = &state.config.rules;
    let spacing = cfg.eval_on_ingest_min_spacing_ms as i64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let marked = state.set.read().expect("rules lock").next_triggered_ms();
        let until_marked =
            marked.map(|m| Duration::from_millis((m - now_ms()).clamp(0, 1_000) as u64));
        tokio::select! {
            _ = tick.tick() => {}
            () = state.rule_trigger.wake.notified(), if cfg.eval_on_ingest => {}
            () = tokio::time::sleep(until_marked.unwrap_or_default()), if until_marked.is_some() => {}
        }
        let now = now_ms();
        if cfg.eval_on_ingest {
            let names = state.rule_trigger.take();
            if !names.is_empty() {
                state
                    .set
                    .write()
                    .expect("rules lock")
                    .trigger(&names, now, spacing);
            }
        }
        eval_due(&state, now).await;
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
                                "type": "alerting", "name": a.name, "query": a.expr.trim(),
                                "duration": secs(a.for_ms), "keepFiringFor": secs(a.keep_firing_for_ms),
                                "labels": a.labels.iter().map(|(k, t)| (k.clone(), t.source().to_string())).collect::<std::collections::BTreeMap<_, _>>(),
                                "annotations": a.annotations.iter().map(|(k, t)| (k.clone(), t.source().to_string())).collect::<std::collections::BTreeMap<_, _>>(),
                                "state": state, "alerts": alerts, "health": health, "lastError": last_error,
                                // Not measured per rule (the group's `evaluationTime` is); null,
                                // which Prometheus clients read as unknown.
                                "evaluationTime": null,
                                "lastEvaluation": last_eval,
                            })
                        }
                        Rule::Recording(rr) => json!({
                            "type": "recording", "name": rr.name, "query": rr.expr.trim(),
                            "labels": labels_json(&rr.labels), "health": health, "lastError": last_error,
                            "evaluationTime": null,
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

#[cfg(test)]
mod tests {
    use super::*;
    use yunwei_rules::rulefile::parse_rule_file;

    fn groups(text: &str) -> Vec<Arc<RuleGroup>> {
        parse_rule_file(text, "t.rules.yml")
            .unwrap()
            .groups
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    fn reads(expr: &str) -> Reads {
        let g = groups(&format!(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: '{expr}'\n"
        ));
        Reads::of(&g[0])
    }

    fn names(r: &Reads) -> Vec<&str> {
        let mut n: Vec<&str> = r.names.iter().map(String::as_str).collect();
        n.sort();
        n
    }

    /// The round loop of `eval_due` with its window lock steps, where `between` may write to the
    /// window after each group (as an ingest commit may); returns the alert names that fired.
    fn round(text: &str, between: impl Fn(usize, &mut MemStorage)) -> Vec<String> {
        let gs = groups(text);
        let mut window = MemStorage::new();
        let m = |i: &str| Labels::from_pairs([("__name__", "m"), ("instance", i)]);
        window.add_sample(&m("a"), 0, 1.0);
        let opts = EvalOptions::default();
        let t = 60_000;
        let mut shared = RoundShare::new(t, &opts.promql);
        let mut fired = Vec::new();
        for (i, g) in gs.iter().enumerate() {
            let mut st = GroupState::default();
            let (results, evaluated) = shared.for_eval(&window);
            let r = g.eval_shared(t, &window, &mut st, &opts, results);
            fired.extend(
                r.alerts
                    .iter()
                    .map(|a| a.labels.value("alertname").to_string()),
            );
            let before = window.generation();
            for s in &r.samples_to_write {
                window.add_sample(&s.labels, s.t_ms, s.v);
            }
            shared.written_back(evaluated, before, &window);
            between(i, &mut window);
        }
        fired
    }

    #[test]
    fn a_write_between_groups_drops_the_shared_results() {
        // B is never true over one state of the window; it fires only if its first `sum(m)`
        // came from before a write and its second from after it.
        let text = r#"groups:
  - name: g1
    rules:
      - alert: A
        expr: sum(m) > 0
  - name: g2
    rules:
      - alert: B
        expr: sum(m) - sum(m{instance=~".+"}) != 0
"#;
        let late = |i: usize, w: &mut MemStorage| {
            if i == 0 {
                let l = Labels::from_pairs([("__name__", "m"), ("instance", "b")]);
                w.add_sample(&l, 55_000, 4.0);
            }
        };
        assert_eq!(round(text, late), ["A"]);
        assert_eq!(round(text, |_, _| {}), ["A"]);
    }

    #[test]
    fn reads_are_the_selected_names_or_anything() {
        let r = reads("probe_success == 0");
        assert_eq!((names(&r), r.any), (vec!["probe_success"], false));
        let r = reads(
            "sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m])) \
             / on (instance) count by (instance) (node_cpu_seconds_total{mode=\"idle\"}) > 0.9 \
             and on (instance) absent({__name__=\"up\"}) < 1",
        );
        assert_eq!(
            (names(&r), r.any),
            (vec!["node_cpu_seconds_total", "up"], false)
        );
        assert!(
            reads("{__name__=~\"node_.*\"} > 1").any,
            "a name regex may match anything"
        );
        assert!(reads("{job=\"x\"} > 1").any, "no name may match anything");
        assert!(reads("max_over_time({instance=\"a\"}[5m:1m]) > 1").any);
        let r = reads("vector(1)");
        assert_eq!((names(&r), r.any), (Vec::<&str>::new(), false));
    }

    #[test]
    fn trigger_marks_readers_of_touched_and_recorded_names_with_spacing() {
        let text = "groups:
  - name: record
    rules:
      - record: job:disk:ratio
        expr: node_filesystem_avail_bytes / node_filesystem_size_bytes
  - name: uses-recorded
    rules:
      - alert: DiskFull
        expr: job:disk:ratio < 0.1
  - name: probes
    rules:
      - alert: ProbeDown
        expr: probe_success == 0
  - name: alerts-on-alerts
    rules:
      - alert: Many
        expr: count(ALERTS{alertstate=\"firing\"}) > 10
  - name: constant
    rules:
      - alert: Always
        expr: vector(1)
";
        let mut set = RuleSet::new(Vec::new(), groups(text), HashMap::new());
        let marked = |set: &RuleSet| -> Vec<Option<i64>> {
            set.groups.iter().map(|g| g.triggered_ms).collect()
        };
        let touched = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<HashSet<_>>();

        assert_eq!(set.trigger(&touched(&["node_load1"]), 1_000, 200), 0);
        assert_eq!(set.next_triggered_ms(), None);

        // The disk metric marks its recording group, the group reading the recorded series,
        // and (through ALERTS) the group reading alerts.
        assert_eq!(
            set.trigger(&touched(&["node_filesystem_avail_bytes"]), 1_000, 200),
            3
        );
        assert_eq!(
            marked(&set),
            vec![Some(1_000), Some(1_000), None, Some(1_000), None]
        );

        // A group evaluated 50 ms ago waits for the spacing; an earlier mark is kept.
        set.groups[2].state.last_eval_ms = Some(1_950);
        assert_eq!(set.trigger(&touched(&["probe_success"]), 2_000, 200), 2);
        assert_eq!(
            marked(&set),
            vec![Some(1_000), Some(1_000), Some(2_150), Some(1_000), None]
        );
        assert_eq!(set.next_triggered_ms(), Some(1_000));
    }

    #[test]
    fn early_budget_limits_the_share_of_time() {
        let mut b = EarlyBudget::default();
        // Starts full: ten seconds' worth of a 10 % share is one second of evaluation.
        assert_eq!(b.wait_until(100_000, 0.1), None);
        b.spend(600.0);
        assert_eq!(b.wait_until(100_000, 0.1), None);
        b.spend(600.0);
        // 200 ms overdrawn at 10 %: 2 s of wall time to repay.
        assert_eq!(b.wait_until(100_000, 0.1), Some(102_000));
        assert_eq!(b.wait_until(101_000, 0.1), Some(102_000));
        assert_eq!(b.wait_until(102_000, 0.1), None);
        // A clock stepping back refills nothing and does not panic.
        b.spend(100.0);
        assert_eq!(b.wait_until(50_000, 0.1), Some(103_000));
    }
}
