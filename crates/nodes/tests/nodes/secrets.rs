//! Secrets reach the service and nothing else: not error messages, retry events or the report,
//! even when the service echoes them back or they are part of the URL.
//!
//! Setting an environment variable is `unsafe` in Rust 2024 (and this workspace forbids unsafe
//! code), so the test runs itself again as a child process with the variable set ([`in_child`]).

use std::time::Duration;

use braid::{Event, RunStatus};
use serde_json::json;

use crate::http::run;
use crate::stub::{Reply, Stub, closed_port, in_child, paused_runtime};

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
    paused_runtime().block_on(async {
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
    paused_runtime().block_on(async {
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

const SPLIT_VAR: &str = "BRAID_TEST_SPLIT_SECRET";
/// The secret `secrets_prop` found leaking (as it shrank it): with `?` and `#` that split it
/// between the path, the query and the fragment of the URL it is put in, tabs the URL parser
/// drops, `%`, `\` and non-ASCII. Its fragment (the end of the URL as messages name it) ends as
/// the `key` query parameter does, with the letters and digits of a marker, which the URL built
/// again with the secret replaced still held (its query parameters were the real ones): they
/// were taken for the template's and shown.
const SPLIT: &str = "`Y😀c\t\tGXzWéE\t%eWQ_r bT<C;a1😀e&:\t3tH\t5Dr53^.t本{_5O\t%b;;}S9tz\t)0\u{a0}\t6BIérgß😀S\t_@\\Wr?I#\te)\tv\tD?mZ^L9j^j\t92[\tFi7%Yv!\tHbbjbV@O/B日A2日nnMH\"Qcc1v😀p\tß😀=kyFBhQ\thQ4RY(=\t7`Ir<t*cßKdINeK'日B6ß;L. 0P-H\t本u;日3'p本CU\\$\"\tz\t/$@&\t本I4kg3U)~KJcE*V]%dWxE~=d-8g,!c3R日9QDB^\tUB~%6日w9>Z4@ß本y_i2本\t.😀ßm\t本;!éY 日ß#[DT>a2~lv:>GxI*[hR\t\t,\"|5mY\tZb47\tS,<w`Y\t\t0ZV\tO\"Jb(日v\"OH\u{a0}ßßp本=日CJPsr\t;i{ZZ6日\u{a0}t\t.9r\ttRkw&b7mO\t (H\t34V\u{a0}ßp/\t5r(c\t*😀OßRM\t;\u{a0}8_\\v\t\tN,H\tT|'1D'$~\tkb$*\t.i_v(日j@ßH/U日\t!\t{!\t>Y+\tUQJ\tW本[BoQzs😀\to4V#%g'0X{?f>*😀]eoé日Cf7n\t\"/😀M^1Z4\\😀)😀sK\tx\t96Vßf\"本9CuGpZ\t([\tn\\z~f9 )hj$]\t6\tV;\tK5E'D本E02z~bk\tH.WyNY_([V\t\t!*?s6_*rw😀Jß6A!P3é*h\tkSVM{#8-'\t 4s+Id$\txw?o\td \t😀h6}\u{a0}h1\tC`aNo7\t-[7IXTe\ts5PmsOkwRJ>T日Iu日s%/[ß}\t\t\tXwd😀)9😀}|本-日aO K@4qR<\tGG0Duf\t4ßWA\t$W.,^Pri=qYkf\t>\"😀b{M😀PLS`7*seW\t(gafj<*;(S😀R本A1B本jn2+821日Oc<i\u{a0}\u{a0}\"Irh\t*jW#L\tIUjSl2e\t3;\t9(`\tW本日g\t\\Hf_:H`w_w\t\t9W \u{a0}\tj\t%_n\t]E!38\"=日-Qß7<\t\tI日\tap@o\tQ>%[3-@K4]\té\tX]\to<Aj*T:0!T}bo=8\u{a0}xn3ß4\u{a0}=jQk~='Mi0l-i2😀#{RH/éFo\t0Z\u{a0}>d2$gOSX3>Ee\tA9\tt@y`r>Rd@-OeE\t\t&rR=n^MIY\t\tg!\"iz%DD日[\u{a0}%hß\t\tA'*HDR\"a\txV/51[pU😀we$jhEi{_9t1d😀~La9j日KWE\t1😀日_\tc4#hXe8_F/égMR8${p,l%.oé日ßM\tKq7MARKoneZx3vB98f$~\tUi\"HB本\tg5w\"#😀@\tMNH#本MOiAiu??#y$=)qDpßr~-K?[w%l,}zV\t本!W\t-^r=%u5JybW😀本/+b;`THß\tL\u{a0}A#o:pQxQb!f_^X\t\"|t\u{a0};%Fzo<*m\ttZ?@d'EN*3U>zR日FJ\ts/\\rm\tUj\u{a0}?CjPgMp(w~v:日Bj;v\u{a0}6l83?i;E(\\OMH%7U|pd|s^Z\tR6y?\u{a0}Tr\tZ-\tF\t8u😀2H5eG(\tdwa;L6\u{a0}\t}\u{a0}8~\tk\t\\!}mqDfe日本]$YFfJ )`w日Lt本dAw😀at😀\t(M6n:😀;P:&|\tNLHU_@yd2\tt\tVTvN\t\t&;/b\u{a0}#rX\u{a0}lLn日r日AnncDa\\@~O6Hdps`0h3_6i.KA41\t\tQK'do^,U😀;D</;\tL\t\\W@,>#>n本-kUTdF2]jX;:Lw2MARKtwoYp8nC4";
const SPLIT_MARKS: [&str; 2] = ["Kq7MARKoneZx3vB9", "Lw2MARKtwoYp8nC4"];

#[test]
fn a_secret_split_into_path_query_and_fragment_is_redacted_wherever_it_went() {
    let name = "secrets::a_secret_split_into_path_query_and_fragment_is_redacted_wherever_it_went";
    if !in_child(name, &[(SPLIT_VAR, SPLIT)]) {
        return;
    }
    paused_runtime().block_on(async {
        let stub = Stub::start(vec![Reply::Echo(400)]).await;
        let yaml = format!(
            r#"
version: 1
name: split-secret
state:
  status: {{ reducer: replace }}
nodes:
  call:
    kind: http
    writes: [status]
    with:
      secrets: {{ s: {SPLIT_VAR} }}
      output: {{ status: "{{{{ response.status }}}}" }}
      method: POST
      url: "{}/p/{{{{ secrets.s }}}}/q?inline={{{{ secrets.s }}}}"
      query: {{ key: "{{{{ secrets.s }}}}" }}
"#,
            stub.url()
        );
        let (result, events) = run(&yaml, json!({})).await;
        assert_eq!(result.status, RunStatus::Failed);
        let target = &stub.requests()[0].target;
        assert!(target.contains("MARKone"), "the server got it: {target}");
        let all = told(&result, &events);
        for mark in SPLIT_MARKS {
            assert!(!all.contains(mark), "`{mark}` shows:\n{all}");
        }
        let message = &result
            .report
            .node("call")
            .expect("node")
            .failure
            .as_ref()
            .expect("failure")
            .message;
        assert!(
            message.starts_with(&format!("`POST {}/p/***` returned 400", stub.url())),
            "{message}"
        );
    });
}
