//! A workflow's identity through the facade: its fingerprint and the files it was compiled from.

use braid::Engine;

fn path(name: &str) -> String {
    format!(
        "{}/../../tests/workflows/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn a_workflow_knows_its_fingerprint_and_files() {
    let engine = Engine::new();
    let wf = engine
        .load_file(path("parent.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wf.fingerprint(), wf.plan().fingerprint());
    let keys: Vec<&str> = wf.files().iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["", "sub/retrieval.yaml"]);
    assert_eq!(wf.files()[0].text, wf.source().text);

    // Loaded again, by another engine: the same identity.
    let again = Engine::new()
        .load_file(path("parent.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.fingerprint(), wf.fingerprint());
    // Another workflow: another identity.
    let other = engine
        .load_file(path("sub/retrieval.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(other.fingerprint(), wf.fingerprint());
}
