//! The loaded document to the typed spec (`braid_spec::Workflow`): the JSON Schema check, then
//! serde, with the nodes taken one at a time as the loader reads them.
//!
//! A workflow is mostly its nodes, and a node held as a JSON value is several times the size of
//! its typed `NodeSpec` (a mapping is an index map with room to grow, every key and scalar its own
//! string). So the nodes are never all held as JSON: the loader hands each entry of the top-level
//! `nodes` mapping to [`Nodes`] as soon as it is read ([`load::load_with`]), which checks it against
//! the schema's rules for an entry of `nodes` (its name and body) and, when it passes, types it
//! and drops the JSON. The rest of the document is small; it is checked and typed whole, as
//! before, once the file is read. Issue 16, items 19 and 23: a 100,000-node file's JSON was 59 MB
//! on the heap at once, alive beside the span tree, and under mimalloc most of it stayed resident.
//!
//! Nothing is reported while the file is read: the spans do not exist yet. A node the schema
//! refuses is kept as JSON (and nothing more is typed), and checked again once the spans exist,
//! by the same rules, which then say why; so is a node holding a number serde may refuse (`2.0`
//! or a large integer for an integer field, which only the schema check's integer walk explains).
//! The diagnostics are the ones a whole-document check gives.

use braid_spec::{NodeSpec, Workflow};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::diagnostic::{Code, Diagnostic};
use crate::load::{self, SpanMap};
use crate::schema::{SchemaValidator, has_suspect_number};

/// Where the loader hands the nodes: each is checked and, when it passes, typed at once.
pub(crate) struct Nodes<'v> {
    validator: &'v SchemaValidator,
    /// `{"nodes": {}}`, reused: each node is checked in it, under its name, as in a document.
    wrapper: Value,
    /// The nodes that passed, typed, in file order.
    typed: IndexMap<String, NodeSpec>,
    /// Nodes to check again once the spans exist, each wrapped as `{"nodes": {name: node}}`.
    held: Vec<Value>,
    /// The names of the nodes not typed: those the schema refused (they are held), those serde
    /// refused, and every one after them (once there is one, the spec will not be made).
    untyped: std::collections::HashSet<String>,
    /// How many entries were handed over.
    count: usize,
    /// serde's complaint about a node the schema passed: a bug in Braid unless the integer walk
    /// explains it.
    rejected: Option<String>,
}

impl<'v> Nodes<'v> {
    pub(crate) fn new(validator: &'v SchemaValidator) -> Self {
        Nodes {
            validator,
            wrapper: json!({ "nodes": {} }),
            typed: IndexMap::new(),
            held: Vec::new(),
            untyped: std::collections::HashSet::new(),
            count: 0,
            rejected: None,
        }
    }

    fn slot(&mut self) -> Option<&mut Map<String, Value>> {
        self.wrapper.get_mut("nodes")?.as_object_mut()
    }
}

fn wrap(name: String, node: Value) -> Value {
    let mut nodes = Map::new();
    nodes.insert(name, node);
    json!({ "nodes": nodes })
}

impl load::Entries for Nodes<'_> {
    fn key(&self) -> &str {
        "nodes"
    }

    fn entry(&mut self, name: String, node: Value) {
        self.count += 1;
        if let Some(slot) = self.slot() {
            slot.insert(name.clone(), node);
        }
        let passes = self.validator.node_passes(&self.wrapper);
        let Some(node) = self.slot().and_then(|s| s.swap_remove(&name)) else {
            return;
        };
        if !passes {
            self.untyped.insert(name.clone());
            self.held.push(wrap(name, node));
            return;
        }
        if !self.untyped.is_empty() {
            // The spec will not be made: checking the rest is all that is left to do.
            self.untyped.insert(name);
            return;
        }
        if has_suspect_number(&node) {
            self.held.push(wrap(name.clone(), node.clone()));
        }
        match NodeSpec::deserialize(node) {
            Ok(spec) => {
                self.typed.insert(name, spec);
            }
            Err(e) => {
                self.rejected.get_or_insert_with(|| e.to_string());
                self.untyped.insert(name);
            }
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.typed.contains_key(name) || self.untyped.contains(name)
    }
}

/// The typed workflow from a document loaded with [`Nodes`] as its `nodes` receiver: its schema
/// check (the document and the held nodes), then serde. `None` when `out` got an error.
pub(crate) fn workflow(
    mut document: Value,
    mut nodes: Nodes<'_>,
    spans: &SpanMap,
    out: &mut Vec<Diagnostic>,
) -> Option<Workflow> {
    let mapping = document.get_mut("nodes").and_then(Value::as_object_mut);
    if let Some(kept) = mapping.filter(|m| !m.is_empty() && nodes.count == 0) {
        // The loader kept the mapping whole (it has an anchor): its entries now, the same way.
        let entries = std::mem::take(kept);
        for (name, node) in entries {
            if kept.is_empty() {
                kept.insert(name.clone(), Value::Null);
            }
            load::Entries::entry(&mut nodes, name, node);
        }
    }
    let errors = nodes.validator.check_split(&document, &nodes.held, spans);
    if !errors.is_empty() {
        out.extend(errors);
        return None;
    }
    let rejected = nodes.rejected.map(Err).unwrap_or(Ok(()));
    // The mapping's first key stood for all of them; the typed nodes replace it.
    if let Some(mapping) = document.get_mut("nodes") {
        *mapping = Value::Object(Map::new());
    }
    match rejected.and_then(|()| Workflow::deserialize(document).map_err(|e| e.to_string())) {
        Ok(mut spec) => {
            spec.nodes = nodes.typed;
            // Inserting grows the map by doubling: the slack was a quarter of its size, alive
            // until the plan is built (issue 16, item 19).
            spec.nodes.shrink_to_fit();
            Some(spec)
        }
        Err(e) => {
            out.push(
                Diagnostic::error(
                    Code::Internal,
                    spans.value(""),
                    format!("the schema accepted a file the types reject: {e}"),
                )
                .help("this is a bug in Braid; please report it with the file"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Code, Compilation, Compiler, Source};

    fn compile(text: &str) -> Compilation {
        Compiler::new(braid_nodes::builtin_registry(), Default::default())
            .compile(&Source::new("w.yaml", text))
    }

    fn names(c: &Compilation) -> Vec<String> {
        let plan = c.plan.as_ref().expect("a plan");
        plan.nodes().iter().map(|n| n.name.to_string()).collect()
    }

    #[test]
    fn nodes_kept_whole_by_the_loader_compile_as_those_handed_over() {
        let plain =
            "version: 1\nname: w\nnodes:\n  a: { kind: noop }\n  b: { kind: noop, needs: [a] }\n";
        // An anchor on the mapping keeps it whole in the document; one on a node is copied.
        let anchored = "version: 1\nname: w\nnodes: &all\n  a: &n { kind: noop }\n  b: { kind: noop, needs: [a] }\n";
        let aliased = "version: 1\nname: w\nnodes:\n  a: &n { kind: noop }\n  c: *n\n";
        for text in [plain, anchored] {
            let c = compile(text);
            assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
            assert_eq!(names(&c), ["a", "b"]);
        }
        assert_eq!(names(&compile(aliased)), ["a", "c"]);
    }

    #[test]
    fn every_node_the_schema_refuses_is_reported_and_nothing_is_typed_after_it() {
        let text = "version: 1\nname: w\nnodes:\n  a: { kind: noop }\n  b: { kind: noop, nedds: [a] }\n  c: { kind: noop, needs: a }\n  d: { kind: noop }\n  'e f': { kind: noop }\n";
        let c = compile(text);
        assert!(c.plan.is_none());
        let codes: Vec<(Code, u32)> = c
            .diagnostics
            .iter()
            .map(|d| (d.code, d.span().start.line))
            .collect();
        assert_eq!(
            codes,
            [
                (Code::UnknownField, 5),
                (Code::WrongType, 6),
                (Code::InvalidName, 8)
            ]
        );
    }

    #[test]
    fn a_node_defined_twice_is_typed_once_from_its_first_definition() {
        let text = "version: 1\nname: w\nnodes:\n  a: { kind: noop }\n  a: { kind: nope }\n";
        let c = compile(text);
        let codes: Vec<Code> = c.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, [Code::DuplicateKey]);
        assert!(c.plan.is_none());
        // Also after a node the schema refused, when nothing more is typed.
        let text =
            "version: 1\nname: w\nnodes:\n  z: 1\n  a: { kind: noop }\n  a: { kind: nope }\n";
        let codes: Vec<Code> = compile(text).diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, [Code::WrongType, Code::DuplicateKey]);
    }
}
