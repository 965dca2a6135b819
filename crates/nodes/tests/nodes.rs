//! Integration tests of the built-in node kinds, run through the `braid` facade. One binary, one
//! module per kind; modules live in `tests/nodes/`.

#[path = "nodes/stub.rs"]
mod stub;

#[path = "nodes/http.rs"]
mod http;

#[path = "nodes/llm.rs"]
mod llm;

#[path = "nodes/secrets.rs"]
mod secrets;

#[path = "nodes/secrets_prop.rs"]
mod secrets_prop;

#[path = "nodes/example.rs"]
mod example;
