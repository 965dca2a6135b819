//! Braid side by side with its peers. One binary, one process per (runner, workload):
//!
//! ```text
//! peer-bench <braid|floor|dagx|dagrs> <mode1|straggler|chain|fan-out|layered|throughput|memory> [--quick]
//! peer-bench yaml <workload>     # the YAML Braid loads
//! peer-bench json <workload>     # the same workload as JSON, for langgraph_runner.py
//! ```
//!
//! Each measurement prints one JSON line on stdout; `run.sh` collects them and `report.py`
//! prints the table. Real time throughout: this is benchmarking, not testing.

mod braid_runner;
mod dagrs_runner;
mod dagx_runner;
mod floor;
mod workloads;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::workloads::Workload;

/// Every Rust runner (Braid, the floor, dagx, dagrs) runs under the allocator the `braid` binary
/// uses: mimalloc (glibc's malloc serialises cross-thread frees on its arena locks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How many blocking nodes have started (the memory workload waits for all runs to be in flight).
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How long a blocking node sleeps: longer than any measurement.
pub const BLOCK: Duration = Duration::from_secs(3600);

/// Runs to hold or push at once in the throughput and memory workloads.
const RUNS: usize = 10_000;

/// The body every runner's node executes: count itself if it is the blocking node, sleep its
/// latency, nothing else.
pub async fn node_body(latency_ms: u64, probe: bool) {
    if probe {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(BLOCK).await;
    } else if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
}

/// One engine under test.
pub trait Runner: 'static {
    /// Done once per workload (Braid: load and compile the YAML file; the floor: the petgraph
    /// graph). Not timed in the per-node figures; Braid's is reported separately.
    type Prepared: Send + Sync + 'static;
    /// Done once per run, when the engine's graph is consumed by running it (dagx, dagrs).
    type Built: Send + 'static;
    fn prepare(w: &Workload) -> Self::Prepared;
    fn build(p: &Self::Prepared) -> Self::Built;
    fn exec(b: Self::Built) -> impl Future<Output = ()> + Send + 'static;
    /// Nodes actually executed for the workload (dagx needs extra join nodes for wide fan-ins).
    fn executed_nodes(_p: &Self::Prepared, w: &Workload) -> usize {
        w.nodes.len()
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn emit(runner: &str, workload: &str, metric: &str, value: f64, unit: &str, extra: Value) {
    let mut line = json!({ "runner": runner, "workload": workload, "metric": metric, "value": value, "unit": unit });
    if let (Value::Object(l), Value::Object(e)) = (&mut line, extra) {
        l.extend(e);
    }
    println!("{line}");
}

struct Ctx {
    runner: &'static str,
    quick: bool,
}

/// Runs one run in a spawned task, as a service handling a request would: on a multi-thread
/// runtime the run's own loop then sits on a worker thread (not on the thread in `block_on`), so
/// the tasks it spawns start in that worker's LIFO slot instead of waking another thread.
async fn on_worker<R: Runner>(b: R::Built) {
    tokio::spawn(R::exec(b)).await.expect("the run panicked");
}

async fn makespan<R: Runner>(cx: &Ctx, w: Workload, label: &str) {
    let p = Arc::new(R::prepare(&w));
    let ideal = w.critical_path_ms() as f64;
    let iters = if cx.quick { 2 } else { 4 };
    let mut samples = Vec::new();
    for _ in 0..iters {
        let b = R::build(&p);
        let t = Instant::now();
        on_worker::<R>(b).await;
        samples.push(ms(t.elapsed()));
    }
    let raw = samples.clone();
    let m = median(&mut samples);
    emit(cx.runner, label, "makespan_ms", m, "ms", json!({ "ideal": ideal, "overhead_ms": m - ideal, "samples": raw }));
}

async fn per_node<R: Runner>(cx: &Ctx, w: Workload, label: &str) {
    let t = Instant::now();
    let p = Arc::new(R::prepare(&w));
    let prepare_ms = ms(t.elapsed());
    let nodes = R::executed_nodes(&p, &w);
    // PEER_BENCH_ITERS overrides the count (for profiling: many runs, so that compiling the
    // workload is a small share of the profile).
    let iters = std::env::var("PEER_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(if cx.quick { 3 } else { 9 });
    // Warm-up run (allocator, lazy statics, thread pool), not counted.
    on_worker::<R>(R::build(&p)).await;
    let (mut run, mut build) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        let t = Instant::now();
        let b = R::build(&p);
        build.push(ms(t.elapsed()));
        let t = Instant::now();
        on_worker::<R>(b).await;
        run.push(ms(t.elapsed()) * 1000.0 / nodes as f64);
    }
    let raw = run.clone();
    let us = median(&mut run);
    emit(
        cx.runner,
        label,
        "us_per_node",
        us,
        "µs/node",
        json!({
            "nodes": w.nodes.len(),
            "executed_nodes": nodes,
            "prepare_ms": prepare_ms,
            "build_ms_per_run": median(&mut build),
            "samples": raw,
        }),
    );
}

async fn throughput<R: Runner>(cx: &Ctx) {
    let w = Workload::mode1(false);
    let p = Arc::new(R::prepare(&w));
    let burst = |n: usize| {
        let p = p.clone();
        async move {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let p = p.clone();
                set.spawn(async move { R::exec(R::build(&p)).await });
            }
            while let Some(r) = set.join_next().await {
                r.expect("a run panicked");
            }
        }
    };
    burst(200).await;
    let reps = if cx.quick { 2 } else { 5 };
    let mut rps = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        burst(RUNS).await;
        rps.push(RUNS as f64 / t.elapsed().as_secs_f64());
    }
    let raw = rps.clone();
    emit(cx.runner, "throughput", "runs_per_s", median(&mut rps), "runs/s", json!({ "runs": RUNS, "samples": raw }));
}

async fn memory<R: Runner>(cx: &Ctx) {
    // Warm up with a few complete zero-latency runs, so one-off allocations are in the baseline.
    let warm = Arc::new(R::prepare(&Workload::mode1(false)));
    for _ in 0..20 {
        R::exec(R::build(&warm)).await;
    }
    let w = Workload::mode1_blocked();
    let p = Arc::new(R::prepare(&w));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let base_rss = status_kib("VmRSS:");
    let base_hwm = status_kib("VmHWM:");
    let mut set = tokio::task::JoinSet::new();
    let t = Instant::now();
    for _ in 0..RUNS {
        let p = p.clone();
        set.spawn(async move { R::exec(R::build(&p)).await });
    }
    while IN_FLIGHT.load(Ordering::Relaxed) < RUNS {
        assert!(t.elapsed() < Duration::from_secs(300), "runs never all reached the blocking node");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");
    let per_run_hwm = (hwm.saturating_sub(base_rss)) as f64 / RUNS as f64;
    let per_run_rss = (rss.saturating_sub(base_rss)) as f64 / RUNS as f64;
    emit(
        cx.runner,
        "memory",
        "kib_per_run",
        per_run_hwm,
        "KiB/run",
        json!({
            "runs": RUNS,
            "baseline_rss_kib": base_rss,
            "baseline_hwm_kib": base_hwm,
            "inflight_rss_kib": rss,
            "inflight_hwm_kib": hwm,
            "kib_per_run_rss": per_run_rss,
            "seconds_to_all_in_flight": t.elapsed().as_secs_f64(),
        }),
    );
    // The blocked runs would sleep for an hour: leave without waiting for them.
    std::process::exit(0);
}

async fn dispatch<R: Runner>(cx: Ctx, workload: &str) {
    match workload {
        "mode1" => makespan::<R>(&cx, Workload::mode1(true), "mode1").await,
        "straggler" => makespan::<R>(&cx, Workload::straggler(), "straggler").await,
        "chain" | "fan-out" | "layered" | "chain@ct" | "fan-out@ct" | "layered@ct" => {
            let name = workload.trim_end_matches("@ct");
            per_node::<R>(&cx, Workload::by_name(name).expect("a workload"), workload).await
        }
        "throughput" => throughput::<R>(&cx).await,
        "memory" => memory::<R>(&cx).await,
        other => panic!("unknown workload `{other}`"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let pos: Vec<&str> = args.iter().filter(|a| !a.starts_with("--")).map(String::as_str).collect();
    let [runner, workload] = pos[..] else {
        eprintln!("usage: peer-bench <braid|floor|dagx|dagrs|yaml|json> <workload> [--quick]");
        std::process::exit(2);
    };
    match runner {
        "yaml" => {
            print!("{}", Workload::by_name(workload).expect("a workload").to_yaml());
            return;
        }
        "json" => {
            println!("{}", Workload::by_name(workload).expect("a workload").to_json());
            return;
        }
        _ => {}
    }
    // Multi-thread runtime for every Rust runner (as many workers as cores: 2 here); the `@ct`
    // variants of the per-node workloads run on a current-thread runtime instead.
    let rt = if workload.ends_with("@ct") {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
    .expect("a tokio runtime");
    let cx = Ctx { runner: match runner {
        "braid" => "braid",
        "floor" => "floor",
        "dagx" => "dagx",
        "dagrs" => "dagrs",
        other => panic!("unknown runner `{other}`"),
    }, quick };
    rt.block_on(async move {
        match cx.runner {
            "braid" => dispatch::<braid_runner::Braid>(cx, workload).await,
            "floor" => dispatch::<floor::Floor>(cx, workload).await,
            "dagx" => dispatch::<dagx_runner::Dagx>(cx, workload).await,
            _ => dispatch::<dagrs_runner::Dagrs>(cx, workload).await,
        }
    });
}
