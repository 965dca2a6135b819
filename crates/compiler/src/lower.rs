//! Lowering, the last step of the compiler's middle: the checked spec and its built nodes become a
//! [`Plan`]. Names become indices, durations are parsed, and the defaults of the fields every node
//! has are applied here (a retry's multiplier, backoff and jitter; no timeout); the file format's
//! structural defaults are serde defaults in `braid-spec`, and a kind's parameters get theirs in
//! the kind (see `docs/ARCHITECTURE.md`, "Defaults").
//!
//! It runs after the checks (`crate::check`) and the kind builds (`crate::build`), and hands the
//! parts to [`Plan::new`], which orders the nodes canonically and proves the plan acyclic and
//! resolved.

use std::sync::Arc;
use std::time::Duration;

use braid_core::plan::{InputDecl, NodeParts, OnErrorPolicy, PlanNodes, RetryPolicy};
use braid_core::registry::duration_param;
use braid_core::{Channel, Fingerprint, KeyId, Plan, PlanParts};
use braid_spec::{DurationSpec, NodeSpec, OnError};

use crate::build::Built;
use crate::check::{Declared, Model};
use crate::diagnostic::{Code, Diagnostic};
use crate::load::{SpanMap, escape};

/// The most nodes one workflow may have (kept here, where it was first defined).
pub use crate::check::MAX_NODES;

/// Lowers a checked and built workflow to a plan identified by `fingerprint`. `node_reads` is, per
/// node, the keys it reads ([`check::data_flow`](crate::check::data_flow)'s answer). The plan is
/// `None` when `out` holds any error, earlier ones included.
pub fn lower(
    m: &Model<'_>,
    declared: Declared,
    built: Built,
    node_reads: &[Vec<usize>],
    fingerprint: Fingerprint,
    out: &mut Vec<Diagnostic>,
) -> Option<Plan> {
    let parts = parts(m, declared, built, node_reads, fingerprint, out)?;
    plan(parts, m.spans, out)
}

/// The first half of [`lower`]: the plan's parts, or `None` when `out` holds any error. The
/// compiler drops the spec between the halves (the parts hold all the plan needs), so a large
/// workflow's spec is not alive while its plan is ordered (issue 16, item 19).
pub(crate) fn parts(
    m: &Model<'_>,
    declared: Declared,
    built: Built,
    node_reads: &[Vec<usize>],
    fingerprint: Fingerprint,
    out: &mut Vec<Diagnostic>,
) -> Option<PlanParts> {
    let spec = m.spec;
    let run_timeout = duration(
        spec.execution.timeout.as_ref(),
        || "/execution/timeout".to_owned(),
        m.spans,
        out,
    );
    let mut nodes = PlanNodes::with_capacity(spec.nodes.len());
    let handlers = built.handlers.into_iter().zip(built.whens);
    for (i, ((name, node), (handler, when))) in spec.nodes.iter().zip(handlers).enumerate() {
        let base = "/nodes/".to_owned() + &escape(name);
        let timeout = duration(
            node.timeout.as_ref(),
            || format!("{base}/timeout"),
            m.spans,
            out,
        );
        let retry = retry_policy(node, &base, m.spans, out);
        let key = |k: &String| m.key_index.get(k.as_str()).map(|&i| KeyId(i as u32));
        let on_error = match node.on_error {
            OnError::Fail => OnErrorPolicy::Fail,
            OnError::Continue => OnErrorPolicy::Continue {
                fallback: node
                    .fallback
                    .iter()
                    .flat_map(|f| f.iter())
                    .filter_map(|(k, v)| Some((key(k)?, v.clone())))
                    .collect(),
            },
        };
        let Some(handler) = handler else { continue };
        nodes.push(NodeParts {
            name: Arc::from(name.as_str()),
            kind: Arc::from(node.kind.as_str()),
            needs: declared.needs[i].clone(),
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
        return None;
    }
    let parts = PlanParts {
        name: Arc::from(spec.name.as_str()),
        inputs: spec
            .inputs
            .iter()
            .map(|(n, i)| InputDecl {
                name: Arc::from(n.as_str()),
                ty: i.ty,
                default: i.default.clone(),
            })
            .collect(),
        keys: spec
            .state
            .iter()
            .zip(declared.reducers)
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
        mode: spec.execution.mode,
        max_concurrency: spec.execution.max_concurrency,
        timeout: run_timeout,
        templates: built.templates,
        fingerprint,
    };
    Some(parts)
}

/// The second half of [`lower`]: [`Plan::new`]. Its refusal is a bug in Braid (the checks passed),
/// reported at the whole document.
pub(crate) fn plan(parts: PlanParts, spans: &SpanMap, out: &mut Vec<Diagnostic>) -> Option<Plan> {
    match Plan::new(parts) {
        Ok(plan) => Some(plan),
        Err(e) => {
            out.push(
                Diagnostic::error(
                    Code::Internal,
                    spans.value(""),
                    format!("the checks passed but the plan was refused: {e}"),
                )
                .help("this is a bug in Braid; please report it with the file"),
            );
            None
        }
    }
}

/// A node's retry policy, its defaults applied: one attempt; when `retry:` is given, no backoff,
/// a multiplier of 2, no cap and no jitter unless it says otherwise.
fn retry_policy(
    node: &NodeSpec,
    base: &str,
    spans: &SpanMap,
    out: &mut Vec<Diagnostic>,
) -> RetryPolicy {
    let Some(r) = &node.retry else {
        return RetryPolicy::default();
    };
    RetryPolicy {
        attempts: r.attempts.max(1),
        backoff: duration(
            r.backoff.as_ref(),
            || format!("{base}/retry/backoff"),
            spans,
            out,
        )
        .unwrap_or(Duration::ZERO),
        multiplier: r.multiplier.unwrap_or(2.0),
        max_backoff: duration(
            r.max_backoff.as_ref(),
            || format!("{base}/retry/max_backoff"),
            spans,
            out,
        ),
        jitter: r.jitter.unwrap_or(0.0).clamp(0.0, 1.0),
    }
}

/// Parses one of the durations every workflow may have (the run's and a node's timeout, a retry's
/// waits) with [`duration_param`], the parser kinds use too, and reports a bad one. `pointer` is
/// made only for a problem: it is a `format!` per field otherwise.
fn duration(
    d: Option<&DurationSpec>,
    pointer: impl FnOnce() -> String,
    spans: &SpanMap,
    out: &mut Vec<Diagnostic>,
) -> Option<Duration> {
    match duration_param("", d?) {
        Ok(v) => Some(v),
        Err(e) => {
            out.push(
                Diagnostic::error(Code::InvalidDuration, spans.value(&pointer()), e.message)
                    .help("write a number and a unit with no space: `800ms`, `2s`, `1m30s`"),
            );
            None
        }
    }
}
