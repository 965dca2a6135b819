//! `GET /v1/workflows/{name}/definition` and `GET /v1/runs/{id}/nodes`: what the console draws.
//!
//! The definition is a compiled version's shape as data (its inputs with types, defaults and
//! descriptions; its nodes with their needs, writes, layer and, for `wait` nodes, the schema of
//! the answer), so a client draws the DAG and builds forms without parsing YAML or Mermaid. The
//! types and the graph come from the `Plan`; what the plan does not keep (descriptions, the text
//! of `when`, a wait node's answer schema) is read from the root file's text, as loaded by the
//! compiler's own YAML loader. A run's nodes are its journal's node records: status, attempts,
//! times, failure and the writes each contributed.

use axum::Json;
use axum::extract::{Path, Query, State};
use braid::durable::Micros;
use braid::{ExecutionMode, Workflow};
use braid_core::plan::OnErrorPolicy;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// A compiled version of a workflow, as data.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowDefinition {
    /// The workflow's name.
    pub name: String,
    /// The version's fingerprint.
    pub fingerprint: String,
    /// The file's `description:`.
    pub description: Option<String>,
    /// `parallel` or `sequential`.
    pub mode: String,
    /// The inputs, in file order.
    pub inputs: Vec<InputField>,
    /// The nodes, in canonical order (a topological order).
    pub nodes: Vec<NodeShape>,
    /// How many layers the nodes make (see [`NodeShape::layer`]).
    pub layers: u32,
}

/// One declared input.
#[derive(Debug, Serialize, ToSchema)]
pub struct InputField {
    /// Its name.
    pub name: String,
    /// `string`, `number`, `integer`, `boolean`, `object`, `array` or `any`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Whether a run must give it (it has no default).
    pub required: bool,
    /// Its default: any JSON value of its type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Its `description:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One node of the DAG.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeShape {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its `description:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The nodes it needs (the DAG's edges point from them to it).
    pub needs: Vec<String>,
    /// The state keys it writes.
    pub writes: Vec<String>,
    /// Its longest-path layer: 0 for a node that needs nothing, else one more than the
    /// greatest layer of its needs.
    pub layer: u32,
    /// Its `when:` condition, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// `fail` or `continue`.
    pub on_error: String,
    /// Attempts allowed, the first included.
    pub attempts: u32,
    /// Its timeout, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<f64>,
    /// For a `wait` node: the JSON Schema its answer must fit (`with.schema`), if it gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub answer_schema: Option<Value>,
}

/// Query of `GET /v1/workflows/{name}/definition`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DefinitionQuery {
    /// A version's fingerprint (a run's `fingerprint`): that version, as the store recorded it,
    /// instead of the one serving.
    pub fingerprint: Option<String>,
}

/// The definition of the version serving under a name, or of one recorded version.
#[utoipa::path(get, path = "/v1/workflows/{name}/definition", tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name"), DefinitionQuery),
    responses(
        (status = 200, description = "The version's inputs and DAG", body = WorkflowDefinition),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 404, description = "No such workflow, no valid version, or no such recorded version", body = ErrorBody)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DefinitionQuery>,
) -> Result<Json<WorkflowDefinition>, ApiError> {
    let serving = s
        .registry
        .catalog()
        .get(&name)
        .and_then(|e| e.serving.clone());
    let workflow = match (&q.fingerprint, serving) {
        (None, Some(w)) => w,
        (Some(f), Some(w)) if *f == w.fingerprint().to_string() => w,
        (None, None) => {
            return Err(ApiError::not_found(format!(
                "workflow `{name}` has no valid version; `GET /v1/workflows/{name}` shows its diagnostics"
            )));
        }
        (Some(f), _) => recorded(&s, &name, f).await?,
    };
    Ok(Json(definition(&workflow)))
}

/// A version the store recorded, compiled again from its files.
async fn recorded(s: &AppState, name: &str, fingerprint: &str) -> Result<Workflow, ApiError> {
    let missing = || ApiError::not_found(format!("no version `{fingerprint}` of `{name}`"));
    let def = s
        .runner
        .durable()
        .store()
        .definition(fingerprint)
        .await?
        .filter(|d| d.workflow == name)
        .ok_or_else(missing)?;
    let engine = s.engine.clone();
    tokio::task::spawn_blocking(move || {
        let files: Vec<(&str, &str)> = def
            .files
            .iter()
            .map(|f| (f.key.as_str(), f.text.as_str()))
            .collect();
        engine.load_recorded(&def.workflow, files)
    })
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(missing)
}

/// The definition of a compiled version.
pub(crate) fn definition(w: &Workflow) -> WorkflowDefinition {
    let plan = w.plan();
    // What the plan does not keep, from the root file's text (it compiled, so it loads).
    let doc = w
        .files()
        .first()
        .and_then(|f| braid_compiler::load::load(&f.text, braid::Limits::default()).ok())
        .map(|(d, _)| d.value)
        .unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let inputs = plan
        .inputs()
        .iter()
        .map(|i| InputField {
            name: i.name.to_string(),
            ty: i.ty.as_str().to_owned(),
            required: i.default.is_none(),
            default: i.default.clone(),
            description: text(&doc["inputs"][&*i.name]["description"]),
        })
        .collect();
    let mut layers = vec![0u32; plan.nodes().len()];
    let mut nodes = Vec::with_capacity(plan.nodes().len());
    // Canonical order is topological: every need's layer is known before its dependent's.
    for (i, n) in plan.nodes().iter().enumerate() {
        layers[i] = n
            .needs
            .iter()
            .map(|d| layers[d.index()] + 1)
            .max()
            .unwrap_or(0);
        let spec = &doc["nodes"][&*n.name];
        nodes.push(NodeShape {
            name: n.name.to_string(),
            kind: n.kind.to_string(),
            description: text(&spec["description"]),
            needs: n
                .needs
                .iter()
                .map(|d| plan.node(*d).name.to_string())
                .collect(),
            writes: n
                .writes
                .iter()
                .map(|(k, _)| plan.keys()[k.index()].name.to_string())
                .collect(),
            layer: layers[i],
            when: text(&spec["when"]),
            on_error: match n.on_error {
                OnErrorPolicy::Fail => "fail",
                OnErrorPolicy::Continue { .. } => "continue",
            }
            .to_owned(),
            attempts: n.retry.attempts,
            timeout_ms: n.timeout.map(|t| t.as_secs_f64() * 1000.0),
            answer_schema: (&*n.kind == "wait")
                .then(|| spec["with"]["schema"].clone())
                .filter(|v| !v.is_null()),
        });
    }
    WorkflowDefinition {
        name: plan.name().to_string(),
        fingerprint: w.fingerprint().to_string(),
        description: text(&doc["description"]),
        mode: match plan.mode() {
            ExecutionMode::Sequential => "sequential",
            _ => "parallel",
        }
        .to_owned(),
        inputs,
        layers: layers.iter().max().map_or(0, |m| m + 1),
        nodes,
    }
}

/// The nodes of a run that ended (or were settled so far), from its journal.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunNodes {
    /// The run.
    pub run_id: String,
    /// One per node that ended, in the order the journal holds them.
    pub nodes: Vec<NodeEnd>,
}

/// A node's end, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeEnd {
    /// The node.
    pub node: String,
    /// `succeeded`, `fell_back`, `failed`, `skipped`, `cancelled` or `waiting`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// When its first attempt started (microseconds since the epoch).
    pub started_at: Option<Micros>,
    /// When it ended.
    pub ended_at: Micros,
    /// Why it failed, with its earlier failed attempts.
    #[schema(value_type = Option<Object>)]
    pub failure: Option<Value>,
    /// The writes it contributed: key → value (a fallen-back node's fallback).
    #[schema(value_type = Object)]
    pub writes: Map<String, Value>,
}

/// A run's node records: each node's status, attempts, times, failure and writes.
#[utoipa::path(get, path = "/v1/runs/{id}/nodes", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The nodes that ended", body = RunNodes),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub(crate) async fn nodes(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunNodes>, ApiError> {
    let store = s.runner.durable().store();
    if store.run(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no run `{id}`")));
    }
    let nodes = store
        .nodes(&id)
        .await?
        .into_iter()
        .map(|r| NodeEnd {
            node: r.node,
            status: r.state.as_str().to_owned(),
            attempts: r.attempts,
            started_at: r.started_at,
            ended_at: r.ended_at,
            failure: r.failure,
            writes: r.writes,
        })
        .collect();
    Ok(Json(RunNodes { run_id: id, nodes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_descriptions_and_answer_schemas_come_out() {
        let text = "version: 1\nname: t\ndescription: a test\ninputs:\n  q: { type: string, description: the question }\n  n: { type: integer, default: 3 }\nstate:\n  a: { reducer: replace }\n  b: { reducer: replace }\n  c: { reducer: replace }\nnodes:\n  one:\n    kind: mock\n    description: first\n    writes: [a]\n  two:\n    kind: wait\n    needs: [one]\n    writes: [b]\n    with:\n      prompt: ok?\n      output: b\n      schema: { type: object, properties: { ok: { type: boolean } } }\n  three:\n    kind: mock\n    needs: [one, two]\n    when: inputs.n > 1\n    writes: [c]\n";
        let w = braid::Engine::new()
            .load_recorded("t", [("", text)])
            .expect("compiles");
        let d = definition(&w);
        assert_eq!(d.description.as_deref(), Some("a test"));
        assert_eq!(d.layers, 3);
        assert_eq!(d.inputs[0].ty, "string");
        assert!(d.inputs[0].required);
        assert_eq!(d.inputs[0].description.as_deref(), Some("the question"));
        assert_eq!(d.inputs[1].default, Some(serde_json::json!(3)));
        let layer = |n: &str| d.nodes.iter().find(|x| x.name == n).map(|x| x.layer);
        assert_eq!(
            (layer("one"), layer("two"), layer("three")),
            (Some(0), Some(1), Some(2))
        );
        let three = d.nodes.iter().find(|x| x.name == "three").expect("three");
        assert_eq!(three.needs, ["one", "two"]);
        assert_eq!(three.when.as_deref(), Some("inputs.n > 1"));
        let two = d.nodes.iter().find(|x| x.name == "two").expect("two");
        assert_eq!(
            two.answer_schema.as_ref().map(|s| &s["type"]),
            Some(&serde_json::json!("object"))
        );
        assert_eq!(two.writes, ["b"]);
    }
}
