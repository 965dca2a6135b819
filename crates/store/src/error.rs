//! The one error type of every store, so a caller matches on the same variants whichever backend
//! the URL chose.

/// Why a store operation failed. Every message says what went wrong and how to fix it. A
/// failed operation changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is not one this build understands.
    #[error(
        "`{url}` is not a store URL: use `sqlite:PATH`, `postgres://USER@HOST/DB` or `memory`{hint}"
    )]
    BadUrl {
        /// The URL given.
        url: String,
        /// More, such as a store kind this build was compiled without.
        hint: String,
    },
    /// The file or database is not a Braid store (another program's data).
    #[error(
        "`{location}` is not a Braid store ({detail}); give a new file or an empty database, or the path of an existing Braid store"
    )]
    NotAStore {
        /// The path or URL.
        location: String,
        /// What was found.
        detail: String,
    },
    /// The store was made or upgraded by a newer Braid.
    #[error(
        "`{location}` is a Braid store of version {found}, newer than this braid understands (up to {supported}); use a newer braid"
    )]
    NewerVersion {
        /// The path or URL.
        location: String,
        /// Its version.
        found: i64,
        /// The newest this build reads.
        supported: i64,
    },
    /// The database could not be reached, or went away.
    #[error("cannot reach the store `{location}`: {detail}")]
    Unreachable {
        /// The path or URL (without a password).
        location: String,
        /// Why.
        detail: String,
    },
    /// No run has this id.
    #[error("no run `{run}` in the store; `braid runs list` shows the runs it holds")]
    UnknownRun {
        /// The id.
        run: String,
    },
    /// No definition has this fingerprint.
    #[error("no workflow definition with fingerprint `{fingerprint}` in the store")]
    UnknownDefinition {
        /// The fingerprint.
        fingerprint: String,
    },
    /// The operation does not fit the run's recorded state (a run id taken, an event sequence
    /// with a gap, a run not in a state it may be reopened from).
    #[error("{0}")]
    Conflict(String),
    /// The store's content is damaged (a record that cannot be read back).
    #[error("the store `{location}` is damaged: {detail}")]
    Corrupt {
        /// The path or URL.
        location: String,
        /// What could not be read.
        detail: String,
    },
    /// A write of a claimed run under an epoch that is no longer the run's: another replica
    /// claimed it since (this one's lease expired) or it was handed back. Nothing was written;
    /// drop the run without touching it again.
    #[error(
        "run `{run}` was fenced: written under epoch {epoch}, but it is at epoch {current} (another replica claimed it); nothing was written"
    )]
    Fenced {
        /// The run.
        run: String,
        /// The epoch the write carried.
        epoch: u64,
        /// The run's current epoch.
        current: u64,
    },
    /// The store does not do this (a store of a caller's own without queues or leases).
    #[error("the store `{location}` does not support {what}")]
    Unsupported {
        /// The path or URL.
        location: String,
        /// What it lacks.
        what: String,
    },
    /// Any other database error.
    #[error("store `{location}`: {detail}")]
    Database {
        /// The path or URL.
        location: String,
        /// The database's message.
        detail: String,
    },
}
