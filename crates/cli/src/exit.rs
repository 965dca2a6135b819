//! Exit codes, defined once (documented in docs/cli.md).

/// Success: valid files; a run that succeeded.
pub(crate) const OK: u8 = 0;
/// `validate`: some file is invalid. `run`: the run failed.
pub(crate) const FAILED: u8 = 1;
/// Usage or I/O error: bad arguments, unreadable file.
pub(crate) const USAGE: u8 = 2;
/// `run`/`graph`: the workflow or its inputs are invalid; nothing ran.
pub(crate) const INVALID: u8 = 3;
/// `run`: the run finished degraded (some node fell back).
pub(crate) const DEGRADED: u8 = 4;
/// `run`: the run stopped at a `wait` node, waiting for a person's answer (and, not journaled,
/// cannot be resumed).
pub(crate) const WAITING: u8 = 5;
/// `run`: interrupted (Ctrl-C, `SIGINT`); the partial state and report were still written.
pub(crate) const INTERRUPTED: u8 = 130;
/// `run`: terminated (`SIGTERM`, as systemd, Kubernetes and CI runners stop a process); the
/// partial state and report were still written.
pub(crate) const TERMINATED: u8 = 143;
