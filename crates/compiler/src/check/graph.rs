//! Graph checks: `needs` that name no node or the node itself, and cycles.

use super::{Model, Sink};
use crate::diagnostic::{Code, Diagnostic, did_you_mean};

/// Resolves every node's `needs` to file positions, reporting names that match no node and nodes
/// that need themselves. Unresolved entries are left out.
pub fn needs(m: &Model<'_>, out: &mut Sink) -> Vec<Vec<usize>> {
    let mut resolved = Vec::with_capacity(m.spec.nodes.len());
    for (name, node) in &m.spec.nodes {
        let mut ids = Vec::with_capacity(node.needs.len());
        for (i, need) in node.needs.iter().enumerate() {
            // Only a problem needs a span: find it then, not for every entry.
            let span = || m.node_field(name, &format!("needs/{i}"));
            if need == name {
                out.push(
                    Diagnostic::error(
                        Code::SelfNeed,
                        span(),
                        format!("node `{name}` needs itself"),
                    )
                    .label("a node cannot wait for itself")
                    .help(format!("remove `{name}` from its own `needs`")),
                );
                continue;
            }
            match m.node_index.get(need.as_str()) {
                Some(&j) => ids.push(j),
                None => {
                    let mut d = Diagnostic::error(
                        Code::UnknownNeed,
                        span(),
                        format!("node `{name}` needs `{need}`, which is not a node"),
                    )
                    .label("no node has this name");
                    d = match did_you_mean(need, m.spec.nodes.keys().map(String::as_str)) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!(
                            "define a node `{need}` under `nodes:`, or remove it from `needs`"
                        )),
                    };
                    out.push(d);
                }
            }
        }
        resolved.push(ids);
    }
    resolved
}

/// Checks the graph for cycles. Returns the canonical order (topological, ties by file order)
/// when there is none.
pub fn cycles(m: &Model<'_>, needs: &[Vec<usize>], out: &mut Sink) -> Option<Vec<usize>> {
    let n = needs.len();
    let slices: Vec<&[usize]> = needs.iter().map(Vec::as_slice).collect();
    let (order, _) = braid_core::plan::canonical_order(&slices);
    if order.len() == n {
        return Some(order);
    }
    let cycle = braid_core::plan::find_cycle(needs).unwrap_or_default();
    let names: Vec<&str> = cycle.iter().map(|&i| m.node_name(i)).collect();
    let first = cycle.first().copied().unwrap_or(0);
    // Point at the `needs` entry that closes the cycle: the first node needs the one before it.
    let closer = cycle
        .len()
        .checked_sub(2)
        .map(|i| cycle[i])
        .unwrap_or(first);
    let first_name = m.node_name(first);
    let closer_name = m.node_name(closer);
    let pos = m.spec.nodes[first]
        .needs
        .iter()
        .position(|x| x == closer_name)
        .unwrap_or(0);
    let mut d = Diagnostic::error(
        Code::Cycle,
        m.node_field(first_name, &format!("needs/{pos}")),
        format!("the nodes form a cycle: `{}`", names.join(" -> ")),
    )
    .label(format!(
        "`{first_name}` needs `{closer_name}`, which needs `{first_name}`"
    ));
    // Every other edge of the cycle: `w[1]` needs `w[0]` (the last edge is the primary label).
    for w in cycle.windows(2).take(cycle.len().saturating_sub(2)) {
        let (from, to) = (m.node_name(w[0]), m.node_name(w[1]));
        if let Some(p) = m.spec.nodes[w[1]].needs.iter().position(|x| x == from) {
            d = d.with_label(
                m.node_field(to, &format!("needs/{p}")),
                format!("`{to}` needs `{from}`"),
            );
        }
    }
    out.push(d.help("remove one of these `needs` entries to break the cycle"));
    None
}
