//! The work in flight of one run (its nodes that wait on something) or of one node (a `map`'s
//! items), polled by the task that owns it instead of a task each.
//!
//! A spawned task costs a scheduling round trip per wake-up, an entry in a `JoinSet`, and a join
//! that may cross threads; polling the futures in the owner's task costs none of that, and the
//! owner learns of an end at once. The price is that the futures share their owner's thread and
//! its coop budget: a handler that computes for long (rather than waiting) holds up its siblings,
//! so such work belongs in `spawn_blocking` (`docs/ARCHITECTURE.md`, "Where nodes run").
//!
//! Structured as before: the set is owned by the run's (or the node's) future, so dropping that
//! future, or [`clear`](Polled::clear), drops every piece of work in flight, which cancels it (an
//! `exec` node's program group is killed on drop).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, Stream};

use crate::attempt::TASK_PANICKED;

/// One piece of work in a [`Polled`] set: its key (a node, an item's index), its future, and the
/// span entered at each of its polls when a subscriber wants it.
///
/// The future is boxed: held inline it would be moved into the set, and it is large enough that
/// the copies cost more than the allocation (measured: +4 to +9 % instructions per node).
pub(crate) struct Task<K, T> {
    key: K,
    fut: Pin<Box<dyn Future<Output = T> + Send>>,
    span: Option<tracing::Span>,
}

impl<K, T> Task<K, T> {
    /// `span` is kept only if some subscriber wants it: otherwise the task enters none at each
    /// poll (the common case in a service without debug logs).
    pub(crate) fn new(
        key: K,
        fut: impl Future<Output = T> + Send + 'static,
        span: Option<tracing::Span>,
    ) -> Self {
        Task {
            key,
            fut: Box::pin(fut),
            span: span.filter(|s| !s.is_disabled()),
        }
    }
}

impl<K: Copy + Unpin, T> Future for Task<K, T> {
    /// The key, and the output or the message of a panic in the runtime's own code (a handler's
    /// panics are caught by its attempt: this is the net under that).
    type Output = (K, Result<T, String>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        let fut = &mut this.fut;
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready((this.key, Ok(out))),
            Err(_) => Poll::Ready((this.key, Err(TASK_PANICKED.to_owned()))),
        }
    }
}

/// A set of [`Task`]s polled by the task that owns it; made at the first push (an empty
/// `FuturesUnordered` still allocates, and most runs of built-in kinds never wait).
pub(crate) struct Polled<K, T> {
    set: Option<FuturesUnordered<Task<K, T>>>,
}

impl<K: Copy + Unpin, T> Polled<K, T> {
    pub(crate) fn new() -> Self {
        Polled { set: None }
    }

    pub(crate) fn push(&mut self, task: Task<K, T>) {
        self.set
            .get_or_insert_with(FuturesUnordered::new)
            .push(task);
    }

    /// Drops every task in flight, which cancels it.
    pub(crate) fn clear(&mut self) {
        if let Some(set) = &mut self.set {
            set.clear();
        }
    }

    /// The next task to end; `Ready(None)` when there is none in flight.
    ///
    /// The tasks share the owner's coop budget: once it is spent, every tokio resource they poll
    /// answers `Pending` and defers its wake, so polling them would go round the whole set for
    /// nothing, a waste quadratic in the tasks that end together. This yields instead, as a
    /// `JoinSet` does, and an end spends one unit, as a join does.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(K, Result<T, String>)>> {
        let Some(set) = self.set.as_mut().filter(|s| !s.is_empty()) else {
            return Poll::Ready(None);
        };
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let next = std::task::ready!(Pin::new(set).poll_next(cx));
        coop.made_progress();
        Poll::Ready(next)
    }

    /// [`poll_next`](Self::poll_next) as a future.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a task that ended is taken from the set only when this returns it.
    pub(crate) async fn next(&mut self) -> Option<(K, Result<T, String>)> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}
