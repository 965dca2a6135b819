//! The SQL of each write, run by the writer task inside a savepoint of the group's transaction
//! (`writer`). A run's row is locked (`FOR NO KEY UPDATE`) before its events are checked, so two
//! processes appending to one run cannot both take the same sequence numbers.

use std::collections::HashMap;

use super::conn::{self, Conn};
use super::read;
use crate::codec;
use crate::{Definition, Entry, Micros, NewRun, Reopen, RunRecord, RunState, StoreError};

/// A definition put again within this long keeps its recorded `used_at` (see the SQLite store).
const USED_AT_GRAIN: Micros = 60_000_000;

/// The connection a write runs on, and where, for messages.
pub(super) struct Cx<'a> {
    pub(super) conn: &'a Conn,
    pub(super) location: &'a str,
}

impl Cx<'_> {
    fn db(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        |e| conn::error(self.location, &e)
    }
}

fn small(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

pub(super) async fn put_definition(cx: &Cx<'_>, def: &Definition) -> Result<(), StoreError> {
    let stmt = cx
        .conn
        .statement(
            "INSERT INTO braid_definitions (fingerprint, workflow, used_at, files) VALUES ($1, $2, $3, $4)
             ON CONFLICT (fingerprint) DO UPDATE SET used_at = excluded.used_at
             WHERE braid_definitions.used_at < excluded.used_at - $5",
        )
        .await
        .map_err(cx.db())?;
    let files = codec::files_text(&def.files);
    cx.conn
        .client
        .execute(
            &stmt,
            &[
                &def.fingerprint,
                &def.workflow,
                &crate::now_micros(),
                &files,
                &USED_AT_GRAIN,
            ],
        )
        .await
        .map_err(cx.db())?;
    Ok(())
}

pub(super) async fn create_run(cx: &Cx<'_>, run: &NewRun) -> Result<(), StoreError> {
    let c = &cx.conn.client;
    let taken = cx
        .conn
        .statement("SELECT 1 FROM braid_runs WHERE id = $1")
        .await
        .map_err(cx.db())?;
    if c.query_opt(&taken, &[&run.id])
        .await
        .map_err(cx.db())?
        .is_some()
    {
        return Err(codec::run_taken(&run.id));
    }
    let def = cx
        .conn
        .statement("SELECT key FROM braid_definitions WHERE fingerprint = $1")
        .await
        .map_err(cx.db())?;
    let Some(definition) = c
        .query_opt(&def, &[&run.fingerprint])
        .await
        .map_err(cx.db())?
        .map(|r| r.get::<_, i64>(0))
    else {
        return Err(StoreError::UnknownDefinition {
            fingerprint: run.fingerprint.clone(),
        });
    };
    let insert = cx
        .conn
        .statement(
            "INSERT INTO braid_runs (id, definition, workflow, state, created_at, updated_at, restarts, inputs, options)
             VALUES ($1, $2, $3, $4, $5, $5, 0, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .await
        .map_err(cx.db())?;
    let inserted = c
        .execute(
            &insert,
            &[
                &run.id,
                &definition,
                &run.workflow,
                &codec::run_state_code(RunState::Running),
                &run.created_at,
                &codec::json_text(&run.inputs),
                &codec::json_text(&run.options),
            ],
        )
        .await
        .map_err(cx.db())?;
    if inserted == 0 {
        return Err(codec::run_taken(&run.id));
    }
    Ok(())
}

/// The key of run `id`, its row locked until the transaction ends; looked up once per batch.
async fn run_key(
    cx: &Cx<'_>,
    keys: &mut HashMap<String, i64>,
    id: &str,
) -> Result<i64, StoreError> {
    if let Some(key) = keys.get(id) {
        return Ok(*key);
    }
    let stmt = cx
        .conn
        .statement("SELECT key FROM braid_runs WHERE id = $1 FOR NO KEY UPDATE")
        .await
        .map_err(cx.db())?;
    let key: i64 = cx
        .conn
        .client
        .query_opt(&stmt, &[&id])
        .await
        .map_err(cx.db())?
        .ok_or_else(|| StoreError::UnknownRun { run: id.to_owned() })?
        .get(0);
    keys.insert(id.to_owned(), key);
    Ok(key)
}

pub(super) async fn append(cx: &Cx<'_>, entries: &[Entry]) -> Result<(), StoreError> {
    let c = &cx.conn.client;
    let mut keys = HashMap::new();
    let mut next_seq: HashMap<i64, u64> = HashMap::new();
    for entry in entries {
        match entry {
            Entry::Node { run, record } => {
                let key = run_key(cx, &mut keys, run).await?;
                let stmt = cx
                    .conn
                    .statement(
                        "INSERT INTO braid_nodes (run, node, state, attempts, started_at, ended_at, failure, writes)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (run, node) DO UPDATE SET state = excluded.state,
                           attempts = excluded.attempts, started_at = excluded.started_at,
                           ended_at = excluded.ended_at, failure = excluded.failure, writes = excluded.writes",
                    )
                    .await
                    .map_err(cx.db())?;
                c.execute(
                    &stmt,
                    &[
                        &key,
                        &record.node,
                        &codec::node_state_code(record.state),
                        &small(record.attempts),
                        &record.started_at,
                        &record.ended_at,
                        &record.failure.as_ref().map(codec::json_text),
                        &codec::writes_text(&record.writes),
                    ],
                )
                .await
                .map_err(cx.db())?;
            }
            Entry::Events { run, events } => {
                let key = run_key(cx, &mut keys, run).await?;
                let mut expected = match next_seq.get(&key) {
                    Some(n) => *n,
                    None => read::next_seq(cx.conn, key).await.map_err(cx.db())?,
                };
                let stmt = cx
                    .conn
                    .statement(
                        "INSERT INTO braid_events (run, seq, at, kind, node, attempt, data)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .await
                    .map_err(cx.db())?;
                for event in events {
                    if event.seq != expected {
                        return Err(codec::out_of_sequence(run, expected, event.seq));
                    }
                    c.execute(
                        &stmt,
                        &[
                            &key,
                            &codec::signed(event.seq),
                            &event.at,
                            &codec::event_kind_code(event.kind),
                            &event.node,
                            &event.attempt.map(small),
                            &event.data.as_ref().map(codec::json_text),
                        ],
                    )
                    .await
                    .map_err(cx.db())?;
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
                let key = run_key(cx, &mut keys, run).await?;
                if *state == RunState::Running {
                    return Err(codec::end_running(run));
                }
                let stmt = cx
                    .conn
                    .statement(
                        "UPDATE braid_runs SET state = $2, error = $3, ended_at = $4, updated_at = $4 WHERE key = $1",
                    )
                    .await
                    .map_err(cx.db())?;
                c.execute(
                    &stmt,
                    &[
                        &key,
                        &codec::run_state_code(*state),
                        &error.as_ref().map(codec::json_text),
                        at,
                    ],
                )
                .await
                .map_err(cx.db())?;
            }
        }
    }
    Ok(())
}

pub(super) async fn reopen(cx: &Cx<'_>, reopen: &Reopen) -> Result<RunRecord, StoreError> {
    let c = &cx.conn.client;
    let stmt = cx
        .conn
        .statement("SELECT key, state FROM braid_runs WHERE id = $1 FOR NO KEY UPDATE")
        .await
        .map_err(cx.db())?;
    let Some(row) = c.query_opt(&stmt, &[&reopen.run]).await.map_err(cx.db())? else {
        return Err(StoreError::UnknownRun {
            run: reopen.run.clone(),
        });
    };
    let key: i64 = row.get(0);
    let state =
        codec::run_state(row.get::<_, i16>(1).into()).map_err(|detail| StoreError::Corrupt {
            location: cx.location.to_owned(),
            detail,
        })?;
    if !reopen.from.contains(&state) {
        return Err(codec::wrong_state(&reopen.run, state, &reopen.from));
    }
    let delete = cx
        .conn
        .statement("DELETE FROM braid_nodes WHERE run = $1 AND node = ANY($2)")
        .await
        .map_err(cx.db())?;
    c.execute(&delete, &[&key, &reopen.reset])
        .await
        .map_err(cx.db())?;
    let update = cx
        .conn
        .statement(
            "UPDATE braid_runs SET state = $2, ended_at = NULL, error = NULL, updated_at = $3,
               restarts = restarts + 1 WHERE key = $1",
        )
        .await
        .map_err(cx.db())?;
    c.execute(
        &update,
        &[&key, &codec::run_state_code(RunState::Running), &reopen.at],
    )
    .await
    .map_err(cx.db())?;
    read::run(cx.conn, cx.location, &reopen.run)
        .await?
        .ok_or_else(|| StoreError::UnknownRun {
            run: reopen.run.clone(),
        })
}

pub(super) async fn gc(cx: &Cx<'_>, ended_before: Micros) -> Result<u64, StoreError> {
    let c = &cx.conn.client;
    let codes: Vec<i16> = codec::finished_codes().to_vec();
    let doomed = "SELECT key FROM braid_runs WHERE state = ANY($1) AND ended_at < $2";
    for table in ["braid_events", "braid_nodes"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE run IN ({doomed})"),
            &[&codes, &ended_before],
        )
        .await
        .map_err(cx.db())?;
    }
    let deleted = c
        .execute(
            "DELETE FROM braid_runs WHERE state = ANY($1) AND ended_at < $2",
            &[&codes, &ended_before],
        )
        .await
        .map_err(cx.db())?;
    c.execute(
        "DELETE FROM braid_definitions d WHERE used_at < $1
           AND NOT EXISTS (SELECT 1 FROM braid_runs r WHERE r.definition = d.key)",
        &[&ended_before],
    )
    .await
    .map_err(cx.db())?;
    Ok(deleted)
}
