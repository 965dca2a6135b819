//! `GET /v1/workflows`, `GET /v1/workflows/{name}`, `POST /v1/workflows/{name}/runs` and
//! `POST /v1/validate`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use braid::graph::{GraphFormat, render as graph};
use braid::{InputType, Plan, render};
use serde_json::{Map, Value, json};

use super::error::{ApiError, ErrorBody};
use super::types::{
    RunView, StartQuery, StartRun, ValidateQuery, Validation, WorkflowList, WorkflowView,
};
use super::{AppState, body as parse};
use crate::registry::Entry;
use axum::body::Bytes;

/// The workflows served.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    responses((status = 200, description = "Every workflow file", body = WorkflowList)))]
pub(crate) async fn list(State(s): State<AppState>) -> Json<WorkflowList> {
    let catalog = s.registry.catalog();
    Json(WorkflowList {
        workflows: catalog.entries().map(|e| view(&s, e, false)).collect(),
    })
}

/// One workflow: its serving version, its current file's diagnostics, inputs and graph.
#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowView),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<WorkflowView>, ApiError> {
    let catalog = s.registry.catalog();
    let entry = catalog.get(&name).ok_or_else(|| unknown(&name))?;
    Ok(Json(view(&s, entry, true)))
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no workflow `{name}` is served; `GET /v1/workflows` lists them"
    ))
}

fn view(s: &AppState, e: &Entry, detail: bool) -> WorkflowView {
    let file = e
        .path
        .strip_prefix(s.registry.dir())
        .unwrap_or(&e.path)
        .display()
        .to_string();
    let plan = e.serving.as_ref().map(|w| w.plan());
    WorkflowView {
        name: e.name.clone(),
        file,
        fingerprint: e.serving.as_ref().map(|w| w.fingerprint().to_string()),
        valid: e.problem.is_none(),
        loaded_at: e.loaded_at,
        diagnostics: e
            .problem
            .as_ref()
            .map_or_else(|| json!([]), |p| p.diagnostics.clone()),
        diagnostics_text: e.problem.as_ref().map(|p| p.rendered.clone()),
        inputs_schema: plan.filter(|_| detail).map(|p| inputs_schema(p)),
        graph: plan
            .filter(|_| detail)
            .map(|p| graph(p, GraphFormat::Mermaid)),
    }
}

/// A JSON Schema of a plan's inputs.
fn inputs_schema(plan: &Plan) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for input in plan.inputs() {
        let mut p = Map::new();
        if input.ty != InputType::Any {
            p.insert("type".into(), input.ty.as_str().into());
        }
        match &input.default {
            Some(d) => {
                p.insert("default".into(), d.clone());
            }
            None => required.push(Value::from(&*input.name)),
        }
        properties.insert(input.name.to_string(), Value::Object(p));
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// Starts a run of the workflow's serving version.
#[utoipa::path(post, path = "/v1/workflows/{name}/runs", tag = "runs",
    params(("name" = String, Path, description = "The workflow's name"), StartQuery),
    request_body = StartRun,
    responses(
        (status = 201, description = "Started", body = RunView),
        (status = 200, description = "Finished (`?wait=true`)", body = RunView),
        (status = 400, description = "A body that is not JSON, or a malformed query", body = ErrorBody),
        (status = 404, description = "No such workflow, or none of its versions compiles", body = ErrorBody),
        (status = 413, description = "A body past the size limit", body = ErrorBody),
        (status = 422, description = "The inputs do not fit: every problem", body = ErrorBody),
        (status = 429, description = "Too many runs in flight; see `Retry-After`", body = ErrorBody)))]
pub(crate) async fn start(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<StartQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let catalog = s.registry.catalog();
    let entry = catalog.get(&name).ok_or_else(|| unknown(&name))?;
    let workflow = entry.serving.clone().ok_or_else(|| {
        ApiError::not_found(format!(
            "workflow `{name}` has no valid version to run; `GET /v1/workflows/{name}` shows its diagnostics"
        ))
    })?;
    drop(catalog);
    let inputs = parse::<StartRun>(&body)?.inputs;
    if s.runner.shared() {
        // Queued for whichever replica has room (this one, often).
        let run_id = s.runner.submit(&workflow, inputs).await?;
        let view = RunView::started(
            run_id.clone(),
            workflow.plan().name().to_string(),
            workflow.fingerprint().to_string(),
        );
        if !q.wait {
            return Ok((StatusCode::CREATED, Json(view)).into_response());
        }
        return Ok((
            StatusCode::OK,
            Json(super::runs::until_settled(&s, &run_id).await?),
        )
            .into_response());
    }
    let (run_id, task) = s.runner.start(&workflow, inputs).await?;
    let view = RunView::started(
        run_id,
        workflow.plan().name().to_string(),
        workflow.fingerprint().to_string(),
    );
    if !q.wait {
        return Ok((StatusCode::CREATED, Json(view)).into_response());
    }
    let result = task
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)?;
    Ok((StatusCode::OK, Json(view.finished(&result))).into_response())
}

/// Checks workflow text (YAML in the body) and answers every diagnostic. Files it includes are
/// not read: they are reported missing.
#[utoipa::path(post, path = "/v1/validate", tag = "workflows",
    params(ValidateQuery),
    request_body(content = String, content_type = "application/yaml", description = "A workflow file's text"),
    responses(
        (status = 200, description = "The diagnostics", body = Validation),
        (status = 400, description = "A body that is not UTF-8, or a malformed query", body = ErrorBody),
        (status = 413, description = "A body past the size limit", body = ErrorBody)))]
pub(crate) async fn validate(
    State(s): State<AppState>,
    Query(q): Query<ValidateQuery>,
    text: String,
) -> Json<Validation> {
    let name = q.name.unwrap_or_else(|| "workflow.yaml".to_owned());
    // From the text alone: an include names no file on this machine (a client must not make
    // the service read its disk); it is reported as a missing file.
    let engine = s.engine.clone();
    let (n, t) = (name.clone(), text.clone());
    let compiled = tokio::task::spawn_blocking(move || {
        engine.compiler().compile_recorded(&n, [("", t.as_str())])
    })
    .await;
    let (valid, diagnostics) = match compiled {
        Ok(c) => (c.plan.is_some(), c.diagnostics),
        Err(_) => (false, Vec::new()),
    };
    Json(Validation {
        valid,
        diagnostics: serde_json::to_value(render::json(&name, &diagnostics)).unwrap_or(Value::Null),
        rendered: render::human(&name, &text, &diagnostics, false),
    })
}
