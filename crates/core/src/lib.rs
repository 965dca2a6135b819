//! Braid's runtime vocabulary, shared by the compiler (which builds a [`Plan`]) and the runtime
//! (which executes one).
//!
//! Nothing here knows YAML or tokio. A [`Plan`] is immutable and can only be built through
//! [`Plan::new`], which proves it acyclic and every reference resolved: the runtime never re-checks.

pub mod error;
pub mod fingerprint;
pub mod id;
pub mod node;
pub mod plan;
pub mod reducer;
pub mod registry;
pub mod rng;
pub mod state;
pub mod template;
pub mod wait;

pub use fingerprint::Fingerprint;
pub use id::{KeyId, NodeId};
pub use node::{
    Emitter, Executor, FailureKind, ItemCheck, Items, ItemsOutcome, Node, NodeContext, NodeError,
    NodeFuture, RunId, RunScope, StateUpdate, StateView, SubRun, WorkFuture,
};
pub use plan::{
    Channel, ExecutionMode, InputDecl, InputType, NodeParts, OnErrorPolicy, Plan, PlanError,
    PlanNode, PlanNodes, PlanParts, RetryPolicy,
};
pub use reducer::{Reducer, ReducerError};
pub use registry::{
    BuildContext, BuildError, BuildErrorKind, KindWrite, NamedAs, NodeKind, Registry, TemplateRead,
    WorkflowLoader,
};
pub use template::{Expr, TemplateEnv, TemplateError, TemplateErrorKind, TemplateId, Templated};
pub use wait::{Answer, WaitNode};
