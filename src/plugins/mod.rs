//! The typed `plugins:` maps of routes, services and consumers, and the null-as-default rule.
//!
//! Every plugin tollgate implements is a field here; any other name is refused by serde as
//! "not supported by tollgate". A bare `key-auth:` (YAML null) turns the plugin on with its
//! defaults, as APISIX does: it is never read as absent.

pub mod attach_consumer_label;
pub mod consumer_restriction;
pub mod limit_count;

use serde::{Deserialize, Deserializer};

use crate::auth::basic_auth::{BasicAuthConf, BasicAuthCredentialConf};
use crate::auth::hmac_auth::{HmacAuthConf, HmacAuthCredentialConf};
use crate::auth::jwt_auth::{JwtAuthConf, JwtAuthCredentialConf};
use crate::auth::key_auth::{KeyAuthConf, KeyAuthCredentialConf};
use crate::auth::multi_auth::MultiAuthConf;
use attach_consumer_label::AttachConsumerLabelConf;
use consumer_restriction::ConsumerRestrictionConf;
use limit_count::LimitCountConf;

/// Reads a plugin slot so that YAML null gives the default conf, not "absent".
pub(crate) fn null_is_default<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// Plugins on a route, service, plugin config or global rule.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePluginsConf {
    #[serde(rename = "key-auth", default, deserialize_with = "null_is_default")]
    pub key_auth: Option<KeyAuthConf>,
    #[serde(rename = "basic-auth", default, deserialize_with = "null_is_default")]
    pub basic_auth: Option<BasicAuthConf>,
    #[serde(rename = "hmac-auth", default, deserialize_with = "null_is_default")]
    pub hmac_auth: Option<HmacAuthConf>,
    #[serde(rename = "jwt-auth", default, deserialize_with = "null_is_default")]
    pub jwt_auth: Option<JwtAuthConf>,
    #[serde(rename = "multi-auth", default, deserialize_with = "null_is_default")]
    pub multi_auth: Option<MultiAuthConf>,
    #[serde(rename = "consumer-restriction", default, deserialize_with = "null_is_default")]
    pub consumer_restriction: Option<ConsumerRestrictionConf>,
    #[serde(rename = "limit-count", default, deserialize_with = "null_is_default")]
    pub limit_count: Option<LimitCountConf>,
    #[serde(rename = "attach-consumer-label", default, deserialize_with = "null_is_default")]
    pub attach_consumer_label: Option<AttachConsumerLabelConf>,
}

impl RoutePluginsConf {
    /// Fills every slot `self` leaves empty from `lower` (route over plugin config over service).
    pub fn or(mut self, lower: &RoutePluginsConf) -> RoutePluginsConf {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = lower.$f.clone(); } )* };
        }
        fill!(key_auth, basic_auth, hmac_auth, jwt_auth, multi_auth, consumer_restriction, limit_count, attach_consumer_label);
        self
    }
}

/// Plugins on a consumer, a consumer group or a credential: the consumer side of each auth
/// plugin (the credential itself) plus the plugins that apply per identity.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerPluginsConf {
    #[serde(rename = "key-auth", default, deserialize_with = "null_is_default")]
    pub key_auth: Option<KeyAuthCredentialConf>,
    #[serde(rename = "basic-auth", default, deserialize_with = "null_is_default")]
    pub basic_auth: Option<BasicAuthCredentialConf>,
    #[serde(rename = "hmac-auth", default, deserialize_with = "null_is_default")]
    pub hmac_auth: Option<HmacAuthCredentialConf>,
    #[serde(rename = "jwt-auth", default, deserialize_with = "null_is_default")]
    pub jwt_auth: Option<JwtAuthCredentialConf>,
    #[serde(rename = "consumer-restriction", default, deserialize_with = "null_is_default")]
    pub consumer_restriction: Option<ConsumerRestrictionConf>,
    #[serde(rename = "limit-count", default, deserialize_with = "null_is_default")]
    pub limit_count: Option<LimitCountConf>,
    #[serde(rename = "attach-consumer-label", default, deserialize_with = "null_is_default")]
    pub attach_consumer_label: Option<AttachConsumerLabelConf>,
}

impl ConsumerPluginsConf {
    /// Names of the auth plugins set here (a credential must hold exactly one).
    pub fn auth_plugin_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.key_auth.is_some() {
            v.push("key-auth");
        }
        if self.basic_auth.is_some() {
            v.push("basic-auth");
        }
        if self.hmac_auth.is_some() {
            v.push("hmac-auth");
        }
        if self.jwt_auth.is_some() {
            v.push("jwt-auth");
        }
        v
    }

    /// Names of the non-auth plugins set here.
    pub fn other_plugin_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.consumer_restriction.is_some() {
            v.push("consumer-restriction");
        }
        if self.limit_count.is_some() {
            v.push("limit-count");
        }
        if self.attach_consumer_label.is_some() {
            v.push("attach-consumer-label");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_plugin_is_on_with_defaults() {
        let p: RoutePluginsConf = serde_yaml::from_str("key-auth:\nbasic-auth: {}\n").unwrap();
        assert!(p.key_auth.is_some());
        assert!(p.basic_auth.is_some());
        assert!(p.jwt_auth.is_none());
        let c: ConsumerPluginsConf = serde_yaml::from_str("jwt-auth:\n").unwrap();
        assert!(c.jwt_auth.is_some());
    }

    #[test]
    fn unknown_plugin_is_refused() {
        let e = serde_yaml::from_str::<RoutePluginsConf>("proxy-rewrite: {}\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `proxy-rewrite`"));
    }
}

/// The compiled plugins of a route (service, plugin config and global rules merged in).
#[derive(Debug, Default)]
pub struct RoutePlugins {}
