//! [`StateView`]: the state keys one node may read, shared with the run's store.
//!
//! Its own module because both the node vocabulary ([`crate::node`]) and the template engine
//! ([`crate::template`]) read it; neither imports the other for it.

use std::sync::Arc;

use serde_json::Value;

/// The state keys a node may read, shared with the run's store: building one copies no value.
#[derive(Debug, Clone, Default)]
pub struct StateView(Option<Entries>);

/// A view's keys and values (`None` in a [`StateView`] when there are none: no allocation).
type Entries = Arc<[(Arc<str>, Arc<Value>)]>;

impl StateView {
    /// A view of these keys and values.
    pub fn new(entries: Vec<(Arc<str>, Arc<Value>)>) -> Self {
        if entries.is_empty() {
            // No allocation for a node that reads nothing (most nodes).
            StateView(None)
        } else {
            StateView(Some(entries.into()))
        }
    }

    /// A view of a JSON object's entries (each value copied once).
    pub fn from_object(state: &Value) -> Self {
        let entries = state
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Arc::new(v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        StateView::new(entries)
    }

    /// One key's value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries()
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// The keys and values.
    pub fn entries(&self) -> &[(Arc<str>, Arc<Value>)] {
        self.0.as_deref().unwrap_or_default()
    }

    /// The view as one JSON object (copies every value).
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.entries()
                .iter()
                .map(|(k, v)| (k.to_string(), (**v).clone()))
                .collect(),
        )
    }
}
