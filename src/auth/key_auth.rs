//! key-auth: an API key from a header or query argument, looked up by its SHA-256 digest.

use serde::Deserialize;

/// Route/service side. Defaults: header and query `apikey`, realm `key`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthConf {
    pub header: Option<String>,
    pub query: Option<String>,
    pub hide_credentials: Option<bool>,
    pub realm: Option<String>,
    pub anonymous_consumer: Option<String>,
}

/// Consumer/credential side: `key`, or `key_hash: "sha256:<hex>"`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthCredentialConf {
    pub key: Option<String>,
    pub key_hash: Option<String>,
}

use std::sync::Arc;

use http::HeaderName;

use super::credentials::CredentialIndex;
use super::{AuthCommon, AuthRequest, Failure, Hide, Verdict, challenge, header_str};
use crate::query;
use crate::secret::secret_value;
use crate::secret::{KeyDigest, KeyDigestKind, parse_key_hash, sha256_prefix};

/// Compiled key-auth on a route.
#[derive(Debug)]
pub struct KeyAuth {
    pub common: AuthCommon,
    header: HeaderName,
    query: Arc<str>,
}

/// Compiles the route side; `anonymous` is resolved by the caller.
pub(crate) fn compile(
    conf: &KeyAuthConf,
    anonymous: Option<crate::ids::ConsumerId>,
) -> Result<KeyAuth, (String, String)> {
    let KeyAuthConf {
        header,
        query,
        hide_credentials,
        realm,
        anonymous_consumer: _, // resolved by the caller (plugins::compile_route_plugins)
    } = conf;
    let header = header.as_deref().unwrap_or("apikey");
    let header = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).map_err(|_| {
        (
            "header".to_string(),
            format!("`{header}` is not a valid header name"),
        )
    })?;
    let query = query.as_deref().unwrap_or("apikey");
    if query.is_empty() {
        return Err(("query".into(), "must not be empty".into()));
    }
    let challenge =
        challenge("apikey", realm.as_deref(), "key").map_err(|m| ("realm".to_string(), m))?;
    Ok(KeyAuth {
        common: AuthCommon {
            name: "key-auth",
            hide_credentials: hide_credentials.unwrap_or(false),
            challenge,
            anonymous,
        },
        header,
        query: query.into(),
    })
}

/// A key-auth credential's key as the config gives it.
pub(crate) enum KeySource {
    /// `key`, resolved (`$env://`).
    Plain(String),
    /// `key_hash`: the key's SHA-256.
    Hash([u8; 32]),
}

impl KeySource {
    /// Its digest as `kind` makes them; None for a `key_hash` unless `kind` is SHA-256.
    pub(crate) fn digest(&self, kind: KeyDigestKind) -> Option<KeyDigest> {
        match (self, kind) {
            (KeySource::Plain(k), _) => Some(kind.digest(k.as_bytes())),
            (KeySource::Hash(h), KeyDigestKind::Sha256) => Some(sha256_prefix(h)),
            (KeySource::Hash(_), KeyDigestKind::Keyed) => None,
        }
    }
}

/// Compiles a credential: its key or key hash, checked.
pub(crate) fn compile_credential(
    conf: &KeyAuthCredentialConf,
) -> Result<KeySource, (String, String)> {
    let KeyAuthCredentialConf { key, key_hash } = conf;
    match (&key, &key_hash) {
        (Some(_), Some(_)) => Err((
            "key_hash".into(),
            "set either key or key_hash, not both".into(),
        )),
        (Some(k), None) => {
            let k = secret_value(k).map_err(|m| ("key".to_string(), m))?;
            if k.is_empty() {
                return Err(("key".into(), "must not be empty".into()));
            }
            Ok(KeySource::Plain(k))
        }
        (None, Some(h)) => parse_key_hash(h).map(KeySource::Hash).ok_or_else(|| {
            (
                "key_hash".into(),
                "must be sha256:<64 hex digits> (see `tollgate hash-secret key`)".into(),
            )
        }),
        (None, None) => Err(("key".into(), "required (key or key_hash)".into())),
    }
}

const MISSING: &[u8] = b"{\"message\":\"Missing API key in request\"}\n";
const INVALID: &[u8] = b"{\"message\":\"Invalid API key in request\"}\n";

impl KeyAuth {
    /// Header first (present, even empty, means it is the key), then the query argument.
    pub fn verify(&self, creds: &CredentialIndex, ar: &AuthRequest<'_>) -> Verdict {
        let both = || {
            vec![
                Hide::Header(self.header.clone()),
                Hide::Query(self.query.clone()),
            ]
        };
        let (key, hide) = if let Some(v) = header_str(ar.req, &self.header) {
            (
                std::borrow::Cow::Borrowed(v),
                Hide::Header(self.header.clone()),
            )
        } else {
            match query::arg(ar.req.uri.query(), &self.query) {
                query::Arg::One(v) => (v, Hide::Query(self.query.clone())),
                query::Arg::Bare | query::Arg::Many => {
                    return Err((
                        Failure::unauthorized(INVALID, "failed to find consumer: invalid api key"),
                        both(),
                    ));
                }
                query::Arg::Missing => {
                    return Err((Failure::unauthorized(MISSING, "missing api key"), both()));
                }
            }
        };
        match creds.find_key(key.as_bytes()) {
            Some(cred) => Ok((cred, vec![hide], None)),
            None => Err((
                Failure::unauthorized(INVALID, "failed to find consumer: invalid api key"),
                both(),
            )),
        }
    }
}
