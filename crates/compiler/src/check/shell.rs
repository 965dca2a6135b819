//! A template inside a script that a shell (or another interpreter) parses: `exec` passes each
//! argument as it is, but `[sh, -c, "grep {{ inputs.q }} f"]` hands the rendered value to `sh` as
//! code, so a value holding `'`, `;` or `$(…)` runs as shell code. A warning, with the fix: pass
//! the value as a separate argument, or through `env`.

use serde_json::Value;

use super::{Model, Sink};
use crate::diagnostic::{Code, Diagnostic};
use crate::load::escape;

/// Interpreters, and the flag after which the next argument is a script.
const INTERPRETERS: &[(&str, char)] = &[
    ("sh", 'c'),
    ("bash", 'c'),
    ("dash", 'c'),
    ("zsh", 'c'),
    ("ksh", 'c'),
    ("ash", 'c'),
    ("mksh", 'c'),
    ("fish", 'c'),
    ("python", 'c'),
    ("python3", 'c'),
    ("node", 'e'),
    ("perl", 'e'),
    ("ruby", 'e'),
];

/// Where in `command` a script with a template is, if it is run by an interpreter: the script's
/// index, and the interpreter and flag, as written.
fn templated_script(command: &[Value]) -> Option<(usize, &'static str, String)> {
    let program = command.first()?.as_str()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    let (name, flag) = INTERPRETERS.iter().find(|(n, _)| *n == base)?;
    // The first option that holds the flag (`-c`, `-ec`, `-lc`), before the first operand
    // (after it, options are the script's own: `python3 x.py -c …`); `-o NAME` takes a value.
    let mut at = None;
    let mut i = 1;
    while let Some(arg) = command.get(i).and_then(Value::as_str) {
        let Some(opts) = arg
            .strip_prefix('-')
            .or_else(|| arg.strip_prefix('+'))
            .filter(|o| !o.is_empty() && !o.starts_with('-'))
        else {
            break;
        };
        if arg.starts_with('-')
            && opts.chars().all(|c| c.is_ascii_alphabetic())
            && opts.contains(*flag)
        {
            at = Some(i);
            break;
        }
        i += if opts == "o" { 2 } else { 1 };
    }
    let at = at?;
    let script = command.get(at + 1)?.as_str()?;
    let option = command[at].as_str().unwrap_or("-c");
    script
        .contains("{{")
        .then(|| (at + 1, *name, option.to_owned()))
}

fn check(node: &str, pointer: &str, with: &Value, out: &mut Sink, m: &Model<'_>) {
    let Some(Value::Array(command)) = with.get("command") else {
        return;
    };
    let Some((index, name, option)) = templated_script(command) else {
        return;
    };
    let shell = !matches!(name, "python" | "python3" | "node" | "perl" | "ruby");
    let help = if shell {
        format!(
            "pass the value as its own argument, `[{name}, {option}, 'grep -- \"$1\" f', {name}, \"{{{{ inputs.q }}}}\"]`, or through `env`: `env: {{ Q: \"{{{{ inputs.q }}}}\" }}` and `\"$Q\"` in the script"
        )
    } else {
        format!(
            "pass the value as its own argument after the script (`{name}` gives it to the script as an argument), or through `env`, and read it there"
        )
    };
    out.push(
        Diagnostic::warning(
            Code::ShellTemplate,
            m.spans.value(&format!("{pointer}/command/{index}")),
            format!(
                "node `{node}` renders a template into the script that `{name} {option}` runs: a value holding quotes, `;` or `$(…)` would run as code"
            ),
        )
        .label("a template inside a script")
        .help(help),
    );
}

/// Warns about templates inside the scripts of `exec` nodes (and of `exec` nodes inside a `map`)
/// whose program is a shell or another interpreter given a script on its command line.
pub fn shell_templates(m: &Model<'_>, out: &mut Sink) {
    for (name, node) in &m.spec.nodes {
        let Some(with) = node.with.as_deref() else {
            continue;
        };
        let pointer = format!("/nodes/{}/with", escape(name));
        match node.kind.as_str() {
            "exec" => check(name, &pointer, with, out, m),
            "map" => {
                let inner = with.get("node");
                if inner
                    .and_then(|n| n.get("kind"))
                    .and_then(Value::as_str)
                    .is_some_and(|k| k == "exec")
                {
                    if let Some(inner_with) = inner.and_then(|n| n.get("with")) {
                        check(name, &format!("{pointer}/node/with"), inner_with, out, m);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::templated_script;

    #[test]
    fn scripts_with_templates_are_found() {
        let cases = [
            (json!(["sh", "-c", "grep {{ inputs.q }} f"]), Some(2)),
            (json!(["/bin/bash", "-euc", "echo {{ inputs.q }}"]), Some(2)),
            (json!(["python3", "-c", "print('{{ inputs.q }}')"]), Some(2)),
            (json!(["node", "-e", "{{ inputs.js }}"]), Some(2)),
            (
                json!(["sh", "-c", "grep -- \"$1\" f", "sh", "{{ inputs.q }}"]),
                None,
            ),
            (json!(["sh", "script.sh", "{{ inputs.q }}"]), None),
            (json!(["grep", "-c", "{{ inputs.q }}"]), None),
            (json!(["python3", "x.py", "-c", "{{ inputs.q }}"]), None),
            (
                json!(["bash", "-o", "pipefail", "-c", "a {{ inputs.q }}"]),
                Some(4),
            ),
        ];
        for (command, expected) in cases {
            let got = templated_script(command.as_array().unwrap()).map(|(i, _, _)| i);
            assert_eq!(got, expected, "{command}");
        }
    }
}
