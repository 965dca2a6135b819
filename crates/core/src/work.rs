//! Inner work: what a node kind asks the runtime to run on its behalf.
//!
//! Some kinds run work of their own: `map` runs a node once per item, `workflow` runs a whole
//! sub-plan. They must not re-implement the runtime (a second scheduler, a second copy of the
//! attempt logic) nor depend on it: they ask their [`NodeContext`] to
//! [`run_items`](NodeContext::run_items) or [`run_plan`](NodeContext::run_plan), and the runtime
//! that runs the node provides the [`Executor`]. So every piece of work, inner or outer, gets the
//! same timeout, retry, panic capture and output checks, sees the run's cancellation and
//! deadline, runs one at a time in a sequential run, and reports its events in the parent's
//! event stream, attributed to the parent node.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::node::{Node, NodeContext, NodeError};
use crate::plan::RetryPolicy;

/// Checks and shapes one item's update into the item's result (such as `map`'s `collect`). An
/// `Err` is that item's failure, like an `invalid_output` of a node.
pub type ItemCheck = Arc<dyn Fn(Value) -> Result<Value, NodeError> + Send + Sync>;

/// A node run once per item, as part of the node that asks for it.
pub struct Items {
    /// The node run for each item. Its context is the parent's, with the template variables
    /// `item` (the item) and `index` (its position, from 0).
    pub node: Arc<dyn Node>,
    /// The items.
    pub items: Vec<Value>,
    /// At most this many items in flight (`None`: all of them). A sequential run runs one at a
    /// time whatever this says.
    pub max_concurrency: Option<usize>,
    /// Each attempt of an item is bounded by this (and by the run's deadline).
    pub timeout: Option<Duration>,
    /// How an item's failed attempts are retried.
    pub retry: RetryPolicy,
    /// Turns an item's update into its result.
    pub check: ItemCheck,
    /// How many items may fail: one more stops the items in flight and ends the work.
    pub tolerated: u64,
}

/// How a run of [`Items`] ended.
#[derive(Debug)]
pub enum ItemsOutcome {
    /// Every item ran: each one's result, in item order.
    Done(Vec<Result<Value, NodeError>>),
    /// More items failed than were tolerated: the failures so far, by item index (the items
    /// still in flight were stopped).
    TooManyFailures(Vec<(usize, NodeError)>),
}

/// How a sub-plan's run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SubRun {
    /// Why it failed, when it did (`None`: it succeeded, possibly degraded).
    pub failed: Option<String>,
    /// Some node fell back.
    pub degraded: bool,
    /// Its final state: every declared key.
    pub state: Value,
}

/// A boxed future of inner work.
pub type WorkFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Runs inner work for the nodes of one run. Implemented by the runtime; reached through
/// [`NodeContext::run_items`] and [`NodeContext::run_plan`].
///
/// # Cancel safety
///
/// Dropping a returned future stops all of its work (tasks aborted, sub-runs dropped).
pub trait Executor: Send + Sync + 'static {
    /// Runs `items.node` once per item, on behalf of the node of `parent`.
    fn run_items(&self, parent: &NodeContext, items: Items) -> WorkFuture<ItemsOutcome>;

    /// Runs `plan` with `inputs` (checked against its declarations, defaults filled in), on
    /// behalf of the node of `parent`. Inputs that do not fit are a permanent failure that names
    /// every problem.
    fn run_plan(
        &self,
        parent: &NodeContext,
        plan: Arc<crate::Plan>,
        inputs: Map<String, Value>,
    ) -> WorkFuture<Result<SubRun, NodeError>>;
}

/// The failure of inner work asked of a context that belongs to no run (built by hand).
pub(crate) fn no_runtime(node: &str) -> NodeError {
    NodeError::new(format!(
        "node `{node}` runs inner work, which needs a runtime: run it as part of a workflow"
    ))
    .permanent()
}

/// The failure of inner work asked for after the node's run has ended (a handler that kept its
/// context past its own future).
pub(crate) fn run_ended(node: &str) -> NodeError {
    NodeError::new(format!(
        "node `{node}` asked for inner work after its run had ended"
    ))
    .permanent()
}
