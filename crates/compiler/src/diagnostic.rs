//! Diagnostics: what is wrong, where (file:line:col), and how to fix it.
//!
//! Every problem the compiler finds is a [`Diagnostic`] with a stable [`Code`], a lowercase message
//! with identifiers in backticks, labelled spans (the first is primary) and a help line. Checks
//! accumulate diagnostics rather than stopping at the first, so one `braid validate` shows every
//! problem. Rendering (human, JSON, GitHub annotations) lives in [`crate::render`].

use serde::Serialize;

/// A position in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, in characters.
    pub column: u32,
    /// Offset from the start of the file, in characters.
    pub offset: u32,
}

/// A range of a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Span {
    /// Where it starts (inclusive).
    pub start: Pos,
    /// Where it ends (exclusive).
    pub end: Pos,
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The workflow cannot run.
    Error,
    /// The workflow runs, but probably not as meant.
    Warning,
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// A diagnostic's stable code. The names never change meaning; new ones may be added.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            /// The code's stable name, such as `unknown-field`.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $name, )* }
            }
        }
    };
}

codes! {
    /// The file could not be read.
    Io = "io",
    /// The text is not valid YAML.
    YamlSyntax = "yaml-syntax",
    /// A mapping has the same key twice.
    DuplicateKey = "duplicate-key",
    /// The file is too large, too deep, or its aliases expand too far.
    YamlLimit = "yaml-limit",
    /// A YAML feature Braid does not accept (tags other than the core ones, complex keys, several documents).
    YamlUnsupported = "yaml-unsupported",
    /// A field that the format does not have.
    UnknownField = "unknown-field",
    /// A value of the wrong type.
    WrongType = "wrong-type",
    /// A required field is absent.
    MissingField = "missing-field",
    /// A value outside what the field allows.
    InvalidValue = "invalid-value",
    /// A node, input or key name that does not match the naming rule.
    InvalidName = "invalid-name",
    /// The `version` is not one this Braid reads.
    UnsupportedVersion = "unsupported-version",
    /// A duration that does not parse.
    InvalidDuration = "invalid-duration",
    /// The workflow has no nodes.
    NoNodes = "no-nodes",
    /// A `needs` entry names no node.
    UnknownNeed = "unknown-need",
    /// A node needs itself.
    SelfNeed = "self-need",
    /// The nodes' `needs` form a cycle.
    Cycle = "cycle",
    /// A `reducer` that is neither built in nor registered.
    UnknownReducer = "unknown-reducer",
    /// A `kind` that is neither built in nor registered.
    UnknownKind = "unknown-kind",
    /// A default value the key's reducer cannot take, or an input default of the wrong type.
    InvalidDefault = "invalid-default",
    /// A node's `with:` block does not fit its kind.
    InvalidParams = "invalid-params",
    /// A node writes (or falls back on) a key that `state` does not declare, or its kind will write
    /// a key (`map`'s `into`, an `output` key) that the node's `writes` does not list.
    UndeclaredWrite = "undeclared-write",
    /// A node reads a key that `state` does not declare, or an input that `inputs` does not.
    UnknownReference = "unknown-reference",
    /// A node reads a key that a node not upstream of it writes.
    NonUpstreamRead = "non-upstream-read",
    /// Two nodes that may run concurrently write the same `replace` key.
    ConcurrentReplace = "concurrent-replace",
    /// A template does not compile.
    TemplateSyntax = "template-syntax",
    /// A `when` expression does not compile.
    ExpressionSyntax = "expression-syntax",
    /// A fallback key that the node does not list in `writes`, or a fallback value its reducer cannot take.
    InvalidFallback = "invalid-fallback",
    /// A template inside a script that a shell or interpreter parses (`[sh, -c, "… {{ x }} …"]`):
    /// a value could run as code. A warning.
    ShellTemplate = "shell-template",
    /// A `fallback` on a node whose failure ends the run, so it is never written.
    UnusedFallback = "unused-fallback",
    /// The workflow is larger than Braid accepts.
    TooLarge = "too-large",
    /// A bug in Braid or a library it uses, not in the file: a parser or the compiler panicked on
    /// it (caught, see `guard`), or the schema accepted what the types did not. Please report it.
    Internal = "internal",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A span with a note on what it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What it shows (may be empty).
    pub message: String,
}

/// One problem in a workflow file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The stable code.
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong: lowercase, identifiers in backticks.
    pub message: String,
    /// Where: the first label is the primary location.
    pub labels: Vec<Label>,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at a span.
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            labels: vec![Label {
                span,
                message: String::new(),
            }],
            help: None,
        }
    }

    /// A warning at a span.
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// Sets the primary label's text.
    #[must_use]
    pub fn label(mut self, message: impl Into<String>) -> Self {
        if let Some(l) = self.labels.first_mut() {
            l.message = message.into();
        }
        self
    }

    /// Adds a secondary label.
    #[must_use]
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// Sets the help line.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The primary location.
    pub fn span(&self) -> Span {
        self.labels.first().map(|l| l.span).unwrap_or_default()
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The closest of `candidates` to `name`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|&(d, c)| {
            d <= limit
                || (c.len() > 3 && c.starts_with(name))
                || (name.len() > 3 && name.starts_with(c))
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// "node `rag`'s `timeout`" style description of a pointer.
pub(crate) fn describe(pointer: &str) -> String {
    let segs: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    match segs.as_slice() {
        [] => "the workflow".to_owned(),
        [top] => format!("`{top}`"),
        [top, name] if top == "nodes" => format!("node `{name}`"),
        [top, name] if top == "inputs" => format!("input `{name}`"),
        [top, name] if top == "state" => format!("state key `{name}`"),
        [top, name, rest @ ..] if top == "nodes" => format!("node `{name}`'s `{}`", rest.join(".")),
        [top, name, rest @ ..] if top == "inputs" => {
            format!("input `{name}`'s `{}`", rest.join("."))
        }
        [top, name, rest @ ..] if top == "state" => {
            format!("state key `{name}`'s `{}`", rest.join("."))
        }
        _ => format!("`{}`", segs.join(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_typos_only() {
        assert_eq!(
            did_you_mean("nedds", ["needs", "writes", "when"]),
            Some("needs")
        );
        assert_eq!(did_you_mean("rga", ["rag", "tools"]), Some("rag"));
        assert_eq!(did_you_mean("banana", ["rag", "tools"]), None);
    }

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
