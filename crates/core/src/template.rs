//! Templates and expressions: one engine (minijinja) for both.
//!
//! Every template and `when` expression in a workflow is compiled at validation time, so a typo is a
//! diagnostic rather than a run-time surprise, and its variables are known (the compiler uses them to
//! prove a node reads only state written upstream of it). At run time they are evaluated with
//! bounded fuel ([`FUEL`]) and strict undefined handling: reading a value that is not there is an
//! error (naming the expression, for single-expression strings), never a silent empty string.
//!
//! A string that is exactly one `{{ expression }}` keeps the expression's type (`"{{ state.docs |
//! length }}"` is the number `3`, not the string `"3"`); any other string with `{{`/`{%` renders to a
//! string; strings without either are literals.
//!
//! Every call that makes the engine parse text goes through one function, `engine`, which keeps
//! a panic inside minijinja from unwinding into the compiler: it becomes a [`TemplateError`] of
//! kind [`TemplateErrorKind::EnginePanic`], which the compiler reports as an `internal`
//! diagnostic. The same function steers around the one such panic known (see
//! `stray_variable_end`), so that typo is an ordinary syntax error.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock};

use minijinja::{AutoEscape, Environment, Expression, UndefinedBehavior};
use serde_json::Value;

mod declared;
mod fast;

pub use declared::{TemplateVars, declared_vars};

/// Instructions one evaluation of a template or expression may execute before it fails. Bounds a
/// template's loops; generous for prompts over thousands of documents.
pub const FUEL: u64 = 1_000_000;

fn configure(env: &mut Environment<'static>) {
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
}

static EXPR_ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    configure(&mut env);
    env
});

/// A template or expression that did not compile or evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// Lowercase description, such as "syntax error: unexpected end of input".
    pub message: String,
    /// The byte range within the template's source, when the engine knows it.
    pub range: Option<std::ops::Range<usize>>,
    /// Whose fault it is: the text's, or the engine's.
    pub kind: TemplateErrorKind,
}

/// Whose fault a [`TemplateError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateErrorKind {
    /// The engine refused the text or its evaluation: a syntax error, an undefined value, a type
    /// error, fuel exhausted. The user's to fix.
    Engine,
    /// The engine panicked while compiling the text: a bug in minijinja (or in how Braid calls
    /// it), caught by `engine`. To be reported, not fixed by the user.
    EnginePanic,
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        let message = match e.detail() {
            Some(detail) => format!("{}: {detail}", e.kind()),
            None => e.kind().to_string(),
        };
        TemplateError {
            message,
            range: e.range(),
            kind: TemplateErrorKind::Engine,
        }
    }
}

/// What [`engine`] is asked to compile, for the message when the engine panics.
#[derive(Debug, Clone, Copy)]
enum Compiling {
    Expression,
    Template,
}

/// Calls minijinja to compile `source`, the one place Braid makes the engine parse text.
///
/// A panic inside the engine is caught and becomes a [`TemplateErrorKind::EnginePanic`] error
/// naming the text, so a bad file can never take down the compiler (or a service reloading
/// files). The engine's own state is not trusted after such a panic, but it need not be: the
/// error keeps the plan from being built, and the environment (a plan's, or the shared
/// expression one, which compiling does not modify) is only read for the other templates'
/// diagnostics.
fn engine<T>(
    what: Compiling,
    source: &str,
    compile: impl FnOnce() -> Result<T, minijinja::Error>,
) -> Result<T, TemplateError> {
    match catch_unwind(AssertUnwindSafe(compile)) {
        Ok(result) => result.map_err(TemplateError::from),
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("no message");
            let what = match what {
                Compiling::Expression => "expression",
                Compiling::Template => "template",
            };
            Err(TemplateError {
                message: format!(
                    "the template engine (minijinja) panicked compiling the {what} `{source}`: {why}"
                ),
                range: None,
                kind: TemplateErrorKind::EnginePanic,
            })
        }
    }
}

/// Where a standalone expression should be cut so that minijinja cannot panic on it: just after
/// the first `}}` that closes no bracket, outside string literals (`None`: nowhere).
///
/// minijinja's lexer reads such a `}}` as the end of a `{{ }}` block even in a standalone
/// expression, and pops the only state it has; if any text follows, the next token panics
/// (`empty lexer stack`, minijinja 2.24.0; see docs/fuzzing.md, "Known third-party issues").
/// Cut there, the engine stops at the `}}` and reports it as a syntax error at that spot. The
/// cut cannot change the meaning of a valid expression: no valid expression has such a `}}`.
/// This follows the lexer: brackets count from the first character (a closing one may take the
/// count below zero, and then no `}}` ends anything), and a string runs to its unescaped quote.
fn stray_variable_end(source: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut depth: isize = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'}' if depth == 0 && bytes.get(i + 1) == Some(&b'}') => return Some(i + 2),
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            quote @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A compiled expression, such as a node's `when`.
pub struct Expr {
    source: Arc<str>,
    compiled: Expression<'static, 'static>,
    /// When the expression is a plain path (`inputs.query`, `state.memory.user`): its segments,
    /// so it can be read straight from the JSON, without the engine.
    path: Option<Box<[Box<str>]>>,
    /// When the expression is a path followed by simple filters: the [`fast`] program.
    fast: Option<fast::Program>,
}

/// The raw values behind a render context, for expressions that are plain paths.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    /// The run's inputs.
    pub inputs: &'a Value,
    /// The state the node may read.
    pub state: &'a crate::state::StateView,
    /// Extra variables (a JSON object), if any.
    pub vars: Option<&'a Value>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Jinja's truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    /// Compiles an expression.
    ///
    /// # Errors
    ///
    /// When the expression does not parse.
    pub fn compile(source: &str) -> Result<Expr, TemplateError> {
        let lexed = stray_variable_end(source).map_or(source, |end| &source[..end]);
        let compiled = engine(Compiling::Expression, source, || {
            EXPR_ENV.compile_expression_owned(lexed.to_owned())
        })?;
        let trimmed = source.trim();
        let keywords = ["true", "false", "none", "True", "False", "None"];
        let path = (trimmed.split('.').all(is_identifier) && !keywords.contains(&trimmed))
            .then(|| trimmed.split('.').map(Box::from).collect());
        let fast = if path.is_none() {
            fast::Program::compile(source)
        } else {
            None
        };
        Ok(Expr {
            source: source.into(),
            compiled,
            path,
            fast,
        })
    }

    /// For a plain path: its value (`None`: undefined). `None` when the expression is not a
    /// path, or reads the whole state.
    pub fn lookup<'a>(&self, raw: &Raw<'a>) -> Option<Option<&'a Value>> {
        let path = self.path.as_deref()?;
        let (root, rest) = path.split_first()?;
        let mut cur = match &**root {
            "inputs" => Some(raw.inputs),
            "state" => {
                let (key, tail) = rest.split_first()?;
                let mut cur = raw.state.get(key);
                for seg in tail {
                    cur = cur.and_then(|v| v.get(&**seg));
                }
                return Some(cur);
            }
            other => raw.vars.and_then(|v| v.get(other)),
        };
        for seg in rest {
            cur = cur.and_then(|v| v.get(&**seg));
        }
        Some(cur)
    }

    fn undefined(&self) -> TemplateError {
        TemplateError {
            message: format!("`{}` is undefined", self.source),
            range: None,
            kind: TemplateErrorKind::Engine,
        }
    }

    /// Evaluates the expression as a condition, reading a plain path straight from `raw` and
    /// building the engine's context (`ctx`) only when needed.
    ///
    /// # Errors
    ///
    /// As [`eval`](Expr::eval). A path whose last key is missing is false, as in the engine.
    pub fn truth(
        &self,
        raw: &Raw<'_>,
        ctx: impl FnOnce() -> minijinja::Value,
    ) -> Result<bool, TemplateError> {
        match self.lookup(raw) {
            Some(Some(v)) => Ok(truthy(v)),
            // Undefined: the engine decides, as for any other expression (a missing key is
            // false; reading through a missing parent is an error).
            Some(None) => self.is_true(&ctx()),
            None => match self.fast.as_ref().and_then(|f| f.eval_truth(raw)) {
                Some(b) => Ok(b),
                None => self.is_true(&ctx()),
            },
        }
    }

    /// The expression's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression against a context built by [`context`].
    ///
    /// # Errors
    ///
    /// When evaluation fails: an undefined variable, a type error, fuel exhausted.
    pub fn eval(&self, ctx: &minijinja::Value) -> Result<minijinja::Value, TemplateError> {
        Ok(self.compiled.eval(ctx)?)
    }

    /// Evaluates the expression as a condition (Jinja truthiness).
    ///
    /// # Errors
    ///
    /// As [`eval`](Expr::eval).
    pub fn is_true(&self, ctx: &minijinja::Value) -> Result<bool, TemplateError> {
        Ok(self.eval(ctx)?.is_true())
    }

    /// The variables the expression reads, as dotted paths (`inputs.query`, `state.docs`).
    pub fn variables(&self) -> BTreeSet<String> {
        self.compiled
            .undeclared_variables(true)
            .into_iter()
            .collect()
    }
}

/// A template's index in its [`TemplateEnv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateId(u32);

/// The compiled templates of one plan.
pub struct TemplateEnv {
    env: Environment<'static>,
    count: u32,
    /// Per template: its [`fast`] form, when it has one.
    fast: Vec<Option<fast::FastTemplate>>,
}

impl std::fmt::Debug for TemplateEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateEnv")
            .field("templates", &self.count)
            .finish()
    }
}

impl Default for TemplateEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TemplateEnv {
    /// An environment with no templates.
    pub fn new() -> Self {
        let mut env = Environment::new();
        configure(&mut env);
        TemplateEnv {
            env,
            count: 0,
            fast: Vec::new(),
        }
    }

    /// Compiles a template and keeps it.
    ///
    /// # Errors
    ///
    /// When the template does not parse.
    pub fn add(&mut self, source: &str) -> Result<TemplateId, TemplateError> {
        let id = TemplateId(self.count);
        let env = &mut self.env;
        engine(Compiling::Template, source, || {
            env.add_template_owned(id.0.to_string(), source.to_owned())
        })?;
        self.fast.push(fast::FastTemplate::compile(source));
        self.count += 1;
        Ok(id)
    }

    /// Renders a template against a context built by [`context`].
    ///
    /// # Errors
    ///
    /// When rendering fails: an undefined variable, a type error, fuel exhausted.
    pub fn render(&self, id: TemplateId, ctx: &minijinja::Value) -> Result<String, TemplateError> {
        let t = self.env.get_template(&id.0.to_string())?;
        Ok(t.render(ctx)?)
    }

    /// Renders a template straight from the run's JSON when its [`fast`] form can (`None`: use
    /// [`render`](TemplateEnv::render)).
    fn render_fast(&self, id: TemplateId, raw: &Raw<'_>) -> Option<String> {
        self.fast.get(id.0 as usize)?.as_ref()?.render(raw)
    }

    /// The variables the template reads, as dotted paths.
    pub fn variables(&self, id: TemplateId) -> BTreeSet<String> {
        self.env
            .get_template(&id.0.to_string())
            .map(|t| t.undeclared_variables(true).into_iter().collect())
            .unwrap_or_default()
    }
}

/// Builds the evaluation context `{ inputs, state }` from JSON values (copies them; see [`scope`]
/// for the cheap way).
pub fn context(inputs: &Value, state: &Value) -> minijinja::Value {
    scope(
        &Arc::new(inputs.clone()),
        &crate::state::StateView::from_object(state),
        None,
    )
}

/// The evaluation context `{ inputs, state, ..vars }` over shared JSON values, converted lazily:
/// a template pays for the keys it reads, not for the whole state. Building it allocates once.
pub fn scope(
    inputs: &Arc<Value>,
    state: &crate::state::StateView,
    vars: Option<&Arc<Value>>,
) -> minijinja::Value {
    minijinja::Value::from_object(Scope {
        inputs: minijinja::Value::from_object(JsonObject(inputs.clone())),
        state: minijinja::Value::from_object(StateObject(state.clone())),
        vars: vars.cloned(),
    })
}

/// Converts one JSON value for the engine: scalars directly, objects lazily, lists in full.
fn to_engine(v: &Value) -> minijinja::Value {
    match v {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => minijinja::Value::from(i),
            (None, Some(u)) => minijinja::Value::from(u),
            _ => minijinja::Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => minijinja::Value::from(s.as_str()),
        Value::Array(_) | Value::Object(_) => minijinja::Value::from_serialize(v),
    }
}

/// The root of the evaluation context.
#[derive(Debug)]
struct Scope {
    inputs: minijinja::Value,
    state: minijinja::Value,
    vars: Option<Arc<Value>>,
}

impl minijinja::value::Object for Scope {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        match key.as_str()? {
            "inputs" => Some(self.inputs.clone()),
            "state" => Some(self.state.clone()),
            other => self.vars.as_ref()?.get(other).map(to_engine),
        }
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        let mut keys = vec![
            minijinja::Value::from("inputs"),
            minijinja::Value::from("state"),
        ];
        if let Some(Value::Object(vars)) = self.vars.as_deref() {
            keys.extend(vars.keys().map(|k| minijinja::Value::from(k.as_str())));
        }
        minijinja::value::Enumerator::Values(keys)
    }
}

/// The state a node may read, seen by templates without copying it.
#[derive(Debug)]
struct StateObject(crate::state::StateView);

impl minijinja::value::Object for StateObject {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.0.get(key.as_str()?).map(to_engine)
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        let keys = self
            .0
            .entries()
            .iter()
            .map(|(k, _)| minijinja::Value::from(&**k))
            .collect();
        minijinja::value::Enumerator::Values(keys)
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.entries().len())
    }
}

/// A JSON object seen by templates without copying it: a key is converted when it is read.
#[derive(Debug)]
struct JsonObject(Arc<Value>);

impl minijinja::value::Object for JsonObject {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.0.get(key.as_str()?).map(to_engine)
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        let keys = self.0.as_object().map(|m| {
            m.keys()
                .map(|k| minijinja::Value::from(k.as_str()))
                .collect()
        });
        minijinja::value::Enumerator::Values(keys.unwrap_or_default())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.as_object().map_or(0, serde_json::Map::len))
    }
}

/// A JSON value whose strings may be templates: a node's output or parameters, compiled.
#[derive(Debug, Clone)]
pub enum Templated {
    /// A value with no template in it.
    Literal(Value),
    /// A string with `{{ }}` or `{% %}` in it: renders to a string.
    Template(TemplateId),
    /// A string that is exactly one `{{ expression }}`: evaluates to the expression's type.
    Expr(Arc<Expr>),
    /// A list with a template somewhere inside.
    Array(Vec<Templated>),
    /// An object with a template somewhere inside, in key order.
    Object(Vec<(String, Templated)>),
}

/// Whether a string is a template (contains `{{`, `{%` or `{#`).
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// If `s` is exactly one `{{ expression }}`, the expression's source.
pub fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if is_template(inner) || inner.contains("}}") {
        return None;
    }
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    Some(inner.trim())
}

impl Templated {
    /// Whether the value has no template in it.
    pub fn is_literal(&self) -> bool {
        matches!(self, Templated::Literal(_))
    }

    /// Renders the value.
    ///
    /// # Errors
    ///
    /// When any template or expression inside fails to evaluate.
    pub fn render(
        &self,
        env: &TemplateEnv,
        ctx: &minijinja::Value,
    ) -> Result<Value, TemplateError> {
        self.render_raw(env, None, &|| ctx)
    }

    /// Renders the value, reading plain-path expressions straight from `raw` when given, and
    /// asking `ctx` for the engine's context only when something needs the engine.
    ///
    /// # Errors
    ///
    /// When any template or expression inside fails to evaluate.
    pub fn render_raw<'c>(
        &self,
        env: &TemplateEnv,
        raw: Option<&Raw<'_>>,
        ctx: &dyn Fn() -> &'c minijinja::Value,
    ) -> Result<Value, TemplateError> {
        Ok(match self {
            Templated::Literal(v) => v.clone(),
            Templated::Template(id) => match raw.and_then(|r| env.render_fast(*id, r)) {
                Some(s) => Value::String(s),
                None => Value::String(env.render(*id, ctx())?),
            },
            Templated::Expr(e) => {
                match raw.and_then(|r| e.lookup(r)) {
                    Some(Some(v)) => return Ok(v.clone()),
                    Some(None) => return Err(e.undefined()),
                    None => {}
                }
                let fast = raw.and_then(|r| e.fast.as_ref()?.eval_json(r));
                if let Some(v) = fast {
                    return Ok(v);
                }
                let v = e.eval(ctx())?;
                if v.is_undefined() {
                    return Err(e.undefined());
                }
                serde_json::to_value(&v).map_err(|err| TemplateError {
                    message: format!("`{}` gave a value that is not JSON: {err}", e.source()),
                    range: None,
                    kind: TemplateErrorKind::Engine,
                })?
            }
            Templated::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.render_raw(env, raw, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Templated::Object(fields) => {
                let mut map = serde_json::Map::with_capacity(fields.len());
                for (k, t) in fields {
                    map.insert(k.clone(), t.render_raw(env, raw, ctx)?);
                }
                Value::Object(map)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn single_expression_keeps_type() {
        assert_eq!(
            single_expression("{{ state.docs | length }}"),
            Some("state.docs | length")
        );
        assert_eq!(single_expression("  {{x}} "), Some("x"));
        assert_eq!(single_expression("a {{x}}"), None);
        assert_eq!(single_expression("{{ a }} {{ b }}"), None);
        let e = Expr::compile("state.docs | length").unwrap();
        let ctx = context(&json!({}), &json!({"docs": [1, 2, 3]}));
        let v = Templated::Expr(Arc::new(e))
            .render(&TemplateEnv::new(), &ctx)
            .unwrap();
        assert_eq!(v, json!(3));
    }

    #[test]
    fn variables_are_dotted_paths() {
        let e = Expr::compile("inputs.enable_rag and state.docs | length > 0").unwrap();
        let vars: Vec<_> = e.variables().into_iter().collect();
        assert_eq!(vars, ["inputs.enable_rag", "state.docs"]);
        let mut env = TemplateEnv::new();
        let t = env
            .add("Answer to {{ inputs.query }}{% for d in state.docs %} {{ d }}{% endfor %}")
            .unwrap();
        let vars: Vec<_> = env.variables(t).into_iter().collect();
        assert_eq!(vars, ["inputs.query", "state.docs"]);
    }

    #[test]
    fn undefined_is_an_error_not_an_empty_string() {
        let mut env = TemplateEnv::new();
        let t = env.add("x={{ state.missing.deeper }}").unwrap();
        let err = env.render(t, &context(&json!({}), &json!({}))).unwrap_err();
        assert!(
            err.message.starts_with("undefined value"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_condition_on_a_missing_key_is_false_and_through_a_missing_parent_an_error() {
        let state = json!({ "memory": {} });
        let view = crate::state::StateView::from_object(&state);
        let inputs = json!({});
        let raw = Raw {
            inputs: &inputs,
            state: &view,
            vars: None,
        };
        let ctx = || context(&inputs, &state);
        // Plain paths (read without the engine), the fast path, and the engine agree.
        for src in [
            "state.draft",
            "state.memory.user",
            "state.draft | default(false)",
        ] {
            let e = Expr::compile(src).unwrap();
            assert_eq!(e.truth(&raw, ctx), Ok(false), "`{src}`");
            assert_eq!(e.is_true(&ctx()), Ok(false), "`{src}` through the engine");
        }
        let e = Expr::compile("state.draft.deeper").unwrap();
        assert!(e.truth(&raw, ctx).is_err());
        assert!(e.is_true(&ctx()).is_err());
    }

    #[test]
    fn a_closing_brace_too_many_is_a_syntax_error_not_a_panic() {
        // minijinja 2.24.0 panics ("empty lexer stack") on these unless they are cut.
        for (src, at) in [
            ("a }}}", 2..4),
            ("a }} ", 2..4),
            ("inputs.a }} and b", 9..11),
            ("a -}}x", 2..5),
            ("(a) }}}}", 4..6),
        ] {
            let e = Expr::compile(src).unwrap_err();
            assert_eq!(e.kind, TemplateErrorKind::Engine, "`{src}`");
            assert!(
                e.message.starts_with("syntax error"),
                "`{src}`: {}",
                e.message
            );
            assert_eq!(e.range, Some(at), "`{src}`: {}", e.message);
        }
        // A `}}` that closes a bracket, or sits in a string, is not cut.
        assert_eq!(stray_variable_end("{'a': {'b': 1}}"), None);
        assert_eq!(stray_variable_end("'}}' ~ \"\\\"}}\" ~ x"), None);
        assert_eq!(stray_variable_end("a) }}x"), None);
        assert!(Expr::compile("{'a': {'b': 1}} | length").is_ok());
        assert!(Expr::compile("x == '}} }}'").is_ok());
    }

    /// The canary for [`stray_variable_end`]: when a minijinja upgrade fixes the panic, this
    /// fails, and the cut (and the entry in docs/fuzzing.md) can go.
    #[test]
    fn minijinja_still_panics_on_text_after_a_stray_variable_end() {
        let panicked = catch_unwind(|| EXPR_ENV.compile_expression("a }}}").map(|_| ())).is_err();
        assert!(
            panicked,
            "minijinja no longer panics on `a }}}}}}`: remove the workaround"
        );
    }

    #[test]
    fn a_panic_in_the_engine_is_an_error() {
        let e = engine(Compiling::Template, "{{ x }}", || -> Result<(), _> {
            panic!("boom")
        })
        .unwrap_err();
        assert_eq!(e.kind, TemplateErrorKind::EnginePanic);
        assert_eq!(
            e.message,
            "the template engine (minijinja) panicked compiling the template `{{ x }}`: boom"
        );
    }

    #[test]
    fn fuel_bounds_loops() {
        let mut env = TemplateEnv::new();
        let t = env
            .add(
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            )
            .unwrap();
        let err = env.render(t, &context(&json!({}), &json!({}))).unwrap_err();
        assert!(err.message.contains("fuel"), "{}", err.message);
    }
}
