//! Logs and metrics for the `braid` process: the tracing subscriber (`--log-format`, `-v`,
//! `RUST_LOG`) and the Prometheus recorder whose text `--metrics-file` writes.
//!
//! The library crates only emit (tracing spans and events, `metrics` facade calls); installing a
//! subscriber or recorder is the embedding program's choice, and this is the CLI's.

use std::cell::Cell;
use std::sync::OnceLock;

use clap::ValueEnum;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Installs the tracing subscriber on stderr. `RUST_LOG` wins over `-v`; the default shows only
/// errors, so the live view and summary stay readable — but for a `service` (`braid serve`),
/// whose log is how it reports reloads, invalid edits and resumed runs: warnings, and the
/// service's own info lines (not the runtime's line per run).
pub(crate) fn init_logs(format: LogFormat, verbose: u8, service: bool, color: bool) {
    let default = match verbose {
        0 if service => "warn,braid_serve=info",
        0 => "error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.with_ansi(color).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once); every metric the runtime records from then on is kept.
pub(crate) fn init_metrics() {
    PROMETHEUS.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in braid::metrics::BUCKETS {
            builder = builder
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full((*name).to_owned()),
                    buckets,
                )
                .ok()?;
        }
        builder.install_recorder().ok()
    });
}

/// The installed recorder's handle, for a service's `/metrics`.
#[cfg(feature = "serve")]
pub(crate) fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS.get().and_then(Option::clone)
}

/// The exposition text of every metric recorded so far.
pub(crate) fn metrics_text() -> String {
    PROMETHEUS
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

thread_local! {
    /// Whether this thread is inside [`compiling`].
    static COMPILING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, a compilation, with panics on this thread kept off the terminal.
///
/// `Compiler::compile` catches every panic raised while it runs (in a YAML, JSON Schema or
/// template library, or in Braid) and reports it as an `internal` diagnostic, which `braid`
/// prints like any other; the default hook would also spray `thread 'main' panicked at ...` over
/// the diagnostics. Nothing else runs on this thread meanwhile, so the hook only hides panics
/// that are caught, and it still sends them to the debug log (`-vv`), with their location.
pub(crate) fn compiling<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            COMPILING.set(self.0);
        }
    }
    let _reset = Reset(COMPILING.replace(true));
    f()
}

/// Panics that `braid` catches and reports itself stay off the terminal: a panic in a node is
/// that node's failure (the default hook would print it, and a backtrace, over the live view),
/// and a panic while compiling is an `internal` diagnostic (see [`compiling`]). Those go to the
/// debug log instead; any other panic (a bug in `braid` itself) is printed as usual.
pub(crate) fn quiet_caught_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if COMPILING.get() {
            tracing::debug!(panic = %info, "the compiler panicked; it is reported as an internal diagnostic");
        } else if std::thread::current().name() == Some("tokio-runtime-worker") {
            tracing::debug!(panic = %info, "a node panicked; it is reported as a node failure");
        } else {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiling_marks_only_its_own_span_even_when_it_unwinds() {
        assert!(!COMPILING.get());
        assert!(compiling(|| COMPILING.get()));
        assert!(!COMPILING.get());
        // A nested call leaves the outer mark in place.
        assert!(compiling(|| {
            compiling(|| ());
            COMPILING.get()
        }));
        let unwound = std::panic::catch_unwind(|| compiling(|| panic!("boom")));
        assert!(unwound.is_err());
        assert!(!COMPILING.get());
    }
}
