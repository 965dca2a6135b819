//! Braid's runtime: executes a compiled [`Plan`](braid_core::Plan).
//!
//! * [`run`](mod@run): starting a run, from scratch or from partial state (nodes that settled in
//!   an earlier run), and the executor of the inner work nodes ask for (a `map`'s items, a
//!   sub-workflow).
//! * `scheduler`: the ready-set scheduler. A node starts the moment the last node it needs has
//!   finished; there are no supersteps. A run's nodes are polled by the run's own task.
//! * `polled`: the set of futures a run (its waiting nodes) or a node (a `map`'s items) polls in
//!   its own task, instead of a task each.
//! * [`ledger`]: the one place where a node's end is recorded (record, log, event, store,
//!   [`Observer`]).
//! * `attempt`: one piece of work's attempts: timeout, retry with backoff, panic capture,
//!   output checks; for nodes and items alike.
//! * `items`: a node run once per item on behalf of another node.
//! * [`store`]: the state store. Contributions to a key are folded in canonical order, whatever
//!   order nodes finish in, so parallel and sequential runs end in the same state.
//! * [`report`]: the run's result: status, final state, per-node report, critical path, speedup.
//! * [`event`]: the run's events, for live views and library users.
//! * [`options`]: how to run a plan, and the cancel token.
//! * [`inputs`]: checks a run's inputs against the workflow's declarations.
//! * [`metrics`]: metric names, defined once, and their recording.
//!
//! The runtime never sees YAML and never re-checks what the compiler proved.

pub(crate) mod attempt;
pub mod event;
pub mod inputs;
pub(crate) mod items;
pub mod ledger;
pub mod metrics;
pub mod options;
pub(crate) mod polled;
pub mod report;
pub mod run;
pub(crate) mod scheduler;
pub mod store;

pub use event::{Event, EventHook, EventReceiver, EventSender};
pub use inputs::{InputError, resolve_inputs};
pub use ledger::{NodeSettled, Observer, Recorded};
pub use options::{CancelToken, RunOptions};
pub use report::{Ends, NodeReport, NodeStatus, RunError, RunReport, RunResult, RunStatus};
pub use run::{PartialRun, PartialRunError, PriorNode, run, run_from};
