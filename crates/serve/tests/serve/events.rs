//! The events stream: ids are journal sequence numbers; reconnecting with `Last-Event-ID`
//! gives every later event exactly once; the stream ends with the run.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::harness::{PATIENCE, Server, slow};

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct Sse {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// Reads up to `max` events (all, until the stream ends, with `None`).
pub(crate) async fn read(
    s: &Server,
    run: &str,
    last: Option<u64>,
    max: Option<usize>,
) -> (Vec<Sse>, bool) {
    let mut req = s.client.get(s.url(&format!("/v1/runs/{run}/events")));
    if let Some(l) = last {
        req = req.header("Last-Event-ID", l.to_string());
    }
    let mut r = req.send().await.expect("GET events");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/event-stream"))
    );
    let mut buf = String::new();
    let mut out = Vec::new();
    let read = async {
        while let Some(chunk) = r.chunk().await.expect("chunk") {
            buf.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut e = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        e.id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        e.event = v.to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        e.data = serde_json::from_str(v).unwrap_or(Value::String(v.into()));
                        any = true;
                    }
                }
                if any {
                    out.push(e);
                }
                if max.is_some_and(|m| out.len() >= m) {
                    return false;
                }
            }
        }
        true
    };
    let ended = tokio::time::timeout(PATIENCE, read)
        .await
        .expect("events in time");
    (out, ended)
}

pub(crate) fn ids(events: &[Sse]) -> Vec<u64> {
    events.iter().filter_map(|e| e.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_carries_every_event_with_its_sequence_and_ends_with_the_run() {
    let s = Server::start(&[("a.yaml", &slow("alpha", "v1"))]).await;
    let run = s.start_run("alpha", json!({})).await;
    let (events, ended) = read(&s, &run, None, None).await;
    assert!(ended);
    let ids = ids(&events);
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        events.first().map(|e| e.event.as_str()),
        Some("run_started")
    );
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("run_finished")
    );
    assert_eq!(
        events.last().map(|e| e.data["data"].clone()),
        Some(json!("succeeded"))
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "node_finished").count(), 2);

    // After the end: the same events, replayed from the store.
    let (again, ended) = read(&s, &run, None, None).await;
    assert!(ended);
    assert_eq!(super::events::ids(&again), ids);
    let (tail, _) = read(&s, &run, Some(2), None).await;
    assert_eq!(super::events::ids(&tail), ids[3..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_event_id_loses_nothing_and_repeats_nothing() {
    let s = Server::start(&[("a.yaml", &slow("alpha", "v1"))]).await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(s.start_run("alpha", json!({})).await);
    }
    for run in &runs {
        let mut got: Vec<u64> = Vec::new();
        let mut last = None;
        // Disconnect after every event or two, until the stream ends by itself.
        for round in 0.. {
            let (events, ended) = read(&s, run, last, Some(1 + round % 2)).await;
            got.extend(ids(&events));
            last = got.last().copied().or(last);
            if ended || events.iter().any(|e| e.event == "run_finished") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let want: Vec<u64> = (0..got.len() as u64).collect();
        assert_eq!(got, want, "run {run}");
        let (_, all) = s.get(&format!("/v1/runs/{run}")).await;
        assert_eq!(all["status"], "succeeded");
        let (rest, ended) = read(&s, run, last, None).await;
        assert!(ended && rest.is_empty(), "{rest:?}");
    }
    let r = s
        .client
        .get(s.url(&format!("/v1/runs/{}/events", runs[0])))
        .header("Last-Event-ID", "x")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .client
        .get(s.url("/v1/runs/nope/events"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_streamed_tokens_arrive_as_message_events_of_the_embedders_handler() {
    let engine = braid::Engine::builder()
        .handler("talker", |ctx: braid::NodeContext| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for token in ["Hel", "lo", "!"] {
                ctx.emit(json!({ "delta": token }));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(json!({ "said": "Hello!" }))
        })
        .build();
    let talk = "version: 1\nname: talk\nstate:\n  said: { reducer: replace }\nnodes:\n  talk: { kind: talker, writes: [said] }\n";
    let s = Server::start_full(engine, "memory", &[("talk.yaml", talk)], |_| {}).await;
    let run = s.start_run("talk", json!({})).await;
    let (events, ended) = read(&s, &run, None, None).await;
    assert!(ended);
    let tokens: Vec<Value> = events
        .iter()
        .filter(|e| e.event == "message")
        .map(|e| {
            assert_eq!(e.id, None, "messages are live only, without an id");
            assert_eq!(e.data["node"], "talk");
            e.data["payload"]["delta"].clone()
        })
        .collect();
    assert_eq!(tokens, [json!("Hel"), json!("lo"), json!("!")]);
    let finished = events
        .iter()
        .position(|e| e.event == "node_finished")
        .expect("finished");
    let last_token = events
        .iter()
        .rposition(|e| e.event == "message")
        .expect("tokens");
    assert!(last_token < finished);
    assert_eq!(s.finished(&run).await["state"]["said"], "Hello!");
}

/// A node's start reaches a stream while the node still runs, even when the stream subscribed
/// after the node started (nobody streamed the run then, so its events waited for the next
/// commit; subscribing sends them). The node here ends only once the test has seen it start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_subscribes_late_sees_the_running_node_start() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = gate.clone();
    let engine = braid::Engine::builder()
        .handler("held", move |_ctx: braid::NodeContext| {
            let held = held.clone();
            async move {
                held.notified().await;
                Ok(json!({ "done": true }))
            }
        })
        .build();
    let wf = "version: 1\nname: held\nstate:\n  done: { reducer: replace }\nnodes:\n  wait_for_test: { kind: held, writes: [done] }\n";
    let s = Server::start_full(engine, "memory", &[("held.yaml", wf)], |_| {}).await;
    let run = s.start_run("held", json!({})).await;
    // Let the run start its node before anyone streams it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (events, ended) = read(&s, &run, None, Some(2)).await;
    assert!(!ended);
    assert_eq!(
        events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["run_started", "node_started"]
    );
    gate.notify_one();
    assert_eq!(s.finished(&run).await["status"], "succeeded");
}
