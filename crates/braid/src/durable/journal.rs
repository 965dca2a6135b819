//! The journal of one run segment (a start, a resume or a retry, in one process): the
//! [`Observer`] that records each node's end before its dependents start, and the event hook that
//! numbers the run's events as they happen and keeps them until the next node end or the run's
//! end carries them to the store.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use braid_store::{
    Entry, EventKind, EventRecord, Micros, NodeRecord, NodeState, StoreError, StoreHandle,
};
use serde_json::{Map, Value, json};

use crate::{Event, EventSender, NodeSettled, NodeStatus, Observer, Recorded};

/// Converts offsets from the segment's start into wall-clock time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// The wall clock when the segment started.
    pub start: Micros,
}

impl Clock {
    pub(crate) fn now() -> Self {
        Clock {
            start: braid_store::now_micros(),
        }
    }

    pub(crate) fn at(self, offset: Duration) -> Micros {
        self.start
            .saturating_add(i64::try_from(offset.as_micros()).unwrap_or(i64::MAX))
    }
}

/// What is numbered or queued and not yet in the store.
#[derive(Debug)]
struct Pending {
    next_seq: u64,
    /// Events since the last node end.
    events: Vec<EventRecord>,
    /// Node ends (each after the events before it), in the order they settled, not yet sent.
    queued: Vec<Entry>,
    /// Node ends queued so far: the ticket of the latest.
    tickets: u64,
    /// Whether a batch is on its way to the store.
    flushing: bool,
    /// Whether a task is on its way to send the events (a listener's journal sends them
    /// without waiting for the next node end; one such task at a time).
    eager: bool,
}

/// How far the run's node ends are in the store.
#[derive(Debug, Clone, PartialEq)]
enum Flushed {
    /// Every ticket up to this one is committed.
    Upto(u64),
    /// A batch failed: this and every later end is not recorded.
    Failed(String),
}

/// Journals one segment of a durable run.
pub(crate) struct Journal {
    store: StoreHandle,
    run: String,
    clock: Clock,
    /// The epoch the run was claimed with: every batch starts with its fence. `None`: not
    /// fenced (a run this process started or resumed by itself).
    epoch: Option<u64>,
    /// The refusal that fenced this segment off, once one did.
    fenced: Mutex<Option<StoreError>>,
    pending: Mutex<Pending>,
    /// Watched by the node ends waiting for their commit.
    flushed: tokio::sync::watch::Sender<Flushed>,
    /// The caller's own subscriber, given every event (journaled or not) as it happens.
    forward: Option<EventSender>,
    /// What the segment's `run_started` event says of how it started (resumed, retried).
    note: Option<Value>,
    /// Told of every event as it happens (a service's live streams).
    listener: Option<Arc<dyn Listener>>,
    /// This journal, for the futures its observer returns.
    me: std::sync::Weak<Journal>,
}

/// Told of a durable run's events once they are in the store, in order: what a service streams
/// to its clients live. Never told of an event the journal does not hold, so a client that saw
/// event `n` and reconnects elsewhere (another replica, a restarted process) misses nothing:
/// a segment that stops before its events are committed (its process dies, another replica
/// fenced it off) has shown none of them. While a listener is set, the journal sends events
/// without waiting for the next node end, so a node's start is streamed as it starts. Called
/// from the task that committed them: it must be quick and must not block.
pub trait Listener: Send + Sync + 'static {
    /// A journaled event of run `run`, with its sequence number.
    fn event(&self, run: &str, event: &EventRecord);

    /// Something a node streamed (an LLM's tokens): live only, not journaled, no number.
    fn message(&self, run: &str, node: &str, payload: &Value) {
        let _ = (run, node, payload);
    }

    /// The run's segment ended and its end is recorded (`ok`), or could not be (`!ok`).
    fn ended(&self, run: &str, ok: bool) {
        let _ = (run, ok);
    }

    /// Whether someone follows run `run` live now: then its events are sent as they happen,
    /// else with the next node end (fewer commits). Asked at each event, with the `Flush` that
    /// sends what is pending at once: keep it, and call it when someone starts to follow the
    /// run. The default: always.
    fn live(&self, run: &str, flush: &Flush) -> bool {
        let _ = (run, flush);
        true
    }
}

/// Sends a run segment's pending events at once (see [`Listener::live`]). Holds the segment
/// weakly: once it ended, it does nothing.
#[derive(Clone)]
pub struct Flush(std::sync::Weak<Journal>);

impl std::fmt::Debug for Flush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flush")
    }
}

impl Flush {
    /// Sends the events not yet in the store, behind the batch in flight.
    pub fn now(&self) {
        if let Some(journal) = self.0.upgrade() {
            let p = journal.pending();
            journal.send_early(p);
        }
    }
}

impl Journal {
    #[allow(clippy::too_many_arguments)] // one per part of the segment, as `Durable::segment`
    pub(crate) fn new(
        store: StoreHandle,
        run: String,
        clock: Clock,
        next_seq: u64,
        forward: Option<EventSender>,
        note: Option<Value>,
        listener: Option<Arc<dyn Listener>>,
        epoch: Option<u64>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Journal {
            me: me.clone(),
            store,
            run,
            clock,
            epoch,
            fenced: Mutex::new(None),
            pending: Mutex::new(Pending {
                next_seq,
                events: Vec::new(),
                queued: Vec::new(),
                tickets: 0,
                flushing: false,
                eager: false,
            }),
            flushed: tokio::sync::watch::Sender::new(Flushed::Upto(0)),
            forward,
            note,
            listener,
        })
    }

    /// The listener, if any.
    pub(crate) fn listener(&self) -> Option<&Arc<dyn Listener>> {
        self.listener.as_ref()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // The lock only guards pushes and takes: a poisoned one holds nothing half-written.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the run's events: numbers the ones a journal keeps, forwards every one.
    pub(crate) fn hook(self: &Arc<Self>) -> crate::EventHook {
        let me = Arc::downgrade(self);
        Arc::new(move |event: Event| {
            let Some(me) = me.upgrade() else { return };
            if let Some(record) = me.record_of(&event) {
                let mut p = me.pending();
                let seq = p.next_seq;
                p.next_seq += 1;
                let record = EventRecord { seq, ..record };
                p.events.push(record);
                let live = !p.eager
                    && me
                        .listener
                        .as_ref()
                        .is_some_and(|l| l.live(&me.run, &Flush(Arc::downgrade(&me))));
                if live {
                    me.send_early(p);
                }
            } else if let (Some(l), Event::NodeMessage { node, payload, .. }) =
                (&me.listener, &event)
            {
                l.message(&me.run, node, payload);
            }
            if let Some(tx) = &me.forward {
                let _ = tx.send(event);
            }
        })
    }

    /// Streamed once committed: sends the pending events now rather than with the next node end
    /// (behind the batch in flight, if one is: batches go one at a time). The next batch sweeps
    /// up every event pending, these and those after them; one such send is on its way at a
    /// time.
    fn send_early(self: &Arc<Self>, mut p: std::sync::MutexGuard<'_, Pending>) {
        if p.eager || p.events.is_empty() || self.listener.is_none() {
            return;
        }
        p.eager = true;
        p.tickets += 1;
        let ticket = p.tickets;
        drop(p);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = self.clone();
            rt.spawn(async move {
                let _ = me.recorded(ticket).await;
            });
        }
    }

    /// A batch's first entries: the fence, when the run is claimed.
    pub(crate) fn batch(&self) -> Vec<Entry> {
        match self.epoch {
            Some(epoch) => vec![Entry::Fence {
                run: self.run.clone(),
                epoch,
            }],
            None => Vec::new(),
        }
    }

    /// Sends `entries` (after the fence, if any); remembers a fenced refusal; once they are
    /// committed, tells the listener of their events.
    pub(crate) async fn append(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let told: Vec<EventRecord> = match &self.listener {
            Some(_) => entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Events { events, .. } => Some(events.iter().cloned()),
                    _ => None,
                })
                .flatten()
                .collect(),
            None => Vec::new(),
        };
        let result = self.store.append(entries).await;
        match &result {
            Ok(()) => {
                if let Some(l) = &self.listener {
                    for event in &told {
                        l.event(&self.run, event);
                    }
                }
            }
            Err(e @ StoreError::Fenced { .. }) => {
                *self.fenced.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
            }
            Err(_) => {}
        }
        result
    }

    /// The refusal that fenced this segment off, if one did: another replica owns the run.
    pub(crate) fn fenced(&self) -> Option<StoreError> {
        self.fenced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends the segment's last batch: everything not yet sent (node ends whose commit nobody
    /// awaited, then the events since) and `end`, after the fence, once the batch in flight (an
    /// early send of events) is in. Waiters on earlier tickets are answered with its outcome.
    pub(crate) async fn finish(self: &Arc<Self>, end: Entry) -> Result<(), StoreError> {
        let mut watch = self.flushed.subscribe();
        loop {
            let last = {
                let mut p = self.pending();
                if p.flushing {
                    None
                } else {
                    p.flushing = true;
                    let mut entries = self.batch();
                    entries.append(&mut p.queued);
                    let events = std::mem::take(&mut p.events);
                    if !events.is_empty() {
                        entries.push(Entry::Events {
                            run: self.run.clone(),
                            events,
                        });
                    }
                    entries.push(end.clone());
                    Some((entries, p.tickets))
                }
            };
            if let Some((entries, upto)) = last {
                let mut flushing = Flushing(self, false);
                let result = self.append(entries).await;
                self.flushed.send_replace(match &result {
                    Ok(()) => Flushed::Upto(upto),
                    Err(e) => Flushed::Failed(e.to_string()),
                });
                flushing.landed();
                return result;
            }
            // The journal is held here, so its sender lives: `changed` only returns `Ok`.
            let _ = watch.changed().await;
        }
    }

    /// What the journal keeps of an event: node and run lifecycle. A node's streamed messages
    /// (an LLM's tokens) and a sub-workflow's own events are forwarded live but not kept: the
    /// node's writes hold what they add up to, and keeping them would grow a run's record past
    /// its writes.
    fn record_of(&self, event: &Event) -> Option<EventRecord> {
        let (kind, at, node, attempt, data) = match event {
            Event::RunStarted { .. } => (
                EventKind::RunStarted,
                Duration::ZERO,
                None,
                None,
                self.note.clone(),
            ),
            Event::NodeStarted { node, attempt, at } => (
                EventKind::NodeStarted,
                *at,
                Some(node),
                Some(*attempt),
                None,
            ),
            Event::NodeRetrying {
                node,
                attempt,
                failure,
                message,
                delay,
                at,
            } => (
                EventKind::NodeRetrying,
                *at,
                Some(node),
                Some(*attempt),
                Some(json!({
                    "kind": failure.as_str(),
                    "message": message,
                    "delay_ms": delay.as_millis() as u64,
                })),
            ),
            Event::NodeFinished { node, status, at } => (
                EventKind::NodeFinished,
                *at,
                Some(node),
                None,
                Some(Value::from(status.as_str())),
            ),
            Event::RunFinished { status, wall_time } => (
                EventKind::RunFinished,
                *wall_time,
                None,
                None,
                Some(Value::from(status.as_str())),
            ),
            _ => return None,
        };
        Some(EventRecord {
            seq: 0,
            at: self.clock.at(at),
            kind,
            node: node.map(ToString::to_string),
            attempt,
            data,
        })
    }
}

impl Observer for Journal {
    fn settled(&self, node: &NodeSettled<'_>) -> Option<Recorded> {
        let state = node_state(node.status())?;
        let ended_at = node
            .end()
            .map_or_else(braid_store::now_micros, |e| self.clock.at(e));
        let failure = node.failure().map(|f| {
            let mut m = Map::new();
            m.insert("kind".into(), f.kind.as_str().into());
            m.insert("message".into(), f.message.clone().into());
            if !node.retries().is_empty() {
                let retries: Vec<Value> = node
                    .retries()
                    .iter()
                    .map(|a| {
                        json!({
                            "attempt": a.attempt,
                            "start": self.clock.at(a.start),
                            "end": self.clock.at(a.end),
                            "kind": a.failure.kind.as_str(),
                            "message": a.failure.message,
                        })
                    })
                    .collect();
                m.insert("retries".into(), Value::Array(retries));
            }
            Value::Object(m)
        });
        // A waiting node keeps its prompt where a failed one keeps its failure.
        let failure = failure.or_else(|| node.prompt().map(|p| json!({ "prompt": p })));
        let record = NodeRecord {
            node: node.node().to_string(),
            state,
            attempts: node.attempts(),
            started_at: node.start().map(|s| self.clock.at(s)),
            ended_at,
            failure,
            writes: node
                .writes()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        let ticket = {
            let mut p = self.pending();
            if !p.events.is_empty() {
                let events = std::mem::take(&mut p.events);
                p.queued.push(Entry::Events {
                    run: self.run.clone(),
                    events,
                });
            }
            p.queued.push(Entry::Node {
                run: self.run.clone(),
                record,
            });
            p.tickets += 1;
            p.tickets
        };
        let me = self.me.upgrade()?;
        Some(Box::pin(async move { me.recorded(ticket).await }))
    }
}

impl Journal {
    /// Resolves once node end `ticket` is committed. The run's ends reach the store in the order
    /// they settled — their events are numbered in that order, and the store refuses a gap —
    /// so one batch is in flight at a time: whoever finds none sends everything queued, and the
    /// others wait for the watermark (nodes that end together share one commit).
    async fn recorded(self: Arc<Self>, ticket: u64) -> Result<(), String> {
        let mut watch = self.flushed.subscribe();
        loop {
            match &*watch.borrow_and_update() {
                Flushed::Upto(done) if *done >= ticket => return Ok(()),
                Flushed::Failed(e) => return Err(e.clone()),
                Flushed::Upto(_) => {}
            }
            let batch = {
                let mut p = self.pending();
                let sweep = self.listener.is_some() && !p.events.is_empty();
                if p.flushing {
                    None
                } else if p.queued.is_empty() && !sweep {
                    if self.listener.is_none() {
                        None
                    } else {
                        // Nothing left to send and nothing in flight: every ticket is in (an
                        // early send's events went with a batch built before its ticket).
                        let upto = p.tickets;
                        drop(p);
                        self.flushed.send_if_modified(|f| match f {
                            Flushed::Upto(done) if *done < upto => {
                                *done = upto;
                                true
                            }
                            _ => false,
                        });
                        continue;
                    }
                } else {
                    p.flushing = true;
                    p.eager = false;
                    let mut entries = self.batch();
                    entries.append(&mut p.queued);
                    if sweep {
                        entries.push(Entry::Events {
                            run: self.run.clone(),
                            events: std::mem::take(&mut p.events),
                        });
                    }
                    Some((entries, p.tickets))
                }
            };
            match batch {
                Some((entries, upto)) => {
                    // Whatever happens to this future, the next batch may go.
                    let mut flushing = Flushing(&self, false);
                    let outcome = match self.append(entries).await {
                        Ok(()) => Flushed::Upto(upto),
                        Err(e) => Flushed::Failed(e.to_string()),
                    };
                    self.flushed.send_replace(outcome);
                    flushing.landed();
                }
                None => {
                    if watch.changed().await.is_err() {
                        return Err("the journal went away".to_owned());
                    }
                }
            }
        }
    }
}

/// Marks the end of a batch's flight, even when the future sending it is dropped: then the
/// batch's entries are lost, so every later ticket fails rather than wait for them.
struct Flushing<'a>(&'a Journal, bool);

impl Flushing<'_> {
    /// The batch's outcome is known (and sent).
    fn landed(&mut self) {
        self.1 = true;
    }
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.pending().flushing = false;
        if self.1 {
            // Wake a waiter, which may send the next batch.
            self.0.flushed.send_modify(|_| {});
        } else {
            self.0.flushed.send_replace(Flushed::Failed(
                "a batch was abandoned before its commit was known".to_owned(),
            ));
        }
    }
}

/// The recorded state of a node that ended so; `None` for one that never started (nothing to
/// keep: it runs on resume).
pub(crate) fn node_state(status: NodeStatus) -> Option<NodeState> {
    Some(match status {
        NodeStatus::Succeeded => NodeState::Succeeded,
        NodeStatus::FellBack => NodeState::FellBack,
        NodeStatus::Failed => NodeState::Failed,
        NodeStatus::Skipped => NodeState::Skipped,
        NodeStatus::Cancelled => NodeState::Cancelled,
        NodeStatus::Waiting => NodeState::Waiting,
        NodeStatus::NotStarted => return None,
    })
}
