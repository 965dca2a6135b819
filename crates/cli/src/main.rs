//! The `braid` command: validate, schema, graph and run workflow files.
//!
//! The only crate that prints, parses arguments and uses `anyhow`. Exit codes are documented in
//! `docs/cli.md` and defined once, in [`exit`].

mod bench;
#[cfg(feature = "store")]
mod durable;
mod exit;
mod live;
mod output;
mod run;
#[cfg(feature = "serve")]
mod serve;
mod telemetry;
mod timeline;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc, not the system allocator: a run allocates and frees its state on whichever worker
/// thread polls it, and glibc's malloc serialises such cross-thread frees on its arena locks
/// (zero-latency mode-1 throughput on two workers: 45–59k runs/s with glibc, 100–120k with
/// mimalloc; see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Declarative DAG workflows in YAML, run by a ready-set scheduler.
#[derive(Debug, Parser)]
#[command(name = "braid", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, value_enum, global = true, default_value_t = telemetry::LogFormat::Pretty)]
    log_format: telemetry::LogFormat,
    /// More logs: -v info, -vv debug, -vvv trace. `RUST_LOG` (e.g. `braid_runtime=debug`) wins.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check workflow files (or directories of `*.yaml` / `*.yml`) and report every problem.
    Validate(validate::Args),
    /// Print the workflow JSON Schema (what `schemas/workflow.schema.json` holds).
    Schema,
    /// Print a workflow's DAG as Mermaid or Graphviz DOT.
    Graph {
        /// The workflow file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Run a workflow: final state as JSON on stdout, a live view and a summary on stderr.
    Run(run::Args),
    /// Run a workflow N times in parallel and N times in sequential mode; print percentiles,
    /// the speedup, per-node latency and failure rates, and the critical path.
    Bench(bench::Args),
    /// Continue a journaled run that did not finish (its process died, it was cancelled, or it
    /// waits for an answer): nothing that settled runs again.
    #[cfg(feature = "store")]
    Resume(durable::ResumeArgs),
    /// Run a failed or degraded journaled run's failed nodes (or one node) and everything
    /// downstream of them again; the rest keeps its recorded writes.
    #[cfg(feature = "store")]
    Retry(durable::RetryArgs),
    /// List, show and clean up the runs journaled in a store.
    #[cfg(feature = "store")]
    #[command(subcommand)]
    Runs(durable::RunsCommand),
    /// Serve the workflows of a directory over HTTP: durable runs, live events, hot reload.
    #[cfg(feature = "serve")]
    Serve(serve::Args),
    /// Run queued workflows without serving HTTP: a replica that claims runs from a store
    /// shared with `braid serve` replicas (docs/scaling.md).
    #[cfg(feature = "serve")]
    Worker(serve::WorkerArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

/// Turns transparent huge pages off for this process, whatever the command. mimalloc asks for
/// them on its arenas (`madvise`), so the heap is resident in 2 MiB steps, and the kernel's
/// khugepaged fills partly used ones in: a service's resident memory moved by up to 8 MiB on a
/// heap of 10 (from 26 MiB resident without them to 45–55 MiB), and `braid validate` of a
/// 10,000-node file peaked 11 MiB higher with them (issue 16, item 19): neither use nor a leak,
/// but it reads as both. The process's memory should follow what it holds
/// (docs/performance.md).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    #[cfg(feature = "serve")]
    let service = matches!(cli.command, Command::Serve(_) | Command::Worker(_));
    #[cfg(not(feature = "serve"))]
    let service = false;
    telemetry::init_logs(cli.log_format, cli.verbose, service, validate::color());
    telemetry::quiet_caught_panics();
    no_huge_pages();
    let engine = braid::Engine::new();
    let result = match cli.command {
        Command::Validate(args) => validate::main(&engine, &args),
        Command::Schema => schema(&engine),
        Command::Graph { file, format } => graph(&engine, &file, format),
        Command::Run(args) => run::main(&engine, &args),
        Command::Bench(args) => bench::main(&engine, &args),
        #[cfg(feature = "store")]
        Command::Resume(args) => durable::resume(&engine, &args),
        #[cfg(feature = "store")]
        Command::Retry(args) => durable::retry(&engine, &args),
        #[cfg(feature = "store")]
        Command::Runs(command) => durable::runs(&engine, &command),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::main(&engine, &args),
        #[cfg(feature = "serve")]
        Command::Worker(args) => serve::worker(&engine, &args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            output::err(&format!("error: {e:#}\n"));
            ExitCode::from(exit::USAGE)
        }
    }
}

fn schema(engine: &braid::Engine) -> anyhow::Result<u8> {
    output::out(&format!(
        "{}\n",
        serde_json::to_string_pretty(engine.schema())?
    ))?;
    Ok(exit::OK)
}

fn graph(
    engine: &braid::Engine,
    file: &std::path::Path,
    format: GraphFormat,
) -> anyhow::Result<u8> {
    let workflow = match run::load(engine, file)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let format = match format {
        GraphFormat::Mermaid => braid::graph::GraphFormat::Mermaid,
        GraphFormat::Dot => braid::graph::GraphFormat::Dot,
    };
    output::out(&braid::graph::render(workflow.plan(), format))?;
    Ok(exit::OK)
}
