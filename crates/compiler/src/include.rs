//! Other workflow files named by nodes (the `workflow` kind, or a `map` over one): resolved
//! against the directory of the file that names them, compiled with the same compiler, cached for
//! the compilation, and refused when they form a cycle of files.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use braid_core::{Plan, WorkflowLoader};

use crate::{Compiler, Source};

/// How deep workflow files may nest.
const MAX_DEPTH: usize = 16;

/// Compiled files, shared by every file of one compilation.
pub(crate) type Cache = RefCell<HashMap<PathBuf, Arc<Plan>>>;

/// Loads the files named from one file being compiled.
pub(crate) struct FileLoader<'a> {
    pub compiler: &'a Compiler,
    /// The directory of the file being compiled.
    pub dir: PathBuf,
    /// The files being compiled, outermost first, this one last.
    pub chain: Vec<PathBuf>,
    pub cache: &'a Cache,
}

fn short(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}

impl WorkflowLoader for FileLoader<'_> {
    fn load(&self, path: &str) -> Result<Arc<Plan>, String> {
        let full = self.dir.join(path);
        let canonical = full
            .canonicalize()
            .map_err(|e| format!("cannot read `{}`: {e}", full.display()))?;
        if let Some(at) = self.chain.iter().position(|p| *p == canonical) {
            let mut names: Vec<String> = self.chain[at..].iter().map(|p| short(p)).collect();
            names.push(short(&canonical));
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
        if let Some(plan) = self.cache.borrow().get(&canonical) {
            return Ok(plan.clone());
        }
        // Only a regular file, within the size limit: `path: /dev/zero` must not be read forever.
        let text = crate::file::read_source(&full, self.compiler.options.limits.max_bytes)
            .map_err(|e| format!("cannot read `{}`: {e}", full.display()))?;
        let source = Source::new(full.display().to_string(), text);
        let mut chain = self.chain.clone();
        chain.push(canonical.clone());
        let compiled = self.compiler.compile_in(&source, chain, self.cache);
        match compiled.plan {
            Some(plan) => {
                let plan = Arc::new(plan);
                self.cache.borrow_mut().insert(canonical, plan.clone());
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
