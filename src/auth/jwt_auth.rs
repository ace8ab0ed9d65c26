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
