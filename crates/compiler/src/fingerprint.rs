//! The files a compilation read, and the plan's [`Fingerprint`] over them.
//!
//! A plan's identity must be the same wherever the same tree of workflow files is checked out, and
//! change whenever any of those files does, so a durable store can record which definition a run
//! used and a service can tell which files to watch. The definition, version 1:
//!
//! ```text
//! SHA-256 of
//!   lp(SCHEME)                                   SCHEME = "braid-plan-fingerprint/1"
//!   u64le(number of files)
//!   for each file, the root first, then the included files ordered by key (bytewise):
//!     lp(key)                                    "" for the root; else the path relative to the
//!                                                root file's directory, `/`-separated, with `.`
//!                                                and `name/..` resolved lexically
//!     lp(text with every "\r\n" made "\n")
//! where lp(b) = u64le(byte length of b) followed by b
//! ```
//!
//! What makes it stable: nothing absolute or local goes in (not the root's path or name, nor any
//! directory above it, nor file times or modes), keys use `/` on every platform, each file is
//! length-prefixed (so no two different trees encode alike), the order does not depend on the
//! order nodes load files, and a checkout that turned line ends into CRLF (git's `autocrlf`) hashes
//! as the LF one: YAML reads both alike. An include written with an absolute path keys by that
//! path and so is only stable where that path is.
//!
//! An included file's own plan (the one its node runs) has its own fingerprint, by the same
//! definition with that file as the root.
//!
//! What it covers is the text. It does not cover what is code rather than text: the registry's
//! kinds and reducers (built-in or registered by the embedding program), the Braid version that
//! compiled it (its defaults and built-in kinds), compile options (they only accept or refuse), or
//! what a node reads at run time (an `exec` script, an environment variable). A store that must
//! tell those apart records the Braid version and the program's own version beside the
//! fingerprint. `SCHEME` changes whenever this definition does, or Braid makes the same text mean
//! something else; the test `a_fixed_source_has_a_fixed_fingerprint` pins the hex of one source.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use braid_core::Fingerprint;
use sha2::{Digest, Sha256};

/// The tag hashed first: the version of the fingerprint's definition (see the module docs).
pub const SCHEME: &str = "braid-plan-fingerprint/1";

/// A file a compilation read: the workflow compiled, or a workflow file one of its nodes includes
/// (directly or through another included file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path it was read from: the root's [`Source::name`](crate::Source::name), an included
    /// file's path joined to the directory of the file naming it. What a service watches.
    pub path: PathBuf,
    /// The name the fingerprint knows it by: `""` for the root, otherwise its path relative to
    /// the root file's directory, `/`-separated and lexically normalised (`sub/child.yaml`,
    /// `../shared/x.yaml`).
    pub key: String,
    /// The text read.
    pub text: Arc<str>,
}

/// The fingerprint of `files`, in the order given: [`Compilation::files`](crate::Compilation)
/// lists them in the order the definition hashes (the root, then the included files by key).
pub fn fingerprint(files: &[SourceFile]) -> Fingerprint {
    let mut h = Sha256::new();
    length_prefixed(&mut h, &[SCHEME.as_bytes()]);
    h.update((files.len() as u64).to_le_bytes());
    for f in files {
        length_prefixed(&mut h, &[f.key.as_bytes()]);
        // The text with CRLF line ends made LF, without copying it.
        let lines: Vec<&[u8]> = f.text.split("\r\n").map(str::as_bytes).collect();
        length_prefixed(&mut h, &lines);
    }
    Fingerprint::from_bytes(h.finalize().into())
}

/// Hashes `parts` joined by `\n`, after their total length.
fn length_prefixed(h: &mut Sha256, parts: &[&[u8]]) {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + parts.len().saturating_sub(1);
    h.update((len as u64).to_le_bytes());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(part);
    }
}

/// The key of a file named `written` by the file keyed `including` (a key as in
/// [`SourceFile::key`]; `""` is the root): `written` resolved against `including`'s directory.
pub(crate) fn include_key(including: &str, written: &str) -> String {
    let written = Path::new(written);
    let mut root = String::new();
    let mut parts: Vec<String> = Vec::new();
    if !written.has_root() {
        parts.extend(including.split('/').map(str::to_owned));
        parts.pop(); // the including file's own name
        if parts.first().is_some_and(String::is_empty) {
            // An including key that is absolute (`/x/a.yaml` splits into "", "x", …).
            parts.remove(0);
            root.push('/');
        }
    }
    for c in written.components() {
        match c {
            Component::Prefix(p) => root.push_str(&p.as_os_str().to_string_lossy()),
            Component::RootDir => root.push('/'),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.last().is_some_and(|p| p != "..") {
                    parts.pop();
                } else if root.is_empty() {
                    parts.push("..".to_owned());
                }
            }
            Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
        }
    }
    root + &parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str, text: &str) -> SourceFile {
        SourceFile {
            path: PathBuf::from(key),
            key: key.to_owned(),
            text: Arc::from(text),
        }
    }

    #[test]
    fn keys_are_relative_to_the_root_directory() {
        assert_eq!(include_key("", "child.yaml"), "child.yaml");
        assert_eq!(include_key("", "./sub/child.yaml"), "sub/child.yaml");
        assert_eq!(
            include_key("sub/child.yaml", "grand.yaml"),
            "sub/grand.yaml"
        );
        assert_eq!(include_key("sub/child.yaml", "../x.yaml"), "x.yaml");
        assert_eq!(include_key("", "../shared/x.yaml"), "../shared/x.yaml");
        assert_eq!(include_key("../a.yaml", "../b.yaml"), "../../b.yaml");
        assert_eq!(include_key("sub/c.yaml", "d/../e.yaml"), "sub/e.yaml");
        assert_eq!(include_key("sub/c.yaml", "/abs/x.yaml"), "/abs/x.yaml");
        assert_eq!(include_key("/abs/x.yaml", "y.yaml"), "/abs/y.yaml");
    }

    #[test]
    fn crlf_line_ends_hash_as_lf() {
        let lf = fingerprint(&[file("", "a: 1\nb: 2\n")]);
        let crlf = fingerprint(&[file("", "a: 1\r\nb: 2\r\n")]);
        assert_eq!(lf, crlf);
        assert_ne!(lf, fingerprint(&[file("", "a: 1\nb: 3\n")]));
    }

    #[test]
    fn keys_and_boundaries_are_part_of_the_identity() {
        let one = fingerprint(&[file("", "x"), file("a.yaml", "yz")]);
        assert_ne!(one, fingerprint(&[file("", "x"), file("b.yaml", "yz")]));
        assert_ne!(one, fingerprint(&[file("", "xy"), file("a.yaml", "z")]));
        assert_ne!(one, fingerprint(&[file("", "x")]));
    }
}
