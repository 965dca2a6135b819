//! What an embedding program registers from Rust: a custom reducer, and a handler that reads the
//! keys it lists in `reads:` (and sees nothing else).

use std::sync::{Arc, Mutex};

use braid::{
    BuildContext, BuildError, Engine, FailureKind, Node, NodeContext, NodeError, NodeFuture,
    NodeKind, NodeStatus, Reducer, ReducerError, RunStatus,
};
use serde_json::{Value, json};

use crate::util::{at, load_with, ms, node, run_default, span};

/// `concat`: strings joined with `|`, in canonical order. Order-sensitive on purpose.
struct Concat;

impl Reducer for Concat {
    fn name(&self) -> &str {
        "concat"
    }
    fn check(&self, value: &Value) -> Result<(), ReducerError> {
        if value.is_string() {
            Ok(())
        } else {
            Err(ReducerError {
                message: "`concat` takes a string".to_owned(),
            })
        }
    }
    fn reduce(&self, current: &mut Option<Value>, update: Value) {
        *current = Some(match (current.take(), update) {
            (Some(Value::String(a)), Value::String(b)) => Value::String(format!("{a}|{b}")),
            (_, u) => u,
        });
    }
}

const TRAIL: &str = r#"
version: 1
name: trail
inputs:
  volume: { type: string, default: loud }
state:
  trail:  { reducer: concat, default: start }
  other:  { reducer: replace, default: unseen }
  report: { reducer: replace }
nodes:
  slow_first:
    kind: mock
    writes: [trail, other]
    with: { latency: 300ms, output: { trail: slow_first, other: written } }
  fast_second:
    kind: mock
    writes: [trail]
    with: { latency: 100ms, output: { trail: fast_second } }
  shout:
    kind: shout
    needs: [slow_first, fast_second]
    reads: [trail]
    writes: [report]
  broken:
    kind: mock
    needs: [shout]
    on_error: continue
    writes: [trail]
    with: { raw_output: { trail: 42 } }
"#;

#[tokio::test(start_paused = true)]
async fn a_custom_reducer_and_a_rust_handler() {
    let seen: Arc<Mutex<Option<(Value, Value, u32)>>> = Arc::default();
    let s = seen.clone();
    let engine = Engine::builder()
        .reducer(Arc::new(Concat))
        .handler("shout", move |ctx: NodeContext| {
            let s = s.clone();
            async move {
                tokio::time::sleep(ms(25)).await;
                *s.lock().expect("not poisoned") =
                    Some((ctx.state().clone(), ctx.inputs().clone(), ctx.attempt()));
                let trail = ctx
                    .get("trail")
                    .and_then(Value::as_str)
                    .ok_or_else(|| NodeError::new("no trail"))?;
                let volume = ctx
                    .input("volume")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(json!({ "report": format!("{volume}: {}", trail.to_uppercase()) }))
            }
        })
        .build();
    let r = run_default(&load_with(&engine, TRAIL)).await;

    assert_eq!(r.status, RunStatus::Degraded);
    assert_eq!(span(&r, "shout"), at(300, 325));
    // `fast_second` finished first, but contributions fold in canonical order.
    assert_eq!(r.state["trail"], json!("start|slow_first|fast_second"));
    assert_eq!(
        r.state["report"],
        json!("loud: START|SLOW_FIRST|FAST_SECOND")
    );
    assert_eq!(r.state["other"], json!("written"));
    // The handler saw exactly the keys it reads, and the inputs.
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(
        seen,
        Some((
            json!({ "trail": "start|slow_first|fast_second" }),
            json!({ "volume": "loud" }),
            1
        ))
    );

    // A value the custom reducer refuses fails the node that wrote it.
    let broken = node(&r, "broken");
    assert_eq!(broken.status, NodeStatus::FellBack);
    let failure = broken.failure.clone().expect("a failure");
    assert_eq!(failure.kind, FailureKind::InvalidOutput);
    assert_eq!(
        failure.message,
        "the node wrote `trail`, but `concat` takes a string"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unregistered_reducer_or_kind_does_not_compile() {
    match Engine::new().load_str("trail.yaml", TRAIL) {
        Err(braid::Error::Invalid(invalid)) => {
            assert!(!invalid.diagnostics.is_empty());
        }
        other => panic!(
            "expected diagnostics, got {:?}",
            other.map(|w| w.plan().name().to_string())
        ),
    }
}

#[tokio::test(start_paused = true)]
async fn a_handler_error_is_a_node_failure_with_its_message() {
    let engine = Engine::builder()
        .handler("refuse", |_ctx: NodeContext| async {
            Err::<Value, _>(NodeError::new("no, thank you").permanent())
        })
        .build();
    let yaml = r#"
version: 1
name: refuse
nodes:
  r:
    kind: refuse
    retry: { attempts: 3 }
"#;
    let r = run_default(&load_with(&engine, yaml)).await;
    assert_eq!(r.status, RunStatus::Failed);
    let n = node(&r, "r");
    assert_eq!(n.attempts, 1, "a permanent error is not retried");
    assert_eq!(
        n.failure.as_ref().map(|f| (f.kind, f.message.as_str())),
        Some((FailureKind::Error, "no, thank you"))
    );
}

/// A node that says it finishes at its first poll (`Node::is_instant`) but then waits.
struct Liar;

impl Node for Liar {
    fn is_instant(&self) -> bool {
        true
    }
    fn call(&self, _ctx: NodeContext) -> NodeFuture {
        Box::pin(async {
            tokio::time::sleep(ms(100)).await;
            Ok(json!({ "out": "late" }))
        })
    }
}

struct LiarKind;

impl NodeKind for LiarKind {
    fn name(&self) -> &str {
        "liar"
    }
    fn params_schema(
        &self,
        _: &mut braid::schemars::SchemaGenerator,
    ) -> Option<braid::schemars::Schema> {
        None
    }
    fn build(
        &self,
        _: Option<&Value>,
        _: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        Ok(Arc::new(Liar))
    }
}

const LIAR: &str = r#"
version: 1
name: liar
state:
  out:   { reducer: replace }
  after: { reducer: replace }
nodes:
  slow:
    kind: liar
    writes: [out]
  next:
    kind: mock
    needs: [slow]
    writes: [after]
    with: { output: { after: "{{ state.out }}" } }
  cut:
    kind: liar
    timeout: 50ms
    on_error: continue
"#;

/// The scheduler starts an instant node's first attempt in place; one that is pending after all
/// goes on in a task, and keeps its timeout, its timing and its result.
#[tokio::test(start_paused = true)]
async fn an_instant_node_that_waits_after_all_finishes_in_a_task() {
    let engine = Engine::builder().node_kind(Arc::new(LiarKind)).build();
    let r = run_default(&load_with(&engine, LIAR)).await;
    assert_eq!(r.status, RunStatus::Degraded, "{:?}", r.report.error);
    assert_eq!(node(&r, "slow").status, NodeStatus::Succeeded);
    assert_eq!(span(&r, "slow"), (Some(ms(0)), Some(ms(100))));
    assert_eq!(span(&r, "next"), (Some(ms(100)), Some(ms(100))));
    assert_eq!(r.state["after"], json!("late"));
    let cut = node(&r, "cut");
    assert_eq!(cut.status, NodeStatus::FellBack);
    assert_eq!(
        cut.failure.as_ref().map(|f| f.kind),
        Some(FailureKind::Timeout)
    );
    assert_eq!(span(&r, "cut"), (Some(ms(0)), Some(ms(50))));
    assert_eq!(r.report.wall_time, ms(100));
}
