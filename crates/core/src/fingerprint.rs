//! A plan's identity: the [`Fingerprint`] of the sources it was compiled from.
//!
//! Two plans with the same fingerprint were compiled from the same workflow text and the same
//! included files, on whatever machine and in whatever process. That is what lets a durable store
//! record a run against the definition it ran, and a service tell whether a file it reloads still
//! means the plan it has. The hash itself is computed by the compiler, which reads the files
//! (`braid_compiler::fingerprint` defines exactly what is hashed); the core only carries it, so
//! the runtime vocabulary depends on no hash function.

use std::fmt;

/// The SHA-256 digest identifying the sources a [`Plan`](crate::Plan) was compiled from.
///
/// Displayed (and meant to be stored) as 64 lowercase hexadecimal digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// A fingerprint from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_lowercase_hex() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x0f;
        let f = Fingerprint::from_bytes(bytes);
        let hex = f.to_string();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("ab00"));
        assert!(hex.ends_with("000f"));
        assert_eq!(format!("{f:?}"), format!("Fingerprint({hex})"));
    }
}
