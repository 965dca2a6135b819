//! Metric names and buckets, defined once, and the code that records them.
//!
//! Recorded through the `metrics` facade: an embedding program installs its own recorder or
//! exporter (the CLI installs a Prometheus one); without one, recording is a no-op. Run-level and
//! per-node figures are recorded once, from the finished report, off the scheduler's hot path;
//! only the in-flight gauge moves while the run executes.
//!
//! The first three are the origin document's monitoring plan; the rest are the runtime's own.

use braid_core::FailureKind;

use crate::report::{NodeStatus, RunReport};

/// Histogram: wall time of parallel-mode runs, in milliseconds. Labels: `workflow`.
pub const PARALLEL_EXECUTION_DURATION_MS: &str = "parallel_execution_duration_ms";
/// Counter: node failures. Labels: `workflow`, `task_name`, `failure_type`.
pub const PARALLEL_TASK_FAILURES_TOTAL: &str = "parallel_task_failures_total";
/// Gauge: the last run's speedup (sum of node times / wall time). Labels: `workflow`.
pub const PARALLEL_SPEEDUP_RATIO: &str = "parallel_speedup_ratio";
/// Histogram: wall time of runs, in milliseconds. Labels: `workflow`, `mode`, `status`.
pub const RUN_DURATION_MS: &str = "braid_run_duration_ms";
/// Counter: finished runs. Labels: `workflow`, `status`.
pub const RUNS_TOTAL: &str = "braid_runs_total";
/// Histogram: node duration (all attempts and backoff), in milliseconds. Labels: `workflow`, `node`, `status`.
pub const NODE_DURATION_MS: &str = "braid_node_duration_ms";
/// Counter: node attempts. Labels: `workflow`, `node`.
pub const NODE_ATTEMPTS_TOTAL: &str = "braid_node_attempts_total";
/// Gauge: nodes running now. Labels: `workflow`.
pub const NODES_IN_FLIGHT: &str = "braid_nodes_in_flight";

/// Histogram buckets, in milliseconds, by metric name. The first is the origin document's.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (
        PARALLEL_EXECUTION_DURATION_MS,
        &[100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0],
    ),
    (
        RUN_DURATION_MS,
        &[
            10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10_000.0, 30_000.0,
        ],
    ),
    (
        NODE_DURATION_MS,
        &[
            1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10_000.0,
        ],
    ),
];

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Records a finished run's metrics.
pub(crate) fn record_run(report: &RunReport) {
    let workflow = report.workflow.clone();
    let status = report.status.as_str();
    let wall = ms(report.wall_time);
    if report.mode == "parallel" {
        metrics::histogram!(PARALLEL_EXECUTION_DURATION_MS, "workflow" => workflow.clone())
            .record(wall);
    }
    metrics::gauge!(PARALLEL_SPEEDUP_RATIO, "workflow" => workflow.clone()).set(report.speedup);
    metrics::histogram!(RUN_DURATION_MS, "workflow" => workflow.clone(), "mode" => report.mode, "status" => status)
        .record(wall);
    metrics::counter!(RUNS_TOTAL, "workflow" => workflow.clone(), "status" => status).increment(1);
    for node in &report.nodes {
        if matches!(node.status, NodeStatus::NotStarted | NodeStatus::Skipped) {
            continue;
        }
        metrics::histogram!(
            NODE_DURATION_MS,
            "workflow" => workflow.clone(),
            "node" => node.name.clone(),
            "status" => node.status.as_str()
        )
        .record(ms(node.duration()));
        metrics::counter!(NODE_ATTEMPTS_TOTAL, "workflow" => workflow.clone(), "node" => node.name.clone())
            .increment(u64::from(node.attempts));
        let failures = node
            .retries
            .iter()
            .map(|r| r.failure.kind)
            .chain(node.failure.as_ref().map(|f| f.kind));
        for kind in failures {
            failure(&workflow, &node.name, kind);
        }
    }
}

fn failure(workflow: &str, node: &str, kind: FailureKind) {
    metrics::counter!(
        PARALLEL_TASK_FAILURES_TOTAL,
        "workflow" => workflow.to_owned(),
        "task_name" => node.to_owned(),
        "failure_type" => kind.as_str()
    )
    .increment(1);
}

/// The in-flight gauge of one run's workflow.
pub(crate) fn in_flight(workflow: &str) -> metrics::Gauge {
    metrics::gauge!(NODES_IN_FLIGHT, "workflow" => workflow.to_owned())
}
