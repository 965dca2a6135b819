//! The scheduler's own overhead per node: 10,000-node `noop` DAGs, compiled once outside the
//! timed part, then only `run` is timed. `noop` returns a ready future, so almost all of the
//! time is the scheduler's (ready set, task spawn and join, state fold, report). Target: at most
//! 1.5 µs per node on a current-thread runtime; the multi-thread variant is reported alongside.

use std::sync::Arc;

use braid::{Plan, RunOptions, RunStatus};
use divan::Bencher;
use divan::counter::ItemsCount;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// The allocator the `braid` binary uses (see `crates/cli/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const NODES: usize = 10_000;

#[derive(Clone, Copy)]
enum Shape {
    Chain,
    FanOut,
    Layered,
}

fn plan(shape: Shape) -> Arc<Plan> {
    match shape {
        Shape::Chain => braid_bench::plan("chain.yaml", &braid_bench::chain(NODES)),
        Shape::FanOut => braid_bench::plan("fan_out.yaml", &braid_bench::fan_out(NODES)),
        Shape::Layered => {
            braid_bench::plan("layered.yaml", &braid_bench::layered(NODES / 100, 100))
        }
    }
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("a multi-thread runtime")
}

fn bench_run(bencher: Bencher<'_, '_>, rt: &Runtime, shape: Shape) {
    let plan = plan(shape);
    let inputs: Value = json!({});
    let first = rt.block_on(braid::run_plan(
        plan.clone(),
        inputs.clone(),
        RunOptions::default(),
    ));
    assert_eq!(first.status, RunStatus::Succeeded);
    bencher
        .counter(ItemsCount::new(plan.nodes().len()))
        .with_inputs(|| (plan.clone(), inputs.clone()))
        .bench_local_values(|(plan, inputs)| {
            rt.block_on(braid::run_plan(plan, inputs, RunOptions::default()))
        });
}

mod current_thread {
    use super::*;

    #[divan::bench(sample_count = 30)]
    fn chain(bencher: Bencher<'_, '_>) {
        bench_run(bencher, &current_thread(), Shape::Chain);
    }

    #[divan::bench(sample_count = 30)]
    fn fan_out(bencher: Bencher<'_, '_>) {
        bench_run(bencher, &current_thread(), Shape::FanOut);
    }

    #[divan::bench(sample_count = 30)]
    fn layered(bencher: Bencher<'_, '_>) {
        bench_run(bencher, &current_thread(), Shape::Layered);
    }
}

mod multi_thread {
    use super::*;

    #[divan::bench(sample_count = 30)]
    fn chain(bencher: Bencher<'_, '_>) {
        bench_run(bencher, &multi_thread(), Shape::Chain);
    }

    #[divan::bench(sample_count = 30)]
    fn fan_out(bencher: Bencher<'_, '_>) {
        bench_run(bencher, &multi_thread(), Shape::FanOut);
    }

    #[divan::bench(sample_count = 30)]
    fn layered(bencher: Bencher<'_, '_>) {
        bench_run(bencher, &multi_thread(), Shape::Layered);
    }
}

/// A chain of latency-free nodes each reading the list it appends a 10 KB object to (the
/// chat-history pattern), at several lengths: the time per node must stay flat as the chain
/// grows (a fold that copied the list would make it grow with the chain).
mod append_chain {
    use super::*;

    #[divan::bench(args = [50, 200, 800], sample_count = 10)]
    fn current_thread(bencher: Bencher<'_, '_>, n: usize) {
        let rt = super::current_thread();
        let plan = braid_bench::plan("append.yaml", &braid_bench::append_chain(n, 10));
        let inputs: Value = json!({});
        bencher
            .counter(ItemsCount::new(n))
            .with_inputs(|| (plan.clone(), inputs.clone()))
            .bench_local_values(|(plan, inputs)| {
                rt.block_on(braid::run_plan(plan, inputs, RunOptions::default()))
            });
    }
}
