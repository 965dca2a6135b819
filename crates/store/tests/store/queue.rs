//! Shared work on the real PostgreSQL (`docs/scaling.md`): concurrent claimers on connections
//! of their own, leases kept by one row per replica, wake-ups across handles, and claims while
//! connections are killed. Skipped, saying so, when `BRAID_TEST_POSTGRES_URL` is unset.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use braid_store::{Claim, Store, StoreError};

use crate::common::{definition, fingerprint, new_run};
use crate::postgres::Schema;

const LONG: Duration = Duration::from_secs(60);

/// A store with `n` queued runs `q0000`…, oldest first.
async fn queued(schema: &Schema, n: usize) -> Arc<braid_store::PostgresStore> {
    let store = Arc::new(schema.open().await);
    let fp = fingerprint(1);
    store.put_definition(&definition(&fp)).await.unwrap();
    let mut submits = tokio::task::JoinSet::new();
    for i in 0..n {
        let store = Arc::clone(&store);
        let fp = fp.clone();
        submits.spawn(async move {
            store
                .submit(&new_run(&format!("q{i:04}"), &fp, i as i64))
                .await
        });
    }
    while let Some(done) = submits.join_next().await {
        done.unwrap().unwrap();
    }
    store
}

/// Claims until a claim that succeeds finds nothing: every claim answered, and the errors.
async fn claim_all(store: Arc<dyn Store>, replica: String, max: usize) -> (Vec<Claim>, usize) {
    let mut claims = Vec::new();
    let mut errors = 0;
    loop {
        match store.claim(&replica, max, LONG).await {
            Ok(got) if got.is_empty() => return (claims, errors),
            Ok(got) => {
                assert!(got.len() <= max, "a claim took more than `max`");
                claims.extend(got);
            }
            Err(StoreError::Unreachable { .. } | StoreError::Database { .. }) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_take_each_run_once() {
    let Some(schema) = Schema::new("claimers").await else {
        return;
    };
    let _store = queued(&schema, 500).await;
    let mut claimers = tokio::task::JoinSet::new();
    for r in 0..8 {
        // A store each: a connection each, as separate replicas have.
        let store: Arc<dyn Store> = Arc::new(schema.open().await);
        claimers.spawn(claim_all(store, format!("replica-{r}"), 7));
    }
    let mut seen: HashMap<String, u64> = HashMap::new();
    while let Some(done) = claimers.join_next().await {
        let (claims, errors) = done.unwrap();
        assert_eq!(errors, 0);
        for c in claims {
            assert_eq!(c.epoch, 1);
            assert!(
                seen.insert(c.run.clone(), c.epoch).is_none(),
                "{} claimed twice",
                c.run
            );
        }
    }
    assert_eq!(seen.len(), 500, "every run claimed exactly once");
    drop(_store);
    schema.drop().await;
}

#[tokio::test]
async fn a_heartbeat_writes_one_row_whatever_the_runs() {
    let Some(schema) = Schema::new("heartbeat").await else {
        return;
    };
    let store = queued(&schema, 200).await;
    assert_eq!(store.claim("a", 200, LONG).await.unwrap().len(), 200);
    // A row's `xmin` is the transaction that last wrote it.
    let versions = |table: &'static str| {
        let sql = format!("SELECT xmin::text FROM {}.{table} ORDER BY 1", schema.name);
        let admin = &schema.admin;
        async move {
            admin
                .query(&sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    let (runs, replicas) = (
        versions("braid_runs").await,
        versions("braid_replicas").await,
    );
    assert!(store.heartbeat("a").await.unwrap().is_some());
    assert_eq!(versions("braid_runs").await, runs, "no run row is written");
    assert_ne!(
        versions("braid_replicas").await,
        replicas,
        "the replica's row is"
    );
    // And with pg_stat_statements, if the server has it: one statement per heartbeat.
    let has = schema
        .admin
        .query_opt(
            "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
            &[],
        )
        .await
        .unwrap()
        .is_some();
    if has {
        schema
            .admin
            .batch_execute("SELECT pg_stat_statements_reset()")
            .await
            .unwrap();
        for _ in 0..5 {
            store.heartbeat("a").await.unwrap();
        }
        let calls: i64 = schema
            .admin
            .query_one(
                "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query LIKE '%braid_replicas%' OR query LIKE '%braid_runs%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(calls, 5);
    } else {
        eprintln!("pg_stat_statements is not installed: counted by row versions only");
    }
    drop(store);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_wakes_a_claimer_of_another_handle() {
    let Some(schema) = Schema::new("notify").await else {
        return;
    };
    let submitter = queued(&schema, 0).await;
    let claimer: Arc<dyn Store> = Arc::new(schema.open().await);
    // Listening (the first wait opens the connection), nothing queued yet.
    assert!(
        !claimer
            .wait_for_work(Duration::from_millis(50))
            .await
            .unwrap()
    );
    let waiting = {
        let claimer = Arc::clone(&claimer);
        tokio::spawn(async move { claimer.wait_for_work(Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    submitter
        .submit(&new_run("woken", &fingerprint(1), 1))
        .await
        .unwrap();
    // Bounded: woken by the notification, long before the 30 s poll.
    assert!(waiting.await.unwrap().unwrap(), "the notification woke it");
    assert_eq!(
        claimer.claim("c", 10, LONG).await.unwrap(),
        vec![Claim {
            run: "woken".into(),
            epoch: 1
        }]
    );
    drop((submitter, claimer));
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_lose_no_run() {
    let Some(schema) = Schema::new("killed").await else {
        return;
    };
    let store = queued(&schema, 300).await;
    let mut claimers = tokio::task::JoinSet::new();
    for r in 0..4 {
        let store: Arc<dyn Store> = Arc::new(schema.open().await);
        claimers.spawn(async move {
            // Slow claimers, so the kills land among their claims.
            let replica = format!("replica-{r}");
            let mut claims = Vec::new();
            let mut errors = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match store.claim(&replica, 3, LONG).await {
                    Ok(got) if got.is_empty() => return (replica, claims, errors),
                    Ok(got) => claims.extend(got),
                    Err(StoreError::Unreachable { .. } | StoreError::Database { .. }) => {
                        errors += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        schema
            .admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&schema.name],
            )
            .await
            .unwrap();
    }
    let mut answered: HashMap<String, String> = HashMap::new();
    let mut errors = 0;
    while let Some(done) = claimers.join_next().await {
        let (replica, claims, e) = done.unwrap();
        errors += e;
        for c in claims {
            assert!(
                answered.insert(c.run, replica.clone()).is_none(),
                "claimed twice"
            );
        }
    }
    eprintln!("{errors} claims failed while connections were killed");
    // Every run is owned by exactly one replica; a claim whose answer was lost with its
    // connection left its runs owned by that replica, which hands them back with `release`.
    let owners: HashMap<String, Option<String>> = schema
        .admin
        .query(
            &format!("SELECT id, owner FROM {}.braid_runs", schema.name),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(owners.len(), 300);
    for (run, replica) in &answered {
        assert_eq!(owners[run].as_ref(), Some(replica), "{run}");
    }
    let unanswered: HashSet<&String> = owners
        .iter()
        .filter(|(run, _)| !answered.contains_key(*run))
        .map(|(run, _)| run)
        .collect();
    assert!(
        unanswered.iter().all(|run| owners[*run].is_some()),
        "no run is left unowned"
    );
    let mut handed_back = 0;
    if !unanswered.is_empty() {
        for replica in owners.values().flatten().collect::<HashSet<_>>() {
            handed_back += store.release(replica).await.unwrap();
        }
        let again = store.claim("recovery", 1_000, LONG).await.unwrap();
        assert_eq!(again.len() as u64, handed_back);
    }
    drop(store);
    schema.drop().await;
}
