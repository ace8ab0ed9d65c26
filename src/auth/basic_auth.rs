//! basic-auth: `Authorization: Basic base64(user:pass)`, looked up by the basic-auth username.

use serde::Deserialize;

/// Route/service side. Default realm `basic`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConf {
    pub hide_credentials: Option<bool>,
    pub realm: Option<String>,
    pub anonymous_consumer: Option<String>,
}

/// Consumer/credential side: `username` and `password` or `password_hash` (PHC argon2id, bcrypt).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthCredentialConf {
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_hash: Option<String>,
}

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use base64::Engine;
use http::header::AUTHORIZATION;

use super::credentials::CredentialIndex;
use super::{AuthCommon, AuthRequest, Failure, Hide, Verdict, challenge};
use crate::secret::secret_value;
use crate::secret::sha256;

/// How a basic-auth password is checked.
#[derive(Debug)]
pub enum PasswordCheck {
    /// SHA-256 of the plain password, compared in constant time.
    Sha256([u8; 32]),
    /// A PHC string (argon2id) or bcrypt hash, verified on the blocking pool; the digest of the
    /// last password that passed is kept so a hot consumer does not pay the hash every time.
    Phc {
        hash: Arc<str>,
        last_ok: ArcSwapOption<[u8; 32]>,
    },
}

/// Compiled basic-auth on a route.
#[derive(Debug)]
pub struct BasicAuth {
    pub common: AuthCommon,
}

pub(crate) fn compile(
    conf: &BasicAuthConf,
    anonymous: Option<crate::ids::ConsumerId>,
) -> Result<BasicAuth, (String, String)> {
    let BasicAuthConf {
        hide_credentials,
        realm,
        anonymous_consumer: _, // resolved by the caller (plugins::compile_route_plugins)
    } = conf;
    let challenge =
        challenge("Basic", realm.as_deref(), "basic").map_err(|m| ("realm".to_string(), m))?;
    Ok(BasicAuth {
        common: AuthCommon {
            name: "basic-auth",
            hide_credentials: hide_credentials.unwrap_or(false),
            challenge,
            anonymous,
        },
    })
}

/// Compiles a credential: its basic-auth username and password check.
pub(crate) fn compile_credential(
    conf: &BasicAuthCredentialConf,
) -> Result<(String, PasswordCheck), (String, String)> {
    let BasicAuthCredentialConf {
        username,
        password,
        password_hash,
    } = conf;
    let user = username
        .as_deref()
        .ok_or(("username".to_string(), "required".to_string()))?;
    if user.is_empty() {
        return Err(("username".into(), "must not be empty".into()));
    }
    let check = match (&password, &password_hash) {
        (Some(_), Some(_)) => {
            return Err((
                "password_hash".into(),
                "set either password or password_hash, not both".into(),
            ));
        }
        (Some(p), None) => PasswordCheck::Sha256(sha256(
            secret_value(p)
                .map_err(|m| ("password".to_string(), m))?
                .as_bytes(),
        )),
        (None, Some(h)) => {
            let ok = if h.starts_with("$2") {
                h.len() == 60
            } else {
                argon2::password_hash::phc::PasswordHash::new(h).is_ok()
            };
            if !ok {
                return Err(("password_hash".into(), "must be a PHC string (argon2id) or a bcrypt $2b$ hash (see `tollgate hash-secret password`)".into()));
            }
            PasswordCheck::Phc {
                hash: h.as_str().into(),
                last_ok: ArcSwapOption::empty(),
            }
        }
        (None, None) => {
            return Err((
                "password".into(),
                "required (password or password_hash)".into(),
            ));
        }
    };
    Ok((user.to_string(), check))
}

const MISSING: &[u8] = b"{\"message\":\"Missing authorization in request\"}\n";
const INVALID_HEADER: &[u8] = b"{\"message\":\"Invalid authorization in request\"}\n";
const INVALID_USER: &[u8] = b"{\"message\":\"Invalid user authorization\"}\n";

/// Splits `Authorization: Basic <b64>` into user and password (everything after the first `:`).
pub(crate) fn parse(value: &[u8]) -> Result<(String, String), &'static str> {
    // APISIX: `(?i:basic)\s(.+)` unanchored.
    let lower = value.to_ascii_lowercase();
    let pos = lower
        .windows(6)
        .position(|w| w.starts_with(b"basic") && w[5].is_ascii_whitespace())
        .ok_or("Invalid authorization header format")?;
    let blob = &value[pos + 6..];
    if blob.is_empty() {
        return Err("Invalid authorization header format");
    }
    // Padding optional, as nginx's decoder (which APISIX uses) accepts it either way.
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = LENIENT
        .decode(blob.trim_ascii())
        .map_err(|_| "Failed to decode authentication header")?;
    let text = String::from_utf8(decoded).map_err(|_| "Failed to decode authentication header")?;
    let (u, p) = text
        .trim()
        .split_once(':')
        .ok_or("Split authorization err: invalid decoded data")?;
    Ok((u.trim().to_string(), p.trim().to_string()))
}

impl BasicAuth {
    pub async fn verify(&self, creds: &CredentialIndex, ar: &AuthRequest<'_>) -> Verdict {
        let hide = || vec![Hide::Header(AUTHORIZATION)];
        let Some(value) = ar.req.headers.get(AUTHORIZATION) else {
            return Err((
                Failure::unauthorized(MISSING, "missing authorization"),
                hide(),
            ));
        };
        let (user, pass) = parse(value.as_bytes())
            .map_err(|m| (Failure::unauthorized(INVALID_HEADER, m), hide()))?;
        let Some((cred, check)) = creds.basic_auth.get(user.as_str()) else {
            return Err((Failure::unauthorized(INVALID_USER, "invalid user"), hide()));
        };
        let digest = sha256(pass.as_bytes());
        let ok = match check {
            PasswordCheck::Sha256(want) => crate::secret::Secret::new(*want).ct_eq(&digest),
            PasswordCheck::Phc { hash, last_ok } => {
                if last_ok
                    .load()
                    .as_deref()
                    .is_some_and(|d| crate::secret::Secret::new(*d).ct_eq(&digest))
                {
                    true
                } else {
                    let hash = hash.clone();
                    let ok = tokio::task::spawn_blocking(move || verify_phc(&hash, &pass))
                        .await
                        .unwrap_or(false);
                    if ok {
                        last_ok.store(Some(Arc::new(digest)));
                    }
                    ok
                }
            }
        };
        if ok {
            Ok((*cred, hide(), None))
        } else {
            Err((
                Failure::unauthorized(INVALID_USER, "invalid password"),
                hide(),
            ))
        }
    }
}

/// Verifies a password against a PHC (argon2) or bcrypt hash. Slow on purpose.
fn verify_phc(hash: &str, password: &str) -> bool {
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(
            parse(enc("foo:bar").as_bytes()).unwrap(),
            ("foo".into(), "bar".into())
        );
        assert_eq!(
            parse(enc("foo:b:a:r").as_bytes()).unwrap(),
            ("foo".into(), "b:a:r".into())
        );
        assert_eq!(
            parse(enc("bar:bar\n").as_bytes()).unwrap(),
            ("bar".into(), "bar".into())
        );
        assert_eq!(
            parse(
                format!(
                    "bAsIc {}",
                    base64::engine::general_purpose::STANDARD.encode("a:b")
                )
                .as_bytes()
            )
            .unwrap()
            .0,
            "a"
        );
        assert!(parse(enc("nocolon").as_bytes()).is_err());
        assert!(parse(b"Basic !!!").is_err());
        assert!(parse(b"Bearer x").is_err());
    }

    #[test]
    fn phc_and_bcrypt() {
        let h = crate::secret::password_hash("pw").unwrap();
        assert!(verify_phc(&h, "pw"));
        assert!(!verify_phc(&h, "px"));
    }
}
