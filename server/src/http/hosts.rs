//! Hosts and series: the inventory of agents with their status timelines, and stored series
//! with Prometheus-style time and step parameters.

use std::{collections::BTreeMap, sync::Arc};

use axum::{extract::State as AxState, response::Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use yunwei_conf::limits::{
    MAX_SERIES_POINTS_PER_SERIES, MAX_SERIES_RAW_RANGE_WITHOUT_STEP_MS, MAX_SERIES_RESPONSE_POINTS,
};

use super::{
    ApiError, ErrorKind,
    extract::{Path, Query},
};
use crate::{
    AppState,
    ingest::{KIND_HOST, KIND_PROBE},
    now_ms,
    store::{AgentRow, HOUR_MS, SeriesRow},
    timeline::{Span, State, fill_unknown},
};

/// A host as the API shows it.
#[derive(Serialize)]
pub struct HostView {
    pub agent_id: String,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub enrolled_at: i64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub last_seq: i64,
    pub interval_seconds: f64,
    /// `up` (batches on time), `down` (silent: no batch within the allowed missed batches, the
    /// condition of `yunwei_host_up == 0` and the shipped "agent silent" rule) or `unknown`
    /// (enrolled, never reported). Status intervals and SLA figures count the silence as missing
    /// data, not downtime (see `timeline`).
    pub status: State,
    pub seconds_since_last_batch: Option<f64>,
    /// Other agents reporting the same hostname: a hostname is the agent's claim, never an
    /// identity, so such hosts are flagged, not merged (empty: the hostname is unique).
    pub hostname_shared_with: Vec<String>,
}

fn host_view(a: &AgentRow, state: &AppState, now: i64) -> HostView {
    let live = state
        .live
        .hosts
        .read()
        .expect("live lock")
        .get(a.agent_id.as_str())
        .cloned();
    let last_seen = live.as_ref().map(|l| l.last_seen_ms).or(a.last_seen_ms);
    let interval = live.as_ref().map_or(a.interval_ms, |l| l.interval_ms);
    let missed = i64::from(state.config.ingest.unknown_after_missed_batches);
    let status = match last_seen {
        Some(t) if now - t <= missed * interval => State::Up,
        Some(_) => State::Down,
        None => State::Unknown,
    };
    HostView {
        agent_id: a.agent_id.clone(),
        hostname: a.hostname.clone(),
        os: a.os.clone(),
        kernel: a.kernel.clone(),
        arch: a.arch.clone(),
        agent_version: a.agent_version.clone(),
        labels: a.labels.clone(),
        enrolled_at: a.enrolled_ms,
        first_seen: a.first_seen_ms,
        last_seen,
        last_seq: live
            .as_ref()
            .map_or(a.last_seq, |l| l.last_seq.max(a.last_seq)),
        interval_seconds: interval as f64 / 1000.0,
        status,
        seconds_since_last_batch: last_seen.map(|t| (now - t).max(0) as f64 / 1000.0),
        hostname_shared_with: Vec::new(),
    }
}

pub(super) async fn hosts(
    AxState(state): AxState<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = now_ms();
    let agents = state.store.agents().await.map_err(ApiError::internal)?;
    let shared = crate::inventory::shared_hostnames(&agents);
    let list: Vec<HostView> = agents
        .iter()
        .map(|a| {
            let mut v = host_view(a, &state, now);
            if let Some(ids) = shared.get(a.hostname.as_str()) {
                v.hostname_shared_with =
                    ids.iter().filter(|i| **i != a.agent_id).cloned().collect();
            }
            v
        })
        .collect();
    Ok(Json(json!({ "hosts": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Serialize)]
struct Timeline {
    /// Spans covering `[from, to)` exactly; gaps are `unknown`.
    intervals: Vec<Span>,
    /// Milliseconds per state within the range.
    totals_ms: BTreeMap<&'static str, i64>,
}

fn timeline(spans: &[Span], from: i64, to: i64) -> Timeline {
    let intervals = if to > from {
        fill_unknown(spans, from, to)
    } else {
        Vec::new()
    };
    let mut totals_ms = BTreeMap::from([("up", 0), ("down", 0), ("unknown", 0)]);
    for s in &intervals {
        *totals_ms
            .get_mut(s.state.as_str())
            .expect("all states present") += s.end - s.start;
    }
    Timeline {
        intervals,
        totals_ms,
    }
}

pub(super) async fn host(
    AxState(state): AxState<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<RangeParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = now_ms();
    let a = state
        .store
        .agent(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("host"))?;
    let to = parse_time_opt(q.to.as_deref(), "to")?
        .unwrap_or(now)
        .min(now);
    let from = parse_time_opt(q.from.as_deref(), "from")?.unwrap_or(to - 24 * HOUR_MS);
    if from > to {
        return Err(ApiError::new(ErrorKind::InvalidValue, "from is after to").field("from"));
    }
    // Before the first batch the host was not monitored; that is not "unknown" time.
    let from_seen = a.first_seen_ms.map_or(to, |f| from.max(f));
    let spans = state
        .store
        .intervals(KIND_HOST, &id, from_seen, to)
        .await
        .map_err(ApiError::internal)?;
    let mut probes = Vec::new();
    let prefix = format!("{id}/");
    for subject in state
        .store
        .interval_subjects(KIND_PROBE, &prefix)
        .await
        .map_err(ApiError::internal)?
    {
        let spans = state
            .store
            .intervals(KIND_PROBE, &subject, from_seen, to)
            .await
            .map_err(ApiError::internal)?;
        probes.push(json!({
            "probe": subject[prefix.len()..],
            "timeline": timeline(&spans, from_seen, to),
        }));
    }
    let series = state
        .store
        .series_count(&id)
        .await
        .map_err(ApiError::internal)?;
    let events = state
        .store
        .events(&id, from, to)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "host": host_view(&a, &state, now),
        "from": from,
        "to": to,
        "timeline": timeline(&spans, from_seen, to),
        "probes": probes,
        "series_count": series,
        "events": events,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesParams {
    #[serde(rename = "match")]
    selector: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    /// `auto` (default), `raw` or `rollup`.
    source: Option<String>,
}

/// Parses a time: Unix seconds (fractions allowed) or RFC 3339.
pub fn parse_time(s: &str, field: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
        && secs.abs() < 1e13
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::new(
                ErrorKind::InvalidValue,
                format!("{s:?} is neither Unix seconds nor RFC 3339"),
            )
            .field(field)
        })
}

fn parse_time_opt(s: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    s.map(|s| parse_time(s, field)).transpose()
}

/// Parses a duration as Prometheus's HTTP API does: float seconds (`60`, `0.5`), or a
/// Prometheus duration (`30s`, `1h30m`, `1d`); it must be positive.
pub fn parse_duration_ms(s: &str, field: &str) -> Result<i64, ApiError> {
    let bad =
        || ApiError::new(ErrorKind::InvalidValue, format!("{s:?} is not a duration")).field(field);
    let ms = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() => (secs * 1000.0) as i64,
        Ok(_) => return Err(bad()),
        Err(_) => yunwei_conf::parse_duration_ms(s).ok_or_else(bad)?,
    };
    if ms > 0 { Ok(ms) } else { Err(bad()) }
}

fn presented(s: &SeriesRow, host: Option<&AgentRow>) -> BTreeMap<String, String> {
    match host {
        Some(h) => crate::live::presented_labels(&s.name, &s.labels, &h.hostname, &h.labels),
        None => crate::live::presented_labels(&s.name, &s.labels, "", &BTreeMap::new()),
    }
}

pub(super) async fn series(
    AxState(state): AxState<Arc<AppState>>,
    Query(q): Query<SeriesParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = now_ms();
    let selector = q
        .selector
        .as_deref()
        .ok_or_else(|| ApiError::new(ErrorKind::Missing, "required").field("match"))?;
    let (name, matchers) = crate::selector::parse(selector)
        .map_err(|e| ApiError::new(ErrorKind::InvalidValue, e).field("match"))?;
    let to = parse_time_opt(q.to.as_deref(), "to")?.unwrap_or(now);
    let from = parse_time_opt(q.from.as_deref(), "from")?.unwrap_or(to - HOUR_MS);
    if from > to {
        return Err(ApiError::new(ErrorKind::InvalidValue, "from is after to").field("from"));
    }
    let step = q
        .step
        .as_deref()
        .map(|s| parse_duration_ms(s, "step"))
        .transpose()?;
    let raw_from = now - i64::from(state.config.retention.raw_hours) * HOUR_MS;
    let source = match q.source.as_deref().unwrap_or("auto") {
        "auto" => {
            if from >= raw_from {
                "raw"
            } else {
                "rollup"
            }
        }
        s @ ("raw" | "rollup") => s,
        other => {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                format!("{other:?} is not auto, raw or rollup"),
            )
            .field("source"));
        }
    };
    // The answer's size is bounded before anything is read where the resolution is known
    // (a step, or the hourly rollups), and counted after reading raw points without a step.
    let limited = |limit: &str, message: String| {
        state.metrics.api_limited.with_label_values(&[limit]).inc();
        ApiError::new(ErrorKind::InvalidValue, message).field("step")
    };
    let resolution = if source == "raw" {
        step
    } else {
        Some(step.unwrap_or(HOUR_MS).max(HOUR_MS))
    };
    let per_series = match resolution {
        Some(r) => {
            let n = (to - from) / r;
            if n > MAX_SERIES_POINTS_PER_SERIES as i64 {
                return Err(limited(
                    "series_points_per_series",
                    format!(
                        "more than {MAX_SERIES_POINTS_PER_SERIES} points per series; raise step"
                    ),
                ));
            }
            Some(n as usize + 1)
        }
        None if to - from > MAX_SERIES_RAW_RANGE_WITHOUT_STEP_MS => {
            return Err(limited(
                "series_raw_range_without_step",
                format!(
                    "raw points are returned without step for at most {} h; give step \
                     (e.g. step=60s), a shorter range, or source=rollup",
                    MAX_SERIES_RAW_RANGE_WITHOUT_STEP_MS / HOUR_MS
                ),
            ));
        }
        None => None,
    };

    let candidates = match &name {
        Some(n) => state.store.series_named(n).await,
        None => state.store.all_series().await,
    }
    .map_err(ApiError::internal)?;
    let agents: BTreeMap<String, AgentRow> = state
        .store
        .agents()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|a| (a.agent_id.clone(), a))
        .collect();
    let mut selected: Vec<(SeriesRow, BTreeMap<String, String>)> = candidates
        .into_iter()
        .filter_map(|s| {
            let labels = presented(&s, agents.get(&s.agent_id));
            matchers
                .iter()
                .all(|m| m.matches(labels.get(&m.name).map_or("", String::as_str)))
                .then_some((s, labels))
        })
        .collect();
    const MAX_SERIES: usize = 10_000;
    if selected.len() > MAX_SERIES {
        return Err(ApiError::new(
            ErrorKind::TooManySeries,
            format!("the selector matches more than {MAX_SERIES} series"),
        )
        .field("match"));
    }
    if let Some(n) = per_series
        && selected.len().saturating_mul(n) > MAX_SERIES_RESPONSE_POINTS
    {
        return Err(limited(
            "series_response_points",
            format!(
                "{} series of up to {n} points each exceed {MAX_SERIES_RESPONSE_POINTS} points \
                 in one response; raise step or narrow match",
                selected.len()
            ),
        ));
    }
    selected.sort_by(|a, b| a.1.cmp(&b.1));

    let mut result = Vec::with_capacity(selected.len());
    if source == "raw" {
        let mut by_agent: BTreeMap<&str, BTreeMap<i64, Points>> = BTreeMap::new();
        for (s, _) in &selected {
            by_agent
                .entry(&s.agent_id)
                .or_default()
                .insert(s.id, Vec::new());
        }
        for (agent, series) in by_agent.iter_mut() {
            state
                .store
                .raw_samples(agent, from, to, |r| {
                    if let Some(v) = series.get_mut(&r.series_id) {
                        v.push((r.ts_ms, r.value));
                    }
                })
                .await
                .map_err(ApiError::internal)?;
        }
        let mut total = 0usize;
        for (s, labels) in &selected {
            let mut points = by_agent[s.agent_id.as_str()][&s.id].clone();
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            let points = match step {
                Some(step) => downsample(&points, from, to, step),
                None => points,
            };
            // Without a step the stored density decides: refuse rather than cut silently.
            total += points.len();
            if points.len() > MAX_SERIES_POINTS_PER_SERIES {
                return Err(limited(
                    "series_points_per_series",
                    format!(
                        "a series has {} raw points in the range, more than \
                         {MAX_SERIES_POINTS_PER_SERIES}; give step or a shorter range",
                        points.len()
                    ),
                ));
            }
            if total > MAX_SERIES_RESPONSE_POINTS {
                return Err(limited(
                    "series_response_points",
                    format!(
                        "more than {MAX_SERIES_RESPONSE_POINTS} raw points in one response; \
                         give step, a shorter range or narrow match"
                    ),
                ));
            }
            let values: Vec<_> = points
                .iter()
                .map(|&(t, v)| json!([t as f64 / 1000.0, v.to_string()]))
                .collect();
            result.push(json!({ "metric": labels, "values": values }));
        }
    } else {
        let ids: Vec<i64> = selected.iter().map(|(s, _)| s.id).collect();
        let hour_from = from.div_euclid(HOUR_MS) * HOUR_MS;
        let rollups = state
            .store
            .rollups(&ids, hour_from, to)
            .await
            .map_err(ApiError::internal)?;
        let bucket = step.unwrap_or(HOUR_MS).max(HOUR_MS);
        for (s, labels) in &selected {
            let mut points: Vec<(i64, crate::store::Rollup)> = Vec::new();
            for r in rollups.iter().filter(|r| r.series_id == s.id) {
                let b = r.hour_ms.div_euclid(bucket) * bucket;
                match points.last_mut() {
                    Some((t, acc)) if *t == b => {
                        acc.min = acc.min.min(r.min);
                        acc.max = acc.max.max(r.max);
                        acc.sum += r.sum;
                        acc.count += r.count;
                        acc.last = r.last;
                    }
                    _ => points.push((b, *r)),
                }
            }
            let values: Vec<_> = points
                .iter()
                .map(|(t, r)| json!([*t as f64 / 1000.0, (r.sum / r.count as f64).to_string()]))
                .collect();
            let rollups: Vec<_> = points
                .iter()
                .map(|(t, r)| json!({ "t": *t as f64 / 1000.0, "min": r.min, "max": r.max, "sum": r.sum, "count": r.count, "last": r.last }))
                .collect();
            result.push(json!({ "metric": labels, "values": values, "rollups": rollups }));
        }
    }
    Ok(Json(json!({
        "status": "success",
        "data": {
            "resultType": "matrix",
            "source": source,
            "resolution_seconds": if source == "raw" { step.map(|s| s as f64 / 1000.0) } else { Some(step.unwrap_or(HOUR_MS).max(HOUR_MS) as f64 / 1000.0) },
            "result": result,
        }
    })))
}

/// Timestamped values of one series.
type Points = Vec<(i64, f64)>;

/// The last sample in `(t - step, t]` for each `t = from, from + step, ..., <= to`.
fn downsample(points: &[(i64, f64)], from: i64, to: i64, step: i64) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut t = from;
    while t <= to {
        let mut last = None;
        while i < points.len() && points[i].0 <= t {
            if points[i].0 > t - step {
                last = Some(points[i].1);
            }
            i += 1;
        }
        if let Some(v) = last {
            out.push((t, v));
        }
        t += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_parse_like_prometheus() {
        assert_eq!(parse_duration_ms("15s", "step").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("1h", "step").unwrap(), HOUR_MS);
        assert_eq!(parse_duration_ms("60", "step").unwrap(), 60_000);
        // Prometheus accepts compound durations; so does every yunwei duration.
        assert_eq!(parse_duration_ms("1h30m", "step").unwrap(), 90 * 60_000);
        assert!(parse_duration_ms("0s", "step").is_err());
        assert_eq!(
            parse_duration_ms("-1", "step")
                .unwrap_err()
                .field
                .as_deref(),
            Some("step")
        );
        assert_eq!(
            parse_time("1700000000.5", "from").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_time("2026-01-01T00:00:00+08:00", "from").unwrap(),
            1_767_196_800_000
        );
        assert_eq!(
            parse_time("yesterday", "from")
                .unwrap_err()
                .field
                .as_deref(),
            Some("from")
        );
    }

    #[test]
    fn downsample_takes_the_last_sample_in_each_step() {
        let p = [(1, 1.0), (9, 2.0), (11, 3.0), (35, 4.0)];
        assert_eq!(
            downsample(&p, 10, 40, 10),
            vec![(10, 2.0), (20, 3.0), (40, 4.0)]
        );
    }
}
