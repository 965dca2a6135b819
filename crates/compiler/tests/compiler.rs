//! The compiler's integration tests: one test binary, one module per concern (ripgrep's
//! `tests/tests.rs` layout), so the crate links once.
//! The modules live in `tests/compiler/`, named by `#[path]` so that cargo
//! does not take each for a test binary of its own.
//!
//! * `fixtures`: every file in `tests/fixtures/invalid/` renders the diagnostics its snapshot holds,
//!   every file in `tests/fixtures/valid/` and `workflows/` compiles cleanly, every code is covered.
//! * `schema_drift`: the committed `schemas/workflow.schema.json` is what the types generate.
//! * `duration_grammar`: the schema's duration pattern and the parser accept the same strings.
//! * `fingerprint`: a plan's identity over its files, and the files a compilation lists.
//! * `limits`: inputs too large to keep as fixtures, generated in code.
//! * `memory`: the peak heap of compiling a large workflow, counted by this binary's global
//!   allocator (the system allocator, counting per thread).
//! * `no_panic`: mutated variants of the valid fixtures never panic the compiler.
//! * `fuzz`: what fuzzing found (`tests/fixtures/fuzz/`) and stray template delimiters,
//!   fixed and random, get diagnostics, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

/// Counts each thread's allocations, for `memory`; the system allocator otherwise.
#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

#[path = "compiler/common.rs"]
mod common;
#[path = "compiler/duration_grammar.rs"]
mod duration_grammar;
#[path = "compiler/fingerprint.rs"]
mod fingerprint;
#[path = "compiler/fixtures.rs"]
mod fixtures;
#[path = "compiler/fuzz.rs"]
mod fuzz;
#[path = "compiler/limits.rs"]
mod limits;
#[path = "compiler/memory.rs"]
mod memory;
#[path = "compiler/no_panic.rs"]
mod no_panic;
#[path = "compiler/schema_drift.rs"]
mod schema_drift;
