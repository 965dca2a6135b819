//! Braid's benchmarks live in `benches/`; this library only hosts the helpers they share: the
//! generators of synthetic workloads (YAML text for chains, fan-outs and layered DAGs of `noop`
//! nodes, and mode 1 without its latencies) and a one-line way to compile them.
//!
//! The generators return YAML text rather than a `Plan` so that the compile benchmark measures
//! the whole pipeline (load, schema, semantic checks, lower) on exactly what the scheduler
//! benchmarks run. Each generator has a unit test checking that its output compiles and has the
//! expected number of nodes, so a benchmark never silently measures a rejected file.
//!
//! Run the benchmarks with `cargo bench -p braid-bench`; figures and method are in
//! `docs/performance.md`. CI compiles them (`clippy --all-targets`) but never runs them.

use std::fmt::Write as _;
use std::sync::Arc;

use braid_compiler::{CompileOptions, Compiler, Source};
use braid_core::Plan;

/// The mode-1 workflow as shipped in `workflows/`, latencies included.
pub const MODE1_MANUAL: &str = include_str!("../../../workflows/mode1-manual.yaml");

fn header(name: &str, out: &mut String) {
    let _ = writeln!(out, "version: 1\nname: {name}\nnodes:");
}

/// A chain of `n` `noop` nodes: `n0 -> n1 -> ... -> n{n-1}`. Nothing can run in parallel, so
/// it measures the scheduler's per-node cost with the longest possible critical path.
///
/// # Panics
///
/// When `n` is zero (a workflow needs at least one node).
pub fn chain(n: usize) -> String {
    assert!(n > 0, "a workflow needs at least one node");
    let mut out = String::with_capacity(n * 32);
    header("bench-chain", &mut out);
    let _ = writeln!(out, "  n0: {{ kind: noop }}");
    for i in 1..n {
        let _ = writeln!(out, "  n{i}: {{ kind: noop, needs: [n{}] }}", i - 1);
    }
    out
}

/// A chain of `n` latency-free `mock` nodes, each reading the list `items` and appending one
/// object of about `kb` KB to it: the chat-history pattern. A node that reads the key it appends
/// to must not make the fold copy the whole list (see `braid_runtime::store::copies`); this
/// measures that a run stays linear in `n`.
///
/// # Panics
///
/// When `n` is zero (a workflow needs at least one node).
pub fn append_chain(n: usize, kb: usize) -> String {
    assert!(n > 0, "a workflow needs at least one node");
    let blob = "x".repeat(kb * 1000);
    let mut out = String::with_capacity(n * 64 + kb * 1000);
    let _ = writeln!(
        out,
        "version: 1\nname: bench-append-chain\nstate:\n  items: {{ reducer: append, default: [] }}\nnodes:"
    );
    for i in 0..n {
        let needs = if i == 0 {
            String::new()
        } else {
            format!(", needs: [n{}]", i - 1)
        };
        let _ = writeln!(
            out,
            "  n{i}: {{ kind: mock, reads: [items], writes: [items]{needs}, with: {{ output: {{ items: [{{ turn: {i}, text: {blob} }}] }} }} }}"
        );
    }
    out
}

/// A fan-out of `n` `noop` nodes in all: one source `src`, `n - 2` branches that each need it,
/// and one `join` that needs every branch. Everything between the source and the join is ready
/// at once, so it measures the ready set and the join set at their widest.
///
/// # Panics
///
/// When `n < 3` (a source, at least one branch and a join).
pub fn fan_out(n: usize) -> String {
    assert!(n >= 3, "a fan-out needs a source, a branch and a join");
    let branches = n - 2;
    let mut out = String::with_capacity(n * 40);
    header("bench-fan-out", &mut out);
    let _ = writeln!(out, "  src: {{ kind: noop }}");
    for i in 0..branches {
        let _ = writeln!(out, "  b{i}: {{ kind: noop, needs: [src] }}");
    }
    out.push_str("  join:\n    kind: noop\n    needs: [");
    for i in 0..branches {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "b{i}");
    }
    out.push_str("]\n");
    out
}

/// `layers` layers of `width` `noop` nodes; node `i` of each layer after the first needs nodes `i`
/// and `i + 1` (mod `width`) of the layer before. `layers * width` nodes, `2 * (layers - 1) *
/// width` edges: a shape between the chain and the fan-out, with joins everywhere.
///
/// # Panics
///
/// When `layers` is zero or `width < 2` (each node needs two distinct parents).
pub fn layered(layers: usize, width: usize) -> String {
    assert!(
        layers > 0 && width >= 2,
        "need at least one layer of two nodes"
    );
    let mut out = String::with_capacity(layers * width * 48);
    header("bench-layered", &mut out);
    for i in 0..width {
        let _ = writeln!(out, "  l0_{i}: {{ kind: noop }}");
    }
    for l in 1..layers {
        for i in 0..width {
            let (a, b) = (i, (i + 1) % width);
            let _ = writeln!(
                out,
                "  l{l}_{i}: {{ kind: noop, needs: [l{p}_{a}, l{p}_{b}] }}",
                p = l - 1
            );
        }
    }
    out
}

/// Mode 1 (`workflows/mode1-manual.yaml`) with every `latency:` line removed: the same seven mock
/// nodes, templates, reducers, timeouts and retries, but no sleeping, so a run costs only what
/// Braid itself spends.
pub fn mode1_zero_latency() -> String {
    MODE1_MANUAL
        .lines()
        .filter(|line| !line.trim_start().starts_with("latency:"))
        .fold(
            String::with_capacity(MODE1_MANUAL.len()),
            |mut out, line| {
                out.push_str(line);
                out.push('\n');
                out
            },
        )
}

/// A compiler with the built-in kinds and reducers and default options.
pub fn compiler() -> Compiler {
    Compiler::new(braid_nodes::builtin_registry(), CompileOptions::default())
}

/// Compiles `text` with [`compiler`], for benchmarks that time what happens after compiling.
///
/// # Panics
///
/// When the workflow does not compile; the message is the rendered diagnostics.
pub fn plan(name: &str, text: &str) -> Arc<Plan> {
    let source = Source::new(name, text);
    let compilation = compiler().compile(&source);
    match compilation.plan {
        Some(plan) => Arc::new(plan),
        None => panic!(
            "{}",
            braid_compiler::render::human(name, text, &compilation.diagnostics, false)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_count(text: &str) -> usize {
        plan("test.yaml", text).nodes().len()
    }

    #[test]
    fn chain_compiles_with_n_nodes() {
        assert_eq!(node_count(&chain(1)), 1);
        assert_eq!(node_count(&chain(1_000)), 1_000);
    }

    #[test]
    fn fan_out_compiles_with_n_nodes() {
        assert_eq!(node_count(&fan_out(3)), 3);
        assert_eq!(node_count(&fan_out(1_000)), 1_000);
    }

    #[test]
    fn layered_compiles_with_layers_times_width_nodes() {
        assert_eq!(node_count(&layered(1, 2)), 2);
        assert_eq!(node_count(&layered(10, 100)), 1_000);
    }

    #[test]
    fn mode1_zero_latency_compiles_without_latency() {
        let text = mode1_zero_latency();
        assert!(!text.contains("latency:"));
        assert!(MODE1_MANUAL.contains("latency:"));
        assert_eq!(node_count(&text), 7);
    }
}
