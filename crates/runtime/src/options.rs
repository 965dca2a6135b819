//! How to run a plan ([`RunOptions`]) and how to stop a run from outside ([`CancelToken`]).

use std::sync::Arc;
use std::time::Duration;

use braid_core::{Answer, ExecutionMode};

use crate::event::{EventHook, EventSender};
use crate::ledger::Observer;

/// How to run a plan; anything left `None` comes from the workflow file.
#[derive(Clone, Default)]
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
    /// Takes the run's events synchronously as they happen, instead of `events` (which is then
    /// ignored): see [`EventHook`].
    pub event_hook: Option<EventHook>,
    /// Cancels the run from outside; the run then ends `failed` with
    /// [`RunError::Cancelled`](crate::RunError::Cancelled), reporting every node and keeping what
    /// completed.
    pub cancel: Option<CancelToken>,
    /// Told of every node's end, with the writes it contributed (the hook of a journal or a
    /// service); see [`Observer`].
    pub observer: Option<Arc<dyn Observer>>,
    /// The run's id, from which nodes' idempotency keys derive
    /// ([`NodeContext::idempotency_key`](braid_core::NodeContext::idempotency_key)): give the same
    /// id when continuing a run. `None`: one is made if a node asks for it.
    pub run_id: Option<Arc<str>>,
    /// Answers for the run's nodes that wait for a person (`wait`), by node name: such a node
    /// given [`Answer::Value`] checks it against its schema and writes it; given
    /// [`Answer::Expired`], it fails with `timeout`; given none, it waits (the run ends
    /// `waiting`). Names of nodes the plan does not have are ignored (with a warning), and so
    /// are answers for nodes that do not wait. Check an answer against the node's
    /// [`WaitNode`](braid_core::WaitNode) before giving it: one that does not match fails the node
    /// (`invalid_output`). Empty, it costs nothing.
    pub answers: Vec<(String, Answer)>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("mode", &self.mode)
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .field("seed", &self.seed)
            .field("events", &self.events.is_some())
            .field("event_hook", &self.event_hook.is_some())
            .field("cancel", &self.cancel)
            .field("observer", &self.observer.is_some())
            .field("run_id", &self.run_id)
            .field("answers", &self.answers)
            .finish()
    }
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
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes has no effect.
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}
