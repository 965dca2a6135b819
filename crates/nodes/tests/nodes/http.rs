//! The `http` kind against a stub server: mapping, templated requests, statuses, retries,
//! transport failures and timeouts.

use std::time::Duration;

use braid::{Engine, Event, FailureKind, NodeStatus, RunOptions, RunResult, RunStatus};
use serde_json::{Value, json};

use crate::stub::{Reply, Stub, closed_port, in_child};

/// Compiles and runs a workflow, returning the result and every event.
pub(crate) async fn run(yaml: &str, inputs: Value) -> (RunResult, Vec<Event>) {
    let workflow = match Engine::new().load_str("test.yaml", yaml) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    let (run, mut rx) = workflow
        .run_with_events(inputs, RunOptions::default())
        .expect("inputs");
    let result = run.await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (result, events)
}

/// A one-node workflow around an `http` node whose `with:` block is `with` (YAML, indented 6).
fn one_node(writes: &str, node_extra: &str, with: &str) -> String {
    format!(
        r#"
version: 1
name: http-test
inputs:
  query: {{ type: string, default: hello world }}
state:
  first:  {{ reducer: replace }}
  count:  {{ reducer: replace }}
  status: {{ reducer: replace }}
  ctype:  {{ reducer: replace }}
  all:    {{ reducer: replace }}
nodes:
  call:
    kind: http
    writes: [{writes}]
{node_extra}
    with:
{with}
"#
    )
}

fn failure(result: &RunResult) -> (FailureKind, String, u32) {
    let node = result.report.node("call").expect("node `call`");
    let f = node.failure.as_ref().expect("a failure");
    (f.kind, f.message.clone(), node.attempts)
}

#[tokio::test(start_paused = true)]
async fn maps_pointers_and_templates() {
    let body = json!({ "items": [{ "name": "a" }, { "name": "b" }, { "name": "c" }], "total": 3 });
    let stub = Stub::start(vec![Reply::json(200, body.clone())]).await;
    let yaml = one_node(
        "first, count, status, ctype, all",
        "",
        &format!(
            r#"      url: {}/search
      output:
        first: /items/1/name
        count: "{{{{ response.body.items | length }}}}"
        status: "{{{{ response.status }}}}"
        ctype: "{{{{ response.headers['content-type'] }}}} for {{{{ inputs.query }}}}"
        all: """#,
            stub.url()
        ),
    );
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(result.state["first"], "b");
    assert_eq!(result.state["count"], 3);
    assert_eq!(result.state["status"], 200);
    assert_eq!(result.state["ctype"], "application/json for hello world");
    assert_eq!(result.state["all"], body);
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].target, "/search");
    assert!(requests[0].body.is_empty());
}

#[tokio::test(start_paused = true)]
async fn templated_url_headers_query_and_body_reach_the_server() {
    let stub = Stub::start(vec![Reply::json(200, json!({ "ok": true }))]).await;
    let yaml = format!(
        r#"
version: 1
name: http-request
inputs:
  index: {{ type: string }}
  query: {{ type: string }}
  limit: {{ type: integer, default: 5 }}
state:
  docs:   {{ reducer: replace }}
  status: {{ reducer: replace }}
nodes:
  prepare:
    kind: transform
    writes: [docs]
    with: {{ output: {{ docs: [{{ id: 1 }}, {{ id: 2 }}] }} }}
  call:
    kind: http
    needs: [prepare]
    writes: [status]
    with:
      method: POST
      url: "{url}/v1/{{{{ inputs.index }}}}/search"
      headers:
        X-Request-Index: "{{{{ inputs.index }}}}"
        X-Count: 3
      query:
        q: "{{{{ inputs.query }}}}"
        limit: "{{{{ inputs.limit }}}}"
        tag: [a, b]
      body:
        query: "{{{{ inputs.query }}}}"
        limit: "{{{{ inputs.limit }}}}"
        docs: "{{{{ state.docs }}}}"
        fixed: [1, true, null]
      output:
        status: "{{{{ response.status }}}}"
"#,
        url = stub.url()
    );
    let (result, _) = run(&yaml, json!({ "index": "news", "query": "rust & tokio" })).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(result.state["status"], 200);
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.target,
        "/v1/news/search?q=rust+%26+tokio&limit=5&tag=a&tag=b"
    );
    assert_eq!(r.header("x-request-index"), Some("news"));
    assert_eq!(r.header("x-count"), Some("3"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({ "query": "rust & tokio", "limit": 5, "docs": [{ "id": 1 }, { "id": 2 }], "fixed": [1, true, null] })
    );
}

#[tokio::test(start_paused = true)]
async fn not_found_is_permanent() {
    let stub = Stub::start(vec![Reply::json(
        404,
        json!({ "error": { "message": "no such index" } }),
    )])
    .await;
    let yaml = one_node(
        "status",
        "    retry: { attempts: 3, backoff: 10ms }",
        &format!(
            "      url: {}/missing\n      output: {{ status: \"{{{{ response.status }}}}\" }}",
            stub.url()
        ),
    );
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    let (kind, message, attempts) = failure(&result);
    assert_eq!(kind, FailureKind::Error);
    assert_eq!(attempts, 1, "a 404 is not retried");
    assert_eq!(
        message,
        format!(
            "`GET {}/missing` returned 404 Not Found: no such index",
            stub.url()
        )
    );
    assert_eq!(stub.requests().len(), 1);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::NodeRetrying { .. }))
    );
}

/// The delay the runtime announced before each retry, and the virtual time between the failed
/// attempt's end and the next attempt's start.
pub(crate) fn retry_waits(events: &[Event]) -> Vec<(Duration, Duration, String)> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Event::NodeRetrying {
            delay,
            at,
            message,
            attempt,
            ..
        } = e
        {
            let next = events[i..].iter().find_map(|e| match e {
                Event::NodeStarted { attempt: a, at, .. } if *a == attempt + 1 => Some(*at),
                _ => None,
            });
            out.push((*delay, next.expect("a next attempt") - *at, message.clone()));
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn service_unavailable_is_retried_after_retry_after() {
    let stub = Stub::start(vec![
        Reply::json(503, json!({ "error": "overloaded" })).with_header("retry-after", "7"),
        Reply::json(200, json!({ "n": 1 })),
    ])
    .await;
    let yaml = one_node(
        "count",
        "    retry: { attempts: 3, backoff: 10ms }",
        &format!("      url: {}/x\n      output: {{ count: /n }}", stub.url()),
    );
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(result.state["count"], 1);
    let node = result.report.node("call").expect("node");
    assert_eq!(node.attempts, 2);
    assert_eq!(node.retries.len(), 1);
    assert!(
        node.retries[0]
            .failure
            .message
            .contains("returned 503 Service Unavailable: overloaded")
    );
    let waits = retry_waits(&events);
    assert_eq!(waits.len(), 1);
    assert_eq!(
        waits[0].0,
        Duration::from_secs(7),
        "Retry-After wins over the 10ms backoff"
    );
    assert_eq!(
        waits[0].1,
        Duration::from_secs(7),
        "the next attempt starts exactly 7s later (virtual time)"
    );
    assert_eq!(stub.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn too_many_requests_honours_an_http_date() {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    let stub = Stub::start(vec![
        Reply::json(429, json!({ "message": "slow down" })).with_header("retry-after", &date),
        Reply::json(429, json!({ "message": "slow down" })).with_header("retry-after", "2"),
        Reply::json(200, json!({ "n": 2 })),
    ])
    .await;
    let yaml = one_node(
        "count",
        "    retry: { attempts: 3, backoff: 10ms }",
        &format!("      url: {}/x\n      output: {{ count: /n }}", stub.url()),
    );
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(result.report.node("call").expect("node").attempts, 3);
    let waits = retry_waits(&events);
    assert_eq!(waits.len(), 2);
    // An HTTP date has whole seconds, and the wall clock moved on a little since it was made.
    assert!(
        (Duration::from_secs(28)..=Duration::from_secs(30)).contains(&waits[0].0),
        "{:?}",
        waits[0]
    );
    // The timer wheel has millisecond ticks: the sleep ends on the next one.
    assert!(
        waits[0].1 >= waits[0].0 && waits[0].1 - waits[0].0 < Duration::from_millis(1),
        "{:?}",
        waits[0]
    );
    assert_eq!(waits[1].0, Duration::from_secs(2));
    assert_eq!(waits[1].1, Duration::from_secs(2));
    assert!(
        waits[0].2.contains("429 Too Many Requests: slow down"),
        "{}",
        waits[0].2
    );
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_until_attempts_run_out() {
    let stub = Stub::start(vec![Reply::Full {
        status: 500,
        headers: vec![],
        body: "boom".into(),
    }])
    .await;
    let yaml = one_node(
        "count",
        "    retry: { attempts: 3, backoff: 100ms }\n    on_error: continue\n    fallback: { count: -1 }",
        &format!("      url: {}/x\n      output: {{ count: /n }}", stub.url()),
    );
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Degraded);
    assert_eq!(result.state["count"], -1);
    let (kind, message, attempts) = failure(&result);
    assert_eq!((kind, attempts), (FailureKind::Error, 3));
    assert!(
        message.ends_with("returned 500 Internal Server Error: boom"),
        "{message}"
    );
    assert_eq!(stub.requests().len(), 3);
}

#[tokio::test]
async fn connect_failure_is_retryable() {
    let addr = closed_port().await;
    let yaml = one_node(
        "count",
        "    retry: { attempts: 2, backoff: 10ms }",
        &format!(
            "      url: http://{addr}/x\n      connect_timeout: 5s\n      output: {{ count: /n }}"
        ),
    );
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    let (kind, message, attempts) = failure(&result);
    assert_eq!(kind, FailureKind::Error);
    assert_eq!(attempts, 2, "a refused connection is retried");
    assert!(
        message.starts_with(&format!("`GET http://{addr}/x`: cannot connect")),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn request_timeout_fails_the_attempt_as_a_timeout() {
    let stub = Stub::start(vec![Reply::Hang]).await;
    let yaml = one_node(
        "count",
        "",
        &format!(
            "      url: {}/slow\n      timeout: 2s\n      output: {{ count: /n }}",
            stub.url()
        ),
    );
    let start = tokio::time::Instant::now();
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    let (kind, message, attempts) = failure(&result);
    assert_eq!((kind, attempts), (FailureKind::Timeout, 1));
    assert_eq!(
        message,
        format!(
            "`GET {}/slow`: no complete response within the request timeout of 2s",
            stub.url()
        )
    );
    assert_eq!(start.elapsed(), Duration::from_secs(2), "virtual time");
    assert_eq!(stub.requests().len(), 1, "the request reached the server");
}

#[tokio::test(start_paused = true)]
async fn a_pointer_to_nothing_is_a_permanent_failure() {
    let stub = Stub::start(vec![Reply::json(200, json!({ "items": [] }))]).await;
    let yaml = one_node(
        "first",
        "    retry: { attempts: 3, backoff: 10ms }",
        &format!(
            "      url: {}/x\n      output: {{ first: /items/0/name }}",
            stub.url()
        ),
    );
    let (result, _) = run(&yaml, json!({})).await;
    let (_, message, attempts) = failure(&result);
    assert_eq!(attempts, 1);
    assert!(
        message.ends_with("returned 200 OK, but its body has nothing at `/items/0/name`"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn missing_secret_is_a_permanent_failure_naming_the_variable() {
    let stub = Stub::start(vec![Reply::json(200, json!({}))]).await;
    let yaml = one_node(
        "status",
        "    retry: { attempts: 3, backoff: 10ms }",
        &format!(
            "      url: {}/x\n      headers: {{ Authorization: \"Bearer {{{{ secrets.token }}}}\" }}\n      secrets: {{ token: BRAID_TEST_SURELY_UNSET_7F3A }}",
            stub.url()
        ),
    );
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    let (kind, message, attempts) = failure(&result);
    assert_eq!((kind, attempts), (FailureKind::Error, 1));
    assert_eq!(
        message,
        "secret `token`: the environment variable `BRAID_TEST_SURELY_UNSET_7F3A` is not set"
    );
    assert!(stub.requests().is_empty(), "nothing was sent");
    assert_eq!(
        result.report.node("call").expect("node").status,
        NodeStatus::Failed
    );
}

#[test]
fn invalid_params_are_diagnostics() {
    let yaml = one_node(
        "first",
        "",
        "      url: http://127.0.0.1:1/x\n      output: { first: items/0 }",
    );
    let Err(braid::Error::Invalid(invalid)) = Engine::new().load_str("test.yaml", &yaml) else {
        panic!("the workflow should not compile")
    };
    let text = invalid.to_string();
    assert!(text.contains("neither a JSON pointer"), "{text}");
    let yaml = one_node(
        "first",
        "",
        "      url: http://127.0.0.1:1/x\n      method: FETCH",
    );
    assert!(
        Engine::new().load_str("test.yaml", &yaml).is_err(),
        "unknown method"
    );
    let yaml = one_node(
        "first",
        "",
        "      url: http://127.0.0.1:1/x\n      output: { first: \"{{ secrets.x }}\" }",
    );
    assert!(
        Engine::new().load_str("test.yaml", &yaml).is_err(),
        "outputs cannot read secrets"
    );
    // A typo in a secret's name is found when the workflow compiles, at the template.
    let yaml = one_node(
        "first",
        "",
        "      url: http://127.0.0.1:1/x\n      headers: { Authorization: \"Bearer {{ secrets.tokn }}\" }\n      secrets: { token: SOME_TOKEN }",
    );
    let Err(braid::Error::Invalid(invalid)) = Engine::new().load_str("test.yaml", &yaml) else {
        panic!("the workflow should not compile")
    };
    let d = &invalid.diagnostics[0];
    assert_eq!(d.code, braid::Code::InvalidParams);
    assert!(
        d.message.ends_with(
            "`secrets.tokn` is not declared in `secrets`; the declared secrets are `token`"
        ),
        "{}",
        d.message
    );
    assert_eq!(d.span().start.line, 19, "at the header's template");
}

/// A secret whose name is computed at run time (`secrets[...]`), which the compiler cannot check,
/// fails naming it and the declared ones, not as a bare undefined value. (`PATH` is set wherever
/// tests run.)
#[tokio::test(start_paused = true)]
async fn an_undeclared_secret_named_at_run_time_is_named_in_the_failure() {
    let yaml = one_node(
        "first",
        "",
        "      url: http://127.0.0.1:1/x\n      headers: { Authorization: \"Bearer {{ secrets[inputs.query] }}\" }\n      secrets: { token: PATH }",
    );
    let (result, _) = run(&yaml, json!({ "query": "tokn" })).await;
    let (kind, message, attempts) = failure(&result);
    assert_eq!(kind, FailureKind::Error);
    assert_eq!(
        message,
        "template: undefined value: secret `tokn` is not declared; declared: `token`"
    );
    assert_eq!(attempts, 1, "permanent");
}

/// On a machine without CA certificates (a minimal container) the workflow still compiles and
/// `http://` works; `https://` fails at connect and says why.
#[test]
fn no_ca_certificates_still_allows_plain_http() {
    let env = [
        ("SSL_CERT_FILE", "/nonexistent/braid-test.pem"),
        ("SSL_CERT_DIR", "/nonexistent/braid-test-certs"),
    ];
    if !in_child("http::no_ca_certificates_still_allows_plain_http", &env) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stub = Stub::start(vec![Reply::json(200, json!({ "n": 5 }))]).await;
        let yaml = one_node(
            "count",
            "",
            &format!("      url: {}/x\n      output: {{ count: /n }}", stub.url()),
        );
        let (result, _) = run(&yaml, json!({})).await;
        assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
        assert_eq!(result.state["count"], 5);

        // Nothing listens there: the connection is refused before any TLS, and the message
        // says that https:// could not be verified anyway.
        let addr = closed_port().await;
        let yaml = one_node(
            "count",
            "",
            &format!("      url: https://{addr}/x\n      output: {{ count: /n }}"),
        );
        let (result, _) = run(&yaml, json!({})).await;
        let (_, message, _) = failure(&result);
        assert!(
            message.contains("no CA certificates could be loaded on this machine"),
            "{message}"
        );
    });
}

#[tokio::test(start_paused = true)]
async fn the_whole_body_is_written_as_text_when_it_is_not_json() {
    let stub = Stub::start(vec![Reply::Full {
        status: 200,
        headers: vec![("content-type", "text/plain".to_owned())],
        body: "plain words, not JSON".to_owned(),
    }])
    .await;
    let yaml = one_node(
        "all",
        "",
        &format!("      url: {}/t\n      output: {{ all: \"\" }}", stub.url()),
    );
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(result.state["all"], "plain words, not JSON");
}

#[tokio::test(start_paused = true)]
async fn too_many_redirects_is_permanent() {
    let stub = Stub::start(vec![Reply::Full {
        status: 302,
        headers: vec![("location", "/loop".to_owned())],
        body: String::new(),
    }])
    .await;
    let yaml = one_node(
        "count",
        "    retry: { attempts: 3, backoff: 10ms }",
        &format!(
            "      url: {}/loop\n      output: {{ count: /n }}",
            stub.url()
        ),
    );
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    let (kind, message, attempts) = failure(&result);
    assert_eq!((kind, attempts), (FailureKind::Error, 1), "not retried");
    assert_eq!(
        message,
        format!(
            "`GET {}/loop`: too many redirects (more than {})",
            stub.url(),
            braid_nodes::http::MAX_REDIRECTS
        )
    );
    assert_eq!(stub.requests().len(), braid_nodes::http::MAX_REDIRECTS + 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_beyond_max_backoff() {
    let stub = Stub::start(vec![
        Reply::json(503, json!({ "error": "overloaded" })).with_header("retry-after", "30"),
        Reply::json(200, json!({ "n": 1 })),
    ])
    .await;
    let yaml = one_node(
        "count",
        "    retry: { attempts: 2, backoff: 10ms, max_backoff: 1s }",
        &format!("      url: {}/x\n      output: {{ count: /n }}", stub.url()),
    );
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    let waits = retry_waits(&events);
    assert_eq!(waits[0].0, Duration::from_secs(30));
    assert_eq!(waits[0].1, Duration::from_secs(30), "virtual time");
}

#[tokio::test(start_paused = true)]
async fn every_attempt_sends_the_same_idempotency_key_unless_switched_off() {
    let stub = Stub::start(vec![
        Reply::json(503, json!({ "error": "overloaded" })),
        Reply::json(200, json!({ "n": 1 })),
        Reply::json(200, json!({ "n": 2 })),
    ])
    .await;
    let yaml = one_node(
        "count",
        "    retry: { attempts: 3, backoff: 10ms }",
        &format!(
            "      method: POST\n      url: {}/x\n      output: {{ count: /n }}",
            stub.url()
        ),
    );
    let workflow = Engine::new()
        .load_str("test.yaml", &yaml)
        .expect("compiles");
    let options = RunOptions {
        run_id: Some("run-42".into()),
        ..RunOptions::default()
    };
    let result = workflow.run(json!({}), options).await.expect("inputs");
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(result.report.run_id.as_deref(), Some("run-42"));
    let keys: Vec<Option<String>> = stub
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        [
            Some("run-42:call".to_owned()),
            Some("run-42:call".to_owned())
        ]
    );

    // Switched off: no header.
    let yaml = one_node(
        "count",
        "",
        &format!(
            "      url: {}/x\n      idempotency_key: false\n      output: {{ count: /n }}",
            stub.url()
        ),
    );
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(stub.requests()[2].header("idempotency-key"), None);
    // A run given no id made none, since no node asked for one.
    assert_eq!(result.report.run_id, None);
}
