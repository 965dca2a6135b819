//! The seed workflow, mode 1: retrieval fan-out, LLM generation, post-generation fan-out. Its
//! makespan is its critical path (rag 500 + llm 2000 + citations 150 = 2650 ms), one node at a
//! time it takes the sum of its nodes (3300 ms), and both end in the same state.

use braid::{ExecutionMode, NodeStatus, RunOptions, RunStatus};
use serde_json::json;

use crate::util::{at, load, ms, node, run, run_default, span, state_text, status};

pub(crate) const MODE1: &str = include_str!("../../../../workflows/mode1-manual.yaml");

#[tokio::test(start_paused = true)]
async fn parallel_makespan_is_the_critical_path() {
    let wf = load(MODE1);
    let r = run_default(&wf).await;

    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.report.error, None);
    assert_eq!(r.report.wall_time, ms(2650));
    assert_eq!(r.report.node_time_sum, ms(3300));
    assert_eq!(
        r.report
            .critical_path
            .iter()
            .map(|s| &**s)
            .collect::<Vec<_>>(),
        ["rag", "llm", "citations"]
    );
    assert_eq!(r.report.mode, "parallel");
    assert!(
        (r.report.speedup - 3300.0 / 2650.0).abs() < 1e-9,
        "speedup {}",
        r.report.speedup
    );

    let expected = [
        ("rag", at(0, 500)),
        ("tools", at(0, 300)),
        ("memory", at(0, 200)),
        ("llm", at(500, 2500)),
        ("quality", at(2500, 2600)),
        ("citations", at(2500, 2650)),
        ("cost_tracking", at(2500, 2550)),
    ];
    let names: Vec<&str> = r.report.nodes.iter().map(|n| &*n.name).collect();
    assert_eq!(
        names,
        expected.map(|(n, _)| n),
        "nodes are reported in canonical order"
    );
    for (name, times) in expected {
        assert_eq!(span(&r, name), times, "{name}");
        let n = node(&r, name);
        assert_eq!(n.status, NodeStatus::Succeeded, "{name}");
        assert_eq!(
            (n.attempts, n.failure.as_ref(), n.retries.len()),
            (1, None, 0),
            "{name}"
        );
    }

    assert_eq!(
        r.state,
        json!({
            "rag_results": [
                { "doc": "key-rotation-guide.pdf", "score": 0.91 },
                { "doc": "security-faq.md", "score": 0.84 }
            ],
            "suggested_tools": ["secrets_manager", "audit_log"],
            "memory": { "user": "user-42", "preferences": { "tone": "concise" } },
            "response": "Answer to 'How do I rotate my API keys?' from 2 documents and 2 tools, for user-42.",
            "quality_score": 0.87,
            "citations": ["key-rotation-guide.pdf", "security-faq.md"],
            "cost_usd": 0.002,
            "cost_report": { "total_usd": 0.002, "model": "mock-llm" }
        })
    );
}

#[tokio::test(start_paused = true)]
async fn disabled_branches_are_skipped_and_keep_their_defaults() {
    let wf = load(MODE1);
    let r = run(
        &wf,
        json!({ "enable_rag": false, "enable_tools": false }),
        RunOptions::default(),
    )
    .await;

    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.report.wall_time, ms(2350));
    assert_eq!(
        r.report
            .critical_path
            .iter()
            .map(|s| &**s)
            .collect::<Vec<_>>(),
        ["memory", "llm", "citations"]
    );
    for skipped in ["rag", "tools"] {
        let n = node(&r, skipped);
        assert_eq!(n.status, NodeStatus::Skipped, "{skipped}");
        assert_eq!(n.attempts, 0, "{skipped}");
        assert_eq!(n.duration(), ms(0), "{skipped}");
    }
    assert_eq!(span(&r, "memory"), at(0, 200));
    assert_eq!(span(&r, "llm"), at(200, 2200));
    assert_eq!(span(&r, "citations"), at(2200, 2350));
    for downstream in ["memory", "llm", "quality", "citations", "cost_tracking"] {
        assert_eq!(
            status(&r, downstream),
            NodeStatus::Succeeded,
            "{downstream}"
        );
    }
    assert_eq!(r.state["rag_results"], json!([]));
    assert_eq!(r.state["suggested_tools"], json!([]));
    assert_eq!(r.state["citations"], json!([]));
    assert_eq!(
        r.state["response"],
        json!(
            "Answer to 'How do I rotate my API keys?' from 0 documents and 0 tools, for user-42."
        )
    );
}

#[tokio::test(start_paused = true)]
async fn sequential_mode_takes_the_sum_and_ends_in_the_same_state() {
    let wf = load(MODE1);
    let parallel = run_default(&wf).await;
    let options = RunOptions {
        mode: Some(ExecutionMode::Sequential),
        ..RunOptions::default()
    };
    let sequential = run(&wf, json!({}), options).await;

    assert_eq!(sequential.status, RunStatus::Succeeded);
    assert_eq!(sequential.report.mode, "sequential");
    assert_eq!(sequential.report.wall_time, ms(3300));
    assert_eq!(sequential.report.node_time_sum, ms(3300));
    // One at a time, in canonical (file) order.
    let expected = [
        ("rag", at(0, 500)),
        ("tools", at(500, 800)),
        ("memory", at(800, 1000)),
        ("llm", at(1000, 3000)),
        ("quality", at(3000, 3100)),
        ("citations", at(3100, 3250)),
        ("cost_tracking", at(3250, 3300)),
    ];
    for (name, times) in expected {
        assert_eq!(span(&sequential, name), times, "{name}");
    }
    assert_eq!(state_text(&sequential), state_text(&parallel));
}

#[tokio::test(start_paused = true)]
async fn sequential_mode_from_the_file() {
    let wf = load(&MODE1.replace("mode: parallel", "mode: sequential"));
    let r = run_default(&wf).await;
    assert_eq!(r.report.mode, "sequential");
    assert_eq!(r.report.wall_time, ms(3300));
    // The run's options override the file.
    let options = RunOptions {
        mode: Some(ExecutionMode::Parallel),
        ..RunOptions::default()
    };
    let r = run(&wf, json!({}), options).await;
    assert_eq!(r.report.wall_time, ms(2650));
}

#[tokio::test(start_paused = true)]
async fn runs_replay_exactly() {
    let wf = load(MODE1);
    let a = run_default(&wf).await;
    let b = run_default(&wf).await;
    assert_eq!(a, b);
}
