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
                kinds
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                node.kind
            )),
        };
        out.push(d);
    }
}

/// Every input's `default` must have the input's type.
pub fn inputs(m: &Model<'_>, out: &mut Sink) {
    for (name, input) in &m.spec.inputs {
        let Some(default) = &input.default else {
            continue;
        };
        if input.ty.accepts(default) {
            continue;
        }
        out.push(
            Diagnostic::error(
                Code::InvalidDefault,
                m.spans.value(&format!("/inputs/{}/default", escape(name))),
                format!(
                    "input `{name}` has type `{}`, but its default is {}",
                    input.ty.as_str(),
                    json_type(default)
                ),
            )
            .label(format!("expected a value of type `{}`", input.ty.as_str()))
            .help(default_help(input.ty.as_str(), default)),
        );
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number with a fraction",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// How to fix a default of the wrong type: unquote a quoted value, or change one of the two.
fn default_help(ty: &str, default: &serde_json::Value) -> String {
    let unquoted = default.as_str().map(str::trim).filter(|s| match ty {
        "boolean" => matches!(*s, "true" | "false"),
        "integer" => s.parse::<i64>().is_ok(),
        "number" => s.parse::<f64>().is_ok(),
        _ => false,
    });
    match unquoted {
        Some(s) => format!("remove the quotes: `{s}`"),
        None => format!("give a default of type `{ty}`, or change the `type`"),
    }
}
