//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! body types' `ToSchema` derivations; committed as `schemas/openapi.json`, and a test fails
//! when the two drift (regenerate with `braid serve --openapi > schemas/openapi.json`).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::definition::{InputField, NodeEnd, NodeShape, RunNodes, WorkflowDefinition};
use super::error::{ErrorBody, ErrorDetail, InputProblem};
use super::stats::{NodeStats, Percentiles, RunPoint, WorkflowStats};
use super::types::{
    Health, ResumeRun, RetryRun, RunList, RunView, StartRun, Validation, WorkflowList, WorkflowView,
};
use super::{definition, events, ops, runs, stats, workflows};

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Braid", description = "Braid's HTTP API: workflows loaded from a directory, durable runs, live events. See docs/serve.md."),
    paths(
        workflows::list, workflows::get, workflows::start, workflows::validate,
        runs::list, runs::get, runs::cancel, runs::resume, runs::retry, events::stream,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
        definition::get, definition::nodes, stats::get,
    ),
    components(schemas(
        WorkflowList, WorkflowView, StartRun, RunView, RunList, ResumeRun, RetryRun, Validation,
        Health, ErrorBody, ErrorDetail, InputProblem,
        WorkflowDefinition, InputField, NodeShape, RunNodes, NodeEnd,
        WorkflowStats, Percentiles, RunPoint, NodeStats,
    )),
    modifiers(&Bearer),
    security(("bearer" = []), ()),
    tags(
        (name = "workflows", description = "The workflows served, and checking workflow text"),
        (name = "runs", description = "Durable runs: start, read, follow, cancel, resume, retry"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme (required only when the service has tokens).
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // Every route but the health checks answers 401 when tokens are configured.
        let unauthorized = ResponseBuilder::new()
            .description("No valid bearer token (only when the service has tokens)")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for (path, item) in &mut openapi.paths.paths {
            if path == "/healthz" || path == "/readyz" {
                continue;
            }
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                op.responses
                    .responses
                    .insert("401".to_owned(), unauthorized.clone().into());
            }
        }
    }
}
