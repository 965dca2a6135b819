//! Renders a plan's DAG as Mermaid or Graphviz DOT: nodes labelled with their kind, conditional
//! nodes (those with a `when`) drawn dashed with their condition.

use std::fmt::Write as _;

use braid_core::Plan;

/// Graph output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// A Mermaid flowchart (renders in GitHub Markdown).
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Renders the plan's graph. Nodes appear in canonical order.
pub fn render(plan: &Plan, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart TD\n");
            let mut conditional = Vec::new();
            for (i, n) in plan.nodes().iter().enumerate() {
                let when = n
                    .when
                    .as_ref()
                    .map(|w| format!("<br/>when: {}", mermaid_text(w.source())))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    n{i}[\"<b>{}</b><br/>{}{when}\"]",
                    mermaid_text(&n.name),
                    mermaid_text(&n.kind)
                );
                if n.when.is_some() {
                    conditional.push(format!("n{i}"));
                }
            }
            for (i, n) in plan.nodes().iter().enumerate() {
                for d in &n.dependents {
                    let _ = writeln!(out, "    n{i} --> n{}", d.0);
                }
            }
            if !conditional.is_empty() {
                out.push_str("    classDef conditional stroke-dasharray: 5 5\n");
                let _ = writeln!(out, "    class {} conditional", conditional.join(","));
            }
        }
        GraphFormat::Dot => {
            let _ = writeln!(out, "digraph \"{}\" {{", dot_text(plan.name()));
            out.push_str(
                "    rankdir=TB;\n    node [shape=box, style=rounded, fontname=\"Helvetica\"];\n",
            );
            for n in plan.nodes() {
                let (when, style) = match &n.when {
                    Some(w) => (
                        format!("\\nwhen: {}", dot_text(w.source())),
                        ", style=\"rounded,dashed\"",
                    ),
                    None => (String::new(), ""),
                };
                let _ = writeln!(
                    out,
                    "    \"{}\" [label=\"{}\\n{}{when}\"{style}];",
                    dot_text(&n.name),
                    dot_text(&n.name),
                    dot_text(&n.kind)
                );
            }
            for n in plan.nodes() {
                for d in &n.dependents {
                    let _ = writeln!(
                        out,
                        "    \"{}\" -> \"{}\";",
                        dot_text(&n.name),
                        dot_text(&plan.node(*d).name)
                    );
                }
            }
            out.push_str("}\n");
        }
    }
    out
}
