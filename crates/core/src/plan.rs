//! The [`Plan`]: a compiled workflow, immutable, proven acyclic and resolved.
//!
//! A plan can only be made by [`Plan::new`], which checks every index, orders the nodes
//! canonically (a topological order, ties broken by file order) and renumbers them so that
//! [`NodeId`] order *is* canonical order. That order is what makes runs deterministic: each state
//! key's contributions are folded in it, so a parallel run and a sequential run end in the same
//! state whatever finishes first. The runtime receives a `Plan` and never re-checks any of this.
//!
//! A plan carries its [`Fingerprint`] (the identity of the sources it came from), given in its
//! parts. The file format's closed vocabularies, [`ExecutionMode`] and [`InputType`], are
//! `braid-spec`'s own types, re-exported here: a twin enum would be one more conversion to keep in
//! step, and `InputType::accepts` is then the one type check of an input, used by the compiler
//! (for defaults) and the runtime (for the inputs a run is given).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value;

use crate::fingerprint::Fingerprint;
use crate::id::{KeyId, NodeId};
use crate::node::Node;
use crate::reducer::Reducer;
use crate::rng::Rng;
use crate::template::{Expr, TemplateEnv};

pub use braid_spec::{ExecutionMode, InputType};

/// A declared input.
#[derive(Debug, Clone)]
pub struct InputDecl {
    /// The input's name.
    pub name: Arc<str>,
    /// Its type: the file format's [`InputType`], whose [`accepts`](InputType::accepts) is the
    /// one type check, used by the compiler (defaults) and the runtime (given inputs) alike.
    pub ty: InputType,
    /// Its default; `None` makes it required.
    pub default: Option<Value>,
}

/// A state key.
#[derive(Clone)]
pub struct Channel {
    /// The key's name.
    pub name: Arc<str>,
    /// Its reducer.
    pub reducer: Arc<dyn Reducer>,
    /// Its value before any write (shared by every run: a run copies it only when it first
    /// folds a write into it).
    pub default: Option<Arc<Value>>,
    /// The nodes that write it, in canonical order (filled by [`Plan::new`]).
    pub writers: Vec<NodeId>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("reducer", &self.reducer.name())
            .field("default", &self.default)
            .field("writers", &self.writers)
            .finish()
    }
}

/// How a node retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the first retry.
    pub backoff: Duration,
    /// The growth factor of the wait.
    pub multiplier: f64,
    /// The longest wait.
    pub max_backoff: Option<Duration>,
    /// Random spread of each wait, as a fraction of it (0 to 1).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            backoff: Duration::ZERO,
            multiplier: 2.0,
            max_backoff: None,
            jitter: 0.0,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (from 1) before the next one.
    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        let exp = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let mut secs = self.backoff.as_secs_f64() * exp;
        if self.jitter > 0.0 {
            secs *= 1.0 + self.jitter * (2.0 * rng.next_f64() - 1.0);
        }
        // The cap applies last, so no wait ever exceeds `max_backoff`, jitter included.
        if let Some(cap) = self.max_backoff {
            secs = secs.min(cap.as_secs_f64());
        }
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
    }
}

/// What a node's final failure does.
#[derive(Debug, Clone, Default)]
pub enum OnErrorPolicy {
    /// Cancel the run.
    #[default]
    Fail,
    /// Write these fallback values and go on.
    Continue {
        /// Key → value written in place of the node's output.
        fallback: Vec<(KeyId, Value)>,
    },
}

/// A node as handed to [`Plan::new`]: `needs` are positions in the parts list (file order).
pub struct NodeParts {
    /// The node's name.
    pub name: Arc<str>,
    /// The node's kind.
    pub kind: Arc<str>,
    /// Positions (in the parts list) of the nodes it needs.
    pub needs: Vec<usize>,
    /// Its condition.
    pub when: Option<Arc<Expr>>,
    /// The keys it may read.
    pub reads: Vec<KeyId>,
    /// The keys it may write.
    pub writes: Vec<KeyId>,
    /// The timeout of one attempt.
    pub timeout: Option<Duration>,
    /// Its retry policy.
    pub retry: RetryPolicy,
    /// What its failure does.
    pub on_error: OnErrorPolicy,
    /// What runs.
    pub handler: Arc<dyn Node>,
}

/// A plan's nodes as they are handed over, in file order: each [`NodeParts`] becomes its
/// [`PlanNode`] when it is pushed, and [`Plan::new`] orders them canonically where they are. So a
/// large plan's parts and its nodes are never in memory side by side (issue 16, item 19: they
/// were 22 and 26 MB at 100,000 nodes).
#[derive(Default)]
pub struct PlanNodes {
    /// In file order; `needs` hold file positions until [`Plan::new`] renumbers them.
    nodes: Vec<PlanNode>,
}

impl PlanNodes {
    /// Room for `n` nodes.
    pub fn with_capacity(n: usize) -> Self {
        PlanNodes {
            nodes: Vec::with_capacity(n),
        }
    }

    /// Appends the next node in file order.
    pub fn push(&mut self, parts: NodeParts) {
        let NodeParts {
            name,
            kind,
            needs,
            when,
            reads,
            writes,
            timeout,
            retry,
            on_error,
            handler,
        } = parts;
        self.nodes.push(PlanNode {
            name,
            kind,
            file_index: u32::try_from(self.nodes.len()).unwrap_or(u32::MAX),
            // A position past `u32::MAX` is out of range whatever the count: `Plan::new` says so.
            needs: needs
                .into_iter()
                .map(|i| NodeId(u32::try_from(i).unwrap_or(u32::MAX)))
                .collect(),
            dependents: Vec::new(),
            when,
            reads,
            writes: writes.into_iter().map(|k| (k, 0)).collect(),
            timeout,
            retry,
            on_error,
            handler,
        });
    }

    /// How many nodes were pushed.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl FromIterator<NodeParts> for PlanNodes {
    fn from_iter<I: IntoIterator<Item = NodeParts>>(iter: I) -> Self {
        let mut nodes = PlanNodes::default();
        for p in iter {
            nodes.push(p);
        }
        nodes
    }
}

/// Everything [`Plan::new`] needs.
pub struct PlanParts {
    /// The workflow's name.
    pub name: Arc<str>,
    /// Declared inputs.
    pub inputs: Vec<InputDecl>,
    /// State keys (their `writers` are filled in by [`Plan::new`]).
    pub keys: Vec<Channel>,
    /// Nodes in file order.
    pub nodes: PlanNodes,
    /// Parallel or sequential.
    pub mode: ExecutionMode,
    /// Bound on nodes in flight.
    pub max_concurrency: Option<u32>,
    /// Whole-run timeout.
    pub timeout: Option<Duration>,
    /// The plan's compiled templates.
    pub templates: TemplateEnv,
    /// The identity of the sources the plan was compiled from (the compiler computes it).
    pub fingerprint: Fingerprint,
}

/// A node of a [`Plan`].
pub struct PlanNode {
    /// The node's name.
    pub name: Arc<str>,
    /// The node's kind.
    pub kind: Arc<str>,
    /// Its position in the file.
    pub file_index: u32,
    /// The nodes it needs.
    pub needs: Vec<NodeId>,
    /// The nodes that need it.
    pub dependents: Vec<NodeId>,
    /// Its condition.
    pub when: Option<Arc<Expr>>,
    /// The keys it may read.
    pub reads: Vec<KeyId>,
    /// The keys it may write, each with this node's position among the key's writers.
    pub writes: Vec<(KeyId, u32)>,
    /// The timeout of one attempt.
    pub timeout: Option<Duration>,
    /// Its retry policy.
    pub retry: RetryPolicy,
    /// What its failure does.
    pub on_error: OnErrorPolicy,
    /// What runs.
    pub handler: Arc<dyn Node>,
}

impl std::fmt::Debug for PlanNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanNode")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("needs", &self.needs)
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

/// Why [`Plan::new`] refused its parts. The compiler reports these earlier, with spans; reaching
/// one here is a bug in whoever built the parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The nodes form a cycle (names in flow order, the first repeated at the end).
    #[error("cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// An index points nowhere.
    #[error("unresolved reference: {0}")]
    Unresolved(String),
    /// The plan has no node.
    #[error("a plan needs at least one node")]
    Empty,
}

/// A compiled workflow, ready to run any number of times, concurrently.
pub struct Plan {
    name: Arc<str>,
    inputs: Vec<InputDecl>,
    keys: Vec<Channel>,
    nodes: Vec<PlanNode>,
    roots: Vec<NodeId>,
    mode: ExecutionMode,
    max_concurrency: Option<u32>,
    timeout: Option<Duration>,
    templates: Arc<TemplateEnv>,
    fingerprint: Fingerprint,
    /// Per node: the hash of its name, which salts its random seed in every run.
    salts: Vec<u64>,
    /// Every key, in order, each `null`: cloned for a run's final state (cloning copies the
    /// hash table instead of hashing every key again).
    skeleton: serde_json::Map<String, Value>,
    cache: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .field("nodes", &self.nodes)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The canonical order of nodes whose dependencies are `needs[i]` (positions in the same list):
/// Kahn's algorithm, the smallest position first among the ready ones. Also returns each node's
/// dependents. The order is shorter than the list exactly when the nodes form a cycle.
pub fn canonical_order(needs: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    kahn(needs.len(), |i| needs[i].iter().copied())
}

/// [`canonical_order`] over `n` nodes whose needs `needs(i)` gives (positions below `n`).
fn kahn<I: Iterator<Item = usize>>(
    n: usize,
    needs: impl Fn(usize) -> I,
) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut indegree: Vec<usize> = vec![0; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, count) in indegree.iter_mut().enumerate() {
        for d in needs(i) {
            *count += 1;
            dependents[d].push(i);
        }
    }
    let mut heap: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = heap.pop() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                heap.push(Reverse(d));
            }
        }
    }
    (order, dependents)
}

/// Finds a cycle among nodes whose dependencies are `needs[i]` (indices into the same list).
/// Returns the cycle in flow order (`a` before `b` when `b` needs `a`), first node repeated at the
/// end, starting from the lowest index in it; `None` when the graph is acyclic.
pub fn find_cycle(needs: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut graph = DiGraph::<(), ()>::with_capacity(needs.len(), needs.iter().map(Vec::len).sum());
    for _ in 0..needs.len() {
        graph.add_node(());
    }
    for (i, ns) in needs.iter().enumerate() {
        for &n in ns {
            graph.add_edge(NodeIndex::new(n), NodeIndex::new(i), ());
        }
    }
    let mut best: Option<Vec<usize>> = None;
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let self_loop = scc.len() == 1 && needs[scc[0].index()].contains(&scc[0].index());
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let start = scc.iter().map(|n| n.index()).min().unwrap_or(0);
        if best.as_ref().is_some_and(|b| b[0] < start) {
            continue;
        }
        let in_scc: std::collections::HashSet<usize> = scc.iter().map(|n| n.index()).collect();
        // Breadth-first from `start` along flow edges inside the component, back to `start`.
        let mut prev: Vec<Option<usize>> = vec![None; needs.len()];
        let mut queue = std::collections::VecDeque::from([start]);
        let mut found = false;
        'bfs: while let Some(u) = queue.pop_front() {
            let mut succ: Vec<usize> = graph
                .neighbors(NodeIndex::new(u))
                .map(|n| n.index())
                .filter(|v| in_scc.contains(v))
                .collect();
            succ.sort_unstable();
            for v in succ {
                if v == start {
                    prev[start] = Some(u);
                    found = true;
                    break 'bfs;
                }
                if prev[v].is_none() {
                    prev[v] = Some(u);
                    queue.push_back(v);
                }
            }
        }
        if !found {
            continue;
        }
        let mut path = vec![start];
        let mut cur = prev[start];
        while let Some(u) = cur {
            if u == start {
                break;
            }
            path.push(u);
            cur = prev[u];
        }
        path.push(start);
        path.reverse();
        best = Some(path);
    }
    best
}

impl Plan {
    /// Builds a plan, proving it acyclic and every index resolved, and ordering it canonically.
    ///
    /// # Errors
    ///
    /// [`PlanError`] when a node needs itself or forms a cycle, or an index is out of range.
    pub fn new(parts: PlanParts) -> Result<Plan, PlanError> {
        let PlanParts {
            name,
            inputs,
            mut keys,
            nodes,
            mode,
            max_concurrency,
            timeout,
            templates,
            fingerprint,
        } = parts;
        let PlanNodes {
            nodes: mut plan_nodes,
        } = nodes;
        let n = plan_nodes.len();
        if n == 0 {
            return Err(PlanError::Empty);
        }
        if n > u32::MAX as usize {
            return Err(PlanError::Unresolved("too many nodes".to_owned()));
        }
        for node in &plan_nodes {
            if let Some(bad) = node.needs.iter().find(|i| i.index() >= n) {
                return Err(PlanError::Unresolved(format!(
                    "node `{}` needs index {}",
                    node.name, bad.0
                )));
            }
            for k in node.reads.iter().chain(node.writes.iter().map(|(k, _)| k)) {
                if k.index() >= keys.len() {
                    return Err(PlanError::Unresolved(format!(
                        "node `{}` uses key index {}",
                        node.name, k.0
                    )));
                }
            }
            if let OnErrorPolicy::Continue { fallback } = &node.on_error {
                if let Some((k, _)) = fallback
                    .iter()
                    .find(|(k, _)| !node.writes.iter().any(|(w, _)| w == k))
                {
                    return Err(PlanError::Unresolved(format!(
                        "node `{}` falls back on key index {} it does not write",
                        node.name, k.0
                    )));
                }
            }
        }

        let (order, dependents) = kahn(n, |i| plan_nodes[i].needs.iter().map(|d| d.index()));
        if order.len() < n {
            let needs: Vec<Vec<usize>> = plan_nodes
                .iter()
                .map(|p| p.needs.iter().map(|d| d.index()).collect())
                .collect();
            let cycle = find_cycle(&needs).unwrap_or_default();
            return Err(PlanError::Cycle(
                cycle
                    .into_iter()
                    .map(|i| plan_nodes[i].name.to_string())
                    .collect(),
            ));
        }
        let mut new_id = vec![NodeId(0); n];
        for (pos, &file) in order.iter().enumerate() {
            new_id[file] = NodeId(pos as u32);
        }
        drop(order);

        // Into canonical order where they are: each swap puts one node at its place.
        let mut place: Vec<u32> = new_id.iter().map(|id| id.0).collect();
        for i in 0..n {
            while place[i] as usize != i {
                let j = place[i] as usize;
                plan_nodes.swap(i, j);
                place.swap(i, j);
            }
        }
        drop(place);
        for (pos, node) in plan_nodes.iter_mut().enumerate() {
            let id = NodeId(pos as u32);
            let file = node.file_index as usize;
            for d in &mut node.needs {
                *d = new_id[d.index()];
            }
            node.needs.sort_unstable();
            node.needs.dedup();
            let mut deps: Vec<NodeId> = dependents[file].iter().map(|&i| new_id[i]).collect();
            deps.sort_unstable();
            deps.dedup();
            node.dependents = deps;
            for (k, at) in &mut node.writes {
                let ch = &mut keys[k.index()];
                ch.writers.push(id);
                *at = (ch.writers.len() - 1) as u32;
            }
        }
        let roots = plan_nodes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.needs.is_empty())
            .map(|(i, _)| NodeId(i as u32))
            .collect();
        let salts = plan_nodes
            .iter()
            .map(|n| crate::rng::hash_str(&n.name))
            .collect();
        let skeleton = keys
            .iter()
            .map(|k| (k.name.to_string(), Value::Null))
            .collect();
        Ok(Plan {
            name,
            inputs,
            skeleton,
            keys,
            salts,
            nodes: plan_nodes,
            roots,
            mode,
            max_concurrency,
            timeout,
            templates: Arc::new(templates),
            fingerprint,
            cache: std::sync::OnceLock::new(),
        })
    }

    /// The hash of node `id`'s name ([`hash_str`](crate::rng::hash_str)), computed once: what
    /// salts the node's random seed in a run, so that a node's randomness depends on its name and
    /// the run's seed, not on its position.
    pub fn seed_salt(&self, id: NodeId) -> u64 {
        self.salts[id.index()]
    }

    /// Every state key, in declaration order, each `null`: the shape of a run's final state.
    pub fn state_skeleton(&self) -> &serde_json::Map<String, Value> {
        &self.skeleton
    }

    /// The workflow's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Declared inputs, in file order.
    pub fn inputs(&self) -> &[InputDecl] {
        &self.inputs
    }

    /// State keys, in file order.
    pub fn keys(&self) -> &[Channel] {
        &self.keys
    }

    /// Nodes, in canonical order (index = [`NodeId`]).
    pub fn nodes(&self) -> &[PlanNode] {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> &PlanNode {
        &self.nodes[id.index()]
    }

    /// The nodes that need nothing, in canonical order.
    pub fn roots(&self) -> &[NodeId] {
        &self.roots
    }

    /// The node of that name.
    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| &*n.name == name)
            .map(|i| NodeId(i as u32))
    }

    /// Parallel or sequential, as the file says.
    pub fn mode(&self) -> ExecutionMode {
        self.mode
    }

    /// Bound on nodes in flight.
    pub fn max_concurrency(&self) -> Option<u32> {
        self.max_concurrency
    }

    /// Whole-run timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The compiled templates.
    pub fn templates(&self) -> &Arc<TemplateEnv> {
        &self.templates
    }

    /// The plan's identity: a hash of the workflow's source text and of every file it includes,
    /// the same on every machine for the same files (see [`Fingerprint`]).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// A value the runtime derives from the plan once and keeps with it (such as its metric
    /// handles), made by `init` on first use. `None` if the slot holds a value of another type.
    pub fn cached<T: std::any::Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        self.cache.get_or_init(|| Box::new(init())).downcast_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cycle_in_flow_order() {
        // 0 needs 2, 1 needs 0, 2 needs 1: flow 0 -> 1 -> 2 -> 0
        let needs = vec![vec![2], vec![0], vec![1], vec![]];
        assert_eq!(find_cycle(&needs), Some(vec![0, 1, 2, 0]));
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0, 0]));
        assert_eq!(find_cycle(&[vec![], vec![0], vec![0, 1]]), None);
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let p = RetryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Some(Duration::from_millis(300)),
            jitter: 0.0,
        };
        let mut rng = Rng::new(0);
        let d: Vec<u128> = (1..=4).map(|a| p.delay(a, &mut rng).as_millis()).collect();
        assert_eq!(d, [100, 200, 300, 300]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = RetryPolicy {
            backoff: Duration::from_millis(100),
            jitter: 0.5,
            ..RetryPolicy::default()
        };
        let mut rng = Rng::new(3);
        for _ in 0..1000 {
            let d = p.delay(1, &mut rng).as_secs_f64();
            assert!((0.05..=0.15).contains(&d), "{d}");
        }
    }
}
