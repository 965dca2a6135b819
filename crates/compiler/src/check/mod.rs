//! Semantic checks: one small, pure function per rule, each appending diagnostics.
//!
//! They run on the typed spec after the schema check has passed, over a [`Model`] that resolves
//! names to positions once. Every check runs even when an earlier one failed, so `braid validate`
//! shows every problem at once; a check that needs a sound graph (reads, concurrent writers) runs
//! only when the graph is acyclic.
//!
//! The rules run in two groups, on either side of the kind builds (`crate::build`):
//! [`declarations`] checks what the file declares (the graph, names, state keys, writes and
//! fallbacks); [`data_flow`] checks what the builds reveal: the keys kinds will write (against
//! `writes`), what nodes read (the variables their templates and `when` name), and which writers
//! may run at the same time.

mod concurrency;
mod graph;
mod kind_writes;
mod names;
mod shell;
mod state;

use std::collections::HashMap;
use std::sync::Arc;

use braid_core::{KindWrite, Reducer, Registry, TemplateRead};
use braid_spec::Workflow;

pub use concurrency::{Conflicts, DataFlow};
pub use graph::{cycles, needs};
pub use kind_writes::kind_writes;
pub use names::{inputs, kinds};
pub use shell::shell_templates;
pub use state::{channels, concurrent_replace, fallbacks, read_keys, reads, writes};

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::load::{SpanMap, escape};

/// The spec with names resolved to positions, shared by the checks.
pub struct Model<'a> {
    /// The typed workflow.
    pub spec: &'a Workflow,
    /// Where everything is.
    pub spans: &'a SpanMap,
    /// The kinds and reducers available.
    pub registry: &'a Registry,
    /// Node name → file position.
    pub node_index: HashMap<&'a str, usize>,
    /// State key → declaration position.
    pub key_index: HashMap<&'a str, usize>,
}

impl<'a> Model<'a> {
    /// Resolves the names of `spec`.
    pub fn new(spec: &'a Workflow, spans: &'a SpanMap, registry: &'a Registry) -> Self {
        let node_index = spec
            .nodes
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let key_index = spec
            .state
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        Model {
            spec,
            spans,
            registry,
            node_index,
            key_index,
        }
    }

    /// The name of the node at file position `i`.
    pub fn node_name(&self, i: usize) -> &'a str {
        self.spec.nodes.get_index(i).map_or("", |(k, _)| k.as_str())
    }

    /// The span of a node's field value (`field` may be a pointer tail such as `needs/0`).
    pub fn node_field(&self, node: &str, field: &str) -> Span {
        self.spans
            .value(&format!("/nodes/{}/{field}", escape(node)))
    }

    /// The span of a node's name (its key).
    pub fn node_key(&self, node: &str) -> Span {
        self.spans.key(&format!("/nodes/{}", escape(node)))
    }
}

/// Diagnostics collected by the checks.
pub type Sink = Vec<Diagnostic>;

/// The most nodes one workflow may have. The checks' memory is linear in the nodes and edges, but
/// the concurrency checks' time is at worst quadratic (`check::concurrency`: every node reading
/// and writing one key): 100,000 nodes keep that worst case within seconds, and fit the 8 MiB file
/// limit with room to spare.
pub const MAX_NODES: usize = 100_000;

/// Whether the workflow is small enough to check at all; reports it when it is not.
pub fn size(m: &Model<'_>, out: &mut Sink) -> bool {
    let count = m.spec.nodes.len();
    if count <= MAX_NODES {
        return true;
    }
    out.push(
        Diagnostic::error(
            Code::TooLarge,
            m.spans.key("/nodes"),
            format!("the workflow has {count} nodes; Braid accepts at most {MAX_NODES}"),
        )
        .help("split it into several workflows"),
    );
    false
}

/// What [`declarations`] resolved, for the later steps.
pub struct Declared {
    /// Per node (file position), the positions of the nodes it needs.
    pub needs: Vec<Vec<usize>>,
    /// The canonical order of the nodes, when they form no cycle.
    pub order: Option<Vec<usize>>,
    /// Per state key (declaration position), its reducer, when it names one that exists.
    pub reducers: Vec<Option<Arc<dyn Reducer>>>,
}

/// The checks of what the file declares, before any node is built: `needs` and cycles, kinds,
/// input defaults, state keys and reducers, `writes`, fallbacks, and templates in shell scripts.
pub fn declarations(m: &Model<'_>, out: &mut Sink) -> Declared {
    let needs = needs(m, out);
    let order = cycles(m, &needs, out);
    kinds(m, out);
    inputs(m, out);
    let reducers = channels(m, out);
    writes(m, out);
    fallbacks(m, &reducers, out);
    shell_templates(m, out);
    Declared {
        needs,
        order,
        reducers,
    }
}

/// The checks of the data flow, after the kind builds: what each node's kind will write
/// (`kind_writes[node]`) must be in its `writes`; what each node reads (its `reads`, plus
/// `template_reads[node]`, what its templates and `when` name) must be declared and written only
/// upstream, and no two writers of a `replace` key may run at the same time. Returns, per node,
/// the keys (declaration positions) it reads.
pub fn data_flow(
    m: &Model<'_>,
    declared: &Declared,
    template_reads: &[Vec<TemplateRead>],
    kind_writes: &[Vec<KindWrite>],
    out: &mut Sink,
) -> Vec<Vec<usize>> {
    self::kind_writes(m, kind_writes, out);
    let mut writers: Vec<Vec<usize>> = vec![Vec::new(); m.spec.state.len()];
    for (i, node) in m.spec.nodes.values().enumerate() {
        for key in &node.writes {
            if let Some(&k) = m.key_index.get(key.as_str()) {
                // `writes` has unique items (the schema says so): keep the list a set regardless.
                if writers[k].last() != Some(&i) {
                    writers[k].push(i);
                }
            }
        }
    }
    let node_reads = read_keys(m, template_reads);
    let replace: Vec<bool> = declared
        .reducers
        .iter()
        .map(|r| r.as_ref().is_some_and(|r| r.name() == "replace"))
        .collect();
    let conflicts = declared.order.as_ref().map(|order| {
        Conflicts::new(&DataFlow {
            needs: &declared.needs,
            order,
            writers: &writers,
            reads: &node_reads,
            replace: &replace,
        })
    });
    reads(m, conflicts.as_ref(), template_reads, out);
    if let Some(c) = &conflicts {
        concurrent_replace(m, c, out);
    }
    node_reads
}
