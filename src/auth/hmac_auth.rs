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
