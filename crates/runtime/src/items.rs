//! Running a node once per item on behalf of another node (`map`), through the same attempt
//! logic as every node ([`Attempts`]): each item's attempts get the item timeout (capped by the
//! run's deadline), the retry policy, panic capture and the item check.
//!
//! Items are polled by the returned future (a [`Polled`] set, as a run's nodes are polled by the
//! run's task), at most `limit` at a time: dropping the future (the parent node's timeout, the
//! run's cancellation) cancels every item in flight. Each item's end is streamed as a message of the parent node
//! (`{ "map_item": i, "ok": .. }`), and results are given in item order whatever order items
//! finish in.

use std::time::Duration;

use braid_core::plan::RetryPolicy;
use braid_core::rng::Rng;
use braid_core::{
    FailureKind, ItemCheck, Items, ItemsOutcome, Node, NodeContext, NodeError, NodeFuture,
};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::time::Instant;

use crate::attempt::{Attempts, Outcome, Step, Work};
use crate::polled::{Polled, Task};

/// One item of a node's inner work.
struct ItemWork {
    /// The parent node's context, shared by its items.
    parent: Arc<NodeContext>,
    index: usize,
    seed: u64,
    /// `{ item, index }`.
    vars: Arc<Value>,
    node: Arc<dyn Node>,
    timeout: Option<Duration>,
    retry: Arc<RetryPolicy>,
    check: ItemCheck,
    deadline: Option<Instant>,
}

impl Work for ItemWork {
    type Output = Value;
    const WHAT: &'static str = "inner node";

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// An item sees its parent's attempt number (a retried `map` retries its items), not its own.
    fn call(&self, _attempt: u32, _at: Instant) -> NodeFuture {
        self.node
            .call(self.parent.item(self.index, self.seed, self.vars.clone()))
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    fn check(&self, value: Value) -> Result<Value, NodeError> {
        (self.check)(value)
    }

    fn timed_out(&self) -> NodeError {
        NodeError::of_kind(
            FailureKind::Timeout,
            format!(
                "the item took longer than `item_timeout` ({:?})",
                self.timeout.unwrap_or_default()
            ),
        )
    }

    fn retrying(&self, _: u32, _: Instant, _: Instant, _: &NodeError, _: Duration) {}
}

/// Runs `items` on behalf of the node of `parent`, at most `limit` at a time.
pub(crate) async fn run_items(
    parent: Arc<NodeContext>,
    items: Items,
    limit: usize,
    deadline: Option<Instant>,
) -> ItemsOutcome {
    let Items {
        node,
        items,
        timeout,
        retry,
        check,
        tolerated,
        ..
    } = items;
    let retry = Arc::new(retry);
    let total = items.len();
    let mut results: Vec<Option<Result<Value, NodeError>>> = (0..total).map(|_| None).collect();
    let mut failures: Vec<(usize, NodeError)> = Vec::new();
    // Owned by this future: dropping it (timeout, cancellation) cancels every item in flight.
    let mut set: Polled<usize, Outcome<Value>> = Polled::new();
    let mut pending = items.into_iter().enumerate();
    let start = |set: &mut Polled<usize, Outcome<Value>>, (i, item): (usize, Value)| {
        let seed = Rng::derive(parent.seed(), &[0x006d_6170, i as u64]).next_u64();
        let work = ItemWork {
            parent: parent.clone(),
            index: i,
            seed,
            vars: Arc::new(json!({ "item": item, "index": i })),
            node: node.clone(),
            timeout,
            retry: retry.clone(),
            check: check.clone(),
            deadline,
        };
        let attempts = Attempts::new(work, seed, Instant::now()).finish(Step::Start);
        set.push(Task::new(i, attempts, None));
    };
    for next in pending.by_ref().take(limit) {
        start(&mut set, next);
    }
    while let Some((i, ended)) = set.next().await {
        let outcome = match ended {
            Ok(outcome) => outcome.result,
            Err(panic) => Err(NodeError::of_kind(FailureKind::Panic, panic)),
        };
        match &outcome {
            Ok(_) => parent.emit(json!({ "map_item": i, "ok": true })),
            Err(e) => {
                parent.emit(json!({ "map_item": i, "ok": false, "failure": e.kind.as_str(), "message": e.message }));
                failures.push((i, e.clone()));
                if failures.len() as u64 > tolerated {
                    return ItemsOutcome::TooManyFailures(failures);
                }
            }
        }
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(outcome);
        }
        if let Some(next) = pending.next() {
            start(&mut set, next);
        }
    }
    ItemsOutcome::Done(
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(NodeError::new("the item did not run"))))
            .collect(),
    )
}
