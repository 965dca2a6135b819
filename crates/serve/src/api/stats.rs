//! `GET /v1/workflows/{name}/stats`: a workflow's recent runs in figures, from the store.
//!
//! Over the newest `limit` runs of a workflow (by name, so the runs of a file since removed still
//! count): how many ended how, the latency percentiles of those that finished, the speedup of
//! each (the sum of its nodes' times over the span from its first node's start to its last
//! node's end, as the run report computes it) and, per node, how often it failed or fell back
//! and how long it took. Everything is computed from the journal's run and node records on each
//! request: nothing is kept, so nothing grows with the runs served.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use braid::durable::{Micros, NodeRecord, NodeState, RunFilter, RunRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// A workflow's recent runs in figures.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct WorkflowStats {
    /// The workflow's name.
    pub workflow: String,
    /// How many runs the figures cover (the newest, at most `limit`).
    pub runs: usize,
    /// Runs by status (`running`, `waiting`, `succeeded`, `degraded`, `failed`, `cancelled`).
    pub by_status: BTreeMap<String, usize>,
    /// The share of finished runs that failed (`failed`), from 0 to 1; `null` with none finished.
    pub failure_rate: Option<f64>,
    /// Latency of the finished runs, from creation to end, in milliseconds (a run that waited
    /// for a person includes the wait).
    pub latency_ms: Percentiles,
    /// Speedup over one node at a time, of the runs whose nodes ran.
    pub speedup: Percentiles,
    /// One point per run, newest first.
    pub recent: Vec<RunPoint>,
    /// One entry per node that appears in the runs' records, by name.
    pub nodes: Vec<NodeStats>,
}

/// Percentiles of a sample (nearest rank); every field `null` for an empty sample.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Percentiles {
    /// Sample size.
    pub count: usize,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
}

impl Percentiles {
    fn of(mut sample: Vec<f64>) -> Self {
        sample.retain(|v| v.is_finite());
        sample.sort_by(f64::total_cmp);
        let n = sample.len();
        let rank = |p: f64| {
            // Nearest rank: the smallest value with at least p of the sample at or below it.
            let i = ((p * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
            sample.get(i).copied()
        };
        Percentiles {
            count: n,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            mean: (n > 0).then(|| sample.iter().sum::<f64>() / n as f64),
        }
    }
}

/// One run, in figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPoint {
    /// The run.
    pub run_id: String,
    /// When it was created (microseconds since the epoch).
    pub created_at: Micros,
    /// Its status.
    pub status: String,
    /// From creation to end, in milliseconds; `null` while it has not ended.
    pub latency_ms: Option<f64>,
    /// From its first node's start to its last node's end, in milliseconds.
    pub span_ms: Option<f64>,
    /// The sum of its nodes' times, in milliseconds: what one node at a time would take.
    pub node_time_ms: f64,
    /// `node_time_ms / span_ms`.
    pub speedup: Option<f64>,
}

/// One node across the runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeStats {
    /// The node.
    pub node: String,
    /// Runs in which it ended (skipped included).
    pub runs: usize,
    /// Of those, how many it failed in (`failed`).
    pub failed: usize,
    /// How many it failed in and fell back (`fell_back`).
    pub fell_back: usize,
    /// `(failed + fell_back) / runs`.
    pub failure_rate: f64,
    /// How long it took when it ran, in milliseconds, all attempts included.
    pub duration_ms: Percentiles,
}

/// Query of `GET /v1/workflows/{name}/stats`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// How many of the newest runs to cover (1 to 500; default 50).
    pub limit: Option<usize>,
}

/// A workflow's recent runs in figures: latency percentiles, failure rate by node, speedup.
#[utoipa::path(get, path = "/v1/workflows/{name}/stats", tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name (runs of a file since removed count too)"), StatsQuery),
    responses(
        (status = 200, description = "The figures (all empty when it has no runs)", body = WorkflowStats),
        (status = 400, description = "A malformed request, or a limit out of range", body = ErrorBody)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<StatsQuery>,
) -> Result<Json<WorkflowStats>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 500"));
    }
    let store = s.runner.durable().store();
    let runs = store
        .list_runs(&RunFilter {
            workflow: Some(name.clone()),
            state: None,
            before: None,
            limit,
        })
        .await?;
    let mut records = Vec::with_capacity(runs.len());
    for run in runs {
        let nodes = store.nodes(&run.id).await?;
        records.push((run, nodes));
    }
    Ok(Json(stats(name, &records)))
}

/// The figures of some runs (newest first) and their node records.
pub(crate) fn stats(workflow: String, runs: &[(RunRecord, Vec<NodeRecord>)]) -> WorkflowStats {
    let mut by_status = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut speedups = Vec::new();
    let mut recent = Vec::with_capacity(runs.len());
    let mut per_node: BTreeMap<&str, (usize, usize, usize, Vec<f64>)> = BTreeMap::new();
    let (mut finished, mut failed) = (0usize, 0usize);
    for (run, nodes) in runs {
        *by_status.entry(run.state.as_str().to_owned()).or_insert(0) += 1;
        if run.state.is_finished() {
            finished += 1;
            failed += usize::from(run.state.as_str() == "failed");
        }
        let latency_ms = run
            .ended_at
            .filter(|_| run.state.is_finished())
            .map(|e| ms(e - run.created_at));
        latencies.extend(latency_ms);
        let ran = || {
            nodes
                .iter()
                .filter_map(|n| Some((n.started_at?, n.ended_at)))
        };
        let node_time_ms: f64 = ran().map(|(s, e)| ms(e - s)).sum();
        let span_ms = ran()
            .map(|(s, _)| s)
            .min()
            .zip(ran().map(|(_, e)| e).max())
            .map(|(s, e)| ms(e - s));
        let speedup = span_ms.filter(|s| *s > 0.0).map(|s| node_time_ms / s);
        speedups.extend(speedup);
        recent.push(RunPoint {
            run_id: run.id.clone(),
            created_at: run.created_at,
            status: run.state.as_str().to_owned(),
            latency_ms,
            span_ms,
            node_time_ms,
            speedup,
        });
        for n in nodes {
            let e = per_node.entry(n.node.as_str()).or_default();
            e.0 += 1;
            e.1 += usize::from(n.state == NodeState::Failed);
            e.2 += usize::from(n.state == NodeState::FellBack);
            if let Some(s) = n.started_at {
                e.3.push(ms(n.ended_at - s));
            }
        }
    }
    WorkflowStats {
        workflow,
        runs: runs.len(),
        by_status,
        failure_rate: (finished > 0).then(|| failed as f64 / finished as f64),
        latency_ms: Percentiles::of(latencies),
        speedup: Percentiles::of(speedups),
        recent,
        nodes: per_node
            .into_iter()
            .map(|(node, (runs, failed, fell_back, durations))| NodeStats {
                node: node.to_owned(),
                runs,
                failed,
                fell_back,
                failure_rate: (failed + fell_back) as f64 / runs.max(1) as f64,
                duration_ms: Percentiles::of(durations),
            })
            .collect(),
    }
}

fn ms(micros: Micros) -> f64 {
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid::durable::RunState;
    use serde_json::{Map, Value};

    fn run(id: &str, state: RunState, created: Micros, ended: Option<Micros>) -> RunRecord {
        RunRecord {
            id: id.to_owned(),
            workflow: "w".to_owned(),
            fingerprint: "f".to_owned(),
            inputs: Value::Null,
            options: Value::Null,
            state,
            created_at: created,
            updated_at: created,
            ended_at: ended,
            error: None,
            restarts: 0,
            next_seq: 0,
            owner: None,
            epoch: 0,
        }
    }

    fn node(name: &str, state: NodeState, start: Micros, end: Micros) -> NodeRecord {
        NodeRecord {
            node: name.to_owned(),
            state,
            attempts: 1,
            started_at: Some(start),
            ended_at: end,
            failure: None,
            writes: Map::new(),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p90, p.p99), (Some(50.0), Some(90.0), Some(99.0)));
        assert_eq!(p.mean, Some(50.5));
        let one = Percentiles::of(vec![7.0]);
        assert_eq!((one.p50, one.p99, one.count), (Some(7.0), Some(7.0), 1));
        let none = Percentiles::of(Vec::new());
        assert_eq!((none.p50, none.mean, none.count), (None, None, 0));
    }

    #[test]
    fn speedup_failure_rates_and_latency_follow_the_records() {
        // Two branches of 100 ms side by side, then one of 100 ms: 300 ms of nodes in 200 ms.
        let parallel = vec![
            node("a", NodeState::Succeeded, 0, 100_000),
            node("b", NodeState::FellBack, 0, 100_000),
            node("c", NodeState::Succeeded, 100_000, 200_000),
        ];
        let failed = vec![node("a", NodeState::Failed, 0, 50_000)];
        let runs = vec![
            (run("r2", RunState::Failed, 0, Some(60_000)), failed),
            (run("r1", RunState::Degraded, 0, Some(210_000)), parallel),
            (run("r0", RunState::Running, 0, None), Vec::new()),
        ];
        let s = stats("w".to_owned(), &runs);
        assert_eq!(s.runs, 3);
        assert_eq!(s.by_status["failed"], 1);
        assert_eq!(s.by_status["running"], 1);
        assert_eq!(s.failure_rate, Some(0.5));
        assert_eq!(s.latency_ms.count, 2);
        assert_eq!(s.latency_ms.p99, Some(210.0));
        assert_eq!(s.recent[1].speedup, Some(1.5));
        assert_eq!(s.recent[1].span_ms, Some(200.0));
        assert_eq!(s.recent[2].latency_ms, None);
        let a = s.nodes.iter().find(|n| n.node == "a").expect("a");
        assert_eq!((a.runs, a.failed, a.fell_back), (2, 1, 0));
        assert_eq!(a.failure_rate, 0.5);
        let b = s.nodes.iter().find(|n| n.node == "b").expect("b");
        assert_eq!((b.fell_back, b.failure_rate), (1, 1.0));
    }
}
