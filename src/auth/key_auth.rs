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
