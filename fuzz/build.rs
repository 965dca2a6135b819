//! Gathers every line of `../workflows/*.yaml` into one file in `OUT_DIR`, which
//! `compile_structured` includes as its pool of real workflow lines. Done at build time so new
//! workflows join the pool without editing the target.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    files.sort();
    let mut lines = String::new();
    for file in files {
        println!("cargo::rerun-if-changed={}", file.display());
        if let Ok(text) = std::fs::read_to_string(&file) {
            for line in text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
                lines.push_str(line);
                lines.push('\n');
            }
        }
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("workflow_lines.txt");
    std::fs::write(out, lines).expect("OUT_DIR is writable");
}
