//! End-to-end tests over the `braid` binary and the files in `workflows/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod cli;
mod durable;
mod files;
mod observability;
#[cfg(feature = "serve")]
mod scale;
mod secrets;
#[cfg(feature = "serve")]
mod serve;
mod signals;
