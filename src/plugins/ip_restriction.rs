//! ip-restriction (APISIX priority 3000; route side, consumer and consumer group): allows only
//! the client addresses of `whitelist`, or refuses those of `blacklist` (exactly one of the two),
//! each a list of IPv4/IPv6 addresses and CIDRs. A refused request gets `response_code` (403 or
//! 404, default 403) with `{"message":"<message>"}`, built at load.
//!
//! The client address is the TCP peer's (APISIX's `remote_addr` without the real-ip plugin); an
//! IPv4-mapped IPv6 peer (`::ffff:10.0.0.1`) is matched as the IPv4 address. On the route side
//! it runs before authentication; on a consumer or group it runs after, so a consumer's own list
//! follows it on every route.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

use super::shape::{CompileCx, CompileError, Instance, Plugin, RequestView, State, Step};
use crate::reject::Reject;

/// The APISIX conf.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    pub whitelist: Option<Vec<String>>,
    pub blacklist: Option<Vec<String>>,
    /// Default "Your IP address is not allowed", 1 to 1024 characters.
    pub message: Option<String>,
    /// Default 403; 403 or 404.
    pub response_code: Option<u16>,
}

const DEFAULT_MESSAGE: &str = "Your IP address is not allowed";

/// The compiled plugin.
#[derive(Debug)]
pub(crate) struct IpRestriction {
    /// Whitelist (true: listed addresses pass) or blacklist.
    allow_listed: bool,
    /// Sorted, truncated to their networks.
    nets: Box<[IpNet]>,
    rejection: Reject,
}

pub(crate) fn compile(conf: &Conf, _cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    let Conf {
        whitelist,
        blacklist,
        message,
        response_code,
    } = conf;
    let (field, list, allow_listed) = match (whitelist, blacklist) {
        (Some(w), None) => ("whitelist", w, true),
        (None, Some(b)) => ("blacklist", b, false),
        (Some(_), Some(_)) => {
            return Err((
                String::new(),
                "set exactly one of whitelist and blacklist, not both".into(),
            ));
        }
        (None, None) => {
            return Err((
                String::new(),
                "one of whitelist and blacklist is required".into(),
            ));
        }
    };
    if list.is_empty() {
        return Err((field.into(), "must hold at least one address".into()));
    }
    let mut nets = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        nets.push(parse_net(item).ok_or_else(|| {
            (
                format!("{field}[{i}]"),
                format!("invalid ip address: {item}"),
            )
        })?);
    }
    nets.sort();
    nets.dedup();
    let message = message.as_deref().unwrap_or(DEFAULT_MESSAGE);
    if message.is_empty() || message.chars().count() > 1024 {
        return Err(("message".into(), "must be 1 to 1024 characters".into()));
    }
    let code = response_code.unwrap_or(403);
    if !(403..=404).contains(&code) {
        return Err((
            "response_code".into(),
            format!("must be 403 or 404, got {code}"),
        ));
    }
    Ok(Arc::new(IpRestriction {
        allow_listed,
        nets: nets.into_boxed_slice(),
        rejection: Reject::new(code, Reject::json_body("message", message)),
    }))
}

/// An address (a /32 or /128) or a CIDR; host bits of a CIDR are dropped (`192.168.0.1/24`
/// means `192.168.0.0/24`, as APISIX reads it).
fn parse_net(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        let net: IpNet = s.parse().ok()?;
        Some(canonical_net(net.trunc()))
    } else {
        let ip: IpAddr = s.parse().ok()?;
        Some(IpNet::from(ip.to_canonical()))
    }
}

/// `::ffff:a.b.c.d/n` (n >= 96) is the IPv4 network it maps.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

impl IpRestriction {
    /// Whether an address may pass.
    fn allows(&self, ip: Option<IpAddr>) -> bool {
        let listed = ip.is_some_and(|ip| {
            let ip = ip.to_canonical();
            self.nets.iter().any(|n| n.contains(&ip))
        });
        listed == self.allow_listed
    }
}

impl Plugin for IpRestriction {
    fn name(&self) -> &'static str {
        "ip-restriction"
    }

    fn priority(&self) -> i32 {
        3000
    }

    fn request(&self, r: &RequestView<'_>, _state: &mut State) -> Option<Step> {
        Some(if self.allows(r.remote) {
            Step::Continue
        } else {
            Step::Respond(self.rejection.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::shape::Side;

    fn build(yaml: &str) -> Result<IpRestriction, CompileError> {
        let conf: Conf = serde_yaml::from_str(yaml).unwrap();
        let cx = CompileCx {
            owner: "route:r",
            side: Side::Route,
        };
        compile(&conf, &cx)?;
        // The concrete type, for `allows`.
        let Conf {
            whitelist,
            blacklist,
            ..
        } = conf;
        let (list, allow_listed) = match (whitelist, blacklist) {
            (Some(w), _) => (w, true),
            (_, Some(b)) => (b, false),
            _ => unreachable!(),
        };
        Ok(IpRestriction {
            allow_listed,
            nets: list.iter().map(|s| parse_net(s).unwrap()).collect(),
            rejection: Reject::new(403, bytes::Bytes::new()),
        })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn whitelist_and_blacklist_v4_v6() {
        let w = build("whitelist: ['192.168.0.1/24', '127.0.0.1', '2001:db8::/32']").unwrap();
        assert!(w.allows(ip("192.168.0.77")));
        assert!(w.allows(ip("127.0.0.1")));
        assert!(w.allows(ip("::ffff:127.0.0.1")), "v4-mapped peer");
        assert!(w.allows(ip("2001:db8:1::5")));
        assert!(!w.allows(ip("192.168.1.1")));
        assert!(!w.allows(ip("2001:db9::1")));
        assert!(!w.allows(None));
        let b = build("blacklist: ['10.0.0.0/8', '::1']").unwrap();
        assert!(!b.allows(ip("10.1.2.3")));
        assert!(!b.allows(ip("::1")));
        assert!(b.allows(ip("127.0.0.1")));
        let m = build("blacklist: ['::ffff:10.0.0.0/104']").unwrap();
        assert!(!m.allows(ip("10.9.9.9")));
    }

    #[test]
    fn bad_confs_are_refused() {
        assert_eq!(
            build("{whitelist: [127.0.0.1], blacklist: [10.0.0.1]}")
                .unwrap_err()
                .1,
            "set exactly one of whitelist and blacklist, not both"
        );
        assert_eq!(build("{}").unwrap_err().0, "");
        assert_eq!(build("whitelist: []").unwrap_err().0, "whitelist");
        let e = build("whitelist: [127.0.0.1, 300.1.1.1]").unwrap_err();
        assert_eq!(
            e,
            (
                "whitelist[1]".into(),
                "invalid ip address: 300.1.1.1".into()
            )
        );
        assert_eq!(
            build("{blacklist: [10.0.0.1/33]}").unwrap_err().0,
            "blacklist[0]"
        );
        assert_eq!(
            build("{blacklist: [10.0.0.1], response_code: 401}")
                .unwrap_err()
                .0,
            "response_code"
        );
        assert_eq!(
            build("{blacklist: [10.0.0.1], message: ''}").unwrap_err().0,
            "message"
        );
    }
}
