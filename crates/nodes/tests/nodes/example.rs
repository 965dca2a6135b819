//! `workflows/mode1-real.yaml` end to end: the exec retriever over `examples/retrieval/docs`, and
//! the tool, memory and LLM services as local stubs started here. Nothing leaves the machine.

use braid::{Engine, NodeStatus, RunOptions, RunStatus};
use serde_json::json;

use crate::stub::{Reply, Stub, closed_port};

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

/// The example, with its retriever path made absolute and its LLM pointed at `llm_url`.
fn example(llm_url: &str) -> braid::Workflow {
    let text =
        std::fs::read_to_string(repo("workflows/mode1-real.yaml")).expect("the example exists");
    let text = text
        .replace(
            "examples/retrieval/retrieve.py",
            &repo("examples/retrieval/retrieve.py"),
        )
        .replace("http://127.0.0.1:8083/v1", llm_url);
    Engine::new()
        .load_str("mode1-real.yaml", &text)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn completion(text: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100 }
        }),
    )
}

#[tokio::test]
async fn the_real_pipeline_runs_against_local_services() {
    let tools = Stub::start(vec![Reply::json(
        200,
        json!({ "tools": ["secrets_manager"] }),
    )])
    .await;
    let memory = Stub::start(vec![Reply::json(
        200,
        json!({ "memory": { "user": "ada", "tone": "brief" } }),
    )])
    .await;
    let llm = Stub::start(vec![completion(
        "Rotate keys every 90 days (api-key-rotation.md).",
    )])
    .await;
    let wf = example(&format!("{}/v1", llm.url()));
    let inputs = json!({ "user_id": "ada", "tools_url": tools.url(), "memory_url": memory.url() });
    let r = wf.run(inputs, RunOptions::default()).await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);

    // The retriever ranked the key-rotation guide first, from the shipped documents.
    assert_eq!(r.state["rag_results"][0]["doc"], "api-key-rotation.md");
    assert_eq!(r.state["suggested_tools"], json!(["secrets_manager"]));
    assert_eq!(r.state["memory"], json!({ "user": "ada", "tone": "brief" }));
    assert_eq!(
        r.state["response"],
        "Rotate keys every 90 days (api-key-rotation.md)."
    );
    // 1000 prompt tokens at 0.00015 / 1k + 100 completion tokens at 0.0006 / 1k.
    let cost = r.state["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.00021).abs() < 1e-12, "{cost}");
    assert_eq!(r.state["cost_report"]["tokens"], 1100);
    assert_eq!(r.state["quality_score"], 0.9);

    // What the services were asked.
    assert_eq!(
        tools.requests()[0].json(),
        json!({ "query": "How do I rotate my API keys?" })
    );
    assert_eq!(memory.requests()[0].target, "/memory/ada");
    let prompt = llm.requests()[0].json();
    let user = prompt["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("- api-key-rotation.md: "), "{user}");
    assert!(user.contains("Tools available: secrets_manager"), "{user}");
    assert!(user.contains(r#""user":"ada""#), "{user}");
}

#[tokio::test]
async fn failing_services_fall_back_to_safe_defaults() {
    let tools = Stub::start(vec![Reply::json(503, json!({ "error": "overloaded" }))]).await;
    let memory_down = closed_port().await;
    let llm = Stub::start(vec![completion(
        "I could not find documents, but here is what I know.",
    )])
    .await;
    let wf = example(&format!("{}/v1", llm.url()));
    let inputs = json!({ "tools_url": tools.url(), "memory_url": format!("http://{memory_down}") });
    let r = wf.run(inputs, RunOptions::default()).await.unwrap();
    assert_eq!(r.status, RunStatus::Degraded, "{:?}", r.report.error);
    let node = |n: &str| r.report.node(n).unwrap();
    assert_eq!(node("tools").status, NodeStatus::FellBack);
    assert_eq!(node("tools").attempts, 3, "503 is retried");
    assert_eq!(node("memory").status, NodeStatus::FellBack);
    assert_eq!(r.state["suggested_tools"], json!([]));
    assert_eq!(r.state["memory"], json!({}));
    assert_eq!(node("llm").status, NodeStatus::Succeeded);
    assert!(
        r.state["response"]
            .as_str()
            .unwrap()
            .starts_with("I could not find")
    );
}
