//! jwt-auth: a JWT from a header, query argument or cookie, verified with the key's algorithm.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Claim {
    Exp,
    Nbf,
}

/// Route/service side. Defaults: header `authorization`, query and cookie `jwt`,
/// key_claim_name `key`, realm `jwt`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthConf {
    pub header: Option<String>,
    pub query: Option<String>,
    pub cookie: Option<String>,
    pub hide_credentials: Option<bool>,
    pub key_claim_name: Option<String>,
    pub store_in_ctx: Option<bool>,
    pub claims_to_verify: Option<Vec<Claim>>,
    pub realm: Option<String>,
    pub anonymous_consumer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithmConf {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
    PS256,
    PS384,
    PS512,
    EdDSA,
}

/// Consumer/credential side.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthCredentialConf {
    pub key: Option<String>,
    pub secret: Option<String>,
    pub public_key: Option<String>,
    pub algorithm: Option<JwtAlgorithmConf>,
    pub exp: Option<u64>,
    pub base64_secret: Option<bool>,
    pub lifetime_grace_period: Option<u64>,
}

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use base64::Engine;
use http::HeaderName;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::credentials::CredentialIndex;
use super::{AuthCommon, AuthRequest, Failure, Hide, Verdict, challenge, cookie};
use crate::query;
use crate::secret::secret_value;

/// A credential's verification key, built once at compile time.
pub struct JwtKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    pub grace: u64,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Compiled jwt-auth on a route.
#[derive(Debug)]
pub struct JwtAuth {
    pub common: AuthCommon,
    header: HeaderName,
    query: Arc<str>,
    cookie: Arc<str>,
    key_claim: Box<str>,
    /// None: check exp and nbf only when present; Some: each listed claim required.
    claims: Option<Box<[Claim]>>,
}

pub(crate) fn compile(
    conf: &JwtAuthConf,
    anonymous: Option<crate::ids::ConsumerId>,
) -> Result<JwtAuth, (String, String)> {
    let JwtAuthConf {
        header,
        query,
        cookie,
        hide_credentials,
        key_claim_name,
        store_in_ctx: _, // accepted, no effect: there is no later plugin that reads the payload
        claims_to_verify,
        realm,
        anonymous_consumer: _, // resolved by the caller (plugins::compile_route_plugins)
    } = conf;
    let header = header.as_deref().unwrap_or("authorization");
    let header = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).map_err(|_| {
        (
            "header".to_string(),
            format!("`{header}` is not a valid header name"),
        )
    })?;
    let challenge =
        challenge("Bearer", realm.as_deref(), "jwt").map_err(|m| ("realm".to_string(), m))?;
    let key_claim = key_claim_name.as_deref().unwrap_or("key");
    if key_claim.is_empty() {
        return Err(("key_claim_name".into(), "must not be empty".into()));
    }
    let claims = claims_to_verify
        .as_ref()
        .filter(|c| !c.is_empty())
        .map(|c| {
            let mut v = c.clone();
            v.dedup();
            v.into_boxed_slice()
        });
    Ok(JwtAuth {
        common: AuthCommon {
            name: "jwt-auth",
            hide_credentials: hide_credentials.unwrap_or(false),
            challenge,
            anonymous,
        },
        header,
        query: query.as_deref().unwrap_or("jwt").into(),
        cookie: cookie.as_deref().unwrap_or("jwt").into(),
        key_claim: key_claim.into(),
        claims,
    })
}

fn algorithm(a: JwtAlgorithmConf) -> Algorithm {
    match a {
        JwtAlgorithmConf::HS256 => Algorithm::HS256,
        JwtAlgorithmConf::HS384 => Algorithm::HS384,
        JwtAlgorithmConf::HS512 => Algorithm::HS512,
        JwtAlgorithmConf::RS256 => Algorithm::RS256,
        JwtAlgorithmConf::RS384 => Algorithm::RS384,
        JwtAlgorithmConf::RS512 => Algorithm::RS512,
        JwtAlgorithmConf::ES256 => Algorithm::ES256,
        JwtAlgorithmConf::ES384 => Algorithm::ES384,
        JwtAlgorithmConf::PS256 => Algorithm::PS256,
        JwtAlgorithmConf::PS384 => Algorithm::PS384,
        JwtAlgorithmConf::PS512 => Algorithm::PS512,
        JwtAlgorithmConf::EdDSA => Algorithm::EdDSA,
    }
}

/// Compiles a credential: its key and verification key.
pub(crate) fn compile_credential(
    conf: &JwtAuthCredentialConf,
) -> Result<(String, JwtKey), (String, String)> {
    let JwtAuthCredentialConf {
        key,
        secret,
        public_key,
        algorithm: algorithm_conf,
        exp: _, // accepted, no effect: APISIX uses it only to sign tokens, which tollgate does not
        base64_secret,
        lifetime_grace_period,
    } = conf;
    let key = key
        .as_deref()
        .ok_or(("key".to_string(), "required".to_string()))?;
    if key.is_empty() {
        return Err(("key".into(), "must not be empty".into()));
    }
    let alg = algorithm(algorithm_conf.unwrap_or(JwtAlgorithmConf::HS256));
    let dk = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let secret = secret.as_deref().ok_or((
                "secret".to_string(),
                "required when using HS based algorithms".to_string(),
            ))?;
            let secret = secret_value(secret).map_err(|m| ("secret".to_string(), m))?;
            if secret.is_empty() {
                return Err(("secret".into(), "must not be empty".into()));
            }
            if base64_secret.unwrap_or(false) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(secret.trim())
                    .map_err(|_| {
                        (
                            "secret".to_string(),
                            "base64_secret required but the secret is not in base64 format"
                                .to_string(),
                        )
                    })?;
                DecodingKey::from_secret(&raw)
            } else {
                DecodingKey::from_secret(secret.as_bytes())
            }
        }
        _ => {
            let pem = public_key.as_deref().ok_or((
                "public_key".to_string(),
                "required for RS, ES, PS and EdDSA algorithms".to_string(),
            ))?;
            let pem = secret_value(pem).map_err(|m| ("public_key".to_string(), m))?;
            let r = match alg {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
                _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
            };
            r.map_err(|e| {
                (
                    "public_key".to_string(),
                    format!("missing valid public key: {e}"),
                )
            })?
        }
    };
    Ok((
        key.to_string(),
        JwtKey {
            algorithm: alg,
            key: dk,
            grace: lifetime_grace_period.unwrap_or(0),
        },
    ))
}

const MISSING: &[u8] = b"{\"message\":\"Missing JWT token in request\"}\n";
const INVALID: &[u8] = b"{\"message\":\"JWT token invalid\"}\n";
const NO_KEY: &[u8] = b"{\"message\":\"missing user key in JWT token\"}\n";
const BAD_KEY: &[u8] = b"{\"message\":\"Invalid user key in JWT token\"}\n";
const VERIFY: &[u8] = b"{\"message\":\"failed to verify jwt\"}\n";

impl JwtAuth {
    /// Header (`Bearer ` cut), else query argument, else cookie: the first present is the token.
    fn token<'a>(&self, ar: &'a AuthRequest<'_>) -> Option<(std::borrow::Cow<'a, str>, Hide)> {
        if let Some(v) = ar.req.headers.get(&self.header) {
            let v = v.to_str().unwrap_or("");
            let t = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v);
            return Some((t.into(), Hide::Header(self.header.clone())));
        }
        match query::arg(ar.req.uri.query(), &self.query) {
            query::Arg::One(v) => return Some((v, Hide::Query(self.query.clone()))),
            query::Arg::Bare | query::Arg::Many => {
                return Some(("".into(), Hide::Query(self.query.clone())));
            }
            query::Arg::Missing => {}
        }
        cookie(ar.req, &self.cookie).map(|c| (c.into(), Hide::Cookie(self.cookie.clone())))
    }

    pub fn verify(&self, creds: &CredentialIndex, ar: &AuthRequest<'_>) -> Verdict {
        let Some((token, hide)) = self.token(ar) else {
            return Err((
                Failure::unauthorized(MISSING, "missing JWT token"),
                Vec::new(),
            ));
        };
        let hide = vec![hide];
        let fail =
            |body: &'static [u8], m: String| Err((Failure::unauthorized(body, m), hide.clone()));
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return fail(INVALID, "JWT token invalid: invalid jwt string".into());
        };
        let header = match jsonwebtoken::decode_header(token.as_bytes()) {
            Ok(h) => h,
            Err(e) => return fail(INVALID, format!("JWT token invalid: invalid header: {e}")),
        };
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let Some(serde_json::Value::Object(claims)) = payload else {
            return fail(INVALID, "JWT token invalid: invalid payload".into());
        };
        let Some(key) = claims.get(&*self.key_claim) else {
            return fail(NO_KEY, "missing user key in JWT token".into());
        };
        let Some((cred, jk)) = key.as_str().and_then(|k| creds.jwt_auth.get(k)) else {
            return fail(BAD_KEY, "Invalid user key in JWT token".into());
        };
        if header.alg != jk.algorithm {
            return fail(
                VERIFY,
                format!("algorithm mismatch, expected {:?}", jk.algorithm),
            );
        }
        let message_len = h.len() + 1 + p.len();
        match jsonwebtoken::crypto::verify(
            s,
            &token.as_bytes()[..message_len],
            &jk.key,
            jk.algorithm,
        ) {
            Ok(true) => {}
            _ => return fail(VERIFY, "signature mismatch".into()),
        }
        let now = ar
            .now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if let Err(m) = self.check_claims(&claims, now, jk.grace as f64) {
            return fail(VERIFY, m);
        }
        Ok((*cred, hide, None))
    }

    fn check_claims(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
        now: f64,
        grace: f64,
    ) -> Result<(), String> {
        let (check_exp, need_exp, check_nbf, need_nbf) = match &self.claims {
            None => (true, false, true, false),
            Some(list) => {
                let e = list.contains(&Claim::Exp);
                let n = list.contains(&Claim::Nbf);
                (e, e, n, n)
            }
        };
        let num = |name: &str, need: bool| -> Result<Option<f64>, String> {
            match claims.get(name) {
                None if need => Err(format!("claim {name} is missing")),
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| format!("claim {name} is not a number")),
            }
        };
        if check_exp
            && let Some(exp) = num("exp", need_exp)?
            && exp <= now - grace
        {
            return Err(format!("'exp' claim expired at {exp}"));
        }
        if check_nbf
            && let Some(nbf) = num("nbf", need_nbf)?
            && nbf >= now + grace
        {
            return Err(format!("'nbf' claim not valid until {nbf}"));
        }
        Ok(())
    }
}
