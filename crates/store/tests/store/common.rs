//! Records for tests: definitions, runs, and realistic runs (a RAG → LLM pipeline's seven nodes
//! and sixteen events).

use braid_store::{
    Definition, DefinitionFile, Entry, EventKind, EventRecord, NewRun, NodeRecord, NodeState,
    RunState, Store,
};
use serde_json::{Value, json};

pub(crate) fn definition(fingerprint: &str) -> Definition {
    Definition {
        fingerprint: fingerprint.to_owned(),
        workflow: "mode1".to_owned(),
        files: vec![
            DefinitionFile {
                key: String::new(),
                text: "version: 1\nname: mode1\nnodes: {}\n".to_owned(),
            },
            DefinitionFile {
                key: "sub/child.yaml".to_owned(),
                text: "version: 1\nname: child\n".to_owned(),
            },
        ],
    }
}

/// A fingerprint of 64 hex digits from `n`.
pub(crate) fn fingerprint(n: u64) -> String {
    format!("{n:064x}")
}

pub(crate) fn new_run(id: &str, fingerprint: &str, created_at: i64) -> NewRun {
    NewRun {
        id: id.to_owned(),
        workflow: "mode1".to_owned(),
        fingerprint: fingerprint.to_owned(),
        inputs: json!({ "query": "what is braid?", "enable_rag": true, "enable_tools": true }),
        options: json!({ "mode": "parallel", "seed": 7 }),
        created_at,
    }
}

pub(crate) fn node(name: &str, state: NodeState, writes: Value) -> NodeRecord {
    let Value::Object(writes) = writes else {
        panic!("writes must be an object")
    };
    NodeRecord {
        node: name.to_owned(),
        state,
        attempts: 1,
        started_at: Some(1_000),
        ended_at: 2_000,
        failure: None,
        writes,
    }
}

pub(crate) fn event(seq: u64, kind: EventKind, node: Option<&str>) -> EventRecord {
    EventRecord {
        seq,
        at: 1_700_000_000_000_000 + seq as i64,
        kind,
        node: node.map(str::to_owned),
        attempt: node.map(|_| 1),
        data: match kind {
            EventKind::NodeFinished => Some(json!({ "status": "succeeded" })),
            _ => None,
        },
    }
}

/// A string of `len` readable characters, different for each `seed`.
fn text(seed: usize, len: usize) -> String {
    const WORDS: [&str; 8] = [
        "retrieval ",
        "grounded ",
        "answer ",
        "braid ",
        "context ",
        "citation ",
        "vector ",
        "latency ",
    ];
    let mut s = String::with_capacity(len + 10);
    let mut i = seed;
    while s.len() < len {
        s.push_str(WORDS[i % WORDS.len()]);
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    s.truncate(len);
    s
}

/// The seven nodes of a RAG → LLM run, with writes of a few hundred bytes each.
pub(crate) fn realistic_nodes(seed: usize) -> Vec<NodeRecord> {
    let s = seed;
    vec![
        node(
            "rag",
            NodeState::Succeeded,
            json!({ "rag_results": [
            { "doc": "guide.pdf", "score": 0.91, "text": text(s, 140) },
            { "doc": "faq.md", "score": 0.84, "text": text(s + 1, 140) } ] }),
        ),
        node(
            "tools",
            NodeState::Succeeded,
            json!({ "suggested_tools": [
            { "name": "search", "why": text(s + 2, 90) }, { "name": "calculator", "why": text(s + 3, 60) } ] }),
        ),
        node(
            "memory",
            NodeState::Succeeded,
            json!({ "memory": { "user": "u-1842", "recent": text(s + 4, 200) } }),
        ),
        node(
            "llm",
            NodeState::Succeeded,
            json!({ "response": text(s + 5, 420), "cost_usd": 0.002 }),
        ),
        node(
            "quality",
            NodeState::Succeeded,
            json!({ "quality": { "score": 0.87, "notes": text(s + 6, 120) } }),
        ),
        node(
            "citations",
            NodeState::Succeeded,
            json!({ "citations": [
            { "doc": "guide.pdf", "span": [12, 80], "quote": text(s + 7, 110) },
            { "doc": "faq.md", "span": [3, 41], "quote": text(s + 8, 90) } ] }),
        ),
        node(
            "cost_tracking",
            NodeState::Succeeded,
            json!({ "cost_usd": 0.0004, "tokens": { "in": 1834, "out": 412 } }),
        ),
    ]
}

/// The bytes of the writes of `nodes`, as JSON.
pub(crate) fn writes_bytes(nodes: &[NodeRecord]) -> usize {
    nodes
        .iter()
        .map(|n| serde_json::to_string(&n.writes).unwrap().len())
        .sum()
}

/// Writes a realistic run as the runtime would: created, then per node a start event and (node
/// record + finish event), then the end; sixteen events in all. Returns the bytes of its writes.
pub(crate) async fn write_run(
    store: &dyn Store,
    id: &str,
    fingerprint: &str,
    seed: usize,
) -> usize {
    store
        .create_run(&new_run(
            id,
            fingerprint,
            1_700_000_000_000_000 + seed as i64,
        ))
        .await
        .unwrap();
    let nodes = realistic_nodes(seed);
    let bytes = writes_bytes(&nodes);
    let mut seq = 0;
    store
        .append(vec![Entry::Events {
            run: id.to_owned(),
            events: vec![event(0, EventKind::RunStarted, None)],
        }])
        .await
        .unwrap();
    seq += 1;
    for record in nodes {
        let name = record.node.clone();
        store
            .append(vec![Entry::Events {
                run: id.to_owned(),
                events: vec![event(seq, EventKind::NodeStarted, Some(&name))],
            }])
            .await
            .unwrap();
        seq += 1;
        store
            .append(vec![
                Entry::Node {
                    run: id.to_owned(),
                    record,
                },
                Entry::Events {
                    run: id.to_owned(),
                    events: vec![event(seq, EventKind::NodeFinished, Some(&name))],
                },
            ])
            .await
            .unwrap();
        seq += 1;
    }
    store
        .append(vec![
            Entry::Events {
                run: id.to_owned(),
                events: vec![event(seq, EventKind::RunFinished, None)],
            },
            Entry::End {
                run: id.to_owned(),
                state: RunState::Succeeded,
                error: None,
                at: 1_700_000_000_100_000 + seed as i64,
            },
        ])
        .await
        .unwrap();
    bytes
}
