//! `http`: calls an HTTP service and maps its JSON response onto the node's writes.
//!
//! ```yaml
//! search:
//!   kind: http
//!   writes: [hits, hit_count]
//!   with:
//!     method: POST
//!     url: "https://search.example.com/v1/{{ inputs.index }}/query"
//!     headers: { Authorization: "Bearer {{ secrets.token }}" }
//!     query: { limit: 10 }
//!     body: { q: "{{ inputs.query }}" }
//!     secrets: { token: SEARCH_TOKEN }        # name -> environment variable, read per call
//!     output:
//!       hits: /items                          # a JSON pointer into the response body
//!       hit_count: "{{ response.body.items | length }}"
//! ```
//!
//! A status outside 2xx fails the node: 429, 503 and other 5xx may be retried (honouring
//! `Retry-After`), any other status is permanent. Secrets are read from the environment when the
//! node runs and are replaced by `***` in every error message the node produces; request headers
//! never appear in one.
//!
//! This module also holds what the `llm` kind shares with it: the client (rustls with the `ring`
//! provider, no OpenSSL), secrets and their redaction, and the mapping of transport failures and
//! statuses onto [`NodeError`]s.

mod redact;
mod transport;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use braid_core::registry::parse_params;
use braid_core::{
    BuildContext, BuildError, FailureKind, NamedAs, Node, NodeContext, NodeError, NodeFuture,
    NodeKind, Templated,
};
use braid_spec::DurationSpec;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HeaderMap, HeaderName,
    HeaderValue, LOCATION, PROXY_AUTHORIZATION, RETRY_AFTER, TRANSFER_ENCODING,
};
use reqwest::{Client, Method, Response, StatusCode, Url};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The longest response body read, in bytes: a larger one fails the node (permanently).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Default connect timeout of the `http` and `llm` kinds.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default request timeout of the `http` kind.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `GET` (the default).
    #[default]
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `HEAD`.
    Head,
    /// `OPTIONS`.
    Options,
}

impl HttpMethod {
    fn to_method(self) -> Method {
        match self {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Patch => Method::PATCH,
            HttpMethod::Delete => Method::DELETE,
            HttpMethod::Head => Method::HEAD,
            HttpMethod::Options => Method::OPTIONS,
        }
    }
}

// Schema-only types (never built): what a header or query value may be in the file.

/// A header or query value: text, a number or a boolean (text may be a template).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum HttpScalar {
    String(String),
    Number(f64),
    Bool(bool),
}

/// A query value, or a list of values to repeat the parameter.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum HttpQueryValue {
    One(HttpScalar),
    Many(Vec<HttpScalar>),
}

/// Parameters of the `http` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpParams {
    /// The request method. Default: `GET`.
    #[serde(default)]
    pub method: HttpMethod,
    /// The URL (`http://` or `https://`): a template over `inputs`, `state` and `secrets`.
    pub url: String,
    /// Request headers: name → value. Values are templates over `inputs`, `state` and `secrets`;
    /// a value that renders to `null` leaves the header out.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, HttpScalar>")]
    pub headers: Map<String, Value>,
    /// Query parameters appended to the URL (URL-encoded): name → value, or a list of values to
    /// repeat the parameter. Values are templates; `null` leaves the parameter out.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, HttpQueryValue>")]
    pub query: Map<String, Value>,
    /// A JSON body, sent with `Content-Type: application/json` unless `headers` sets one. Strings
    /// inside are templates; a string that is exactly one `{{ expression }}` keeps its type, so
    /// `"{{ state.payload }}"` sends the object itself.
    #[serde(default)]
    pub body: Option<Value>,
    /// What the node writes: state key → where the value comes from. A string starting with `/`
    /// is a JSON pointer into the response body (`""` is the whole body); a template reads
    /// `response.status`, `response.headers` (lowercase names) and `response.body` besides
    /// `inputs` and `state`; any other value is written as it is. Default: nothing.
    #[serde(default)]
    pub output: Map<String, Value>,
    /// Secrets: a name used in templates as `secrets.NAME` → the environment variable holding it,
    /// read each time the node runs. A missing variable fails the node; secret values are replaced
    /// by `***` in every error message.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// How long to wait for the connection (TCP and TLS). Default: `10s`.
    #[serde(default)]
    pub connect_timeout: Option<DurationSpec>,
    /// How long the whole request may take, from connecting to the last byte of the response.
    /// Default: `30s`. (The node's own `timeout:` bounds the attempt as well.)
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// Send the node's idempotency key (`RUN_ID:NODE`, the same at every attempt and every resume
    /// of the run) as the `Idempotency-Key` header, so a service can recognise a request sent
    /// again. Default: `true`. A header named `Idempotency-Key` in `headers` takes precedence.
    #[serde(default = "yes")]
    pub idempotency_key: bool,
}

fn yes() -> bool {
    true
}

/// The header that carries a node's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The `http` kind.
#[derive(Debug)]
pub struct HttpKind;

/// Where one written key's value comes from.
enum Extract {
    /// A JSON pointer into the response body.
    Pointer(String),
    /// A value, possibly templated over `response`.
    Value(Templated),
}

struct HttpNode {
    client: Client,
    timeout: Duration,
    method: Method,
    url: Templated,
    headers: Vec<(HeaderName, Templated)>,
    query: Vec<(String, Templated)>,
    body: Option<Templated>,
    output: Vec<(String, Extract)>,
    secrets: Secrets,
    idempotency_key: bool,
}

struct Http(Arc<HttpNode>);

impl Node for Http {
    fn call(&self, ctx: NodeContext) -> NodeFuture {
        let node = self.0.clone();
        Box::pin(async move {
            let mut secrets = node.secrets.resolve()?;
            let result = node.attempt(&ctx, &mut secrets).await;
            result.map_err(|e| secrets.redact_error(e))
        })
    }
}

impl HttpNode {
    /// The URL this call sends: the `url` template and the `query` parameters, rendered by
    /// `render`, the query appended as `application/x-www-form-urlencoded` pairs.
    ///
    /// The one place a URL is made, for the call and for [`Resolved::learn_url`], which builds
    /// it again with each secret replaced: the two must differ only where the secret went.
    fn build_url(
        &self,
        render: impl Fn(&Templated) -> Result<Value, NodeError>,
    ) -> Result<Url, NodeError> {
        let url = match render(&self.url)? {
            Value::String(s) => s,
            other => {
                return Err(
                    NodeError::new(format!("`url` rendered to {other}, not a string")).permanent(),
                );
            }
        };
        let mut url = parse_url(&url)?;
        let mut query = Vec::new();
        for (name, value) in &self.query {
            match render(value)? {
                Value::Array(items) => {
                    for item in &items {
                        if let Some(s) = scalar(item, &format!("query parameter `{name}`"))? {
                            query.push((name.as_str(), s));
                        }
                    }
                }
                v => {
                    if let Some(s) = scalar(&v, &format!("query parameter `{name}`"))? {
                        query.push((name.as_str(), s));
                    }
                }
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    async fn attempt(&self, ctx: &NodeContext, secrets: &mut Resolved) -> Result<Value, NodeError> {
        let vars = secrets.template_vars();
        let url = self.build_url(|t| ctx.render_with_vars(t, &vars))?;
        if !self.secrets.0.is_empty() {
            // The exact forms the secrets took in this URL, before any message names it: the
            // same URL built again, with a secret replaced, in the template and the query alike.
            secrets.learn_url(&url, |vars| {
                self.build_url(|t| ctx.render_with(t, vars)).ok()
            });
        }
        let what = format!("`{} {url}`", self.method);
        let call = Call {
            what: &what,
            timeout: self.timeout,
        };
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 1);
        for (name, value) in &self.headers {
            let v = ctx.render_with_vars(value, &vars)?;
            let Some(v) = scalar(&v, &format!("header `{name}`"))? else {
                continue;
            };
            let mut hv = HeaderValue::from_str(&v).map_err(|_| {
                NodeError::new(format!(
                    "header `{name}` rendered to a value that is not a valid header value"
                ))
                .permanent()
            })?;
            hv.set_sensitive(secrets.contains_secret(&v));
            headers.append(name.clone(), hv);
        }
        if self.idempotency_key && !headers.contains_key(IDEMPOTENCY_KEY) {
            // Run ids and node names are header-safe; should one not be, the header is left out.
            if let Ok(key) = HeaderValue::from_str(&ctx.idempotency_key()) {
                headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), key);
            }
        }
        let mut body = None;
        if let Some(template) = &self.body {
            let rendered = ctx.render_with_vars(template, &vars)?;
            let bytes = serde_json::to_vec(&rendered)
                .map_err(|e| NodeError::new(format!("the body is not JSON: {e}")).permanent())?;
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            body = Some(bytes);
        }
        let outgoing = Outgoing {
            method: self.method.clone(),
            url,
            headers,
            body,
        };
        let mut response = send(&self.client, outgoing, &call).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_body(&mut response, &call).await?;
        check_status(&what, status, &headers, &bytes, secrets)?;
        // A large body is parsed off the run's task (its other nodes go on meanwhile).
        let body = crate::offload::parse(bytes, |b| Ok(parse_body(b))).await?;
        self.map_output(ctx, &what, status, &headers, &body)
    }

    fn map_output(
        &self,
        ctx: &NodeContext,
        what: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Body,
    ) -> Result<Value, NodeError> {
        let mut update = Map::new();
        let mut response: Option<Value> = None;
        for (key, extract) in &self.output {
            let value = match extract {
                Extract::Pointer(pointer) => match body {
                    Body::Json(v) => v.pointer(pointer).cloned().ok_or_else(|| {
                        NodeError::new(format!(
                            "{what} returned {status}, but its body has nothing at `{pointer}`"
                        ))
                        .permanent()
                    })?,
                    // `""` is the whole body, which may be text.
                    Body::Text(text) if pointer.is_empty() => Value::String(text.clone()),
                    Body::Text(_) => {
                        return Err(NodeError::new(format!(
                            "{what} returned {status} with a body that is not JSON, so `{pointer}` cannot be read"
                        ))
                        .permanent());
                    }
                },
                Extract::Value(t) => {
                    let vars = response.get_or_insert_with(|| {
                        json!({ "response": {
                            "status": status.as_u16(),
                            "headers": header_object(headers),
                            "body": body.to_value(),
                        }})
                    });
                    ctx.render_with(t, vars)?
                }
            };
            update.insert(key.clone(), value);
        }
        Ok(Value::Object(update))
    }
}

/// A rendered header or query value as text; `None` for `null`.
fn scalar(v: &Value, what: &str) -> Result<Option<String>, NodeError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(_) | Value::Number(_) => Ok(Some(v.to_string())),
        Value::Array(_) | Value::Object(_) => Err(NodeError::new(format!(
            "{what} rendered to a list or an object, not text"
        ))
        .permanent()),
    }
}

fn parse_url(url: &str) -> Result<Url, NodeError> {
    let parsed = Url::parse(url)
        .map_err(|e| NodeError::new(format!("invalid URL `{url}`: {e}")).permanent())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(
            NodeError::new(format!("the URL `{url}` is not `http://` or `https://`")).permanent(),
        );
    }
    Ok(parsed)
}

/// A response body: JSON when it parses as JSON, text otherwise.
pub(crate) enum Body {
    /// A JSON document (`null` for an empty body).
    Json(Value),
    /// Anything else, decoded as UTF-8 (lossily).
    Text(String),
}

impl Body {
    fn to_value(&self) -> Value {
        match self {
            Body::Json(v) => v.clone(),
            Body::Text(s) => Value::String(s.clone()),
        }
    }
}

pub(crate) fn parse_body(bytes: &[u8]) -> Body {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Body::Json(Value::Null);
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => Body::Json(v),
        Err(_) => Body::Text(String::from_utf8_lossy(bytes).into_owned()),
    }
}

fn header_object(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        match out.get_mut(name.as_str()) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(value);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
            }
        }
    }
    Value::Object(out)
}

pub(crate) use redact::*;
pub(crate) use transport::*;
pub use transport::{MAX_REDIRECTS, is_retryable, retry_after};

impl NodeKind for HttpKind {
    fn name(&self) -> &str {
        "http"
    }
    fn description(&self) -> &str {
        "Calls an HTTP service (templated request, JSON response mapped onto the node's writes)."
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<HttpParams>())
    }
    fn build(
        &self,
        params: Option<&Value>,
        cx: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let p: HttpParams = parse_params(params)?;
        let secrets = Secrets::new(&p.secrets, "/secrets")?;
        let connect_timeout = duration(
            p.connect_timeout.as_ref(),
            "/connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
        )?;
        let timeout = duration(p.timeout.as_ref(), "/timeout", DEFAULT_TIMEOUT)?;
        if !braid_core::template::is_template(&p.url) {
            parse_url(&p.url).map_err(|e| BuildError::params("/url", e.message))?;
        }
        let mut headers = Vec::with_capacity(p.headers.len());
        for (name, value) in &p.headers {
            let pointer = format!("/headers/{}", escape(name));
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                BuildError::params(
                    pointer.clone(),
                    format!("`{name}` is not a valid header name"),
                )
            })?;
            scalar_param(value, &pointer, false)?;
            headers.push((
                header,
                cx.with_roots(&["secrets"], |cx| cx.templated(&pointer, value)),
            ));
        }
        let mut query = Vec::with_capacity(p.query.len());
        for (name, value) in &p.query {
            let pointer = format!("/query/{}", escape(name));
            scalar_param(value, &pointer, true)?;
            query.push((
                name.clone(),
                cx.with_roots(&["secrets"], |cx| cx.templated(&pointer, value)),
            ));
        }
        let url = cx.with_roots(&["secrets"], |cx| {
            cx.templated("/url", &Value::String(p.url.clone()))
        });
        let body = p
            .body
            .as_ref()
            .map(|b| cx.with_roots(&["secrets"], |cx| cx.templated("/body", b)));
        // A secret the templates read must be declared: `secrets.tokn` is a typo to report now,
        // not an undefined value when the node runs.
        let undeclared = cx.root_reads("secrets").find_map(|r| {
            let name = r.path.split('.').nth(1)?.to_owned();
            (!p.secrets.contains_key(&name)).then_some((r.pointer, name))
        });
        if let Some((pointer, name)) = undeclared {
            let declared: Vec<String> = p.secrets.keys().map(|k| format!("`{k}`")).collect();
            let known = if declared.is_empty() {
                "no secrets are declared: add `secrets: { NAME: ENV_VAR }`".to_owned()
            } else {
                format!("the declared secrets are {}", declared.join(", "))
            };
            return Err(BuildError::params(
                pointer,
                format!("`secrets.{name}` is not declared in `secrets`; {known}"),
            ));
        }
        let mut output = Vec::with_capacity(p.output.len());
        for (key, value) in &p.output {
            let pointer = format!("/output/{}", escape(key));
            let extract = match value {
                Value::String(s) if !braid_core::template::is_template(s) => {
                    if !(s.is_empty() || s.starts_with('/')) {
                        return Err(BuildError::params(
                            pointer,
                            format!(
                                "`{s}` is neither a JSON pointer (`/items/0/name`, or `\"\"` for the whole body) nor a template (`{{{{ response.body }}}}`)"
                            ),
                        ));
                    }
                    Extract::Pointer(s.clone())
                }
                v => Extract::Value(cx.with_roots(&["response"], |cx| cx.templated(&pointer, v))),
            };
            cx.will_write(&pointer, NamedAs::Key, key);
            output.push((key.clone(), extract));
        }
        Ok(Arc::new(Http(Arc::new(HttpNode {
            client: client(connect_timeout, timeout)?,
            timeout,
            method: p.method.to_method(),
            url,
            headers,
            query,
            body,
            output,
            secrets,
            idempotency_key: p.idempotency_key,
        }))))
    }
}

/// A JSON pointer token.
pub(crate) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Checks a header or query value from the file: text, a number or a boolean (or, for a query, a
/// list of them).
fn scalar_param(value: &Value, pointer: &str, list_ok: bool) -> Result<(), BuildError> {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => Ok(()),
        Value::Array(items) if list_ok => items
            .iter()
            .try_for_each(|v| scalar_param(v, pointer, false)),
        _ => Err(BuildError::params(
            pointer,
            if list_ok {
                "expected text, a number, a boolean, or a list of them"
            } else {
                "expected text, a number or a boolean"
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use braid_core::TemplateEnv;

    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            retry_after(&h, SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:30 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:27:00 GMT"),
        );
        assert_eq!(
            retry_after(&h, now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("99999999999"));
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn statuses_map_to_retryable_or_permanent() {
        let h = HeaderMap::new();
        let none = Resolved::from_values(Vec::new());
        for (code, retryable) in [
            (400, false),
            (401, false),
            (404, false),
            (422, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
        ] {
            let e = check_status(
                "`GET x`",
                StatusCode::from_u16(code).unwrap(),
                &h,
                b"",
                &none,
            )
            .unwrap_err();
            assert_eq!(e.retryable, retryable, "{code}");
            assert!(e.message.contains(&code.to_string()), "{}", e.message);
        }
        assert!(check_status("`GET x`", StatusCode::NO_CONTENT, &h, b"", &none).is_ok());
        let e = check_status(
            "`GET x`",
            StatusCode::BAD_REQUEST,
            &h,
            br#"{"error":{"message":"bad model"}}"#,
            &none,
        )
        .unwrap_err();
        assert_eq!(e.message, "`GET x` returned 400 Bad Request: bad model");
    }

    #[test]
    fn redaction_covers_encoded_forms() {
        // The variable name is unique to this test, and never set.
        let secrets = Secrets(vec![("k".into(), "BRAID_HTTP_UNIT_SECRET".into())]);
        let r = Resolved::from_values(vec![("k".into(), "a b/c\"d".into())]);
        assert_eq!(r.redact("x a b/c\"d y"), "x *** y");
        assert_eq!(r.redact("?q=a+b%2Fc%22d"), "?q=***");
        assert_eq!(r.redact("?q=a%20b%2Fc%22d"), "?q=***");
        assert_eq!(r.redact(r#"{"t":"a b/c\"d"}"#), r#"{"t":"***"}"#);
        let e = secrets.resolve().unwrap_err();
        assert!(!e.retryable);
        assert_eq!(
            e.message,
            "secret `k`: the environment variable `BRAID_HTTP_UNIT_SECRET` is not set"
        );
    }

    #[test]
    fn builds_without_a_runtime_and_rejects_bad_params() {
        let mut env = TemplateEnv::new();
        let mut cx = BuildContext::new(&mut env, "/with");
        let ok = json!({ "url": "http://127.0.0.1:1/{{ inputs.x }}", "output": { "a": "/x", "b": "{{ response.status }}" } });
        assert!(HttpKind.build(Some(&ok), &mut cx).is_ok());
        let cases = [
            (
                json!({ "url": "http://x", "output": { "a": "items" } }),
                "/output/a",
            ),
            (json!({ "url": "ftp://x" }), "/url"),
            (
                json!({ "url": "http://x", "headers": { "bad name": "v" } }),
                "/headers/bad name",
            ),
            (
                json!({ "url": "http://x", "secrets": { "a-b": "X" } }),
                "/secrets",
            ),
            (json!({ "url": "http://x", "timeout": "0s" }), "/timeout"),
        ];
        for (params, pointer) in cases {
            let err = HttpKind.build(Some(&params), &mut cx).err().unwrap();
            assert_eq!(err.pointer, pointer, "{params}");
        }
        let (_, errors) = cx.finish();
        assert!(errors.is_empty(), "{errors:?}");
    }
}
