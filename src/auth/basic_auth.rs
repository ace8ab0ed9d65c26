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
