//! One segment of a durable run (a start, a resume, a retry, a claimed run), in one process: the
//! run with its journal, and its end recorded. Also what a run is started with, as recorded, so
//! that a continued run uses the same.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use braid_store::{Entry, RunState, StoreError};
use serde_json::{Value, json};

use super::journal::{Clock, Journal};
use super::{Durable, DurableError};
use crate::{
    Error, ExecutionMode, PartialRun, RunError, RunOptions, RunResult, RunStatus, Workflow,
};

/// A durable run under way: its id (known before it ends, to resume it if this process dies),
/// and its future (`.await` it).
pub struct Started {
    run_id: String,
    run: Pin<Box<dyn Future<Output = Result<RunResult, Error>> + Send>>,
}

impl Started {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl IntoFuture for Started {
    type Output = Result<RunResult, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<RunResult, Error>> + Send>>;

    /// Runs it to its end (or its stop at a `wait` node), its end recorded.
    ///
    /// # Cancel safety
    ///
    /// Dropping it aborts the run as dropping any run does; what settled is in the store, and
    /// the run stays `running` there, to be resumed.
    fn into_future(self) -> Self::IntoFuture {
        self.run
    }
}

/// What a run was started with, as recorded: a continued run uses the same.
pub(super) fn encode_options(o: &RunOptions) -> Value {
    json!({
        "mode": o.mode.map(|m| match m {
            ExecutionMode::Parallel => "parallel",
            ExecutionMode::Sequential => "sequential",
        }),
        "max_concurrency": o.max_concurrency,
        "timeout_ms": o.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        "seed": o.seed,
    })
}

/// Applies recorded options to `o` (whose events and cancel token are the caller's).
pub(super) fn apply_options(recorded: &Value, o: &mut RunOptions) {
    o.mode = match recorded["mode"].as_str() {
        Some("sequential") => Some(ExecutionMode::Sequential),
        Some("parallel") => Some(ExecutionMode::Parallel),
        _ => None,
    };
    o.max_concurrency = recorded["max_concurrency"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok());
    o.timeout = recorded["timeout_ms"].as_u64().map(Duration::from_millis);
    o.seed = recorded["seed"].as_u64().unwrap_or(0);
}

/// A run's end as recorded.
fn run_state(result: &RunResult) -> RunState {
    match (result.status, &result.report.error) {
        (_, Some(RunError::Cancelled)) => RunState::Cancelled,
        (RunStatus::Succeeded, _) => RunState::Succeeded,
        (RunStatus::Degraded, _) => RunState::Degraded,
        (RunStatus::Failed, _) => RunState::Failed,
        (RunStatus::Waiting, _) => RunState::Waiting,
    }
}

impl Durable {
    /// Runs one segment of a run (a start, a resume or a retry) with its journal, and records
    /// its end; every write fenced with `epoch`, if given (a claimed run).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn segment(
        &self,
        workflow: Workflow,
        partial: Option<PartialRun>,
        inputs: Value,
        run_id: String,
        next_seq: u64,
        mut options: RunOptions,
        note: Option<Value>,
        epoch: Option<u64>,
    ) -> Started {
        let clock = Clock::now();
        let journal = Journal::new(
            self.store.clone(),
            run_id.clone(),
            clock,
            next_seq,
            options.events.take(),
            note,
            self.listener.clone(),
            epoch,
        );
        options.event_hook = Some(journal.hook());
        options.observer = Some(journal.clone());
        options.run_id = Some(Arc::from(run_id.as_str()));
        let store = self.store.clone();
        let id = run_id.clone();
        let run = async move {
            let result = match partial {
                Some(partial) => braid_runtime::run_from(partial, inputs, options).await,
                None => braid_runtime::run(workflow.plan().clone(), inputs, options).await,
            };
            if let Some(RunError::Observer { .. }) = result.report.error {
                // The store failed under the run: it stays `running`, to be resumed.
                if let Some(l) = journal.listener() {
                    l.ended(&id, false);
                }
                if let Some(source) = journal.fenced() {
                    // Another replica owns the run now: nothing more of this segment is kept.
                    return Err(Error::from(DurableError::Fenced { run: id, source }));
                }
                return Err(Error::from(DurableError::Unrecorded {
                    run: id,
                    result: Box::new(result),
                    source: StoreError::Database {
                        location: store.location().to_owned(),
                        detail: "a node's end could not be recorded".to_owned(),
                    },
                }));
            }
            let end = Entry::End {
                run: id.clone(),
                state: run_state(&result),
                error: result
                    .report
                    .error
                    .as_ref()
                    .and_then(|e| serde_json::to_value(e).ok()),
                at: braid_store::now_micros(),
            };
            let appended = journal.finish(end).await;
            if let Some(l) = journal.listener() {
                l.ended(&id, appended.is_ok());
            }
            match appended {
                Ok(()) => Ok(result),
                Err(source @ StoreError::Fenced { .. }) => {
                    Err(Error::from(DurableError::Fenced { run: id, source }))
                }
                Err(source) => Err(Error::from(DurableError::Unrecorded {
                    run: id,
                    result: Box::new(result),
                    source,
                })),
            }
        };
        Started {
            run_id,
            run: Box::pin(run),
        }
    }
}
