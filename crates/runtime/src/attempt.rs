//! A piece of work's attempts: timeout, retry with backoff, panic capture, and the check of what
//! it returned.
//!
//! Every piece of work goes through [`Attempts`]: a node of the plan ([`NodeWork`]) and an item
//! of a node's inner work (the `items` module) alike, so both get the same timeout, retry, panic
//! capture and output check. What differs between them (the handler and its context, the policy,
//! the check, the events) is the [`Work`] trait, dispatched statically.
//!
//! Each attempt's timeout is the work's `timeout` capped by what remains of the run's deadline.
//! A panic in the handler (while building its future or while polling it) is caught here and
//! becomes a [`FailureKind::Panic`] failure: it never unwinds into the scheduler.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use braid_core::node::CatchUnwind;
use braid_core::plan::RetryPolicy;
use braid_core::rng::Rng;
use braid_core::{FailureKind, NodeContext, NodeError, NodeFuture, NodeId, Plan, RunScope};
use serde_json::Value;
use tokio::time::Instant;

use crate::event::{Event, EventSink};
use crate::report::{AttemptReport, Failure};

/// The failure message of a piece of work cut short by the run's deadline.
pub(crate) const DEADLINE: &str = "the run's timeout expired while the node was running";

/// The failure message of a node (or an item) whose attempts panicked in the runtime's own code.
pub(crate) const TASK_PANICKED: &str = "the node's task panicked";

/// The failure of work that panicked; `what` says what panicked (`node`, `inner node`).
fn panicked(what: &str, payload: &(dyn Any + Send)) -> NodeError {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        format!("the {what} panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("the {what} panicked: {s}")
    } else {
        format!("the {what} panicked")
    };
    NodeError::of_kind(FailureKind::Panic, message)
}

/// What every node of one run shares: made once per run, so starting a node bumps only
/// this per-run count, never the counts of the plan every concurrent run shares (contended
/// cache lines on a multi-thread runtime).
pub(crate) struct RunShared {
    /// The plan, the inputs and the executor of inner work, which node contexts point at.
    pub scope: Arc<RunScope>,
    pub start: Instant,
    pub deadline: Option<Instant>,
    /// Where each node's current attempt number is published, by node index.
    pub attempts: Box<[AtomicU32]>,
    /// Every failed attempt that was retried, by node: published as it happens (a lock taken only
    /// on a retry), so that a node dropped mid-retry keeps its history.
    pub retries: Mutex<Vec<(NodeId, AttemptReport)>>,
    pub events: Option<EventSink>,
    /// The run is sequential: inner work runs one item at a time too.
    pub sequential: bool,
    /// The run's cancel token, which sub-runs share.
    pub cancel: Option<crate::options::CancelToken>,
}

impl RunShared {
    /// The retried attempts published so far, locked. Never held across an `.await`; a panic
    /// while it was held leaves the list usable.
    pub(crate) fn retried(&self) -> MutexGuard<'_, Vec<(NodeId, AttemptReport)>> {
        self.retries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends an event, made only when someone listens.
    #[inline]
    pub(crate) fn emit(&self, event: impl FnOnce() -> Event) {
        if let Some(sink) = &self.events {
            sink.send(event());
        }
    }

    /// `t` as an offset from the run's start.
    pub(crate) fn at(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }
}

/// What differs between the kinds of work that go through [`Attempts`].
pub(crate) trait Work: Send + 'static {
    /// What a successful attempt gives, once checked.
    type Output: Send + 'static;
    /// What panics, in messages: `node`, `inner node`.
    const WHAT: &'static str;
    /// The run's deadline.
    fn deadline(&self) -> Option<Instant>;
    /// Starts attempt `attempt` (from 1) at `at`: builds the context and calls the handler. May
    /// panic (a handler's bug); the caller catches it.
    fn call(&self, attempt: u32, at: Instant) -> NodeFuture;
    /// The time limit of one attempt.
    fn timeout(&self) -> Option<Duration>;
    /// How failed attempts are retried.
    fn retry(&self) -> &RetryPolicy;
    /// Checks what an attempt returned.
    fn check(&self, value: Value) -> Result<Self::Output, NodeError>;
    /// The failure of an attempt that ran past [`timeout`](Self::timeout).
    fn timed_out(&self) -> NodeError;
    /// Attempt `attempt` failed with `failure` and the next one starts after `delay`.
    fn retrying(
        &self,
        attempt: u32,
        attempt_start: Instant,
        now: Instant,
        err: &NodeError,
        delay: Duration,
    );
}

/// A node of the plan, as the scheduler starts it.
pub(crate) struct NodeWork {
    pub run: Arc<RunShared>,
    pub id: NodeId,
    pub state: braid_core::StateView,
    pub seed: u64,
    /// Where the node's streamed messages go, when someone listens.
    emitter: Option<braid_core::Emitter>,
}

impl NodeWork {
    pub(crate) fn new(
        run: Arc<RunShared>,
        id: NodeId,
        state: braid_core::StateView,
        seed: u64,
    ) -> Self {
        let emitter = run.events.clone().map(|sink| -> braid_core::Emitter {
            let run_start = run.start;
            Arc::new(move |node: &Arc<str>, payload| {
                let at = Instant::now().saturating_duration_since(run_start);
                sink.send(Event::NodeMessage {
                    node: node.clone(),
                    payload,
                    at,
                });
            })
        });
        NodeWork {
            run,
            id,
            state,
            seed,
            emitter,
        }
    }

    fn plan(&self) -> &Plan {
        &self.run.scope.plan
    }
}

impl Work for NodeWork {
    type Output = Writes;
    const WHAT: &'static str = "node";

    #[inline]
    fn deadline(&self) -> Option<Instant> {
        self.run.deadline
    }

    #[inline]
    fn call(&self, attempt: u32, at: Instant) -> NodeFuture {
        let run = &*self.run;
        let node = run.scope.plan.node(self.id);
        run.attempts[self.id.index()].store(attempt, Ordering::Relaxed);
        run.emit(|| Event::NodeStarted {
            node: node.name.clone(),
            attempt,
            at: run.at(at),
        });
        let ctx = NodeContext::for_run(
            run.scope.clone(),
            self.id,
            attempt,
            self.seed,
            self.state.clone(),
        )
        .with_emitter(self.emitter.clone());
        node.handler.call(ctx)
    }

    #[inline]
    fn timeout(&self) -> Option<Duration> {
        self.plan().node(self.id).timeout
    }

    #[inline]
    fn retry(&self) -> &RetryPolicy {
        &self.plan().node(self.id).retry
    }

    #[inline]
    fn check(&self, value: Value) -> Result<Writes, NodeError> {
        check_output(self.plan(), self.id, value)
    }

    fn timed_out(&self) -> NodeError {
        NodeError::of_kind(
            FailureKind::Timeout,
            format!(
                "the attempt took longer than the node's timeout of {:?}",
                self.timeout().unwrap_or_default()
            ),
        )
    }

    fn retrying(
        &self,
        attempt: u32,
        attempt_start: Instant,
        now: Instant,
        err: &NodeError,
        delay: Duration,
    ) {
        let run = &*self.run;
        run.emit(|| Event::NodeRetrying {
            node: self.plan().node(self.id).name.clone(),
            attempt,
            failure: err.kind,
            message: err.message.clone(),
            delay,
            at: run.at(now),
        });
        let report = AttemptReport {
            attempt,
            start: run.at(attempt_start),
            end: run.at(now),
            failure: Failure {
                kind: err.kind,
                message: err.message.clone(),
            },
        };
        run.retried().push((self.id, report));
    }
}

/// What a piece of work's attempts come to.
pub(crate) struct Outcome<T> {
    /// What it gave, checked, or its last failure.
    pub result: Result<T, NodeError>,
    pub attempts: u32,
    pub end: Instant,
    /// The last attempt was cut short by the run's deadline.
    pub hit_deadline: bool,
}

/// A node's contribution to each key of its `writes`, in order (`None`: it wrote nothing to that
/// key). Most nodes write one key: that needs no allocation, and the value stays small to move.
#[derive(Clone)]
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

    /// The contribution to the `i`-th key of `writes`, if any.
    pub(crate) fn get(&self, i: usize) -> Option<&Value> {
        match self {
            Writes::One(v) => v.as_ref().filter(|_| i == 0),
            Writes::Many(v) => v.get(i).and_then(Option::as_ref),
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

/// An attempt that did not finish at its first poll.
pub(crate) struct Running {
    fut: CatchUnwind,
    attempt_start: Instant,
    deadline: Option<Instant>,
    /// `deadline` is the run's, not the work's own timeout.
    is_run_deadline: bool,
}

/// Where a piece of work's attempts stand.
pub(crate) enum Step<T> {
    /// Nothing has run yet.
    Start,
    /// An attempt is waiting on something: finish it (and any retry) with
    /// [`finish`](Attempts::finish).
    Waiting(Running),
    /// The last attempt failed and the next one starts after this delay.
    Retry(Duration),
    /// The work succeeded, or failed for good.
    Done(Outcome<T>),
}

/// One piece of work's attempts until one succeeds, the failure is permanent, attempts run out,
/// or the run's deadline leaves no time.
///
/// A state machine rather than one `async fn`, so that the scheduler can start a node in place
/// and, when its first attempt finishes at the first poll (a mock, a transform, a handler with
/// nothing to wait for), have its outcome without boxing a future or arming a timer. Anything
/// that must wait continues with [`finish`](Attempts::finish), whose future the run's task polls.
pub(crate) struct Attempts<W> {
    work: W,
    start: Instant,
    rng: Rng,
    attempt: u32,
}

impl<W: Work> Attempts<W> {
    /// The work's attempts, the first starting at `start`; `seed` drives the retry jitter.
    pub(crate) fn new(work: W, seed: u64, start: Instant) -> Self {
        Attempts {
            rng: Rng::derive(seed, &[0x7e7e]),
            work,
            start,
            attempt: 0,
        }
    }

    /// Starts the next attempt and polls it once with `cx`.
    pub(crate) fn attempt(&mut self, cx: &mut Context<'_>) -> Step<W::Output> {
        self.attempt += 1;
        let attempt = self.attempt;
        let attempt_start = if attempt == 1 {
            self.start
        } else {
            Instant::now()
        };
        let run_deadline = self.work.deadline();
        let own_deadline = self
            .work
            .timeout()
            .and_then(|t| attempt_start.checked_add(t));
        let (deadline, is_run_deadline) = match (own_deadline, run_deadline) {
            (Some(n), Some(r)) if r <= n => (Some(r), true),
            (Some(n), _) => (Some(n), false),
            (None, Some(r)) => (Some(r), true),
            (None, None) => (None, false),
        };
        match catch_unwind(AssertUnwindSafe(|| self.work.call(attempt, attempt_start))) {
            Err(payload) => self.conclude(attempt_start, Err(panicked(W::WHAT, &*payload))),
            Ok(fut) => {
                let mut fut = CatchUnwind(fut);
                // One poll before arming any timer: `timeout_at` polls the work first too, so
                // the outcome is the same, and work that finishes at once never touches the
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
    ) -> Result<W::Output, NodeError> {
        match r {
            Ok(r) => r.and_then(|v| self.work.check(v)),
            Err(payload) => Err(panicked(W::WHAT, &*payload)),
        }
    }

    /// Ends an attempt: the work is done, or it is retried after a delay.
    fn conclude(
        &mut self,
        attempt_start: Instant,
        result: Result<W::Output, NodeError>,
    ) -> Step<W::Output> {
        let now = Instant::now();
        let err = match result {
            Ok(update) => return Step::Done(self.outcome(Ok(update), now, false)),
            Err(e) => e,
        };
        let run_deadline = self.work.deadline();
        let retry = self.work.retry();
        let attempt = self.attempt;
        let mut delay = retry.delay(attempt, &mut self.rng);
        if let Some(after) = err.retry_after {
            delay = delay.max(after);
        }
        let out_of_time =
            run_deadline.is_some_and(|d| now.checked_add(delay).is_none_or(|t| t >= d));
        if attempt >= retry.attempts || !err.retryable || out_of_time {
            return Step::Done(self.outcome(Err(err), now, false));
        }
        self.work.retrying(attempt, attempt_start, now, &err, delay);
        Step::Retry(delay)
    }

    fn outcome(
        &self,
        result: Result<W::Output, NodeError>,
        end: Instant,
        hit_deadline: bool,
    ) -> Outcome<W::Output> {
        Outcome {
            result,
            attempts: self.attempt,
            end,
            hit_deadline,
        }
    }

    /// Waits for an attempt that did not finish at its first poll, under its deadline.
    /// `registered`: that first poll was made with this future's own waker (not the no-op one of
    /// a node started in place), so the work is only polled again once it wakes it.
    async fn wait(&mut self, running: Running, registered: bool) -> Step<W::Output> {
        let Running {
            mut fut,
            attempt_start,
            deadline,
            is_run_deadline,
        } = running;
        // Boxed: the timer is large, and only waiting attempts with a deadline need it.
        let mut timer = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
        let mut skip = registered;
        // The work first, then its deadline, as `tokio::time::timeout_at` does.
        let polled = std::future::poll_fn(|cx| {
            if !std::mem::take(&mut skip) {
                if let Poll::Ready(r) = Pin::new(&mut fut).poll(cx) {
                    return Poll::Ready(Some(r));
                }
            }
            match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        })
        .await;
        match polled {
            Some(r) => {
                let result = self.result_of(r);
                self.conclude(attempt_start, result)
            }
            None if is_run_deadline => {
                let failure = NodeError::of_kind(FailureKind::Timeout, DEADLINE);
                Step::Done(self.outcome(Err(failure), Instant::now(), true))
            }
            None => {
                let failure = self.work.timed_out();
                self.conclude(attempt_start, Err(failure))
            }
        }
    }

    /// Runs the attempts from `step` to the end.
    pub(crate) async fn finish(mut self, mut step: Step<W::Output>) -> Outcome<W::Output> {
        // Whether `step` came from an attempt polled here, with this future's waker.
        let mut registered = false;
        loop {
            (step, registered) = match step {
                Step::Done(outcome) => return outcome,
                Step::Waiting(running) => (self.wait(running, registered).await, false),
                Step::Retry(delay) if !delay.is_zero() => {
                    Box::pin(tokio::time::sleep(delay)).await;
                    (Step::Start, false)
                }
                Step::Start | Step::Retry(_) => (
                    std::future::poll_fn(|cx| Poll::Ready(self.attempt(cx))).await,
                    true,
                ),
            };
        }
    }
}
