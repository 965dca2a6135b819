//! Braid side by side with its peers. One binary, one process per (runner, workload):
//!
//! ```text
//! peer-bench <braid|braid-builtin|floor|dagx|dagrs> <mode1|straggler|parallel|random|chain|fan-out|layered|throughput|memory> [--quick]
//! peer-bench duel <mode1|straggler|parallel|random|throughput> [--rounds N]   # Braid and the floor, alternating in one process
//! peer-bench yaml <workload>     # the YAML Braid loads (every node the shared node code)
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

/// Makespan runs of a workload: 4 (2 with `--quick`) of a long one, 9 (3) of one under a second.
fn makespan_iters(w: &Workload, quick: bool) -> usize {
    match (w.critical_path_ms() < 1000, quick) {
        (true, false) => 9,
        (true, true) => 3,
        (false, false) => 4,
        (false, true) => 2,
    }
}

/// One run, timed from its start on a worker to its end, in ms.
async fn one_makespan<R: Runner>(p: &R::Prepared) -> f64 {
    let b = R::build(p);
    let t = Instant::now();
    on_worker::<R>(b).await;
    ms(t.elapsed())
}

async fn makespan<R: Runner>(cx: &Ctx, w: Workload, label: &str) {
    let p = Arc::new(R::prepare(&w));
    let ideal = w.critical_path_ms() as f64;
    // One warm-up run (allocator, timer wheel, thread pool), not counted.
    one_makespan::<R>(&p).await;
    let mut samples = Vec::new();
    for _ in 0..makespan_iters(&w, cx.quick) {
        samples.push(one_makespan::<R>(&p).await);
    }
    let raw = samples.clone();
    let m = median(&mut samples);
    emit(cx.runner, label, "makespan_ms", m, "ms", json!({ "ideal": ideal, "overhead_ms": m - ideal, "samples": raw }));
}

/// Braid (every node the shared node code) and the floor in one process, alternating for
/// `rounds` rounds (who goes first alternates too), so that both see the same moments of a busy
/// machine: the medians of each, and the median of the per-round ratios Braid ÷ floor.
async fn duel(workload: &str, rounds: usize) {
    let (metric, w) = match workload {
        "throughput" => ("runs_per_s", Workload::mode1(false)),
        other => ("makespan_ms", Workload::by_name(other).expect("a workload")),
    };
    let braid = Arc::new(braid_runner::Braid::prepare(&w));
    let floor = Arc::new(floor::Floor::prepare(&w));
    let ideal = w.critical_path_ms() as f64;
    let measure_braid = || async {
        if metric == "runs_per_s" { burst_rps::<braid_runner::Braid>(&braid, RUNS).await } else { one_makespan::<braid_runner::Braid>(&braid).await }
    };
    let measure_floor = || async {
        if metric == "runs_per_s" { burst_rps::<floor::Floor>(&floor, RUNS).await } else { one_makespan::<floor::Floor>(&floor).await }
    };
    // Warm-up, not counted.
    measure_braid().await;
    measure_floor().await;
    let (mut b, mut f, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = measure_braid().await;
            (x, measure_floor().await)
        } else {
            let y = measure_floor().await;
            (measure_braid().await, y)
        };
        b.push(x);
        f.push(y);
        // Braid ÷ floor on cost; floor ÷ Braid on runs/s: above 1, Braid is behind.
        ratio.push(if metric == "runs_per_s" { y / x } else { x / y });
    }
    let (rb, rf) = (b.clone(), f.clone());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (mb, mf, mr) = (median(&mut b), median(&mut f), median(&mut ratio));
    let label = format!("duel-{workload}");
    let extra = |samples: Vec<f64>, m: f64| {
        json!({ "rounds": rounds, "ideal": ideal, "overhead_ms": m - ideal, "ratio_median": mr, "samples": samples, "loadavg_end": load.trim() })
    };
    emit("braid", &label, metric, mb, if metric == "runs_per_s" { "runs/s" } else { "ms" }, extra(rb, mb));
    emit("floor", &label, metric, mf, if metric == "runs_per_s" { "runs/s" } else { "ms" }, extra(rf, mf));
}

/// `n` runs spawned at once and awaited: runs per second.
async fn burst_rps<R: Runner>(p: &Arc<R::Prepared>, n: usize) -> f64 {
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let p = p.clone();
        set.spawn(async move { R::exec(R::build(&p)).await });
    }
    while let Some(r) = set.join_next().await {
        r.expect("a run panicked");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

async fn per_node<R: Runner>(cx: &Ctx, w: Workload, label: &str) {
    // The memory preparing takes (Braid: compiling the 10,000-node file): the process's peak
    // resident size after it, over its resident size before (issue 16, item 23).
    let rss_before = status_kib("VmRSS:");
    let t = Instant::now();
    let p = Arc::new(R::prepare(&w));
    let prepare_ms = ms(t.elapsed());
    let prepare_peak_kib = status_kib("VmHWM:").saturating_sub(rss_before);
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
            "prepare_peak_rss_kib": prepare_peak_kib,
            "build_ms_per_run": median(&mut build),
            "samples": raw,
        }),
    );
}

async fn throughput<R: Runner>(cx: &Ctx) {
    let w = Workload::mode1(false);
    let p = Arc::new(R::prepare(&w));
    burst_rps::<R>(&p, 200).await;
    let reps = if cx.quick { 2 } else { 5 };
    let mut rps = Vec::new();
    for _ in 0..reps {
        rps.push(burst_rps::<R>(&p, RUNS).await);
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
        "straggler" | "parallel" | "random" => {
            makespan::<R>(&cx, Workload::by_name(workload).expect("a workload"), workload).await
        }
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
    let pos: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && !(*i > 0 && args[i - 1] == "--rounds"))
        .map(|(_, a)| a.as_str())
        .collect();
    let [runner, workload] = pos[..] else {
        eprintln!("usage: peer-bench <braid|braid-builtin|floor|dagx|dagrs|duel|yaml|json> <workload> [--quick] [--rounds N]");
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
    let rounds = args.iter().position(|a| a == "--rounds").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok());
    // Multi-thread runtime for every Rust runner (as many workers as cores: 2 here); the `@ct`
    // variants of the per-node workloads run on a current-thread runtime instead.
    let rt = if workload.ends_with("@ct") {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
    .expect("a tokio runtime");
    if runner == "duel" {
        rt.block_on(duel(workload, rounds.unwrap_or(if quick { 5 } else { 15 })));
        return;
    }
    let cx = Ctx { runner: match runner {
        "braid" => "braid",
        "braid-builtin" => "braid-builtin",
        "floor" => "floor",
        "dagx" => "dagx",
        "dagrs" => "dagrs",
        other => panic!("unknown runner `{other}`"),
    }, quick };
    rt.block_on(async move {
        match cx.runner {
            "braid" => dispatch::<braid_runner::Braid>(cx, workload).await,
            "braid-builtin" => dispatch::<braid_runner::BraidBuiltin>(cx, workload).await,
            "floor" => dispatch::<floor::Floor>(cx, workload).await,
            "dagx" => dispatch::<dagx_runner::Dagx>(cx, workload).await,
            _ => dispatch::<dagrs_runner::Dagrs>(cx, workload).await,
        }
    });
}
