//! Hot reload by editing files on disk.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::harness::{Server, eventually, quick, slow};

async fn fingerprint(s: &Server, name: &str) -> Value {
    s.get(&format!("/v1/workflows/{name}")).await.1["fingerprint"].clone()
}

async fn run_out(s: &Server, name: &str) -> Value {
    let (status, body) = s
        .post(&format!("/v1/workflows/{name}/runs?wait=true"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["state"]["out"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_edit_serves_new_runs_and_an_invalid_one_keeps_the_old_version() {
    let s = Server::start(&[("q.yaml", &quick("q", "1"))]).await;
    assert_eq!(run_out(&s, "q").await, 1);
    let v1 = fingerprint(&s, "q").await;

    s.write("q.yaml", &quick("q", "2"));
    eventually(|| async { fingerprint(&s, "q").await != v1 }).await;
    assert_eq!(run_out(&s, "q").await, 2);
    let v2 = fingerprint(&s, "q").await;

    // Broken: the previous version keeps serving, and the API says why.
    s.write(
        "q.yaml",
        "version: 1\nname: q\nnodes:\n  only: { kind: mock, needs: [ghost] }\n",
    );
    eventually(|| async { s.get("/v1/workflows/q").await.1["valid"] == false }).await;
    let (_, view) = s.get("/v1/workflows/q").await;
    assert_eq!(view["fingerprint"], v2);
    assert!(
        view["diagnostics_text"]
            .as_str()
            .is_some_and(|t| t.contains("ghost")),
        "{view}"
    );
    assert_eq!(run_out(&s, "q").await, 2);

    // Fixed: new runs use the fixed version.
    s.write("q.yaml", &quick("q", "3"));
    eventually(|| async { s.get("/v1/workflows/q").await.1["valid"] == true }).await;
    assert_eq!(run_out(&s, "q").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_stops_accepting_runs_and_its_runs_in_flight_finish() {
    let s = Server::start(&[("a.yaml", &slow("alpha", "v1"))]).await;
    let run = s.start_run("alpha", json!({})).await;
    std::fs::remove_file(s.path("a.yaml")).expect("rm");
    eventually(|| async { s.get("/v1/workflows/alpha").await.0 == StatusCode::NOT_FOUND }).await;
    let (status, _) = s.post("/v1/workflows/alpha/runs", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["state"]["out"], "v1 t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_in_flight_across_a_reload_finishes_on_its_version() {
    let s = Server::start(&[("a.yaml", &slow("alpha", "v1"))]).await;
    let v1 = fingerprint(&s, "alpha").await;
    let run = s.start_run("alpha", json!({ "tag": "x" })).await;
    s.write("a.yaml", &slow("alpha", "v2"));
    eventually(|| async { fingerprint(&s, "alpha").await != v1 }).await;
    let newer = s.start_run("alpha", json!({ "tag": "y" })).await;

    let old = s.finished(&run).await;
    assert_eq!(old["state"]["out"], "v1 x");
    assert_eq!(old["fingerprint"], v1);
    let new = s.finished(&newer).await;
    assert_eq!(new["state"]["out"], "v2 y");
    assert_ne!(new["fingerprint"], v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_an_included_file_recompiles_its_includer() {
    let parent = "version: 1\nname: parent\nstate:\n  out: { reducer: replace }\nnodes:\n  call:\n    kind: workflow\n    writes: [out]\n    with: { path: sub/child.yaml, outputs: { out: out } }\n";
    let s = Server::start(&[
        ("parent.yaml", parent),
        ("sub/child.yaml", &quick("child", "1")),
    ])
    .await;
    assert_eq!(run_out(&s, "parent").await, 1);
    let before = fingerprint(&s, "parent").await;
    s.write("sub/child.yaml", &quick("child", "2"));
    eventually(|| async { fingerprint(&s, "parent").await != before }).await;
    assert_eq!(run_out(&s, "parent").await, 2);

    // A broken include makes the includer invalid; its last version keeps serving.
    s.write(
        "sub/child.yaml",
        "version: 1\nname: child\nnodes: {only: {kind: nope}}\n",
    );
    eventually(|| async { s.get("/v1/workflows/parent").await.1["valid"] == false }).await;
    assert_eq!(run_out(&s, "parent").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_edits_ends_on_the_last_one() {
    let s = Server::start(&[("q.yaml", &quick("q", "0"))]).await;
    for i in 1..=30 {
        let text = if i % 3 == 0 {
            "version: 1\nname: q\nnodes: [oops\n".to_owned()
        } else {
            quick("q", &i.to_string())
        };
        s.write("q.yaml", &text);
        tokio::time::sleep(std::time::Duration::from_millis(7)).await;
    }
    s.write("q.yaml", &quick("q", "99"));
    eventually(|| async {
        let (_, v) = s.get("/v1/workflows/q").await;
        v["valid"] == true && run_out(&s, "q").await == 99
    })
    .await;
    // A new file appears too.
    s.write("new.yaml", &quick("fresh", "5"));
    eventually(|| async { s.get("/v1/workflows/fresh").await.0 == StatusCode::OK }).await;
    assert_eq!(run_out(&s, "fresh").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_and_requests_are_counted_in_metrics() {
    let s = Server::start(&[("q.yaml", &quick("q", "1"))]).await;
    s.write("q.yaml", "version: 1\nname: q\nnodes: [oops\n");
    eventually(|| async { s.get("/v1/workflows/q").await.1["valid"] == false }).await;
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("braid_serve_reloads_total{result=\"invalid\"}"),
        "{text}"
    );
    assert!(
        text.contains("braid_serve_reloads_total{result=\"loaded\"}"),
        "{text}"
    );
    assert!(text.contains("braid_serve_http_requests_total{method=\"GET\",route=\"/v1/workflows/{name}\",status=\"200\"}"), "{text}");
}
