//! The service against a real server on a loopback port, with a real HTTP client.

mod serve {
    mod console;
    pub(crate) mod events;
    pub(crate) mod harness;
    mod limits;
    mod openapi;
    mod reload;
    mod replicas;
    mod runs;
    mod stores;
    mod workflows;
}
