//! Rendering diagnostics: for people (the source line with the span marked), as JSON for tools,
//! and as GitHub Actions workflow commands (so a pull request gets inline annotations).
//!
//! The human renderer is written here rather than taken from a crate: spans come from the YAML
//! parser in *character* columns, labels may sit on several lines, and the output must be stable
//! byte for byte for snapshot tests. It follows rustc's layout.

use std::fmt::Write as _;

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Severity};

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[1;33m";
const BLUE: &str = "\x1b[1;34m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

struct Paint {
    color: bool,
}

impl Paint {
    fn p(&self, style: &'static str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}

/// Renders diagnostics for a terminal, rustc-style. `source` is the file's text.
pub fn human(file: &str, source: &str, diagnostics: &[Diagnostic], color: bool) -> String {
    let paint = Paint { color };
    let lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut out = String::new();
    for d in diagnostics {
        let (word, style) = match d.severity {
            Severity::Error => ("error", RED),
            Severity::Warning => ("warning", YELLOW),
        };
        let _ = writeln!(
            out,
            "{}{}",
            paint.p(style, &format!("{word}[{}]", d.code)),
            paint.p(BOLD, &format!(": {}", d.message))
        );
        let primary = d.span();
        let mut label_lines: Vec<u32> = d
            .labels
            .iter()
            .map(|l| l.span.start.line)
            .filter(|&l| l > 0)
            .collect();
        label_lines.sort_unstable();
        label_lines.dedup();
        let width = label_lines.last().map_or(1, |l| l.to_string().len());
        let pad = " ".repeat(width);
        let _ = writeln!(
            out,
            "{pad}{} {file}:{}:{}",
            paint.p(BLUE, "-->"),
            primary.start.line.max(1),
            primary.start.column.max(1)
        );
        if !label_lines.is_empty() {
            let _ = writeln!(out, "{pad} {}", paint.p(BLUE, "|"));
        }
        let mut previous: Option<u32> = None;
        for &ln in &label_lines {
            if previous.is_some_and(|p| ln > p + 1) {
                let _ = writeln!(out, "{}", paint.p(BLUE, "..."));
            }
            previous = Some(ln);
            let text = lines.get(ln as usize - 1).copied().unwrap_or("");
            let _ = writeln!(
                out,
                "{} {} {text}",
                paint.p(BLUE, &format!("{ln:>width$}")),
                paint.p(BLUE, "|")
            );
            for (i, label) in d
                .labels
                .iter()
                .enumerate()
                .filter(|(_, l)| l.span.start.line == ln)
            {
                let start = label.span.start.column.max(1) as usize - 1;
                let line_len = text.chars().count();
                let point = label.span.end == label.span.start;
                let end = if label.span.end.line == ln
                    && label.span.end.column > label.span.start.column
                {
                    label.span.end.column as usize - 1
                } else if point {
                    start + 1
                } else {
                    line_len.max(start + 1)
                };
                let len = end.saturating_sub(start).max(1);
                let (mark, st) = if i == 0 { ("^", style) } else { ("-", BLUE) };
                let underline = mark.repeat(len);
                let msg = if label.message.is_empty() {
                    String::new()
                } else {
                    format!(" {}", label.message)
                };
                let _ = writeln!(
                    out,
                    "{pad} {} {}{}",
                    paint.p(BLUE, "|"),
                    " ".repeat(start),
                    paint.p(st, &format!("{underline}{msg}"))
                );
            }
        }
        if let Some(help) = &d.help {
            if !label_lines.is_empty() {
                let _ = writeln!(out, "{pad} {}", paint.p(BLUE, "|"));
            }
            let _ = writeln!(out, "{pad} {} {help}", paint.p(BOLD, "= help:"));
        }
        out.push('\n');
    }
    out
}

/// A one-line summary such as `error: 3 errors and 1 warning in 2 files`.
pub fn summary(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, w: &str| {
        if n == 1 {
            format!("1 {w}")
        } else {
            format!("{n} {w}s")
        }
    };
    match (errors, warnings) {
        (0, 0) => "no problems".to_owned(),
        (e, 0) => plural(e, "error"),
        (0, w) => plural(w, "warning"),
        (e, w) => format!("{} and {}", plural(e, "error"), plural(w, "warning")),
    }
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Renders diagnostics as GitHub Actions workflow commands, one line each:
/// `::error file=F,line=L,col=C,endLine=..,endColumn=..,title=..::message`.
pub fn github(file: &str, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let s = d.span();
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        let _ = write!(
            out,
            "::{level} file={},line={},col={}",
            escape_property(file),
            s.start.line.max(1),
            s.start.column.max(1)
        );
        if s.end.line >= s.start.line && s.end.line > 0 {
            let _ = write!(
                out,
                ",endLine={},endColumn={}",
                s.end.line,
                s.end.column.max(1)
            );
        }
        let _ = writeln!(
            out,
            ",title={}::{}",
            escape_property(&format!("braid {}", d.code)),
            escape_data(&message)
        );
    }
    out
}

/// One diagnostic as the JSON output format prints it.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic<'a> {
    /// The file.
    pub file: &'a str,
    /// Line of the primary span, from 1.
    pub line: u32,
    /// Column of the primary span, from 1.
    pub column: u32,
    /// The diagnostic itself.
    #[serde(flatten)]
    pub diagnostic: &'a Diagnostic,
}

/// The diagnostics of one file in the JSON output format.
pub fn json<'a>(file: &'a str, diagnostics: &'a [Diagnostic]) -> Vec<JsonDiagnostic<'a>> {
    diagnostics
        .iter()
        .map(|d| {
            let s = d.span();
            JsonDiagnostic {
                file,
                line: s.start.line.max(1),
                column: s.start.column.max(1),
                diagnostic: d,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::{Code, Pos, Span};

    fn span(line: u32, col: u32, len: u32) -> Span {
        Span {
            start: Pos {
                line,
                column: col,
                offset: 0,
            },
            end: Pos {
                line,
                column: col + len,
                offset: 0,
            },
        }
    }

    #[test]
    fn human_marks_the_span_and_says_how_to_fix() {
        let src = "nodes:\n  a:\n    nedds: [b]\n";
        let d = Diagnostic::error(Code::UnknownField, span(3, 5, 5), "unknown field `nedds`")
            .label("not a field here")
            .help("did you mean `needs`?");
        let text = human("w.yaml", src, &[d], false);
        assert_eq!(
            text,
            "error[unknown-field]: unknown field `nedds`\n --> w.yaml:3:5\n  |\n3 |     nedds: [b]\n  |     ^^^^^ not a field here\n  |\n  = help: did you mean `needs`?\n\n"
        );
    }

    #[test]
    fn github_escapes_properties_and_data() {
        let d = Diagnostic::error(Code::Cycle, span(2, 3, 1), "a, b: c\nd").help("x");
        assert_eq!(
            github("dir/w,1.yaml", &[d]),
            "::error file=dir/w%2C1.yaml,line=2,col=3,endLine=2,endColumn=4,title=braid cycle::a, b: c%0Ad%0Ahelp: x\n"
        );
    }
}
