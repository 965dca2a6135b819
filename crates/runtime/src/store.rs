//! The state store: folds each key's contributions in canonical order.
//!
//! Every writer of a key has a position in the key's writer list (canonical order, fixed by the
//! plan). When a writer settles — it succeeded, fell back, was skipped, or wrote nothing to this
//! key — its contribution is folded at once if every earlier writer has settled, and otherwise
//! parked until they have. So the value only ever advances along the canonical order, and a
//! node that reads a key (all of whose other writers are upstream of it, as the compiler proved)
//! sees exactly the fold of its upstream writers, in parallel and sequential runs alike.
//!
//! At the end of a run, [`Store::finish`] folds whatever is still parked, skipping writers that
//! never settled (cancelled or not started), so completed results are never lost.

use std::sync::Arc;

use braid_core::plan::Channel;
use braid_core::{KeyId, Plan};
use serde_json::Value;

/// A settled writer's contribution to one key.
enum Contribution {
    /// The writer wrote this value.
    Write(Value),
    /// The writer settled without writing this key.
    Nothing,
}

struct Slot {
    /// Shared with the views of nodes reading it; a fold copies it only while one is alive.
    /// `None` until the first write is folded: the key's default (shared by every run) stands
    /// for it until then, so a run allocates nothing for keys nobody has written yet.
    value: Option<Arc<Value>>,
    /// Position of the next writer to fold.
    next: u32,
    /// Parked contributions, by writer position; allocated on first out-of-order settle.
    parked: Box<[Option<Contribution>]>,
}

/// Takes a value out of its `Arc`, copying it only if a view still shares it.
fn unshare(v: Arc<Value>) -> Value {
    Arc::try_unwrap(v).unwrap_or_else(|shared| {
        COPIES.with(|c| c.set(c.get() + 1));
        (*shared).clone()
    })
}

thread_local! {
    /// Copies of written values the folds on this thread had to make (see [`copies`]).
    static COPIES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times a fold on this thread had to copy a key's value because a node's state view
/// still shared it. A fold should find the value unshared (every reader of it has ended, or the
/// reader is the writer and its view is gone), so on a healthy run this stays 0: a copy per fold
/// of a growing list makes a chain quadratic. For tests and benchmarks; counted only on the copy
/// path, which a healthy run never takes.
#[doc(hidden)]
pub fn copies() -> u64 {
    COPIES.with(std::cell::Cell::get)
}

fn fold(channel: &Channel, slot: &mut Option<Arc<Value>>, update: Value) {
    let mut current = match slot.take() {
        Some(v) => Some(unshare(v)),
        None => channel.default.as_deref().cloned(),
    };
    channel.reducer.reduce(&mut current, update);
    *slot = current.map(Arc::new);
}

/// The state of one run.
pub struct Store {
    slots: Vec<Slot>,
}

impl Store {
    /// A store in which every key holds its default.
    pub fn new(plan: &Plan) -> Self {
        Store {
            slots: plan
                .keys()
                .iter()
                .map(|_| Slot {
                    value: None,
                    next: 0,
                    parked: Box::default(),
                })
                .collect(),
        }
    }

    /// The key's current value.
    pub fn get<'a>(&'a self, plan: &'a Plan, key: KeyId) -> Option<&'a Arc<Value>> {
        self.slots[key.index()]
            .value
            .as_ref()
            .or(plan.keys()[key.index()].default.as_ref())
    }

    /// Settles writer `pos` of `key` with `value` (`None`: it wrote nothing to this key).
    /// The value must already have passed the key's reducer check.
    pub fn settle(&mut self, plan: &Plan, key: KeyId, pos: u32, value: Option<Value>) {
        let contribution = value.map_or(Contribution::Nothing, Contribution::Write);
        let channel = &plan.keys()[key.index()];
        let slot = &mut self.slots[key.index()];
        if pos != slot.next {
            if slot.parked.is_empty() {
                slot.parked = (0..channel.writers.len()).map(|_| None).collect();
            }
            slot.parked[pos as usize] = Some(contribution);
            return;
        }
        if let Contribution::Write(v) = contribution {
            fold(channel, &mut slot.value, v);
        }
        slot.next += 1;
        while let Some(c) = slot
            .parked
            .get_mut(slot.next as usize)
            .and_then(Option::take)
        {
            if let Contribution::Write(v) = c {
                fold(channel, &mut slot.value, v);
            }
            slot.next += 1;
        }
    }

    /// Folds every parked contribution, in order, skipping writers that never settled, and
    /// returns the final state: every declared key, `null` where it has no value.
    pub fn finish(mut self, plan: &Plan) -> Value {
        let mut out = plan.state_skeleton().clone();
        let slots = plan.keys().iter().zip(&mut self.slots);
        for ((channel, slot), out) in slots.zip(out.values_mut()) {
            for c in slot.parked.iter_mut().skip(slot.next as usize) {
                if let Some(Contribution::Write(v)) = c.take() {
                    fold(channel, &mut slot.value, v);
                }
            }
            *out = match slot.value.take() {
                Some(v) => unshare(v),
                None => channel.default.as_deref().cloned().unwrap_or(Value::Null),
            };
        }
        Value::Object(out)
    }
}
