//! Prometheus's HTTP query API (`/api/v1/query`, `/query_range`, `/series`, `/labels`,
//! `/label/{name}/values`, `/metadata`, `/status/buildinfo`) over yunwei's PromQL engine, with
//! Prometheus's JSON and error shapes, so Grafana's Prometheus data source and `promtool query`
//! work against the server.
//!
//! A query is answered from one resolution only, never a mix: the live window (raw samples)
//! when every sample the evaluation asks for lies inside it, otherwise the hourly rollups (each
//! hour's last sample at its own time, with a lookback of an hour and five minutes so an
//! instant selector finds the previous hour's). Which one answered is stated in every answer:
//! the `X-Yunwei-Resolution` header and an `infos` entry (`raw` or `rollup-1h`), plus a
//! `warnings` entry when the rollups answered, which Grafana shows beside the panel.
//!
//! Evaluation runs off the async workers (`compute::run`) within a time limit; the answer's
//! size is bounded by Prometheus's 11,000 points per series and by
//! [`MAX_QUERY_RESULT_SERIES`](yunwei_conf::limits::MAX_QUERY_RESULT_SERIES).

use std::{
    cell::Cell,
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{RawQuery, State as AxState},
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Json, Response},
};
use promql_parser::parser::Expr;
use serde_json::{Value as J, json};
use yunwei_conf::limits::{
    MAX_QUERY_POINTS_PER_SERIES, MAX_QUERY_RESPONSE_POINTS, MAX_QUERY_RESULT_SERIES,
    MAX_QUERY_TIMEOUT_MS,
};
use yunwei_rules::promql::{
    self, EvalError, Labels, MatchOp, Matcher, Options, SelectedSeries, Storage, Value,
    format_value,
};

use super::hosts::{parse_duration_ms, parse_time};
use crate::{AppState, now_ms, store::HOUR_MS};

/// The version `/api/v1/status/buildinfo` reports: the Prometheus release whose API and PromQL
/// semantics yunwei follows, so clients that gate features on it (Grafana) enable them.
const PROMETHEUS_COMPAT_VERSION: &str = "2.42.0";

/// Lookback of an instant selector over the hourly rollups: one sample an hour.
const ROLLUP_LOOKBACK_MS: i64 = HOUR_MS + 5 * 60 * 1000;

/// A failure in Prometheus's shape: `{"status":"error","errorType":...,"error":...}`.
#[derive(Debug)]
pub struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }

    fn execution(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "execution",
            message: message.into(),
        }
    }

    fn timeout(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "timeout",
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> PromError {
        tracing::error!(error = %e, "prometheus api failure");
        PromError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: "internal error (see the server log)".into(),
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "status": "error", "errorType": self.kind, "error": self.message })),
        )
            .into_response()
    }
}

/// Request parameters: the query string, and for a form POST the body too (as Go's
/// `Request.ParseForm` merges them). Unknown parameters are ignored, as Prometheus does.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(query: Option<&str>, body: &[u8]) -> Params {
        let mut v: Vec<(String, String)> = Vec::new();
        v.extend(form_urlencoded::parse(body).into_owned());
        if let Some(q) = query {
            v.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Params(v)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn time(&self, name: &str) -> Result<Option<i64>, PromError> {
        self.get(name)
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_time(s, name).map_err(|_| {
                    PromError::bad_data(format!(
                        "invalid parameter {name:?}: cannot parse {s:?} to a valid timestamp"
                    ))
                })
            })
            .transpose()
    }

    fn duration(&self, name: &str) -> Result<Option<i64>, PromError> {
        self.get(name)
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_duration_ms(s, name).map_err(|_| {
                    PromError::bad_data(format!(
                        "invalid parameter {name:?}: cannot parse {s:?} to a valid duration"
                    ))
                })
            })
            .transpose()
    }

    /// The time limit: the `timeout` parameter, at most the server's.
    fn timeout(&self) -> Result<Duration, PromError> {
        let ms = self
            .duration("timeout")?
            .unwrap_or(MAX_QUERY_TIMEOUT_MS)
            .min(MAX_QUERY_TIMEOUT_MS);
        Ok(Duration::from_millis(ms as u64))
    }
}

/// Which data answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    Raw,
    Rollup,
}

impl Resolution {
    fn as_str(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::Rollup => "rollup-1h",
        }
    }
}

/// A success answer with the resolution stated.
fn success(data: J, resolution: Option<Resolution>) -> Response {
    let mut body = json!({ "status": "success", "data": data });
    if let Some(r) = resolution {
        body["infos"] = json!([format!("yunwei resolution: {}", r.as_str())]);
        if r == Resolution::Rollup {
            body["warnings"] = json!([
                "answered from hourly rollups (each hour's last sample), not raw samples: the range reaches before the live window / 由小时汇总数据（每小时最后一个样本）回答，非原始样本：查询范围早于实时窗口"
            ]);
        }
    }
    let mut resp = Json(body).into_response();
    if let Some(r) = resolution {
        resp.headers_mut()
            .insert("x-yunwei-resolution", HeaderValue::from_static(r.as_str()));
    }
    resp
}

fn labels_json(l: &Labels) -> J {
    J::Object(
        l.iter()
            .map(|l| (l.name.clone(), J::String(l.value.clone())))
            .collect(),
    )
}

fn ts(t_ms: i64) -> J {
    if t_ms % 1000 == 0 {
        json!(t_ms / 1000)
    } else {
        json!(t_ms as f64 / 1000.0)
    }
}

fn point(t_ms: i64, v: f64) -> J {
    json!([ts(t_ms), format_value(v)])
}

fn value_json(v: &Value, t_ms: i64) -> J {
    match v {
        Value::Scalar(x) => json!({ "resultType": "scalar", "result": point(t_ms, *x) }),
        Value::String(s) => json!({ "resultType": "string", "result": [ts(t_ms), s] }),
        Value::InstantVector(v) => json!({
            "resultType": "vector",
            "result": v.iter().map(|s| json!({ "metric": labels_json(&s.labels), "value": point(s.t_ms, s.v) })).collect::<Vec<_>>(),
        }),
        Value::RangeVector(m) => matrix_json(m),
    }
}

fn matrix_json(m: &promql::Matrix) -> J {
    json!({
        "resultType": "matrix",
        "result": m.iter().map(|s| json!({
            "metric": labels_json(&s.labels),
            "values": s.samples.iter().map(|&(t, v)| point(t, v)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn eval_error(e: EvalError) -> PromError {
    match e {
        e @ EvalError::Parse(_) => PromError::bad_data(e.to_string()),
        EvalError::InvalidQuery(m) => PromError::bad_data(m),
        other => PromError::execution(other.to_string()),
    }
}

/// A storage that notes the earliest sample time any selection asks for.
struct Probe<'a> {
    inner: &'a dyn Storage,
    earliest: Cell<i64>,
}

impl Storage for Probe<'_> {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<SelectedSeries<'_>> {
        self.earliest.set(self.earliest.get().min(start_ms));
        self.inner.select(matchers, start_ms, end_ms)
    }

    fn select_latest(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedSeries<'_>> {
        self.earliest.set(self.earliest.get().min(start_ms));
        self.inner.select_latest(matchers, start_ms, end_ms)
    }
}

/// Every stored series with the labels the read API presents, sorted by labels.
async fn catalogue(state: &AppState) -> anyhow::Result<Vec<(i64, Labels)>> {
    let mut out = crate::live::stored_series(&state.store).await?;
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// The hourly rollups as a [`Storage`]: each stored hour is one sample, its last value at the
/// time it was taken (the hour's last millisecond for rows without that time).
struct RollupStorage {
    rt: tokio::runtime::Handle,
    store: crate::store::Store,
    catalogue: Vec<(i64, Labels)>,
    failed: Cell<Option<String>>,
}

impl Storage for RollupStorage {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<SelectedSeries<'_>> {
        let chosen: Vec<&(i64, Labels)> = self
            .catalogue
            .iter()
            .filter(|(_, l)| matchers.iter().all(|m| m.matches_labels(l)))
            .collect();
        if chosen.is_empty() {
            return Vec::new();
        }
        let ids: Vec<i64> = chosen.iter().map(|(id, _)| *id).collect();
        let from = start_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let rows = match self.rt.block_on(self.store.rollups(&ids, from, end_ms)) {
            Ok(r) => r,
            Err(e) => {
                self.failed.set(Some(e.to_string()));
                return Vec::new();
            }
        };
        let mut by_id: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        for r in rows {
            let t = r.last_ms.unwrap_or(r.hour_ms + HOUR_MS - 1);
            if (start_ms..=end_ms).contains(&t) {
                by_id.entry(r.series_id).or_default().push((t, r.last));
            }
        }
        // Two stored series may present one label set (a label renamed since): merged.
        let mut out: Vec<SelectedSeries<'_>> = Vec::new();
        for (id, labels) in chosen {
            let Some(mut samples) = by_id.remove(id) else {
                continue;
            };
            match out.last_mut() {
                Some(prev) if *prev.labels == *labels => {
                    let mut all = prev.samples.to_vec();
                    all.append(&mut samples);
                    all.sort_by_key(|p| p.0);
                    all.dedup_by_key(|p| p.0);
                    prev.samples = all.into();
                }
                _ => out.push(SelectedSeries {
                    labels: std::borrow::Cow::Borrowed(labels),
                    samples: samples.into(),
                    no_stale: false,
                }),
            }
        }
        out
    }
}

/// What a query evaluates to, with the data that answered it.
struct Answer {
    value: Result<Evaluated, EvalError>,
    resolution: Resolution,
}

enum Evaluated {
    Instant(Value),
    Range(promql::Matrix),
}

/// Evaluates `run` over the live window, or, when it asks for samples older than the window,
/// over the hourly rollups. Blocking: runs on a blocking thread.
fn evaluate(
    state: &AppState,
    rt: tokio::runtime::Handle,
    now: i64,
    cancel: promql::Cancel,
    run: &dyn Fn(&dyn Storage, &Options) -> Result<Evaluated, EvalError>,
) -> Result<Answer, PromError> {
    let window_start = now - i64::from(state.config.rules.live_window_secs) * 1000;
    let opts = Options {
        cancel: Some(cancel),
        ..Options::default()
    };
    {
        let window = state.live.window.read().expect("window lock");
        let probe = Probe {
            inner: &window.storage,
            earliest: Cell::new(i64::MAX),
        };
        let value = run(&probe, &opts);
        if probe.earliest.get() >= window_start || value.is_err() {
            return Ok(Answer {
                value,
                resolution: Resolution::Raw,
            });
        }
    }
    let catalogue = rt.block_on(catalogue(state)).map_err(PromError::internal)?;
    let storage = RollupStorage {
        rt,
        store: state.store.clone(),
        catalogue,
        failed: Cell::new(None),
    };
    let opts = Options {
        lookback_delta_ms: ROLLUP_LOOKBACK_MS,
        ..opts
    };
    let value = run(&storage, &opts);
    if let Some(e) = storage.failed.take() {
        return Err(PromError::internal(e));
    }
    Ok(Answer {
        value,
        resolution: Resolution::Rollup,
    })
}

/// Stops the evaluation it guards when dropped: when the request is answered, timed out, or
/// abandoned by a client that hung up, so no evaluation keeps a compute slot and the window's
/// read lock after nobody waits for it.
struct CancelOnDrop(promql::Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs `run` off the async workers within the request's time limit; past the limit the
/// evaluation is cancelled (it stops at its next step, see [`Options::cancel`]).
async fn compute(
    state: Arc<AppState>,
    params: &Params,
    now: i64,
    run: impl Fn(&dyn Storage, &Options) -> Result<Evaluated, EvalError> + Send + 'static,
) -> Result<Answer, PromError> {
    let limit = params.timeout()?;
    let rt = tokio::runtime::Handle::current();
    let metrics = state.metrics.clone();
    let cancel = promql::Cancel::new();
    let _guard = CancelOnDrop(cancel.clone());
    match crate::compute::run(Some(limit), move || evaluate(&state, rt, now, cancel, &run)).await {
        Ok(r) => r,
        Err(crate::compute::ComputeError::TimedOut(d)) => {
            metrics.api_limited.with_label_values(&["query_time"]).inc();
            Err(PromError::timeout(format!(
                "query timed out in expression evaluation after {} ms",
                d.as_millis()
            )))
        }
        Err(e) => Err(PromError::internal(e)),
    }
}

fn parse_query(params: &Params) -> Result<Arc<Expr>, PromError> {
    let text = params.get("query").unwrap_or("");
    let expr = promql::parse(text).map_err(eval_error)?;
    promql::check_supported(&expr).map_err(eval_error)?;
    Ok(Arc::new(expr))
}

fn too_many_series(state: &AppState, n: usize) -> Result<(), PromError> {
    if n > MAX_QUERY_RESULT_SERIES {
        state
            .metrics
            .api_limited
            .with_label_values(&["query_result_series"])
            .inc();
        return Err(PromError::execution(format!(
            "the result has {n} series, more than {MAX_QUERY_RESULT_SERIES}; narrow the query"
        )));
    }
    Ok(())
}

/// `GET|POST /api/v1/query`.
pub(super) async fn query(
    AxState(state): AxState<Arc<AppState>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let now = now_ms();
    let params = Params::new(q.as_deref(), &body);
    let expr = parse_query(&params)?;
    let t = params.time("time")?.unwrap_or(now);
    let answer = compute(state.clone(), &params, now, move |s, o| {
        promql::eval_instant(&*expr, t, s, o).map(Evaluated::Instant)
    })
    .await?;
    let Evaluated::Instant(v) = answer.value.map_err(eval_error)? else {
        unreachable!("an instant query evaluates to a value");
    };
    let n = match &v {
        Value::InstantVector(v) => v.len(),
        Value::RangeVector(m) => m.len(),
        _ => 0,
    };
    too_many_series(&state, n)?;
    Ok(success(value_json(&v, t), Some(answer.resolution)))
}

/// `GET|POST /api/v1/query_range`.
pub(super) async fn query_range(
    AxState(state): AxState<Arc<AppState>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let now = now_ms();
    let params = Params::new(q.as_deref(), &body);
    let start = params
        .time("start")?
        .ok_or_else(|| PromError::bad_data("invalid parameter \"start\": missing"))?;
    let end = params
        .time("end")?
        .ok_or_else(|| PromError::bad_data("invalid parameter \"end\": missing"))?;
    if end < start {
        return Err(PromError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = params
        .duration("step")
        .map_err(|_| {
            PromError::bad_data(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            )
        })?
        .ok_or_else(|| PromError::bad_data("invalid parameter \"step\": missing"))?;
    if (end - start) / step > MAX_QUERY_POINTS_PER_SERIES as i64 {
        state
            .metrics
            .api_limited
            .with_label_values(&["query_points_per_series"])
            .inc();
        return Err(PromError::bad_data(format!(
            "exceeded maximum resolution of {MAX_QUERY_POINTS_PER_SERIES} points per timeseries. Try decreasing the query resolution (?step=XX)"
        )));
    }
    let expr = parse_query(&params)?;
    let answer = compute(state.clone(), &params, now, move |s, o| {
        promql::eval_range(&*expr, start, end, step, s, o).map(Evaluated::Range)
    })
    .await?;
    let Evaluated::Range(m) = answer.value.map_err(eval_error)? else {
        unreachable!("a range query evaluates to a matrix");
    };
    too_many_series(&state, m.len())?;
    let points: usize = m.iter().map(|s| s.samples.len()).sum();
    if points > MAX_QUERY_RESPONSE_POINTS {
        state
            .metrics
            .api_limited
            .with_label_values(&["query_response_points"])
            .inc();
        return Err(PromError::execution(format!(
            "the result has {points} points, more than {MAX_QUERY_RESPONSE_POINTS}; raise step or narrow the query"
        )));
    }
    Ok(success(matrix_json(&m), Some(answer.resolution)))
}

/// Engine matchers of one `match[]` selector.
fn selector_matchers(text: &str) -> Result<Vec<Matcher>, PromError> {
    let expr = promql::parse(text).map_err(eval_error)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(PromError::bad_data(format!(
            "invalid parameter \"match[]\": {text:?} is not a series selector"
        )));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(PromError::bad_data(
            "invalid parameter \"match[]\": `or` inside a selector is not supported",
        ));
    }
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::new(MatchOp::Equal, "__name__", name.clone()).map_err(eval_error)?);
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            promql_parser::label::MatchOp::Equal => MatchOp::Equal,
            promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
            promql_parser::label::MatchOp::Re(_) => MatchOp::Re,
            promql_parser::label::MatchOp::NotRe(_) => MatchOp::NotRe,
        };
        out.push(Matcher::new(op, m.name.clone(), m.value.clone()).map_err(eval_error)?);
    }
    if out.iter().all(|m| m.matches("")) {
        return Err(PromError::bad_data(
            "invalid parameter \"match[]\": match[] must contain at least one non-empty matcher",
        ));
    }
    Ok(out)
}

/// A label set as sorted pairs (engine `Labels` cache their hash, so they make poor set keys).
type LabelPairs = Vec<(String, String)>;

fn pairs(l: &Labels) -> LabelPairs {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// The label sets of the series matching any of `selectors` (every series when there are
/// none) with samples in `[start, end]`: from the live window, and, when the range reaches
/// before it, from the store's catalogue of series too.
async fn matching_series(
    state: &AppState,
    selectors: &[Vec<Matcher>],
    start: i64,
    end: i64,
    now: i64,
) -> Result<BTreeSet<LabelPairs>, PromError> {
    let mut out = BTreeSet::new();
    let all = [Vec::new()];
    let selectors = if selectors.is_empty() {
        &all[..]
    } else {
        selectors
    };
    {
        let window = state.live.window.read().expect("window lock");
        for m in selectors {
            for s in window.storage.select(m, start, end) {
                if !s.samples.is_empty() {
                    out.insert(pairs(&s.labels));
                }
            }
        }
    }
    let window_start = now - i64::from(state.config.rules.live_window_secs) * 1000;
    if start < window_start {
        for (_, l) in catalogue(state).await.map_err(PromError::internal)? {
            if selectors
                .iter()
                .any(|m| m.iter().all(|m| m.matches_labels(&l)))
            {
                out.insert(pairs(&l));
            }
        }
    }
    if out.len() > MAX_QUERY_RESULT_SERIES {
        too_many_series(state, out.len())?;
    }
    Ok(out)
}

struct SeriesQuery {
    selectors: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
}

fn series_query(params: &Params, now: i64, required: bool) -> Result<SeriesQuery, PromError> {
    let texts = params.all("match[]");
    if required && texts.is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let selectors = texts
        .iter()
        .map(|t| selector_matchers(t))
        .collect::<Result<Vec<_>, _>>()?;
    let end = params.time("end")?.unwrap_or(now);
    let start = params.time("start")?.unwrap_or(i64::MIN / 2);
    if end < start {
        return Err(PromError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    Ok(SeriesQuery {
        selectors,
        start,
        end,
    })
}

/// `GET|POST /api/v1/series`.
pub(super) async fn series(
    AxState(state): AxState<Arc<AppState>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let now = now_ms();
    let params = Params::new(q.as_deref(), &body);
    let sq = series_query(&params, now, true)?;
    let found = matching_series(&state, &sq.selectors, sq.start, sq.end, now).await?;
    Ok(success(
        J::Array(
            found
                .iter()
                .map(|l| {
                    J::Object(
                        l.iter()
                            .map(|(k, v)| (k.clone(), J::from(v.as_str())))
                            .collect(),
                    )
                })
                .collect(),
        ),
        None,
    ))
}

/// `GET|POST /api/v1/labels`.
pub(super) async fn labels(
    AxState(state): AxState<Arc<AppState>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let now = now_ms();
    let params = Params::new(q.as_deref(), &body);
    let sq = series_query(&params, now, false)?;
    let found = matching_series(&state, &sq.selectors, sq.start, sq.end, now).await?;
    let names: BTreeSet<&str> = found
        .iter()
        .flat_map(|l| l.iter().map(|(k, _)| k.as_str()))
        .collect();
    Ok(success(json!(names), None))
}

/// `GET /api/v1/label/{name}/values`.
pub(super) async fn label_values(
    AxState(state): AxState<Arc<AppState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, PromError> {
    let now = now_ms();
    let params = Params::new(q.as_deref(), &[]);
    if name.is_empty()
        || !name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
    {
        return Err(PromError::bad_data(format!("invalid label name: {name:?}")));
    }
    let sq = series_query(&params, now, false)?;
    let found = matching_series(&state, &sq.selectors, sq.start, sq.end, now).await?;
    let values: BTreeSet<&str> = found
        .iter()
        .filter_map(|l| l.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()))
        .collect();
    Ok(success(json!(values), None))
}

/// A metric's type as its name says, following Prometheus's naming conventions; yunwei keeps
/// no metadata of its own.
fn metric_type(name: &str) -> &'static str {
    if name.ends_with("_total") {
        "counter"
    } else if name.ends_with("_bucket") {
        "histogram"
    } else {
        "gauge"
    }
}

/// `GET /api/v1/metadata`: every metric name in the live window, its type inferred from the
/// name.
pub(super) async fn metadata(
    AxState(state): AxState<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, PromError> {
    let params = Params::new(q.as_deref(), &[]);
    let limit = match params.get("limit").filter(|s| !s.is_empty()) {
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| PromError::bad_data("invalid parameter \"limit\": not a number"))?,
        None => -1,
    };
    let only = params.get("metric").filter(|s| !s.is_empty());
    let names: BTreeSet<String> = {
        let window = state.live.window.read().expect("window lock");
        window
            .storage
            .select(&[], i64::MIN / 2, i64::MAX / 2)
            .into_iter()
            .filter_map(|s| s.labels.metric_name().map(str::to_string))
            .collect()
    };
    let mut data = serde_json::Map::new();
    for name in names {
        if only.is_some_and(|m| m != name) {
            continue;
        }
        if limit >= 0 && data.len() as i64 >= limit {
            break;
        }
        let t = metric_type(&name);
        data.insert(name, json!([{ "type": t, "help": "", "unit": "" }]));
    }
    Ok(success(J::Object(data), None))
}

/// `GET /api/v1/status/buildinfo`.
pub(super) async fn buildinfo() -> Response {
    success(
        json!({
            "version": PROMETHEUS_COMPAT_VERSION,
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
            "application": "yunwei",
            "yunweiVersion": env!("CARGO_PKG_VERSION"),
        }),
        None,
    )
}

/// A label set from pairs, for the tests.
#[cfg(test)]
fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunwei_rules::promql::MemStorage;

    #[test]
    fn values_and_times_are_rendered_like_prometheus() {
        assert_eq!(
            point(1_700_000_000_000, 1.5),
            json!([1_700_000_000i64, "1.5"])
        );
        assert_eq!(
            point(1_700_000_000_500, f64::NAN),
            json!([1_700_000_000.5, "NaN"])
        );
        assert_eq!(point(0, f64::INFINITY), json!([0, "+Inf"]));
        assert_eq!(point(0, 1e21), json!([0, "1000000000000000000000"]));
        let v = Value::InstantVector(vec![promql::Sample {
            labels: l(&[("__name__", "up"), ("job", "node")]),
            t_ms: 1000,
            v: 1.0,
        }]);
        assert_eq!(
            value_json(&v, 1000),
            json!({ "resultType": "vector", "result": [{ "metric": { "__name__": "up", "job": "node" }, "value": [1, "1"] }] })
        );
        assert_eq!(
            value_json(&Value::Scalar(2.0), 3000),
            json!({ "resultType": "scalar", "result": [3, "2"] })
        );
    }

    #[test]
    fn form_and_query_parameters_merge_and_repeat() {
        let p = Params::new(
            Some("match[]=up&time=10"),
            b"query=sum%28up%29&match[]=x%7Ba%3D%22b%22%7D",
        );
        assert_eq!(p.get("query"), Some("sum(up)"));
        assert_eq!(p.all("match[]"), vec!["x{a=\"b\"}", "up"]);
        assert_eq!(p.time("time").unwrap(), Some(10_000));
        assert_eq!(p.time("nope").unwrap(), None);
        let e = p.duration("query").unwrap_err();
        assert_eq!(e.kind, "bad_data");
    }

    #[test]
    fn selectors_need_a_non_empty_matcher() {
        assert_eq!(selector_matchers("up").unwrap().len(), 1);
        assert_eq!(selector_matchers(r#"{job=~"a.*"}"#).unwrap().len(), 1);
        assert!(selector_matchers(r#"{job=~".*"}"#).is_err());
        assert!(selector_matchers("rate(up[5m])").is_err());
    }

    #[test]
    fn the_probe_notes_the_earliest_sample_asked_for() {
        let mut m = MemStorage::new();
        m.add_samples(&l(&[("__name__", "c")]), [(0, 1.0), (600_000, 2.0)]);
        let probe = Probe {
            inner: &m,
            earliest: Cell::new(i64::MAX),
        };
        promql::eval_instant(
            "rate(c[10m] offset 5m)",
            1_200_000,
            &probe,
            &Options::default(),
        )
        .unwrap();
        assert!(probe.earliest.get() <= 1_200_000 - 15 * 60_000);
    }
}
