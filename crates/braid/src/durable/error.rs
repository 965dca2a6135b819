//! Why a durable run could not be started, continued or read.

use braid_store::{RunState, StoreError};

use crate::RunResult;

/// Why a durable run could not be started, continued or read. A user's mistake (an unknown
/// run, a finished run resumed, a wrong answer) says how to fix it; nothing was recorded then.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run is in a state the operation does not apply to.
    #[error("run `{run}` is {state}: {hint}")]
    WrongState {
        /// The run.
        run: String,
        /// Its state.
        state: RunState,
        /// What to do instead.
        hint: &'static str,
    },
    /// The definition recorded for the run does not compile with this engine (a kind or reducer
    /// it used is not registered here).
    #[error(
        "the workflow `{workflow}` recorded for run `{run}` (fingerprint {fingerprint}) does not compile here:\n{message}"
    )]
    Definition {
        /// The run.
        run: String,
        /// The workflow's name.
        workflow: String,
        /// The definition's fingerprint.
        fingerprint: String,
        /// The diagnostics.
        message: String,
    },
    /// A node named that the run's workflow does not have.
    #[error("run `{run}` (workflow `{workflow}`) has no node `{node}`")]
    UnknownNode {
        /// The run.
        run: String,
        /// The workflow.
        workflow: String,
        /// The node.
        node: String,
    },
    /// An answer that does not fit the waiting node, or no answer where one is needed.
    #[error("{0}")]
    Answer(String),
    /// The run's journal cannot continue it (records that do not fit its definition).
    #[error("the journal of run `{run}` cannot continue it: {message}")]
    Journal {
        /// The run.
        run: String,
        /// What does not fit.
        message: String,
    },
    /// Nothing to retry: no node failed or fell back.
    #[error("run `{run}` has no failed or fallen-back node to retry; name one with `--from NODE`")]
    NothingToRetry {
        /// The run.
        run: String,
    },
    /// A claimed run's write was refused because another replica claimed the run since (this
    /// one's lease expired) or it was handed back: the segment stopped and wrote nothing more.
    /// Drop the run; do not touch it again.
    #[error("run `{run}` stopped: {source}")]
    Fenced {
        /// The run.
        run: String,
        /// The store's refusal ([`StoreError::Fenced`]: the epochs).
        source: StoreError,
    },
    /// The run ended, but its end could not be recorded: the result is here, and the run stays
    /// `running` in the store (resume it to record its end; nothing that settled runs again).
    #[error("run `{run}` ended {}, but its end could not be recorded: {source}", result.status.as_str())]
    Unrecorded {
        /// The run.
        run: String,
        /// How it ended.
        result: Box<RunResult>,
        /// Why it could not be recorded.
        source: StoreError,
    },
}

/// A store error as the facade reports it: a fenced refusal as [`DurableError::Fenced`].
pub(super) fn fenced_or(run: &str, e: StoreError) -> DurableError {
    match e {
        StoreError::Fenced { .. } => DurableError::Fenced {
            run: run.to_owned(),
            source: e,
        },
        e => DurableError::Store(e),
    }
}
