//! dagx: typed tasks (`#[task]`), dependencies wired with `depends_on` tuples, run with a tokio
//! spawner. A `DagRunner` runs once (running consumes its tasks), so every run builds its DAG.
//!
//! dagx takes at most 8 dependencies per task (tuples of 2 to 8), so a join of more than 8
//! nodes becomes a tree of 8-way join tasks: the fan-out workload runs ~1,430 extra no-op
//! tasks, counted in its per-node figure.

use std::sync::Arc;

use dagx::{DagRunner, Task, TaskHandle, task};
use serde_json::Value;

use crate::Runner;
use crate::workloads::Workload;

/// What every task returns: its output, shared (dagx hands each consumer a clone).
pub type Val = Arc<Value>;

#[derive(Clone)]
struct Body {
    latency_ms: u64,
    probe: bool,
    out: Val,
}

macro_rules! arity {
    ($name:ident $(, $arg:ident)*) => {
        struct $name(Body);
        #[task]
        impl $name {
            async fn run(&self $(, $arg: &Val)*) -> Val {
                $(let _ = $arg;)*
                crate::node_body(self.0.latency_ms, self.0.probe).await;
                self.0.out.clone()
            }
        }
    };
}

arity!(N0);
arity!(N1, a);
arity!(N2, a, b);
arity!(N3, a, b, c);
arity!(N4, a, b, c, d);
arity!(N5, a, b, c, d, e);
arity!(N6, a, b, c, d, e, f);
arity!(N7, a, b, c, d, e, f, g);
arity!(N8, a, b, c, d, e, f, g, h);

fn add(dag: &DagRunner, body: Body, deps: &[TaskHandle<Val>]) -> TaskHandle<Val> {
    match deps {
        [] => dag.add_task(N0(body)).into(),
        [a] => dag.add_task(N1(body)).depends_on(a),
        [a, b] => dag.add_task(N2(body)).depends_on((a, b)),
        [a, b, c] => dag.add_task(N3(body)).depends_on((a, b, c)),
        [a, b, c, d] => dag.add_task(N4(body)).depends_on((a, b, c, d)),
        [a, b, c, d, e] => dag.add_task(N5(body)).depends_on((a, b, c, d, e)),
        [a, b, c, d, e, f] => dag.add_task(N6(body)).depends_on((a, b, c, d, e, f)),
        [a, b, c, d, e, f, g] => dag.add_task(N7(body)).depends_on((a, b, c, d, e, f, g)),
        [a, b, c, d, e, f, g, h] => dag.add_task(N8(body)).depends_on((a, b, c, d, e, f, g, h)),
        _ => unreachable!("at most 8 dependencies per dagx task"),
    }
}

pub struct Spec {
    bodies: Vec<Body>,
    needs: Vec<Vec<usize>>,
}

pub struct Dagx;

/// Builds the DAG; returns it and the number of tasks (join-tree tasks included).
fn build_dag(p: &Spec) -> (DagRunner, usize) {
    let dag = DagRunner::new();
    let noop = Body { latency_ms: 0, probe: false, out: Arc::new(Value::Null) };
    let mut handles: Vec<TaskHandle<Val>> = Vec::with_capacity(p.bodies.len());
    let mut tasks = 0;
    for (body, needs) in p.bodies.iter().zip(&p.needs) {
        let mut deps: Vec<TaskHandle<Val>> = needs.iter().map(|&d| handles[d]).collect();
        while deps.len() > 8 {
            deps = deps
                .chunks(8)
                .map(|c| {
                    tasks += 1;
                    if c.len() == 1 { c[0] } else { add(&dag, noop.clone(), c) }
                })
                .collect();
        }
        handles.push(add(&dag, body.clone(), &deps));
        tasks += 1;
    }
    (dag, tasks)
}

impl Runner for Dagx {
    type Prepared = Spec;
    type Built = DagRunner;

    fn prepare(w: &Workload) -> Spec {
        let bodies = w
            .nodes
            .iter()
            .map(|n| Body {
                latency_ms: n.latency_ms,
                probe: n.probe,
                out: Arc::new(Value::Object(n.output.iter().cloned().collect())),
            })
            .collect();
        Spec { bodies, needs: w.nodes.iter().map(|n| n.needs.clone()).collect() }
    }

    fn build(p: &Spec) -> DagRunner {
        build_dag(p).0
    }

    async fn exec(dag: DagRunner) {
        dag.run(|fut| {
            tokio::spawn(fut);
        })
        .await
        .expect("the dagx run");
    }

    fn executed_nodes(p: &Spec, _: &Workload) -> usize {
        build_dag(p).1
    }
}
