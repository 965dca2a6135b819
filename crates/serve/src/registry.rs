//! The workflows a service serves: every workflow file in one directory, compiled, with the
//! version each name serves now and what is wrong with its file, if anything.
//!
//! A [`Catalog`] is immutable; a rescan builds the next one from the previous and swaps it in
//! ([`Registry`]), so a request reads one consistent catalog without holding a lock, and a run
//! holds the [`Workflow`] it started with (its version) however many reloads follow.
//!
//! What a rescan does, file by file (the top-level `*.yaml`/`*.yml` files of the directory):
//!
//! * a file whose every read file (itself and each file it includes, [`Workflow::files`]) still
//!   has the text it was compiled from is kept as it is: nothing recompiles;
//! * otherwise it is compiled again. **An invalid result never replaces a valid version**: the
//!   previous version keeps serving and the entry carries the diagnostics; a valid result
//!   becomes the version new runs use;
//! * a file that is gone is dropped (runs in flight keep their version);
//! * a file that does not compile is compiled again at every rescan (its missing include may
//!   have appeared), but reported only when its diagnostics change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use braid::durable::{Micros, now_micros};
use braid::{Engine, Error, Workflow, render};
use serde_json::{Value, json};

use crate::metrics;

/// What is wrong with a workflow file as it is on disk now.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The diagnostics rendered as `braid validate` renders them (no colour).
    pub rendered: String,
    /// The diagnostics as `braid validate --format json` prints them.
    pub diagnostics: Value,
}

/// One workflow file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file.
    pub path: PathBuf,
    /// The workflow's `name:` (the file's stem while it never compiled).
    pub name: String,
    /// The version new runs use: the file's last valid compilation.
    pub serving: Option<Workflow>,
    /// When `serving` was loaded.
    pub loaded_at: Option<Micros>,
    /// The file as it is now does not compile: why. The version serving (if any) is older.
    pub problem: Option<Problem>,
    /// Every file the last compilation read, with the text it read.
    watched: Vec<(PathBuf, Arc<str>)>,
}

/// The workflows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: BTreeMap<PathBuf, Arc<Entry>>,
}

impl Catalog {
    /// Every entry, by path.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.values()
    }

    /// The entry named `name` (the first by path, should two files share a name).
    pub fn get(&self, name: &str) -> Option<&Arc<Entry>> {
        self.entries.values().find(|e| e.name == name)
    }

    /// How many names serve a version.
    pub fn serving(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.serving.is_some())
            .count()
    }
}

/// What a rescan did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new valid version serves.
    Loaded,
    /// The file does not compile; the previous version (if any) keeps serving.
    Invalid,
    /// The file is gone; it accepts no new runs.
    Removed,
}

impl Outcome {
    /// The `result` label of the reload counter.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Loaded => "loaded",
            Outcome::Invalid => "invalid",
            Outcome::Removed => "removed",
        }
    }
}

/// The catalog a service serves, swapped whole on each rescan.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    engine: Engine,
    current: RwLock<Arc<Catalog>>,
    /// Whether the directory was read at least once.
    loaded: std::sync::atomic::AtomicBool,
}

impl Registry {
    /// A registry of the workflow files in `dir`, not yet scanned.
    pub fn new(engine: Engine, dir: PathBuf) -> Self {
        Registry {
            dir,
            engine,
            current: RwLock::default(),
            loaded: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The catalog now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether the directory has been read.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Reads the directory again and swaps in the new catalog; returns what changed, by file.
    /// Blocking (file reads and compilations): call it off the async threads.
    ///
    /// # Errors
    ///
    /// When the directory cannot be listed: the catalog is left as it was.
    pub fn rescan(&self) -> std::io::Result<Vec<(PathBuf, Outcome)>> {
        let old = self.catalog();
        let files = workflow_files(&self.dir)?;
        let mut next = Catalog::default();
        let mut changes = Vec::new();
        for path in files {
            let previous = old.entries.get(&path);
            if let Some(prev) = previous
                && prev.problem.is_none()
                && unchanged(&prev.watched)
            {
                next.entries.insert(path, prev.clone());
                continue;
            }
            let entry = self.compile(&path, previous.map(AsRef::as_ref));
            let outcome = match (&entry.problem, previous) {
                (None, _) => Some(Outcome::Loaded),
                (Some(p), Some(prev)) if prev.problem.as_ref() == Some(p) => None,
                (Some(_), _) => Some(Outcome::Invalid),
            };
            if let Some(o) = outcome {
                report(&entry, o);
                changes.push((path.clone(), o));
            }
            next.entries.insert(path, Arc::new(entry));
        }
        for (path, prev) in &old.entries {
            if !next.entries.contains_key(path) {
                tracing::info!(workflow = %prev.name, file = %path.display(), "workflow file removed: it accepts no new runs");
                metrics::reload(Outcome::Removed);
                changes.push((path.clone(), Outcome::Removed));
            }
        }
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(changes)
    }

    /// Compiles one file into its entry, keeping `previous`'s version when it does not compile.
    fn compile(&self, path: &Path, previous: Option<&Entry>) -> Entry {
        let stem = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let kept = |problem: Problem, watched| Entry {
            path: path.to_path_buf(),
            name: previous.map_or(stem.clone(), |p| p.name.clone()),
            serving: previous.and_then(|p| p.serving.clone()),
            loaded_at: previous.and_then(|p| p.loaded_at),
            problem: Some(problem),
            watched,
        };
        match self.engine.load_file(path) {
            Ok(workflow) => Entry {
                path: path.to_path_buf(),
                name: workflow.plan().name().to_string(),
                watched: workflow
                    .files()
                    .iter()
                    .map(|f| (f.path.clone(), f.text.clone()))
                    .collect(),
                serving: Some(workflow),
                loaded_at: Some(now_micros()),
                problem: None,
            },
            Err(Error::Invalid(invalid)) => {
                // Compiled again for the files it read: fixing an included file fixes it.
                let files = self.engine.compile(&invalid.source).files;
                let problem = Problem {
                    rendered: invalid.to_string(),
                    diagnostics: serde_json::to_value(render::json(
                        &invalid.source.name,
                        &invalid.diagnostics,
                    ))
                    .unwrap_or(Value::Null),
                };
                kept(
                    problem,
                    files.into_iter().map(|f| (f.path, f.text)).collect(),
                )
            }
            Err(other) => {
                let message = error_chain(&other);
                let problem = Problem {
                    rendered: format!("error: {message}\n"),
                    diagnostics: json!([{
                        "file": path.display().to_string(),
                        "line": 1, "column": 1,
                        "code": "io", "severity": "error", "message": message,
                    }]),
                };
                kept(problem, Vec::new())
            }
        }
    }
}

/// Logs what a rescan did to a file and counts it.
fn report(entry: &Entry, outcome: Outcome) {
    metrics::reload(outcome);
    let file = entry.path.display();
    match (&entry.problem, &entry.serving) {
        (None, Some(w)) => {
            tracing::info!(workflow = %entry.name, %file, fingerprint = %w.fingerprint(), "workflow loaded");
        }
        (Some(p), Some(w)) => tracing::warn!(
            workflow = %entry.name, %file, serving = %w.fingerprint(),
            "workflow file does not compile; the previous version keeps serving\n{}", p.rendered
        ),
        (Some(p), None) => tracing::warn!(
            workflow = %entry.name, %file,
            "workflow file does not compile; nothing serves under its name\n{}", p.rendered
        ),
        (None, None) => {}
    }
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Whether every file still has the text it had.
fn unchanged(watched: &[(PathBuf, Arc<str>)]) -> bool {
    !watched.is_empty()
        && watched
            .iter()
            .all(|(p, text)| std::fs::read_to_string(p).is_ok_and(|now| *now == **text))
}

/// The workflow files of `dir`: its `*.yaml` and `*.yml` regular files (not its
/// sub-directories, which hold included files), sorted.
fn workflow_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if yaml
            && !hidden
            && entry
                .file_type()
                .is_ok_and(|t| t.is_file() || t.is_symlink())
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
