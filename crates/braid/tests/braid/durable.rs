//! Durable runs through the facade: a run interrupted at a random moment (its future dropped, as
//! a process that dies drops it) and resumed from its store ends as an uninterrupted run does,
//! and every node whose end was recorded before the interruption ran exactly once in all.
//! Against the memory store (many cases) and a SQLite file (fewer: real I/O); and PostgreSQL when
//! `BRAID_TEST_POSTGRES_URL` is set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::IntoFuture as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid::durable::{
    BoxFuture, Claim, Definition, Durable, DurableError, Entry, EventKind, EventRecord, NewRun,
    NodeRecord, Reopen, RunFilter, RunRecord, RunState, Store, StoreError, StoreHandle, now_micros,
};
use braid::{Engine, Error, ExecutionMode, NodeContext, RunOptions, RunStatus};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::json;

/// Each node's executions, by name.
#[derive(Default)]
struct Counts(Mutex<BTreeMap<String, u32>>);

impl Counts {
    fn get(&self) -> BTreeMap<String, u32> {
        self.0.lock().unwrap().clone()
    }
}

/// An engine whose kind `count` counts its executions, sleeps `latency[name]` ms (virtual) and
/// appends its name to `log` and its number to `total`.
fn engine(latency: Arc<BTreeMap<String, u64>>, counts: Arc<Counts>) -> Engine {
    Engine::builder()
        .handler("count", move |ctx: NodeContext| {
            let name = ctx.node().to_owned();
            *counts.0.lock().unwrap().entry(name.clone()).or_default() += 1;
            let ms = latency.get(&name).copied().unwrap_or(0);
            async move {
                if ms > 0 {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                let n: u64 = name[1..].parse().unwrap();
                Ok(json!({ "log": [name], "total": n }))
            }
        })
        .build()
}

#[derive(Debug, Clone)]
struct Dag {
    needs: Vec<Vec<usize>>,
    latency: Vec<u64>,
}

fn dag(max: usize) -> impl Strategy<Value = Dag> {
    (1usize..=max).prop_flat_map(|n| {
        (
            proptest::collection::vec(proptest::collection::vec(any::<Index>(), 0..=3), n),
            proptest::collection::vec((0u64..=20).prop_map(|t| t * 10), n),
        )
            .prop_map(|(parents, latency)| Dag {
                needs: parents
                    .into_iter()
                    .enumerate()
                    .map(|(i, ps)| {
                        let mut set: Vec<usize> = if i == 0 {
                            Vec::new()
                        } else {
                            ps.iter().map(|p| p.index(i)).collect()
                        };
                        set.sort_unstable();
                        set.dedup();
                        set
                    })
                    .collect(),
                latency,
            })
    })
}

fn yaml(dag: &Dag) -> String {
    let mut y = String::from(
        "version: 1\nname: durable-dag\nstate:\n  log: { reducer: append, default: [] }\n  total: { reducer: sum, default: 0 }\nnodes:\n",
    );
    for (i, needs) in dag.needs.iter().enumerate() {
        writeln!(y, "  n{i}:\n    kind: count\n    writes: [log, total]").unwrap();
        if !needs.is_empty() {
            let list: Vec<String> = needs.iter().map(|p| format!("n{p}")).collect();
            writeln!(y, "    needs: [{}]", list.join(", ")).unwrap();
        }
    }
    y
}

/// A runtime whose clock is paused: latencies take no real time.
fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    paused().block_on(f)
}

/// Interrupts a durable run of `dag` after `cut` ms, resumes it, and checks it against an
/// uninterrupted in-memory run, on `rt` (with a paused clock, the milliseconds are virtual).
fn interrupt_and_resume(
    rt: &tokio::runtime::Runtime,
    store: StoreHandle,
    dag: &Dag,
    cut: u64,
    sequential: bool,
) {
    let latency: BTreeMap<String, u64> = dag
        .latency
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("n{i}"), *l))
        .collect();
    let latency = Arc::new(latency);
    let counts = Arc::new(Counts::default());
    let engine = engine(latency.clone(), counts.clone());
    let wf = engine.load_str("dag.yaml", &yaml(dag)).unwrap();
    let mode = sequential.then_some(ExecutionMode::Sequential);
    let options = || RunOptions {
        mode,
        seed: 7,
        ..RunOptions::default()
    };
    let whole = rt.block_on(wf.run(json!({}), options())).unwrap();
    assert_eq!(whole.status, RunStatus::Succeeded);
    let whole_counts = counts.get();
    counts.0.lock().unwrap().clear();

    let durable = Durable::new(engine, store.clone());
    let (id, settled, finished) = rt.block_on(async {
        let started = durable.start(&wf, json!({}), options()).await.unwrap();
        let id = started.run_id().to_owned();
        let finished =
            tokio::time::timeout(Duration::from_millis(cut), started.into_future()).await;
        if let Ok(r) = finished {
            r.unwrap();
        }
        // Whether the run's end is recorded: with a store on another thread, a commit sent just
        // before the interruption lands even though the run's future never saw it. An empty
        // write goes through the writer after it, so it has landed (or not) once this returns.
        store.append(Vec::new()).await.unwrap();
        let finished = store.run(&id).await.unwrap().unwrap().state == RunState::Succeeded;
        let settled: Vec<String> = store
            .nodes(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.node)
            .collect();
        (id, settled, finished)
    });
    let before = counts.get();
    for n in &settled {
        assert_eq!(before.get(n), Some(&1), "`{n}` settled, so it ran once");
    }
    let resumed = rt.block_on(async { durable.resume(&id, None, RunOptions::default()).await });
    let result = match resumed {
        Ok(started) => {
            assert!(
                !finished,
                "a finished run cannot be resumed: {:?}",
                rt.block_on(store.run(&id))
            );
            rt.block_on(started.into_future()).unwrap()
        }
        Err(Error::Durable(DurableError::WrongState { state, .. })) => {
            assert!(finished, "an unfinished run is resumed");
            assert_eq!(state, RunState::Succeeded);
            rt.block_on(durable.show(&id)).unwrap().result
        }
        Err(e) => panic!("resume: {e}"),
    };
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(
        serde_json::to_string(&result.state).unwrap(),
        serde_json::to_string(&whole.state).unwrap(),
        "the state of a resumed run is the uninterrupted one's, byte for byte"
    );
    let after = counts.get();
    for (node, n) in &whole_counts {
        let total = after.get(node).copied().unwrap_or(0);
        assert_eq!(*n, 1);
        if settled.contains(node) {
            assert_eq!(
                total, 1,
                "`{node}` settled before the interruption: it ran once"
            );
        } else {
            assert!(total >= 1, "`{node}` ran");
        }
    }
    for (a, b) in whole.report.nodes.iter().zip(&result.report.nodes) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.status, b.status, "{}", a.name);
    }
    // The journal shows what the run did.
    let shown = rt.block_on(durable.show(&id)).unwrap();
    assert_eq!(shown.record.state, RunState::Succeeded);
    assert_eq!(shown.result.state, whole.state);
    let events = rt.block_on(store.events(&id, 0, 0)).unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64, "event numbers have no gap");
    }
}

fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn memory() -> StoreHandle {
    Arc::new(braid_store::MemoryStore::default())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn an_interrupted_run_resumed_from_memory_ends_as_an_uninterrupted_one(
        dag in dag(16),
        cut in 0u64..600,
        sequential in any::<bool>(),
    ) {
        interrupt_and_resume(&paused(), memory(), &dag, cut, sequential);
    }
}

proptest! {
    #![proptest_config(config(16))]

    #[test]
    fn an_interrupted_run_resumed_from_sqlite_ends_as_an_uninterrupted_one(
        dag in dag(12),
        cut in 0u64..400,
        sequential in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("runs.db").display());
        let rt = paused();
        let store = rt.block_on(braid_store::open(&url)).unwrap();
        interrupt_and_resume(&rt, store, &dag, cut, sequential);
    }
}

/// A schema of its own in the database `BRAID_TEST_POSTGRES_URL` names, and the store URL that
/// uses it; `None` (said on stderr) when the variable is unset. Set, the database must answer.
#[allow(clippy::print_stderr)] // a skipped test says so
fn postgres_schema(test: &str) -> Option<(String, String)> {
    let Ok(base) = std::env::var("BRAID_TEST_POSTGRES_URL") else {
        eprintln!("skipped {test}: BRAID_TEST_POSTGRES_URL is not set");
        return None;
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("braid_facade_{test}_{}_{n}", std::process::id());
    block_on(async {
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("BRAID_TEST_POSTGRES_URL is set but unreachable: {e}"));
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
    });
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
    Some((name, url))
}

fn drop_schema(name: &str) {
    let base = std::env::var("BRAID_TEST_POSTGRES_URL").unwrap();
    block_on(async {
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
    });
}

#[test]
fn an_interrupted_run_resumed_from_postgres_ends_as_an_uninterrupted_one() {
    let Some((schema, url)) = postgres_schema("interrupt") else {
        return;
    };
    // Real time: the store talks to a server, and a paused clock would fire its timeouts while
    // it waits for answers. One runtime and one store for every case, as a service keeps them.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(braid_store::open(&url)).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(config(12));
    let result = runner.run(
        &(dag(8), 0u64..300, any::<bool>()),
        |(dag, cut, sequential)| {
            interrupt_and_resume(&rt, store.clone(), &dag, cut, sequential);
            Ok(())
        },
    );
    drop(store);
    drop(rt);
    drop_schema(&schema);
    result.unwrap();
}

#[test]
fn a_database_that_goes_away_mid_run_stops_the_run_and_loses_nothing() {
    let Some((schema, url)) = postgres_schema("goes_away") else {
        return;
    };
    let app = schema.clone();
    let url = format!("{url}&application_name={app}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A chain n0 -> n1 -> n2; while n1 runs (held at a gate the first time), the database goes
    // away: its connections are killed, and its node table cannot be written.
    let dag = Dag {
        needs: vec![vec![], vec![0], vec![1]],
        latency: vec![0, 0, 0],
    };
    let counts = Arc::new(Counts::default());
    let reached = Arc::new(tokio::sync::Notify::new());
    let open = Arc::new(tokio::sync::Notify::new());
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let engine = {
        let (counts, reached, open) = (counts.clone(), reached.clone(), open.clone());
        Engine::builder()
            .handler("count", move |ctx: NodeContext| {
                let name = ctx.node().to_owned();
                *counts.0.lock().unwrap().entry(name.clone()).or_default() += 1;
                let gated = name == "n1" && first.swap(false, std::sync::atomic::Ordering::SeqCst);
                let (reached, open) = (reached.clone(), open.clone());
                async move {
                    if gated {
                        reached.notify_one();
                        open.notified().await;
                    }
                    let n: u64 = name[1..].parse().unwrap();
                    Ok(json!({ "log": [name], "total": n }))
                }
            })
            .build()
    };
    let wf = engine.load_str("dag.yaml", &yaml(&dag)).unwrap();
    let base = std::env::var("BRAID_TEST_POSTGRES_URL").unwrap();
    let (id, outcome) = rt.block_on(async {
        let store = braid_store::open(&url).await.unwrap();
        let durable = Durable::new(engine.clone(), store);
        let started = durable.start(&wf, json!({}), RunOptions::default()).await.unwrap();
        let id = started.run_id().to_owned();
        let run = tokio::spawn(started.into_future());
        reached.notified().await;
        // While `n1` runs, every connection of the store is killed.
        let (admin, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(connection);
        let killed = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap();
        assert!(!killed.is_empty(), "the store's connections were found");
        // And the database stays unable to take the run's records while `n1` ends.
        admin
            .batch_execute(&format!("ALTER TABLE {app}.braid_nodes RENAME TO braid_nodes_away"))
            .await
            .unwrap();
        open.notify_one();
        let outcome = run.await.unwrap();
        admin
            .batch_execute(&format!("ALTER TABLE {app}.braid_nodes_away RENAME TO braid_nodes"))
            .await
            .unwrap();
        drop(admin);
        let _ = task.await;
        (id, outcome)
    });
    // The run stopped rather than go on unrecorded, and kept what settled.
    let resumed = match outcome {
        Err(Error::Durable(DurableError::Unrecorded { result, .. })) => {
            assert_eq!(result.status, RunStatus::Failed);
            true
        }
        Ok(r) => panic!("the run went on unrecorded: {:?}", r.status),
        Err(e) => panic!("unexpected: {e}"),
    };
    let result = rt.block_on(async {
        // A new store handle, as a new process would open.
        let store = braid_store::open(&url).await.unwrap();
        let durable = Durable::new(engine.clone(), store.clone());
        let record = store.run(&id).await.unwrap().unwrap();
        if resumed {
            assert_eq!(record.state, RunState::Running, "the run can be resumed");
            durable
                .resume(&id, None, RunOptions::default())
                .await
                .unwrap()
                .into_future()
                .await
                .unwrap()
        } else {
            durable.show(&id).await.unwrap().result
        }
    });
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.state["log"], json!(["n0", "n1", "n2"]));
    let counts = counts.get();
    assert_eq!(counts["n0"], 1, "n0 settled before the database went away");
    assert_eq!(counts["n1"], 2, "n1's end was not recorded: it ran again");
    assert_eq!(counts["n2"], 1);
    drop(rt);
    drop_schema(&schema);
}

#[test]
fn a_thousand_concurrent_durable_runs_share_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("runs.db").display());
    let text = include_str!("../../../../workflows/mode1-manual.yaml")
        .lines()
        .filter(|l| !l.trim_start().starts_with("latency:"))
        .collect::<Vec<_>>()
        .join("\n");
    let engine = Engine::new();
    let wf = engine.load_str("mode1.yaml", &text).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = braid_store::open(&url).await.unwrap();
        let durable = Durable::new(engine, store.clone());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let (d, w) = (durable.clone(), wf.clone());
            set.spawn(async move {
                let started = d.start(&w, json!({}), RunOptions::default()).await?;
                started.into_future().await
            });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            let result = r
                .unwrap()
                .unwrap_or_else(|e| panic!("a durable run failed: {e}"));
            assert_eq!(result.status, RunStatus::Succeeded);
            n += 1;
        }
        assert_eq!(n, 1000);
        let filter = braid_store::RunFilter {
            state: Some(RunState::Succeeded),
            limit: 2000,
            ..Default::default()
        };
        let runs = store.list_runs(&filter).await.unwrap();
        assert_eq!(runs.len(), 1000, "every run is recorded, finished");
        for r in runs.iter().take(20) {
            assert_eq!(store.nodes(&r.id).await.unwrap().len(), 7);
        }
    });
}

/// A memory store that counts the definitions put in it.
struct CountingPuts {
    inner: StoreHandle,
    puts: std::sync::atomic::AtomicU32,
}

impl Store for CountingPuts {
    fn location(&self) -> &str {
        self.inner.location()
    }
    fn put_definition<'a>(&'a self, d: &'a Definition) -> BoxFuture<'a, Result<(), StoreError>> {
        self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.put_definition(d)
    }
    fn definition<'a>(
        &'a self,
        f: &'a str,
    ) -> BoxFuture<'a, Result<Option<Definition>, StoreError>> {
        self.inner.definition(f)
    }
    fn create_run<'a>(&'a self, r: &'a NewRun) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.create_run(r)
    }
    fn append(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.append(entries)
    }
    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>, StoreError>> {
        self.inner.run(id)
    }
    fn nodes<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Vec<NodeRecord>, StoreError>> {
        self.inner.nodes(run)
    }
    fn events<'a>(
        &'a self,
        run: &'a str,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventRecord>, StoreError>> {
        self.inner.events(run, from, limit)
    }
    fn list_runs<'a>(
        &'a self,
        f: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        self.inner.list_runs(f)
    }
    fn reopen<'a>(&'a self, r: &'a Reopen) -> BoxFuture<'a, Result<RunRecord, StoreError>> {
        self.inner.reopen(r)
    }
    fn gc(&self, before: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.gc(before)
    }
}

#[test]
fn a_workflow_started_many_times_puts_its_definition_once_and_again_after_gc() {
    let store = Arc::new(CountingPuts {
        inner: memory(),
        puts: Default::default(),
    });
    let dag = Dag {
        needs: vec![vec![], vec![0]],
        latency: vec![10, 10],
    };
    let engine = engine(Arc::default(), Arc::default());
    let wf = engine.load_str("dag.yaml", &yaml(&dag)).unwrap();
    let durable = Durable::new(engine, store.clone());
    let puts = || store.puts.load(std::sync::atomic::Ordering::Relaxed);
    block_on(async {
        for _ in 0..5 {
            let r = durable
                .start(&wf, json!({}), RunOptions::default())
                .await
                .unwrap();
            assert_eq!(r.into_future().await.unwrap().status, RunStatus::Succeeded);
        }
        assert_eq!(puts(), 1, "one definition, put once");
        // Every run finished: `gc` deletes them, and the definition no run uses any more.
        let cutoff = now_micros() + 1;
        assert_eq!(store.gc(cutoff).await.unwrap(), 5);
        let fingerprint = wf.fingerprint().to_string();
        assert!(store.definition(&fingerprint).await.unwrap().is_none());
        // The handle still thinks it is stored: the store refuses the run, the handle puts the
        // definition again and the run starts.
        let r = durable
            .start(&wf, json!({}), RunOptions::default())
            .await
            .unwrap();
        assert_eq!(r.into_future().await.unwrap().status, RunStatus::Succeeded);
        assert_eq!(puts(), 2);
        assert!(store.definition(&fingerprint).await.unwrap().is_some());
    });
}

/// An engine for the replicas test: `count` counts its executions in `counts`; node `n1` waits
/// for `gate`, if given, before it ends.
fn gated_engine(counts: Arc<Counts>, gate: Option<Arc<tokio::sync::Notify>>) -> Engine {
    Engine::builder()
        .handler("count", move |ctx: NodeContext| {
            let name = ctx.node().to_owned();
            *counts.0.lock().unwrap().entry(name.clone()).or_default() += 1;
            let gate = gate.clone().filter(|_| name == "n1");
            async move {
                if let Some(gate) = gate {
                    gate.notified().await;
                }
                let n: u64 = name[1..].parse().unwrap();
                Ok(json!({ "log": [name], "total": n }))
            }
        })
        .build()
}

/// The two replicas' side of the replica tests: a chain `n0` → `n3` whose nodes count their
/// executions; A's `n1` waits for `gate`; `whole` is an uninterrupted run's result (its
/// executions not counted).
struct Replicas {
    counts: Arc<Counts>,
    gate: Arc<tokio::sync::Notify>,
    engine_a: Engine,
    engine_b: Engine,
    wf_a: braid::Workflow,
    whole: braid::RunResult,
}

impl Replicas {
    async fn new() -> Replicas {
        let dag = Dag {
            needs: vec![vec![], vec![0], vec![1], vec![2]],
            latency: vec![0; 4],
        };
        let counts = Arc::new(Counts::default());
        let gate = Arc::new(tokio::sync::Notify::new());
        let engine_a = gated_engine(counts.clone(), Some(gate.clone()));
        let engine_b = gated_engine(counts.clone(), None);
        let wf_a = engine_a.load_str("dag.yaml", &yaml(&dag)).unwrap();
        let whole = engine_b
            .load_str("dag.yaml", &yaml(&dag))
            .unwrap()
            .run(json!({}), RunOptions::default())
            .await
            .unwrap();
        counts.0.lock().unwrap().clear();
        Replicas {
            counts,
            gate,
            engine_a,
            engine_b,
            wf_a,
            whole,
        }
    }

    /// Replica A runs its claim of the run in a task of its own; answers the task once A is
    /// in `n1` (so `n0`'s end is recorded: `n1` needs it).
    async fn a_stops_in_n1(
        &self,
        a: &Durable,
        claim: &Claim,
    ) -> tokio::task::JoinHandle<Result<braid::RunResult, Error>> {
        let run_a = tokio::spawn(
            a.run_claimed(claim, RunOptions::default())
                .await
                .unwrap()
                .into_future(),
        );
        while !self.counts.get().contains_key("n1") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        run_a
    }
}

/// Two replicas on one store: A claims a run and is stopped in `n1` past its lease (it never
/// heartbeats); B claims it (epoch + 1) and runs it to its end from the journal; A's late write
/// is fenced, its segment ends `Fenced`, and nothing of it is kept. The state is an
/// uninterrupted run's and `n0`, which settled under A, ran once.
async fn a_stale_replica_is_fenced(store_a: StoreHandle, store_b: StoreHandle) {
    let fixture = Replicas::new().await;
    let (counts, gate, whole) = (&fixture.counts, &fixture.gate, &fixture.whole);
    let (engine_a, engine_b) = (fixture.engine_a.clone(), fixture.engine_b.clone());
    let wf_a = &fixture.wf_a;
    let a = Durable::new(engine_a, store_a.clone());
    let b = Durable::new(engine_b, store_b.clone());

    let id = a
        .submit(wf_a, json!({}), RunOptions::default())
        .await
        .unwrap();
    let lease = Duration::from_millis(200);
    let claims = store_a.claim("a", 10, lease).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!((claims[0].run.as_str(), claims[0].epoch), (id.as_str(), 1));
    let run_a = fixture.a_stops_in_n1(&a, &claims[0]).await;
    // A sends no heartbeat: once its lease expired, B takes the run.
    let claim_b = loop {
        let got = store_b
            .claim("b", 10, Duration::from_secs(60))
            .await
            .unwrap();
        if let Some(c) = got.into_iter().next() {
            break c;
        }
        let _ = store_b
            .wait_for_work(Duration::from_millis(50))
            .await
            .unwrap();
    };
    assert_eq!((claim_b.run.as_str(), claim_b.epoch), (id.as_str(), 2));
    let result = b
        .run_claimed(&claim_b, RunOptions::default())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(
        serde_json::to_string(&result.state).unwrap(),
        serde_json::to_string(&whole.state).unwrap()
    );
    let nodes_before = store_b.nodes(&id).await.unwrap();
    let run_before = store_b.run(&id).await.unwrap().unwrap();

    // A wakes up and writes `n1`'s end under epoch 1: refused, the run untouched.
    gate.notify_one();
    let stale = tokio::time::timeout(Duration::from_secs(30), run_a)
        .await
        .expect("the stale replica stopped")
        .unwrap();
    match stale {
        Err(Error::Durable(DurableError::Fenced { run, source })) => {
            assert_eq!(run, id);
            assert_eq!(
                source,
                StoreError::Fenced {
                    run: id.clone(),
                    epoch: 1,
                    current: 2
                }
            );
        }
        other => panic!("A's segment should be fenced: {other:?}"),
    }
    let mut nodes_after = store_b.nodes(&id).await.unwrap();
    let mut nodes_before = nodes_before;
    nodes_after.sort_by(|x, y| x.node.cmp(&y.node));
    nodes_before.sort_by(|x, y| x.node.cmp(&y.node));
    assert_eq!(nodes_after, nodes_before, "A's late write changed nothing");
    assert_eq!(store_b.run(&id).await.unwrap().unwrap(), run_before);
    assert_eq!(run_before.state, RunState::Succeeded);
    let ran = counts.get();
    assert_eq!(
        ran.get("n0"),
        Some(&1),
        "`n0` settled under A: B did not run it"
    );
    assert_eq!(ran.get("n1"), Some(&2), "`n1` had not settled: both ran it");
    assert_eq!((ran.get("n2"), ran.get("n3")), (Some(&1), Some(&1)));
    // Its end recorded by B, the run is never claimed again.
    assert!(store_a.claim("a", 10, lease).await.unwrap().is_empty());
}

/// Two replicas on one store (`memory`: one handle twice; `sqlite`: a temporary file;
/// `postgres`: a schema of its own, skipped without `BRAID_TEST_POSTGRES_URL`), each with a
/// handle of its own, on a runtime of two threads.
fn two_replicas<F, Fut>(kind: &str, name: &str, test: F)
where
    F: FnOnce(StoreHandle, StoreHandle) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match kind {
        "memory" => {
            let store: StoreHandle = Arc::new(braid_store::MemoryStore::new());
            rt.block_on(test(store.clone(), store));
        }
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}", dir.path().join("runs.db").display());
            rt.block_on(async {
                let a = braid_store::open(&url).await.unwrap();
                let b = braid_store::open(&url).await.unwrap();
                test(a, b).await;
            });
        }
        _ => {
            let Some((schema, url)) = postgres_schema(name) else {
                return;
            };
            rt.block_on(async {
                let a = braid_store::open(&url).await.unwrap();
                let b = braid_store::open(&url).await.unwrap();
                test(a, b).await;
            });
            drop(rt);
            drop_schema(&schema);
        }
    }
}

#[test]
fn a_stale_replica_is_fenced_in_memory() {
    two_replicas("memory", "", a_stale_replica_is_fenced);
}

#[test]
fn a_stale_replica_is_fenced_in_sqlite() {
    two_replicas("sqlite", "", a_stale_replica_is_fenced);
}

#[test]
fn a_stale_replica_is_fenced_in_postgres() {
    two_replicas("postgres", "replicas", a_stale_replica_is_fenced);
}

#[test]
fn a_run_is_cancelled_and_resumed_from_another_replica_in_memory() {
    two_replicas(
        "memory",
        "",
        a_run_is_cancelled_and_resumed_from_another_replica,
    );
}

#[test]
fn a_run_is_cancelled_and_resumed_from_another_replica_in_postgres() {
    two_replicas(
        "postgres",
        "takeover",
        a_run_is_cancelled_and_resumed_from_another_replica,
    );
}

/// A run is cancelled from another replica while A runs it: B takes it over and records it
/// `cancelled` at once, keeping what settled; A's next write is fenced and its segment ends
/// `Fenced`. B then resumes it (taking it over again): it finishes with an uninterrupted run's
/// state, and `n0`, which settled under A, ran once.
async fn a_run_is_cancelled_and_resumed_from_another_replica(
    store_a: StoreHandle,
    store_b: StoreHandle,
) {
    let fixture = Replicas::new().await;
    let (counts, gate, whole) = (&fixture.counts, &fixture.gate, &fixture.whole);
    let (engine_a, engine_b) = (fixture.engine_a.clone(), fixture.engine_b.clone());
    let wf_a = &fixture.wf_a;
    let lease = Duration::from_secs(60);
    let a = Durable::new(engine_a, store_a.clone()).as_replica("a", lease);
    let b = Durable::new(engine_b, store_b.clone()).as_replica("b", lease);

    let id = a
        .submit(wf_a, json!({}), RunOptions::default())
        .await
        .unwrap();
    let claims = store_a.claim("a", 10, lease).await.unwrap();
    let run_a = fixture.a_stops_in_n1(&a, &claims[0]).await;
    // A is alive and in `n1`: B cancels the run anyway.
    let cancelled = b.cancel_taken(&id).await.unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled);
    assert_eq!(cancelled.owner.as_deref(), Some("b"));
    assert_eq!(cancelled.epoch, 2);
    let events = store_b.events(&id, 0, 0).await.unwrap();
    assert_eq!(
        events.last().map(|e| e.kind),
        Some(EventKind::RunFinished),
        "a stream of the run ends"
    );
    assert_eq!(store_a.heartbeat("a").await.unwrap(), Some(Vec::new()));
    assert!(matches!(
        b.cancel_taken(&id).await,
        Err(Error::Durable(DurableError::WrongState { .. }))
    ));

    gate.notify_one();
    let stale = tokio::time::timeout(Duration::from_secs(30), run_a)
        .await
        .expect("A stopped")
        .unwrap();
    assert!(
        matches!(stale, Err(Error::Durable(DurableError::Fenced { .. }))),
        "A's segment is fenced: {stale:?}"
    );
    assert_eq!(
        store_b.run(&id).await.unwrap().unwrap().state,
        RunState::Cancelled
    );

    let result = b
        .resume(&id, None, RunOptions::default())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(
        serde_json::to_string(&result.state).unwrap(),
        serde_json::to_string(&whole.state).unwrap()
    );
    let record = store_b.run(&id).await.unwrap().unwrap();
    assert_eq!((record.owner.as_deref(), record.epoch), (Some("b"), 3));
    let ran = counts.get();
    assert_eq!(ran.get("n0"), Some(&1), "`n0` settled under A: it ran once");
}

/// An event a listener heard: sequence, kind, node, when, and whether the store held it then.
type Heard = (u64, EventKind, Option<String>, tokio::time::Instant, bool);

/// What a listener was told, and whether each event was in the store when it was.
#[derive(Default)]
struct Told {
    store: Mutex<Option<StoreHandle>>,
    events: Mutex<Vec<Heard>>,
}

impl braid::durable::Listener for Told {
    fn event(&self, run: &str, event: &EventRecord) {
        let store = self.store.lock().unwrap().clone().expect("store");
        // A memory store answers at once: poll its read once.
        let mut read = store.events(run, event.seq, 1);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let stored = match read.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(found)) => found.first() == Some(event),
            _ => false,
        };
        self.events.lock().unwrap().push((
            event.seq,
            event.kind,
            event.node.clone(),
            tokio::time::Instant::now(),
            stored,
        ));
    }
}

/// A service's listener hears of an event only once the store holds it, every event once and
/// in order; and a node's start is sent without waiting for the next node end (here, `slow`'s
/// start is heard at once, not 300 ms later with its end). Virtual time.
#[tokio::test(start_paused = true)]
async fn a_listener_hears_only_committed_events_and_at_once() {
    let store: StoreHandle = Arc::new(braid_store::MemoryStore::new());
    let told = Arc::new(Told::default());
    *told.store.lock().unwrap() = Some(store.clone());
    let engine = Engine::new();
    let wf = engine
        .load_str(
            "w.yaml",
            "version: 1\nname: w\nstate:\n  a: { reducer: replace }\n  b: { reducer: replace }\nnodes:\n  first:\n    kind: mock\n    writes: [a]\n    with: { output: { a: 1 } }\n  slow:\n    kind: mock\n    needs: [first]\n    writes: [b]\n    with: { latency: 300ms, output: { b: 2 } }\n",
        )
        .unwrap();
    let durable = Durable::new(engine, store.clone()).with_listener(told.clone());
    let t0 = tokio::time::Instant::now();
    let started = durable
        .start(&wf, json!({}), RunOptions::default())
        .await
        .unwrap();
    let id = started.run_id().to_owned();
    let result = started.await.unwrap();
    assert_eq!(result.status, RunStatus::Succeeded);
    let heard = told.events.lock().unwrap().clone();
    let stored = store.events(&id, 0, 0).await.unwrap();
    assert_eq!(
        heard.iter().map(|e| e.0).collect::<Vec<_>>(),
        stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
        "every stored event heard once, in order"
    );
    assert!(
        heard.iter().all(|e| e.4),
        "each was in the store when heard: {heard:?}"
    );
    let slow_started = heard
        .iter()
        .find(|e| e.1 == EventKind::NodeStarted && e.2.as_deref() == Some("slow"))
        .expect("slow's start heard");
    assert!(
        slow_started.3 - t0 < Duration::from_millis(300),
        "heard as it started, not with its end"
    );
}
