//! Bearer tokens: read from a file or an environment variable, kept as SHA-256 digests only,
//! and compared in constant time (the digest also hides a token's length). The tokens
//! themselves are never logged, shown or echoed: `Debug` prints only how many there are.

use std::path::Path;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The tokens a service accepts; none: every request is accepted.
#[derive(Clone, Default)]
pub struct Tokens(Vec<[u8; 32]>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    /// Accepts these tokens (blank ones are ignored).
    pub fn new<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Tokens(
            tokens
                .into_iter()
                .map(|t| t.as_ref().trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(|t| Sha256::digest(t.as_bytes()).into())
                .collect(),
        )
    }

    /// One token per line of a file; blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// When the file cannot be read.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(Tokens::new(
            text.lines().filter(|l| !l.trim_start().starts_with('#')),
        ))
    }

    /// Comma- or whitespace-separated tokens in the environment variable `var` (none if unset).
    pub fn from_env(var: &str) -> Self {
        let value = std::env::var(var).unwrap_or_default();
        Tokens::new(value.split(|c: char| c == ',' || c.is_whitespace()))
    }

    /// These tokens and `other`'s.
    #[must_use]
    pub fn and(mut self, other: Tokens) -> Self {
        self.0.extend(other.0);
        self
    }

    /// Whether no token is configured (authentication off).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `token` is one of them, in time independent of which (and of the token).
    pub fn accepts(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.0
            .iter()
            .fold(0u8, |hit, t| hit | t.ct_eq(&digest).unwrap_u8())
            == 1
    }
}
