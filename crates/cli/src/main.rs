//! The `braid` command: validate, schema, graph and run workflow files.
//!
//! The only crate that prints, parses arguments and uses `anyhow`. Exit codes are documented in
//! `docs/cli.md` and defined once, in [`exit`].

mod exit;
mod run;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Declarative DAG workflows in YAML, run by a ready-set scheduler.
#[derive(Debug, Parser)]
#[command(name = "braid", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Run a workflow: final state as JSON on stdout, a summary on stderr.
    Run(run::Args),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    let engine = braid::Engine::new();
    let result = match cli.command {
        Command::Validate(args) => validate::main(&engine, &args),
        Command::Schema => schema(&engine),
        Command::Graph { file, format } => graph(&engine, &file, format),
        Command::Run(args) => run::main(&engine, &args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(exit::USAGE)
        }
    }
}

#[allow(clippy::print_stdout)]
fn schema(engine: &braid::Engine) -> anyhow::Result<u8> {
    println!("{}", serde_json::to_string_pretty(engine.schema())?);
    Ok(exit::OK)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn graph(engine: &braid::Engine, file: &std::path::Path, format: GraphFormat) -> anyhow::Result<u8> {
    let workflow = match engine.load_file(file) {
        Ok(w) => w,
        Err(braid::Error::Invalid(inv)) => {
            eprint!("{}", braid::render::human(&inv.source.name, &inv.source.text, &inv.diagnostics, validate::color()));
            return Ok(exit::INVALID);
        }
        Err(e) => return Err(e.into()),
    };
    let format = match format {
        GraphFormat::Mermaid => braid::graph::GraphFormat::Mermaid,
        GraphFormat::Dot => braid::graph::GraphFormat::Dot,
    };
    print!("{}", braid::graph::render(workflow.plan(), format));
    Ok(exit::OK)
}
