//! Braid's runtime: executes a compiled [`Plan`](braid_core::Plan).
//!
//! * [`scheduler`]: the ready-set scheduler. A node starts the moment the last node it needs has
//!   finished; there are no supersteps. Node tasks live in a `JoinSet` the scheduler owns.
//! * [`store`]: the state store. Contributions to a key are folded in canonical order, whatever
//!   order nodes finish in, so parallel and sequential runs end in the same state.
//! * [`task`]: one node's attempts: timeout, retry with backoff, panic capture, output checks.
//! * [`report`]: the run's result: status, final state, per-node report, critical path, speedup.
//! * [`event`]: the run's events, for live views and library users.
//! * [`inputs`]: checks a run's inputs against the workflow's declarations.
//! * [`metrics`]: metric names, defined once, and their recording.
//!
//! The runtime never sees YAML and never re-checks what the compiler proved.

pub mod event;
pub mod inputs;
pub mod metrics;
pub mod report;
pub mod scheduler;
pub mod store;
pub mod task;

pub use event::{Event, EventReceiver, EventSender};
pub use inputs::{InputError, resolve_inputs};
pub use report::{NodeReport, NodeStatus, RunError, RunReport, RunResult, RunStatus};
pub use scheduler::{CancelToken, RunOptions, run};
