//! The result of a run: its status, final state, and a report of every node.
//!
//! Every node of the plan appears exactly once in [`RunReport::nodes`] (in canonical order) with a
//! definite [`NodeStatus`]. The report also carries what shows the speedup: the wall time, the sum
//! of node times, the critical path (the chain of nodes that set the wall time) and their ratio.

use std::sync::Arc;
use std::time::Duration;

use braid_core::{ExecutionMode, FailureKind, Plan};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// Serializes a duration as fractional milliseconds.
pub(crate) fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ms(d, s),
        None => s.serialize_none(),
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every node succeeded or was skipped.
    Succeeded,
    /// The run finished, but at least one node failed and wrote its fallback (`on_error: continue`).
    Degraded,
    /// A node with `on_error: fail` failed, or the run's timeout expired.
    Failed,
    /// Some node is waiting for a person's answer (a `wait` node), and everything that could run
    /// without it has: the run can be continued with the answer. A failure wins over waiting.
    Waiting,
}

impl RunStatus {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Degraded => "degraded",
            RunStatus::Failed => "failed",
            RunStatus::Waiting => "waiting",
        }
    }
}

/// How a node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// It returned a valid update.
    Succeeded,
    /// It failed with `on_error: continue`; its fallback was written.
    FellBack,
    /// It failed and, with `on_error: fail`, ended the run.
    Failed,
    /// Its `when` was false.
    Skipped,
    /// It was running (or waiting to retry) when the run was cancelled.
    Cancelled,
    /// The run ended before it could start.
    NotStarted,
    /// It waits for a person's answer (a `wait` node reached without one): not a failure. It
    /// made no attempt, its dependents did not start, and it runs again, with the answer, when
    /// the run is continued.
    Waiting,
}

impl NodeStatus {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::FellBack => "fell_back",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Cancelled => "cancelled",
            NodeStatus::NotStarted => "not_started",
            NodeStatus::Waiting => "waiting",
        }
    }
}

/// Why an attempt or a node failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The failure's type.
    pub kind: FailureKind,
    /// What went wrong.
    pub message: String,
}

/// One failed attempt of a node that was retried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptReport {
    /// The attempt number, from 1.
    pub attempt: u32,
    /// When it started, from the run's start, in milliseconds.
    #[serde(serialize_with = "ms", rename = "start_ms")]
    pub start: Duration,
    /// When it ended, in milliseconds.
    #[serde(serialize_with = "ms", rename = "end_ms")]
    pub end: Duration,
    /// Why it failed.
    pub failure: Failure,
}

/// What happened to one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    /// The node.
    pub name: Arc<str>,
    /// Its kind.
    pub kind: Arc<str>,
    /// How it ended.
    pub status: NodeStatus,
    /// Attempts made: 0 if none began (not started, skipped, or cancelled before its first attempt).
    pub attempts: u32,
    /// When it started (its first attempt), from the run's start, in milliseconds.
    #[serde(serialize_with = "opt_ms", rename = "start_ms")]
    pub start: Option<Duration>,
    /// When it ended, from the run's start, in milliseconds.
    #[serde(serialize_with = "opt_ms", rename = "end_ms")]
    pub end: Option<Duration>,
    /// Why it failed (its last attempt's failure), for failed, fallen-back and cancelled nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The failed attempts before the last one, when it was retried.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<AttemptReport>,
    /// What a waiting node asks (its rendered prompt); absent for every other node. (A boxed
    /// `str`, not a `String`: a run's reports of mode 1's seven nodes then stay in the
    /// allocator's small-block cache.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Box<str>>,
}

impl NodeReport {
    /// How long the node took, all attempts and backoff included.
    pub fn duration(&self) -> Duration {
        match (self.start, self.end) {
            (Some(s), Some(e)) => e.saturating_sub(s),
            _ => Duration::ZERO,
        }
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunError {
    /// A node with `on_error: fail` failed.
    NodeFailed {
        /// The node.
        node: String,
        /// Its failure.
        failure: Failure,
    },
    /// The run's timeout expired.
    Timeout {
        /// The timeout.
        #[serde(serialize_with = "ms", rename = "timeout_ms")]
        timeout: Duration,
    },
    /// The run was cancelled from outside (its [`CancelToken`](crate::CancelToken), Ctrl-C).
    Cancelled,
    /// The run's [`Observer`](crate::Observer) could not record a node's end (a journal whose
    /// store went away): the run stops rather than go on unrecorded.
    Observer {
        /// The node whose end was not recorded.
        node: String,
        /// What the observer said.
        message: String,
    },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Cancelled => write!(f, "the run was cancelled"),
            RunError::NodeFailed { node, failure } => {
                write!(
                    f,
                    "node `{node}` failed ({}): {}",
                    failure.kind, failure.message
                )
            }
            RunError::Timeout { timeout } => write!(f, "the run's timeout of {timeout:?} expired"),
            RunError::Observer { node, message } => {
                write!(
                    f,
                    "the end of node `{node}` could not be recorded: {message}"
                )
            }
        }
    }
}

/// The report of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The run's id: the one it was given ([`RunOptions::run_id`](crate::RunOptions::run_id)),
    /// or the one made when a node asked for it; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Arc<str>>,
    /// The workflow's name.
    pub workflow: Arc<str>,
    /// How the run ended.
    pub status: RunStatus,
    /// `parallel` or `sequential`.
    pub mode: &'static str,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// From the run's start to its end.
    #[serde(serialize_with = "ms", rename = "wall_time_ms")]
    pub wall_time: Duration,
    /// The sum of every node's duration: what a sequential run would take.
    #[serde(serialize_with = "ms", rename = "node_time_sum_ms")]
    pub node_time_sum: Duration,
    /// Sum of node times over wall time.
    pub speedup: f64,
    /// The chain of nodes that set the wall time, first to last.
    pub critical_path: Vec<Arc<str>>,
    /// Every node, in canonical order.
    pub nodes: Vec<NodeReport>,
}

impl RunReport {
    /// The report of the node of that name.
    pub fn node(&self, name: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| &*n.name == name)
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    /// How it ended (also in the report).
    pub status: RunStatus,
    /// The final state: every declared key, `null` where it has no value.
    pub state: Value,
    /// What happened.
    pub report: RunReport,
}

impl RunResult {
    /// Assembles a run's result from its nodes' reports (in canonical order) and final state:
    /// the status, speedup and critical path follow from them. The runtime's own way to report
    /// a run, and a journal's to report one it recorded.
    pub fn assemble(
        plan: &Plan,
        mode: ExecutionMode,
        nodes: Vec<NodeReport>,
        state: Value,
        error: Option<RunError>,
        ends: Ends,
        wall_time: Duration,
    ) -> RunResult {
        // A failure wins over waiting, and waiting over degraded-ness (reported once the run,
        // continued, finishes).
        let status = match (&error, ends) {
            (Some(_), _) => RunStatus::Failed,
            (None, Ends { waiting: true, .. }) => RunStatus::Waiting,
            (None, Ends { degraded: true, .. }) => RunStatus::Degraded,
            (None, _) => RunStatus::Succeeded,
        };
        let node_time_sum: Duration = nodes.iter().map(NodeReport::duration).sum();
        let speedup = if wall_time.is_zero() {
            1.0
        } else {
            node_time_sum.as_secs_f64() / wall_time.as_secs_f64()
        };
        let critical_path = critical_path(plan, &nodes);
        RunResult {
            status,
            state,
            report: RunReport {
                run_id: None,
                workflow: plan.name().clone(),
                status,
                mode: match mode {
                    ExecutionMode::Parallel => "parallel",
                    ExecutionMode::Sequential => "sequential",
                },
                error,
                wall_time,
                node_time_sum,
                speedup,
                critical_path,
                nodes,
            },
        }
    }
}

/// What the nodes' ends say of the run's status, besides a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ends {
    /// Some node fell back.
    pub degraded: bool,
    /// Some node is waiting for an answer.
    pub waiting: bool,
}

/// The chain of nodes that set the wall time: from the node that ended last, back through the
/// need that ended last, to a node that needed nothing that ran.
fn critical_path(plan: &Plan, nodes: &[NodeReport]) -> Vec<Arc<str>> {
    let end = |i: usize| {
        nodes[i]
            .end
            .filter(|_| nodes[i].status != NodeStatus::NotStarted)
    };
    let Some(mut cur) = (0..nodes.len())
        .filter(|&i| end(i).is_some())
        .max_by_key(|&i| (end(i), i))
    else {
        return Vec::new();
    };
    let mut path = vec![nodes[cur].name.clone()];
    loop {
        let prev = plan.nodes()[cur]
            .needs
            .iter()
            .map(|n| n.index())
            .filter(|&i| end(i).is_some())
            .max_by_key(|&i| (end(i), i));
        match prev {
            Some(p) => {
                path.push(nodes[p].name.clone());
                cur = p;
            }
            None => break,
        }
    }
    path.reverse();
    path
}
