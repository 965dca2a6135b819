//! A plan's identity: the fingerprint over the workflow's text and every file it includes, and the
//! list of files a compilation read.

use std::path::Path;

use braid_compiler::fingerprint::fingerprint;
use braid_compiler::{Compilation, Source};

use crate::common::{compile, compiler, workspace};

const TINY: &str = "version: 1\nname: tiny\nnodes:\n  only:\n    kind: noop\n";

const PARENT: &str = "\
version: 1
name: parent
nodes:
  first: { kind: workflow, with: { path: sub/child.yaml } }
  again: { kind: workflow, needs: [first], with: { path: ./sub/child.yaml } }
";

const CHILD: &str = "\
version: 1
name: child
nodes:
  inner: { kind: workflow, with: { path: grand.yaml } }
";

const GRAND: &str = "version: 1\nname: grand\nnodes:\n  leaf: { kind: noop }\n";

/// Writes `files` (path relative to `dir`, text) under `dir`.
fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("a parent directory")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
}

/// Compiles the file at `path`, as `braid validate` does.
fn compile_file(path: &Path) -> Compilation {
    let text = std::fs::read_to_string(path).expect("read");
    compiler().compile(&Source::new(path.display().to_string(), text))
}

fn fingerprint_of(c: &Compilation) -> String {
    let plan = c
        .plan
        .as_ref()
        .unwrap_or_else(|| panic!("no plan: {:#?}", c.diagnostics));
    plan.fingerprint().to_string()
}

fn keys(c: &Compilation) -> Vec<&str> {
    c.files.iter().map(|f| f.key.as_str()).collect()
}

#[test]
fn a_fixed_source_has_a_fixed_fingerprint() {
    // Pinned: a change here is a change to the fingerprint's definition, which must bump
    // `braid_compiler::fingerprint::SCHEME` (stored fingerprints would stop matching). The hex was
    // computed apart from this code, from the definition in the module's docs:
    // sha256(lp(b"braid-plan-fingerprint/1") + u64le(1) + lp(b"") + lp(TINY)).
    let c = compile(&compiler(), "tiny.yaml", TINY);
    assert_eq!(
        fingerprint_of(&c),
        "3cb735569c47ce5aa44dd8bfe5d78e1f1199406e3aac2ee860604c7bca9a969c"
    );
    // The name (or path) it is compiled under is not part of its identity.
    let elsewhere = compile(&compiler(), "/somewhere/else/renamed.yaml", TINY);
    assert_eq!(fingerprint_of(&elsewhere), fingerprint_of(&c));
}

#[test]
fn the_same_sources_give_the_same_fingerprint() {
    let path = workspace().join("tests/workflows/parent.yaml");
    let a = compile_file(&path);
    let b = compile_file(&path);
    assert_eq!(fingerprint_of(&a), fingerprint_of(&b));
    assert_ne!(
        fingerprint_of(&a),
        fingerprint_of(&compile(&compiler(), "tiny.yaml", TINY))
    );
    // The plan's fingerprint is the fingerprint of the files the compilation lists.
    let plan = a.plan.as_ref().expect("a plan");
    assert_eq!(*plan.fingerprint(), fingerprint(&a.files));
}

#[test]
fn the_same_tree_checked_out_elsewhere_has_the_same_fingerprint() {
    let tree = [
        ("parent.yaml", PARENT),
        ("sub/child.yaml", CHILD),
        ("sub/grand.yaml", GRAND),
    ];
    let one = tempfile::tempdir().expect("a temp dir");
    let two = tempfile::tempdir().expect("a temp dir");
    write_tree(one.path(), &tree);
    // The second checkout has CRLF line ends, as git's `autocrlf` makes them.
    let crlf: Vec<(&str, String)> = tree
        .iter()
        .map(|(p, t)| (*p, t.replace('\n', "\r\n")))
        .collect();
    let crlf: Vec<(&str, &str)> = crlf.iter().map(|(p, t)| (*p, t.as_str())).collect();
    write_tree(&two.path().join("deeper/checkout"), &crlf);
    let a = compile_file(&one.path().join("parent.yaml"));
    let b = compile_file(&two.path().join("deeper/checkout/parent.yaml"));
    assert_eq!(fingerprint_of(&a), fingerprint_of(&b));
}

#[test]
fn editing_an_included_file_changes_the_parents_fingerprint() {
    let dir = tempfile::tempdir().expect("a temp dir");
    write_tree(
        dir.path(),
        &[
            ("parent.yaml", PARENT),
            ("sub/child.yaml", CHILD),
            ("sub/grand.yaml", GRAND),
        ],
    );
    let parent = dir.path().join("parent.yaml");
    let before = fingerprint_of(&compile_file(&parent));
    // Two levels down: the parent includes the child, which includes this file.
    write_tree(
        dir.path(),
        &[("sub/grand.yaml", &GRAND.replace("leaf", "leaf2"))],
    );
    let after = fingerprint_of(&compile_file(&parent));
    assert_ne!(before, after);
    // And back: the identity is the content, not the time it was written.
    write_tree(dir.path(), &[("sub/grand.yaml", GRAND)]);
    assert_eq!(fingerprint_of(&compile_file(&parent)), before);
}

#[test]
fn a_compilation_lists_every_file_it_read() {
    let dir = tempfile::tempdir().expect("a temp dir");
    write_tree(
        dir.path(),
        &[
            ("parent.yaml", PARENT),
            ("sub/child.yaml", CHILD),
            ("sub/grand.yaml", GRAND),
        ],
    );
    let c = compile_file(&dir.path().join("parent.yaml"));
    assert!(c.plan.is_some(), "{:#?}", c.diagnostics);
    // The root first, then each included file once (named twice, by two paths), by key.
    assert_eq!(keys(&c), ["", "sub/child.yaml", "sub/grand.yaml"]);
    let texts: Vec<&str> = c.files.iter().map(|f| &*f.text).collect();
    assert_eq!(texts, [PARENT, CHILD, GRAND]);
    for f in &c.files {
        assert!(f.path.is_file(), "{} is not a file", f.path.display());
        assert_eq!(
            f.path.canonicalize().expect("canonical"),
            dir.path()
                .join(if f.key.is_empty() {
                    "parent.yaml"
                } else {
                    &f.key
                })
                .canonicalize()
                .expect("canonical")
        );
    }

    // The workflows in the repository: the parent and the file it runs.
    let c = compile_file(&workspace().join("tests/workflows/parent.yaml"));
    assert_eq!(keys(&c), ["", "sub/retrieval.yaml"]);

    // A file with no include lists itself; so does one that does not load.
    assert_eq!(keys(&compile(&compiler(), "tiny.yaml", TINY)), [""]);
    assert_eq!(keys(&compile(&compiler(), "bad.yaml", "version: [")), [""]);
}

#[test]
fn an_included_file_that_does_not_compile_is_listed_still() {
    // A service must watch it: fixing it is what makes the parent valid again.
    let dir = tempfile::tempdir().expect("a temp dir");
    write_tree(
        dir.path(),
        &[
            ("parent.yaml", PARENT),
            ("sub/child.yaml", CHILD),
            ("sub/grand.yaml", "version: 1\nname: grand\nnodes: {}\n"),
        ],
    );
    let c = compile_file(&dir.path().join("parent.yaml"));
    assert!(c.plan.is_none());
    assert_eq!(keys(&c), ["", "sub/child.yaml", "sub/grand.yaml"]);
}

#[test]
fn recorded_files_compile_to_the_same_plan_wherever_the_disk_has_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tree(
        dir.path(),
        &[
            ("parent.yaml", PARENT),
            ("sub/child.yaml", CHILD),
            ("sub/grand.yaml", GRAND),
        ],
    );
    let on_disk = compile_file(&dir.path().join("parent.yaml"));
    let recorded: Vec<(String, String)> = on_disk
        .files
        .iter()
        .map(|f| (f.key.clone(), f.text.to_string()))
        .collect();
    // The files change, or go: a run recorded with the old ones still compiles from its record.
    std::fs::remove_dir_all(dir.path().join("sub")).expect("remove");
    let again = compiler().compile_recorded(
        "parent.yaml",
        recorded.iter().map(|(k, t)| (k.as_str(), t.as_str())),
    );
    assert_eq!(fingerprint_of(&again), fingerprint_of(&on_disk));
    assert_eq!(keys(&again), keys(&on_disk));
    let plan = again.plan.expect("a plan");
    assert_eq!(plan.nodes().len(), 2);

    // A recorded set that lacks an included file says which.
    let missing = compiler().compile_recorded(
        "parent.yaml",
        recorded
            .iter()
            .filter(|(k, _)| k != "sub/grand.yaml")
            .map(|(k, t)| (k.as_str(), t.as_str())),
    );
    assert!(missing.plan.is_none());
    let messages: Vec<&str> = missing
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`sub/grand.yaml`) is not among the recorded files")),
        "{messages:?}"
    );
}
