//! Throughput of whole runs: mode 1 with its latencies removed (seven mock nodes with templates,
//! reducers, timeouts, a retry policy), 10,000 runs spawned at once on a multi-thread runtime
//! sharing one compiled [`Workflow`](braid::Workflow). Each run resolves its inputs, as a service
//! calling `Workflow::run` would. divan's items/s is runs per second. Target: at least 100,000
//! runs/s.

use braid::{Engine, RunOptions, RunStatus};
use divan::Bencher;
use divan::counter::ItemsCount;
use serde_json::json;
use tokio::task::JoinSet;

/// The allocator the `braid` binary uses (see `crates/cli/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const RUNS: usize = 10_000;

#[divan::bench(sample_count = 10)]
fn mode1_zero_latency(bencher: Bencher<'_, '_>) {
    let workflow = Engine::new()
        .load_str(
            "mode1-zero-latency.yaml",
            &braid_bench::mode1_zero_latency(),
        )
        .expect("mode 1 without latencies compiles");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("a multi-thread runtime");
    let once = rt
        .block_on(workflow.run(json!({}), RunOptions::default()))
        .expect("inputs resolve");
    assert_eq!(once.status, RunStatus::Succeeded);

    bencher.counter(ItemsCount::new(RUNS)).bench_local(|| {
        rt.block_on(async {
            let mut runs = JoinSet::new();
            for _ in 0..RUNS {
                let workflow = workflow.clone();
                runs.spawn(async move { workflow.run(json!({}), RunOptions::default()).await });
            }
            let mut succeeded = 0_usize;
            while let Some(run) = runs.join_next().await {
                if matches!(run, Ok(Ok(r)) if r.status == RunStatus::Succeeded) {
                    succeeded += 1;
                }
            }
            assert_eq!(succeeded, RUNS, "every run succeeds");
        });
    });
}
