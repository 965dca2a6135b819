//! Logs and metrics for the `braid` process: the tracing subscriber (`--log-format`, `-v`,
//! `RUST_LOG`) and the Prometheus recorder whose text `--metrics-file` writes.
//!
//! The library crates only emit (tracing spans and events, `metrics` facade calls); installing a
//! subscriber or recorder is the embedding program's choice, and this is the CLI's.

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
/// errors, so the live view and summary stay readable.
pub(crate) fn init_logs(format: LogFormat, verbose: u8, color: bool) {
    let default = match verbose {
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

/// The exposition text of every metric recorded so far.
pub(crate) fn metrics_text() -> String {
    PROMETHEUS
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// A panic in a node is caught and reported as that node's failure; the default hook would also
/// print it (and a backtrace) over the live view. Panics on runtime worker threads go to the
/// debug log instead; any other panic (a bug in `braid` itself) is printed as usual.
pub(crate) fn quiet_node_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("tokio-runtime-worker") {
            tracing::debug!(panic = %info, "a node panicked; it is reported as a node failure");
        } else {
            default(info);
        }
    }));
}
