//! The memory store against the conformance suite.

use std::sync::Arc;

use braid_store::MemoryStore;

#[tokio::test]
async fn conformance() {
    crate::conformance::suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn open_memory() {
    let store = braid_store::open("memory").await.unwrap();
    assert_eq!(store.location(), "memory");
    crate::conformance::suite(store).await;
}
