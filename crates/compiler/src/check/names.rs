//! Name checks: node kinds that are not registered, and input defaults of the wrong type.

use super::{Model, Sink};
use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::load::escape;

/// Every node's `kind` must be a registered kind.
pub fn kinds(m: &Model<'_>, out: &mut Sink) {
    for (name, node) in &m.spec.nodes {
        if m.registry.kind(&node.kind).is_some() {
            continue;
        }
        let kinds: Vec<&str> = m.registry.kind_names().collect();
        let mut d = Diagnostic::error(
            Code::UnknownKind,
            m.node_field(name, "kind"),
            format!("node `{name}` has unknown kind `{}`", node.kind),
        )
        .label("no kind has this name");
        d = match did_you_mean(&node.kind, kinds.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!(
                "use a built-in kind ({}) or register a handler named `{}` from Rust",
                kinds.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
                node.kind
            )),
        };
        out.push(d);
    }
}

/// Every input's `default` must have the input's type.
pub fn inputs(m: &Model<'_>, out: &mut Sink) {
    for (name, input) in &m.spec.inputs {
        let Some(default) = &input.default else { continue };
        if input.ty.accepts(default) {
            continue;
        }
        out.push(
            Diagnostic::error(
                Code::InvalidDefault,
                m.spans.value(&format!("/inputs/{}/default", escape(name))),
                format!("input `{name}` has type `{}` but its default is not one", input.ty.as_str()),
            )
            .help(format!("give a default of type `{}`, or change the `type`", input.ty.as_str())),
        );
    }
}
