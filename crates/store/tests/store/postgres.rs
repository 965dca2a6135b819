//! The PostgreSQL store, against the server `BRAID_TEST_POSTGRES_URL` names (CI:
//! `postgres://postgres@127.0.0.1:5432/test`). Unset, each test says it was skipped and returns;
//! set, each test must reach the server. Each test makes a schema of its own (the store runs in
//! it through `options=-c search_path=NAME`) and drops it at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use braid_store::{Entry, NodeState, PostgresStore, RunState, SCHEMA_VERSION, Store, StoreError};
use serde_json::json;
use tokio_postgres::{Client, NoTls};

use crate::common::{definition, fingerprint, new_run, node, write_run};

/// A schema of the test's own, with an admin connection beside the store's.
pub(crate) struct Schema {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) admin: Client,
}

impl Schema {
    /// A fresh schema, or `None` (said on stderr) when no server is configured.
    pub(crate) async fn new(test: &str) -> Option<Schema> {
        let Ok(base) = std::env::var("BRAID_TEST_POSTGRES_URL") else {
            eprintln!("skipped {test}: BRAID_TEST_POSTGRES_URL is not set");
            return None;
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "braid_test_{}_{}_{}",
            test,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (admin, connection) = tokio_postgres::connect(&base, NoTls)
            .await
            .unwrap_or_else(|e| panic!("BRAID_TEST_POSTGRES_URL is set but unreachable: {e}"));
        tokio::spawn(connection);
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}application_name={name}&options=-c%20search_path%3D{name}");
        Some(Schema { name, url, admin })
    }

    pub(crate) async fn open(&self) -> PostgresStore {
        PostgresStore::connect(&self.url).await.unwrap()
    }

    /// Definitions, runs, nodes and events in the store (events are packed several to a row).
    async fn counts(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for (t, count) in [
            ("braid_definitions", "count(*)"),
            ("braid_runs", "count(*)"),
            ("braid_nodes", "count(*)"),
            ("braid_events", "coalesce(sum(n), 0)::bigint"),
        ] {
            let row = self
                .admin
                .query_one(&format!("SELECT {count} FROM {}.{t}", self.name), &[])
                .await
                .unwrap();
            out.push(row.get(0));
        }
        out
    }

    /// The schema's tables.
    async fn tables(&self) -> Vec<String> {
        self.admin
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
                &[&self.name],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub(crate) async fn drop(self) {
        self.admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn conformance() {
    let Some(schema) = Schema::new("conformance").await else {
        return;
    };
    crate::conformance::suite(Arc::new(schema.open().await)).await;
    schema.drop().await;
}

#[tokio::test]
async fn conformance_by_url() {
    let Some(schema) = Schema::new("by_url").await else {
        return;
    };
    let store = braid_store::open(&schema.url).await.unwrap();
    crate::conformance::suite(store).await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs() {
    let Some(schema) = Schema::new("concurrent").await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(schema.open().await);
    let other: Arc<dyn Store> = Arc::new(schema.open().await);
    let fp = fingerprint(1);
    store.put_definition(&definition(&fp)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let store = Arc::clone(if i % 3 == 0 { &other } else { &store });
        let fp = fp.clone();
        tasks.spawn(async move { write_run(&*store, &format!("run-{i}"), &fp, i).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(schema.counts().await, [1, 300, 2100, 4800]);
    drop((store, other));
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_per_run() {
    let Some(schema) = Schema::new("storage").await else {
        return;
    };
    let fp = fingerprint(1);
    let store: Arc<dyn Store> = Arc::new(schema.open().await);
    store.put_definition(&definition(&fp)).await.unwrap();
    let size = || async {
        let tables = [
            "braid_definitions",
            "braid_runs",
            "braid_nodes",
            "braid_events",
        ];
        let mut total = 0i64;
        for t in tables {
            schema
                .admin
                .batch_execute(&format!("VACUUM FULL {}.{t}", schema.name))
                .await
                .unwrap();
            let row = schema
                .admin
                .query_one(
                    &format!("SELECT pg_total_relation_size('{}.{t}')", schema.name),
                    &[],
                )
                .await
                .unwrap();
            total += row.get::<_, i64>(0);
        }
        total
    };
    let empty = size().await;
    const RUNS: usize = 500;
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
    let full = size().await;
    for t in ["braid_runs", "braid_nodes", "braid_events"] {
        let row = schema
            .admin
            .query_one(
                &format!(
                    "SELECT pg_table_size('{0}.{t}'), pg_indexes_size('{0}.{t}')",
                    schema.name
                ),
                &[],
            )
            .await
            .unwrap();
        let (heap, indexes): (i64, i64) = (row.get(0), row.get(1));
        eprintln!(
            "postgres storage: {t}: {} bytes of rows, {} of indexes per run",
            heap / RUNS as i64,
            indexes / RUNS as i64
        );
    }
    let per_run = (full - empty) as f64 / RUNS as f64;
    let writes_per_run = writes as f64 / RUNS as f64;
    let budget = 1.1 * writes_per_run + 2048.0;
    eprintln!(
        "postgres storage: {per_run:.0} bytes per run after VACUUM FULL, writes {writes_per_run:.0} bytes per run, budget {budget:.0}"
    );
    // The same budget as SQLite's (docs/durability.md): PostgreSQL's rows cost more (a 28-byte
    // header and line pointer, a btree entry each), which packing a run's events in chunks pays.
    assert!(
        per_run <= budget,
        "{per_run} bytes per run, budget {budget:.0}"
    );
    drop(store);
    schema.drop().await;
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    if std::env::var("BRAID_TEST_POSTGRES_URL").is_err() {
        eprintln!("skipped a_closed_port_is_unreachable: BRAID_TEST_POSTGRES_URL is not set");
        return;
    }
    let started = std::time::Instant::now();
    let err = braid_store::open("postgres://braid:hunter2@127.0.0.1:1/db")
        .await
        .err()
        .unwrap();
    match &err {
        StoreError::Unreachable { location, .. } => {
            assert_eq!(location, "postgres://braid@127.0.0.1:1/db");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("hunter2"));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn the_password_is_never_shown() {
    let Some(schema) = Schema::new("password").await else {
        return;
    };
    // Trust authentication ignores the password; the store must not repeat it.
    let url = schema
        .url
        .replacen("postgres://postgres@", "postgres://postgres:s3cret@", 1);
    let store = PostgresStore::connect(&url).await.unwrap();
    assert!(!store.location().contains("s3cret"), "{}", store.location());
    let err = store
        .append(vec![Entry::End {
            run: "ghost".into(),
            state: RunState::Failed,
            error: None,
            at: 1,
        }])
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("s3cret"));
    drop(store);
    schema.drop().await;
}

#[tokio::test]
async fn another_programs_schema_is_not_a_store() {
    let Some(schema) = Schema::new("foreign").await else {
        return;
    };
    schema
        .admin
        .batch_execute(&format!(
            "CREATE TABLE {0}.users (id int PRIMARY KEY, name text); INSERT INTO {0}.users VALUES (1, 'ada')",
            schema.name
        ))
        .await
        .unwrap();
    let err = PostgresStore::connect(&schema.url).await.unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert_eq!(schema.tables().await, ["users"]);
    schema.drop().await;
}

#[tokio::test]
async fn a_newer_store_is_refused_untouched() {
    let Some(schema) = Schema::new("newer").await else {
        return;
    };
    let store = schema.open().await;
    store
        .put_definition(&definition(&fingerprint(1)))
        .await
        .unwrap();
    drop(store);
    schema
        .admin
        .batch_execute(&format!(
            "UPDATE {}.braid_meta SET value = '{}' WHERE key = 'schema_version'",
            schema.name,
            SCHEMA_VERSION + 1
        ))
        .await
        .unwrap();
    let tables = schema.tables().await;
    let err = PostgresStore::connect(&schema.url).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerVersion {
                found,
                supported: SCHEMA_VERSION,
                ..
            } if found == SCHEMA_VERSION + 1
        ),
        "{err:?}"
    );
    assert_eq!(schema.tables().await, tables);
    assert_eq!(schema.counts().await, [1, 0, 0, 0]);
    schema.drop().await;
}

/// A version-1 store as that version left it (its migration, frozen here): one row per event.
const VERSION_1: &str = r#"
CREATE TABLE braid_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE braid_definitions (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, used_at bigint NOT NULL,
    fingerprint text NOT NULL UNIQUE, workflow text NOT NULL, files text NOT NULL);
CREATE TABLE braid_runs (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, definition bigint NOT NULL,
    created_at bigint NOT NULL, updated_at bigint NOT NULL, ended_at bigint,
    restarts integer NOT NULL, state smallint NOT NULL, id text COLLATE "C" NOT NULL UNIQUE,
    workflow text COLLATE "C" NOT NULL, inputs text NOT NULL, options text NOT NULL, error text);
CREATE INDEX braid_runs_created ON braid_runs (created_at, id);
CREATE INDEX braid_runs_workflow ON braid_runs (workflow, created_at, id);
CREATE INDEX braid_runs_state ON braid_runs (state, created_at, id);
CREATE TABLE braid_nodes (
    run bigint NOT NULL, ended_at bigint NOT NULL, started_at bigint, attempts integer NOT NULL,
    state smallint NOT NULL, node text NOT NULL, failure text, writes text NOT NULL,
    PRIMARY KEY (run, node));
CREATE TABLE braid_events (
    run bigint NOT NULL, seq bigint NOT NULL, at bigint NOT NULL, attempt integer,
    kind smallint NOT NULL, node text, data text, PRIMARY KEY (run, seq));
INSERT INTO braid_meta VALUES ('schema_version', '1'), ('migration.1', '1700000000000000');
INSERT INTO braid_definitions (used_at, fingerprint, workflow, files)
    VALUES (1, repeat('0', 63) || '1', 'mode1', '[["","version: 1"]]');
INSERT INTO braid_runs (definition, created_at, updated_at, restarts, state, id, workflow, inputs, options)
    VALUES (1, 5, 5, 0, 0, 'old', 'mode1', '{}', '{}'), (1, 6, 6, 0, 0, 'quiet', 'mode1', '{}', '{}');
INSERT INTO braid_nodes VALUES (1, 9, 8, 1, 0, 'rag', NULL, '{"rag_results":[]}');
-- 70 events: every kind, with and without a node, an attempt and data (`null` data too).
INSERT INTO braid_events
    SELECT 1, s, 1700000000000000 + s, CASE WHEN s % 3 = 0 THEN 1 END, s % 5,
        CASE WHEN s % 2 = 0 THEN 'node' || s END,
        CASE s % 4 WHEN 0 THEN NULL WHEN 1 THEN '"succeeded"' WHEN 2 THEN 'null'
            ELSE '{"kind":"timeout","message":"a\nb","delay_ms":50}' END
    FROM generate_series(0, 69) AS s;
"#;

/// A version-1 event row: seq, at, attempt, kind, node, data.
type V1Event = (i64, i64, Option<i32>, i16, Option<String>, Option<String>);

#[tokio::test]
async fn a_version_1_store_is_upgraded() {
    let Some(schema) = Schema::new("upgrade").await else {
        return;
    };
    schema
        .admin
        .batch_execute(&format!("SET search_path = {}; {VERSION_1}", schema.name))
        .await
        .unwrap();
    let v1_events: Vec<V1Event> = schema
        .admin
        .query(
            &format!(
                "SELECT seq, at, attempt, kind, node, data FROM {}.braid_events ORDER BY seq",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    let store = schema.open().await;
    let meta: String = schema
        .admin
        .query_one(
            &format!(
                "SELECT value FROM {}.braid_meta WHERE key = 'schema_version'",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(meta, SCHEMA_VERSION.to_string());
    let run = store.run("old").await.unwrap().unwrap();
    assert_eq!(run.next_seq, 70);
    assert_eq!(store.run("quiet").await.unwrap().unwrap().next_seq, 0);
    assert_eq!(store.nodes("old").await.unwrap().len(), 1);
    let events = store.events("old", 0, 0).await.unwrap();
    assert_eq!(events.len(), v1_events.len());
    for (event, (seq, at, attempt, kind, node, data)) in events.iter().zip(&v1_events) {
        assert_eq!(event.seq as i64, *seq);
        assert_eq!(event.at, *at);
        assert_eq!(event.attempt.map(|a| a as i32), *attempt);
        assert_eq!(braid_store::EventKind::ALL[*kind as usize], event.kind);
        assert_eq!(&event.node, node);
        let data: Option<serde_json::Value> =
            data.as_ref().map(|d| serde_json::from_str(d).unwrap());
        assert_eq!(event.data, data, "event {seq}");
    }
    let page = store.events("old", 31, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [31, 32, 33, 34, 35]
    );
    // The upgraded run goes on where it was.
    let gap = store
        .append(vec![Entry::Events {
            run: "old".into(),
            events: vec![crate::common::event(
                71,
                braid_store::EventKind::NodeStarted,
                Some("x"),
            )],
        }])
        .await;
    assert!(matches!(gap, Err(StoreError::Conflict(_))), "{gap:?}");
    store
        .append(vec![Entry::Events {
            run: "old".into(),
            events: vec![crate::common::event(
                70,
                braid_store::EventKind::NodeStarted,
                Some("x"),
            )],
        }])
        .await
        .unwrap();
    assert_eq!(store.run("old").await.unwrap().unwrap().next_seq, 71);
    drop(store);
    schema.drop().await;
}

#[tokio::test]
async fn migrations_are_recorded_and_applied_once() {
    let Some(schema) = Schema::new("migrations").await else {
        return;
    };
    let meta = || async {
        schema
            .admin
            .query(
                &format!(
                    "SELECT key, value FROM {}.braid_meta ORDER BY key",
                    schema.name
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    };
    let store = schema.open().await;
    store
        .put_definition(&definition(&fingerprint(1)))
        .await
        .unwrap();
    drop(store);
    let first = meta().await;
    assert!(first.contains(&("schema_version".to_owned(), SCHEMA_VERSION.to_string())));
    let store = schema.open().await;
    assert!(store.definition(&fingerprint(1)).await.unwrap().is_some());
    drop(store);
    assert_eq!(meta().await, first);
    schema.drop().await;
}

#[tokio::test]
async fn refused_writes_change_nothing() {
    let Some(schema) = Schema::new("refused").await else {
        return;
    };
    let store = schema.open().await;
    let fp = fingerprint(1);
    store.put_definition(&definition(&fp)).await.unwrap();
    write_run(&store, "done", &fp, 1).await;
    let before = schema.counts().await;
    let unknown = store
        .append(vec![Entry::Node {
            run: "ghost".into(),
            record: node("x", NodeState::Succeeded, json!({})),
        }])
        .await;
    assert!(matches!(unknown, Err(StoreError::UnknownRun { .. })));
    let taken = store.create_run(&new_run("done", &fp, 2)).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))));
    assert_eq!(schema.counts().await, before);
    drop(store);
    schema.drop().await;
}

#[tokio::test]
async fn a_server_gone_mid_write_fails_it_then_recovers() {
    let Some(schema) = Schema::new("gone").await else {
        return;
    };
    let store = Arc::new(schema.open().await);
    let fp = fingerprint(1);
    store.put_definition(&definition(&fp)).await.unwrap();
    store.create_run(&new_run("r", &fp, 1)).await.unwrap();
    // Hold the run's row, so the store's next append waits inside its transaction.
    schema
        .admin
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM {}.braid_runs WHERE id = 'r' FOR UPDATE",
            schema.name
        ))
        .await
        .unwrap();
    let waiting = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .append(vec![Entry::Node {
                    run: "r".into(),
                    record: node("a", NodeState::Succeeded, json!({})),
                }])
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Cut every connection of the store, as a server restart would.
    let cut = schema
        .admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&schema.name],
        )
        .await
        .unwrap();
    assert!(!cut.is_empty());
    let lost = tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
        .await
        .expect("the append hung")
        .unwrap();
    assert!(
        matches!(
            lost,
            Err(StoreError::Unreachable { .. } | StoreError::Database { .. })
        ),
        "{lost:?}"
    );
    schema.admin.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        store.nodes("r").await.unwrap().is_empty(),
        "nothing of it was kept"
    );
    // The next calls reconnect.
    store
        .append(vec![Entry::Node {
            run: "r".into(),
            record: node("a", NodeState::Succeeded, json!({})),
        }])
        .await
        .unwrap();
    assert_eq!(store.nodes("r").await.unwrap().len(), 1);
    drop(store);
    schema.drop().await;
}
