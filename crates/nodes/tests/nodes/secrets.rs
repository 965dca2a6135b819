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

const LONG_VAR: &str = "BRAID_TEST_LONG_SECRET";
const MIXED_VAR: &str = "BRAID_TEST_MIXED_SECRET";
const USER_VAR: &str = "BRAID_TEST_USER_SECRET";
/// In every segment of [`long_secret`], so any piece of it longer than a segment shows.
const LONG_MARK: &str = "LONGMARK";
/// Characters the URL parser encodes differently in a path, a query and a fragment, a `?` that
/// moves the rest of it from the path into the query, and non-ASCII.
const MIXED: &str = "MIXMARK a\"b/c+d=e'f`g{h}i?j k'l`m{n}é<>MIXMARK";
const USER: &str = "p@ss:w USERMARK%zz é";

/// A token longer than an error excerpt (a JWT or an OAuth token is), marked throughout.
fn long_secret() -> String {
    (0..12)
        .map(|i| format!("seg{i}-{LONG_MARK}-abcdefghijklmnopqrstuvwxyz0123"))
        .collect::<Vec<_>>()
        .join(".")
}

fn leaks(told: &str) -> Vec<&'static str> {
    ["LONGMARK", "MIXMARK", "USERMARK"]
        .into_iter()
        .filter(|m| told.contains(m))
        .collect()
}

#[test]
fn secrets_in_any_form_are_redacted_and_stay_with_their_origin() {
    let name = "secrets::secrets_in_any_form_are_redacted_and_stay_with_their_origin";
    let long = long_secret();
    if !in_child(
        name,
        &[(LONG_VAR, &long), (MIXED_VAR, MIXED), (USER_VAR, USER)],
    ) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        a_secret_in_the_url_is_redacted_in_the_form_the_url_carries().await;
        a_long_echoed_secret_is_redacted_before_the_excerpt_is_cut().await;
        a_cross_origin_redirect_drops_secret_headers_and_sends_no_referer().await;
        basic_credentials_echoed_as_base64_are_redacted().await;
    });
}

fn node_with(with: &str) -> String {
    format!(
        r#"
version: 1
name: adversarial-secrets
state:
  status: {{ reducer: replace }}
nodes:
  call:
    kind: http
    writes: [status]
    with:
      secrets: {{ long: {LONG_VAR}, mixed: {MIXED_VAR}, user: {USER_VAR} }}
      output: {{ status: "{{{{ response.status }}}}" }}
{with}
"#
    )
}

async fn a_secret_in_the_url_is_redacted_in_the_form_the_url_carries() {
    let stub = Stub::start(vec![Reply::Echo(400)]).await;
    let yaml = node_with(&format!(
        r#"      url: "{}/p/{{{{ secrets.mixed }}}}/q?x={{{{ secrets.mixed }}}}#{{{{ secrets.mixed }}}}""#,
        stub.url()
    ));
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    let target = &stub.requests()[0].target;
    assert!(target.contains("MIXMARK"), "the server got it: {target}");
    let all = told(&result, &events);
    assert_eq!(leaks(&all), [""; 0], "{all}");
    let message = &result
        .report
        .node("call")
        .expect("node")
        .failure
        .as_ref()
        .expect("failure")
        .message;
    assert!(
        message.starts_with(&format!("`GET {}/p/***", stub.url())),
        "{message}"
    );
}

async fn a_long_echoed_secret_is_redacted_before_the_excerpt_is_cut() {
    let long = long_secret();
    let stub = Stub::start(vec![Reply::json(
        401,
        json!({ "error": { "message": format!("the token {long} has expired") } }),
    )])
    .await;
    let yaml = node_with(&format!(
        r#"      url: "{}/x"
      headers: {{ Authorization: "Bearer {{{{ secrets.long }}}}" }}"#,
        stub.url()
    ));
    let (result, events) = run(&yaml, json!({})).await;
    let all = told(&result, &events);
    assert_eq!(leaks(&all), [""; 0], "{all}");
    let message = &result
        .report
        .node("call")
        .expect("node")
        .failure
        .as_ref()
        .expect("failure")
        .message;
    assert_eq!(
        message,
        &format!(
            "`GET {}/x` returned 401 Unauthorized: the token *** has expired",
            stub.url()
        )
    );

    // The same for `llm`, whose key is echoed by the server.
    let stub = Stub::start(vec![Reply::json(
        401,
        json!({ "error": { "message": format!("Incorrect API key provided: {long}. You can find your API key at https://example.invalid/account/api-keys, where every key you made is listed with its last use, its owner and its permissions.") } }),
    )])
    .await;
    let yaml = format!(
        r#"
version: 1
name: llm-long-key
state:
  response: {{ reducer: replace }}
nodes:
  answer:
    kind: llm
    writes: [response]
    with:
      base_url: {}/v1
      model: m
      api_key_env: {LONG_VAR}
      user: hi
      output: {{ text: response }}
"#,
        stub.url()
    );
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    let all = told(&result, &events);
    assert_eq!(leaks(&all), [""; 0], "{all}");
}

async fn a_cross_origin_redirect_drops_secret_headers_and_sends_no_referer() {
    let other = Stub::start(vec![Reply::json(200, json!({}))]).await;
    let first = Stub::start(vec![Reply::Full {
        status: 302,
        headers: vec![("location", format!("{}/landed", other.url()))],
        body: String::new(),
    }])
    .await;
    let yaml = node_with(&format!(
        r#"      url: "{}/start"
      query: {{ key: "{{{{ secrets.long }}}}" }}
      headers:
        Authorization: "Bearer {{{{ secrets.long }}}}"
        X-Api-Key: "{{{{ secrets.long }}}}"
        X-Plain: hello"#,
        first.url()
    ));
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    assert_eq!(
        first.requests()[0].header("x-api-key"),
        Some(long_secret().as_str())
    );
    let landed = &other.requests()[0];
    assert_eq!(landed.target, "/landed");
    assert_eq!(
        landed.header("x-plain"),
        Some("hello"),
        "other headers go on"
    );
    for name in ["x-api-key", "authorization", "referer"] {
        assert_eq!(landed.header(name), None, "{name}: {:?}", landed.headers);
    }
    assert_eq!(leaks(&told(&result, &events)), [""; 0]);

    // On the same origin, everything is sent again.
    let same = Stub::start(vec![
        Reply::Full {
            status: 307,
            headers: vec![("location", "/again".to_owned())],
            body: String::new(),
        },
        Reply::json(200, json!({})),
    ])
    .await;
    let yaml = node_with(&format!(
        r#"      url: "{}/start"
      headers: {{ X-Api-Key: "{{{{ secrets.long }}}}" }}"#,
        same.url()
    ));
    let (result, _) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.report);
    let again = &same.requests()[1];
    assert_eq!(again.target, "/again");
    assert_eq!(again.header("x-api-key"), Some(long_secret().as_str()));
    assert_eq!(again.header("referer"), None);
}

async fn basic_credentials_echoed_as_base64_are_redacted() {
    let stub = Stub::start(vec![Reply::Echo(401)]).await;
    let yaml = node_with(&format!(
        r#"      url: "http://braid:{{{{ secrets.user }}}}@{}/u""#,
        stub.addr
    ));
    let (result, events) = run(&yaml, json!({})).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(stub.requests().len(), 1, "{:?}", result.report);
    let sent = stub.requests()[0]
        .header("authorization")
        .expect("basic credentials")
        .to_owned();
    let encoded = sent.strip_prefix("Basic ").expect("basic");
    let all = told(&result, &events);
    assert!(!all.contains(encoded), "{all}");
    assert_eq!(leaks(&all), [""; 0], "{all}");
}
