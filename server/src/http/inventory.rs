//! The inventory: probes and the contracts' systems with their current state.

use std::sync::Arc;

use axum::{extract::State as AxState, response::Json};
use serde_json::{Value, json};

use super::ApiError;
use crate::{AppState, inventory, now_ms};

/// `GET /api/v1/probes`: every probe seen in the last 24 hours.
pub(super) async fn probes(
    AxState(state): AxState<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let probes = inventory::probes(&state.contracts, now)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "now": now, "probes": probes })))
}

/// `GET /api/v1/systems`: the systems of every loaded contract, with their hosts and probes.
pub(super) async fn systems(
    AxState(state): AxState<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let systems = inventory::systems(&state.contracts, now)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "now": now, "systems": systems })))
}
