//! Operational endpoints: readiness and the Prometheus metrics page.

use std::sync::Arc;

use axum::{
    extract::State as AxState,
    http::header,
    response::{IntoResponse, Response},
};

use super::ApiError;
use crate::{AppState, now_ms};

pub(super) async fn readyz(AxState(state): AxState<Arc<AppState>>) -> Result<String, ApiError> {
    if state.ingest.writer.is_closed() {
        return Err(ApiError::unavailable("writer stopped"));
    }
    if !state.store.ping().await {
        return Err(ApiError::unavailable("database unreachable"));
    }
    // Every role serves ingest and the API; the role says where the singletons run.
    let role = state.leadership.role();
    let mut out = format!("ready\nrole: {}\n", role.name());
    if let crate::leader::Role::Leader { epoch } = role {
        out.push_str(&format!(
            "epoch: {epoch}\nwindow_lag_seconds: {:.3}\n",
            state.metrics.ha_window_lag_seconds.get()
        ));
    }
    Ok(out)
}

pub(super) async fn metrics(AxState(state): AxState<Arc<AppState>>) -> Result<Response, ApiError> {
    let now = now_ms();
    let m = &state.metrics;
    m.host_up.reset();
    m.host_last_batch_age.reset();
    let mut up = 0i64;
    for (id, h) in state.live.hosts.read().expect("live lock").iter() {
        let is_up = h.is_up(now, state.config.ingest.unknown_after_missed_batches);
        up += i64::from(is_up);
        m.host_up
            .with_label_values(&[id.as_ref(), h.hostname.as_str()])
            .set(if is_up { 1.0 } else { 0.0 });
        m.host_last_batch_age
            .with_label_values(&[id.as_ref(), h.hostname.as_str()])
            .set((now - h.last_seen_ms).max(0) as f64 / 1000.0);
    }
    let role = state.leadership.role();
    for r in ["single", "leader", "follower"] {
        m.ha_role
            .with_label_values(&[r])
            .set(i64::from(r == role.name()));
    }
    let enrolled = state.ingest.tokens.read().expect("tokens lock").len() as i64;
    m.hosts.with_label_values(&["up"]).set(up);
    m.hosts.with_label_values(&["unknown"]).set(enrolled - up);
    let agents = state.store.agents().await.map_err(ApiError::internal)?;
    m.hostnames_duplicated
        .set(crate::inventory::shared_hostnames(&agents).len() as i64);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&m.registry.gather())
        .map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
