//! The API's request and response bodies: serializable counterparts of the service's own
//! types, converted by hand, whose `ToSchema` derivations generate the OpenAPI document.

use braid::durable::{Micros, RunRecord};
use braid::{RunError, RunResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// The workflows served.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowList {
    /// One per workflow file, by file name.
    pub workflows: Vec<WorkflowView>,
}

/// A workflow file and the version serving under its name.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowView {
    /// The workflow's `name:` (the file's stem while it never compiled).
    pub name: String,
    /// The file, relative to the served directory.
    pub file: String,
    /// The fingerprint of the version new runs use; `null` when none serves.
    pub fingerprint: Option<String>,
    /// Whether the file as it is now compiles. When not, `fingerprint` is an older version
    /// (if any) and `diagnostics` say why.
    pub valid: bool,
    /// When the serving version was loaded (microseconds since the epoch).
    pub loaded_at: Option<Micros>,
    /// The current file's diagnostics, as `braid validate --format json` prints them.
    #[schema(value_type = Vec<Object>)]
    pub diagnostics: Value,
    /// The same, rendered as `braid validate` renders them; `null` when the file compiles.
    pub diagnostics_text: Option<String>,
    /// A JSON Schema of the serving version's inputs (`{"inputs": …}` is the run body).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub inputs_schema: Option<Value>,
    /// The serving version's graph, as a Mermaid flowchart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
}

/// The body that starts a run.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The inputs, by name; missing ones take their defaults.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: Value,
}

/// Query of `POST /v1/workflows/{name}/runs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Answer when the run ends (`200` with the finished run) instead of at once (`201`).
    #[serde(default)]
    pub wait: bool,
}

/// A run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// Its id.
    pub run_id: String,
    /// Its workflow's name.
    pub workflow: String,
    /// The fingerprint of the version it runs on.
    pub fingerprint: String,
    /// `running`, `waiting`, `succeeded`, `degraded`, `failed` or `cancelled`.
    pub status: String,
    /// When it was created (microseconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Micros>,
    /// When it last ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Micros>,
    /// How many times it was resumed or retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// The replica that claimed it last (services sharing a store, `docs/scaling.md`): while it
    /// is `running`, the one running it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Why it failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Its inputs, resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Value>,
    /// Its state: final, or so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub state: Option<Value>,
    /// Its report: every node's status, attempts and timings; speedup and critical path.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub report: Option<Value>,
}

impl RunView {
    /// The record alone (lists).
    pub(crate) fn record(r: &RunRecord) -> Self {
        RunView {
            run_id: r.id.clone(),
            workflow: r.workflow.clone(),
            fingerprint: r.fingerprint.clone(),
            status: r.state.as_str().to_owned(),
            created_at: Some(r.created_at),
            ended_at: r.ended_at,
            restarts: Some(r.restarts),
            replica: r.owner.clone(),
            error: r.error.clone(),
            inputs: None,
            state: None,
            report: None,
        }
    }

    /// A run just started (or continued), `running`.
    pub(crate) fn started(run_id: String, workflow: String, fingerprint: String) -> Self {
        RunView {
            run_id,
            workflow,
            fingerprint,
            status: "running".to_owned(),
            created_at: None,
            ended_at: None,
            restarts: None,
            replica: None,
            error: None,
            inputs: None,
            state: None,
            report: None,
        }
    }

    /// A run that ended here, from its result.
    pub(crate) fn finished(mut self, result: &RunResult) -> Self {
        self.status = match &result.report.error {
            Some(RunError::Cancelled) => "cancelled",
            _ => result.status.as_str(),
        }
        .to_owned();
        self.error = result
            .report
            .error
            .as_ref()
            .and_then(|e| serde_json::to_value(e).ok());
        self.state = Some(result.state.clone());
        self.report = serde_json::to_value(&result.report).ok();
        self
    }
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// The runs.
    pub runs: Vec<RunView>,
    /// Give it as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/runs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this status.
    pub status: Option<String>,
    /// At most this many (1 to 1000; default 50).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The body of `POST /v1/runs/{id}/resume`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRun {
    /// The waiting node the value answers (default: the run's only waiting node).
    pub node: Option<String>,
    /// The answer for the waiting node; absent to continue a run that stopped or was cancelled.
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
}

/// The body of `POST /v1/runs/{id}/retry`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRun {
    /// Run this node and everything downstream of it again (default: the failed and
    /// fallen-back nodes).
    pub from: Option<String>,
}

/// Query of `POST /v1/validate`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ValidateQuery {
    /// The file name diagnostics name (default `workflow.yaml`). Includes are not followed.
    pub name: Option<String>,
}

/// What `POST /v1/validate` found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validation {
    /// Whether it compiles (warnings allowed).
    pub valid: bool,
    /// Every diagnostic, as `braid validate --format json` prints them.
    #[schema(value_type = Vec<Object>)]
    pub diagnostics: Value,
    /// The same, rendered as `braid validate` renders them.
    pub rendered: String,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` (`readyz`: the store is unreachable or nothing is loaded yet).
    pub status: String,
    /// Runs in flight in this process.
    pub runs_in_flight: usize,
    /// Workflows serving a version.
    pub workflows: usize,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
