//! Workflow-shaped text built from fragments, to get past the YAML and schema layers that random
//! bytes rarely pass and reach the semantic checks and lowering (name resolution, cycles, reads and
//! writes, reducers, templates, durations, policies).
//!
//! `arbitrary` picks a skeleton (header, inputs, state, execution, nodes) whose names, kinds,
//! keys, values, durations, conditions and templates come from small pools of plausible and
//! slightly wrong choices, then splices in lines taken from the real workflows in `workflows/`
//! (collected by `build.rs`), possibly re-indented, and a few raw strings. A node's `when` or a
//! `with: output:` value may instead be a `Text`: pieces (names, operators, every template delimiter,
//! balanced or not) in any order, plain or quoted, so the template engine's lexer and parser see
//! unbalanced and stray delimiters (issue 17: `when: a }}}` made minijinja panic).

#![no_main]

mod common;

use std::fmt::Write as _;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const WORKFLOW_LINES: &str = include_str!(concat!(env!("OUT_DIR"), "/workflow_lines.txt"));

const VERSIONS: &[&str] = &["1", "1", "1", "2", "\"1\"", "0", "1.0", "-1", "99999999999999999999"];
const WF_NAMES: &[&str] = &["fuzz", "mode1-manual", "a.b_c", "-bad", "", "\"quoted\"", "1"];
const NODE_NAMES: &[&str] = &[
    "rag", "tools", "memory", "llm", "quality", "citations", "cost_tracking", "a", "b", "join", "_x",
    "rag-2", "1bad", "bad name", "\"\"", "inputs", "state",
];
const KINDS: &[&str] = &["mock", "mock", "transform", "noop", "noop", "mokc", "Mock", "\"\"", "custom", "[mock]"];
const KEYS: &[&str] = &[
    "rag_results", "suggested_tools", "memory", "response", "quality_score", "citations", "cost_usd",
    "cost_report", "query", "user_id", "enable_rag", "x", "bad-key", "_", "\"\"",
];
const TYPES: &[&str] = &["string", "number", "integer", "boolean", "object", "array", "any", "float", "[string]"];
const REDUCERS: &[&str] = &["replace", "append", "merge", "sum", "min", "max", "union", "concat", "\"\"", "Replace"];
const VALUES: &[&str] = &[
    "[]", "{}", "0", "1", "-1", "1.5", "0.87", "true", "false", "null", "~", "\"text\"", "[1, 2]",
    "{ a: 1 }", "[{ doc: a.pdf, score: 0.9 }]", "\"{{ inputs.query }}\"", "&anchor 1", "*anchor", "1e309",
    "18446744073709551616", "-9223372036854775809", ".nan", ".inf", "0x1F", "0o17", "yes", "'single'",
    "!!str 1", "!custom 1", "\"\\u0000\"", "[[[[[[[[[[]]]]]]]]]]", "{ a: { b: { c: [1, { d: 2 }] } } }",
];
const DURATIONS: &[&str] = &[
    "0ms", "1ms", "50ms", "500ms", "2s", "1m", "1h", "10", "1.5s", "-1s", "99999999999999h",
    "18446744073709551615ms", "\"\"", "0", "1ms2", "1 s", "1d", "0.0001ms", "1e3ms", "{ p50: 400ms, p95: 900ms }",
    "{ p50: 900ms, p95: 400ms }", "{ p50: 0ms, p95: 0ms }",
];
const CONDITIONS: &[&str] = &[
    "inputs.enable_rag", "inputs.enable_tools", "not inputs.enable_rag", "state.cost_usd > 1",
    "state.rag_results | length > 0", "inputs.missing", "state.nope", "true", "1 +", "{{ inputs.x }}",
    "\"\"", "inputs.query == 'a' and state.x", "(((((", "range(1000000000) | length",
    // Unbalanced and stray delimiters (issue 17: `a }}}` made the engine's lexer panic).
    "inputs.enable_rag }}}", "inputs.enable_rag }} x", "a -}}b", "a +}} ", "(a }}", "a) }}}}",
    "[a }}", "{a: b}}}", "'}}' }}}", "\"{{ inputs.x }}}\"", "{{ inputs.x", "a }", "a %} b",
    "{% if a %}", "a #} b", "\"a }}\\n\"",
];
const TEMPLATES: &[&str] = &[
    "\"{{ inputs.query }}\"", "\"{{ state.rag_results | map(attribute='doc') | list }}\"",
    "\"{{ state.memory.user | default('a new user') }}\"", "\"{% for c in state.citations %}{{ c }}{% endfor %}\"",
    "\"{{ 1 / 0 }}\"", "\"{{ inputs.query\"", "\"{{ state.nope }}\"", "\"{{ }}\"", "\"{% if %}\"",
    "\"{{ inputs.query | nosuchfilter }}\"", "\"{{ state.cost_usd }}\"", "\"{% macro m() %}{% endmacro %}\"",
    "\"{{ self }}\"", "\"{% include 'x' %}\"", "\"{% raw %}{{{% endraw %}\"",
    // Unbalanced and stray delimiters.
    "\"{{ inputs.query }}}\"", "\"{{ inputs.query }} }}\"", "\"{{{{ inputs.query }}\"",
    "\"{{ inputs.query -}}}\"", "\"{{ '}}' }}\"", "\"{% if inputs.query %}}}{% endif %}\"",
    "\"{# }} #}}\"", "\"{% raw %}}}{% endraw %}}\"", "\"{{ {'a': 1}}}\"", "\"}}{{\"",
    "\"{%- for c in state.citations -%}}{% endfor %}\"", "\"{{ (inputs.query }}\"",
];
/// Pieces of expressions and templates, joined in any order by `Text`: names, operators and
/// every delimiter, balanced or not, so the engine's lexer sees any sequence of them.
const PIECES: &[&str] = &[
    "inputs", "state", ".", "query", "enable_rag", "x", " ", "}}", "{{", "}", "{", "(", ")", "[", "]",
    "'", "\"", "-", "+", "|", "length", "default", "and", "not", "==", "%}", "{%", "#}", "{#", "~",
    "\\", "0", "1.5", ",", ":", "if", "for", "in", "endif", "endfor", "raw", "endraw", "item", "\n",
];
const ON_ERROR: &[&str] = &["fail", "continue", "ignore", "retry", "\"\""];
const MODES: &[&str] = &["parallel", "sequential", "random"];

fn pick(pool: &[&'static str], i: u8) -> &'static str {
    pool[usize::from(i) % pool.len()]
}

#[derive(Arbitrary, Debug)]
struct Doc {
    version: Option<u8>,
    name: Option<u8>,
    description: bool,
    inputs: Vec<(u8, u8, Option<u8>)>,
    state: Vec<(u8, Option<u8>, Option<u8>)>,
    execution: Option<(Option<u8>, Option<u8>, Option<u8>)>,
    nodes: Vec<Node>,
    splices: Vec<Splice>,
}

#[derive(Arbitrary, Debug)]
struct Node {
    name: u8,
    kind: Option<u8>,
    needs: Vec<u8>,
    when: Option<u8>,
    /// A `when` built from pieces instead (wins over `when`).
    when_text: Option<Text>,
    reads: Vec<u8>,
    writes: Vec<u8>,
    timeout: Option<u8>,
    retry: Option<(u8, Option<u8>, Option<u8>)>,
    on_error: Option<u8>,
    fallback: Vec<(u8, u8)>,
    with: Option<Vec<With>>,
}

/// A string made of [`PIECES`], written as a plain or a double-quoted YAML scalar.
#[derive(Arbitrary, Debug)]
struct Text {
    quoted: bool,
    pieces: Vec<u8>,
}

impl Text {
    fn yaml(&self) -> String {
        let text: String = self.pieces.iter().take(48).map(|&p| pick(PIECES, p)).collect();
        if self.quoted {
            serde_json::to_string(&text).unwrap_or_default()
        } else {
            text.replace('\n', " ")
        }
    }
}

#[derive(Arbitrary, Debug)]
enum With {
    Latency(u8),
    Output(Vec<(u8, bool, u8)>),
    RawOutput(u8),
    FailFirst(u8),
    FailRate(u8),
    Error(u8),
    Panic(bool),
    Hang(bool),
    Unknown(u8),
    /// An output whose value is a template made of pieces.
    OutputText(u8, Text),
}

#[derive(Arbitrary, Debug)]
enum Splice {
    /// A line of a real workflow, at a position, optionally re-indented.
    Line { at: u16, line: u16, indent: Option<u8> },
    /// A few raw characters at a position.
    Raw { at: u16, text: String },
    /// Remove a line.
    Delete { at: u16 },
}

fn render(doc: &Doc) -> String {
    let mut y = String::new();
    if let Some(v) = doc.version {
        let _ = writeln!(y, "version: {}", pick(VERSIONS, v));
    }
    if let Some(n) = doc.name {
        let _ = writeln!(y, "name: {}", pick(WF_NAMES, n));
    }
    if doc.description {
        y.push_str("description: a workflow built by the fuzzer\n");
    }
    if !doc.inputs.is_empty() {
        y.push_str("inputs:\n");
        for &(k, t, d) in &doc.inputs {
            let _ = write!(y, "  {}: {{ type: {}", pick(KEYS, k), pick(TYPES, t));
            if let Some(d) = d {
                let _ = write!(y, ", default: {}", pick(VALUES, d));
            }
            y.push_str(" }\n");
        }
    }
    if !doc.state.is_empty() {
        y.push_str("state:\n");
        for &(k, r, d) in &doc.state {
            let _ = write!(y, "  {}: {{", pick(KEYS, k));
            let mut sep = " ";
            if let Some(r) = r {
                let _ = write!(y, "{sep}reducer: {}", pick(REDUCERS, r));
                sep = ", ";
            }
            if let Some(d) = d {
                let _ = write!(y, "{sep}default: {}", pick(VALUES, d));
            }
            y.push_str(" }\n");
        }
    }
    if let Some((mode, conc, timeout)) = doc.execution {
        y.push_str("execution:\n");
        if let Some(m) = mode {
            let _ = writeln!(y, "  mode: {}", pick(MODES, m));
        }
        if let Some(c) = conc {
            let _ = writeln!(y, "  max_concurrency: {}", i16::from(c) - 8);
        }
        if let Some(t) = timeout {
            let _ = writeln!(y, "  timeout: {}", pick(DURATIONS, t));
        }
    }
    if !doc.nodes.is_empty() {
        y.push_str("nodes:\n");
    }
    for n in &doc.nodes {
        render_node(n, &mut y);
    }
    y
}

fn list(pool: &[&'static str], items: &[u8]) -> String {
    items.iter().map(|&i| pick(pool, i)).collect::<Vec<_>>().join(", ")
}

fn render_node(n: &Node, y: &mut String) {
    let _ = writeln!(y, "  {}:", pick(NODE_NAMES, n.name));
    if let Some(k) = n.kind {
        let _ = writeln!(y, "    kind: {}", pick(KINDS, k));
    }
    if !n.needs.is_empty() {
        let _ = writeln!(y, "    needs: [{}]", list(NODE_NAMES, &n.needs));
    }
    if let Some(t) = &n.when_text {
        let _ = writeln!(y, "    when: {}", t.yaml());
    } else if let Some(w) = n.when {
        let _ = writeln!(y, "    when: {}", pick(CONDITIONS, w));
    }
    if !n.reads.is_empty() {
        let _ = writeln!(y, "    reads: [{}]", list(KEYS, &n.reads));
    }
    if !n.writes.is_empty() {
        let _ = writeln!(y, "    writes: [{}]", list(KEYS, &n.writes));
    }
    if let Some(t) = n.timeout {
        let _ = writeln!(y, "    timeout: {}", pick(DURATIONS, t));
    }
    if let Some((attempts, backoff, multiplier)) = n.retry {
        let _ = write!(y, "    retry: {{ attempts: {}", i16::from(attempts) - 20);
        if let Some(b) = backoff {
            let _ = write!(y, ", backoff: {}", pick(DURATIONS, b));
        }
        if let Some(m) = multiplier {
            let _ = write!(y, ", multiplier: {}", f64::from(m) / 16.0);
        }
        y.push_str(" }\n");
    }
    if let Some(e) = n.on_error {
        let _ = writeln!(y, "    on_error: {}", pick(ON_ERROR, e));
    }
    if !n.fallback.is_empty() {
        y.push_str("    fallback:\n");
        for &(k, v) in &n.fallback {
            let _ = writeln!(y, "      {}: {}", pick(KEYS, k), pick(VALUES, v));
        }
    }
    if let Some(with) = &n.with {
        y.push_str("    with:\n");
        for w in with {
            match w {
                With::Latency(d) => {
                    let _ = writeln!(y, "      latency: {}", pick(DURATIONS, *d));
                }
                With::Output(entries) => {
                    y.push_str("      output:\n");
                    for &(k, template, v) in entries {
                        let value = if template { pick(TEMPLATES, v) } else { pick(VALUES, v) };
                        let _ = writeln!(y, "        {}: {}", pick(KEYS, k), value);
                    }
                }
                With::RawOutput(v) => {
                    let _ = writeln!(y, "      raw_output: {}", pick(VALUES, *v));
                }
                With::FailFirst(n) => {
                    let _ = writeln!(y, "      fail_first: {}", i16::from(*n) - 4);
                }
                With::FailRate(r) => {
                    let _ = writeln!(y, "      fail_rate: {}", f64::from(*r) / 200.0);
                }
                With::Error(v) => {
                    let _ = writeln!(y, "      error: {}", pick(TEMPLATES, *v));
                }
                With::Panic(b) => {
                    let _ = writeln!(y, "      panic: {b}");
                }
                With::Hang(b) => {
                    let _ = writeln!(y, "      hang: {b}");
                }
                With::Unknown(v) => {
                    let _ = writeln!(y, "      {}: {}", pick(KEYS, *v), pick(VALUES, *v));
                }
                With::OutputText(k, t) => {
                    let _ = writeln!(y, "      output:\n        {}: {}", pick(KEYS, *k), t.yaml());
                }
            }
        }
    }
}

fn splice(text: String, splices: &[Splice]) -> String {
    if splices.is_empty() {
        return text;
    }
    let pool: Vec<&str> = WORKFLOW_LINES.lines().collect();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for s in splices {
        match s {
            Splice::Line { at, line, indent } => {
                let Some(&l) = pool.get(usize::from(*line) % pool.len().max(1)) else { continue };
                let l = match indent {
                    Some(i) => format!("{}{}", " ".repeat(usize::from(*i % 4) * 2), l.trim_start()),
                    None => l.to_owned(),
                };
                let at = usize::from(*at) % (lines.len() + 1);
                lines.insert(at, l);
            }
            Splice::Raw { at, text } => {
                let at = usize::from(*at) % (lines.len() + 1);
                lines.insert(at, text.chars().take(64).collect());
            }
            Splice::Delete { at } => {
                if !lines.is_empty() {
                    let at = usize::from(*at) % lines.len();
                    lines.remove(at);
                }
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fuzz_target!(|doc: Doc| {
    let text = splice(render(&doc), &doc.splices);
    common::check(&text);
});
