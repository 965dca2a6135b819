//! The SQL of each write, run by the writer thread inside a savepoint of the group's transaction
//! (`writer`): a write that fails rolls back to its savepoint and leaves the others of the group
//! as they were.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::read;
use crate::codec;
use crate::{Claim, Definition, Entry, Micros, NewRun, Reopen, RunRecord, RunState, StoreError};

/// A definition put again within this long keeps its recorded `used_at`, so that starting runs
/// of one workflow does not rewrite its (possibly large) row each time.
const USED_AT_GRAIN: Micros = 60_000_000;

pub(super) fn put_definition(conn: &Connection, def: &Definition) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO braid_definitions (fingerprint, workflow, used_at, files) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (fingerprint) DO UPDATE SET used_at = excluded.used_at
         WHERE used_at < excluded.used_at - ?5",
    )?
    .execute(params![
        def.fingerprint,
        def.workflow,
        crate::now_micros(),
        codec::files_text(&def.files),
        USED_AT_GRAIN
    ])?;
    Ok(())
}

pub(super) fn create_run(conn: &Connection, run: &NewRun, queued: bool) -> Result<(), StoreError> {
    let db = super::database(conn);
    let taken = conn
        .prepare_cached("SELECT 1 FROM braid_runs WHERE id = ?1")
        .and_then(|mut s| s.exists([&run.id]))
        .map_err(&db)?;
    if taken {
        return Err(codec::run_taken(&run.id));
    }
    let definition: Option<i64> = conn
        .prepare_cached("SELECT key FROM braid_definitions WHERE fingerprint = ?1")
        .and_then(|mut s| s.query_row([&run.fingerprint], |r| r.get(0)).optional())
        .map_err(&db)?;
    let Some(definition) = definition else {
        return Err(StoreError::UnknownDefinition {
            fingerprint: run.fingerprint.clone(),
        });
    };
    conn.prepare_cached(
        "INSERT INTO braid_runs (id, definition, workflow, state, created_at, updated_at, ended_at, restarts, inputs, options, error, queued)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, NULL, 0, ?6, ?7, NULL, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            run.id,
            definition,
            run.workflow,
            codec::run_state_code(RunState::Running),
            run.created_at,
            codec::json_text(&run.inputs),
            codec::json_text(&run.options),
            queued,
        ])
    })
    .map_err(&db)?;
    Ok(())
}

/// The key of run `id`, looked up once per batch.
fn run_key(
    conn: &Connection,
    keys: &mut HashMap<String, i64>,
    id: &str,
) -> Result<i64, StoreError> {
    if let Some(key) = keys.get(id) {
        return Ok(*key);
    }
    let key: Option<i64> = conn
        .prepare_cached("SELECT key FROM braid_runs WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(super::database(conn))?;
    let key = key.ok_or_else(|| StoreError::UnknownRun { run: id.to_owned() })?;
    keys.insert(id.to_owned(), key);
    Ok(key)
}

pub(super) fn append(conn: &Connection, entries: &[Entry]) -> Result<(), StoreError> {
    let db = super::database(conn);
    let mut keys = HashMap::new();
    let mut next_seq: HashMap<i64, u64> = HashMap::new();
    for entry in entries {
        match entry {
            Entry::Fence { run, epoch } => {
                let key = run_key(conn, &mut keys, run)?;
                check_epoch(conn, key, run, *epoch)?;
            }
            Entry::Node { run, record } => {
                let key = run_key(conn, &mut keys, run)?;
                conn.prepare_cached(
                    "INSERT INTO braid_nodes (run, node, state, attempts, started_at, ended_at, failure, writes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (run, node) DO UPDATE SET state = excluded.state,
                       attempts = excluded.attempts, started_at = excluded.started_at,
                       ended_at = excluded.ended_at, failure = excluded.failure, writes = excluded.writes",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        key,
                        record.node,
                        codec::node_state_code(record.state),
                        record.attempts,
                        record.started_at,
                        record.ended_at,
                        record.failure.as_ref().map(codec::json_text),
                        codec::writes_text(&record.writes),
                    ])
                })
                .map_err(&db)?;
            }
            Entry::Events { run, events } => {
                let key = run_key(conn, &mut keys, run)?;
                let mut expected = match next_seq.get(&key) {
                    Some(n) => *n,
                    None => read::next_seq(conn, key).map_err(&db)?,
                };
                let mut insert = conn
                    .prepare_cached(
                        "INSERT INTO braid_events (run, seq, at, kind, node, attempt, data)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(&db)?;
                for event in events {
                    if event.seq != expected {
                        return Err(codec::out_of_sequence(run, expected, event.seq));
                    }
                    insert
                        .execute(params![
                            key,
                            codec::signed(event.seq),
                            event.at,
                            codec::event_kind_code(event.kind),
                            event.node,
                            event.attempt,
                            event.data.as_ref().map(codec::json_text),
                        ])
                        .map_err(&db)?;
                    expected += 1;
                }
                next_seq.insert(key, expected);
            }
            Entry::End {
                run,
                state,
                error,
                at,
            } => {
                let key = run_key(conn, &mut keys, run)?;
                if *state == RunState::Running {
                    return Err(codec::end_running(run));
                }
                conn.prepare_cached(
                    "UPDATE braid_runs SET state = ?2, error = ?3, ended_at = ?4, updated_at = ?4 WHERE key = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        key,
                        codec::run_state_code(*state),
                        error.as_ref().map(codec::json_text),
                        at
                    ])
                })
                .map_err(&db)?;
            }
        }
    }
    Ok(())
}

pub(super) fn reopen(conn: &Connection, reopen: &Reopen) -> Result<RunRecord, StoreError> {
    let db = super::database(conn);
    let found: Option<(i64, i64)> = conn
        .prepare_cached("SELECT key, state FROM braid_runs WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([&reopen.run], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(&db)?;
    let Some((key, state)) = found else {
        return Err(StoreError::UnknownRun {
            run: reopen.run.clone(),
        });
    };
    let state = codec::run_state(state).map_err(super::corrupt(conn))?;
    if let Some(epoch) = reopen.epoch {
        check_epoch(conn, key, &reopen.run, epoch)?;
    }
    if !reopen.from.contains(&state) {
        return Err(codec::wrong_state(&reopen.run, state, &reopen.from));
    }
    let mut delete = conn
        .prepare_cached("DELETE FROM braid_nodes WHERE run = ?1 AND node = ?2")
        .map_err(&db)?;
    for node in &reopen.reset {
        delete.execute(params![key, node]).map_err(&db)?;
    }
    conn.prepare_cached(
        "UPDATE braid_runs SET state = ?2, ended_at = NULL, error = NULL, updated_at = ?3,
           restarts = restarts + 1 WHERE key = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            key,
            codec::run_state_code(RunState::Running),
            reopen.at
        ])
    })
    .map_err(&db)?;
    if let Some(take) = &reopen.take {
        register(conn, &take.replica, take.ttl)?;
        conn.prepare_cached(
            "UPDATE braid_runs SET owner = ?2, queued = 1, epoch = epoch + 1 WHERE key = ?1",
        )
        .and_then(|mut s| s.execute(params![key, take.replica]))
        .map_err(&db)?;
    }
    read::run(conn, &reopen.run)?.ok_or_else(|| StoreError::UnknownRun {
        run: reopen.run.clone(),
    })
}

pub(super) fn gc(conn: &Connection, ended_before: Micros) -> rusqlite::Result<u64> {
    let [a, b, c] = codec::finished_codes();
    let doomed = "SELECT key FROM braid_runs WHERE state IN (?1, ?2, ?3) AND ended_at < ?4";
    conn.execute(
        &format!("DELETE FROM braid_events WHERE run IN ({doomed})"),
        params![a, b, c, ended_before],
    )?;
    conn.execute(
        &format!("DELETE FROM braid_nodes WHERE run IN ({doomed})"),
        params![a, b, c, ended_before],
    )?;
    let deleted = conn.execute(
        "DELETE FROM braid_runs WHERE state IN (?1, ?2, ?3) AND ended_at < ?4",
        params![a, b, c, ended_before],
    )?;
    conn.execute(
        "DELETE FROM braid_definitions WHERE used_at < ?1
           AND key NOT IN (SELECT definition FROM braid_runs)",
        [ended_before],
    )?;
    Ok(deleted as u64)
}

/// Refuses a write under `epoch` to run `key` at another epoch. The writer's transaction
/// (`BEGIN IMMEDIATE`) holds the file's write lock, so no claim can come in between.
fn check_epoch(conn: &Connection, key: i64, run: &str, epoch: u64) -> Result<(), StoreError> {
    let current: i64 = conn
        .prepare_cached("SELECT epoch FROM braid_runs WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)))
        .map_err(super::database(conn))?;
    let current = codec::unsigned::<u64>(current, "an epoch").map_err(super::corrupt(conn))?;
    if current != epoch {
        return Err(codec::fenced(run, epoch, current));
    }
    Ok(())
}

/// See `Store::claim`; times are this machine's clock.
pub(super) fn claim(
    conn: &Connection,
    replica: &str,
    max: usize,
    ttl: std::time::Duration,
) -> Result<Vec<Claim>, StoreError> {
    let db = super::database(conn);
    let now = register(conn, replica, ttl)?;
    let mut statement = conn
        .prepare_cached(
            "UPDATE braid_runs SET owner = ?1, epoch = epoch + 1 WHERE key IN (
               SELECT r.key FROM braid_runs r
               WHERE r.queued AND r.state = 0
                 AND (r.owner IS NULL OR EXISTS (SELECT 1 FROM braid_replicas p
                                                 WHERE p.id = r.owner AND p.expires_at <= ?2))
               ORDER BY r.created_at LIMIT ?3)
             RETURNING id, epoch",
        )
        .map_err(&db)?;
    let rows = statement
        .query_map(
            params![replica, now, i64::try_from(max).unwrap_or(i64::MAX)],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )
        .map_err(&db)?;
    let mut claims = Vec::new();
    for row in rows {
        let (run, epoch) = row.map_err(&db)?;
        let epoch = codec::unsigned::<u64>(epoch, "an epoch").map_err(super::corrupt(conn))?;
        claims.push(Claim { run, epoch });
    }
    Ok(claims)
}

/// Registers (or renews) `replica` with a lease of `ttl`; returns the time it did.
fn register(
    conn: &Connection,
    replica: &str,
    ttl: std::time::Duration,
) -> Result<Micros, StoreError> {
    let now = crate::now_micros();
    let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO braid_replicas (id, ttl, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at",
    )
    .and_then(|mut s| s.execute(params![replica, ttl, now.saturating_add(ttl)]))
    .map_err(super::database(conn))?;
    Ok(now)
}

/// See `Store::heartbeat`: one write (the replica's row), then the runs it owns.
pub(super) fn heartbeat(
    conn: &Connection,
    replica: &str,
) -> Result<Option<Vec<Claim>>, StoreError> {
    let db = super::database(conn);
    let n = conn
        .prepare_cached("UPDATE braid_replicas SET expires_at = ?2 + ttl WHERE id = ?1")
        .and_then(|mut s| s.execute(params![replica, crate::now_micros()]))
        .map_err(&db)?;
    if n == 0 {
        return Ok(None);
    }
    let mut statement = conn
        .prepare_cached("SELECT id, epoch FROM braid_runs WHERE owner = ?1 AND state = 0")
        .map_err(&db)?;
    let rows = statement
        .query_map([replica], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(&db)?;
    let mut owned = Vec::new();
    for row in rows {
        let (run, epoch) = row.map_err(&db)?;
        let epoch = codec::unsigned::<u64>(epoch, "an epoch").map_err(super::corrupt(conn))?;
        owned.push(Claim { run, epoch });
    }
    Ok(Some(owned))
}

/// See `Store::release`.
pub(super) fn release(conn: &Connection, replica: &str) -> Result<u64, StoreError> {
    let db = super::database(conn);
    conn.prepare_cached("DELETE FROM braid_replicas WHERE id = ?1")
        .and_then(|mut s| s.execute([replica]))
        .map_err(&db)?;
    let n = conn
        .prepare_cached(
            "UPDATE braid_runs SET owner = NULL, epoch = epoch + 1 WHERE owner = ?1 AND state = 0",
        )
        .and_then(|mut s| s.execute([replica]))
        .map_err(&db)?;
    Ok(n as u64)
}
