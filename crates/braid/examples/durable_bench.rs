//! Durable runs against the in-memory path, side by side in one process: zero-latency mode 1
//! (the seed's pipeline, latencies removed) run in memory and journaled in each store given, with
//! the per-node checkpoint latency (each node's `append`, from the call to its commit) and the
//! time to resume 1,000 interrupted runs.
//!
//! ```text
//! cargo run --release -p braid --features sqlite,postgres --example durable_bench -- \
//!     sqlite:/tmp/bench.db postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! Figures and the machine they were taken on: `docs/performance.md`, "Durable runs".

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::future::IntoFuture as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid::durable::{
    BoxFuture, Definition, Durable, Entry, EventRecord, NewRun, NodeRecord, Reopen, RunFilter,
    RunRecord, Store, StoreError, StoreHandle,
};
use braid::{Engine, RunOptions, RunStatus, Workflow};
use serde_json::json;

/// A store that times every `append`: the checkpoint of a node's end.
struct Timed {
    inner: StoreHandle,
    appends: Mutex<Vec<Duration>>,
}

impl Store for Timed {
    fn location(&self) -> &str {
        self.inner.location()
    }
    fn put_definition<'a>(&'a self, d: &'a Definition) -> BoxFuture<'a, Result<(), StoreError>> {
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
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.append(entries).await;
            self.appends.lock().unwrap().push(t.elapsed());
            r
        })
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

fn mode1(engine: &Engine) -> Workflow {
    let text = include_str!("../../../workflows/mode1-manual.yaml")
        .lines()
        .filter(|l| !l.trim_start().starts_with("latency:"))
        .collect::<Vec<_>>()
        .join("\n");
    engine.load_str("mode1.yaml", &text).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Runs `n` runs, at most `concurrency` at a time, each made by `one`; gives runs/s.
async fn throughput<F, Fut>(n: usize, concurrency: usize, one: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let one = Arc::new(one);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut started = 0;
    while started < n || !set.is_empty() {
        while started < n && set.len() < concurrency {
            let one = one.clone();
            set.spawn(async move { one().await });
            started += 1;
        }
        set.join_next().await.unwrap().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn bench_store(url: &str, n: usize) {
    let engine = Engine::new();
    let wf = mode1(&engine);
    let inner = braid::durable::open_store(url).await.unwrap();
    let timed = Arc::new(Timed {
        inner,
        appends: Mutex::new(Vec::new()),
    });
    let durable = Durable::new(engine.clone(), timed.clone());

    // In memory, in the same process, the same moment.
    let w = wf.clone();
    let memory = throughput(n * 10, 64, move || {
        let w = w.clone();
        async move {
            let r = w.run(json!({}), RunOptions::default()).await.unwrap();
            assert_eq!(r.status, RunStatus::Succeeded);
        }
    })
    .await;

    // Checkpoint latency: one run at a time, so each append is timed uncontended.
    for _ in 0..200 {
        let r = durable
            .start(&wf, json!({}), RunOptions::default())
            .await
            .unwrap()
            .into_future()
            .await
            .unwrap();
        assert_eq!(r.status, RunStatus::Succeeded);
    }
    let mut lat = std::mem::take(&mut *timed.appends.lock().unwrap());
    lat.sort();

    // Throughput: 64 runs in flight.
    let (d, w) = (durable.clone(), wf.clone());
    let durable_rate = throughput(n, 64, move || {
        let (d, w) = (d.clone(), w.clone());
        async move {
            let started = d.start(&w, json!({}), RunOptions::default()).await.unwrap();
            let r = started.into_future().await.unwrap();
            assert_eq!(r.status, RunStatus::Succeeded);
        }
    })
    .await;
    let mut under_load = std::mem::take(&mut *timed.appends.lock().unwrap());
    under_load.sort();

    // 1,000 runs interrupted after their three retrievals settled (as a process that died
    // there leaves them), then resumed all at once.
    let template = durable
        .start(&wf, json!({}), RunOptions::default())
        .await
        .unwrap();
    let tid = template.run_id().to_owned();
    template.into_future().await.unwrap();
    let records: Vec<NodeRecord> = timed
        .nodes(&tid)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| ["rag", "tools", "memory"].contains(&r.node.as_str()))
        .collect();
    let run = timed.run(&tid).await.unwrap().unwrap();
    let mut ids = Vec::new();
    for i in 0..1000 {
        let id = format!("bench-resume-{}-{i}", std::process::id());
        timed
            .create_run(&NewRun {
                id: id.clone(),
                workflow: run.workflow.clone(),
                fingerprint: run.fingerprint.clone(),
                inputs: run.inputs.clone(),
                options: run.options.clone(),
                created_at: braid::durable::now_micros(),
            })
            .await
            .unwrap();
        let entries = records
            .iter()
            .map(|r| Entry::Node {
                run: id.clone(),
                record: r.clone(),
            })
            .collect();
        timed.append(entries).await.unwrap();
        ids.push(id);
    }
    let fresh = Durable::new(engine.clone(), timed.clone());
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for id in ids {
        let d = fresh.clone();
        set.spawn(async move {
            let r = d
                .resume(&id, None, RunOptions::default())
                .await
                .unwrap()
                .into_future()
                .await
                .unwrap();
            assert_eq!(r.status, RunStatus::Succeeded);
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let resume = start.elapsed();

    println!("store: {url}");
    println!("  in-memory mode-1 runs/s (64 in flight):   {memory:>10.0}");
    println!("  durable mode-1 runs/s (64 in flight):     {durable_rate:>10.0}");
    println!(
        "  checkpoint per node, one run at a time:   p50 {:?}  p99 {:?}  ({} appends)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len()
    );
    println!(
        "  checkpoint per node, 64 runs in flight:   p50 {:?}  p99 {:?}  ({} appends)",
        percentile(&under_load, 0.5),
        percentile(&under_load, 0.99),
        under_load.len()
    );
    println!("  resume 1,000 interrupted runs to the end:  {resume:?}");
}

fn main() {
    let mut urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        let path = std::env::temp_dir().join(format!("braid-bench-{}.db", std::process::id()));
        urls.push(format!("sqlite:{}", path.display()));
    }
    let n: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for url in urls {
        rt.block_on(bench_store(&url, n));
    }
}
