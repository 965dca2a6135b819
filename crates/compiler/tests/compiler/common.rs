//! Helpers shared by the test modules: paths and a compiler over the built-in registry.

use std::path::{Path, PathBuf};

use braid_compiler::{Compilation, Compiler, Source};

/// The workspace root (two levels above this crate).
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A compiler with the built-in kinds and reducers, as `braid validate` uses.
pub(crate) fn compiler() -> Compiler {
    Compiler::new(braid_nodes::builtin_registry(), Default::default())
}

/// Compiles `text`, reported under `name`.
pub(crate) fn compile(compiler: &Compiler, name: &str, text: &str) -> Compilation {
    compiler.compile(&Source::new(name, text))
}

/// The `*.yaml` files of `dir` (relative to the workspace root), sorted by name, with their text.
pub(crate) fn yaml_files(dir: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(workspace().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| {
            let name = p
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (name, text)
        })
        .collect();
    files.sort();
    files
}
