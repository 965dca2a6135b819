//! Braid's compiler: workflow YAML text in, a [`Plan`] or diagnostics out.
//!
//! ```text
//! text ─► load (spans) ─► JSON Schema check ─► spec types (serde)
//!      ─► check declarations ─► build kinds ─► check data flow ─► fingerprint ─► lower ─► Plan
//! ```
//!
//! * [`load`] turns YAML into a JSON value and a span for every node (read when a diagnostic
//!   first asks); it is the only module that touches the YAML crate.
//! * [`schema`] generates the JSON Schema from the spec types and the registered kinds, and
//!   checks the document against it.
//! * `spec` makes the typed spec: the schema check and serde, each node as soon as the loader
//!   has read it (so a file's nodes are never all held as JSON).
//! * [`check`] holds one small function per semantic rule; all run, so every problem is reported.
//!   They run in two groups: [`check::declarations`] before the builds, [`check::data_flow`] after.
//! * [`build`] builds every node through its kind, compiling its templates (which reveals what
//!   it reads) and loading the workflow files it includes.
//! * [`fingerprint`] defines the plan's identity over the files read ([`Compilation::files`]).
//! * [`lower`] turns names into indices, parses durations and applies the defaults of the
//!   fields every node has, and builds the [`Plan`].
//! * [`graph`] renders a plan as Mermaid or Graphviz; [`render`] renders diagnostics.
//!
//! The compiler never uses tokio and never runs a node, and it never panics: a panic inside a
//! third-party parser (YAML, JSON Schema, templates), or anywhere else while compiling, is an
//! `internal` diagnostic (see `guard`).

pub mod build;
pub mod check;
pub mod diagnostic;
mod file;
pub mod fingerprint;
pub mod graph;
mod guard;
mod include;
pub mod load;
pub mod lower;
pub mod render;
pub mod schema;
mod spec;

use std::sync::Arc;

use braid_core::{Plan, Registry};

pub use diagnostic::{Code, Diagnostic, Label, Pos, Severity, Span};
pub use file::read_source;
pub use fingerprint::SourceFile;
pub use load::{Limits, SpanMap};
pub use schema::{SchemaValidator, workflow_schema};

/// A workflow's source text and the name it is reported under (usually its path).
#[derive(Debug, Clone)]
pub struct Source {
    /// The name used in diagnostics, such as `workflows/mode1.yaml`.
    pub name: String,
    /// The text.
    pub text: Arc<str>,
}

impl Source {
    /// A source from a name and text.
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Options for [`Compiler`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// Bounds on the YAML the loader accepts.
    pub limits: Limits,
}

/// The outcome of compiling one source: a plan when there is no error, and every diagnostic
/// (warnings may come with a plan).
#[derive(Debug)]
pub struct Compilation {
    /// The plan, when the workflow has no error.
    pub plan: Option<Plan>,
    /// Every problem found, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// Every file read: the source compiled first, then each workflow file its nodes include
    /// (directly or not), by [`key`](SourceFile::key). What a service watches; the plan's
    /// [`fingerprint`](Plan::fingerprint) is the [`fingerprint`](fingerprint::fingerprint) of
    /// this list. An included file that could not be read is not in it.
    pub files: Vec<SourceFile>,
}

impl Compilation {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Compiles workflows against one registry. Build it once; it caches the compiled schema.
#[derive(Debug)]
pub struct Compiler {
    registry: Registry,
    validator: SchemaValidator,
    options: CompileOptions,
}

impl Compiler {
    /// A compiler for the kinds and reducers in `registry`.
    pub fn new(registry: Registry, options: CompileOptions) -> Self {
        let validator = SchemaValidator::new(&registry);
        Compiler {
            registry,
            validator,
            options,
        }
    }

    /// The registry workflows are compiled against.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The JSON Schema documents are checked against.
    pub fn schema(&self) -> &serde_json::Value {
        self.validator.schema()
    }

    /// Compiles one source. Never panics, whatever the input: a panic while compiling (a bug in
    /// Braid, a library it uses, or a registered kind's `build`) comes back as an `internal`
    /// diagnostic.
    pub fn compile(&self, source: &Source) -> Compilation {
        let chain = std::path::Path::new(&source.name)
            .canonicalize()
            .into_iter()
            .collect();
        let cache = include::Cache::default();
        self.guarded(source, || {
            self.compile_in(source, chain, &cache, include::Files::Disk)
        })
    }

    /// Compiles a workflow from a recorded set of files instead of the disk: `files` holds the
    /// root file under the key `""` and every file it includes under its
    /// [`key`](SourceFile::key), as [`Compilation::files`] listed them (what a durable store
    /// keeps). `name` is the name diagnostics use for the root. The plan's fingerprint is the one
    /// the same files on disk give. Never panics.
    pub fn compile_recorded<'a>(
        &self,
        name: &str,
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Compilation {
        let files: std::collections::BTreeMap<String, Arc<str>> = files
            .into_iter()
            .map(|(k, t)| (k.to_owned(), Arc::from(t)))
            .collect();
        let root = Source::new(
            name,
            files.get("").cloned().unwrap_or_else(|| Arc::from("")),
        );
        let cache = include::Cache::default();
        let chain = vec![std::path::PathBuf::new()];
        self.guarded(&root, || {
            self.compile_in(
                &root,
                chain,
                &cache,
                include::Files::Recorded {
                    files: &files,
                    at: "",
                },
            )
        })
    }

    /// Runs a compilation, turning a panic into an `internal` diagnostic.
    fn guarded(&self, source: &Source, compile: impl FnOnce() -> Compilation) -> Compilation {
        const START: Pos = Pos {
            line: 1,
            column: 1,
            offset: 0,
        };
        guard::catch(compile).unwrap_or_else(|panic| {
            Compilation {
                plan: None,
                // Where it happened is not known: the file's start.
                diagnostics: vec![guard::internal(
                    format_args!("the compiler panicked on this file: {panic}"),
                    Span {
                        start: START,
                        end: START,
                    },
                )],
                // What is known to have been read: the file itself (a service still watches it).
                files: vec![include::root_file(source)],
            }
        })
    }

    /// Compiles one source as part of a chain of files (for cycle detection across files).
    fn compile_in(
        &self,
        source: &Source,
        chain: Vec<std::path::PathBuf>,
        cache: &include::Cache,
        files: include::Files<'_>,
    ) -> Compilation {
        let mut diagnostics = Vec::new();
        let root_only = || vec![include::root_file(source)];
        let mut nodes = spec::Nodes::new(&self.validator);
        let loaded = load::load_with(source.text.clone(), self.options.limits, Some(&mut nodes));
        let (doc, warnings) = match loaded {
            Ok(ok) => ok,
            Err(d) => {
                return Compilation {
                    plan: None,
                    diagnostics: d,
                    files: root_only(),
                };
            }
        };
        diagnostics.extend(warnings);
        let load::Document { value, spans } = doc;
        let Some(spec) = spec::workflow(value, nodes, &spans, &mut diagnostics) else {
            return finish(None, root_only(), diagnostics);
        };
        let dir = std::path::Path::new(&source.name)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let loader = include::FileLoader {
            compiler: self,
            dir,
            files,
            chain,
            cache,
            read: Default::default(),
        };
        let model = check::Model::new(&spec, &spans, &self.registry);
        let (parts, files) = middle(&model, &loader, source, &mut diagnostics);
        drop(model);
        // The parts hold all the plan needs: the spec goes before the plan is ordered, so the
        // two never take memory at once (issue 16, item 19).
        drop(spec);
        let plan = parts.and_then(|p| lower::plan(p, &spans, &mut diagnostics));
        finish(plan, files, diagnostics)
    }
}

/// The compiler's middle, in its steps: check what the file declares, build every node through its
/// kind (which reveals what templates read and loads included files), check the data flow, then
/// lower to the parts of a plan identified by the fingerprint of every file read. Returns the
/// parts (`None` when `out` holds an error) and the files read; the caller makes the plan.
fn middle(
    model: &check::Model<'_>,
    loader: &include::FileLoader<'_>,
    root: &Source,
    out: &mut Vec<Diagnostic>,
) -> (Option<braid_core::PlanParts>, Vec<SourceFile>) {
    if !check::size(model, out) {
        return (None, loader.files(root));
    }
    let declared = check::declarations(model, out);
    let built = build::nodes(model, loader, out);
    let node_reads = check::data_flow(model, &declared, &built.reads, &built.writes, out);
    let files = loader.files(root);
    let fingerprint = fingerprint::fingerprint(&files);
    let parts = lower::parts(model, declared, built, &node_reads, fingerprint, out);
    (parts, files)
}

fn finish(
    plan: Option<Plan>,
    files: Vec<SourceFile>,
    mut diagnostics: Vec<Diagnostic>,
) -> Compilation {
    diagnostics.sort_by_key(|d| (d.span().start, d.code));
    Compilation {
        plan,
        diagnostics,
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every valid workflow of the repository, by path.
    fn valid_workflows() -> Vec<std::path::PathBuf> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in ["workflows", "tests/fixtures/valid"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("a directory") {
                let path = entry.expect("an entry").path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    files.push(path);
                }
            }
        }
        files
    }

    #[test]
    fn a_workflow_without_diagnostics_never_reads_its_spans() {
        // Every lookup is for a diagnostic; the spans of a valid file would be as large as its
        // typed spec (`load`'s module doc).
        let compiler = Compiler::new(braid_nodes::builtin_registry(), CompileOptions::default());
        let files = valid_workflows();
        assert!(files.len() > 10, "{files:?}");
        for path in files {
            let text = std::fs::read_to_string(&path).expect("a readable file");
            let before = load::tests::SPAN_READS.with(std::cell::Cell::get);
            let c = compiler.compile(&Source::new(path.display().to_string(), text));
            let reads = load::tests::SPAN_READS.with(std::cell::Cell::get) - before;
            if c.diagnostics.is_empty() {
                assert_eq!(reads, 0, "{} read its spans", path.display());
            }
        }
    }
}
