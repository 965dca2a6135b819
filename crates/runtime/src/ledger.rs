//! The ledger: the one place where a node's end is recorded.
//!
//! Every way a node ends — succeeded, fell back, failed, skipped, cancelled, not started, waiting
//! for an answer — goes through `Ledger::settle`, which updates the node's record, logs, emits the `NodeFinished`
//! event, calls the run's [`Observer`] with the writes the node contributed, and hands those writes
//! to the store. This is the seam for anything that must see every node's end: a journal that
//! makes runs durable, a service that streams them, a remote completion.
//!
//! A run can also begin with some nodes already settled ([`PartialRun`](crate::PartialRun)):
//! `Ledger::restore` records them and folds their writes as if they had just run, without
//! telling the observer (it recorded them the first time) and without events.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use braid_core::{NodeId, Plan};
use serde_json::Value;
use tokio::time::Instant;

use crate::attempt::{RunShared, Writes};
use crate::event::Event;
use crate::report::{AttemptReport, Ends, Failure, NodeReport, NodeStatus};
use crate::store::Store;

/// A node's end, as the [`Observer`] sees it.
pub struct NodeSettled<'a> {
    plan: &'a Plan,
    id: NodeId,
    record: &'a Record,
    run_start: Instant,
    writes: Option<&'a Writes>,
}

impl NodeSettled<'_> {
    /// The node's name.
    pub fn node(&self) -> &Arc<str> {
        &self.plan.node(self.id).name
    }

    /// The node's id in the plan (its canonical position).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// How it ended.
    pub fn status(&self) -> NodeStatus {
        self.record.status.unwrap_or(NodeStatus::NotStarted)
    }

    /// Attempts made: 0 if none began.
    pub fn attempts(&self) -> u32 {
        self.record.attempts
    }

    /// When it started, from the run's start.
    pub fn start(&self) -> Option<Duration> {
        self.record
            .start
            .map(|t| t.saturating_duration_since(self.run_start))
    }

    /// When it ended, from the run's start.
    pub fn end(&self) -> Option<Duration> {
        self.record
            .end
            .map(|t| t.saturating_duration_since(self.run_start))
    }

    /// Why it failed (its last attempt's failure), for failed, fallen-back and cancelled nodes.
    pub fn failure(&self) -> Option<&Failure> {
        self.record
            .details
            .as_ref()
            .and_then(|f| f.failure.as_ref())
    }

    /// The failed attempts before the last one, when it was retried.
    pub fn retries(&self) -> &[AttemptReport] {
        self.record.details.as_ref().map_or(&[], |f| &f.retries)
    }

    /// What a [`Waiting`](NodeStatus::Waiting) node asks: its rendered prompt (`None` for every
    /// other end). A durable layer records it with the time the run reached the node, from which
    /// the node's [`deadline`](braid_core::WaitNode::deadline) runs.
    pub fn prompt(&self) -> Option<&str> {
        self.record
            .details
            .as_ref()
            .and_then(|d| d.prompt.as_deref())
    }

    /// The writes it contributed, key by key, in the order of its `writes` (a fallen-back node's
    /// fallback values; nothing for a skipped, failed, cancelled or not-started node).
    pub fn writes(&self) -> impl Iterator<Item = (&Arc<str>, &Value)> + '_ {
        let plan = self.plan;
        let node = plan.node(self.id);
        node.writes
            .iter()
            .enumerate()
            .filter_map(move |(i, (k, _))| {
                let v = self.writes?.get(i)?;
                Some((&plan.keys()[k.index()].name, v))
            })
    }
}

/// What an [`Observer`] may return: a future that completes once the node's end is recorded
/// (made durable). Its dependents start only after that, so a journal is write-ahead. An `Err`
/// (the journal could not record it) ends the run failed with
/// [`RunError::Observer`](crate::RunError::Observer).
pub type Recorded = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

/// Told of every node's end: the hook of a journal, a service, a remote completion.
///
/// Called once per node per run, in the order nodes end, from the run's own task: it must not
/// block. Work that takes time (a database write) goes into the returned [`Recorded`] future,
/// which the scheduler awaits before the node's dependents start and before the run ends.
pub trait Observer: Send + Sync + 'static {
    /// A node ended.
    fn settled(&self, node: &NodeSettled<'_>) -> Option<Recorded>;
}

/// What the scheduler knows of one node, for its report. Kept small: a run holds one per node.
#[derive(Default)]
pub(crate) struct Record {
    pub status: Option<NodeStatus>,
    pub attempts: u32,
    pub start: Option<Instant>,
    pub end: Option<Instant>,
    /// Its failure and earlier failed attempts, or its prompt, for the few nodes that have any.
    details: Option<Box<Details>>,
}

#[derive(Default)]
struct Details {
    failure: Option<Failure>,
    retries: Vec<AttemptReport>,
    /// A waiting node's rendered prompt.
    prompt: Option<String>,
}

impl Record {
    fn details(&mut self) -> &mut Details {
        self.details.get_or_insert_default()
    }
}

/// How a node ended, as handed to `Ledger::settle`.
pub(crate) struct Ending {
    pub status: NodeStatus,
    pub attempts: u32,
    pub end: Instant,
    pub failure: Option<Failure>,
    /// What it contributed (its update, or its fallback).
    pub writes: Option<Writes>,
    /// What a waiting node asks.
    pub prompt: Option<String>,
}

/// A node's end in an earlier run, checked against the plan (see
/// [`PartialRun`](crate::PartialRun)).
#[derive(Clone)]
pub(crate) struct Prior {
    pub status: NodeStatus,
    pub attempts: u32,
    pub start: Option<Duration>,
    pub end: Option<Duration>,
    pub failure: Option<Failure>,
    pub writes: Writes,
}

/// What settling a node means for its dependents.
pub(crate) enum Release {
    /// They may start now (as far as this node goes).
    Now,
    /// They may start once the observer has recorded the node's end.
    After(Recorded),
    /// They never start: the node failed, was cancelled, never started, or waits for an answer.
    Never,
}

/// The records of a run's nodes, its state, and its observer.
pub(crate) struct Ledger {
    records: Vec<Record>,
    store: Store,
    observer: Option<Arc<dyn Observer>>,
    /// Some node fell back; some node waits.
    ends: Ends,
}

impl Ledger {
    pub(crate) fn new(plan: &Plan, observer: Option<Arc<dyn Observer>>) -> Self {
        Ledger {
            records: (0..plan.nodes().len()).map(|_| Record::default()).collect(),
            store: Store::new(plan),
            observer,
            ends: Ends::default(),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The state, without the records.
    pub(crate) fn into_store(self) -> Store {
        self.store
    }

    /// Whether the node has ended.
    pub(crate) fn is_settled(&self, id: NodeId) -> bool {
        self.records[id.index()].status.is_some()
    }

    /// Whether the node ended in a way that lets its dependents start.
    pub(crate) fn releases(&self, id: NodeId) -> bool {
        self.records[id.index()].status.is_some_and(releases)
    }

    /// The node starts now.
    pub(crate) fn started(&mut self, id: NodeId, at: Instant) {
        self.records[id.index()].start = Some(at);
    }

    /// Records a node's end, everywhere it must be recorded. See the module's doc.
    ///
    /// Inlined into each of its few callers, so that each is specialised to its kind of end (a
    /// success, the hot path, carries no failure and takes no lock).
    #[inline(always)]
    pub(crate) fn settle(&mut self, run: &RunShared, id: NodeId, ending: Ending) -> Release {
        let plan = &*run.scope.plan;
        let node = plan.node(id);
        let Ending {
            status,
            attempts,
            end,
            failure,
            mut writes,
            prompt,
        } = ending;
        let rec = &mut self.records[id.index()];
        rec.status = Some(status);
        rec.attempts = attempts;
        if status != NodeStatus::NotStarted {
            rec.end = Some(end);
            // A node that ended as it started (skipped, or its `when` failed) took no time.
            rec.start.get_or_insert(end);
        }
        match (&failure, status) {
            (Some(f), NodeStatus::Failed | NodeStatus::FellBack) => {
                tracing::warn!(node = %node.name, failure = f.kind.as_str(), message = %f.message, "node failed");
            }
            _ => {
                tracing::debug!(node = %node.name, status = status.as_str(), attempts, "node settled")
            }
        }
        // A node that succeeded at its first attempt (the hot path) has nothing more to record.
        let retried = status == NodeStatus::Cancelled || attempts > 1;
        if failure.is_some() || retried {
            let retries = if retried {
                take_retries(run, id)
            } else {
                Vec::new()
            };
            if failure.is_some() || !retries.is_empty() {
                let details = rec.details();
                details.failure = failure;
                details.retries = retries;
            }
        }
        if status == NodeStatus::FellBack {
            self.ends.degraded = true;
        }
        if status == NodeStatus::Waiting {
            self.ends.waiting = true;
            rec.details().prompt = prompt;
        }
        if status != NodeStatus::NotStarted {
            run.emit(|| Event::NodeFinished {
                node: node.name.clone(),
                status,
                at: run.at(end),
            });
        }
        let recorded = self.observer.as_ref().and_then(|o| {
            o.settled(&NodeSettled {
                plan,
                id,
                record: &self.records[id.index()],
                run_start: run.start,
                writes: writes.as_ref(),
            })
        });
        if !releases(status) {
            return match recorded {
                // Its end must still be recorded before the run ends.
                Some(r) => Release::After(r),
                None => Release::Never,
            };
        }
        self.fold(plan, id, writes.as_mut());
        match recorded {
            Some(r) => Release::After(r),
            None => Release::Now,
        }
    }

    /// Records a node that settled in an earlier run and folds its writes, as if it had just
    /// ended (no event, no observer: it was recorded then).
    pub(crate) fn restore(&mut self, plan: &Plan, id: NodeId, run_start: Instant, prior: Prior) {
        let Prior {
            status,
            attempts,
            start,
            end,
            failure,
            mut writes,
        } = prior;
        let rec = &mut self.records[id.index()];
        rec.status = Some(status);
        rec.attempts = attempts;
        rec.start = start.and_then(|d| run_start.checked_add(d));
        rec.end = end.and_then(|d| run_start.checked_add(d));
        if let Some(f) = failure {
            rec.details().failure = Some(f);
        }
        if status == NodeStatus::FellBack {
            self.ends.degraded = true;
        }
        self.fold(plan, id, Some(&mut writes));
    }

    #[inline]
    fn fold(&mut self, plan: &Plan, id: NodeId, mut writes: Option<&mut Writes>) {
        for (i, &(key, pos)) in plan.node(id).writes.iter().enumerate() {
            let value = writes.as_mut().and_then(|w| w.slot(i).take());
            self.store.settle(plan, key, pos, value);
        }
    }

    /// Settles every node that started and has not ended as cancelled, with `failure`.
    pub(crate) fn cancel_started(
        &mut self,
        run: &RunShared,
        failure: &Failure,
        now: Instant,
    ) -> Vec<(NodeId, Recorded)> {
        self.settle_open(
            run,
            |rec| rec.start.is_some(),
            |i| Ending {
                status: NodeStatus::Cancelled,
                // 0 when it was cancelled before its first attempt began.
                attempts: run.attempts[i].load(Ordering::Relaxed),
                end: now,
                failure: Some(failure.clone()),
                writes: None,
                prompt: None,
            },
        )
    }

    /// Settles, as `ending` says, every node not yet ended that `which` picks, and gives the
    /// records the observer is still making of them.
    fn settle_open(
        &mut self,
        run: &RunShared,
        which: impl Fn(&Record) -> bool,
        ending: impl Fn(usize) -> Ending,
    ) -> Vec<(NodeId, Recorded)> {
        let mut recorded = Vec::new();
        for i in 0..self.records.len() {
            let rec = &self.records[i];
            if rec.status.is_none() && which(rec) {
                let id = NodeId(i as u32);
                if let Release::After(r) = self.settle(run, id, ending(i)) {
                    recorded.push((id, r));
                }
            }
        }
        recorded
    }

    /// Settles every node that never started as not started, and gives the report of every node
    /// (in canonical order) and the store.
    #[allow(clippy::type_complexity)]
    pub(crate) fn finish(
        mut self,
        run: &RunShared,
    ) -> (Vec<NodeReport>, Store, Vec<(NodeId, Recorded)>, Ends) {
        let plan = &*run.scope.plan;
        let recorded = self.settle_open(
            run,
            |_| true,
            |_| Ending {
                status: NodeStatus::NotStarted,
                attempts: 0,
                end: Instant::now(),
                failure: None,
                writes: None,
                prompt: None,
            },
        );
        let at = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(run.start));
        let nodes = plan
            .nodes()
            .iter()
            .zip(self.records)
            .map(|(n, r)| {
                let Details {
                    failure,
                    retries,
                    prompt,
                } = r.details.map(|d| *d).unwrap_or_default();
                NodeReport {
                    name: n.name.clone(),
                    kind: n.kind.clone(),
                    status: r.status.unwrap_or(NodeStatus::NotStarted),
                    attempts: r.attempts,
                    start: at(r.start),
                    end: at(r.end),
                    failure,
                    retries,
                    prompt: prompt.map(String::into_boxed_str),
                }
            })
            .collect();
        (nodes, self.store, recorded, self.ends)
    }
}

/// Whether a node that ended so releases its dependents (and has its writes folded).
fn releases(status: NodeStatus) -> bool {
    matches!(
        status,
        NodeStatus::Succeeded | NodeStatus::FellBack | NodeStatus::Skipped
    )
}

/// Takes node `id`'s retried attempts out of the run's shared list.
fn take_retries(run: &RunShared, id: NodeId) -> Vec<AttemptReport> {
    let mut mine = Vec::new();
    run.retried().retain(|(n, a)| {
        if *n == id {
            mine.push(a.clone());
        }
        *n != id
    });
    mine
}
