//! `map`: a dynamic fan-out, one inner node per item of a list known only at run time.
//!
//! ```yaml
//! summarize_all:
//!   kind: map
//!   needs: [retrieve]
//!   writes: [summaries]
//!   with:
//!     over: "{{ state.documents }}"       # one expression that evaluates to a list
//!     max_concurrency: 4
//!     tolerated_failures: "10%"
//!     into: summaries                     # receives the results, in item order
//!     collect: summary                    # optional: one key of each inner update
//!     node:
//!       kind: exec                        # any registered kind
//!       with:
//!         command: [python3, summarize.py, "{{ item.path }}", "--index", "{{ index }}"]
//! ```
//!
//! The inner node is built once, at compile time, through the registry, so its parameters and
//! templates are checked with the workflow (its templates may use `item` and `index` besides
//! `inputs` and `state`). At run time the map asks its context to run the inner node once per
//! item ([`NodeContext::run_items`]): the runtime runs each item through the same attempt logic
//! as every node (the item timeout, panic capture, the check of what it returned), at most
//! `max_concurrency` at a time (one at a time in a sequential run); dropping the map (its timeout,
//! cancellation) stops every item in flight. A panic in an item is caught and counts as a failure
//! of that item. The results are written as `{ into: [result of item 0, item 1, ...] }`, in item
//! order whatever order they finish in, so the key's reducer (`replace`, `append`, ...) applies.

use std::sync::Arc;
use std::time::Duration;

use braid_core::node::type_name;
use braid_core::plan::RetryPolicy;
use braid_core::registry::{duration_param, parse_params};
use braid_core::{
    BuildContext, BuildError, FailureKind, ItemCheck, Items, ItemsOutcome, NamedAs, Node,
    NodeContext, NodeError, NodeFuture, NodeKind, Templated,
};
use braid_spec::DurationSpec;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The inner node of a `map`: a kind and its parameters, as in a node's `kind:` and `with:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InnerNode {
    /// The inner node's kind: any registered kind (`mock`, `exec`, `http`, a handler, ...).
    pub kind: String,
    /// The inner node's parameters, checked against its kind. Templates here may read `item` (the
    /// current item) and `index` (its position, from 0) besides `inputs` and `state`.
    #[serde(default)]
    pub with: Option<Map<String, Value>>,
}

/// How many items may fail before the `map` node fails.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Tolerance {
    /// At most this many items.
    Count(u64),
    /// At most this share of the items, such as `"10%"` (of 25 items: 2).
    Percent(#[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?%$"))] String),
}

/// What a failed item (within the tolerance) leaves in the results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnItemError {
    /// Leave it out: the results hold the successful items only, still in item order.
    #[default]
    Skip,
    /// Put `null` in its place: the results line up with the items.
    FillNull,
}

/// Parameters of the `map` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapParams {
    /// The items: one `{{ expression }}` that evaluates to a list, such as
    /// `"{{ state.documents }}"`, or a literal list (whose strings may be templates). Evaluated
    /// against `inputs` and `state` when the node starts; anything but a list fails the node.
    pub over: OverSpec,
    /// The node run once per item.
    pub node: InnerNode,
    /// The state key the results are written to (it must be in the node's `writes`). Its value is
    /// the list of results in item order; its reducer decides how that list is folded.
    pub into: String,
    /// Take this key of each item's update as its result, instead of the whole update. An item
    /// whose update lacks the key fails (`invalid_output`).
    #[serde(default)]
    pub collect: Option<String>,
    /// At most this many items run at once. Default: all of them.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
    /// How many items may fail and the map still succeed: a count (`2`) or a share of the items
    /// (`"10%"`). One more failure fails the node at once and stops the items in flight. Default: 0.
    #[serde(default)]
    pub tolerated_failures: Option<Tolerance>,
    /// What a tolerated failure leaves in the results: `skip` (default) leaves the item out,
    /// `fill_null` puts `null` in its place, so that results line up with items.
    #[serde(default)]
    pub on_item_error: OnItemError,
    /// A time limit for each item (the whole map is bounded by the node's own `timeout`). An item
    /// over it fails with `timeout`. Default: none.
    #[serde(default)]
    pub item_timeout: Option<DurationSpec>,
}

/// The `over` parameter: an expression or a literal list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OverSpec {
    /// One `{{ expression }}` that evaluates to a list.
    Expression(String),
    /// The items themselves.
    List(Vec<Value>),
}

/// The `map` kind.
#[derive(Debug)]
pub struct MapKind;

#[derive(Debug, Clone, Copy)]
enum Allowed {
    Count(u64),
    Percent(f64),
}

impl Allowed {
    fn of(self, items: usize) -> u64 {
        match self {
            Allowed::Count(n) => n,
            // `items * pct / 100`, rounded down: 10% of 25 items is 2.
            Allowed::Percent(pct) => ((items as f64) * pct / 100.0 + 1e-9).floor() as u64,
        }
    }
}

struct MapNode {
    over: Templated,
    inner: Arc<dyn Node>,
    shape: Shape,
    max_concurrency: Option<usize>,
    allowed: Allowed,
    item_timeout: Option<Duration>,
}

impl Shape {
    /// An item's result from its inner update.
    fn result_of(&self, update: Value) -> Result<Value, NodeError> {
        let invalid = |m: String| NodeError::of_kind(FailureKind::InvalidOutput, m).permanent();
        let Value::Object(mut map) = update else {
            return Err(invalid(format!(
                "the inner node returned {}, not an object of updates",
                type_name(&update)
            )));
        };
        match &self.collect {
            None => Ok(Value::Object(map)),
            Some(key) => map.remove(key).ok_or_else(|| {
                let keys: Vec<String> = map.keys().map(|k| format!("`{k}`")).collect();
                invalid(format!(
                    "the inner node's update has no `{key}` to collect (it has {})",
                    if keys.is_empty() {
                        "no keys".to_owned()
                    } else {
                        keys.join(", ")
                    }
                ))
            }),
        }
    }
}

impl Node for MapNode {
    fn call(&self, ctx: NodeContext) -> NodeFuture {
        let items = match ctx.render(&self.over) {
            Ok(Value::Array(items)) => items,
            Ok(other) => {
                let msg = format!("`over` gave {}, not a list of items", type_name(&other));
                return Box::pin(std::future::ready(Err(NodeError::new(msg).permanent())));
            }
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let total = items.len();
        let allowed = self.allowed.of(total);
        let shape = self.shape.clone();
        let check: ItemCheck = {
            let shape = shape.clone();
            Arc::new(move |update| shape.result_of(update))
        };
        let work = ctx.run_items(Items {
            node: self.inner.clone(),
            items,
            max_concurrency: self.max_concurrency,
            timeout: self.item_timeout,
            retry: RetryPolicy::default(),
            check,
            tolerated: allowed,
        });
        Box::pin(async move {
            let results = match work?.await {
                ItemsOutcome::Done(results) => results,
                ItemsOutcome::TooManyFailures(failures) => {
                    return Err(too_many(&failures, total, allowed));
                }
            };
            let list: Vec<Value> = match shape.on_item_error {
                OnItemError::Skip => results.into_iter().filter_map(Result::ok).collect(),
                OnItemError::FillNull => results
                    .into_iter()
                    .map(|r| r.unwrap_or(Value::Null))
                    .collect(),
            };
            let mut update = Map::new();
            update.insert(shape.into, Value::Array(list));
            Ok(Value::Object(update))
        })
    }
}

/// How results are shaped into the update.
#[derive(Clone)]
struct Shape {
    into: String,
    collect: Option<String>,
    on_item_error: OnItemError,
}

/// The map's failure: how many items failed, and the first few failures.
fn too_many(failures: &[(usize, NodeError)], total: usize, allowed: u64) -> NodeError {
    let mut sorted: Vec<&(usize, NodeError)> = failures.iter().collect();
    sorted.sort_by_key(|(i, _)| *i);
    let shown: Vec<String> = sorted
        .iter()
        .take(3)
        .map(|(i, e)| format!("item {i}: {}: {}", e.kind, e.message))
        .collect();
    let more = if sorted.len() > 3 {
        format!("; and {} more", sorted.len() - 3)
    } else {
        String::new()
    };
    let mut err = NodeError::new(format!(
        "{} of {total} items failed, more than the {allowed} tolerated; {}{more}",
        failures.len(),
        shown.join("; ")
    ));
    // Retrying the map runs every item again: worth it only if some failure may pass next time.
    if failures.iter().all(|(_, e)| !e.retryable) {
        err = err.permanent();
    }
    err
}

impl NodeKind for MapKind {
    fn name(&self) -> &str {
        "map"
    }
    fn description(&self) -> &str {
        "Runs an inner node once per item of a list, collecting the results in item order."
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<MapParams>())
    }
    fn build(
        &self,
        params: Option<&Value>,
        cx: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let p: MapParams = parse_params(params)?;
        let over = match &p.over {
            OverSpec::Expression(s) => {
                if braid_core::template::single_expression(s).is_none() {
                    return Err(BuildError::params(
                        "/over",
                        format!(
                            "`over` must be one `{{{{ expression }}}}` that evaluates to a list, such as `{{{{ state.documents }}}}`; got `{s}`"
                        ),
                    ));
                }
                cx.templated("/over", &Value::String(s.clone()))
            }
            OverSpec::List(items) => cx.templated("/over", &Value::Array(items.clone())),
        };
        if p.into.is_empty() {
            return Err(BuildError::params(
                "/into",
                "`into` names the state key the results are written to",
            ));
        }
        let allowed = match &p.tolerated_failures {
            None => Allowed::Count(0),
            Some(Tolerance::Count(n)) => Allowed::Count(*n),
            Some(Tolerance::Percent(s)) => match s
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
            {
                Some(pct) if (0.0..=100.0).contains(&pct) => Allowed::Percent(pct),
                _ => {
                    return Err(BuildError::params(
                        "/tolerated_failures",
                        format!("`{s}` is not a count or a percentage from 0% to 100%"),
                    ));
                }
            },
        };
        if p.max_concurrency == Some(0) {
            return Err(BuildError::params(
                "/max_concurrency",
                "`max_concurrency` must be at least 1",
            ));
        }
        let item_timeout = p
            .item_timeout
            .as_ref()
            .map(|d| duration_param("/item_timeout", d))
            .transpose()?;
        let with = p.node.with.map(Value::Object);
        let inner = cx.with_roots(&["item", "index"], |cx| {
            cx.build_node("/node", &p.node.kind, with.as_ref())
        })?;
        if inner.waits().is_some() {
            return Err(BuildError::params(
                "/node/kind",
                format!(
                    "a `{}` node cannot run inside `map` yet: an item cannot wait for a person's answer",
                    p.node.kind
                ),
            ));
        }
        cx.will_write("/into", NamedAs::Value, &p.into);
        Ok(Arc::new(MapNode {
            over,
            inner,
            shape: Shape {
                into: p.into,
                collect: p.collect,
                on_item_error: p.on_item_error,
            },
            max_concurrency: p.max_concurrency.map(|n| n as usize),
            allowed,
            item_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_down() {
        assert_eq!(Allowed::Percent(10.0).of(25), 2);
        assert_eq!(Allowed::Percent(10.0).of(9), 0);
        assert_eq!(Allowed::Percent(10.0).of(10), 1);
        assert_eq!(Allowed::Percent(100.0).of(7), 7);
        assert_eq!(Allowed::Count(3).of(1), 3);
    }

    #[test]
    fn the_inner_node_is_built_through_the_registry() {
        let registry = crate::builtin_registry();
        let mut env = braid_core::TemplateEnv::new();
        let mut cx = BuildContext::new(&mut env, "/nodes/m/with").with_registry(&registry);
        let params = serde_json::json!({
            "over": "{{ state.docs }}",
            "into": "out",
            "node": { "kind": "transform", "with": { "output": { "x": "{{ item.n + index }} {{ inputs.q }}" } } }
        });
        assert!(MapKind.build(Some(&params), &mut cx).is_ok());
        // The map writes `into`; what the inner transform writes is each item's result.
        let writes: Vec<(&str, &str)> = cx
            .declared_writes()
            .iter()
            .map(|w| (w.pointer.as_str(), w.key.as_str()))
            .collect();
        assert_eq!(writes, [("/nodes/m/with/into", "out")]);
        let bad = serde_json::json!({ "over": [1], "into": "out", "node": { "kind": "nope" } });
        let err = MapKind.build(Some(&bad), &mut cx).err().map(|e| e.pointer);
        assert_eq!(err.as_deref(), Some("/node/kind"));
        let (reads, errors) = cx.finish();
        assert!(errors.is_empty(), "{errors:?}");
        // `item` and `index` are the map's to provide: only `state` and `inputs` reads are recorded.
        let reads: Vec<(&str, &str)> = reads
            .iter()
            .map(|r| (r.pointer.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            reads,
            [
                ("/nodes/m/with/over", "state.docs"),
                ("/nodes/m/with/node/with/output/x", "inputs.q")
            ]
        );
    }
}
