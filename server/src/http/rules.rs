//! Rules and alerts: the loaded rule groups, the active alerts, and reload.

use std::sync::Arc;

use axum::extract::State as AxState;
use axum::response::Json;

use super::{ApiError, ErrorKind};
use serde_json::json;

use crate::AppState;

pub(super) async fn rules(AxState(state): AxState<Arc<AppState>>) -> Json<serde_json::Value> {
    let default = state.config.rules.evaluation_interval_secs as i64 * 1000;
    Json(crate::rules::rules_json(
        &state.rules.set.read().expect("rules lock"),
        default,
    ))
}

pub(super) async fn alerts(AxState(state): AxState<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(crate::rules::alerts_json(
        &state.rules.set.read().expect("rules lock"),
    ))
}

/// `POST /api/v1/rules/reload`: re-reads the rule files; an invalid set is refused with every
/// diagnostic and the running set is kept.
pub(super) async fn reload_rules(
    AxState(state): AxState<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match crate::rules::reload(&state.rules) {
        Ok(n) => Ok(Json(
            json!({ "status": "success", "data": { "groups": n } }),
        )),
        Err(e) => Err(ApiError::new(ErrorKind::InvalidRules, e.0).field("rule_files")),
    }
}
