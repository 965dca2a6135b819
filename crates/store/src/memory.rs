//! The store that keeps everything in the process: for tests, and for services that want the
//! store's interface without its durability. It is also the reference the conformance suite
//! holds the database backends to, so it is written plainly: one mutex over maps, never held
//! across an `.await` (no method awaits anything).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::codec;
use crate::metrics::counted;
use crate::{
    BoxFuture, Claim, Definition, Entry, EventRecord, Micros, NewRun, NodeRecord, Reopen,
    RunFilter, RunRecord, RunState, Store, StoreError,
};

/// A store in memory: what a stateless service or a test uses.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Wakes a claimer waiting in `wait_for_work` when a run is queued or handed back.
    work: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    /// Definitions by fingerprint, with when they were last put (a definition put recently is
    /// kept by `gc` even before a run uses it).
    definitions: HashMap<String, (Definition, Micros)>,
    runs: HashMap<String, Run>,
    /// Replicas by id: their lease's time to live and when it expires.
    replicas: HashMap<String, (Duration, Instant)>,
}

#[derive(Debug)]
struct Run {
    record: RunRecord,
    nodes: BTreeMap<String, NodeRecord>,
    events: Vec<EventRecord>,
    /// Submitted to the queue ([`Store::submit`]): claimable when no live replica owns it.
    /// (Its owner and epoch are the record's.)
    queued: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change: every method
        // validates before it changes anything.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn run(&self, id: &str) -> Result<&Run, StoreError> {
        self.runs
            .get(id)
            .ok_or_else(|| StoreError::UnknownRun { run: id.to_owned() })
    }

    /// Checks a batch against the store as it is, without changing it.
    fn check(&self, entries: &[Entry]) -> Result<(), StoreError> {
        let mut next: HashMap<&str, u64> = HashMap::new();
        for entry in entries {
            match entry {
                Entry::Node { run, .. } => {
                    self.run(run)?;
                }
                Entry::Events { run, events } => {
                    let expected = match next.get(run.as_str()) {
                        Some(n) => *n,
                        None => self.run(run)?.record.next_seq,
                    };
                    let mut expected = expected;
                    for event in events {
                        if event.seq != expected {
                            return Err(codec::out_of_sequence(run, expected, event.seq));
                        }
                        expected += 1;
                    }
                    next.insert(run, expected);
                }
                Entry::End { run, state, .. } => {
                    self.run(run)?;
                    if *state == RunState::Running {
                        return Err(codec::end_running(run));
                    }
                }
                Entry::Fence { run, epoch } => {
                    let current = self.run(run)?.record.epoch;
                    if current != *epoch {
                        return Err(codec::fenced(run, *epoch, current));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a run owned by `owner` may be claimed at `now`: no owner, or one whose lease
    /// expired (as PostgreSQL's claim decides it).
    fn free(&self, owner: Option<&String>, now: Instant) -> bool {
        owner.is_none_or(|o| {
            self.replicas
                .get(o)
                .is_some_and(|(_, expires)| *expires <= now)
        })
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            match entry {
                Entry::Node { run, record } => {
                    if let Some(r) = self.runs.get_mut(&run) {
                        r.nodes.insert(record.node.clone(), record);
                    }
                }
                Entry::Events { run, events } => {
                    if let Some(r) = self.runs.get_mut(&run) {
                        r.record.next_seq += events.len() as u64;
                        r.events.extend(events);
                    }
                }
                Entry::End {
                    run,
                    state,
                    error,
                    at,
                } => {
                    if let Some(r) = self.runs.get_mut(&run) {
                        r.record.state = state;
                        r.record.error = error;
                        r.record.ended_at = Some(at);
                        r.record.updated_at = at;
                    }
                }
                Entry::Fence { .. } => {}
            }
        }
    }
}

impl MemoryStore {
    /// Creates a run, queued or not.
    fn create(&self, run: &NewRun, queued: bool) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.runs.contains_key(&run.id) {
            return Err(codec::run_taken(&run.id));
        }
        if !inner.definitions.contains_key(&run.fingerprint) {
            return Err(StoreError::UnknownDefinition {
                fingerprint: run.fingerprint.clone(),
            });
        }
        let record = RunRecord {
            id: run.id.clone(),
            workflow: run.workflow.clone(),
            fingerprint: run.fingerprint.clone(),
            inputs: run.inputs.clone(),
            options: run.options.clone(),
            state: RunState::Running,
            created_at: run.created_at,
            updated_at: run.created_at,
            ended_at: None,
            error: None,
            restarts: 0,
            next_seq: 0,
            owner: None,
            epoch: 0,
        };
        inner.runs.insert(
            run.id.clone(),
            Run {
                record,
                nodes: BTreeMap::new(),
                events: Vec::new(),
                queued,
            },
        );
        Ok(())
    }
}

/// Whether `record` passes `filter` (all but the limit).
fn selected(record: &RunRecord, filter: &RunFilter) -> bool {
    filter
        .workflow
        .as_ref()
        .is_none_or(|w| *w == record.workflow)
        && filter.state.is_none_or(|s| s == record.state)
        && filter
            .before
            .as_ref()
            .is_none_or(|(at, id)| (record.created_at, record.id.as_str()) < (*at, id.as_str()))
}

impl Store for MemoryStore {
    fn location(&self) -> &str {
        "memory"
    }

    fn put_definition<'a>(&'a self, def: &'a Definition) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let now = crate::now_micros();
            let mut inner = self.lock();
            inner
                .definitions
                .entry(def.fingerprint.clone())
                .and_modify(|(_, put)| *put = now)
                .or_insert_with(|| (def.clone(), now));
            Ok(())
        })
    }

    fn definition<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Option<Definition>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .definitions
                .get(fingerprint)
                .map(|(d, _)| d.clone()))
        })
    }

    fn create_run<'a>(&'a self, run: &'a NewRun) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.create(run, false) })
    }

    fn submit<'a>(&'a self, run: &'a NewRun) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.create(run, true)?;
            self.work.notify_one();
            Ok(())
        })
    }

    fn claim<'a>(
        &'a self,
        replica: &'a str,
        max: usize,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<Claim>, StoreError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut inner = self.lock();
            inner.replicas.insert(replica.to_owned(), (ttl, now + ttl));
            let mut free: Vec<(Micros, String)> = inner
                .runs
                .values()
                .filter(|r| {
                    r.queued
                        && r.record.state == RunState::Running
                        && inner.free(r.record.owner.as_ref(), now)
                })
                .map(|r| (r.record.created_at, r.record.id.clone()))
                .collect();
            free.sort();
            free.truncate(max);
            Ok(free
                .into_iter()
                .filter_map(|(_, id)| {
                    let r = inner.runs.get_mut(&id)?;
                    r.record.owner = Some(replica.to_owned());
                    r.record.epoch += 1;
                    Some(Claim {
                        run: id,
                        epoch: r.record.epoch,
                    })
                })
                .collect())
        })
    }

    fn heartbeat<'a>(
        &'a self,
        replica: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<Claim>>, StoreError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut inner = self.lock();
            let Some((ttl, expires)) = inner.replicas.get_mut(replica) else {
                return Ok(None);
            };
            *expires = now + *ttl;
            Ok(Some(
                inner
                    .runs
                    .values()
                    .filter(|r| {
                        r.record.state == RunState::Running
                            && r.record.owner.as_deref() == Some(replica)
                    })
                    .map(|r| Claim {
                        run: r.record.id.clone(),
                        epoch: r.record.epoch,
                    })
                    .collect(),
            ))
        })
    }

    fn release<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.replicas.remove(replica);
            let mut n = 0;
            for r in inner.runs.values_mut() {
                if r.record.state == RunState::Running && r.record.owner.as_deref() == Some(replica)
                {
                    r.record.owner = None;
                    r.record.epoch += 1;
                    n += 1;
                }
            }
            drop(inner);
            if n > 0 {
                self.work.notify_one();
            }
            Ok(n)
        })
    }

    fn wait_for_work(&self, timeout: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            Ok(tokio::time::timeout(timeout, self.work.notified())
                .await
                .is_ok())
        })
    }

    fn append(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            counted(inner.check(&entries))?;
            inner.apply(entries);
            Ok(())
        })
    }

    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>, StoreError>> {
        Box::pin(async move { Ok(self.lock().runs.get(id).map(|r| r.record.clone())) })
    }

    fn nodes<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Vec<NodeRecord>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .runs
                .get(run)
                .map(|r| r.nodes.values().cloned().collect())
                .unwrap_or_default())
        })
    }

    fn events<'a>(
        &'a self,
        run: &'a str,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventRecord>, StoreError>> {
        Box::pin(async move {
            let inner = self.lock();
            let Some(r) = inner.runs.get(run) else {
                return Ok(Vec::new());
            };
            let limit = if limit == 0 { usize::MAX } else { limit };
            Ok(r.events
                .iter()
                .filter(|e| e.seq >= from)
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn list_runs<'a>(
        &'a self,
        filter: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            let inner = self.lock();
            let mut runs: Vec<&RunRecord> = inner
                .runs
                .values()
                .map(|r| &r.record)
                .filter(|r| selected(r, filter))
                .collect();
            runs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            let limit = if filter.limit == 0 { 100 } else { filter.limit };
            Ok(runs.into_iter().take(limit).cloned().collect())
        })
    }

    fn reopen<'a>(&'a self, reopen: &'a Reopen) -> BoxFuture<'a, Result<RunRecord, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let Some(r) = inner.runs.get_mut(&reopen.run) else {
                return Err(StoreError::UnknownRun {
                    run: reopen.run.clone(),
                });
            };
            if let Some(epoch) = reopen.epoch.filter(|e| *e != r.record.epoch) {
                return counted(Err(codec::fenced(&reopen.run, epoch, r.record.epoch)));
            }
            if !reopen.from.contains(&r.record.state) {
                return Err(codec::wrong_state(
                    &reopen.run,
                    r.record.state,
                    &reopen.from,
                ));
            }
            for node in &reopen.reset {
                r.nodes.remove(node);
            }
            r.record.state = RunState::Running;
            r.record.ended_at = None;
            r.record.error = None;
            r.record.updated_at = reopen.at;
            r.record.restarts = r.record.restarts.saturating_add(1);
            if let Some(take) = &reopen.take {
                r.queued = true;
                r.record.owner = Some(take.replica.clone());
                r.record.epoch += 1;
            }
            let record = r.record.clone();
            if let Some(take) = &reopen.take {
                let expires = Instant::now() + take.ttl;
                inner
                    .replicas
                    .insert(take.replica.clone(), (take.ttl, expires));
            }
            Ok(record)
        })
    }

    fn gc(&self, ended_before: Micros) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let before = inner.runs.len();
            inner.runs.retain(|_, r| {
                !(r.record.state.is_finished()
                    && r.record.ended_at.is_some_and(|at| at < ended_before))
            });
            let deleted = (before - inner.runs.len()) as u64;
            let Inner {
                definitions, runs, ..
            } = &mut *inner;
            definitions.retain(|fingerprint, (_, put)| {
                *put >= ended_before || runs.values().any(|r| r.record.fingerprint == *fingerprint)
            });
            Ok(deleted)
        })
    }
}
