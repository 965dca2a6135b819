//! Cancelling a run from outside (Ctrl-C, a request that went away) with a `CancelToken`.

use braid::{CancelToken, NodeStatus, RunError, RunOptions, RunStatus};
use serde_json::{Value, json};

use crate::util::{load, ms, run};

const YAML: &str = r#"
version: 1
name: cancel
state:
  done: { reducer: append, default: [] }
nodes:
  fast:
    kind: mock
    writes: [done]
    with: { latency: 100ms, output: { done: [fast] } }
  slow:
    kind: mock
    writes: [done]
    with: { latency: 10s, output: { done: [slow] } }
  after:
    kind: mock
    needs: [fast, slow]
"#;

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_reports_every_node_and_keeps_what_completed() {
    let wf = load(YAML);
    let token = CancelToken::new();
    let canceller = token.clone();
    let cancel_later = async move {
        tokio::time::sleep(ms(250)).await;
        canceller.cancel();
    };
    let options = RunOptions {
        cancel: Some(token.clone()),
        ..RunOptions::default()
    };
    let (r, ()) = tokio::join!(run(&wf, Value::Null, options), cancel_later);
    assert!(token.is_cancelled());
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.report.error, Some(RunError::Cancelled));
    assert_eq!(r.report.wall_time, ms(250));
    let status = |n: &str| r.report.node(n).unwrap().status;
    assert_eq!(status("fast"), NodeStatus::Succeeded);
    assert_eq!(status("slow"), NodeStatus::Cancelled);
    assert_eq!(status("after"), NodeStatus::NotStarted);
    assert_eq!(r.state["done"], json!(["fast"]));
}

#[tokio::test(start_paused = true)]
async fn a_token_cancelled_before_the_run_stops_it_at_once() {
    let token = CancelToken::new();
    token.cancel();
    let options = RunOptions {
        cancel: Some(token),
        ..RunOptions::default()
    };
    let r = run(&load(YAML), Value::Null, options).await;
    assert_eq!(r.report.error, Some(RunError::Cancelled));
    assert_eq!(r.report.wall_time, ms(0));
}
