//! Compile time (load, schema check, semantic checks, lower) of generated `noop` workflows of
//! 1,000 to 100,000 nodes in three shapes. Targets: 10,000 nodes under 100 ms, growing linearly;
//! 100,000 nodes under 1 s.
//! `counter(ItemsCount)` makes divan print the time per node, so linear growth shows as a flat
//! per-node figure between the two sizes.

use braid_compiler::Source;
use divan::Bencher;
use divan::counter::ItemsCount;

/// The allocator the `braid` binary uses (see `crates/cli/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const SIZES: [usize; 4] = [1_000, 10_000, 50_000, 100_000];

fn bench_compile(bencher: Bencher<'_, '_>, name: &str, text: String, nodes: usize) {
    let compiler = braid_bench::compiler();
    let source = Source::new(name, text);
    let check = compiler.compile(&source);
    assert!(
        check.plan.is_some(),
        "{name} must compile: {:?}",
        check.diagnostics
    );
    bencher
        .counter(ItemsCount::new(nodes))
        .bench_local(|| compiler.compile(divan::black_box(&source)));
}

/// `n0 -> n1 -> ... -> n{N-1}`.
#[divan::bench(args = SIZES, sample_count = 20)]
fn chain(bencher: Bencher<'_, '_>, n: usize) {
    bench_compile(bencher, "chain.yaml", braid_bench::chain(n), n);
}

/// One source, `N - 2` branches, one join needing every branch.
#[divan::bench(args = SIZES, sample_count = 20)]
fn fan_out(bencher: Bencher<'_, '_>, n: usize) {
    bench_compile(bencher, "fan_out.yaml", braid_bench::fan_out(n), n);
}

/// `N / 100` layers of 100 nodes, each needing 2 nodes of the layer before.
#[divan::bench(args = SIZES, sample_count = 20)]
fn layered(bencher: Bencher<'_, '_>, n: usize) {
    bench_compile(
        bencher,
        "layered.yaml",
        braid_bench::layered(n / 100, 100),
        n,
    );
}
