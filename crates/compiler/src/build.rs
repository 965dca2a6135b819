//! Kind builds: every node's `when` and `with:` compiled, the latter through its kind.
//!
//! This is the step between the checks of the declarations and the checks of the data flow
//! (`crate::check`): building a node compiles its templates, and the variables they name are the
//! reads the data-flow checks need; a kind also declares the state keys it will write, which the
//! checks compare with the node's `writes`. A kind that runs other workflow files loads them here,
//! through the compiler's loader. Problems become diagnostics (`InvalidParams`, `TemplateSyntax`,
//! `ExpressionSyntax`); a node whose kind is unknown or refused its parameters gets no handler,
//! and the plan is not built.

use std::sync::Arc;

use braid_core::{
    BuildContext, BuildError, BuildErrorKind, Expr, KindWrite, Node, TemplateEnv, TemplateRead,
    WorkflowLoader,
};

use crate::check::Model;
use crate::diagnostic::{Code, Diagnostic};
use crate::load::escape;

/// Every node built, by file position.
pub struct Built {
    /// The templates of every node, compiled into the plan's environment.
    pub templates: TemplateEnv,
    /// Per node, what runs: `None` when its kind is unknown or refused its `with:`.
    pub handlers: Vec<Option<Arc<dyn Node>>>,
    /// Per node, its compiled `when`.
    pub whens: Vec<Option<Arc<Expr>>>,
    /// Per node, the variables its templates and `when` read.
    pub reads: Vec<Vec<TemplateRead>>,
    /// Per node, the state keys its kind said it will write (`map`'s `into`, `llm`'s `output`,
    /// ...), for [`check::kind_writes`](crate::check::kind_writes).
    pub writes: Vec<Vec<KindWrite>>,
}

/// Builds every node of the model: its `when`, then its `with:` through its kind. `loader`
/// compiles the other workflow files nodes name (relative to this one).
pub fn nodes(m: &Model<'_>, loader: &dyn WorkflowLoader, out: &mut Vec<Diagnostic>) -> Built {
    let count = m.spec.nodes.len();
    let mut built = Built {
        templates: TemplateEnv::new(),
        handlers: Vec::with_capacity(count),
        whens: Vec::with_capacity(count),
        reads: Vec::with_capacity(count),
        writes: Vec::with_capacity(count),
    };
    for (name, node) in &m.spec.nodes {
        let base = "/nodes/".to_owned() + &escape(name);
        let mut reads = Vec::new();
        let mut when = None;
        if let Some(src) = &node.when {
            let mut cx = BuildContext::new(&mut built.templates, base.clone() + "/when");
            when = cx.expression("", src);
            let (r, errors) = cx.finish();
            reads.extend(r);
            for e in errors {
                if let Some(d) = engine_panic(&e, m, format_args!("node `{name}`'s `when`")) {
                    out.push(d);
                    continue;
                }
                out.push(
                    Diagnostic::error(
                        Code::ExpressionSyntax,
                        m.spans.within(m.spans.value(&e.pointer), e.range.clone()),
                        format!("node `{name}`'s `when` does not compile: {}", e.message),
                    )
                    .help(expression_help(src)),
                );
            }
        }
        let mut handler = None;
        let mut writes = Vec::new();
        if let Some(kind) = m.registry.kind(&node.kind) {
            let mut cx = BuildContext::new(&mut built.templates, base.clone() + "/with")
                .with_registry(m.registry)
                .with_loader(loader);
            match kind.build(node.with.as_deref(), &mut cx) {
                Ok(h) => handler = Some(h),
                Err(e) => out.push(
                    Diagnostic::error(
                        Code::InvalidParams,
                        params_span(m, &base, &e.pointer, node.with.as_deref()),
                        format!(
                            "node `{name}`'s `with` does not fit kind `{}`: {}",
                            node.kind, e.message
                        ),
                    )
                    .help(params_help(
                        &node.kind,
                        &e.pointer,
                        node.with.as_deref(),
                        m.registry,
                    )),
                ),
            }
            writes = cx.declared_writes().to_vec();
            let (r, errors) = cx.finish();
            reads.extend(r);
            for e in errors {
                if let Some(d) = engine_panic(&e, m, format_args!("a template in node `{name}`")) {
                    out.push(d);
                    continue;
                }
                out.push(
                    Diagnostic::error(Code::TemplateSyntax, m.spans.within(m.spans.value(&e.pointer), e.range.clone()), format!("template in node `{name}` does not compile: {}", e.message))
                        .help("fix the template: `{{ expression }}` for values, `{% if %}…{% endif %}` for blocks"),
                );
            }
        }
        built.handlers.push(handler);
        built.whens.push(when);
        built.reads.push(reads);
        built.writes.push(writes);
    }
    built
}

/// Where a parameter error is: the value at `pointer` (relative to `with:`), or, for a block
/// mapping or list (one that starts on a line after its key), the key (`inputs:`), since such a
/// block's span starts at its first entry, which may not be what is wrong.
fn params_span(
    m: &Model<'_>,
    base: &str,
    pointer: &str,
    with: Option<&serde_json::Value>,
) -> crate::diagnostic::Span {
    let at = format!("{base}/with{pointer}");
    let block = with
        .and_then(|w| w.pointer(pointer))
        .is_some_and(|v| v.is_object() || v.is_array());
    let (key, value) = (m.spans.key(&at), m.spans.value(&at));
    if block && !pointer.is_empty() && value.start.line > key.start.line {
        key
    } else {
        value
    }
}

/// The `internal` diagnostic for a template or `when` the engine panicked on (caught in
/// `braid_core::template`), if `e` is one.
fn engine_panic(
    e: &BuildError,
    m: &Model<'_>,
    site: std::fmt::Arguments<'_>,
) -> Option<Diagnostic> {
    (e.kind == BuildErrorKind::EnginePanic).then(|| {
        crate::guard::internal(
            format_args!("{site}: {}", e.message),
            m.spans.value(&e.pointer),
        )
    })
}

/// How to fix a `when` that does not compile, from the mistakes people make most.
fn expression_help(src: &str) -> String {
    let trimmed = src.trim();
    if trimmed.starts_with("{{") && trimmed.ends_with("}}") {
        let inner = trimmed.trim_start_matches('{').trim_end_matches('}').trim();
        return format!(
            "`when` is an expression, not a template: write `{inner}` without `{{{{ }}}}`"
        );
    }
    if trimmed.contains("}}") {
        return "remove the `}}`: `when` is a bare expression, with no `{{ }}` around it"
            .to_owned();
    }
    for (op, word) in [("&&", "and"), ("||", "or"), ("===", "==")] {
        if src.contains(op) {
            return format!("write `{word}` instead of `{op}`");
        }
    }
    if src.trim_start().starts_with('!') {
        return "write `not` instead of `!`".to_owned();
    }
    "write a Jinja expression such as `inputs.enable_rag` or `state.docs | length > 0`, without `{{ }}`".to_owned()
}

/// How to fix a `with:` block its kind refused: a did-you-mean for an unknown inner kind (a
/// `map`'s `node.kind`), else where the kind's parameters are documented.
fn params_help(
    kind: &str,
    pointer: &str,
    with: Option<&serde_json::Value>,
    registry: &braid_core::Registry,
) -> String {
    if pointer.ends_with("/kind") {
        let given = with
            .and_then(|w| w.pointer(pointer))
            .and_then(serde_json::Value::as_str);
        if let Some(given) = given.filter(|k| registry.kind(k).is_none()) {
            if let Some(near) = crate::diagnostic::did_you_mean(given, registry.kind_names()) {
                return format!("did you mean `{near}`?");
            }
        }
    }
    match kind {
        "http" | "llm" | "exec" | "map" | "wait" => {
            format!("see the `{kind}` kind's parameters in docs/nodes/{kind}.md")
        }
        "mock" | "transform" | "noop" | "workflow" => {
            format!("see the `{kind}` kind's parameters in docs/workflow-format.md#{kind}")
        }
        _ => format!("see the `{kind}` kind's parameters (`braid schema` lists them)"),
    }
}
