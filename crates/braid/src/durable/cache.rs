//! The [`Durable`](super::Durable) handle's memory of definitions — compiled by fingerprint, and
//! put in the store — bounded, because a long-lived service sees a new fingerprint at every
//! valid edit of a workflow file and would otherwise keep each one for the life of the process.
//!
//! Both are only caches: an evicted definition is compiled again from the store when a run of
//! it is continued, and an evicted "put" is put again (an idempotent write) before the next run
//! of it. The oldest insertion goes first: the versions a service serves now are the recent
//! ones, and a thousand resumed runs of one old version compile it once all the same.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// How many fingerprints each cache keeps.
pub(super) const CAPACITY: usize = 64;

/// At most [`CAPACITY`] values by fingerprint, the oldest insertion evicted first.
#[derive(Debug)]
pub(super) struct Bounded<V> {
    inner: Mutex<Inner<V>>,
    capacity: usize,
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V: Clone> Bounded<V> {
    pub(super) fn new(capacity: usize) -> Self {
        Bounded {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // Held for a lookup or an insertion only: a poisoned lock holds nothing half-done.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn get(&self, key: &str) -> Option<V> {
        self.inner().map.get(key).cloned()
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.inner().map.contains_key(key)
    }

    pub(super) fn insert(&self, key: String, value: V) {
        let mut inner = self.inner();
        if inner.map.insert(key.clone(), value).is_some() {
            return;
        }
        inner.order.push_back(key);
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
    }

    /// How many values are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.inner().map.len()
    }
}

impl<V: Clone> Default for Bounded<V> {
    fn default() -> Self {
        Bounded::new(CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn keeps_at_most_its_capacity_evicting_the_oldest() {
        let cache = Bounded::new(3);
        for i in 0..10 {
            cache.insert(format!("f{i}"), i);
            // Inserting a kept key again neither grows nor reorders it.
            cache.insert(format!("f{i}"), i);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("f6"), None);
        assert_eq!(
            (cache.get("f7"), cache.get("f8"), cache.get("f9")),
            (Some(7), Some(8), Some(9))
        );
        assert!(cache.contains("f9"));
    }
}
