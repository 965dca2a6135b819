//! `append` latency (p50, p99) and throughput under 1 and 64 concurrent writers, for the SQLite
//! store (default and `sync=full`) and, when `BRAID_TEST_POSTGRES_URL` is set, PostgreSQL (in a
//! schema of its own, dropped after).
//!
//! ```sh
//! cargo run --release -p braid-store --example append_latency
//! BRAID_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p braid-store --example append_latency
//! ```
//!
//! Each writer appends to a run of its own, one batch at a time (a node record and its finish
//! event, as the runtime does when a node ends), and times each call.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_store::{
    Definition, DefinitionFile, Entry, EventKind, EventRecord, NewRun, NodeRecord, NodeState,
    StoreHandle,
};
use serde_json::json;

/// Appends per writer.
const APPENDS: usize = 200;

fn batch(run: &str, seq: u64) -> Vec<Entry> {
    let mut writes = serde_json::Map::new();
    writes.insert("response".into(), json!("x".repeat(300)));
    vec![
        Entry::Node {
            run: run.to_owned(),
            record: NodeRecord {
                node: format!("n{seq}"),
                state: NodeState::Succeeded,
                attempts: 1,
                started_at: Some(1),
                ended_at: 2,
                failure: None,
                writes,
            },
        },
        Entry::Events {
            run: run.to_owned(),
            events: vec![EventRecord {
                seq,
                at: 3,
                kind: EventKind::NodeFinished,
                node: Some(format!("n{seq}")),
                attempt: Some(1),
                data: Some(json!({ "status": "succeeded" })),
            }],
        },
    ]
}

async fn measure(store: StoreHandle, label: &str, writers: usize) {
    let fp = format!("{:064x}", 1);
    store
        .put_definition(&Definition {
            fingerprint: fp.clone(),
            workflow: "bench".into(),
            files: vec![DefinitionFile {
                key: String::new(),
                text: "version: 1".into(),
            }],
        })
        .await
        .unwrap();
    let tag = braid_store::now_micros();
    for w in 0..writers {
        store
            .create_run(&NewRun {
                id: format!("{tag}-{writers}-{w}"),
                workflow: "bench".into(),
                fingerprint: fp.clone(),
                inputs: json!({}),
                options: json!({}),
                created_at: tag,
            })
            .await
            .unwrap();
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        let run = format!("{tag}-{writers}-{w}");
        tasks.spawn(async move {
            let mut times = Vec::with_capacity(APPENDS);
            for seq in 0..APPENDS as u64 {
                let t = Instant::now();
                store.append(batch(&run, seq)).await.unwrap();
                times.push(t.elapsed());
            }
            times
        });
    }
    let mut times: Vec<Duration> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        times.extend(done.unwrap());
    }
    let elapsed = started.elapsed();
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{label:<22} {writers:>3} writers: p50 {:>8.1?}  p99 {:>8.1?}  {:>7.0} appends/s",
        pct(0.50),
        pct(0.99),
        times.len() as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    for (label, query) in [
        ("sqlite (sync=normal)", ""),
        ("sqlite (sync=full)", "?sync=full"),
    ] {
        let url = format!(
            "sqlite:{}{query}",
            dir.path().join(format!("{}.db", query.len())).display()
        );
        let store = braid_store::open(&url).await.unwrap();
        for writers in [1, 64] {
            measure(Arc::clone(&store), label, writers).await;
        }
    }
    let Ok(base) = std::env::var("BRAID_TEST_POSTGRES_URL") else {
        println!("postgres: skipped (BRAID_TEST_POSTGRES_URL is not set)");
        return;
    };
    let schema = format!("braid_bench_{}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = braid_store::open(&format!("{base}{sep}options=-c%20search_path%3D{schema}"))
        .await
        .unwrap();
    for writers in [1, 64] {
        measure(Arc::clone(&store), "postgres", writers).await;
    }
    drop(store);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    driver.abort();
}
