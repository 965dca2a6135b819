//! The fast path: the common shapes of templates and expressions, evaluated straight over the
//! run's JSON without the template engine.
//!
//! Workflows mostly interpolate a few variables (`"Answer to '{{ inputs.query }}' from {{
//! state.docs | length }} documents"`) or reshape a list (`state.docs | map(attribute='doc') |
//! list`). Through minijinja each such render converts the values it reads into the engine's
//! values, runs its VM and serializes the result back to JSON: the greater part of a zero-latency
//! mode-1 run. This module recognises, when the plan is compiled, the expressions that are a
//! variable path followed by a chain of simple filters, and the templates that are text with such
//! expressions in `{{ }}`, and evaluates them directly.
//!
//! It is an optimisation only, never a second dialect: whenever a value is not one it handles with
//! certainty (an undefined variable, a float to print, a filter applied to a type it does not
//! cover) it answers `None` and the caller asks the engine, which produces the result or the error
//! exactly as it always does. A differential property test (`tests` below) checks that every
//! answer it gives equals the engine's.
//!
//! Supported: paths `root.key.key` (`root` is `inputs`, `state`, or a variable such as `map`'s
//! `item`); the filters `length`/`count`, `default(literal)`, `map(attribute='name')`, `list`,
//! `join`/`join('sep')`, `first`, `last`, `lower`, `upper`, `trim`; literals `'str'`, `"str"`
//! (without escapes), integers, `true`/`false`/`none` in either case, `[]` and `{}`.

use serde_json::{Map, Value};

use super::Raw;

/// A filter applied to a value.
#[derive(Debug, Clone)]
enum Filter {
    Length,
    Default(Value),
    MapAttribute(Box<str>),
    List,
    Join(Box<str>),
    First,
    Last,
    Lower,
    Upper,
    Trim,
}

/// `path | filter | ...`, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    path: Box<[Box<str>]>,
    filters: Box<[Filter]>,
}

/// A piece of a fast template.
#[derive(Debug, Clone)]
enum Piece {
    Text(Box<str>),
    Expr(Program),
}

/// A template that is text and `{{ expression }}`s only, compiled.
#[derive(Debug, Clone)]
pub(crate) struct FastTemplate {
    pieces: Box<[Piece]>,
    /// Bytes of literal text, to size the output.
    text_len: usize,
}

/// A value while a program runs: undefined, borrowed from the run's JSON, or computed.
enum V<'a> {
    Undefined,
    Ref(&'a Value),
    Owned(Value),
}

impl V<'_> {
    fn get(&self) -> Option<&Value> {
        match self {
            V::Undefined => None,
            V::Ref(v) => Some(v),
            V::Owned(v) => Some(v),
        }
    }
}

// ---- parsing ----------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok<'s> {
    Ident(&'s str),
    Str(&'s str),
    Int(i64),
    Dot,
    Pipe,
    Open,
    Close,
    Comma,
    Eq,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    /// The `}}` closing an expression in a template.
    End,
}

/// A cursor over an expression's source.
struct Lexer<'s> {
    src: &'s str,
    pos: usize,
}

impl<'s> Lexer<'s> {
    fn skip_ws(&mut self) {
        let rest = &self.src[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// The next token; `None` at the end of input or on anything outside the subset.
    fn next(&mut self) -> Option<Tok<'s>> {
        self.skip_ws();
        let rest = &self.src[self.pos..];
        let c = rest.chars().next()?;
        let (tok, len) = match c {
            '.' => (Tok::Dot, 1),
            '|' => (Tok::Pipe, 1),
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            ',' => (Tok::Comma, 1),
            '=' if !rest.starts_with("==") => (Tok::Eq, 1),
            '[' => (Tok::LBracket, 1),
            ']' => (Tok::RBracket, 1),
            '{' => (Tok::LBrace, 1),
            '}' if rest.starts_with("}}") => (Tok::End, 2),
            '}' => (Tok::RBrace, 1),
            '\'' | '"' => {
                let body = &rest[1..];
                let end = body.find(c)?;
                let s = &body[..end];
                if s.contains('\\') {
                    return None;
                }
                (Tok::Str(s), end + 2)
            }
            '0'..='9' => {
                let len = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                let next = rest[len..].chars().next();
                if next.is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric()) {
                    return None;
                }
                (Tok::Int(rest[..len].parse().ok()?), len)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (Tok::Ident(&rest[..len]), len)
            }
            _ => return None,
        };
        self.pos += len;
        Some(tok)
    }

    fn peek(&mut self) -> Option<Tok<'s>> {
        let pos = self.pos;
        let tok = self.next();
        self.pos = pos;
        tok
    }
}

/// Words the engine reads as something other than a variable.
const KEYWORDS: [&str; 14] = [
    "true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else",
    "loop",
];

fn literal(lx: &mut Lexer<'_>) -> Option<Value> {
    Some(match lx.next()? {
        Tok::Str(s) => Value::String(s.to_owned()),
        Tok::Int(i) => Value::from(i),
        Tok::Ident("true" | "True") => Value::Bool(true),
        Tok::Ident("false" | "False") => Value::Bool(false),
        Tok::Ident("none" | "None") => Value::Null,
        Tok::LBracket => {
            (lx.next()? == Tok::RBracket).then_some(())?;
            Value::Array(Vec::new())
        }
        Tok::LBrace => {
            (lx.next()? == Tok::RBrace).then_some(())?;
            Value::Object(Map::new())
        }
        _ => return None,
    })
}

fn filter(lx: &mut Lexer<'_>) -> Option<Filter> {
    let Tok::Ident(name) = lx.next()? else {
        return None;
    };
    let has_args = lx.peek() == Some(Tok::Open);
    if has_args {
        lx.next();
    }
    let filter = match (name, has_args) {
        ("length" | "count", false) => Filter::Length,
        ("list", false) => Filter::List,
        ("first", false) => Filter::First,
        ("last", false) => Filter::Last,
        ("lower", false) => Filter::Lower,
        ("upper", false) => Filter::Upper,
        ("trim", false) => Filter::Trim,
        ("join", false) => Filter::Join("".into()),
        ("join", true) => match lx.next()? {
            Tok::Str(s) => Filter::Join(s.into()),
            _ => return None,
        },
        ("default" | "d", true) => Filter::Default(literal(lx)?),
        ("map", true) => {
            (lx.next()? == Tok::Ident("attribute")).then_some(())?;
            (lx.next()? == Tok::Eq).then_some(())?;
            match lx.next()? {
                Tok::Str(s) if super::is_identifier(s) => Filter::MapAttribute(s.into()),
                _ => return None,
            }
        }
        _ => return None,
    };
    if has_args {
        (lx.next()? == Tok::Close).then_some(())?;
    }
    Some(filter)
}

/// Parses `path (| filter)*` up to the end of the lexer's input or a `}}`.
fn program(lx: &mut Lexer<'_>) -> Option<Program> {
    let mut path = Vec::new();
    loop {
        match lx.next()? {
            Tok::Ident(s) if !KEYWORDS.contains(&s) => path.push(Box::from(s)),
            _ => return None,
        }
        if lx.peek() != Some(Tok::Dot) {
            break;
        }
        lx.next();
    }
    let mut filters = Vec::new();
    while lx.peek() == Some(Tok::Pipe) {
        lx.next();
        filters.push(filter(lx)?);
    }
    Some(Program {
        path: path.into(),
        filters: filters.into(),
    })
}

impl Program {
    /// Compiles an expression, if it is in the subset.
    pub(crate) fn compile(source: &str) -> Option<Program> {
        let mut lx = Lexer {
            src: source,
            pos: 0,
        };
        let p = program(&mut lx)?;
        lx.skip_ws();
        (lx.pos == source.len()).then_some(p)
    }
}

impl FastTemplate {
    /// Compiles a template, if it is text and `{{ expression }}`s in the subset only.
    pub(crate) fn compile(source: &str) -> Option<FastTemplate> {
        let mut pieces = Vec::new();
        let mut text_len = 0;
        let mut rest = source;
        loop {
            let (text, tail) = match rest.find("{{") {
                Some(i) => (&rest[..i], Some(&rest[i + 2..])),
                None => (rest, None),
            };
            if text.contains("{%") || text.contains("{#") {
                return None;
            }
            if !text.is_empty() {
                text_len += text.len();
                pieces.push(Piece::Text(text.into()));
            }
            let Some(tail) = tail else { break };
            // Whitespace control (`{{-`, `{{+`) changes the text around: leave it to the engine.
            if tail.starts_with(['-', '+']) {
                return None;
            }
            let mut lx = Lexer { src: tail, pos: 0 };
            let p = program(&mut lx)?;
            // `program` stops before a token it does not take; it must be the closing `}}`.
            (lx.next()? == Tok::End).then_some(())?;
            if tail[..lx.pos - 2].trim_end().ends_with(['-', '+']) {
                return None;
            }
            pieces.push(Piece::Expr(p));
            rest = &tail[lx.pos..];
        }
        Some(FastTemplate {
            pieces: pieces.into(),
            text_len,
        })
    }

    /// Renders the template, or `None` when the engine must.
    pub(crate) fn render(&self, raw: &Raw<'_>) -> Option<String> {
        let mut out = String::with_capacity(self.text_len + 16 * self.pieces.len());
        for piece in &*self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Expr(p) => print(&mut out, p.eval(raw)?.get()?)?,
            }
        }
        Some(out)
    }
}

/// Appends a value as the engine prints it, for the types whose printing is certain: strings and
/// integers (the engine prints `none` as `None` and floats its own way).
fn print(out: &mut String, v: &Value) -> Option<()> {
    use std::fmt::Write as _;
    match v {
        Value::String(s) => out.push_str(s),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            write!(out, "{n}").ok()?;
        }
        _ => return None,
    }
    Some(())
}

// ---- evaluation -------------------------------------------------------------------------------

impl Program {
    /// The path's value: `V::Undefined` when only its last segment is missing from an object
    /// (the engine's undefined, which `default` replaces), `None` for anything else that is not
    /// there (the engine reports it).
    fn lookup<'a>(&self, raw: &Raw<'a>) -> Option<V<'a>> {
        let (root, rest) = self.path.split_first()?;
        let (mut cur, rest) = match &**root {
            "inputs" => (raw.inputs, rest),
            "state" => {
                let (key, tail) = rest.split_first()?;
                match raw.state.get(key) {
                    Some(v) => (v, tail),
                    None if tail.is_empty() => return Some(V::Undefined),
                    None => return None,
                }
            }
            other => (raw.vars?.as_object()?.get(other)?, rest),
        };
        for (i, seg) in rest.iter().enumerate() {
            match cur.as_object()?.get(&**seg) {
                Some(v) => cur = v,
                None if i + 1 == rest.len() => return Some(V::Undefined),
                None => return None,
            }
        }
        Some(V::Ref(cur))
    }

    /// Evaluates the program as a condition (Jinja truthiness), or `None` when the engine must.
    pub(crate) fn eval_truth(&self, raw: &Raw<'_>) -> Option<bool> {
        self.eval(raw)?.get().map(super::truthy)
    }

    /// Evaluates the program, or `None` when the engine must.
    fn eval<'a>(&self, raw: &Raw<'a>) -> Option<V<'a>> {
        let mut v = self.lookup(raw)?;
        for f in &*self.filters {
            v = apply(f, v)?;
        }
        Some(v)
    }

    /// Evaluates the program to JSON, or `None` when the engine must (an undefined result
    /// included: the engine's error names it).
    pub(crate) fn eval_json(&self, raw: &Raw<'_>) -> Option<Value> {
        match self.eval(raw)? {
            V::Undefined => None,
            V::Ref(v) => Some(v.clone()),
            V::Owned(v) => Some(v),
        }
    }
}

fn string<'v>(v: &'v V<'_>) -> Option<&'v str> {
    v.get()?.as_str()
}

fn apply<'a>(f: &Filter, v: V<'a>) -> Option<V<'a>> {
    Some(match f {
        Filter::Default(d) => match v {
            V::Undefined => V::Owned(d.clone()),
            v => v,
        },
        Filter::Length => V::Owned(Value::from(match v.get()? {
            Value::String(s) => s.chars().count(),
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => return None,
        })),
        Filter::List => match v.get()? {
            Value::Array(_) => v,
            _ => return None,
        },
        Filter::MapAttribute(attr) => {
            let items = v.get()?.as_array()?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(item.as_object()?.get(&**attr)?.clone());
            }
            V::Owned(Value::Array(out))
        }
        Filter::Join(sep) => {
            let mut out = String::new();
            for (i, item) in v.get()?.as_array()?.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                match item {
                    Value::String(s) => out.push_str(s),
                    Value::Number(_) => print(&mut out, item)?,
                    _ => return None,
                }
            }
            V::Owned(Value::String(out))
        }
        Filter::First | Filter::Last => {
            let first = matches!(f, Filter::First);
            match v {
                V::Ref(all) => {
                    let items = all.as_array()?;
                    V::Ref(if first { items.first() } else { items.last() }?)
                }
                V::Owned(Value::Array(items)) => {
                    let mut items = items.into_iter();
                    V::Owned(if first {
                        items.next()
                    } else {
                        items.next_back()
                    }?)
                }
                _ => return None,
            }
        }
        Filter::Lower => V::Owned(Value::String(string(&v)?.to_lowercase())),
        Filter::Upper => V::Owned(Value::String(string(&v)?.to_uppercase())),
        Filter::Trim => {
            let s = string(&v)?;
            let t = s.trim();
            if t.len() == s.len() {
                v
            } else {
                V::Owned(Value::String(t.to_owned()))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::state::StateView;
    use crate::template::{Expr, TemplateEnv, scope};

    /// Expressions over state keys `a`, `b`, `c`, inputs `q`, and the variable `item`.
    const EXPRESSIONS: &[&str] = &[
        "state.a | length",
        "state.b | count",
        "state.a | default('x')",
        "state.a.doc | default('none')",
        "state.a.user | default(0)",
        "state.missing | default([])",
        "state.missing | default({})",
        "state.missing | d(none)",
        "state.a | map(attribute='doc') | list",
        "state.a | map(attribute='doc')",
        "state.a | map(attribute='doc') | join(', ')",
        "state.a | map(attribute='score') | first",
        "state.a | map(attribute='doc') | last | upper",
        "state.a | join",
        "state.c | join('-')",
        "state.a | first",
        "state.a | last",
        "state.a | first | length",
        "state.a | list | length",
        "state.b | lower",
        "state.b | upper",
        "state.b | trim",
        "state.b | trim | length",
        "inputs.q | upper",
        "inputs.q.x | default(none)",
        "item.doc | default('?')",
        "item | length",
        "state.a.doc.x | default(1)",
        "state.a | default(true)",
        "state.c | default(false) | length",
    ];

    const TEMPLATES: &[&str] = &[
        "Answer {{ state.a }} and {{ state.b | length }}",
        "{{ inputs.q }}!",
        "{{state.a|default('none')}} x {{ state.c | join(', ') }}",
        "{{ state.a.doc }}",
        "x {{ item.doc }} y {{ item }}",
        "{{ state.b | trim }}\n",
        "}} {{ state.a | first }} {",
        "for {{ state.a.user | default('a new user') }}.",
        "{{ state.a | map(attribute='doc') | join(' and ') }}",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..100).prop_map(Value::from),
            prop_oneof![Just(0.5), Just(1.0), Just(2.25), Just(-0.0)].prop_map(Value::from),
            prop_oneof![
                Just(""),
                Just("doc"),
                Just(" padded\t"),
                Just("Ünïcode ß"),
                Just("a, b"),
                Just("{{ not a template }}"),
            ]
            .prop_map(Value::from),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            let key = prop_oneof![Just("doc"), Just("score"), Just("user"), Just("x")];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.prop_map(String::from), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn state() -> impl Strategy<Value = Value> {
        let key = prop_oneof![Just("a"), Just("b"), Just("c")];
        prop::collection::btree_map(key.prop_map(String::from), value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// Every answer of the fast path equals the engine's; returns how many it gave.
    fn differential(inputs: &Value, state: &Value, vars: &Value) -> usize {
        let view = StateView::from_object(state);
        let inputs_arc = Arc::new(inputs.clone());
        let vars_arc = Arc::new(vars.clone());
        let ctx = scope(&inputs_arc, &view, Some(&vars_arc));
        let raw = Raw {
            inputs,
            state: &view,
            vars: Some(vars),
        };
        let mut answered = 0;
        for src in EXPRESSIONS {
            let e = Expr::compile(src).unwrap();
            let fast = e.fast.as_ref().expect("in the subset");
            let engine = e.eval(&ctx);
            if let Some(got) = fast.eval_json(&raw) {
                let want = engine.unwrap_or_else(|err| panic!("`{src}`: fast {got}, engine {err}"));
                assert!(
                    !want.is_undefined(),
                    "`{src}`: fast {got}, engine undefined"
                );
                assert_eq!(
                    serde_json::to_value(&want).unwrap(),
                    got,
                    "`{src}` on {state}"
                );
                answered += 1;
            }
            if let Some(got) = fast.eval_truth(&raw) {
                assert_eq!(e.is_true(&ctx).unwrap(), got, "`{src}` as a condition");
            }
        }
        let mut env = TemplateEnv::new();
        for src in TEMPLATES {
            let id = env.add(src).unwrap();
            assert!(
                env.fast[id.0 as usize].is_some(),
                "`{src}` is in the subset"
            );
            if let Some(got) = env.render_fast(id, &raw) {
                let want = env.render(id, &ctx);
                assert_eq!(want.as_deref(), Ok(got.as_str()), "`{src}` on {state}");
                answered += 1;
            }
        }
        answered
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn fast_path_agrees_with_the_engine(
            state in state(),
            q in value(),
            item in value(),
        ) {
            differential(&json!({ "q": q }), &state, &json!({ "item": item }));
        }
    }

    #[test]
    fn the_fast_path_answers_the_common_cases() {
        let state = json!({
            "a": [{ "doc": "guide.pdf", "score": 1, "user": "ann" }, { "doc": "faq.md", "score": 2 }],
            "b": " Hello ",
            "c": ["x", 1, true],
        });
        let answered = differential(
            &json!({ "q": "why?" }),
            &state,
            &json!({ "item": { "doc": "d" } }),
        );
        assert!(answered >= 25, "the fast path answered only {answered}");
    }

    #[test]
    fn outside_the_subset_is_left_to_the_engine() {
        for src in [
            "state.a + 1",
            "state.a['doc']",
            "state.a | map('upper')",
            "state.a | default('x', true)",
            "state.a | tojson",
            "state.a | join(sep)",
            "'lit' | upper",
            "state.a == 1",
            "state.a | default('\\n')",
            "state.a | default(1.5)",
            "true | length",
            "state.a | map(attribute='a.b')",
        ] {
            assert!(Program::compile(src).is_none(), "`{src}`");
        }
        for src in [
            "{% if x %}y{% endif %}",
            "{{- state.a }}",
            "{{ state.a -}}",
            "{{ state.a }}{# comment #}",
            "{{ state.a + 1 }}",
            "{{ state.a ",
        ] {
            assert!(FastTemplate::compile(src).is_none(), "`{src}`");
        }
    }

    #[test]
    fn what_the_fast_path_cannot_print_goes_to_the_engine() {
        let state = json!({ "f": 0.1, "l": [1], "o": {} });
        let view = StateView::from_object(&state);
        let raw = Raw {
            inputs: &json!({}),
            state: &view,
            vars: None,
        };
        for src in [
            "{{ state.f }}",
            "{{ state.l }}",
            "{{ state.o }}",
            "{{ state.missing }}",
        ] {
            let t = FastTemplate::compile(src).unwrap();
            assert_eq!(t.render(&raw), None, "`{src}`");
        }
        let t =
            FastTemplate::compile("{{ state.f | default(2) }} {{ state.missing | default(2) }}")
                .unwrap();
        assert_eq!(t.render(&raw), None);
        let t = FastTemplate::compile("{{ state.missing | default(2) }}").unwrap();
        assert_eq!(t.render(&raw).as_deref(), Some("2"));
    }
}
