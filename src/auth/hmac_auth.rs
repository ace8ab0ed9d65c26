//! hmac-auth: APISIX 3.11+ `Authorization: Signature keyId=...,algorithm=...,headers=...,signature=...`.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HmacAlgorithm {
    #[serde(rename = "hmac-sha1")]
    Sha1,
    #[serde(rename = "hmac-sha256")]
    Sha256,
    #[serde(rename = "hmac-sha512")]
    Sha512,
}

/// Route/service side. Defaults: every algorithm, clock_skew 300, signed_headers ["date"],
/// max_req_body_size 64 MiB, realm `hmac`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacAuthConf {
    pub allowed_algorithms: Option<Vec<HmacAlgorithm>>,
    pub clock_skew: Option<u64>,
    pub signed_headers: Option<Vec<String>>,
    pub validate_request_body: Option<bool>,
    pub max_req_body_size: Option<u64>,
    pub hide_credentials: Option<bool>,
    pub realm: Option<String>,
    pub anonymous_consumer: Option<String>,
}

/// Consumer/credential side.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacAuthCredentialConf {
    pub key_id: Option<String>,
    pub secret_key: Option<String>,
}

use std::time::Duration;

use base64::Engine;
use hmac::{KeyInit, Mac};
use http::header::AUTHORIZATION;

use super::credentials::CredentialIndex;
use super::{AuthCommon, AuthRequest, Failure, Hide, Verdict, challenge};
use crate::secret::Secret;
use crate::secret::secret_value;

/// Compiled hmac-auth on a route.
#[derive(Debug)]
pub struct HmacAuth {
    pub common: AuthCommon,
    allowed: Box<[HmacAlgorithm]>,
    clock_skew: u64,
    /// Lower case.
    signed_headers: Box<[Box<str>]>,
    validate_request_body: bool,
    max_req_body_size: u64,
}

/// The body digest a request announced; the body is held back until it matches.
#[derive(Debug, Clone)]
pub struct BodyCheck {
    pub sha512: bool,
    pub expected: Vec<u8>,
    pub max: u64,
    /// The plugin's `WWW-Authenticate`, for the 401 a mismatch gets.
    pub challenge: http::HeaderValue,
}

impl BodyCheck {
    /// The 413 once `len` bytes of body exceed `max_req_body_size`, if they do.
    pub(crate) fn too_large(&self, len: u64) -> Option<crate::reject::Reject> {
        (len > self.max).then(|| {
            let f = too_large(len, self.max);
            crate::reject::Reject::new(f.status, f.body)
        })
    }

    /// Checks the whole body's digest: `Err` is the 401 a mismatch gets.
    pub(crate) fn verify(&self, body: &[u8]) -> Result<(), crate::reject::Reject> {
        use sha2::Digest;
        let got: Vec<u8> = if self.sha512 {
            sha2::Sha512::digest(body).to_vec()
        } else {
            sha2::Sha256::digest(body).to_vec()
        };
        if Secret::new(got).ct_eq(&self.expected) {
            return Ok(());
        }
        let f = Failure::unauthorized(GENERIC, "Invalid digest");
        Err(crate::reject::Reject::new(f.status, f.body)
            .with_header(crate::headers::WWW_AUTHENTICATE, self.challenge.clone()))
    }
}

pub(crate) fn compile(
    conf: &HmacAuthConf,
    anonymous: Option<crate::ids::ConsumerId>,
) -> Result<HmacAuth, (String, String)> {
    let HmacAuthConf {
        allowed_algorithms,
        clock_skew,
        signed_headers,
        validate_request_body,
        max_req_body_size,
        hide_credentials,
        realm,
        anonymous_consumer: _, // resolved by the caller (plugins::compile_route_plugins)
    } = conf;
    let allowed = allowed_algorithms.clone().unwrap_or_else(|| {
        vec![
            HmacAlgorithm::Sha1,
            HmacAlgorithm::Sha256,
            HmacAlgorithm::Sha512,
        ]
    });
    if allowed.is_empty() {
        return Err((
            "allowed_algorithms".into(),
            "at least one algorithm is required".into(),
        ));
    }
    let clock_skew = clock_skew.unwrap_or(300);
    if clock_skew < 1 {
        return Err(("clock_skew".into(), "must be at least 1".into()));
    }
    let signed = signed_headers
        .clone()
        .unwrap_or_else(|| vec!["date".into()]);
    for (i, h) in signed.iter().enumerate() {
        if h.is_empty() || h.len() > 50 {
            return Err((
                format!("signed_headers[{i}]"),
                "must be 1 to 50 characters".into(),
            ));
        }
    }
    let max = max_req_body_size.unwrap_or(64 * 1024 * 1024);
    if max < 1 {
        return Err(("max_req_body_size".into(), "must be at least 1".into()));
    }
    let challenge =
        challenge("hmac", realm.as_deref(), "hmac").map_err(|m| ("realm".to_string(), m))?;
    Ok(HmacAuth {
        common: AuthCommon {
            name: "hmac-auth",
            hide_credentials: hide_credentials.unwrap_or(false),
            challenge,
            anonymous,
        },
        allowed: allowed.into_boxed_slice(),
        clock_skew,
        signed_headers: signed
            .iter()
            .map(|h| h.to_ascii_lowercase().into_boxed_str())
            .collect(),
        validate_request_body: validate_request_body.unwrap_or(false),
        max_req_body_size: max,
    })
}

/// Compiles a credential: key_id and secret.
pub(crate) fn compile_credential(
    conf: &HmacAuthCredentialConf,
) -> Result<(String, Secret), (String, String)> {
    let HmacAuthCredentialConf { key_id, secret_key } = conf;
    let key_id = key_id
        .as_deref()
        .ok_or(("key_id".to_string(), "required".to_string()))?;
    if key_id.is_empty() || key_id.len() > 256 {
        return Err(("key_id".into(), "must be 1 to 256 characters".into()));
    }
    let secret = secret_key
        .as_deref()
        .ok_or(("secret_key".to_string(), "required".to_string()))?;
    let secret = secret_value(secret).map_err(|m| ("secret_key".to_string(), m))?;
    if secret.is_empty() || secret.len() > 256 {
        return Err(("secret_key".into(), "must be 1 to 256 characters".into()));
    }
    Ok((key_id.to_string(), Secret::new(secret.into_bytes())))
}

/// The parameters of `Authorization: Signature ...`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SignatureParams<'a> {
    pub key_id: Option<&'a str>,
    pub algorithm: Option<&'a str>,
    pub headers: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Parses the parameters after the `Signature` prefix: `name="value"` pieces split on `,`.
pub(crate) fn parse_params(rest: &str) -> SignatureParams<'_> {
    let mut p = SignatureParams::default();
    for piece in rest.split(',') {
        let piece = piece.trim_start();
        let Some((name, value)) = piece.split_once("=\"") else {
            continue;
        };
        if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        let value = value.split('"').next().unwrap_or("");
        match name {
            "keyId" => p.key_id = Some(value),
            "algorithm" => p.algorithm = Some(value),
            "headers" => p.headers = Some(value),
            "signature" => p.signature = Some(value),
            _ => {}
        }
    }
    p
}

/// Builds the signing string exactly as APISIX does.
pub(crate) fn signing_string(
    key_id: &str,
    headers: Option<&str>,
    req: &pingora_http::RequestHeader,
    path: &[u8],
) -> Vec<u8> {
    let mut s = Vec::with_capacity(128);
    s.extend_from_slice(key_id.as_bytes());
    s.push(b'\n');
    for name in headers
        .into_iter()
        .flat_map(|h| h.split(' '))
        .filter(|n| !n.is_empty())
    {
        if let Some(v) = req.headers.get(name) {
            s.extend_from_slice(name.as_bytes());
            s.extend_from_slice(b": ");
            s.extend_from_slice(v.as_bytes());
            s.push(b'\n');
        } else if name == "@request-target" {
            s.extend_from_slice(req.method.as_str().as_bytes());
            s.push(b' ');
            s.extend_from_slice(if path.is_empty() { b"/" } else { path });
            if let Some(q) = req.uri.query() {
                s.push(b'?');
                s.extend_from_slice(q.as_bytes());
            }
            s.push(b'\n');
        }
    }
    s
}

/// HMAC of `data` with `key`, checked against `sig` in constant time.
pub(crate) fn verify_mac(alg: HmacAlgorithm, key: &[u8], data: &[u8], sig: &[u8]) -> bool {
    fn check<M: Mac + KeyInit>(key: &[u8], data: &[u8], sig: &[u8]) -> bool {
        match <M as KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.verify_slice(sig).is_ok()
            }
            Err(_) => false,
        }
    }
    match alg {
        HmacAlgorithm::Sha1 => check::<hmac::Hmac<sha1::Sha1>>(key, data, sig),
        HmacAlgorithm::Sha256 => check::<hmac::Hmac<sha2::Sha256>>(key, data, sig),
        HmacAlgorithm::Sha512 => check::<hmac::Hmac<sha2::Sha512>>(key, data, sig),
    }
}

fn algorithm(name: &str) -> Option<HmacAlgorithm> {
    match name {
        "hmac-sha1" => Some(HmacAlgorithm::Sha1),
        "hmac-sha256" => Some(HmacAlgorithm::Sha256),
        "hmac-sha512" => Some(HmacAlgorithm::Sha512),
        _ => None,
    }
}

const MISSING: &[u8] =
    b"{\"message\":\"client request can't be validated: missing Authorization header\"}\n";
const PREFIX: &[u8] = b"{\"message\":\"client request can't be validated: Authorization header does not start with 'Signature'\"}\n";
const GENERIC: &[u8] = b"{\"message\":\"client request can't be validated\"}\n";

impl HmacAuth {
    pub fn verify(&self, creds: &CredentialIndex, ar: &AuthRequest<'_>) -> Verdict {
        let hide = || vec![Hide::Header(AUTHORIZATION)];
        let fail = |m: &'static str| (Failure::unauthorized(GENERIC, m), hide());
        let Some(value) = ar.req.headers.get(AUTHORIZATION) else {
            return Err((
                Failure::unauthorized(MISSING, "missing Authorization header"),
                hide(),
            ));
        };
        let value = value.to_str().unwrap_or("");
        let Some(rest) = value.strip_prefix("Signature") else {
            return Err((
                Failure::unauthorized(
                    PREFIX,
                    "Authorization header does not start with 'Signature'",
                ),
                hide(),
            ));
        };
        let p = parse_params(rest);
        let (Some(key_id), Some(sig)) = (p.key_id, p.signature) else {
            return Err(fail("keyId or signature missing"));
        };
        let Some(alg) = p.algorithm else {
            return Err(fail("algorithm missing"));
        };
        let Some((cred, secret)) = creds.hmac_auth.get(key_id) else {
            return Err(fail("Invalid key_id"));
        };
        let Some(alg) = algorithm(alg).filter(|a| self.allowed.contains(a)) else {
            return Err(fail("Invalid algorithm"));
        };
        let Some(date) = ar.req.headers.get(crate::headers::DATE) else {
            return Err(fail("Date header missing. failed to validate clock skew"));
        };
        let Ok(date) = httpdate::parse_http_date(date.to_str().unwrap_or("")) else {
            return Err(fail("Invalid GMT format time"));
        };
        let skew = match ar.now.duration_since(date) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if skew > Duration::from_secs(self.clock_skew) {
            return Err(fail("Clock skew exceeded"));
        }
        let listed: Vec<String> = p
            .headers
            .unwrap_or("")
            .split(' ')
            .map(str::to_ascii_lowercase)
            .collect();
        if self
            .signed_headers
            .iter()
            .any(|h| !listed.iter().any(|l| l == &**h))
        {
            return Err(fail("expected header missing in signing"));
        }
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig) else {
            return Err(fail("Invalid signature"));
        };
        let data = signing_string(key_id, p.headers, ar.req, ar.path);
        if !verify_mac(alg, secret.expose(), &data, &sig) {
            return Err(fail("Invalid signature"));
        }
        let body = if self.validate_request_body {
            let digest = ar
                .req
                .headers
                .get(crate::headers::DIGEST)
                .and_then(|d| d.to_str().ok())
                .unwrap_or("");
            let (sha512, b64) = if let Some(v) = digest.strip_prefix("SHA-256=") {
                (false, v)
            } else if let Some(v) = digest.strip_prefix("SHA-512=") {
                (true, v)
            } else {
                return Err(fail("Invalid digest"));
            };
            let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
                return Err(fail("Invalid digest"));
            };
            if let Some(len) = ar
                .req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                && len > self.max_req_body_size
            {
                return Err((too_large(len, self.max_req_body_size), hide()));
            }
            Some(BodyCheck {
                sha512,
                expected,
                max: self.max_req_body_size,
                challenge: self.common.challenge.clone(),
            })
        } else {
            None
        };
        Ok((*cred, hide(), body))
    }
}

/// 413 for a body over `max_req_body_size` (no WWW-Authenticate).
fn too_large(len: u64, max: u64) -> Failure {
    let msg = format!("request size {len} is greater than the maximum size {max} allowed");
    Failure {
        status: 413,
        body: crate::reject::Reject::json_body("message", &msg),
        log: msg.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_signing_string() {
        let p = parse_params(
            r#" keyId="k1",algorithm="hmac-sha256", headers="@request-target date",signature="c2ln""#,
        );
        assert_eq!(p.key_id, Some("k1"));
        assert_eq!(p.headers, Some("@request-target date"));
        let mut req = pingora_http::RequestHeader::build("GET", b"/a?b=1", None).unwrap();
        req.insert_header("date", "Mon, 23 Nov 2026 10:00:00 GMT")
            .unwrap();
        let s = signing_string("k1", p.headers, &req, b"/a");
        assert_eq!(s, b"k1\nGET /a?b=1\ndate: Mon, 23 Nov 2026 10:00:00 GMT\n");
    }

    #[test]
    fn mac_roundtrip() {
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"secret").unwrap();
        m.update(b"data");
        let sig = m.finalize().into_bytes().to_vec();
        assert!(verify_mac(HmacAlgorithm::Sha256, b"secret", b"data", &sig));
        assert!(!verify_mac(HmacAlgorithm::Sha256, b"secret", b"datb", &sig));
        assert!(!verify_mac(HmacAlgorithm::Sha512, b"secret", b"data", &sig));
    }
}
