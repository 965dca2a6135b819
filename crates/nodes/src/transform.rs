//! `transform`: computes its update from templates over inputs and state, instantly.
//!
//! ```yaml
//! summary:
//!   kind: transform
//!   needs: [rag]
//!   writes: [doc_count]
//!   with:
//!     output: { doc_count: "{{ state.rag_results | length }}" }
//! ```

use std::sync::Arc;

use braid_core::registry::parse_params;
use braid_core::{BuildContext, BuildError, Node, NodeContext, NodeFuture, NodeKind, Templated};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Parameters of the `transform` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformParams {
    /// The update to write: key → value. Strings may be templates; a string that is exactly one
    /// `{{ expression }}` keeps the expression's type.
    pub output: Map<String, Value>,
}

/// The `transform` kind.
#[derive(Debug)]
pub struct TransformKind;

struct Transform {
    output: Templated,
}

impl Node for Transform {
    fn is_instant(&self) -> bool {
        true
    }
    fn call(&self, ctx: NodeContext) -> NodeFuture {
        let result = ctx.render(&self.output);
        Box::pin(std::future::ready(result))
    }
}

impl NodeKind for TransformKind {
    fn name(&self) -> &str {
        "transform"
    }
    fn description(&self) -> &str {
        "Computes its update from templates over inputs and state, with no latency."
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<TransformParams>())
    }
    fn build(
        &self,
        params: Option<&Value>,
        cx: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let p: TransformParams = parse_params(params)?;
        let output = cx.templated("/output", &Value::Object(p.output));
        Ok(Arc::new(Transform { output }))
    }
}
