//! A template variable whose keys are declared, such as an `http` node's `secrets`: a key looked
//! up by a name computed at run time (`secrets[name]`) that is not declared fails naming it and
//! the declared ones, instead of the engine's bare "undefined value".
//!
//! The compiler checks the names a template spells out (`secrets.tokn`); this is the run-time half,
//! for the names it cannot see.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object};
use minijinja::{Error, ErrorKind};
use serde_json::{Map, Value};

/// The values of one variable, by declared name.
struct Declared {
    /// What a key is called in messages (`secret`).
    noun: &'static str,
    values: BTreeMap<String, minijinja::Value>,
}

impl std::fmt::Debug for Declared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Object for Declared {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let name = key.as_str()?;
        if let Some(v) = self.values.get(name) {
            return Some(v.clone());
        }
        let declared: Vec<String> = self.values.keys().map(|k| format!("`{k}`")).collect();
        let declared = if declared.is_empty() {
            "none is".to_owned()
        } else {
            format!("declared: {}", declared.join(", "))
        };
        let message = format!("{} `{name}` is not declared; {declared}", self.noun);
        // An invalid value fails the lookup that meets it, with this message.
        Some(minijinja::Value::from(Error::new(
            ErrorKind::UndefinedError,
            message,
        )))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.values
                .keys()
                .map(|k| minijinja::Value::from(k.as_str()))
                .collect(),
        )
    }
}

/// Extra template variables for one render, made by [`declared_vars`]; render with them through
/// [`NodeContext::render_with_vars`](crate::NodeContext::render_with_vars).
#[derive(Debug, Clone)]
pub struct TemplateVars(pub(crate) minijinja::Value);

/// Template variables `{ root: values }`, where `values` has only the keys given: looking up
/// another one fails the render with "`noun` `name` is not declared; declared: ...".
pub fn declared_vars(root: &str, noun: &'static str, values: &Map<String, Value>) -> TemplateVars {
    let values = values
        .iter()
        .map(|(k, v)| (k.clone(), minijinja::Value::from_serialize(v)))
        .collect();
    let object = minijinja::Value::from_object(Declared { noun, values });
    TemplateVars(minijinja::Value::from_iter([(root.to_owned(), object)]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render(source: &str, values: Value) -> Result<String, String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let Value::Object(values) = values else {
            unreachable!("an object")
        };
        let vars = declared_vars("secrets", "secret", &values);
        env.render_str(source, minijinja::context! { name => "tokn", ..vars.0 })
            .map_err(|e| e.detail().unwrap_or_default().to_owned())
    }

    #[test]
    fn an_undeclared_name_is_named_with_the_declared_ones() {
        let values = json!({ "token": "s3cret", "user": "u" });
        assert_eq!(
            render("{{ secrets.token }}", values.clone()).as_deref(),
            Ok("s3cret")
        );
        assert_eq!(
            render("{{ secrets[name] }}", values.clone()),
            Err("secret `tokn` is not declared; declared: `token`, `user`".to_owned())
        );
        assert_eq!(
            render("{{ secrets | list | join(',') }}", values),
            Ok("token,user".to_owned())
        );
        assert_eq!(
            render("{{ secrets[name] }}", json!({})),
            Err("secret `tokn` is not declared; none is".to_owned())
        );
    }
}
