//! The SQLite store's schema as versioned data, and the checks made before anything is written:
//! a file that is not SQLite, a SQLite database of another program, or a Braid store newer than
//! this build is refused with the file untouched. Migrations run in one `BEGIN IMMEDIATE`
//! transaction, so two processes opening a new file at once apply them once.
//!
//! Layout, chosen for size (see `docs/durability.md`): a run's text id is stored once, in
//! `braid_runs`; nodes and events refer to it by its integer key. Events are a `WITHOUT ROWID`
//! table keyed `(run, seq)` (small rows, no second index); node records keep a rowid, because
//! their writes can be kilobytes and a rowid table keeps up to a page of a row in place where a
//! `WITHOUT ROWID` table spills past a quarter page. States and kinds are small integers
//! (`codec`), JSON is text.

use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::StoreError;

/// `PRAGMA application_id` of a Braid store: "Brai".
pub(crate) const APPLICATION_ID: i32 = 0x4272_6169;

/// One step of the schema.
struct Migration {
    /// The version the store is at once it is applied.
    version: i64,
    /// Its statements.
    sql: &'static str,
}

/// Every migration, oldest first. Never edit one that has shipped: add the next.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: "
CREATE TABLE braid_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE braid_definitions (
    key INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    workflow TEXT NOT NULL,
    used_at INTEGER NOT NULL,
    files TEXT NOT NULL
);
CREATE TABLE braid_runs (
    key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    definition INTEGER NOT NULL,
    workflow TEXT NOT NULL,
    state INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    ended_at INTEGER,
    restarts INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    options TEXT NOT NULL,
    error TEXT
);
CREATE INDEX braid_runs_created ON braid_runs (created_at, id);
CREATE INDEX braid_runs_workflow ON braid_runs (workflow, created_at, id);
CREATE INDEX braid_runs_state ON braid_runs (state, created_at, id);
CREATE TABLE braid_nodes (
    key INTEGER PRIMARY KEY,
    run INTEGER NOT NULL,
    node TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER NOT NULL,
    failure TEXT,
    writes TEXT NOT NULL,
    UNIQUE (run, node)
);
CREATE TABLE braid_events (
    run INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    node TEXT,
    attempt INTEGER,
    data TEXT,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
",
    },
    // Version 2 changed the PostgreSQL store only (events packed in chunks, narrower run
    // indexes); a SQLite store records the version and is otherwise as it was.
    Migration {
        version: 2,
        sql: "",
    },
    // Version 3: shared work, as in PostgreSQL (`docs/scaling.md`): a run's queue flag, owner
    // and epoch, and a row per replica. Times are this machine's clock: one node.
    Migration {
        version: 3,
        sql: "
ALTER TABLE braid_runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE braid_runs ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;
ALTER TABLE braid_runs ADD COLUMN owner TEXT;
CREATE INDEX braid_runs_queue ON braid_runs (created_at) WHERE queued AND state = 0;
CREATE INDEX braid_runs_owner ON braid_runs (owner) WHERE owner IS NOT NULL;
CREATE TABLE braid_replicas (
    id TEXT PRIMARY KEY,
    ttl INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
",
    },
];

/// The newest schema version this build knows.
pub(crate) const LATEST: i64 = crate::SCHEMA_VERSION;

const _: () = assert!(MIGRATIONS[MIGRATIONS.len() - 1].version == LATEST);

/// What a database holds, as far as opening it is concerned.
enum Found {
    /// Nothing: a new store.
    Empty,
    /// A Braid store at this version.
    Braid(i64),
}

/// Refuses a file that exists, is not empty, and does not start with SQLite's header, before
/// SQLite opens it (SQLite would not write to it, but this says what it is).
pub(super) fn sniff(path: &Path, location: &str) -> Result<(), StoreError> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(()); // absent (created) or unreadable (SQLite says why)
    };
    let mut header = [0u8; 16];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(_) => return Ok(()),
        }
    }
    if read == 0 || &header[..read] == b"SQLite format 3\0" {
        return Ok(());
    }
    Err(StoreError::NotAStore {
        location: location.to_owned(),
        detail: "the file is not a SQLite database".to_owned(),
    })
}

/// Reads what `conn` holds, writing nothing.
fn inspect(conn: &Connection, location: &str) -> Result<Found, StoreError> {
    let not_a_store = |detail: String| StoreError::NotAStore {
        location: location.to_owned(),
        detail,
    };
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| opening(location, &e))?;
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .map_err(|e| opening(location, &e))?;
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(Iterator::collect)
        .map_err(|e| opening(location, &e))?;
    if tables.is_empty() && app_id == 0 {
        return Ok(Found::Empty);
    }
    if app_id != APPLICATION_ID && app_id != 0 {
        return Err(not_a_store(format!(
            "a SQLite database with application id {app_id:#x}, not Braid's {APPLICATION_ID:#x}"
        )));
    }
    if !tables.iter().any(|t| t == "braid_meta") {
        let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        return Err(not_a_store(format!(
            "a SQLite database of another program, with tables {}",
            shown.join(", ")
        )));
    }
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM braid_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| opening(location, &e))?;
    let Some(version) = version.and_then(|v| v.parse::<i64>().ok()) else {
        return Err(not_a_store(
            "`braid_meta` records no schema version".to_owned(),
        ));
    };
    if version > LATEST {
        return Err(StoreError::NewerVersion {
            location: location.to_owned(),
            found: version,
            supported: LATEST,
        });
    }
    Ok(Found::Braid(version))
}

/// Checks that `conn` is a Braid store this build can use (or empty) without writing, then
/// switches it to WAL and applies the migrations it lacks, in one transaction.
pub(super) fn prepare(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    inspect(conn, location)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| opening(location, &e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database {
            location: location.to_owned(),
            detail: format!(
                "the file system refused WAL mode (journal mode is `{mode}`); put the store on a local disk"
            ),
        });
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| opening(location, &e))?;
    // Again, under the write lock: another process may have created or upgraded it meanwhile.
    let current = match inspect(&tx, location)? {
        Found::Empty => 0,
        Found::Braid(version) => version,
    };
    if current == LATEST {
        return Ok(()); // dropping the transaction rolls back what was never written
    }
    let now = crate::now_micros();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(migration.sql)
            .map_err(|e| opening(location, &e))?;
        tx.execute(
            "INSERT OR REPLACE INTO braid_meta (key, value) VALUES (?1, ?2)",
            (format!("migration.{}", migration.version), now.to_string()),
        )
        .map_err(|e| opening(location, &e))?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO braid_meta (key, value) VALUES ('schema_version', ?1)",
        [LATEST.to_string()],
    )
    .map_err(|e| opening(location, &e))?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(|e| opening(location, &e))?;
    tx.commit().map_err(|e| opening(location, &e))
}

/// An error while opening: the file could not be opened or read as a database.
pub(super) fn opening(location: &str, e: &rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => StoreError::NotAStore {
            location: location.to_owned(),
            detail: "the file is not a SQLite database".to_owned(),
        },
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::PermissionDenied) => {
            StoreError::Unreachable {
                location: location.to_owned(),
                detail: e.to_string(),
            }
        }
        _ => StoreError::Database {
            location: location.to_owned(),
            detail: e.to_string(),
        },
    }
}
