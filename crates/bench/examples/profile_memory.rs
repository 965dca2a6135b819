//! Holds many mode-1 runs in flight at once, for measuring the heap each one takes with valgrind's
//! massif: the `rag` node is a handler that never returns, the other nodes are zero-latency mocks
//! (the peer harness's workload (e), `bench/src/workloads.rs`). Uses the system allocator, so
//! massif sees every allocation.
//!
//! ```sh
//! cargo build --release -p braid-bench --example profile_memory
//! valgrind --tool=massif --massif-out-file=/tmp/massif.out target/release/examples/profile_memory 1000
//! grep mem_heap_B /tmp/massif.out | sort -t= -k2 -n | tail -1   # peak heap, for 1,000 runs
//! ```

use std::time::Duration;

/// Mode 1 with zero latencies, its `rag` node blocked (`probe_sleep`, registered below).
const WORKFLOW: &str = r#"version: 1
name: mode1-blocked
state:
  rag_results: { reducer: replace, default: [] }
  suggested_tools: { reducer: replace, default: [] }
  memory: { reducer: merge, default: {} }
  response: { reducer: replace }
  quality_score: { reducer: replace }
  citations: { reducer: append, default: [] }
  cost_usd: { reducer: sum, default: 0 }
  cost_report: { reducer: replace }
nodes:
  rag:
    kind: probe_sleep
    writes: [rag_results]
  tools:
    kind: mock
    writes: [suggested_tools]
    with: { output: {"suggested_tools":["secrets_manager","audit_log"]} }
  memory:
    kind: mock
    writes: [memory]
    with: { output: {"memory":{"user":"user-42","preferences":{"tone":"concise"}}} }
  llm:
    kind: mock
    needs: [rag, tools, memory]
    writes: [response, cost_usd]
    with: { output: {"response":"Answer to 'How do I rotate my API keys?' from 2 documents and 2 tools, for user-42.","cost_usd":0.002} }
  quality:
    kind: mock
    needs: [llm]
    writes: [quality_score]
    with: { output: {"quality_score":0.87} }
  citations:
    kind: mock
    needs: [llm]
    writes: [citations]
    with: { output: {"citations":["key-rotation-guide.pdf","security-faq.md"]} }
  cost_tracking:
    kind: mock
    needs: [llm]
    writes: [cost_report]
    with: { output: {"cost_report":{"total_usd":0.002,"model":"mock-llm"}} }
"#;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let workflow = braid::Engine::builder()
        .handler("probe_sleep", |_ctx: braid::NodeContext| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(serde_json::json!({}))
        })
        .build()
        .load_str("mode1-blocked.yaml", WORKFLOW)
        .unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..runs {
            let workflow = workflow.clone();
            set.spawn(async move {
                workflow
                    .run(serde_json::json!({}), braid::RunOptions::default())
                    .await
            });
        }
        // Let every run start and block, then leave with all of them in flight (the peak).
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::process::exit(0);
    });
}
