//! Secrets of the `http` and `llm` kinds, and their redaction from every message a node produces.
//!
//! A secret leaves Braid in many shapes: as the template put it (a header, a JSON body), in the
//! shape the URL parser gave it (percent-encoded by the rules of the URL component it landed in,
//! with tabs and newlines dropped), as `base64(user:pass)` when it sits in the URL's userinfo,
//! and a server may echo any of those back, JSON-escaped or base64-encoded. So redaction looks for
//! all of them ([`redaction_forms`]), plus the exact strings the node put on the wire for this call
//! ([`Resolved::learn_url`]), and it runs before anything is shortened or reflowed: a cut secret
//! no longer matches (see [`Resolved::redact`] and `error_excerpt`).

#![allow(clippy::wildcard_imports)]

use url::Position;

use super::*;

/// The secrets a node declares: name → environment variable.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secrets(pub(crate) Vec<(String, String)>);

impl Secrets {
    /// Checks the declared names and variables (`pointer` is the map's, relative to `with:`).
    pub(crate) fn new(
        map: &BTreeMap<String, String>,
        pointer: &str,
    ) -> Result<Secrets, BuildError> {
        let mut out = Vec::with_capacity(map.len());
        for (name, var) in map {
            let ident = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ident {
                return Err(BuildError::params(
                    pointer,
                    format!("secret name `{name}` is not an identifier (letters, digits and `_`)"),
                ));
            }
            check_env_name(var, &format!("{pointer}/{name}"))?;
            out.push((name.clone(), var.clone()));
        }
        Ok(Secrets(out))
    }

    /// One secret, for a kind that takes a single variable (such as `llm`'s `api_key_env`).
    pub(crate) fn single(name: &str, var: &str, pointer: &str) -> Result<Secrets, BuildError> {
        check_env_name(var, pointer)?;
        Ok(Secrets(vec![(name.to_owned(), var.to_owned())]))
    }

    /// Reads every variable now.
    ///
    /// # Errors
    ///
    /// A permanent error naming the first variable that is not set (or not UTF-8).
    pub(crate) fn resolve(&self) -> Result<Resolved, NodeError> {
        let mut values = Vec::with_capacity(self.0.len());
        for (name, var) in &self.0 {
            let value = std::env::var(var).map_err(|e| {
                let why = match e {
                    std::env::VarError::NotPresent => "is not set",
                    std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
                };
                NodeError::new(format!(
                    "secret `{name}`: the environment variable `{var}` {why}"
                ))
                .permanent()
            })?;
            values.push((name.clone(), value));
        }
        Ok(Resolved::from_values(values))
    }
}

pub(crate) fn check_env_name(var: &str, pointer: &str) -> Result<(), BuildError> {
    if var.is_empty() || var.contains(['=', '\0']) {
        return Err(BuildError::params(
            pointer,
            format!("`{var}` is not an environment variable name"),
        ));
    }
    Ok(())
}

/// The secret values of one call, and the means to keep them out of messages.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) vars: Value,
    /// Every form a value may take in a message, longest first.
    pub(crate) needles: Vec<String>,
}

impl Resolved {
    /// The secrets `name → value`, with the forms to redact.
    pub(crate) fn from_values(values: Vec<(String, String)>) -> Resolved {
        let mut needles = Vec::new();
        let mut map = Map::new();
        for (name, value) in values {
            needles.extend(redaction_forms(&value));
            map.insert(name, Value::String(value));
        }
        let mut r = Resolved {
            vars: json!({ "secrets": map }),
            needles,
        };
        r.sort();
        r
    }

    fn sort(&mut self) {
        self.needles.retain(|n| !n.is_empty());
        self.needles
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.needles.dedup();
    }

    /// The secrets as template variables (`secrets.NAME`) in which a name computed at run time
    /// that is not declared fails naming it, not as an undefined value.
    pub(crate) fn template_vars(&self) -> braid_core::template::TemplateVars {
        let empty = Map::new();
        let values = self.vars["secrets"].as_object().unwrap_or(&empty);
        braid_core::template::declared_vars("secrets", "secret", values)
    }

    /// One secret's value.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars["secrets"].get(name).and_then(Value::as_str)
    }

    fn values(&self) -> impl Iterator<Item = (&String, &str)> {
        self.vars["secrets"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k, v.as_str()?)))
    }

    pub(crate) fn contains_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }

    /// Learns the exact forms the secrets took in `url`, the URL this call sends; `build` builds
    /// it again from the same templates (the URL's and the query parameters') with other
    /// variables.
    ///
    /// Each secret in turn is replaced by a sentinel of plain letters and digits (which no
    /// URL component re-encodes) and the URL built and parsed again: where the two URLs differ
    /// is what the secret became on the wire, in whatever mix of components it landed. The
    /// second URL must hold no trace of the secret (which is why `build` renders the query
    /// parameters too): text the two share is taken for the template's, and a secret's text in
    /// both would be taken for it and shown. Then the basic credentials the client derives from
    /// the URL's userinfo (`base64(user:pass)`) are learned too.
    pub(crate) fn learn_url(&mut self, url: &Url, mut build: impl FnMut(&Value) -> Option<Url>) {
        let real = url.as_str();
        let mut learned = Vec::new();
        let secrets: Vec<(String, String)> = self
            .values()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.to_owned()))
            .collect();
        for (i, (name, _)) in secrets.iter().enumerate() {
            let sentinel = format!("braidsecretsentinel{i}x");
            let mut vars = self.vars.clone();
            vars["secrets"][name.as_str()] = Value::String(sentinel.clone());
            let Some(other) = build(&vars) else {
                // The secret was (part of) what made the URL a URL: the whole URL is secret, and
                // every part of it that is sent.
                learned.push(real.to_owned());
                for span in SPANS {
                    let piece = &url[span.0..span.1];
                    if piece.chars().count() >= MIN_PIECE {
                        learned.push(piece.to_owned());
                        learned.push(decode(piece));
                    }
                }
                continue;
            };
            // The whole URL, as messages name it: from the first occurrence to the last (exact
            // for one occurrence; for several, it covers them and the text between).
            let whole = other.as_str();
            learned.extend(differing(real, whole, &sentinel).map(|r| real[r].to_owned()));
            if whole.matches(sentinel.as_str()).count() > 1 {
                learned.extend(occurrences(real, whole, &sentinel));
            }
            // Each component, as it went on the wire, and each run of components (the request
            // target, the authority, the whole URL): a `?` or `#` inside a secret splits it
            // between the path, the query and the fragment (which is not sent at all), so the
            // server sees pieces of it, each encoded by its component's rules, and the
            // components after it move (the fragment goes last). Each is compared with its
            // counterpart alone, which holds whatever moved.
            let mut span: Option<(usize, usize)> = None;
            for (from, to) in SPANS {
                let (r, o) = (&url[from..to], &other[from..to]);
                if r == o {
                    continue;
                }
                let Some(range) = differing(r, o, &sentinel) else {
                    continue;
                };
                let offset = url[..from].len();
                let (start, end) = (offset + range.start, offset + range.end);
                span = Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
                let piece = &r[range];
                // Shorter pieces would redact unrelated text and tell next to nothing.
                if piece.chars().count() >= MIN_PIECE {
                    learned.push(piece.to_owned());
                    learned.push(decode(piece));
                }
            }
            // From where the first component differs to where the last does: the URL as
            // messages name it, however its components moved.
            if let Some((start, end)) = span {
                learned.push(real[start..end].to_owned());
            }
        }
        if let Some(user_pass) = basic_credentials(url).filter(|_| !secrets.is_empty()) {
            // What `send` sends as `Authorization: Basic …`.
            learned.push(base64(user_pass.as_bytes(), STANDARD));
            learned.push(user_pass);
        }
        self.needles.extend(learned);
        self.sort();
    }

    /// `text` with every secret value replaced by `***`.
    ///
    /// Every form is looked for in the text as it is, and every run of text some form covers
    /// (overlapping forms merge) becomes one `***`: replacing one form first could cut another
    /// that overlaps it, which would then no longer match.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut covered = vec![false; text.len()];
        let mut any = false;
        for needle in &self.needles {
            let mut from = 0;
            while let Some(at) = text[from..].find(needle.as_str()) {
                let start = from + at;
                covered[start..start + needle.len()].fill(true);
                any = true;
                // Overlapping occurrences too: on from the next character.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
        if !any {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            if covered[i] {
                while i < text.len() && covered[i] {
                    i += 1;
                }
                out.push_str("***");
            } else {
                let c = text[i..].chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8().max(1);
            }
        }
        out
    }

    /// The error with every secret value in its message replaced by `***`.
    pub(crate) fn redact_error(&self, mut e: NodeError) -> NodeError {
        e.message = self.redact(&e.message);
        e
    }
}

/// `user:pass` from a URL's userinfo, percent-decoded, when it has any.
pub(crate) fn basic_credentials(url: &Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| String::from_utf8_lossy(&percent_decode(s.as_bytes())).into_owned();
    Some(format!(
        "{}:{}",
        decode(url.username()),
        url.password().map(decode).unwrap_or_default()
    ))
}

/// The shortest piece of a secret learned from a URL component.
const MIN_PIECE: usize = 4;

/// The spans of a URL compared on their own: each component as serialized (userinfo, host,
/// port, path, query, fragment), and the runs of them a server or a message shows together.
const SPANS: [(Position, Position); 11] = [
    (Position::BeforeUsername, Position::AfterUsername),
    (Position::BeforePassword, Position::AfterPassword),
    (Position::BeforeHost, Position::AfterHost),
    (Position::BeforePort, Position::AfterPort),
    (Position::BeforePath, Position::AfterPath),
    (Position::BeforeQuery, Position::AfterQuery),
    (Position::BeforeFragment, Position::AfterFragment),
    // The request target, as the request line carries it.
    (Position::BeforePath, Position::AfterQuery),
    (Position::BeforeUsername, Position::AfterPort),
    (Position::BeforeHost, Position::AfterQuery),
    (Position::BeforeScheme, Position::AfterFragment),
];

fn decode(piece: &str) -> String {
    String::from_utf8_lossy(&percent_decode(piece.as_bytes())).into_owned()
}

/// Where `real` differs from `other` (the same text rendered with a secret replaced by
/// `sentinel`): the range of `real` without the prefix and suffix they share, the prefix no
/// longer than the text before `other`'s first sentinel and the suffix no longer than the text
/// after its last (all of it when `other` has no sentinel).
fn differing(real: &str, other: &str, sentinel: &str) -> Option<std::ops::Range<usize>> {
    let (before, after) = match (other.find(sentinel), other.rfind(sentinel)) {
        (Some(first), Some(last)) => (first, other.len() - last - sentinel.len()),
        _ => (other.len(), other.len()),
    };
    let mut start = common_prefix(real, other).min(before);
    let mut end = real.len()
        - common_suffix(real, other)
            .min(after)
            .min(real.len() - start);
    while !real.is_char_boundary(start) {
        start -= 1;
    }
    while !real.is_char_boundary(end) {
        end += 1;
    }
    (start < end).then_some(start..end)
}

/// Each occurrence of a secret in `real`, where `other` (the same URL with the secret replaced
/// by `sentinel`) has the sentinel: the text between occurrences is matched literally, leftmost
/// first. Nothing when the texts do not line up (then the span over all of them still holds).
fn occurrences(real: &str, other: &str, sentinel: &str) -> Vec<String> {
    let parts: Vec<&str> = other.split(sentinel).collect();
    let (Some(head), Some(tail)) = (parts.first(), parts.last()) else {
        return Vec::new();
    };
    if !real.starts_with(head) || !real.ends_with(tail) || real.len() < head.len() + tail.len() {
        return Vec::new();
    }
    let end = real.len() - tail.len();
    let mut found = Vec::new();
    let mut pos = head.len();
    for between in &parts[1..parts.len() - 1] {
        if between.is_empty() {
            return Vec::new();
        }
        let Some(at) = real.get(pos..end).and_then(|r| r.find(between)) else {
            return Vec::new();
        };
        found.push(real[pos..pos + at].to_owned());
        pos += at + between.len();
    }
    if let Some(last) = real.get(pos..end) {
        found.push(last.to_owned());
    }
    found
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

fn common_suffix(a: &str, b: &str) -> usize {
    a.bytes()
        .rev()
        .zip(b.bytes().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Percent-decodes `%XX` sequences (a `%` not followed by two hex digits is kept as it is).
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            let hex = std::str::from_utf8(&s[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

pub(crate) const STANDARD: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with padding, in the given alphabet.
pub(crate) fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The base64 characters that depend on `secret` alone, wherever it sits in a longer text that
/// is encoded: one run for each of the three alignments it may have (its offset modulo 3).
fn base64_cores(secret: &[u8], alphabet: &[u8; 64], out: &mut Vec<String>) {
    /// Shorter cores would match unrelated text.
    const MIN: usize = 8;
    for offset in 0..3usize {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(secret);
        let encoded = base64(&bytes, alphabet);
        let encoded = encoded.trim_end_matches('=');
        // Characters that mix in the filler before it, or whatever follows it.
        let skip = [0, 2, 3][offset];
        let drop_end = usize::from((offset + secret.len()) % 3 != 0);
        if encoded.len() >= skip + drop_end + MIN {
            out.push(encoded[skip..encoded.len() - drop_end].to_owned());
        }
    }
}

/// The forms a secret value may take in a message: as it is; trimmed (of spaces and controls,
/// as the URL parser and HTTP header parsers trim, and of Unicode whitespace such as U+00A0, as
/// most languages' `trim` does on the server that echoes it), and without tabs and newlines (as
/// the URL parser leaves it); each of those percent-encoded as every URL component does, and as
/// `application/x-www-form-urlencoded`, JSON-escaped (by serde and ASCII-only, as other servers
/// do), and base64 (standard and URL-safe, alone or inside a longer encoded text).
pub(crate) fn redaction_forms(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    let c0 = |c: char| c <= ' ';
    let unicode = |c: char| c <= ' ' || c.is_whitespace();
    let strip = |v: &str| -> String {
        v.chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .collect()
    };
    let mut variants = vec![value.to_owned()];
    let stripped = strip(value);
    for v in [
        value.trim_matches(c0).to_owned(),
        value.trim_matches(unicode).to_owned(),
        strip(value.trim_matches(c0)),
        strip(value.trim_matches(unicode)),
        stripped.trim_matches(c0).to_owned(),
        stripped.trim_matches(unicode).to_owned(),
        stripped,
    ] {
        if !v.is_empty() && !variants.contains(&v) {
            variants.push(v);
        }
    }
    let mut forms = variants.clone();
    for v in &variants {
        url_forms(v, &mut forms);
        let mut upper = String::new();
        let mut lower = String::new();
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                upper.push(b as char);
                lower.push(b as char);
            } else {
                upper.push_str(&format!("%{b:02X}"));
                lower.push_str(&format!("%{b:02x}"));
            }
        }
        forms.push(upper);
        forms.push(lower);
        if let Ok(quoted) = serde_json::to_string(v) {
            forms.push(quoted[1..quoted.len() - 1].to_owned());
            let mut ascii = String::new();
            for c in quoted[1..quoted.len() - 1].chars() {
                if c.is_ascii() {
                    ascii.push(c);
                } else {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        ascii.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
            forms.push(ascii);
        }
        for alphabet in [STANDARD, URL_SAFE] {
            let full = base64(v.as_bytes(), alphabet);
            forms.push(full.trim_end_matches('=').to_owned());
            forms.push(full);
            base64_cores(v.as_bytes(), alphabet, &mut forms);
        }
    }
    forms.retain(|f| !f.is_empty());
    forms
}

/// `value` as each URL component would carry it (the same parser as the client's).
fn url_forms(value: &str, out: &mut Vec<String>) {
    let Ok(base) = Url::parse("http://h/") else {
        return;
    };
    let mut u = base.clone();
    u.set_path(&format!("/{value}"));
    out.push(u.path()[1..].to_owned());
    let mut u = base.clone();
    u.set_query(Some(value));
    out.extend(u.query().map(str::to_owned));
    let mut u = base.clone();
    u.set_fragment(Some(value));
    out.extend(u.fragment().map(str::to_owned));
    let mut u = base.clone();
    if u.set_username(value).is_ok() {
        out.push(u.username().to_owned());
    }
    let mut u = base.clone();
    if u.set_password(Some(value)).is_ok() {
        out.extend(u.password().map(str::to_owned));
    }
    let mut u = base;
    u.query_pairs_mut().append_pair("k", value);
    out.extend(
        u.query()
            .and_then(|q| q.strip_prefix("k="))
            .map(str::to_owned),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes(), STANDARD), encoded);
        }
    }

    #[test]
    fn a_base64_core_is_found_whatever_precedes_or_follows_the_secret() {
        let secret = b"sk-0123456789abcdefghij";
        let mut cores = Vec::new();
        base64_cores(secret, STANDARD, &mut cores);
        for before in ["", "u", "us", "user:"] {
            for after in ["", "!", "!!", "!!!"] {
                let mut text = before.as_bytes().to_vec();
                text.extend_from_slice(secret);
                text.extend_from_slice(after.as_bytes());
                let encoded = base64(&text, STANDARD);
                assert!(
                    cores.iter().any(|c| encoded.contains(c.as_str())),
                    "{before:?} {after:?}: {encoded} {cores:?}"
                );
            }
        }
    }

    #[test]
    fn the_url_forms_follow_each_component() {
        let forms = redaction_forms("a b'`{");
        for f in ["a%20b'%60%7B", "a%20b%27`{", "a+b%27%60%7B", "a%20b'%60{"] {
            assert!(forms.iter().any(|x| x == f), "{f}: {forms:?}");
        }
    }

    #[test]
    fn overlapping_forms_are_each_redacted_whole() {
        let mut r = Resolved::from_values(Vec::new());
        r.needles = vec!["abcdef".into(), "defghi".into(), "aa".into()];
        // Replacing `abcdef` first would leave `ghi`; overlapping occurrences of one form too.
        assert_eq!(r.redact("xxabcdefghiyy"), "xx***yy");
        assert_eq!(r.redact("aaa b"), "*** b");
        assert_eq!(r.redact("é abcdef é defghi"), "é *** é ***");
    }

    #[test]
    fn a_secret_that_moves_url_components_is_redacted_wherever_it_went() {
        // Its `?` and `#` split it into the path, the query (the `key` pair is appended before
        // the fragment) and the fragment, which ends the URL as the `key` pair does.
        let secret = "MARK1\t a?b c#d\té%zz/MARK2";
        let build = |s: &str| {
            let mut url = Url::parse(&format!("http://h/p/{s}/q?inline={s}")).ok()?;
            url.query_pairs_mut().append_pair("key", s);
            Some(url)
        };
        let url = build(secret).unwrap();
        let mut r = Resolved::from_values(vec![("s".into(), secret.into())]);
        r.learn_url(&url, |vars| build(vars["secrets"]["s"].as_str()?));
        let told = r.redact(&format!(
            "`POST {url}` returned: {}",
            &url[Position::BeforePath..Position::AfterQuery]
        ));
        assert!(!told.contains("MARK"), "{told}");
        assert!(
            told.starts_with("`POST http://h/p/***` returned: /p/***"),
            "{told}"
        );
    }

    #[test]
    fn a_secret_trimmed_as_a_server_trims_it_is_redacted() {
        // Rust's, Python's and JavaScript's `trim` drop U+00A0, which HTTP leaves in a header.
        let r = Resolved::from_values(vec![("k".into(), "\u{a0}\tsk MARK\u{a0}".into())]);
        for echoed in ["sk MARK", "\"sk MARK\"", "c2sgTUFSSw=="] {
            assert!(!r.redact(echoed).contains("MARK"), "{echoed}");
        }
    }
}
