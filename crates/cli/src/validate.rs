//! `braid validate PATH...`: every problem in every file, for people, tools or GitHub Actions.

use std::collections::HashSet;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use braid::{Engine, render};
use clap::ValueEnum;

use crate::{exit, output, telemetry};

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

/// A directory or file's identity, so that one reached twice (through a symbolic link) is
/// walked once, and a link back to a parent ends the walk instead of looping.
#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// The files to check under `path`. A path given is kept whatever it is (one that is not a
/// regular file is reported when read); inside directories only regular files named `*.yaml` or
/// `*.yml` are taken (FIFOs, sockets and devices are skipped). Symbolic links are followed, but
/// each directory and file is visited once, by device and inode: a link loop ends. (Elsewhere
/// than Unix, links to directories are not followed.)
fn collect(
    path: &Path,
    seen: &mut HashSet<(u64, u64)>,
    out: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => m,
        // A path that cannot be read is kept: it is reported as an `io` problem with the others.
        _ => {
            out.push(path.to_owned());
            return Ok(());
        }
    };
    if identity(&meta).is_some_and(|id| !seen.insert(id)) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read directory `{}`", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
        let Ok(meta) = std::fs::metadata(&p) else {
            continue; // a dangling link
        };
        if meta.is_dir() {
            if cfg!(unix) || !link {
                collect(&p, seen, out)?;
            }
        } else if meta.is_file()
            && p.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && identity(&meta).is_none_or(|id| seen.insert(id))
        {
            out.push(p);
        }
    }
    Ok(())
}

pub(crate) fn main(engine: &Engine, args: &Args) -> anyhow::Result<u8> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for p in &args.paths {
        collect(p, &mut seen, &mut files)?;
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
        let (text, diagnostics) = match engine.read_file(file) {
            Ok(source) => {
                let c = telemetry::compiling(|| engine.compile(&source));
                (source.text, c.diagnostics)
            }
            Err(braid::Error::Io { source: e, .. }) => {
                // Report it like any other problem, and go on with the other files.
                unreadable = true;
                let d = braid::Diagnostic::error(
                    braid::Code::Io,
                    braid::Span::default(),
                    format!("cannot read `{name}`: {e}"),
                )
                .help("name a regular file (not a directory, FIFO or device) of at most 8 MiB, and check its permissions");
                (String::new().into(), vec![d])
            }
            Err(e) => return Err(e.into()),
        };
        let e = diagnostics.iter().filter(|d| d.is_error()).count();
        errors += e;
        warnings += diagnostics.len() - e;
        invalid_files += usize::from(e > 0);
        match args.format {
            Format::Human => {
                output::err(&render::human(&name, &text, &diagnostics, color));
                if e == 0 {
                    output::err(&format!("{name}: ok\n"));
                }
            }
            Format::Github => output::out(&render::github(&name, &diagnostics))?,
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
            output::out(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
        }
        Format::Human | Format::Github => {
            let files_word = if files.len() == 1 { "file" } else { "files" };
            output::err(&format!(
                "{} in {} {files_word}\n",
                render::summary(errors, warnings),
                files.len()
            ));
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
