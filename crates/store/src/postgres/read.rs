//! Reads: the queries, run on the pool's connections (or, inside a write, on the writer's).

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::chunk;
use super::conn::{self, Conn};
use crate::codec;
use crate::{Definition, EventRecord, NodeRecord, RunFilter, RunRecord, StoreError};

const RUN_COLUMNS: &str =
    "r.id, r.workflow, d.fingerprint, r.inputs, r.options, r.state, r.created_at,
    r.updated_at, r.ended_at, r.error, r.restarts,
    coalesce((SELECT e.first_seq + e.n FROM braid_events e WHERE e.run = r.key
              ORDER BY e.first_seq DESC LIMIT 1), 0), r.owner, r.epoch
    FROM braid_runs r JOIN braid_definitions d ON d.key = r.definition";

/// The runs whose ids are in `$1` (a write's answer: the runs it reopened).
pub(super) const RUNS_BY_IDS: &str =
    "SELECT r.id, r.workflow, d.fingerprint, r.inputs, r.options, r.state, r.created_at,
    r.updated_at, r.ended_at, r.error, r.restarts,
    coalesce((SELECT e.first_seq + e.n FROM braid_events e WHERE e.run = r.key
              ORDER BY e.first_seq DESC LIMIT 1), 0), r.owner, r.epoch
    FROM braid_runs r JOIN braid_definitions d ON d.key = r.definition WHERE r.id = ANY($1::text[])";

const RUN_BY_ID: &str =
    "SELECT r.id, r.workflow, d.fingerprint, r.inputs, r.options, r.state, r.created_at,
    r.updated_at, r.ended_at, r.error, r.restarts,
    coalesce((SELECT e.first_seq + e.n FROM braid_events e WHERE e.run = r.key
              ORDER BY e.first_seq DESC LIMIT 1), 0), r.owner, r.epoch
    FROM braid_runs r JOIN braid_definitions d ON d.key = r.definition WHERE r.id = $1";

pub(super) fn corrupt(location: &str) -> impl Fn(String) -> StoreError + '_ {
    move |detail| StoreError::Corrupt {
        location: location.to_owned(),
        detail,
    }
}

pub(super) fn run_row(row: &Row) -> Result<RunRecord, String> {
    let error: Option<String> = row.try_get(9).map_err(|e| e.to_string())?;
    Ok(RunRecord {
        id: row.try_get(0).map_err(|e| e.to_string())?,
        workflow: row.try_get(1).map_err(|e| e.to_string())?,
        fingerprint: row.try_get(2).map_err(|e| e.to_string())?,
        inputs: codec::json(row.try_get(3).map_err(|e| e.to_string())?, "a run's inputs")?,
        options: codec::json(
            row.try_get(4).map_err(|e| e.to_string())?,
            "a run's options",
        )?,
        state: codec::run_state(row.try_get::<_, i16>(5).map_err(|e| e.to_string())?.into())?,
        created_at: row.try_get(6).map_err(|e| e.to_string())?,
        updated_at: row.try_get(7).map_err(|e| e.to_string())?,
        ended_at: row.try_get(8).map_err(|e| e.to_string())?,
        error: error
            .map(|e| codec::json(&e, "a run's error"))
            .transpose()?,
        restarts: codec::unsigned(
            row.try_get::<_, i32>(10).map_err(|e| e.to_string())?.into(),
            "restarts",
        )?,
        next_seq: codec::unsigned(
            row.try_get::<_, i64>(11).map_err(|e| e.to_string())?,
            "a sequence number",
        )?,
        owner: row.try_get(12).map_err(|e| e.to_string())?,
        epoch: codec::unsigned(
            row.try_get::<_, i64>(13).map_err(|e| e.to_string())?,
            "an epoch",
        )?,
    })
}

pub(super) async fn run(
    conn: &Conn,
    location: &str,
    id: &str,
) -> Result<Option<RunRecord>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let stmt = conn.statement(RUN_BY_ID).await.map_err(db)?;
    let row = conn.client.query_opt(&stmt, &[&id]).await.map_err(db)?;
    row.as_ref()
        .map(run_row)
        .transpose()
        .map_err(corrupt(location))
}

pub(super) async fn definition(
    conn: &Conn,
    location: &str,
    fingerprint: &str,
) -> Result<Option<Definition>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let stmt = conn
        .statement("SELECT workflow, files FROM braid_definitions WHERE fingerprint = $1")
        .await
        .map_err(db)?;
    let Some(row) = conn
        .client
        .query_opt(&stmt, &[&fingerprint])
        .await
        .map_err(db)?
    else {
        return Ok(None);
    };
    Ok(Some(Definition {
        fingerprint: fingerprint.to_owned(),
        workflow: row.get(0),
        files: codec::files(row.get(1)).map_err(corrupt(location))?,
    }))
}

pub(super) async fn nodes(
    conn: &Conn,
    location: &str,
    run: &str,
) -> Result<Vec<NodeRecord>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let stmt = conn
        .statement(
            "SELECT n.node, n.state, n.attempts, n.started_at, n.ended_at, n.failure, n.writes
             FROM braid_nodes n JOIN braid_runs r ON n.run = r.key WHERE r.id = $1",
        )
        .await
        .map_err(db)?;
    let rows = conn.client.query(&stmt, &[&run]).await.map_err(db)?;
    rows.iter()
        .map(|row| {
            let failure: Option<String> = row.get(5);
            Ok(NodeRecord {
                node: row.get(0),
                state: codec::node_state(row.get::<_, i16>(1).into())?,
                attempts: codec::unsigned(row.get::<_, i32>(2).into(), "attempts")?,
                started_at: row.get(3),
                ended_at: row.get(4),
                failure: failure
                    .map(|f| codec::json(&f, "a node's failure"))
                    .transpose()?,
                writes: codec::writes(row.get(6))?,
            })
        })
        .collect::<Result<_, String>>()
        .map_err(corrupt(location))
}

pub(super) async fn events(
    conn: &Conn,
    location: &str,
    run: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let room = if limit == 0 { usize::MAX } else { limit };
    // The chunk holding `from`, and the ones after it: each holds at least one event, so
    // `limit` chunks hold `limit` events.
    let chunks: Option<i64> = (limit > 0).then(|| i64::try_from(limit).unwrap_or(i64::MAX));
    let stmt = conn
        .statement(
            "WITH r AS (SELECT key FROM braid_runs WHERE id = $1)
             SELECT e.first_seq, e.events FROM braid_events e, r
             WHERE e.run = r.key AND e.first_seq >= coalesce((SELECT max(c.first_seq)
               FROM braid_events c WHERE c.run = r.key AND c.first_seq <= $2), 0)
             ORDER BY e.first_seq LIMIT $3",
        )
        .await
        .map_err(db)?;
    let rows = conn
        .client
        .query(&stmt, &[&run, &codec::signed(from), &chunks])
        .await
        .map_err(db)?;
    let mut out = Vec::new();
    for row in &rows {
        let first: i64 = row.get(0);
        let first = codec::unsigned(first, "a sequence number").map_err(corrupt(location))?;
        chunk::decode(first, row.get(1), from, room, &mut out).map_err(corrupt(location))?;
        if out.len() >= room {
            break;
        }
    }
    Ok(out)
}

pub(super) async fn list_runs(
    conn: &Conn,
    location: &str,
    filter: &RunFilter,
) -> Result<Vec<RunRecord>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let state = filter.state.map(codec::run_state_code);
    let limit =
        i64::try_from(if filter.limit == 0 { 100 } else { filter.limit }).unwrap_or(i64::MAX);
    let mut sql = format!("SELECT {RUN_COLUMNS} WHERE true");
    let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(workflow) = &filter.workflow {
        args.push(workflow);
        sql.push_str(&format!(" AND r.workflow = ${}", args.len()));
    }
    if let Some(state) = &state {
        args.push(state);
        sql.push_str(&format!(" AND r.state = ${}", args.len()));
    }
    if let Some((at, id)) = &filter.before {
        args.push(at);
        args.push(id);
        sql.push_str(&format!(
            " AND r.created_at <= ${0} AND (r.created_at, r.id) < (${0}, ${1})",
            args.len() - 1,
            args.len()
        ));
    }
    args.push(&limit);
    sql.push_str(&format!(
        " ORDER BY r.created_at DESC, r.id DESC LIMIT ${}",
        args.len()
    ));
    let rows = conn.client.query(&sql, &args).await.map_err(db)?;
    rows.iter()
        .map(run_row)
        .collect::<Result<_, String>>()
        .map_err(corrupt(location))
}
