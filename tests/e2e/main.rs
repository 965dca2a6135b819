//! End-to-end tests over the `braid` binary and the files in `workflows/`.

mod cli;
mod observability;
