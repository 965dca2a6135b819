//! Reads: the queries, and the pool of read connections they run on. WAL lets a reader see the
//! last committed state while the writer thread writes, so reads never wait for a group commit;
//! they run on tokio's blocking pool, off the async executor.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params_from_iter};

use crate::codec;
use crate::{Definition, EventRecord, NodeRecord, RunFilter, RunRecord, StoreError};

/// How many idle read connections are kept; more are opened while reads pile up, then closed.
const IDLE: usize = 4;

/// Read connections to one file.
pub(super) struct Readers {
    path: PathBuf,
    location: String,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(super) fn new(path: PathBuf, location: String) -> Readers {
        Readers {
            path,
            location,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| super::schema::opening(&self.location, &e))?;
        conn.busy_timeout(super::BUSY_TIMEOUT)
            .and_then(|()| conn.pragma_update(None, "query_only", true))
            .map_err(|e| super::schema::opening(&self.location, &e))?;
        Ok(conn)
    }

    /// Runs `read` on a connection of the pool, on the blocking pool.
    pub(super) async fn with<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(self);
        let location = self.location.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let conn = match conn {
                Some(conn) => conn,
                None => readers.connect()?,
            };
            let result = read(&conn);
            let mut idle = readers.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database {
            location,
            detail: format!("a read stopped: {e}"),
        })?
    }
}

const RUN_COLUMNS: &str =
    "r.id, r.workflow, d.fingerprint, r.inputs, r.options, r.state, r.created_at,
    r.updated_at, r.ended_at, r.error, r.restarts,
    (SELECT coalesce(max(e.seq) + 1, 0) FROM braid_events e WHERE e.run = r.key), r.owner, r.epoch
    FROM braid_runs r JOIN braid_definitions d ON d.key = r.definition";

fn run_row(row: &Row<'_>) -> rusqlite::Result<Result<RunRecord, String>> {
    let inputs: String = row.get(3)?;
    let options: String = row.get(4)?;
    let error: Option<String> = row.get(9)?;
    let state: i64 = row.get(5)?;
    let restarts: i64 = row.get(10)?;
    let next_seq: i64 = row.get(11)?;
    let owner: Option<String> = row.get(12)?;
    let epoch: i64 = row.get(13)?;
    let (id, workflow, fingerprint) = (row.get(0)?, row.get(1)?, row.get(2)?);
    let (created_at, updated_at, ended_at) = (row.get(6)?, row.get(7)?, row.get(8)?);
    Ok((|| {
        Ok(RunRecord {
            id,
            workflow,
            fingerprint,
            inputs: codec::json(&inputs, "a run's inputs")?,
            options: codec::json(&options, "a run's options")?,
            state: codec::run_state(state)?,
            created_at,
            updated_at,
            ended_at,
            error: error
                .map(|e| codec::json(&e, "a run's error"))
                .transpose()?,
            restarts: codec::unsigned(restarts, "restarts")?,
            next_seq: codec::unsigned(next_seq, "a sequence number")?,
            owner,
            epoch: codec::unsigned(epoch, "an epoch")?,
        })
    })())
}

/// The run `id`.
pub(super) fn run(conn: &Connection, id: &str) -> Result<Option<RunRecord>, StoreError> {
    let row = conn
        .prepare_cached(&format!("SELECT {RUN_COLUMNS} WHERE r.id = ?1"))
        .and_then(|mut s| s.query_row([id], run_row).optional())
        .map_err(super::database(conn))?;
    row.transpose().map_err(super::corrupt(conn))
}

/// The sequence number of run `key`'s next event.
pub(super) fn next_seq(conn: &Connection, key: i64) -> rusqlite::Result<u64> {
    let next: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq) + 1, 0) FROM braid_events WHERE run = ?1")?
        .query_row([key], |r| r.get(0))?;
    Ok(u64::try_from(next).unwrap_or(0))
}

pub(super) fn definition(
    conn: &Connection,
    fingerprint: &str,
) -> Result<Option<Definition>, StoreError> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT workflow, files FROM braid_definitions WHERE fingerprint = ?1")
        .and_then(|mut s| {
            s.query_row([fingerprint], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(super::database(conn))?;
    let Some((workflow, files)) = row else {
        return Ok(None);
    };
    Ok(Some(Definition {
        fingerprint: fingerprint.to_owned(),
        workflow,
        files: codec::files(&files).map_err(super::corrupt(conn))?,
    }))
}

pub(super) fn nodes(conn: &Connection, run: &str) -> Result<Vec<NodeRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT n.node, n.state, n.attempts, n.started_at, n.ended_at, n.failure, n.writes
             FROM braid_nodes n JOIN braid_runs r ON n.run = r.key WHERE r.id = ?1",
        )
        .map_err(super::database(conn))?;
    let rows = stmt
        .query_map([run], |row| {
            let state: i64 = row.get(1)?;
            let attempts: i64 = row.get(2)?;
            let failure: Option<String> = row.get(5)?;
            let writes: String = row.get(6)?;
            let (node, started_at, ended_at) = (row.get(0)?, row.get(3)?, row.get(4)?);
            Ok((|| {
                Ok(NodeRecord {
                    node,
                    state: codec::node_state(state)?,
                    attempts: codec::unsigned(attempts, "attempts")?,
                    started_at,
                    ended_at,
                    failure: failure
                        .map(|f| codec::json(&f, "a node's failure"))
                        .transpose()?,
                    writes: codec::writes(&writes)?,
                })
            })())
        })
        .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
        .map_err(super::database(conn))?;
    rows.into_iter()
        .collect::<Result<_, String>>()
        .map_err(super::corrupt(conn))
}

pub(super) fn events(
    conn: &Connection,
    run: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    let limit = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, at, kind, node, attempt, data FROM braid_events
             WHERE run = (SELECT key FROM braid_runs WHERE id = ?1) AND seq >= ?2
             ORDER BY seq LIMIT ?3",
        )
        .map_err(super::database(conn))?;
    let rows = stmt
        .query_map((run, codec::signed(from), limit), |row| {
            let seq: i64 = row.get(0)?;
            let kind: i64 = row.get(2)?;
            let attempt: Option<i64> = row.get(4)?;
            let data: Option<String> = row.get(5)?;
            let (at, node) = (row.get(1)?, row.get(3)?);
            Ok((|| {
                Ok(EventRecord {
                    seq: codec::unsigned(seq, "a sequence number")?,
                    at,
                    kind: codec::event_kind(kind)?,
                    node,
                    attempt: attempt
                        .map(|a| codec::unsigned(a, "an attempt"))
                        .transpose()?,
                    data: data
                        .map(|d| codec::json(&d, "an event's data"))
                        .transpose()?,
                })
            })())
        })
        .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
        .map_err(super::database(conn))?;
    rows.into_iter()
        .collect::<Result<_, String>>()
        .map_err(super::corrupt(conn))
}

pub(super) fn list_runs(
    conn: &Connection,
    filter: &RunFilter,
) -> Result<Vec<RunRecord>, StoreError> {
    let mut sql = format!("SELECT {RUN_COLUMNS} WHERE 1 = 1");
    let mut args: Vec<Sql> = Vec::new();
    if let Some(workflow) = &filter.workflow {
        args.push(Sql::Text(workflow.clone()));
        sql.push_str(&format!(" AND r.workflow = ?{}", args.len()));
    }
    if let Some(state) = filter.state {
        args.push(Sql::Integer(codec::run_state_code(state).into()));
        sql.push_str(&format!(" AND r.state = ?{}", args.len()));
    }
    if let Some((at, id)) = &filter.before {
        args.push(Sql::Integer(*at));
        args.push(Sql::Text(id.clone()));
        sql.push_str(&format!(
            " AND (r.created_at, r.id) < (?{}, ?{})",
            args.len() - 1,
            args.len()
        ));
    }
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    args.push(Sql::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    sql.push_str(&format!(
        " ORDER BY r.created_at DESC, r.id DESC LIMIT ?{}",
        args.len()
    ));
    let mut stmt = conn.prepare_cached(&sql).map_err(super::database(conn))?;
    let rows = stmt
        .query_map(params_from_iter(args), run_row)
        .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
        .map_err(super::database(conn))?;
    rows.into_iter()
        .collect::<Result<_, String>>()
        .map_err(super::corrupt(conn))
}
