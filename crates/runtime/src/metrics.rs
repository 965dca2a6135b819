//! Metric names and buckets, defined once, and the code that records them.
//!
//! Recorded through the `metrics` facade: an embedding program installs its own recorder or
//! exporter (the CLI installs a Prometheus one); without one, recording is a no-op. Run-level and
//! per-node figures are recorded once, from the finished report, off the scheduler's hot path;
//! only the in-flight gauge moves while the run executes.
//!
//! The first three are the origin document's monitoring plan; the rest are the runtime's own.

use std::sync::OnceLock;

use braid_core::{FailureKind, Plan};
use metrics::{Counter, Gauge, Histogram, SharedString};

use crate::report::{NodeStatus, RunReport, RunStatus};

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
/// Metric handles of one plan, registered on first use: a run then records with a few atomic
/// operations instead of building and hashing label sets. Handles bind to the recorder installed
/// when they are first used: install yours before the first run.
pub(crate) struct PlanMetrics {
    workflow: SharedString,
    parallel_duration: OnceLock<Histogram>,
    speedup: OnceLock<Gauge>,
    /// By mode (parallel, sequential) and run status.
    run_duration: [[OnceLock<Histogram>; 4]; 2],
    runs: [OnceLock<Counter>; 4],
    in_flight: OnceLock<Gauge>,
    nodes: Vec<NodeMetrics>,
}

struct NodeMetrics {
    name: SharedString,
    /// By node status: succeeded, fell_back, failed, cancelled.
    duration: [OnceLock<Histogram>; 4],
    attempts: OnceLock<Counter>,
    /// By failure kind: error, timeout, panic, cancelled, invalid_output.
    failures: [OnceLock<Counter>; 5],
}

fn run_index(status: RunStatus) -> usize {
    match status {
        RunStatus::Succeeded => 0,
        RunStatus::Degraded => 1,
        RunStatus::Failed => 2,
        RunStatus::Waiting => 3,
    }
}

fn failure_index(kind: FailureKind) -> usize {
    match kind {
        FailureKind::Error => 0,
        FailureKind::Timeout => 1,
        FailureKind::Panic => 2,
        FailureKind::Cancelled => 3,
        _ => 4,
    }
}

/// The failure kinds a node can have, in [`failure_index`] order.
const FAILURE_KINDS: [FailureKind; 5] = [
    FailureKind::Error,
    FailureKind::Timeout,
    FailureKind::Panic,
    FailureKind::Cancelled,
    FailureKind::InvalidOutput,
];

impl NodeMetrics {
    fn attempts(&self, wf: &SharedString) -> &Counter {
        self.attempts.get_or_init(|| {
            metrics::counter!(NODE_ATTEMPTS_TOTAL, "workflow" => wf.clone(), "node" => self.name.clone())
        })
    }

    fn failures(&self, wf: &SharedString, kind: FailureKind) -> &Counter {
        self.failures[failure_index(kind)].get_or_init(|| {
            metrics::counter!(
                PARALLEL_TASK_FAILURES_TOTAL,
                "workflow" => wf.clone(),
                "task_name" => self.name.clone(),
                "failure_type" => kind.as_str()
            )
        })
    }
}

impl PlanMetrics {
    fn new(plan: &Plan) -> Self {
        let m = PlanMetrics {
            workflow: SharedString::from_shared(plan.name().clone()),
            parallel_duration: OnceLock::new(),
            speedup: OnceLock::new(),
            run_duration: Default::default(),
            runs: Default::default(),
            in_flight: OnceLock::new(),
            nodes: plan
                .nodes()
                .iter()
                .map(|n| NodeMetrics {
                    name: SharedString::from_shared(n.name.clone()),
                    duration: Default::default(),
                    attempts: OnceLock::new(),
                    failures: Default::default(),
                })
                .collect(),
        };
        // Every counter series the plan can produce exists from the start, at 0, so that a
        // dashboard or an alert on failures reads 0 rather than "no data" until the first one.
        for status in [
            RunStatus::Succeeded,
            RunStatus::Degraded,
            RunStatus::Failed,
            RunStatus::Waiting,
        ] {
            m.runs(status).increment(0);
        }
        for node in &m.nodes {
            node.attempts(&m.workflow).increment(0);
            for kind in FAILURE_KINDS {
                node.failures(&m.workflow, kind).increment(0);
            }
        }
        m
    }

    fn runs(&self, status: RunStatus) -> &Counter {
        self.runs[run_index(status)].get_or_init(|| {
            metrics::counter!(RUNS_TOTAL, "workflow" => self.workflow.clone(), "status" => status.as_str())
        })
    }

    /// The plan's handles (made on its first run).
    pub(crate) fn of(plan: &Plan) -> Option<&PlanMetrics> {
        plan.cached(|| PlanMetrics::new(plan))
    }

    /// The in-flight gauge.
    pub(crate) fn in_flight(&self) -> &Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!(NODES_IN_FLIGHT, "workflow" => self.workflow.clone()))
    }

    /// Records a finished run.
    pub(crate) fn record_run(&self, report: &RunReport) {
        let wf = &self.workflow;
        let wall = ms(report.wall_time);
        let parallel = report.mode == "parallel";
        if parallel {
            self.parallel_duration
                .get_or_init(|| metrics::histogram!(PARALLEL_EXECUTION_DURATION_MS, "workflow" => wf.clone()))
                .record(wall);
        }
        self.speedup
            .get_or_init(|| metrics::gauge!(PARALLEL_SPEEDUP_RATIO, "workflow" => wf.clone()))
            .set(report.speedup);
        let (status, r) = (report.status.as_str(), run_index(report.status));
        self.run_duration[usize::from(!parallel)][r]
            .get_or_init(|| {
                metrics::histogram!(RUN_DURATION_MS, "workflow" => wf.clone(), "mode" => report.mode, "status" => status)
            })
            .record(wall);
        self.runs(report.status).increment(1);
        for (node, m) in report.nodes.iter().zip(&self.nodes) {
            let slot = match node.status {
                // A waiting node made no attempt and did not fail: it runs, and is counted, when
                // the run is continued with its answer.
                NodeStatus::NotStarted | NodeStatus::Skipped | NodeStatus::Waiting => continue,
                NodeStatus::Succeeded => 0,
                NodeStatus::FellBack => 1,
                NodeStatus::Failed => 2,
                NodeStatus::Cancelled => 3,
            };
            let st = node.status.as_str();
            m.duration[slot]
                .get_or_init(|| {
                    metrics::histogram!(NODE_DURATION_MS, "workflow" => wf.clone(), "node" => m.name.clone(), "status" => st)
                })
                .record(ms(node.duration()));
            m.attempts(wf).increment(u64::from(node.attempts));
            let failures = node
                .retries
                .iter()
                .map(|r| r.failure.kind)
                .chain(node.failure.as_ref().map(|f| f.kind));
            for kind in failures {
                m.failures(wf, kind).increment(1);
            }
        }
    }
}
