//! The `llm` kind against a stub OpenAI-compatible server: a whole completion with usage and cost,
//! a streamed one with its tokens as node messages, and error statuses.

use std::time::Duration;

use braid::{Event, FailureKind, RunStatus};
use serde_json::json;

use crate::http::{retry_waits, run};
use crate::stub::{Reply, Stub};

fn workflow(with: &str) -> String {
    format!(
        r#"
version: 1
name: llm-test
inputs:
  query: {{ type: string, default: How do I rotate keys? }}
state:
  docs:     {{ reducer: replace }}
  response: {{ reducer: replace }}
  usage:    {{ reducer: replace }}
  cost_usd: {{ reducer: sum, default: 0 }}
nodes:
  rag:
    kind: transform
    writes: [docs]
    with: {{ output: {{ docs: [guide.pdf, faq.md] }} }}
  answer:
    kind: llm
    needs: [rag]
    retry: {{ attempts: 3, backoff: 10ms }}
    writes: [response, usage, cost_usd]
    with:
{with}
"#
    )
}

#[tokio::test(start_paused = true)]
async fn completion_writes_text_usage_and_cost() {
    let stub = Stub::start(vec![Reply::json(
        200,
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Rotate them monthly." }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500 }
        }),
    )])
    .await;
    let yaml = workflow(&format!(
        r#"      base_url: {}/v1/
      model: "llama-{{{{ 3 + 1 }}}}"
      system: You answer from documents.
      user: "{{{{ inputs.query }}}} Documents: {{{{ state.docs | join(', ') }}}}"
      temperature: 0.2
      max_tokens: 64
      extra: {{ seed: 7 }}
      price: {{ input_per_1k: 0.5, output_per_1k: 2.0 }}
      output: {{ text: response, usage: usage, cost_usd: cost_usd }}"#,
        stub.url()
    ));
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(result.state["response"], "Rotate them monthly.");
    assert_eq!(
        result.state["usage"],
        json!({ "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500 })
    );
    let cost = result.state["cost_usd"].as_f64().expect("a number");
    assert!(
        (cost - 1.2).abs() < 1e-12,
        "1.2k prompt tokens at $0.5 + 0.3k at $2: {cost}"
    );

    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(r.header("authorization"), None, "no api_key_env, no key");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "model": "llama-4",
            "messages": [
                { "role": "system", "content": "You answer from documents." },
                { "role": "user", "content": "How do I rotate keys? Documents: guide.pdf, faq.md" }
            ],
            "temperature": 0.2,
            "max_tokens": 64,
            "stream": false,
            "seed": 7
        })
    );
}

fn chunk(delta: serde_json::Value) -> String {
    format!(
        "data: {}\n\n",
        json!({ "object": "chat.completion.chunk", "choices": [{ "index": 0, "delta": delta }] })
    )
}

#[tokio::test(start_paused = true)]
async fn streaming_emits_tokens_in_order_and_assembles_the_text() {
    let ms = Duration::from_millis;
    let hello = chunk(json!({ "content": "Hel" }));
    let (hello_a, hello_b) = hello.split_at(20); // an event split across two writes
    let stub = Stub::start(vec![Reply::Stream(vec![
        (ms(0), chunk(json!({ "role": "assistant", "content": "" }))),
        (ms(50), hello_a.to_owned()),
        (ms(10), hello_b.to_owned()),
        (ms(50), chunk(json!({ "content": "lo" })).replace('\n', "\r\n")),
        (ms(50), ": keep-alive comment\n\n".to_owned()),
        (ms(50), chunk(json!({ "content": ", world" }))),
        (ms(0), chunk(json!({}))),
        (
            ms(10),
            format!(
                "data: {}\n\n",
                json!({ "choices": [], "usage": { "prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13 } })
            ),
        ),
        (ms(0), "data: [DONE]\n\n".to_owned()),
    ])])
    .await;
    let yaml = workflow(&format!(
        r#"      base_url: {}/v1
      model: m
      messages:
        - {{ role: system, content: Be brief. }}
        - {{ role: user, content: "{{{{ inputs.query }}}}" }}
      stream: true
      price: {{ input_per_1k: 1.0, output_per_1k: 1.0 }}
      output: {{ text: response, usage: usage, cost_usd: cost_usd }}"#,
        stub.url()
    ));
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(result.state["response"], "Hello, world");
    assert_eq!(result.state["usage"]["total_tokens"], 13);
    assert!((result.state["cost_usd"].as_f64().expect("number") - 0.013).abs() < 1e-12);

    let tokens: Vec<(serde_json::Value, Duration)> = events
        .iter()
        .filter_map(|e| match e {
            Event::NodeMessage { node, payload, at } if &**node == "answer" => {
                Some((payload.clone(), *at))
            }
            _ => None,
        })
        .collect();
    let payloads: Vec<_> = tokens.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        payloads,
        [
            json!({ "token": "Hel" }),
            json!({ "token": "lo" }),
            json!({ "token": ", world" })
        ]
    );
    // Each token is emitted as it arrives, not at the end.
    let at: Vec<Duration> = tokens.iter().map(|(_, at)| *at).collect();
    assert!(at[0] < at[1] && at[1] < at[2], "{at:?}");
    let finished = events
        .iter()
        .find_map(|e| match e {
            Event::NodeFinished { node, at, .. } if &**node == "answer" => Some(*at),
            _ => None,
        })
        .expect("answer finished");
    assert!(at[2] < finished);

    let body = stub.requests()[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({ "include_usage": true }));
    assert_eq!(
        body["messages"][1],
        json!({ "role": "user", "content": "How do I rotate keys?" })
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_status_fails_with_the_servers_message() {
    let stub =
        Stub::start(vec![Reply::json(400, json!({ "error": { "message": "model `nope` not found", "type": "invalid_request_error" } }))])
            .await;
    let yaml = workflow(&format!(
        "      base_url: {}/v1\n      model: nope\n      user: hi\n      stream: true\n      output: {{ text: response }}",
        stub.url()
    ));
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    let node = result.report.node("answer").expect("node");
    assert_eq!(node.attempts, 1, "a 400 is not retried");
    let failure = node.failure.as_ref().expect("failure");
    assert_eq!(failure.kind, FailureKind::Error);
    assert_eq!(
        failure.message,
        format!(
            "`POST {}/v1/chat/completions` returned 400 Bad Request: model `nope` not found",
            stub.url()
        )
    );
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_server_is_retried_and_a_broken_reply_is_not() {
    let stub = Stub::start(vec![
        Reply::json(503, json!({ "error": { "message": "busy" } })).with_header("retry-after", "3"),
        Reply::json(200, json!({ "object": "list", "data": [] })),
    ])
    .await;
    let yaml = workflow(&format!(
        "      base_url: {}/v1\n      model: m\n      user: hi\n      output: {{ text: response }}",
        stub.url()
    ));
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    let node = result.report.node("answer").expect("node");
    assert_eq!(
        node.attempts, 2,
        "503 retried once; the second reply is permanent"
    );
    let waits = retry_waits(&events);
    assert_eq!(
        (waits[0].0, waits[0].1),
        (Duration::from_secs(3), Duration::from_secs(3))
    );
    assert!(
        node.retries[0]
            .failure
            .message
            .ends_with("returned 503 Service Unavailable: busy")
    );
    let message = &node.failure.as_ref().expect("failure").message;
    assert!(
        message.ends_with("did not return a chat completion: it has no `choices[0].message`"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_api_key_variable_is_permanent() {
    let stub = Stub::start(vec![Reply::json(200, json!({}))]).await;
    let yaml = workflow(&format!(
        "      base_url: {}/v1\n      model: m\n      user: hi\n      api_key_env: BRAID_TEST_SURELY_UNSET_LLM_KEY\n      output: {{ text: response }}",
        stub.url()
    ));
    let (result, _) = run(&yaml, json!({})).await;
    let node = result.report.node("answer").expect("node");
    assert_eq!(node.attempts, 1);
    assert_eq!(
        node.failure.as_ref().expect("failure").message,
        "secret `api_key`: the environment variable `BRAID_TEST_SURELY_UNSET_LLM_KEY` is not set"
    );
    assert!(stub.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stream_cut_before_its_end_is_retried() {
    let finish = format!(
        "data: {}\n\n",
        json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] })
    );
    let stub = Stub::start(vec![
        // Cut mid-answer: neither `[DONE]` nor a `finish_reason`.
        Reply::Stream(vec![
            (Duration::ZERO, chunk(json!({ "content": "Paris is" }))),
            (Duration::ZERO, chunk(json!({ "content": " the " }))),
        ]),
        // Whole, though closed without `[DONE]`: the `finish_reason` says so.
        Reply::Stream(vec![
            (Duration::ZERO, chunk(json!({ "content": "Paris." }))),
            (Duration::ZERO, finish),
        ]),
    ])
    .await;
    let yaml = workflow(&format!(
        r#"      base_url: {}/v1
      model: m
      user: Capital of France?
      stream: true
      output: {{ text: response }}"#,
        stub.url()
    ));
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(result.state["response"], "Paris.");
    let node = result.report.node("answer").expect("node");
    assert_eq!(node.attempts, 2);
    assert_eq!(
        node.retries[0].failure.message,
        format!(
            "`POST {}/v1/chat/completions`: the stream ended before the answer did (no `data: [DONE]` and no `finish_reason`)",
            stub.url()
        )
    );
}
