//! Two services sharing one store as replicas (a SQLite file here, so it runs without a database
//! server; `tests/e2e/scale.rs` runs real processes on PostgreSQL): runs started through one are
//! claimed by whichever has room, and either answers for every run — its state, its events, a
//! cancel, a resume.

use std::time::Duration;

use braid_serve::ReplicaConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::events::{ids, read};
use super::harness::{Server, eventually, slow};

async fn replica(db: &str, id: &str) -> Server {
    let url = format!("sqlite:{db}");
    Server::start_on(&url, &[("a.yaml", &slow("alpha", "v1"))], |c| {
        let mut r = ReplicaConfig::new();
        r.id = id.to_owned();
        r.lease_ttl = Duration::from_secs(2);
        r.poll = Duration::from_millis(50);
        c.replica = Some(r);
        c.max_runs = 2;
        c.drain_timeout = Duration::from_millis(100);
    })
    .await
}

/// The replica running `run`, once one claimed it.
async fn owner(s: &Server, run: &str) -> String {
    eventually(|| async { s.get(&format!("/v1/runs/{run}")).await.1["replica"].is_string() }).await;
    let (_, body) = s.get(&format!("/v1/runs/{run}")).await;
    body["replica"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_runs_and_answer_for_each_others() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("runs.db").display().to_string();
    let a = replica(&db, "a").await;
    let b = replica(&db, "b").await;
    let by = |id: &str| if id == "a" { &a } else { &b };
    let other = |id: &str| if id == "a" { &b } else { &a };

    // Six runs of 600 ms through A, two slots each: B takes its share.
    let mut runs = Vec::new();
    for i in 0..6 {
        runs.push(
            a.start_run("alpha", json!({ "tag": format!("t{i}") }))
                .await,
        );
    }
    let mut ran_on = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let done = b.finished(run).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(
            done["state"],
            json!({ "out": format!("v1 t{i}"), "more": 1 })
        );
        ran_on.push(done["replica"].as_str().unwrap_or_default().to_owned());
    }
    assert!(ran_on.iter().any(|r| r == "a"), "{ran_on:?}");
    assert!(ran_on.iter().any(|r| r == "b"), "{ran_on:?}");

    // A run's events, streamed from the replica that does not run it: every one, once, in order.
    let run = a.start_run("alpha", json!({})).await;
    let on = owner(&a, &run).await;
    let (events, ended) = read(other(&on), &run, None, None).await;
    assert!(ended, "the stream ends with the run");
    let seqs = ids(&events);
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("run_finished")
    );
    assert_eq!(
        events.iter().filter(|e| e.event == "node_finished").count(),
        2
    );

    // Cancelled through the replica that does not run it, then resumed through it.
    let run = a.start_run("alpha", json!({ "tag": "c" })).await;
    let on = owner(&a, &run).await;
    let (status, body) = other(&on)
        .post(&format!("/v1/runs/{run}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let cancelled = by(&on).finished(&run).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let (status, body) = by(&on)
        .post(&format!("/v1/runs/{run}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "cancelled already: {body}");
    let (status, body) = by(&on)
        .post(&format!("/v1/runs/{run}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = other(&on).finished(&run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["state"], json!({ "out": "v1 c", "more": 1 }));
    assert_eq!(
        done["replica"],
        Value::from(on.as_str()),
        "the resuming replica took it"
    );

    // A replica stopping hands its unfinished runs back: the other finishes them.
    let run = a.start_run("alpha", json!({ "tag": "h" })).await;
    let on = owner(&a, &run).await;
    let (stopping, staying, staying_id) = if on == "a" { (a, b, "b") } else { (b, a, "a") };
    let stopped = stopping.stop().await;
    assert_eq!(stopped.handed_back, 1, "{stopped:?}");
    let done = staying.finished(&run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["replica"], staying_id);
    assert_eq!(done["state"], json!({ "out": "v1 h", "more": 1 }));
}
