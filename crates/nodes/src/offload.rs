//! Work a node computes rather than waits for, moved off its run's task when it is large.
//!
//! A run's nodes are polled by the run's own task (the `Node` trait's "Where it runs"), so a node
//! that parses a 16 MiB response in place holds up every other node of its run for tens of
//! milliseconds. Up to [`INLINE_MAX`] bytes the work is done in place (a thread hop would cost
//! more than it saves); above, on tokio's blocking pool.

use braid_core::NodeError;

/// The largest input parsed in place: about half a millisecond of JSON parsing.
pub(crate) const INLINE_MAX: usize = 256 << 10;

/// `f(input)`, in place when `input` is at most [`INLINE_MAX`] bytes long, otherwise on the
/// blocking pool.
///
/// # Errors
///
/// `f`'s own error, or a failure of the blocking task (it panicked: a bug, reported as the
/// node's failure rather than lost).
///
/// # Cancel safety
///
/// Dropping the future (the node's timeout, the run's cancellation) lets a blocking `f` that
/// has started run to its end; its result is dropped.
pub(crate) async fn parse<I, T>(
    input: I,
    f: impl FnOnce(&[u8]) -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError>
where
    I: AsRef<[u8]> + Send + 'static,
    T: Send + 'static,
{
    if input.as_ref().len() <= INLINE_MAX {
        return f(input.as_ref());
    }
    tokio::task::spawn_blocking(move || f(input.as_ref()))
        .await
        .unwrap_or_else(|e| Err(NodeError::new(format!("parsing the output failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread `parse` ran its function on, for an input of `len` bytes.
    async fn thread_for(len: usize) -> std::thread::ThreadId {
        parse(vec![b' '; len], |_| Ok(std::thread::current().id()))
            .await
            .expect("no error")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn small_inputs_are_parsed_in_place_large_ones_off_the_task() {
        let here = std::thread::current().id();
        assert_eq!(thread_for(INLINE_MAX).await, here);
        assert_ne!(thread_for(INLINE_MAX + 1).await, here);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn errors_come_back_either_way() {
        for len in [1, INLINE_MAX + 1] {
            let e = parse(vec![0u8; len], |_| -> Result<(), _> {
                Err(NodeError::new("bad"))
            })
            .await
            .expect_err("its error");
            assert_eq!(e.message, "bad");
        }
    }
}
