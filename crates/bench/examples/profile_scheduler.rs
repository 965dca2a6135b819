//! A small, fixed workload for profiling the scheduler under `valgrind --tool=callgrind` (or
//! `perf record` where it works): compiles a 1,000-node layered `noop` DAG (10 layers of 100,
//! each node needing 2 of the layer before) once, then runs it 20 times on a current-thread
//! runtime. The sizes are small because callgrind runs ~50x slower than native. See
//! `docs/performance.md` for the exact command.
//!
//! The run count can be changed with the first argument: `profile_scheduler 100`.

use braid::{RunOptions, RunStatus};
use serde_json::json;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let plan = braid_bench::plan("layered.yaml", &braid_bench::layered(10, 100));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    for _ in 0..runs {
        let result = rt.block_on(braid::run_plan(
            plan.clone(),
            json!({}),
            RunOptions::default(),
        ));
        assert_eq!(result.status, RunStatus::Succeeded);
    }
}
