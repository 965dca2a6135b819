//! `braid bench FILE -n N`: the origin document's dashboard, in a terminal. Runs the workflow N
//! times in parallel mode and N times in sequential mode, and prints wall-time percentiles for
//! each, the speedup and the time saved, each node's latency percentiles and failure rate, and the
//! critical path that bounds the gain.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use braid::{Engine, ExecutionMode, NodeStatus, RunOptions, RunReport};
use serde_json::json;

use crate::{exit, run};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The workflow file.
    file: PathBuf,
    /// Measured runs in each mode.
    #[arg(short = 'n', long = "runs", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    runs: u32,
    /// Unmeasured runs in each mode before measuring.
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
    /// An input, as `KEY=VALUE` (as for `braid run`).
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
    inputs: Vec<String>,
    /// A JSON object of inputs.
    #[arg(long, value_name = "FILE.json")]
    input_file: Option<PathBuf>,
    /// Base seed; run i uses seed + i, so sampled latencies and failures vary run to run but replay.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run on a virtual clock: mock latencies take no real time, so thousands of runs take
    /// seconds. Exact for workflows of built-in kinds (mock, transform, noop).
    #[arg(long)]
    simulate: bool,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Stats {
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
}

fn stats(values: &[f64]) -> Stats {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mean = if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    };
    Stats {
        p50: percentile(&v, 50.0),
        p95: percentile(&v, 95.0),
        p99: percentile(&v, 99.0),
        mean,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn main(engine: &Engine, args: &Args) -> anyhow::Result<u8> {
    let workflow = match run::load(engine, &args.file)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let inputs = match run::inputs(&workflow, &args.inputs, args.input_file.as_deref())? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if args.simulate {
        // A virtual clock jumps ahead whenever nothing is runnable: right for mocks, wrong for a
        // node waiting on a real process or socket, whose timeouts would fire at once.
        const SIMULATED: &[&str] = &["mock", "transform", "noop"];
        if let Some(n) = workflow
            .plan()
            .nodes()
            .iter()
            .find(|n| !SIMULATED.contains(&&*n.kind))
        {
            crate::output::err(&format!(
                "error: `--simulate` runs on a virtual clock, which only fits nodes of kind mock, transform and noop; node `{}` is of kind `{}`\n",
                n.name, n.kind
            ));
            return Ok(exit::USAGE);
        }
    }
    let rt = if args.simulate {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    let plan = workflow.plan().clone();
    let total = u64::from(args.warmup + args.runs);
    let mut reports: [Vec<RunReport>; 2] = [Vec::new(), Vec::new()];
    for (m, mode) in [ExecutionMode::Parallel, ExecutionMode::Sequential]
        .into_iter()
        .enumerate()
    {
        if !args.json {
            let name = if m == 0 { "parallel" } else { "sequential" };
            crate::output::err(&format!(
                "running {} {name} runs ({} warm-up)...\n",
                args.runs, args.warmup
            ));
        }
        for i in 0..total {
            let options = RunOptions {
                mode: Some(mode),
                seed: args.seed.wrapping_add(i),
                ..RunOptions::default()
            };
            let result = rt.block_on(braid::run_plan(plan.clone(), inputs.clone(), options));
            if i >= u64::from(args.warmup) {
                reports[m].push(result.report);
            }
        }
    }
    let text = report(&reports[0], &reports[1], args.json)?;
    crate::output::out(&text)?;
    Ok(exit::OK)
}

fn report(
    parallel: &[RunReport],
    sequential: &[RunReport],
    as_json: bool,
) -> anyhow::Result<String> {
    let walls = |rs: &[RunReport]| rs.iter().map(|r| ms(r.wall_time)).collect::<Vec<_>>();
    let (p, s) = (stats(&walls(parallel)), stats(&walls(sequential)));
    let speedup = if p.p50 > 0.0 { s.p50 / p.p50 } else { 1.0 };
    let saved = if s.p50 > 0.0 {
        100.0 * (1.0 - p.p50 / s.p50)
    } else {
        0.0
    };

    // The most common critical path, and its length in the parallel runs that had it.
    let mut paths: BTreeMap<Vec<String>, Vec<f64>> = BTreeMap::new();
    for r in parallel {
        paths
            .entry(r.critical_path.iter().map(ToString::to_string).collect())
            .or_default()
            .push(ms(r.wall_time));
    }
    let (path, path_walls) = paths
        .into_iter()
        .max_by_key(|(_, v)| v.len())
        .unwrap_or_default();

    // Per node, over the parallel runs.
    let names: Vec<String> = parallel
        .first()
        .map(|r| r.nodes.iter().map(|n| n.name.to_string()).collect())
        .unwrap_or_default();
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ran: Vec<f64> = parallel
            .iter()
            .filter_map(|r| r.nodes.get(i))
            .filter(|n| !matches!(n.status, NodeStatus::Skipped | NodeStatus::NotStarted))
            .map(|n| ms(n.duration()))
            .collect();
        let failed = parallel
            .iter()
            .filter_map(|r| r.nodes.get(i))
            .filter(|n| {
                matches!(
                    n.status,
                    NodeStatus::Failed | NodeStatus::FellBack | NodeStatus::Cancelled
                )
            })
            .count();
        let st = stats(&ran);
        let rate = if parallel.is_empty() {
            0.0
        } else {
            failed as f64 / parallel.len() as f64
        };
        nodes.push((name.clone(), st, rate, ran.len()));
    }
    let workflow = parallel
        .first()
        .map(|r| r.workflow.clone())
        .unwrap_or_default();
    // At typical (p50) latencies the critical path's nodes take this long; a parallel run cannot
    // be shorter than its critical path, which bounds what parallelism can save.
    let path_p50: f64 = path
        .iter()
        .filter_map(|p| nodes.iter().find(|(n, ..)| n == p))
        .map(|(_, st, ..)| st.p50)
        .sum();
    let best_saved = if s.p50 > 0.0 {
        (100.0 * (1.0 - path_p50 / s.p50)).max(0.0)
    } else {
        0.0
    };

    if as_json {
        let st = |x: &Stats| json!({ "p50_ms": x.p50, "p95_ms": x.p95, "p99_ms": x.p99, "mean_ms": x.mean });
        let doc = json!({
            "workflow": workflow,
            "runs": parallel.len(),
            "parallel": st(&p),
            "sequential": st(&s),
            "speedup_p50": speedup,
            "saved_percent_p50": saved,
            "critical_path": { "nodes": path, "runs": path_walls.len(), "nodes_p50_sum_ms": path_p50, "best_saved_percent": best_saved },
            "nodes": nodes.iter().map(|(n, st, rate, ran)| json!({
                "name": n, "p50_ms": st.p50, "p95_ms": st.p95, "failure_rate": rate, "runs": ran
            })).collect::<Vec<_>>(),
        });
        return Ok(serde_json::to_string_pretty(&doc)? + "\n");
    }

    let mut out = String::new();
    let _ = writeln!(out, "\n{workflow}: {} runs in each mode\n", parallel.len());
    let _ = writeln!(
        out,
        "  {:<12}{:>10}{:>10}{:>10}{:>10}",
        "wall time", "p50", "p95", "p99", "mean"
    );
    for (name, x) in [("parallel", &p), ("sequential", &s)] {
        let _ = writeln!(
            out,
            "  {name:<12}{:>8.1}ms{:>8.1}ms{:>8.1}ms{:>8.1}ms",
            x.p50, x.p95, x.p99, x.mean
        );
    }
    let _ = writeln!(
        out,
        "\n  speedup {speedup:.2}x at p50: parallel saves {saved:.1}% of the sequential time"
    );
    let _ = writeln!(
        out,
        "  critical path: {} (in {} of {} runs); its nodes take {path_p50:.1} ms at p50",
        path.join(" -> "),
        path_walls.len(),
        parallel.len()
    );
    let _ = writeln!(
        out,
        "  no parallel run is shorter than its critical path: at these latencies parallelism saves at most\n  about {best_saved:.1}% of {:.1} ms; to save more, shorten the nodes on that path.\n",
        s.p50
    );
    let width = names.iter().map(String::len).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "  {:<width$}{:>10}{:>10}{:>14}",
        "node", "p50", "p95", "failure rate"
    );
    for (name, st, rate, ran) in &nodes {
        if *ran == 0 {
            let _ = writeln!(
                out,
                "  {name:<width$}{:>10}{:>10}{:>13.1}%",
                "skipped",
                "",
                rate * 100.0
            );
        } else {
            let _ = writeln!(
                out,
                "  {name:<width$}{:>8.1}ms{:>8.1}ms{:>13.1}%",
                st.p50,
                st.p95,
                rate * 100.0
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
