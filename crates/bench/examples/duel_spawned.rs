//! Spawned nodes against the floor on the wall clock (issue 16, item 22), Braid and the floor
//! alternating in one process so that both see the same moments of a busy machine. Every node is
//! the same code in both: a registered node kind that sleeps its latency with `tokio::time::sleep`
//! (nothing at zero latency) and returns its static output, so Braid spawns every node, as the
//! floor does. Multi-thread runtime (as many workers as cores), mimalloc (as the `braid` binary).
//!
//! ```sh
//! cargo build --release -p braid-bench --example duel_spawned
//! target/release/examples/duel_spawned parallel 15   # 10,000 parallel 10 ms nodes: makespan, ms
//! target/release/examples/duel_spawned mode1 15      # 10,000 concurrent zero-latency mode-1 runs: runs/s
//! ```
//!
//! Prints the medians of each and the median of the per-round ratios (above 1: Braid is
//! behind). The peer harness (`bench/`, `peer-bench duel`) measures the same with its workloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use braid::{
    BuildContext, BuildError, Engine, Node, NodeContext, NodeFuture, NodeKind, RunOptions,
    RunStatus, Workflow,
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The node code both runners execute.
async fn body(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// `io`: sleeps `with.ms`, returns `with.output`.
struct Io;
struct IoNode(u64, Value);

impl Node for IoNode {
    fn call(&self, _: NodeContext) -> NodeFuture {
        let (ms, out) = (self.0, self.1.clone());
        Box::pin(async move {
            body(ms).await;
            Ok(out)
        })
    }
}

impl NodeKind for Io {
    fn name(&self) -> &str {
        "io"
    }
    fn params_schema(
        &self,
        _: &mut braid::schemars::SchemaGenerator,
    ) -> Option<braid::schemars::Schema> {
        None
    }
    fn build(
        &self,
        p: Option<&Value>,
        _: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let p = p.cloned().unwrap_or_default();
        Ok(Arc::new(IoNode(
            p.get("ms").and_then(Value::as_u64).unwrap_or(0),
            p.get("output").cloned().unwrap_or_else(|| json!({})),
        )))
    }
}

/// A workload: nodes as (name, latency, needs, output), plus state keys for Braid.
struct Graph {
    nodes: Vec<(String, u64, Vec<usize>, Value)>,
    state: &'static str,
}

impl Graph {
    fn yaml(&self) -> String {
        let mut y = format!("version: 1\nname: duel\n{}nodes:\n", self.state);
        for (name, ms, needs, out) in &self.nodes {
            let needs: Vec<&str> = needs.iter().map(|&i| self.nodes[i].0.as_str()).collect();
            let writes: Vec<&String> = out
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            let w: Vec<&str> = writes.iter().map(|s| s.as_str()).collect();
            y.push_str(&format!(
                "  {name}: {{ kind: io, needs: [{}], writes: [{}], with: {{ ms: {ms}, output: {out} }} }}\n",
                needs.join(", "),
                w.join(", ")
            ));
        }
        y
    }

    /// The floor's view: latency and output by node, and each node's dependents and needs count.
    fn floor(&self) -> Floor {
        let n = self.nodes.len();
        let mut dependents = vec![Vec::new(); n];
        let mut needs = vec![0u32; n];
        for (i, (_, _, ns, _)) in self.nodes.iter().enumerate() {
            needs[i] = ns.len() as u32;
            for &d in ns {
                dependents[d].push(i);
            }
        }
        Floor(Arc::new((
            self.nodes
                .iter()
                .map(|(_, ms, _, out)| (*ms, out.clone()))
                .collect(),
            dependents,
            needs,
        )))
    }
}

type FloorGraph = (Vec<(u64, Value)>, Vec<Vec<usize>>, Vec<u32>);

/// A ready-set executor of a few lines: indegree counters, a `JoinSet`, every ready node spawned.
#[derive(Clone)]
struct Floor(Arc<FloorGraph>);

impl Floor {
    async fn run(self) {
        let (nodes, dependents, needs) = &*self.0;
        let mut remaining = needs.clone();
        let mut set = JoinSet::new();
        let spawn = |set: &mut JoinSet<(usize, Value)>, i: usize| {
            let (ms, out) = nodes[i].clone();
            set.spawn(async move {
                body(ms).await;
                (i, out)
            });
        };
        for i in (0..nodes.len()).filter(|&i| remaining[i] == 0) {
            spawn(&mut set, i);
        }
        while let Some(done) = set.join_next().await {
            let (done, _out) = done.expect("a node task");
            for &d in &dependents[done] {
                remaining[d] -= 1;
                if remaining[d] == 0 {
                    spawn(&mut set, d);
                }
            }
        }
    }
}

fn parallel(n: usize, ms: u64) -> Graph {
    Graph {
        nodes: (0..n)
            .map(|i| (format!("p{i}"), ms, Vec::new(), json!({})))
            .collect(),
        state: "",
    }
}

/// Mode 1 without latencies, with its state keys and static outputs (as the peer harness's).
fn mode1() -> Graph {
    let n = |name: &str, needs: &[usize], out: Value| (name.to_owned(), 0, needs.to_vec(), out);
    Graph {
        nodes: vec![
            n(
                "rag",
                &[],
                json!({ "rag_results": [{ "doc": "guide.pdf", "score": 0.91 }] }),
            ),
            n(
                "tools",
                &[],
                json!({ "suggested_tools": ["secrets_manager"] }),
            ),
            n("memory", &[], json!({ "memory": { "user": "user-42" } })),
            n(
                "llm",
                &[0, 1, 2],
                json!({ "response": "Answer", "cost_usd": 0.002 }),
            ),
            n("quality", &[3], json!({ "quality_score": 0.87 })),
            n("citations", &[3], json!({ "citations": ["guide.pdf"] })),
            n(
                "cost_tracking",
                &[3],
                json!({ "cost_report": { "total_usd": 0.002 } }),
            ),
        ],
        state: "state:\n  rag_results: { reducer: replace, default: [] }\n  suggested_tools: { reducer: replace, default: [] }\n  memory: { reducer: merge, default: {} }\n  response: { reducer: replace }\n  quality_score: { reducer: replace }\n  citations: { reducer: append, default: [] }\n  cost_usd: { reducer: sum, default: 0 }\n  cost_report: { reducer: replace }\n",
    }
}

async fn braid_run(wf: Workflow) {
    let r = wf
        .run(json!({}), RunOptions::default())
        .await
        .expect("inputs");
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
}

/// One makespan, in ms, of a run started in a task (as a service would).
async fn makespan<F: std::future::Future<Output = ()> + Send + 'static>(run: F) -> f64 {
    let t = Instant::now();
    tokio::spawn(run).await.expect("the run");
    t.elapsed().as_secs_f64() * 1e3
}

/// `n` runs spawned at once: runs per second.
async fn burst<F, G>(n: usize, make: G) -> f64
where
    F: std::future::Future<Output = ()> + Send + 'static,
    G: Fn() -> F,
{
    let t = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..n {
        set.spawn(make());
    }
    while let Some(r) = set.join_next().await {
        r.expect("a run");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[allow(clippy::print_stdout)]
fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "parallel".to_owned());
    let rounds: usize = if what.starts_with("profile-") {
        0
    } else {
        args.next().and_then(|a| a.parse().ok()).unwrap_or(15)
    };
    // `profile-braid SHAPE N` / `profile-floor SHAPE N`: N runs one after another on a
    // current-thread runtime, for callgrind. SHAPE: `mode1`, `parallel` (1,000 nodes of 0 ms) or
    // `parallel10` (10,000 nodes of 10 ms).
    if let Some(who) = what.strip_prefix("profile-") {
        let shape = args.next().unwrap_or_else(|| "mode1".to_owned());
        let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
        let graph = match shape.as_str() {
            "mode1" => mode1(),
            // 10,000 nodes of 10 ms: the timer's share too.
            "parallel10" => parallel(10_000, 10),
            _ => parallel(1_000, 0),
        };
        let engine = Engine::builder().node_kind(Arc::new(Io)).build();
        let wf = engine
            .load_str("duel.yaml", &graph.yaml())
            .expect("compiles");
        let floor = graph.floor();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        for _ in 0..runs {
            if who == "floor" {
                rt.block_on(floor.clone().run());
            } else {
                rt.block_on(braid_run(wf.clone()));
            }
        }
        return;
    }
    let graph = if what == "mode1" {
        mode1()
    } else {
        parallel(10_000, 10)
    };
    let engine = Engine::builder().node_kind(Arc::new(Io)).build();
    let wf = engine
        .load_str("duel.yaml", &graph.yaml())
        .expect("compiles");
    let floor = graph.floor();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let measure_braid = || async {
            if what == "mode1" {
                burst(10_000, || braid_run(wf.clone())).await
            } else {
                makespan(braid_run(wf.clone())).await
            }
        };
        let measure_floor = || async {
            if what == "mode1" {
                burst(10_000, || floor.clone().run()).await
            } else {
                makespan(floor.clone().run()).await
            }
        };
        measure_braid().await;
        measure_floor().await;
        let (mut b, mut f, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (x, y) = if round % 2 == 0 {
                let x = measure_braid().await;
                (x, measure_floor().await)
            } else {
                let y = measure_floor().await;
                (measure_braid().await, y)
            };
            b.push(x);
            f.push(y);
            r.push(if what == "mode1" { y / x } else { x / y });
        }
        let unit = if what == "mode1" { "runs/s" } else { "ms" };
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "{what}: {rounds} rounds; braid median {:.1} {unit}, floor median {:.1} {unit}, ratio median {:.3} (above 1: Braid behind); load {}",
            median(b),
            median(f),
            median(r),
            load.trim()
        );
    });
}
