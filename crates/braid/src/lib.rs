//! Braid: declarative DAG workflows in YAML, run by a ready-set scheduler.
//!
//! A workflow file declares typed inputs, state keys with reducers, and nodes with their `needs`.
//! An [`Engine`] compiles it (JSON Schema plus semantic checks, every problem reported with
//! file:line:col) into a [`Workflow`], which runs any number of times, concurrently, without
//! re-parsing. Every node whose needs are done starts at once; reducers fold the partial updates
//! nodes return, in a canonical order, so the result does not depend on timing.
//!
//! # Example: load a workflow, register a handler, run it
//!
//! ```
//! use braid::{Engine, NodeContext, NodeError, RunOptions, RunStatus};
//! use serde_json::json;
//!
//! let yaml = r#"
//! version: 1
//! name: greet
//! inputs:
//!   who: { type: string, default: world }
//! state:
//!   greeting: { reducer: replace }
//!   shout:    { reducer: replace }
//! nodes:
//!   greet:
//!     kind: transform
//!     writes: [greeting]
//!     with: { output: { greeting: "hello, {{ inputs.who }}" } }
//!   loud:
//!     kind: uppercase          # a handler registered below
//!     needs: [greet]
//!     reads: [greeting]
//!     writes: [shout]
//! "#;
//!
//! let engine = Engine::builder()
//!     .handler("uppercase", |ctx: NodeContext| async move {
//!         let text = ctx.get("greeting").and_then(|v| v.as_str()).ok_or_else(|| NodeError::new("no greeting"))?;
//!         Ok(json!({ "shout": text.to_uppercase() }))
//!     })
//!     .build();
//! let workflow = engine.load_str("greet.yaml", yaml)?;
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
//! let result = rt.block_on(workflow.run(json!({ "who": "braid" }), RunOptions::default()))?;
//! assert_eq!(result.status, RunStatus::Succeeded);
//! assert_eq!(result.state["shout"], "HELLO, BRAID");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "store")]
pub mod durable;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

pub use braid_compiler::{
    Code, Compilation, CompileOptions, Compiler, Diagnostic, Limits, Severity, Source, SourceFile,
    Span, graph, render,
};
pub use braid_core::plan::{InputDecl, InputType};
pub use braid_core::{
    Answer, BuildContext, BuildError, ExecutionMode, FailureKind, Fingerprint, Node, NodeContext,
    NodeError, NodeFuture, NodeKind, Plan, Reducer, ReducerError, Registry, WaitNode,
};
pub use braid_runtime::metrics;
pub use braid_runtime::run as run_plan;
pub use braid_runtime::{
    CancelToken, Ends, Event, EventHook, EventReceiver, EventSender, InputError, NodeReport,
    NodeSettled, NodeStatus, Observer, PartialRun, PartialRunError, PriorNode, Recorded, RunError,
    RunOptions, RunReport, RunResult, RunStatus,
};
pub use braid_spec::parse_duration;
/// The JSON Schema library [`NodeKind::params_schema`] speaks, for kinds written against this
/// crate alone.
pub use schemars;

/// What can go wrong loading or running a workflow through the facade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read `{path}`")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The workflow has errors.
    #[error("{}", .0)]
    Invalid(InvalidWorkflow),
    /// The run's inputs do not fit the workflow.
    #[error("invalid inputs: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Inputs(Vec<InputError>),
    /// The nodes given as settled cannot continue a run of this workflow.
    #[error("cannot continue the run: {0}")]
    Partial(#[from] PartialRunError),
    /// A durable run could not be started, continued or read.
    #[cfg(feature = "store")]
    #[error(transparent)]
    Durable(#[from] durable::DurableError),
}

/// A workflow that did not compile: its source and every diagnostic.
#[derive(Debug)]
pub struct InvalidWorkflow {
    /// The source.
    pub source: Source,
    /// Every problem, errors and warnings, by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for InvalidWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&render::human(
            &self.source.name,
            &self.source.text,
            &self.diagnostics,
            false,
        ))
    }
}

/// A node kind backed by one handler registered from Rust.
struct HandlerKind {
    name: String,
    handler: Arc<dyn Node>,
}

impl NodeKind for HandlerKind {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "A handler registered by the embedding program."
    }
    /// Closures take no `with:` parameters the schema could describe: any object is accepted.
    fn params_schema(&self, _: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        None
    }
    fn build(
        &self,
        _: Option<&Value>,
        _: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        Ok(self.handler.clone())
    }
}

/// Builds an [`Engine`]: the built-in kinds and reducers plus your own.
#[derive(Debug)]
pub struct EngineBuilder {
    registry: Registry,
    options: CompileOptions,
}

impl EngineBuilder {
    /// Registers an async function as node kind `kind`. It receives the node's
    /// [`NodeContext`] and returns its update, a JSON object whose keys are among the node's
    /// `writes`. List the state keys it reads in the node's `reads:` ([`NodeContext::get`] sees
    /// only those). It is polled by its run's task: keep long computations off it
    /// (`spawn_blocking`), as [`Node`]'s "Where it runs" says.
    #[must_use]
    pub fn handler<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(NodeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, NodeError>> + Send + 'static,
    {
        self.registry.register_kind(Arc::new(HandlerKind {
            name: kind.to_owned(),
            handler: Arc::new(handler),
        }));
        self
    }

    /// Registers a node kind with its own parameters (see [`NodeKind`]).
    #[must_use]
    pub fn node_kind(mut self, kind: Arc<dyn NodeKind>) -> Self {
        self.registry.register_kind(kind);
        self
    }

    /// Registers a custom reducer.
    #[must_use]
    pub fn reducer(mut self, reducer: Arc<dyn Reducer>) -> Self {
        self.registry.register_reducer(reducer);
        self
    }

    /// Sets compile options (YAML limits).
    #[must_use]
    pub fn options(mut self, options: CompileOptions) -> Self {
        self.options = options;
        self
    }

    /// Builds the engine (compiles the JSON Schema once).
    pub fn build(self) -> Engine {
        Engine {
            compiler: Arc::new(Compiler::new(self.registry, self.options)),
        }
    }
}

/// Compiles workflow files against a set of node kinds and reducers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    compiler: Arc<Compiler>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::builder().build()
    }
}

impl Engine {
    /// An engine with the built-in kinds and reducers only.
    pub fn new() -> Self {
        Engine::default()
    }

    /// A builder starting from the built-in kinds and reducers.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            registry: braid_nodes::builtin_registry(),
            options: CompileOptions::default(),
        }
    }

    /// The JSON Schema workflow files are checked against (it includes registered kinds).
    pub fn schema(&self) -> &Value {
        self.compiler.schema()
    }

    /// The underlying compiler.
    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// Compiles a source, returning every diagnostic whether or not it compiled.
    pub fn compile(&self, source: &Source) -> Compilation {
        self.compiler.compile(source)
    }

    /// Compiles workflow text; `name` is used in diagnostics.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] with every diagnostic when the workflow has an error.
    pub fn load_str(&self, name: &str, text: &str) -> Result<Workflow, Error> {
        self.load_source(Source::new(name, text))
    }

    /// Reads and compiles a workflow file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read; [`Error::Invalid`] when it has an error.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Workflow, Error> {
        let source = self.read_file(path)?;
        self.load_source(source)
    }

    /// Reads a workflow file: only a regular file (not a directory, FIFO or device), of at most
    /// the compiler's size limit.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read, is not a regular file, or is too large.
    pub fn read_file(&self, path: impl AsRef<Path>) -> Result<Source, Error> {
        let path = path.as_ref();
        self.compiler.read_file(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Compiles a workflow from a recorded set of files (the root under the key `""`, each
    /// included file under its key), as a durable store keeps them: see
    /// [`Compiler::compile_recorded`]. `name` is used in diagnostics.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] with every diagnostic when the workflow has an error.
    pub fn load_recorded<'a>(
        &self,
        name: &str,
        files: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Result<Workflow, Error> {
        let c = self.compiler.compile_recorded(name, files.clone());
        let root = files
            .into_iter()
            .find(|(k, _)| k.is_empty())
            .map_or("", |(_, t)| t);
        self.compiled(Source::new(name, root), c)
    }

    fn load_source(&self, source: Source) -> Result<Workflow, Error> {
        let c = self.compiler.compile(&source);
        self.compiled(source, c)
    }

    fn compiled(&self, source: Source, c: Compilation) -> Result<Workflow, Error> {
        match c.plan {
            Some(plan) => {
                // The inputs of a run given none, resolved once: such runs share them.
                let defaults = braid_runtime::resolve_inputs(&plan, serde_json::Map::new())
                    .ok()
                    .map(Arc::new);
                Ok(Workflow(Arc::new(Compiled {
                    plan: Arc::new(plan),
                    warnings: c.diagnostics,
                    source,
                    files: c.files,
                    defaults,
                })))
            }
            None => Err(Error::Invalid(InvalidWorkflow {
                source,
                diagnostics: c.diagnostics,
            })),
        }
    }
}

/// A compiled workflow: run it as often as you like, concurrently. Cheap to clone (one shared
/// pointer).
#[derive(Debug, Clone)]
pub struct Workflow(Arc<Compiled>);

#[derive(Debug)]
struct Compiled {
    plan: Arc<Plan>,
    warnings: Vec<Diagnostic>,
    source: Source,
    /// Every file read: the source, then the files it includes.
    files: Vec<SourceFile>,
    /// The resolved inputs of a run given none (`None`: some input is required).
    defaults: Option<Arc<Value>>,
}

impl Workflow {
    /// The compiled plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.0.plan
    }

    /// Warnings the compiler found (the workflow has no errors).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.0.warnings
    }

    /// The source it was compiled from (for rendering its warnings).
    pub fn source(&self) -> &Source {
        &self.0.source
    }

    /// The workflow's identity: a hash of its source and of every file it includes, the same on
    /// every machine for the same files ([`Plan::fingerprint`]; what it covers is defined in
    /// `braid_compiler::fingerprint`).
    pub fn fingerprint(&self) -> &Fingerprint {
        self.0.plan.fingerprint()
    }

    /// Every file it was compiled from: the source first, then each workflow file its nodes
    /// include, directly or not ([`Compilation::files`]). The files to watch for a reload.
    pub fn files(&self) -> &[SourceFile] {
        &self.0.files
    }

    /// [`inputs`](Workflow::inputs), shared: a run given no inputs reuses the defaults resolved
    /// when the workflow was compiled.
    fn resolve(&self, inputs: Value) -> Result<Arc<Value>, Error> {
        let none_given = match &inputs {
            Value::Null => true,
            Value::Object(m) => m.is_empty(),
            _ => false,
        };
        match &self.0.defaults {
            Some(defaults) if none_given => Ok(defaults.clone()),
            _ => self.inputs(inputs).map(Arc::new),
        }
    }

    /// Checks `inputs` (a JSON object) against the workflow's inputs and fills in defaults.
    ///
    /// # Errors
    ///
    /// [`Error::Inputs`] listing every missing, mistyped or unknown input.
    pub fn inputs(&self, inputs: Value) -> Result<Value, Error> {
        let map = match inputs {
            Value::Object(m) => m,
            Value::Null => Default::default(),
            other => {
                return Err(Error::Inputs(vec![InputError::WrongType {
                    name: "(inputs)".to_owned(),
                    ty: "object",
                    got: other.to_string(),
                }]));
            }
        };
        braid_runtime::resolve_inputs(&self.0.plan, map).map_err(Error::Inputs)
    }

    /// Runs the workflow once.
    ///
    /// # Errors
    ///
    /// [`Error::Inputs`] when the inputs do not fit; nothing runs then. A node failure is not an
    /// error here: it is in the [`RunResult`]'s status and report.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future aborts the run and every node task in it.
    pub async fn run(&self, inputs: Value, options: RunOptions) -> Result<RunResult, Error> {
        let inputs = self.resolve(inputs)?;
        Ok(braid_runtime::run(self.0.plan.clone(), inputs, options).await)
    }

    /// Continues a run of this workflow from partial state: the nodes in `settled` (as an
    /// [`Observer`] saw them end in an earlier run) keep their status and writes, which are folded
    /// as if they had just run; they never run again; the rest runs. With the same inputs and
    /// seed, the final state is the one an uninterrupted run ends with, byte for byte.
    ///
    /// # Errors
    ///
    /// [`Error::Inputs`] when the inputs do not fit, [`Error::Partial`] when `settled` cannot
    /// continue a run of this workflow (an unknown node, a node whose need is not settled,
    /// writes it may not make); nothing runs then.
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Workflow::run).
    pub async fn run_from(
        &self,
        settled: Vec<PriorNode>,
        inputs: Value,
        options: RunOptions,
    ) -> Result<RunResult, Error> {
        let inputs = self.resolve(inputs)?;
        let partial = PartialRun::new(self.0.plan.clone(), settled)?;
        Ok(braid_runtime::run_from(partial, inputs, options).await)
    }

    /// Runs the workflow once, streaming its events: returns the run's future and the receiver.
    ///
    /// # Errors
    ///
    /// As [`run`](Workflow::run), before anything starts.
    pub fn run_with_events(
        &self,
        inputs: Value,
        mut options: RunOptions,
    ) -> Result<
        (
            impl Future<Output = RunResult> + Send + use<>,
            EventReceiver,
        ),
        Error,
    > {
        let inputs = self.resolve(inputs)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        options.events = Some(tx);
        Ok((braid_runtime::run(self.0.plan.clone(), inputs, options), rx))
    }
}
