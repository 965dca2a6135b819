//! The [`Node`] trait: what every node kind, built-in or registered from Rust, implements.
//!
//! A node receives a [`NodeContext`] (the run's inputs, the state its upstream nodes wrote, the
//! attempt number) and returns a future of its partial state update: a JSON object whose keys must
//! be among the node's declared `writes`. The runtime owns everything else: timeouts, retries,
//! cancellation, panics, checking the update, folding it into state.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};

pub use crate::error::{FailureKind, NodeError};
use crate::plan::RetryPolicy;
pub use crate::state::StateView;
use crate::template::{self, TemplateEnv, Templated};
use crate::wait::{Answer, WaitNode};

/// A node's partial state update: key → contribution.
pub type StateUpdate = Map<String, Value>;

/// The future a node returns: its update (a JSON object), or why it failed.
pub type NodeFuture = Pin<Box<dyn Future<Output = Result<Value, NodeError>> + Send + 'static>>;

/// What a node does. Implemented by the built-in kinds and by handlers registered from Rust.
///
/// # Where it runs
///
/// A run's nodes are polled by the run's own task, not a task each: a node that waits on I/O
/// or a timer costs no spawn and no cross-thread join. So a node must not compute for long
/// between two `.await`s (more than about a millisecond): it would hold up the other nodes of
/// its run while it does. Move such work off the run with `tokio::task::spawn_blocking` (or
/// `tokio::spawn` it, for async work that should run in parallel on another worker) and await
/// its handle.
///
/// # Cancel safety
///
/// The returned future may be dropped at any `.await` (timeout, fail-fast cancellation, run
/// deadline). Implementations must not leave shared state half-written when that happens.
pub trait Node: Send + Sync + 'static {
    /// Starts one attempt of the node.
    fn call(&self, ctx: NodeContext) -> NodeFuture;

    /// Whether the node finishes on its first poll and cheaply (no I/O, no timer, no heavy
    /// computation): the scheduler may then poll it once in place, with no boxed future and no
    /// timer. A node that says so but does not finish at once is still correct: it goes on like
    /// any node that waits, polled again once it wakes.
    fn is_instant(&self) -> bool {
        false
    }

    /// For a node that waits for a person (the `wait` kind), its contract: what it asks, the
    /// answer it takes, until when, and where the answer goes. A run that reaches such a node
    /// without an answer for it ([`NodeContext::answer`]) does not call it: it records the node
    /// as waiting, with its rendered prompt. `None` (the default): the node never waits.
    fn waits(&self) -> Option<&dyn WaitNode> {
        None
    }
}

impl<F, Fut> Node for F
where
    F: Fn(NodeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, NodeError>> + Send + 'static,
{
    fn call(&self, ctx: NodeContext) -> NodeFuture {
        Box::pin(self(ctx))
    }
}

/// What a node attempt sees: the inputs, the state its upstream nodes wrote, and where it is.
///
/// Cheap to build: everything inside is shared; the template context is made on first use.
pub struct NodeContext {
    origin: Origin,
    attempt: u32,
    seed: u64,
    state: StateView,
    /// `state` as one JSON object, made on first use by [`state`](Self::state).
    state_json: OnceLock<Arc<Value>>,
    vars: Option<Arc<Value>>,
    emitter: Option<Emitter>,
    template_ctx: OnceLock<minijinja::Value>,
    /// For an item of inner work, its index (part of its idempotency key).
    item: Option<usize>,
}

/// What the nodes of one run share: the plan and the run's inputs. The runtime makes one per run,
/// and the contexts of that run's nodes point at it, so building a context bumps one per-run count
/// instead of the counts of the plan's names and templates, which every concurrent run shares
/// (contended cache lines on a multi-thread runtime).
pub struct RunScope {
    /// The plan being run.
    pub plan: Arc<crate::Plan>,
    /// The run's resolved inputs.
    pub inputs: Arc<Value>,
    /// The run's id: the one it was started with, or one made on first use.
    pub run_id: RunId,
    /// Runs the inner work the run's nodes ask for (`map`'s items, a sub-workflow). Weak: the
    /// runtime's per-run state is the executor and owns this scope (no allocation of its own).
    pub executor: std::sync::Weak<dyn Executor>,
    /// The answers the run was given for its nodes that wait (by node; empty, and allocating
    /// nothing, for a run given none).
    pub answers: Box<[(crate::NodeId, Answer)]>,
}

impl RunScope {
    /// The answer the run was given for node `id`, if any (the first, if given twice).
    pub fn answer(&self, id: crate::NodeId) -> Option<&Answer> {
        self.answers.iter().find(|(n, _)| *n == id).map(|(_, a)| a)
    }
}

impl std::fmt::Debug for RunScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunScope")
            .field("plan", &self.plan.name())
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

/// A run's id. A durable run is given one by its store, and keeps it across resumes, so the
/// idempotency keys derived from it stay the same; an in-memory run makes one only if a node asks
/// for it (nothing is allocated otherwise).
#[derive(Debug, Default)]
pub struct RunId(OnceLock<Arc<str>>);

impl RunId {
    /// This id.
    pub fn given(id: Arc<str>) -> Self {
        RunId(OnceLock::from(id))
    }

    /// The id, made now if the run was given none: 32 hex digits, unique to this process and
    /// moment (not a secret).
    pub fn get(&self) -> &Arc<str> {
        self.0.get_or_init(fresh_run_id)
    }

    /// The id, if it was given or has been made.
    pub fn peek(&self) -> Option<&Arc<str>> {
        self.0.get()
    }
}

/// A new run id: the time, the process and a counter, mixed through std's randomly keyed hasher.
fn fresh_run_id() -> Arc<str> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let keyed = std::collections::hash_map::RandomState::new();
    let half = |salt: u64| {
        let mut h = keyed.build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    Arc::from(format!("{:016x}{:016x}", half(1), half(2)))
}

/// Where a context's node name, inputs and templates come from.
#[derive(Clone)]
enum Origin {
    /// A node of a run: the run's scope and the node's id.
    Run(Arc<RunScope>, crate::NodeId),
    /// Given one by one (tests, embedders running a node by hand).
    Own {
        node: Arc<str>,
        inputs: Arc<Value>,
        templates: Arc<TemplateEnv>,
    },
}

/// Receives what a node streams while it runs (such as an LLM's tokens): the node's name and a
/// JSON payload. The runtime turns each into a run event.
pub type Emitter = Arc<dyn Fn(&Arc<str>, Value) + Send + Sync>;

impl std::fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeContext")
            .field("node", &self.node())
            .field("attempt", &self.attempt)
            .field("inputs", self.inputs())
            .field("state", &self.state)
            .field("vars", &self.vars)
            .finish_non_exhaustive()
    }
}

impl NodeContext {
    /// A context. `state` is an object holding only the keys the node may read.
    pub fn new(
        node: Arc<str>,
        attempt: u32,
        seed: u64,
        inputs: Arc<Value>,
        state: Arc<Value>,
        templates: Arc<TemplateEnv>,
    ) -> Self {
        let view = StateView::from_object(&state);
        let ctx = NodeContext::with_view(node, attempt, seed, inputs, view, templates);
        let _ = ctx.state_json.set(state);
        ctx
    }

    /// A context over a [`StateView`] (no value is copied).
    pub fn with_view(
        node: Arc<str>,
        attempt: u32,
        seed: u64,
        inputs: Arc<Value>,
        state: StateView,
        templates: Arc<TemplateEnv>,
    ) -> Self {
        Self::build(
            Origin::Own {
                node,
                inputs,
                templates,
            },
            attempt,
            seed,
            state,
        )
    }

    /// The context of node `id` of a run (what the runtime builds: nothing is copied, and only
    /// the run's own counts are touched).
    pub fn for_run(
        scope: Arc<RunScope>,
        id: crate::NodeId,
        attempt: u32,
        seed: u64,
        state: StateView,
    ) -> Self {
        Self::build(Origin::Run(scope, id), attempt, seed, state)
    }

    fn build(origin: Origin, attempt: u32, seed: u64, state: StateView) -> Self {
        NodeContext {
            origin,
            attempt,
            seed,
            state,
            state_json: OnceLock::new(),
            vars: None,
            emitter: None,
            template_ctx: OnceLock::new(),
            item: None,
        }
    }

    /// The node's name, shared.
    fn name(&self) -> &Arc<str> {
        match &self.origin {
            Origin::Run(scope, id) => &scope.plan.node(*id).name,
            Origin::Own { node, .. } => node,
        }
    }

    /// Adds template variables besides `inputs` and `state` (a JSON object, such as
    /// `{"item": .., "index": ..}` for a map's inner node).
    #[must_use]
    pub fn with_vars(mut self, vars: Value) -> Self {
        self.vars = Some(Arc::new(vars));
        self.template_ctx = OnceLock::new();
        self
    }

    /// Sets where [`emit`](Self::emit) sends.
    #[must_use]
    pub fn with_emitter(mut self, emitter: Option<Emitter>) -> Self {
        self.emitter = emitter;
        self
    }

    /// The emitter, to hand on to inner nodes.
    pub fn emitter(&self) -> Option<&Emitter> {
        self.emitter.as_ref()
    }

    /// Streams a payload as a run event (a no-op when nobody listens).
    pub fn emit(&self, payload: Value) {
        if let Some(e) = &self.emitter {
            e(self.name(), payload);
        }
    }

    /// The extra template variables given by [`with_vars`](Self::with_vars).
    pub fn vars(&self) -> Option<&Value> {
        self.vars.as_deref()
    }

    /// The plan's compiled templates.
    pub fn templates(&self) -> &Arc<TemplateEnv> {
        match &self.origin {
            Origin::Run(scope, _) => scope.plan.templates(),
            Origin::Own { templates, .. } => templates,
        }
    }

    /// Renders a compiled value with `extra` variables (a JSON object) on top of the context's.
    ///
    /// # Errors
    ///
    /// As [`render`](Self::render).
    pub fn render_with(&self, value: &Templated, extra: &Value) -> Result<Value, NodeError> {
        if let Templated::Literal(v) = value {
            return Ok(v.clone());
        }
        let ctx = minijinja::context! {
            ..minijinja::Value::from_serialize(extra),
            ..self.template_context().clone()
        };
        Ok(value.render(self.templates(), &ctx)?)
    }

    /// As [`render_with`](Self::render_with), with `extra` made by
    /// [`declared_vars`](crate::template::declared_vars): a lookup of a key it does not declare
    /// fails naming the key.
    ///
    /// # Errors
    ///
    /// As [`render`](Self::render).
    pub fn render_with_vars(
        &self,
        value: &Templated,
        extra: &crate::template::TemplateVars,
    ) -> Result<Value, NodeError> {
        if let Templated::Literal(v) = value {
            return Ok(v.clone());
        }
        let ctx = minijinja::context! {
            ..extra.0.clone(),
            ..self.template_context().clone()
        };
        Ok(value.render(self.templates(), &ctx)?)
    }

    /// A context for an inner node run on this node's behalf (such as one item of a `map`): the
    /// same node name, attempt, inputs, state, templates and emitter, with its own `seed` and its
    /// own template variables `vars` (a JSON object, replacing any this context has).
    pub fn inner(&self, seed: u64, vars: Value) -> NodeContext {
        self.inner_shared(seed, Arc::new(vars))
    }

    /// As [`inner`](Self::inner), with the variables shared (one item's context made once per
    /// attempt copies nothing).
    pub fn inner_shared(&self, seed: u64, vars: Arc<Value>) -> NodeContext {
        let mut ctx = Self::build(self.origin.clone(), self.attempt, seed, self.state.clone())
            .with_emitter(self.emitter.clone());
        ctx.vars = Some(vars);
        ctx
    }

    /// The context of item `index` of inner work run on this node's behalf: as
    /// [`inner_shared`](Self::inner_shared), with an idempotency key of its own.
    pub fn item(&self, index: usize, seed: u64, vars: Arc<Value>) -> NodeContext {
        let mut ctx = self.inner_shared(seed, vars);
        ctx.item = Some(index);
        ctx
    }

    /// Runs `items.node` once per item on this node's behalf, through the runtime's attempt
    /// logic (timeout, retry, panic capture, the item check), at most `max_concurrency` at a
    /// time (one at a time in a sequential run).
    ///
    /// # Errors
    ///
    /// When this context belongs to no run (built by hand), since only a runtime runs items.
    pub fn run_items(&self, items: Items) -> Result<WorkFuture<ItemsOutcome>, NodeError> {
        match &self.origin {
            Origin::Run(scope, _) => match scope.executor.upgrade() {
                Some(executor) => Ok(executor.run_items(self, items)),
                None => Err(run_ended(self.name())),
            },
            Origin::Own { node, .. } => Err(no_runtime(node)),
        }
    }

    /// Runs a sub-plan on this node's behalf, with `inputs` as given (the runtime checks them
    /// against the plan's declarations and fills in defaults). The sub-run sees this run's
    /// cancellation and deadline, runs sequentially in a sequential run, and its events reach this
    /// run's event stream, attributed to this node.
    ///
    /// # Errors
    ///
    /// When this context belongs to no run (built by hand), since only a runtime runs plans; the
    /// future fails when the inputs do not fit.
    pub fn run_plan(
        &self,
        plan: Arc<crate::Plan>,
        inputs: Map<String, Value>,
    ) -> Result<WorkFuture<Result<SubRun, NodeError>>, NodeError> {
        match &self.origin {
            Origin::Run(scope, _) => match scope.executor.upgrade() {
                Some(executor) => Ok(executor.run_plan(self, plan, inputs)),
                None => Err(run_ended(self.name())),
            },
            Origin::Own { node, .. } => Err(no_runtime(node)),
        }
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        self.name()
    }

    /// The id of the run this node belongs to (`local` for a context built by hand). Stable
    /// across attempts, and across resumes of a durable run.
    pub fn run_id(&self) -> &str {
        match &self.origin {
            Origin::Run(scope, _) => scope.run_id.get(),
            Origin::Own { .. } => "local",
        }
    }

    /// A key for this node's side effects, the same at every attempt and every resume of the
    /// run: `RUN_ID:NODE`, and `RUN_ID:NODE:INDEX` for an item of a `map`. Send it where a
    /// service can deduplicate (the `Idempotency-Key` HTTP header, which `http` sends), so a
    /// node run again after a crash does not act twice.
    pub fn idempotency_key(&self) -> String {
        match self.item {
            Some(i) => format!("{}:{}:{i}", self.run_id(), self.name()),
            None => format!("{}:{}", self.run_id(), self.name()),
        }
    }

    /// The answer the run was given for this node, when it waits for one (see
    /// [`Node::waits`]). `None` for a node given none, for the items of inner work (a context
    /// made by [`inner`](Self::inner) or [`item`](Self::item): they take no answers), for the
    /// nodes of a sub-run, and for a context built by hand.
    pub fn answer(&self) -> Option<&Answer> {
        match &self.origin {
            // Inner work always has its own variables (`item`, `index`, or none): the answer is
            // the parent node's, not the item's.
            Origin::Run(scope, id) if self.vars.is_none() => scope.answer(*id),
            _ => None,
        }
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A seed for this node's randomness in this run (stable across attempts).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// All inputs, as a JSON object.
    pub fn inputs(&self) -> &Value {
        self.inputs_arc()
    }

    /// One input.
    pub fn input(&self, name: &str) -> Option<&Value> {
        self.inputs().get(name)
    }

    /// The state the node may read (keys written upstream of it), as a JSON object.
    pub fn state(&self) -> &Value {
        self.state_json
            .get_or_init(|| Arc::new(self.state.to_json()))
    }

    /// The state the node may read, shared (no copy).
    pub fn view(&self) -> &StateView {
        &self.state
    }

    /// One state key, if the node may read it and it has a value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.state.get(key)
    }

    /// The run's inputs, shared.
    pub fn inputs_arc(&self) -> &Arc<Value> {
        match &self.origin {
            Origin::Run(scope, _) => &scope.inputs,
            Origin::Own { inputs, .. } => inputs,
        }
    }

    /// The context templates and expressions are evaluated in: `{ inputs, state }`.
    pub fn template_context(&self) -> &minijinja::Value {
        self.template_ctx
            .get_or_init(|| template::scope(self.inputs_arc(), &self.state, self.vars.as_ref()))
    }

    /// Renders a compiled templated value against this context.
    ///
    /// # Errors
    ///
    /// When a template fails to evaluate (an undefined variable, a type error, fuel exhausted).
    pub fn render(&self, value: &Templated) -> Result<Value, NodeError> {
        if let Templated::Literal(v) = value {
            return Ok(v.clone());
        }
        let raw = self.raw();
        Ok(value.render_raw(self.templates(), Some(&raw), &|| self.template_context())?)
    }

    /// The raw values templates read, for plain-path expressions.
    pub fn raw(&self) -> template::Raw<'_> {
        template::Raw {
            inputs: self.inputs(),
            state: &self.state,
            vars: self.vars.as_deref(),
        }
    }
}

/// Polls a node's future, turning a panic into an `Err` with its payload: a panic in a handler is
/// a node failure, never an unwinding scheduler. Used by the runtime around every attempt, and by
/// kinds that run inner nodes (`map`).
pub struct CatchUnwind(pub NodeFuture);

impl Future for CatchUnwind {
    type Output = Result<Result<Value, NodeError>, Box<dyn std::any::Any + Send>>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(r)) => std::task::Poll::Ready(Ok(r)),
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    }
}

/// "a string", "a list", ...: a JSON value's type, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Inner work: what a node kind asks the runtime to run on its behalf.
//
// Some kinds run work of their own: `map` runs a node once per item, `workflow` runs a whole
// sub-plan. They must not re-implement the runtime (a second scheduler, a second copy of the
// attempt logic) nor depend on it: they ask their `NodeContext` to `run_items` or `run_plan`, and
// the runtime that runs the node provides the `Executor`. So every piece of work, inner or outer,
// gets the same timeout, retry, panic capture and output checks, sees the run's cancellation and
// deadline, runs one at a time in a sequential run, and reports its events in the parent's event
// stream, attributed to the parent node. (Here, beside `NodeContext`, because the two refer to
// each other: the context calls its executor, and the executor is handed the context.)

/// Checks and shapes one item's update into the item's result (such as `map`'s `collect`). An
/// `Err` is that item's failure, like an `invalid_output` of a node.
pub type ItemCheck = Arc<dyn Fn(Value) -> Result<Value, NodeError> + Send + Sync>;

/// A node run once per item, as part of the node that asks for it.
pub struct Items {
    /// The node run for each item. Its context is the parent's, with the template variables
    /// `item` (the item) and `index` (its position, from 0).
    pub node: Arc<dyn Node>,
    /// The items.
    pub items: Vec<Value>,
    /// At most this many items in flight (`None`: all of them). A sequential run runs one at a
    /// time whatever this says.
    pub max_concurrency: Option<usize>,
    /// Each attempt of an item is bounded by this (and by the run's deadline).
    pub timeout: Option<Duration>,
    /// How an item's failed attempts are retried.
    pub retry: RetryPolicy,
    /// Turns an item's update into its result.
    pub check: ItemCheck,
    /// How many items may fail: one more stops the items in flight and ends the work.
    pub tolerated: u64,
}

/// How a run of [`Items`] ended.
#[derive(Debug)]
pub enum ItemsOutcome {
    /// Every item ran: each one's result, in item order.
    Done(Vec<Result<Value, NodeError>>),
    /// More items failed than were tolerated: the failures so far, by item index (the items
    /// still in flight were stopped).
    TooManyFailures(Vec<(usize, NodeError)>),
}

/// How a sub-plan's run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SubRun {
    /// Why it failed, when it did (`None`: it succeeded, possibly degraded).
    pub failed: Option<String>,
    /// Some node fell back.
    pub degraded: bool,
    /// Its final state: every declared key.
    pub state: Value,
}

/// A boxed future of inner work.
pub type WorkFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Runs inner work for the nodes of one run. Implemented by the runtime; reached through
/// [`NodeContext::run_items`] and [`NodeContext::run_plan`].
///
/// # Cancel safety
///
/// Dropping a returned future stops all of its work (tasks aborted, sub-runs dropped).
pub trait Executor: Send + Sync + 'static {
    /// Runs `items.node` once per item, on behalf of the node of `parent`.
    fn run_items(&self, parent: &NodeContext, items: Items) -> WorkFuture<ItemsOutcome>;

    /// Runs `plan` with `inputs` (checked against its declarations, defaults filled in), on
    /// behalf of the node of `parent`. Inputs that do not fit are a permanent failure that names
    /// every problem.
    fn run_plan(
        &self,
        parent: &NodeContext,
        plan: Arc<crate::Plan>,
        inputs: Map<String, Value>,
    ) -> WorkFuture<Result<SubRun, NodeError>>;
}

/// The failure of inner work asked of a context that belongs to no run (built by hand).
fn no_runtime(node: &str) -> NodeError {
    NodeError::new(format!(
        "node `{node}` runs inner work, which needs a runtime: run it as part of a workflow"
    ))
    .permanent()
}

/// The failure of inner work asked for after the node's run has ended (a handler that kept its
/// context past its own future).
fn run_ended(node: &str) -> NodeError {
    NodeError::new(format!(
        "node `{node}` asked for inner work after its run had ended"
    ))
    .permanent()
}
