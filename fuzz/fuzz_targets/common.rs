//! Shared by both targets: one compiler (building it compiles the JSON Schema, too slow to
//! repeat per input) and the oracle: compile, then render every diagnostic every way the CLI
//! can, then render the graph of any plan. A panic anywhere is a bug: `Compiler::compile`
//! promises never to panic, whatever the input. The compiler catches panics (in its
//! dependencies and its own code) and reports them as `internal` diagnostics, but libFuzzer's
//! panic hook aborts before anything is caught, so the fuzzer still sees each one; an `internal`
//! diagnostic without a panic (the schema and the types disagree, a plan refused) is a crash too.

use std::sync::OnceLock;

use braid_compiler::graph::{GraphFormat, render as graph};
use braid_compiler::{Code, CompileOptions, Compiler, Source, render};

fn compiler() -> &'static Compiler {
    static COMPILER: OnceLock<Compiler> = OnceLock::new();
    COMPILER.get_or_init(|| Compiler::new(braid_nodes::builtin_registry(), CompileOptions::default()))
}

pub fn check(text: &str) {
    let name = "fuzz.yaml";
    let source = Source::new(name, text);
    let compilation = compiler().compile(&source);
    let d = &compilation.diagnostics;
    if let Some(bug) = d.iter().find(|d| d.code == Code::Internal) {
        panic!("internal diagnostic: {}", bug.message);
    }
    let _ = render::human(name, &source.text, d, false);
    let _ = render::human(name, &source.text, d, true);
    let _ = render::github(name, d);
    let _ = serde_json::to_string(&render::json(name, d)).expect("diagnostics serialize");
    if let Some(plan) = &compilation.plan {
        assert!(!compilation.has_errors(), "a plan came with an error");
        let _ = graph(plan, GraphFormat::Mermaid);
        let _ = graph(plan, GraphFormat::Dot);
    }
}
