//! What the `llm` kind shares with `http`: the client (rustls with the `ring` provider, no
//! OpenSSL), durations, sending a request (following redirects), reading a bounded body, and the
//! mapping of transport failures and statuses onto [`NodeError`]s. Secrets and their redaction
//! are in `redact`.

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
            // Redirects are followed by `send`, which drops sensitive headers across origins.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
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

/// The most redirects a call follows; one more fails it, permanently.
pub const MAX_REDIRECTS: usize = 10;

/// A request, kept whole so that it can be sent again where a redirect points.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Vec<u8>>,
}

/// Sends a request, following redirects (301, 302, 303, 307, 308; at most [`MAX_REDIRECTS`]).
///
/// Credentials in the URL's userinfo become an `Authorization: Basic` header. On a redirect to
/// another origin (scheme, host or port), `Authorization`, `Cookie`, `Proxy-Authorization` and
/// every header marked sensitive (each header holding a secret is) are dropped; no `Referer` is
/// ever sent. A 303, or a 301/302 answering a `POST`, turns the request into a `GET` without a
/// body, as browsers do.
///
/// # Errors
///
/// As [`transport_error`]; a permanent error for too many redirects or a redirect to a location
/// that is not an `http(s)` URL.
pub(crate) async fn send(
    client: &Client,
    mut out: Outgoing,
    call: &Call<'_>,
) -> Result<Response, NodeError> {
    if let Some(user_pass) = basic_credentials(&out.url) {
        let mut value =
            HeaderValue::from_str(&format!("Basic {}", base64(user_pass.as_bytes(), STANDARD)))
                .map_err(|_| {
                    NodeError::new("the URL's credentials are not a valid header").permanent()
                })?;
        value.set_sensitive(true);
        if !out.headers.contains_key(AUTHORIZATION) {
            out.headers.insert(AUTHORIZATION, value);
        }
        let _ = out.url.set_username("");
        let _ = out.url.set_password(None);
    }
    let mut redirects = 0;
    loop {
        let mut request = client
            .request(out.method.clone(), out.url.clone())
            .headers(out.headers.clone());
        if let Some(body) = &out.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.map_err(|e| transport_error(e, call))?;
        let status = response.status();
        if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            return Ok(response);
        }
        let Some(location) = response.headers().get(LOCATION) else {
            return Ok(response);
        };
        if redirects == MAX_REDIRECTS {
            return Err(NodeError::new(format!(
                "{}: too many redirects (more than {MAX_REDIRECTS})",
                call.what
            ))
            .permanent());
        }
        redirects += 1;
        let next = location
            .to_str()
            .ok()
            .and_then(|l| out.url.join(l).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        let Some(next) = next else {
            return Err(NodeError::new(format!(
                "{} was redirected to `{}`, which is not an `http://` or `https://` URL",
                call.what,
                String::from_utf8_lossy(location.as_bytes())
            ))
            .permanent());
        };
        let to_get = (status == StatusCode::SEE_OTHER && out.method != Method::HEAD)
            || (matches!(status.as_u16(), 301 | 302) && out.method == Method::POST);
        if to_get {
            out.method = Method::GET;
            out.body = None;
            for name in [
                CONTENT_TYPE,
                CONTENT_LENGTH,
                CONTENT_ENCODING,
                TRANSFER_ENCODING,
            ] {
                out.headers.remove(name);
            }
        }
        if next.origin() != out.url.origin() {
            for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION] {
                out.headers.remove(name);
            }
            let sensitive: Vec<HeaderName> = out
                .headers
                .iter()
                .filter(|(_, v)| v.is_sensitive())
                .map(|(n, _)| n.clone())
                .collect();
            for name in sensitive {
                out.headers.remove(name);
            }
        }
        out.url = next;
    }
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
    secrets: &Resolved,
) -> Result<(), NodeError> {
    if status.is_success() {
        return Ok(());
    }
    let excerpt = error_excerpt(body, secrets);
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

/// What an error body says, in at most 200 characters. Secrets are redacted first: a secret cut
/// short, or with its whitespace reflowed, would no longer be found.
pub(crate) fn error_excerpt(body: &[u8], secrets: &Resolved) -> Option<String> {
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
    let text = secrets.redact(&text);
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
