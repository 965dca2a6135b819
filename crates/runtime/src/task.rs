//! One node's attempts, run inside its task: timeout, retry with backoff, panic capture, and the
//! check of what the node returned.
//!
//! Each attempt's timeout is the node's `timeout` capped by what remains of the run's deadline.
//! A panic in the handler (while building its future or while polling it) is caught here and
//! becomes a [`FailureKind::Panic`] failure: it never unwinds into the scheduler.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use braid_core::node::CatchUnwind;
use braid_core::rng::Rng;
use braid_core::{FailureKind, NodeContext, NodeError, NodeId, Plan, RunScope};
use serde_json::Value;
use tokio::time::Instant;

use crate::event::{Event, EventSender};
use crate::report::{AttemptReport, Failure};

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("the node panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("the node panicked: {s}")
    } else {
        "the node panicked".to_owned()
    }
}

/// What every node task of one run shares: made once per run, so starting a node bumps only
/// this per-run count, never the counts of the plan every concurrent run shares (contended
/// cache lines on a multi-thread runtime).
pub(crate) struct RunShared {
    /// The plan and the inputs, which node contexts point at.
    pub scope: Arc<RunScope>,
    pub start: Instant,
    pub deadline: Option<Instant>,
    /// Where each node's current attempt number is published, by node index.
    pub attempts: Box<[AtomicU32]>,
    /// Every failed attempt that was retried, by node: published as it happens (a lock taken only
    /// on a retry), so that a node whose task is aborted mid-retry keeps its history.
    pub retries: Mutex<Vec<(NodeId, AttemptReport)>>,
    pub events: Option<EventSender>,
}

impl RunShared {
    /// The retried attempts published so far, locked. Never held across an `.await`; a panic
    /// while it was held leaves the list usable.
    pub(crate) fn retried(&self) -> MutexGuard<'_, Vec<(NodeId, AttemptReport)>> {
        self.retries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything a node's task needs.
pub(crate) struct Job {
    pub run: Arc<RunShared>,
    pub id: NodeId,
    pub state: braid_core::StateView,
    pub seed: u64,
}

/// What a node's task reports back to the scheduler.
pub(crate) struct Outcome {
    pub id: NodeId,
    /// The node's contribution to each key of its `writes`, in order, or its last failure.
    pub result: Result<Writes, NodeError>,
    pub attempts: u32,
    pub end: Instant,
    /// The last attempt was cut short by the run's deadline.
    pub hit_deadline: bool,
}

/// A node's contribution to each key of its `writes`, in order (`None`: it wrote nothing to that
/// key). Most nodes write one key: that needs no allocation, and the value stays small to move.
pub(crate) enum Writes {
    One(Option<Value>),
    Many(Vec<Option<Value>>),
}

impl Writes {
    /// Nothing written yet, for a node with `n` keys in its `writes`.
    pub(crate) fn new(n: usize) -> Self {
        if n <= 1 {
            Writes::One(None)
        } else {
            Writes::Many((0..n).map(|_| None).collect())
        }
    }

    /// The contribution to the `i`-th key of `writes`.
    pub(crate) fn slot(&mut self, i: usize) -> &mut Option<Value> {
        match self {
            Writes::One(v) => v,
            Writes::Many(v) => &mut v[i],
        }
    }
}

/// Checks a node's returned value: an object whose keys are among its `writes`, each value one
/// the key's reducer takes. Returns the contributions aligned with `writes`.
pub(crate) fn check_output(plan: &Plan, id: NodeId, value: Value) -> Result<Writes, NodeError> {
    let node = plan.node(id);
    let invalid = |m: String| NodeError::of_kind(FailureKind::InvalidOutput, m).permanent();
    let Value::Object(map) = value else {
        return Err(invalid(format!(
            "the node returned {}, not an object of state updates",
            braid_core::node::type_name(&value)
        )));
    };
    let mut out = Writes::new(node.writes.len());
    for (key, v) in map {
        let Some(i) = node
            .writes
            .iter()
            .position(|(k, _)| *plan.keys()[k.index()].name == *key)
        else {
            let declared: Vec<String> = node
                .writes
                .iter()
                .map(|(k, _)| format!("`{}`", plan.keys()[k.index()].name))
                .collect();
            return Err(invalid(format!(
                "the node wrote `{key}`, which is not in its `writes` ({})",
                if declared.is_empty() {
                    "it declares none".to_owned()
                } else {
                    declared.join(", ")
                }
            )));
        };
        let channel = &plan.keys()[node.writes[i].0.index()];
        if let Err(e) = channel.reducer.check(&v) {
            return Err(invalid(format!("the node wrote `{key}`, but {e}")));
        }
        *out.slot(i) = Some(v);
    }
    Ok(out)
}

fn elapsed(start: Instant, at: Instant) -> std::time::Duration {
    at.saturating_duration_since(start)
}

/// An attempt that did not finish at its first poll.
pub(crate) struct Running {
    fut: CatchUnwind,
    attempt_start: Instant,
    deadline: Option<Instant>,
    /// `deadline` is the run's, not the node's own timeout.
    is_run_deadline: bool,
}

/// Where a node's attempts stand.
pub(crate) enum Step {
    /// Nothing has run yet.
    Start,
    /// An attempt is waiting on something: finish it (and any retry) in a task.
    Waiting(Running),
    /// The last attempt failed and the next one starts after this delay.
    Retry(Duration),
    /// The node succeeded, or failed for good.
    Done(Outcome),
}

/// One node's attempts until one succeeds, the failure is permanent, attempts run out, or the
/// run's deadline leaves no time.
///
/// A state machine rather than one `async fn`, so that the scheduler can start a node in place
/// and, when its first attempt finishes at the first poll (a mock, a transform, a handler with
/// nothing to wait for), have its outcome without spawning a task, boxing a future or arming a
/// timer. Anything that must wait continues in a task with [`finish`](NodeRun::finish).
pub(crate) struct NodeRun {
    job: Job,
    start: Instant,
    rng: Rng,
    emitter: Option<braid_core::Emitter>,
    attempt: u32,
}

impl NodeRun {
    /// The node's attempts, starting at `start`.
    pub(crate) fn new(job: Job, start: Instant) -> Self {
        let run_start = job.run.start;
        let emitter = job.run.events.clone().map(|tx| -> braid_core::Emitter {
            Arc::new(move |node: &Arc<str>, payload| {
                let at = elapsed(run_start, Instant::now());
                let _ = tx.send(Event::NodeMessage {
                    node: node.clone(),
                    payload,
                    at,
                });
            })
        });
        NodeRun {
            rng: Rng::derive(job.seed, &[0x7e7e]),
            job,
            start,
            emitter,
            attempt: 0,
        }
    }

    /// Starts the next attempt and polls it once with `cx`.
    pub(crate) fn attempt(&mut self, cx: &mut Context<'_>) -> Step {
        self.attempt += 1;
        let attempt = self.attempt;
        let run = &*self.job.run;
        let id = self.job.id;
        let node = run.scope.plan.node(id);
        run.attempts[id.index()].store(attempt, Ordering::Relaxed);
        let attempt_start = if attempt == 1 {
            self.start
        } else {
            Instant::now()
        };
        if let Some(tx) = &run.events {
            let _ = tx.send(Event::NodeStarted {
                node: node.name.clone(),
                attempt,
                at: elapsed(run.start, attempt_start),
            });
        }
        let ctx = NodeContext::for_run(
            run.scope.clone(),
            id,
            attempt,
            self.job.seed,
            self.job.state.clone(),
        )
        .with_emitter(self.emitter.clone());
        let node_deadline = node.timeout.and_then(|t| attempt_start.checked_add(t));
        let (deadline, is_run_deadline) = match (node_deadline, run.deadline) {
            (Some(n), Some(r)) if r <= n => (Some(r), true),
            (Some(n), _) => (Some(n), false),
            (None, Some(r)) => (Some(r), true),
            (None, None) => (None, false),
        };
        match catch_unwind(AssertUnwindSafe(|| node.handler.call(ctx))) {
            Err(payload) => self.conclude(attempt_start, Err(panicked(&*payload))),
            Ok(fut) => {
                let mut fut = CatchUnwind(fut);
                // One poll before arming any timer: `timeout_at` polls the node first too, so
                // the outcome is the same, and a node that finishes at once never touches the
                // timer wheel every run on the runtime shares.
                match Pin::new(&mut fut).poll(cx) {
                    Poll::Ready(r) => {
                        let result = self.result_of(r);
                        self.conclude(attempt_start, result)
                    }
                    Poll::Pending => Step::Waiting(Running {
                        fut,
                        attempt_start,
                        deadline,
                        is_run_deadline,
                    }),
                }
            }
        }
    }

    /// An attempt's return, checked.
    fn result_of(
        &self,
        r: Result<Result<Value, NodeError>, Box<dyn Any + Send>>,
    ) -> Result<Writes, NodeError> {
        match r {
            Ok(r) => r.and_then(|v| check_output(&self.job.run.scope.plan, self.job.id, v)),
            Err(payload) => Err(panicked(&*payload)),
        }
    }

    /// Ends an attempt: the node is done, or it is retried after a delay.
    fn conclude(&mut self, attempt_start: Instant, result: Result<Writes, NodeError>) -> Step {
        let now = Instant::now();
        let err = match result {
            Ok(update) => return Step::Done(self.outcome(Ok(update), now, false)),
            Err(e) => e,
        };
        let run = &*self.job.run;
        let node = run.scope.plan.node(self.job.id);
        let attempt = self.attempt;
        let mut delay = node.retry.delay(attempt, &mut self.rng);
        if let Some(after) = err.retry_after {
            delay = delay.max(after);
        }
        let out_of_time = run
            .deadline
            .is_some_and(|d| now.checked_add(delay).is_none_or(|t| t >= d));
        if attempt >= node.retry.attempts || !err.retryable || out_of_time {
            return Step::Done(self.outcome(Err(err), now, false));
        }
        if let Some(tx) = &run.events {
            let _ = tx.send(Event::NodeRetrying {
                node: node.name.clone(),
                attempt,
                failure: err.kind,
                message: err.message.clone(),
                delay,
                at: elapsed(run.start, now),
            });
        }
        let report = AttemptReport {
            attempt,
            start: elapsed(run.start, attempt_start),
            end: elapsed(run.start, now),
            failure: Failure {
                kind: err.kind,
                message: err.message,
            },
        };
        run.retried().push((self.job.id, report));
        Step::Retry(delay)
    }

    fn outcome(
        &self,
        result: Result<Writes, NodeError>,
        end: Instant,
        hit_deadline: bool,
    ) -> Outcome {
        Outcome {
            id: self.job.id,
            result,
            attempts: self.attempt,
            end,
            hit_deadline,
        }
    }

    /// Waits for an attempt that did not finish at its first poll, under its deadline.
    async fn wait(&mut self, running: Running) -> Step {
        let Running {
            fut,
            attempt_start,
            deadline,
            is_run_deadline,
        } = running;
        let polled = match deadline {
            // Boxed: the timer is large, and only waiting attempts need it.
            Some(d) => Box::pin(tokio::time::timeout_at(d, fut)).await.ok(),
            None => Some(fut.await),
        };
        match polled {
            Some(r) => {
                let result = self.result_of(r);
                self.conclude(attempt_start, result)
            }
            None if is_run_deadline => {
                let failure = NodeError::of_kind(FailureKind::Timeout, crate::scheduler::DEADLINE);
                Step::Done(self.outcome(Err(failure), Instant::now(), true))
            }
            None => {
                let timeout = self.job.run.scope.plan.node(self.job.id).timeout;
                let failure = NodeError::of_kind(
                    FailureKind::Timeout,
                    format!(
                        "the attempt took longer than the node's timeout of {:?}",
                        timeout.unwrap_or_default()
                    ),
                );
                self.conclude(attempt_start, Err(failure))
            }
        }
    }

    /// Runs the attempts from `step` to the end.
    pub(crate) async fn finish(mut self, mut step: Step) -> Outcome {
        loop {
            step = match step {
                Step::Done(outcome) => return outcome,
                Step::Waiting(running) => self.wait(running).await,
                Step::Retry(delay) if !delay.is_zero() => {
                    Box::pin(tokio::time::sleep(delay)).await;
                    Step::Start
                }
                Step::Start | Step::Retry(_) => {
                    std::future::poll_fn(|cx| Poll::Ready(self.attempt(cx))).await
                }
            };
        }
    }
}

fn panicked(payload: &(dyn Any + Send)) -> NodeError {
    NodeError::of_kind(FailureKind::Panic, panic_message(payload))
}
