//! State checks: reducers and their defaults, declared writes and reads, fallbacks, reads of keys
//! written by nodes that are not upstream, and concurrent writers of `replace` keys.

use std::collections::BTreeSet;
use std::sync::Arc;

use braid_core::{Reducer, TemplateRead};
use braid_spec::OnError;

use super::{Conflicts, Model, Sink};
use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::load::escape;

/// Resolves every key's reducer, reporting unknown reducers and defaults they cannot take.
pub fn channels(m: &Model<'_>, out: &mut Sink) -> Vec<Option<Arc<dyn Reducer>>> {
    let mut reducers = Vec::with_capacity(m.spec.state.len());
    for (key, ch) in &m.spec.state {
        let base = format!("/state/{}", escape(key));
        let Some(r) = m.registry.reducer(&ch.reducer) else {
            let names: Vec<&str> = m.registry.reducer_names().collect();
            let mut d = Diagnostic::error(
                Code::UnknownReducer,
                m.spans.value(&format!("{base}/reducer")),
                format!("state key `{key}` has unknown reducer `{}`", ch.reducer),
            )
            .label("no reducer has this name");
            d = match did_you_mean(&ch.reducer, names.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!(
                    "use one of {} or register a reducer named `{}` from Rust",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    ch.reducer
                )),
            };
            out.push(d);
            reducers.push(None);
            continue;
        };
        if let Some(default) = &ch.default {
            if let Err(e) = r.check(default) {
                out.push(
                    Diagnostic::error(
                        Code::InvalidDefault,
                        m.spans.value(&format!("{base}/default")),
                        format!("state key `{key}` cannot start from this default: {e}"),
                    )
                    .help(format!(
                        "give a default the `{}` reducer takes, or change the reducer",
                        r.name()
                    )),
                );
            }
        }
        reducers.push(Some(r.clone()));
    }
    reducers
}

fn undeclared_key(m: &Model<'_>, key: &str) -> String {
    match did_you_mean(key, m.spec.state.keys().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`? Otherwise declare `{key}` under `state:`"),
        None => format!("declare `{key}` under `state:`, with a reducer"),
    }
}

/// Every key a node lists in `writes` or `reads` must be declared under `state:`.
pub fn writes(m: &Model<'_>, out: &mut Sink) {
    for (name, node) in &m.spec.nodes {
        for (i, key) in node.writes.iter().enumerate() {
            if !m.key_index.contains_key(key.as_str()) {
                out.push(
                    Diagnostic::error(
                        Code::UndeclaredWrite,
                        m.node_field(name, &format!("writes/{i}")),
                        format!("node `{name}` writes `{key}`, which `state` does not declare"),
                    )
                    .help(undeclared_key(m, key)),
                );
            }
        }
        for (i, key) in node.reads.iter().enumerate() {
            if !m.key_index.contains_key(key.as_str()) {
                out.push(
                    Diagnostic::error(
                        Code::UnknownReference,
                        m.node_field(name, &format!("reads/{i}")),
                        format!("node `{name}` reads `{key}`, which `state` does not declare"),
                    )
                    .help(undeclared_key(m, key)),
                );
            }
        }
    }
}

/// Fallback keys must be written by the node and taken by their reducer; a fallback on a node
/// whose failure ends the run is never used.
pub fn fallbacks(m: &Model<'_>, reducers: &[Option<Arc<dyn Reducer>>], out: &mut Sink) {
    for (name, node) in &m.spec.nodes {
        let Some(fallback) = node.fallback.as_deref() else {
            continue;
        };
        if node.on_error == OnError::Fail && !fallback.is_empty() {
            out.push(
                Diagnostic::warning(
                    Code::UnusedFallback,
                    m.spans.key(&format!("/nodes/{}/fallback", escape(name))),
                    format!("node `{name}` has a `fallback` but `on_error: fail`, so it is never written"),
                )
                .label("never written")
                .help("add `on_error: continue` to write the fallback and go on when the node fails"),
            );
        }
        for (key, value) in fallback {
            if !node.writes.contains(key) {
                out.push(
                    Diagnostic::error(
                        Code::InvalidFallback,
                        m.spans
                            .key(&format!("/nodes/{}/fallback/{}", escape(name), escape(key))),
                        format!("node `{name}` falls back on `{key}`, which it does not list in `writes`"),
                    )
                    .help(format!("add `{key}` to the node's `writes`, or remove it from `fallback`")),
                );
                continue;
            }
            let Some(&k) = m.key_index.get(key.as_str()) else {
                continue;
            };
            if let Some(Some(r)) = reducers.get(k) {
                if let Err(e) = r.check(value) {
                    out.push(
                        Diagnostic::error(
                            Code::InvalidFallback,
                            m.spans.value(&format!(
                                "/nodes/{}/fallback/{}",
                                escape(name),
                                escape(key)
                            )),
                            format!("node `{name}`'s fallback for `{key}` cannot be folded: {e}"),
                        )
                        .help(format!("give a value the `{}` reducer takes", r.name())),
                    );
                }
            }
        }
    }
}

/// Names the engine provides to every template: not references to inputs or state.
const TEMPLATE_GLOBALS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "true",
    "false",
    "none",
];

/// Every read of a node, as (JSON pointer of the text that reads, variable path): its declared
/// `reads` first, then what its templates and `when` read, in order.
fn read_paths<'a>(
    m: &'a Model<'_>,
    n: usize,
    name: &'a str,
    template_reads: &'a [Vec<TemplateRead>],
) -> impl Iterator<Item = (String, String)> + 'a {
    let declared = m.spec.nodes[n].reads.iter().enumerate().map(move |(i, k)| {
        (
            format!("/nodes/{}/reads/{i}", escape(name)),
            format!("state.{k}"),
        )
    });
    let templated = template_reads
        .get(n)
        .into_iter()
        .flatten()
        .map(|r| (r.pointer.clone(), r.path.clone()));
    declared.chain(templated)
}

/// A variable path's root and first field: `state.a.b` is (`state`, `a`).
fn root_field(path: &str) -> (&str, Option<&str>) {
    let mut parts = path.splitn(3, '.');
    (parts.next().unwrap_or_default(), parts.next())
}

/// Per node, the state keys (declaration positions, ascending) it reads: through its `reads`,
/// its templates and its `when`. Names that resolve to no key are left out (`reads` reports them).
pub fn read_keys(m: &Model<'_>, template_reads: &[Vec<TemplateRead>]) -> Vec<Vec<usize>> {
    let mut all = Vec::with_capacity(m.spec.nodes.len());
    for n in 0..m.spec.nodes.len() {
        let declared = m.spec.nodes[n].reads.iter().map(String::as_str);
        let templated =
            template_reads
                .get(n)
                .into_iter()
                .flatten()
                .filter_map(|r| match root_field(&r.path) {
                    ("state", Some(key)) => Some(key),
                    _ => None,
                });
        let mut keys: Vec<usize> = declared
            .map(|k| root_field(k).0)
            .chain(templated)
            .filter_map(|k| m.key_index.get(k).copied())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        all.push(keys);
    }
    all
}

/// Checks what each node reads (its `reads`, its templates and its `when`): inputs must be
/// declared, keys declared, and no writer of a key read may run concurrently with the reader
/// (`conflicts` says which do; `None` when the graph has a cycle, and then this is not checked).
pub fn reads(
    m: &Model<'_>,
    conflicts: Option<&Conflicts>,
    template_reads: &[Vec<TemplateRead>],
    out: &mut Sink,
) {
    for (n, name) in m.spec.nodes.keys().enumerate() {
        let mut reported: BTreeSet<(usize, usize)> = BTreeSet::new();
        for (pointer, path) in read_paths(m, n, name, template_reads) {
            // Only a problem needs a span: finding one walks the document.
            let span = || m.spans.narrow(m.spans.value(&pointer), &path);
            match root_field(&path) {
                ("inputs", None) => {}
                ("inputs", Some(input)) => {
                    if !m.spec.inputs.contains_key(input) {
                        let mut d = Diagnostic::error(
                            Code::UnknownReference,
                            span(),
                            format!(
                                "node `{name}` reads `inputs.{input}`, which `inputs` does not declare"
                            ),
                        );
                        d = match did_you_mean(input, m.spec.inputs.keys().map(String::as_str)) {
                            Some(s) => d.help(format!("did you mean `inputs.{s}`?")),
                            None => {
                                d.help(format!("declare `{input}` under `inputs:`, with a type"))
                            }
                        };
                        out.push(d);
                    }
                }
                ("state", None) => out.push(
                    Diagnostic::error(
                        Code::UnknownReference,
                        span(),
                        format!("node `{name}` reads the whole `state`; name the keys it reads"),
                    )
                    .help(
                        "write `state.KEY` for each key, so Braid can check it is written upstream",
                    ),
                ),
                ("state", Some(key)) => {
                    let Some(&k) = m.key_index.get(key) else {
                        if pointer.contains("/reads/") {
                            continue; // reported by `writes`
                        }
                        out.push(
                            Diagnostic::error(
                                Code::UnknownReference,
                                span(),
                                format!("node `{name}` reads `state.{key}`, which `state` does not declare"),
                            )
                            .help(undeclared_key(m, key)),
                        );
                        continue;
                    };
                    let Some(conflicts) = conflicts else { continue };
                    for w in conflicts.readers(n, k) {
                        if !reported.insert((k, w)) {
                            continue;
                        }
                        let writer = m.node_name(w);
                        let at = m.spec.nodes[w]
                            .writes
                            .iter()
                            .position(|x| x == key)
                            .unwrap_or(0);
                        out.push(
                            Diagnostic::error(
                                Code::NonUpstreamRead,
                                span(),
                                format!(
                                    "node `{name}` reads `state.{key}`, but `{writer}`, which writes it, is not upstream of `{name}`"
                                ),
                            )
                            .label(format!("`{writer}` may still be running when `{name}` reads this"))
                            .with_label(m.node_field(writer, &format!("writes/{at}")), format!("`{writer}` writes `{key}`"))
                            .help(format!("add `{writer}` to the `needs` of `{name}`")),
                        );
                    }
                }
                (other, _) if TEMPLATE_GLOBALS.contains(&other) => {}
                (other, _) => out.push(
                    Diagnostic::error(
                        Code::UnknownReference,
                        span(),
                        format!("node `{name}` uses unknown variable `{other}`"),
                    )
                    .help(unknown_variable_help(m, other)),
                ),
            }
        }
    }
}

/// A bare variable is most often an input or a state key written without its prefix.
fn unknown_variable_help(m: &Model<'_>, variable: &str) -> String {
    if m.spec.inputs.contains_key(variable) {
        format!("did you mean `inputs.{variable}`?")
    } else if m.key_index.contains_key(variable) {
        format!("did you mean `state.{variable}`?")
    } else {
        "templates and `when` read `inputs.NAME` and `state.NAME`".to_owned()
    }
}

/// Two writers of a `replace` key must never run concurrently: whichever finished last would win.
/// `conflicts` lists the pairs that may, by key and then file order.
pub fn concurrent_replace(m: &Model<'_>, conflicts: &Conflicts, out: &mut Sink) {
    for (k, a, b) in conflicts.replace() {
        let Some((key, _)) = m.spec.state.get_index(k) else {
            continue;
        };
        let (an, bn) = (m.node_name(a), m.node_name(b));
        let pos = |node: &str| {
            m.spec.nodes[node]
                .writes
                .iter()
                .position(|x| x == key)
                .unwrap_or(0)
        };
        out.push(
            Diagnostic::error(
                Code::ConcurrentReplace,
                m.node_field(bn, &format!("writes/{}", pos(bn))),
                format!("`{an}` and `{bn}` may run concurrently and both write `replace` key `{key}`"),
            )
            .label(format!("`{bn}` writes `{key}`"))
            .with_label(m.node_field(an, &format!("writes/{}", pos(an))), format!("`{an}` writes `{key}`"))
            .help(format!(
                "add `{an}` to the `needs` of `{bn}` (or the reverse), or give `{key}` a reducer that combines values, such as `append` or `merge`"
            )),
        );
    }
}
