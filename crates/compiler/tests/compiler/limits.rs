//! Limits that need inputs too large to commit as fixtures: they are generated here.

use std::fmt::Write as _;

use braid_compiler::Code;
use braid_compiler::lower::MAX_NODES;

use crate::common::{compile, compiler};

/// A workflow of `n` `noop` nodes, each needing the one before it.
fn chain(n: usize) -> String {
    let mut text = String::from("version: 1\nname: big\nnodes:\n  n0: { kind: noop }\n");
    for i in 1..n {
        let _ = writeln!(text, "  n{i}: {{ kind: noop, needs: [n{}] }}", i - 1);
    }
    text
}

#[test]
fn more_nodes_than_the_limit_is_too_large() {
    let text = chain(MAX_NODES + 1);
    let c = compile(&compiler(), "big.yaml", &text);
    let codes: Vec<Code> = c.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::TooLarge]);
    let d = &c.diagnostics[0];
    assert_eq!(
        (d.span().start.line, d.span().start.column),
        (3, 1),
        "points at `nodes:`"
    );
    assert!(
        d.message.contains(&(MAX_NODES + 1).to_string()),
        "{}",
        d.message
    );
    assert!(c.plan.is_none());
}

/// Flow collections nested far deeper than the limit hit the YAML scanner's own recursion limit
/// before the loader counts them: that is the documented `yaml-limit`, not a syntax error.
#[test]
fn a_deep_flow_document_is_a_limit_not_a_syntax_error() {
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        for sep in ["", "\n    "] {
            let text = format!(
                "version: 1\nname: deep\nnodes:\n  a: {{ kind: noop, with: {}{} }}\n",
                (open.to_owned() + sep).repeat(10_000),
                close.repeat(10_000)
            );
            let c = compile(&compiler(), "deep.yaml", &text);
            let codes: Vec<Code> = c.diagnostics.iter().map(|d| d.code).collect();
            assert_eq!(
                codes,
                [Code::YamlLimit],
                "{open:?} {sep:?}: {:?}",
                c.diagnostics
            );
            let d = &c.diagnostics[0];
            assert!(
                d.message.starts_with("nesting is deeper than"),
                "{}",
                d.message
            );
            assert!(
                !d.labels.iter().any(|l| l.message.contains("not closed")),
                "{:?}",
                d.labels
            );
        }
    }
}
