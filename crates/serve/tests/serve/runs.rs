//! The run routes: start, wait, list, get, cancel, resume, retry.

use reqwest::StatusCode;
use serde_json::json;

use super::harness::{Server, eventually, quick, slow};

const APPROVAL: &str = include_str!("../../../../workflows/approval.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_wait_get_and_every_run_object_names_its_version() {
    let s = Server::start(&[("a.yaml", &slow("alpha", "v1"))]).await;
    let (status, started) = s
        .post(
            "/v1/workflows/alpha/runs",
            json!({ "inputs": { "tag": "x" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for key in ["run_id", "workflow", "fingerprint", "status"] {
        assert!(started[key].is_string(), "{key} in {started}");
    }
    assert_eq!(started["status"], "running");
    let run = started["run_id"].as_str().expect("id");
    let done = s.finished(run).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["state"], json!({ "out": "v1 x", "more": 1 }));
    assert_eq!(done["inputs"], json!({ "tag": "x" }));
    assert_eq!(done["report"]["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(done["fingerprint"], started["fingerprint"]);

    let (status, waited) = s
        .post("/v1/workflows/alpha/runs?wait=true", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(waited["status"], "succeeded");
    assert_eq!(waited["state"]["out"], "v1 t");
    assert!(waited["report"]["critical_path"].is_array(), "{waited}");

    let (status, _) = s.get("/v1/runs/0123456789abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_and_paginate() {
    let s = Server::start(&[("q.yaml", &quick("q", "1")), ("r.yaml", &quick("r", "2"))]).await;
    for _ in 0..5 {
        s.post("/v1/workflows/q/runs?wait=true", json!({})).await;
    }
    s.post("/v1/workflows/r/runs?wait=true", json!({})).await;
    let (status, all) = s.get("/v1/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["runs"].as_array().map(Vec::len), Some(6));

    let (_, qs) = s.get("/v1/runs?workflow=q&status=succeeded&limit=2").await;
    let mut seen: Vec<String> = Vec::new();
    let mut page = qs;
    loop {
        for r in page["runs"].as_array().expect("runs") {
            assert_eq!(r["workflow"], "q");
            seen.push(r["run_id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                page = s
                    .get(&format!("/v1/runs?workflow=q&limit=2&cursor={c}"))
                    .await
                    .1
            }
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    let (_, none) = s.get("/v1/runs?status=failed").await;
    assert_eq!(none["runs"], json!([]));
    assert_eq!(
        s.get("/v1/runs?status=bogus").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(s.get("/v1/runs?limit=0").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        s.get("/v1/runs?cursor=zzz").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_then_resume_then_retry_from_a_node() {
    let s = Server::start(&[("a.yaml", &slow("alpha", "v1"))]).await;
    let run = s.start_run("alpha", json!({})).await;
    let (status, _) = s.post(&format!("/v1/runs/{run}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let cancelled = s.finished(&run).await;
    assert_eq!(cancelled["status"], "cancelled");
    let (status, _) = s.post(&format!("/v1/runs/{run}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, body) = s.post(&format!("/v1/runs/{run}/resume"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["run_id"], run.as_str());
    let resumed = s.finished(&run).await;
    assert_eq!(resumed["status"], "succeeded");
    assert_eq!(resumed["state"]["more"], 1);
    let (status, _) = s.post(&format!("/v1/runs/{run}/resume"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Nothing failed: a plain retry is refused; from a node it runs that node again.
    let (status, _) = s.post(&format!("/v1/runs/{run}/retry"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s
        .post(&format!("/v1/runs/{run}/retry"), json!({ "from": "ghost" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s
        .post(
            &format!("/v1/runs/{run}/retry"),
            json!({ "from": "second" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually(|| async {
        let (_, r) = s.get(&format!("/v1/runs/{run}")).await;
        r["status"] == "succeeded" && r["restarts"] == 2
    })
    .await;
    let (status, _) = s.post("/v1/runs/nope/resume", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_resumes_with_a_checked_value() {
    let s = Server::start(&[("approval.yaml", APPROVAL)]).await;
    let run = s.start_run("approval", json!({ "topic": "rope" })).await;
    let waiting = s.finished(&run).await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    let (status, _) = s
        .post(
            &format!("/v1/runs/{run}/resume"),
            json!({ "value": { "approved": "yes" } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = s
        .post(
            &format!("/v1/runs/{run}/resume"),
            json!({ "value": { "approved": true } }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        done["state"]["published"]
            .as_str()
            .is_some_and(|p| p.contains("rope")),
        "{done}"
    );
}

/// Instant nodes that end together: their journal records may be polled in any order, and the
/// run's event sequence must still reach the store without a gap (it once failed the run with
/// "a node's end could not be recorded").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_instant_parallel_nodes_are_recorded() {
    let fan = "version: 1\nname: fan\nstate:\n  log: { reducer: append, default: [] }\nnodes:\n  a: { kind: mock, writes: [log], with: { output: { log: [a] } } }\n  b: { kind: mock, writes: [log], with: { output: { log: [b] } } }\n  c: { kind: mock, writes: [log], with: { output: { log: [c] } } }\n  d: { kind: mock, needs: [a, b, c], writes: [log], with: { output: { log: [d] } } }\n";
    let s = Server::start(&[("fan.yaml", fan)]).await;
    for _ in 0..30 {
        let (status, body) = s.post("/v1/workflows/fan/runs?wait=true", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "succeeded");
        assert_eq!(body["state"]["log"], json!(["a", "b", "c", "d"]));
    }
}
