//! Semantic checks: one small, pure function per rule, each appending diagnostics.
//!
//! They run on the typed spec after the schema check has passed, over a [`Model`] that resolves
//! names to positions once. Every check runs even when an earlier one failed, so `braid validate`
//! shows every problem at once; a check that needs a sound graph (reads, concurrent writers) runs
//! only when the graph is acyclic.

mod graph;
mod names;
mod shell;
mod state;

use std::collections::HashMap;

use braid_core::Registry;
use braid_spec::Workflow;

pub use graph::{Ancestry, cycles, needs};
pub use names::{inputs, kinds};
pub use shell::shell_templates;
pub use state::{channels, concurrent_replace, fallbacks, reads, writes};

use crate::diagnostic::{Diagnostic, Span};
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
