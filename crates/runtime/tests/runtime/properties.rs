//! Properties over random DAGs, each run on a fresh current-thread runtime with a paused clock.
//!
//! * Determinism: whatever the latencies, the concurrency or the mode, the final state is the same,
//!   byte for byte; and an unbounded parallel run takes exactly its longest path.
//! * Reliability: with random failures, timeouts, panics and hangs under a run timeout, the run
//!   always ends, reports every node once with a coherent status, and keeps exactly the
//!   contributions of the nodes that succeeded or fell back with a fallback.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use braid::{
    Engine, Event, ExecutionMode, FailureKind, NodeContext, NodeStatus, RunError, RunOptions,
    RunResult, RunStatus, Workflow,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::{Value, json};

use crate::util::{Recorder, drain, load_with, quiet_scripted_panics, state_text};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    Engine::builder()
        .handler("sync_panic", |ctx: NodeContext| {
            if ctx.attempt() > 0 {
                panic!("the handler panicked before returning its future, as scripted");
            }
            async { Ok(json!({})) }
        })
        .build()
});

/// 64 cases keep the suite fast; `PROPTEST_CASES=5000` searches harder.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs a future to the end on a fresh single-threaded runtime whose clock is paused.
fn block_on<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(f)
}

fn run(wf: &Workflow, options: RunOptions) -> RunResult {
    block_on(async {
        // One virtual hour: a run that never ends fails here instead of hanging the suite.
        match tokio::time::timeout(Duration::from_secs(3600), wf.run(json!({}), options)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("the run did not start: {e}"),
            Err(_) => panic!("the run did not end within an hour of virtual time"),
        }
    })
}

/// Random `needs`: up to three edges per node, each from a lower index.
fn needs(n: usize) -> impl Strategy<Value = Vec<Vec<usize>>> {
    proptest::collection::vec(proptest::collection::vec(any::<Index>(), 0..=3), n).prop_map(
        |parents| {
            parents
                .into_iter()
                .enumerate()
                .map(|(i, ps)| {
                    let set: BTreeSet<usize> = if i == 0 {
                        BTreeSet::new()
                    } else {
                        ps.iter().map(|p| p.index(i)).collect()
                    };
                    set.into_iter().collect()
                })
                .collect()
        },
    )
}

/// The canonical order of a DAG given by `needs` (lower indices first): Kahn, smallest index first.
fn canonical(needs: &[Vec<usize>]) -> Vec<usize> {
    let n = needs.len();
    let mut indegree: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut order = Vec::with_capacity(n);
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for (j, ns) in needs.iter().enumerate() {
            if ns.contains(&i) {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.insert(j);
                }
            }
        }
    }
    order
}

fn name(i: usize) -> String {
    format!("n{i:02}")
}

fn needs_yaml(y: &mut String, needs: &[usize]) {
    if !needs.is_empty() {
        let list: Vec<String> = needs.iter().map(|&p| name(p)).collect();
        writeln!(y, "    needs: [{}]", list.join(", ")).expect("writing to a String");
    }
}

// ---------------------------------------------------------------------------------------------
// Determinism

const KEYS: [&str; 8] = ["log", "total", "weight", "obj", "tags", "last", "lo", "hi"];

#[derive(Debug, Clone)]
struct Dag {
    needs: Vec<Vec<usize>>,
    /// Latencies in ms, two sets.
    latency: [Vec<u64>; 2],
    /// Bit `k` set: the node writes `KEYS[k]`.
    writes: Vec<u8>,
}

fn dag() -> impl Strategy<Value = Dag> {
    (1usize..=25)
        .prop_flat_map(|n| {
            let lat = || proptest::collection::vec((0u64..=50).prop_map(|t| t * 10), n);
            (
                needs(n),
                lat(),
                lat(),
                proptest::collection::vec(any::<u8>(), n),
            )
        })
        .prop_map(|(mut needs, a, b, writes)| {
            // Writers of the `replace` key `last` must be ordered: chain each to the previous one.
            let mut prev = None;
            for (i, w) in writes.iter().enumerate() {
                if w & (1 << 5) != 0 {
                    if let Some(p) = prev {
                        if !needs[i].contains(&p) {
                            needs[i].push(p);
                            needs[i].sort_unstable();
                        }
                    }
                    prev = Some(i);
                }
            }
            Dag {
                needs,
                latency: [a, b],
                writes,
            }
        })
}

/// A node's contribution to key `k`, derived from its index (and so its name).
fn contribution(i: usize, k: usize) -> Value {
    let me = name(i);
    match KEYS[k] {
        "log" => json!([me]),
        "total" => json!(i),
        "weight" => json!((i as f64 + 1.0) / 10.0),
        "obj" => json!({ me.clone(): i, "winner": me, "nested": { format!("k{}", i % 3): i } }),
        "tags" => json!([format!("t{}", i % 4), format!("t{}", i % 3)]),
        "last" => json!(me),
        "lo" | "hi" => json!((i * 7) % 11),
        _ => unreachable!(),
    }
}

fn dag_yaml(dag: &Dag, set: usize) -> String {
    let mut y = String::from(
        "version: 1\nname: random-dag\nstate:\n  log: { reducer: append, default: [] }\n  total: { reducer: sum, default: 0 }\n  weight: { reducer: sum }\n  obj: { reducer: merge, default: {} }\n  tags: { reducer: union, default: [] }\n  last: { reducer: replace, default: none }\n  lo: { reducer: min, default: 100 }\n  hi: { reducer: max, default: -1 }\n  summary: { reducer: replace }\nnodes:\n",
    );
    let n = dag.needs.len();
    for i in 0..n {
        writeln!(y, "  {}:\n    kind: mock", name(i)).expect("writing to a String");
        needs_yaml(&mut y, &dag.needs[i]);
        let mut keys = Vec::new();
        let mut output = serde_json::Map::new();
        for (k, key) in KEYS.iter().enumerate() {
            let bit = if k == 7 { 6 } else { k };
            if dag.writes[i] & (1 << bit) != 0 {
                keys.push(*key);
                output.insert((*key).to_owned(), contribution(i, k));
            }
        }
        writeln!(y, "    writes: [{}]", keys.join(", ")).expect("writing to a String");
        let latency = dag.latency[set][i];
        let latency = if latency == 0 {
            String::new()
        } else {
            format!("latency: {latency}ms, ")
        };
        writeln!(
            y,
            "    with: {{ {latency}output: {} }}",
            Value::Object(output)
        )
        .expect("writing to a String");
    }
    // A sink that needs every node and reads what they wrote.
    let all: Vec<usize> = (0..n).collect();
    writeln!(y, "  sink:\n    kind: mock").expect("writing to a String");
    needs_yaml(&mut y, &all);
    y.push_str("    writes: [summary]\n");
    y.push_str("    with: { output: { summary: \"{{ state.log | join(',') }}/{{ state.total }}/{{ state.last }}/{{ state.tags | length }}\" } }\n");
    y
}

/// The longest path through the DAG, by latency.
fn longest_path(dag: &Dag, set: usize) -> u64 {
    let mut end = vec![0u64; dag.needs.len()];
    for i in 0..dag.needs.len() {
        let start = dag.needs[i].iter().map(|&p| end[p]).max().unwrap_or(0);
        end[i] = start + dag.latency[set][i];
    }
    end.into_iter().max().unwrap_or(0)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_final_state_does_not_depend_on_timing(dag in dag(), cap in 1u32..=4) {
        let a = load_with(&ENGINE, &dag_yaml(&dag, 0));
        let b = load_with(&ENGINE, &dag_yaml(&dag, 1));
        let parallel = run(&a, RunOptions::default());
        let sequential = run(&a, RunOptions { mode: Some(ExecutionMode::Sequential), ..RunOptions::default() });
        let other_latencies = run(&b, RunOptions::default());
        let bounded = run(&b, RunOptions { max_concurrency: Some(cap), ..RunOptions::default() });

        for r in [&parallel, &sequential, &other_latencies, &bounded] {
            prop_assert_eq!(r.status, RunStatus::Succeeded);
        }
        let text = state_text(&parallel);
        prop_assert_eq!(&text, &state_text(&sequential));
        prop_assert_eq!(&text, &state_text(&other_latencies));
        prop_assert_eq!(&text, &state_text(&bounded));

        // Exact timings: a node starts when its last need ends; the run takes its longest path,
        // or the sum of its nodes one at a time.
        let ms = Duration::from_millis;
        let n = dag.needs.len();
        prop_assert_eq!(parallel.report.wall_time, ms(longest_path(&dag, 0)));
        prop_assert_eq!(sequential.report.wall_time, ms(dag.latency[0].iter().sum()));
        prop_assert_eq!(other_latencies.report.wall_time, ms(longest_path(&dag, 1)));
        for i in 0..n {
            let me = parallel.report.node(&name(i)).expect("reported");
            let ready = dag.needs[i].iter().map(|&p| parallel.report.node(&name(p)).and_then(|r| r.end).expect("ended")).max();
            prop_assert_eq!(me.start, Some(ready.unwrap_or_default()), "{}", me.name);
            prop_assert_eq!(me.duration(), ms(dag.latency[0][i]), "{}", me.name);
        }

        // An independent oracle for the fold order: `log` lists its writers in canonical order.
        let writers: Vec<Value> = canonical(&dag.needs)
            .into_iter()
            .filter(|&i| dag.writes[i] & 1 != 0)
            .map(|i| json!(name(i)))
            .collect();
        prop_assert_eq!(&parallel.state["log"], &Value::Array(writers));
        let total: usize = (0..n).filter(|&i| dag.writes[i] & 2 != 0).sum();
        prop_assert_eq!(&parallel.state["total"], &json!(total));
    }
}

// ---------------------------------------------------------------------------------------------
// Starting from partial state

/// A random subset of the nodes closed under `needs` (a node is in only if all its needs are):
/// what an interrupted run may have settled.
fn settled_prefix(needs: &[Vec<usize>], bits: u64) -> BTreeSet<usize> {
    let mut x = bits;
    let mut set = BTreeSet::new();
    for i in canonical(needs) {
        // A linear congruential step: two thirds of the eligible nodes are kept.
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if needs[i].iter().all(|p| set.contains(p)) && (x >> 33) % 3 != 0 {
            set.insert(i);
        }
    }
    set
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_run_continued_from_settled_nodes_ends_as_an_uninterrupted_one(
        dag in dag(),
        bits in any::<u64>(),
        sequential in any::<bool>(),
    ) {
        let wf = load_with(&ENGINE, &dag_yaml(&dag, 0));
        let mode = sequential.then_some(ExecutionMode::Sequential);
        let recorder = std::sync::Arc::new(Recorder::default());
        let whole = run(&wf, RunOptions { mode, seed: bits, observer: Some(recorder.clone()), ..RunOptions::default() });
        prop_assert_eq!(whole.status, RunStatus::Succeeded);

        let keep = settled_prefix(&dag.needs, bits);
        let settled: Vec<braid::PriorNode> = recorder
            .ends()
            .into_iter()
            .filter(|e| keep.iter().any(|&i| name(i) == e.node))
            .collect();
        prop_assert_eq!(settled.len(), keep.len());
        let (continued, events) = block_on(async {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let options = RunOptions { mode, seed: bits, events: Some(tx), ..RunOptions::default() };
            let r = wf.run_from(settled, json!({}), options).await.expect("the run continues");
            (r, drain(rx))
        });

        prop_assert_eq!(continued.status, whole.status);
        prop_assert_eq!(state_text(&continued), state_text(&whole));
        for (a, b) in whole.report.nodes.iter().zip(&continued.report.nodes) {
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(a.status, b.status, "{}", a.name);
            prop_assert_eq!(a.attempts, b.attempts, "{}", a.name);
        }
        // No settled node ran again; every other node ran once.
        for n in whole.report.nodes.iter() {
            let starts = events
                .iter()
                .filter(|e| matches!(e, Event::NodeStarted { node, .. } if *node == n.name))
                .count();
            let was_settled = keep.iter().any(|&i| *name(i) == *n.name);
            prop_assert_eq!(starts, usize::from(!was_settled), "{}", n.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reliability

#[derive(Debug, Clone)]
enum Behaviour {
    Ok,
    FailFirst(u32),
    FailRate(f64),
    Slow,
    Panic,
    SyncPanic,
    Hang,
    Garbage,
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Policy {
    Fail,
    Fallback,
    NoFallback,
}

#[derive(Debug, Clone)]
struct Chaos {
    behaviour: Behaviour,
    policy: Policy,
    latency: u64,
    timeout: Option<u64>,
    attempts: u32,
    backoff: u64,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        4 => Just(Behaviour::Ok),
        2 => (1u32..=3).prop_map(Behaviour::FailFirst),
        2 => prop_oneof![Just(0.3), Just(0.7)].prop_map(Behaviour::FailRate),
        1 => Just(Behaviour::Slow),
        1 => Just(Behaviour::Panic),
        1 => Just(Behaviour::SyncPanic),
        1 => Just(Behaviour::Hang),
        1 => Just(Behaviour::Garbage),
        1 => Just(Behaviour::Skipped),
    ]
}

fn chaos() -> impl Strategy<Value = Chaos> {
    (
        behaviour(),
        prop_oneof![1 => Just(Policy::Fail), 3 => Just(Policy::Fallback), 1 => Just(Policy::NoFallback)],
        (0u64..=30).prop_map(|t| t * 10),
        proptest::option::weighted(0.6, (5u64..=40).prop_map(|t| t * 10)),
        1u32..=3,
        (0u64..=10).prop_map(|t| t * 10),
    )
        .prop_map(|(behaviour, policy, latency, timeout, attempts, backoff)| {
            // A slow node is one slower than its timeout: it needs one.
            let timeout = match behaviour {
                Behaviour::Slow => timeout.or(Some(100)),
                _ => timeout,
            };
            Chaos { behaviour, policy, latency, timeout, attempts, backoff }
        })
}

fn chaos_yaml(needs: &[Vec<usize>], nodes: &[Chaos]) -> String {
    let mut y = String::from(
        "version: 1\nname: chaos\ninputs:\n  off: { type: boolean, default: false }\nstate:\n  names: { reducer: append, default: [] }\nnodes:\n",
    );
    for (i, c) in nodes.iter().enumerate() {
        let me = name(i);
        let kind = if matches!(c.behaviour, Behaviour::SyncPanic) {
            "sync_panic"
        } else {
            "mock"
        };
        writeln!(y, "  {me}:\n    kind: {kind}").expect("writing to a String");
        needs_yaml(&mut y, &needs[i]);
        y.push_str("    writes: [names]\n");
        if let Some(t) = c.timeout {
            writeln!(y, "    timeout: {t}ms").expect("writing to a String");
        }
        writeln!(
            y,
            "    retry: {{ attempts: {}, backoff: {}ms }}",
            c.attempts, c.backoff
        )
        .expect("writing to a String");
        match c.policy {
            Policy::Fail => {}
            Policy::Fallback => writeln!(
                y,
                "    on_error: continue\n    fallback: {{ names: [{me}] }}"
            )
            .expect("writing to a String"),
            Policy::NoFallback => y.push_str("    on_error: continue\n"),
        }
        let output = format!("output: {{ names: [{me}] }}");
        let latency = format!("latency: {}ms", c.latency);
        let with = match &c.behaviour {
            Behaviour::Ok => format!("{latency}, {output}"),
            Behaviour::FailFirst(n) => format!("{latency}, fail_first: {n}, {output}"),
            Behaviour::FailRate(p) => format!("{latency}, fail_rate: {p}, {output}"),
            Behaviour::Slow => format!(
                "latency: {}ms, {output}",
                c.timeout.unwrap_or(0) + c.latency + 10
            ),
            Behaviour::Panic => format!("{latency}, panic: true"),
            Behaviour::SyncPanic => String::new(),
            Behaviour::Hang => format!("{latency}, hang: true"),
            Behaviour::Garbage => format!("{latency}, raw_output: [{me}]"),
            Behaviour::Skipped => {
                y.push_str("    when: inputs.off\n");
                format!("{latency}, {output}")
            }
        };
        if !with.is_empty() {
            writeln!(y, "    with: {{ {with} }}").expect("writing to a String");
        }
    }
    y
}

/// A DAG of misbehaving nodes, the run's timeout in ms, a seed, and whether the run is a spawned
/// task (then the scheduler and its nodes' tasks race for the deadline) or the runtime's main future.
#[allow(clippy::type_complexity)]
fn chaos_case() -> impl Strategy<Value = (Vec<Vec<usize>>, Vec<Chaos>, u64, u64, bool)> {
    (1usize..=25).prop_flat_map(|n| {
        (
            needs(n),
            proptest::collection::vec(chaos(), n),
            (3u64..=30).prop_map(|t| t * 100),
            any::<u64>(),
            any::<bool>(),
        )
    })
}

/// Runs with events, as the main future or as a spawned task.
fn run_with_events(wf: &Workflow, options: RunOptions, spawned: bool) -> (RunResult, Vec<Event>) {
    block_on(async {
        let (fut, rx) = wf
            .run_with_events(json!({}), options)
            .expect("the inputs fit");
        let run = async move {
            if spawned {
                tokio::spawn(fut).await.expect("the run's task")
            } else {
                fut.await
            }
        };
        let r = tokio::time::timeout(Duration::from_secs(3600), run)
            .await
            .expect("the run ends within an hour of virtual time");
        (r, drain(rx))
    })
}

/// The event stream agrees with the report.
fn check_events(r: &RunResult, events: &[Event]) -> Result<(), TestCaseError> {
    let first_is_run_started = matches!(events.first(), Some(Event::RunStarted { nodes, .. }) if *nodes == r.report.nodes.len());
    prop_assert!(first_is_run_started);
    let finished = Event::RunFinished {
        status: r.status,
        wall_time: r.report.wall_time,
    };
    prop_assert_eq!(events.last(), Some(&finished));
    let times: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e {
            Event::NodeStarted { at, .. }
            | Event::NodeRetrying { at, .. }
            | Event::NodeFinished { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    prop_assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go back: {:?}",
        times
    );
    for n in &r.report.nodes {
        let mine = |e: &&Event| match e {
            Event::NodeStarted { node, .. }
            | Event::NodeRetrying { node, .. }
            | Event::NodeFinished { node, .. } => **node == *n.name,
            _ => false,
        };
        let started = events
            .iter()
            .filter(mine)
            .filter(|e| matches!(e, Event::NodeStarted { .. }))
            .count() as u32;
        let retrying = events
            .iter()
            .filter(mine)
            .filter(|e| matches!(e, Event::NodeRetrying { .. }))
            .count() as u32;
        let finished: Vec<(NodeStatus, Duration)> = events
            .iter()
            .filter(mine)
            .filter_map(|e| match e {
                Event::NodeFinished { status, at, .. } => Some((*status, *at)),
                _ => None,
            })
            .collect();
        prop_assert_eq!(
            started,
            n.attempts,
            "{}: one NodeStarted per attempt",
            n.name
        );
        match n.status {
            NodeStatus::NotStarted => prop_assert!(finished.is_empty()),
            status => prop_assert_eq!(
                finished,
                vec![(status, n.end.expect("ended"))],
                "{}",
                n.name
            ),
        }
        if n.status == NodeStatus::Cancelled {
            // Cut short during an attempt, or while waiting to retry.
            prop_assert!(
                retrying + 1 == n.attempts || retrying == n.attempts,
                "{}",
                n.name
            );
        } else if n.attempts > 0 {
            prop_assert_eq!(retrying, n.attempts - 1, "{}", n.name);
            prop_assert_eq!(n.retries.len() as u32, retrying, "{}", n.name);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_run_ends_and_accounts_for_every_node((needs, nodes, timeout, seed, spawned) in chaos_case()) {
        quiet_scripted_panics();
        let wf = load_with(&ENGINE, &chaos_yaml(&needs, &nodes));
        let options = RunOptions { timeout: Some(Duration::from_millis(timeout)), seed, ..RunOptions::default() };
        let (r, events) = run_with_events(&wf, options.clone(), spawned);
        let report = &r.report;
        check_events(&r, &events)?;

        // It ended within its timeout, every node reported exactly once, in canonical order.
        prop_assert!(report.wall_time <= Duration::from_millis(timeout), "{:?}", report.wall_time);
        let names: Vec<&str> = report.nodes.iter().map(|n| &*n.name).collect();
        let order: Vec<String> = canonical(&needs).into_iter().map(name).collect();
        prop_assert_eq!(names, order.iter().map(String::as_str).collect::<Vec<_>>());

        let failed = r.status == RunStatus::Failed;
        prop_assert_eq!(failed, report.error.is_some());
        prop_assert_eq!(r.status, report.status);
        let count = |s: NodeStatus| report.nodes.iter().filter(|n| n.status == s).count();
        prop_assert!(count(NodeStatus::Failed) <= 1, "fail-fast: one node fails the run");
        if !failed {
            prop_assert_eq!(count(NodeStatus::Cancelled) + count(NodeStatus::NotStarted), 0);
            let degraded = count(NodeStatus::FellBack) > 0;
            prop_assert_eq!(r.status, if degraded { RunStatus::Degraded } else { RunStatus::Succeeded });
        }
        match &report.error {
            Some(RunError::NodeFailed { node, failure }) => {
                let n = report.node(node).expect("reported");
                prop_assert_eq!(n.status, NodeStatus::Failed);
                prop_assert_eq!(n.failure.as_ref(), Some(failure));
            }
            Some(RunError::Timeout { timeout: t }) => {
                prop_assert_eq!(*t, Duration::from_millis(timeout));
                prop_assert_eq!(report.wall_time, *t);
                prop_assert_eq!(count(NodeStatus::Failed), 0);
            }
            _ => {}
        }

        for (n, c) in report.nodes.iter().map(|n| {
            let i: usize = n.name[1..].parse().expect("nNN");
            (n, &nodes[i])
        }) {
            let i: usize = n.name[1..].parse().expect("nNN");
            let kind = n.failure.as_ref().map(|f| f.kind);
            prop_assert!(n.end <= Some(report.wall_time), "{} ends after the run", n.name);
            prop_assert!(n.attempts <= c.attempts, "{}: {} attempts", n.name, n.attempts);
            match n.status {
                NodeStatus::NotStarted => prop_assert_eq!((n.attempts, n.start, n.end), (0, None, None)),
                NodeStatus::Skipped => {
                    prop_assert!(matches!(c.behaviour, Behaviour::Skipped));
                    prop_assert_eq!((n.attempts, n.duration()), (0, Duration::ZERO));
                }
                NodeStatus::Succeeded => {
                    prop_assert_eq!(kind, None);
                    prop_assert!(n.attempts >= 1);
                    let can_succeed = c.timeout.is_none_or(|t| c.latency <= t)
                        && match c.behaviour {
                            Behaviour::Ok | Behaviour::FailRate(_) => true,
                            Behaviour::FailFirst(k) => k < c.attempts,
                            _ => false,
                        };
                    prop_assert!(can_succeed, "{} cannot succeed: {:?}", n.name, c);
                    prop_assert_eq!(n.retries.len() as u32, n.attempts - 1);
                    for &p in &needs[i] {
                        let up = report.node(&name(p)).expect("reported").status;
                        prop_assert!(matches!(up, NodeStatus::Succeeded | NodeStatus::FellBack | NodeStatus::Skipped));
                    }
                }
                NodeStatus::FellBack | NodeStatus::Failed => {
                    prop_assert_eq!(n.status == NodeStatus::Failed, c.policy == Policy::Fail);
                    // A node slower than its timeout times out, whatever it would have done after;
                    // at exactly its timeout, either may win.
                    let expected = match (c.timeout.map(|t| c.latency.cmp(&t)), &c.behaviour) {
                        (_, Behaviour::SyncPanic) => Some(FailureKind::Panic),
                        (_, Behaviour::Slow | Behaviour::Hang) => Some(FailureKind::Timeout),
                        (Some(std::cmp::Ordering::Equal), _) => None,
                        (Some(std::cmp::Ordering::Greater), _) => Some(FailureKind::Timeout),
                        (_, Behaviour::Panic) => Some(FailureKind::Panic),
                        (_, Behaviour::Garbage) => Some(FailureKind::InvalidOutput),
                        _ => None,
                    };
                    prop_assert!(kind.is_some());
                    if expected.is_some() {
                        prop_assert_eq!(kind, expected, "{}", n.name);
                    }
                }
                NodeStatus::Cancelled => {
                    // Cancelled for the deadline, or because another node failed.
                    let expected = match report.error {
                        Some(RunError::Timeout { .. }) => FailureKind::Timeout,
                        _ => FailureKind::Cancelled,
                    };
                    prop_assert!(failed);
                    prop_assert_eq!(kind, Some(expected), "{}", n.name);
                }
                NodeStatus::Waiting => prop_assert!(false, "{}: no node of these plans waits", n.name),
            }
        }

        // Exactly the contributions of nodes that succeeded or fell back with a fallback, in
        // canonical order.
        let expected: Vec<Value> = report
            .nodes
            .iter()
            .filter(|n| {
                let i: usize = n.name[1..].parse().expect("nNN");
                n.status == NodeStatus::Succeeded || (n.status == NodeStatus::FellBack && nodes[i].policy == Policy::Fallback)
            })
            .map(|n| json!(n.name))
            .collect();
        prop_assert_eq!(&r.state, &json!({ "names": expected }));

        // And it replays exactly.
        let (again, again_events) = run_with_events(&wf, options, spawned);
        prop_assert_eq!(&again, &r);
        prop_assert_eq!(again_events, events);
    }
}
