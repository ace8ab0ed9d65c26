//! Auth plugins: a closed enum of schemes run by priority (AND across plugins), multi-auth (OR)
//! and the anonymous-consumer fallback. Each scheme's `verify` is a function of the request head
//! and the snapshot's credential index; failures become APISIX's 401 bodies.

pub(crate) mod basic_auth;
pub(crate) mod credentials;
pub(crate) mod hmac_auth;
pub(crate) mod jwt_auth;
pub(crate) mod key_auth;
pub(crate) mod multi_auth;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use log::debug;
use pingora_http::RequestHeader;

use crate::headers::WWW_AUTHENTICATE;
use crate::ids::{ConsumerId, CredentialId};
use crate::reject::Reject;
use credentials::CredentialIndex;

/// Who a request is, once an auth plugin identified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub consumer: ConsumerId,
    /// None for a consumer matched by an inline plugin, or the anonymous consumer.
    pub credential: Option<CredentialId>,
    pub anonymous: bool,
}

/// A credential source to remove before proxying (`hide_credentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hide {
    Header(HeaderName),
    Query(Arc<str>),
    Cookie(Arc<str>),
}

/// Settings every auth plugin has: `hide_credentials`, `realm`, `anonymous_consumer`.
#[derive(Debug, Clone)]
pub struct AuthCommon {
    pub name: &'static str,
    pub hide_credentials: bool,
    /// The `WWW-Authenticate` value sent with every 401 of this plugin.
    pub challenge: HeaderValue,
    pub anonymous: Option<ConsumerId>,
}

impl AuthCommon {
    /// A 401 with this plugin's challenge and `{"message": msg}`.
    pub fn reject(&self, f: &Failure) -> Reject {
        let r = Reject::new(f.status, f.body.clone());
        if f.status == 401 {
            r.with_header(WWW_AUTHENTICATE, self.challenge.clone())
        } else {
            r
        }
    }
}

/// Checks a `realm` and builds the challenge header value `<scheme> realm="<realm>"`.
pub(crate) fn challenge(
    scheme: &str,
    realm: Option<&str>,
    default: &str,
) -> Result<HeaderValue, String> {
    let realm = realm.unwrap_or(default);
    let ok = !realm.is_empty()
        && realm.len() <= 128
        && realm
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    if !ok {
        return Err("1 to 128 printable ASCII characters without `\"` or `\\`".into());
    }
    HeaderValue::from_str(&format!("{scheme} realm=\"{realm}\"")).map_err(|e| e.to_string())
}

/// Why a plugin refused a request: status, client body, and the detail for the log.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub body: Bytes,
    pub log: Cow<'static, str>,
}

impl Failure {
    /// 401 with a static JSON body.
    pub fn unauthorized(body: &'static [u8], log: impl Into<Cow<'static, str>>) -> Failure {
        Failure {
            status: 401,
            body: Bytes::from_static(body),
            log: log.into(),
        }
    }
}

/// A compiled auth plugin, in the priority order APISIX runs them.
#[derive(Debug)]
pub enum AuthPlugin {
    Multi(Box<[AuthPlugin]>),
    Hmac(hmac_auth::HmacAuth),
    Basic(basic_auth::BasicAuth),
    Jwt(jwt_auth::JwtAuth),
    Key(key_auth::KeyAuth),
}

impl AuthPlugin {
    pub fn common(&self) -> Option<&AuthCommon> {
        match self {
            AuthPlugin::Multi(_) => None,
            AuthPlugin::Hmac(p) => Some(&p.common),
            AuthPlugin::Basic(p) => Some(&p.common),
            AuthPlugin::Jwt(p) => Some(&p.common),
            AuthPlugin::Key(p) => Some(&p.common),
        }
    }

    pub fn name(&self) -> &'static str {
        self.common().map_or("multi-auth", |c| c.name)
    }
}

/// The request facts auth plugins read.
pub struct AuthRequest<'a> {
    pub req: &'a RequestHeader,
    /// The normalised, decoded path (hmac-auth signs it).
    pub path: &'a [u8],
    pub now: SystemTime,
}

/// What auth decided, plus what to remove before proxying.
#[derive(Debug, Default)]
pub(crate) struct AuthResult {
    pub identity: Option<Identity>,
    pub hide: Vec<Hide>,
    /// hmac-auth `validate_request_body`: the body must match this digest before it is sent.
    pub body_check: Option<hmac_auth::BodyCheck>,
}

/// A scheme's verdict: the credential found and what to hide, or the failure and what to hide.
pub(crate) type Verdict =
    Result<(CredentialId, Vec<Hide>, Option<hmac_auth::BodyCheck>), (Failure, Vec<Hide>)>;

/// Failure of an auth step, with the plugin that failed (for metrics).
pub(crate) struct AuthReject {
    pub plugin: &'static str,
    pub reject: Reject,
}

/// One plugin's outcome before the anonymous fallback.
enum Outcome {
    Found(CredentialId, Vec<Hide>, Option<hmac_auth::BodyCheck>),
    Failed(Failure, Vec<Hide>),
}

async fn verify_one(p: &AuthPlugin, creds: &CredentialIndex, ar: &AuthRequest<'_>) -> Outcome {
    let r = match p {
        AuthPlugin::Key(k) => k.verify(creds, ar),
        AuthPlugin::Basic(b) => b.verify(creds, ar).await,
        AuthPlugin::Hmac(h) => h.verify(creds, ar),
        AuthPlugin::Jwt(j) => j.verify(creds, ar),
        AuthPlugin::Multi(_) => unreachable_multi(),
    };
    match r {
        Ok((cred, hide, body)) => match creds.check_expiry(cred, ar.now) {
            Ok(()) => Outcome::Found(cred, hide, body),
            Err(log) => Outcome::Failed(p.expired_failure(log), hide),
        },
        Err((f, hide)) => Outcome::Failed(f, hide),
    }
}

fn unreachable_multi() -> Verdict {
    Err((
        Failure::unauthorized(
            b"{\"message\":\"Authorization Failed\"}\n",
            "nested multi-auth",
        ),
        Vec::new(),
    ))
}

impl AuthPlugin {
    /// The failure an expired credential gets: the plugin's "wrong secret" answer.
    fn expired_failure(&self, log: String) -> Failure {
        let body: &'static [u8] = match self {
            AuthPlugin::Key(_) => b"{\"message\":\"Invalid API key in request\"}\n",
            AuthPlugin::Basic(_) => b"{\"message\":\"Invalid user authorization\"}\n",
            AuthPlugin::Hmac(_) => b"{\"message\":\"client request can't be validated\"}\n",
            AuthPlugin::Jwt(_) => b"{\"message\":\"failed to verify jwt\"}\n",
            AuthPlugin::Multi(_) => b"{\"message\":\"Authorization Failed\"}\n",
        };
        Failure::unauthorized(body, log)
    }
}

/// Runs one plugin with its anonymous fallback.
async fn run_plugin(
    p: &AuthPlugin,
    creds: &CredentialIndex,
    ar: &AuthRequest<'_>,
    out: &mut AuthResult,
) -> Result<(), AuthReject> {
    if let AuthPlugin::Multi(list) = p {
        let mut last: Option<&AuthPlugin> = None;
        for inner in list.iter() {
            match verify_one(inner, creds, ar).await {
                Outcome::Found(cred, hide, body) => {
                    out.identity = Some(creds.identity(cred));
                    if inner.common().is_some_and(|c| c.hide_credentials) {
                        out.hide.extend(hide);
                    }
                    out.body_check = body;
                    return Ok(());
                }
                Outcome::Failed(f, hide) => {
                    // An inner plugin with an anonymous consumer succeeds with it, as in APISIX.
                    if let Some(c) = inner.common().filter(|_| f.status == 401)
                        && let Some(anon) = c.anonymous
                    {
                        out.identity = Some(Identity {
                            consumer: anon,
                            credential: None,
                            anonymous: true,
                        });
                        if c.hide_credentials {
                            out.hide.extend(hide);
                        }
                        return Ok(());
                    }
                    crate::limited_log!(
                        log::Level::Info,
                        "{} failed to authenticate the request, code: {}. error: {}",
                        inner.name(),
                        f.status,
                        f.log
                    );
                    last = Some(inner);
                }
            }
        }
        let mut r = Reject::new(
            401,
            Bytes::from_static(b"{\"message\":\"Authorization Failed\"}\n"),
        );
        if let Some(c) = last.and_then(AuthPlugin::common) {
            r = r.with_header(WWW_AUTHENTICATE, c.challenge.clone());
        }
        return Err(AuthReject {
            plugin: "multi-auth",
            reject: r,
        });
    }
    let Some(common) = p.common() else {
        return Ok(());
    };
    match verify_one(p, creds, ar).await {
        Outcome::Found(cred, hide, body) => {
            out.identity = Some(creds.identity(cred));
            if common.hide_credentials {
                out.hide.extend(hide);
            }
            if body.is_some() {
                out.body_check = body;
            }
            Ok(())
        }
        Outcome::Failed(f, hide) => match common.anonymous {
            Some(anon) if f.status == 401 => {
                debug!("{}: {}; using the anonymous consumer", common.name, f.log);
                out.identity = Some(Identity {
                    consumer: anon,
                    credential: None,
                    anonymous: true,
                });
                if common.hide_credentials {
                    out.hide.extend(hide);
                }
                Ok(())
            }
            _ => {
                crate::limited_log!(log::Level::Info, "{}: {}", common.name, f.log);
                Err(AuthReject {
                    plugin: common.name,
                    reject: common.reject(&f),
                })
            }
        },
    }
}

/// Runs every auth plugin of a route in priority order; all must pass (AND). The consumer found
/// last (lowest priority) is the one attached, as APISIX does.
pub(crate) async fn authenticate(
    plugins: &[Arc<AuthPlugin>],
    creds: &CredentialIndex,
    ar: &AuthRequest<'_>,
) -> Result<AuthResult, AuthReject> {
    let mut out = AuthResult::default();
    for p in plugins {
        run_plugin(p, creds, ar, &mut out).await?;
    }
    Ok(out)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    for h in req.headers.get_all(http::header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
            {
                return Some(v);
            }
        }
    }
    None
}

/// The `Cookie` header without cookie `name`, or None when nothing is left.
pub(crate) fn cookies_without(req: &RequestHeader, name: &str) -> Option<String> {
    let rest: Vec<&str> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|s| s.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.split_once('=').map_or(*p, |(k, _)| k) != name)
        .collect();
    if rest.is_empty() {
        None
    } else {
        Some(rest.join("; "))
    }
}

/// The first value of a header as text; a non-UTF-8 value reads as absent.
pub(crate) fn header_str(
    req: &RequestHeader,
    name: impl http::header::AsHeaderName,
) -> Option<&str> {
    req.headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_checks() {
        assert_eq!(
            challenge("Basic", None, "basic").unwrap(),
            "Basic realm=\"basic\""
        );
        assert!(challenge("Basic", Some("a\"b"), "basic").is_err());
    }
}
