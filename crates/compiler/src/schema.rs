//! The JSON Schema: generated from the `braid-spec` types and each registered kind's parameter
//! type, and checked against a loaded document with a standard validator.
//!
//! The published `schemas/workflow.schema.json` is exactly [`workflow_schema`] for the built-in
//! registry (a test fails when they drift). It is draft-07, the dialect editors (yaml-language-server,
//! VS Code) and CI validators (check-jsonschema, ajv) all read. Kind-specific `with:` blocks form a
//! discriminated union on `kind`: one `if kind == K then with: <K's params>` per registered kind.
//!
//! Validation errors become diagnostics here, each pointing at the offending key or value.

use braid_core::Registry;
use braid_spec::{DURATION_PATTERN, Workflow};
use jsonschema::error::ValidationErrorKind;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::diagnostic::{Code, Diagnostic, describe, did_you_mean};
use crate::guard;
use crate::load::{SpanMap, escape};

/// The workflow JSON Schema for the kinds and reducers in `registry`.
pub fn workflow_schema(registry: &Registry) -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let kinds: Vec<(String, String, Option<Value>)> = registry
        .kinds()
        .map(|k| {
            let schema = k.params_schema(&mut generator).map(|s| s.to_value());
            (k.name().to_owned(), k.description().to_owned(), schema)
        })
        .collect();
    let mut root = generator.into_root_schema_for::<Workflow>().to_value();
    root["$schema"] = json!("http://json-schema.org/draft-07/schema#");

    let node = &mut root["definitions"]["NodeSpec"];
    let names: Vec<&str> = kinds.iter().map(|(n, _, _)| n.as_str()).collect();
    node["properties"]["kind"]["examples"] = json!(names);
    let mut branches = Vec::new();
    for (name, description, schema) in &kinds {
        let Some(mut schema) = schema.clone() else {
            continue;
        };
        if !description.is_empty() && schema.get("$ref").is_some() {
            schema = json!({ "allOf": [schema], "description": description });
        }
        branches.push(json!({
            "if": { "properties": { "kind": { "const": name } }, "required": ["kind"] },
            "then": { "properties": { "with": schema } }
        }));
    }
    if !branches.is_empty() {
        node["allOf"] = Value::Array(branches);
    }
    // A kind whose parameters have required fields requires the `with:` block itself.
    let defs = root["definitions"].clone();
    if let Some(branches) = root["definitions"]["NodeSpec"]["allOf"].as_array_mut() {
        for b in branches {
            let with = &b["then"]["properties"]["with"];
            let target = with
                .get("$ref")
                .or_else(|| with.pointer("/allOf/0/$ref"))
                .and_then(Value::as_str);
            let def = target
                .and_then(|r| r.strip_prefix("#/definitions/"))
                .and_then(|n| defs.get(n));
            if def
                .and_then(|d| d.get("required"))
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty())
            {
                b["then"]["required"] = json!(["with"]);
            }
        }
    }
    let reducers: Vec<&str> = registry.reducer_names().collect();
    root["definitions"]["ChannelSpec"]["properties"]["reducer"]["examples"] = json!(reducers);
    root
}

/// The keywords of the `nodes` mapping's schema that apply to each of its entries (a node's name
/// and its body); the others (its type and size) apply to the mapping as a whole.
const ENTRY_KEYWORDS: [&str; 2] = ["additionalProperties", "propertyNames"];

/// The workflow schema compiled as two validators that together check what it says: one for the
/// document, in which `nodes` is checked only as a mapping (its type and size), and one for the
/// mapping's entries (each node's name and body; it reads a whole document, or one node wrapped
/// as `{"nodes": {name: node}}`, with the same pointers and schema paths either way). So the
/// compiler can check each node as it is read, and never hold every node as JSON at once
/// (`compiler::spec`; issue 16, items 19 and 23).
pub struct SchemaValidator {
    schema: Value,
    document: jsonschema::Validator,
    nodes: jsonschema::Validator,
}

impl std::fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaValidator").finish_non_exhaustive()
    }
}

/// The schema split in two: the document's, without the keywords of [`ENTRY_KEYWORDS`] under
/// `nodes`, and the entries', holding only those. Each keeps the definitions it refers to and
/// only those (compiling the others twice would be wasted: every `braid` command compiles them).
fn split(schema: &Value) -> (Value, Value) {
    let root = schema.as_object();
    let definitions = schema.get("definitions").unwrap_or(&Value::Null);
    let mut document: serde_json::Map<String, Value> = root
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "definitions")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut entries = serde_json::Map::new();
    if let Some(nodes) = document
        .get_mut("properties")
        .and_then(|p| p.get_mut("nodes"))
        .and_then(Value::as_object_mut)
    {
        for k in ENTRY_KEYWORDS {
            if let Some(v) = nodes.shift_remove(k) {
                entries.insert(k.to_owned(), v);
            }
        }
    }
    let mut nodes = serde_json::Map::new();
    nodes.insert("$schema".to_owned(), schema["$schema"].clone());
    nodes.insert("properties".to_owned(), json!({ "nodes": entries }));
    let [document, nodes] = [document, nodes].map(|mut part| {
        let kept = referred(&part, definitions);
        if !kept.is_empty() {
            part.insert("definitions".to_owned(), Value::Object(kept));
        }
        Value::Object(part)
    });
    (document, nodes)
}

/// The definitions `part` refers to (`#/definitions/NAME`), directly or through others.
fn referred(
    part: &serde_json::Map<String, Value>,
    definitions: &Value,
) -> serde_json::Map<String, Value> {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.extend(r.strip_prefix("#/definitions/")),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut todo = Vec::new();
    part.values().for_each(|v| refs(v, &mut todo));
    let mut kept = serde_json::Map::new();
    while let Some(name) = todo.pop() {
        if kept.contains_key(name) {
            continue;
        }
        if let Some(d) = definitions.get(name) {
            kept.insert(name.to_owned(), d.clone());
            refs(d, &mut todo);
        }
    }
    kept
}

impl SchemaValidator {
    /// Compiles the schema for `registry`.
    ///
    /// # Panics
    ///
    /// Never for schemas generated by [`workflow_schema`]; a failure here is a bug in Braid and is
    /// caught by the test suite.
    pub fn new(registry: &Registry) -> Self {
        let schema = workflow_schema(registry);
        let (document, nodes) = split(&schema);
        #[allow(clippy::expect_used)]
        let compile =
            |s: &Value| jsonschema::draft7::new(s).expect("the generated schema compiles");
        SchemaValidator {
            document: compile(&document),
            nodes: compile(&nodes),
            schema,
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Checks a document, one diagnostic per problem.
    ///
    /// The validator (`jsonschema`) runs under `guard::catch` here and in the two checks the
    /// compiler uses (`node_passes`, `check_split`), so a panic in it is one `internal`
    /// diagnostic at the document's root.
    pub fn check(&self, value: &Value, spans: &SpanMap) -> Vec<Diagnostic> {
        self.guarded(spans, || {
            let parts = [(&self.document, value), (&self.nodes, value)];
            self.check_unguarded(&parts, &[value], spans)
        })
    }

    /// Whether one node passes the schema, its name included: `wrapper` is `{"nodes": {name:
    /// node}}`. A node that does not is checked again by [`check_split`](Self::check_split),
    /// which says why.
    pub(crate) fn node_passes(&self, wrapper: &Value) -> bool {
        guard::catch(|| self.nodes.is_valid(wrapper)).unwrap_or(false)
    }

    /// Checks a document whose `nodes` entries were handed over as they were read
    /// (`load::load_with`: the document keeps the mapping with its first key only), and the
    /// entries the schema must see (`held`, each wrapped as `{"nodes": {name: node}}`): those
    /// that did not [pass](Self::node_passes), and those holding a number serde may refuse.
    pub(crate) fn check_split(
        &self,
        document: &Value,
        held: &[Value],
        spans: &SpanMap,
    ) -> Vec<Diagnostic> {
        self.guarded(spans, || {
            let parts: Vec<_> = std::iter::once((&self.document, document))
                .chain(held.iter().map(|w| (&self.nodes, w)))
                .collect();
            let values: Vec<&Value> = parts.iter().map(|&(_, v)| v).collect();
            self.check_unguarded(&parts, &values, spans)
        })
    }

    fn guarded(&self, spans: &SpanMap, check: impl FnOnce() -> Vec<Diagnostic>) -> Vec<Diagnostic> {
        guard::catch(check).unwrap_or_else(|panic| {
            vec![guard::internal(
                format_args!(
                    "the JSON Schema validator (jsonschema) panicked checking this file: {panic}"
                ),
                spans.value(""),
            )]
        })
    }

    /// Runs each validator on its value, then (if none complained) the integer check on each of
    /// `values`: each a document or part of one, with the document's pointers.
    fn check_unguarded(
        &self,
        parts: &[(&jsonschema::Validator, &Value)],
        values: &[&Value],
        spans: &SpanMap,
    ) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for &(validator, value) in parts {
            for e in validator.iter_errors(value) {
                if let ValidationErrorKind::FalseSchema = e.kind() {
                    out.extend(no_fields(
                        value,
                        e.instance_path().as_str(),
                        e.instance(),
                        spans,
                    ));
                    continue;
                }
                let pointer = e.instance_path().as_str().to_owned();
                let schema_path = e.schema_path().as_str().to_owned();
                self.convert(
                    &pointer,
                    &schema_path,
                    e.kind(),
                    e.instance(),
                    &e.to_string(),
                    spans,
                    &mut out,
                );
            }
        }
        // Only a whole-number float (`2.0`) or an integer beyond `u32` can pass the validator yet
        // fail an integer field; walking the schema costs a third of compile time, so look first.
        if out.is_empty() {
            for &value in values {
                if has_suspect_number(value) {
                    integers(&self.schema, &self.schema, value, "", spans, &mut out);
                }
            }
        }
        out.sort_by_key(|d| (d.span().start, d.code));
        out.dedup();
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn convert(
        &self,
        pointer: &str,
        schema_path: &str,
        kind: &ValidationErrorKind,
        instance: &Value,
        fallback: &str,
        spans: &SpanMap,
        out: &mut Vec<Diagnostic>,
    ) {
        let at = describe(pointer);
        match kind {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let parent = resolve(&self.schema, parent_path(schema_path));
                let allowed: Vec<&str> = parent
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                for name in unexpected {
                    let p = format!("{pointer}/{}", escape(name));
                    let mut d = Diagnostic::error(
                        Code::UnknownField,
                        spans.key(&p),
                        format!("unknown field `{name}` in {at}"),
                    )
                    .label("not a field here");
                    d = match did_you_mean(name, allowed.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        // `{ description: a, b }` parses as `description: a` and a field `b`.
                        None if name.contains(' ') => d.help(
                            "inside `{ ... }` a comma ends a value: quote the value that \
                             contains this comma, such as `description: \"a, b\"`",
                        ),
                        None if allowed.is_empty() => d.help("remove it"),
                        None => {
                            d.help(format!("remove it; the fields here are {}", list(&allowed)))
                        }
                    };
                    out.push(d);
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let help = match name {
                    "version" => "add `version: 1` at the top of the file".to_owned(),
                    "nodes" => "add a `nodes:` mapping with at least one node".to_owned(),
                    "kind" => {
                        "add `kind:` with a node kind such as `mock` or `transform`".to_owned()
                    }
                    "type" => format!("add `type:`, one of {}", list(INPUT_TYPES)),
                    "with" => match required_params(&self.schema, schema_path) {
                        Some(params) => format!(
                            "add a `with:` block giving this kind's required {}",
                            list(&params)
                        ),
                        None => "add a `with:` block with this kind's parameters".to_owned(),
                    },
                    _ => format!("add `{name}:`"),
                };
                let span = if pointer.is_empty() {
                    spans.value("")
                } else {
                    spans.key(pointer)
                };
                out.push(
                    Diagnostic::error(
                        Code::MissingField,
                        span,
                        format!("missing field `{name}` in {at}"),
                    )
                    .help(help),
                );
            }
            ValidationErrorKind::Type { kind } => {
                let expected = format!("{kind:?}");
                let expected = type_words(&expected);
                let is_duration = resolve(&self.schema, parent_path(schema_path))
                    .and_then(|s| s.get("pattern"))
                    .is_some_and(|p| p == DURATION_PATTERN);
                let (expected, help) = if is_duration {
                    ("a duration".to_owned(), duration_help(instance))
                } else if pointer.ends_with("/with/over") {
                    // `map.over` is a string only as an expression; quoting a number is no fix.
                    (
                        "a `{{ expression }}` or a list".to_owned(),
                        "give the items: a `{{ expression }}` that gives a list, such as `\"{{ inputs.items }}\"`, or a list written out, such as `[1, 2, 3]`".to_owned(),
                    )
                } else {
                    let help = type_help(&expected, instance);
                    (expected, help)
                };
                out.push(
                    Diagnostic::error(
                        Code::WrongType,
                        spans.value(pointer),
                        format!("{at} must be {expected}, found {}", json_type(instance)),
                    )
                    .label(format!("expected {expected}"))
                    .help(help),
                );
            }
            ValidationErrorKind::Pattern { pattern } if pattern == DURATION_PATTERN => {
                let text = instance.as_str().unwrap_or_default();
                let why = braid_spec::parse_duration(text)
                    .err()
                    .map(|e| e.message)
                    .unwrap_or_default();
                out.push(
                    Diagnostic::error(
                        Code::InvalidDuration,
                        spans.value(pointer),
                        format!("invalid duration `{text}` in {at}: {why}"),
                    )
                    .help(
                        "write a number and a unit with no space: `800ms`, `2s`, `1.5s`, `1m30s`",
                    ),
                );
            }
            ValidationErrorKind::Pattern { pattern } => {
                let text = instance.as_str().unwrap_or_default();
                let d = if pointer == "/name" {
                    Diagnostic::error(Code::InvalidName, spans.value(pointer), format!("invalid workflow name `{text}`"))
                        .label("not a valid name")
                        .help("start with a letter or digit, then use letters, digits, `_`, `.` or `-` (the name is a metric label)")
                } else {
                    Diagnostic::error(
                        Code::InvalidValue,
                        spans.value(pointer),
                        format!("`{text}` is not a valid value for {at}"),
                    )
                    .help(format!(
                        "write a value that matches the pattern `{pattern}`"
                    ))
                };
                out.push(d);
            }
            ValidationErrorKind::Minimum { limit }
            | ValidationErrorKind::ExclusiveMinimum { limit } => {
                let bound = if matches!(kind, ValidationErrorKind::Minimum { .. }) {
                    "at least"
                } else {
                    "above"
                };
                out.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        spans.value(pointer),
                        format!("{at} must be {bound} {limit}, found {instance}"),
                    )
                    .label("too small")
                    .help(range_help(resolve(&self.schema, parent_path(schema_path)))),
                );
            }
            ValidationErrorKind::Maximum { limit }
            | ValidationErrorKind::ExclusiveMaximum { limit } => {
                let bound = if matches!(kind, ValidationErrorKind::Maximum { .. }) {
                    "at most"
                } else {
                    "below"
                };
                out.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        spans.value(pointer),
                        format!("{at} must be {bound} {limit}, found {instance}"),
                    )
                    .label("too large")
                    .help(range_help(resolve(&self.schema, parent_path(schema_path)))),
                );
            }
            ValidationErrorKind::PropertyNames { error } => {
                let name = error.instance().as_str().unwrap_or_default().to_owned();
                let p = format!("{pointer}/{}", escape(&name));
                let rule = if pointer == "/nodes" {
                    "a letter or `_`, then letters, digits, `_` or `-`"
                } else {
                    "a letter or `_`, then letters, digits or `_` (it is read as a template variable)"
                };
                let what = match pointer {
                    "/nodes" => "node name",
                    "/inputs" => "input name",
                    "/state" => "state key",
                    _ => "name",
                };
                out.push(
                    Diagnostic::error(
                        Code::InvalidName,
                        spans.key(&p),
                        format!("invalid {what} `{name}`"),
                    )
                    .label("not a valid name")
                    .help(format!("names start with {rule}")),
                );
            }
            ValidationErrorKind::Constant { expected_value } if pointer == "/version" => {
                out.push(
                    Diagnostic::error(
                        Code::UnsupportedVersion,
                        spans.value(pointer),
                        format!("unsupported format version {instance}; this Braid reads version {expected_value}"),
                    )
                    .help("write `version: 1`"),
                );
            }
            ValidationErrorKind::MinProperties { .. } if pointer == "/nodes" => {
                out.push(
                    Diagnostic::error(
                        Code::NoNodes,
                        spans.value(pointer),
                        "the workflow has no nodes",
                    )
                    .help("add at least one node under `nodes:`"),
                );
            }
            ValidationErrorKind::Enum { options } => {
                let opts: Vec<String> = options
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| v.to_string().trim_matches('"').to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(not_one_of(&at, instance, &opts, spans.value(pointer)));
            }
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => {
                if let Some(opts) = constants(context, pointer) {
                    // An enum written as `oneOf` constants (each with its own description).
                    out.push(not_one_of(&at, instance, &opts, spans.value(pointer)));
                } else if let Some(best) = best_branch(context, pointer) {
                    for e in best {
                        self.convert(
                            e.instance_path().as_str(),
                            e.schema_path().as_str(),
                            e.kind(),
                            e.instance(),
                            &e.to_string(),
                            spans,
                            out,
                        );
                    }
                } else {
                    out.push(Diagnostic::error(
                        Code::InvalidValue,
                        spans.value(pointer),
                        format!("invalid value for {at}: {fallback}"),
                    ));
                }
            }
            ValidationErrorKind::UniqueItems => {
                out.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        spans.value(pointer),
                        format!("{at} lists the same item twice"),
                    )
                    .help("remove the repeated item"),
                );
            }
            _ => {
                out.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        spans.value(pointer),
                        format!("invalid value for {at}: {fallback}"),
                    )
                    .help("see docs/workflow-format.md for what this field takes"),
                );
            }
        }
    }
}

/// Fields of a block that takes none (`additionalProperties: false` and no `properties`, such as
/// `noop`'s `with:`). The validator reports the block's location and the offending value, so the
/// field is found by its value.
fn no_fields(root: &Value, pointer: &str, instance: &Value, spans: &SpanMap) -> Vec<Diagnostic> {
    let Some(Value::Object(block)) = root.pointer(pointer) else {
        return Vec::new();
    };
    let at = describe(pointer);
    block
        .iter()
        .filter(|(_, v)| *v == instance)
        .map(|(name, _)| {
            Diagnostic::error(
                Code::UnknownField,
                spans.key(&format!("{pointer}/{}", escape(name))),
                format!("unknown field `{name}` in {at}"),
            )
            .label("not a field here")
            .help(format!("remove it: {at} takes no fields"))
        })
        .collect()
}

/// Integer fields hold integers that fit their format. The validator counts `2.0` as an integer
/// (as JSON Schema says) and does not check `format: uint32`, but serde refuses both: without this
/// check, `max_concurrency: 2.0` would pass the schema and fail as an internal error.
///
/// Walks the document beside its schema (`properties`, `additionalProperties`, `items`, `$ref` and
/// the `allOf`/`anyOf`/`oneOf` branches; kind parameters, under `if`/`then`, are checked by their kind).
pub(crate) fn has_suspect_number(v: &Value) -> bool {
    match v {
        Value::Number(n) => match (n.as_f64(), n.as_u64()) {
            (_, Some(u)) => u > u64::from(u32::MAX),
            (Some(f), None) => n.is_f64() && f.fract() == 0.0,
            _ => false,
        },
        Value::Array(items) => items.iter().any(has_suspect_number),
        Value::Object(m) => m.values().any(has_suspect_number),
        _ => false,
    }
}

fn integers(
    root: &Value,
    schema: &Value,
    value: &Value,
    pointer: &str,
    spans: &SpanMap,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(target) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        if let Some(s) = root.pointer(target) {
            integers(root, s, value, pointer, spans, out);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for branch in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            integers(root, branch, value, pointer, spans, out);
        }
    }
    let integer = match schema.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
        _ => false,
    };
    match value {
        Value::Number(n) if integer => {
            let at = describe(pointer);
            if n.is_f64() {
                out.push(
                    Diagnostic::error(
                        Code::WrongType,
                        spans.value(pointer),
                        format!("{at} must be an integer, found {n}"),
                    )
                    .label("expected an integer")
                    .help(format!(
                        "write a whole number without a fraction, such as `{}`",
                        n.as_f64().unwrap_or(0.0).trunc()
                    )),
                );
            } else if schema.get("format").and_then(Value::as_str) == Some("uint32")
                && n.as_u64().is_none_or(|v| v > u64::from(u32::MAX))
            {
                let min = schema
                    .get("minimum")
                    .map_or_else(|| "0".to_owned(), Value::to_string);
                out.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        spans.value(pointer),
                        format!("{at} must be from {min} to {}, found {n}", u32::MAX),
                    )
                    .label("out of range")
                    .help("use a smaller value"),
                );
            }
        }
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map {
                let sub = props.and_then(|p| p.get(k)).or(extra);
                if let Some(sub) = sub {
                    integers(
                        root,
                        sub,
                        v,
                        &format!("{pointer}/{}", escape(k)),
                        spans,
                        out,
                    );
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items").filter(|i| i.is_object()) {
                for (i, v) in items.iter().enumerate() {
                    integers(root, sub, v, &format!("{pointer}/{i}"), spans, out);
                }
            }
        }
        _ => {}
    }
}

/// The input types, for help lines.
const INPUT_TYPES: &[&str] = &[
    "string", "number", "integer", "boolean", "object", "array", "any",
];

type Branches = [Vec<jsonschema::ValidationError<'static>>];

/// When every branch of an `anyOf`/`oneOf` failed on a `const` at `pointer`, the constants: the
/// branches were an enum's values.
fn constants(context: &Branches, pointer: &str) -> Option<Vec<String>> {
    context
        .iter()
        .map(|branch| {
            branch.iter().find_map(|e| match e.kind() {
                ValidationErrorKind::Constant { expected_value }
                    if e.instance_path().as_str() == pointer =>
                {
                    Some(
                        expected_value
                            .as_str()
                            .map_or_else(|| expected_value.to_string(), str::to_owned),
                    )
                }
                _ => None,
            })
        })
        .collect::<Option<Vec<String>>>()
        .filter(|opts| !opts.is_empty())
}

/// The branch of an `anyOf`/`oneOf` that got furthest: one whose type fits the value (a mapping
/// given for `retry` is checked as a retry policy, not reported as "not null"), then the one with
/// the fewest errors, then the first.
fn best_branch<'c>(
    context: &'c Branches,
    pointer: &str,
) -> Option<&'c Vec<jsonschema::ValidationError<'static>>> {
    let wrong_type = |branch: &Vec<jsonschema::ValidationError<'static>>| {
        branch.iter().any(|e| {
            matches!(e.kind(), ValidationErrorKind::Type { .. })
                && e.instance_path().as_str() == pointer
        })
    };
    context
        .iter()
        .filter(|c| !c.is_empty())
        .min_by_key(|c| (wrong_type(c), c.len()))
}

/// "`x` is not a valid value for …", with a did-you-mean or the list of values.
fn not_one_of(
    at: &str,
    instance: &Value,
    opts: &[String],
    span: crate::diagnostic::Span,
) -> Diagnostic {
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let got = instance
        .as_str()
        .map_or_else(|| instance.to_string(), str::to_owned);
    let d = Diagnostic::error(
        Code::InvalidValue,
        span,
        format!("`{got}` is not a valid value for {at}"),
    )
    .label(format!("expected one of {}", list(&opts)));
    match did_you_mean(&got, opts.iter().copied()) {
        Some(s) => d.help(format!("did you mean `{s}`?")),
        None => d.help(format!("use one of {}", list(&opts))),
    }
}

/// "use a value from 0 to 1", from a schema's bounds.
fn range_help(schema: Option<&Value>) -> String {
    let bound = |k: &str| schema.and_then(|s| s.get(k)).map(Value::to_string);
    match (bound("minimum"), bound("maximum")) {
        (Some(min), Some(max)) => format!("use a value from {min} to {max}"),
        (Some(min), None) => format!("use a value of at least {min}"),
        (None, Some(max)) => format!("use a value of at most {max}"),
        (None, None) => "see docs/workflow-format.md for what this field takes".to_owned(),
    }
}

/// The required parameters of the kind whose `then` branch requires `with`.
fn required_params<'a>(root: &'a Value, schema_path: &str) -> Option<Vec<&'a str>> {
    let then = resolve(root, parent_path(schema_path))?;
    let with = then.pointer("/properties/with")?;
    let target = with
        .get("$ref")
        .or_else(|| with.pointer("/allOf/0/$ref"))?
        .as_str()?;
    let def = root.pointer(target.strip_prefix('#')?)?;
    let required: Vec<&str> = def
        .get("required")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    Some(required).filter(|r| !r.is_empty())
}

fn duration_help(found: &Value) -> String {
    match found {
        Value::Number(n) => format!("write the duration with its unit, such as `{n}ms` or `{n}s`"),
        _ => "write a duration with its unit, such as `800ms`, `2s` or `1m30s`".to_owned(),
    }
}

fn parent_path(schema_path: &str) -> &str {
    schema_path.rfind('/').map_or("", |i| &schema_path[..i])
}

/// Follows a schema keyword location (which may pass through `$ref`s) to the schema object.
fn resolve<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg == "$ref" {
            let r = cur.get("$ref")?.as_str()?;
            cur = root.pointer(r.strip_prefix('#')?)?;
            continue;
        }
        cur = match cur {
            Value::Object(m) => m.get(&seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
        if let Some(r) = cur.get("$ref").and_then(Value::as_str) {
            if cur.as_object().is_some_and(|m| m.len() == 1) {
                cur = root.pointer(r.strip_prefix('#')?)?;
            }
        }
    }
    Some(cur)
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null (an empty value)",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Turns jsonschema's `Single(String)` / `Multiple(..)` debug text into words.
fn type_words(debug: &str) -> String {
    let lower = debug.to_lowercase();
    let mut words = Vec::new();
    for (t, w) in [
        ("string", "a string"),
        ("integer", "an integer"),
        ("number", "a number"),
        ("boolean", "a boolean"),
        ("object", "a mapping"),
        ("array", "a list"),
        ("null", "null"),
    ] {
        if lower.contains(t)
            && !(t == "number" && lower.contains("integer") && !lower.contains("number"))
        {
            words.push(w);
        }
    }
    match words.len() {
        0 => debug.to_owned(),
        1 => words[0].to_owned(),
        _ => words.join(" or "),
    }
}

fn type_help(expected: &str, found: &Value) -> String {
    let numeric = |s: &str| s.trim().parse::<f64>().is_ok();
    match (expected, found) {
        ("a string", Value::Number(_) | Value::Bool(_)) => {
            "quote the value to make it a string".to_owned()
        }
        ("a boolean", Value::String(s)) if matches!(s.as_str(), "true" | "false") => {
            format!("remove the quotes: `{s}`")
        }
        ("a boolean", _) => "write `true` or `false`, without quotes".to_owned(),
        ("an integer" | "a number", Value::String(s)) if numeric(s) => {
            format!("remove the quotes: `{}`", s.trim())
        }
        ("an integer", _) => "write a whole number, such as `2`, without quotes".to_owned(),
        // A command line or several names in one string: one entry per part, not a one-entry list.
        ("a list", Value::String(s)) if s.split_whitespace().count() > 1 => {
            let parts: Vec<&str> = s.split_whitespace().collect();
            if s.contains(['|', '>', '<', ';', '&', '$', '*', '`']) {
                format!(
                    "this is a shell command line: run it through a shell, `[sh, -c, \"{}\"]`, and keep templates out of the script (pass values as arguments, `\"$1\"`)",
                    s.replace('"', "\\\"")
                )
            } else {
                format!("write one entry per part: `[{}]`", parts.join(", "))
            }
        }
        ("a list", Value::String(s)) => format!("write a list: `[{s}]`"),
        ("a mapping", Value::Null) => {
            "give the mapping's entries, indented under the key, or `{}`".to_owned()
        }
        _ => format!("write {expected} here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_of_the_nodes_mapping_is_checked_by_one_of_the_two_validators() {
        // The document keeps one entry of `nodes` (`load::load_with`): a keyword about the
        // mapping as a whole other than its type and size (`maxProperties`, say) would be checked
        // on that one entry. Such a keyword must be placed here first.
        let schema = workflow_schema(&Registry::default());
        let nodes = schema["properties"]["nodes"]
            .as_object()
            .expect("`nodes` is described");
        for k in nodes.keys() {
            assert!(
                ENTRY_KEYWORDS.contains(&k.as_str())
                    || ["type", "description", "minProperties"].contains(&k.as_str()),
                "`{k}` of `nodes`: an entry's keyword or the mapping's?"
            );
        }
        let (document, entries) = split(&schema);
        assert!(document["properties"]["nodes"]["additionalProperties"].is_null());
        assert_eq!(
            entries["properties"]["nodes"]["additionalProperties"],
            schema["properties"]["nodes"]["additionalProperties"]
        );
    }
}
