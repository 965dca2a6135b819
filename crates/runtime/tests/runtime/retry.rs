//! Retries with backoff, on the virtual clock: every attempt's start and end is exact. Also the
//! per-node timeout, and the run's deadline, which caps it.

use braid::{Event, FailureKind, NodeStatus, RunError, RunOptions, RunStatus};
use serde_json::json;

use crate::util::{at, load, ms, node, run, run_default, run_events, span, status};

const FLAKY: &str = r#"
version: 1
name: flaky
state:
  out: { reducer: replace }
nodes:
  flaky:
    kind: mock
    retry: { attempts: 3, backoff: 100ms, multiplier: 2 }
    writes: [out]
    with: { latency: 50ms, fail_first: 2, error: try again, output: { out: done } }
  next:
    kind: mock
    needs: [flaky]
    with: { latency: 10ms }
"#;

#[tokio::test(start_paused = true)]
async fn backoff_grows_by_the_multiplier() {
    let (r, events) = run_events(&load(FLAKY), json!({}), RunOptions::default()).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    // Attempt 1: 0-50, wait 100; attempt 2: 150-200, wait 200; attempt 3: 400-450 succeeds.
    let n = node(&r, "flaky");
    assert_eq!(
        (n.status, n.attempts, n.start, n.end),
        (NodeStatus::Succeeded, 3, Some(ms(0)), Some(ms(450)))
    );
    assert_eq!(n.failure, None);
    let retries: Vec<_> = n
        .retries
        .iter()
        .map(|a| (a.attempt, a.start, a.end, a.failure.kind))
        .collect();
    assert_eq!(
        retries,
        [
            (1, ms(0), ms(50), FailureKind::Error),
            (2, ms(150), ms(200), FailureKind::Error)
        ]
    );
    assert!(n.retries.iter().all(|a| a.failure.message == "try again"));
    assert_eq!(span(&r, "next"), at(450, 460));
    assert_eq!(r.report.wall_time, ms(460));
    assert_eq!(r.state["out"], json!("done"));

    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::NodeStarted { node, attempt, at } if &**node == "flaky" => Some((*attempt, *at)),
            _ => None,
        })
        .collect();
    assert_eq!(started, [(1, ms(0)), (2, ms(150)), (3, ms(400))]);
    let retrying: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::NodeRetrying {
                node,
                attempt,
                failure,
                delay,
                at,
                ..
            } if &**node == "flaky" => Some((*attempt, *failure, *delay, *at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retrying,
        [
            (1, FailureKind::Error, ms(100), ms(50)),
            (2, FailureKind::Error, ms(200), ms(200))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn max_backoff_caps_the_wait() {
    let yaml = r#"
version: 1
name: capped
nodes:
  flaky:
    kind: mock
    retry: { attempts: 5, backoff: 100ms, multiplier: 10, max_backoff: 250ms }
    with: { latency: 10ms, fail_first: 4 }
"#;
    let r = run_default(&load(yaml)).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    // Waits 100, 250 (not 1000), 250, 250.
    let n = node(&r, "flaky");
    let starts: Vec<_> = n.retries.iter().map(|a| (a.start, a.end)).collect();
    assert_eq!(
        starts,
        [
            (ms(0), ms(10)),
            (ms(110), ms(120)),
            (ms(370), ms(380)),
            (ms(630), ms(640))
        ]
    );
    assert_eq!((n.attempts, n.end), (5, Some(ms(900))));
}

#[tokio::test(start_paused = true)]
async fn attempts_run_out() {
    let yaml = r#"
version: 1
name: exhausted
nodes:
  flaky:
    kind: mock
    retry: { attempts: 3, backoff: 10ms }
    with: { latency: 10ms, fail_first: 5, error: still broken }
  after: { kind: mock, needs: [flaky] }
"#;
    let r = run_default(&load(yaml)).await;
    assert_eq!(r.status, RunStatus::Failed);
    let n = node(&r, "flaky");
    // 0-10, wait 10, 20-30, wait 20, 50-60: failed for good.
    assert_eq!(
        (n.status, n.attempts, n.retries.len(), n.end),
        (NodeStatus::Failed, 3, 2, Some(ms(60)))
    );
    let failure = n.failure.clone().expect("a failure");
    assert_eq!(
        (failure.kind, failure.message.as_str()),
        (FailureKind::Error, "still broken")
    );
    assert_eq!(
        r.report.error,
        Some(RunError::NodeFailed {
            node: "flaky".into(),
            failure
        })
    );
    assert_eq!(r.report.wall_time, ms(60));
    assert_eq!(status(&r, "after"), NodeStatus::NotStarted);
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_are_not_retried() {
    let yaml = r#"
version: 1
name: permanent
nodes:
  garbage:
    kind: mock
    retry: { attempts: 5, backoff: 10ms }
    on_error: continue
    with: { latency: 10ms, raw_output: [1, 2] }
"#;
    let r = run_default(&load(yaml)).await;
    let n = node(&r, "garbage");
    assert_eq!(
        (n.status, n.attempts, n.end),
        (NodeStatus::FellBack, 1, Some(ms(10)))
    );
    assert_eq!(
        n.failure.as_ref().map(|f| f.kind),
        Some(FailureKind::InvalidOutput)
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_retried_too() {
    let yaml = r#"
version: 1
name: slow-then-fast
nodes:
  slow:
    kind: mock
    timeout: 100ms
    retry: { attempts: 2, backoff: 0ms }
    with: { latency: 1s }
"#;
    let r = run_default(&load(yaml)).await;
    let n = node(&r, "slow");
    assert_eq!(
        (n.status, n.attempts, n.end),
        (NodeStatus::Failed, 2, Some(ms(200)))
    );
    assert_eq!(n.retries[0].failure.kind, FailureKind::Timeout);
    assert_eq!(
        n.failure.as_ref().map(|f| f.kind),
        Some(FailureKind::Timeout)
    );
}

const JITTERED: &str = r#"
version: 1
name: jittered
nodes:
  flaky:
    kind: mock
    retry: { attempts: 4, backoff: 100ms, jitter: 0.5 }
    with: { fail_first: 3 }
"#;

fn delays(events: &[Event]) -> Vec<std::time::Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::NodeRetrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_seed_sets_the_jitter_and_replays_exactly() {
    let wf = load(JITTERED);
    let seeded = |seed| RunOptions {
        seed,
        ..RunOptions::default()
    };
    let (a, ea) = run_events(&wf, json!({}), seeded(1)).await;
    let (b, eb) = run_events(&wf, json!({}), seeded(1)).await;
    let (c, ec) = run_events(&wf, json!({}), seeded(2)).await;
    assert_eq!(a.status, RunStatus::Succeeded);
    assert_eq!(a.report, b.report, "the same seed replays exactly");
    assert_eq!(ea, eb);
    assert_ne!(delays(&ea), delays(&ec), "another seed, other waits");
    assert_ne!(a.report.wall_time, c.report.wall_time);
    // Each wait is within ±50% of 100, 200, 400 ms.
    for events in [&ea, &ec] {
        let d = delays(events);
        assert_eq!(d.len(), 3);
        for (wait, nominal) in d.iter().zip([100.0, 200.0, 400.0]) {
            let w = wait.as_secs_f64() * 1000.0;
            assert!(
                (nominal * 0.5..=nominal * 1.5).contains(&w),
                "{w} ms for {nominal} ms"
            );
        }
    }
    // Without jitter, the seed changes nothing.
    let wf = load(&JITTERED.replace(", jitter: 0.5", ""));
    let (x, _) = run_events(&wf, json!({}), seeded(1)).await;
    let (y, _) = run_events(&wf, json!({}), seeded(2)).await;
    assert_eq!(x.report, y.report);
    assert_eq!(x.report.wall_time, ms(700));
}

#[tokio::test(start_paused = true)]
async fn a_node_timeout_fails_the_attempt() {
    let yaml = r#"
version: 1
name: node-timeout
nodes:
  slow:
    kind: mock
    timeout: 200ms
    with: { hang: true }
"#;
    let r = run_default(&load(yaml)).await;
    assert_eq!(r.status, RunStatus::Failed);
    let n = node(&r, "slow");
    assert_eq!((n.status, n.end), (NodeStatus::Failed, Some(ms(200))));
    let failure = n.failure.clone().expect("a failure");
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert_eq!(
        failure.message,
        "the attempt took longer than the node's timeout of 200ms"
    );
    assert_eq!(
        r.report.error,
        Some(RunError::NodeFailed {
            node: "slow".into(),
            failure
        })
    );
}

const DEADLINE: &str = r#"
version: 1
name: deadline
execution: { timeout: 1s }
state:
  log: { reducer: append, default: [] }
nodes:
  first:
    kind: mock
    writes: [log]
    with: { latency: 600ms, output: { log: [first] } }
  late:
    kind: mock
    needs: [first]
    timeout: 5s
    on_error: continue
    fallback: { log: [late-fallback] }
    writes: [log]
    with: { hang: true }
"#;

#[tokio::test(start_paused = true)]
async fn the_run_deadline_caps_a_node_timeout() {
    let r = run_default(&load(DEADLINE)).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(
        r.report.error,
        Some(RunError::Timeout { timeout: ms(1000) })
    );
    assert_eq!(r.report.wall_time, ms(1000));
    assert_eq!(
        (status(&r, "first"), span(&r, "first")),
        (NodeStatus::Succeeded, at(0, 600))
    );
    let late = node(&r, "late");
    assert_eq!(
        (late.status, late.start, late.end),
        (NodeStatus::Cancelled, Some(ms(600)), Some(ms(1000)))
    );
    assert_eq!(
        late.failure.as_ref().map(|f| f.kind),
        Some(FailureKind::Timeout)
    );
    // The deadline is not the node's failure: no fallback is written, and what completed is kept.
    assert_eq!(r.state["log"], json!(["first"]));
}

#[tokio::test(start_paused = true)]
async fn the_run_options_override_the_deadline() {
    let options = RunOptions {
        timeout: Some(ms(800)),
        ..RunOptions::default()
    };
    let r = run(&load(DEADLINE), json!({}), options).await;
    assert_eq!(r.report.error, Some(RunError::Timeout { timeout: ms(800) }));
    assert_eq!(r.report.wall_time, ms(800));
    assert_eq!(span(&r, "late"), at(600, 800));
}

#[tokio::test(start_paused = true)]
async fn every_node_in_flight_at_the_deadline_is_cancelled_with_kind_timeout() {
    let yaml = r#"
version: 1
name: deadline-many
execution: { timeout: 1s }
nodes:
  no_timeout: { kind: mock, with: { hang: true } }
  long_timeout: { kind: mock, timeout: 5s, with: { hang: true } }
  backing_off:
    kind: mock
    timeout: 100ms
    retry: { attempts: 3, backoff: 500ms }
    on_error: continue
    with: { hang: true }
  next: { kind: mock, needs: [no_timeout] }
"#;
    let r = run_default(&load(yaml)).await;
    assert_eq!(
        r.report.error,
        Some(RunError::Timeout { timeout: ms(1000) })
    );
    assert_eq!(r.report.wall_time, ms(1000));
    for name in ["no_timeout", "long_timeout"] {
        let n = node(&r, name);
        assert_eq!(
            (n.status, n.end),
            (NodeStatus::Cancelled, Some(ms(1000))),
            "{name}"
        );
        assert_eq!(
            n.failure.as_ref().map(|f| f.kind),
            Some(FailureKind::Timeout),
            "{name}"
        );
    }
    // 0-100 timed out, waits 500, 600-700 timed out, a 1000 ms wait would pass the deadline.
    let b = node(&r, "backing_off");
    assert_eq!(
        (b.status, b.attempts, b.end),
        (NodeStatus::FellBack, 2, Some(ms(700))),
        "{b:?}"
    );
    assert_eq!(status(&r, "next"), NodeStatus::NotStarted);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_reported_the_same_when_the_run_is_a_spawned_task() {
    // Spawned, the scheduler is one task among its nodes' tasks: whichever sees the deadline
    // first, every node in flight is cancelled for the deadline, not for "another node failed".
    let yaml = r#"
version: 1
name: deadline-spawned
execution: { timeout: 1s }
nodes:
  a: { kind: mock, with: { hang: true } }
  b: { kind: mock, timeout: 5s, with: { hang: true } }
  c: { kind: mock, with: { hang: true } }
  quick: { kind: mock, with: { latency: 500ms } }
  late: { kind: mock, needs: [quick], with: { hang: true } }
"#;
    let wf = load(yaml);
    let r = tokio::spawn(async move { wf.run(json!({}), RunOptions::default()).await })
        .await
        .expect("joined")
        .expect("started");
    assert_eq!(
        r.report.error,
        Some(RunError::Timeout { timeout: ms(1000) })
    );
    assert_eq!(r.report.wall_time, ms(1000));
    for name in ["a", "b", "c", "late"] {
        let n = node(&r, name);
        assert_eq!(
            (n.status, n.end),
            (NodeStatus::Cancelled, Some(ms(1000))),
            "{name}"
        );
        assert_eq!(
            n.failure.as_ref().map(|f| (f.kind, f.message.as_str())),
            Some((
                FailureKind::Timeout,
                "the run's timeout expired while the node was running"
            )),
            "{name}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_huge_run_timeout_means_no_deadline() {
    // `Duration::MAX` is a natural way to say "no timeout" from Rust: it must not overflow.
    let options = RunOptions {
        timeout: Some(std::time::Duration::MAX),
        ..RunOptions::default()
    };
    let r = run(&load(FLAKY), json!({}), options).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.report.wall_time, ms(460));
}
