//! The writes that are not batched (`batch`): `gc`, which the writer applies by itself in a
//! savepoint of its group's transaction.

use super::conn::{self, Conn};
use crate::codec;
use crate::{Micros, StoreError};

pub(super) async fn gc(
    conn: &Conn,
    location: &str,
    ended_before: Micros,
) -> Result<u64, StoreError> {
    let c = &conn.client;
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let codes: Vec<i16> = codec::finished_codes().to_vec();
    let doomed = "SELECT key FROM braid_runs WHERE state = ANY($1) AND ended_at < $2";
    for table in ["braid_events", "braid_nodes"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE run IN ({doomed})"),
            &[&codes, &ended_before],
        )
        .await
        .map_err(db)?;
    }
    let deleted = c
        .execute(
            "DELETE FROM braid_runs WHERE state = ANY($1) AND ended_at < $2",
            &[&codes, &ended_before],
        )
        .await
        .map_err(db)?;
    c.execute(
        "DELETE FROM braid_definitions d WHERE used_at < $1
           AND NOT EXISTS (SELECT 1 FROM braid_runs r WHERE r.definition = d.key)",
        &[&ended_before],
    )
    .await
    .map_err(db)?;
    Ok(deleted)
}
