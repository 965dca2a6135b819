//! The SQLite store: the conformance suite, many writers on one file, its size, bad files and
//! migrations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use braid_store::{
    Entry, EventKind, NodeState, Reopen, RunState, SCHEMA_VERSION, SqliteOptions, SqliteStore,
    Store, StoreError, Synchronous,
};
use serde_json::json;

use crate::common::{definition, event, fingerprint, new_run, node, write_run};

fn path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("runs.db")
}

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default())
        .await
        .unwrap()
}

/// Rows in each of the store's tables: definitions, runs, nodes, events.
fn counts(path: &Path) -> [i64; 4] {
    let conn = rusqlite::Connection::open(path).unwrap();
    [
        "braid_definitions",
        "braid_runs",
        "braid_nodes",
        "braid_events",
    ]
    .map(|t| {
        conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    })
}

#[tokio::test]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    crate::conformance::suite(Arc::new(open(&path(&dir)).await)).await;
}

#[tokio::test]
async fn conformance_by_url_with_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?sync=full", path(&dir).display());
    let store = braid_store::open(&url).await.unwrap();
    assert_eq!(store.location(), path(&dir).display().to_string());
    crate::conformance::suite(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_runs_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(open(&path(&dir)).await);
    let fp = fingerprint(1);
    store.put_definition(&definition(&fp)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let store = Arc::clone(&store);
        let fp = fp.clone();
        tasks.spawn(async move { write_run(&*store, &format!("run-{i:04}"), &fp, i).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap(); // write_run unwraps every result: any error fails here
    }
    assert_eq!(counts(&path(&dir)), [1, 1000, 7000, 16_000]);
    for i in (0..1000).step_by(37) {
        let run = store.run(&format!("run-{i:04}")).await.unwrap().unwrap();
        assert_eq!(run.state, RunState::Succeeded);
        assert_eq!(run.next_seq, 16);
        assert_eq!(store.nodes(&run.id).await.unwrap().len(), 7);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<dyn Store> = Arc::new(open(&path(&dir)).await);
    let b: Arc<dyn Store> = Arc::new(open(&path(&dir)).await);
    let fp = fingerprint(1);
    a.put_definition(&definition(&fp)).await.unwrap();
    b.put_definition(&definition(&fp)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let fp = fp.clone();
        tasks.spawn(async move { write_run(&*store, &format!("run-{i}"), &fp, i).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(counts(&path(&dir)), [1, 200, 1400, 3200]);
    // Each sees the other's writes.
    assert_eq!(a.run("run-1").await.unwrap().unwrap().next_seq, 16);
    assert_eq!(b.run("run-0").await.unwrap().unwrap().next_seq, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_per_run_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = path(&dir);
    let fp = fingerprint(1);
    {
        let store = open(&path).await;
        store.put_definition(&definition(&fp)).await.unwrap();
    }
    let vacuumed_size = |path: &Path| {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
            .unwrap();
        drop(conn);
        std::fs::metadata(path).unwrap().len()
    };
    let empty = vacuumed_size(&path);
    const RUNS: usize = 500;
    let store: Arc<dyn Store> = Arc::new(open(&path).await);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let store = Arc::clone(&store);
        let fp = fp.clone();
        tasks.spawn(async move {
            let mut bytes = 0;
            for i in (worker..RUNS).step_by(8) {
                bytes += write_run(&*store, &format!("{i:032x}"), &fp, i).await;
            }
            bytes
        });
    }
    let mut writes = 0;
    while let Some(done) = tasks.join_next().await {
        writes += done.unwrap();
    }
    drop(store);
    let unvacuumed = std::fs::metadata(&path).unwrap().len();
    let full = vacuumed_size(&path);
    let per_run = (full - empty) as f64 / RUNS as f64;
    let writes_per_run = writes as f64 / RUNS as f64;
    let budget = 1.1 * writes_per_run + 2048.0;
    eprintln!(
        "sqlite storage: {per_run:.0} bytes per run after VACUUM ({:.0} before), writes {writes_per_run:.0} bytes per run, budget {budget:.0}",
        (unvacuumed - empty) as f64 / RUNS as f64
    );
    assert!(per_run <= budget, "{per_run} > {budget}");
}

#[tokio::test]
async fn a_text_file_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "shopping: eggs, flour\n").unwrap();
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"shopping: eggs, flour\n");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no -wal or -shm"
    );
}

#[tokio::test]
async fn another_programs_database_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = braid_store::open(&format!("sqlite:{}", path.display()))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn a_newer_store_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = path(&dir);
    {
        let store = open(&path).await;
        store
            .put_definition(&definition(&fingerprint(1)))
            .await
            .unwrap();
    }
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE braid_meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path, SqliteOptions::with_sync(Synchronous::Full))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NewerVersion {
            location: path.display().to_string(),
            found: 99,
            supported: SCHEMA_VERSION
        }
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn migrations_are_recorded_and_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = path(&dir);
    let meta = |path: &Path| -> (Vec<(String, String)>, i32) {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT key, value FROM braid_meta ORDER BY key")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        (rows, app)
    };
    {
        let store = open(&path).await;
        store
            .put_definition(&definition(&fingerprint(1)))
            .await
            .unwrap();
        store
            .create_run(&new_run("kept", &fingerprint(1), 1))
            .await
            .unwrap();
    }
    let (first, app) = meta(&path);
    assert_eq!(app, 0x4272_6169);
    let version = first.iter().find(|(k, _)| k == "schema_version").unwrap();
    assert_eq!(version.1, SCHEMA_VERSION.to_string());
    let applied: Vec<&str> = first
        .iter()
        .filter(|(k, _)| k.starts_with("migration."))
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(applied.len() as i64, SCHEMA_VERSION);
    let store = open(&path).await;
    assert!(store.run("kept").await.unwrap().is_some());
    drop(store);
    assert_eq!(meta(&path).0, first, "reopening applied nothing again");
}

#[tokio::test]
async fn refused_writes_leave_the_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = path(&dir);
    let store = open(&path).await;
    let fp = fingerprint(1);
    store.put_definition(&definition(&fp)).await.unwrap();
    write_run(&store, "done", &fp, 1).await;
    let before = counts(&path);
    let stored = store.run("done").await.unwrap();
    let record = node("x", NodeState::Succeeded, json!({ "k": 1 }));
    let unknown = store
        .append(vec![Entry::Node {
            run: "ghost".into(),
            record: record.clone(),
        }])
        .await;
    assert!(matches!(unknown, Err(StoreError::UnknownRun { .. })));
    let out_of_sequence = store
        .append(vec![
            Entry::Node {
                run: "done".into(),
                record,
            },
            Entry::Events {
                run: "done".into(),
                events: vec![event(15, EventKind::RunStarted, None)],
            },
        ])
        .await;
    assert!(matches!(out_of_sequence, Err(StoreError::Conflict(_))));
    let wrong_state = store
        .reopen(&Reopen {
            run: "done".into(),
            from: vec![RunState::Failed, RunState::Cancelled],
            reset: vec!["rag".into()],
            at: 9,
            epoch: None,
            take: None,
        })
        .await;
    assert!(matches!(wrong_state, Err(StoreError::Conflict(_))));
    let taken = store.create_run(&new_run("done", &fp, 2)).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))));
    assert_eq!(counts(&path), before);
    assert_eq!(store.run("done").await.unwrap(), stored);
}
