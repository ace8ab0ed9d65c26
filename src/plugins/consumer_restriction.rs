//! consumer-restriction: allow or deny by consumer name, consumer group, service or route id.
//! On the route side it restricts consumers (`consumer_name`, `consumer_group_id`); on a
//! consumer or group it restricts routes (`service_id`, `route_id`). Both sides run: a
//! consumer's instance does not replace the route's.

use std::sync::Arc;

use serde::Deserialize;

use crate::config::raw::MethodConf;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestrictionType {
    #[default]
    ConsumerName,
    ConsumerGroupId,
    ServiceId,
    RouteId,
}

impl RestrictionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsumerName => "consumer_name",
            Self::ConsumerGroupId => "consumer_group_id",
            Self::ServiceId => "service_id",
            Self::RouteId => "route_id",
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    #[serde(default, rename = "type")]
    pub kind: RestrictionType,
    pub whitelist: Option<Vec<String>>,
    pub blacklist: Option<Vec<String>>,
    pub allowed_by_methods: Option<Vec<AllowedByMethodsConf>>,
    pub rejected_code: Option<u16>,
    pub rejected_msg: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedByMethodsConf {
    pub user: Option<String>,
    #[serde(default)]
    pub methods: Vec<MethodConf>,
}

use ahash::{AHashMap, AHashSet};

use super::shape::{CompileCx, CompileError, Instance, Plugin, RequestView, Side, State, Step};
use crate::reject::Reject;
use crate::router::{method_bit, method_mask};

/// Compiled consumer-restriction: sets for the lists, a method mask per user, prebuilt answers.
#[derive(Debug)]
pub(crate) struct Restriction {
    pub kind: RestrictionType,
    whitelist: AHashSet<Box<str>>,
    blacklist: AHashSet<Box<str>>,
    /// First entry per user wins, as in APISIX.
    methods: AHashMap<Box<str>, u16>,
    rejected: Reject,
    no_value: Reject,
}

/// Compiles the conf for its side (each side allows two types).
pub(crate) fn compile(conf: &Conf, cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    Ok(Arc::new(compile_restriction(conf, cx.side)?))
}

fn compile_restriction(conf: &Conf, side: Side) -> Result<Restriction, CompileError> {
    let Conf {
        kind,
        whitelist,
        blacklist,
        allowed_by_methods,
        rejected_code,
        rejected_msg,
    } = conf;
    let allowed = match side {
        Side::Route => matches!(
            kind,
            RestrictionType::ConsumerName | RestrictionType::ConsumerGroupId
        ),
        Side::Consumer => matches!(kind, RestrictionType::ServiceId | RestrictionType::RouteId),
    };
    if !allowed {
        let msg = match side {
            Side::Route => {
                "type service_id and route_id restrict a consumer: configure them on a consumer or consumer group"
            }
            Side::Consumer => {
                "type consumer_name and consumer_group_id restrict a route: configure them on a route or service"
            }
        };
        return Err(("type".into(), msg.into()));
    }
    let list =
        |v: &Option<Vec<String>>, name: &str| -> Result<AHashSet<Box<str>>, (String, String)> {
            match v {
                Some(l) if l.is_empty() => {
                    Err((name.to_string(), "must have at least 1 item".to_string()))
                }
                Some(l) => Ok(l.iter().map(|s| s.as_str().into()).collect()),
                None => Ok(AHashSet::new()),
            }
        };
    let white = list(whitelist, "whitelist")?;
    let black = list(blacklist, "blacklist")?;
    let mut methods = AHashMap::new();
    if let Some(abm) = allowed_by_methods {
        if abm.is_empty() {
            return Err((
                "allowed_by_methods".into(),
                "must have at least 1 item".into(),
            ));
        }
        for (i, e) in abm.iter().enumerate() {
            let Some(user) = &e.user else {
                return Err((format!("allowed_by_methods[{i}].user"), "required".into()));
            };
            if e.methods.is_empty() {
                return Err((
                    format!("allowed_by_methods[{i}].methods"),
                    "must have at least 1 item".into(),
                ));
            }
            methods
                .entry(user.as_str().into())
                .or_insert_with(|| method_mask(e.methods.iter().map(|x| x.as_str())));
        }
    }
    if whitelist.is_none() && blacklist.is_none() && allowed_by_methods.is_none() {
        return Err((
            "".into(),
            "one of whitelist, blacklist or allowed_by_methods is required".into(),
        ));
    }
    let code = rejected_code.unwrap_or(403);
    if !(200..=999).contains(&code) {
        return Err((
            "rejected_code".into(),
            "must be an HTTP status of at least 200".into(),
        ));
    }
    let t = kind.as_str();
    let msg = rejected_msg
        .clone()
        .unwrap_or_else(|| format!("The {t} is forbidden."));
    Ok(Restriction {
        kind: *kind,
        whitelist: white,
        blacklist: black,
        methods,
        rejected: Reject::new(code, Reject::json_body("message", &msg)),
        no_value: Reject::new(
            401,
            Reject::json_body(
                "message",
                &format!("The request is rejected, please check the {t} for this request"),
            ),
        ),
    })
}

impl Restriction {
    /// APISIX's order: blacklist, then whitelist, then allowed_by_methods (skipped when
    /// whitelisted; a value with no entry passes it). `method` is a router method bit.
    pub(crate) fn check(&self, value: Option<&str>, method: u16) -> Result<(), &Reject> {
        let Some(v) = value else {
            return Err(&self.no_value);
        };
        if self.blacklist.contains(v) {
            return Err(&self.rejected);
        }
        let mut blocked = false;
        let mut whitelisted = false;
        if !self.whitelist.is_empty() {
            whitelisted = self.whitelist.contains(v);
            blocked = !whitelisted;
        }
        if !self.methods.is_empty()
            && !whitelisted
            && let Some(mask) = self.methods.get(v)
            && mask & method == 0
        {
            blocked = true;
        }
        if blocked { Err(&self.rejected) } else { Ok(()) }
    }
}

impl Plugin for Restriction {
    fn name(&self) -> &'static str {
        "consumer-restriction"
    }

    fn priority(&self) -> i32 {
        2400
    }

    /// The route's restriction and the consumer's check different things: both run.
    fn consumer_replaces_route(&self) -> bool {
        false
    }

    fn request(&self, r: &RequestView<'_>, _state: &mut State) -> Option<Step> {
        let value = match self.kind {
            RestrictionType::ConsumerName => r.consumer,
            RestrictionType::ConsumerGroupId => r.consumer_group,
            RestrictionType::ServiceId => r.service_id,
            RestrictionType::RouteId => Some(r.route_id),
        };
        Some(
            match self.check(value, method_bit(r.req.method.as_str().as_bytes())) {
                Ok(()) => Step::Continue,
                Err(reject) => Step::Respond(reject.clone()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(y: &str) -> Conf {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn precedence() {
        let r = compile_restriction(&conf("{whitelist: [a, b], blacklist: [b], allowed_by_methods: [{user: c, methods: [GET]}]}"), Side::Route).unwrap();
        let get = method_bit(b"GET");
        assert!(r.check(Some("a"), get).is_ok());
        assert_eq!(r.check(Some("b"), get).unwrap_err().status, 403);
        assert!(r.check(Some("c"), get).is_err(), "not whitelisted");
        assert_eq!(r.check(None, get).unwrap_err().status, 401);
        let m = compile_restriction(
            &conf("{allowed_by_methods: [{user: c, methods: [POST]}]}"),
            Side::Route,
        )
        .unwrap();
        assert!(m.check(Some("c"), get).is_err());
        assert!(m.check(Some("c"), method_bit(b"POST")).is_ok());
        assert!(m.check(Some("d"), get).is_ok(), "unlisted users pass");
    }

    #[test]
    fn invalid_forms() {
        assert!(compile_restriction(&conf("{rejected_code: 404}"), Side::Route).is_err());
        assert_eq!(
            compile_restriction(&conf("{whitelist: [a], rejected_code: 100}"), Side::Route)
                .unwrap_err()
                .0,
            "rejected_code"
        );
        assert_eq!(
            compile_restriction(&conf("{type: service_id, whitelist: [a]}"), Side::Route)
                .unwrap_err()
                .0,
            "type"
        );
        assert!(
            serde_yaml::from_str::<Conf>("{allowed_by_methods: [{user: a, methods: [FETCH]}]}")
                .is_err()
        );
        let r =
            compile_restriction(&conf("{whitelist: [a], rejected_msg: a/b}"), Side::Route).unwrap();
        assert_eq!(
            &r.check(Some("x"), 1).unwrap_err().body[..],
            b"{\"message\":\"a/b\"}\n"
        );
    }
}
