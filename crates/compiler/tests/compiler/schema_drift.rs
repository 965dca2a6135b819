//! The committed JSON Schema is exactly what the spec types and built-in kinds generate.

use crate::common::{compiler, workspace};

const REGENERATE: &str = "cargo run -p braid-cli -- schema > schemas/workflow.schema.json";

#[test]
fn committed_schema_matches_the_types() {
    let generated = braid_compiler::workflow_schema(&braid_nodes::builtin_registry());
    let text = serde_json::to_string_pretty(&generated).expect("a schema serializes") + "\n";
    let path = workspace().join("schemas/workflow.schema.json");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if committed != text {
        let line = committed
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || {
                    format!(
                        "lengths differ: {} committed lines, {} generated",
                        committed.lines().count(),
                        text.lines().count()
                    )
                },
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "schemas/workflow.schema.json is out of date ({line}); regenerate it with `{REGENERATE}`"
        );
    }
}

#[test]
fn the_compiler_checks_against_the_same_schema() {
    let generated = braid_compiler::workflow_schema(&braid_nodes::builtin_registry());
    assert_eq!(compiler().schema(), &generated);
}
