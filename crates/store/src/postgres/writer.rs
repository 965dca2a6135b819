//! The writer task: one connection that applies every write of this store, in groups.
//!
//! As in the SQLite store, callers send their writes down a bounded channel; the task takes all
//! that are waiting and applies them in one transaction, then answers each caller. One commit
//! (one WAL flush on the server) serves the whole group. A write that fails its checks (an
//! unknown run, events out of sequence) fails alone; the others of its group are kept.
//!
//! A group goes to the server in few round trips (`batch`): its reads and locks with the
//! `BEGIN`, then one statement per table with the `COMMIT`. Should one of those statements fail
//! all the same (another process won a race the checks could not see), the transaction is rolled
//! back and the group applied again the slow way, each request in a savepoint of its own, as a
//! group holding a `gc` always is. When the server went away, the group fails with
//! [`StoreError::Unreachable`] and the next group reconnects.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::Config;

use super::batch::{self, Frame};
use super::conn::{self, Conn};
use super::write;
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
    /// A new run, and whether it is queued.
    CreateRun(NewRun, bool, Reply<()>),
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
            let answers = commit_group(c, &group, &location).await;
            for (request, (answer, committed)) in group.drain(..).zip(answers) {
                request.answer(answer, committed.as_ref().map(|_| ()));
            }
        }
    }
}

/// A request's outcome, before its group commits.
pub(super) enum Answer {
    Unit(Result<(), StoreError>),
    Run(Box<Result<RunRecord, StoreError>>),
    Count(Result<u64, StoreError>),
}

/// Applies `group` in one transaction: each request's answer, and whether its transaction
/// committed.
async fn commit_group(
    conn: &Conn,
    group: &[Request],
    location: &str,
) -> Vec<(Answer, Result<(), StoreError>)> {
    let with = |answers: Vec<Answer>, committed: Result<(), StoreError>| {
        answers
            .into_iter()
            .map(|a| (a, committed.clone()))
            .collect()
    };
    if !group.iter().any(|r| matches!(r, Request::Gc(..))) {
        match fast(conn, group, location).await {
            Ok(answers) => return with(answers, Ok(())),
            Err(e @ StoreError::Unreachable { .. }) => {
                return group
                    .iter()
                    .map(|r| (failed(r, e.clone()), Err(e.clone())))
                    .collect();
            }
            Err(_) => {
                // Rolled back (a pipelined `COMMIT` of a failed transaction rolls it back; else
                // this does): apply the group again, one request at a time.
                let _ = conn.client.batch_execute("ROLLBACK").await;
            }
        }
    }
    let (answers, committed) = slow(conn, group, location).await;
    with(answers, committed)
}

/// The group in segments of few statements each, committed at the end of the last.
async fn fast(conn: &Conn, group: &[Request], location: &str) -> Result<Vec<Answer>, StoreError> {
    let mut answers = Vec::with_capacity(group.len());
    let mut rest = group;
    while !rest.is_empty() {
        let n = batch::segment_len(rest).max(1);
        let frame = Frame {
            before: answers.is_empty().then_some("BEGIN"),
            after: (n == rest.len()).then_some("COMMIT"),
        };
        answers.extend(batch::apply(conn, location, &rest[..n], frame).await?);
        rest = &rest[n..];
    }
    Ok(answers)
}

/// The group one request at a time, each in a savepoint: a request whose statement fails rolls
/// back alone.
async fn slow(
    conn: &Conn,
    group: &[Request],
    location: &str,
) -> (Vec<Answer>, Result<(), StoreError>) {
    let client = &conn.client;
    let control = |e: tokio_postgres::Error| conn::error(location, &e);
    if let Err(e) = client.batch_execute("BEGIN").await {
        let e = control(e);
        return (group.iter().map(|r| failed(r, e.clone())).collect(), Err(e));
    }
    let mut answers = Vec::with_capacity(group.len());
    let mut broken: Option<StoreError> = None;
    for (i, request) in group.iter().enumerate() {
        if let Some(e) = &broken {
            answers.push(failed(request, e.clone()));
            continue;
        }
        if let Err(e) = client.batch_execute("SAVEPOINT braid_write").await {
            let e = control(e);
            answers.push(failed(request, e.clone()));
            broken = Some(e);
            continue;
        }
        let answer = match request {
            Request::Gc(before, _) => Ok(Answer::Count(write::gc(conn, location, *before).await)),
            _ => batch::apply(conn, location, &group[i..=i], Frame::default())
                .await
                .map(|mut a| a.remove(0)),
        };
        let (answer, ok) = match answer {
            Ok(answer) => {
                let ok = answer_ok(&answer);
                (answer, ok)
            }
            Err(e) => (failed(request, e), false),
        };
        let end = if ok {
            "RELEASE SAVEPOINT braid_write"
        } else {
            "ROLLBACK TO SAVEPOINT braid_write; RELEASE SAVEPOINT braid_write"
        };
        if let Err(e) = client.batch_execute(end).await {
            // The transaction is not what the answers would say: none of it is kept.
            let e = control(e);
            answers.push(failed(request, e.clone()));
            broken = Some(e);
            continue;
        }
        answers.push(answer);
    }
    let committed = match broken {
        Some(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
        None => client.batch_execute("COMMIT").await.map_err(control),
    };
    (answers, committed)
}

fn answer_ok(answer: &Answer) -> bool {
    match answer {
        Answer::Unit(r) => r.is_ok(),
        Answer::Run(r) => r.is_ok(),
        Answer::Count(r) => r.is_ok(),
    }
}

/// `request`'s answer when it failed with `e`.
fn failed(request: &Request, e: StoreError) -> Answer {
    match request {
        Request::Reopen(..) => Answer::Run(Box::new(Err(e))),
        Request::Gc(..) => Answer::Count(Err(e)),
        _ => Answer::Unit(Err(e)),
    }
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

impl Request {
    fn fail(self, error: StoreError) {
        match self {
            Request::PutDefinition(_, r) | Request::CreateRun(_, _, r) | Request::Append(_, r) => {
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

    /// Sends `answer`, as its group's commit turned out.
    fn answer(self, answer: Answer, committed: Result<(), &StoreError>) {
        match (self, answer) {
            (
                Request::PutDefinition(_, r) | Request::CreateRun(_, _, r) | Request::Append(_, r),
                Answer::Unit(a),
            ) => {
                let _ = r.send(settle(a, committed));
            }
            (Request::Reopen(_, r), Answer::Run(a)) => {
                let _ = r.send(settle(*a, committed));
            }
            (Request::Gc(_, r), Answer::Count(a)) => {
                let _ = r.send(settle(a, committed));
            }
            (request, _) => request.fail(StoreError::Conflict(
                "internal: a write answered with another kind of answer".to_owned(),
            )),
        }
    }
}
