//! Reducers: how the contributions of several nodes to one state key become its value.
//!
//! A reducer has two halves. [`Reducer::check`] decides whether a value is one the reducer can
//! take; it runs on the key's default at compile time and on each node's update the moment the node
//! finishes, so a bad write fails *that node* with a message naming the key. [`Reducer::reduce`]
//! then folds a checked value into the current one and cannot fail. The runtime calls `reduce` in
//! the canonical order (see [`Plan`](crate::Plan)), which makes the final state independent of which
//! node finished first.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::node::type_name;

/// A value a reducer cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReducerError {
    /// Lowercase, says what was expected, such as "`append` takes a list, got a string".
    pub message: String,
}

/// Folds contributions to a state key. Implement it to register a custom reducer from Rust.
pub trait Reducer: Send + Sync + 'static {
    /// The name used in the workflow file's `reducer:` field.
    fn name(&self) -> &str;

    /// Whether the reducer can take `value`, as a default or as a node's contribution.
    ///
    /// # Errors
    ///
    /// A [`ReducerError`] saying what the reducer takes and what it got.
    fn check(&self, value: &Value) -> Result<(), ReducerError>;

    /// Folds a value that passed [`check`](Reducer::check) into `current` (`None`: no value yet).
    fn reduce(&self, current: &mut Option<Value>, update: Value);
}

fn expect(reducer: &str, what: &str, ok: bool, got: &Value) -> Result<(), ReducerError> {
    if ok {
        Ok(())
    } else {
        Err(ReducerError {
            message: format!("`{reducer}` takes {what}, got {}", type_name(got)),
        })
    }
}

/// `replace`: the last contribution in canonical order wins.
#[derive(Debug, Default)]
pub struct Replace;

impl Reducer for Replace {
    fn name(&self) -> &str {
        "replace"
    }
    fn check(&self, _: &Value) -> Result<(), ReducerError> {
        Ok(())
    }
    fn reduce(&self, current: &mut Option<Value>, update: Value) {
        *current = Some(update);
    }
}

/// `append`: lists are concatenated.
#[derive(Debug, Default)]
pub struct Append;

impl Reducer for Append {
    fn name(&self) -> &str {
        "append"
    }
    fn check(&self, v: &Value) -> Result<(), ReducerError> {
        expect("append", "a list", v.is_array(), v)
    }
    fn reduce(&self, current: &mut Option<Value>, update: Value) {
        match (current.as_mut(), update) {
            (Some(Value::Array(list)), Value::Array(items)) => list.extend(items),
            (_, update) => *current = Some(update),
        }
    }
}

/// `union`: lists are concatenated, leaving out items already present.
#[derive(Debug, Default)]
pub struct Union;

impl Reducer for Union {
    fn name(&self) -> &str {
        "union"
    }
    fn check(&self, v: &Value) -> Result<(), ReducerError> {
        expect("union", "a list", v.is_array(), v)
    }
    fn reduce(&self, current: &mut Option<Value>, update: Value) {
        let Value::Array(items) = update else { return };
        let list = match current {
            Some(Value::Array(list)) => list,
            _ => {
                *current = Some(Value::Array(Vec::with_capacity(items.len())));
                match current {
                    Some(Value::Array(list)) => list,
                    _ => return,
                }
            }
        };
        for item in items {
            if !list.contains(&item) {
                list.push(item);
            }
        }
    }
}

/// `merge`: objects are merged deeply; on a conflict between non-objects the later value wins.
#[derive(Debug, Default)]
pub struct Merge;

fn deep_merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => deep_merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

impl Reducer for Merge {
    fn name(&self) -> &str {
        "merge"
    }
    fn check(&self, v: &Value) -> Result<(), ReducerError> {
        expect("merge", "an object", v.is_object(), v)
    }
    fn reduce(&self, current: &mut Option<Value>, update: Value) {
        match (current.as_mut(), update) {
            (Some(Value::Object(a)), Value::Object(b)) => deep_merge(a, b),
            (_, update) => *current = Some(update),
        }
    }
}

/// Which arithmetic fold a [`Numeric`] reducer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumericOp {
    Sum,
    Min,
    Max,
}

/// `sum`, `min`, `max`: numbers. Integers stay integers while they fit in an `i64`.
#[derive(Debug)]
pub struct Numeric(NumericOp);

impl Numeric {
    /// The `sum` reducer.
    pub const SUM: Numeric = Numeric(NumericOp::Sum);
    /// The `min` reducer.
    pub const MIN: Numeric = Numeric(NumericOp::Min);
    /// The `max` reducer.
    pub const MAX: Numeric = Numeric(NumericOp::Max);
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

impl Reducer for Numeric {
    fn name(&self) -> &str {
        match self.0 {
            NumericOp::Sum => "sum",
            NumericOp::Min => "min",
            NumericOp::Max => "max",
        }
    }
    fn check(&self, v: &Value) -> Result<(), ReducerError> {
        expect(self.name(), "a number", v.is_number(), v)
    }
    fn reduce(&self, current: &mut Option<Value>, update: Value) {
        let Some(Value::Number(a)) = current.as_ref() else {
            *current = Some(update);
            return;
        };
        let Value::Number(b) = &update else { return };
        let folded = match (a.as_i64(), b.as_i64(), self.0) {
            (Some(x), Some(y), NumericOp::Sum) => x.checked_add(y).map(Value::from),
            (Some(x), Some(y), NumericOp::Min) => Some(Value::from(x.min(y))),
            (Some(x), Some(y), NumericOp::Max) => Some(Value::from(x.max(y))),
            _ => None,
        };
        let folded = folded.unwrap_or_else(|| {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            match self.0 {
                NumericOp::Sum => number(x + y),
                NumericOp::Min => number(x.min(y)),
                NumericOp::Max => number(x.max(y)),
            }
        });
        *current = Some(folded);
    }
}

/// The built-in reducers, by name.
pub fn builtins() -> Vec<Arc<dyn Reducer>> {
    vec![
        Arc::new(Replace),
        Arc::new(Append),
        Arc::new(Merge),
        Arc::new(Numeric::SUM),
        Arc::new(Numeric::MIN),
        Arc::new(Numeric::MAX),
        Arc::new(Union),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fold(r: &dyn Reducer, start: Option<Value>, updates: &[Value]) -> Option<Value> {
        let mut cur = start;
        for u in updates {
            r.check(u).unwrap();
            r.reduce(&mut cur, u.clone());
        }
        cur
    }

    #[test]
    fn each_builtin_folds_as_documented() {
        assert_eq!(
            fold(&Replace, Some(json!(1)), &[json!(2), json!("x")]),
            Some(json!("x"))
        );
        assert_eq!(
            fold(&Append, Some(json!([1])), &[json!([2, 3]), json!([])]),
            Some(json!([1, 2, 3]))
        );
        assert_eq!(
            fold(&Union, Some(json!([1])), &[json!([1, 2, 2]), json!([3, 2])]),
            Some(json!([1, 2, 3]))
        );
        assert_eq!(
            fold(
                &Merge,
                Some(json!({"a": {"x": 1}, "b": 1})),
                &[json!({"a": {"y": 2}, "b": {"z": 3}})]
            ),
            Some(json!({"a": {"x": 1, "y": 2}, "b": {"z": 3}}))
        );
        assert_eq!(
            fold(&Numeric::SUM, Some(json!(0)), &[json!(2), json!(3)]),
            Some(json!(5))
        );
        assert_eq!(
            fold(&Numeric::SUM, None, &[json!(0.5), json!(1)]),
            Some(json!(1.5))
        );
        assert_eq!(
            fold(&Numeric::MIN, None, &[json!(4), json!(-1), json!(2)]),
            Some(json!(-1))
        );
        assert_eq!(
            fold(&Numeric::MAX, None, &[json!(4), json!(9.5), json!(2)]),
            Some(json!(9.5))
        );
    }

    #[test]
    fn integer_sum_overflow_falls_back_to_float() {
        let v = fold(&Numeric::SUM, Some(json!(i64::MAX)), &[json!(1)]).unwrap();
        assert!(v.is_f64());
    }

    #[test]
    fn check_names_what_was_expected() {
        assert_eq!(
            Append.check(&json!("x")).unwrap_err().message,
            "`append` takes a list, got a string"
        );
        assert_eq!(
            Merge.check(&json!([])).unwrap_err().message,
            "`merge` takes an object, got a list"
        );
        assert_eq!(
            Numeric::SUM.check(&json!({})).unwrap_err().message,
            "`sum` takes a number, got an object"
        );
    }
}
