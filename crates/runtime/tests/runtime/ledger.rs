//! The ledger's observer: every node's end reaches it exactly once, with the writes the node
//! contributed; an observer that records asynchronously holds back the node's dependents until
//! its record is done; one that cannot record fails the run, keeping what completed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid::{NodeSettled, NodeStatus, Observer, Recorded, RunError, RunOptions, RunStatus};
use serde_json::{Map, Value, json};

use crate::util::{load, ms, run, span, status};

/// What the test observer saw of one node's end.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    node: String,
    status: NodeStatus,
    attempts: u32,
    writes: Value,
    failure: Option<String>,
}

/// Records every node's end; optionally takes `delay` of virtual time to record each, or fails
/// to record the node named `refuse`.
#[derive(Default)]
struct Journal {
    seen: Mutex<Vec<Seen>>,
    delay: Option<Duration>,
    refuse: Option<&'static str>,
}

impl Journal {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl Observer for Journal {
    fn settled(&self, node: &NodeSettled<'_>) -> Option<Recorded> {
        let writes: Map<String, Value> = node
            .writes()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.seen.lock().expect("not poisoned").push(Seen {
            node: node.node().to_string(),
            status: node.status(),
            attempts: node.attempts(),
            writes: Value::Object(writes),
            failure: node.failure().map(|f| f.kind.as_str().to_owned()),
        });
        let refuse = self.refuse == Some(&**node.node());
        let delay = self.delay;
        if !refuse && delay.is_none() {
            return None;
        }
        Some(Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if refuse {
                Err("the journal's database went away".to_owned())
            } else {
                Ok(())
            }
        }))
    }
}

const EVERY_END: &str = r#"
version: 1
name: every-end
inputs:
  go: { type: boolean, default: false }
state:
  a: { reducer: replace }
  b: { reducer: replace }
  c: { reducer: replace }
  log: { reducer: append, default: [] }
nodes:
  ok:
    kind: mock
    writes: [a, log]
    with: { latency: 10ms, output: { a: 1, log: [ok] } }
  skipped:
    kind: mock
    when: inputs.go
    writes: [b]
    with: { output: { b: 2 } }
  fallback:
    kind: mock
    on_error: continue
    fallback: { c: fell }
    writes: [c]
    with: { latency: 20ms, fail_rate: 1.0 }
  fails:
    kind: mock
    needs: [ok]
    retry: { attempts: 2, backoff: 5ms }
    with: { latency: 30ms, fail_rate: 1.0 }
  slow:
    kind: mock
    with: { latency: 1s }
  after:
    kind: mock
    needs: [fails]
"#;

#[tokio::test(start_paused = true)]
async fn every_node_ends_once_in_the_observer_with_its_writes() {
    let wf = load(EVERY_END);
    let journal = Arc::new(Journal::default());
    let options = RunOptions {
        observer: Some(journal.clone()),
        ..RunOptions::default()
    };
    let r = run(&wf, Value::Null, options).await;
    assert_eq!(r.status, RunStatus::Failed);
    let seen = journal.seen();
    // Once each, and as the report says.
    let mut names: Vec<&str> = seen.iter().map(|s| s.node.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["after", "fails", "fallback", "ok", "skipped", "slow"]
    );
    for s in &seen {
        let report = r.report.node(&s.node).expect("reported");
        assert_eq!(s.status, report.status, "{}", s.node);
        assert_eq!(s.attempts, report.attempts, "{}", s.node);
    }
    let of = |n: &str| seen.iter().find(|s| s.node == n).expect("seen").clone();
    assert_eq!(of("ok").writes, json!({ "a": 1, "log": ["ok"] }));
    assert_eq!(of("ok").status, NodeStatus::Succeeded);
    assert_eq!(of("skipped").status, NodeStatus::Skipped);
    assert_eq!(of("skipped").writes, json!({}));
    assert_eq!(of("fallback").status, NodeStatus::FellBack);
    assert_eq!(of("fallback").writes, json!({ "c": "fell" }));
    assert_eq!(of("fallback").failure.as_deref(), Some("error"));
    assert_eq!(of("fails").status, NodeStatus::Failed);
    assert_eq!(of("fails").attempts, 2);
    assert_eq!(of("slow").status, NodeStatus::Cancelled);
    assert_eq!(of("slow").failure.as_deref(), Some("cancelled"));
    assert_eq!(of("after").status, NodeStatus::NotStarted);
    // In the order they ended: the fail-fast cancellation, then the nodes that never started.
    let order: Vec<&str> = seen.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(
        order,
        ["skipped", "ok", "fallback", "fails", "slow", "after"]
    );
}

const CHAIN: &str = r#"
version: 1
name: chain
state:
  log: { reducer: append, default: [] }
nodes:
  first:
    kind: mock
    writes: [log]
    with: { latency: 100ms, output: { log: [first] } }
  second:
    kind: mock
    needs: [first]
    writes: [log]
    with: { latency: 100ms, output: { log: [second] } }
  side:
    kind: mock
    with: { latency: 50ms }
"#;

#[tokio::test(start_paused = true)]
async fn dependents_start_only_once_the_observer_has_recorded_their_needs() {
    let wf = load(CHAIN);
    let journal = Arc::new(Journal {
        delay: Some(ms(30)),
        ..Journal::default()
    });
    let options = RunOptions {
        observer: Some(journal.clone()),
        ..RunOptions::default()
    };
    let r = run(&wf, Value::Null, options).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    // `second` waits for `first` to be recorded (30 ms after it ended): write-ahead.
    assert_eq!(span(&r, "first"), (Some(ms(0)), Some(ms(100))));
    assert_eq!(span(&r, "second"), (Some(ms(130)), Some(ms(230))));
    // And the run ends once the last record is done.
    assert_eq!(r.report.wall_time, ms(260));
    assert_eq!(r.state["log"], json!(["first", "second"]));
    assert_eq!(journal.seen().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_sequential_run_stays_in_canonical_order_while_its_observer_records() {
    let wf = load(CHAIN);
    let journal = Arc::new(Journal {
        delay: Some(ms(30)),
        ..Journal::default()
    });
    let options = RunOptions {
        mode: Some(braid::ExecutionMode::Sequential),
        observer: Some(journal.clone()),
        ..RunOptions::default()
    };
    let r = run(&wf, Value::Null, options).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    // One node at a time, each recorded before the next starts: first, second, side.
    assert_eq!(span(&r, "first"), (Some(ms(0)), Some(ms(100))));
    assert_eq!(span(&r, "second"), (Some(ms(130)), Some(ms(230))));
    assert_eq!(span(&r, "side"), (Some(ms(260)), Some(ms(310))));
    assert_eq!(r.report.wall_time, ms(340));
}

#[tokio::test(start_paused = true)]
async fn an_observer_that_cannot_record_fails_the_run_and_keeps_what_completed() {
    let wf = load(CHAIN);
    let journal = Arc::new(Journal {
        refuse: Some("first"),
        ..Journal::default()
    });
    let options = RunOptions {
        observer: Some(journal.clone()),
        ..RunOptions::default()
    };
    let r = run(&wf, Value::Null, options).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(
        r.report.error,
        Some(RunError::Observer {
            node: "first".to_owned(),
            message: "the journal's database went away".to_owned()
        })
    );
    // What completed is kept; what would have read the unrecorded node never started.
    assert_eq!(status(&r, "first"), NodeStatus::Succeeded);
    assert_eq!(status(&r, "side"), NodeStatus::Succeeded);
    assert_eq!(status(&r, "second"), NodeStatus::NotStarted);
    assert_eq!(r.state["log"], json!(["first"]));
}
