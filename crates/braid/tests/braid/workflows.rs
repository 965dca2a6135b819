//! Every workflow in `workflows/` loads through the facade and runs, on virtual time, at exactly
//! its critical path: a node on the critical path starts the instant the node before it ends.
//! Files that are not workflows load as diagnostics, never a panic, whatever they make the
//! compiler do (the path a service reloading edited files takes).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use braid::{
    Answer, BuildContext, BuildError, Code, Engine, Error, ExecutionMode, Node, NodeKind,
    RunOptions, RunStatus,
};
use serde_json::{Value, json};

fn load(name: &str) -> braid::Workflow {
    let path = format!("{}/../../workflows/{name}", env!("CARGO_MANIFEST_DIR"));
    Engine::new()
        .load_file(&path)
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn makespan(name: &str, mode: ExecutionMode) -> (Duration, Vec<String>) {
    let wf = load(name);
    let r = wf
        .run(
            json!({}),
            RunOptions {
                mode: Some(mode),
                seed: 7,
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        RunStatus::Succeeded,
        "{name}: {:?}",
        r.report.error
    );
    let report = &r.report;
    // Ready-set scheduling: no gap along the critical path.
    let pairs = if mode == ExecutionMode::Parallel {
        report.critical_path.windows(2)
    } else {
        [].windows(2)
    };
    for pair in pairs {
        let (a, b) = (
            report.node(&pair[0]).unwrap(),
            report.node(&pair[1]).unwrap(),
        );
        assert_eq!(
            a.end, b.start,
            "{name}: `{}` should start when `{}` ends",
            b.name, a.name
        );
    }
    (
        report.wall_time,
        report
            .critical_path
            .iter()
            .map(ToString::to_string)
            .collect(),
    )
}

#[tokio::test(start_paused = true)]
async fn every_workflow_runs_at_its_critical_path() {
    let cases = [
        (
            "mode1-manual.yaml",
            2650,
            3300,
            vec!["rag", "llm", "citations"],
        ),
        (
            "mode2-automatic.yaml",
            2800,
            3450,
            vec!["select_agent", "rag", "llm", "citations"],
        ),
        (
            "mode3-autonomous.yaml",
            2600,
            3300,
            vec!["plan", "code_exec", "synthesize", "quality"],
        ),
    ];
    for (name, parallel_ms, sequential_ms, path) in cases {
        let (wall, critical) = makespan(name, ExecutionMode::Parallel).await;
        assert_eq!(wall, Duration::from_millis(parallel_ms), "{name}");
        assert_eq!(critical, path, "{name}");
        let (wall, _) = makespan(name, ExecutionMode::Sequential).await;
        assert_eq!(
            wall,
            Duration::from_millis(sequential_ms),
            "{name} sequential"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn sampled_latencies_replay_exactly_for_a_seed() {
    let (a, path_a) = makespan("mode4-autonomous-multiagent.yaml", ExecutionMode::Parallel).await;
    let (b, path_b) = makespan("mode4-autonomous-multiagent.yaml", ExecutionMode::Parallel).await;
    assert_eq!((a, &path_a), (b, &path_b));
    assert_eq!(path_a.first().map(String::as_str), Some("plan"));
}

#[tokio::test(start_paused = true)]
async fn every_workflow_gives_the_same_state_in_both_modes() {
    for entry in
        std::fs::read_dir(format!("{}/../../workflows", env!("CARGO_MANIFEST_DIR"))).unwrap()
    {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == "mode1-real.yaml" {
            continue; // calls real services: tested with local stubs in braid-nodes' `example`
        }
        let wf = load(&name);
        let opts = |mode| RunOptions {
            mode: Some(mode),
            seed: 3,
            ..RunOptions::default()
        };
        let p = wf
            .run(json!({}), opts(ExecutionMode::Parallel))
            .await
            .unwrap();
        let s = wf
            .run(json!({}), opts(ExecutionMode::Sequential))
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_string(&p.state).unwrap(),
            serde_json::to_string(&s.state).unwrap(),
            "{name}"
        );
    }
}

/// The diagnostics of a file that must not load.
fn diagnostics(result: Result<braid::Workflow, Error>) -> Vec<braid::Diagnostic> {
    match result {
        Err(Error::Invalid(invalid)) => invalid.diagnostics,
        Err(e) => panic!("expected diagnostics, got {e}"),
        Ok(_) => panic!("expected diagnostics, got a workflow"),
    }
}

#[test]
fn files_that_crashed_the_compiler_load_as_diagnostics() {
    let dir = format!("{}/../../tests/fixtures/fuzz", env!("CARGO_MANIFEST_DIR"));
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        files += 1;
        let d = diagnostics(Engine::new().load_file(&path));
        assert!(!d.is_empty(), "{}", path.display());
        assert!(
            d.iter().all(|d| d.code != Code::Internal),
            "{}: {d:?}",
            path.display()
        );
    }
    assert!(files >= 1, "no fixture in {dir}");
    let text = "version: 1\nname: m\ninputs:\n  a: { type: boolean, default: true }\nnodes:\n  n:\n    kind: noop\n    when: a }}}\n";
    let d = diagnostics(Engine::new().load_str("m.yaml", text));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].code, Code::ExpressionSyntax);
    assert_eq!((d[0].span().start.line, d[0].span().start.column), (8, 13));
}

/// A kind whose `build` panics: a bug in an embedding program's kind.
struct Panics;

impl NodeKind for Panics {
    fn name(&self) -> &str {
        "panics"
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
        panic!("this kind cannot be built")
    }
}

#[test]
fn a_panic_while_loading_is_an_internal_diagnostic() {
    let engine = Engine::builder().node_kind(Arc::new(Panics)).build();
    let text = "version: 1\nname: p\nnodes:\n  n:\n    kind: panics\n";
    let d = diagnostics(engine.load_str("p.yaml", text));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].code, Code::Internal);
    assert_eq!(
        d[0].message,
        "internal error: the compiler panicked on this file: this kind cannot be built"
    );
    // The engine is still usable: the next file loads.
    let ok = "version: 1\nname: q\nnodes:\n  n:\n    kind: noop\n";
    assert!(engine.load_str("q.yaml", ok).is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_approval_example_waits_then_publishes_what_was_approved() {
    let wf = load("approval.yaml");
    let r = wf.run(json!({}), RunOptions::default()).await.unwrap();
    assert_eq!(r.status, RunStatus::Waiting);
    // `tags`, which does not need the answer, ran to its end; `publish` did not start.
    assert_eq!(r.report.wall_time, Duration::from_millis(500));
    assert_eq!(
        r.report.node("approve").unwrap().prompt.as_deref(),
        Some("Publish this post? A short post about braids.")
    );

    // The contract a durable layer reads before it resumes the run.
    let plan = wf.plan();
    let id = plan.node_by_name("approve").unwrap();
    let wait = plan.node(id).handler.waits().expect("`approve` waits");
    assert_eq!(wait.output(), "approval");
    assert_eq!(wait.deadline(), Some(Duration::from_secs(24 * 3600)));
    assert_eq!(
        wait.check(&json!({ "approved": true, "note": "ok" })),
        Ok(())
    );
    let violations = wait
        .check(&json!({ "approved": "yes", "extra": 1 }))
        .unwrap_err();
    assert_eq!(violations.len(), 2, "{violations:?}");

    let answered = |answer: Value| RunOptions {
        answers: vec![("approve".to_owned(), Answer::Value(answer))],
        ..RunOptions::default()
    };
    let r = wf
        .run(json!({}), answered(json!({ "approved": true })))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(
        r.state["published"],
        "A short post about braids. #braids #howto"
    );
    assert_eq!(r.report.wall_time, Duration::from_millis(700));
    let r = wf
        .run(
            json!({}),
            answered(json!({ "approved": false, "note": "not yet" })),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.state["published"], Value::Null);
    let r = wf
        .run(
            json!({}),
            RunOptions {
                answers: vec![("approve".to_owned(), Answer::Expired)],
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Degraded);
    assert_eq!(r.state["approval"]["note"], "nobody answered in time");
}
