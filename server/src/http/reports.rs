//! Reports: the archive listing, generation on demand and downloads.

use std::{path::Path, sync::Arc};

use axum::{
    extract::State as AxState,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::extract::{Json, Path as UrlPath, Query};
use serde::Deserialize;
use yunwei_reports::Lang;

use super::{ApiError, ErrorKind};
use crate::{
    AppState,
    reports::{self, ArchivedReport, DEFAULT_FONT, ReportError, ReportFormat, Request, parse_lang},
};

/// Query of `GET /api/v1/reports`.
#[derive(Deserialize)]
pub struct ListQuery {
    contract: Option<String>,
}

/// `GET /api/v1/reports?contract=ID`: archived report versions, newest period first.
pub(super) async fn list(
    AxState(state): AxState<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ArchivedReport>>, ApiError> {
    let mut list = reports::list(&state.store, q.contract.as_deref())
        .await
        .map_err(ApiError::internal)?;
    crate::appeals::annotate_versions(&state.store, &state.contracts, &mut list, crate::now_ms())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(list))
}

/// Body of `POST /api/v1/reports`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    contract: String,
    period: String,
    #[serde(default)]
    formats: Option<Vec<String>>,
    #[serde(default)]
    lang: Option<String>,
}

/// `POST /api/v1/reports` `{contract, period, formats, lang}`: generates and archives the next
/// version; answers 201 with the archived version.
pub(super) async fn generate(
    AxState(state): AxState<Arc<AppState>>,
    Json(body): Json<GenerateBody>,
) -> Result<(StatusCode, Json<ArchivedReport>), ApiError> {
    let c = super::contracts::find(&state, &body.contract).map_err(|e| e.field("contract"))?;
    let font_installed = Path::new(DEFAULT_FONT).exists();
    let formats = match &body.formats {
        // Every format the server can make.
        None => ReportFormat::ALL
            .into_iter()
            .filter(|f| *f != ReportFormat::Pdf || font_installed)
            .collect(),
        Some(list) => ReportFormat::parse_list(&list.join(","))
            .map_err(|e| ApiError::new(ErrorKind::InvalidValue, e).field("formats"))?,
    };
    if formats.contains(&ReportFormat::Pdf) && !font_installed {
        return Err(ApiError::new(ErrorKind::FormatUnavailable,
            format!("pdf needs the CJK font {DEFAULT_FONT} (Debian package fonts-noto-cjk) on the server"),
        )
        .field("formats"));
    }
    let lang = match body.lang.as_deref() {
        None => Lang::ZhCn,
        Some(l) => {
            parse_lang(l).map_err(|e| ApiError::new(ErrorKind::InvalidValue, e).field("lang"))?
        }
    };
    super::contracts::parse_period(&state, &body.period, &c)?;
    let req = Request {
        period: body.period.clone(),
        formats,
        lang,
        font: None,
        origin: "api".into(),
        notes: Vec::new(),
        compute_limit: Some(state.config.contracts.compute_limit()),
    };
    let now = crate::now_ms();
    let g = reports::generate(
        &state.store,
        &state.config.data_dir,
        &c,
        &req,
        now,
        state.config.contracts.run_inspections,
        state.config.contracts.auto_assign_from_labels,
    )
    .await
    .map_err(|e| match e {
        ReportError::Period(m) => ApiError::invalid("period", m),
        ReportError::Compute(e) => super::contracts::compute_failure(&state, e),
        ReportError::Other(e) => ApiError::internal(format!("{e:#}")),
    })?;
    crate::appeals::draft_issued(
        &state.store,
        &state.config.notify.external_url,
        &c,
        &g.archived,
        now,
    )
    .await;
    Ok((StatusCode::CREATED, Json(g.archived)))
}

/// `GET /api/v1/reports/{id}/{format}`: the archived file, with its content type and a
/// download file name; `evidence`: the version's evidence file, gzip-compressed as archived
/// (`*.evidence.json.gz`, `application/gzip`; versions archived before compression are plain
/// `*.evidence.json`). The report names the uncompressed bytes' size and SHA-256.
pub(super) async fn download(
    AxState(state): AxState<Arc<AppState>>,
    UrlPath((id, format)): UrlPath<(i64, String)>,
) -> Result<Response, ApiError> {
    let a = reports::get(&state.store, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("report"))?;
    if format == reports::EVIDENCE {
        // The evidence file the version's formats name by hash (`report recompute`).
        let bytes = state
            .store
            .report_file(id, reports::EVIDENCE)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("report evidence file"))?;
        let version = u32::try_from(a.version).unwrap_or(u32::MAX);
        let name = reports::evidence_file_name(&a.contract_id, &a.period, version);
        let (content_type, name) = if yunwei_reports::evidence_file::is_gzip(&bytes) {
            ("application/gzip", format!("{name}.gz"))
        } else {
            ("application/json", name)
        };
        return Ok((
            [
                (header::CONTENT_TYPE, content_type.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            bytes,
        )
            .into_response());
    }
    let f = ReportFormat::parse(&format).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            "format must be html, pdf, xlsx, json or evidence",
        )
        .field("format")
    })?;
    let bytes = reports::file(&state.store, id, f)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("report format"))?;
    Ok((
        [
            (header::CONTENT_TYPE, f.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", reports::file_name(&a, f)),
            ),
        ],
        bytes,
    )
        .into_response())
}
