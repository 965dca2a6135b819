//! Shared work: the queue's claim, a replica's heartbeat and release, each **one statement**
//! run on a read connection outside the writer (a claim must not wait behind a group of
//! journal writes, and a heartbeat must not wait at all). Times are the server's (`now()`), so
//! replicas' clocks need not agree.
//!
//! A run's lease is its owner's: a run is claimable when it is queued, `running`, and its owner
//! is none, unregistered, or expired. So liveness costs one `UPDATE` of one row per replica per
//! interval, whatever the number of runs it holds; and fencing (the epoch a claim increments,
//! checked by every fenced write under the run's lock, `batch`) makes a replica that lost its
//! lease harmless.

use std::time::Duration;

use super::conn::{self, Conn};
use crate::codec;
use crate::{Claim, RunState, StoreError};

/// Registers (or renews) the replica `$1` with a lease of `$3` µs, and takes up to `$2` runs
/// that are queued, running (`$4`) and owned by no live replica, oldest first, skipping rows
/// locked by another claimer or a writer; each gets the replica as owner and its epoch
/// incremented. The CTEs see the table as the statement began, so a replica whose own lease had
/// expired may take back its own runs (with a new epoch: its earlier writes are fenced).
///
/// The owner's death is a correlated `EXISTS` (its row, expired), not a join nor "no live
/// row": when a row locked by a concurrent claim is unlocked, PostgreSQL re-checks the
/// conditions on the row's new version (its new owner) under this statement's snapshot. A join
/// would reuse its old, empty match; "no live row" would find none for a replica whose first
/// claim registered it after the snapshot. Either claimed the run twice (a test caught it).
/// An owner counts as dead only when its row says it expired, so a run whose owner's row was
/// deleted by hand is not claimed (`release` clears the owners of the rows it deletes).
const CLAIM: &str = "WITH me AS (
        INSERT INTO braid_replicas (id, ttl, expires_at)
        VALUES ($1, $3::int8 * interval '1 microsecond', now() + $3::int8 * interval '1 microsecond')
        ON CONFLICT (id) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at
        RETURNING id
    ), free AS (
        SELECT r.key FROM braid_runs r
        WHERE r.queued AND r.state = $4::int2
          AND (r.owner IS NULL OR EXISTS (SELECT 1 FROM braid_replicas p
                                          WHERE p.id = r.owner AND p.expires_at <= now()))
        ORDER BY r.created_at
        LIMIT $2::int8
        FOR UPDATE OF r SKIP LOCKED
    )
    UPDATE braid_runs r SET owner = (SELECT id FROM me), epoch = r.epoch + 1
    FROM free WHERE r.key = free.key
    RETURNING r.id, r.epoch";

/// A replica's heartbeat: the one statement per interval. It renews the replica's row and
/// answers the running runs it owns (one row with a null run when it owns none; no row when it
/// is not registered), reading the runs through their owner index and writing none.
pub(super) const HEARTBEAT: &str = "WITH beat AS (
        UPDATE braid_replicas SET expires_at = now() + ttl WHERE id = $1 RETURNING id
    )
    SELECT r.id, r.epoch FROM beat b
    LEFT JOIN braid_runs r ON r.owner = b.id AND r.state = $2::int2";

/// Takes a run for a replica (see `Reopen::take`): registers or renews the replica, and makes it
/// the owner of run `$1` if the run is in one of the states `$4` (and at epoch `$5`, unless
/// null), queued, with its epoch incremented. Answers the new epoch; no row when the run is
/// not in such a state (the reopen that follows reports why).
pub(super) const TAKE: &str = "WITH me AS (
        INSERT INTO braid_replicas (id, ttl, expires_at)
        VALUES ($2, $3::int8 * interval '1 microsecond', now() + $3::int8 * interval '1 microsecond')
        ON CONFLICT (id) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at
        RETURNING id
    )
    UPDATE braid_runs SET owner = (SELECT id FROM me), queued = true, epoch = epoch + 1
    WHERE id = $1 AND state = ANY($4::int2[]) AND ($5::int8 IS NULL OR epoch = $5::int8)
    RETURNING epoch";

/// Hands back the replica's running runs (epoch incremented: its late writes are fenced) and
/// unregisters it.
const RELEASE: &str = "WITH gone AS (DELETE FROM braid_replicas WHERE id = $1)
    UPDATE braid_runs SET owner = NULL, epoch = epoch + 1 WHERE owner = $1 AND state = $2::int2";

pub(super) async fn claim(
    conn: &Conn,
    location: &str,
    replica: &str,
    max: usize,
    ttl: Duration,
) -> Result<Vec<Claim>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    // `max` 0 still registers (or renews) the replica.
    let statement = conn.statement(CLAIM).await.map_err(db)?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    let running = codec::run_state_code(RunState::Running);
    let rows = conn
        .client
        .query(&statement, &[&replica, &max, &ttl, &running])
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| {
            Ok(Claim {
                run: row.get(0),
                epoch: codec::unsigned::<u64>(row.get(1), "an epoch")
                    .map_err(super::read::corrupt(location))?,
            })
        })
        .collect()
}

pub(super) async fn heartbeat(
    conn: &Conn,
    location: &str,
    replica: &str,
) -> Result<Option<Vec<Claim>>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let statement = conn.statement(HEARTBEAT).await.map_err(db)?;
    let running = codec::run_state_code(RunState::Running);
    let rows = conn
        .client
        .query(&statement, &[&replica, &running])
        .await
        .map_err(db)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut owned = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(run) = row.get::<_, Option<String>>(0) else {
            continue;
        };
        let epoch: i64 = row.get(1);
        owned.push(Claim {
            run,
            epoch: codec::unsigned::<u64>(epoch, "an epoch")
                .map_err(super::read::corrupt(location))?,
        });
    }
    Ok(Some(owned))
}

/// Takes run `take_run` for `take.replica` (`Reopen::take`); `None` when the run is not in one
/// of the states `from` (or not at `epoch`).
pub(super) async fn take(
    conn: &Conn,
    location: &str,
    run: &str,
    take: &crate::Take,
    from: &[RunState],
    epoch: Option<u64>,
) -> Result<Option<u64>, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let statement = conn.statement(TAKE).await.map_err(db)?;
    let ttl = i64::try_from(take.ttl.as_micros()).unwrap_or(i64::MAX);
    let from: Vec<i16> = from.iter().map(|s| codec::run_state_code(*s)).collect();
    let epoch = epoch.map(|e| i64::try_from(e).unwrap_or(i64::MAX));
    let row = conn
        .client
        .query_opt(&statement, &[&run, &take.replica, &ttl, &from, &epoch])
        .await
        .map_err(db)?;
    row.map(|row| {
        codec::unsigned::<u64>(row.get::<_, i64>(0), "an epoch")
            .map_err(super::read::corrupt(location))
    })
    .transpose()
}

pub(super) async fn release(conn: &Conn, location: &str, replica: &str) -> Result<u64, StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let statement = conn.statement(RELEASE).await.map_err(db)?;
    let running = codec::run_state_code(RunState::Running);
    let n = conn
        .client
        .execute(&statement, &[&replica, &running])
        .await
        .map_err(db)?;
    if n > 0 {
        let notify = conn.statement(super::batch::NOTIFY).await.map_err(db)?;
        conn.client.execute(&notify, &[]).await.map_err(db)?;
    }
    Ok(n)
}
