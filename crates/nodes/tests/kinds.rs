//! The `exec` and `map` kinds, run through the facade: real processes for `exec` (real time), and
//! virtual time for `map`.

#[path = "kinds/exec.rs"]
mod exec;
#[path = "kinds/map.rs"]
mod map;

use braid::{Engine, RunOptions, RunResult, Workflow};
use serde_json::Value;

/// Compiles a workflow with the built-in kinds, panicking with its diagnostics when invalid.
pub(crate) fn load(yaml: &str) -> Workflow {
    load_with(&Engine::new(), yaml)
}

/// Compiles a workflow with the given engine.
pub(crate) fn load_with(engine: &Engine, yaml: &str) -> Workflow {
    engine
        .load_str("test.yaml", yaml)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a workflow once with a fixed seed.
pub(crate) async fn run(wf: &Workflow, inputs: Value) -> RunResult {
    wf.run(
        inputs,
        RunOptions {
            seed: 1,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The failure of a node: its kind's name and its message.
pub(crate) fn failure(r: &RunResult, node: &str) -> (String, String) {
    let n = r
        .report
        .node(node)
        .unwrap_or_else(|| panic!("no node `{node}`"));
    let f = n
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("node `{node}` did not fail: {:?}", n.status));
    (f.kind.as_str().to_owned(), f.message.clone())
}
