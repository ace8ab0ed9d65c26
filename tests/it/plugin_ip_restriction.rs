//! ip-restriction through the real binary: the APISIX docs' whitelist example (`192.168.0.1/24`
//! with `message: Access denied`), a blacklist, IPv6 entries, `response_code: 404`, the
//! consumer and consumer-group side, the rejection metric, and the refused confs.

use crate::support::{Gateway, Upstream, assert_line, check_fails, http};

/// The value of `tollgate_plugin_rejections_total` for a route and plugin (0 when absent).
pub fn plugin_rejections(gw: &Gateway, route: &str, plugin: &str) -> u64 {
    let r = http(gw.status_port(), "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .filter(|l| l.starts_with("tollgate_plugin_rejections_total{"))
        .filter(|l| {
            l.contains(&format!("route=\"{route}\"")) && l.contains(&format!("plugin=\"{plugin}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn ip_restriction_follows_the_apisix_examples() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumer_groups:
  - id: blocked-group
    plugins:
      ip-restriction: {{blacklist: ["127.0.0.0/8"], message: "group says no"}}
consumers:
  - {{username: free, plugins: {{key-auth: {{key: free-key}}}}}}
  - username: local-only
    plugins:
      key-auth: {{key: local-key}}
      ip-restriction: {{whitelist: ["::1", "127.0.0.1/32"]}}
  - username: remote-only
    plugins:
      key-auth: {{key: remote-key}}
      ip-restriction: {{whitelist: ["10.0.0.0/8"], response_code: 404, message: "no such thing"}}
  - {{username: grouped, group_id: blocked-group, plugins: {{key-auth: {{key: grouped-key}}}}}}
routes:
  - id: ip-restriction-route
    uri: /anything
    plugins:
      ip-restriction:
        whitelist: ["192.168.0.1/24"]
        message: "Access denied"
    upstream: {u}
  - id: allowed
    uri: /allowed
    plugins:
      ip-restriction: {{whitelist: ["2001:db8::/32", "127.0.0.1"]}}
    upstream: {u}
  - id: black
    uri: /black
    plugins:
      ip-restriction: {{blacklist: ["127.0.0.1", "192.168.10.0/24"]}}
    upstream: {u}
  - id: black-elsewhere
    uri: /black-elsewhere
    plugins:
      ip-restriction: {{blacklist: ["192.168.10.24"]}}
    upstream: {u}
  - id: keyed
    uri: /keyed
    plugins: {{key-auth: {{}}}}
    upstream: {u}
#END
"#,
        u = up.yaml()
    ));

    // curl -i "http://127.0.0.1:9080/anything": 127.0.0.1 is not in 192.168.0.0/24.
    let before = up.seen();
    let r = http(gw.port(), "GET", "/anything", &[], b"");
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "{\"message\":\"Access denied\"}\n");
    assert_eq!(r.header("content-type"), Some("application/json"));
    up.assert_untouched(before, "a refused address");
    assert_eq!(
        plugin_rejections(&gw, "ip-restriction-route", "ip-restriction"),
        1
    );

    let r = http(gw.port(), "GET", "/allowed", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["node"], "up");

    let r = http(gw.port(), "GET", "/black", &[], b"");
    assert_eq!(r.status, 403);
    assert_eq!(
        r.text(),
        "{\"message\":\"Your IP address is not allowed\"}\n"
    );
    let r = http(gw.port(), "GET", "/black-elsewhere", &[], b"");
    assert_eq!(r.status, 200);

    // The consumer side follows the consumer to every route (checked after authentication).
    let r = http(gw.port(), "GET", "/keyed", &[("apikey", "free-key")], b"");
    assert_eq!(r.status, 200);
    let r = http(gw.port(), "GET", "/keyed", &[("apikey", "local-key")], b"");
    assert_eq!(r.status, 200);
    let r = http(gw.port(), "GET", "/keyed", &[("apikey", "remote-key")], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "{\"message\":\"no such thing\"}\n");
    let r = http(
        gw.port(),
        "GET",
        "/keyed",
        &[("apikey", "grouped-key")],
        b"",
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "{\"message\":\"group says no\"}\n");
    assert_eq!(plugin_rejections(&gw, "keyed", "ip-restriction"), 2);
}

#[test]
fn confs_apisix_refuses_are_refused() {
    let conf = |ipr: &str| {
        format!(
            "routes:\n  - id: r\n    uri: /r\n    plugins:\n      ip-restriction: {ipr}\n    upstream: {{nodes: {{\"127.0.0.1:1\": 1}}}}\n#END\n"
        )
    };
    let lines = check_fails(&[(
        "resources.yaml",
        &conf("{whitelist: [127.0.0.1, 10.0.0.300]}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.ip-restriction.whitelist[1]",
        &["invalid ip address: 10.0.0.300"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &conf("{whitelist: [127.0.0.1], blacklist: [10.0.0.1]}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.ip-restriction",
        &["exactly one"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &conf("{blacklist: [10.0.0.1], response_code: 500}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.ip-restriction.response_code",
        &["403 or 404"],
    );
}
