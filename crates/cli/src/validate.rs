//! `braid validate PATH...`: every problem in every file, for people, tools or GitHub Actions.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use braid::{Engine, Source, render};
use clap::ValueEnum;

use crate::{exit, telemetry};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Workflow files, or directories searched recursively for `*.yaml` and `*.yml`.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Source snippets with the problem marked, and a help line.
    Human,
    /// One JSON document: `{ files, invalid_files, errors, warnings, diagnostics: [...] }`.
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`): annotations on the PR.
    Github,
}

/// Whether stderr should be coloured (a terminal, and `NO_COLOR` unset).
pub(crate) fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    // A path that cannot be read is kept: it is reported as an `io` problem with the others.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read directory `{}`", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub(crate) fn main(engine: &Engine, args: &Args) -> anyhow::Result<u8> {
    let mut files = Vec::new();
    for p in &args.paths {
        collect(p, &mut files)?;
    }
    if files.is_empty() {
        anyhow::bail!(
            "no `*.yaml` or `*.yml` files under {}",
            args.paths
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (mut errors, mut warnings, mut invalid_files) = (0, 0, 0);
    let mut unreadable = false;
    let mut json = Vec::new();
    let color = color();
    for file in &files {
        let name = file.display().to_string();
        let (text, diagnostics) = match std::fs::read_to_string(file) {
            Ok(text) => {
                let source = Source::new(name.clone(), text);
                let c = telemetry::compiling(|| engine.compile(&source));
                (source.text, c.diagnostics)
            }
            Err(e) => {
                // Report it like any other problem, and go on with the other files.
                unreadable = true;
                let d = braid::Diagnostic::error(
                    braid::Code::Io,
                    braid::Span::default(),
                    format!("cannot read `{name}`: {e}"),
                )
                .help("check the path and the file's permissions");
                (String::new().into(), vec![d])
            }
        };
        let e = diagnostics.iter().filter(|d| d.is_error()).count();
        errors += e;
        warnings += diagnostics.len() - e;
        invalid_files += usize::from(e > 0);
        match args.format {
            Format::Human => {
                eprint!("{}", render::human(&name, &text, &diagnostics, color));
                if e == 0 {
                    eprintln!("{name}: ok");
                }
            }
            Format::Github => print!("{}", render::github(&name, &diagnostics)),
            Format::Json => json.push(serde_json::to_value(render::json(&name, &diagnostics))?),
        }
    }
    match args.format {
        Format::Json => {
            let diagnostics: Vec<serde_json::Value> = json
                .into_iter()
                .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                .collect();
            let doc = serde_json::json!({
                "files": files.len(),
                "invalid_files": invalid_files,
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diagnostics,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Human | Format::Github => {
            let files_word = if files.len() == 1 { "file" } else { "files" };
            eprintln!(
                "{} in {} {files_word}",
                render::summary(errors, warnings),
                files.len()
            );
        }
    }
    Ok(if unreadable {
        exit::USAGE
    } else if invalid_files > 0 {
        exit::FAILED
    } else {
        exit::OK
    })
}
