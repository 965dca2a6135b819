//! Dense indices for nodes and state keys.
//!
//! Names live in the file and in reports; inside a [`Plan`](crate::Plan) everything is an index,
//! resolved once at compile time, so the scheduler's hot path never hashes a string.

/// A node's index in its [`Plan`](crate::Plan). Node ids follow the canonical order: a topological
/// order with ties broken by file order, so `NodeId(0)` can always run first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The id as a `usize`, for indexing.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A state key's index in its [`Plan`](crate::Plan), in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl KeyId {
    /// The id as a `usize`, for indexing.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
