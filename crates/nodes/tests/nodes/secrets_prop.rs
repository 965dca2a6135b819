//! A property: whatever a secret holds (any character a header or URL can carry, up to 4 KiB),
//! it reaches no output channel: not the report, the events, the logs (both formats, every
//! level, every crate) or the messages, and not a server on another origin after a redirect.
//!
//! Secrets come from environment variables, which only a child process can be given (setting
//! one here is `unsafe`), so each case runs this test again in a child with the secret set; the
//! child does the checks and the parent shrinks what fails.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::http::run;
use crate::stub::{Reply, Stub};

const VAR: &str = "BRAID_PROP_SECRET";
/// The same secret without the characters that would end a URL's authority (`/`, `?`, `#`,
/// `\`), for the password of a URL's userinfo: with them the host would no longer be loopback.
const PASSWORD_VAR: &str = "BRAID_PROP_PASSWORD";
/// Two markers inside every secret: a leak of any part of it longer than the random text
/// between them shows one.
const MARKS: [&str; 2] = ["Kq7MARKoneZx3vB9", "Lw2MARKtwoYp8nC4"];
const NAME: &str = "secrets_prop::random_secrets_never_leak";

/// Characters a header value or a URL can carry: printable ASCII (every URL delimiter among
/// them), tab, and non-ASCII text.
fn piece(max: usize) -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        8 => (0x20u8..0x7f).prop_map(char::from),
        1 => Just('\t'),
        1 => prop::sample::select(vec!['é', 'ß', '日', '本', '😀', '\u{a0}']),
    ];
    prop::collection::vec(ch, 0..max).prop_map(|v| v.into_iter().collect())
}

/// A secret of up to 4 KiB with the markers at random places.
fn secret() -> impl Strategy<Value = String> {
    (piece(1300), piece(1300), piece(1300))
        .prop_map(|(a, b, c)| format!("{a}{}{b}{}{c}", MARKS[0], MARKS[1]))
}

#[test]
fn random_secrets_never_leak() {
    if let Ok(secret) = std::env::var(VAR) {
        child(&secret);
        return;
    }
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&secret(), |secret| {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
            .env(VAR, &secret)
            .env(PASSWORD_VAR, password(&secret))
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && stdout.contains("1 passed") {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "secret {secret:?} leaked:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

fn password(secret: &str) -> String {
    secret
        .chars()
        .filter(|c| !matches!(c, '/' | '?' | '#' | '\\'))
        .collect()
}

/// Base64, standard or URL-safe alphabet, with padding.
fn base64(bytes: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What would show a marker: the marker itself (raw, percent-encoded and JSON-escaped alike,
/// being letters and digits), and the base64 characters it alone determines, at each of the
/// three offsets it may sit at inside an encoded text.
fn tells() -> Vec<String> {
    let mut out = Vec::new();
    for mark in MARKS {
        out.push(mark.to_owned());
        for url_safe in [false, true] {
            for (offset, skip) in [(0usize, 0usize), (1, 2), (2, 3)] {
                let mut bytes = vec![b'x'; offset];
                bytes.extend_from_slice(mark.as_bytes());
                let encoded = base64(&bytes, url_safe);
                let encoded = encoded.trim_end_matches('=');
                out.push(encoded[skip..encoded.len() - 1].to_owned());
            }
        }
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    for tell in tells() {
        assert!(!text.contains(&tell), "{what} shows `{tell}`:\n{text}");
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn child(secret: &str) {
    // Every log line of every crate at every level, in both formats.
    let logs = Captured::default();
    let (pretty, json_logs) = (logs.clone(), logs.clone());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || pretty.clone()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(move || json_logs.clone()),
        )
        .try_init()
        .expect("one subscriber");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut told = String::new();
    rt.block_on(async {
        // Everywhere a request can carry it, echoed back whole by the server.
        let stub = Stub::start(vec![Reply::Echo(400)]).await;
        let yaml = workflow(&format!(
            r#"      method: POST
      url: "{}/p/{{{{ secrets.s }}}}/q?inline={{{{ secrets.s }}}}"
      query: {{ key: "{{{{ secrets.s }}}}" }}
      headers: {{ X-Api-Key: "{{{{ secrets.s }}}}", Authorization: "Bearer {{{{ secrets.s }}}}" }}
      body: {{ token: "{{{{ secrets.s }}}}" }}"#,
            stub.url()
        ));
        told.push_str(&run_and_tell(&yaml).await);

        // As the password of the URL's userinfo (sent as basic credentials), echoed.
        assert_eq!(
            std::env::var(PASSWORD_VAR).ok(),
            Some(password(secret)),
            "the parent sets it"
        );
        let yaml = workflow(&format!(
            r#"      url: "http://braid:{{{{ secrets.p }}}}@{}/u""#,
            stub.addr
        ));
        told.push_str(&run_and_tell(&yaml).await);

        // Through a redirect to another origin, whose server echoes what reached it.
        let other = Stub::start(vec![Reply::Echo(400)]).await;
        let first = Stub::start(vec![Reply::Full {
            status: 302,
            headers: vec![("location", format!("{}/landed", other.url()))],
            body: String::new(),
        }])
        .await;
        let yaml = workflow(&format!(
            r#"      url: "{}/start?key={{{{ secrets.s }}}}"
      headers: {{ X-Api-Key: "{{{{ secrets.s }}}}", Authorization: "Bearer {{{{ secrets.s }}}}" }}"#,
            first.url()
        ));
        told.push_str(&run_and_tell(&yaml).await);
        for r in other.requests() {
            assert_clean("the other origin's request", &format!("{r:?}"));
        }

        // As an LLM API key, echoed in the error.
        let yaml = format!(
            r#"
version: 1
name: prop-llm
state:
  response: {{ reducer: replace }}
nodes:
  answer:
    kind: llm
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
        told.push_str(&run_and_tell(&yaml).await);
        assert!(!stub.requests().is_empty());
    });
    drop(rt);
    assert_clean("the run (report, events, messages)", &told);
    let logs = String::from_utf8_lossy(&logs.0.lock().expect("lock")).into_owned();
    assert!(!logs.is_empty(), "logs were captured");
    assert_clean("the logs", &logs);
    let _ = std::io::stdout().flush();
}

fn workflow(with: &str) -> String {
    format!(
        r#"
version: 1
name: prop-http
state:
  status: {{ reducer: replace }}
nodes:
  call:
    kind: http
    retry: {{ attempts: 2, backoff: 1ms }}
    writes: [status]
    with:
      secrets: {{ s: {VAR}, p: {PASSWORD_VAR} }}
      output: {{ status: "{{{{ response.status }}}}" }}
{with}
"#
    )
}

/// Runs a workflow; everything it tells: the result (state and report) and every event, as
/// JSON and as debug text.
async fn run_and_tell(yaml: &str) -> String {
    let (result, events) = run(yaml, json!({})).await;
    let mut out = serde_json::to_string(&result).expect("serializes");
    out.push_str(&format!("{result:?}"));
    for e in &events {
        out.push_str(&serde_json::to_string(e).expect("serializes"));
        out.push_str(&format!("{e:?}"));
    }
    out
}
