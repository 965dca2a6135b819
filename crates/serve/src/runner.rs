//! Runs in flight in this process: started, resumed and retried through [`Durable`], each in a
//! task the [`Runner`]'s tracker owns, under a limit on how many run at once; cancelled through
//! their tokens; drained on shutdown; and, at start, the runs a previous process left `running`
//! resumed.
//!
//! A run's task is not the request's: a client that disconnects (even from `?wait=true`) does
//! not stop its run. Dropping the tracker's tasks (the process exiting after the drain timeout)
//! leaves their runs `running` in the store, every settled node recorded, to be resumed by the
//! next start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use braid::durable::{Durable, Reply, RunFilter, RunState, Started};
use braid::{CancelToken, Error, RunOptions, RunResult, Workflow};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
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

/// The runs in flight here.
#[derive(Debug)]
pub(crate) struct Runner {
    durable: Durable,
    hub: Arc<Hub>,
    tracker: TaskTracker,
    cancels: Mutex<HashMap<String, CancelToken>>,
    slots: Arc<Semaphore>,
    limit: usize,
}

impl Runner {
    pub(crate) fn new(durable: Durable, hub: Arc<Hub>, limit: usize) -> Arc<Self> {
        Arc::new(Runner {
            durable,
            hub,
            tracker: TaskTracker::new(),
            cancels: Mutex::default(),
            slots: Arc::new(Semaphore::new(limit.max(1))),
            limit: limit.max(1),
        })
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
        self.cancels().contains_key(run)
    }

    fn cancels(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancelToken>> {
        self.cancels.lock().unwrap_or_else(PoisonError::into_inner)
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
        self.cancels().insert(id.clone(), cancel);
        let me = Arc::downgrade(self);
        let run_id = id.clone();
        let task = self.tracker.spawn(async move {
            let result = started.await;
            if let Some(me) = me.upgrade() {
                me.cancels().remove(&run_id);
                if result.is_err() {
                    // An unrecorded end: the listener was told, but make sure streams end.
                    me.hub.close(&run_id);
                }
            }
            drop(permit);
            result
        });
        (id, task)
    }

    /// Cancels a run in flight here; `false` when it is not here.
    pub(crate) fn cancel(&self, run: &str) -> bool {
        match self.cancels().get(run) {
            Some(c) => {
                c.cancel();
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
}

fn options(cancel: &CancelToken) -> RunOptions {
    RunOptions {
        cancel: Some(cancel.clone()),
        ..RunOptions::default()
    }
}
