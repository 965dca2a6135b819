//! The workflow routes and `POST /v1/validate`.

use reqwest::StatusCode;
use serde_json::json;

use super::harness::{Server, quick, slow};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_describes_workflows_with_inputs_schema_and_graph() {
    let s = Server::start(&[
        ("a.yaml", &slow("alpha", "v1")),
        ("b.yml", &quick("beta", "1")),
        (
            "broken.yaml",
            "version: 1\nname: broken\nnodes: {x: {kind: nope}}\n",
        ),
        ("notes.txt", "not a workflow"),
    ])
    .await;
    let (status, body) = s.get("/v1/workflows").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["workflows"]
        .as_array()
        .expect("list")
        .iter()
        .map(|w| w["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["alpha", "beta", "broken"]);

    let (status, alpha) = s.get("/v1/workflows/alpha").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(alpha["valid"], true);
    assert_eq!(alpha["file"], "a.yaml");
    assert_eq!(alpha["fingerprint"].as_str().map(str::len), Some(64));
    assert_eq!(
        alpha["inputs_schema"]["properties"]["tag"],
        json!({ "type": "string", "default": "t" })
    );
    assert_eq!(alpha["inputs_schema"]["additionalProperties"], false);
    assert!(
        alpha["graph"]
            .as_str()
            .expect("graph")
            .starts_with("flowchart"),
        "{}",
        alpha["graph"]
    );

    let (status, broken) = s.get("/v1/workflows/broken").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(broken["valid"], false);
    assert_eq!(broken["fingerprint"], json!(null));
    assert_eq!(broken["diagnostics"][0]["severity"], "error");
    assert!(
        broken["diagnostics_text"]
            .as_str()
            .is_some_and(|t| t.contains("broken.yaml"))
    );

    let (status, body) = s.post("/v1/workflows/broken/runs", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = s.get("/v1/workflows/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_inputs_get_422_with_every_problem() {
    let s = Server::start(&[("a.yaml", &slow("alpha", "v1"))]).await;
    let (status, body) = s
        .post(
            "/v1/workflows/alpha/runs",
            json!({ "inputs": { "tag": 3, "nope": true } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_inputs");
    let mut kinds: Vec<(&str, &str)> = body["error"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["input"].as_str().expect("input"),
                p["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, [("nope", "unknown"), ("tag", "wrong_type")]);

    let r = s
        .client
        .post(s.url("/v1/workflows/alpha/runs"))
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (status, _) = s
        .post(
            "/v1/workflows/alpha/runs",
            json!({ "inputs": {}, "extra": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s.get("/v1/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_answers_diagnostics_and_never_reads_the_disk() {
    let s = Server::start(&[]).await;
    let ok = s
        .client
        .post(s.url("/v1/validate"))
        .body(quick("q", "1"))
        .send()
        .await
        .expect("post");
    let (status, body) = super::harness::json(ok).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["valid"], true);
    assert_eq!(body["diagnostics"], json!([]));

    let bad = "version: 1\nname: bad\nnodes:\n  a: { kind: mock, needs: [b] }\n  b: { kind: mock, needs: [a] }\n";
    let r = s
        .client
        .post(s.url("/v1/validate?name=bad.yaml"))
        .body(bad)
        .send()
        .await
        .expect("post");
    let (status, body) = super::harness::json(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["valid"], false);
    assert_eq!(body["diagnostics"][0]["file"], "bad.yaml");
    assert!(
        body["rendered"]
            .as_str()
            .is_some_and(|t| t.contains("bad.yaml:"))
    );

    // An include names no file of the server's: reported, never read.
    let include = "version: 1\nname: inc\nstate:\n  x: { reducer: replace }\nnodes:\n  sub:\n    kind: workflow\n    writes: [x]\n    with: { path: /etc/passwd, outputs: { x: y } }\n";
    let r = s
        .client
        .post(s.url("/v1/validate"))
        .body(include)
        .send()
        .await
        .expect("post");
    let (_, body) = super::harness::json(r).await;
    assert_eq!(body["valid"], false);
    assert!(!body.to_string().contains("root:"), "{body}");
}
