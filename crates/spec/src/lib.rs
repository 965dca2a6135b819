//! Braid's workflow file format, version 1, as Rust types.
//!
//! These types are one-to-one with the YAML a user writes: every field here is a field in the file,
//! with the same name, and its doc comment becomes the field's `description` in the published JSON
//! Schema (`schemas/workflow.schema.json`). They carry *what the user wrote*, not what it means:
//! names stay names, durations stay strings, and the only defaults are structural serde defaults
//! the schema publishes (`reducer: replace`, `mode: parallel`, `on_error: fail`). The compiler
//! turns them into a `braid_core::Plan`, where meaning (indices, parsed durations, policies) is
//! given. The closed vocabularies of the format, [`ExecutionMode`] and [`InputType`], are used by
//! the plan as they are: `braid-core` re-exports them rather than keeping twins.
//!
//! Unknown fields are rejected everywhere (`deny_unknown_fields`), and kind-specific parameters are
//! nested under `with:` rather than flattened, so the two never mix.

mod duration;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use duration::{DURATION_PATTERN, DurationError, DurationSpec, parse_duration};

/// The pattern every node name must match (it appears in `needs`, reports and metric labels).
pub const NODE_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_-]*$";
/// The pattern every input and state key must match (it is read as `inputs.NAME` / `state.NAME`).
pub const KEY_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// The built-in reducer names, offered as completions by the schema.
pub const BUILTIN_REDUCERS: &[&str] = &["replace", "append", "merge", "sum", "min", "max", "union"];

/// A Braid workflow: typed inputs, state channels with reducers, and a DAG of nodes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Braid workflow", extend("$id" = "https://braid.dev/schemas/workflow.schema.json"))]
pub struct Workflow {
    /// The format version. Always `1` for this format.
    pub version: FormatVersion,
    /// The workflow's name: used in reports, metric labels and trace spans.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"))]
    pub name: String,
    /// What the workflow does, for people reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Typed request parameters, read as `inputs.NAME` in `when` expressions and templates. An input
    /// without a `default` is required at run time.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": KEY_PATTERN }))]
    pub inputs: IndexMap<String, InputSpec>,
    /// State channels. Nodes write partial updates to these keys; each key's reducer folds the
    /// contributions, in a canonical order, into its value. Read as `state.NAME`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": KEY_PATTERN }))]
    pub state: IndexMap<String, ChannelSpec>,
    /// How the workflow runs: parallel or sequential, concurrency bound, whole-run timeout.
    #[serde(default)]
    pub execution: ExecutionSpec,
    /// The nodes of the DAG, by name. File order breaks ties in the canonical order.
    #[schemars(extend("propertyNames" = { "pattern": NODE_NAME_PATTERN }, "minProperties" = 1))]
    pub nodes: IndexMap<String, NodeSpec>,
}

/// The format version number; only `1` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FormatVersion(u32);

impl FormatVersion {
    /// Version 1 of the format.
    pub const V1: FormatVersion = FormatVersion(1);
}

impl<'de> Deserialize<'de> for FormatVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(deserializer)?;
        if v == 1 {
            Ok(FormatVersion(v))
        } else {
            Err(serde::de::Error::custom(format_args!(
                "unsupported format version {v}; this Braid reads version 1"
            )))
        }
    }
}

impl JsonSchema for FormatVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FormatVersion".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "const": 1 })
    }
}

/// A typed request parameter.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The JSON type the value must have.
    #[serde(rename = "type")]
    pub ty: InputType,
    /// The value used when the caller gives none. Without it, the input is required.
    /// (`default: null` is a default of `null`, not an absent default.)
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<Value>,
    /// What the input means, for people reading the workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The JSON type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// A string.
    String,
    /// Any number, integer or not.
    Number,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A JSON object (a YAML mapping).
    Object,
    /// A JSON array (a YAML sequence).
    Array,
    /// Any JSON value.
    Any,
}

impl InputType {
    /// The type's name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Number => "number",
            InputType::Integer => "integer",
            InputType::Boolean => "boolean",
            InputType::Object => "object",
            InputType::Array => "array",
            InputType::Any => "any",
        }
    }

    /// Whether `value` has this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            InputType::String => value.is_string(),
            InputType::Number => value.is_number(),
            InputType::Integer => value.is_i64() || value.is_u64(),
            InputType::Boolean => value.is_boolean(),
            InputType::Object => value.is_object(),
            InputType::Array => value.is_array(),
            InputType::Any => true,
        }
    }
}

/// A state channel: a key that nodes write to, folded by a reducer.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// How contributions are folded into the value: `replace` (last writer in canonical order wins),
    /// `append` (concatenate lists), `merge` (deep object merge), `sum`, `min`, `max`, `union` (list
    /// without duplicates), or the name of a reducer registered from Rust.
    #[serde(default = "default_reducer")]
    #[schemars(extend("examples" = BUILTIN_REDUCERS))]
    pub reducer: String,
    /// The value before any node writes. Nodes that are skipped leave it in place.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<Value>,
    /// What the key holds, for people reading the workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A field that is present is `Some`, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

fn default_reducer() -> String {
    "replace".to_owned()
}

/// How the workflow runs. None of this changes what the workflow computes, only how fast.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionSpec {
    /// `parallel` (default): every node whose `needs` are done starts at once. `sequential`: the same
    /// graph, one node at a time in canonical order (the baseline for measuring the speedup).
    #[serde(default)]
    pub mode: ExecutionMode,
    /// At most this many nodes run at once. Unbounded when absent: nodes are mostly I/O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
    /// The whole run's deadline, such as `10s`. Nodes still running then are cancelled and the run fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
}

/// Parallel or sequential execution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// Ready-set scheduling: a node starts the moment the last node it needs finishes.
    #[default]
    Parallel,
    /// One node at a time, in canonical order.
    Sequential,
}

// The fields most nodes leave out and that take room (`retry`, `fallback`, `with`) are boxed: a
// node is then about half the size, which is what a 100,000-node workflow's spec costs while it
// compiles (issue 16, item 19). The schema and the file format are the same. (A plain comment:
// the doc comment below is the schema's description.)
/// One node of the DAG.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// What the node does: a built-in kind (`mock`, `transform`, `noop`) or the name of a handler
    /// registered by the embedding program.
    #[schemars(extend("examples" = ["mock", "transform", "noop"]))]
    pub kind: String,
    /// What the node does, for people reading the workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The nodes that must finish before this one starts. The node sees the state they (and their
    /// own upstream nodes) wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub needs: Vec<String>,
    /// An expression over `inputs` and upstream `state`; when it is false the node is skipped, its
    /// keys keep their defaults, and nodes that need it still run. Example: `inputs.enable_rag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// State keys the node reads, for handlers whose reads cannot be seen in templates. No writer of
    /// a key read may run concurrently with this node: each must be upstream (or downstream) of it.
    /// Keys read by templates need not be listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub reads: Vec<String>,
    /// State keys the node may write. An update with any other key fails the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub writes: Vec<String>,
    /// The longest one attempt may take, such as `800ms`; capped by what remains of the run's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Retry a failed attempt with exponential backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Box<RetrySpec>>,
    /// What a failure (after all retries) does: `fail` (default) cancels the run; `continue` writes
    /// `fallback` and lets the run go on, ending `degraded`.
    #[serde(default)]
    pub on_error: OnError,
    /// The values written instead of the node's output when it fails with `on_error: continue`.
    /// Every key must be in `writes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<IndexMap<String, Value>>>,
    /// Parameters of the node's kind. The schema of each built-in kind's parameters applies.
    #[serde(default, rename = "with", skip_serializing_if = "Option::is_none")]
    pub with: Option<Box<Value>>,
}

/// Retry policy for a node.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Total attempts, the first included: `3` means up to two retries.
    #[schemars(range(min = 1, max = 100))]
    pub attempts: u32,
    /// The wait before the first retry, such as `50ms`. Doubled (see `multiplier`) for each further retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<DurationSpec>,
    /// The factor the wait grows by after each retry. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub multiplier: Option<f64>,
    /// The longest wait between two attempts, such as `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<DurationSpec>,
    /// Randomise each wait by up to this fraction of it, either way (0 to 1). Default 0: exact waits.
    /// Use it when many runs retry against the same service at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub jitter: Option<f64>,
}

/// What a node's failure does to the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Cancel the nodes in flight and end the run `failed`, keeping what completed.
    #[default]
    Fail,
    /// Write the node's `fallback` values and go on; the run ends `degraded`.
    Continue,
}
