//! From a run's journal back to a run: the settled nodes a continued run starts from, the nodes a
//! retry runs again, the answers for waiting nodes, and the state and report a journal shows.

use std::collections::HashSet;
use std::time::Duration;

use braid_store::{Micros, NodeRecord, NodeState, RunRecord, RunState};
use serde_json::Value;

use super::{DurableError, Reply};
use crate::{
    Answer, Ends, ExecutionMode, FailureKind, NodeReport, NodeStatus, PartialRun, Plan, PriorNode,
    RunError, RunOptions, RunResult, Workflow,
};
use braid_runtime::report::{AttemptReport, Failure};

/// A run as its journal records it.
#[derive(Debug, Clone)]
pub struct RecordedRun {
    /// The run's record.
    pub record: RunRecord,
    /// Its workflow, compiled from the definition recorded under its fingerprint.
    pub workflow: Workflow,
    /// Its state and report, rebuilt from its nodes' records: the state their writes fold into;
    /// node times from the run's creation. `result.status` is how the nodes ended; the run's own
    /// state (running, waiting, cancelled …) is `record.state`.
    pub result: RunResult,
}

/// The runtime's status of a recorded node.
fn status(state: NodeState) -> NodeStatus {
    match state {
        NodeState::Succeeded => NodeStatus::Succeeded,
        NodeState::FellBack => NodeStatus::FellBack,
        NodeState::Failed => NodeStatus::Failed,
        NodeState::Skipped => NodeStatus::Skipped,
        NodeState::Cancelled => NodeStatus::Cancelled,
        NodeState::Waiting => NodeStatus::Waiting,
    }
}

/// A recorded failure (`{kind, message, retries?}`).
fn failure(v: &Value) -> Option<Failure> {
    Some(Failure {
        kind: FailureKind::parse(v.get("kind")?.as_str()?).unwrap_or(FailureKind::Error),
        message: v.get("message")?.as_str()?.to_owned(),
    })
}

/// The nodes of `nodes` that a continued run keeps (succeeded, fell back, skipped) and `keep`
/// accepts, as the runtime takes them. Their times are not carried: they belong to an earlier
/// segment of the run, whose own clock the new one does not share.
pub(super) fn priors(
    nodes: &[NodeRecord],
    keep: impl Fn(&String) -> bool,
) -> Result<Vec<PriorNode>, DurableError> {
    Ok(nodes
        .iter()
        .filter(|n| n.state.carries_over() && keep(&n.node))
        .map(|n| PriorNode {
            node: n.node.clone(),
            status: status(n.state),
            attempts: n.attempts,
            start: None,
            end: None,
            failure: n.failure.as_ref().and_then(failure),
            writes: n.writes.clone(),
        })
        .collect())
}

/// `seeds` and every node downstream of them.
pub(super) fn downstream(plan: &Plan, seeds: &[String]) -> HashSet<String> {
    let mut hit = vec![false; plan.nodes().len()];
    // Ids are in canonical order, a topological one: a node's needs come before it.
    for (i, node) in plan.nodes().iter().enumerate() {
        hit[i] =
            seeds.iter().any(|s| **s == *node.name) || node.needs.iter().any(|d| hit[d.index()]);
    }
    plan.nodes()
        .iter()
        .zip(hit)
        .filter(|(_, h)| *h)
        .map(|(n, _)| n.name.to_string())
        .collect()
}

/// The answers a resumed run gives its waiting nodes.
pub(super) type Answers = Vec<(String, Answer)>;

/// Checks `reply` against the run's waiting nodes and their deadlines: the answer for the node
/// it names (or the only waiting node), `Expired` for a waiting node whose deadline passed, and
/// an error for a reply that does not fit or a node still waiting without one. Nothing is
/// recorded before this passes.
pub(super) fn answers(
    record: &RunRecord,
    workflow: &Workflow,
    nodes: &[NodeRecord],
    reply: Option<Reply>,
) -> Result<Answers, DurableError> {
    let plan = workflow.plan();
    let now = braid_store::now_micros();
    let waiting: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Waiting)
        .collect();
    let names = || {
        waiting
            .iter()
            .map(|n| format!("`{}`", n.node))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The node the reply answers.
    let target = match &reply {
        None => None,
        Some(Reply {
            node: Some(node), ..
        }) => {
            if plan.node_by_name(node).is_none() {
                return Err(DurableError::UnknownNode {
                    run: record.id.clone(),
                    workflow: plan.name().to_string(),
                    node: node.clone(),
                });
            }
            if !waiting.iter().any(|n| n.node == *node) {
                return Err(DurableError::Answer(if waiting.is_empty() {
                    format!(
                        "run `{}` is not waiting for an answer; resume it without a value",
                        record.id
                    )
                } else {
                    format!(
                        "node `{node}` of run `{}` is not waiting for an answer; {} is",
                        record.id,
                        names()
                    )
                }));
            }
            Some(node.clone())
        }
        Some(Reply { node: None, .. }) => match waiting.as_slice() {
            [] => {
                return Err(DurableError::Answer(format!(
                    "run `{}` is not waiting for an answer; resume it without a value",
                    record.id
                )));
            }
            [one] => Some(one.node.clone()),
            _ => {
                return Err(DurableError::Answer(format!(
                    "run `{}` waits at {}; name the node the value answers (`--node NODE`)",
                    record.id,
                    names()
                )));
            }
        },
    };
    let mut answers = Vec::new();
    for n in &waiting {
        let Some(id) = plan.node_by_name(&n.node) else {
            continue;
        };
        let Some(wait) = plan.node(id).handler.waits() else {
            continue;
        };
        let expired = wait.deadline().is_some_and(|d| {
            let d = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            now >= n.ended_at.saturating_add(d)
        });
        let prompt = n
            .failure
            .as_ref()
            .and_then(|f| f.get("prompt")?.as_str())
            .unwrap_or_default();
        if target.as_deref() == Some(n.node.as_str()) {
            if expired {
                return Err(DurableError::Answer(format!(
                    "node `{}` of run `{}` stopped waiting: its deadline passed; resume without a value to apply its `on_error`",
                    n.node, record.id
                )));
            }
            let value = reply.as_ref().map(|r| r.value.clone()).unwrap_or_default();
            if let Err(problems) = wait.check(&value) {
                return Err(DurableError::Answer(format!(
                    "the answer for node `{}` of run `{}` does not fit its schema:\n  {}",
                    n.node,
                    record.id,
                    problems.join("\n  ")
                )));
            }
            answers.push((n.node.clone(), Answer::Value(value)));
        } else if expired {
            answers.push((n.node.clone(), Answer::Expired));
        } else if target.is_none() {
            return Err(DurableError::Answer(format!(
                "run `{}` waits at node `{}` for an answer ({prompt}); give it with `--value JSON`",
                record.id, n.node
            )));
        }
    }
    Ok(answers)
}

/// Puts the answers into the run's options.
pub(super) fn give_answers(options: &mut RunOptions, answers: Answers) {
    options.answers = answers;
}

/// `t` as an offset from `origin`.
fn offset(origin: Micros, t: Micros) -> Duration {
    Duration::from_micros(u64::try_from(t.saturating_sub(origin)).unwrap_or(0))
}

/// A recorded run error (the report's `error` object) back as the runtime's.
fn run_error(v: &Value) -> Option<RunError> {
    match v.get("kind")?.as_str()? {
        "node_failed" => Some(RunError::NodeFailed {
            node: v.get("node")?.as_str()?.to_owned(),
            failure: failure(v.get("failure")?)?,
        }),
        "timeout" => Some(RunError::Timeout {
            timeout: Duration::from_secs_f64(v.get("timeout_ms")?.as_f64()? / 1000.0),
        }),
        "cancelled" => Some(RunError::Cancelled),
        "observer" => Some(RunError::Observer {
            node: v.get("node")?.as_str()?.to_owned(),
            message: v.get("message")?.as_str()?.to_owned(),
        }),
        _ => None,
    }
}

/// The run's state and report, from its journal.
pub(super) fn rebuild(
    record: RunRecord,
    workflow: &Workflow,
    nodes: &[NodeRecord],
) -> Result<RecordedRun, DurableError> {
    let plan = workflow.plan();
    let partial = PartialRun::new(plan.clone(), priors(nodes, |_| true)?).map_err(|e| {
        DurableError::Journal {
            run: record.id.clone(),
            message: e.to_string(),
        }
    })?;
    let state = partial.state();
    let origin = record.created_at;
    let reports: Vec<NodeReport> = plan
        .nodes()
        .iter()
        .map(|n| {
            let rec = nodes.iter().find(|r| *r.node == *n.name);
            let retries = rec
                .and_then(|r| r.failure.as_ref())
                .and_then(|f| f.get("retries"))
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|a| {
                            Some(AttemptReport {
                                attempt: u32::try_from(a.get("attempt")?.as_u64()?).ok()?,
                                start: offset(origin, a.get("start")?.as_i64()?),
                                end: offset(origin, a.get("end")?.as_i64()?),
                                failure: failure(a)?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            NodeReport {
                name: n.name.clone(),
                kind: n.kind.clone(),
                status: rec.map_or(NodeStatus::NotStarted, |r| status(r.state)),
                attempts: rec.map_or(0, |r| r.attempts),
                start: rec.and_then(|r| r.started_at).map(|t| offset(origin, t)),
                end: rec.map(|r| offset(origin, r.ended_at)),
                failure: rec.and_then(|r| r.failure.as_ref()).and_then(failure),
                retries,
                prompt: rec
                    .filter(|r| r.state == NodeState::Waiting)
                    .and_then(|r| r.failure.as_ref()?.get("prompt")?.as_str())
                    .map(Into::into),
            }
        })
        .collect();
    let ends = Ends {
        degraded: reports.iter().any(|n| n.status == NodeStatus::FellBack),
        waiting: reports.iter().any(|n| n.status == NodeStatus::Waiting),
    };
    let error = record.error.as_ref().and_then(run_error);
    let end = match record.state {
        RunState::Running => braid_store::now_micros(),
        _ => record.ended_at.unwrap_or(record.updated_at),
    };
    let mode = match record.options["mode"].as_str() {
        Some("sequential") => ExecutionMode::Sequential,
        Some("parallel") => ExecutionMode::Parallel,
        _ => plan.mode(),
    };
    let mut result =
        RunResult::assemble(plan, mode, reports, state, error, ends, offset(origin, end));
    result.report.run_id = Some(record.id.as_str().into());
    Ok(RecordedRun {
        record,
        workflow: workflow.clone(),
        result,
    })
}
