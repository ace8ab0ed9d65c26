//! Several auth plugins on one route (issue 4): all of them must pass (AND), and multi-auth
//! tries its plugins in order until one succeeds (OR).

use serde_json::json;

use crate::auth_common::{assert_reject, echo, get, ident, up_header, who};
use crate::signing::{basic, bearer, hs256};
use crate::support::{Gateway, Seen, Upstream, assert_line, check_fails};

#[test]
fn two_auth_plugins_on_a_route_must_both_pass() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: alice
    plugins:
      key-auth: {{key: alice-key}}
      basic-auth: {{username: alice, password: alice-pw}}
  - username: bob
    credentials:
      - {{name: pw, plugins: {{basic-auth: {{username: bob, password: bob-pw}}}}}}
  - username: guest
routes:
  - {{id: and, uri: /and, plugins: {{key-auth: {{}}, basic-auth: {{}}}}, upstream: {up}}}
  - id: and-anon
    uri: /and-anon
    plugins: {{key-auth: {{anonymous_consumer: guest}}, basic-auth: {{}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let alice_basic = basic("alice:alice-pw");
    let bob_basic = basic("bob:bob-pw");
    // basic-auth (2520) runs before key-auth (2500): the first failure answers.
    assert_reject(
        &get(&gw, "/and", &[]),
        401,
        "Missing authorization in request",
        Some(r#"Basic realm="basic""#),
    );
    assert_reject(
        &get(&gw, "/and", &[("apikey", "alice-key")]),
        401,
        "Missing authorization in request",
        Some(r#"Basic realm="basic""#),
    );
    assert_reject(
        &get(&gw, "/and", &[("Authorization", &alice_basic)]),
        401,
        "Missing API key in request",
        Some(r#"apikey realm="key""#),
    );
    assert_reject(
        &get(
            &gw,
            "/and",
            &[
                ("Authorization", &basic("alice:x")),
                ("apikey", "alice-key"),
            ],
        ),
        401,
        "Invalid user authorization",
        Some(r#"Basic realm="basic""#),
    );
    up.assert_untouched(Seen::default(), "rejected requests");
    assert_eq!(
        who(&get(
            &gw,
            "/and",
            &[("Authorization", &alice_basic), ("apikey", "alice-key")]
        )),
        ident("alice", None, None)
    );
    // Different consumers: the one key-auth (lowest priority, found last) identified.
    assert_eq!(
        who(&get(
            &gw,
            "/and",
            &[("Authorization", &bob_basic), ("apikey", "alice-key")]
        )),
        ident("alice", None, None)
    );
    // Each plugin's anonymous_consumer applies to that plugin alone.
    assert_eq!(
        who(&get(&gw, "/and-anon", &[("Authorization", &bob_basic)])),
        ident("guest", None, None)
    );
    assert_reject(
        &get(&gw, "/and-anon", &[("apikey", "alice-key")]),
        401,
        "Missing authorization in request",
        Some(r#"Basic realm="basic""#),
    );
}

#[test]
fn multi_auth_tries_plugins_in_order_and_the_first_success_wins() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: alice, plugins: {{key-auth: {{key: alice-key}}}}}}
  - username: bob
    credentials:
      - {{name: pw, plugins: {{basic-auth: {{username: bob, password: bob-pw}}}}}}
  - {{username: jay, plugins: {{jwt-auth: {{key: jay-key, secret: jay-secret}}}}}}
routes:
  - id: multi
    uri: /multi
    plugins:
      multi-auth:
        auth_plugins: [{{key-auth: {{}}}}, {{basic-auth: {{}}}}]
    upstream: {up}
  - id: multi3
    uri: /multi3
    plugins:
      multi-auth:
        auth_plugins:
          - basic-auth: {{}}
          - jwt-auth: {{}}
          - key-auth: {{hide_credentials: true}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let bob_basic = basic("bob:bob-pw");
    let alice = ident("alice", None, None);
    let bob = ident("bob", Some("pw"), None);
    assert_eq!(who(&get(&gw, "/multi", &[("apikey", "alice-key")])), alice);
    assert_eq!(
        who(&get(&gw, "/multi", &[("Authorization", &bob_basic)])),
        bob
    );
    assert_eq!(
        who(&get(
            &gw,
            "/multi",
            &[("apikey", "wrong"), ("Authorization", &bob_basic)]
        )),
        bob
    );
    assert_eq!(
        who(&get(
            &gw,
            "/multi",
            &[("apikey", "alice-key"), ("Authorization", &bob_basic)]
        )),
        alice,
        "the first plugin that succeeds wins"
    );
    // All fail: 401 with the challenge of the last plugin tried.
    for headers in [
        vec![],
        vec![("apikey", "wrong")],
        vec![("Authorization", "Basic Ym9iOndyb25n")],
    ] {
        assert_reject(
            &get(&gw, "/multi", &headers),
            401,
            "Authorization Failed",
            Some(r#"Basic realm="basic""#),
        );
    }

    let token = hs256("jay-secret", &json!({"key": "jay-key"}));
    assert_eq!(
        who(&get(&gw, "/multi3", &[("Authorization", &bearer(&token))])),
        ident("jay", None, None)
    );
    let v = echo(&get(&gw, "/multi3", &[("apikey", "alice-key")]));
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("alice")
    );
    assert_eq!(
        up_header(&v, "apikey"),
        None,
        "hide_credentials of the inner plugin that succeeded"
    );
    assert_reject(
        &get(&gw, "/multi3", &[]),
        401,
        "Authorization Failed",
        Some(r#"apikey realm="key""#),
    );

    // Fewer than two plugins: a config error.
    let bad = "routes:\n  - {id: r, uri: /x, plugins: {multi-auth: {auth_plugins: [{key-auth: {}}]}}, upstream: {nodes: {\"127.0.0.1:9\": 1}}}\n";
    let lines = check_fails(&[("resources.yaml", bad)]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.multi-auth.auth_plugins",
        &["at least 2"],
    );
}
