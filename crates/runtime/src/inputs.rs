//! A run's inputs, checked against the workflow's `inputs` before anything runs.

use braid_core::Plan;
use serde_json::{Map, Value};

/// An input that does not fit the workflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// A required input (no default) was not given.
    #[error("missing input `{name}` (type `{ty}`); give it with `--input {name}=VALUE`")]
    Missing {
        /// The input.
        name: String,
        /// Its type.
        ty: &'static str,
    },
    /// An input was given with the wrong type.
    #[error("input `{name}` must be of type `{ty}`, got {got}")]
    WrongType {
        /// The input.
        name: String,
        /// Its type.
        ty: &'static str,
        /// The value given.
        got: String,
    },
    /// An input the workflow does not declare.
    #[error("unknown input `{name}`; this workflow takes {known}")]
    Unknown {
        /// The input.
        name: String,
        /// The inputs it declares.
        known: String,
    },
}

/// Checks `given` against the plan's inputs and fills in defaults. Every problem is returned.
///
/// # Errors
///
/// One [`InputError`] per missing, mistyped or unknown input.
pub fn resolve_inputs(plan: &Plan, given: Map<String, Value>) -> Result<Value, Vec<InputError>> {
    let mut errors = Vec::new();
    let mut given = given;
    let mut out = Map::with_capacity(plan.inputs().len());
    for decl in plan.inputs() {
        match given.remove(&*decl.name) {
            Some(v) if decl.ty.accepts(&v) => {
                out.insert(decl.name.to_string(), v);
            }
            Some(v) => errors.push(InputError::WrongType {
                name: decl.name.to_string(),
                ty: decl.ty.as_str(),
                got: v.to_string(),
            }),
            None => match &decl.default {
                Some(d) => {
                    out.insert(decl.name.to_string(), d.clone());
                }
                None => errors.push(InputError::Missing {
                    name: decl.name.to_string(),
                    ty: decl.ty.as_str(),
                }),
            },
        }
    }
    if !given.is_empty() {
        let known = if plan.inputs().is_empty() {
            "no inputs".to_owned()
        } else {
            plan.inputs()
                .iter()
                .map(|i| format!("`{}`", i.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for name in given.keys() {
            errors.push(InputError::Unknown {
                name: name.clone(),
                known: known.clone(),
            });
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(errors)
    }
}
