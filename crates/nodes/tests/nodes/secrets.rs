//! Secrets reach the service and nothing else: not error messages, retry events or the report,
//! even when the service echoes them back or they are part of the URL.
//!
//! Setting an environment variable is `unsafe` in Rust 2024 (and this workspace forbids unsafe
//! code), so the test runs itself again as a child process with the variable set ([`in_child`]).

use std::time::Duration;

use braid::{Event, RunStatus};
use serde_json::json;

use crate::http::run;
use crate::stub::{Reply, Stub, closed_port, in_child};

const VAR: &str = "BRAID_TEST_SECRET_TOKEN";
/// With `/`, ` ` and `+`, so that its URL-encoded forms differ from it.
const SECRET: &str = "sk-test/9f8e 7d+6c";
/// A piece of the secret that every form of it (raw, URL-encoded, JSON) contains.
const MARK: &str = "9f8e";

#[test]
fn secrets_reach_the_server_and_no_message_event_or_report() {
    let name = "secrets::secrets_reach_the_server_and_no_message_event_or_report";
    if !in_child(name, &[(VAR, SECRET)]) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        http_success_sends_the_secret().await;
        http_failures_redact_it().await;
        llm_failures_redact_the_key().await;
    });
}

/// Every serialized form of what a run tells the world.
fn told(result: &braid::RunResult, events: &[Event]) -> String {
    let mut out = serde_json::to_string(result).expect("result serializes");
    for e in events {
        out.push_str(&serde_json::to_string(e).expect("event serializes"));
        out.push_str(&format!("{e:?}"));
    }
    out.push_str(&format!("{result:?}"));
    out
}

fn http_workflow(url: &str, retry: &str) -> String {
    format!(
        r#"
version: 1
name: secret-test
state:
  status: {{ reducer: replace }}
nodes:
  call:
    kind: http
    retry: {retry}
    writes: [status]
    with:
      url: "{url}"
      headers: {{ Authorization: "Bearer {{{{ secrets.token }}}}" }}
      query: {{ key: "{{{{ secrets.token }}}}" }}
      secrets: {{ token: {VAR} }}
      output: {{ status: "{{{{ response.status }}}}" }}
"#
    )
}

async fn http_success_sends_the_secret() {
    let stub = Stub::start(vec![Reply::json(200, json!({}))]).await;
    let (result, events) = run(
        &http_workflow(&format!("{}/x", stub.url()), "{ attempts: 1 }"),
        json!({}),
    )
    .await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    let r = &stub.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer sk-test/9f8e 7d+6c"));
    assert_eq!(r.target, "/x?key=sk-test%2F9f8e+7d%2B6c");
    assert!(!told(&result, &events).contains(MARK));
}

async fn http_failures_redact_it() {
    let echo = format!("bad token {SECRET} (sk-test%2F9f8e+7d%2B6c)");
    let stub = Stub::start(vec![
        Reply::json(503, json!({ "error": { "message": echo } })).with_header("retry-after", "1"),
        Reply::json(401, json!({ "error": { "message": echo } })),
    ])
    .await;
    let (result, events) = run(
        &http_workflow(
            &format!("{}/x", stub.url()),
            "{ attempts: 3, backoff: 10ms }",
        ),
        json!({}),
    )
    .await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        stub.requests().len(),
        2,
        "the 503 was retried and the 401 was not"
    );
    let node = result.report.node("call").expect("node");
    assert_eq!(
        node.retries[0].failure.message,
        format!(
            "`GET {}/x?key=***` returned 503 Service Unavailable: bad token *** (***)",
            stub.url()
        )
    );
    assert_eq!(
        node.failure.as_ref().expect("failure").message,
        format!(
            "`GET {}/x?key=***` returned 401 Unauthorized: bad token *** (***)",
            stub.url()
        )
    );
    let retried = events.iter().find_map(|e| match e {
        Event::NodeRetrying { message, delay, .. } => Some((message.clone(), *delay)),
        _ => None,
    });
    let (message, delay) = retried.expect("a retry event");
    assert!(message.contains("bad token ***"), "{message}");
    assert_eq!(delay, Duration::from_secs(1));
    assert!(!told(&result, &events).contains(MARK));

    // A transport error names the URL, whose query holds the secret.
    let addr = closed_port().await;
    let (result, events) = run(
        &http_workflow(&format!("http://{addr}/x"), "{ attempts: 1 }"),
        json!({}),
    )
    .await;
    let message = &result
        .report
        .node("call")
        .expect("node")
        .failure
        .as_ref()
        .expect("failure")
        .message;
    assert!(
        message.starts_with(&format!("`GET http://{addr}/x?key=***`: cannot connect")),
        "{message}"
    );
    assert!(!told(&result, &events).contains(MARK));
}

async fn llm_failures_redact_the_key() {
    let stub = Stub::start(vec![Reply::json(
        401,
        json!({ "error": { "message": format!("Incorrect API key provided: {SECRET}."), "code": "invalid_api_key" } }),
    )])
    .await;
    let yaml = format!(
        r#"
version: 1
name: llm-secret-test
state:
  response: {{ reducer: replace }}
nodes:
  answer:
    kind: llm
    retry: {{ attempts: 3, backoff: 10ms }}
    writes: [response]
    with:
      base_url: {}/v1
      model: m
      api_key_env: {VAR}
      user: hi
      output: {{ text: response }}
"#,
        stub.url()
    );
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        stub.requests()[0].header("authorization"),
        Some("Bearer sk-test/9f8e 7d+6c")
    );
    let node = result.report.node("answer").expect("node");
    assert_eq!(node.attempts, 1);
    assert_eq!(
        node.failure.as_ref().expect("failure").message,
        format!(
            "`POST {}/v1/chat/completions` returned 401 Unauthorized: Incorrect API key provided: ***.",
            stub.url()
        )
    );
    assert!(!told(&result, &events).contains(MARK));
}
