//! Live events of the runs in flight in this process, for the event streams.
//!
//! The [`Hub`] is the durable layer's [`Listener`]: it is told of each run's numbered events
//! as soon as they are in the store (never one the journal does not hold), keeps them for as long as the run's segment lasts, and fans them
//! out. A stream subscribes, atomically, to what was kept so far plus what follows, so
//! combined with the store's copy of earlier segments it sees every event once: the store up to
//! the first kept event, then the kept ones, then the live ones, deduplicated by sequence.
//!
//! Memory: one run's kept events are its lifecycle events (a handful per node and attempt), gone
//! when the segment ends. A node's streamed messages (an LLM's tokens) are never kept: live only.
//! A channel exists only between [`Hub::open`] (before the segment's first event) and its end: an
//! event of a run without one (a straggler after the end) is dropped, never a new channel that
//! nothing would close. A stream that still holds a receiver after the end holds only it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use braid::durable::{EventRecord, Flush, Listener};
use serde_json::Value;
use tokio::sync::broadcast;

/// How many live items a slow stream may fall behind before it is cut (it reconnects with
/// `Last-Event-ID` and loses no journaled event).
const CAPACITY: usize = 1024;

/// One live item of a run.
#[derive(Debug, Clone)]
pub(crate) enum Live {
    /// A journaled event.
    Event(EventRecord),
    /// A node's streamed message (not journaled, no sequence number).
    Message {
        /// The node.
        node: String,
        /// What it streamed.
        payload: Value,
    },
    /// The run's segment ended; its events are all in the store (or the store failed).
    Ended,
}

#[derive(Debug)]
struct Channel {
    kept: Vec<EventRecord>,
    tx: broadcast::Sender<Live>,
    /// Sends the run's pending events at once: called when a stream subscribes, since the
    /// journal sends them early only while someone streams (`Listener::live`).
    flush: Option<Flush>,
}

impl Channel {
    fn new() -> Self {
        Channel {
            kept: Vec::new(),
            tx: broadcast::channel(CAPACITY).0,
            flush: None,
        }
    }
}

/// The live channels of the runs in flight here, by run id.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    runs: Mutex<HashMap<String, Channel>>,
}

/// What a stream subscribes to: the events kept so far and the live ones after them.
pub(crate) struct Subscription {
    pub kept: Vec<EventRecord>,
    pub rx: broadcast::Receiver<Live>,
}

impl Hub {
    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        // Held for a push or a clone only: a poisoned lock holds nothing half-done.
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the channel of a run about to start here (before its first event).
    pub(crate) fn open(&self, run: &str) {
        self.runs()
            .entry(run.to_owned())
            .or_insert_with(Channel::new);
    }

    /// Closes a run's channel without an end (its start failed after `open`).
    pub(crate) fn close(&self, run: &str) {
        if let Some(c) = self.runs().remove(run) {
            let _ = c.tx.send(Live::Ended);
        }
    }

    /// How many runs have a channel (in flight here).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.runs().len()
    }

    /// Whether the run's segment here has not ended yet.
    pub(crate) fn is_open(&self, run: &str) -> bool {
        self.runs().contains_key(run)
    }

    /// Subscribes to a run in flight here; `None` when it is not. Its events not yet in the
    /// store are sent at once, to arrive as live ones.
    pub(crate) fn subscribe(&self, run: &str) -> Option<Subscription> {
        let (sub, flush) = {
            let runs = self.runs();
            let c = runs.get(run)?;
            let sub = Subscription {
                kept: c.kept.clone(),
                rx: c.tx.subscribe(),
            };
            (sub, c.flush.clone())
        };
        // Outside the hub's lock: the journal calls the hub with its own lock held.
        if let Some(flush) = flush {
            flush.now();
        }
        Some(sub)
    }
}

impl Listener for Hub {
    fn event(&self, run: &str, event: &EventRecord) {
        let mut runs = self.runs();
        let Some(c) = runs.get_mut(run) else {
            // Not opened, or already ended: nothing streams it from here.
            return;
        };
        c.kept.push(event.clone());
        // No receiver: nobody streams this run now.
        let _ = c.tx.send(Live::Event(event.clone()));
    }

    fn message(&self, run: &str, node: &str, payload: &Value) {
        if let Some(c) = self.runs().get(run) {
            let _ = c.tx.send(Live::Message {
                node: node.to_owned(),
                payload: payload.clone(),
            });
        }
    }

    fn ended(&self, run: &str, _ok: bool) {
        self.close(run);
    }

    fn live(&self, run: &str, flush: &Flush) -> bool {
        let mut runs = self.runs();
        let Some(c) = runs.get_mut(run) else {
            return false;
        };
        if c.tx.receiver_count() > 0 {
            return true;
        }
        c.flush = Some(flush.clone());
        false
    }
}

#[cfg(test)]
mod tests {
    use braid::durable::{EventKind, EventRecord, Listener};

    use super::Hub;

    fn event(seq: u64) -> EventRecord {
        EventRecord {
            seq,
            at: 0,
            kind: EventKind::RunStarted,
            node: None,
            attempt: None,
            data: None,
        }
    }

    #[test]
    fn a_run_channel_is_gone_once_it_ends_even_with_late_events() {
        let hub = Hub::default();
        for i in 0..100 {
            let run = format!("r{i}");
            hub.open(&run);
            hub.event(&run, &event(0));
            let sub = hub.subscribe(&run);
            hub.ended(&run, true);
            // A straggler after the end, and an event of a run never opened here.
            hub.event(&run, &event(1));
            hub.event(&format!("elsewhere{i}"), &event(0));
            drop(sub);
        }
        assert_eq!(hub.len(), 0);
    }
}
