//! `llm`: a chat completion from an OpenAI-compatible server (OpenAI, vLLM, llama.cpp's server,
//! Ollama): `POST {base_url}/chat/completions`.
//!
//! ```yaml
//! answer:
//!   kind: llm
//!   needs: [rag]
//!   writes: [response, usage, cost_usd]
//!   with:
//!     base_url: http://localhost:11434/v1   # Ollama; default https://api.openai.com/v1
//!     model: llama3.2
//!     api_key_env: OPENAI_API_KEY           # optional: the environment variable with the key
//!     system: You answer from the documents given.
//!     user: "{{ inputs.query }} Documents: {{ state.rag_results | tojson }}"
//!     stream: true                          # tokens are streamed as run events
//!     price: { input_per_1k: 0.00015, output_per_1k: 0.0006 }
//!     output: { text: response, usage: usage, cost_usd: cost_usd }
//! ```
//!
//! With `stream: true` the server-sent events are parsed as they arrive and each token is emitted
//! as a `{"token": ".."}` node message. Statuses, retries, timeouts and the API key's redaction
//! follow the `http` kind, whose helpers this module uses.

use std::sync::Arc;
use std::time::Duration;

use braid_core::registry::parse_params;
use braid_core::{
    BuildContext, BuildError, NamedAs, Node, NodeContext, NodeError, NodeFuture, NodeKind,
    Templated,
};
use braid_spec::DurationSpec;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, Method, Response, Url};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::{self, Call, MAX_BODY_BYTES, Resolved, Secrets};

/// Default request timeout of the `llm` kind: generations are slow.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

fn default_base_url() -> String {
    "https://api.openai.com/v1".to_owned()
}

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// Instructions to the model, as newer OpenAI models name them.
    Developer,
    /// The user's turn.
    User,
    /// The model's earlier turn (for few-shot examples or a conversation).
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who says it.
    pub role: Role,
    /// What is said: a template over `inputs` and `state`.
    pub content: String,
}

/// Prices, in US dollars per 1,000 tokens, turning the reported usage into a cost.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Dollars per 1,000 prompt (input) tokens.
    #[schemars(range(min = 0.0))]
    pub input_per_1k: f64,
    /// Dollars per 1,000 completion (output) tokens.
    #[schemars(range(min = 0.0))]
    pub output_per_1k: f64,
}

/// Which state keys receive what the completion gives. Each value is a key in the node's `writes`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmOutput {
    /// The key that receives the generated text (a string).
    #[serde(default)]
    pub text: Option<String>,
    /// The key that receives the token usage: `{ prompt_tokens, completion_tokens, total_tokens }`.
    /// Not written when the server reports no usage.
    #[serde(default)]
    pub usage: Option<String>,
    /// The key that receives the cost in dollars (a number), from the usage and `price`. Not
    /// written when the server reports no usage.
    #[serde(default)]
    pub cost_usd: Option<String>,
}

/// Parameters of the `llm` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmParams {
    /// The API's base URL; the node posts to `{base_url}/chat/completions`. Default:
    /// `https://api.openai.com/v1`. vLLM: `http://HOST:8000/v1`; llama.cpp's server:
    /// `http://HOST:8080/v1`; Ollama: `http://HOST:11434/v1`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The model name, as the server knows it (a template over `inputs` and `state`).
    pub model: String,
    /// The environment variable holding the API key, sent as `Authorization: Bearer KEY`. Read
    /// each time the node runs; a missing variable fails the node. Leave out for servers that need
    /// no key (Ollama, a local llama.cpp).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The system message (a template over `inputs` and `state`). With `user`; not with `messages`.
    #[serde(default)]
    pub system: Option<String>,
    /// The user message (a template over `inputs` and `state`). With `system`; not with `messages`.
    #[serde(default)]
    pub user: Option<String>,
    /// The whole conversation, instead of `system` and `user`.
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// Sampling temperature. Default: the server's.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// The most tokens to generate. Default: the server's.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
    /// More fields for the request body, such as `top_p`, `seed` or `response_format`, set last
    /// (they override the fields above). Strings are templates over `inputs` and `state`.
    #[serde(default)]
    pub extra: Option<Map<String, Value>>,
    /// Stream the completion: each token is emitted as a `{"token": ".."}` node message as it
    /// arrives, and the text is assembled. Default: `false`.
    #[serde(default)]
    pub stream: bool,
    /// Prices that turn usage into `cost_usd`.
    #[serde(default)]
    pub price: Option<Price>,
    /// Which declared keys receive the text, the usage and the cost.
    pub output: LlmOutput,
    /// How long to wait for the connection. Default: `10s`.
    #[serde(default)]
    pub connect_timeout: Option<DurationSpec>,
    /// How long the whole request may take, streaming included. Default: `120s`.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
}

/// The `llm` kind.
#[derive(Debug)]
pub struct LlmKind;

struct LlmNode {
    client: Client,
    timeout: Duration,
    url: Url,
    model: Templated,
    messages: Vec<(Role, Templated)>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    extra: Option<Templated>,
    stream: bool,
    price: Option<Price>,
    output: LlmOutput,
    secrets: Secrets,
}

struct Llm(Arc<LlmNode>);

impl Node for Llm {
    fn call(&self, ctx: NodeContext) -> NodeFuture {
        let node = self.0.clone();
        Box::pin(async move {
            let secrets = node.secrets.resolve()?;
            node.attempt(&ctx, &secrets)
                .await
                .map_err(|e| secrets.redact_error(e))
        })
    }
}

/// Token counts, as OpenAI-compatible servers report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

impl Usage {
    fn from_json(v: &Value) -> Option<Usage> {
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        let prompt_tokens = n("prompt_tokens")?;
        let completion_tokens = n("completion_tokens").unwrap_or(0);
        let total_tokens = n("total_tokens").unwrap_or(prompt_tokens + completion_tokens);
        Some(Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens,
        })
    }

    /// The cost in dollars at these prices.
    pub fn cost(&self, price: &Price) -> f64 {
        self.prompt_tokens as f64 / 1000.0 * price.input_per_1k
            + self.completion_tokens as f64 / 1000.0 * price.output_per_1k
    }
}

/// What a completion gave.
struct Completion {
    text: String,
    usage: Option<Usage>,
}

impl LlmNode {
    async fn attempt(&self, ctx: &NodeContext, secrets: &Resolved) -> Result<Value, NodeError> {
        let body = self.request_body(ctx)?;
        let what = format!("`POST {}`", self.url);
        let call = Call {
            what: &what,
            timeout: self.timeout,
        };
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = secrets.get("api_key") {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                NodeError::new(
                    "the API key is not a valid header value (a newline or a control character?)",
                )
                .permanent()
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let outgoing = http::Outgoing {
            method: Method::POST,
            url: self.url.clone(),
            headers,
            body: Some(body),
        };
        let mut response = http::send(&self.client, outgoing, &call).await?;
        let status = response.status();
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let completion = if status.is_success() && is_sse {
            read_stream(ctx, &mut response, &call).await?
        } else {
            let headers = response.headers().clone();
            let bytes = http::read_body(&mut response, &call).await?;
            http::check_status(&what, status, &headers, &bytes, secrets)?;
            parse_completion(&what, &bytes)?
        };
        Ok(self.update(completion))
    }

    fn request_body(&self, ctx: &NodeContext) -> Result<Vec<u8>, NodeError> {
        let mut messages = Vec::with_capacity(self.messages.len());
        for (role, content) in &self.messages {
            let content = match ctx.render(content)? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            messages.push(json!({ "role": role.as_str(), "content": content }));
        }
        let mut body = Map::new();
        body.insert("model".to_owned(), ctx.render(&self.model)?);
        body.insert("messages".to_owned(), Value::Array(messages));
        if let Some(t) = self.temperature {
            body.insert("temperature".to_owned(), json!(t));
        }
        if let Some(m) = self.max_tokens {
            body.insert("max_tokens".to_owned(), json!(m));
        }
        body.insert("stream".to_owned(), Value::Bool(self.stream));
        if self.stream {
            body.insert(
                "stream_options".to_owned(),
                json!({ "include_usage": true }),
            );
        }
        if let Some(extra) = &self.extra {
            match ctx.render(extra)? {
                Value::Object(fields) => body.extend(fields),
                _ => return Err(NodeError::new("`extra` did not render to an object").permanent()),
            }
        }
        serde_json::to_vec(&body)
            .map_err(|e| NodeError::new(format!("the request is not JSON: {e}")).permanent())
    }

    fn update(&self, completion: Completion) -> Value {
        let mut update = Map::new();
        if let Some(key) = &self.output.text {
            update.insert(key.clone(), Value::String(completion.text));
        }
        if let Some(usage) = completion.usage {
            if let Some(key) = &self.output.usage {
                update.insert(
                    key.clone(),
                    json!({
                        "prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "total_tokens": usage.total_tokens,
                    }),
                );
            }
            if let (Some(key), Some(price)) = (&self.output.cost_usd, &self.price) {
                update.insert(key.clone(), json!(usage.cost(price)));
            }
        }
        Value::Object(update)
    }
}

fn not_a_completion(what: &str, why: &str) -> NodeError {
    NodeError::new(format!("{what} did not return a chat completion: {why}")).permanent()
}

/// Reads a whole (non-streamed) completion.
fn parse_completion(what: &str, bytes: &[u8]) -> Result<Completion, NodeError> {
    let http::Body::Json(v) = http::parse_body(bytes) else {
        return Err(not_a_completion(what, "the body is not JSON"));
    };
    let Some(message) = v.pointer("/choices/0/message") else {
        return Err(not_a_completion(what, "it has no `choices[0].message`"));
    };
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            return Err(not_a_completion(
                what,
                "`choices[0].message.content` is not text",
            ));
        }
    };
    Ok(Completion {
        text,
        usage: v.get("usage").and_then(Usage::from_json),
    })
}

/// Reads a server-sent event stream of completion chunks, emitting each token as it comes.
async fn read_stream(
    ctx: &NodeContext,
    response: &mut Response,
    call: &Call<'_>,
) -> Result<Completion, NodeError> {
    let mut sse = SseParser::default();
    let mut completion = Completion {
        text: String::new(),
        usage: None,
    };
    let mut read = 0usize;
    let mut finished = false;
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| http::transport_error(e, call))?;
        let events = match &chunk {
            Some(bytes) => {
                read += bytes.len();
                if read > MAX_BODY_BYTES {
                    return Err(NodeError::new(format!(
                        "{}: the stream is longer than {} MiB",
                        call.what,
                        MAX_BODY_BYTES / (1024 * 1024)
                    ))
                    .permanent());
                }
                sse.push(bytes)
            }
            None => sse.finish(),
        };
        for data in events {
            if data.trim() == "[DONE]" {
                return Ok(completion);
            }
            let Ok(event) = serde_json::from_str::<Value>(&data) else {
                return Err(not_a_completion(call.what, "a streamed event is not JSON"));
            };
            if let Some(error) = event.get("error") {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| error.to_string(), str::to_owned);
                return Err(NodeError::new(format!(
                    "{}: the stream reported an error: {message}",
                    call.what
                )));
            }
            if let Some(Value::String(token)) = event.pointer("/choices/0/delta/content") {
                if !token.is_empty() {
                    ctx.emit(json!({ "token": token }));
                    completion.text.push_str(token);
                }
            }
            if let Some(usage) = event.get("usage").and_then(Usage::from_json) {
                completion.usage = Some(usage);
            }
            finished |= event
                .pointer("/choices/0/finish_reason")
                .is_some_and(|r| !r.is_null());
        }
        if chunk.is_none() {
            // Some servers close the stream after the last chunk without `[DONE]`: the
            // `finish_reason` says the answer is whole. Without either, the stream was cut.
            if finished {
                return Ok(completion);
            }
            return Err(NodeError::new(format!(
                "{}: the stream ended before the answer did (no `data: [DONE]` and no `finish_reason`)",
                call.what
            )));
        }
    }
}

/// Splits a server-sent event stream into the `data` of each event. Handles lines split across
/// chunks, `\r\n` line ends, multi-line data (joined by `\n`), comments and other fields.
#[derive(Debug, Default)]
struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&String::from_utf8_lossy(&line), &mut events);
            } else {
                self.line.push(b);
            }
        }
        events
    }

    fn finish(&mut self) -> Vec<String> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&String::from_utf8_lossy(&line), &mut events);
        }
        events.extend(self.data.take());
        events
    }

    fn line_done(&mut self, line: &str, events: &mut Vec<String>) {
        if line.is_empty() {
            events.extend(self.data.take());
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
    }
}

impl NodeKind for LlmKind {
    fn name(&self) -> &str {
        "llm"
    }
    fn description(&self) -> &str {
        "A chat completion from an OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama)."
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<LlmParams>())
    }
    fn build(
        &self,
        params: Option<&Value>,
        cx: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let p: LlmParams = parse_params(params)?;
        let connect_timeout = http::duration(
            p.connect_timeout.as_ref(),
            "/connect_timeout",
            http::DEFAULT_CONNECT_TIMEOUT,
        )?;
        let timeout = http::duration(p.timeout.as_ref(), "/timeout", DEFAULT_TIMEOUT)?;
        let base = Url::parse(p.base_url.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.query().is_none())
            .ok_or_else(|| {
                BuildError::params(
                    "/base_url",
                    format!("`{}` is not an `http://` or `https://` URL", p.base_url),
                )
            })?;
        let url = Url::parse(&format!(
            "{}/chat/completions",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|e| BuildError::params("/base_url", e.to_string()))?;
        let secrets = match &p.api_key_env {
            Some(var) => Secrets::single("api_key", var, "/api_key_env")?,
            None => Secrets::default(),
        };
        let messages = match (&p.messages, &p.system, &p.user) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(BuildError::params(
                    "/messages",
                    "give either `messages` or `system`/`user`, not both",
                ));
            }
            (Some(list), None, None) => {
                if list.is_empty() {
                    return Err(BuildError::params("/messages", "`messages` is empty"));
                }
                list.iter()
                    .enumerate()
                    .map(|(i, m)| {
                        (
                            m.role,
                            cx.templated(
                                &format!("/messages/{i}/content"),
                                &Value::String(m.content.clone()),
                            ),
                        )
                    })
                    .collect()
            }
            (None, system, user) => {
                if user.is_none() {
                    return Err(BuildError::params(
                        "",
                        "give the prompt: `user` (and `system`), or `messages`",
                    ));
                }
                let mut out = Vec::new();
                if let Some(s) = system {
                    out.push((
                        Role::System,
                        cx.templated("/system", &Value::String(s.clone())),
                    ));
                }
                if let Some(u) = user {
                    out.push((Role::User, cx.templated("/user", &Value::String(u.clone()))));
                }
                out
            }
        };
        let o = &p.output;
        if o.text.is_none() && o.usage.is_none() && o.cost_usd.is_none() {
            return Err(BuildError::params(
                "/output",
                "name at least one key: `text`, `usage` or `cost_usd`",
            ));
        }
        if o.cost_usd.is_some() && p.price.is_none() {
            return Err(BuildError::params(
                "/output/cost_usd",
                "`cost_usd` needs `price` to compute it",
            ));
        }
        if let Some(price) = &p.price {
            if !(price.input_per_1k >= 0.0 && price.output_per_1k >= 0.0) {
                return Err(BuildError::params(
                    "/price",
                    "prices are numbers of dollars, zero or more",
                ));
            }
        }
        for (field, key) in [
            ("text", &o.text),
            ("usage", &o.usage),
            ("cost_usd", &o.cost_usd),
        ] {
            if let Some(key) = key {
                cx.will_write(&format!("/output/{field}"), NamedAs::Value, key);
            }
        }
        let model = cx.templated("/model", &Value::String(p.model.clone()));
        let extra = p.extra.map(|e| cx.templated("/extra", &Value::Object(e)));
        Ok(Arc::new(Llm(Arc::new(LlmNode {
            client: http::client(connect_timeout, timeout)?,
            timeout,
            url,
            model,
            messages,
            temperature: p.temperature,
            max_tokens: p.max_tokens,
            extra,
            stream: p.stream,
            price: p.price,
            output: p.output,
            secrets,
        }))))
    }
}

#[cfg(test)]
mod tests {
    use braid_core::TemplateEnv;

    use super::*;

    #[test]
    fn sse_lines_may_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").is_empty());
        assert_eq!(
            p.push(b":1}\r\n\r\n: a comment\n\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]"),
            ["{\"a\":1}", "one\ntwo"]
        );
        assert_eq!(p.finish(), ["[DONE]"]);
    }

    #[test]
    fn cost_is_usage_times_price() {
        let u = Usage {
            prompt_tokens: 2000,
            completion_tokens: 500,
            total_tokens: 2500,
        };
        assert_eq!(
            u.cost(&Price {
                input_per_1k: 0.5,
                output_per_1k: 2.0
            }),
            2.0
        );
        assert_eq!(
            Usage::from_json(&json!({"prompt_tokens": 3, "completion_tokens": 4}))
                .map(|u| u.total_tokens),
            Some(7)
        );
    }

    #[test]
    fn bad_params_are_located() {
        let mut env = TemplateEnv::new();
        let mut cx = BuildContext::new(&mut env, "/with");
        let cases = [
            (json!({ "model": "m", "output": { "text": "t" } }), ""),
            (
                json!({ "model": "m", "user": "u", "messages": [{ "role": "user", "content": "u" }], "output": { "text": "t" } }),
                "/messages",
            ),
            (
                json!({ "model": "m", "user": "u", "output": {} }),
                "/output",
            ),
            (
                json!({ "model": "m", "user": "u", "output": { "cost_usd": "c" } }),
                "/output/cost_usd",
            ),
            (
                json!({ "model": "m", "user": "u", "base_url": "localhost:8080", "output": { "text": "t" } }),
                "/base_url",
            ),
        ];
        for (params, pointer) in cases {
            let err = LlmKind.build(Some(&params), &mut cx).err().unwrap();
            assert_eq!(err.pointer, pointer, "{params}: {}", err.message);
        }
        let ok = json!({ "model": "m", "base_url": "http://127.0.0.1:1/v1/", "user": "{{ inputs.q }}", "output": { "text": "t" } });
        assert!(LlmKind.build(Some(&ok), &mut cx).is_ok());
    }
}
