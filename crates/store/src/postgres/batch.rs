//! A segment of a group's writes as a handful of statements, sent in two round trips.
//!
//! 1. **Read and lock** what the writes depend on, in one pipelined round trip (with the
//!    group's `BEGIN`): the runs they name, `FOR NO KEY UPDATE` in key order (another process
//!    appending to one of them waits; so sequence numbers cannot be taken twice), with each run's
//!    state and last chunk of events; and the definitions new runs name, `FOR KEY SHARE` (so a
//!    concurrent `gc` cannot delete one in between).
//! 2. **Check every request in order, in memory**, against what was read and what the requests
//!    before it did: an unknown run, events out of sequence, a taken id, an unknown definition, a
//!    reopen from the wrong state. A request that fails is answered with its error and
//!    contributes nothing; the others are gathered, per table.
//! 3. **Write**: one statement per table and kind of change (`INSERT … SELECT FROM UNNEST(…)`,
//!    `UPDATE … FROM UNNEST(…)`), pipelined in one round trip with the group's `COMMIT`. Checked
//!    beforehand, none of them fails in the ordinary course; if one does (another process won a
//!    race the checks could not see), the transaction is rolled back and the writer applies the
//!    group again one request at a time, each in a savepoint (`writer`).
//!
//! The statements run in a fixed order (definitions, new runs, reopens, nodes, events, ends),
//! which is the requests' order for every run as long as no run is reopened after another
//! request of the segment touched it; [`segment_len`] cuts a group into segments so.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Row;

use super::chunk::{self, CHUNK_BYTES};
use super::conn::{self, Conn};
use super::read;
use super::writer::{Answer, Request};
use crate::codec;
use crate::{Definition, Entry, EventRecord, Micros, NewRun, NodeRecord, RunState, StoreError};

/// A definition put again within this long keeps its recorded `used_at` (see the SQLite store).
const USED_AT_GRAIN: Micros = 60_000_000;

const LOCK_RUNS: &str = "SELECT r.id, r.state, c.first_seq, c.n, c.size, r.epoch FROM braid_runs r
    LEFT JOIN LATERAL (SELECT e.first_seq, e.n, octet_length(e.events) AS size
        FROM braid_events e WHERE e.run = r.key ORDER BY e.first_seq DESC LIMIT 1) c ON true
    WHERE r.id = ANY($1::text[]) ORDER BY r.key FOR NO KEY UPDATE OF r";

const LOCK_DEFINITIONS: &str =
    "SELECT fingerprint FROM braid_definitions WHERE fingerprint = ANY($1::text[]) FOR KEY SHARE";

const PUT_DEFINITIONS: &str =
    "INSERT INTO braid_definitions (fingerprint, workflow, used_at, files)
    SELECT u.fingerprint, u.workflow, $4, u.files
    FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(fingerprint, workflow, files)
    ON CONFLICT (fingerprint) DO UPDATE SET used_at = excluded.used_at
    WHERE braid_definitions.used_at < excluded.used_at - $5";

// A definition that is not there makes `definition` NULL, which the table refuses: the
// statement fails rather than silently create fewer runs.
const CREATE_RUNS: &str = "INSERT INTO braid_runs
    (id, definition, workflow, state, created_at, updated_at, restarts, inputs, options, queued)
    SELECT u.id, (SELECT d.key FROM braid_definitions d WHERE d.fingerprint = u.fingerprint),
        u.workflow, $7, u.created_at, u.created_at, 0, u.inputs, u.options, u.queued
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
        $8::bool[])
        WITH ORDINALITY AS u(id, fingerprint, workflow, created_at, inputs, options, queued, i)
    ORDER BY u.i";

/// Wakes the claimers listening (`notify`), once the transaction commits; the payload is the
/// store's schema, so stores in other schemas of the database ignore it.
pub(super) const NOTIFY: &str = "SELECT pg_notify('braid_queue', current_schema()::text)";

const RESET_NODES: &str = "DELETE FROM braid_nodes n
    USING UNNEST($1::text[], $2::text[]) AS u(id, node), braid_runs r
    WHERE r.id = u.id AND n.run = r.key AND n.node = u.node";

const REOPEN_RUNS: &str = "UPDATE braid_runs r SET state = $3, ended_at = NULL, error = NULL,
    updated_at = u.at, restarts = r.restarts + 1
    FROM UNNEST($1::text[], $2::int8[]) AS u(id, at) WHERE r.id = u.id";

const PUT_NODES: &str = "INSERT INTO braid_nodes
    (run, node, state, attempts, started_at, ended_at, failure, writes)
    SELECT (SELECT r.key FROM braid_runs r WHERE r.id = u.id), u.node, u.state, u.attempts,
        u.started_at, u.ended_at, u.failure, u.writes
    FROM UNNEST($1::text[], $2::text[], $3::int2[], $4::int4[], $5::int8[], $6::int8[],
        $7::text[], $8::text[])
        AS u(id, node, state, attempts, started_at, ended_at, failure, writes)
    ON CONFLICT (run, node) DO UPDATE SET state = excluded.state,
        attempts = excluded.attempts, started_at = excluded.started_at,
        ended_at = excluded.ended_at, failure = excluded.failure, writes = excluded.writes";

const EXTEND_CHUNKS: &str = "UPDATE braid_events e SET n = e.n + u.n, events = e.events || u.events
    FROM UNNEST($1::text[], $2::int8[], $3::int4[], $4::text[]) AS u(id, first_seq, n, events)
    JOIN braid_runs r ON r.id = u.id
    WHERE e.run = r.key AND e.first_seq = u.first_seq";

const PUT_CHUNKS: &str = "INSERT INTO braid_events (run, first_seq, n, events)
    SELECT (SELECT r.key FROM braid_runs r WHERE r.id = u.id), u.first_seq, u.n, u.events
    FROM UNNEST($1::text[], $2::int8[], $3::int4[], $4::text[]) AS u(id, first_seq, n, events)";

const END_RUNS: &str = "UPDATE braid_runs r SET state = u.state, error = u.error,
    ended_at = u.at, updated_at = u.at
    FROM UNNEST($1::text[], $2::int2[], $3::text[], $4::int8[]) AS u(id, state, error, at)
    WHERE r.id = u.id";

/// SQL run before the segment's reads and after its writes, pipelined with them: the group's
/// `BEGIN` and `COMMIT`, when the segment is the group's first or last.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Frame {
    pub(super) before: Option<&'static str>,
    pub(super) after: Option<&'static str>,
}

/// How many of `requests` (none of them a `gc`) make the first segment: up to, not including,
/// a reopen of a run an earlier request of the segment touched.
pub(super) fn segment_len(requests: &[Request]) -> usize {
    let mut touched: HashSet<&str> = HashSet::new();
    for (i, request) in requests.iter().enumerate() {
        match request {
            Request::Reopen(r, _) => {
                if !touched.insert(&r.run) {
                    return i;
                }
            }
            Request::CreateRun(run, _, _) => {
                touched.insert(&run.id);
            }
            Request::Append(entries, _) => touched.extend(entries.iter().map(entry_run)),
            Request::PutDefinition(..) | Request::Gc(..) => {}
        }
    }
    requests.len()
}

fn entry_run(entry: &Entry) -> &str {
    match entry {
        Entry::Node { run, .. }
        | Entry::Events { run, .. }
        | Entry::End { run, .. }
        | Entry::Fence { run, .. } => run,
    }
}

/// A run as the segment sees it.
struct Seen {
    state: RunState,
    /// The sequence number its next event takes.
    next_seq: u64,
    /// Its last chunk of events when the segment began: first sequence number and bytes.
    last: Option<(u64, usize)>,
    /// Its epoch (fencing token), read under its lock.
    epoch: u64,
}

/// What the segment writes, gathered from the requests that passed their checks.
#[derive(Default)]
struct Plan<'r> {
    definitions: Vec<&'r Definition>,
    /// New runs, and whether each is queued.
    creates: Vec<(&'r NewRun, bool)>,
    resets: Vec<(&'r str, &'r str)>,
    reopens: Vec<(&'r str, Micros)>,
    /// Node records by (run, node): the last one of a node wins, as applying them in order would.
    nodes: Vec<(&'r str, &'r NodeRecord)>,
    node_at: HashMap<(&'r str, &'r str), usize>,
    /// Each run's new events, in order, runs in the order they first appended.
    events: Vec<(&'r str, Vec<&'r EventRecord>)>,
    events_at: HashMap<&'r str, usize>,
    /// Ends by run: the last one wins.
    ends: Vec<(&'r str, i16, Option<String>, Micros)>,
    end_at: HashMap<&'r str, usize>,
}

/// An append's changes, kept apart until all of its entries passed.
#[derive(Default)]
struct Staged<'r> {
    nodes: Vec<(&'r str, &'r NodeRecord)>,
    events: Vec<(&'r str, &'r [EventRecord])>,
    ends: Vec<(&'r str, RunState, Option<String>, Micros)>,
    next_seq: HashMap<&'r str, u64>,
}

/// Applies `requests` (one segment, no `gc`) with `frame` around them. Returns each request's
/// answer (an `Ok` answer stands if the group commits); `Err` when a statement failed, the
/// transaction is then aborted (rolled back, if `frame.after` was the `COMMIT`).
pub(super) async fn apply(
    conn: &Conn,
    location: &str,
    requests: &[Request],
    frame: Frame,
) -> Result<Vec<Answer>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let mut ids: Vec<&str> = Vec::new();
    let mut fingerprints: Vec<&str> = Vec::new();
    {
        let mut seen_ids = HashSet::new();
        let mut seen_fps = HashSet::new();
        for request in requests {
            match request {
                Request::CreateRun(run, _, _) => {
                    if seen_ids.insert(run.id.as_str()) {
                        ids.push(&run.id);
                    }
                    if seen_fps.insert(run.fingerprint.as_str()) {
                        fingerprints.push(&run.fingerprint);
                    }
                }
                Request::Append(entries, _) => {
                    for entry in entries {
                        if seen_ids.insert(entry_run(entry)) {
                            ids.push(entry_run(entry));
                        }
                    }
                }
                Request::Reopen(r, _) => {
                    if seen_ids.insert(r.run.as_str()) {
                        ids.push(&r.run);
                    }
                }
                Request::PutDefinition(..) | Request::Gc(..) => {}
            }
        }
    }

    // Every statement prepared before any is sent: a pipeline's requests then go out in the
    // order its futures are first polled.
    let lock_runs = conn.statement(LOCK_RUNS).await.map_err(db)?;
    let lock_definitions = conn.statement(LOCK_DEFINITIONS).await.map_err(db)?;
    let client = &conn.client;
    let (began, run_rows, definition_rows) = tokio::join!(
        async {
            match frame.before {
                Some(sql) => client.batch_execute(sql).await,
                None => Ok(()),
            }
        },
        async {
            if ids.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(&lock_runs, &[&ids]).await
            }
        },
        async {
            if fingerprints.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(&lock_definitions, &[&fingerprints]).await
            }
        },
    );
    began.map_err(db)?;
    let run_rows = run_rows.map_err(db)?;
    let mut runs = seen_runs(&run_rows, location)?;
    let mut definitions: HashSet<String> = definition_rows
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let mut plan = Plan::default();
    let mut answers = Vec::with_capacity(requests.len());
    let mut reopened: Vec<(usize, &str)> = Vec::new();
    let mut put: HashSet<&str> = HashSet::new();
    for request in requests {
        answers.push(match request {
            Request::PutDefinition(def, _) => {
                if put.insert(&def.fingerprint) {
                    plan.definitions.push(def);
                    definitions.insert(def.fingerprint.clone());
                }
                Answer::Unit(Ok(()))
            }
            Request::CreateRun(run, queued, _) => {
                Answer::Unit(if runs.contains_key(run.id.as_str()) {
                    Err(codec::run_taken(&run.id))
                } else if !definitions.contains(&run.fingerprint) {
                    Err(StoreError::UnknownDefinition {
                        fingerprint: run.fingerprint.clone(),
                    })
                } else {
                    runs.insert(
                        &run.id,
                        Seen {
                            state: RunState::Running,
                            next_seq: 0,
                            last: None,
                            epoch: 0,
                        },
                    );
                    plan.creates.push((run, *queued));
                    Ok(())
                })
            }
            Request::Append(entries, _) => Answer::Unit(
                check_append(entries, &runs).map(|staged| plan.take(staged, &mut runs)),
            ),
            Request::Reopen(r, _) => match runs.get_mut(r.run.as_str()) {
                None => Answer::Run(Box::new(Err(StoreError::UnknownRun { run: r.run.clone() }))),
                Some(seen) if r.epoch.is_some_and(|e| e != seen.epoch) => {
                    Answer::Run(Box::new(Err(codec::fenced(
                        &r.run,
                        r.epoch.unwrap_or_default(),
                        seen.epoch,
                    ))))
                }
                Some(seen) if !r.from.contains(&seen.state) => Answer::Run(Box::new(Err(
                    codec::wrong_state(&r.run, seen.state, &r.from),
                ))),
                Some(seen) => {
                    seen.state = RunState::Running;
                    plan.resets
                        .extend(r.reset.iter().map(|node| (r.run.as_str(), node.as_str())));
                    plan.reopens.push((&r.run, r.at));
                    reopened.push((answers.len(), &r.run));
                    // Filled in from the run as the reopen leaves it.
                    Answer::Run(Box::new(Err(StoreError::UnknownRun { run: r.run.clone() })))
                }
            },
            Request::Gc(..) => Answer::Count(Err(StoreError::Database {
                location: location.to_owned(),
                detail: "internal: a gc in a batch of writes".to_owned(),
            })),
        });
    }

    let rows = write(conn, location, &plan, &runs, frame).await?;
    if !reopened.is_empty() {
        let mut records: HashMap<String, crate::RunRecord> = HashMap::new();
        for row in &rows {
            let record = read::run_row(row).map_err(read::corrupt(location))?;
            records.insert(record.id.clone(), record);
        }
        for (i, id) in reopened {
            if let Some(record) = records.remove(id) {
                answers[i] = Answer::Run(Box::new(Ok(record)));
            }
        }
    }
    Ok(answers)
}

/// The runs read and locked, by id.
fn seen_runs<'a>(rows: &'a [Row], location: &str) -> Result<HashMap<&'a str, Seen>, StoreError> {
    let mut runs = HashMap::with_capacity(rows.len());
    for row in rows {
        let state =
            codec::run_state(row.get::<_, i16>(1).into()).map_err(read::corrupt(location))?;
        let first: Option<i64> = row.get(2);
        let n: Option<i32> = row.get(3);
        let size: Option<i32> = row.get(4);
        let epoch =
            codec::unsigned::<u64>(row.get(5), "an epoch").map_err(read::corrupt(location))?;
        let (next_seq, last) = match (first, n) {
            (Some(first), Some(n)) => {
                let first = codec::unsigned::<u64>(first, "a sequence number")
                    .map_err(read::corrupt(location))?;
                let n = codec::unsigned::<u64>(n.into(), "a chunk's length")
                    .map_err(read::corrupt(location))?;
                let size = usize::try_from(size.unwrap_or(0)).unwrap_or(usize::MAX);
                (first + n, Some((first, size)))
            }
            _ => (0, None),
        };
        runs.insert(
            row.get::<_, &str>(0),
            Seen {
                state,
                next_seq,
                last,
                epoch,
            },
        );
    }
    Ok(runs)
}

/// Checks an append's entries in order against the runs as the segment sees them.
fn check_append<'r>(
    entries: &'r [Entry],
    runs: &HashMap<&str, Seen>,
) -> Result<Staged<'r>, StoreError> {
    let mut staged = Staged::default();
    for entry in entries {
        let id = entry_run(entry);
        let Some(seen) = runs.get(id) else {
            return Err(StoreError::UnknownRun { run: id.to_owned() });
        };
        match entry {
            Entry::Fence { run, epoch } => {
                if *epoch != seen.epoch {
                    return Err(codec::fenced(run, *epoch, seen.epoch));
                }
            }
            Entry::Node { run, record } => staged.nodes.push((run, record)),
            Entry::Events { run, events } => {
                let next = staged.next_seq.entry(run).or_insert(seen.next_seq);
                for event in events {
                    if event.seq != *next {
                        return Err(codec::out_of_sequence(run, *next, event.seq));
                    }
                    *next += 1;
                }
                staged.events.push((run, events));
            }
            Entry::End {
                run,
                state,
                error,
                at,
            } => {
                if *state == RunState::Running {
                    return Err(codec::end_running(run));
                }
                staged
                    .ends
                    .push((run, *state, error.as_ref().map(codec::json_text), *at));
            }
        }
    }
    Ok(staged)
}

impl<'r> Plan<'r> {
    /// Adds an append that passed its checks, and what it changes to the runs.
    fn take(&mut self, staged: Staged<'r>, runs: &mut HashMap<&str, Seen>) {
        for (run, next) in staged.next_seq {
            if let Some(seen) = runs.get_mut(run) {
                seen.next_seq = next;
            }
        }
        for (run, record) in staged.nodes {
            match self.node_at.get(&(run, record.node.as_str())) {
                Some(&i) => self.nodes[i] = (run, record),
                None => {
                    self.node_at
                        .insert((run, record.node.as_str()), self.nodes.len());
                    self.nodes.push((run, record));
                }
            }
        }
        for (run, events) in staged.events {
            let i = *self.events_at.entry(run).or_insert_with(|| {
                self.events.push((run, Vec::new()));
                self.events.len() - 1
            });
            self.events[i].1.extend(events);
        }
        for (run, state, error, at) in staged.ends {
            if let Some(seen) = runs.get_mut(run) {
                seen.state = state;
            }
            let end = (run, codec::run_state_code(state), error, at);
            match self.end_at.get(run) {
                Some(&i) => self.ends[i] = end,
                None => {
                    self.end_at.insert(run, self.ends.len());
                    self.ends.push(end);
                }
            }
        }
    }
}

/// The plan's events as chunks: appended to each run's last chunk while it has room
/// (`extend`), the rest in new chunks (`put`); each as (run, first seq, count, lines).
#[derive(Default)]
struct Chunks<'r> {
    extend: Vec<(&'r str, i64, i32, String)>,
    put: Vec<(&'r str, i64, i32, String)>,
}

fn chunks<'r>(plan: &Plan<'r>, runs: &HashMap<&str, Seen>) -> Chunks<'r> {
    let mut out = Chunks::default();
    for (run, events) in &plan.events {
        let Some(first) = events.first() else {
            continue;
        };
        let mut events = events.iter().peekable();
        let last = runs.get(run).and_then(|s| s.last);
        // A run created in this segment has no chunk; a run's last chunk always ends just
        // before its first new event (the checks saw to it).
        if let Some((first_seq, size)) = last {
            let mut text = String::new();
            let mut n = 0;
            while let Some(event) = events.peek() {
                let before = text.len();
                chunk::push_line(&mut text, event);
                if size + text.len() > CHUNK_BYTES {
                    text.truncate(before);
                    break;
                }
                n += 1;
                events.next();
            }
            if n > 0 {
                out.extend.push((run, codec::signed(first_seq), n, text));
            }
        }
        let mut text = String::new();
        let mut n = 0;
        let mut start = first.seq;
        for event in events {
            let before = text.len();
            chunk::push_line(&mut text, event);
            if n > 0 && text.len() > CHUNK_BYTES {
                let line = text.split_off(before);
                out.put.push((run, codec::signed(start), n, text));
                text = line;
                n = 0;
            }
            if n == 0 {
                start = event.seq;
            }
            n += 1;
        }
        if n > 0 {
            out.put.push((run, codec::signed(start), n, text));
        }
    }
    out
}

/// A chunk list as columns.
type ChunkColumns<'a> = (Vec<&'a str>, Vec<i64>, Vec<i32>, Vec<&'a str>);

fn columns<'a>(c: &'a [(&'a str, i64, i32, String)]) -> ChunkColumns<'a> {
    (
        c.iter().map(|c| c.0).collect(),
        c.iter().map(|c| c.1).collect(),
        c.iter().map(|c| c.2).collect(),
        c.iter().map(|c| c.3.as_str()).collect(),
    )
}

/// Sends the plan's statements (those with anything to do), pipelined between `frame`'s; returns
/// the reopened runs' rows.
async fn write(
    conn: &Conn,
    location: &str,
    plan: &Plan<'_>,
    runs: &HashMap<&str, Seen>,
    frame: Frame,
) -> Result<Vec<Row>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let client = &conn.client;
    let chunks = chunks(plan, runs);
    let now = crate::now_micros();
    let running = codec::run_state_code(RunState::Running);

    let definitions = (
        plan.definitions
            .iter()
            .map(|d| d.fingerprint.as_str())
            .collect::<Vec<_>>(),
        plan.definitions
            .iter()
            .map(|d| d.workflow.as_str())
            .collect::<Vec<_>>(),
        plan.definitions
            .iter()
            .map(|d| codec::files_text(&d.files))
            .collect::<Vec<_>>(),
    );
    let creates = (
        plan.creates
            .iter()
            .map(|(r, _)| r.id.as_str())
            .collect::<Vec<_>>(),
        plan.creates
            .iter()
            .map(|(r, _)| r.fingerprint.as_str())
            .collect::<Vec<_>>(),
        plan.creates
            .iter()
            .map(|(r, _)| r.workflow.as_str())
            .collect::<Vec<_>>(),
        plan.creates
            .iter()
            .map(|(r, _)| r.created_at)
            .collect::<Vec<_>>(),
        plan.creates
            .iter()
            .map(|(r, _)| codec::json_text(&r.inputs))
            .collect::<Vec<_>>(),
        plan.creates
            .iter()
            .map(|(r, _)| codec::json_text(&r.options))
            .collect::<Vec<_>>(),
        plan.creates.iter().map(|(_, q)| *q).collect::<Vec<bool>>(),
    );
    let notify = plan.creates.iter().any(|(_, q)| *q);
    let resets = (
        plan.resets.iter().map(|r| r.0).collect::<Vec<_>>(),
        plan.resets.iter().map(|r| r.1).collect::<Vec<_>>(),
    );
    let reopens = (
        plan.reopens.iter().map(|r| r.0).collect::<Vec<_>>(),
        plan.reopens.iter().map(|r| r.1).collect::<Vec<_>>(),
    );
    let nodes = (
        plan.nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
        plan.nodes
            .iter()
            .map(|n| n.1.node.as_str())
            .collect::<Vec<_>>(),
        plan.nodes
            .iter()
            .map(|n| codec::node_state_code(n.1.state))
            .collect::<Vec<_>>(),
        plan.nodes
            .iter()
            .map(|n| i32::try_from(n.1.attempts).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
        plan.nodes
            .iter()
            .map(|n| n.1.started_at)
            .collect::<Vec<_>>(),
        plan.nodes.iter().map(|n| n.1.ended_at).collect::<Vec<_>>(),
        plan.nodes
            .iter()
            .map(|n| n.1.failure.as_ref().map(codec::json_text))
            .collect::<Vec<_>>(),
        plan.nodes
            .iter()
            .map(|n| codec::writes_text(&n.1.writes))
            .collect::<Vec<_>>(),
    );
    let extend = columns(&chunks.extend);
    let put = columns(&chunks.put);
    let ends = (
        plan.ends.iter().map(|e| e.0).collect::<Vec<_>>(),
        plan.ends.iter().map(|e| e.1).collect::<Vec<_>>(),
        plan.ends.iter().map(|e| e.2.as_deref()).collect::<Vec<_>>(),
        plan.ends.iter().map(|e| e.3).collect::<Vec<_>>(),
    );

    let put_definitions = conn.statement(PUT_DEFINITIONS).await.map_err(db)?;
    let create_runs = conn.statement(CREATE_RUNS).await.map_err(db)?;
    let reset_nodes = conn.statement(RESET_NODES).await.map_err(db)?;
    let reopen_runs = conn.statement(REOPEN_RUNS).await.map_err(db)?;
    let runs_by_ids = conn.statement(read::RUNS_BY_IDS).await.map_err(db)?;
    let put_nodes = conn.statement(PUT_NODES).await.map_err(db)?;
    let extend_chunks = conn.statement(EXTEND_CHUNKS).await.map_err(db)?;
    let put_chunks = conn.statement(PUT_CHUNKS).await.map_err(db)?;
    let end_runs = conn.statement(END_RUNS).await.map_err(db)?;
    let notify_claimers = if notify {
        Some(conn.statement(NOTIFY).await.map_err(db)?)
    } else {
        None
    };

    // tokio's `join!` polls its futures in order the first time, and each sends its request on
    // that first poll: the statements reach the server in this order.
    let (d, c, rs, ro, read, n, x, p, e, w, after) = tokio::join!(
        async {
            if definitions.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &put_definitions,
                    &[
                        &definitions.0,
                        &definitions.1,
                        &definitions.2,
                        &now,
                        &USED_AT_GRAIN,
                    ],
                )
                .await
        },
        async {
            if creates.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &create_runs,
                    &[
                        &creates.0, &creates.1, &creates.2, &creates.3, &creates.4, &creates.5,
                        &running, &creates.6,
                    ],
                )
                .await
        },
        async {
            if resets.0.is_empty() {
                return Ok(0);
            }
            client.execute(&reset_nodes, &[&resets.0, &resets.1]).await
        },
        async {
            if reopens.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(&reopen_runs, &[&reopens.0, &reopens.1, &running])
                .await
        },
        async {
            if reopens.0.is_empty() {
                return Ok(Vec::new());
            }
            client.query(&runs_by_ids, &[&reopens.0]).await
        },
        async {
            if nodes.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &put_nodes,
                    &[
                        &nodes.0, &nodes.1, &nodes.2, &nodes.3, &nodes.4, &nodes.5, &nodes.6,
                        &nodes.7,
                    ],
                )
                .await
        },
        async {
            if extend.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &extend_chunks,
                    &[&extend.0, &extend.1, &extend.2, &extend.3],
                )
                .await
        },
        async {
            if put.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(&put_chunks, &[&put.0, &put.1, &put.2, &put.3])
                .await
        },
        async {
            if ends.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(&end_runs, &[&ends.0, &ends.1, &ends.2, &ends.3])
                .await
        },
        async {
            match &notify_claimers {
                Some(statement) => client.execute(statement, &[]).await,
                None => Ok(0),
            }
        },
        async {
            match frame.after {
                Some(sql) => client.batch_execute(sql).await,
                None => Ok(()),
            }
        },
    );
    // The first failure is the cause; the statements after it failed because of it.
    d.map_err(db)?;
    if let Err(error) = c {
        if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            && plan.creates.len() == 1
        {
            // Another process created a run with this id since it was read.
            return Err(codec::run_taken(&plan.creates[0].0.id));
        }
        return Err(db(error));
    }
    rs.map_err(db)?;
    ro.map_err(db)?;
    let rows = read.map_err(db)?;
    for result in [n, x, p, e, w] {
        result.map_err(db)?;
    }
    after.map_err(db)?;
    Ok(rows)
}
