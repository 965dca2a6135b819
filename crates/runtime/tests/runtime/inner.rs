//! Inner work: a sub-workflow's run and a `map`'s items go through the runtime that runs their
//! node, so their events reach the parent's stream attributed to the node, and a context that
//! belongs to no run cannot run any; and the checks on a run continued from partial state.

use std::time::Duration;

use braid::{
    CancelToken, Engine, Event, NodeContext, NodeStatus, PartialRunError, PriorNode, RunError,
    RunOptions, RunStatus, Workflow,
};
use serde_json::{Map, Value, json};

use crate::util::{load, ms, run_events};

fn parent() -> Workflow {
    let path = format!(
        "{}/../../tests/workflows/parent.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    Engine::new()
        .load_file(path)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(start_paused = true)]
async fn a_sub_workflows_events_reach_the_parent_attributed_to_its_node() {
    let (r, events) = run_events(&parent(), json!({}), RunOptions::default()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    let nested: Vec<(String, &Event)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Nested { node, inner } => Some((node.to_string(), &**inner)),
            _ => None,
        })
        .collect();
    assert!(nested.iter().all(|(node, _)| node == "retrieve"));
    // The sub-run's whole life: it started, its nodes started and finished, it finished.
    assert!(
        matches!(nested.first(), Some((_, Event::RunStarted { workflow, .. })) if &**workflow == "retrieval")
    );
    assert!(matches!(
        nested.last(),
        Some((
            _,
            Event::RunFinished {
                status: RunStatus::Succeeded,
                ..
            }
        ))
    ));
    let finished = nested
        .iter()
        .filter(|(_, e)| matches!(e, Event::NodeFinished { .. }))
        .count();
    let sub_nodes = match nested.first() {
        Some((_, Event::RunStarted { nodes, .. })) => *nodes,
        _ => 0,
    };
    assert_eq!(finished, sub_nodes);
    // And it is serialized with the inner event under `inner`.
    let (_, first) = nested[0];
    let wire = serde_json::to_value(Event::Nested {
        node: "retrieve".into(),
        inner: Box::new(first.clone()),
    })
    .unwrap();
    assert_eq!(wire["event"], "nested");
    assert_eq!(wire["inner"]["event"], "run_started");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_parent_stops_its_sub_workflow() {
    let cancel = CancelToken::new();
    let options = RunOptions {
        cancel: Some(cancel.clone()),
        ..RunOptions::default()
    };
    let wf = parent();
    let run = tokio::spawn(async move { wf.run(json!({}), options).await });
    tokio::time::sleep(ms(100)).await;
    cancel.cancel();
    let r = run.await.unwrap().unwrap();
    assert_eq!(r.report.error, Some(RunError::Cancelled));
    assert_eq!(
        r.report.node("retrieve").unwrap().status,
        NodeStatus::Cancelled
    );
    assert_eq!(r.report.wall_time, ms(100));
}

#[tokio::test(start_paused = true)]
async fn inner_work_needs_a_runtime() {
    let ctx = NodeContext::new(
        "by_hand".into(),
        1,
        0,
        json!({}).into(),
        json!({}).into(),
        Default::default(),
    );
    let plan = parent().plan().clone();
    let err = ctx.run_plan(plan, Map::new()).err().expect("no runtime");
    assert!(!err.retryable);
    assert_eq!(
        err.message,
        "node `by_hand` runs inner work, which needs a runtime: run it as part of a workflow"
    );
}

const CHAIN: &str = r#"
version: 1
name: chain
state:
  log: { reducer: append, default: [] }
  n: { reducer: sum, default: 0 }
nodes:
  a:
    kind: mock
    writes: [log]
    with: { latency: 10ms, output: { log: [a] } }
  b:
    kind: mock
    needs: [a]
    writes: [log, n]
    with: { latency: 10ms, output: { log: [b], n: 1 } }
  c:
    kind: mock
    needs: [b]
    writes: [log]
    with: { latency: 10ms, output: { log: [c] } }
"#;

fn prior(node: &str, status: NodeStatus, writes: Value) -> PriorNode {
    PriorNode {
        node: node.to_owned(),
        status,
        attempts: 1,
        start: Some(Duration::ZERO),
        end: Some(ms(10)),
        failure: None,
        writes: writes.as_object().cloned().unwrap_or_default(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_continued_run_keeps_settled_nodes_and_runs_the_rest() {
    let wf = load(CHAIN);
    let settled = vec![
        prior("a", NodeStatus::Succeeded, json!({ "log": ["a"] })),
        prior("b", NodeStatus::Succeeded, json!({ "log": ["b"], "n": 1 })),
    ];
    let r = wf
        .run_from(settled, json!({}), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.state, json!({ "log": ["a", "b", "c"], "n": 1 }));
    // Only `c` ran, from the continued run's start.
    assert_eq!(r.report.wall_time, ms(10));
    assert_eq!(r.report.node("c").unwrap().start, Some(Duration::ZERO));
    assert_eq!(r.report.node("a").unwrap().attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn settled_nodes_that_cannot_continue_a_run_are_refused() {
    let wf = load(CHAIN);
    let refused = |settled: Vec<PriorNode>| {
        let wf = wf.clone();
        async move {
            match wf.run_from(settled, json!({}), RunOptions::default()).await {
                Err(braid::Error::Partial(e)) => e,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };
    let ok = |n: &str| prior(n, NodeStatus::Succeeded, json!({}));
    assert_eq!(
        refused(vec![ok("zz")]).await,
        PartialRunError::UnknownNode {
            workflow: "chain".to_owned(),
            node: "zz".to_owned()
        }
    );
    assert_eq!(
        refused(vec![ok("a"), ok("a")]).await,
        PartialRunError::Duplicate {
            node: "a".to_owned()
        }
    );
    assert_eq!(
        refused(vec![ok("b")]).await,
        PartialRunError::NeedNotSettled {
            node: "b".to_owned(),
            need: "a".to_owned()
        }
    );
    assert_eq!(
        refused(vec![prior("a", NodeStatus::Failed, json!({}))]).await,
        PartialRunError::NotSettled {
            node: "a".to_owned(),
            status: "failed"
        }
    );
    assert_eq!(
        refused(vec![prior(
            "a",
            NodeStatus::Skipped,
            json!({ "log": ["a"] })
        )])
        .await,
        PartialRunError::InvalidWrites {
            node: "a".to_owned(),
            message: "a skipped node writes nothing".to_owned()
        }
    );
    let bad = refused(vec![prior("a", NodeStatus::Succeeded, json!({ "n": 1 }))]).await;
    assert_eq!(
        bad,
        PartialRunError::InvalidWrites {
            node: "a".to_owned(),
            message: "the node wrote `n`, which is not in its `writes` (`log`)".to_owned()
        }
    );
    assert_eq!(
        bad.to_string(),
        "node `a`: the node wrote `n`, which is not in its `writes` (`log`)"
    );
}
