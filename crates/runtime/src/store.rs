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

use braid_core::{KeyId, Plan};
use serde_json::{Map, Value};

/// A settled writer's contribution to one key.
enum Contribution {
    /// The writer wrote this value.
    Write(Value),
    /// The writer settled without writing this key.
    Nothing,
}

struct Slot {
    value: Option<Value>,
    /// Position of the next writer to fold.
    next: u32,
    /// Parked contributions, by writer position; allocated on first out-of-order settle.
    parked: Vec<Option<Contribution>>,
}

/// The state of one run.
pub struct Store {
    slots: Vec<Slot>,
}

impl Store {
    /// A store holding each key's default.
    pub fn new(plan: &Plan) -> Self {
        Store {
            slots: plan
                .keys()
                .iter()
                .map(|k| Slot {
                    value: k.default.clone(),
                    next: 0,
                    parked: Vec::new(),
                })
                .collect(),
        }
    }

    /// The key's current value.
    pub fn get(&self, key: KeyId) -> Option<&Value> {
        self.slots[key.index()].value.as_ref()
    }

    /// Settles writer `pos` of `key` with `value` (`None`: it wrote nothing to this key).
    /// The value must already have passed the key's reducer check.
    pub fn settle(&mut self, plan: &Plan, key: KeyId, pos: u32, value: Option<Value>) {
        let contribution = value.map_or(Contribution::Nothing, Contribution::Write);
        let channel = &plan.keys()[key.index()];
        let slot = &mut self.slots[key.index()];
        if pos != slot.next {
            if slot.parked.is_empty() {
                slot.parked.resize_with(channel.writers.len(), || None);
            }
            slot.parked[pos as usize] = Some(contribution);
            return;
        }
        if let Contribution::Write(v) = contribution {
            channel.reducer.reduce(&mut slot.value, v);
        }
        slot.next += 1;
        while let Some(c) = slot
            .parked
            .get_mut(slot.next as usize)
            .and_then(Option::take)
        {
            if let Contribution::Write(v) = c {
                channel.reducer.reduce(&mut slot.value, v);
            }
            slot.next += 1;
        }
    }

    /// Folds every parked contribution, in order, skipping writers that never settled, and
    /// returns the final state: every declared key, `null` where it has no value.
    pub fn finish(mut self, plan: &Plan) -> Value {
        let mut out = Map::with_capacity(self.slots.len());
        for (channel, slot) in plan.keys().iter().zip(&mut self.slots) {
            for c in slot.parked.iter_mut().skip(slot.next as usize) {
                if let Some(Contribution::Write(v)) = c.take() {
                    channel.reducer.reduce(&mut slot.value, v);
                }
            }
            out.insert(
                channel.name.to_string(),
                slot.value.take().unwrap_or(Value::Null),
            );
        }
        Value::Object(out)
    }
}
