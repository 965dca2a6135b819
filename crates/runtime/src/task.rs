//! One node's attempts, run inside its task: timeout, retry with backoff, panic capture, and the
//! check of what the node returned.
//!
//! Each attempt's timeout is the node's `timeout` capped by what remains of the run's deadline.
//! A panic in the handler (while building its future or while polling it) is caught here and
//! becomes a [`FailureKind::Panic`] failure: it never unwinds into the scheduler.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;

use braid_core::node::CatchUnwind;
use braid_core::rng::Rng;
use braid_core::{FailureKind, NodeContext, NodeError, NodeId, Plan};
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
    pub plan: Arc<Plan>,
    pub inputs: Arc<Value>,
    pub start: Instant,
    pub deadline: Option<Instant>,
    /// Where each node's current attempt number is published, by node index.
    pub attempts: Box<[AtomicU32]>,
    pub events: Option<EventSender>,
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
    pub result: Result<Vec<Option<Value>>, NodeError>,
    pub attempts: u32,
    pub start: Instant,
    pub end: Instant,
    pub retries: Vec<AttemptReport>,
    /// The last attempt was cut short by the run's deadline.
    pub hit_deadline: bool,
}

/// Checks a node's returned value: an object whose keys are among its `writes`, each value one
/// the key's reducer takes. Returns the contributions aligned with `writes`.
pub(crate) fn check_output(
    plan: &Plan,
    id: NodeId,
    value: Value,
) -> Result<Vec<Option<Value>>, NodeError> {
    let node = plan.node(id);
    let invalid = |m: String| NodeError::of_kind(FailureKind::InvalidOutput, m).permanent();
    let Value::Object(map) = value else {
        return Err(invalid(format!(
            "the node returned {}, not an object of state updates",
            braid_core::node::type_name(&value)
        )));
    };
    let mut out: Vec<Option<Value>> = vec![None; node.writes.len()];
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
        out[i] = Some(v);
    }
    Ok(out)
}

fn elapsed(start: Instant, at: Instant) -> std::time::Duration {
    at.saturating_duration_since(start)
}

/// Runs a node's attempts until one succeeds, the failure is permanent, attempts run out, or the
/// run's deadline leaves no time.
pub(crate) async fn run_node(job: Job) -> Outcome {
    let Job {
        run,
        id,
        state,
        seed,
    } = job;
    let RunShared {
        plan,
        inputs,
        start: run_start,
        deadline,
        attempts,
        events,
    } = &*run;
    let (run_start, deadline) = (*run_start, *deadline);
    let node = plan.node(id);
    let start = Instant::now();
    let mut rng = Rng::derive(seed, &[0x7e7e]);
    let mut retries = Vec::new();
    let emitter: Option<braid_core::Emitter> = events.clone().map(|tx| -> braid_core::Emitter {
        Arc::new(move |node: &Arc<str>, payload| {
            let at = elapsed(run_start, Instant::now());
            let _ = tx.send(Event::NodeMessage {
                node: node.clone(),
                payload,
                at,
            });
        })
    });
    let mut attempt = 0;
    loop {
        attempt += 1;
        attempts[id.index()].store(attempt, Ordering::Relaxed);
        let attempt_start = Instant::now();
        if let Some(tx) = &events {
            let _ = tx.send(Event::NodeStarted {
                node: node.name.clone(),
                attempt,
                at: elapsed(run_start, attempt_start),
            });
        }
        let ctx = NodeContext::with_view(
            node.name.clone(),
            attempt,
            seed,
            inputs.clone(),
            state.clone(),
            plan.templates().clone(),
        )
        .with_emitter(emitter.clone());
        let node_deadline = node.timeout.and_then(|t| attempt_start.checked_add(t));
        let (attempt_deadline, is_run_deadline) = match (node_deadline, deadline) {
            (Some(n), Some(r)) if r <= n => (Some(r), true),
            (Some(n), _) => (Some(n), false),
            (None, Some(r)) => (Some(r), true),
            (None, None) => (None, false),
        };
        let result = match catch_unwind(AssertUnwindSafe(|| node.handler.call(ctx))) {
            Err(payload) => Err(NodeError::of_kind(
                FailureKind::Panic,
                panic_message(&*payload),
            )),
            Ok(fut) => {
                let mut fut = CatchUnwind(fut);
                // One poll before arming the timer: a node that finishes at once (a mock, a
                // transform, a handler with nothing to wait for) never touches the timer wheel,
                // whose entries are shared by every run on the runtime. `timeout_at` polls the
                // node first too, so the outcome is the same.
                let first =
                    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut fut).poll(cx)))
                        .await;
                let polled = match (first, attempt_deadline) {
                    (Poll::Ready(r), _) => Some(r),
                    // Boxed: the timer is large, and most attempts never need it.
                    (Poll::Pending, Some(d)) => {
                        Box::pin(tokio::time::timeout_at(d, fut)).await.ok()
                    }
                    (Poll::Pending, None) => Some(fut.await),
                };
                match polled {
                    Some(Ok(r)) => r.and_then(|v| check_output(plan, id, v)),
                    Some(Err(payload)) => Err(NodeError::of_kind(
                        FailureKind::Panic,
                        panic_message(&*payload),
                    )),
                    None if is_run_deadline => {
                        let end = Instant::now();
                        let failure =
                            NodeError::of_kind(FailureKind::Timeout, crate::scheduler::DEADLINE);
                        return Outcome {
                            id,
                            result: Err(failure),
                            attempts: attempt,
                            start,
                            end,
                            retries,
                            hit_deadline: true,
                        };
                    }
                    None => Err(NodeError::of_kind(
                        FailureKind::Timeout,
                        format!(
                            "the attempt took longer than the node's timeout of {:?}",
                            node.timeout.unwrap_or_default()
                        ),
                    )),
                }
            }
        };
        let now = Instant::now();
        let err = match result {
            Ok(update) => {
                return Outcome {
                    id,
                    result: Ok(update),
                    attempts: attempt,
                    start,
                    end: now,
                    retries,
                    hit_deadline: false,
                };
            }
            Err(e) => e,
        };
        let mut delay = node.retry.delay(attempt, &mut rng);
        if let Some(after) = err.retry_after {
            delay = delay.max(after);
        }
        let out_of_time = deadline.is_some_and(|d| now.checked_add(delay).is_none_or(|t| t >= d));
        if attempt >= node.retry.attempts || !err.retryable || out_of_time {
            return Outcome {
                id,
                result: Err(err),
                attempts: attempt,
                start,
                end: now,
                retries,
                hit_deadline: false,
            };
        }
        if let Some(tx) = &events {
            let _ = tx.send(Event::NodeRetrying {
                node: node.name.clone(),
                attempt,
                failure: err.kind,
                message: err.message.clone(),
                delay,
                at: elapsed(run_start, now),
            });
        }
        retries.push(AttemptReport {
            attempt,
            start: elapsed(run_start, attempt_start),
            end: elapsed(run_start, now),
            failure: Failure {
                kind: err.kind,
                message: err.message,
            },
        });
        if !delay.is_zero() {
            Box::pin(tokio::time::sleep(delay)).await;
        }
    }
}
