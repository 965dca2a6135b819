//! `wait`: stops the run here until a person answers; the answer becomes the node's output.
//!
//! ```yaml
//! approve:
//!   kind: wait
//!   needs: [draft]
//!   writes: [approval]
//!   with:
//!     prompt: "Publish this draft? {{ state.draft }}"
//!     schema:                         # optional: any JSON value by default
//!       type: object
//!       properties: { approved: { type: boolean }, note: { type: string } }
//!       required: [approved]
//!     output: approval                # the state key the answer is written to
//!     deadline: 24h                   # optional: then the node fails with `timeout`
//! ```
//!
//! The node itself does almost nothing: the runtime, reaching it without an answer, renders its
//! prompt and records it as waiting (see `braid_core::wait`); a durable layer later continues
//! the run with the answer, and only then is the node called, to check the answer against its
//! schema and write it. The schema is compiled with the workflow, so a schema that is not valid
//! JSON Schema is a diagnostic at the offending key.

use std::sync::Arc;
use std::time::Duration;

use braid_core::registry::{duration_param, parse_params};
use braid_core::wait::{Answer, WaitNode};
use braid_core::{
    BuildContext, BuildError, FailureKind, NamedAs, Node, NodeContext, NodeError, NodeFuture,
    NodeKind, Templated,
};
use braid_spec::DurationSpec;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Parameters of the `wait` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// What the person is asked. A template over `inputs` and `state`, rendered when the run
    /// reaches the node; the run's summary and report show it.
    pub prompt: String,
    /// A JSON Schema the answer must match, such as `{ type: object, properties: { approved: {
    /// type: boolean } }, required: [approved] }`. Checked when the workflow is compiled (it must
    /// be a valid schema) and when an answer is given. Default: any JSON value.
    #[serde(default)]
    pub schema: Option<Map<String, Value>>,
    /// The state key the answer is written to; it must be in the node's `writes`.
    pub output: String,
    /// How long an answer is taken, from when the run reached the node (such as `24h`). After
    /// that the answer expires: the node fails with `timeout` and its `on_error` applies.
    /// Default: no limit.
    #[serde(default)]
    pub deadline: Option<DurationSpec>,
}

/// The `wait` kind.
#[derive(Debug)]
pub struct WaitKind;

struct Wait {
    prompt: Templated,
    /// The schema as written (`true` when none was).
    schema: Value,
    validator: jsonschema::Validator,
    output: String,
    deadline: Option<Duration>,
    /// The deadline as written, for messages (`24h`).
    deadline_text: Option<String>,
}

impl Node for Wait {
    fn is_instant(&self) -> bool {
        true
    }

    fn call(&self, ctx: NodeContext) -> NodeFuture {
        let result = match ctx.answer() {
            Some(Answer::Value(answer)) => self.take(answer),
            Some(Answer::Expired) => Err(NodeError::of_kind(
                FailureKind::Timeout,
                match &self.deadline_text {
                    Some(d) => format!("no answer within {d}"),
                    None => "the answer expired".to_owned(),
                },
            )
            .permanent()),
            // The runtime does not call a waiting node without its answer: this is a context
            // built by hand, or inner work (which the compiler refuses).
            None => Err(NodeError::new(format!(
                "node `{}` waits for a person's answer and was given none: only a run of its \
                 workflow can wait, and be continued with the answer",
                ctx.node()
            ))
            .permanent()),
        };
        Box::pin(std::future::ready(result))
    }

    fn waits(&self) -> Option<&dyn WaitNode> {
        Some(self)
    }
}

impl Wait {
    /// The node's update from an answer that matches its schema.
    fn take(&self, answer: &Value) -> Result<Value, NodeError> {
        if let Err(violations) = self.check(answer) {
            return Err(NodeError::of_kind(
                FailureKind::InvalidOutput,
                format!(
                    "the answer does not match the node's schema: {}",
                    violations.join("; ")
                ),
            )
            .permanent());
        }
        let mut update = Map::with_capacity(1);
        update.insert(self.output.clone(), answer.clone());
        Ok(Value::Object(update))
    }
}

impl WaitNode for Wait {
    fn schema(&self) -> &Value {
        &self.schema
    }

    fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    fn output(&self) -> &str {
        &self.output
    }

    fn check(&self, answer: &Value) -> Result<(), Vec<String>> {
        let violations: Vec<String> = self
            .validator
            .iter_errors(answer)
            .map(|e| {
                let at = e.instance_path().as_str();
                format!("at `{}`: {e}", if at.is_empty() { "/" } else { at })
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    fn prompt(&self, ctx: &NodeContext) -> Result<String, NodeError> {
        Ok(match ctx.render(&self.prompt)? {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }
}

impl NodeKind for WaitKind {
    fn name(&self) -> &str {
        "wait"
    }
    fn description(&self) -> &str {
        "Stops the run until a person answers; the answer becomes the node's output."
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<WaitParams>())
    }
    fn build(
        &self,
        params: Option<&Value>,
        cx: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let p: WaitParams = parse_params(params)?;
        if p.output.is_empty() {
            return Err(BuildError::params(
                "/output",
                "`output` names the state key the answer is written to",
            ));
        }
        let schema = p.schema.map_or(Value::Bool(true), Value::Object);
        let validator = jsonschema::validator_for(&schema).map_err(|e| {
            let at = e.instance_path().as_str();
            BuildError::params(format!("/schema{at}"), schema_error(at, e.instance(), &e))
        })?;
        let deadline = p
            .deadline
            .as_ref()
            .map(|d| duration_param("/deadline", d))
            .transpose()?;
        let prompt = cx.templated("/prompt", &Value::String(p.prompt));
        cx.will_write("/output", NamedAs::Value, &p.output);
        Ok(Arc::new(Wait {
            prompt,
            schema,
            validator,
            output: p.output,
            deadline,
            deadline_text: p.deadline.map(|d| d.0),
        }))
    }
}

/// Why a `schema` is not a valid JSON Schema, from the validator's error at `at` (a pointer into
/// the schema) about the part of it that is `found`.
fn schema_error(at: &str, found: &Value, e: &dyn std::fmt::Display) -> String {
    if at.ends_with("/type") {
        let types = "`array`, `boolean`, `integer`, `null`, `number`, `object` and `string`";
        return match found {
            Value::String(t) => format!(
                "`schema` is not a valid JSON Schema: `{t}` is not a type; the types are {types}"
            ),
            _ => format!(
                "`schema` is not a valid JSON Schema: `type` must be a type name or a list of them ({types})"
            ),
        };
    }
    format!("`schema` is not a valid JSON Schema: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(params: Value) -> Result<Arc<dyn Node>, BuildError> {
        let mut env = braid_core::TemplateEnv::new();
        let mut cx = BuildContext::new(&mut env, "/nodes/w/with");
        WaitKind.build(Some(&params), &mut cx)
    }

    #[test]
    fn an_invalid_schema_is_a_build_error_at_the_offending_key() {
        let err = build(json!({
            "prompt": "ok?",
            "output": "a",
            "schema": { "type": "object", "properties": { "ok": { "type": "strin" } } }
        }))
        .err()
        .map(|e| e.pointer);
        assert_eq!(err.as_deref(), Some("/schema/properties/ok/type"));
    }

    #[test]
    fn answers_are_checked_with_every_violation_located() {
        let node = build(json!({
            "prompt": "ok?",
            "output": "a",
            "deadline": "24h",
            "schema": {
                "type": "object",
                "properties": { "approved": { "type": "boolean" }, "note": { "type": "string" } },
                "required": ["approved"]
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let wait = node.waits().unwrap_or_else(|| panic!("a wait node waits"));
        assert_eq!(wait.output(), "a");
        assert_eq!(wait.deadline(), Some(Duration::from_secs(24 * 3600)));
        assert_eq!(wait.schema()["required"], json!(["approved"]));
        assert_eq!(wait.check(&json!({ "approved": true })), Ok(()));
        let violations = wait.check(&json!({ "note": 3 })).err().unwrap_or_default();
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            violations.iter().any(|v| v.starts_with("at `/note`: ")),
            "{violations:?}"
        );
        assert!(
            violations.iter().any(|v| v.starts_with("at `/`: ")),
            "{violations:?}"
        );
    }

    #[test]
    fn without_a_schema_any_value_is_an_answer() {
        let node = build(json!({ "prompt": "anything?", "output": "a" }))
            .unwrap_or_else(|e| panic!("{e}"));
        let wait = node.waits().unwrap_or_else(|| panic!("a wait node waits"));
        assert_eq!(wait.schema(), &Value::Bool(true));
        assert_eq!(wait.deadline(), None);
        assert_eq!(wait.check(&json!(null)), Ok(()));
        assert_eq!(wait.check(&json!([1, "x"])), Ok(()));
    }
}
