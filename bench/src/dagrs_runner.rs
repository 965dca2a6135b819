//! dagrs: the `Graph` API. Each node is a `DefaultNode` whose `Action` first receives from every
//! in-channel (that is how a dagrs node waits for the nodes it depends on), then does its work,
//! then broadcasts its output to its out-channels. A `Graph` runs once (`reset` to rerun), so
//! every run builds its graph.

use std::sync::Arc;

use dagrs::async_trait::async_trait;
use dagrs::{Action, Content, DefaultNode, EnvVar, Graph, InChannels, Node, NodeTable, OutChannels, Output};
use serde_json::Value;

use crate::Runner;
use crate::workloads::Workload;

struct Work {
    latency_ms: u64,
    probe: bool,
    out: Arc<Value>,
}

#[async_trait]
impl Action for Work {
    async fn run(&self, input: &mut InChannels, output: &mut OutChannels, _env: Arc<EnvVar>) -> Output {
        let _inputs: Vec<_> = input.map(|c| c.ok()).await;
        crate::node_body(self.latency_ms, self.probe).await;
        output.broadcast(Content::new(self.out.clone())).await;
        Output::empty()
    }
}

pub struct Spec {
    nodes: Vec<(String, u64, bool, Arc<Value>)>,
    dependents: Vec<Vec<usize>>,
}

pub struct Dagrs;

impl Runner for Dagrs {
    type Prepared = Spec;
    type Built = Graph;

    fn prepare(w: &Workload) -> Spec {
        Spec {
            nodes: w
                .nodes
                .iter()
                .map(|n| {
                    (n.name.clone(), n.latency_ms, n.probe, Arc::new(Value::Object(n.output.iter().cloned().collect())))
                })
                .collect(),
            dependents: w.dependents(),
        }
    }

    fn build(p: &Spec) -> Graph {
        let mut table = NodeTable::new();
        let mut graph = Graph::new();
        let mut ids = Vec::with_capacity(p.nodes.len());
        for (name, latency_ms, probe, out) in &p.nodes {
            let node = DefaultNode::with_action(
                name.clone(),
                Work { latency_ms: *latency_ms, probe: *probe, out: out.clone() },
                &mut table,
            );
            ids.push(node.id());
            graph.add_node(node).expect("add_node");
        }
        for (i, deps) in p.dependents.iter().enumerate() {
            if !deps.is_empty() {
                graph.add_edge(ids[i], deps.iter().map(|&d| ids[d])).expect("add_edge");
            }
        }
        graph
    }

    async fn exec(mut graph: Graph) {
        graph.async_start().await.expect("the dagrs run");
    }
}
