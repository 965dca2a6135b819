//! Why a node attempt failed: [`NodeError`] and its [`FailureKind`], the vocabulary of node
//! failures that the runtime reports and retries on, kinds return, and metrics label.

use std::time::Duration;

use crate::template::TemplateError;

/// The type of a node failure, as reported and used in metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The node returned an error.
    Error,
    /// An attempt took longer than the node's timeout (or the run's deadline).
    Timeout,
    /// The node's code panicked.
    Panic,
    /// The node was stopped because the run was cancelled.
    Cancelled,
    /// The node returned something that is not a valid update: not an object, a key it does not
    /// declare in `writes`, or a value the key's reducer cannot take.
    InvalidOutput,
}

impl FailureKind {
    /// The kind named `s` (as [`as_str`](Self::as_str) gives it): how a journal reads back a
    /// failure it recorded.
    pub fn parse(s: &str) -> Option<FailureKind> {
        [
            FailureKind::Error,
            FailureKind::Timeout,
            FailureKind::Panic,
            FailureKind::Cancelled,
            FailureKind::InvalidOutput,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// The name used in reports and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Timeout => "timeout",
            FailureKind::Panic => "panic",
            FailureKind::Cancelled => "cancelled",
            FailureKind::InvalidOutput => "invalid_output",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a node attempt failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct NodeError {
    /// The failure's type.
    pub kind: FailureKind,
    /// What went wrong, for people.
    pub message: String,
    /// Whether another attempt may succeed. `false` stops retries at once.
    pub retryable: bool,
    /// A wait the failing service asked for (such as HTTP `Retry-After`), used instead of the
    /// backoff when longer.
    pub retry_after: Option<Duration>,
}

impl NodeError {
    /// A retryable error of kind [`FailureKind::Error`].
    pub fn new(message: impl Into<String>) -> Self {
        NodeError {
            kind: FailureKind::Error,
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// An error of the given kind.
    pub fn of_kind(kind: FailureKind, message: impl Into<String>) -> Self {
        NodeError {
            kind,
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// Marks the error as permanent: no retry.
    #[must_use]
    pub fn permanent(mut self) -> Self {
        self.retryable = false;
        self
    }
}

impl From<TemplateError> for NodeError {
    fn from(e: TemplateError) -> Self {
        NodeError::new(format!("template: {}", e.message)).permanent()
    }
}
