//! Braid's built-in node kinds, one module each, each with a `Params` struct whose JSON Schema is
//! part of `schemas/workflow.schema.json` (so the editor completes and checks a node's `with:`).
//!
//! * [`mock`]: stands in for a real service: latency (fixed or sampled), templated output, and
//!   scripted misbehaviour (fail the first N attempts, fail at random, panic, hang).
//! * [`transform`]: computes its update from templates over inputs and state, with no latency.
//! * [`noop`]: does nothing; a join point or a placeholder.
//! * [`http`]: calls an HTTP service; the JSON response is mapped onto the node's writes.
//! * [`llm`]: a chat completion from an OpenAI-compatible server, optionally streamed token by token.
//! * [`exec`]: runs a program (never through a shell): JSON input on stdin, an update on stdout.
//! * [`map`]: a dynamic fan-out, one inner node of any kind per item of a run-time list.
//! * [`workflow`]: runs another workflow file as one node.
//! * [`wait`]: stops the run until a person answers; the answer becomes the node's output.

pub mod exec;
pub mod http;
pub mod llm;
pub mod map;
pub mod mock;
pub mod noop;
mod offload;
pub mod transform;
pub mod wait;
pub mod workflow;

use std::sync::Arc;

use braid_core::Registry;

/// Adds the built-in kinds to a registry.
pub fn register_builtins(registry: &mut Registry) -> &mut Registry {
    registry
        .register_kind(Arc::new(mock::MockKind))
        .register_kind(Arc::new(transform::TransformKind))
        .register_kind(Arc::new(noop::NoopKind))
        .register_kind(Arc::new(http::HttpKind))
        .register_kind(Arc::new(llm::LlmKind))
        .register_kind(Arc::new(exec::ExecKind))
        .register_kind(Arc::new(map::MapKind))
        .register_kind(Arc::new(workflow::WorkflowKind))
        .register_kind(Arc::new(wait::WaitKind))
}

/// A registry with the built-in reducers and kinds.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    register_builtins(&mut r);
    r
}
