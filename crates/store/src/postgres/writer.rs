//! The writer task: one connection that applies every write of this store, in groups.
//!
//! As in the SQLite store, callers send their writes down a bounded channel; the task takes all
//! that are waiting and applies them in one transaction, each in a savepoint so that one failing
//! write rolls back alone, then answers each caller. One commit (one WAL flush on the server)
//! serves the whole group. When the server went away, the group fails with
//! [`StoreError::Unreachable`] and the next group reconnects.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::Config;

use super::conn::{self, Conn};
use super::write::{self, Cx};
use crate::{Definition, Entry, Micros, NewRun, Reopen, RunRecord, StoreError};

/// Requests waiting beyond this make senders wait (back-pressure).
const QUEUE: usize = 1024;
/// At most this many requests go in one transaction.
const GROUP: usize = 256;

/// Where a request's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write, with where its answer goes.
pub(super) enum Request {
    PutDefinition(Definition, Reply<()>),
    CreateRun(NewRun, Reply<()>),
    Append(Vec<Entry>, Reply<()>),
    Reopen(Reopen, Reply<RunRecord>),
    Gc(Micros, Reply<u64>),
}

/// The writer task's handle.
pub(super) struct Writer {
    sender: mpsc::Sender<Request>,
    task: JoinHandle<()>,
    location: String,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // No call can be in flight (they borrow the store); a request whose caller went away
        // is abandoned, and its transaction rolled back by the server.
        self.task.abort();
    }
}

impl Writer {
    /// Starts the task over `conn`, reconnecting with `config` when it is lost.
    pub(super) fn start(conn: Conn, config: Config, location: String) -> Writer {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(conn, config, receiver, location.clone()));
        Writer {
            sender,
            task,
            location,
        }
    }

    /// Sends the request `make` builds and waits for its answer.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future after the request was sent does not withdraw it.
    pub(super) async fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Database {
            location: self.location.clone(),
            detail: "the store's writer task stopped".to_owned(),
        };
        self.sender.send(make(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(conn: Conn, config: Config, mut receiver: mpsc::Receiver<Request>, location: String) {
    let mut conn = Some(conn);
    let mut group = Vec::with_capacity(GROUP);
    while let Some(first) = receiver.recv().await {
        group.push(first);
        while group.len() < GROUP {
            match receiver.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = None;
            match Conn::open(&config, &location).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    for request in group.drain(..) {
                        request.fail(e.clone());
                    }
                    continue;
                }
            }
        }
        if let Some(c) = &conn {
            commit_group(c, group.drain(..), &location).await;
        }
    }
}

/// Applies `group` in one transaction and answers every request of it.
async fn commit_group(conn: &Conn, group: impl Iterator<Item = Request>, location: &str) {
    let cx = Cx { conn, location };
    if let Err(e) = conn.client.batch_execute("BEGIN").await {
        let error = conn::error(location, &e);
        for request in group {
            request.fail(error.clone());
        }
        return;
    }
    let mut done = Vec::new();
    let mut broken = None;
    for request in group {
        if let Some(error) = &broken {
            request.fail(StoreError::clone(error));
            continue;
        }
        let (finish, ok) = request.apply(&cx).await;
        done.push(finish);
        if let Err(e) = ok {
            broken = Some(e);
        }
    }
    let committed = match broken {
        // A savepoint could not be released or rolled back: the transaction is not what the
        // answers would say, so none of it is kept.
        Some(error) => {
            let _ = conn.client.batch_execute("ROLLBACK").await;
            Err(error)
        }
        None => conn
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| conn::error(location, &e)),
    };
    for finish in done {
        finish.answer(committed.as_ref().map(|_| ()));
    }
}

/// A request applied, waiting for its group's commit to answer.
enum Done {
    Unit(Reply<()>, Result<(), StoreError>),
    Run(Reply<RunRecord>, Box<Result<RunRecord, StoreError>>),
    Count(Reply<u64>, Result<u64, StoreError>),
}

fn settle<T>(
    result: Result<T, StoreError>,
    committed: Result<(), &StoreError>,
) -> Result<T, StoreError> {
    match (result, committed) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(e)) => Err(e.clone()),
        (Err(e), _) => Err(e),
    }
}

impl Done {
    fn answer(self, committed: Result<(), &StoreError>) {
        match self {
            Done::Unit(reply, result) => {
                let _ = reply.send(settle(result, committed));
            }
            Done::Run(reply, result) => {
                let _ = reply.send(settle(*result, committed));
            }
            Done::Count(reply, result) => {
                let _ = reply.send(settle(result, committed));
            }
        }
    }
}

/// Runs a write in a savepoint: released if it succeeds, rolled back alone if it fails. The
/// second result is `Err` when the savepoint itself could not be managed (the transaction is
/// then unusable).
async fn savepoint<T>(
    cx: &Cx<'_>,
    work: impl Future<Output = Result<T, StoreError>>,
) -> (Result<T, StoreError>, Result<(), StoreError>) {
    let client = &cx.conn.client;
    let control = |e: tokio_postgres::Error| conn::error(cx.location, &e);
    if let Err(e) = client.batch_execute("SAVEPOINT braid_write").await {
        let e = control(e);
        return (Err(e.clone()), Err(e));
    }
    let result = work.await;
    let end = if result.is_ok() {
        "RELEASE SAVEPOINT braid_write"
    } else {
        "ROLLBACK TO SAVEPOINT braid_write; RELEASE SAVEPOINT braid_write"
    };
    match client.batch_execute(end).await {
        Ok(()) => (result, Ok(())),
        Err(e) => {
            let e = control(e);
            (Err(result.err().unwrap_or_else(|| e.clone())), Err(e))
        }
    }
}

impl Request {
    fn fail(self, error: StoreError) {
        match self {
            Request::PutDefinition(_, r) | Request::CreateRun(_, r) | Request::Append(_, r) => {
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

    /// Applies the request in a savepoint; returns how to answer it, and whether the
    /// transaction is still usable.
    async fn apply(self, cx: &Cx<'_>) -> (Done, Result<(), StoreError>) {
        match self {
            Request::PutDefinition(def, reply) => {
                let (r, ok) = savepoint(cx, write::put_definition(cx, &def)).await;
                (Done::Unit(reply, r), ok)
            }
            Request::CreateRun(run, reply) => {
                let (r, ok) = savepoint(cx, write::create_run(cx, &run)).await;
                (Done::Unit(reply, r), ok)
            }
            Request::Append(entries, reply) => {
                let (r, ok) = savepoint(cx, write::append(cx, &entries)).await;
                (Done::Unit(reply, r), ok)
            }
            Request::Reopen(reopen, reply) => {
                let (r, ok) = savepoint(cx, write::reopen(cx, &reopen)).await;
                (Done::Run(reply, Box::new(r)), ok)
            }
            Request::Gc(before, reply) => {
                let (r, ok) = savepoint(cx, write::gc(cx, before)).await;
                (Done::Count(reply, r), ok)
            }
        }
    }
}
