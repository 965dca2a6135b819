//! Braid through its public API: each workload is written to a YAML file, loaded with
//! `Engine::load_file`, and run with `Workflow::run` (input checking included).

use std::path::PathBuf;

use braid::{Engine, NodeContext, RunOptions, RunStatus, Workflow};
use serde_json::json;

use crate::workloads::Workload;
use crate::{IN_FLIGHT, Runner};

pub struct Braid;

fn engine() -> Engine {
    Engine::builder()
        // The memory workload's blocking node: a handler registered by the embedding program,
        // as a service would register its own node kinds.
        .handler("probe_sleep", |_ctx: NodeContext| async move {
            IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(crate::BLOCK).await;
            Ok(json!({}))
        })
        .build()
}

/// Where the generated YAML files go (inspectable after a run).
pub fn yaml_path(w: &Workload) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/workloads").join(format!("{}.yaml", w.name))
}

impl Runner for Braid {
    type Prepared = Workflow;
    type Built = Workflow;

    fn prepare(w: &Workload) -> Workflow {
        let path = yaml_path(w);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("target/workloads");
        std::fs::write(&path, w.to_yaml()).expect("the workload's YAML file");
        match engine().load_file(&path) {
            Ok(wf) => wf,
            Err(e) => panic!("{e}"),
        }
    }

    fn build(p: &Workflow) -> Workflow {
        p.clone()
    }

    async fn exec(wf: Workflow) {
        let r = wf.run(json!({}), RunOptions::default()).await.expect("inputs");
        assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    }
}
