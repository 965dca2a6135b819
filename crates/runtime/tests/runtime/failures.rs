//! Every failure type under every policy: `on_error: continue` writes the fallback and the run goes
//! on degraded; `on_error: fail` ends the run at once, cancelling what is in flight, and keeps what
//! completed. A panic is a node failure, never a crashed run, and cancellation leaves no task behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use braid::{
    Engine, FailureKind, NodeContext, NodeError, NodeStatus, RunError, RunOptions, RunStatus,
};
use serde_json::{Value, json};

use crate::util::{
    at, load, load_with, ms, node, quiet_scripted_panics, run, run_default, span, status,
};

const EVERY_FAILURE: &str = r#"
version: 1
name: every-failure
state:
  log:  { reducer: append, default: [] }
  seen: { reducer: replace }
nodes:
  error:
    kind: mock
    on_error: continue
    fallback: { log: [error-fallback] }
    writes: [log]
    with: { latency: 10ms, fail_first: 1, error: exploded, output: { log: [error] } }
  timeout:
    kind: mock
    timeout: 100ms
    on_error: continue
    fallback: { log: [timeout-fallback] }
    writes: [log]
    with: { latency: 1s, output: { log: [timeout] } }
  panic:
    kind: mock
    on_error: continue
    fallback: { log: [panic-fallback] }
    writes: [log]
    with: { latency: 20ms, panic: true }
  garbage:
    kind: mock
    on_error: continue
    fallback: { log: [garbage-fallback] }
    writes: [log]
    with: { latency: 30ms, raw_output: garbage }
  undeclared:
    kind: mock
    on_error: continue
    fallback: { log: [undeclared-fallback] }
    writes: [log]
    with: { latency: 40ms, raw_output: { log: [undeclared], seen: sneaky } }
  wrong_type:
    kind: mock
    on_error: continue
    fallback: { log: [wrong_type-fallback] }
    writes: [log]
    with: { latency: 50ms, raw_output: { log: not a list } }
  no_fallback:
    kind: mock
    on_error: continue
    writes: [log]
    with: { latency: 60ms, fail_first: 1 }
  fine:
    kind: mock
    writes: [log]
    with: { latency: 70ms, output: { log: [fine] } }
  after:
    kind: mock
    needs: [error, timeout, panic, garbage, undeclared, wrong_type, no_fallback, fine]
    writes: [seen]
    with: { output: { seen: "{{ state.log | join(',') }}" } }
"#;

#[tokio::test(start_paused = true)]
async fn every_failure_type_falls_back_and_the_run_goes_on_degraded() {
    quiet_scripted_panics();
    let r = run_default(&load(EVERY_FAILURE)).await;

    assert_eq!(r.status, RunStatus::Degraded);
    assert_eq!(r.report.error, None);
    let expected = [
        ("error", FailureKind::Error, 10),
        ("timeout", FailureKind::Timeout, 100),
        ("panic", FailureKind::Panic, 20),
        ("garbage", FailureKind::InvalidOutput, 30),
        ("undeclared", FailureKind::InvalidOutput, 40),
        ("wrong_type", FailureKind::InvalidOutput, 50),
        ("no_fallback", FailureKind::Error, 60),
    ];
    for (name, kind, end) in expected {
        let n = node(&r, name);
        assert_eq!(n.status, NodeStatus::FellBack, "{name}");
        assert_eq!(
            n.failure.as_ref().map(|f| f.kind),
            Some(kind),
            "{name}: {:?}",
            n.failure
        );
        assert_eq!((n.start, n.end), at(0, end), "{name}");
        assert_eq!(n.attempts, 1, "{name}");
    }
    let message = |name: &str| {
        node(&r, name)
            .failure
            .as_ref()
            .map(|f| f.message.clone())
            .unwrap_or_default()
    };
    assert_eq!(message("error"), "exploded");
    assert_eq!(
        message("timeout"),
        "the attempt took longer than the node's timeout of 100ms"
    );
    assert_eq!(
        message("panic"),
        "the node panicked: mock node `panic` panicked, as scripted"
    );
    assert_eq!(
        message("garbage"),
        "the node returned a string, not an object of state updates"
    );
    assert_eq!(
        message("undeclared"),
        "the node wrote `seen`, which is not in its `writes` (`log`)"
    );
    assert_eq!(
        message("wrong_type"),
        "the node wrote `log`, but `append` takes a list, got a string"
    );

    assert_eq!(status(&r, "fine"), NodeStatus::Succeeded);
    assert_eq!(status(&r, "after"), NodeStatus::Succeeded);
    assert_eq!(
        span(&r, "after"),
        at(100, 100),
        "downstream starts when the slowest fallback is written"
    );
    let log = "error-fallback,timeout-fallback,panic-fallback,garbage-fallback,undeclared-fallback,wrong_type-fallback,fine";
    assert_eq!(
        r.state["log"],
        json!(log.split(',').collect::<Vec<_>>()),
        "fallbacks folded in canonical order"
    );
    assert_eq!(
        r.state["seen"],
        json!(log),
        "the downstream node read the fallbacks"
    );
}

const FAIL_FAST: &str = r#"
version: 1
name: fail-fast
execution: { max_concurrency: 4 }
state:
  log:   { reducer: append, default: [] }
  total: { reducer: sum, default: 0 }
nodes:
  fast:
    kind: mock
    writes: [log, total]
    with: { latency: 50ms, output: { log: [fast], total: 1 } }
  slow:
    kind: mock
    writes: [log]
    with: { latency: 1s, output: { log: [slow] } }
  bad:
    kind: mock
    writes: [log]
    with: { latency: 100ms, fail_first: 1, error: exploded, output: { log: [bad] } }
  queued:
    kind: mock
    writes: [log]
    with: { latency: 10ms, output: { log: [queued] } }
  tail:
    kind: mock
    writes: [log]
    with: { latency: 10ms, output: { log: [tail] } }
  after_fast:
    kind: mock
    needs: [fast]
    writes: [log, total]
    with: { latency: 200ms, output: { log: [after_fast], total: 10 } }
  after_bad:
    kind: mock
    needs: [bad]
    writes: [log]
    with: { output: { log: [after_bad] } }
"#;

#[tokio::test(start_paused = true)]
async fn on_error_fail_cancels_in_flight_and_keeps_what_completed() {
    let r = run_default(&load(FAIL_FAST)).await;

    assert_eq!(r.status, RunStatus::Failed);
    let RunError::NodeFailed {
        node: failed,
        failure,
    } = r.report.error.clone().expect("an error")
    else {
        panic!("{:?}", r.report.error)
    };
    assert_eq!(
        (failed.as_str(), failure.kind, failure.message.as_str()),
        ("bad", FailureKind::Error, "exploded")
    );
    assert_eq!(r.report.wall_time, ms(100));

    // Canonical order is file order here (every `needs` points backwards).
    // 0 ms: fast, slow, bad, queued start (max 4); 10 ms: tail after queued; 50 ms: after_fast.
    assert_eq!(
        (status(&r, "fast"), span(&r, "fast")),
        (NodeStatus::Succeeded, at(0, 50))
    );
    assert_eq!(
        (status(&r, "queued"), span(&r, "queued")),
        (NodeStatus::Succeeded, at(0, 10))
    );
    assert_eq!(
        (status(&r, "tail"), span(&r, "tail")),
        (NodeStatus::Succeeded, at(10, 20))
    );
    assert_eq!(
        (status(&r, "bad"), span(&r, "bad")),
        (NodeStatus::Failed, at(0, 100))
    );
    for (name, start) in [("slow", 0), ("after_fast", 50)] {
        let n = node(&r, name);
        assert_eq!(
            (n.status, n.start, n.end),
            (NodeStatus::Cancelled, Some(ms(start)), Some(ms(100))),
            "{name}"
        );
        assert_eq!(
            n.failure.as_ref().map(|f| f.kind),
            Some(FailureKind::Cancelled),
            "{name}"
        );
    }
    let n = node(&r, "after_bad");
    assert_eq!(
        (n.status, n.attempts, n.start, n.end),
        (NodeStatus::NotStarted, 0, None, None)
    );

    // What completed is kept; nothing of the cancelled or failed nodes is.
    assert_eq!(r.state["log"], json!(["fast", "queued", "tail"]));
    assert_eq!(r.state["total"], json!(1));
}

#[tokio::test(start_paused = true)]
async fn a_node_waiting_for_a_free_slot_is_not_started_when_the_run_fails() {
    let yaml = FAIL_FAST
        .replace("max_concurrency: 4", "max_concurrency: 3")
        .replace(
            "{ latency: 10ms, output: { log: [tail] } }",
            "{ latency: 50ms, output: { log: [tail] } }",
        );
    let r = run_default(&load(&yaml)).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.report.wall_time, ms(100));
    // 0 ms: fast, slow, bad; 50 ms: queued (before after_fast in canonical order); 60 ms: tail.
    assert_eq!(span(&r, "queued"), at(50, 60));
    assert_eq!(
        (status(&r, "tail"), span(&r, "tail")),
        (NodeStatus::Cancelled, at(60, 100))
    );
    let n = node(&r, "after_fast");
    assert_eq!(
        (n.status, n.attempts, n.start, n.end),
        (NodeStatus::NotStarted, 0, None, None),
        "ready, never started"
    );
    assert_eq!(r.state["log"], json!(["fast", "queued"]));
}

const BROKEN_WHEN: &str = r#"
version: 1
name: broken-when
state:
  cfg: { reducer: merge, default: {} }
  log: { reducer: append, default: [] }
nodes:
  config:
    kind: mock
    writes: [cfg]
    with: { latency: 100ms, output: { cfg: { present: true } } }
  gate:
    kind: mock
    needs: [config]
    when: state.cfg.missing.deeper
    writes: [log]
    with: { output: { log: [gate] } }
  slow:
    kind: mock
    writes: [log]
    with: { latency: 5s, output: { log: [slow] } }
"#;

#[tokio::test(start_paused = true)]
async fn a_when_that_fails_to_evaluate_fails_fast_like_any_node() {
    let r = run_default(&load(BROKEN_WHEN)).await;
    assert_eq!(r.status, RunStatus::Failed);
    let n = node(&r, "gate");
    assert_eq!(
        (n.status, n.start, n.end),
        (NodeStatus::Failed, Some(ms(100)), Some(ms(100)))
    );
    let failure = n.failure.clone().expect("a failure");
    assert_eq!(failure.kind, FailureKind::Error);
    assert!(
        failure.message.starts_with("`when` failed: "),
        "{}",
        failure.message
    );
    assert_eq!(
        r.report.error,
        Some(RunError::NodeFailed {
            node: "gate".into(),
            failure
        })
    );
    // Fail-fast: the run ends when `gate` fails, not when `slow` would have finished.
    assert_eq!(r.report.wall_time, ms(100));
    assert_eq!(
        (status(&r, "slow"), span(&r, "slow")),
        (NodeStatus::Cancelled, at(0, 100))
    );
    assert_eq!(r.state["log"], json!([]));
}

#[tokio::test(start_paused = true)]
async fn a_when_that_fails_with_on_error_continue_falls_back() {
    let yaml = BROKEN_WHEN.replace(
        "    when: state.cfg.missing.deeper\n",
        "    when: state.cfg.missing.deeper\n    on_error: continue\n    fallback: { log: [gate-fallback] }\n",
    );
    let r = run_default(&load(&yaml)).await;
    assert_eq!(r.status, RunStatus::Degraded);
    assert_eq!(status(&r, "gate"), NodeStatus::FellBack);
    assert_eq!(r.report.wall_time, ms(5000));
    assert_eq!(r.state["log"], json!(["gate-fallback", "slow"]));
}

fn panicking_engine() -> Engine {
    Engine::builder()
        .handler("sync_panic", |ctx: NodeContext| {
            if ctx.attempt() > 0 {
                panic!("the handler panicked before returning its future, as scripted");
            }
            async { Ok(json!({})) }
        })
        .handler("async_panic", |ctx: NodeContext| async move {
            tokio::time::sleep(ms(10)).await;
            if ctx.attempt() > 0 {
                panic!(
                    "the handler's future panicked on attempt {}, as scripted",
                    ctx.attempt()
                );
            }
            Ok(json!({}))
        })
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_a_node_failure() {
    quiet_scripted_panics();
    let yaml = r#"
version: 1
name: panics
nodes:
  mock_panic:
    kind: mock
    on_error: continue
    with: { latency: 10ms, panic: true }
  sync_panic:
    kind: sync_panic
    on_error: continue
    retry: { attempts: 2, backoff: 5ms }
  async_panic:
    kind: async_panic
    on_error: continue
  downstream:
    kind: mock
    needs: [mock_panic, sync_panic, async_panic]
    with: { latency: 1ms }
"#;
    let r = run_default(&load_with(&panicking_engine(), yaml)).await;
    assert_eq!(r.status, RunStatus::Degraded);
    for name in ["mock_panic", "sync_panic", "async_panic"] {
        let n = node(&r, name);
        assert_eq!(n.status, NodeStatus::FellBack, "{name}");
        assert_eq!(
            n.failure.as_ref().map(|f| f.kind),
            Some(FailureKind::Panic),
            "{name}"
        );
    }
    let sync = node(&r, "sync_panic");
    assert_eq!(
        sync.failure.as_ref().map(|f| f.message.as_str()),
        Some("the node panicked: the handler panicked before returning its future, as scripted")
    );
    assert_eq!(
        (sync.attempts, sync.retries.len(), sync.start, sync.end),
        (2, 1, Some(ms(0)), Some(ms(5)))
    );
    assert_eq!(sync.retries[0].failure.kind, FailureKind::Panic);
    assert_eq!(
        node(&r, "async_panic")
            .failure
            .as_ref()
            .map(|f| f.message.as_str()),
        Some("the node panicked: the handler's future panicked on attempt 1, as scripted")
    );
    assert_eq!(
        (status(&r, "downstream"), span(&r, "downstream")),
        (NodeStatus::Succeeded, at(10, 11))
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_under_on_error_fail_fails_the_run() {
    quiet_scripted_panics();
    let yaml = r#"
version: 1
name: panics
nodes:
  sync_panic: { kind: sync_panic }
  slow: { kind: mock, with: { latency: 1s } }
"#;
    let r = run_default(&load_with(&panicking_engine(), yaml)).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.report.wall_time, ms(0));
    let Some(RunError::NodeFailed {
        node: failed,
        failure,
    }) = &r.report.error
    else {
        panic!("{:?}", r.report.error)
    };
    assert_eq!(
        (failed.as_str(), failure.kind),
        ("sync_panic", FailureKind::Panic)
    );
    assert_eq!(status(&r, "slow"), NodeStatus::Cancelled);
}

/// Counts live handler futures: incremented when one starts, decremented when it is dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An engine with a `hold` handler that never finishes, and the counters it keeps.
fn holding_engine() -> (Engine, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let live = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (l, s) = (live.clone(), started.clone());
    let engine = Engine::builder()
        .handler("hold", move |_ctx: NodeContext| {
            l.fetch_add(1, Ordering::SeqCst);
            s.fetch_add(1, Ordering::SeqCst);
            let guard = Live(l.clone());
            async move {
                let _guard = guard;
                std::future::pending::<Result<Value, NodeError>>().await
            }
        })
        .build();
    (engine, live, started)
}

const HOLDERS: &str = r#"
version: 1
name: holders
nodes:
  h1: { kind: hold }
  h2: { kind: hold }
  h3: { kind: hold, needs: [h1] }
  retrying:
    kind: hold
    timeout: 30ms
    retry: { attempts: 10, backoff: 50ms }
    on_error: continue
  bad: { kind: mock, with: { latency: 100ms, fail_first: 1 } }
"#;

#[tokio::test(start_paused = true)]
async fn fail_fast_leaves_no_task_running() {
    let (engine, live, started) = holding_engine();
    let r = run_default(&load_with(&engine, HOLDERS)).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.report.wall_time, ms(100));
    // h1, h2 and `retrying`'s attempts at 0 ms and 80 ms.
    assert_eq!(started.load(Ordering::SeqCst), 4);
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "every handler future was dropped before `run` returned"
    );
    for name in ["h1", "h2", "retrying"] {
        assert_eq!(status(&r, name), NodeStatus::Cancelled, "{name}");
    }
    assert_eq!(status(&r, "h3"), NodeStatus::NotStarted);
    // `retrying` was cancelled during its second attempt (80 ms, after 0-30 and a 50 ms wait).
    let retrying = node(&r, "retrying");
    assert_eq!(
        (retrying.attempts, retrying.start, retrying.end),
        (2, Some(ms(0)), Some(ms(100)))
    );
    // Its first, timed-out attempt is still in its report, although its task was aborted.
    let retries: Vec<_> = retrying
        .retries
        .iter()
        .map(|a| (a.attempt, a.start, a.end, a.failure.kind))
        .collect();
    assert_eq!(retries, [(1, ms(0), ms(30), FailureKind::Timeout)]);
    assert_eq!(
        retrying.failure.as_ref().map(|f| f.kind),
        Some(FailureKind::Cancelled)
    );
}

#[tokio::test(start_paused = true)]
async fn the_run_deadline_leaves_no_task_running() {
    let (engine, live, started) = holding_engine();
    let yaml = HOLDERS.replace(
        "with: { latency: 100ms, fail_first: 1 }",
        "with: { latency: 100ms }",
    );
    let options = RunOptions {
        timeout: Some(ms(500)),
        ..RunOptions::default()
    };
    let r = run(&load_with(&engine, &yaml), json!({}), options).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.report.error, Some(RunError::Timeout { timeout: ms(500) }));
    assert_eq!(r.report.wall_time, ms(500));
    assert!(started.load(Ordering::SeqCst) >= 3);
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert_eq!(status(&r, "bad"), NodeStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_aborts_its_tasks() {
    let (engine, live, _) = holding_engine();
    let wf = load_with(&engine, HOLDERS);
    let dropped = tokio::time::timeout(ms(50), wf.run(json!({}), RunOptions::default())).await;
    assert!(dropped.is_err(), "the run cannot finish in 50 ms");
    // Aborted tasks are dropped the next time the runtime gets to them.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(live.load(Ordering::SeqCst), 0);
}
