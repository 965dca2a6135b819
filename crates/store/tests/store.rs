//! The store's tests: one conformance suite held against every backend, and each backend's own
//! (concurrency, storage size, bad inputs, migrations).

// The shared helpers (`common`, `conformance`) are not `#[test]` functions, which clippy's
// test allowances cover: an unwrap there is a failing test too, and a skip is said on stderr.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

#[path = "store/common.rs"]
mod common;
#[path = "store/conformance.rs"]
mod conformance;
#[path = "store/memory.rs"]
mod memory;
#[path = "store/postgres.rs"]
mod postgres;
#[path = "store/queue.rs"]
mod queue;
#[path = "store/sqlite.rs"]
mod sqlite;
