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
}
