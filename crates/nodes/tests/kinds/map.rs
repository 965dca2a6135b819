//! `map`: fan-out over a run-time list, on virtual time.

use std::time::Duration;

use braid::{Engine, Event, NodeContext, NodeError, RunOptions, RunStatus};
use serde_json::{Value, json};

use crate::{failure, load, load_with, run};

/// An engine with `sleepy`: sleeps `(10 - item) * 10` ms, returns `{ v: item * 2 }`, and panics
/// on item 13.
fn engine() -> Engine {
    Engine::builder()
        .handler("sleepy", |ctx: NodeContext| async move {
            let item = ctx
                .vars()
                .and_then(|v| v["item"].as_u64())
                .ok_or_else(|| NodeError::new("no item"))?;
            assert_ne!(item, 13, "unlucky item");
            tokio::time::sleep(Duration::from_millis((10 - item.min(10)) * 10)).await;
            Ok(json!({ "v": item * 2, "index": ctx.vars().map(|v| v["index"].clone()) }))
        })
        .build()
}

fn workflow(with: &str) -> String {
    format!(
        r#"
version: 1
name: map-test
inputs:
  items: {{ type: any, default: [0, 1, 2, 3, 4, 5] }}
state:
  results: {{ reducer: replace }}
nodes:
  fan:
    kind: map
    writes: [results]
    with: {with}
"#
    )
}

#[tokio::test(start_paused = true)]
async fn results_are_in_item_order_whatever_finishes_first() {
    let wf = load_with(
        &engine(),
        &workflow("{ over: '{{ inputs.items }}', into: results, node: { kind: sleepy } }"),
    );
    let r = run(&wf, json!({})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    // Item 0 is the slowest (100 ms) and item 5 the fastest (50 ms).
    let v: Vec<Value> = r.state["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["v"].clone())
        .collect();
    assert_eq!(v, [0, 2, 4, 6, 8, 10]);
    assert_eq!(r.state["results"][4]["index"], 4);
    // All at once by default: the slowest item sets the node's time.
    assert_eq!(
        r.report.node("fan").unwrap().duration(),
        Duration::from_millis(100)
    );
}

#[tokio::test(start_paused = true)]
async fn inner_templates_see_item_and_index_and_collect_picks_one_key() {
    let wf = load(
        r#"
version: 1
name: map-mock
inputs:
  factor: { type: integer, default: 10 }
state:
  docs: { reducer: replace }
  doubled: { reducer: append, default: [-1] }
nodes:
  fetch:
    kind: transform
    writes: [docs]
    with: { output: { docs: [{ n: 1 }, { n: 2 }, { n: 3 }] } }
  fan:
    kind: map
    needs: [fetch]
    writes: [doubled]
    with:
      over: "{{ state.docs }}"
      into: doubled
      collect: value
      node:
        kind: mock
        with:
          latency: 10ms
          output: { value: "{{ item.n * inputs.factor + index }}", ignored: true }
"#,
    );
    let r = run(&wf, json!({})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    // `append` folds the list of results into the default.
    assert_eq!(r.state["doubled"], json!([-1, 10, 21, 32]));
}

#[tokio::test(start_paused = true)]
async fn max_concurrency_bounds_items_in_flight() {
    let mock = "{ kind: mock, with: { latency: 100ms, output: { x: '{{ item }}' } } }";
    for (limit, expect_ms) in [
        ("max_concurrency: 2,", 300),
        ("max_concurrency: 4,", 200),
        ("", 100),
    ] {
        let wf = load(&workflow(&format!(
            "{{ over: '{{{{ inputs.items }}}}', into: results, {limit} node: {mock} }}"
        )));
        let r = run(&wf, json!({})).await;
        assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
        assert_eq!(
            r.report.node("fan").unwrap().duration(),
            Duration::from_millis(expect_ms),
            "{limit}"
        );
        assert_eq!(r.state["results"].as_array().unwrap().len(), 6);
    }
}

#[tokio::test(start_paused = true)]
async fn a_sequential_run_runs_items_one_at_a_time() {
    let mock = "{ kind: mock, with: { latency: 100ms, output: { x: '{{ item }}' } } }";
    let wf = load(&workflow(&format!(
        "{{ over: '{{{{ inputs.items }}}}', into: results, max_concurrency: 4, node: {mock} }}"
    )));
    let options = RunOptions {
        mode: Some(braid::ExecutionMode::Sequential),
        ..RunOptions::default()
    };
    let r = wf.run(json!({}), options).await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    // Six items of 100 ms, one at a time, whatever the map's own limit.
    assert_eq!(
        r.report.node("fan").unwrap().duration(),
        Duration::from_millis(600)
    );
    assert_eq!(r.state["results"].as_array().unwrap().len(), 6);
}

/// Items without `v` fail: the inner transform reads `item.v`, and undefined is an error.
const SOME_FAIL: &str = "[{ v: 1 }, {}, { v: 3 }, {}, { v: 5 }, { v: 6 }, { v: 7 }, { v: 8 }]";

async fn with_tolerance(tolerance: &str, on_item_error: &str) -> braid::RunResult {
    let wf = load(&workflow(&format!(
        "{{ over: {SOME_FAIL}, into: results, tolerated_failures: {tolerance}, {on_item_error} node: {{ kind: transform, with: {{ output: {{ v: '{{{{ item.v }}}}' }} }} }} }}"
    )));
    run(&wf, json!({})).await
}

#[tokio::test(start_paused = true)]
async fn tolerated_failures_as_a_count() {
    let r = with_tolerance("2", "").await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    let v: Vec<Value> = r.state["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["v"].clone())
        .collect();
    assert_eq!(v, [1, 3, 5, 6, 7, 8], "failed items are left out");

    let r = with_tolerance("2", "on_item_error: fill_null,").await;
    assert_eq!(r.state["results"][1], Value::Null);
    assert_eq!(r.state["results"][2], json!({ "v": 3 }));
    assert_eq!(r.state["results"].as_array().unwrap().len(), 8);

    let r = with_tolerance("1", "").await;
    assert_eq!(r.status, RunStatus::Failed);
    let (kind, message) = failure(&r, "fan");
    assert_eq!(kind, "error");
    assert!(
        message.starts_with(
            "2 of 8 items failed, more than the 1 tolerated; item 1: error: template:"
        ),
        "{message}"
    );
    assert!(message.contains("item 3: "), "{message}");
}

#[tokio::test(start_paused = true)]
async fn tolerated_failures_as_a_percentage() {
    // 25% of 8 items is 2.
    let r = with_tolerance("'25%'", "").await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    // 20% of 8 items is 1.6: one item.
    let r = with_tolerance("'20%'", "").await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        failure(&r, "fan").1.contains("more than the 1 tolerated"),
        "{}",
        failure(&r, "fan").1
    );
}

#[tokio::test(start_paused = true)]
async fn seeded_random_failures_are_per_item_and_replay() {
    let wf = load(&workflow(
        "{ over: '{{ range(40) | list }}', into: results, tolerated_failures: '100%', on_item_error: fill_null, node: { kind: mock, with: { fail_rate: 0.5, output: { i: '{{ index }}' } } } }",
    ));
    let a = run(&wf, json!({})).await;
    let b = run(&wf, json!({})).await;
    assert_eq!(a.state, b.state);
    let failed = a.state["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v.is_null())
        .count();
    assert!(
        (5..35).contains(&failed),
        "{failed} of 40 failed at a rate of 0.5"
    );
}

#[tokio::test(start_paused = true)]
async fn over_must_give_a_list() {
    let wf = load(
        r#"
version: 1
name: map-not-a-list
inputs: { n: { type: any } }
state: { results: { reducer: replace } }
nodes:
  fan:
    kind: map
    writes: [results]
    retry: { attempts: 3 }
    with: { over: "{{ inputs.n }}", into: results, node: { kind: noop } }
"#,
    );
    let r = run(&wf, json!({ "n": 3 })).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(
        failure(&r, "fan"),
        (
            "error".to_owned(),
            "`over` gave a number, not a list of items".to_owned()
        )
    );
    assert_eq!(r.report.node("fan").unwrap().attempts, 1, "permanent");
    let r = run(&wf, json!({ "n": { "a": 1 } })).await;
    assert_eq!(
        failure(&r, "fan").1,
        "`over` gave an object, not a list of items"
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_list_gives_empty_results() {
    let wf = load_with(
        &engine(),
        &workflow("{ over: '{{ inputs.items }}', into: results, node: { kind: sleepy } }"),
    );
    let r = run(&wf, json!({ "items": [] })).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    assert_eq!(r.state["results"], json!([]));
    assert_eq!(r.report.node("fan").unwrap().duration(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_item_is_a_failure_not_a_crash() {
    let with = "{ over: '{{ inputs.items }}', into: results, tolerated_failures: 1, node: { kind: sleepy } }";
    let wf = load_with(&engine(), &workflow(with));
    let r = run(&wf, json!({ "items": [1, 13, 2] })).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    let v: Vec<Value> = r.state["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["v"].clone())
        .collect();
    assert_eq!(v, [2, 4]);

    let wf = load(&workflow(
        "{ over: [1, 2], into: results, node: { kind: mock, with: { panic: true } } }",
    ));
    let r = run(&wf, json!({})).await;
    assert_eq!(r.status, RunStatus::Failed);
    let (kind, message) = failure(&r, "fan");
    assert_eq!(kind, "error");
    assert!(
        message.contains("item 0: panic: the inner node panicked: mock node `fan` panicked"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn item_timeout_and_node_timeout() {
    let hang = "{ kind: mock, with: { latency: 50ms, hang: true } }";
    let wf = load(&workflow(&format!(
        "{{ over: [1, 2, 3], into: results, item_timeout: 200ms, tolerated_failures: 3, on_item_error: fill_null, node: {hang} }}"
    )));
    let r = run(&wf, json!({})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    assert_eq!(r.state["results"], json!([null, null, null]));
    assert_eq!(
        r.report.node("fan").unwrap().duration(),
        Duration::from_millis(200)
    );

    // The node's own timeout drops the map's future, and with it every item in flight.
    let yaml = workflow(&format!(
        "{{ over: [1, 2, 3], into: results, node: {hang} }}"
    ))
    .replace(
        "    writes: [results]",
        "    timeout: 300ms\n    writes: [results]",
    );
    let r = run(&load(&yaml), json!({})).await;
    assert_eq!(failure(&r, "fan").0, "timeout");
    assert_eq!(r.report.wall_time, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn every_finished_item_is_a_progress_event() {
    let wf = load_with(
        &engine(),
        &workflow(
            "{ over: '{{ inputs.items }}', into: results, tolerated_failures: 1, node: { kind: sleepy } }",
        ),
    );
    let (fut, mut rx) = wf
        .run_with_events(json!({ "items": [1, 13, 2] }), RunOptions::default())
        .unwrap();
    let r = fut.await;
    assert_eq!(r.status, RunStatus::Succeeded);
    let mut progress = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::NodeMessage { node, payload, .. } = e {
            assert_eq!(&*node, "fan");
            progress.push((payload["map_item"].clone(), payload["ok"].clone()));
        }
    }
    // The panic is at once; then item 2 (80 ms), then item 1 (90 ms).
    assert_eq!(
        progress,
        [
            (json!(1), json!(false)),
            (json!(2), json!(true)),
            (json!(0), json!(true))
        ]
    );
}

#[test]
fn the_inner_node_is_checked_with_the_workflow() {
    let engine = Engine::new();
    for (with, code, fragment) in [
        (
            "{ over: 'state.docs', into: results, node: { kind: noop } }",
            braid::Code::InvalidParams,
            "must be one `{{ expression }}`",
        ),
        (
            "{ over: [1], into: results, node: { kind: nope } }",
            braid::Code::InvalidParams,
            "unknown kind `nope`",
        ),
        (
            "{ over: [1], into: results, node: { kind: mock, with: { latency: soon } } }",
            braid::Code::InvalidParams,
            "invalid duration `soon`",
        ),
        (
            "{ over: [1], into: results, node: { kind: transform, with: { output: { x: '{{ item +  }}' } } } }",
            braid::Code::TemplateSyntax,
            "does not compile",
        ),
        (
            "{ over: [1], into: results, tolerated_failures: '150%', node: { kind: noop } }",
            braid::Code::InvalidParams,
            "150%",
        ),
        (
            "{ over: [1], into: results, node: { kind: transform, with: { output: { x: '{{ state.elsewhere }}' } } } }",
            braid::Code::UnknownReference,
            "elsewhere",
        ),
    ] {
        let c = engine.compile(&braid::Source::new("bad.yaml", workflow(with)));
        assert!(c.plan.is_none(), "{with} compiled");
        let found: Vec<(braid::Code, &str)> = c
            .diagnostics
            .iter()
            .map(|d| (d.code, d.message.as_str()))
            .collect();
        assert!(
            found
                .iter()
                .any(|(c, m)| *c == code && m.contains(fragment)),
            "{with}: {found:?}"
        );
    }
}
