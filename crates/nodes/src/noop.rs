//! `noop`: does nothing and writes nothing. A join point, or a placeholder while designing a flow.

use std::sync::Arc;

use braid_core::registry::parse_params;
use braid_core::{BuildContext, BuildError, Node, NodeContext, NodeFuture, NodeKind};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;

/// `noop` takes no parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoopParams {}

/// The `noop` kind.
#[derive(Debug)]
pub struct NoopKind;

struct Noop;

impl Node for Noop {
    fn is_instant(&self) -> bool {
        true
    }
    fn call(&self, _: NodeContext) -> NodeFuture {
        Box::pin(std::future::ready(Ok(serde_json::Value::Object(
            Default::default(),
        ))))
    }
}

impl NodeKind for NoopKind {
    fn name(&self) -> &str {
        "noop"
    }
    fn description(&self) -> &str {
        "Does nothing and writes nothing: a join point or a placeholder."
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<NoopParams>())
    }
    fn build(
        &self,
        params: Option<&serde_json::Value>,
        _: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let _: NoopParams = parse_params(params)?;
        Ok(Arc::new(Noop))
    }
}
