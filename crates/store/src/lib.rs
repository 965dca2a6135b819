//! Braid's durable run journal.
//!
//! A durable run records, as it goes, everything needed to continue it in another process: the
//! workflow's definition (by fingerprint, the text of every file), the run (inputs, options,
//! status), each node's end (status, attempts, timings, failure and **the writes it
//! contributed**), and the run's events with a sequence number. It never stores a snapshot of the
//! state: the runtime folds each key's contributions in a canonical order, so the journal of
//! writes rebuilds the state exactly.
//!
//! One interface, [`Store`], with two implementations behind cargo features:
//!
//! * `sqlite` (default): an embedded file, no server (`sqlite:PATH`);
//! * `postgres`: a shared PostgreSQL database (`postgres://…`);
//!
//! and [`MemoryStore`], which keeps nothing past the process (`memory`), for tests and stateless
//! services. [`open`] picks one from a URL.
//!
//! This crate knows nothing of plans or the runtime: it stores records. The facade (`braid`)
//! turns a run into records and records back into a run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// Without a database backend, only the memory store's error builders are used.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod codec;
mod error;
mod memory;
mod metrics;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod target;

pub use error::StoreError;
pub use memory::MemoryStore;
pub use metrics::FENCED_WRITES_TOTAL;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};

/// The newest schema version this build reads and writes (recorded in each store's
/// `braid_meta`; a store of a higher version is refused with [`StoreError::NewerVersion`]).
pub const SCHEMA_VERSION: i64 = 3;

/// A future a store returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A point in time: microseconds since the UNIX epoch (UTC).
pub type Micros = i64;

/// The current time as [`Micros`].
pub fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Started and not yet ended: running now, or its process died (resume it).
    Running,
    /// Stopped at a `wait` node until a person answers (resume it with a value).
    Waiting,
    /// Every node succeeded or was skipped.
    Succeeded,
    /// Finished, with at least one node fallen back.
    Degraded,
    /// A node with `on_error: fail` failed, or the run's timeout expired (retry it).
    Failed,
    /// Cancelled from outside (resume it).
    Cancelled,
}

impl RunState {
    /// Every state, in declaration order.
    pub const ALL: [RunState; 6] = [
        RunState::Running,
        RunState::Waiting,
        RunState::Succeeded,
        RunState::Degraded,
        RunState::Failed,
        RunState::Cancelled,
    ];

    /// Its name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Waiting => "waiting",
            RunState::Succeeded => "succeeded",
            RunState::Degraded => "degraded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the run ended (succeeded, degraded or failed): `gc` may delete it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Degraded | RunState::Failed
        )
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a node ended, as recorded. The names are the runtime's node statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// It returned a valid update.
    Succeeded,
    /// It failed with `on_error: continue`; its fallback was written.
    FellBack,
    /// It failed with `on_error: fail`.
    Failed,
    /// Its `when` was false.
    Skipped,
    /// It was running when the run was cancelled.
    Cancelled,
    /// A `wait` node that is waiting for an answer.
    Waiting,
}

impl NodeState {
    /// Every state, in declaration order.
    pub const ALL: [NodeState; 6] = [
        NodeState::Succeeded,
        NodeState::FellBack,
        NodeState::Failed,
        NodeState::Skipped,
        NodeState::Cancelled,
        NodeState::Waiting,
    ];

    /// Its name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Succeeded => "succeeded",
            NodeState::FellBack => "fell_back",
            NodeState::Failed => "failed",
            NodeState::Skipped => "skipped",
            NodeState::Cancelled => "cancelled",
            NodeState::Waiting => "waiting",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a continued run keeps this node (its dependents may start): succeeded, fell back,
    /// skipped. The others run again on resume.
    pub fn carries_over(self) -> bool {
        matches!(
            self,
            NodeState::Succeeded | NodeState::FellBack | NodeState::Skipped
        )
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file of a workflow's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionFile {
    /// `""` for the root file; otherwise its path relative to the root file's directory, as the
    /// fingerprint keys it (`sub/child.yaml`).
    pub key: String,
    /// Its text.
    pub text: String,
}

/// A workflow's definition: every file its compilation read, under its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// The plan's fingerprint, 64 hex digits.
    pub fingerprint: String,
    /// The workflow's name.
    pub workflow: String,
    /// The root file first, then the included files by key.
    pub files: Vec<DefinitionFile>,
}

/// A run to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// Its id: 32 hex digits (or any string of 1 to 64 of `[A-Za-z0-9_.-]`).
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The fingerprint of its definition ([`Store::put_definition`] first).
    pub fingerprint: String,
    /// Its resolved inputs (a JSON object).
    pub inputs: Value,
    /// What it runs with (mode, seed, timeout, …), as the facade encodes it; a JSON object.
    pub options: Value,
    /// When it was created.
    pub created_at: Micros,
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Its id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The fingerprint of its definition.
    pub fingerprint: String,
    /// Its resolved inputs.
    pub inputs: Value,
    /// What it runs with.
    pub options: Value,
    /// Where it is.
    pub state: RunState,
    /// When it was created.
    pub created_at: Micros,
    /// When its record last changed.
    pub updated_at: Micros,
    /// When it last ended (any state but `running`), if it did.
    pub ended_at: Option<Micros>,
    /// Why it failed (or was cancelled): the report's `error` object.
    pub error: Option<Value>,
    /// How many times it was resumed or retried.
    pub restarts: u32,
    /// The sequence number its next event will get (one more than the last recorded).
    pub next_seq: u64,
    /// The replica that claimed it last and has not handed it back (`docs/scaling.md`); `None`
    /// for a run never claimed, or released.
    pub owner: Option<String>,
    /// Its fencing token: incremented by every claim, take-over and release; `0` for a run never
    /// claimed.
    pub epoch: u64,
}

/// A node's end, as recorded. One per node per run: a node that runs again (a retry, or a resume
/// after its end was recorded as failed or cancelled) replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's name.
    pub node: String,
    /// How it ended.
    pub state: NodeState,
    /// Attempts made.
    pub attempts: u32,
    /// When its first attempt started, if one did.
    pub started_at: Option<Micros>,
    /// When it ended.
    pub ended_at: Micros,
    /// Why it failed, and its earlier failed attempts, as the facade encodes them (a JSON
    /// object); `None` for a node that did not fail.
    pub failure: Option<Value>,
    /// The writes it contributed: key → value (a fallen-back node's fallback).
    pub writes: Map<String, Value>,
}

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The run started, or was resumed or retried (`data`: how).
    RunStarted,
    /// An attempt of a node started (`node`, `attempt`).
    NodeStarted,
    /// An attempt failed and will be tried again (`node`, `attempt`; `data`: failure, delay).
    NodeRetrying,
    /// A node ended (`node`; `data`: its status).
    NodeFinished,
    /// The run ended, or stopped to wait (`data`: its status).
    RunFinished,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 5] = [
        EventKind::RunStarted,
        EventKind::NodeStarted,
        EventKind::NodeRetrying,
        EventKind::NodeFinished,
        EventKind::RunFinished,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunStarted => "run_started",
            EventKind::NodeStarted => "node_started",
            EventKind::NodeRetrying => "node_retrying",
            EventKind::NodeFinished => "node_finished",
            EventKind::RunFinished => "run_finished",
        }
    }
}

/// One of a run's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Its sequence number in the run: 0, 1, 2 … with no gap, across resumes and retries.
    pub seq: u64,
    /// When it happened.
    pub at: Micros,
    /// What it is.
    pub kind: EventKind,
    /// The node it is about, if any.
    pub node: Option<String>,
    /// The attempt it is about, if any.
    pub attempt: Option<u32>,
    /// The rest (a status, a failure), small; `None` when the kind says it all.
    pub data: Option<Value>,
}

/// One change to the journal. [`Store::append`] applies a batch of them in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A node ended: insert its record, or replace the one it had.
    Node {
        /// The run.
        run: String,
        /// The record.
        record: NodeRecord,
    },
    /// Events of a run, in order. Their `seq` must continue the run's sequence (the store
    /// refuses a gap or a repeat with [`StoreError::Conflict`]).
    Events {
        /// The run.
        run: String,
        /// The events.
        events: Vec<EventRecord>,
    },
    /// The run ended or stopped (any state but `running`).
    End {
        /// The run.
        run: String,
        /// Its new state.
        state: RunState,
        /// Why it failed or was cancelled.
        error: Option<Value>,
        /// When.
        at: Micros,
    },
    /// A fence: the batch applies only if `run`'s current epoch (see [`Store::claim`]) is
    /// `epoch`. Checked under the run's lock in the batch's transaction, before anything of the
    /// batch is written; otherwise the whole batch is refused with [`StoreError::Fenced`] and
    /// nothing changes. A replica running a claimed run puts one first in every batch; a batch
    /// without one is not fenced (a run started by `braid run --store`, as before).
    Fence {
        /// The run.
        run: String,
        /// The epoch it was claimed with.
        epoch: u64,
    },
}

/// A run a replica claimed (see [`Store::claim`]): it may write the run's journal while its
/// lease lives, every batch fenced with `epoch` ([`Entry::Fence`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The run.
    pub run: String,
    /// Its fencing token: one more than the previous claim's (or release's), so a replica that
    /// held the run before has a smaller one.
    pub epoch: u64,
}

/// Which runs [`Store::list_runs`] returns: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs created strictly before this one (by `created_at`, then id): the cursor of the
    /// next page is the last run of the previous one.
    pub before: Option<(Micros, String)>,
    /// At most this many (`0`: the store's default, 100).
    pub limit: usize,
}

/// What [`Store::reopen`] does to a run before it continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reopen {
    /// The run.
    pub run: String,
    /// The states it may be in; any other is a [`StoreError::Conflict`] and nothing changes.
    pub from: Vec<RunState>,
    /// Nodes whose records are deleted (they run again).
    pub reset: Vec<String>,
    /// When.
    pub at: Micros,
    /// The epoch the run must be at (a claimed run's [`Claim::epoch`]); otherwise
    /// [`StoreError::Fenced`] and nothing changes. `None`: not fenced.
    pub epoch: Option<u64>,
    /// Takes the run for a replica in the same transaction: it becomes the owner (registered or
    /// renewed with the lease's time to live), the run queued (so that another replica recovers
    /// it if this one dies) and its epoch incremented (a write of the previous owner is fenced
    /// from then on). The returned record carries the new epoch. `None`: the owner is left as
    /// it is.
    pub take: Option<Take>,
}

/// The replica a [`Reopen`] takes a run for: how any replica continues, retries or cancels a
/// run, wherever it ran before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    /// The replica.
    pub replica: String,
    /// Its lease's time to live, as [`Store::claim`] registers it.
    pub ttl: Duration,
}

/// A durable journal of runs. Every method is atomic: it either happened in full or not at all,
/// and when its future resolves `Ok`, it is as durable as the store's settings make it
/// (`docs/durability.md`).
///
/// Implementations group concurrent calls into few transactions (a group commit); callers may
/// call from many tasks at once.
pub trait Store: Send + Sync + 'static {
    /// Where it is, for messages (a path, a URL without its password, `memory`).
    fn location(&self) -> &str;

    /// Records a definition under its fingerprint; one already recorded is left as it is.
    fn put_definition<'a>(&'a self, def: &'a Definition) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The definition recorded under `fingerprint`.
    fn definition<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Option<Definition>, StoreError>>;

    /// Creates a run, `running`, with no node records and no events.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if the id is taken; [`StoreError::UnknownDefinition`] if its
    /// definition was not put.
    fn create_run<'a>(&'a self, run: &'a NewRun) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Applies `entries` in one transaction, in order.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownRun`] for an entry of a run that does not exist, and
    /// [`StoreError::Conflict`] for events out of sequence: then nothing of the batch is applied.
    fn append(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The run with this id.
    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>, StoreError>>;

    /// Its node records, in no particular order.
    fn nodes<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Vec<NodeRecord>, StoreError>>;

    /// Its events with `seq >= from`, in order, at most `limit` (`0`: all).
    fn events<'a>(
        &'a self,
        run: &'a str,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventRecord>, StoreError>>;

    /// Runs, newest first, as `filter` says.
    fn list_runs<'a>(
        &'a self,
        filter: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, StoreError>>;

    /// Makes a run `running` again to continue it, in one transaction: checks that its state is
    /// one of `reopen.from`, deletes the records of `reopen.reset`, counts a restart. Returns the
    /// run as it now is.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownRun`], or [`StoreError::Conflict`] when its state is not one of
    /// `from` (then nothing changed).
    fn reopen<'a>(&'a self, reopen: &'a Reopen) -> BoxFuture<'a, Result<RunRecord, StoreError>>;

    /// Deletes the finished runs (succeeded, degraded, failed) that ended before `ended_before`,
    /// with their nodes and events, and the definitions no remaining run uses. Returns how many
    /// runs it deleted.
    fn gc(&self, ended_before: Micros) -> BoxFuture<'_, Result<u64, StoreError>>;

    // Shared work: a queue of runs that replicas claim, with leases and fencing
    // (`docs/scaling.md`). The defaults answer `Unsupported`, so a store of a caller's own (a
    // wrapper in a test) need not implement them.

    /// Creates a run like [`Store::create_run`], **queued**: any replica may [`claim`] it, and
    /// claimers waiting in [`wait_for_work`] are woken once it is committed.
    ///
    /// [`claim`]: Store::claim
    /// [`wait_for_work`]: Store::wait_for_work
    ///
    /// # Errors
    ///
    /// As [`Store::create_run`]; [`StoreError::Unsupported`] for a store without a queue.
    fn submit<'a>(&'a self, run: &'a NewRun) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = run;
        Box::pin(async move { Err(self.unsupported("a queue of runs")) })
    }

    /// Takes up to `max` queued runs that are `running` and owned by no live replica (never
    /// claimed, released, or their owner's lease expired), oldest first, skipping runs another
    /// claimer or writer holds locked. Each taken run gets `replica` as its owner and its epoch
    /// incremented, in one transaction; runs stay `running`. Also registers `replica` (or
    /// renews it) with a lease of `ttl`: it lives while [`heartbeat`](Store::heartbeat) renews
    /// it within `ttl`.
    ///
    /// # Errors
    ///
    /// Store errors (nothing claimed then); [`StoreError::Unsupported`].
    fn claim<'a>(
        &'a self,
        replica: &'a str,
        max: usize,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<Claim>, StoreError>> {
        let _ = (replica, max, ttl);
        Box::pin(async move { Err(self.unsupported("claims")) })
    }

    /// Renews `replica`'s lease, and so the lease of every run it owns, for its `ttl`: one
    /// statement, whatever the number of runs; it writes the replica's row and no run's. Answers
    /// the `running` runs the replica owns, with their epochs, as of the renewal: the replica
    /// compares them with what it runs (a claim whose answer was lost; a run another replica
    /// took over). `None` when `replica` is not registered (it never claimed, or released): it
    /// owns nothing.
    ///
    /// # Errors
    ///
    /// Store errors; [`StoreError::Unsupported`].
    fn heartbeat<'a>(
        &'a self,
        replica: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<Claim>>, StoreError>> {
        let _ = replica;
        Box::pin(async move { Err(self.unsupported("leases")) })
    }

    /// Hands back every `running` run `replica` owns (no owner, epoch incremented, so a late
    /// write of the replica is fenced), unregisters it, and wakes waiting claimers. A replica
    /// stopping gracefully calls it after its runs stopped. Returns how many runs it handed
    /// back.
    ///
    /// # Errors
    ///
    /// Store errors; [`StoreError::Unsupported`].
    fn release<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        let _ = replica;
        Box::pin(async move { Err(self.unsupported("leases")) })
    }

    /// Waits until a run may have been queued or handed back ([`submit`](Store::submit),
    /// [`release`](Store::release), by any process sharing the store where the store can tell:
    /// PostgreSQL's `LISTEN/NOTIFY`), or `timeout` passed. `true` when woken, `false` on the
    /// timeout: a claimer polls on every return either way (a notification may be missed while
    /// the connection is down, or sent by another process of a SQLite store). One waiter per
    /// handle is woken per notification.
    ///
    /// # Errors
    ///
    /// When the store cannot listen (unreachable): retry after a pause.
    fn wait_for_work(&self, timeout: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            tokio::time::sleep(timeout).await;
            Ok(false)
        })
    }

    /// The error of a store that lacks `what`.
    #[doc(hidden)]
    fn unsupported(&self, what: &str) -> StoreError {
        StoreError::Unsupported {
            location: self.location().to_owned(),
            what: what.to_owned(),
        }
    }
}

/// A shared handle on a store.
pub type StoreHandle = Arc<dyn Store>;

/// Opens the store `url` names, creating it (and applying migrations) as needed:
///
/// * `sqlite:PATH` (or `sqlite://PATH`): a SQLite file (feature `sqlite`);
/// * `postgres://…` or `postgresql://…`: a PostgreSQL database (feature `postgres`);
/// * `memory`: [`MemoryStore`], gone with the process.
///
/// # Errors
///
/// [`StoreError::BadUrl`], [`StoreError::NotAStore`], [`StoreError::NewerVersion`],
/// [`StoreError::Unreachable`]: nothing is written when opening fails.
pub async fn open(url: &str) -> Result<StoreHandle, StoreError> {
    match target::parse(url)? {
        target::Target::Memory => Ok(Arc::new(MemoryStore::new())),
        #[cfg(feature = "sqlite")]
        target::Target::Sqlite { path, sync } => Ok(Arc::new(
            SqliteStore::open(path, SqliteOptions { sync }).await?,
        )),
        #[cfg(feature = "postgres")]
        target::Target::Postgres { url } => Ok(Arc::new(PostgresStore::connect(&url).await?)),
    }
}
