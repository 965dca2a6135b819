//! The PostgreSQL store's schema as versioned data, applied on connect in one transaction under
//! an advisory lock (replicas starting together migrate once). The store lives in the first
//! schema of the connection's `search_path` (`current_schema()`): give it a schema of its own
//! with the libpq parameter `options=-c search_path=NAME` in the URL.
//!
//! Before anything is written, the schema is read: Braid's meta table with a version this build
//! knows is a store; no table at all is a new one; other tables without Braid's meta table are
//! another program's ([`StoreError::NotAStore`]); a newer version is refused
//! ([`StoreError::NewerVersion`]). Columns are ordered widest first, so rows carry no alignment
//! padding.

use tokio_postgres::Client;

use super::conn;
use crate::StoreError;

/// The advisory lock taken while migrating ("braid" in ASCII).
const MIGRATION_LOCK: i64 = 0x0062_7261_6964;

/// Every migration, oldest first, as `(version, statements)`. Never edit one that has shipped.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE braid_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE braid_definitions (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    used_at bigint NOT NULL,
    fingerprint text NOT NULL UNIQUE,
    workflow text NOT NULL,
    files text NOT NULL
);
CREATE TABLE braid_runs (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    definition bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    ended_at bigint,
    restarts integer NOT NULL,
    state smallint NOT NULL,
    id text COLLATE "C" NOT NULL UNIQUE,
    workflow text COLLATE "C" NOT NULL,
    inputs text NOT NULL,
    options text NOT NULL,
    error text
);
CREATE INDEX braid_runs_created ON braid_runs (created_at, id);
CREATE INDEX braid_runs_workflow ON braid_runs (workflow, created_at, id);
CREATE INDEX braid_runs_state ON braid_runs (state, created_at, id);
CREATE TABLE braid_nodes (
    run bigint NOT NULL,
    ended_at bigint NOT NULL,
    started_at bigint,
    attempts integer NOT NULL,
    state smallint NOT NULL,
    node text NOT NULL,
    failure text,
    writes text NOT NULL,
    PRIMARY KEY (run, node)
);
CREATE TABLE braid_events (
    run bigint NOT NULL,
    seq bigint NOT NULL,
    at bigint NOT NULL,
    attempt integer,
    kind smallint NOT NULL,
    node text,
    data text,
    PRIMARY KEY (run, seq)
);
"#,
    ),
    // Version 2: a run's events packed in chunks (`chunk.rs`), one row for many events, instead
    // of a row each; run indexes without the 33-byte id (a page of runs sorts its few equal
    // times itself); btree indexes packed full (their keys grow at the right).
    (
        2,
        r#"
ALTER TABLE braid_events RENAME TO braid_events_v1;
ALTER INDEX braid_events_pkey RENAME TO braid_events_v1_pkey;
CREATE TABLE braid_events (
    run bigint NOT NULL,
    first_seq bigint NOT NULL,
    n integer NOT NULL,
    events text NOT NULL,
    PRIMARY KEY (run, first_seq) WITH (fillfactor = 100)
);
INSERT INTO braid_events (run, first_seq, n, events)
SELECT run, min(seq), count(*)::integer,
       string_agg(CASE WHEN data IS NULL THEN json_build_array(at, kind, node, attempt)
                  ELSE json_build_array(at, kind, node, attempt, data::json) END::text || E'\n',
                  '' ORDER BY seq)
FROM braid_events_v1 GROUP BY run, seq / 32;
DROP TABLE braid_events_v1;
DROP INDEX braid_runs_created, braid_runs_workflow, braid_runs_state;
CREATE INDEX braid_runs_created ON braid_runs (created_at) WITH (fillfactor = 100);
CREATE INDEX braid_runs_workflow ON braid_runs (workflow, created_at) WITH (fillfactor = 100);
CREATE INDEX braid_runs_state ON braid_runs (state, created_at) WITH (fillfactor = 100);
ALTER INDEX braid_runs_pkey SET (fillfactor = 100);
ALTER INDEX braid_runs_id_key SET (fillfactor = 100);
ALTER INDEX braid_nodes_pkey SET (fillfactor = 100);
"#,
    ),
    // Version 3: shared work (`docs/scaling.md`). A run may be queued (any replica may claim
    // it), has an owner (the replica that claimed it) and an epoch (its fencing token); a
    // replica's lease is one row, renewed by one statement whatever the number of runs it owns.
    // Runs not queued (`braid run --store`) keep `queued = false` and are never claimed. The
    // partial indexes hold only queued running runs and owned runs.
    (
        3,
        r#"
ALTER TABLE braid_runs
    ADD COLUMN epoch bigint NOT NULL DEFAULT 0,
    ADD COLUMN queued boolean NOT NULL DEFAULT false,
    ADD COLUMN owner text COLLATE "C";
CREATE INDEX braid_runs_queue ON braid_runs (created_at) WHERE queued AND state = 0;
CREATE INDEX braid_runs_owner ON braid_runs (owner) WHERE owner IS NOT NULL;
CREATE TABLE braid_replicas (
    expires_at timestamptz NOT NULL,
    ttl interval NOT NULL,
    id text COLLATE "C" PRIMARY KEY
);
"#,
    ),
];

/// The newest schema version this build knows.
pub(crate) const LATEST: i64 = crate::SCHEMA_VERSION;

const _: () = assert!(MIGRATIONS[MIGRATIONS.len() - 1].0 == LATEST);

/// Checks the schema and applies the migrations it lacks, in one transaction.
pub(super) async fn prepare(client: &mut Client, location: &str) -> Result<(), StoreError> {
    let db = |e: tokio_postgres::Error| conn::error(location, &e);
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    let schema: Option<String> = tx
        .query_one("SELECT current_schema()::text", &[])
        .await
        .map_err(db)?
        .get(0);
    let Some(schema) = schema else {
        return Err(StoreError::Database {
            location: location.to_owned(),
            detail: "no schema of the search_path exists to hold the store; create it, or name one with `options=-c search_path=NAME`".to_owned(),
        });
    };
    let tables: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1",
            &[&schema],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let current = if tables.is_empty() {
        0
    } else if tables.iter().any(|t| t == "braid_meta") {
        let version: Option<String> = tx
            .query_opt(
                "SELECT value FROM braid_meta WHERE key = 'schema_version'",
                &[],
            )
            .await
            .map_err(db)?
            .map(|r| r.get(0));
        match version.and_then(|v| v.parse::<i64>().ok()) {
            Some(v) => v,
            None => {
                return Err(StoreError::NotAStore {
                    location: location.to_owned(),
                    detail: format!("schema `{schema}`: `braid_meta` records no schema version"),
                });
            }
        }
    } else {
        let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        return Err(StoreError::NotAStore {
            location: location.to_owned(),
            detail: format!(
                "schema `{schema}` holds another program's tables: {}",
                shown.join(", ")
            ),
        });
    };
    if current > LATEST {
        return Err(StoreError::NewerVersion {
            location: location.to_owned(),
            found: current,
            supported: LATEST,
        });
    }
    if current == LATEST {
        return tx.rollback().await.map_err(db); // nothing to write
    }
    let now = crate::now_micros().to_string();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO braid_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&format!("migration.{version}"), &now],
        )
        .await
        .map_err(db)?;
    }
    tx.execute(
        "INSERT INTO braid_meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&LATEST.to_string()],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)
}
