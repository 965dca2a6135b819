//! The same run and stream on the durable stores: SQLite always, PostgreSQL when
//! `BRAID_TEST_POSTGRES_URL` is set.

use reqwest::StatusCode;
use serde_json::json;

use super::harness::{Server, slow};

async fn a_run_and_its_events(url: &str) {
    // A shared database may hold other tests' unfinished runs: do not resume them.
    let s = Server::start_on(url, &[("a.yaml", &slow("alpha", "v1"))], |c| {
        c.resume_on_start = false;
    })
    .await;
    let (status, _) = s.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let run = s.start_run("alpha", json!({ "tag": "db" })).await;
    let events = s
        .client
        .get(s.url(&format!("/v1/runs/{run}/events")))
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("stream to its end");
    let ids: Vec<u64> = events
        .lines()
        .filter_map(|l| l.strip_prefix("id: ")?.parse().ok())
        .collect();
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>());
    assert!(events.contains("event: run_finished"));
    let done = s.finished(&run).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["state"]["out"], "v1 db");
    let (_, listed) = s.get("/v1/runs?workflow=alpha&limit=1000").await;
    assert!(
        listed["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .any(|r| r["run_id"] == run.as_str())
    );
    let (status, waited) = s
        .post("/v1/workflows/alpha/runs?wait=true", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(waited["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    a_run_and_its_events("sqlite:{dir}/serve.db").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    // Without a database to test against, there is nothing to check here.
    if let Ok(url) = std::env::var("BRAID_TEST_POSTGRES_URL") {
        a_run_and_its_events(&url).await;
    }
}
