//! Tokens, body size, runs in flight, CORS.

use reqwest::StatusCode;
use serde_json::json;

use super::harness::{Server, quick, slow};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_when_configured_but_not_for_health() {
    let s = Server::start_with(&[("q.yaml", &quick("q", "1"))], |c| {
        c.tokens = braid_serve::Tokens::new(["s3cret-one", "other"]);
    })
    .await;
    let r = s
        .client
        .get(s.url("/v1/workflows"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = s
        .client
        .get(s.url("/v1/workflows"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .client
        .get(s.url("/v1/workflows"))
        .bearer_auth("s3cret-one")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .client
        .get(s.url("/metrics"))
        .bearer_auth("other")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("text");
    assert!(!text.contains("s3cret"), "a token in the metrics");
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(s.get("/readyz").await.0, StatusCode::OK);
    assert!(!format!("{:?}", braid_serve::Tokens::new(["s3cret-one"])).contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_limit_get_413() {
    let s = Server::start_with(&[("q.yaml", &quick("q", "1"))], |c| c.max_body_bytes = 1024).await;
    let big = json!({ "inputs": {}, "pad": "x".repeat(4096) });
    let r = s
        .client
        .post(s.url("/v1/workflows/q/runs"))
        .json(&big)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = s
        .client
        .post(s.url("/v1/validate"))
        .body("#".repeat(4096))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_past_the_limit_get_429_with_retry_after() {
    let s = Server::start_with(&[("a.yaml", &slow("alpha", "v1"))], |c| c.max_runs = 2).await;
    let a = s.start_run("alpha", json!({})).await;
    let b = s.start_run("alpha", json!({})).await;
    let r = s
        .client
        .post(s.url("/v1/workflows/alpha/runs"))
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    let (_, health) = s.get("/healthz").await;
    assert_eq!(health["runs_in_flight"], 2);
    s.finished(&a).await;
    s.finished(&b).await;
    super::harness::eventually(|| async { s.get("/healthz").await.1["runs_in_flight"] == 0 }).await;
    s.start_run("alpha", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_unless_configured() {
    let s = Server::start(&[]).await;
    let r = s
        .client
        .get(s.url("/v1/workflows"))
        .header("Origin", "https://example.com")
        .send()
        .await
        .expect("get");
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let s = Server::start_with(&[], |c| {
        c.cors_origins = vec!["https://console.example".into()]
    })
    .await;
    let r = s
        .client
        .get(s.url("/v1/workflows"))
        .header("Origin", "https://console.example")
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://console.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_runs_in_flight_and_refuses_new_ones() {
    let s = Server::start(&[("a.yaml", &slow("alpha", "v1"))]).await;
    let run = s.start_run("alpha", json!({})).await;
    let client = s.client.clone();
    let url = s.url(&format!("/v1/runs/{run}"));
    let stopped = s.stop().await;
    assert_eq!(stopped.left_running, 0);
    // The server is gone; the run finished before it went.
    assert!(client.get(url).send().await.is_err());
}
