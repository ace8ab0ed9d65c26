//! multi-auth: OR over auth plugins, tried in order; the first success wins.

use serde::Deserialize;

use super::basic_auth::BasicAuthConf;
use super::hmac_auth::HmacAuthConf;
use super::jwt_auth::JwtAuthConf;
use super::key_auth::KeyAuthConf;
use crate::plugins::null_is_default;

/// `auth_plugins`: at least two single-key objects `{ "<auth plugin>": {conf} }`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiAuthConf {
    #[serde(default)]
    pub auth_plugins: Vec<AuthPluginEntryConf>,
}

/// One entry of `auth_plugins`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthPluginEntryConf {
    #[serde(rename = "key-auth", default, deserialize_with = "null_is_default")]
    pub key_auth: Option<KeyAuthConf>,
    #[serde(rename = "basic-auth", default, deserialize_with = "null_is_default")]
    pub basic_auth: Option<BasicAuthConf>,
    #[serde(rename = "hmac-auth", default, deserialize_with = "null_is_default")]
    pub hmac_auth: Option<HmacAuthConf>,
    #[serde(rename = "jwt-auth", default, deserialize_with = "null_is_default")]
    pub jwt_auth: Option<JwtAuthConf>,
}
