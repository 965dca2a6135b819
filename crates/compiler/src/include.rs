//! Other workflow files named by nodes (the `workflow` kind, or a `map` over one): resolved
//! against the directory of the file that names them, compiled with the same compiler, cached for
//! the compilation, and refused when they form a cycle of files. The loader also records every
//! file it read, directly or through the files it included, keyed relative to the file being
//! compiled: that list is [`Compilation::files`](crate::Compilation) and what the plan's
//! fingerprint hashes.
//!
//! The files can also come from a record instead of the disk ([`Files::Recorded`]): a durable
//! store keeps the text of every file a run's workflow read, under the keys the fingerprint
//! uses, and a run resumed in another process (or after the files changed) compiles from those.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use braid_core::{Plan, WorkflowLoader};

use crate::fingerprint::{SourceFile, include_key};
use crate::{Compiler, Source};

/// How deep workflow files may nest.
const MAX_DEPTH: usize = 16;

/// Compiled files, shared by every file of one compilation: each one's plan, and the files it read
/// (keyed relative to it).
pub(crate) type Cache = RefCell<HashMap<PathBuf, (Arc<Plan>, Vec<SourceFile>)>>;

/// Where included files are read from.
#[derive(Clone, Copy)]
pub(crate) enum Files<'a> {
    /// The file system, relative to the directory of the file naming them.
    Disk,
    /// A recorded set of files by key (as [`SourceFile::key`]); `at` is the key of the file
    /// being compiled.
    Recorded {
        files: &'a BTreeMap<String, Arc<str>>,
        at: &'a str,
    },
}

/// Loads the files named from one file being compiled.
pub(crate) struct FileLoader<'a> {
    pub compiler: &'a Compiler,
    /// The directory of the file being compiled.
    pub dir: PathBuf,
    /// Where included files come from.
    pub files: Files<'a>,
    /// The files being compiled, outermost first, this one last.
    pub chain: Vec<PathBuf>,
    pub cache: &'a Cache,
    /// The files read so far, by key relative to the file being compiled (the root excluded).
    pub read: RefCell<BTreeMap<String, SourceFile>>,
}

impl FileLoader<'_> {
    /// Every file the compilation of `root` read: `root` first, then the included files by key,
    /// the order [`fingerprint`](crate::fingerprint::fingerprint) hashes.
    pub(crate) fn files(&self, root: &Source) -> Vec<SourceFile> {
        std::iter::once(root_file(root))
            .chain(self.read.borrow().values().cloned())
            .collect()
    }

    /// Records the files an included file read (`files`, keyed relative to it; itself first),
    /// rekeyed relative to the file being compiled. `written` is the path the node gave.
    fn record(&self, written: &str, files: &[SourceFile]) {
        let at = include_key("", written);
        let mut read = self.read.borrow_mut();
        for f in files {
            let key = if f.key.is_empty() {
                at.clone()
            } else {
                include_key(&at, &f.key)
            };
            read.entry(key.clone())
                .or_insert_with(|| SourceFile { key, ..f.clone() });
        }
    }
}

/// The root of a compilation as a file it read.
pub(crate) fn root_file(root: &Source) -> SourceFile {
    SourceFile {
        path: PathBuf::from(&root.name),
        key: String::new(),
        text: root.text.clone(),
    }
}

fn short(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}

impl WorkflowLoader for FileLoader<'_> {
    fn load(&self, path: &str) -> Result<Arc<Plan>, String> {
        if let Files::Recorded { files, at } = self.files {
            return self.load_recorded(files, at, path);
        }
        let full = self.dir.join(path);
        let canonical = full
            .canonicalize()
            .map_err(|e| format!("cannot read `{}`: {e}", full.display()))?;
        if let Some(plan) = self.enter(path, &canonical)? {
            return Ok(plan);
        }
        // Only a regular file, within the size limit: `path: /dev/zero` must not be read forever.
        let text = crate::file::read_source(&full, self.compiler.options.limits.max_bytes)
            .map_err(|e| format!("cannot read `{}`: {e}", full.display()))?;
        let source = Source::new(full.display().to_string(), text);
        self.compile_included(path, source, canonical, Files::Disk)
    }
}

impl FileLoader<'_> {
    /// Checks the chain of files for a cycle and the depth, then serves `canonical` from the
    /// cache. `Ok(None)`: not compiled yet.
    fn enter(&self, path: &str, canonical: &Path) -> Result<Option<Arc<Plan>>, String> {
        if let Some(at) = self.chain.iter().position(|p| p == canonical) {
            let mut names: Vec<String> = self.chain[at..].iter().map(|p| short(p)).collect();
            names.push(short(canonical));
            return Err(format!(
                "the workflow files form a cycle: {}",
                names.join(" -> ")
            ));
        }
        if self.chain.len() >= MAX_DEPTH {
            return Err(format!(
                "workflow files nest deeper than {MAX_DEPTH} levels"
            ));
        }
        if let Some((plan, files)) = self.cache.borrow().get(canonical) {
            self.record(path, files);
            return Ok(Some(plan.clone()));
        }
        Ok(None)
    }

    /// An included file from a recorded set: `path` as written in the file keyed `at`.
    fn load_recorded(
        &self,
        files: &BTreeMap<String, Arc<str>>,
        at: &str,
        path: &str,
    ) -> Result<Arc<Plan>, String> {
        let key = include_key(at, path);
        // Recorded files are told apart by key: that is the path the chain and cache hold.
        let canonical = PathBuf::from(&key);
        if let Some(plan) = self.enter(path, &canonical)? {
            return Ok(plan);
        }
        let Some((key, text)) = files.get_key_value(&key) else {
            return Err(format!(
                "`{path}` (`{key}`) is not among the recorded files of this workflow"
            ));
        };
        let source = Source::new(key.clone(), text.clone());
        self.compile_included(path, source, canonical, Files::Recorded { files, at: key })
    }

    /// Compiles an included file and caches its plan.
    fn compile_included(
        &self,
        path: &str,
        source: Source,
        canonical: PathBuf,
        files: Files<'_>,
    ) -> Result<Arc<Plan>, String> {
        let mut chain = self.chain.clone();
        chain.push(canonical.clone());
        let compiled = self.compiler.compile_in(&source, chain, self.cache, files);
        self.record(path, &compiled.files);
        match compiled.plan {
            Some(plan) => {
                let plan = Arc::new(plan);
                self.cache
                    .borrow_mut()
                    .insert(canonical, (plan.clone(), compiled.files));
                Ok(plan)
            }
            None => {
                let errors: Vec<_> = compiled
                    .diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .collect();
                let first = errors.first().map(|d| {
                    let s = d.span();
                    format!(
                        "; the first: {}:{}:{}: {}",
                        source.name,
                        s.start.line.max(1),
                        s.start.column.max(1),
                        d.message
                    )
                });
                Err(format!(
                    "workflow `{path}` has {} error{}{} (run `braid validate {}` for all of them)",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" },
                    first.unwrap_or_default(),
                    source.name
                ))
            }
        }
    }
}
