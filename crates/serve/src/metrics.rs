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

/// Counter: runs this replica claimed from the queue (`docs/scaling.md`).
pub const REPLICA_CLAIMED: &str = "braid_replica_claimed_total";
/// Counter: heartbeats this replica sent, label `result` = `ok` | `error`.
pub const REPLICA_HEARTBEATS: &str = "braid_replica_heartbeats_total";
/// Counter: runs this replica stopped running because it no longer owns them, label `reason` =
/// `fenced` (a write was refused: another replica took it), `taken` (its heartbeat no longer
/// lists it), `lease_lost` (no heartbeat for a lease's time to live), `stopping` (handed back at
/// a graceful stop).
pub const REPLICA_DROPPED: &str = "braid_replica_runs_dropped_total";
/// Counter: runs this replica took up again that it owned without running them (a claim whose
/// answer was lost, a segment the store failed under).
pub const REPLICA_ADOPTED: &str = "braid_replica_runs_adopted_total";
/// Gauge: runs in flight in this replica.
pub const REPLICA_RUNS: &str = "braid_replica_runs";

/// Counts claimed runs.
pub(crate) fn claimed(n: usize) {
    metrics::counter!(REPLICA_CLAIMED).increment(n as u64);
}

/// Counts a heartbeat.
pub(crate) fn heartbeat(ok: bool) {
    metrics::counter!(REPLICA_HEARTBEATS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Counts a run dropped.
pub(crate) fn dropped(reason: &'static str) {
    metrics::counter!(REPLICA_DROPPED, "reason" => reason).increment(1);
}

/// Counts a run adopted.
pub(crate) fn adopted() {
    metrics::counter!(REPLICA_ADOPTED).increment(1);
}

/// Sets the runs in flight.
pub(crate) fn runs(n: usize) {
    metrics::gauge!(REPLICA_RUNS).set(n as f64);
}
