//! What a node's kind will write, checked against the node's `writes` before anything runs.
//!
//! Kinds declare the keys they write while they build (`BuildContext::will_write`: `map`'s
//! `into`, the keys of `llm`'s and `http`'s `output`, of a sub-workflow's `outputs`). A key the
//! node does not list in `writes` would fail the node with `invalid_output` only after its work
//! was done (a paid LLM call, a sub-run); here it is an `undeclared-write` at the line that names
//! it.

use braid_core::{KindWrite, NamedAs};

use super::{Model, Sink};
use crate::diagnostic::{Code, Diagnostic, did_you_mean};

/// Every key a node's kind declared (`writes[node]`, by file position) must be in the node's
/// `writes`.
pub fn kind_writes(m: &Model<'_>, writes: &[Vec<KindWrite>], out: &mut Sink) {
    for ((name, node), declared) in m.spec.nodes.iter().zip(writes) {
        for w in declared {
            if node.writes.contains(&w.key) {
                continue;
            }
            let span = match w.named_as {
                NamedAs::Key => m.spans.key(&w.pointer),
                NamedAs::Value => m.spans.value(&w.pointer),
            };
            let field = field_of(&w.pointer);
            let key = &w.key;
            let help = match did_you_mean(key, node.writes.iter().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`? Otherwise add `{key}` to `writes`"),
                None if m.key_index.contains_key(key.as_str()) => {
                    format!("add `{key}` to the node's `writes`")
                }
                None => format!(
                    "add `{key}` to the node's `writes`, and declare it under `state:` with a reducer"
                ),
            };
            out.push(
                Diagnostic::error(
                    Code::UndeclaredWrite,
                    span,
                    format!(
                        "node `{name}` writes `{key}` (its `{field}`), which its `writes` does not list"
                    ),
                )
                .label("written here")
                .help(help),
            );
        }
    }
}

/// The field of `with:` a pointer names, dotted: `/nodes/a/with/output/text` → `with.output.text`.
fn field_of(pointer: &str) -> String {
    let parts: Vec<String> = pointer
        .split('/')
        .skip(3)
        .map(|seg| seg.replace("~1", "/").replace("~0", "~"))
        .collect();
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn fields_are_dotted_from_with() {
        assert_eq!(field_of("/nodes/a/with/into"), "with.into");
        assert_eq!(field_of("/nodes/a/with/output/a~1b"), "with.output.a/b");
    }
}
