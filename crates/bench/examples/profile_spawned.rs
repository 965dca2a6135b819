//! Spawned nodes against a floor, for callgrind: a 1,000-node layered DAG (as in
//! `profile_scheduler`) whose nodes are a handler registered from Rust (so never run in place:
//! every node is a task, as a node doing I/O is), run `N` times by Braid, or by a floor of a few
//! lines (indegree counters, a `JoinSet`, every ready node spawned as a task that returns at once)
//! over the same graph. The difference per node is what Braid adds to a spawned node.
//!
//! ```sh
//! cargo build --release -p braid-bench --example profile_spawned
//! valgrind --tool=callgrind target/release/examples/profile_spawned braid 100
//! valgrind --tool=callgrind target/release/examples/profile_spawned floor 100
//! ```

use std::sync::Arc;

use braid::{Engine, NodeContext, RunOptions, RunStatus};
use serde_json::json;
use tokio::task::JoinSet;

const LAYERS: usize = 10;
const WIDTH: usize = 100;

fn main() {
    let mut args = std::env::args().skip(1);
    let who = args.next().unwrap_or_else(|| "braid".to_owned());
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    match who.as_str() {
        "floor" => {
            let (needs, dependents) = graph();
            for _ in 0..runs {
                rt.block_on(floor(&needs, &dependents));
            }
        }
        _ => {
            let yaml = braid_bench::layered(LAYERS, WIDTH).replace("kind: noop", "kind: io");
            let engine = Engine::builder()
                .handler("io", |_ctx: NodeContext| async { Ok(json!({})) })
                .build();
            let wf = engine.load_str("spawned.yaml", &yaml).expect("compiles");
            for _ in 0..runs {
                let r = rt
                    .block_on(wf.run(json!({}), RunOptions::default()))
                    .expect("inputs");
                assert_eq!(r.status, RunStatus::Succeeded);
            }
        }
    }
}

/// The layered DAG: each node's number of needs, and each node's dependents.
fn graph() -> (Vec<u32>, Arc<Vec<Vec<usize>>>) {
    let n = LAYERS * WIDTH;
    let mut needs = vec![0u32; n];
    let mut dependents = vec![Vec::new(); n];
    for l in 1..LAYERS {
        for i in 0..WIDTH {
            let me = l * WIDTH + i;
            for p in [i, (i + 1) % WIDTH] {
                dependents[(l - 1) * WIDTH + p].push(me);
                needs[me] += 1;
            }
        }
    }
    (needs, Arc::new(dependents))
}

async fn floor(needs: &[u32], dependents: &[Vec<usize>]) {
    let mut remaining = needs.to_vec();
    let mut set = JoinSet::new();
    for (i, _) in needs.iter().enumerate().filter(|(_, n)| **n == 0) {
        set.spawn(async move { i });
    }
    while let Some(done) = set.join_next().await {
        let done = done.expect("a node task");
        for &d in &dependents[done] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                set.spawn(async move { d });
            }
        }
    }
}
