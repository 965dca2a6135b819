//! Runs that wait for a person: a `wait` node without an answer ends `waiting` and holds back only
//! its dependents; given its answer (from the start, or when the run is continued from its
//! journal) it writes it; a bad or expired answer is a failure its `on_error` decides.

use std::sync::{Arc, Mutex};

use braid::{
    Answer, Event, ExecutionMode, FailureKind, NodeSettled, NodeStatus, Observer, PartialRun,
    PartialRunError, PriorNode, Recorded, RunError, RunOptions, RunStatus,
};
use serde_json::{Value, json};

use crate::util::{Recorder, at, load, node, run, run_events, span, state_text, status};

/// `draft` (100 ms) → `approve` (waits) → `publish`; `side` (300 ms) is independent of the answer.
fn approval(on_error: &str) -> String {
    format!(
        r#"
version: 1
name: approval
inputs:
  topic: {{ type: string, default: braids }}
state:
  draft: {{ reducer: replace }}
  side: {{ reducer: replace }}
  approval: {{ reducer: replace }}
  published: {{ reducer: replace }}
nodes:
  draft:
    kind: mock
    writes: [draft]
    with: {{ latency: 100ms, output: {{ draft: "a post about {{{{ inputs.topic }}}}" }} }}
  side:
    kind: mock
    writes: [side]
    with: {{ latency: 300ms, output: {{ side: 1 }} }}
  approve:
    kind: wait
    needs: [draft]
    writes: [approval]
    retry: {{ attempts: 3 }}
{on_error}
    with:
      prompt: "Publish {{{{ state.draft }}}}?"
      schema:
        type: object
        properties: {{ approved: {{ type: boolean }}, note: {{ type: string }} }}
        required: [approved]
      output: approval
      deadline: 24h
  publish:
    kind: mock
    needs: [approve]
    when: state.approval.approved
    writes: [published]
    with: {{ latency: 50ms, output: {{ published: "{{{{ state.draft }}}}" }} }}
"#
    )
}

const CONTINUE: &str = "    on_error: continue\n    fallback: { approval: { approved: false } }";

/// Keeps each node's status and prompt as the observer is told them.
#[derive(Default)]
struct Prompts(Mutex<Vec<(String, NodeStatus, Option<String>)>>);

impl Observer for Prompts {
    fn settled(&self, node: &NodeSettled<'_>) -> Option<Recorded> {
        self.0.lock().expect("not poisoned").push((
            node.node().to_string(),
            node.status(),
            node.prompt().map(str::to_owned),
        ));
        None
    }
}

fn answered(value: Value) -> RunOptions {
    RunOptions {
        answers: vec![("approve".to_owned(), Answer::Value(value))],
        ..RunOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_without_the_answer_waits_and_runs_every_other_branch() {
    let wf = load(&approval(""));
    for mode in [ExecutionMode::Parallel, ExecutionMode::Sequential] {
        let prompts = Arc::new(Prompts::default());
        let options = RunOptions {
            mode: Some(mode),
            observer: Some(prompts.clone()),
            ..RunOptions::default()
        };
        let (r, events) = run_events(&wf, Value::Null, options).await;
        assert_eq!(r.status, RunStatus::Waiting, "{mode:?}");
        assert_eq!(r.report.status, RunStatus::Waiting);
        assert_eq!(r.report.error, None);
        assert_eq!(status(&r, "draft"), NodeStatus::Succeeded);
        assert_eq!(status(&r, "side"), NodeStatus::Succeeded);
        assert_eq!(status(&r, "approve"), NodeStatus::Waiting);
        assert_eq!(status(&r, "publish"), NodeStatus::NotStarted);
        let approve = node(&r, "approve");
        assert_eq!(
            approve.prompt.as_deref(),
            Some("Publish a post about braids?")
        );
        // Reached when `draft` ended; no attempt of its own, whatever its `retry` says.
        assert_eq!(approve.attempts, 0);
        assert_eq!(approve.failure, None);
        assert_eq!(r.state["draft"], "a post about braids");
        assert_eq!(r.state["side"], 1);
        assert_eq!(r.state["approval"], Value::Null);
        assert_eq!(r.state["published"], Value::Null);
        let seen = prompts.0.lock().expect("not poisoned").clone();
        assert!(
            seen.contains(&(
                "approve".to_owned(),
                NodeStatus::Waiting,
                Some("Publish a post about braids?".to_owned())
            )),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .filter(|(n, ..)| n != "approve")
                .all(|(_, _, p)| p.is_none()),
            "{seen:?}"
        );
        let finished: Vec<(&str, NodeStatus)> = events
            .iter()
            .filter_map(|e| match e {
                Event::NodeFinished { node, status, .. } => Some((&**node, *status)),
                _ => None,
            })
            .collect();
        assert!(finished.contains(&("approve", NodeStatus::Waiting)));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::RunFinished {
                status: RunStatus::Waiting,
                ..
            }
        )));
        match mode {
            ExecutionMode::Parallel => {
                assert_eq!(span(&r, "approve"), at(100, 100));
                assert_eq!(span(&r, "side"), at(0, 300));
                assert_eq!(r.report.wall_time, crate::util::ms(300));
            }
            ExecutionMode::Sequential => {
                // Canonical order: draft, side, then approve.
                assert_eq!(span(&r, "approve"), at(400, 400));
                assert_eq!(r.report.wall_time, crate::util::ms(400));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_wins_over_waiting() {
    let yaml = approval("").replace(
        "with: { latency: 300ms, output: { side: 1 } }",
        "with: { latency: 300ms, fail_rate: 1.0 }",
    );
    let wf = load(&yaml);
    let r = run(&wf, Value::Null, RunOptions::default()).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(status(&r, "approve"), NodeStatus::Waiting);
    assert_eq!(status(&r, "side"), NodeStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn the_answer_becomes_the_nodes_output_and_its_dependents_run() {
    let wf = load(&approval(""));
    let answer = json!({ "approved": true, "note": "lovely" });
    let r = run(&wf, Value::Null, answered(answer.clone())).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    assert_eq!(status(&r, "approve"), NodeStatus::Succeeded);
    assert_eq!(node(&r, "approve").attempts, 1);
    assert_eq!(node(&r, "approve").prompt, None);
    assert_eq!(r.state["approval"], answer);
    assert_eq!(r.state["published"], "a post about braids");
    assert_eq!(span(&r, "publish"), at(100, 150));
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_breaks_the_schema_fails_the_node_for_good() {
    let wf = load(&approval(""));
    let r = run(&wf, Value::Null, answered(json!({ "approved": "yes" }))).await;
    assert_eq!(r.status, RunStatus::Failed);
    let approve = node(&r, "approve");
    assert_eq!(approve.status, NodeStatus::Failed);
    // Permanent: its `retry` of 3 attempts does not apply.
    assert_eq!(approve.attempts, 1);
    let failure = approve.failure.clone().expect("a failure");
    assert_eq!(failure.kind, FailureKind::InvalidOutput);
    assert!(failure.message.contains("at `/approved`"), "{failure:?}");
    assert_eq!(status(&r, "publish"), NodeStatus::NotStarted);
}

#[tokio::test(start_paused = true)]
async fn an_expired_answer_falls_back_or_fails_as_on_error_says() {
    let expired = || RunOptions {
        answers: vec![("approve".to_owned(), Answer::Expired)],
        ..RunOptions::default()
    };
    let wf = load(&approval(CONTINUE));
    let r = run(&wf, Value::Null, expired()).await;
    assert_eq!(r.status, RunStatus::Degraded, "{:?}", r.report.error);
    assert_eq!(status(&r, "approve"), NodeStatus::FellBack);
    let failure = node(&r, "approve").failure.clone().expect("a failure");
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert_eq!(failure.message, "no answer within 24h");
    assert_eq!(r.state["approval"], json!({ "approved": false }));
    assert_eq!(status(&r, "publish"), NodeStatus::Skipped);

    let wf = load(&approval(""));
    let r = run(&wf, Value::Null, expired()).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(node(&r, "approve").attempts, 1);
    match &r.report.error {
        Some(RunError::NodeFailed { node, failure }) => {
            assert_eq!(node, "approve");
            assert_eq!(failure.kind, FailureKind::Timeout);
        }
        other => panic!("expected the node's failure, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_continued_with_the_answer_ends_as_if_answered_from_the_start() {
    let wf = load(&approval(CONTINUE));
    let answer = json!({ "approved": true });
    for mode in [ExecutionMode::Parallel, ExecutionMode::Sequential] {
        let journal = Arc::new(Recorder::default());
        let first = run(
            &wf,
            Value::Null,
            RunOptions {
                mode: Some(mode),
                observer: Some(journal.clone()),
                run_id: Some(Arc::from("run-1")),
                ..RunOptions::default()
            },
        )
        .await;
        assert_eq!(first.status, RunStatus::Waiting);
        let ends = journal.ends();
        // The waiting node is not a prior: it runs again to take its answer.
        let waiting: Vec<PriorNode> = ends
            .iter()
            .filter(|e| e.status == NodeStatus::Waiting)
            .cloned()
            .collect();
        assert_eq!(waiting.len(), 1);
        assert!(matches!(
            PartialRun::new(wf.plan().clone(), waiting),
            Err(PartialRunError::NotSettled {
                status: "waiting",
                ..
            })
        ));
        let priors: Vec<PriorNode> = ends
            .into_iter()
            .filter(|e| {
                matches!(
                    e.status,
                    NodeStatus::Succeeded | NodeStatus::FellBack | NodeStatus::Skipped
                )
            })
            .collect();
        let names: Vec<&str> = priors.iter().map(|p| p.node.as_str()).collect();
        assert!(
            names.contains(&"draft") && names.contains(&"side"),
            "{names:?}"
        );
        let options = || RunOptions {
            mode: Some(mode),
            run_id: Some(Arc::from("run-1")),
            ..answered(answer.clone())
        };
        let resumed = wf
            .run_from(priors, Value::Null, options())
            .await
            .expect("the priors continue the run");
        assert_eq!(resumed.status, RunStatus::Succeeded, "{mode:?}");
        assert_eq!(status(&resumed, "draft"), NodeStatus::Succeeded);
        assert_eq!(status(&resumed, "approve"), NodeStatus::Succeeded);
        assert_eq!(status(&resumed, "publish"), NodeStatus::Succeeded);
        let whole = run(&wf, Value::Null, options()).await;
        assert_eq!(state_text(&resumed), state_text(&whole), "{mode:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_prompt_that_does_not_render_is_a_failure_on_error_decides() {
    let yaml = approval(CONTINUE).replace(
        "Publish {{ state.draft }}?",
        "Publish {{ state.draft.missing }}?",
    );
    let wf = load(&yaml);
    let r = run(&wf, Value::Null, RunOptions::default()).await;
    assert_eq!(r.status, RunStatus::Degraded, "{:?}", r.report);
    assert_eq!(status(&r, "approve"), NodeStatus::FellBack);
    assert_eq!(node(&r, "approve").prompt, None);
}
