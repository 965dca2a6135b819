//! The HTTP API: the router, its shared state, and the layers every route passes through
//! (request metrics, bearer tokens, body size limit, CORS when configured).
//!
//! Routes are one module per resource (`workflows`, `runs`, `events`, `ops`); their bodies are
//! the types in `types`, and `doc` assembles the OpenAPI document from both.

pub mod definition;
pub mod doc;
pub mod error;
pub(crate) mod events;
pub(crate) mod ops;
pub(crate) mod runs;
pub mod stats;
pub mod types;
pub(crate) mod workflows;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use braid::Engine;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;

use crate::auth::Tokens;
use crate::metrics;
use crate::registry::Registry;
use crate::runner::Runner;
use error::ApiError;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    pub registry: Arc<Registry>,
    pub runner: Arc<Runner>,
    pub engine: Engine,
    pub tokens: Tokens,
    pub metrics: Option<PrometheusHandle>,
    pub draining: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

impl AppState {
    pub(crate) fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

/// What the router is built with beyond the state.
pub(crate) struct Layers {
    pub max_body_bytes: usize,
    pub cors_origins: Vec<String>,
    pub console: bool,
}

/// The router: `/v1/…`, `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, and the console
/// (`/`, `/console/…`).
pub(crate) fn router(state: AppState, layers: &Layers) -> Router {
    let api = Router::new()
        .route("/v1/workflows", get(workflows::list))
        .route("/v1/workflows/{name}", get(workflows::get))
        .route("/v1/workflows/{name}/runs", post(workflows::start))
        .route("/v1/workflows/{name}/definition", get(definition::get))
        .route("/v1/workflows/{name}/stats", get(stats::get))
        .route("/v1/validate", post(workflows::validate))
        .route("/v1/runs", get(runs::list))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/resume", post(runs::resume))
        .route("/v1/runs/{id}/retry", post(runs::retry))
        .route("/v1/runs/{id}/events", get(events::stream))
        .route("/v1/runs/{id}/nodes", get(definition::nodes))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    let mut router = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    if layers.console {
        // The console's page and assets: no data in them, so no token (docs/console.md).
        router = router.merge(crate::console::router());
    }
    let mut router = router
        .merge(api)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(layers.max_body_bytes))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(measure))
        .with_state(state);
    if !layers.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = layers
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        router = router.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    "last-event-id".parse().unwrap_or(header::ACCEPT),
                ]),
        );
    }
    router
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; `GET /openapi.json` lists them")
}

/// Refuses a request without a valid bearer token when the service has tokens.
async fn authorize(State(s): State<AppState>, request: Request, next: Next) -> Response {
    if s.tokens.is_empty() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if s.tokens.accepts(token.trim()) => next.run(request).await,
        _ => {
            let mut r = ApiError::unauthorized().into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

/// Gives every error the API's JSON shape: axum's own rejections (a query that does not parse,
/// a body past the limit, a method a route does not take) answer plain text.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "invalid_request",
        _ if status.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        message
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Counts and times every request, by its route's pattern (never its path: ids would make a
/// metric per run).
async fn measure(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    metrics::request(
        &method,
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// A JSON body, or the type's default when there is none.
///
/// # Errors
///
/// `400` for text that is not JSON, `422` for JSON of the wrong shape.
pub(crate) fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let status = match e.classify() {
            serde_json::error::Category::Data => axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            _ => axum::http::StatusCode::BAD_REQUEST,
        };
        ApiError::new(
            status,
            "bad_request",
            format!("the body is not what this route takes: {e}"),
        )
    })
}
