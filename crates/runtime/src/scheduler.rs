//! The ready-set scheduler: which node starts when.
//!
//! A node becomes ready the moment the last node it needs has settled (succeeded, fallen back or
//! been skipped), and starts at once if fewer than `max_concurrency` nodes are in flight: there are
//! no supersteps, so a slow branch never holds back an unrelated fast one. Ready nodes start in
//! canonical order (a min-heap on [`NodeId`]), which makes sequential mode — the same loop with a
//! concurrency of one — run exactly in canonical order.
//!
//! The scheduler keeps the ready set, the in-flight count, the waiting and the dispatch; how a
//! node's end is recorded is the [`Ledger`]'s, and a node's attempts are
//! [`Attempts`](crate::attempt::Attempts)'. A node that finishes at its first poll runs in place;
//! one that waits is polled by the run's own task, in a [`Polled`] set the scheduler owns, not
//! spawned: when the run ends early (a failed node, the run's deadline, cancellation) or the
//! run's future is dropped, every node still in flight is dropped, which cancels it. The
//! scheduler never blocks and takes no lock of its own (the ledger takes the retries lock for
//! nodes that were retried): it owns the ledger, and nodes talk back only through their ends.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use braid_core::plan::OnErrorPolicy;
use braid_core::rng::Rng;
use braid_core::{FailureKind, NodeId, Plan, StateView, template};
use tokio::time::Instant;

use crate::attempt::{
    Attempts, DEADLINE, NodeWork, Outcome, RunShared, Step, TASK_PANICKED, Writes,
};
use crate::ledger::{Ending, Ledger, Recorded, Release};
use crate::polled::{Polled, Task};
use crate::report::{Ends, Failure, NodeReport, NodeStatus, RunError};
use crate::store::Store;

/// What a waiting node's attempts end with: its node, and its outcome or the panic that ended
/// them.
type TaskEnd = (NodeId, Result<Outcome<Writes>, String>);

/// What ended a wait of the scheduler.
enum Wake {
    /// A waiting node ended.
    Ended(TaskEnd),
    /// Nothing is in flight or being recorded any more.
    Idle,
    /// The observer finished recording the end of this node.
    Recorded(NodeId, Result<(), String>),
    Deadline,
    Cancelled,
}

pub(crate) struct Scheduler<'a> {
    plan: &'a Plan,
    /// Inputs, deadline, attempt counters and event sender, shared with the nodes.
    run: Arc<RunShared>,
    ledger: Ledger,
    remaining: Vec<u32>,
    ready: BinaryHeap<Reverse<NodeId>>,
    /// The nodes in flight that wait on something, polled by the run's own task (see
    /// [`keep_polling`](Self::keep_polling)).
    tasks: Polled<NodeId, Outcome<Writes>>,
    in_flight: usize,
    /// Node ends the observer is recording; a node's dependents start once it is recorded.
    recording: Vec<(NodeId, Recorded)>,
    seed: u64,
    /// The run's deadline timer and the cancel token's wait, made on the first wait that needs
    /// them (boxed: most runs never wait on either).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    cancelled: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    error: Option<RunError>,
    in_flight_gauge: metrics::Gauge,
}

impl<'a> Scheduler<'a> {
    /// A scheduler for the run, whose ledger may already hold nodes settled in an earlier run
    /// (`resumed`): the nodes ready first are those whose needs have all settled.
    pub(crate) fn new(
        plan: &'a Plan,
        run: Arc<RunShared>,
        ledger: Ledger,
        resumed: bool,
        seed: u64,
        in_flight_gauge: metrics::Gauge,
    ) -> Self {
        let mut remaining: Vec<u32> = plan.nodes().iter().map(|p| p.needs.len() as u32).collect();
        let mut ready: BinaryHeap<Reverse<NodeId>> =
            plan.roots().iter().map(|&r| Reverse(r)).collect();
        if resumed {
            for (i, node) in plan.nodes().iter().enumerate() {
                if ledger.is_settled(NodeId(i as u32)) {
                    for &d in &node.dependents {
                        remaining[d.index()] -= 1;
                    }
                }
            }
            ready = (0..plan.nodes().len() as u32)
                .map(NodeId)
                .filter(|&id| remaining[id.index()] == 0 && !ledger.is_settled(id))
                .map(Reverse)
                .collect();
        }
        Scheduler {
            plan,
            run,
            ledger,
            remaining,
            ready,
            tasks: Polled::new(),
            in_flight: 0,
            recording: Vec::new(),
            seed,
            timer: None,
            cancelled: None,
            error: None,
            in_flight_gauge,
        }
    }

    /// Runs the ready nodes until none is left, the run fails, its deadline passes or it is
    /// cancelled; every node that started has then ended.
    pub(crate) async fn drive(&mut self, limit: usize, timeout: Option<Duration>) {
        loop {
            // A node counts against the bound until its end is recorded: a sequential run stays
            // exactly in canonical order whatever its observer takes.
            while self.error.is_none() && self.in_flight + self.recording.len() < limit {
                let Some(Reverse(id)) = self.ready.pop() else {
                    break;
                };
                self.start(id);
            }
            // Fail fast, also when a node failed as it started (its `when` did not evaluate) or
            // a node saw the run's deadline before this loop did.
            match self.error {
                None => {}
                Some(RunError::Timeout { .. }) => {
                    self.cancel_in_flight(FailureKind::Timeout, DEADLINE).await;
                    return;
                }
                Some(RunError::Cancelled) => {
                    self.cancel_in_flight(FailureKind::Cancelled, "the run was cancelled")
                        .await;
                    return;
                }
                Some(RunError::Observer { .. }) => {
                    self.cancel_in_flight(
                        FailureKind::Cancelled,
                        "the run was cancelled because a node's end could not be recorded",
                    )
                    .await;
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
            if self.in_flight == 0 && self.recording.is_empty() {
                return;
            }
            match self.wait().await {
                Wake::Ended((id, result)) => self.finished(id, result),
                Wake::Idle => return,
                Wake::Recorded(id, result) => self.recorded(id, result),
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
            }
        }
    }

    /// Waits for the next waiting node to end, a node's end to be recorded, the run's deadline, or
    /// the cancel token, in that order of priority when several are ready.
    async fn wait(&mut self) -> Wake {
        if self.timer.is_none() {
            if let Some(d) = self.run.deadline {
                self.timer = Some(Box::pin(tokio::time::sleep_until(d)));
            }
        }
        if self.cancelled.is_none() {
            if let Some(token) = self.run.cancel.clone() {
                self.cancelled = Some(Box::pin(async move { token.cancelled().await }));
            }
        }
        std::future::poll_fn(|cx| {
            if let Poll::Ready(Some(end)) = self.tasks.poll_next(cx) {
                return Poll::Ready(Wake::Ended(end));
            }
            if let Some(wake) = self.poll_recorded(cx) {
                return Poll::Ready(wake);
            }
            if self.in_flight == 0 && self.recording.is_empty() {
                return Poll::Ready(Wake::Idle);
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

    /// The first node end the observer has finished recording, if any.
    fn poll_recorded(&mut self, cx: &mut Context<'_>) -> Option<Wake> {
        for i in 0..self.recording.len() {
            if let Poll::Ready(result) = self.recording[i].1.as_mut().poll(cx) {
                let (id, _) = self.recording.swap_remove(i);
                return Some(Wake::Recorded(id, result));
            }
        }
        None
    }

    /// The state a node may read: its `reads`, as they stand now.
    fn view(&self, id: NodeId) -> StateView {
        let store: &Store = self.ledger.store();
        // A node that reads nothing gets an empty view, which allocates nothing.
        let entries = self
            .plan
            .node(id)
            .reads
            .iter()
            .filter_map(|&k| {
                Some((
                    self.plan.keys()[k.index()].name.clone(),
                    store.get(self.plan, k)?.clone(),
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
                    self.settle(
                        id,
                        Ending {
                            status: NodeStatus::Skipped,
                            attempts: 0,
                            end: now,
                            failure: None,
                            writes: None,
                            prompt: None,
                        },
                    );
                    return;
                }
                Err(e) => {
                    let failure = Failure {
                        kind: FailureKind::Error,
                        message: format!("`when` failed: {}", e.message),
                    };
                    self.fail(id, failure, 1, now);
                    return;
                }
            }
        }
        let seed = Rng::derive(self.seed, &[plan.seed_salt(id)]).next_u64();
        if let Some(wait) = node.handler.waits() {
            if self.run.scope.answer(id).is_none() {
                self.hold_for_answer(id, wait, state, seed, now);
                return;
            }
        }
        self.ledger.started(id, now);
        let work = NodeWork::new(self.run.clone(), id, state, seed);
        let span = tracing::info_span!("node", node = %node.name, kind = %node.kind);
        self.in_flight += 1;
        self.in_flight_gauge.increment(1.0);
        if node.handler.is_instant() {
            // Run its first attempt in place: when it finishes at the first poll, as it should,
            // there is no boxed future and no timer. Otherwise it goes on in the run's set of
            // waiting nodes (polling it there registers its real wakers).
            let mut attempts = Attempts::new(work, seed, now);
            let step = {
                let _entered = span.enter();
                let mut cx = Context::from_waker(std::task::Waker::noop());
                catch_unwind(AssertUnwindSafe(|| attempts.attempt(&mut cx)))
            };
            match step {
                Ok(Step::Done(outcome)) => {
                    // Drop the attempts (and the node's state view) before its writes are
                    // folded: a view still alive would make the fold copy the key it shares.
                    drop(attempts);
                    self.finished(id, Ok(outcome));
                }
                Ok(step) => self.keep_polling(id, attempts.finish(step), span),
                Err(_) => self.finished(id, Err(TASK_PANICKED.to_owned())),
            }
            return;
        }
        self.keep_polling(id, Attempts::new(work, seed, now).finish(Step::Start), span);
    }

    /// A node that waits for an answer the run was not given: no attempt (so no retry and no
    /// `on_error`), its prompt rendered and its end recorded as waiting; its dependents stay
    /// held. A prompt that does not render is the node's failure, which its `on_error` decides.
    #[cold]
    fn hold_for_answer(
        &mut self,
        id: NodeId,
        wait: &dyn braid_core::WaitNode,
        state: StateView,
        seed: u64,
        now: Instant,
    ) {
        let ctx = braid_core::NodeContext::for_run(self.run.scope.clone(), id, 1, seed, state);
        let prompt = catch_unwind(AssertUnwindSafe(|| wait.prompt(&ctx)));
        drop(ctx);
        let failure = match prompt {
            Ok(Ok(prompt)) => {
                self.settle(
                    id,
                    Ending {
                        status: NodeStatus::Waiting,
                        attempts: 0,
                        end: now,
                        failure: None,
                        writes: None,
                        prompt: Some(prompt),
                    },
                );
                return;
            }
            Ok(Err(e)) => Failure {
                kind: e.kind,
                message: format!("its prompt did not render: {}", e.message),
            },
            Err(_) => Failure {
                kind: FailureKind::Panic,
                message: "the node panicked rendering its prompt".to_owned(),
            },
        };
        self.fail(id, failure, 1, now);
    }

    /// Runs a node's attempts until they end, polled by the run's own task among its other
    /// waiting nodes, not spawned: no task to schedule, no join across threads.
    fn keep_polling(
        &mut self,
        id: NodeId,
        attempts: impl Future<Output = Outcome<Writes>> + Send + 'static,
        span: tracing::Span,
    ) {
        self.tasks.push(Task::new(id, attempts, Some(span)));
    }

    /// A node's attempts ended, normally or by a panic in the runtime's own code.
    fn finished(&mut self, id: NodeId, result: Result<Outcome<Writes>, String>) {
        self.in_flight -= 1;
        self.in_flight_gauge.decrement(1.0);
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(panic) => {
                let attempts = self.run.attempts[id.index()].load(Ordering::Relaxed).max(1);
                let failure = Failure {
                    kind: FailureKind::Panic,
                    message: panic,
                };
                self.fail(id, failure, attempts, Instant::now());
                return;
            }
        };
        match outcome.result {
            Ok(update) => self.settle(
                id,
                Ending {
                    status: NodeStatus::Succeeded,
                    attempts: outcome.attempts,
                    end: outcome.end,
                    failure: None,
                    writes: Some(update),
                    prompt: None,
                },
            ),
            Err(e) if outcome.hit_deadline => {
                let timeout = self
                    .run
                    .deadline
                    .map(|d| d - self.run.start)
                    .unwrap_or_default();
                self.error = Some(RunError::Timeout { timeout });
                let failure = Failure {
                    kind: e.kind,
                    message: e.message,
                };
                self.cut_short(id, outcome.attempts, outcome.end, failure);
            }
            // The run was cancelled while the node ran, and the node saw it first (a
            // sub-workflow shares the run's cancel token): the run's cancellation, not the
            // node's failure, so no `on_error` fallback and no retry.
            Err(e) if self.run.cancel.as_ref().is_some_and(|t| t.is_cancelled()) => {
                if self.error.is_none() {
                    self.error = Some(RunError::Cancelled);
                }
                let failure = Failure {
                    kind: FailureKind::Cancelled,
                    message: e.message,
                };
                self.cut_short(id, outcome.attempts, outcome.end, failure);
            }
            Err(e) => self.fail(
                id,
                Failure {
                    kind: e.kind,
                    message: e.message,
                },
                outcome.attempts,
                outcome.end,
            ),
        }
    }

    /// A node cut short by the run's end (its deadline, its cancellation): recorded as
    /// cancelled, with what stopped it; no `on_error` fallback.
    fn cut_short(&mut self, id: NodeId, attempts: u32, end: Instant, failure: Failure) {
        self.settle(
            id,
            Ending {
                status: NodeStatus::Cancelled,
                attempts,
                end,
                failure: Some(failure),
                writes: None,
                prompt: None,
            },
        );
    }

    /// A node's final failure: fall back, or end the run.
    fn fail(&mut self, id: NodeId, failure: Failure, attempts: u32, at: Instant) {
        let node = self.plan.node(id);
        let (status, writes) = match &node.on_error {
            OnErrorPolicy::Fail => {
                self.error = Some(RunError::NodeFailed {
                    node: node.name.to_string(),
                    failure: failure.clone(),
                });
                (NodeStatus::Failed, None)
            }
            OnErrorPolicy::Continue { fallback } => {
                let mut update = Writes::new(node.writes.len());
                for (i, (k, _)) in node.writes.iter().enumerate() {
                    *update.slot(i) = fallback
                        .iter()
                        .find(|(f, _)| f == k)
                        .map(|(_, v)| v.clone());
                }
                (NodeStatus::FellBack, Some(update))
            }
        };
        self.settle(
            id,
            Ending {
                status,
                attempts,
                end: at,
                failure: Some(failure),
                writes,
                prompt: None,
            },
        );
    }

    /// Records a node's end in the ledger and releases its dependents, now or once recorded.
    #[inline(always)]
    fn settle(&mut self, id: NodeId, ending: Ending) {
        match self.ledger.settle(&self.run, id, ending) {
            Release::Now => self.release(id),
            Release::Never => {}
            Release::After(fut) => self.recording.push((id, fut)),
        }
    }

    /// The observer has recorded node `id`'s end (or failed to).
    fn recorded(&mut self, id: NodeId, result: Result<(), String>) {
        match result {
            Ok(()) if self.ledger.releases(id) => self.release(id),
            Ok(()) => {}
            Err(message) => not_recorded(self.plan, &mut self.error, id, message),
        }
    }

    /// Node `id` has settled: its dependents whose needs have all settled become ready.
    fn release(&mut self, id: NodeId) {
        for &d in &self.plan.node(id).dependents {
            let r = &mut self.remaining[d.index()];
            *r -= 1;
            if *r == 0 {
                self.ready.push(Reverse(d));
            }
        }
    }

    async fn cancel_in_flight(&mut self, kind: FailureKind, message: &str) {
        // Dropping a node's future cancels it (an `exec` node's program group is killed).
        self.tasks.clear();
        let failure = Failure {
            kind,
            message: message.to_owned(),
        };
        let recorded = self
            .ledger
            .cancel_started(&self.run, &failure, Instant::now());
        self.recording.extend(recorded);
        // Whatever retried attempts are left belong to the nodes just cancelled (taken by the
        // ledger); the list is empty now.
        self.in_flight_gauge.decrement(self.in_flight as f64);
        self.in_flight = 0;
    }

    /// Ends the run: every node not yet ended is settled as not started, every node end the
    /// observer is still recording is awaited, and the nodes' reports and the store are given.
    pub(crate) async fn finish(self) -> (Vec<NodeReport>, Store, Option<RunError>, Ends) {
        let Scheduler {
            plan,
            run,
            ledger,
            mut recording,
            mut error,
            ..
        } = self;
        let (nodes, store, recorded, ends) = ledger.finish(&run);
        recording.extend(recorded);
        for (id, fut) in recording {
            if let Err(message) = fut.await {
                not_recorded(plan, &mut error, id, message);
            }
        }
        (nodes, store, error, ends)
    }
}

/// The observer could not record node `id`'s end: the run fails, unless it already has.
fn not_recorded(plan: &Plan, error: &mut Option<RunError>, id: NodeId, message: String) {
    let node = plan.node(id).name.to_string();
    tracing::error!(node = %node, message = %message, "a node's end could not be recorded");
    if error.is_none() {
        *error = Some(RunError::Observer { node, message });
    }
}
