//! How plugin instances from global rules, routes and consumers combine (APISIX: global rules
//! are never merged; a consumer's plugin replaces the route's of the same name, except
//! consumer-restriction, whose two sides check different things).

use crate::support::{Gateway, Upstream, http};

#[test]
fn global_rules_run_beside_the_route_and_each_other() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"global_rules:
  - id: g1
    plugins:
      response-rewrite: {{headers: {{add: ["X-Rule: g1"]}}}}
  - id: g2
    plugins:
      response-rewrite: {{headers: {{add: ["X-Rule: g2"]}}}}
      consumer-restriction: {{whitelist: [alice, bob]}}
routes:
  - id: r
    uri: /r
    plugins:
      key-auth: {{}}
      response-rewrite: {{headers: {{add: ["X-Rule: route"]}}}}
      consumer-restriction: {{blacklist: [bob]}}
    upstream: {u}
consumers:
  - {{username: alice, plugins: {{key-auth: {{key: alice-key}}}}}}
  - {{username: bob, plugins: {{key-auth: {{key: bob-key}}}}}}
  - {{username: carol, plugins: {{key-auth: {{key: carol-key}}}}}}
#END
"#,
        u = up.yaml()
    ));
    let p = gw.port();

    let r = http(p, "GET", "/r", &[("apikey", "alice-key")], b"");
    assert_eq!(r.status, 200);
    let mut rules = r.headers_all("x-rule");
    rules.sort();
    assert_eq!(rules, ["g1", "g2", "route"], "all three instances ran");

    // The route's restriction and the global rule's both apply.
    let r = http(p, "GET", "/r", &[("apikey", "bob-key")], b"");
    assert_eq!(r.status, 403, "route blacklist");
    let r = http(p, "GET", "/r", &[("apikey", "carol-key")], b"");
    assert_eq!(r.status, 403, "global whitelist");
    assert_eq!(
        r.text(),
        "{\"message\":\"The consumer_name is forbidden.\"}\n"
    );
    // The gateway's own answer passes every instance's response hook too.
    let mut rules = r.headers_all("x-rule");
    rules.sort();
    assert_eq!(rules, ["g1", "g2", "route"]);
}

#[test]
fn consumer_replaces_the_route_instance_but_both_restrictions_run() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"routes:
  - id: r
    uri: /r
    plugins:
      key-auth: {{}}
      response-rewrite: {{headers: {{set: {{X-From: route}}}}}}
      consumer-restriction: {{whitelist: [alice, bob]}}
    upstream: {u}
  - id: other
    uri: /other
    plugins: {{key-auth: {{}}}}
    upstream: {u}
consumers:
  - username: alice
    plugins:
      key-auth: {{key: alice-key}}
      response-rewrite: {{headers: {{set: {{X-From: consumer}}}}}}
      consumer-restriction: {{type: route_id, whitelist: [r]}}
  - {{username: bob, plugins: {{key-auth: {{key: bob-key}}}}}}
#END
"#,
        u = up.yaml()
    ));
    let p = gw.port();

    let r = http(p, "GET", "/r", &[("apikey", "alice-key")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-from"),
        Some("consumer"),
        "the consumer's replaces"
    );
    let r = http(p, "GET", "/r", &[("apikey", "bob-key")], b"");
    assert_eq!(r.header("x-from"), Some("route"));
    // alice's own restriction (route ids) still runs beside the route's (consumer names).
    let r = http(p, "GET", "/other", &[("apikey", "alice-key")], b"");
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "{\"message\":\"The route_id is forbidden.\"}\n");
    let r = http(p, "GET", "/other", &[("apikey", "bob-key")], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn two_global_rules_with_limit_count_both_count() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"global_rules:
  - id: g1
    plugins: {{limit-count: {{count: 5, time_window: 60, key_type: constant, key: all}}}}
  - id: g2
    plugins: {{limit-count: {{count: 2, time_window: 60, key_type: constant, key: all}}}}
routes:
  - id: r
    uri: /r
    plugins: {{limit-count: {{count: 10, time_window: 60, key_type: constant, key: all}}}}
    upstream: {u}
  - id: s
    uri: /s
    upstream: {u}
#END
"#,
        u = up.yaml()
    ));
    let p = gw.port();
    assert_eq!(http(p, "GET", "/r", &[], b"").status, 200);
    assert_eq!(http(p, "GET", "/s", &[], b"").status, 200);
    // g2's quota (2) is spent on the two routes together; g1 and the route's still have room.
    let r = http(p, "GET", "/r", &[], b"");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), "{\"error_msg\":\"API rate limit exceeded\"}\n");
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
}

#[test]
fn attach_consumer_label_from_a_global_rule_sets_labels_and_drops_client_copies() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"global_rules:
  - id: g
    plugins: {{attach-consumer-label: {{headers: {{X-Team: $team}}}}}}
routes:
  - id: r
    uri: /r
    plugins: {{key-auth: {{}}}}
    upstream: {u}
  - id: open
    uri: /open
    upstream: {u}
consumers:
  - {{username: alice, labels: {{team: blue}}, plugins: {{key-auth: {{key: alice-key}}}}}}
  - {{username: bob, plugins: {{key-auth: {{key: bob-key}}}}}}
#END
"#,
        u = up.yaml()
    ));
    let p = gw.port();
    let r = http(
        p,
        "GET",
        "/r",
        &[("apikey", "alice-key"), ("X-Team", "red")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-team"], "blue");
    let r = http(
        p,
        "GET",
        "/r",
        &[("apikey", "bob-key"), ("X-Team", "red")],
        b"",
    );
    assert!(
        r.json()["headers"].get("x-team").is_none(),
        "no label, no header"
    );
    let r = http(p, "GET", "/open", &[("x_team", "red")], b"");
    assert!(r.json()["headers"].get("x-team").is_none());
    assert!(
        r.json()["headers"].get("x_team").is_none(),
        "underscore spelling too"
    );
}
