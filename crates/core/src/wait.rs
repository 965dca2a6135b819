//! Nodes that wait for a person: the [`Answer`] a run is given for such a node, and the
//! [`WaitNode`] contract a node that waits offers the runtime and the durable layer.
//!
//! A run that reaches a node whose [`Node::waits`](crate::Node::waits) is `Some` and that was
//! given no answer for it does not call the node: the runtime renders its
//! [`prompt`](WaitNode::prompt), records it as waiting, and goes on with every node that does not
//! depend on it; the run then ends `waiting`. A durable layer keeps the journal, and later
//! continues the run (the nodes settled before, as priors) with the node's answer in the run's
//! options: the node is then called like any other, and finds its answer through
//! [`NodeContext::answer`](crate::NodeContext::answer). The contract ([`WaitNode`]) is what that
//! layer needs to take an answer before it resumes: the schema to check it against, the
//! deadline after which it expires, and the key it becomes.

use std::time::Duration;

use serde_json::Value;

use crate::node::{NodeContext, NodeError};

/// What a run is given for a node that waits, when it is continued.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The person's answer: the node checks it against its schema and writes it.
    Value(Value),
    /// Nobody answered within the node's deadline: the node fails with `timeout`, and its
    /// `on_error` policy applies.
    Expired,
}

/// The contract of a node that waits for a person (the `wait` kind, or a registered handler):
/// what it asks, what answer it takes, until when, and where the answer goes.
pub trait WaitNode: Send + Sync {
    /// The JSON Schema an answer must match (`true` when any JSON value will do).
    fn schema(&self) -> &Value;

    /// How long after the run reached the node an answer is still taken (wall clock, measured by
    /// whoever resumes the run); `None`: no limit.
    fn deadline(&self) -> Option<Duration>;

    /// The state key the answer is written to.
    fn output(&self) -> &str;

    /// Checks an answer against [`schema`](Self::schema).
    ///
    /// # Errors
    ///
    /// Every violation, one message each, naming where in the answer it is (a JSON pointer, `/`
    /// for the answer itself).
    fn check(&self, answer: &Value) -> Result<(), Vec<String>>;

    /// What the person is asked, rendered against the node's context (the run's inputs and the
    /// state the node reads).
    ///
    /// # Errors
    ///
    /// When the prompt's template fails to render.
    fn prompt(&self, ctx: &NodeContext) -> Result<String, NodeError>;
}
