//! The store folds without copying: a node that reads the list it appends to (the chat-history
//! pattern) must not make every fold deep-copy the whole list, or a chain of them is quadratic.

use braid::{RunOptions, RunStatus};
use serde_json::{Value, json};

use crate::util::{load, run};

/// A chain of `n` nodes, each reading `items` and appending one object to it; `latency` empty for
/// nodes run in place, or such as `latency: 1ms, ` for spawned ones.
fn append_chain(n: usize, latency: &str) -> String {
    let mut y = String::from(
        "version: 1\nname: append-chain\nstate:\n  items: { reducer: append, default: [] }\nnodes:\n",
    );
    for i in 0..n {
        let needs = if i == 0 {
            String::new()
        } else {
            format!(", needs: [n{}]", i - 1)
        };
        y.push_str(&format!(
            "  n{i}: {{ kind: mock, reads: [items], writes: [items]{needs}, with: {{ {latency}output: {{ items: [{{ turn: {i}, text: \"{{{{ state.items | length }}}} before me\" }}] }} }} }}\n"
        ));
    }
    y
}

async fn copies_in(yaml: &str) -> (u64, Value) {
    let wf = load(yaml);
    let before = braid_runtime::store::copies();
    let r = run(&wf, Value::Null, RunOptions::default()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    (braid_runtime::store::copies() - before, r.state)
}

#[tokio::test(start_paused = true)]
async fn a_node_that_reads_the_list_it_appends_to_never_makes_the_fold_copy_it() {
    for latency in ["", "latency: 1ms, "] {
        let (copies, state) = copies_in(&append_chain(50, latency)).await;
        assert_eq!(copies, 0, "with `{latency}`");
        let items = state["items"].as_array().expect("a list");
        assert_eq!(items.len(), 50);
        assert_eq!(items[49], json!({ "turn": 49, "text": "49 before me" }));
    }
}
