//! Run events: what happened, when (as an offset from the run's start).
//!
//! Events are produced only when a subscriber asked for them ([`RunOptions::events`](crate::RunOptions)),
//! so a run nobody watches pays nothing. The channel is unbounded on purpose: a run emits at most
//! a fixed number of events per node attempt, so its size is bounded by the plan, and a slow
//! consumer must never stall the scheduler.

use std::sync::Arc;
use std::time::Duration;

use braid_core::FailureKind;
use serde::Serialize;

use crate::report::RunStatus;

/// Sends a run's events.
pub type EventSender = tokio::sync::mpsc::UnboundedSender<Event>;
/// Receives a run's events: `while let Some(e) = rx.recv().await { .. }`.
pub type EventReceiver = tokio::sync::mpsc::UnboundedReceiver<Event>;
/// Takes a run's events synchronously, as they happen, from whichever task emits them: what a
/// journal uses to number events in the order they happened and keep them with the node ends
/// they precede. It must be quick and must not block (take a short lock, push, return).
pub type EventHook = Arc<dyn Fn(Event) + Send + Sync>;

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The run started.
    RunStarted {
        /// The workflow's name.
        workflow: Arc<str>,
        /// The number of nodes.
        nodes: usize,
    },
    /// An attempt of a node started.
    NodeStarted {
        /// The node.
        node: Arc<str>,
        /// The attempt, from 1.
        attempt: u32,
        /// When, from the run's start.
        #[serde(serialize_with = "crate::report::ms")]
        at: Duration,
    },
    /// An attempt failed and the node will try again after `delay`.
    NodeRetrying {
        /// The node.
        node: Arc<str>,
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        failure: FailureKind,
        /// What went wrong.
        message: String,
        /// The wait before the next attempt.
        #[serde(serialize_with = "crate::report::ms")]
        delay: Duration,
        /// When, from the run's start.
        #[serde(serialize_with = "crate::report::ms")]
        at: Duration,
    },
    /// A node finished: succeeded, fell back, failed, skipped or was cancelled.
    NodeFinished {
        /// The node.
        node: Arc<str>,
        /// How it ended.
        status: crate::report::NodeStatus,
        /// When, from the run's start.
        #[serde(serialize_with = "crate::report::ms")]
        at: Duration,
    },
    /// A node streamed something while running (an LLM's tokens, progress).
    NodeMessage {
        /// The node.
        node: Arc<str>,
        /// What it streamed.
        payload: serde_json::Value,
        /// When, from the run's start.
        #[serde(serialize_with = "crate::report::ms")]
        at: Duration,
    },
    /// Something that happened in inner work of `node` (a sub-workflow's run): that run's event,
    /// attributed to the node that runs it. Sub-workflows of sub-workflows nest.
    Nested {
        /// The node of this run that runs the inner work.
        node: Arc<str>,
        /// The inner run's event.
        inner: Box<Event>,
    },
    /// The run finished.
    RunFinished {
        /// How it ended.
        status: RunStatus,
        /// Its wall time.
        #[serde(serialize_with = "crate::report::ms")]
        wall_time: Duration,
    },
}

/// Where a run sends its events: the subscriber's channel, or, for a sub-run, the parent run's
/// sink with each event wrapped as [`Event::Nested`] under the parent node.
#[derive(Clone)]
pub(crate) enum EventSink {
    Channel(EventSender),
    Hook(EventHook),
    Nested(Arc<EventSink>, Arc<str>),
}

impl EventSink {
    /// Sends an event; a subscriber that went away is not an error.
    pub(crate) fn send(&self, event: Event) {
        match self {
            EventSink::Channel(tx) => {
                let _ = tx.send(event);
            }
            EventSink::Hook(hook) => hook(event),
            EventSink::Nested(parent, node) => parent.send(Event::Nested {
                node: node.clone(),
                inner: Box::new(event),
            }),
        }
    }
}
