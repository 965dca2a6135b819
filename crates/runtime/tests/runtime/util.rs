//! Helpers shared by the test modules: loading YAML through the facade, running on the paused
//! clock, reading reports and events.

use std::time::Duration;

use braid::{
    Engine, Event, EventReceiver, NodeReport, NodeStatus, RunOptions, RunResult, Workflow,
};
use serde_json::Value;

/// Milliseconds, shorter to read in exact assertions.
pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Compiles `yaml` with `engine`, panicking with the rendered diagnostics if it does not compile.
pub(crate) fn load_with(engine: &Engine, yaml: &str) -> Workflow {
    match engine.load_str("test.yaml", yaml) {
        Ok(w) => w,
        Err(e) => panic!("the test workflow does not compile:\n{e}\n---\n{yaml}"),
    }
}

/// Compiles `yaml` with the built-in kinds.
pub(crate) fn load(yaml: &str) -> Workflow {
    load_with(&Engine::new(), yaml)
}

/// Runs a workflow; the inputs must fit.
pub(crate) async fn run(workflow: &Workflow, inputs: Value, options: RunOptions) -> RunResult {
    match workflow.run(inputs, options).await {
        Ok(r) => r,
        Err(e) => panic!("the run did not start: {e}"),
    }
}

/// Runs a workflow with default inputs and options.
pub(crate) async fn run_default(workflow: &Workflow) -> RunResult {
    run(workflow, Value::Null, RunOptions::default()).await
}

/// Runs a workflow and collects every event it sent.
pub(crate) async fn run_events(
    workflow: &Workflow,
    inputs: Value,
    options: RunOptions,
) -> (RunResult, Vec<Event>) {
    let (fut, rx) = match workflow.run_with_events(inputs, options) {
        Ok(x) => x,
        Err(e) => panic!("the run did not start: {e}"),
    };
    let result = fut.await;
    (result, drain(rx))
}

/// Every event still queued on a receiver whose run has finished.
pub(crate) fn drain(mut rx: EventReceiver) -> Vec<Event> {
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    events
}

/// The report of one node.
pub(crate) fn node<'a>(result: &'a RunResult, name: &str) -> &'a NodeReport {
    match result.report.node(name) {
        Some(n) => n,
        None => panic!("no node `{name}` in the report"),
    }
}

/// A node's status.
pub(crate) fn status(result: &RunResult, name: &str) -> NodeStatus {
    node(result, name).status
}

/// A node's start and end, in milliseconds from the run's start.
pub(crate) fn span(result: &RunResult, name: &str) -> (Option<Duration>, Option<Duration>) {
    let n = node(result, name);
    (n.start, n.end)
}

/// `(Some(start), Some(end))` in milliseconds.
pub(crate) fn at(start: u64, end: u64) -> (Option<Duration>, Option<Duration>) {
    (Some(ms(start)), Some(ms(end)))
}

/// The final state as JSON text: equal text is byte-identical state.
pub(crate) fn state_text(result: &RunResult) -> String {
    match serde_json::to_string(&result.state) {
        Ok(s) => s,
        Err(e) => panic!("state does not serialize: {e}"),
    }
}

/// Keeps the panics tests script on purpose (their messages say "as scripted") out of the test
/// output; every other panic still reaches the default hook.
pub(crate) fn quiet_scripted_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or_default();
            if !msg.contains("as scripted") {
                default(info);
            }
        }));
    });
}

/// An observer that keeps every node's end as the [`PriorNode`] a journal would give back.
#[derive(Default)]
pub(crate) struct Recorder(std::sync::Mutex<Vec<braid::PriorNode>>);

impl Recorder {
    /// The node ends seen so far, in the order they came.
    pub(crate) fn ends(&self) -> Vec<braid::PriorNode> {
        self.0.lock().expect("not poisoned").clone()
    }
}

impl braid::Observer for Recorder {
    fn settled(&self, node: &braid::NodeSettled<'_>) -> Option<braid::Recorded> {
        let end = braid::PriorNode {
            node: node.node().to_string(),
            status: node.status(),
            attempts: node.attempts(),
            start: node.start(),
            end: node.end(),
            failure: node.failure().cloned(),
            writes: node
                .writes()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        self.0.lock().expect("not poisoned").push(end);
        None
    }
}
