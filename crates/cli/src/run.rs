//! `braid run FILE`: runs a workflow once. The final state goes to stdout as JSON; a summary
//! (per-node timeline, status, wall time against the sequential sum) goes to stderr.

use std::fmt::Write as _;
use std::future::Future;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use braid::{Engine, ExecutionMode, NodeStatus, Plan, RunOptions, RunResult, RunStatus, render};
use serde_json::{Map, Value};

use crate::live::{self, Display};
use crate::{exit, telemetry, timeline, validate};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The workflow file.
    file: PathBuf,
    /// An input, as `KEY=VALUE`. VALUE is JSON (`true`, `3`, `["a"]`) unless the input is a string.
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
    inputs: Vec<String>,
    /// A JSON object of inputs; `--input` entries override it.
    #[arg(long, value_name = "FILE.json")]
    input_file: Option<PathBuf>,
    /// Run one node at a time, in canonical order, whatever the file says.
    #[arg(long)]
    sequential: bool,
    /// Bound on nodes in flight, overriding `execution.max_concurrency`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrency: Option<u32>,
    /// The run's timeout, such as `30s`, overriding `execution.timeout`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Seed for mock latencies, scripted failures and retry jitter.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Journal the run in this store, so that it can be resumed, retried and listed:
    /// `sqlite:PATH` (created if need be) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "BRAID_STORE", value_name = "URL")]
    store: Option<String>,
    #[command(flatten)]
    pub(crate) out: Outputs,
}

/// Where a run's results go, besides the state on stdout: the flags `run`, `resume` and `retry`
/// share.
#[derive(Debug, clap::Args)]
pub(crate) struct Outputs {
    /// Write the run report (every node's status, attempts and timings) as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Write the run's timeline as Chrome trace-event JSON (open it in Perfetto or chrome://tracing).
    #[arg(long, value_name = "FILE.json")]
    trace: Option<PathBuf>,
    /// Write the run's timeline as a self-contained HTML Gantt chart.
    #[arg(long, value_name = "FILE.html")]
    timeline: Option<PathBuf>,
    /// Write the run's Prometheus metrics (exposition text format) to this file.
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Print neither the live view nor the summary on stderr.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

/// The same parser as the workflow format's durations.
fn parse_duration(s: &str) -> Result<Duration, String> {
    braid::parse_duration(s).map_err(|e| e.to_string())
}

/// Reads `--input-file` then `--input KEY=VALUE` entries (which override it) into a JSON object.
/// A VALUE is JSON (`true`, `3`, `["a"]`) unless the input is declared a string.
pub(crate) fn parse_inputs(
    declared: &[braid::InputDecl],
    entries: &[String],
    file: Option<&std::path::Path>,
) -> anyhow::Result<Value> {
    let mut map = Map::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not valid JSON", path.display()))?;
        let Value::Object(m) = v else {
            anyhow::bail!("`{}` must hold a JSON object of inputs", path.display());
        };
        map.extend(m);
    }
    for entry in entries {
        let Some((key, raw)) = entry.split_once('=') else {
            anyhow::bail!("`--input {entry}` must be KEY=VALUE");
        };
        let is_string = declared
            .iter()
            .any(|d| &*d.name == key && d.ty == braid::InputType::String);
        let value = if is_string {
            Value::String(raw.to_owned())
        } else {
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
        };
        map.insert(key.to_owned(), value);
    }
    Ok(Value::Object(map))
}

/// The run's inputs from `--input` and `--input-file`, checked against the workflow; when they do
/// not fit, prints every problem and gives the exit code.
pub(crate) fn inputs(
    workflow: &braid::Workflow,
    entries: &[String],
    file: Option<&std::path::Path>,
) -> anyhow::Result<Result<Value, u8>> {
    let given = parse_inputs(workflow.plan().inputs(), entries, file)?;
    match workflow.inputs(given) {
        Ok(v) => Ok(Ok(v)),
        Err(braid::Error::Inputs(errors)) => {
            for e in errors {
                crate::output::err(&format!("error: {e}\n"));
            }
            Ok(Err(exit::INVALID))
        }
        Err(e) => Err(e.into()),
    }
}

/// Loads a workflow; when it is invalid, prints its diagnostics and gives the exit code.
pub(crate) fn load(
    engine: &Engine,
    file: &std::path::Path,
) -> anyhow::Result<Result<braid::Workflow, u8>> {
    match telemetry::compiling(|| engine.load_file(file)) {
        Ok(w) => {
            if !w.warnings().is_empty() {
                crate::output::err(&render::human(
                    &w.source().name,
                    &w.source().text,
                    w.warnings(),
                    validate::color(),
                ));
            }
            Ok(Ok(w))
        }
        Err(braid::Error::Invalid(inv)) => {
            crate::output::err(&render::human(
                &inv.source.name,
                &inv.source.text,
                &inv.diagnostics,
                validate::color(),
            ));
            Ok(Err(exit::INVALID))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn main(engine: &Engine, args: &Args) -> anyhow::Result<u8> {
    let workflow = match load(engine, &args.file)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let resolved = match inputs(&workflow, &args.inputs, args.input_file.as_deref())? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let options = RunOptions {
        mode: args.sequential.then_some(ExecutionMode::Sequential),
        max_concurrency: args.max_concurrency,
        timeout: args.timeout,
        seed: args.seed,
        ..RunOptions::default()
    };
    let plan = workflow.plan().clone();
    let rt = runtime()?;
    match &args.store {
        None => execute(&rt, &args.out, plan, options, |options| async move {
            Ok(braid::run_plan(workflow.plan().clone(), resolved, options).await)
        }),
        #[cfg(not(feature = "store"))]
        Some(_) => anyhow::bail!("this braid was built without durable runs (the `store` feature)"),
        #[cfg(feature = "store")]
        Some(url) => {
            let url = url.clone();
            let engine = engine.clone();
            let quiet = args.out.quiet;
            execute(&rt, &args.out, plan, options, |options| async move {
                let durable = crate::durable::open(engine, &url).await?;
                let started = durable.start(&workflow, resolved, options).await?;
                crate::durable::announce(&started, &durable, quiet);
                started.await
            })
        }
    }
}

/// What ends a run's execution early: the run itself could not be done (its store went away,
/// say), with the result of what ran if there is one.
pub(crate) type Outcome = Result<RunResult, braid::Error>;

/// Runs a run (`start` builds it from the options, with the events and cancel token set), with
/// the live view, Ctrl-C and `SIGTERM` handling, then writes the state, report and files.
/// Returns the exit code.
pub(crate) fn execute<F, Fut>(
    rt: &tokio::runtime::Runtime,
    out: &Outputs,
    plan: Arc<Plan>,
    mut options: RunOptions,
    start: F,
) -> anyhow::Result<u8>
where
    F: FnOnce(RunOptions) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    if out.metrics_file.is_some() {
        crate::telemetry::init_metrics();
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = braid::CancelToken::new();
    options.events = Some(tx);
    options.cancel = Some(cancel.clone());
    let display = if out.quiet {
        Display::Quiet
    } else if std::io::stderr().is_terminal() {
        Display::Terminal {
            color: validate::color(),
        }
    } else {
        Display::Lines
    };
    let run = start(options);
    let (outcome, record, stopped_by) = rt.block_on(async move {
        // Listen before anything starts, so that no signal finds the default action (death).
        let mut terminate = Terminate::new();
        // The watcher ends when the run drops its event sender.
        let watcher = tokio::spawn(live::watch(plan.clone(), rx, display));
        tokio::pin!(run);
        // Ctrl-C and SIGTERM cancel the run, which still reports every node and keeps what
        // completed; dropping the `exec` nodes' futures kills their process groups.
        let (outcome, stopped_by) = tokio::select! {
            r = &mut run => (r, None),
            _ = tokio::signal::ctrl_c() => {
                cancel.cancel();
                (run.await, Some(exit::INTERRUPTED))
            }
            () = terminate.recv() => {
                cancel.cancel();
                (run.await, Some(exit::TERMINATED))
            }
        };
        (outcome, watcher.await, stopped_by)
    });
    let record = record.context("the live view failed")?;
    let (result, unrecorded) = match outcome {
        Ok(result) => (result, None),
        #[cfg(feature = "store")]
        Err(braid::Error::Durable(braid::durable::DurableError::Unrecorded {
            run,
            result,
            source,
        })) => (
            *result,
            Some(format!(
                "run `{run}`: its end could not be recorded: {source}"
            )),
        ),
        Err(e) => return Err(e.into()),
    };
    if let Some(path) = &out.report {
        write(path, &serde_json::to_string_pretty(&result.report)?)?;
    }
    if let Some(path) = &out.trace {
        write(
            path,
            &serde_json::to_string(&timeline::chrome_trace(&result.report, &record))?,
        )?;
    }
    if let Some(path) = &out.timeline {
        write(path, &timeline::html(&result.report, &record))?;
    }
    if let Some(path) = &out.metrics_file {
        write(path, &crate::telemetry::metrics_text())?;
    }
    crate::output::out(&format!(
        "{}\n",
        serde_json::to_string_pretty(&result.state)?
    ))?;
    if !out.quiet {
        crate::output::err(&summary(&result, validate::color()));
    }
    if let Some(message) = unrecorded {
        crate::output::err(&format!("error: {message}\n"));
        return Ok(exit::FAILED);
    }
    if let Some(code) = stopped_by {
        return Ok(code);
    }
    Ok(exit_code(&result))
}

/// The runtime runs execute on. A store opened on it lives as long as it does.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The exit code of a run that ended so.
pub(crate) fn exit_code(result: &RunResult) -> u8 {
    match result.status {
        RunStatus::Succeeded => exit::OK,
        RunStatus::Degraded => exit::DEGRADED,
        RunStatus::Failed => exit::FAILED,
        RunStatus::Waiting => exit::WAITING,
    }
}

/// `SIGTERM`, where there is one.
struct Terminate {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Terminate {
    /// Starts listening (so `SIGTERM` no longer kills the process). Needs the runtime.
    fn new() -> Self {
        #[cfg(unix)]
        {
            let kind = tokio::signal::unix::SignalKind::terminate();
            Terminate {
                signal: tokio::signal::unix::signal(kind).ok(),
            }
        }
        #[cfg(not(unix))]
        Terminate {}
    }

    /// Resolves when `SIGTERM` arrives; never, where it cannot.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

fn write(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// The human summary: header, one timeline row per node, critical path.
pub(crate) fn summary(result: &RunResult, color: bool) -> String {
    let r = &result.report;
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    };
    let status_color = |s: &str| match s {
        "succeeded" => "32",
        "degraded" | "fell_back" | "skipped" => "33",
        "failed" | "cancelled" => "31",
        "waiting" => "35",
        _ => "2",
    };
    let mut out = String::new();
    let saved = if r.node_time_sum.is_zero() {
        0.0
    } else {
        100.0 * (1.0 - r.wall_time.as_secs_f64() / r.node_time_sum.as_secs_f64())
    };
    let head = format!(
        "\n{} {} ({})",
        paint("1", &r.workflow),
        paint(status_color(r.status.as_str()), r.status.as_str()),
        r.mode
    );
    // The comparison with one-node-at-a-time only means something for a finished parallel run.
    if matches!(r.status, RunStatus::Failed | RunStatus::Waiting) {
        let _ = writeln!(out, "{head} after {} ms", ms(r.wall_time));
    } else if r.mode == "parallel" && r.speedup >= 1.005 {
        let _ = writeln!(
            out,
            "{head} in {} ms; the nodes took {} ms in all, so this run was {:.2}x faster than one node at a time ({:.1}% saved)",
            ms(r.wall_time),
            ms(r.node_time_sum),
            r.speedup,
            saved
        );
    } else {
        let _ = writeln!(out, "{head} in {} ms", ms(r.wall_time));
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "{} {e}", paint("31", "error:"));
    }
    if let Some(id) = &r.run_id {
        let _ = writeln!(out, "run id: {id}");
    }
    let name_w = r
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let width = 40usize;
    let total = r.wall_time.as_secs_f64().max(f64::EPSILON);
    let _ = writeln!(
        out,
        "\n  {:<name_w$}  {:<11}  {:>8}  {:>8}  {:>3}  timeline 0 .. {} ms",
        "node",
        "status",
        "start",
        "end",
        "try",
        ms(r.wall_time)
    );
    for n in &r.nodes {
        let (start, end) = (n.start.unwrap_or_default(), n.end.unwrap_or_default());
        let a = ((start.as_secs_f64() / total) * width as f64).round() as usize;
        let b = (((end.as_secs_f64() / total) * width as f64).round() as usize)
            .max(a + usize::from(n.end.is_some() && n.status != NodeStatus::Skipped))
            .min(width);
        let bar = if n.status == NodeStatus::Waiting {
            // Reached, and waiting past the run's end.
            let a = a.min(width - 1);
            paint(
                "35",
                &format!("{}?{}", " ".repeat(a), "┄".repeat(width - a - 1)),
            )
        } else {
            paint(
                "36",
                &format!(
                    "{}{}{}",
                    " ".repeat(a.min(width)),
                    "█".repeat(b.saturating_sub(a)),
                    " ".repeat(width.saturating_sub(b.max(a)))
                ),
            )
        };
        let times = if n.start.is_some() {
            (ms(start), ms(end))
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        let st = n.status.as_str();
        let _ = writeln!(
            out,
            "  {:<name_w$}  {}  {:>8}  {:>8}  {:>3}  |{}|",
            n.name,
            paint(status_color(st), &format!("{st:<11}")),
            times.0,
            times.1,
            n.attempts,
            bar
        );
        if let Some(f) = &n.failure {
            let _ = writeln!(
                out,
                "  {:<name_w$}    {} {}",
                "",
                paint("2", &format!("{}:", f.kind)),
                f.message
            );
        }
    }
    let finished = matches!(r.status, RunStatus::Succeeded | RunStatus::Degraded);
    if !r.critical_path.is_empty() && r.mode == "parallel" && finished {
        let _ = writeln!(
            out,
            "\ncritical path: {} ({} ms)",
            r.critical_path.join(" -> "),
            ms(r.wall_time)
        );
    }
    // Nodes that ended but have no time in this run settled in an earlier one (a resumed or
    // retried run): they kept their writes and did not run again.
    let earlier: Vec<&str> = r
        .nodes
        .iter()
        .filter(|n| {
            n.start.is_none()
                && n.attempts > 0
                && matches!(n.status, NodeStatus::Succeeded | NodeStatus::FellBack)
        })
        .map(|n| &*n.name)
        .collect();
    if !earlier.is_empty() {
        let _ = writeln!(
            out,
            "
settled before this run continued (kept, not run again): {}",
            earlier.join(", ")
        );
    }
    waiting(&mut out, r, &paint);
    out
}

/// What a run that stopped at `wait` nodes asks, and how it could go on.
fn waiting(out: &mut String, r: &braid::RunReport, paint: &dyn Fn(&str, &str) -> String) {
    let waiting: Vec<&braid::NodeReport> = r
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Waiting)
        .collect();
    if waiting.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{}", paint("35", "waiting for an answer:"));
    for n in &waiting {
        let _ = writeln!(out, "  {}: {}", n.name, n.prompt.as_deref().unwrap_or(""));
    }
    if r.status == RunStatus::Waiting {
        let _ = writeln!(
            out,
            "\nthis run stopped at a `wait` node and was not journaled, so it cannot be resumed: \
             run it with `--store` to resume it later"
        );
    }
}
