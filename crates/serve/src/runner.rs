//! Runs in flight in this process: started, resumed and retried through [`Durable`], each in a
//! task the [`Runner`]'s tracker owns, under a limit on how many run at once; cancelled through
//! their tokens; drained on shutdown; and, at start, the runs a previous process left `running`
//! resumed. In a replica (`crate::replica`), runs are submitted to the store's queue instead and
//! come back here as claims; a run continued, retried or cancelled here is taken over; and a run
//! this replica no longer owns is dropped (its task aborted, nothing more written).
//!
//! A run's task is not the request's: a client that disconnects (even from `?wait=true`) does
//! not stop its run. Dropping the tracker's tasks (the process exiting after the drain timeout)
//! leaves their runs `running` in the store, every settled node recorded, to be resumed by the
//! next start.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use braid::durable::{Claim, Durable, DurableError, Reply, RunFilter, RunState, Started};
use braid::{CancelToken, Error, RunOptions, RunResult, Workflow};
use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::metrics;

/// Why a run was not started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// As many runs as the limit are in flight.
    #[error("{limit} runs are in flight, the most this service runs at once; try again shortly")]
    Busy {
        /// The limit.
        limit: usize,
    },
    /// The service is shutting down.
    #[error("the service is shutting down and starts no new runs")]
    Draining,
    /// The durable layer refused.
    #[error(transparent)]
    Braid(#[from] Error),
}

/// A run's task: its result once it ends (or stops to wait).
pub(crate) type RunTask = JoinHandle<Result<RunResult, Error>>;

/// A run in flight here.
#[derive(Debug)]
struct Local {
    cancel: CancelToken,
    /// Its task, to drop it when this replica no longer owns it.
    abort: Option<AbortHandle>,
}

/// The runs in flight here.
#[derive(Debug)]
pub(crate) struct Runner {
    durable: Durable,
    hub: Arc<Hub>,
    tracker: TaskTracker,
    local: Mutex<HashMap<String, Local>>,
    slots: Arc<Semaphore>,
    limit: usize,
    /// This replica's id, when the service shares its store (`crate::replica`).
    replica: Option<String>,
    /// Held while the runs this replica owns change (a claim, a take-over and the spawn of its
    /// task) or are compared with what the store says it owns (a heartbeat): so a comparison
    /// never sees a run owned but not yet here, nor here but not yet owned.
    pub(crate) owning: tokio::sync::Mutex<()>,
    /// Told when a run here ends (a slot is free).
    pub(crate) freed: Notify,
    /// Runs whose segment failed here for a reason other than the store (a definition this
    /// engine cannot compile, a damaged journal): not taken up again by this replica.
    broken: Mutex<HashSet<String>>,
}

impl Runner {
    pub(crate) fn new(
        durable: Durable,
        hub: Arc<Hub>,
        limit: usize,
        replica: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Runner {
            durable,
            hub,
            tracker: TaskTracker::new(),
            local: Mutex::default(),
            slots: Arc::new(Semaphore::new(limit.max(1))),
            limit: limit.max(1),
            replica,
            owning: tokio::sync::Mutex::new(()),
            freed: Notify::new(),
            broken: Mutex::default(),
        })
    }

    /// Whether this service is a replica sharing its store.
    pub(crate) fn shared(&self) -> bool {
        self.replica.is_some()
    }

    /// This replica's id, if it is one.
    pub(crate) fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
    }

    /// Free slots.
    pub(crate) fn free(&self) -> usize {
        if self.tracker.is_closed() {
            return 0;
        }
        self.slots.available_permits()
    }

    pub(crate) fn durable(&self) -> &Durable {
        &self.durable
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// How many runs are in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.limit - self.slots.available_permits()
    }

    /// Whether the run is in flight here.
    pub(crate) fn is_here(&self, run: &str) -> bool {
        self.local().contains_key(run)
    }

    /// The runs in flight here.
    pub(crate) fn here(&self) -> HashSet<String> {
        self.local().keys().cloned().collect()
    }

    /// Whether the run's segment here has not ended (its end is not recorded yet).
    pub(crate) fn still_running(&self, run: &str) -> bool {
        self.hub.is_open(run)
    }

    /// Whether the run's segment failed here for a reason other than the store.
    pub(crate) fn is_broken(&self, run: &str) -> bool {
        self.broken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(run)
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self) -> Result<OwnedSemaphorePermit, StartError> {
        if self.tracker.is_closed() {
            return Err(StartError::Draining);
        }
        self.slots.clone().try_acquire_owned().map_err(|_| {
            metrics::refused();
            StartError::Busy { limit: self.limit }
        })
    }

    /// Queues a run of `workflow` for the replicas sharing the store (this version, by its
    /// fingerprint): whichever has room claims it. Returns its id.
    pub(crate) async fn submit(
        &self,
        workflow: &Workflow,
        inputs: Value,
    ) -> Result<String, StartError> {
        if self.tracker.is_closed() {
            return Err(StartError::Draining);
        }
        Ok(self
            .durable
            .submit(workflow, inputs, RunOptions::default())
            .await?)
    }

    /// Runs a run this replica claimed (or owns without running it: `adopted`), fenced with the
    /// claim's epoch. Nothing happens when no slot is free (a claim asks only for free ones; a
    /// run left owned but not run is taken up at a later heartbeat).
    pub(crate) async fn run_claimed(self: &Arc<Self>, claim: &Claim, adopted: bool) {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return;
        };
        let cancel = CancelToken::new();
        match self.durable.run_claimed(claim, options(&cancel)).await {
            Ok(started) => {
                if adopted {
                    metrics::adopted();
                    tracing::info!(run = %claim.run, epoch = claim.epoch, "taking up a run this replica owns");
                }
                drop(self.spawn(started, cancel, permit));
            }
            Err(Error::Durable(DurableError::Fenced { .. } | DurableError::WrongState { .. })) => {
                // Taken by another replica, or ended, since: not ours to run.
                tracing::debug!(run = %claim.run, "a claimed run moved on before it started here");
            }
            Err(Error::Durable(DurableError::Store(e))) => {
                // Still ours in the store: the next heartbeat takes it up again.
                tracing::warn!(run = %claim.run, error = %e, "cannot start a claimed run; it is taken up again when the store answers");
            }
            Err(e) => {
                self.broken
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(claim.run.clone());
                tracing::error!(run = %claim.run, error = %e, "cannot run a claimed run here; it stays with this replica until it stops, then goes to another");
            }
        }
    }

    /// Starts a run of `workflow` (this version: the run keeps it whatever reloads follow).
    pub(crate) async fn start(
        self: &Arc<Self>,
        workflow: &Workflow,
        inputs: Value,
    ) -> Result<(String, RunTask), StartError> {
        let permit = self.slot()?;
        let cancel = CancelToken::new();
        let options = options(&cancel);
        let started = self.durable.start(workflow, inputs, options).await?;
        Ok(self.spawn(started, cancel, permit))
    }

    /// Resumes a run that did not finish (with the answer for a waiting node).
    pub(crate) async fn resume(
        self: &Arc<Self>,
        run: &str,
        reply: Option<Reply>,
    ) -> Result<(String, RunTask), StartError> {
        let permit = self.slot()?;
        let cancel = CancelToken::new();
        let started = self.durable.resume(run, reply, options(&cancel)).await?;
        Ok(self.spawn(started, cancel, permit))
    }

    /// Retries a failed or degraded run (from a node).
    pub(crate) async fn retry(
        self: &Arc<Self>,
        run: &str,
        from: Option<&str>,
    ) -> Result<(String, RunTask), StartError> {
        let permit = self.slot()?;
        let cancel = CancelToken::new();
        let started = self.durable.retry(run, from, options(&cancel)).await?;
        Ok(self.spawn(started, cancel, permit))
    }

    fn spawn(
        self: &Arc<Self>,
        started: Started,
        cancel: CancelToken,
        permit: OwnedSemaphorePermit,
    ) -> (String, RunTask) {
        let id = started.run_id().to_owned();
        self.hub.open(&id);
        self.local().insert(
            id.clone(),
            Local {
                cancel,
                abort: None,
            },
        );
        let me = Arc::downgrade(self);
        let run_id = id.clone();
        let task = self.tracker.spawn(async move {
            // Dropped with the task (aborted: this replica no longer owns the run) as when it
            // ends: the run leaves this process either way.
            let _here = Here {
                runner: me.clone(),
                run: run_id.clone(),
                _permit: permit,
            };
            let result = started.await;
            if let Some(me) = me.upgrade() {
                match &result {
                    Err(Error::Durable(DurableError::Fenced { .. })) => {
                        metrics::dropped("fenced");
                        tracing::info!(run = %run_id, "another replica owns the run now; dropped here");
                    }
                    Err(Error::Durable(
                        DurableError::Definition { .. } | DurableError::Journal { .. },
                    )) => {
                        me.broken
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(run_id.clone());
                    }
                    _ => {}
                }
            }
            result
        });
        if let Some(local) = self.local().get_mut(&id) {
            local.abort = Some(task.abort_handle());
        }
        metrics::runs(self.in_flight());
        (id, task)
    }

    /// Stops running `run` here without writing anything more (this replica no longer owns
    /// it); `false` when it is not here.
    pub(crate) fn drop_run(&self, run: &str, reason: &'static str) -> bool {
        let abort = self.local().get(run).and_then(|l| l.abort.clone());
        match abort {
            Some(a) => {
                a.abort();
                metrics::dropped(reason);
                tracing::warn!(run, reason, "dropping a run this replica no longer owns");
                true
            }
            None => false,
        }
    }

    /// Makes sure a run the store says is not running here anymore has left this process (a
    /// stale copy: another replica took it over and this one has not noticed yet): drops it
    /// and waits, briefly, for its task to go.
    pub(crate) async fn evict(&self, run: &str) {
        if !self.is_here(run) {
            return;
        }
        self.drop_run(run, "taken");
        for _ in 0..200 {
            if !self.is_here(run) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Drops every run here ([`Runner::drop_run`]); returns how many.
    pub(crate) fn drop_all(&self, reason: &'static str) -> usize {
        let runs: Vec<String> = self.local().keys().cloned().collect();
        runs.iter().filter(|r| self.drop_run(r, reason)).count()
    }

    /// Cancels a run in flight here; `false` when it is not here.
    pub(crate) fn cancel(&self, run: &str) -> bool {
        match self.local().get(run) {
            Some(c) => {
                c.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Resumes every run the store holds as `running` that is not in flight here: what a
    /// previous process left when it stopped or died. Waits for free slots rather than refusing.
    pub(crate) async fn recover(self: &Arc<Self>) -> usize {
        let filter = RunFilter {
            state: Some(RunState::Running),
            limit: 10_000,
            ..RunFilter::default()
        };
        let runs = match self.durable.store().list_runs(&filter).await {
            Ok(runs) => runs,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the runs left running; none resumed");
                return 0;
            }
        };
        let mut resumed = 0;
        for run in runs {
            if self.is_here(&run.id) {
                continue;
            }
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                break;
            };
            let cancel = CancelToken::new();
            match self.durable.resume(&run.id, None, options(&cancel)).await {
                Ok(started) => {
                    tracing::info!(run = %run.id, workflow = %run.workflow, "resuming a run left running");
                    drop(self.spawn(started, cancel, permit));
                    resumed += 1;
                }
                Err(e) => {
                    tracing::warn!(run = %run.id, error = %e, "cannot resume a run left running")
                }
            }
        }
        resumed
    }

    /// Stops starting runs and waits up to `timeout` for those in flight; returns how many were
    /// still running then (left `running` in the store, for the next start to resume).
    pub(crate) async fn drain(&self, timeout: Duration) -> usize {
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        self.tracker.len()
    }

    /// Waits until every task here ended (after [`Runner::drop_all`]).
    pub(crate) async fn stopped(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// A run's presence here, for as long as its task lives.
struct Here {
    runner: std::sync::Weak<Runner>,
    run: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Here {
    fn drop(&mut self) {
        if let Some(runner) = self.runner.upgrade() {
            // Streams end (a normal end closed the channel already; this is for the rest),
            // before the run leaves `local`: only then may a new segment of it open one here.
            runner.hub.close(&self.run);
            runner.local().remove(&self.run);
            runner.freed.notify_one();
            metrics::runs(runner.in_flight().saturating_sub(1));
        }
    }
}

fn options(cancel: &CancelToken) -> RunOptions {
    RunOptions {
        cancel: Some(cancel.clone()),
        ..RunOptions::default()
    }
}
