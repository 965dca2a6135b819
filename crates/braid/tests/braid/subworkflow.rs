//! The `workflow` kind: another file run as one node, checked with its parent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use braid::{Code, Engine, RunOptions, RunStatus, Source};
use serde_json::json;

fn path(name: &str) -> String {
    format!(
        "{}/../../tests/workflows/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test(start_paused = true)]
async fn a_sub_workflow_runs_as_one_node() {
    let wf = Engine::new()
        .load_file(path("parent.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = wf
        .run(json!({ "query": "keys" }), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    // Its two retrievers run in parallel (300 ms), then the answer (100 ms).
    assert_eq!(r.report.wall_time, Duration::from_millis(400));
    assert_eq!(r.state["rag_results"], json!(["kw:keys", "vec:keys:5"]));
    assert_eq!(r.state["answer"], "kw:keys, vec:keys:5");
}

#[tokio::test(start_paused = true)]
async fn a_sequential_parent_runs_its_sub_workflow_sequentially() {
    let wf = Engine::new()
        .load_file(path("parent.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        mode: Some(braid::ExecutionMode::Sequential),
        ..RunOptions::default()
    };
    let r = wf.run(json!({ "query": "keys" }), options).await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    // The retrievers one after the other (200 + 300 ms), then the answer (100 ms).
    assert_eq!(r.report.wall_time, Duration::from_millis(600));
    assert_eq!(r.state["rag_results"], json!(["kw:keys", "vec:keys:5"]));
}

#[test]
fn a_cycle_of_files_is_reported_where_it_starts() {
    let text = std::fs::read_to_string(path("cycle-a.yaml")).unwrap();
    let c = Engine::new().compile(&Source::new(path("cycle-a.yaml"), text));
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code == Code::InvalidParams)
        .expect("an error on `path`");
    assert!(
        d.message.contains(
            "the workflow files form a cycle: cycle-a.yaml -> cycle-b.yaml -> cycle-a.yaml"
        ),
        "{}",
        d.message
    );
    assert_eq!(d.span().start.line, 8, "points at `path:`");
}

#[test]
fn unknown_sub_workflow_inputs_and_keys_are_errors() {
    let yaml = |with: &str| {
        format!(
            "version: 1\nname: p\nstate:\n  r: {{ reducer: replace }}\nnodes:\n  s:\n    kind: workflow\n    writes: [r]\n    with: {with}\n"
        )
    };
    let engine = Engine::new();
    let compile = |with: &str| engine.compile(&Source::new(path("inline.yaml"), yaml(with)));
    let c =
        compile("{ path: sub/retrieval.yaml, inputs: { qurey: x }, outputs: { r: documents } }");
    assert!(
        c.diagnostics[0]
            .message
            .contains("workflow `retrieval` has no input `qurey`"),
        "{:?}",
        c.diagnostics
    );
    let c = compile("{ path: sub/retrieval.yaml, inputs: { query: x }, outputs: { r: docs } }");
    assert!(
        c.diagnostics[0]
            .message
            .contains("workflow `retrieval` has no state key `docs`"),
        "{:?}",
        c.diagnostics
    );
    let c = compile("{ path: sub/missing.yaml, outputs: { r: docs } }");
    assert!(
        c.diagnostics[0].message.contains("cannot read"),
        "{:?}",
        c.diagnostics
    );
    assert!(c.plan.is_none());
}
