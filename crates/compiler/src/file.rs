//! Reading workflow files: only regular files, and no more than the size limit.
//!
//! A path named as a workflow (`braid run FILE`, `braid validate`, a `workflow` node's `path:`)
//! may be anything: `/dev/zero` would be read until memory runs out, a FIFO would block the read
//! forever. So the file's type is checked before it is read (and again on the opened file), and
//! the read stops one byte past [`Limits::max_bytes`](crate::Limits): such paths fail at once,
//! saying why.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use crate::{Compiler, Source};

fn not_regular(meta: &std::fs::Metadata) -> io::Error {
    let ft = meta.file_type();
    let what = if ft.is_dir() {
        "a directory"
    } else {
        unix_kind(&ft).unwrap_or("not a regular file")
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}: workflows are read from regular files only"),
    )
}

#[cfg(unix)]
fn unix_kind(ft: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt as _;
    if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_char_device() || ft.is_block_device() {
        Some("a device")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

#[cfg(not(unix))]
fn unix_kind(_: &std::fs::FileType) -> Option<&'static str> {
    None
}

fn too_large(max_bytes: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the file is larger than {max_bytes} bytes, the limit of a workflow file"),
    )
}

/// Reads a workflow file: a regular file (or a link to one) of at most `max_bytes`, in UTF-8.
///
/// # Errors
///
/// When the path is not a regular file (a directory, FIFO, device or socket), is larger than
/// `max_bytes`, is not UTF-8, or cannot be read.
pub fn read_source(path: &Path, max_bytes: usize) -> io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    if meta.len() > max_bytes as u64 {
        return Err(too_large(max_bytes));
    }
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let mut text = String::new();
    file.take(max_bytes as u64 + 1).read_to_string(&mut text)?;
    if text.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    Ok(text)
}

impl Compiler {
    /// Reads a workflow file as [`read_source`] does, within this compiler's size limit.
    ///
    /// # Errors
    ///
    /// As [`read_source`].
    pub fn read_file(&self, path: &Path) -> io::Result<Source> {
        let text = read_source(path, self.options.limits.max_bytes)?;
        Ok(Source::new(path.display().to_string(), text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = std::env::temp_dir().join(format!("braid-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("w.yaml");
        std::fs::write(&file, "version: 1\n").expect("write");
        assert_eq!(read_source(&file, 100).expect("read"), "version: 1\n");
        let e = read_source(&file, 4).expect_err("too large");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = read_source(&dir, 100).expect_err("a directory");
        assert_eq!(
            e.to_string(),
            "a directory: workflows are read from regular files only"
        );
        #[cfg(unix)]
        {
            let e = read_source(Path::new("/dev/zero"), 100).expect_err("a device");
            assert_eq!(
                e.to_string(),
                "a device: workflows are read from regular files only"
            );
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
