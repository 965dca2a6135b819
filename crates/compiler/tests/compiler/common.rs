//! Helpers shared by the test modules: paths and a compiler over the built-in registry.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Once;

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

thread_local! {
    /// Panics raised on this thread so far, caught or not.
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f`, counting the panics raised on this thread meanwhile, even those the compiler
/// catches and reports as `internal` diagnostics: a file that makes anything panic is a bug,
/// however well it is reported.
pub(crate) fn panics_in<T>(f: impl FnOnce() -> T) -> (T, usize) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.set(PANICS.get() + 1);
            previous(info);
        }));
    });
    let before = PANICS.get();
    let out = f();
    (out, PANICS.get() - before)
}
