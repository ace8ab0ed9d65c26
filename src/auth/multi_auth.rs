//! multi-auth: OR over auth plugins, tried in order; the first success wins.

use serde::Deserialize;

use super::basic_auth::BasicAuthConf;
use super::hmac_auth::HmacAuthConf;
use super::jwt_auth::JwtAuthConf;
use super::key_auth::KeyAuthConf;
use crate::config::de::null_is_default;

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

use super::AuthPlugin;
use crate::ids::ConsumerId;

/// Resolves an `anonymous_consumer` name to a consumer.
pub(crate) type AnonymousLookup<'a> =
    &'a dyn Fn(&Option<String>) -> Result<Option<ConsumerId>, String>;

/// Compiles `auth_plugins`; `anonymous` resolves an `anonymous_consumer` name.
pub(crate) fn compile(
    conf: &MultiAuthConf,
    anonymous: AnonymousLookup<'_>,
) -> Result<AuthPlugin, (String, String)> {
    let MultiAuthConf { auth_plugins } = conf;
    if auth_plugins.len() < 2 {
        return Err((
            "auth_plugins".into(),
            "expect array to have at least 2 items".into(),
        ));
    }
    let mut list = Vec::new();
    for (i, e) in auth_plugins.iter().enumerate() {
        let n = [
            e.key_auth.is_some(),
            e.basic_auth.is_some(),
            e.hmac_auth.is_some(),
            e.jwt_auth.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n != 1 {
            return Err((
                format!("auth_plugins[{i}]"),
                "each entry holds exactly one auth plugin".into(),
            ));
        }
        let at = |name: &str, r: Result<AuthPlugin, (String, String)>| {
            r.map_err(|(f, m)| (format!("auth_plugins[{i}].{name}.{f}"), m))
        };
        let anon = |name: &str, a: &Option<String>| {
            anonymous(a).map_err(|m| (format!("auth_plugins[{i}].{name}.anonymous_consumer"), m))
        };
        let p = if let Some(c) = &e.key_auth {
            at(
                "key-auth",
                super::key_auth::compile(c, anon("key-auth", &c.anonymous_consumer)?)
                    .map(AuthPlugin::Key),
            )?
        } else if let Some(c) = &e.basic_auth {
            at(
                "basic-auth",
                super::basic_auth::compile(c, anon("basic-auth", &c.anonymous_consumer)?)
                    .map(AuthPlugin::Basic),
            )?
        } else if let Some(c) = &e.hmac_auth {
            at(
                "hmac-auth",
                super::hmac_auth::compile(c, anon("hmac-auth", &c.anonymous_consumer)?)
                    .map(AuthPlugin::Hmac),
            )?
        } else if let Some(c) = &e.jwt_auth {
            at(
                "jwt-auth",
                super::jwt_auth::compile(c, anon("jwt-auth", &c.anonymous_consumer)?)
                    .map(AuthPlugin::Jwt),
            )?
        } else {
            continue;
        };
        list.push(p);
    }
    Ok(AuthPlugin::Multi(list.into_boxed_slice()))
}
