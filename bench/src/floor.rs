//! The floor: a minimal ready-set executor over petgraph. Indegree counters, a `JoinSet`, every
//! ready node spawned at once. No state, no reducers, no events, no timeouts, no retries, no
//! report: what any DAG runtime on tokio has to pay at least.

use std::sync::Arc;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use tokio::task::JoinSet;

use crate::workloads::Workload;
use crate::{Runner, node_body};

#[derive(Clone, Copy)]
pub struct Spec {
    latency_ms: u64,
    probe: bool,
}

pub struct Floor;

impl Runner for Floor {
    /// The graph and each node's indegree.
    type Prepared = Arc<(DiGraph<Spec, ()>, Vec<u32>)>;
    type Built = Arc<(DiGraph<Spec, ()>, Vec<u32>)>;

    fn prepare(w: &Workload) -> Self::Prepared {
        let mut g = DiGraph::with_capacity(w.nodes.len(), w.nodes.len() * 2);
        for n in &w.nodes {
            g.add_node(Spec { latency_ms: n.latency_ms, probe: n.probe });
        }
        for (i, n) in w.nodes.iter().enumerate() {
            for &d in &n.needs {
                g.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
            }
        }
        let indegree = g.node_indices().map(|i| g.neighbors_directed(i, Direction::Incoming).count() as u32).collect();
        Arc::new((g, indegree))
    }

    fn build(p: &Self::Prepared) -> Self::Built {
        p.clone()
    }

    async fn exec(p: Self::Built) {
        let (g, indegree) = &*p;
        let mut remaining = indegree.clone();
        let mut set = JoinSet::new();
        let spawn = |set: &mut JoinSet<NodeIndex>, i: NodeIndex| {
            let s = g[i];
            set.spawn(async move {
                node_body(s.latency_ms, s.probe).await;
                i
            });
        };
        for i in g.node_indices().filter(|&i| remaining[i.index()] == 0) {
            spawn(&mut set, i);
        }
        while let Some(done) = set.join_next().await {
            let done = done.expect("a node panicked");
            for d in g.neighbors_directed(done, Direction::Outgoing) {
                let r = &mut remaining[d.index()];
                *r -= 1;
                if *r == 0 {
                    spawn(&mut set, d);
                }
            }
        }
    }
}
