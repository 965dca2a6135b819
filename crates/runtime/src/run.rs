//! Starting a run: from scratch ([`run`]), or from partial state ([`run_from`]) — some nodes
//! already settled in an earlier run, their writes folded as if they had just run, only the rest
//! run — and the [`Executor`] through which the run's nodes run inner work (a `map`'s items, a
//! sub-workflow).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use braid_core::{
    Answer, ExecutionMode, Executor, Items, ItemsOutcome, NodeContext, NodeError, NodeId, Plan,
    RunId, RunScope, SubRun, WorkFuture,
};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::attempt::{RunShared, check_output};
use crate::event::{Event, EventSink};
use crate::ledger::{Ledger, Prior};
use crate::metrics::PlanMetrics;
use crate::options::RunOptions;
use crate::report::{Failure, NodeStatus, RunResult, RunStatus};
use crate::scheduler::Scheduler;

/// A node that settled in an earlier run of the same plan (as a journal recorded it).
#[derive(Debug, Clone, PartialEq)]
pub struct PriorNode {
    /// The node's name.
    pub node: String,
    /// How it ended: succeeded, fell back or skipped (the ends that let dependents start). A
    /// node that was `waiting` is not a prior: it runs again, to take its answer.
    pub status: NodeStatus,
    /// Attempts it made.
    pub attempts: u32,
    /// When it started and ended, as offsets from the start of the run being continued.
    pub start: Option<Duration>,
    /// See `start`.
    pub end: Option<Duration>,
    /// Why it failed, for a node that fell back.
    pub failure: Option<Failure>,
    /// The writes it contributed (its update, or its fallback): key → value.
    pub writes: Map<String, Value>,
}

/// Why a set of [`PriorNode`]s cannot continue a run of a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartialRunError {
    /// A node the plan does not have.
    #[error("workflow `{workflow}` has no node `{node}`")]
    UnknownNode {
        /// The workflow.
        workflow: String,
        /// The node.
        node: String,
    },
    /// The same node given twice.
    #[error("node `{node}` is given twice")]
    Duplicate {
        /// The node.
        node: String,
    },
    /// A status that does not let a run go on (failed, cancelled, not started, waiting: a
    /// waiting node runs again when the run is continued, with its answer).
    #[error("node `{node}` is `{status}`; only succeeded, fell_back and skipped nodes carry over")]
    NotSettled {
        /// The node.
        node: String,
        /// Its status.
        status: &'static str,
    },
    /// A settled node whose need did not settle: its writes could not have been computed.
    #[error("node `{node}` settled but `{need}`, which it needs, did not")]
    NeedNotSettled {
        /// The node.
        node: String,
        /// Its need.
        need: String,
    },
    /// Writes the node may not make, or values its keys' reducers refuse.
    #[error("node `{node}`: {message}")]
    InvalidWrites {
        /// The node.
        node: String,
        /// What is wrong.
        message: String,
    },
}

/// A plan and the nodes of it that already settled: what [`run_from`] continues. Built only by
/// [`PartialRun::new`], which proves the settled nodes can be continued from.
pub struct PartialRun {
    plan: Arc<Plan>,
    /// By node, in canonical order.
    settled: Vec<(NodeId, Prior)>,
}

impl std::fmt::Debug for PartialRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialRun")
            .field("workflow", self.plan.name())
            .field("settled", &self.settled.len())
            .finish()
    }
}

impl PartialRun {
    /// Checks `nodes` against `plan`: every node exists once, ended in a way that lets the run go
    /// on (succeeded, fell back, skipped), every node it needs is among them (the set is closed
    /// under `needs`), and its writes are ones it may make.
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`PartialRunError`].
    pub fn new(plan: Arc<Plan>, nodes: Vec<PriorNode>) -> Result<Self, PartialRunError> {
        let mut by_id: Vec<Option<Prior>> = (0..plan.nodes().len()).map(|_| None).collect();
        for n in nodes {
            let Some(id) = plan.node_by_name(&n.node) else {
                return Err(PartialRunError::UnknownNode {
                    workflow: plan.name().to_string(),
                    node: n.node,
                });
            };
            if by_id[id.index()].is_some() {
                return Err(PartialRunError::Duplicate { node: n.node });
            }
            if !matches!(
                n.status,
                NodeStatus::Succeeded | NodeStatus::FellBack | NodeStatus::Skipped
            ) {
                return Err(PartialRunError::NotSettled {
                    node: n.node,
                    status: n.status.as_str(),
                });
            }
            if n.status == NodeStatus::Skipped && !n.writes.is_empty() {
                return Err(PartialRunError::InvalidWrites {
                    node: n.node,
                    message: "a skipped node writes nothing".to_owned(),
                });
            }
            let writes = check_output(&plan, id, Value::Object(n.writes)).map_err(|e| {
                PartialRunError::InvalidWrites {
                    node: n.node.clone(),
                    message: e.message,
                }
            })?;
            by_id[id.index()] = Some(Prior {
                status: n.status,
                attempts: n.attempts,
                start: n.start,
                end: n.end,
                failure: n.failure,
                writes,
            });
        }
        for (i, prior) in by_id.iter().enumerate() {
            if prior.is_none() {
                continue;
            }
            let node = &plan.nodes()[i];
            if let Some(need) = node.needs.iter().find(|d| by_id[d.index()].is_none()) {
                return Err(PartialRunError::NeedNotSettled {
                    node: node.name.to_string(),
                    need: plan.node(*need).name.to_string(),
                });
            }
        }
        let settled = by_id
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| Some((NodeId(i as u32), p?)))
            .collect();
        Ok(PartialRun { plan, settled })
    }

    /// The plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// The state the settled nodes' writes fold into, in canonical order: what a run stopped
    /// at this point holds (every other key at its default). Runs nothing. What a journal shows
    /// of a run it recorded, without ever storing the state itself.
    pub fn state(&self) -> Value {
        let mut ledger = Ledger::new(&self.plan, None);
        let origin = Instant::now();
        for (id, prior) in &self.settled {
            ledger.restore(&self.plan, *id, origin, prior.clone());
        }
        ledger.into_store().finish(&self.plan)
    }
}

/// Runs a plan to the end and reports what happened. `inputs` must already be resolved
/// ([`resolve_inputs`](crate::resolve_inputs)).
///
/// # Cancel safety
///
/// Dropping the returned future drops (so cancels) every node still running; nothing is left
/// behind.
pub fn run(
    plan: Arc<Plan>,
    inputs: impl Into<Arc<Value>>,
    options: RunOptions,
) -> impl Future<Output = RunResult> + Send + 'static {
    start(plan, Vec::new(), inputs.into(), options, None)
}

/// Continues a run from partial state: the nodes of `partial` that settled keep their status and
/// writes, which are folded in canonical order exactly as if they had just run (so the final
/// state is the one an uninterrupted run ends with); they are never executed again, and get no
/// event and no call of the observer (they were recorded the first time). The rest runs. Their
/// report times are the offsets `partial` gave.
///
/// # Cancel safety
///
/// As [`run`].
pub fn run_from(
    partial: PartialRun,
    inputs: impl Into<Arc<Value>>,
    options: RunOptions,
) -> impl Future<Output = RunResult> + Send + 'static {
    start(partial.plan, partial.settled, inputs.into(), options, None)
}

/// Both entry points, and sub-runs (whose events go to their parent's sink).
fn start(
    plan: Arc<Plan>,
    settled: Vec<(NodeId, Prior)>,
    inputs: Arc<Value>,
    options: RunOptions,
    parent_sink: Option<EventSink>,
) -> impl Future<Output = RunResult> + Send + 'static {
    // A plain function returning the run's future, not an `async fn`: the future then holds only
    // what the run needs, once (an `async fn` would also keep its arguments).
    let RunOptions {
        events,
        event_hook,
        cancel,
        seed,
        observer,
        run_id,
        answers,
        ..
    } = options;
    let answers = resolve_answers(&plan, answers);
    let events = parent_sink
        .or(event_hook.map(EventSink::Hook))
        .or(events.map(EventSink::Channel));
    let mode = options.mode.unwrap_or(plan.mode());
    let limit = match mode {
        ExecutionMode::Sequential => 1,
        ExecutionMode::Parallel => options
            .max_concurrency
            .or(plan.max_concurrency())
            .map_or(usize::MAX, |n| n.max(1) as usize),
    };
    let timeout = options.timeout.or(plan.timeout());
    let span = tracing::info_span!("run", workflow = %plan.name(), mode = ?mode, status = tracing::field::Empty);
    let run_span = span.clone();
    async move {
        let run_start = Instant::now();
        let n = plan.nodes().len();
        // A timeout too large to add (`Duration::MAX`) is no deadline at all.
        let deadline = timeout.and_then(|t| run_start.checked_add(t));
        // The run's shared state is also the executor of its nodes' inner work: the scope
        // points back at it, weakly, so no allocation is added per run.
        let run = Arc::new_cyclic(|me: &std::sync::Weak<RunShared>| {
            let executor: std::sync::Weak<dyn Executor> = me.clone();
            RunShared {
                scope: Arc::new(RunScope {
                    plan: plan.clone(),
                    inputs,
                    run_id: run_id.map(RunId::given).unwrap_or_default(),
                    executor,
                    answers,
                }),
                start: run_start,
                deadline,
                attempts: (0..n).map(|_| AtomicU32::new(0)).collect(),
                retries: std::sync::Mutex::new(Vec::new()),
                events,
                sequential: mode == ExecutionMode::Sequential,
                cancel,
            }
        });
        let mut ledger = Ledger::new(&plan, observer);
        let resumed = !settled.is_empty();
        for (id, prior) in settled {
            ledger.restore(&plan, id, run_start, prior);
        }
        run.emit(|| Event::RunStarted {
            workflow: plan.name().clone(),
            nodes: n,
        });
        let metrics = PlanMetrics::of(&plan);
        let gauge = metrics.map_or_else(metrics::Gauge::noop, |m| m.in_flight().clone());
        let mut scheduler = Scheduler::new(&plan, run.clone(), ledger, resumed, seed, gauge);
        scheduler.drive(limit, timeout).await;
        let (nodes, store, error, ends) = scheduler.finish().await;
        let wall_time = Instant::now().saturating_duration_since(run_start);
        let state = store.finish(&plan);
        let mut result = RunResult::assemble(&plan, mode, nodes, state, error, ends, wall_time);
        result.report.run_id = run.scope.run_id.peek().cloned();
        run.emit(|| Event::RunFinished {
            status: result.status,
            wall_time,
        });
        if let Some(m) = metrics {
            m.record_run(&result.report);
        }
        run_span.record("status", result.status.as_str());
        tracing::info!(
            status = result.status.as_str(),
            wall_ms = result.report.wall_time.as_secs_f64() * 1000.0,
            speedup = result.report.speedup,
            "run finished"
        );
        result
    }
    .instrument(span)
}

/// The answers a run was given, by node id. Answers for nodes the plan does not have, or that do
/// not wait, are dropped with a warning. None given: an empty slice, which allocates nothing.
fn resolve_answers(plan: &Plan, answers: Vec<(String, Answer)>) -> Box<[(NodeId, Answer)]> {
    if answers.is_empty() {
        return Box::default();
    }
    answers
        .into_iter()
        .filter_map(|(name, answer)| {
            let id = plan
                .node_by_name(&name)
                .filter(|&id| plan.node(id).handler.waits().is_some());
            if id.is_none() {
                tracing::warn!(node = %name, "an answer for a node that does not wait is ignored");
            }
            Some((id?, answer))
        })
        .collect()
}

/// Runs the inner work of one run's nodes, with the run's mode, deadline, cancellation and
/// event sink.
impl Executor for RunShared {
    fn run_items(&self, parent: &NodeContext, items: Items) -> WorkFuture<ItemsOutcome> {
        // A sequential run runs everything one at a time, a map's items included.
        let limit = if self.sequential {
            1
        } else {
            items.max_concurrency.unwrap_or(usize::MAX).max(1)
        };
        Box::pin(crate::items::run_items(
            Arc::new(parent.inner(parent.seed(), Value::Null)),
            items,
            limit,
            self.deadline,
        ))
    }

    fn run_plan(
        &self,
        parent: &NodeContext,
        plan: Arc<Plan>,
        inputs: Map<String, Value>,
    ) -> WorkFuture<Result<SubRun, NodeError>> {
        let inputs = match crate::resolve_inputs(&plan, inputs) {
            Ok(inputs) => inputs,
            Err(errors) => {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                let err = NodeError::new(format!(
                    "inputs of workflow `{}`: {}",
                    plan.name(),
                    list.join("; ")
                ))
                .permanent();
                return Box::pin(std::future::ready(Err(err)));
            }
        };
        let now = Instant::now();
        // The sub-run ends by the parent's deadline at the latest.
        let remaining = self.deadline.map(|d| d.saturating_duration_since(now));
        let timeout = match (plan.timeout(), remaining) {
            (Some(own), Some(left)) => Some(own.min(left)),
            (own, left) => own.or(left),
        };
        let options = RunOptions {
            seed: parent.seed(),
            // A sequential parent runs its sub-workflows sequentially too.
            mode: self.sequential.then_some(ExecutionMode::Sequential),
            timeout,
            cancel: self.cancel.clone(),
            // The sub-run's nodes key their side effects under the node that runs them.
            run_id: Some(Arc::from(format!("{}:{}", parent.run_id(), parent.node()))),
            ..RunOptions::default()
        };
        let sink = self
            .events
            .clone()
            .map(|s| EventSink::Nested(Arc::new(s), Arc::from(parent.node())));
        let run = start(plan, Vec::new(), Arc::new(inputs), options, sink);
        Box::pin(async move {
            let result = run.await;
            Ok(SubRun {
                failed: (result.status == RunStatus::Failed).then(|| {
                    result
                        .report
                        .error
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "it failed".to_owned())
                }),
                degraded: result.status == RunStatus::Degraded,
                state: result.state,
            })
        })
    }
}
