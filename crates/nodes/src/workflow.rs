//! `workflow`: runs another workflow file as one node.
//!
//! ```yaml
//! retrieve:
//!   kind: workflow
//!   writes: [rag_results]
//!   with:
//!     path: retrieval.yaml                 # relative to this file
//!     inputs: { query: "{{ inputs.query }}", top_k: 5 }
//!     outputs: { rag_results: documents }  # this node's key <- the sub-workflow's final key
//! ```
//!
//! The file is compiled with this one (`braid validate` follows the reference and reports cycles
//! across files, and the sub-workflow's own errors), and run on each call by the runtime that runs
//! this node ([`NodeContext::run_plan`]): its nodes run in parallel as usual (one at a time in a
//! sequential run), it sees this run's cancellation and deadline, its events reach this run's
//! event stream attributed to this node, and cancelling this node (timeout, fail-fast) cancels
//! the whole sub-run. A sub-run that fails is this node's failure; a degraded one still succeeds.

use std::sync::Arc;

use braid_core::registry::parse_params;
use braid_core::template;
use braid_core::{
    BuildContext, BuildError, NamedAs, Node, NodeContext, NodeError, NodeFuture, NodeKind, Plan,
    SubRun, Templated, WorkFuture,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::http::escape;

/// Parameters of the `workflow` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowParams {
    /// The workflow file to run, relative to the file that names it.
    pub path: String,
    /// The sub-workflow's inputs: its input name → value. Strings may be templates over this
    /// workflow's `inputs` and `state`. Inputs left out take their defaults.
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// What this node writes: one of its `writes` → the name of a key of the sub-workflow's final
    /// state. Keys not listed are not written.
    #[serde(default)]
    pub outputs: Map<String, Value>,
}

/// The `workflow` kind.
#[derive(Debug)]
pub struct WorkflowKind;

struct SubWorkflow {
    plan: Arc<Plan>,
    inputs: Templated,
    /// (this node's key, the sub-workflow's key).
    outputs: Vec<(String, String)>,
}

impl Node for SubWorkflow {
    fn call(&self, ctx: NodeContext) -> NodeFuture {
        let plan = self.plan.clone();
        let outputs = self.outputs.clone();
        let run = ctx
            .render(&self.inputs)
            .and_then(|given| start(&ctx, plan.clone(), given));
        Box::pin(async move {
            let sub = run?.await?;
            if let Some(why) = sub.failed {
                return Err(NodeError::new(format!(
                    "workflow `{}` failed: {why}",
                    plan.name()
                )));
            }
            let Value::Object(mut state) = sub.state else {
                return Ok(Value::Object(Map::new()));
            };
            let mut update = Map::with_capacity(outputs.len());
            for (mine, theirs) in outputs {
                update.insert(mine, state.remove(&theirs).unwrap_or(Value::Null));
            }
            Ok(Value::Object(update))
        })
    }
}

/// Asks the runtime to run the sub-workflow with the rendered inputs.
fn start(
    ctx: &NodeContext,
    plan: Arc<Plan>,
    given: Value,
) -> Result<WorkFuture<Result<SubRun, NodeError>>, NodeError> {
    let Value::Object(given) = given else {
        return Err(NodeError::new("the sub-workflow's `inputs` must be a mapping").permanent());
    };
    ctx.run_plan(plan, given)
}

impl NodeKind for WorkflowKind {
    fn name(&self) -> &str {
        "workflow"
    }
    fn description(&self) -> &str {
        "Runs another workflow file as one node."
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<WorkflowParams>())
    }
    fn build(
        &self,
        params: Option<&Value>,
        cx: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let p: WorkflowParams = parse_params(params)?;
        let plan = cx.load_workflow("/path", &p.path)?;
        if let Some(waits) = plan.nodes().iter().find(|n| n.handler.waits().is_some()) {
            return Err(BuildError::params(
                "/path",
                format!(
                    "workflow `{}` has a `{}` node, `{}`: a `{}` node cannot run inside a \
                     sub-workflow yet",
                    plan.name(),
                    waits.kind,
                    waits.name,
                    waits.kind
                ),
            ));
        }
        for name in p.inputs.keys() {
            if !plan.inputs().iter().any(|i| &*i.name == name) {
                let known: Vec<String> = plan
                    .inputs()
                    .iter()
                    .map(|i| format!("`{}`", i.name))
                    .collect();
                return Err(BuildError::params(
                    format!("/inputs/{name}"),
                    format!(
                        "workflow `{}` has no input `{name}`; its inputs are {}",
                        plan.name(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        check_inputs(&plan, &p.inputs)?;
        let mut outputs = Vec::with_capacity(p.outputs.len());
        for (mine, theirs) in p.outputs {
            let Some(theirs) = theirs.as_str() else {
                return Err(BuildError::params(
                    format!("/outputs/{mine}"),
                    "name a key of the sub-workflow's state",
                ));
            };
            if !plan.keys().iter().any(|k| &*k.name == theirs) {
                let known: Vec<String> = plan
                    .keys()
                    .iter()
                    .map(|k| format!("`{}`", k.name))
                    .collect();
                return Err(BuildError::params(
                    format!("/outputs/{mine}"),
                    format!(
                        "workflow `{}` has no state key `{theirs}`; its keys are {}",
                        plan.name(),
                        known.join(", ")
                    ),
                ));
            }
            cx.will_write(&format!("/outputs/{}", escape(&mine)), NamedAs::Key, &mine);
            outputs.push((mine, theirs.to_owned()));
        }
        let inputs = cx.templated("/inputs", &Value::Object(p.inputs));
        Ok(Arc::new(SubWorkflow {
            plan,
            inputs,
            outputs,
        }))
    }
}

/// Checks what the file gives the sub-workflow against its inputs, as far as it can be known
/// before the node runs: a literal of the wrong type (`InputType::accepts`, the runtime's check)
/// and a required input left out. A string that is one `{{ expression }}` keeps its value's type,
/// which only the run knows; any other template renders to text.
fn check_inputs(plan: &Plan, given: &Map<String, Value>) -> Result<(), BuildError> {
    for decl in plan.inputs() {
        let Some(value) = given.get(&*decl.name) else {
            continue;
        };
        let fits = match value {
            Value::String(s) if template::is_template(s) => {
                if template::single_expression(s).is_some() {
                    continue;
                }
                decl.ty.accepts(&Value::String(String::new()))
            }
            v => decl.ty.accepts(v),
        };
        if !fits {
            return Err(BuildError::params(
                format!("/inputs/{}", escape(&decl.name)),
                format!(
                    "workflow `{}`'s input `{}` is of type `{}`, but this gives it {}",
                    plan.name(),
                    decl.name,
                    decl.ty.as_str(),
                    describe(value),
                ),
            ));
        }
    }
    let missing: Vec<String> = plan
        .inputs()
        .iter()
        .filter(|d| d.default.is_none() && !given.contains_key(&*d.name))
        .map(|d| format!("`{}` (type `{}`)", d.name, d.ty.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(BuildError::params(
        "/inputs",
        format!(
            "workflow `{}` requires input{} {}, which `inputs` does not give",
            plan.name(),
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        ),
    ))
}

/// A value as a diagnostic names it: its JSON type and, when short, itself.
fn describe(value: &Value) -> String {
    let ty = braid_core::node::type_name(value);
    let text = value.to_string();
    if text.chars().count() <= 40 {
        format!("{ty} `{text}`")
    } else {
        ty.to_owned()
    }
}
