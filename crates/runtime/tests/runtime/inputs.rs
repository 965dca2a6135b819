//! A run's inputs are checked before anything runs: missing, mistyped and unknown inputs are all
//! reported at once, as [`braid::Error::Inputs`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use braid::{Engine, InputError, NodeContext, RunOptions, RunStatus, Workflow};
use serde_json::{Value, json};

use crate::util::load_with;

const TYPED: &str = r#"
version: 1
name: typed
inputs:
  query: { type: string }
  n:     { type: integer, default: 3 }
  flag:  { type: boolean, default: true }
nodes:
  count: { kind: count }
"#;

fn counting() -> (Workflow, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let engine = Engine::builder()
        .handler("count", move |_ctx: NodeContext| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok(json!({})) }
        })
        .build();
    (load_with(&engine, TYPED), calls)
}

async fn input_errors(wf: &Workflow, inputs: Value) -> Vec<InputError> {
    match wf.run(inputs.clone(), RunOptions::default()).await {
        Err(braid::Error::Inputs(errors)) => errors,
        Err(e) => panic!("{inputs}: unexpected error {e}"),
        Ok(r) => panic!("{inputs}: the run started: {:?}", r.status),
    }
}

fn wrong(name: &str, ty: &'static str, got: &str) -> InputError {
    InputError::WrongType {
        name: name.into(),
        ty,
        got: got.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn bad_inputs_are_refused_before_anything_runs() {
    let (wf, calls) = counting();
    let missing = InputError::Missing {
        name: "query".into(),
        ty: "string",
    };
    let unknown = |name: &str| InputError::Unknown {
        name: name.into(),
        known: "`query`, `n`, `flag`".into(),
    };

    assert_eq!(
        input_errors(&wf, json!({})).await,
        std::slice::from_ref(&missing)
    );
    assert_eq!(
        input_errors(&wf, Value::Null).await,
        std::slice::from_ref(&missing)
    );
    assert_eq!(
        input_errors(&wf, json!({ "query": 5 })).await,
        [wrong("query", "string", "5")]
    );
    assert_eq!(
        input_errors(&wf, json!({ "query": "q", "n": 2.5 })).await,
        [wrong("n", "integer", "2.5")]
    );
    assert_eq!(
        input_errors(&wf, json!({ "query": "q", "flag": "yes" })).await,
        [wrong("flag", "boolean", "\"yes\"")]
    );
    assert_eq!(
        input_errors(&wf, json!({ "query": "q", "colour": "red" })).await,
        [unknown("colour")]
    );
    // Every problem at once.
    assert_eq!(
        input_errors(&wf, json!({ "n": "three", "extra": 1 })).await,
        [
            missing,
            wrong("n", "integer", "\"three\""),
            unknown("extra")
        ]
    );
    assert_eq!(
        input_errors(&wf, json!([1])).await,
        [wrong("(inputs)", "object", "[1]")]
    );
    // With events, the error comes before the run exists.
    assert!(matches!(
        wf.run_with_events(json!({}), RunOptions::default()),
        Err(braid::Error::Inputs(_))
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no node ran");

    let ok = wf
        .run(json!({ "query": "q" }), RunOptions::default())
        .await
        .expect("valid inputs");
    assert_eq!(ok.status, RunStatus::Succeeded);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        wf.inputs(json!({ "query": "q" })).expect("valid"),
        json!({ "query": "q", "n": 3, "flag": true })
    );
}
