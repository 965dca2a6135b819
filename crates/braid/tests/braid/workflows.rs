//! Every workflow in `workflows/` loads through the facade and runs, on virtual time, at exactly
//! its critical path: a node on the critical path starts the instant the node before it ends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use braid::{Engine, ExecutionMode, RunOptions, RunStatus};
use serde_json::json;

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
