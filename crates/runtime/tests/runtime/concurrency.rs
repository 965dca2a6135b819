//! Ready-set scheduling: a node starts the moment its last need finishes (no supersteps),
//! `max_concurrency` bounds the nodes in flight, and a run's waiting nodes are polled by the
//! run's own task.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use braid::{Engine, Event, NodeContext, RunOptions, RunStatus};
use serde_json::json;

use crate::util::{at, load, load_with, ms, run, run_default, run_events, span};

const STRAGGLER: &str = r#"
version: 1
name: straggler
nodes:
  a: { kind: mock, with: { latency: 100ms } }
  b: { kind: mock, with: { latency: 300ms } }
  c: { kind: mock, needs: [a], with: { latency: 100ms } }
  d: { kind: mock, needs: [c, b] }
"#;

#[tokio::test(start_paused = true)]
async fn a_slow_branch_does_not_hold_back_a_fast_one() {
    let r = run_default(&load(STRAGGLER)).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(span(&r, "a"), at(0, 100));
    assert_eq!(
        span(&r, "c"),
        at(100, 200),
        "c starts when a ends, not when b does"
    );
    assert_eq!(span(&r, "b"), at(0, 300));
    assert_eq!(span(&r, "d"), at(300, 300));
    // A superstep engine would take 400 ms: {a, b}, then {c}, then {d}.
    assert_eq!(r.report.wall_time, ms(300));
    assert_eq!(
        r.report
            .critical_path
            .iter()
            .map(|s| &**s)
            .collect::<Vec<_>>(),
        ["b", "d"]
    );
}

fn independent(n: usize, max_concurrency: u32) -> String {
    let mut y = format!(
        "version: 1\nname: wide\nexecution: {{ max_concurrency: {max_concurrency} }}\nnodes:\n"
    );
    for i in 0..n {
        writeln!(y, "  n{i:02}: {{ kind: mock, with: {{ latency: 100ms }} }}")
            .expect("writing to a String");
    }
    y
}

#[tokio::test(start_paused = true)]
async fn max_concurrency_bounds_nodes_in_flight() {
    let wf = load(&independent(10, 3));
    let (r, events) = run_events(&wf, json!({}), RunOptions::default()).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.report.wall_time, ms(400));
    // Canonical order, three at a time.
    for (i, n) in r.report.nodes.iter().enumerate() {
        let start = 100 * (i as u64 / 3);
        assert_eq!((n.start, n.end), at(start, start + 100), "{}", n.name);
    }

    let (mut in_flight, mut peak, mut started, mut finished) = (0i32, 0i32, 0, 0);
    for e in &events {
        match e {
            Event::NodeStarted { .. } => {
                in_flight += 1;
                started += 1;
            }
            Event::NodeFinished { .. } => {
                in_flight -= 1;
                finished += 1;
            }
            _ => {}
        }
        assert!(in_flight <= 3, "{in_flight} nodes in flight");
        peak = peak.max(in_flight);
    }
    assert_eq!((peak, started, finished, in_flight), (3, 10, 10, 0));
}

#[tokio::test(start_paused = true)]
async fn the_run_options_override_max_concurrency() {
    let wf = load(&independent(10, 3));
    let r = run(
        &wf,
        json!({}),
        RunOptions {
            max_concurrency: Some(5),
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(r.report.wall_time, ms(200));
    let r = run(
        &wf,
        json!({}),
        RunOptions {
            max_concurrency: Some(10),
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(r.report.wall_time, ms(100));
    // Zero is taken as one, never as "nothing runs".
    let r = run(
        &wf,
        json!({}),
        RunOptions {
            max_concurrency: Some(0),
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(r.report.wall_time, ms(1000));
    assert_eq!(r.status, RunStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn unbounded_by_default() {
    let mut y = String::from("version: 1\nname: wide\nnodes:\n");
    for i in 0..200 {
        writeln!(y, "  n{i:03}: {{ kind: mock, with: {{ latency: 100ms }} }}")
            .expect("writing to a String");
    }
    let r = run_default(&load(&y)).await;
    assert_eq!(r.report.wall_time, ms(100));
    assert_eq!(r.report.node_time_sum, ms(20_000));
}

#[tokio::test(start_paused = true)]
async fn when_reads_upstream_state_and_a_skip_releases_dependents_at_once() {
    let yaml = r#"
version: 1
name: conditions
inputs:
  threshold: { type: integer, default: 2 }
state:
  docs:  { reducer: append, default: [] }
  notes: { reducer: append, default: [] }
nodes:
  search:
    kind: mock
    writes: [docs]
    with: { latency: 100ms, output: { docs: [a, b, c] } }
  rerank:
    kind: mock
    needs: [search]
    when: state.docs | length > inputs.threshold
    writes: [notes]
    with: { latency: 50ms, output: { notes: [reranked] } }
  ask_again:
    kind: mock
    needs: [search]
    when: state.docs | length == 0
    writes: [notes]
    with: { latency: 500ms, output: { notes: [asked] } }
  answer:
    kind: mock
    needs: [rerank, ask_again]
    writes: [notes]
    with: { latency: 10ms, output: { notes: ["{{ state.notes | length }} notes"] } }
"#;
    let wf = load(yaml);
    let r = run_default(&wf).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(
        crate::util::status(&r, "ask_again"),
        braid::NodeStatus::Skipped
    );
    assert_eq!(span(&r, "ask_again"), at(100, 100));
    assert_eq!(span(&r, "rerank"), at(100, 150));
    assert_eq!(span(&r, "answer"), at(150, 160));
    assert_eq!(r.state["notes"], json!(["reranked", "1 notes"]));

    let r = run(&wf, json!({ "threshold": 3 }), RunOptions::default()).await;
    assert_eq!(
        crate::util::status(&r, "rerank"),
        braid::NodeStatus::Skipped
    );
    assert_eq!(
        span(&r, "answer"),
        at(100, 110),
        "both branches skipped: `answer` starts when `search` ends"
    );
    assert_eq!(r.state["notes"], json!(["0 notes"]));
}

/// `n` independent nodes of the registered kind `io`.
fn waiting(n: usize) -> String {
    let mut y = "version: 1\nname: waiting\nnodes:\n".to_owned();
    for i in 0..n {
        writeln!(y, "  n{i}: {{ kind: io }}").expect("writing to a String");
    }
    y
}

#[tokio::test(start_paused = true)]
async fn a_runs_waiting_nodes_are_polled_by_the_runs_own_task() {
    // Where each node's future was polled: the task it ran in, at its first and last poll.
    let seen: Arc<Mutex<Vec<Option<tokio::task::Id>>>> = Arc::default();
    let s = seen.clone();
    let engine = Engine::builder()
        .handler("io", move |_ctx: NodeContext| {
            let s = s.clone();
            async move {
                s.lock().expect("not poisoned").push(tokio::task::try_id());
                tokio::time::sleep(ms(10)).await;
                s.lock().expect("not poisoned").push(tokio::task::try_id());
                Ok(json!({}))
            }
        })
        .build();
    let wf = load_with(&engine, &waiting(50));
    let task = tokio::spawn(async move { wf.run(json!({}), RunOptions::default()).await });
    let run_task = task.id();
    let r = task.await.expect("the run's task").expect("the run starts");
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.report.wall_time, ms(10), "all 50 wait at once");
    let seen = seen.lock().expect("not poisoned");
    assert_eq!(seen.len(), 100);
    // No task per node: the run's task polls them, so there is nothing to spawn or join.
    assert!(
        seen.iter().all(|&id| id == Some(run_task)),
        "every node is polled by the run's task {run_task}: {seen:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn nodes_that_end_together_are_each_polled_twice() {
    // 2,000 nodes share the run task's coop budget (128 units a poll): once it is spent, polling
    // the rest would only have each say `Pending` again, a waste quadratic in the nodes that
    // end together (9.3 polls a node here, 40 at 10,000) unless the scheduler yields first. And
    // a node's first poll registers its waker: polling it again at once (as an attempt's wait
    // did) is a third poll for nothing.
    const N: usize = 2_000;
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let engine = Engine::builder()
        .handler("io", move |_ctx: NodeContext| {
            let p = p.clone();
            let mut sleep = Box::pin(tokio::time::sleep(ms(10)));
            std::future::poll_fn(move |cx| {
                p.fetch_add(1, Ordering::Relaxed);
                sleep.as_mut().poll(cx).map(|()| Ok(json!({})))
            })
        })
        .build();
    let wf = load_with(&engine, &waiting(N));
    let r = tokio::spawn(async move { wf.run(json!({}), RunOptions::default()).await })
        .await
        .expect("the run's task")
        .expect("the run starts");
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.report.wall_time, ms(10));
    // Once to start its timer, once when it fired.
    assert_eq!(polls.load(Ordering::Relaxed), 2 * N);
}
