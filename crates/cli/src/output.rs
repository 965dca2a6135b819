//! Writing to standard output and standard error without panicking.
//!
//! `print!` panics when the write fails, and a closed pipe is an ordinary way for output to end:
//! `braid run flow.yaml | head -c 10` closes stdout after ten bytes (Rust ignores `SIGPIPE`, so
//! the write fails with `EPIPE` instead of killing the process). As command-line tools do, a
//! broken pipe is taken as the end of the output: the rest is dropped, the command carries on
//! (a run still writes its report and files) and exits with its usual code.

use std::io::{ErrorKind, Write as _};

/// Writes `text` to standard output. A closed pipe ends the output quietly.
///
/// # Errors
///
/// Any other write failure (a full disk behind a redirect).
pub(crate) fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
        Ok(()) => Ok(()),
    }
}

/// Writes `text` to standard error; a failure is ignored (there is nowhere left to report it).
pub(crate) fn err(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.flush());
}
