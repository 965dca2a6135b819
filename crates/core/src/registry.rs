//! The [`Registry`]: the node kinds and reducers a workflow may name.
//!
//! The compiler resolves every `kind:` and `reducer:` in a file against a registry, builds each
//! node through its [`NodeKind`] (which parses and checks the node's `with:` block and compiles its
//! templates through a [`BuildContext`]), and composes the JSON Schema from each kind's parameter
//! schema. Built-in kinds live in `braid-nodes`; an embedding program adds its own handlers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use braid_spec::DurationSpec;
use schemars::{Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::node::Node;
use crate::reducer::{self, Reducer};
use crate::template::{self, Expr, TemplateEnv, TemplateError, TemplateErrorKind, Templated};

/// A kind of node: parses its `with:` parameters and builds the [`Node`] that runs.
pub trait NodeKind: Send + Sync + 'static {
    /// The name used in the file's `kind:` field.
    fn name(&self) -> &str;

    /// One line on what the kind does (shown in the schema's descriptions).
    fn description(&self) -> &str {
        ""
    }

    /// The JSON Schema of the kind's `with:` block, or `None` to accept any object.
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema>;

    /// Builds the node from its `with:` block (`None` when the block is absent).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when the parameters are invalid. Template errors are recorded in the
    /// context instead, so that all of them are reported at once.
    fn build(
        &self,
        params: Option<&Value>,
        cx: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError>;
}

/// What part of a node's definition a [`BuildError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// The `with:` parameters do not fit the kind.
    Params,
    /// A template does not compile.
    Template,
    /// The template engine panicked compiling a template or expression: a bug in the engine or
    /// in Braid, not in the file (see [`TemplateErrorKind::EnginePanic`]).
    ///
    /// [`TemplateErrorKind::EnginePanic`]: crate::template::TemplateErrorKind::EnginePanic
    EnginePanic,
}

/// A problem with a node's `with:` block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// Where: for errors returned by [`NodeKind::build`], a JSON pointer relative to the node's
    /// `with:` block (`""` is the block itself); for errors recorded by a [`BuildContext`], absolute.
    pub pointer: String,
    /// What is wrong, lowercase.
    pub message: String,
    /// What part of the definition is wrong.
    pub kind: BuildErrorKind,
    /// For a template or expression that does not compile: the bytes of the string at
    /// `pointer` the engine blames, when it knows.
    pub range: Option<std::ops::Range<usize>>,
}

impl BuildError {
    /// A parameter error at a pointer relative to `with:`.
    pub fn params(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        BuildError {
            pointer: pointer.into(),
            message: message.into(),
            kind: BuildErrorKind::Params,
            range: None,
        }
    }
}

/// Deserializes a kind's parameters from its `with:` block (an absent block is `{}`).
///
/// # Errors
///
/// A [`BuildError`] carrying serde's message, at the block's root.
pub fn parse_params<P: DeserializeOwned>(params: Option<&Value>) -> Result<P, BuildError> {
    let empty = Value::Object(Default::default());
    P::deserialize(params.unwrap_or(&empty)).map_err(|e| BuildError::params("", e.to_string()))
}

/// Parses a duration written in a workflow file (`800ms`, `1m30s`), at `pointer` (relative to the
/// kind's `with:` block): the one place where durations become [`Duration`]s, used by every kind
/// with a duration parameter and by the compiler for the fields every node has. The grammar is
/// [`braid_spec::parse_duration`]'s, which the schema's pattern is tested against.
///
/// # Errors
///
/// A [`BuildError`] at `pointer` saying what is wrong with the text: `invalid duration `…`: why`.
pub fn duration_param(pointer: &str, d: &DurationSpec) -> Result<Duration, BuildError> {
    d.parse()
        .map_err(|e| BuildError::params(pointer, format!("invalid duration `{}`: {e}", d.0)))
}

/// A variable a node's template or expression reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRead {
    /// Where the template is, as an absolute JSON pointer (`/nodes/llm/with/output/response`).
    pub pointer: String,
    /// The dotted path read, such as `state.rag_results` or `inputs.query`.
    pub path: String,
}

/// Where a [`KindWrite`]'s key is named: as a mapping key (`output: { answer: … }`) or as a
/// value (`into: summaries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedAs {
    /// The key is the mapping key at the pointer.
    Key,
    /// The key is the string value at the pointer.
    Value,
}

/// A state key a node's kind will write, declared while it builds
/// ([`BuildContext::will_write`]), so the compiler can check it against the node's `writes`
/// before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindWrite {
    /// Where the key is named, as an absolute JSON pointer (`/nodes/each/with/into`).
    pub pointer: String,
    /// Whether the key is the mapping key or the value at `pointer`.
    pub named_as: NamedAs,
    /// The state key.
    pub key: String,
}

/// Loads another workflow file for a node that runs it (the `workflow` and `map` kinds). The
/// compiler provides one: it resolves paths against the referring file, caches plans, and reports
/// cycles across files.
pub trait WorkflowLoader {
    /// Compiles the workflow at `path` (relative to the file being compiled).
    ///
    /// # Errors
    ///
    /// A message saying why it cannot be used: unreadable, invalid (with its first diagnostics),
    /// or part of a cycle of files (printed as `a.yaml -> b.yaml -> a.yaml`).
    fn load(&self, path: &str) -> Result<Arc<crate::Plan>, String>;
}

/// Handed to [`NodeKind::build`]: compiles templates and records what they read.
///
/// Pointers given to its methods are relative to its base (the node's `with:` block); the reads
/// and errors it records carry absolute pointers (base + relative).
pub struct BuildContext<'a> {
    templates: &'a mut TemplateEnv,
    base: String,
    reads: Vec<TemplateRead>,
    errors: Vec<BuildError>,
    registry: Option<&'a Registry>,
    loader: Option<&'a dyn WorkflowLoader>,
    extra_roots: Vec<&'static str>,
    /// Reads of the extra roots (absolute pointers), for the kind that provides them to check
    /// ([`root_reads`](Self::root_reads)).
    root_reads: Vec<TemplateRead>,
    /// The keys the kind of the node being built said it will write.
    writes: Vec<KindWrite>,
}

impl<'a> BuildContext<'a> {
    /// A context that adds templates to `templates`; `base` is the JSON pointer of the block
    /// being built, such as `/nodes/llm/with`.
    pub fn new(templates: &'a mut TemplateEnv, base: impl Into<String>) -> Self {
        BuildContext {
            templates,
            base: base.into(),
            reads: Vec::new(),
            errors: Vec::new(),
            registry: None,
            loader: None,
            extra_roots: Vec::new(),
            root_reads: Vec::new(),
            writes: Vec::new(),
        }
    }

    /// Gives the context the registry, so kinds can build inner nodes ([`build_node`](Self::build_node)).
    #[must_use]
    pub fn with_registry(mut self, registry: &'a Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Gives the context a loader for other workflow files ([`load_workflow`](Self::load_workflow)).
    #[must_use]
    pub fn with_loader(mut self, loader: &'a dyn WorkflowLoader) -> Self {
        self.loader = Some(loader);
        self
    }

    /// Compiles `f`'s templates with extra variables available besides `inputs` and `state` (such
    /// as `item` for a map's inner node, or `secrets` for an HTTP node). Reads of these roots are
    /// not recorded: the kind provides their values at run time (see
    /// [`NodeContext::with_vars`](crate::NodeContext::with_vars)).
    pub fn with_roots<T>(&mut self, roots: &[&'static str], f: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.extra_roots.len();
        self.extra_roots.extend_from_slice(roots);
        let out = f(self);
        self.extra_roots.truncate(before);
        out
    }

    /// What the templates of this block (not an enclosing one) read of an extra root given to
    /// [`with_roots`](Self::with_roots), such as `secrets.token`: the pointer (relative to this
    /// context's base) and the dotted path. A kind that provides the root checks the names here.
    pub fn root_reads<'s>(&'s self, root: &'s str) -> impl Iterator<Item = TemplateRead> + 's {
        self.root_reads.iter().filter_map(move |r| {
            let relative = r.pointer.strip_prefix(&self.base)?;
            let first = r.path.split('.').next()?;
            (first == root).then(|| TemplateRead {
                pointer: relative.to_owned(),
                path: r.path.clone(),
            })
        })
    }

    /// Declares a state key the node will write (`map`'s `into`, an `llm`'s `output` keys, ...),
    /// named at `pointer` (relative to this context's base) as a mapping key or a value. The
    /// compiler checks every declared key against the node's `writes`, so a key missing there is
    /// reported by `braid validate`, not after the work is done. A kind whose keys are known only
    /// at run time (a program's update) declares nothing.
    pub fn will_write(&mut self, pointer: &str, named_as: NamedAs, key: &str) {
        self.writes.push(KindWrite {
            pointer: format!("{}{pointer}", self.base),
            named_as,
            key: key.to_owned(),
        });
    }

    /// The keys declared with [`will_write`](Self::will_write) so far, by this node's kind (not
    /// by inner nodes: what an inner node writes is its item's result, not this node's update).
    pub fn declared_writes(&self) -> &[KindWrite] {
        &self.writes
    }

    /// Builds an inner node of kind `kind` from `params`, located at `pointer` (relative to this
    /// context's base), sharing this context's templates, reads and errors.
    ///
    /// # Errors
    ///
    /// When the kind is unknown, the context has no registry, or the kind rejects its parameters;
    /// the error's pointer is relative to this context's base.
    pub fn build_node(
        &mut self,
        pointer: &str,
        kind: &str,
        params: Option<&Value>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let Some(registry) = self.registry else {
            return Err(BuildError::params(
                pointer,
                "inner nodes cannot be built here",
            ));
        };
        let Some(k) = registry.kind(kind) else {
            let names: Vec<&str> = registry.kind_names().collect();
            return Err(BuildError::params(
                format!("{pointer}/kind"),
                format!("unknown kind `{kind}`; the kinds are {}", names.join(", ")),
            ));
        };
        let k = k.clone();
        let outer = std::mem::take(&mut self.base);
        self.base = format!("{outer}{pointer}/with");
        let writes = self.writes.len();
        let built = k.build(params, self);
        // The inner node's writes make its items' results, which the outer kind shapes.
        self.writes.truncate(writes);
        self.base = outer;
        built.map_err(|e| BuildError {
            pointer: format!("{pointer}/with{}", e.pointer),
            ..e
        })
    }

    /// Compiles another workflow file, for a node that runs it.
    ///
    /// # Errors
    ///
    /// When there is no loader, or the file cannot be used (unreadable, invalid, a cycle).
    pub fn load_workflow(
        &mut self,
        pointer: &str,
        path: &str,
    ) -> Result<Arc<crate::Plan>, BuildError> {
        let Some(loader) = self.loader else {
            return Err(BuildError::params(
                pointer,
                "workflow files cannot be loaded here",
            ));
        };
        loader
            .load(path)
            .map_err(|m| BuildError::params(pointer, m))
    }

    /// Compiles a JSON value whose strings may be templates. `pointer` is where the value is,
    /// relative to `with:`. Errors are recorded; the failing part becomes a literal.
    pub fn templated(&mut self, pointer: &str, value: &Value) -> Templated {
        match value {
            Value::String(s) if template::is_template(s) => {
                if let Some(expr) = template::single_expression(s) {
                    match Expr::compile(expr) {
                        Ok(e) => {
                            self.record_reads(pointer, e.variables());
                            return Templated::Expr(Arc::new(e));
                        }
                        Err(e) => {
                            // The expression is a slice of `s`: blame the same bytes of `s`.
                            let at = expr.as_ptr() as usize - s.as_ptr() as usize;
                            let range = e.range.clone().map(|r| r.start + at..r.end + at);
                            self.error(pointer, TemplateError { range, ..e });
                            return Templated::Literal(value.clone());
                        }
                    }
                }
                match self.templates.add(s) {
                    Ok(id) => {
                        let vars = self.templates.variables(id);
                        self.record_reads(pointer, vars);
                        Templated::Template(id)
                    }
                    Err(e) => {
                        self.error(pointer, e);
                        Templated::Literal(value.clone())
                    }
                }
            }
            Value::Array(items) => {
                let parts: Vec<Templated> = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.templated(&format!("{pointer}/{i}"), v))
                    .collect();
                if parts.iter().all(Templated::is_literal) {
                    Templated::Literal(value.clone())
                } else {
                    Templated::Array(parts)
                }
            }
            Value::Object(map) => {
                let parts: Vec<(String, Templated)> = map
                    .iter()
                    .map(|(k, v)| {
                        let p = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                        (k.clone(), self.templated(&p, v))
                    })
                    .collect();
                if parts.iter().all(|(_, t)| t.is_literal()) {
                    Templated::Literal(value.clone())
                } else {
                    Templated::Object(parts)
                }
            }
            _ => Templated::Literal(value.clone()),
        }
    }

    /// Compiles an expression (no `{{ }}` around it). Errors are recorded.
    pub fn expression(&mut self, pointer: &str, source: &str) -> Option<Arc<Expr>> {
        match Expr::compile(source) {
            Ok(e) => {
                self.record_reads(pointer, e.variables());
                Some(Arc::new(e))
            }
            Err(e) => {
                self.error(pointer, e);
                None
            }
        }
    }

    fn record_reads(&mut self, pointer: &str, vars: impl IntoIterator<Item = String>) {
        for path in vars {
            let root = path.split('.').next().unwrap_or_default();
            if self.extra_roots.contains(&root) {
                self.root_reads.push(TemplateRead {
                    pointer: format!("{}{pointer}", self.base),
                    path,
                });
                continue;
            }
            self.reads.push(TemplateRead {
                pointer: format!("{}{pointer}", self.base),
                path,
            });
        }
    }

    fn error(&mut self, pointer: &str, e: TemplateError) {
        self.errors.push(BuildError {
            pointer: format!("{}{pointer}", self.base),
            message: e.message,
            kind: match e.kind {
                TemplateErrorKind::Engine => BuildErrorKind::Template,
                TemplateErrorKind::EnginePanic => BuildErrorKind::EnginePanic,
            },
            range: e.range,
        });
    }

    /// What the templates compiled so far read, and the errors recorded, in order.
    pub fn finish(self) -> (Vec<TemplateRead>, Vec<BuildError>) {
        (self.reads, self.errors)
    }
}

/// The node kinds and reducers a workflow may name. Cloning is cheap (shared entries).
#[derive(Clone)]
pub struct Registry {
    kinds: BTreeMap<String, Arc<dyn NodeKind>>,
    reducers: BTreeMap<String, Arc<dyn Reducer>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .field("reducers", &self.reducers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry with the built-in reducers and no node kinds.
    pub fn new() -> Self {
        let reducers = reducer::builtins()
            .into_iter()
            .map(|r| (r.name().to_owned(), r))
            .collect();
        Registry {
            kinds: BTreeMap::new(),
            reducers,
        }
    }

    /// Adds a node kind, replacing any kind of the same name.
    pub fn register_kind(&mut self, kind: Arc<dyn NodeKind>) -> &mut Self {
        self.kinds.insert(kind.name().to_owned(), kind);
        self
    }

    /// Adds a reducer, replacing any reducer of the same name.
    pub fn register_reducer(&mut self, reducer: Arc<dyn Reducer>) -> &mut Self {
        self.reducers.insert(reducer.name().to_owned(), reducer);
        self
    }

    /// The kind of that name.
    pub fn kind(&self, name: &str) -> Option<&Arc<dyn NodeKind>> {
        self.kinds.get(name)
    }

    /// The reducer of that name.
    pub fn reducer(&self, name: &str) -> Option<&Arc<dyn Reducer>> {
        self.reducers.get(name)
    }

    /// All kinds, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn NodeKind>> {
        self.kinds.values()
    }

    /// All reducer names, sorted.
    pub fn reducer_names(&self) -> impl Iterator<Item = &str> {
        self.reducers.keys().map(String::as_str)
    }

    /// All kind names, sorted.
    pub fn kind_names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }
}
