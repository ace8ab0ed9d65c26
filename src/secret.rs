//! Secrets: a type that cannot be printed, digests for lookups, constant-time comparison, and
//! the values `tollgate hash-secret` prints.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret from the config. `Debug` shows `Secret(***)`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Secret {
        Secret(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// Constant-time equality with a presented value.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.len() == other.len() && bool::from(self.0.ct_eq(other))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// SHA-256 of a byte string.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// What the key-auth index knows a key by: 16 bytes, whichever [`KeyDigestKind`] made them.
pub(crate) type KeyDigest = [u8; 16];

/// How a snapshot's key-auth index digests keys. Either is a one-way function of the key with
/// 128 bits of output, so the index never holds a key, and a lookup's timing (a hash probe on
/// the digest) tells nothing about a stored one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyDigestKind {
    /// SipHash-2-4-128 under a key drawn from the OS when the process starts: a PRF, and about
    /// a tenth of SHA-256's cost per request. Used when every key is given in the clear.
    #[default]
    Keyed,
    /// The first 16 bytes of SHA-256: needed as soon as one credential gives only its
    /// `key_hash` (the one digest of that key the gateway can know).
    Sha256,
}

impl KeyDigestKind {
    /// The digest of a presented or configured key.
    pub fn digest(self, key: &[u8]) -> KeyDigest {
        match self {
            KeyDigestKind::Keyed => {
                let (k0, k1) = *SIP_KEY;
                siphasher::sip128::SipHasher24::new_with_keys(k0, k1)
                    .hash(key)
                    .as_bytes()
            }
            KeyDigestKind::Sha256 => sha256_prefix(&sha256(key)),
        }
    }
}

/// The SipHash key of [`KeyDigestKind::Keyed`]: random, per process, never shown. Digests
/// made with it are shared across reloads, never across processes.
static SIP_KEY: std::sync::LazyLock<(u64, u64)> = std::sync::LazyLock::new(|| {
    let mut b = [0u8; 16];
    // Linux's getrandom(2) does not fail once the pool is ready; nothing safe can go on
    // without randomness.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut b).expect("the OS random number generator");
    let (a, c) = b.split_at(8);
    (
        u64::from_le_bytes(a.try_into().unwrap_or_default()),
        u64::from_le_bytes(c.try_into().unwrap_or_default()),
    )
});

/// The [`KeyDigestKind::Sha256`] digest of a key from its full SHA-256 (a `key_hash`).
pub(crate) fn sha256_prefix(d: &[u8; 32]) -> KeyDigest {
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// Parses `sha256:<64 hex>`.
pub(crate) fn parse_key_hash(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.strip_prefix("sha256:")?, &mut out).ok()?;
    Some(out)
}

/// A key-auth `key_hash` for a key: `sha256:<hex>`.
pub(crate) fn key_hash(key: &str) -> String {
    format!("sha256:{}", hex::encode(sha256(key.as_bytes())))
}

/// A basic-auth `password_hash` for a password: an argon2id PHC string.
pub(crate) fn password_hash(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Resolves `$env://VAR` secrets at load time.
pub(crate) fn secret_value(v: &str) -> Result<String, String> {
    if v.starts_with("$secret://") {
        return Err(
            "`$secret://` references are not supported by tollgate (use `$env://VAR`)".into(),
        );
    }
    match v.strip_prefix("$env://") {
        Some(var) => {
            std::env::var(var).map_err(|_| format!("environment variable `{var}` is not set"))
        }
        None => Ok(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_roundtrip() {
        let v = key_hash("s3cret");
        assert_eq!(parse_key_hash(&v), Some(sha256(b"s3cret")));
        assert_eq!(format!("{:?}", Secret::new(*b"abc")), "Secret(***)");
        assert!(Secret::new(*b"abc").ct_eq(b"abc"));
        assert!(!Secret::new(*b"abc").ct_eq(b"abd"));
    }

    #[test]
    fn key_digests() {
        let sha = KeyDigestKind::Sha256;
        let keyed = KeyDigestKind::Keyed;
        assert_eq!(sha.digest(b"k1"), sha256_prefix(&sha256(b"k1")));
        assert_eq!(keyed.digest(b"k1"), keyed.digest(b"k1"));
        assert_ne!(keyed.digest(b"k1"), keyed.digest(b"k2"));
        assert_ne!(keyed.digest(b"k1"), sha.digest(b"k1"));
        // The process key is not SipHash's all-zero key.
        let zero = siphasher::sip128::SipHasher24::new_with_keys(0, 0).hash(b"k1");
        assert_ne!(keyed.digest(b"k1"), zero.as_bytes());
    }
}
