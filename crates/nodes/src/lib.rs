//! Braid's built-in node kinds, one module each, each with a `Params` struct whose JSON Schema is
//! part of `schemas/workflow.schema.json` (so the editor completes and checks a node's `with:`).
//!
//! * [`mock`]: stands in for a real service: latency (fixed or sampled), templated output, and
//!   scripted misbehaviour (fail the first N attempts, fail at random, panic, hang).
//! * [`transform`]: computes its update from templates over inputs and state, with no latency.
//! * [`noop`]: does nothing; a join point or a placeholder.

pub mod mock;
pub mod noop;
pub mod transform;

use std::sync::Arc;

use braid_core::Registry;

/// Adds the built-in kinds to a registry.
pub fn register_builtins(registry: &mut Registry) -> &mut Registry {
    registry
        .register_kind(Arc::new(mock::MockKind))
        .register_kind(Arc::new(transform::TransformKind))
        .register_kind(Arc::new(noop::NoopKind))
}

/// A registry with the built-in reducers and kinds.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    register_builtins(&mut r);
    r
}
