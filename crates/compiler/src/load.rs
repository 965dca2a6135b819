//! YAML text → a JSON value with a span for every node. The only module that touches the YAML crate.
//!
//! Built on `saphyr-parser`'s event stream (a YAML 1.2 parser that gives a span for every event),
//! rather than a serde deserializer, because Braid needs what serde-based YAML crates do not give:
//! a line and column for every *value* (so a diagnostic points at `800 ms`, not at the document),
//! duplicate keys as errors (a node defined twice must not silently replace the first), and
//! bounds on file size, nesting depth and alias expansion (a "billion laughs" file is refused in
//! microseconds, never expanded). The result is a `serde_json::Value`, which the JSON Schema
//! validator and serde both read, plus a [`SpanMap`] from JSON pointers to spans.
//!
//! The spans are read on demand: a valid workflow needs none (every lookup is for a diagnostic),
//! and a span for every key and value is the size of the typed workflow again (35 MB for 100,000
//! nodes). So [`load`] reads the values, and the [`SpanMap`] reads the text a second time, spans
//! only, the first time a diagnostic asks where something is (issue 16, items 19 and 23).
//!
//! Scalars follow the YAML 1.2 core schema: `yes`/`on` are strings, not booleans.
//!
//! [`load_with`] hands the entries of one top-level mapping to an [`Entries`] as they are read,
//! instead of keeping them in the document: the compiler checks and types a workflow's nodes one
//! at a time this way (`compiler::spec`), so a large file's nodes are never all held as JSON at
//! once (issue 16, items 19 and 23). Their spans stay in the [`SpanMap`].

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span as YSpan};
use serde_json::{Map, Number, Value};

use crate::diagnostic::{Code, Diagnostic, Pos, Span, describe};
use crate::guard;

/// Bounds on what the loader accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest file, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of mappings and sequences.
    pub max_depth: usize,
    /// Most values in the document, counting every alias expansion in full.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 8 * 1024 * 1024,
            max_depth: 64,
            max_nodes: 1_000_000,
        }
    }
}

/// FNV-1a: the span map is keyed by short pointer strings that the user wrote; SipHash's
/// resistance to collision attacks buys nothing here and was a fifth of compile time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fnv;

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

/// The FNV-1a hasher of [`Fnv`].
#[derive(Debug, Clone, Copy)]
pub struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Where a value is: its key (for mapping entries) and the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpan {
    /// The mapping key's span, for values that are mapping entries.
    pub key: Option<Span>,
    /// The value's span.
    pub value: Span,
}

/// Where a value and its children are: a tree shaped like the document, so loading costs no
/// string per value (a map keyed by JSON-pointer strings cost a fifth of compile time).
#[derive(Debug, Clone, Default)]
struct SpanNode {
    key: Option<Span>,
    value: Span,
    /// Children in document order: for a mapping, keyed by the FNV hash of their key; for a
    /// sequence, by their index. Empty for scalars and alias expansions.
    children: Vec<(u64, SpanNode)>,
    seq: bool,
}

fn hash(key: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = Fnv.build_hasher();
    h.write(key.as_bytes());
    h.finish()
}

/// JSON pointer (`/nodes/rag/timeout`) → where that value is in the file.
///
/// Made from the text on the first lookup (a second reading, spans only: the first one built
/// none), then kept. A text the loader accepted always reads the same way; if the second reading
/// failed all the same (a panic in the YAML parser), every lookup answers the file's start.
#[derive(Debug, Clone, Default)]
pub struct SpanMap {
    text: std::sync::Arc<str>,
    limits: Limits,
    root: std::sync::OnceLock<SpanNode>,
}

impl SpanMap {
    /// The spans of `text`, read when first asked for, with the limits it was loaded under.
    fn new(text: std::sync::Arc<str>, limits: Limits) -> Self {
        SpanMap {
            text,
            limits,
            root: std::sync::OnceLock::new(),
        }
    }

    /// The tree, read now if it was not yet.
    fn root(&self) -> &SpanNode {
        self.root.get_or_init(|| {
            #[cfg(test)]
            tests::SPAN_READS.with(|n| n.set(n.get() + 1));
            let mut loader = Loader::new(&self.text, self.limits, Pass::Spans, None);
            loader.document().map(|(_, root)| root).unwrap_or_default()
        })
    }

    /// Whether the spans were read (only a lookup reads them).
    pub fn is_read(&self) -> bool {
        self.root.get().is_some()
    }

    /// The text a one-line span covers, as characters, with the span's first column (from 0):
    /// what [`narrow`](Self::narrow) and [`within`](Self::within) search. `None` for spans over
    /// several lines or outside the text.
    fn one_line(&self, span: Span) -> Option<(String, usize)> {
        if span.start.line != span.end.line || span.start.line == 0 {
            return None;
        }
        let line = self.text.split('\n').nth(span.start.line as usize - 1)?;
        let chars: Vec<char> = line.chars().collect();
        let (from, to) = (
            span.start.column as usize - 1,
            (span.end.column as usize - 1).min(chars.len()),
        );
        (from < to).then(|| (chars[from..to].iter().collect(), from))
    }

    /// The part of a one-line `span` from character `start` to `end` of its line (from 0);
    /// `from` is the span's first column, as [`one_line`](Self::one_line) gives it.
    fn part(span: Span, from: usize, start: usize, end: usize) -> Span {
        let pos = |c: usize| Pos {
            line: span.start.line,
            column: c as u32 + 1,
            offset: span.start.offset + (c - from) as u32,
        };
        Span {
            start: pos(start),
            end: pos(end),
        }
    }

    /// Narrows a one-line span to the first occurrence of `needle` inside it (such as the
    /// variable a template reads), or returns it unchanged.
    pub fn narrow(&self, span: Span, needle: &str) -> Span {
        let Some((hay, from)) = self.one_line(span).filter(|_| !needle.is_empty()) else {
            return span;
        };
        let Some(byte) = hay.find(needle) else {
            return span;
        };
        let col = from + hay[..byte].chars().count();
        Self::part(span, from, col, col + needle.chars().count())
    }

    /// Narrows a one-line span of a string scalar to the bytes `range` of the string's value
    /// (where a template's syntax error is), when the scalar is written as its value is: plain,
    /// or quoted without escapes. Otherwise returns the span unchanged.
    pub fn within(&self, span: Span, range: Option<std::ops::Range<usize>>) -> Span {
        let (Some(range), Some((raw, from))) = (range, self.one_line(span)) else {
            return span;
        };
        let (quote, inner) = match raw.chars().next() {
            Some(q @ ('"' | '\'')) if raw.len() >= 2 && raw.ends_with(q) => {
                let inner = &raw[1..raw.len() - 1];
                if (q == '"' && inner.contains('\\')) || (q == '\'' && inner.contains("''")) {
                    return span;
                }
                (1, inner)
            }
            _ => (0, raw.as_str()),
        };
        let (Some(before), Some(blamed)) = (inner.get(..range.start), inner.get(range.clone()))
        else {
            return span;
        };
        let to = from + raw.chars().count();
        // Past the last character (the end of the input): the last character.
        let start = (from + quote + before.chars().count()).min(to - 1);
        let end = (start + blamed.chars().count().max(1)).min(to);
        Self::part(span, from, start, end)
    }

    /// The spans of the value at `pointer`, or of its nearest ancestor that has them (values
    /// produced by an alias have only the alias's span).
    pub fn lookup(&self, pointer: &str) -> NodeSpan {
        self.find(pointer, None).0
    }

    /// The spans at `pointer` (or its nearest ancestor), and whether `pointer` itself was found.
    /// A key defined twice has its spans twice: the first definition's are found, or, given
    /// `near`, the one whose value holds that position (a second definition, holding a mapping
    /// with a key of its own defined twice).
    fn find(&self, pointer: &str, near: Option<Pos>) -> (NodeSpan, bool) {
        let mut node = self.root();
        for seg in pointer.split('/').skip(1) {
            let seg = seg.replace("~1", "/").replace("~0", "~");
            let next = if node.seq {
                seg.parse::<usize>()
                    .ok()
                    .and_then(|i| node.children.get(i))
                    .map(|(_, n)| n)
            } else {
                let h = hash(&seg);
                let mut same = node
                    .children
                    .iter()
                    .filter(|(x, _)| *x == h)
                    .map(|(_, n)| n);
                let first = same.next();
                let holds =
                    |n: &&SpanNode| near.is_some_and(|at| n.value.start <= at && at <= n.value.end);
                first.filter(holds).or_else(|| same.find(holds)).or(first)
            };
            match next {
                Some(n) => node = n,
                None => {
                    return (
                        NodeSpan {
                            key: node.key,
                            value: node.value,
                        },
                        false,
                    );
                }
            }
        }
        (
            NodeSpan {
                key: node.key,
                value: node.value,
            },
            true,
        )
    }

    /// The span of the value at `pointer` (or of its nearest ancestor).
    pub fn value(&self, pointer: &str) -> Span {
        self.lookup(pointer).value
    }

    /// The span of the key of the entry at `pointer`, falling back to its value's span.
    pub fn key(&self, pointer: &str) -> Span {
        let s = self.lookup(pointer);
        s.key.unwrap_or(s.value)
    }

    /// Whether `pointer` itself has spans.
    pub fn contains(&self, pointer: &str) -> bool {
        self.find(pointer, None).1
    }
}

/// A loaded document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The value, as JSON.
    pub value: Value,
    /// Where each value is.
    pub spans: SpanMap,
}

/// `pointer/segment`, without the formatting machinery (the loader makes one per value).
fn child(pointer: &str, segment: &str) -> String {
    let mut p = String::with_capacity(pointer.len() + 1 + segment.len());
    p.push_str(pointer);
    p.push('/');
    p.push_str(segment);
    p
}

/// Escapes one JSON-pointer segment.
pub fn escape(segment: &str) -> std::borrow::Cow<'_, str> {
    if segment.contains(['~', '/']) {
        segment.replace('~', "~0").replace('/', "~1").into()
    } else {
        segment.into()
    }
}

/// Where the entries of one top-level mapping go as they are read (see [`load_with`]).
pub trait Entries {
    /// The top-level key whose mapping's entries are handed over, such as `nodes`.
    fn key(&self) -> &str;
    /// One entry of that mapping, in file order. A key defined twice is handed over once, with
    /// its first definition (the second is a `duplicate-key` diagnostic, as anywhere else).
    fn entry(&mut self, key: String, value: Value);
    /// Whether an entry of this key was handed over.
    fn contains(&self, key: &str) -> bool;
}

/// Loads YAML text. Problems that still leave a usable value (duplicate keys) come back as
/// diagnostics beside it; problems that do not (syntax, limits) come back as `Err`.
///
/// # Errors
///
/// Diagnostics for a syntax error, a limit exceeded, or an unsupported YAML feature.
pub fn load(text: &str, limits: Limits) -> Result<(Document, Vec<Diagnostic>), Vec<Diagnostic>> {
    load_with(text.into(), limits, None)
}

/// [`load`], handing the entries of the top-level mapping named by `entries` to it as each is
/// read. The document keeps that mapping with its first key only, mapped to `null` (so it still
/// says whether the mapping is empty), and every entry's spans. A mapping with an anchor (`&a`)
/// is kept whole, since an alias may copy it: its entries are not handed over.
///
/// The span map shares `text`.
///
/// # Errors
///
/// As [`load`].
pub fn load_with(
    text: std::sync::Arc<str>,
    limits: Limits,
    entries: Option<&mut dyn Entries>,
) -> Result<(Document, Vec<Diagnostic>), Vec<Diagnostic>> {
    if text.len() > limits.max_bytes {
        return Err(vec![
            Diagnostic::error(
                Code::YamlLimit,
                Span::default(),
                format!(
                    "the file is {} bytes; workflows are limited to {} bytes",
                    text.len(),
                    limits.max_bytes
                ),
            )
            .help("split the workflow into smaller files"),
        ]);
    }
    let mut loader = Loader::new(&text, limits, Pass::Values, entries);
    let (value, _) = loader.document().map_err(|d| vec![d])?;
    let twice = std::mem::take(&mut loader.twice);
    drop(loader);
    let spans = SpanMap::new(text, limits);
    let warnings = twice.into_iter().map(|t| t.diagnostic(&spans)).collect();
    Ok((Document { value, spans }, warnings))
}

/// A key defined twice in a mapping, found while reading values: reported once the spans can say
/// where its first definition is.
struct Twice {
    /// The entry's pointer (the spans keep the first definition there).
    pointer: String,
    /// The mapping's pointer, and where it starts.
    mapping: String,
    start: Pos,
    key: String,
    /// The second definition's key.
    at: Span,
}

impl Twice {
    fn diagnostic(self, spans: &SpanMap) -> Diagnostic {
        let Twice {
            pointer,
            mapping,
            start,
            key,
            at,
        } = self;
        let (first, _) = spans.find(&pointer, Some(start));
        Diagnostic::error(
            Code::DuplicateKey,
            at,
            format!("`{key}` is defined twice in {}", describe(&mapping)),
        )
        .label("defined again here")
        .with_label(first.key.unwrap_or(first.value), "first defined here")
        .help(format!("remove or rename one of the two `{key}` entries"))
    }
}

/// What a reading of the text makes: the values ([`load`]), or the spans ([`SpanMap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Values,
    Spans,
}

fn pos(m: &saphyr_parser::Marker) -> Pos {
    Pos {
        line: m.line() as u32,
        column: m.col() as u32 + 1,
        offset: m.index() as u32,
    }
}

fn span(s: &YSpan) -> Span {
    Span {
        start: pos(&s.start),
        end: pos(&s.end),
    }
}

struct Anchor {
    value: Value,
    size: usize,
}

struct Loader<'a, 'e> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    limits: Limits,
    pass: Pass,
    nodes: usize,
    anchors: HashMap<usize, Anchor>,
    /// Keys defined twice (values pass).
    twice: Vec<Twice>,
    last_end: Pos,
    text: &'a str,
    /// The collections being read, innermost last.
    open: Vec<Span>,
    /// Where the entries of the split top-level mapping go, if any.
    entries: Option<&'e mut dyn Entries>,
    /// Whether the value about to be read is that mapping.
    split_next: bool,
}

fn syntax(e: &ScanError) -> Diagnostic {
    let p = pos(e.marker());
    if e.info().contains("recursion limit") {
        // The scanner's own bound on nested flow collections, met before the loader counts
        // them: the nesting limit, not a syntax error.
        return Diagnostic::error(
            Code::YamlLimit,
            Span { start: p, end: p },
            "nesting is deeper than the YAML parser allows",
        )
        .help("flatten the structure");
    }
    Diagnostic::error(
        Code::YamlSyntax,
        Span { start: p, end: p },
        format!("invalid YAML: {}", e.info()),
    )
    .help(syntax_help(e.info()))
}

/// A help line for a scanner error, from what the scanner says.
fn syntax_help(info: &str) -> &'static str {
    if info.contains("quoted scalar") {
        "close the quoted string: it starts with a quote that is never closed (or a continuation line is not indented)"
    } else if info.contains("tab") {
        "indent with spaces: YAML does not allow tabs for indentation"
    } else if info.contains("did not find expected key") || info.contains("indentation") {
        "check the indentation: the entries of one mapping start in the same column"
    } else {
        "fix the YAML syntax at this position (check indentation, quotes, colons and brackets)"
    }
}

/// Adds to a syntax error the flow collection (`[` or `{`) that is still open when it occurs:
/// an unclosed bracket is usually reported lines later, where the parser gives up.
fn unclosed(d: Diagnostic, text: &str, open: Option<Span>) -> Diagnostic {
    if d.code == Code::YamlLimit {
        return d;
    }
    // On the bracket's own line, the error is more likely inside the collection than its end.
    let Some(open) = open.filter(|o| o.start.line < d.span().start.line) else {
        return d;
    };
    let Some(bracket) = text.chars().nth(open.start.offset as usize) else {
        return d;
    };
    let close = match bracket {
        '[' => ']',
        '{' => '}',
        _ => return d,
    };
    let span = Span {
        start: open.start,
        end: Pos {
            column: open.start.column + 1,
            offset: open.start.offset + 1,
            ..open.start
        },
    };
    d.with_label(span, format!("this `{bracket}` is not closed"))
        .help(format!(
            "close the `{bracket}` opened on line {} with `{close}`",
            open.start.line
        ))
}

impl<'a, 'e> Loader<'a, 'e> {
    fn new(
        text: &'a str,
        limits: Limits,
        pass: Pass,
        entries: Option<&'e mut dyn Entries>,
    ) -> Self {
        Loader {
            parser: Parser::new_from_str(text),
            limits,
            pass,
            nodes: 0,
            anchors: HashMap::new(),
            twice: Vec::new(),
            last_end: Pos {
                line: 1,
                column: 1,
                offset: 0,
            },
            text,
            open: Vec::new(),
            entries,
            split_next: false,
        }
    }

    /// The parser's next event: the one place the loader calls into `saphyr-parser`, under
    /// [`guard::catch`].
    fn next(&mut self) -> Result<(Event<'a>, Span), Diagnostic> {
        let parser = &mut self.parser;
        let event = guard::catch(|| parser.next_event()).map_err(|panic| {
            let p = self.last_end;
            guard::internal(
                format_args!(
                    "the YAML parser (saphyr-parser) panicked reading on from here: {panic}"
                ),
                Span { start: p, end: p },
            )
        })?;
        match event {
            Some(Ok((ev, s))) => {
                let s = span(&s);
                self.last_end = s.end;
                Ok((ev, s))
            }
            Some(Err(e)) => Err(unclosed(syntax(&e), self.text, self.open.last().copied())),
            None => {
                let p = self.last_end;
                Err(Diagnostic::error(
                    Code::YamlSyntax,
                    Span { start: p, end: p },
                    "unexpected end of the YAML stream",
                )
                .help("the file ends in the middle of a value: check the last lines"))
            }
        }
    }

    fn document(&mut self) -> Result<(Value, SpanNode), Diagnostic> {
        // StreamStart
        self.next()?;
        let (ev, s) = self.next()?;
        match ev {
            Event::StreamEnd => {
                return Err(Diagnostic::error(
                    Code::MissingField,
                    s,
                    "the file holds no workflow: it is empty or only comments",
                )
                .help("a workflow starts with `version: 1`, then `name:` and `nodes:`"));
            }
            Event::DocumentStart(_) => {}
            _ => {
                return Err(
                    Diagnostic::error(Code::YamlSyntax, s, "expected a YAML document")
                        .help("a workflow file is one YAML mapping, starting with `version: 1`"),
                );
            }
        }
        let value = self.value(&String::new, None, 0)?;
        loop {
            let (ev, s) = self.next()?;
            match ev {
                Event::DocumentEnd => continue,
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    return Err(Diagnostic::error(Code::YamlUnsupported, s, "a workflow file holds one YAML document")
                        .help("remove the `---` separator and everything after it, or move it to its own file"));
                }
                _ => {
                    return Err(Diagnostic::error(
                        Code::YamlSyntax,
                        s,
                        "unexpected content after the document",
                    )
                    .help("remove everything after the workflow's mapping"));
                }
            }
        }
        Ok(value)
    }

    fn count(&mut self, n: usize, s: Span) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return Err(Diagnostic::error(
                Code::YamlLimit,
                s,
                format!("the document expands to more than {} values", self.limits.max_nodes),
            )
            .help("aliases (`*name`) are expanded in full; an alias of an alias multiplies: use fewer or smaller ones"));
        }
        Ok(())
    }

    /// Reads one value (the next event starts it) at `pointer`.
    /// `pointer` makes the value's JSON pointer, only when a diagnostic needs it.
    fn value(
        &mut self,
        pointer: &dyn Fn() -> String,
        key: Option<Span>,
        depth: usize,
    ) -> Result<(Value, SpanNode), Diagnostic> {
        // Whether this value is the mapping whose entries go to `entries` (if it is a mapping).
        let split = std::mem::take(&mut self.split_next);
        let (ev, s) = self.next()?;
        let (value, vspan, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, s)?;
                let value = match self.pass {
                    Pass::Values => {
                        let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                        scalar(&text, style, tag.as_deref(), s)?
                    }
                    Pass::Spans => Value::Null,
                };
                (value, s, anchor)
            }
            Event::Alias(id) => {
                let Some(a) = self.anchors.get(&id) else {
                    return Err(Diagnostic::error(
                        Code::YamlSyntax,
                        s,
                        "alias to an unknown anchor",
                    )
                    .help("define the anchor (`&name`) before the alias (`*name`) that uses it"));
                };
                let size = a.size;
                self.count(size, s)?;
                let v = self
                    .anchors
                    .get(&id)
                    .map(|a| a.value.clone())
                    .unwrap_or(Value::Null);
                (v, s, 0)
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_depth(depth, s)?;
                self.check_collection_tag(tag.as_deref(), "!!seq", s)?;
                self.count(1, s)?;
                let start_nodes = self.nodes;
                let mut items = Vec::new();
                let mut spans = Vec::new();
                self.open.push(s);
                loop {
                    if let Some(Ok((Event::SequenceEnd, _))) = self.parser.peek() {
                        let (_, end) = self.next()?;
                        self.open.pop();
                        let full = Span {
                            start: s.start,
                            end: end.end.max(s.end),
                        };
                        // A tree of small lists: slack left by growth was a third of its size.
                        items.shrink_to_fit();
                        spans.shrink_to_fit();
                        let v = Value::Array(items);
                        let node = SpanNode {
                            key,
                            value: full,
                            children: spans,
                            seq: true,
                        };
                        return self.finish(v, node, anchor, self.nodes - start_nodes + 1);
                    }
                    let i = match self.pass {
                        Pass::Values => items.len(),
                        Pass::Spans => spans.len(),
                    };
                    let p = || child(&pointer(), &i.to_string());
                    let (v, node) = self.value(&p, None, depth + 1)?;
                    match self.pass {
                        Pass::Values => items.push(v),
                        Pass::Spans => spans.push((i as u64, node)),
                    }
                }
            }
            Event::MappingStart(anchor, tag) => {
                self.check_depth(depth, s)?;
                self.check_collection_tag(tag.as_deref(), "!!map", s)?;
                self.count(1, s)?;
                let start_nodes = self.nodes;
                // Its entries go to `entries`, unless an alias may copy it.
                let split = split && anchor == 0;
                let mut map = Map::new();
                let mut spans: Vec<(u64, SpanNode)> = Vec::new();
                self.open.push(s);
                loop {
                    let (kev, ks) = self.next()?;
                    let k = match kev {
                        Event::MappingEnd => {
                            self.open.pop();
                            let full = Span {
                                start: s.start,
                                end: ks.end.max(s.end),
                            };
                            let v = Value::Object(map);
                            spans.shrink_to_fit();
                            let node = SpanNode {
                                key,
                                value: full,
                                children: spans,
                                seq: false,
                            };
                            return self.finish(v, node, anchor, self.nodes - start_nodes + 1);
                        }
                        Event::Scalar(text, style, _, tag) => {
                            let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                            match scalar(&text, style, tag.as_deref(), ks)? {
                                Value::String(s) => s,
                                Value::Null => "null".to_owned(),
                                other => other.to_string(),
                            }
                        }
                        Event::Alias(_) => {
                            return Err(Diagnostic::error(
                                Code::YamlUnsupported,
                                ks,
                                "an alias cannot be a mapping key",
                            )
                            .help("write the key out"));
                        }
                        _ => {
                            return Err(Diagnostic::error(
                                Code::YamlUnsupported,
                                ks,
                                "a mapping key must be a plain string, not a list or mapping",
                            )
                            .help("write the key as a string"));
                        }
                    };
                    if self.pass == Pass::Spans {
                        // A key defined twice has its spans twice: a lookup finds the first.
                        let (_, node) = self.value(&|| String::new(), Some(ks), depth + 1)?;
                        spans.push((hash(&k), node));
                        continue;
                    }
                    // A split mapping's keys are its receiver's.
                    let seen = match self.entries.as_deref().filter(|_| split) {
                        Some(entries) => entries.contains(&k),
                        None => map.contains_key(&k),
                    };
                    self.split_next =
                        depth == 0 && !seen && self.entries.as_ref().is_some_and(|e| e.key() == k);
                    let p = || child(&pointer(), &escape(&k));
                    let (v, _) = self.value(&p, Some(ks), depth + 1)?;
                    if seen {
                        // Keep the first definition.
                        self.twice.push(Twice {
                            pointer: p(),
                            mapping: pointer(),
                            start: s.start,
                            key: k,
                            at: ks,
                        });
                        continue;
                    }
                    match self.entries.as_deref_mut().filter(|_| split) {
                        Some(entries) => {
                            if map.is_empty() {
                                map.insert(k.clone(), Value::Null);
                            }
                            entries.entry(k, v);
                        }
                        None => {
                            map.insert(k, v);
                        }
                    }
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                return Err(Diagnostic::error(
                    Code::YamlSyntax,
                    s,
                    "unexpected end of a collection",
                )
                .help("check the brackets and indentation around this position"));
            }
            _ => {
                return Err(
                    Diagnostic::error(Code::YamlSyntax, s, "unexpected YAML event")
                        .help("check the YAML syntax around this position"),
                );
            }
        };
        let node = SpanNode {
            key,
            value: vspan,
            children: Vec::new(),
            seq: false,
        };
        self.finish(value, node, anchor, 1)
    }

    fn finish(
        &mut self,
        value: Value,
        node: SpanNode,
        anchor: usize,
        size: usize,
    ) -> Result<(Value, SpanNode), Diagnostic> {
        if anchor != 0 {
            self.anchors.insert(
                anchor,
                Anchor {
                    value: value.clone(),
                    size,
                },
            );
        }
        Ok((value, node))
    }

    fn check_depth(&self, depth: usize, s: Span) -> Result<(), Diagnostic> {
        if depth >= self.limits.max_depth {
            return Err(Diagnostic::error(
                Code::YamlLimit,
                s,
                format!("nesting is deeper than {} levels", self.limits.max_depth),
            )
            .help("flatten the structure"));
        }
        Ok(())
    }

    fn check_collection_tag(
        &self,
        tag: Option<&saphyr_parser::Tag>,
        expected: &str,
        s: Span,
    ) -> Result<(), Diagnostic> {
        match tag {
            None => Ok(()),
            Some(t) if format!("{}{}", t.handle, t.suffix).ends_with(&expected[2..]) => Ok(()),
            Some(t) => Err(Diagnostic::error(
                Code::YamlUnsupported,
                s,
                format!("unsupported YAML tag `{}{}`", t.handle, t.suffix),
            )
            .help("remove the tag; Braid reads plain YAML 1.2 values")),
        }
    }
}

fn scalar(text: &str, style: ScalarStyle, tag: Option<&str>, s: Span) -> Result<Value, Diagnostic> {
    let bad_tag = |t: &str| {
        Diagnostic::error(
            Code::YamlUnsupported,
            s,
            format!("unsupported YAML tag `{t}`"),
        )
        .help("remove the tag; Braid reads plain YAML 1.2 values")
    };
    if let Some(t) = tag {
        let core = t
            .strip_prefix("tag:yaml.org,2002:")
            .or_else(|| t.strip_prefix("!!"));
        return match core {
            Some("str") => Ok(Value::String(text.to_owned())),
            Some("null") => Ok(Value::Null),
            Some("bool" | "int" | "float") => match plain(text) {
                v @ (Value::Bool(_) | Value::Number(_)) => Ok(v),
                _ => Err(Diagnostic::error(
                    Code::WrongType,
                    s,
                    format!("`{text}` is not a valid `{t}`"),
                )
                .help("remove the tag, or write a value of its type")),
            },
            _ => Err(bad_tag(t)),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    match plain(text) {
        Value::String(ref st)
            if st == ".nan"
                || st.ends_with(".inf")
                || st.ends_with(".Inf")
                || st.ends_with(".INF") =>
        {
            Err(Diagnostic::error(
                Code::InvalidValue,
                s,
                format!("`{text}` is not a number JSON can hold"),
            )
            .help("use a finite number, or quote the value to make it a string"))
        }
        Value::String(ref st) if st.parse::<f64>().is_ok_and(f64::is_infinite) => {
            Err(Diagnostic::error(
                Code::InvalidValue,
                s,
                format!("`{text}` is too large for a number"),
            )
            .help("use a smaller number, or quote the value to make it a string"))
        }
        v => Ok(v),
    }
}

/// A plain scalar under the YAML 1.2 core schema.
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Number(i.into());
        }
        if let Ok(u) = text.parse::<u64>() {
            return Value::Number(u.into());
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Number(i.into());
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Number(i.into());
        }
    }
    let looks_float = digits
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if looks_float {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    thread_local! {
        /// How many times this thread read a text's spans (`SpanMap::root`).
        pub(crate) static SPAN_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn ok(text: &str) -> (Document, Vec<Diagnostic>) {
        load(text, Limits::default()).unwrap()
    }

    #[test]
    fn a_blamed_range_narrows_only_scalars_written_as_their_value() {
        let (d, _) = ok("a: \"x {{ y } z\"\nb: x {{ y } z\nc: 'it''s {{ y }'\nd: \"\\t{{ y }\"\n");
        let col = |p: &str, r: std::ops::Range<usize>| {
            let s = d.spans.within(d.spans.value(p), Some(r));
            (s.start.column, s.end.column)
        };
        // The value's bytes 9..10 are the lone `}`: inside the quotes, one column further.
        assert_eq!(col("/a", 9..10), (14, 15));
        assert_eq!(col("/b", 9..10), (13, 14));
        // An empty range at the end of the input still gets a caret, on the last character.
        assert_eq!(col("/b", 10..10), (13, 14));
        // Escapes shift the bytes: the whole scalar stays underlined.
        let whole = |p: &str| {
            let s = d.spans.value(p);
            (s.start.column, s.end.column)
        };
        assert_eq!(col("/c", 3..4), whole("/c"));
        assert_eq!(col("/d", 3..4), whole("/d"));
        // Without a range, nothing changes.
        assert_eq!(
            d.spans.within(d.spans.value("/a"), None),
            d.spans.value("/a")
        );
    }

    #[test]
    fn values_follow_the_core_schema() {
        let (d, w) = ok("a: 1\nb: 1.5\nc: yes\nd: true\ne: ~\nf: '1'\ng: [x, 2]\nh: 0x10\n");
        assert!(w.is_empty());
        assert_eq!(
            d.value,
            json!({"a": 1, "b": 1.5, "c": "yes", "d": true, "e": null, "f": "1", "g": ["x", 2], "h": 16})
        );
    }

    #[test]
    fn every_value_has_a_span() {
        let (d, _) = ok("nodes:\n  rag:\n    timeout: 800 ms\n");
        let s = d.spans.lookup("/nodes/rag/timeout");
        assert_eq!((s.value.start.line, s.value.start.column), (3, 14));
        let k = s.key.unwrap();
        assert_eq!((k.start.line, k.start.column), (3, 5));
    }

    #[test]
    fn duplicate_keys_are_reported_with_both_places() {
        let (d, w) = ok("nodes:\n  a: 1\n  a: 2\n");
        assert_eq!(d.value, json!({"nodes": {"a": 1}}));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].code, Code::DuplicateKey);
        assert_eq!(w[0].labels[0].span.start.line, 3);
        assert_eq!(w[0].labels[1].span.start.line, 2);
    }

    #[test]
    fn a_key_defined_twice_in_a_second_definition_points_at_its_own_first() {
        // The second `a` is dropped, but its own `x`, defined twice, is reported within it.
        let (d, w) = ok("a:\n  x: 1\na:\n  y: 0\n  x: 2\n  x: 3\n");
        assert_eq!(d.value, json!({"a": {"x": 1}}));
        let lines: Vec<(u32, u32)> = w
            .iter()
            .map(|d| (d.labels[0].span.start.line, d.labels[1].span.start.line))
            .collect();
        assert_eq!(lines, [(6, 5), (3, 1)]);
    }

    #[test]
    fn spans_are_read_when_first_asked_for() {
        let (d, w) = ok("nodes:\n  a: 1\n");
        assert!(w.is_empty());
        assert!(!d.spans.is_read());
        assert_eq!(d.spans.value("/nodes/a").start.line, 2);
        assert!(d.spans.is_read());
    }

    /// A receiver of the entries of `nodes`.
    #[derive(Default)]
    struct Taken(Vec<(String, Value)>);

    impl Entries for Taken {
        fn key(&self) -> &str {
            "nodes"
        }
        fn entry(&mut self, key: String, value: Value) {
            self.0.push((key, value));
        }
        fn contains(&self, key: &str) -> bool {
            self.0.iter().any(|(k, _)| k == key)
        }
    }

    #[test]
    fn the_split_mappings_entries_are_handed_over_and_keep_their_spans() {
        let text = "nodes:\n  a: {x: [1]}\n  b: 2\n  a: 3\nother: {nodes: 4}\n";
        let mut taken = Taken::default();
        let (d, w) = load_with(text.into(), Limits::default(), Some(&mut taken)).unwrap();
        // The document keeps the first key, null; the rest went to the receiver, the first `a`
        // only; a `nodes` below the top level is not split.
        assert_eq!(
            d.value,
            json!({"nodes": {"a": null}, "other": {"nodes": 4}})
        );
        assert_eq!(
            taken.0,
            [
                ("a".to_owned(), json!({"x": [1]})),
                ("b".to_owned(), json!(2))
            ]
        );
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].code, Code::DuplicateKey);
        assert_eq!(d.spans.value("/nodes/a/x/0").start.line, 2);
        assert_eq!(d.spans.value("/nodes/b").start.line, 3);
    }

    #[test]
    fn a_split_mapping_with_an_anchor_is_kept_whole() {
        let text = "nodes: &n\n  a: 1\n";
        let mut taken = Taken::default();
        let (d, _) = load_with(text.into(), Limits::default(), Some(&mut taken)).unwrap();
        assert_eq!(d.value, json!({"nodes": {"a": 1}}));
        assert!(taken.0.is_empty());
    }

    #[test]
    fn billion_laughs_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = load(&text, Limits::default()).unwrap_err();
        assert_eq!(err[0].code, Code::YamlLimit);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let err = load(&text, Limits::default()).unwrap_err();
        assert_eq!(err[0].code, Code::YamlLimit);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = load("a: [1, 2\nb: 3\n", Limits::default()).unwrap_err();
        assert_eq!(err[0].code, Code::YamlSyntax);
        assert!(err[0].span().start.line >= 1);
    }

    #[test]
    fn several_documents_are_refused() {
        let err = load("a: 1\n---\nb: 2\n", Limits::default()).unwrap_err();
        assert_eq!(err[0].code, Code::YamlUnsupported);
    }
}
