//! The service against a real server on a loopback port, with a real HTTP client.

mod serve {
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
