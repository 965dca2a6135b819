//! The ready-set scheduler.
//!
//! A node becomes ready the moment the last node it needs has settled (succeeded, fallen back or
//! been skipped), and starts at once if fewer than `max_concurrency` nodes are in flight: there are
//! no supersteps, so a slow branch never holds back an unrelated fast one. Ready nodes start in
//! canonical order (a min-heap on [`NodeId`]), which makes sequential mode — the same loop with a
//! concurrency of one — run exactly in canonical order.
//!
//! Node tasks live in a `JoinSet` owned by this function: when the run ends early (a failed node,
//! the run's deadline) or the run's future is dropped, every task still in flight is aborted.
//! The scheduler itself never blocks and holds no lock: it owns the store and the records, and
//! tasks talk back only through their join results.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use braid_core::plan::{ExecutionMode, OnErrorPolicy};
use braid_core::rng::Rng;
use braid_core::{FailureKind, NodeId, Plan, RunScope, StateView, template};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::event::{Event, EventSender};
use crate::metrics::PlanMetrics;
use crate::report::{
    AttemptReport, Failure, NodeReport, NodeStatus, RunError, RunReport, RunResult, RunStatus,
};
use crate::store::Store;
use crate::task::{Job, NodeRun, Outcome, RunShared, Step, Writes};

/// The failure message of a node whose task panicked in the runtime's own code.
const TASK_PANICKED: &str = "the node's task panicked";

/// The failure message of a node cut short by the run's deadline.
pub(crate) const DEADLINE: &str = "the run's timeout expired while the node was running";

/// How to run a plan; anything left `None` comes from the workflow file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Parallel or sequential, overriding `execution.mode`.
    pub mode: Option<ExecutionMode>,
    /// Bound on nodes in flight, overriding `execution.max_concurrency`.
    pub max_concurrency: Option<u32>,
    /// The run's timeout, overriding `execution.timeout`.
    pub timeout: Option<Duration>,
    /// Seed for all randomness in the run (mock latencies and failures, retry jitter).
    pub seed: u64,
    /// Where to send the run's events; `None` sends none.
    pub events: Option<EventSender>,
    /// Cancels the run from outside; the run then ends `failed` with [`RunError::Cancelled`],
    /// reporting every node and keeping what completed.
    pub cancel: Option<CancelToken>,
}

/// Cancels a run from outside, such as on Ctrl-C or when the request it serves went away.
/// Cheap to clone; every clone cancels the same runs.
#[derive(Debug, Clone)]
pub struct CancelToken(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        CancelToken(Arc::new(tokio::sync::watch::Sender::new(false)))
    }

    /// Cancels every run given this token (now or later).
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when the token is cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Polls a future, turning a panic into `Err`. Used around each node's whole task so that even a
/// bug in the runtime's own task code is reported against the node, never lost.
struct Guarded<F>(F);

impl<F: Future + Unpin> Future for Guarded<F> {
    type Output = Result<F::Output, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(fut).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(_) => Poll::Ready(Err(TASK_PANICKED.to_owned())),
        }
    }
}

/// What the scheduler knows of one node, for its report. Kept small: a run holds one per node.
#[derive(Default)]
struct Record {
    status: Option<NodeStatus>,
    attempts: u32,
    start: Option<Instant>,
    end: Option<Instant>,
    /// Its failure and earlier failed attempts, for the few nodes that have any.
    failed: Option<Box<Failed>>,
}

#[derive(Default)]
struct Failed {
    failure: Option<Failure>,
    retries: Vec<AttemptReport>,
}

impl Record {
    fn failed(&mut self) -> &mut Failed {
        self.failed.get_or_insert_default()
    }
}

struct Scheduler<'a> {
    plan: &'a Arc<Plan>,
    /// Inputs, deadline, attempt counters and event sender, shared with the node tasks.
    run: Arc<RunShared>,
    store: Store,
    records: Vec<Record>,
    remaining: Vec<u32>,
    ready: BinaryHeap<Reverse<NodeId>>,
    /// Node tasks; made at the first spawn (a run whose nodes all finish in place needs none).
    join: Option<JoinSet<TaskEnd>>,
    in_flight: usize,
    seed: u64,
    cancel: Option<CancelToken>,
    /// The run's deadline timer and the cancel token's wait, made on the first wait that needs
    /// them (boxed: most runs never wait on either).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    cancelled: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    error: Option<RunError>,
    degraded: bool,
    in_flight_gauge: metrics::Gauge,
}

/// What a node task returns: its node, and its outcome or the panic that ended the task.
type TaskEnd = (NodeId, Result<Outcome, String>);

/// What ended a wait of the scheduler.
enum Wake {
    Joined(Option<Result<TaskEnd, tokio::task::JoinError>>),
    Deadline,
    Cancelled,
}

/// Runs a plan to the end and reports what happened. `inputs` must already be resolved
/// ([`resolve_inputs`](crate::resolve_inputs)).
///
/// # Cancel safety
///
/// Dropping the returned future aborts every node task still running; nothing is left behind.
pub fn run(
    plan: Arc<Plan>,
    inputs: impl Into<Arc<Value>>,
    options: RunOptions,
) -> impl Future<Output = RunResult> + Send + 'static {
    // A plain function returning the run's future, not an `async fn`: the future then holds only
    // what the run needs, once (an `async fn` would also keep its arguments).
    let inputs: Arc<Value> = inputs.into();
    let RunOptions {
        events,
        cancel,
        seed,
        ..
    } = options;
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
        let run = Arc::new(RunShared {
            scope: Arc::new(RunScope {
                plan: plan.clone(),
                inputs,
                sequential: mode == ExecutionMode::Sequential,
            }),
            start: run_start,
            // A timeout too large to add (`Duration::MAX`) is no deadline at all.
            deadline: timeout.and_then(|t| run_start.checked_add(t)),
            attempts: (0..n).map(|_| AtomicU32::new(0)).collect(),
            retries: std::sync::Mutex::new(Vec::new()),
            events,
        });
        let mut s = Scheduler {
            plan: &plan,
            run,
            store: Store::new(&plan),
            records: (0..n).map(|_| Record::default()).collect(),
            remaining: plan.nodes().iter().map(|p| p.needs.len() as u32).collect(),
            ready: plan.roots().iter().map(|&r| Reverse(r)).collect(),
            join: None,
            in_flight: 0,
            seed,
            cancel,
            timer: None,
            cancelled: None,
            error: None,
            degraded: false,
            in_flight_gauge: PlanMetrics::of(&plan)
                .map_or_else(metrics::Gauge::noop, |m| m.in_flight().clone()),
        };
        s.emit(|| Event::RunStarted {
            workflow: plan.name().clone(),
            nodes: n,
        });
        s.drive(limit, timeout).await;
        let result = s.finish(mode);
        if let Some(m) = PlanMetrics::of(&plan) {
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

impl Scheduler<'_> {
    fn emit(&self, event: impl FnOnce() -> Event) {
        if let Some(tx) = &self.run.events {
            let _ = tx.send(event());
        }
    }

    fn at(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.run.start)
    }

    async fn drive(&mut self, limit: usize, timeout: Option<Duration>) {
        loop {
            while self.error.is_none() && self.in_flight < limit {
                let Some(Reverse(id)) = self.ready.pop() else {
                    break;
                };
                self.start(id);
            }
            // Fail fast, also when a node failed as it started (its `when` did not evaluate) or
            // a node's task saw the run's deadline before this loop did.
            match self.error {
                None => {}
                Some(RunError::Timeout { .. }) => {
                    self.cancel_in_flight(FailureKind::Timeout, DEADLINE).await;
                    return;
                }
                Some(_) => {
                    self.cancel_in_flight(
                        FailureKind::Cancelled,
                        "the run was cancelled because another node failed",
                    )
                    .await;
                    return;
                }
            }
            if self.in_flight == 0 {
                return;
            }
            let next = match self.wait().await {
                Wake::Joined(next) => next,
                Wake::Deadline => {
                    self.error = Some(RunError::Timeout {
                        timeout: timeout.unwrap_or_default(),
                    });
                    self.cancel_in_flight(FailureKind::Timeout, DEADLINE).await;
                    return;
                }
                Wake::Cancelled => {
                    self.error = Some(RunError::Cancelled);
                    self.cancel_in_flight(FailureKind::Cancelled, "the run was cancelled")
                        .await;
                    return;
                }
            };
            match next {
                Some(Ok((id, result))) => self.finished(id, result),
                // A task can only be cancelled by us, and we stop polling before cancelling.
                Some(Err(_)) | None => return,
            }
        }
    }

    fn tasks(&mut self) -> &mut JoinSet<TaskEnd> {
        self.join.get_or_insert_with(JoinSet::new)
    }

    /// Waits for the next node task to end, the run's deadline, or the cancel token, in that
    /// order of priority when several are ready.
    async fn wait(&mut self) -> Wake {
        if self.timer.is_none() {
            if let Some(d) = self.run.deadline {
                self.timer = Some(Box::pin(tokio::time::sleep_until(d)));
            }
        }
        if self.cancelled.is_none() {
            if let Some(token) = self.cancel.clone() {
                self.cancelled = Some(Box::pin(async move { token.cancelled().await }));
            }
        }
        std::future::poll_fn(|cx| {
            match &mut self.join {
                Some(join) => {
                    if let Poll::Ready(next) = join.poll_join_next(cx) {
                        return Poll::Ready(Wake::Joined(next));
                    }
                }
                None => return Poll::Ready(Wake::Joined(None)),
            }
            if let Some(timer) = &mut self.timer {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Deadline);
                }
            }
            if let Some(cancelled) = &mut self.cancelled {
                if cancelled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Cancelled);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// The state a node may read: its `reads`, as they stand now.
    fn view(&self, id: NodeId) -> StateView {
        // A node that reads nothing gets an empty view, which allocates nothing.
        let entries = self
            .plan
            .node(id)
            .reads
            .iter()
            .filter_map(|&k| {
                Some((
                    self.plan.keys()[k.index()].name.clone(),
                    self.store.get(self.plan, k)?.clone(),
                ))
            })
            .collect();
        StateView::new(entries)
    }

    fn start(&mut self, id: NodeId) {
        let plan = self.plan;
        let node = plan.node(id);
        let now = Instant::now();
        let state = self.view(id);
        if let Some(when) = &node.when {
            let raw = template::Raw {
                inputs: &self.run.scope.inputs,
                state: &state,
                vars: None,
            };
            match when.truth(&raw, || {
                template::scope(&self.run.scope.inputs, &state, None)
            }) {
                Ok(true) => {}
                Ok(false) => {
                    let rec = &mut self.records[id.index()];
                    rec.start = Some(now);
                    rec.end = Some(now);
                    rec.status = Some(NodeStatus::Skipped);
                    self.settle(id, None);
                    self.emit(|| Event::NodeFinished {
                        node: node.name.clone(),
                        status: NodeStatus::Skipped,
                        at: self.at(now),
                    });
                    tracing::debug!(node = %node.name, "node skipped");
                    return;
                }
                Err(e) => {
                    let rec = &mut self.records[id.index()];
                    rec.start = Some(now);
                    rec.end = Some(now);
                    rec.attempts = 1;
                    let failure = Failure {
                        kind: FailureKind::Error,
                        message: format!("`when` failed: {}", e.message),
                    };
                    self.fail(id, failure, now);
                    return;
                }
            }
        }
        self.records[id.index()].start = Some(now);
        let seed = Rng::derive(self.seed, &[plan.seed_salt(id)]).next_u64();
        let job = Job {
            run: self.run.clone(),
            id,
            state,
            seed,
        };
        let span = tracing::info_span!("node", node = %node.name, kind = %node.kind);
        self.in_flight += 1;
        self.in_flight_gauge.increment(1.0);
        if node.handler.is_instant() {
            // Run its first attempt in place: when it finishes at the first poll, as it should,
            // there is no task, no boxed future and no timer. Otherwise it goes on in a task
            // (polling it there re-registers its wakers).
            let mut attempts = NodeRun::new(job, now);
            let step = {
                let _entered = span.enter();
                let mut cx = Context::from_waker(std::task::Waker::noop());
                catch_unwind(AssertUnwindSafe(|| attempts.attempt(&mut cx)))
            };
            match step {
                Ok(Step::Done(outcome)) => self.finished(id, Ok(outcome)),
                Ok(step) => self.spawn(id, attempts.finish(step), span),
                Err(_) => self.finished(id, Err(TASK_PANICKED.to_owned())),
            }
            return;
        }
        self.spawn(id, NodeRun::new(job, now).finish(Step::Start), span);
    }

    /// Runs a node's attempts in a task. The future is boxed before it goes into the task, so the
    /// task holds it once (an `async` block that moved it would hold it twice).
    fn spawn(
        &mut self,
        id: NodeId,
        attempts: impl Future<Output = Outcome> + Send + 'static,
        span: tracing::Span,
    ) {
        let attempts = Guarded(Box::pin(attempts));
        self.tasks()
            .spawn(async move { (id, attempts.await) }.instrument(span));
    }

    /// A node's task ended, normally or by a panic in the runtime's own task code.
    fn finished(&mut self, id: NodeId, result: Result<Outcome, String>) {
        match result {
            Ok(outcome) => self.complete(outcome),
            Err(panic) => {
                let now = Instant::now();
                self.in_flight -= 1;
                self.in_flight_gauge.decrement(1.0);
                let attempts = self.run.attempts[id.index()].load(Ordering::Relaxed).max(1);
                self.take_retries(id, attempts);
                let rec = &mut self.records[id.index()];
                rec.end = Some(now);
                rec.attempts = attempts;
                self.fail(
                    id,
                    Failure {
                        kind: FailureKind::Panic,
                        message: panic,
                    },
                    now,
                );
            }
        }
    }

    fn complete(&mut self, outcome: Outcome) {
        self.in_flight -= 1;
        self.in_flight_gauge.decrement(1.0);
        let id = outcome.id;
        self.take_retries(id, outcome.attempts);
        let rec = &mut self.records[id.index()];
        rec.attempts = outcome.attempts;
        rec.end = Some(outcome.end);
        match outcome.result {
            Ok(update) => {
                rec.status = Some(NodeStatus::Succeeded);
                self.settle(id, Some(update));
                let node = &self.plan.node(id).name;
                tracing::debug!(node = %node, attempts = outcome.attempts, "node succeeded");
                self.emit(|| Event::NodeFinished {
                    node: node.clone(),
                    status: NodeStatus::Succeeded,
                    at: self.at(outcome.end),
                });
            }
            Err(e) if outcome.hit_deadline => {
                rec.status = Some(NodeStatus::Cancelled);
                rec.failed().failure = Some(Failure {
                    kind: e.kind,
                    message: e.message,
                });
                let timeout = self
                    .run
                    .deadline
                    .map(|d| d - self.run.start)
                    .unwrap_or_default();
                self.error = Some(RunError::Timeout { timeout });
                let node = &self.plan.node(id).name;
                self.emit(|| Event::NodeFinished {
                    node: node.clone(),
                    status: NodeStatus::Cancelled,
                    at: self.at(outcome.end),
                });
            }
            Err(e) => self.fail(
                id,
                Failure {
                    kind: e.kind,
                    message: e.message,
                },
                outcome.end,
            ),
        }
    }

    /// Moves node `id`'s retried attempts, if it made more than one, into its record.
    fn take_retries(&mut self, id: NodeId, attempts: u32) {
        if attempts <= 1 {
            return;
        }
        let mut mine = Vec::new();
        self.run.retried().retain(|(n, a)| {
            if *n == id {
                mine.push(a.clone());
            }
            *n != id
        });
        if !mine.is_empty() {
            self.records[id.index()].failed().retries = mine;
        }
    }

    /// A node's final failure: fall back, or end the run.
    fn fail(&mut self, id: NodeId, failure: Failure, at: Instant) {
        let plan = self.plan;
        let node = plan.node(id);
        tracing::warn!(node = %node.name, failure = failure.kind.as_str(), message = %failure.message, "node failed");
        let status = match &node.on_error {
            OnErrorPolicy::Fail => {
                self.error = Some(RunError::NodeFailed {
                    node: node.name.to_string(),
                    failure: failure.clone(),
                });
                NodeStatus::Failed
            }
            OnErrorPolicy::Continue { fallback } => {
                let mut update = Writes::new(node.writes.len());
                for (i, (k, _)) in node.writes.iter().enumerate() {
                    *update.slot(i) = fallback
                        .iter()
                        .find(|(f, _)| f == k)
                        .map(|(_, v)| v.clone());
                }
                self.degraded = true;
                self.settle(id, Some(update));
                NodeStatus::FellBack
            }
        };
        let rec = &mut self.records[id.index()];
        rec.status = Some(status);
        rec.failed().failure = Some(failure);
        self.emit(|| Event::NodeFinished {
            node: node.name.clone(),
            status,
            at: self.at(at),
        });
    }

    /// Folds a settled node's contributions (`None`: it wrote nothing) and releases its dependents.
    fn settle(&mut self, id: NodeId, mut update: Option<Writes>) {
        let plan = self.plan;
        let node = plan.node(id);
        for (i, &(key, pos)) in node.writes.iter().enumerate() {
            let value = update.as_mut().and_then(|u| u.slot(i).take());
            self.store.settle(plan, key, pos, value);
        }
        for &d in &node.dependents {
            let r = &mut self.remaining[d.index()];
            *r -= 1;
            if *r == 0 {
                self.ready.push(Reverse(d));
            }
        }
    }

    async fn cancel_in_flight(&mut self, kind: FailureKind, message: &str) {
        if let Some(join) = &mut self.join {
            join.shutdown().await;
        }
        let now = Instant::now();
        for (i, rec) in self.records.iter_mut().enumerate() {
            if rec.status.is_none() && rec.start.is_some() {
                rec.status = Some(NodeStatus::Cancelled);
                rec.end = Some(now);
                // 0 when its task was cancelled before its first attempt began.
                rec.attempts = self.run.attempts[i].load(Ordering::Relaxed);
                rec.failed().failure = Some(Failure {
                    kind,
                    message: message.to_owned(),
                });
                if let Some(tx) = &self.run.events {
                    let node = self.plan.nodes()[i].name.clone();
                    let _ = tx.send(Event::NodeFinished {
                        node,
                        status: NodeStatus::Cancelled,
                        at: now - self.run.start,
                    });
                }
            }
        }
        // Whatever retried attempts are left belong to the nodes just cancelled.
        let left = std::mem::take(&mut *self.run.retried());
        for (id, attempt) in left {
            self.records[id.index()].failed().retries.push(attempt);
        }
        self.in_flight_gauge.decrement(self.in_flight as f64);
        self.in_flight = 0;
    }

    fn finish(self, mode: ExecutionMode) -> RunResult {
        let end = Instant::now();
        let plan = self.plan;
        let status = match (&self.error, self.degraded) {
            (Some(_), _) => RunStatus::Failed,
            (None, true) => RunStatus::Degraded,
            (None, false) => RunStatus::Succeeded,
        };
        let run_start = self.run.start;
        let at = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(run_start));
        let nodes: Vec<NodeReport> = plan
            .nodes()
            .iter()
            .zip(self.records)
            .map(|(n, r)| {
                let Failed { failure, retries } = r.failed.map(|f| *f).unwrap_or_default();
                NodeReport {
                    name: n.name.clone(),
                    kind: n.kind.clone(),
                    status: r.status.unwrap_or(NodeStatus::NotStarted),
                    attempts: r.attempts,
                    start: at(r.start),
                    end: at(r.end),
                    failure,
                    retries,
                }
            })
            .collect();
        let wall_time = end.saturating_duration_since(run_start);
        let node_time_sum: Duration = nodes.iter().map(NodeReport::duration).sum();
        let speedup = if wall_time.is_zero() {
            1.0
        } else {
            node_time_sum.as_secs_f64() / wall_time.as_secs_f64()
        };
        let critical_path = critical_path(plan, &nodes);
        let state = self.store.finish(plan);
        self.run
            .events
            .as_ref()
            .map(|tx| tx.send(Event::RunFinished { status, wall_time }));
        RunResult {
            status,
            state,
            report: RunReport {
                workflow: plan.name().clone(),
                status,
                mode: match mode {
                    ExecutionMode::Parallel => "parallel",
                    ExecutionMode::Sequential => "sequential",
                },
                error: self.error,
                wall_time,
                node_time_sum,
                speedup,
                critical_path,
                nodes,
            },
        }
    }
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
