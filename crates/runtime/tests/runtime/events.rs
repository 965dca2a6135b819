//! The event stream of a run: `RunStarted` first, `RunFinished` last, one `NodeStarted` per attempt
//! and one `NodeFinished` per node, `NodeRetrying` per retried attempt, timestamps that agree with
//! the report and never go back.

use std::collections::BTreeMap;
use std::time::Duration;

use braid::{Event, FailureKind, NodeStatus, RunOptions, RunResult, RunStatus};
use serde_json::json;

use crate::mode1::MODE1;
use crate::util::{load, ms, run_events};

fn at(e: &Event) -> Option<Duration> {
    match e {
        Event::NodeStarted { at, .. }
        | Event::NodeRetrying { at, .. }
        | Event::NodeFinished { at, .. } => Some(*at),
        Event::RunFinished { wall_time, .. } => Some(*wall_time),
        _ => None,
    }
}

/// Checks the stream's shape against the report; returns (starts, retries) per node.
#[allow(clippy::type_complexity)]
fn check_stream(
    r: &RunResult,
    events: &[Event],
) -> (BTreeMap<String, Vec<(u32, Duration)>>, Vec<Event>) {
    assert_eq!(
        events.first(),
        Some(&Event::RunStarted {
            workflow: "mode1-manual".into(),
            nodes: r.report.nodes.len()
        })
    );
    assert_eq!(
        events.last(),
        Some(&Event::RunFinished {
            status: r.status,
            wall_time: r.report.wall_time
        })
    );
    let middle = &events[1..events.len() - 1];
    assert!(
        !middle
            .iter()
            .any(|e| matches!(e, Event::RunStarted { .. } | Event::RunFinished { .. }))
    );

    let times: Vec<Duration> = events.iter().filter_map(at).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "timestamps never go back: {times:?}"
    );

    let mut starts: BTreeMap<String, Vec<(u32, Duration)>> = BTreeMap::new();
    let mut finished: BTreeMap<String, Vec<(NodeStatus, Duration)>> = BTreeMap::new();
    let mut retries = Vec::new();
    for e in middle {
        match e {
            Event::NodeStarted { node, attempt, at } => {
                assert!(
                    !finished.contains_key(&**node),
                    "`{node}` started after it finished"
                );
                starts
                    .entry(node.to_string())
                    .or_default()
                    .push((*attempt, *at));
            }
            Event::NodeFinished { node, status, at } => finished
                .entry(node.to_string())
                .or_default()
                .push((*status, *at)),
            Event::NodeRetrying { .. } => retries.push(e.clone()),
            other => panic!("unexpected event {other:?}"),
        }
    }
    for n in &r.report.nodes {
        let expected = match n.status {
            NodeStatus::NotStarted => None,
            status => Some(vec![(status, n.end.expect("ended"))]),
        };
        assert_eq!(
            finished.get(&*n.name),
            expected.as_ref(),
            "one NodeFinished for `{}`, agreeing with the report",
            n.name
        );
        let attempts = starts.get(&*n.name).map_or(0, Vec::len) as u32;
        assert_eq!(
            attempts, n.attempts,
            "one NodeStarted per attempt of `{}`",
            n.name
        );
        if let Some(first) = starts.get(&*n.name).and_then(|s| s.first()) {
            assert_eq!(*first, (1, n.start.expect("started")), "`{}`", n.name);
        }
    }
    (starts, retries)
}

#[tokio::test(start_paused = true)]
async fn mode1_events() {
    let (r, events) = run_events(&load(MODE1), json!({}), RunOptions::default()).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    let (starts, retries) = check_stream(&r, &events);
    assert_eq!(starts.len(), 7, "every node executed");
    assert!(starts.values().all(|s| s.len() == 1));
    assert!(retries.is_empty());
    assert_eq!(events.len(), 1 + 7 + 7 + 1);
}

#[tokio::test(start_paused = true)]
async fn mode1_events_with_a_retry_and_skips() {
    let yaml = MODE1.replacen(
        "      latency: 500ms\n",
        "      latency: 500ms\n      fail_first: 1\n",
        1,
    );
    let (r, events) = run_events(
        &load(&yaml),
        json!({ "enable_tools": false }),
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded);
    // rag: 0-500 fails, waits 50, 550-1050; llm 1050-3050; citations 3050-3200.
    assert_eq!(r.report.wall_time, ms(3200));
    let (starts, retries) = check_stream(&r, &events);
    assert_eq!(starts["rag"], [(1, ms(0)), (2, ms(550))]);
    assert!(!starts.contains_key("tools"), "a skipped node never starts");
    assert_eq!(starts.len(), 6);
    assert_eq!(retries.len(), 1);
    let Event::NodeRetrying {
        node,
        attempt,
        failure,
        message,
        delay,
        at,
    } = &retries[0]
    else {
        unreachable!()
    };
    assert_eq!(
        (&**node, *attempt, *failure, message.as_str(), *delay, *at),
        (
            "rag",
            1,
            FailureKind::Error,
            "scripted failure",
            ms(50),
            ms(500)
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_run_finishes_its_stream() {
    let yaml = MODE1.replace("timeout: 5s", "timeout: 1s");
    let (r, events) = run_events(&load(&yaml), json!({}), RunOptions::default()).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.report.wall_time, ms(1500));
    check_stream(&r, &events);
}
