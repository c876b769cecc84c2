//! Rule-group evaluation and the alert state machine, following Prometheus v2.42.
//!
//! [`RuleGroup::eval`] evaluates every rule of a group at one time `t_ms` over a caller's
//! [`Storage`], in order: each rule sees the samples written by the rules before it in the same
//! evaluation, as in Prometheus. It updates the group's [`GroupState`] and returns what the
//! caller must write back (recorded series, `ALERTS`, `ALERTS_FOR_STATE`, stale markers for
//! series a rule no longer produces), the alerts, the alerts due to be sent, and the errors.
//!
//! Alert states, per label set of an alerting rule's result:
//!
//! - a new element is **pending** from `active_at`; once `t - active_at >= for` it is
//!   **firing** (at once when `for` is 0);
//! - an element that disappears while pending is dropped; while firing it becomes
//!   **inactive** (`resolved_at = t`), unless `keep_firing_for` keeps it firing until
//!   `t - keep_firing_since >= keep_firing_for`;
//! - a resolved alert is kept 15 minutes so the resolution keeps being sent, then dropped;
//!   if the element comes back meanwhile, a new pending alert replaces it.
//!
//! The state is plain data ([`serde`]): a server persists it and restores it after a restart,
//! so pending `for` timers continue from their `active_at` and firing alerts are not fired
//! again. Nothing here reads the clock.

use crate::promql::hash::{FastMap, FastSet};
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::promql::{
    self, Labels, Options, Sample, SelectedSeries, SharedEval, Storage, Value, Vector, stale_nan,
};
use crate::rulefile::{AlertingRule, RecordingRule, Rule, RuleGroup};
use crate::template::{TemplateData, TemplateEnv};

/// Metric name of the synthetic alert series.
pub const ALERTS_METRIC: &str = "ALERTS";
/// Metric name of the series holding each alert's `active_at` (Unix seconds).
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";
/// How long a resolved alert is kept (and re-sent), as in Prometheus.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The state of one alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved: was firing, its condition no longer holds.
    Inactive,
    /// The condition holds, for less than the rule's `for`.
    Pending,
    /// The condition has held for at least `for`.
    Firing,
}

impl AlertState {
    /// `inactive`, `pending` or `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert: an element of an alerting rule's result, with its history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The element's labels without `__name__`, plus the rule's labels and `alertname`.
    pub labels: Labels,
    /// The rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// Current state.
    pub state: AlertState,
    /// The value at the last evaluation.
    #[serde(with = "float_text")]
    pub value: f64,
    /// When the condition started to hold (ms).
    pub active_at_ms: i64,
    /// When the alert fired (ms).
    pub fired_at_ms: Option<i64>,
    /// When the alert was resolved (ms).
    pub resolved_at_ms: Option<i64>,
    /// When the alert was last handed out for sending (ms).
    pub last_sent_at_ms: Option<i64>,
    /// Until when the last sent notification holds (ms).
    pub valid_until_ms: Option<i64>,
    /// Since when `keep_firing_for` has kept the alert firing (ms).
    pub keep_firing_since_ms: Option<i64>,
}

impl Alert {
    /// Whether the alert is due to be sent at `t_ms`: firing or resolved, and either resolved
    /// since it was last sent or last sent more than `resend_delay_ms` ago.
    pub fn needs_sending(&self, t_ms: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let Some(sent) = self.last_sent_at_ms else {
            return true;
        };
        if self.resolved_at_ms.is_some_and(|r| r > sent) {
            return true;
        }
        sent + resend_delay_ms < t_ms
    }
}

/// Health of a rule after its last evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleHealth {
    /// Not evaluated yet.
    #[default]
    Unknown,
    /// The last evaluation succeeded.
    Ok,
    /// The last evaluation failed.
    Err,
}

/// The state of one rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Which rule this is ([`RuleGroup::rule_key`]); used to carry state across reloads.
    pub key: String,
    /// Pending, firing, and recently resolved alerts, sorted by labels.
    #[serde(default)]
    pub alerts: Vec<Alert>,
    /// The series the rule wrote at its last successful evaluation (for stale markers).
    #[serde(default)]
    pub last_series: Vec<Labels>,
    /// Health after the last evaluation.
    #[serde(default)]
    pub health: RuleHealth,
    /// The last evaluation's error.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the rule was last evaluated (ms).
    #[serde(default)]
    pub last_eval_ms: Option<i64>,
    /// Output label sets remembered from the last evaluation.
    #[serde(skip)]
    memo: LabelMemo,
}

/// The label sets a rule built at its last evaluation, to reuse at the next: the output labels
/// of each result's labels (a recorded series, an alert), and the `ALERTS` and
/// `ALERTS_FOR_STATE` labels of each alert. Reusing them saves building the same sets again
/// each cycle, and their shared copies compare and hash at once downstream. Only what the
/// last evaluation used is kept. A cache: not saved, and ignored when states are compared.
#[derive(Clone, Default)]
struct LabelMemo {
    output: FastMap<Labels, Labels>,
    series: FastMap<Labels, (AlertState, Labels, Labels)>,
}

impl PartialEq for LabelMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for LabelMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LabelMemo({} outputs)", self.output.len())
    }
}

/// The output labels of one evaluation, taken over from the previous one where they match.
struct MemoRound {
    prev: FastMap<Labels, Labels>,
    next: FastMap<Labels, Labels>,
}

impl MemoRound {
    /// The output labels for result labels `input`: remembered, or built with `build`.
    fn output(&mut self, input: &Labels, build: impl FnOnce(&Labels) -> Labels) -> Labels {
        let out = match self.prev.remove_entry(input) {
            Some((k, out)) => {
                self.next.insert(k, out.clone());
                return out;
            }
            None => build(input),
        };
        self.next.insert(input.clone(), out.clone());
        out
    }
}

impl LabelMemo {
    fn start(&mut self, capacity: usize) -> MemoRound {
        MemoRound {
            prev: std::mem::take(&mut self.output),
            next: FastMap::with_capacity_and_hasher(capacity, Default::default()),
        }
    }

    fn finish(&mut self, round: MemoRound) {
        self.output = round.next;
    }

    /// The `ALERTS` and `ALERTS_FOR_STATE` labels of the alert with `labels` in `state`.
    fn alert_series(&mut self, labels: &Labels, state: AlertState) -> (Labels, Labels) {
        if let Some((s, alerts, for_state)) = self.series.get(labels)
            && *s == state
        {
            return (alerts.clone(), for_state.clone());
        }
        // `__name__` sorts before `alertstate`.
        let alerts = labels.with_sorted(&[
            (promql::METRIC_NAME, ALERTS_METRIC),
            ("alertstate", state.as_str()),
        ]);
        let for_state = labels.with_sorted(&[(promql::METRIC_NAME, ALERTS_FOR_STATE_METRIC)]);
        self.series
            .insert(labels.clone(), (state, alerts.clone(), for_state.clone()));
        (alerts, for_state)
    }

    /// Forgets the `ALERTS` labels of alerts that are gone.
    fn keep_series_of(&mut self, alerts: &[Alert]) {
        if self.series.len() > alerts.len() {
            let live: FastSet<&Labels> = alerts.iter().map(|a| &a.labels).collect();
            self.series.retain(|l, _| live.contains(l));
        }
    }
}

/// The state of a rule group, one [`RuleState`] per rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Per-rule state, in rule order after [`GroupState::align`].
    #[serde(default)]
    pub rules: Vec<RuleState>,
    /// When the group was last evaluated (ms).
    #[serde(default)]
    pub last_eval_ms: Option<i64>,
}

impl GroupState {
    /// Puts the state in the order of `group`'s rules. A rule keeps the state of the rule with
    /// the same key (kind, name and labels) in the previous set, so reloading a file does not
    /// reset alerts; rules without one start empty.
    pub fn align(&mut self, group: &RuleGroup) {
        if self.rules.len() == group.rules.len() {
            let mut key = String::new();
            let same = self.rules.iter().enumerate().all(|(i, s)| {
                key.clear();
                group.write_rule_key(i, &mut key);
                s.key == key
            });
            if same {
                return;
            }
        }
        let keys: Vec<String> = (0..group.rules.len()).map(|i| group.rule_key(i)).collect();
        let mut old: Vec<Option<RuleState>> = std::mem::take(&mut self.rules)
            .into_iter()
            .map(Some)
            .collect();
        for key in keys {
            let found = old
                .iter_mut()
                .find(|s| s.as_ref().is_some_and(|s| s.key == key))
                .and_then(Option::take);
            self.rules.push(found.unwrap_or(RuleState {
                key,
                ..RuleState::default()
            }));
        }
    }
}

/// Settings for evaluating rule groups.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// PromQL settings (lookback, default subquery step).
    pub promql: Options,
    /// Interval of a group that sets none.
    pub default_interval_ms: i64,
    /// How often a still-firing alert is sent again (Prometheus: 1m).
    pub resend_delay_ms: i64,
    /// `$externalLabels` in templates.
    pub external_labels: Labels,
    /// `$externalURL` in templates.
    pub external_url: String,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            promql: Options::default(),
            default_interval_ms: 60_000,
            resend_delay_ms: 60_000,
            external_labels: Labels::new(),
            external_url: String::new(),
        }
    }
}

/// A rule that failed to evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleEvalError {
    /// Index of the rule in its group.
    pub rule_index: usize,
    /// The rule's name.
    pub rule_name: String,
    /// What went wrong.
    pub message: String,
}

/// What one evaluation of a group produced.
#[derive(Clone, Debug, Default)]
pub struct GroupEvalResult {
    /// Samples to write to storage: recorded series, `ALERTS`, `ALERTS_FOR_STATE`, and stale
    /// markers (see [`promql::is_stale_nan`]) for series no longer produced.
    pub samples_to_write: Vec<Sample>,
    /// Every alert of the group after the evaluation (pending, firing, resolved-but-kept).
    pub alerts: Vec<Alert>,
    /// Alerts due to be sent now; their `last_sent_at_ms` is already set in the state.
    pub to_notify: Vec<Alert>,
    /// Rules that failed.
    pub errors: Vec<RuleEvalError>,
}

impl RuleGroup {
    /// The interval this group runs at.
    pub fn interval_or(&self, default_ms: i64) -> i64 {
        self.interval_ms.unwrap_or(default_ms)
    }

    /// A key that identifies rule `i` across reloads: kind, name and labels.
    pub fn rule_key(&self, i: usize) -> String {
        let mut key = String::new();
        self.write_rule_key(i, &mut key);
        key
    }

    /// [`RuleGroup::rule_key`] into `out`, so that checking the keys of every rule at every
    /// evaluation can reuse one buffer.
    fn write_rule_key(&self, i: usize, out: &mut String) {
        use std::fmt::Write as _;
        match &self.rules[i] {
            Rule::Alerting(a) => {
                let _ = write!(out, "alert:{}{{", a.name);
                for (j, (k, v)) in a.labels.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}={:?}", v.source());
                }
                out.push('}');
            }
            Rule::Recording(r) => {
                let _ = write!(out, "record:{}{}", r.name, r.labels);
            }
        }
    }

    /// Evaluates every rule at `t_ms` over `storage`, updating `state`.
    pub fn eval(
        &self,
        t_ms: i64,
        storage: &dyn Storage,
        state: &mut GroupState,
        opts: &EvalOptions,
    ) -> GroupEvalResult {
        let mut shared = SharedEval::new(t_ms, &opts.promql);
        self.eval_shared(t_ms, storage, state, opts, &mut shared)
    }

    /// [`RuleGroup::eval`] for one of several groups evaluated at the same time over the same
    /// storage: subexpressions marked by [`promql::share_subexpressions`] are computed once
    /// for all of them. Every metric this group writes is reported to `shared`; the caller
    /// reports any other write to `storage` with [`SharedEval::wrote`] (or drops everything
    /// with [`SharedEval::clear`]) before the next group.
    pub fn eval_shared(
        &self,
        t_ms: i64,
        storage: &dyn Storage,
        state: &mut GroupState,
        opts: &EvalOptions,
        shared: &mut SharedEval,
    ) -> GroupEvalResult {
        state.align(self);
        state.last_eval_ms = Some(t_ms);
        let interval_ms = self.interval_or(opts.default_interval_ms);
        let mut overlay = Overlay::new(storage);
        let mut result = GroupEvalResult::default();
        for (i, rule) in self.rules.iter().enumerate() {
            let rs = &mut state.rules[i];
            rs.last_eval_ms = Some(t_ms);
            let out = match rule {
                Rule::Alerting(a) => eval_alerting(a, t_ms, &overlay, rs, self.limit, opts, shared),
                Rule::Recording(r) => {
                    eval_recording(r, t_ms, &overlay, rs, self.limit, opts, shared)
                }
            };
            let vector = match out {
                Ok(v) => v,
                Err(message) => {
                    rs.health = RuleHealth::Err;
                    rs.last_error = Some(message.clone());
                    result.errors.push(RuleEvalError {
                        rule_index: i,
                        rule_name: rule.name().to_string(),
                        message,
                    });
                    continue;
                }
            };
            rs.health = RuleHealth::Ok;
            rs.last_error = None;
            let mut returned: FastSet<Labels> =
                FastSet::with_capacity_and_hasher(vector.len(), Default::default());
            let mut wrote = WrittenNames::default();
            for s in vector {
                wrote.note(&s.labels, shared);
                overlay.add(&s.labels, t_ms, s.v);
                returned.insert(s.labels.clone());
                result.samples_to_write.push(Sample {
                    labels: s.labels,
                    t_ms,
                    v: s.v,
                });
            }
            let stale_from = result.samples_to_write.len();
            for l in &rs.last_series {
                if !returned.contains(l) {
                    wrote.note(l, shared);
                    overlay.add(l, t_ms, stale_nan());
                    result.samples_to_write.push(Sample {
                        labels: l.clone(),
                        t_ms,
                        v: stale_nan(),
                    });
                }
            }
            // Every earlier series returned again and no other (the usual case): the sorted
            // list stands.
            let unchanged = stale_from == result.samples_to_write.len()
                && returned.len() == rs.last_series.len();
            if !unchanged {
                let mut now: Vec<Labels> = returned.into_iter().collect();
                now.sort_unstable();
                rs.last_series = now;
            }
            if matches!(rule, Rule::Alerting(_)) {
                for a in &mut rs.alerts {
                    if a.needs_sending(t_ms, opts.resend_delay_ms) {
                        a.last_sent_at_ms = Some(t_ms);
                        a.valid_until_ms = Some(t_ms + 4 * interval_ms.max(opts.resend_delay_ms));
                        result.to_notify.push(a.clone());
                    }
                }
            }
        }
        result.alerts = state
            .rules
            .iter()
            .flat_map(|r| r.alerts.iter().cloned())
            .collect();
        result
    }
}

/// `sets` sorted by name, of several with the same name the last, as setting them one after
/// the other would leave them ([`Labels::with_sorted`]).
fn sorted_last_wins<'a>(mut sets: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    sets.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(sets.len());
    for s in sets {
        match out.last_mut() {
            Some(last) if last.0 == s.0 => *last = s,
            _ => out.push(s),
        }
    }
    out
}

/// Reports each metric name a rule writes to a [`SharedEval`], once per run of equal names.
#[derive(Default)]
struct WrittenNames {
    last: Option<String>,
}

impl WrittenNames {
    fn note(&mut self, labels: &Labels, shared: &mut SharedEval) {
        let name = labels.metric_name().unwrap_or("");
        if self.last.as_deref() != Some(name) {
            shared.wrote(name);
            self.last = Some(name.to_string());
        }
    }
}

/// Evaluates `expr` as a rule does: an instant vector, or a scalar as one unlabelled sample.
fn query(
    expr: &promql::Prepared,
    t_ms: i64,
    storage: &dyn Storage,
    opts: &Options,
    shared: &mut SharedEval,
) -> Result<Vector, String> {
    match promql::eval_instant_shared(expr, t_ms, storage, opts, shared) {
        Ok(Value::InstantVector(v)) => Ok(v),
        Ok(Value::Scalar(v)) => Ok(vec![Sample {
            labels: Labels::new(),
            t_ms,
            v,
        }]),
        Ok(_) => Err("rule result is not a vector or scalar".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn eval_recording(
    rule: &RecordingRule,
    t_ms: i64,
    storage: &dyn Storage,
    rs: &mut RuleState,
    limit: usize,
    opts: &EvalOptions,
    shared: &mut SharedEval,
) -> Result<Vector, String> {
    let mut v = query(&rule.parsed, t_ms, storage, &opts.promql, shared)?;
    let mut sets = vec![(promql::METRIC_NAME, rule.name.as_str())];
    sets.extend(
        rule.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str())),
    );
    let sets = sorted_last_wins(sets);
    let mut memo = rs.memo.start(v.len());
    for s in &mut v {
        s.labels = memo.output(&s.labels, |l| l.with_sorted(&sets));
    }
    rs.memo.finish(memo);
    let mut seen = FastSet::with_capacity_and_hasher(v.len(), Default::default());
    if !v.iter().all(|s| seen.insert(&s.labels)) {
        return Err(
            "vector contains metrics with the same labelset after applying rule labels".into(),
        );
    }
    if limit > 0 && v.len() > limit {
        return Err(format!("exceeded limit of {limit} with {} series", v.len()));
    }
    Ok(v)
}

fn eval_alerting(
    rule: &AlertingRule,
    t_ms: i64,
    storage: &dyn Storage,
    rs: &mut RuleState,
    limit: usize,
    opts: &EvalOptions,
    shared: &mut SharedEval,
) -> Result<Vector, String> {
    let res = query(&rule.parsed, t_ms, storage, &opts.promql, shared)?;
    // An alert's labels depend on the result's labels alone unless a label template reads
    // more (the value, the external labels or URL): then they are remembered between
    // evaluations.
    let labels_from_labels = rule.labels.iter().all(|(_, t)| t.reads_labels_only());
    let mut memo = rs
        .memo
        .start(if labels_from_labels { res.len() } else { 0 });
    // The alerts the result describes now.
    let mut current: FastMap<Labels, Alert> =
        FastMap::with_capacity_and_hasher(res.len(), Default::default());
    for s in &res {
        let data = TemplateData {
            labels: &s.labels,
            external_labels: &opts.external_labels,
            external_url: &opts.external_url,
            value: s.v,
        };
        let env = TemplateEnv::new(&data);
        let alert_labels = |l: &Labels| {
            let rendered: Vec<String> = rule
                .labels
                .iter()
                .map(|(_, t)| t.render_or_error_in(&env))
                .collect();
            let mut sets: Vec<(&str, &str)> = rule
                .labels
                .iter()
                .zip(&rendered)
                .map(|((k, _), v)| (k.as_str(), v.as_str()))
                .collect();
            sets.push(("alertname", rule.name.as_str()));
            l.without_metric_name().with_sorted(&sorted_last_wins(sets))
        };
        let labels = if labels_from_labels {
            memo.output(&s.labels, alert_labels)
        } else {
            alert_labels(&s.labels)
        };
        let annotations: BTreeMap<String, String> = rule
            .annotations
            .iter()
            .map(|(k, t)| (k.clone(), t.render_or_error_in(&env)))
            .collect();
        if current.contains_key(&labels) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
        current.insert(
            labels.clone(),
            Alert {
                labels,
                annotations,
                state: AlertState::Pending,
                value: s.v,
                active_at_ms: t_ms,
                fired_at_ms: None,
                resolved_at_ms: None,
                last_sent_at_ms: None,
                valid_until_ms: None,
                keep_firing_since_ms: None,
            },
        );
    }

    rs.memo.finish(memo);
    let mut active: FastMap<Labels, Alert> = std::mem::take(&mut rs.alerts)
        .into_iter()
        .map(|a| (a.labels.clone(), a))
        .collect();
    let result_labels: FastSet<Labels> = current.keys().cloned().collect();
    for (l, a) in current {
        match active.get_mut(&l) {
            Some(old) if old.state != AlertState::Inactive => {
                old.value = a.value;
                old.annotations = a.annotations;
            }
            _ => {
                active.insert(l, a);
            }
        }
    }

    let mut out = Vector::new();
    let mut num_active = 0usize;
    let mut keys: Vec<Labels> = active.keys().cloned().collect();
    keys.sort();
    for l in keys {
        let Some(a) = active.get_mut(&l) else {
            continue;
        };
        if !result_labels.contains(&l) {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && rule.keep_firing_for_ms > 0 {
                let since = *a.keep_firing_since_ms.get_or_insert(t_ms);
                keep_firing = t_ms - since < rule.keep_firing_for_ms;
            }
            let drop = a.state == AlertState::Pending
                || a.resolved_at_ms
                    .is_some_and(|r| t_ms - r > RESOLVED_RETENTION_MS);
            if a.state != AlertState::Inactive && !keep_firing {
                a.state = AlertState::Inactive;
                a.resolved_at_ms = Some(t_ms);
            }
            if drop {
                active.remove(&l);
                continue;
            }
            if !keep_firing {
                continue;
            }
        } else {
            a.keep_firing_since_ms = None;
        }
        num_active += 1;
        if a.state == AlertState::Pending && t_ms - a.active_at_ms >= rule.for_ms {
            a.state = AlertState::Firing;
            a.fired_at_ms = Some(t_ms);
        }
        let (alerts_labels, for_state) = rs.memo.alert_series(&a.labels, a.state);
        out.push(Sample {
            labels: alerts_labels,
            t_ms,
            v: 1.0,
        });
        out.push(Sample {
            labels: for_state,
            t_ms,
            v: a.active_at_ms.div_euclid(1000) as f64,
        });
    }
    if limit > 0 && num_active > limit {
        rs.alerts.clear();
        return Err(format!(
            "exceeded limit of {limit} with {num_active} alerts"
        ));
    }
    let mut alerts: Vec<Alert> = active.into_values().collect();
    alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
    rs.memo.keep_series_of(&alerts);
    rs.alerts = alerts;
    Ok(out)
}

/// The caller's storage plus the samples written so far in this evaluation (a few hundred
/// series at most, kept in label order).
struct Overlay<'a> {
    base: &'a dyn Storage,
    /// Series added so far, in the order first added.
    added: Vec<(Labels, Vec<(i64, f64)>)>,
    /// Labels → position in `added`.
    index: FastMap<Labels, usize>,
    /// Metric name → positions in `added`; series without a name are under "".
    by_name: FastMap<String, Vec<usize>>,
}

impl Overlay<'_> {
    fn new(base: &dyn Storage) -> Overlay<'_> {
        Overlay {
            base,
            added: Vec::new(),
            index: FastMap::default(),
            by_name: FastMap::default(),
        }
    }

    fn add(&mut self, labels: &Labels, t_ms: i64, v: f64) {
        let i = match self.index.get(labels) {
            Some(&i) => i,
            None => {
                let i = self.added.len();
                self.added.push((labels.clone(), Vec::new()));
                self.index.insert(labels.clone(), i);
                let name = labels.metric_name().unwrap_or("");
                match self.by_name.get_mut(name) {
                    Some(v) => v.push(i),
                    None => {
                        self.by_name.insert(name.to_string(), vec![i]);
                    }
                }
                i
            }
        };
        let e = &mut self.added[i].1;
        match e.last() {
            Some(&(t, _)) if t < t_ms => e.push((t_ms, v)),
            None => e.push((t_ms, v)),
            _ => match e.binary_search_by(|(t, _)| t.cmp(&t_ms)) {
                Ok(j) => e[j].1 = v,
                Err(j) => e.insert(j, (t_ms, v)),
            },
        }
    }
}

impl Storage for Overlay<'_> {
    fn select(
        &self,
        matchers: &[promql::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedSeries<'_>> {
        self.select_from(
            self.base.select(matchers, start_ms, end_ms),
            matchers,
            start_ms,
            end_ms,
        )
    }

    fn select_latest(
        &self,
        matchers: &[promql::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedSeries<'_>> {
        let base = self.base.select_latest(matchers, start_ms, end_ms);
        let mut v = self.select_from(base, matchers, start_ms, end_ms);
        for s in &mut v {
            promql::keep_last(&mut s.samples);
        }
        v
    }
}

impl<'a> Overlay<'a> {
    /// `base` (what the caller's storage selected) with the samples added so far merged in.
    fn select_from<'s>(
        &'s self,
        base: Vec<SelectedSeries<'s>>,
        matchers: &[promql::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedSeries<'s>> {
        if self.added.is_empty() {
            return base;
        }
        // A selector with a metric name sees only series of that name.
        let named = matchers
            .iter()
            .find(|m| m.name == promql::METRIC_NAME && m.op == promql::MatchOp::Equal);
        let candidates: Box<dyn Iterator<Item = usize> + '_> = match named {
            Some(m) => match self.by_name.get(m.value.as_str()) {
                Some(ids) => Box::new(ids.iter().copied()),
                None => return base,
            },
            None => Box::new(0..self.added.len()),
        };
        let mut added: Vec<SelectedSeries<'_>> = candidates
            .map(|i| &self.added[i])
            .filter(|(l, _)| matchers.iter().all(|m| m.matches_labels(l)))
            .filter_map(|(l, pts)| {
                let lo = pts.partition_point(|(t, _)| *t < start_ms);
                let hi = pts.partition_point(|(t, _)| *t <= end_ms);
                (lo < hi).then(|| SelectedSeries {
                    labels: std::borrow::Cow::Borrowed(l),
                    samples: std::borrow::Cow::Borrowed(&pts[lo..hi]),
                    no_stale: false,
                })
            })
            .collect();
        added.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        promql::merge_selections(base, added)
    }
}

/// Serializes a float as a JSON number, or as `"NaN"`, `"+Inf"`, `"-Inf"`.
mod float_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_str(&crate::promql::format_value(*v))
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        N(f64),
        S(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match F::deserialize(d)? {
            F::N(v) => Ok(v),
            F::S(s) => crate::promql::parse_go_float(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid float {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{MemStorage, is_stale_nan};
    use crate::rulefile::parse_rule_file;

    fn group(yaml: &str) -> RuleGroup {
        parse_rule_file(yaml, "t.yml")
            .unwrap_or_else(|e| panic!("{e}"))
            .groups
            .remove(0)
    }

    const RULES: &str = r#"
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 2m
        keep_firing_for: 3m
        labels: {severity: critical}
        annotations: {summary: "{{ $labels.instance }} down ({{ $value }})"}
      - record: down:count
        expr: count(ALERTS{alertstate="firing"})
"#;

    struct World {
        storage: MemStorage,
        state: GroupState,
        group: RuleGroup,
        opts: EvalOptions,
    }

    impl World {
        fn new(yaml: &str) -> Self {
            World {
                storage: MemStorage::new(),
                state: GroupState::default(),
                group: group(yaml),
                opts: EvalOptions::default(),
            }
        }

        fn up(&mut self, t_min: i64, v: f64) {
            let l = Labels::from_pairs([("__name__", "up"), ("instance", "a")]);
            self.storage.add_sample(&l, t_min * 60_000, v);
        }

        fn eval(&mut self, t_min: i64) -> GroupEvalResult {
            let r = self
                .group
                .eval(t_min * 60_000, &self.storage, &mut self.state, &self.opts);
            for s in &r.samples_to_write {
                self.storage.add_sample(&s.labels, s.t_ms, s.v);
            }
            r
        }

        fn states(&self) -> Vec<AlertState> {
            self.state.rules[0].alerts.iter().map(|a| a.state).collect()
        }
    }

    #[test]
    fn pending_firing_keep_firing_resolved() {
        let mut w = World::new(RULES);
        w.up(0, 1.0);
        assert!(w.eval(0).alerts.is_empty());
        w.up(1, 0.0);
        let r = w.eval(1);
        assert_eq!(w.states(), [AlertState::Pending]);
        assert!(r.to_notify.is_empty(), "pending alerts are not sent");
        let a = &r.alerts[0];
        assert_eq!(
            a.labels.to_string(),
            r#"{alertname="Down", instance="a", severity="critical"}"#
        );
        assert_eq!(a.annotations["summary"], "a down (0)");
        assert_eq!(a.active_at_ms, 60_000);
        w.up(2, 0.0);
        w.eval(2);
        assert_eq!(w.states(), [AlertState::Pending]);
        w.up(3, 0.0);
        let r = w.eval(3);
        assert_eq!(w.states(), [AlertState::Firing]);
        assert_eq!(r.alerts[0].fired_at_ms, Some(180_000));
        assert_eq!(r.to_notify.len(), 1);
        // The recording rule after the alerting rule sees its ALERTS sample at once.
        let rec = r
            .samples_to_write
            .iter()
            .find(|s| s.labels.metric_name() == Some("down:count"))
            .expect("recorded");
        assert_eq!(rec.v, 1.0);
        // Condition clears at 4m; keep_firing_for 3m keeps it firing through 6m.
        w.up(4, 1.0);
        for t in 4..=6 {
            w.eval(t);
            assert_eq!(w.states(), [AlertState::Firing], "at {t}m");
        }
        assert_eq!(
            w.state.rules[0].alerts[0].keep_firing_since_ms,
            Some(240_000)
        );
        let r = w.eval(7);
        assert_eq!(w.states(), [AlertState::Inactive]);
        assert_eq!(r.alerts[0].resolved_at_ms, Some(420_000));
        assert_eq!(r.to_notify.len(), 1, "the resolution is sent");
        // ALERTS went stale when the alert resolved.
        assert!(
            r.samples_to_write
                .iter()
                .any(|s| s.labels.metric_name() == Some("ALERTS") && is_stale_nan(s.v))
        );
        // Kept 15 minutes after resolution, then dropped.
        w.eval(22);
        assert_eq!(w.states(), [AlertState::Inactive]);
        w.eval(23);
        assert!(w.states().is_empty());
    }

    #[test]
    fn pending_alert_that_clears_is_dropped_and_starts_over() {
        let mut w = World::new(RULES);
        w.up(0, 0.0);
        w.eval(0);
        w.up(1, 1.0);
        w.eval(1);
        assert!(w.states().is_empty());
        w.up(2, 0.0);
        w.eval(2);
        assert_eq!(w.state.rules[0].alerts[0].active_at_ms, 120_000);
    }

    #[test]
    fn state_survives_a_restart_through_serde() {
        let mut w = World::new(RULES);
        w.up(0, 0.0);
        w.eval(0);
        w.up(1, 0.0);
        w.eval(1);
        assert_eq!(w.states(), [AlertState::Pending]);
        let saved = serde_json::to_string(&w.state).unwrap();
        // A new process: fresh group from the same file, state restored.
        let mut w2 = World::new(RULES);
        w2.storage = w.storage.clone();
        w2.state = serde_json::from_str(&saved).unwrap();
        w2.up(2, 0.0);
        w2.eval(2);
        assert_eq!(
            w2.states(),
            [AlertState::Firing],
            "the for timer kept running"
        );
        assert_eq!(w2.state.rules[0].alerts[0].active_at_ms, 0);
        let fired_at = w2.state.rules[0].alerts[0].fired_at_ms;
        let saved = serde_json::to_string(&w2.state).unwrap();
        let mut w3 = World::new(RULES);
        w3.storage = w2.storage.clone();
        w3.state = serde_json::from_str(&saved).unwrap();
        w3.up(2, 0.0);
        let r = w3.eval(2);
        assert_eq!(
            w3.state.rules[0].alerts[0].fired_at_ms, fired_at,
            "not fired again"
        );
        assert!(r.to_notify.is_empty(), "sent less than resend_delay ago");
    }

    #[test]
    fn nan_values_round_trip() {
        let a = Alert {
            labels: Labels::from_pairs([("alertname", "x")]),
            annotations: BTreeMap::new(),
            state: AlertState::Firing,
            value: f64::NAN,
            active_at_ms: 0,
            fired_at_ms: Some(0),
            resolved_at_ms: None,
            last_sent_at_ms: None,
            valid_until_ms: None,
            keep_firing_since_ms: None,
        };
        let s = serde_json::to_string(&a).unwrap();
        assert!(s.contains(r#""value":"NaN""#), "{s}");
        let b: Alert = serde_json::from_str(&s).unwrap();
        assert!(b.value.is_nan());
        assert_eq!(b.labels, a.labels);
    }

    #[test]
    fn limit_and_duplicates_are_errors() {
        let mut w = World::new(
            "groups:\n- name: g\n  limit: 1\n  rules:\n  - alert: A\n    expr: up\n  - record: r\n    expr: up\n",
        );
        for i in ["a", "b"] {
            let l = Labels::from_pairs([("__name__", "up"), ("instance", i)]);
            w.storage.add_sample(&l, 0, 1.0);
        }
        let r = w.eval(0);
        let msgs: Vec<&str> = r.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "exceeded limit of 1 with 2 alerts",
                "exceeded limit of 1 with 2 series"
            ]
        );
        assert!(w.state.rules[0].alerts.is_empty());
        assert_eq!(w.state.rules[0].health, RuleHealth::Err);
    }

    #[test]
    fn labels_from_the_value_follow_it_and_alerts_series_follow_the_state() {
        let mut w = World::new(
            r#"
groups:
  - name: g
    rules:
      - alert: Hot
        expr: up > 0
        for: 1m
        labels:
          level: '{{ if gt $value 5.0 }}high{{ else }}low{{ end }}'
          team: '{{ $labels.instance }}-team'
"#,
        );
        let alerts_series = |r: &GroupEvalResult| -> Vec<String> {
            let mut v: Vec<String> = r
                .samples_to_write
                .iter()
                .filter(|s| s.labels.metric_name() == Some(ALERTS_METRIC) && !is_stale_nan(s.v))
                .map(|s| s.labels.to_string())
                .collect();
            v.sort();
            v
        };
        w.up(0, 1.0);
        let r = w.eval(0);
        assert_eq!(
            alerts_series(&r),
            [
                r#"ALERTS{alertname="Hot", alertstate="pending", instance="a", level="low", team="a-team"}"#
            ]
        );
        w.up(1, 9.0);
        let r = w.eval(1);
        // The value moved the label: a new alert, pending; the old one is gone.
        assert_eq!(
            alerts_series(&r),
            [
                r#"ALERTS{alertname="Hot", alertstate="pending", instance="a", level="high", team="a-team"}"#
            ]
        );
        w.up(2, 9.0);
        let r = w.eval(2);
        assert_eq!(
            alerts_series(&r),
            [
                r#"ALERTS{alertname="Hot", alertstate="firing", instance="a", level="high", team="a-team"}"#
            ]
        );
    }

    #[test]
    fn align_keeps_state_by_rule_key() {
        let mut w = World::new(RULES);
        w.up(0, 0.0);
        w.eval(0);
        // Reload with a rule inserted before the alerting rule.
        w.group = group(&RULES.replace(
            "    rules:\n",
            "    rules:\n      - record: x\n        expr: vector(1)\n",
        ));
        w.eval(1);
        assert_eq!(w.state.rules[1].alerts.len(), 1);
        assert_eq!(w.state.rules[1].alerts[0].active_at_ms, 0);
    }
}
