//! How records become columns, the same for every database backend: states and event kinds as
//! small integers (a byte or two a row instead of a word), JSON as compact text. The codes are
//! part of the stored format: never renumber one; add new ones at the end.

use serde_json::{Map, Value};

use crate::{DefinitionFile, EventKind, NodeState, RunState, StoreError};

/// The stored code of a run state.
pub(crate) fn run_state_code(state: RunState) -> i16 {
    match state {
        RunState::Running => 0,
        RunState::Waiting => 1,
        RunState::Succeeded => 2,
        RunState::Degraded => 3,
        RunState::Failed => 4,
        RunState::Cancelled => 5,
    }
}

/// The run state stored as `code`.
pub(crate) fn run_state(code: i64) -> Result<RunState, String> {
    RunState::ALL
        .into_iter()
        .find(|s| i64::from(run_state_code(*s)) == code)
        .ok_or_else(|| format!("unknown run state code {code}"))
}

/// The codes of the finished states, which `gc` may delete.
pub(crate) fn finished_codes() -> [i16; 3] {
    [
        run_state_code(RunState::Succeeded),
        run_state_code(RunState::Degraded),
        run_state_code(RunState::Failed),
    ]
}

/// The stored code of a node state.
pub(crate) fn node_state_code(state: NodeState) -> i16 {
    match state {
        NodeState::Succeeded => 0,
        NodeState::FellBack => 1,
        NodeState::Failed => 2,
        NodeState::Skipped => 3,
        NodeState::Cancelled => 4,
        NodeState::Waiting => 5,
    }
}

/// The node state stored as `code`.
pub(crate) fn node_state(code: i64) -> Result<NodeState, String> {
    NodeState::ALL
        .into_iter()
        .find(|s| i64::from(node_state_code(*s)) == code)
        .ok_or_else(|| format!("unknown node state code {code}"))
}

/// The stored code of an event kind.
pub(crate) fn event_kind_code(kind: EventKind) -> i16 {
    match kind {
        EventKind::RunStarted => 0,
        EventKind::NodeStarted => 1,
        EventKind::NodeRetrying => 2,
        EventKind::NodeFinished => 3,
        EventKind::RunFinished => 4,
    }
}

/// The event kind stored as `code`.
pub(crate) fn event_kind(code: i64) -> Result<EventKind, String> {
    EventKind::ALL
        .into_iter()
        .find(|k| i64::from(event_kind_code(*k)) == code)
        .ok_or_else(|| format!("unknown event kind code {code}"))
}

/// A JSON value as compact text.
pub(crate) fn json_text(value: &Value) -> String {
    value.to_string()
}

/// A node's writes as compact text (a JSON object).
pub(crate) fn writes_text(writes: &Map<String, Value>) -> String {
    // A map of values always serializes.
    serde_json::to_string(writes).unwrap_or_else(|_| "{}".to_owned())
}

/// A definition's files as text: a JSON array of `[key, text]` pairs.
pub(crate) fn files_text(files: &[DefinitionFile]) -> String {
    let pairs: Vec<[&str; 2]> = files
        .iter()
        .map(|f| [f.key.as_str(), f.text.as_str()])
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

/// The files stored as `text`.
pub(crate) fn files(text: &str) -> Result<Vec<DefinitionFile>, String> {
    let pairs: Vec<(String, String)> =
        serde_json::from_str(text).map_err(|e| format!("a definition's files: {e}"))?;
    Ok(pairs
        .into_iter()
        .map(|(key, text)| DefinitionFile { key, text })
        .collect())
}

/// The JSON value stored as `text` (`what` names the column, for the message).
pub(crate) fn json(text: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what}: {e}"))
}

/// The writes stored as `text`.
pub(crate) fn writes(text: &str) -> Result<Map<String, Value>, String> {
    serde_json::from_str(text).map_err(|e| format!("a node's writes: {e}"))
}

/// A stored integer as the unsigned type a record holds.
pub(crate) fn unsigned<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T, String> {
    T::try_from(value).map_err(|_| format!("{what} out of range: {value}"))
}

/// An unsigned count or sequence number as the database's signed integer.
pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The error of an `Entry::End` that would end a run in `running`.
pub(crate) fn end_running(run: &str) -> StoreError {
    StoreError::Conflict(format!(
        "run `{run}` cannot end in state `running`: an end names the state it ends in (use `reopen` to make a run running again)"
    ))
}

/// The error of events that do not continue a run's sequence.
pub(crate) fn out_of_sequence(run: &str, expected: u64, got: u64) -> StoreError {
    StoreError::Conflict(format!(
        "event {got} of run `{run}` is out of sequence: the run's next event is {expected} (another writer may own this run)"
    ))
}

/// The error of a run id that is taken.
pub(crate) fn run_taken(run: &str) -> StoreError {
    StoreError::Conflict(format!(
        "a run with id `{run}` already exists; give a new id"
    ))
}

/// The error of a reopen from a state it does not allow.
pub(crate) fn wrong_state(run: &str, state: RunState, from: &[RunState]) -> StoreError {
    let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    StoreError::Conflict(format!(
        "run `{run}` is `{state}`, not one of [{}]: it cannot be reopened from there",
        allowed.join(", ")
    ))
}

/// The error of a write under `epoch` to a run at epoch `current`.
pub(crate) fn fenced(run: &str, epoch: u64, current: u64) -> StoreError {
    StoreError::Fenced {
        run: run.to_owned(),
        epoch,
        current,
    }
}
