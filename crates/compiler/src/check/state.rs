//! State checks: reducers and their defaults, declared writes and reads, fallbacks, reads of keys
//! written by nodes that are not upstream, and concurrent writers of `replace` keys.

use std::collections::BTreeSet;
use std::sync::Arc;

use braid_core::{Reducer, TemplateRead};
use braid_spec::OnError;

use super::{Ancestry, Model, Sink};
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
        let Some(fallback) = &node.fallback else {
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
            let span = m
                .spans
                .key(&format!("/nodes/{}/fallback/{}", escape(name), escape(key)));
            if !node.writes.contains(key) {
                out.push(
                    Diagnostic::error(
                        Code::InvalidFallback,
                        span,
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

/// Checks what each node reads (its `reads`, its templates and its `when`): inputs must be
/// declared, keys declared, and no writer of a key read may run concurrently with the reader.
/// Returns, per node, the keys (positions) it reads.
pub fn reads(
    m: &Model<'_>,
    ancestry: Option<&Ancestry>,
    template_reads: &[Vec<TemplateRead>],
    writers: &[Vec<usize>],
    out: &mut Sink,
) -> Vec<Vec<usize>> {
    let mut all = Vec::with_capacity(m.spec.nodes.len());
    for (n, (name, node)) in m.spec.nodes.iter().enumerate() {
        let mut keys: BTreeSet<usize> = BTreeSet::new();
        let mut reported: BTreeSet<(usize, usize)> = BTreeSet::new();
        let declared = node.reads.iter().enumerate().map(|(i, k)| {
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
        for (pointer, path) in declared.chain(templated) {
            // Only a problem needs a span: finding one walks the document.
            let span = || m.spans.narrow(m.spans.value(&pointer), &path);
            let mut parts = path.splitn(3, '.');
            let root = parts.next().unwrap_or_default();
            let field = parts.next();
            match (root, field) {
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
                    keys.insert(k);
                    let Some(anc) = ancestry else { continue };
                    for &w in &writers[k] {
                        if !anc.concurrent(w, n) || !reported.insert((k, w)) {
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
        all.push(keys.into_iter().collect());
    }
    all
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
pub fn concurrent_replace(
    m: &Model<'_>,
    ancestry: &Ancestry,
    reducers: &[Option<Arc<dyn Reducer>>],
    writers: &[Vec<usize>],
    out: &mut Sink,
) {
    for (k, (key, _)) in m.spec.state.iter().enumerate() {
        if reducers
            .get(k)
            .and_then(Option::as_ref)
            .is_none_or(|r| r.name() != "replace")
        {
            continue;
        }
        let ws = &writers[k];
        for (i, &a) in ws.iter().enumerate() {
            for &b in &ws[i + 1..] {
                if !ancestry.concurrent(a, b) {
                    continue;
                }
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
    }
}
