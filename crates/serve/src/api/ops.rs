//! `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi as _;

use super::AppState;
use super::types::Health;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
pub(crate) async fn healthz(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        runs_in_flight: s.runner.in_flight(),
        workflows: s.registry.catalog().serving(),
        reason: None,
    })
}

/// The service can take runs: the store answers and the workflow directory was read.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready, and why", body = Health)))]
pub(crate) async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    let store = s.runner.durable().store();
    let reason = if !s.registry.is_loaded() {
        Some("the workflow directory has not been read yet".to_owned())
    } else if s.draining() {
        Some("the service is shutting down".to_owned())
    } else {
        // Any read proves the store answers; an unknown id is the cheapest.
        store.run("readyz-probe").await.err().map(|e| e.to_string())
    };
    let status = if reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(Health {
            status: if reason.is_some() {
                "unavailable"
            } else {
                "ok"
            }
            .to_owned(),
            runs_in_flight: s.runner.in_flight(),
            workflows: s.registry.catalog().serving(),
            reason,
        }),
    )
}

/// Prometheus text: the runtime's run and node metrics, the HTTP requests, the reloads.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    let text = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::doc::ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_default(),
    )
        .into_response()
}
