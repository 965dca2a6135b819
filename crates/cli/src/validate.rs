//! `braid validate PATH...`: every problem in every file, for people, tools or GitHub Actions.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use braid::{Engine, Source, render};
use clap::ValueEnum;

use crate::exit;

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
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if !meta.is_dir() {
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
        anyhow::bail!("no `*.yaml` or `*.yml` files under {}", args.paths.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "));
    }
    let (mut errors, mut warnings, mut invalid_files) = (0, 0, 0);
    let mut json = Vec::new();
    let color = color();
    for file in &files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read `{name}`"))?;
        let source = Source::new(name.clone(), text);
        let c = engine.compile(&source);
        let e = c.diagnostics.iter().filter(|d| d.is_error()).count();
        errors += e;
        warnings += c.diagnostics.len() - e;
        invalid_files += usize::from(e > 0);
        match args.format {
            Format::Human => {
                eprint!("{}", render::human(&name, &source.text, &c.diagnostics, color));
                if e == 0 {
                    eprintln!("{name}: ok");
                }
            }
            Format::Github => print!("{}", render::github(&name, &c.diagnostics)),
            Format::Json => json.push(serde_json::to_value(render::json(&name, &c.diagnostics))?),
        }
    }
    match args.format {
        Format::Json => {
            let diagnostics: Vec<serde_json::Value> = json.into_iter().flat_map(|v| v.as_array().cloned().unwrap_or_default()).collect();
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
            eprintln!("{} in {} {files_word}", render::summary(errors, warnings), files.len());
        }
    }
    Ok(if invalid_files > 0 { exit::FAILED } else { exit::OK })
}
