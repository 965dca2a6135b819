//! The facade's integration tests: one test binary (ripgrep's `tests/tests.rs` layout, so the
//! crate links once), one module per concern, in `tests/braid/`.
//!
//! * `workflows`: every workflow in `workflows/` loads and runs, on virtual time, at exactly its
//!   critical path, and both modes end in the same state.
//! * `subworkflow`: the `workflow` kind, another file run as one node and checked with its parent.
//! * `identity`: a workflow's fingerprint and the files it was compiled from.
//! * `durable` (feature `store`): runs interrupted at random and resumed from a store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[cfg(feature = "store")]
#[path = "braid/durable.rs"]
mod durable;
#[path = "braid/identity.rs"]
mod identity;
#[path = "braid/subworkflow.rs"]
mod subworkflow;
#[path = "braid/workflows.rs"]
mod workflows;
