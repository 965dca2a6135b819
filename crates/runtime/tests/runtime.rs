//! The runtime's test suite: one integration-test binary, one module per concern (ripgrep's
//! `tests/tests.rs` pattern).
//!
//! Every async test runs on tokio's paused clock (`start_paused = true`): a 2-second mock takes no
//! real time, and timings are asserted exactly, never against the wall clock.
//!
//! The modules live in `tests/runtime/`; a crate root resolves `mod` paths beside itself, hence
//! the `#[path]`s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "runtime/util.rs"]
mod util;

#[path = "runtime/cancel.rs"]
mod cancel;
#[path = "runtime/concurrency.rs"]
mod concurrency;
#[path = "runtime/events.rs"]
mod events;
#[path = "runtime/failures.rs"]
mod failures;
#[path = "runtime/handlers.rs"]
mod handlers;
#[path = "runtime/inner.rs"]
mod inner;
#[path = "runtime/inputs.rs"]
mod inputs;
#[path = "runtime/ledger.rs"]
mod ledger;
#[path = "runtime/mode1.rs"]
mod mode1;
#[path = "runtime/properties.rs"]
mod properties;
#[path = "runtime/retry.rs"]
mod retry;
#[path = "runtime/store.rs"]
mod store;
#[path = "runtime/wait.rs"]
mod wait;
