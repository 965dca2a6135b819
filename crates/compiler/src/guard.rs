//! The net under the compiler's third-party parsers: a panic inside one becomes an `internal`
//! diagnostic instead of unwinding through the compiler.
//!
//! `Compiler::compile` promises never to panic, whatever the text, and a service that reloads
//! edited files must survive any file. Each dependency that parses or checks the user's text is
//! called through [`catch`] in exactly one place: the YAML parser in [`crate::load`] (each
//! event), the JSON Schema validator in [`crate::schema`] (each check). The template engine is
//! guarded in `braid_core::template` (its compile calls live there), and its panics reach
//! [`crate::lower`] as `BuildErrorKind::EnginePanic`, reported through [`internal`] too. Finally
//! `Compiler::compile` itself runs under [`catch`], so a bug in Braid's own checks, or in a
//! registered kind's `build`, is reported the same way.
//!
//! The fuzz targets still see every such panic: libFuzzer's panic hook aborts before unwinding.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::diagnostic::{Code, Diagnostic, Span};

/// Runs `f`, returning the panic's message if it panics.
///
/// Whatever `f` touched is not used after a panic except to report it, so unwind safety is not
/// a concern: callers drop the loader, validator run or compilation that panicked.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| message(&*payload))
}

fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// The diagnostic for a panic caught while compiling, at `span`: `what` names the construct and
/// says what panicked, such as "the YAML parser (saphyr-parser) panicked reading on from here:
/// <the panic's message>".
pub(crate) fn internal(what: impl std::fmt::Display, span: Span) -> Diagnostic {
    Diagnostic::error(Code::Internal, span, format!("internal error: {what}"))
        .label("this made the compiler panic")
        .help(
            "this is a bug in Braid or in a library it uses, not a mistake in the file; please \
             report it with the file",
        )
}
