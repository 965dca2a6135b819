//! The OpenAPI document: served, 3.1, and the committed copy matches what the code generates.

use reqwest::StatusCode;

use super::harness::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_and_matches_the_committed_copy() {
    let s = Server::start(&[]).await;
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for route in [
        "/v1/workflows",
        "/v1/workflows/{name}/runs",
        "/v1/runs/{id}/events",
        "/v1/validate",
        "/readyz",
    ] {
        assert!(doc["paths"][route].is_object(), "{route}");
    }
    let committed = include_str!("../../../../schemas/openapi.json");
    let generated = braid_serve::openapi_json();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "schemas/openapi.json drifted from the code: regenerate it with `cargo run -p braid-cli -- serve --openapi > schemas/openapi.json`"
    );
}
