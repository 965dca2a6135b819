//! Braid through its public API: each workload is written to a YAML file, loaded with
//! `Engine::load_file`, and run with `Workflow::run` (input checking included).
//!
//! Every node is the registered kind `bench_node`: its node code is the floor's and the peers'
//! ([`crate::node_body`]: a plain `tokio::time::sleep` of the node's latency, or the memory
//! workload's counted block), then it returns the node's static output for Braid's reducers to
//! fold. So the node code is the same for every runner, and Braid's nodes are spawned tasks, as
//! every node doing I/O is (issue 16, item 23). The `braid-builtin` runner runs the same
//! workloads as a Braid user would write them with the built-in kinds instead (`noop`, which
//! runs in place, and `mock`, which aims its sleep 0.9 ms early), for comparison.

use std::path::PathBuf;
use std::sync::Arc;

use braid::{
    BuildContext, BuildError, Engine, Node, NodeContext, NodeFuture, NodeKind, RunOptions,
    RunStatus, Workflow,
};
use serde_json::{Value, json};

use crate::workloads::Workload;
use crate::{IN_FLIGHT, Runner};

/// The node code every runner shares, as a Braid node kind registered from Rust.
struct BenchKind;

/// One node: the floor's body, then its output.
struct BenchNode {
    latency_ms: u64,
    probe: bool,
    output: Value,
}

impl Node for BenchNode {
    fn call(&self, _ctx: NodeContext) -> NodeFuture {
        let (latency_ms, probe, output) = (self.latency_ms, self.probe, self.output.clone());
        Box::pin(async move {
            crate::node_body(latency_ms, probe).await;
            Ok(output)
        })
    }
}

impl NodeKind for BenchKind {
    fn name(&self) -> &str {
        "bench_node"
    }
    fn params_schema(&self, _: &mut braid::schemars::SchemaGenerator) -> Option<braid::schemars::Schema> {
        None
    }
    fn build(&self, params: Option<&Value>, _: &mut BuildContext<'_>) -> Result<Arc<dyn Node>, BuildError> {
        let p = params.cloned().unwrap_or_else(|| json!({}));
        Ok(Arc::new(BenchNode {
            latency_ms: p.get("latency_ms").and_then(Value::as_u64).unwrap_or(0),
            probe: p.get("probe").and_then(Value::as_bool).unwrap_or(false),
            output: p.get("output").cloned().unwrap_or_else(|| json!({})),
        }))
    }
}

fn engine() -> Engine {
    Engine::builder()
        .node_kind(Arc::new(BenchKind))
        // The built-in variant's blocking node: a handler registered by the embedding program,
        // as a service would register its own node kinds.
        .handler("probe_sleep", |_ctx: NodeContext| async move {
            IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(crate::BLOCK).await;
            Ok(json!({}))
        })
        .build()
}

/// Where the generated YAML files go (inspectable after a run).
pub fn yaml_path(w: &Workload, builtin: bool) -> PathBuf {
    let suffix = if builtin { "-builtin" } else { "" };
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/workloads").join(format!("{}{suffix}.yaml", w.name))
}

fn load(w: &Workload, builtin: bool) -> Workflow {
    let path = yaml_path(w, builtin);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("target/workloads");
    let yaml = if builtin { w.to_yaml_builtin() } else { w.to_yaml() };
    std::fs::write(&path, yaml).expect("the workload's YAML file");
    match engine().load_file(&path) {
        Ok(wf) => wf,
        Err(e) => panic!("{e}"),
    }
}

async fn run(wf: Workflow) {
    let r = wf.run(json!({}), RunOptions::default()).await.expect("inputs");
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
}

/// Braid, every node the shared node code (`bench_node`).
pub struct Braid;

impl Runner for Braid {
    type Prepared = Workflow;
    type Built = Workflow;

    fn prepare(w: &Workload) -> Workflow {
        load(w, false)
    }

    fn build(p: &Workflow) -> Workflow {
        p.clone()
    }

    async fn exec(wf: Workflow) {
        run(wf).await
    }
}

/// Braid with its built-in kinds (`noop`, `mock`), as a user writes a workflow without code.
pub struct BraidBuiltin;

impl Runner for BraidBuiltin {
    type Prepared = Workflow;
    type Built = Workflow;

    fn prepare(w: &Workload) -> Workflow {
        load(w, true)
    }

    fn build(p: &Workflow) -> Workflow {
        p.clone()
    }

    async fn exec(wf: Workflow) {
        run(wf).await
    }
}
