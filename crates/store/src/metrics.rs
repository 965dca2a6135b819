//! The store's metric names, defined once, and where they are counted. Recorded through the
//! `metrics` facade: nothing is kept unless the program installs a recorder (the CLI's
//! Prometheus exporter).

use crate::StoreError;

/// Counter: journal writes (appends, reopens) refused because their epoch was not the run's
/// current one ([`StoreError::Fenced`]): a replica that lost its lease and wrote late.
pub const FENCED_WRITES_TOTAL: &str = "braid_store_fenced_writes_total";

/// Counts `result` if it is a fenced write; passes it on.
pub(crate) fn counted<T>(result: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(StoreError::Fenced { .. }) = &result {
        metrics::counter!(FENCED_WRITES_TOTAL).increment(1);
    }
    result
}
