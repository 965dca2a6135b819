//! Integration tests of the built-in node kinds, run through the `braid` facade: one test binary
//! (ripgrep's `tests/tests.rs` layout, so the crate links once), one module per kind.
//!
//! * `tests/nodes/`: the kinds that talk to a network service, against a local stub (`stub`):
//!   `http`, `llm`, `secrets` and their redaction, and the example workflow.
//! * `tests/kinds/`: `exec` with real processes (real time) and `map` (virtual time), with the
//!   helpers below.

#[path = "nodes/stub.rs"]
mod stub;

#[path = "nodes/http.rs"]
mod http;

#[path = "nodes/llm.rs"]
mod llm;

#[path = "nodes/secrets.rs"]
mod secrets;

#[path = "nodes/secrets_prop.rs"]
mod secrets_prop;

#[path = "nodes/example.rs"]
mod example;

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
