//! The run console: a browser page served at `/`, its assets under `/console/`.
//!
//! **No build step**: the console is plain HTML, CSS and JavaScript modules in
//! `crates/serve/console/`, embedded in the binary with `include_str!` and served as they are.
//! Everything it shows comes from the `/v1` API (with the bearer token the user gives, kept in
//! the tab's `sessionStorage`), so these routes hold no data and need no token: what they serve
//! is the same for everyone and says nothing about the service.
//!
//! Every response carries a strict Content-Security-Policy (scripts, styles and connections from
//! this origin only; no inline script, no frame, no form posted elsewhere), `nosniff`, no
//! referrer, and a strong `ETag` (a hash of the asset, computed once) with `Cache-Control:
//! no-cache`, so a browser revalidates and gets `304` until the binary changes.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};

/// The page's policy: nothing from elsewhere, nothing inline.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset {
            name: $name,
            content_type: $ty,
            body: include_str!(concat!("../../console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("dag.js", JS),
    asset!("gantt.js", JS),
    asset!("form.js", JS),
    asset!("pages/workflows.js", JS),
    asset!("pages/runs.js", JS),
    asset!("pages/run.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The assets' strong ETags, in the order of [`ASSETS`].
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// The console's routes: `/` and `/console/{*file}`. Mounted outside the bearer-token check.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console/{*file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

/// The security headers every console response carries.
fn secure(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        let mut r = (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such console file\n",
        )
            .into_response();
        secure(&mut r);
        return r;
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_asset_has_inline_script_or_a_remote_url() {
        for a in ASSETS {
            let lower = a.body.to_lowercase();
            if a.name.ends_with(".html") {
                // Every <script> names a file of this origin; no handler attributes.
                for part in lower.split("<script").skip(1) {
                    assert!(
                        part.trim_start()
                            .starts_with("type=\"module\" src=\"/console/"),
                        "{}: {part}",
                        a.name
                    );
                }
                assert!(!lower.contains(" onclick="), "{}", a.name);
            }
            for remote in [
                "http://",
                "https://",
                "//cdn",
                "@import",
                "fonts.googleapis",
            ] {
                // The SVG namespace is a name, not a fetch.
                let hits = lower.matches(remote).count()
                    - lower.matches("http://www.w3.org/2000/svg").count()
                        * usize::from(remote == "http://");
                assert_eq!(hits, 0, "{} mentions {remote}", a.name);
            }
        }
    }

    #[test]
    fn etags_are_distinct_and_quoted() {
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        for t in tags {
            assert!(
                t.starts_with('"') && t.ends_with('"') && t.len() == 26,
                "{t}"
            );
        }
    }
}
