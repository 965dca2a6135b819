//! What the `llm` kind shares with `http`: the client (rustls with the `ring` provider, no
//! OpenSSL), durations, secrets and their redaction, sending a request, reading a bounded body,
//! and the mapping of transport failures and statuses onto [`NodeError`]s.

#![allow(clippy::wildcard_imports)]

use super::*;

/// Installs rustls' `ring` provider as the process default, once (unless the program installed
/// one before): reqwest is built without a provider of its own, so no C toolchain beyond `ring`'s
/// and no OpenSSL is needed.
pub(crate) fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // An error means a provider is installed already, which reqwest then uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Why the platform's CA certificates could not be loaded, when they could not: clients are then
/// built with no trusted roots, so `http://` works and `https://` fails at connect, saying why.
pub(crate) static NO_TLS_ROOTS: OnceLock<String> = OnceLock::new();

/// The client of one node: built when the workflow compiles, shared by all its calls (and their
/// pooled connections).
pub(crate) fn client(connect_timeout: Duration, timeout: Duration) -> Result<Client, BuildError> {
    install_crypto_provider();
    let builder = || {
        Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .user_agent(concat!("braid/", env!("CARGO_PKG_VERSION")))
    };
    let built = match NO_TLS_ROOTS.get() {
        Some(_) => builder().tls_certs_only([]).build(),
        None => builder().build().or_else(|e| {
            // The platform verifier fails when the machine has no CA certificates (a minimal
            // container): that must not stop a workflow that calls `http://` services.
            let _ = NO_TLS_ROOTS.set(chain(&e));
            builder().tls_certs_only([]).build()
        }),
    };
    built.map_err(|e| BuildError::params("", format!("cannot build an HTTP client: {}", chain(&e))))
}

/// Parses an optional duration parameter at `pointer`.
pub(crate) fn duration(
    d: Option<&DurationSpec>,
    pointer: &str,
    default: Duration,
) -> Result<Duration, BuildError> {
    match d {
        None => Ok(default),
        Some(d) => match braid_core::registry::duration_param(pointer, d)? {
            v if !v.is_zero() => Ok(v),
            _ => Err(BuildError::params(
                pointer,
                "the duration must be above zero",
            )),
        },
    }
}

/// The secrets a node declares: name → environment variable.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secrets(pub(crate) Vec<(String, String)>);

impl Secrets {
    /// Checks the declared names and variables (`pointer` is the map's, relative to `with:`).
    pub(crate) fn new(
        map: &BTreeMap<String, String>,
        pointer: &str,
    ) -> Result<Secrets, BuildError> {
        let mut out = Vec::with_capacity(map.len());
        for (name, var) in map {
            let ident = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ident {
                return Err(BuildError::params(
                    pointer,
                    format!("secret name `{name}` is not an identifier (letters, digits and `_`)"),
                ));
            }
            check_env_name(var, &format!("{pointer}/{name}"))?;
            out.push((name.clone(), var.clone()));
        }
        Ok(Secrets(out))
    }

    /// One secret, for a kind that takes a single variable (such as `llm`'s `api_key_env`).
    pub(crate) fn single(name: &str, var: &str, pointer: &str) -> Result<Secrets, BuildError> {
        check_env_name(var, pointer)?;
        Ok(Secrets(vec![(name.to_owned(), var.to_owned())]))
    }

    /// Reads every variable now.
    ///
    /// # Errors
    ///
    /// A permanent error naming the first variable that is not set (or not UTF-8).
    pub(crate) fn resolve(&self) -> Result<Resolved, NodeError> {
        let mut values = Map::new();
        let mut needles = Vec::new();
        for (name, var) in &self.0 {
            let value = std::env::var(var).map_err(|e| {
                let why = match e {
                    std::env::VarError::NotPresent => "is not set",
                    std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
                };
                NodeError::new(format!(
                    "secret `{name}`: the environment variable `{var}` {why}"
                ))
                .permanent()
            })?;
            needles.extend(redaction_forms(&value));
            values.insert(name.clone(), Value::String(value));
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Ok(Resolved {
            vars: json!({ "secrets": values }),
            needles,
        })
    }
}

pub(crate) fn check_env_name(var: &str, pointer: &str) -> Result<(), BuildError> {
    if var.is_empty() || var.contains(['=', '\0']) {
        return Err(BuildError::params(
            pointer,
            format!("`{var}` is not an environment variable name"),
        ));
    }
    Ok(())
}

/// The secret values of one call, and the means to keep them out of messages.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) vars: Value,
    /// Every form a value may take in a message (raw, URL-encoded, JSON-escaped), longest first.
    pub(crate) needles: Vec<String>,
}

impl Resolved {
    /// The template variables: `{ "secrets": { name: value } }`.
    pub(crate) fn vars(&self) -> Value {
        self.vars.clone()
    }

    /// One secret's value.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars["secrets"].get(name).and_then(Value::as_str)
    }

    pub(crate) fn contains_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }

    /// `text` with every secret value replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), "***");
            }
        }
        out
    }

    /// The error with every secret value in its message replaced by `***`.
    pub(crate) fn redact_error(&self, mut e: NodeError) -> NodeError {
        e.message = self.redact(&e.message);
        e
    }
}

/// The forms a secret value may take in a message.
pub(crate) fn redaction_forms(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    let mut forms = vec![value.to_owned()];
    let mut percent = String::new();
    let mut form = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            percent.push(b as char);
        } else {
            percent.push_str(&format!("%{b:02X}"));
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            form.push(b as char);
        } else if b == b' ' {
            form.push('+');
        } else {
            form.push_str(&format!("%{b:02X}"));
        }
    }
    forms.push(percent);
    forms.push(form);
    if let Ok(quoted) = serde_json::to_string(value) {
        forms.push(quoted[1..quoted.len() - 1].to_owned());
    }
    forms
}

/// An error and its sources, as one line, without the URL (the caller says which request).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// One request, as errors name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    /// The method and URL, in backticks (with secrets in it; errors are redacted later).
    pub(crate) what: &'a str,
    /// The request timeout the client was built with.
    pub(crate) timeout: Duration,
}

/// Maps a transport failure (no response) onto a node error: connect failures and timeouts are
/// retryable, a request that could not be built is not.
pub(crate) fn transport_error(e: reqwest::Error, call: &Call<'_>) -> NodeError {
    let what = call.what;
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let builder = e.is_builder();
    let detail = chain(&e.without_url());
    if connect && timeout {
        NodeError::of_kind(
            FailureKind::Timeout,
            format!("{what}: timed out connecting: {detail}"),
        )
    } else if connect {
        let note = match NO_TLS_ROOTS.get() {
            Some(why) if what.contains(" https://") => {
                format!(" (no CA certificates could be loaded on this machine: {why})")
            }
            _ => String::new(),
        };
        NodeError::new(format!("{what}: cannot connect: {detail}{note}"))
    } else if timeout {
        NodeError::of_kind(
            FailureKind::Timeout,
            format!(
                "{what}: no complete response within the request timeout of {:?}",
                call.timeout
            ),
        )
    } else if builder {
        NodeError::new(format!("{what}: invalid request: {detail}")).permanent()
    } else {
        NodeError::new(format!("{what}: {detail}"))
    }
}

/// Sends a request.
///
/// # Errors
///
/// As [`transport_error`].
pub(crate) async fn send(request: RequestBuilder, call: &Call<'_>) -> Result<Response, NodeError> {
    request.send().await.map_err(|e| transport_error(e, call))
}

/// Reads the rest of a response body, up to [`MAX_BODY_BYTES`].
///
/// # Errors
///
/// When the connection fails or times out mid-body, or the body is too large.
pub(crate) async fn read_body(
    response: &mut Response,
    call: &Call<'_>,
) -> Result<Vec<u8>, NodeError> {
    let what = call.what;
    let mut out = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(e, call))?
    {
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(NodeError::new(format!(
                "{what}: the response body is larger than {} MiB",
                MAX_BODY_BYTES / (1024 * 1024)
            ))
            .permanent());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Whether a failed status may succeed on another attempt: 429 and every 5xx.
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Fails on a status outside 2xx: the error carries the status, a short excerpt of the body (the
/// service's own `error.message` when it sends one), whether to retry, and `Retry-After`.
///
/// # Errors
///
/// When the status is not a success.
pub(crate) fn check_status(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), NodeError> {
    if status.is_success() {
        return Ok(());
    }
    let excerpt = error_excerpt(body);
    let message = match excerpt {
        Some(x) => format!("{what} returned {status}: {x}"),
        None => format!("{what} returned {status}"),
    };
    let mut e = NodeError::new(message);
    if is_retryable(status) {
        e.retry_after = retry_after(headers, SystemTime::now());
    } else {
        e = e.permanent();
    }
    Err(e)
}

/// What an error body says, in at most 200 characters.
pub(crate) fn error_excerpt(body: &[u8]) -> Option<String> {
    const MAX: usize = 200;
    let text = match parse_body(body) {
        Body::Json(Value::Null) => return None,
        Body::Json(v) => {
            let said = v
                .pointer("/error/message")
                .or_else(|| v.get("error"))
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"));
            match said {
                Some(Value::String(s)) => s.clone(),
                _ => v.to_string(),
            }
        }
        Body::Text(s) => s,
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        Some(format!("{cut}…"))
    } else {
        Some(text)
    }
}

/// The wait a `Retry-After` header asks for: seconds, or an HTTP date (relative to `now`), at
/// most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}
