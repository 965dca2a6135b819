//! The one writer: a thread that owns the write connection and applies every write of the store.
//!
//! Why a thread of its own: SQLite takes one writer at a time per file, and a connection per
//! task would fight over that lock ("database is locked") and pay a sync per transaction. Here
//! callers send their writes down a bounded channel; the thread takes every request waiting,
//! applies them in **one** transaction (a group commit: one WAL sync for the group), each in a
//! savepoint of its own so that one failing write rolls back alone, then answers each caller on
//! its oneshot. Another process writing the same file waits on `busy_timeout` at `BEGIN
//! IMMEDIATE`, never in the middle of a transaction.

use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::write;
use crate::{Claim, Definition, Entry, Micros, NewRun, Reopen, RunRecord, StoreError};

/// Requests waiting beyond this make senders wait (back-pressure), rather than queue unbounded.
const QUEUE: usize = 1024;
/// At most this many requests go in one transaction, so a flood of writers still sees commits.
const GROUP: usize = 512;

/// Where a request's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write, with where its answer goes.
pub(super) enum Request {
    PutDefinition(Definition, Reply<()>),
    /// A new run, and whether it is queued.
    CreateRun(NewRun, bool, Reply<()>),
    Append(Vec<Entry>, Reply<()>),
    Reopen(Reopen, Reply<RunRecord>),
    Gc(Micros, Reply<u64>),
    /// `Store::claim`: replica, max, ttl.
    Claim(String, usize, std::time::Duration, Reply<Vec<Claim>>),
    Heartbeat(String, Reply<Option<Vec<Claim>>>),
    Release(String, Reply<u64>),
}

/// The writer thread's handle: the channel's sending end and the thread.
pub(super) struct Writer {
    sender: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    location: String,
}

impl Writer {
    /// Starts the thread over `conn`, a connection already prepared (schema current).
    pub(super) fn start(conn: Connection, location: String) -> Result<Writer, StoreError> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let name_location = location.clone();
        let thread = std::thread::Builder::new()
            .name("braid-sqlite-writer".to_owned())
            .spawn(move || run(conn, receiver, &name_location))
            .map_err(|e| StoreError::Database {
                location: location.clone(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
            location,
        })
    }

    /// Sends the request `make` builds and waits for its answer.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future after the request was sent does not withdraw it: the write is
    /// applied (or not) as if awaited.
    pub(super) async fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Database {
            location: self.location.clone(),
            detail: "the store's writer thread stopped".to_owned(),
        };
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        sender.send(make(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has answered what it holds; joining it
        // closes the file before the store is gone, so the file can be opened again at once.
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What is left to do for a request once its group's commit succeeded or failed: answer it.
type Finish = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// The thread's loop: wait for a request, take the others waiting, apply, commit, answer.
fn run(mut conn: Connection, mut receiver: mpsc::Receiver<Request>, location: &str) {
    let mut group = Vec::with_capacity(GROUP);
    while let Some(first) = receiver.blocking_recv() {
        group.push(first);
        while group.len() < GROUP {
            match receiver.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        commit_group(&mut conn, group.drain(..), location);
    }
}

/// Applies `group` in one transaction and answers every request of it.
fn commit_group(conn: &mut Connection, group: impl Iterator<Item = Request>, location: &str) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let error = database(location, &e);
            for request in group {
                request.fail(error.clone());
            }
            return;
        }
    };
    let finishes: Vec<Finish> = group
        .map(|request| request.apply(&mut tx, location))
        .collect();
    let committed = tx.commit().map_err(|e| database(location, &e));
    for finish in finishes {
        finish(committed.as_ref().map(|_| ()));
    }
}

impl Request {
    fn fail(self, error: StoreError) {
        match self {
            Request::PutDefinition(_, r) | Request::CreateRun(_, _, r) | Request::Append(_, r) => {
                let _ = r.send(Err(error));
            }
            Request::Claim(_, _, _, r) => {
                let _ = r.send(Err(error));
            }
            Request::Heartbeat(_, r) => {
                let _ = r.send(Err(error));
            }
            Request::Release(_, r) => {
                let _ = r.send(Err(error));
            }
            Request::Reopen(_, r) => {
                let _ = r.send(Err(error));
            }
            Request::Gc(_, r) => {
                let _ = r.send(Err(error));
            }
        }
    }

    /// Applies the request in a savepoint of `tx`; returns how to answer it after the commit.
    fn apply(self, tx: &mut rusqlite::Transaction<'_>, location: &str) -> Finish {
        let db = |e: rusqlite::Error| database(location, &e);
        match self {
            Request::PutDefinition(def, reply) => savepoint(tx, location, reply, |c| {
                write::put_definition(c, &def).map_err(db)
            }),
            Request::CreateRun(run, queued, reply) => {
                savepoint(tx, location, reply, |c| write::create_run(c, &run, queued))
            }
            Request::Claim(replica, max, ttl, reply) => {
                savepoint(tx, location, reply, |c| write::claim(c, &replica, max, ttl))
            }
            Request::Heartbeat(replica, reply) => {
                savepoint(tx, location, reply, |c| write::heartbeat(c, &replica))
            }
            Request::Release(replica, reply) => {
                savepoint(tx, location, reply, |c| write::release(c, &replica))
            }
            Request::Append(entries, reply) => {
                savepoint(tx, location, reply, |c| write::append(c, &entries))
            }
            Request::Reopen(reopen, reply) => {
                savepoint(tx, location, reply, |c| write::reopen(c, &reopen))
            }
            Request::Gc(before, reply) => {
                savepoint(tx, location, reply, |c| write::gc(c, before).map_err(db))
            }
        }
    }
}

/// Runs `work` in a savepoint: kept if it succeeds, rolled back alone if it fails.
fn savepoint<T: Send + 'static>(
    tx: &mut rusqlite::Transaction<'_>,
    location: &str,
    reply: Reply<T>,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Finish {
    let result = match tx.savepoint() {
        Ok(sp) => match work(&sp) {
            Ok(value) => sp
                .commit()
                .map(|()| value)
                .map_err(|e| database(location, &e)),
            Err(e) => Err(e), // dropping the savepoint rolls it back
        },
        Err(e) => Err(database(location, &e)),
    };
    Box::new(move |committed| {
        let answer = match (result, committed) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => Err(e.clone()),
            (Err(e), _) => Err(e),
        };
        let _ = reply.send(answer);
    })
}

fn database(location: &str, e: &rusqlite::Error) -> StoreError {
    StoreError::Database {
        location: location.to_owned(),
        detail: e.to_string(),
    }
}
