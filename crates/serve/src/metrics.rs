//! The service's metric names, defined once (the runtime's run and node metrics are
//! `braid::metrics`). Recorded through the `metrics` facade: the embedding program installs the
//! recorder (`braid serve` installs Prometheus's) and [`crate::Config::metrics`] renders it.

use crate::registry::Outcome;

/// Counter: rescans' results per workflow file, label `result` = `loaded` | `invalid` | `removed`.
pub const RELOADS: &str = "braid_serve_reloads_total";
/// Counter: HTTP requests answered, labels `method`, `route` (the route's pattern), `status`.
pub const HTTP_REQUESTS: &str = "braid_serve_http_requests_total";
/// Histogram: seconds to answer an HTTP request (to its headers), labels `method`, `route`.
pub const HTTP_DURATION: &str = "braid_serve_http_request_duration_seconds";
/// Counter: runs refused because as many as the limit were in flight.
pub const RUNS_REFUSED: &str = "braid_serve_runs_refused_total";

/// Counts one file's reload.
pub(crate) fn reload(outcome: Outcome) {
    metrics::counter!(RELOADS, "result" => outcome.as_str()).increment(1);
}

/// Counts one request.
pub(crate) fn request(method: &str, route: &str, status: u16, seconds: f64) {
    metrics::counter!(HTTP_REQUESTS, "method" => method.to_owned(), "route" => route.to_owned(), "status" => status.to_string()).increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method.to_owned(), "route" => route.to_owned())
        .record(seconds);
}

/// Counts a run refused for the limit.
pub(crate) fn refused() {
    metrics::counter!(RUNS_REFUSED).increment(1);
}
