//! The credential index of a snapshot: every credential, and one lookup map per auth scheme
//! (key-auth by a 16-byte digest of the key, basic-auth by username, hmac-auth by key_id,
//! jwt-auth by key). Each lookup a request makes is one hash probe.

use std::time::SystemTime;

use ahash::AHashMap;
use http::HeaderValue;

use super::Identity;
use super::basic_auth::PasswordCheck;
use super::jwt_auth::JwtKey;
use crate::ids::{ConsumerId, CredentialId};
use crate::secret::{KeyDigest, KeyDigestKind, Secret};

/// One credential: nested, id-form, or a consumer's inline auth plugin. 16 bytes: with a
/// million consumers each holding an inline key, the id, header and expiry of named
/// credentials would cost 100 bytes each for nothing, so they sit behind one box.
#[derive(Debug)]
pub struct Credential {
    pub consumer: ConsumerId,
    named: Option<Box<Named>>,
}

/// What a credential with an id (nested or id-form) has besides its consumer.
#[derive(Debug)]
struct Named {
    id: HeaderValue,
    header: HeaderValue,
    expires_at: Option<SystemTime>,
}

impl Credential {
    /// A consumer's inline auth plugin: no id, no expiry.
    pub fn inline(consumer: ConsumerId) -> Credential {
        Credential {
            consumer,
            named: None,
        }
    }
    /// A credential with an id: `id` is `<username>/credentials/<name>`, `header` its `<name>`.
    pub fn named(
        consumer: ConsumerId,
        id: HeaderValue,
        header: HeaderValue,
        expires_at: Option<SystemTime>,
    ) -> Credential {
        Credential {
            consumer,
            named: Some(Box::new(Named {
                id,
                header,
                expires_at,
            })),
        }
    }
    /// The same credential for the consumer numbered `consumer` (a reload that kept it).
    pub fn for_consumer(&self, consumer: ConsumerId) -> Credential {
        Credential {
            consumer,
            named: self.named.as_ref().map(|n| {
                Box::new(Named {
                    id: n.id.clone(),
                    header: n.header.clone(),
                    expires_at: n.expires_at,
                })
            }),
        }
    }
    /// The full id `<username>/credentials/<name>` (access log, metrics); None for an inline
    /// plugin.
    pub fn id(&self) -> Option<&HeaderValue> {
        self.named.as_ref().map(|n| &n.id)
    }
    /// `X-Credential-Identifier`: the credential's own id, as APISIX sends it (`<name>`).
    pub fn header(&self) -> Option<&HeaderValue> {
        self.named.as_ref().map(|n| &n.header)
    }
    /// Only credentials with an id can expire (inline plugins cannot).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.named.as_ref().and_then(|n| n.expires_at)
    }
}

/// The lookup maps of every auth scheme, and the credentials they point to.
#[derive(Debug, Default)]
pub struct CredentialIndex {
    /// key-auth: the digest of a key, made as `key_digest` says, to its credential.
    pub key_auth: AHashMap<KeyDigest, CredentialId>,
    /// How `key_auth` digests keys: keyed SipHash unless a credential gives a `key_hash`.
    pub key_digest: KeyDigestKind,
    /// How many key-auth credentials were given as `key_hash`.
    pub key_hashes: usize,
    pub basic_auth: AHashMap<Box<str>, (CredentialId, PasswordCheck)>,
    pub hmac_auth: AHashMap<Box<str>, (CredentialId, Secret)>,
    pub jwt_auth: AHashMap<Box<str>, (CredentialId, JwtKey)>,
    pub entries: Vec<Credential>,
}

impl CredentialIndex {
    /// The key-auth credential of a presented key.
    pub fn find_key(&self, key: &[u8]) -> Option<CredentialId> {
        self.key_auth.get(&self.key_digest.digest(key)).copied()
    }

    /// The digest kind this index should have: SHA-256 only while a credential needs it.
    pub fn wanted_key_digest(&self) -> KeyDigestKind {
        if self.key_hashes > 0 {
            KeyDigestKind::Sha256
        } else {
            KeyDigestKind::Keyed
        }
    }

    pub fn get(&self, id: CredentialId) -> &Credential {
        &self.entries[id.idx()]
    }

    /// The identity a matched credential gives.
    pub fn identity(&self, cred: CredentialId) -> Identity {
        Identity {
            consumer: self.get(cred).consumer,
            credential: Some(cred),
            anonymous: false,
        }
    }

    /// Err with a log line when the credential's `expires_at` has passed.
    pub fn check_expiry(&self, cred: CredentialId, now: SystemTime) -> Result<(), String> {
        let c = self.get(cred);
        match c.expires_at() {
            Some(t) if now >= t => Err(format!(
                "credential {} expired at {}",
                c.id().and_then(|v| v.to_str().ok()).unwrap_or("(inline)"),
                humantime::format_rfc3339_seconds(t)
            )),
            _ => Ok(()),
        }
    }

    /// Trims the growth slack of every map: it would be paid per credential for the
    /// snapshot's life.
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        self.key_auth.shrink_to_fit();
        self.basic_auth.shrink_to_fit();
        self.hmac_auth.shrink_to_fit();
        self.jwt_auth.shrink_to_fit();
    }
}
