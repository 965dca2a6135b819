//! The console's routes: its assets (no token, a strict policy, ETags), and the API routes it
//! reads: a version's definition, a run's node records, a workflow's figures.

use braid_serve::Tokens;
use reqwest::StatusCode;
use reqwest::header;
use serde_json::json;

use super::harness::{Server, quick, slow};

/// A run that falls back on one branch: `flaky` fails twice, then `after` runs.
const FALLS_BACK: &str = r#"version: 1
name: falls
state:
  docs: { reducer: replace, default: [] }
  answer: { reducer: replace }
nodes:
  flaky:
    kind: mock
    retry: { attempts: 2 }
    on_error: continue
    fallback: { docs: [] }
    writes: [docs]
    with: { fail_first: 5, error: index down }
  steady:
    kind: mock
    with: { latency: 20ms }
  after:
    kind: mock
    needs: [flaky, steady]
    writes: [answer]
    with: { output: { answer: done } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_with_a_strict_policy_and_no_token() {
    let s = Server::start_with(&[("a.yaml", &quick("alpha", "1"))], |c| {
        c.tokens = Tokens::new(["secret-token"]);
    })
    .await;
    // The API wants the token; the page does not.
    let (status, _) = s.get("/v1/workflows").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let page = s.client.get(s.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), StatusCode::OK);
    let h = page.headers().clone();
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap_or("");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let etag = h[header::ETAG].clone();
    let html = page.text().await.expect("body");
    assert!(html.contains(r#"<script type="module" src="/console/app.js">"#));

    let again = s
        .client
        .get(s.url("/"))
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .expect("GET / again");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], etag);

    for (path, ty) in [
        ("/console/app.js", "text/javascript"),
        ("/console/pages/run.js", "text/javascript"),
        ("/console/style.css", "text/css"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let r = s.client.get(s.url(path)).send().await.expect("GET asset");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let got = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .to_owned();
        assert!(got.starts_with(ty), "{path}: {got}");
        assert!(
            r.headers().contains_key(header::CONTENT_SECURITY_POLICY),
            "{path}"
        );
    }
    // Only the embedded files: nothing else on disk, however the path is spelled.
    for path in [
        "/console/nope.js",
        "/console/../Cargo.toml",
        "/console/%2e%2e/src/lib.rs",
    ] {
        let r = s.client.get(s.url(path)).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_can_leave_the_console_out() {
    let s = Server::start_with(&[("a.yaml", &quick("alpha", "1"))], |c| c.console = false).await;
    for path in ["/", "/console/app.js"] {
        let r = s.client.get(s.url(path)).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = s.get("/v1/workflows/alpha/definition").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_has_inputs_layers_and_the_recorded_versions_too() {
    let s = Server::start(&[
        ("a.yaml", &slow("alpha", "v1")),
        (
            "broken.yaml",
            "version: 1\nname: broken\nnodes: {x: {kind: nope}}\n",
        ),
    ])
    .await;
    let (status, def) = s.get("/v1/workflows/alpha/definition").await;
    assert_eq!(status, StatusCode::OK, "{def}");
    assert_eq!(def["name"], "alpha");
    assert_eq!(def["mode"], "parallel");
    assert_eq!(def["layers"], 2);
    assert_eq!(
        def["inputs"],
        json!([{ "name": "tag", "type": "string", "required": false, "default": "t" }])
    );
    assert_eq!(def["nodes"][0]["name"], "first");
    assert_eq!(def["nodes"][0]["layer"], 0);
    assert_eq!(def["nodes"][1]["needs"], json!(["first"]));
    assert_eq!(def["nodes"][1]["layer"], 1);
    assert_eq!(def["nodes"][1]["writes"], json!(["more"]));
    let v1 = def["fingerprint"].as_str().expect("fingerprint").to_owned();

    // A run pins v1; the file moves on to v2; the run's version is still there by fingerprint.
    let run = s.start_run("alpha", json!({})).await;
    s.finished(&run).await;
    s.write(
        "a.yaml",
        &slow("alpha", "v2")
            .replace("first:", "zeroth:")
            .replace("[first]", "[zeroth]"),
    );
    super::harness::eventually(|| async {
        let (_, d) = s.get("/v1/workflows/alpha/definition").await;
        d["fingerprint"] != v1
    })
    .await;
    let (status, old) = s
        .get(&format!("/v1/workflows/alpha/definition?fingerprint={v1}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{old}");
    assert_eq!(old["fingerprint"], v1);
    assert_eq!(old["nodes"][0]["name"], "first");
    let (_, new) = s.get("/v1/workflows/alpha/definition").await;
    assert_eq!(new["nodes"][0]["name"], "zeroth");

    for path in [
        "/v1/workflows/alpha/definition?fingerprint=0000",
        "/v1/workflows/nobody/definition",
        "/v1/workflows/broken/definition",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    // Another workflow's version is not this one's.
    let (status, _) = s
        .get(&format!("/v1/workflows/broken/definition?fingerprint={v1}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_nodes_carry_status_attempts_failure_and_writes() {
    let s = Server::start(&[("falls.yaml", FALLS_BACK)]).await;
    let run = s.start_run("falls", json!({})).await;
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "degraded");
    let (status, body) = s.get(&format!("/v1/runs/{run}/nodes")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run_id"], run.as_str());
    let nodes = body["nodes"].as_array().expect("nodes");
    let by = |n: &str| nodes.iter().find(|x| x["node"] == n).cloned().expect(n);
    let flaky = by("flaky");
    assert_eq!(flaky["status"], "fell_back");
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(flaky["writes"], json!({ "docs": [] }));
    assert!(
        flaky["failure"].to_string().contains("index down"),
        "{flaky}"
    );
    let after = by("after");
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["writes"], json!({ "answer": "done" }));
    assert!(after["started_at"].as_i64() <= after["ended_at"].as_i64());

    let (status, body) = s.get("/v1/runs/no-such-run/nodes").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_give_latency_failure_rate_by_node_and_speedup() {
    let s = Server::start(&[("falls.yaml", FALLS_BACK), ("a.yaml", &quick("alpha", "1"))]).await;
    let (status, empty) = s.get("/v1/workflows/falls/stats").await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["runs"], 0);
    assert_eq!(empty["latency_ms"]["p50"], json!(null));
    assert_eq!(empty["failure_rate"], json!(null));

    for _ in 0..3 {
        let run = s.start_run("falls", json!({})).await;
        s.finished(&run).await;
    }
    let run = s.start_run("alpha", json!({})).await;
    s.finished(&run).await;

    let (status, st) = s.get("/v1/workflows/falls/stats").await;
    assert_eq!(status, StatusCode::OK, "{st}");
    assert_eq!(st["workflow"], "falls");
    assert_eq!(st["runs"], 3);
    assert_eq!(st["by_status"], json!({ "degraded": 3 }));
    assert_eq!(st["failure_rate"], 0.0);
    assert_eq!(st["latency_ms"]["count"], 3);
    assert!(
        st["latency_ms"]["p50"].as_f64().is_some_and(|v| v >= 20.0),
        "{st}"
    );
    assert!(st["latency_ms"]["p99"].as_f64() >= st["latency_ms"]["p50"].as_f64());
    assert_eq!(st["recent"].as_array().map(Vec::len), Some(3));
    assert!(
        st["speedup"]["p50"].as_f64().is_some_and(|v| v > 0.0),
        "{st}"
    );
    let nodes = st["nodes"].as_array().expect("nodes");
    let by = |n: &str| nodes.iter().find(|x| x["node"] == n).cloned().expect(n);
    assert_eq!(by("flaky")["fell_back"], 3);
    assert_eq!(by("flaky")["failure_rate"], 1.0);
    assert_eq!(by("steady")["failure_rate"], 0.0);
    assert_eq!(by("steady")["runs"], 3);

    let (_, one) = s.get("/v1/workflows/falls/stats?limit=1").await;
    assert_eq!(one["runs"], 1);
    for bad in ["0", "501", "x"] {
        let (status, body) = s
            .get(&format!("/v1/workflows/falls/stats?limit={bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}
