//! Lowering: the typed spec becomes a [`Plan`]. The one place where defaults are applied and names
//! become indices; it runs every semantic check on the way and builds each node through its kind.

use std::sync::Arc;
use std::time::Duration;

use braid_core::plan::{
    ExecutionMode, InputDecl, NodeParts, OnErrorPolicy, RetryPolicy, ValueType,
};
use braid_core::{
    BuildContext, BuildError, BuildErrorKind, Channel, KeyId, Plan, PlanParts, Registry,
    TemplateEnv,
};
use braid_spec::{DurationSpec, ExecutionMode as SpecMode, InputType, OnError, Workflow};

use crate::check::{self, Ancestry, Model};
use crate::diagnostic::{Code, Diagnostic};
use crate::load::{SpanMap, escape};

/// The most nodes one workflow may have (ancestry costs one bit per pair of nodes).
pub const MAX_NODES: usize = 50_000;

fn value_type(t: InputType) -> ValueType {
    match t {
        InputType::String => ValueType::String,
        InputType::Number => ValueType::Number,
        InputType::Integer => ValueType::Integer,
        InputType::Boolean => ValueType::Boolean,
        InputType::Object => ValueType::Object,
        InputType::Array => ValueType::Array,
        InputType::Any => ValueType::Any,
    }
}

/// `pointer` is made only for a problem: it is a `format!` per field otherwise.
fn duration(
    d: Option<&DurationSpec>,
    pointer: impl FnOnce() -> String,
    spans: &SpanMap,
    out: &mut Vec<Diagnostic>,
) -> Option<Duration> {
    let d = d?;
    match d.parse() {
        Ok(v) => Some(v),
        Err(e) => {
            out.push(
                Diagnostic::error(
                    Code::InvalidDuration,
                    spans.value(&pointer()),
                    format!("invalid duration `{}`: {e}", d.0),
                )
                .help("write a number and a unit with no space: `800ms`, `2s`, `1m30s`"),
            );
            None
        }
    }
}

/// The `internal` diagnostic for a template or `when` the engine panicked on (caught in
/// `braid_core::template`), if `e` is one.
fn engine_panic(
    e: &BuildError,
    spans: &SpanMap,
    site: std::fmt::Arguments<'_>,
) -> Option<Diagnostic> {
    (e.kind == BuildErrorKind::EnginePanic).then(|| {
        crate::guard::internal(
            format_args!("{site}: {}", e.message),
            spans.value(&e.pointer),
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

/// Checks `spec` and lowers it to a plan. The plan is `None` when any error was found.
/// `loader` compiles other workflow files that nodes name (relative to this one).
pub fn lower(
    spec: &Workflow,
    spans: &SpanMap,
    registry: &Registry,
    loader: &dyn braid_core::WorkflowLoader,
) -> (Option<Plan>, Vec<Diagnostic>) {
    let m = Model::new(spec, spans, registry);
    let mut out = Vec::new();
    if spec.nodes.len() > MAX_NODES {
        out.push(
            Diagnostic::error(
                Code::TooLarge,
                spans.key("/nodes"),
                format!(
                    "the workflow has {} nodes; Braid accepts at most {MAX_NODES}",
                    spec.nodes.len()
                ),
            )
            .help("split it into several workflows"),
        );
        return (None, out);
    }

    let needs = check::needs(&m, &mut out);
    let order = check::cycles(&m, &needs, &mut out);
    check::kinds(&m, &mut out);
    check::inputs(&m, &mut out);
    let reducers = check::channels(&m, &mut out);
    check::writes(&m, &mut out);
    check::fallbacks(&m, &reducers, &mut out);

    // Build every node through its kind, compiling its templates and `when`.
    let mut templates = TemplateEnv::new();
    let mut handlers = Vec::with_capacity(spec.nodes.len());
    let mut whens = Vec::with_capacity(spec.nodes.len());
    let mut template_reads = Vec::with_capacity(spec.nodes.len());
    for (name, node) in &spec.nodes {
        let base = "/nodes/".to_owned() + &escape(name);
        let mut reads = Vec::new();
        let mut when = None;
        if let Some(src) = &node.when {
            let mut cx = BuildContext::new(&mut templates, base.clone() + "/when");
            when = cx.expression("", src);
            let (r, errors) = cx.finish();
            reads.extend(r);
            for e in errors {
                if let Some(d) = engine_panic(&e, spans, format_args!("node `{name}`'s `when`")) {
                    out.push(d);
                    continue;
                }
                out.push(
                    Diagnostic::error(
                        Code::ExpressionSyntax,
                        spans.within(spans.value(&e.pointer), e.range.clone()),
                        format!("node `{name}`'s `when` does not compile: {}", e.message),
                    )
                    .help(expression_help(src)),
                );
            }
        }
        let mut handler = None;
        if let Some(kind) = registry.kind(&node.kind) {
            let mut cx = BuildContext::new(&mut templates, base.clone() + "/with")
                .with_registry(registry)
                .with_loader(loader);
            match kind.build(node.with.as_ref(), &mut cx) {
                Ok(h) => handler = Some(h),
                Err(e) => out.push(
                    Diagnostic::error(
                        Code::InvalidParams,
                        spans.value(&format!("{base}/with{}", e.pointer)),
                        format!(
                            "node `{name}`'s `with` does not fit kind `{}`: {}",
                            node.kind, e.message
                        ),
                    )
                    .help(format!(
                        "see the `{}` kind's parameters in docs/workflow-format.md",
                        node.kind
                    )),
                ),
            }
            let (r, errors) = cx.finish();
            reads.extend(r);
            for e in errors {
                if let Some(d) =
                    engine_panic(&e, spans, format_args!("a template in node `{name}`"))
                {
                    out.push(d);
                    continue;
                }
                out.push(
                    Diagnostic::error(Code::TemplateSyntax, spans.within(spans.value(&e.pointer), e.range.clone()), format!("template in node `{name}` does not compile: {}", e.message))
                        .help("fix the template: `{{ expression }}` for values, `{% if %}…{% endif %}` for blocks"),
                );
            }
        }
        handlers.push(handler);
        whens.push(when);
        template_reads.push(reads);
    }

    let mut writers: Vec<Vec<usize>> = vec![Vec::new(); spec.state.len()];
    for (i, node) in spec.nodes.values().enumerate() {
        for key in &node.writes {
            if let Some(&k) = m.key_index.get(key.as_str()) {
                writers[k].push(i);
            }
        }
    }
    let ancestry = order.as_ref().map(|o| Ancestry::new(&needs, o));
    let node_reads = check::reads(&m, ancestry.as_ref(), &template_reads, &writers, &mut out);
    if let Some(anc) = &ancestry {
        check::concurrent_replace(&m, anc, &reducers, &writers, &mut out);
    }

    let run_timeout = duration(
        spec.execution.timeout.as_ref(),
        || "/execution/timeout".to_owned(),
        spans,
        &mut out,
    );
    let mut nodes = Vec::with_capacity(spec.nodes.len());
    for (i, ((name, node), (handler, when))) in spec
        .nodes
        .iter()
        .zip(handlers.into_iter().zip(whens))
        .enumerate()
    {
        let base = "/nodes/".to_owned() + &escape(name);
        let timeout = duration(
            node.timeout.as_ref(),
            || format!("{base}/timeout"),
            spans,
            &mut out,
        );
        let retry = match &node.retry {
            None => RetryPolicy::default(),
            Some(r) => RetryPolicy {
                attempts: r.attempts.max(1),
                backoff: duration(
                    r.backoff.as_ref(),
                    || format!("{base}/retry/backoff"),
                    spans,
                    &mut out,
                )
                .unwrap_or(Duration::ZERO),
                multiplier: r.multiplier.unwrap_or(2.0),
                max_backoff: duration(
                    r.max_backoff.as_ref(),
                    || format!("{base}/retry/max_backoff"),
                    spans,
                    &mut out,
                ),
                jitter: r.jitter.unwrap_or(0.0).clamp(0.0, 1.0),
            },
        };
        let key = |k: &String| m.key_index.get(k.as_str()).map(|&i| KeyId(i as u32));
        let on_error = match node.on_error {
            OnError::Fail => OnErrorPolicy::Fail,
            OnError::Continue => OnErrorPolicy::Continue {
                fallback: node
                    .fallback
                    .iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((key(k)?, v.clone())))
                    .collect(),
            },
        };
        let Some(handler) = handler else { continue };
        nodes.push(NodeParts {
            name: Arc::from(name.as_str()),
            kind: Arc::from(node.kind.as_str()),
            needs: needs[i].clone(),
            when,
            reads: node_reads[i].iter().map(|&k| KeyId(k as u32)).collect(),
            writes: node.writes.iter().filter_map(key).collect(),
            timeout,
            retry,
            on_error,
            handler,
        });
    }

    if out.iter().any(Diagnostic::is_error) {
        return (None, out);
    }
    let parts = PlanParts {
        name: Arc::from(spec.name.as_str()),
        inputs: spec
            .inputs
            .iter()
            .map(|(n, i)| InputDecl {
                name: Arc::from(n.as_str()),
                ty: value_type(i.ty),
                default: i.default.clone(),
            })
            .collect(),
        keys: spec
            .state
            .iter()
            .zip(reducers)
            .filter_map(|((n, c), r)| {
                Some(Channel {
                    name: Arc::from(n.as_str()),
                    reducer: r?,
                    default: c.default.clone().map(Arc::new),
                    writers: Vec::new(),
                })
            })
            .collect(),
        nodes,
        mode: match spec.execution.mode {
            SpecMode::Parallel => ExecutionMode::Parallel,
            SpecMode::Sequential => ExecutionMode::Sequential,
        },
        max_concurrency: spec.execution.max_concurrency,
        timeout: run_timeout,
        templates,
    };
    match Plan::new(parts) {
        Ok(plan) => (Some(plan), out),
        Err(e) => {
            out.push(
                Diagnostic::error(
                    Code::Internal,
                    spans.value(""),
                    format!("the checks passed but the plan was refused: {e}"),
                )
                .help("this is a bug in Braid; please report it with the file"),
            );
            (None, out)
        }
    }
}
