//! Compiles a generated chain of `noop` nodes, or a workflow file, for profiling the compiler:
//! `cargo build --release -p braid-compiler --example profile_compile` then
//! `valgrind --tool=callgrind target/release/examples/profile_compile 2000` (time), or
//! `valgrind --tool=massif target/release/examples/profile_compile 10000` (heap), or
//! `/usr/bin/time -v target/release/examples/profile_compile some.yaml` (a file).
//! It uses the system allocator, so massif sees every allocation.

use std::fmt::Write as _;

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "2000".to_owned());
    let (name, text) = match arg.parse::<usize>() {
        Ok(n) => {
            let mut text = String::from("version: 1\nname: chain\nnodes:\n  n0: { kind: noop }\n");
            for i in 1..n {
                let _ = writeln!(text, "  n{i}: {{ kind: noop, needs: [n{}] }}", i - 1);
            }
            ("chain.yaml".to_owned(), text)
        }
        Err(_) => {
            let text = std::fs::read_to_string(&arg).expect("a node count or a readable file");
            (arg, text)
        }
    };
    let compiler =
        braid_compiler::Compiler::new(braid_nodes::builtin_registry(), Default::default());
    let start = std::time::Instant::now();
    let c = compiler.compile(&braid_compiler::Source::new(name.clone(), text));
    let took = start.elapsed();
    assert!(c.plan.is_some(), "{:?}", c.diagnostics.first());
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{name}: {} nodes compiled in {took:?}",
            c.plan.as_ref().map_or(0, |p| p.nodes().len())
        );
    }
}
