//! Compiles a generated chain of `noop` nodes, for profiling the compiler:
//! `cargo build --release -p braid-compiler --example profile_compile` then
//! `valgrind --tool=callgrind target/release/examples/profile_compile 2000`.

use std::fmt::Write as _;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let mut text = String::from("version: 1\nname: chain\nnodes:\n  n0: { kind: noop }\n");
    for i in 1..n {
        let _ = writeln!(text, "  n{i}: {{ kind: noop, needs: [n{}] }}", i - 1);
    }
    let compiler =
        braid_compiler::Compiler::new(braid_nodes::builtin_registry(), Default::default());
    let start = std::time::Instant::now();
    let c = compiler.compile(&braid_compiler::Source::new("chain.yaml", text));
    let took = start.elapsed();
    assert!(c.plan.is_some(), "{:?}", c.diagnostics.first());
    #[allow(clippy::print_stdout)]
    {
        println!("{n} nodes compiled in {took:?}");
    }
}
