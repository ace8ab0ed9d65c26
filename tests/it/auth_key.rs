//! key-auth (issue 4): the seeds' example end to end, the header then the query with APISIX's
//! messages, `hide_credentials`, and the anonymous consumer. Every test runs the real binary
//! against an echo upstream, whose JSON answer shows the headers and URI it received.

use crate::auth_common::{assert_reject, echo, get, ident, up_header, who};
use crate::support::{Gateway, Seen, Upstream, assert_line, check_fails};

// ---------------------------------------------------------------------------------------------
// The seeds' example, end to end

#[test]
fn seed_example_fetchbot_and_johndoe_on_petstore() {
    let up = Upstream::start("petstore");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: FetchBot
    plugins:
      key-auth:
        key: bot-key
  - username: JohnDoe
    plugins:
      key-auth:
        key: john-key
routes:
  - id: petstore
    uri: "/petstore/*"
    plugins:
      key-auth: {{}}
    upstream: {}
#END
"#,
        up.yaml()
    ));
    let challenge = Some(r#"apikey realm="key""#);
    assert_reject(
        &get(&gw, "/petstore/pets", &[]),
        401,
        "Missing API key in request",
        challenge,
    );
    assert_reject(
        &get(&gw, "/petstore/pets", &[("apikey", "wrong-key")]),
        401,
        "Invalid API key in request",
        challenge,
    );
    up.assert_untouched(
        Seen::default(),
        "rejected requests never reach the upstream",
    );

    let bot = get(&gw, "/petstore/pets/1", &[("apikey", "bot-key")]);
    assert_eq!(who(&bot), ident("FetchBot", None, None));
    assert_eq!(echo(&bot)["uri"], "/petstore/pets/1");
    let john = get(&gw, "/petstore/pets?limit=2", &[("apikey", "john-key")]);
    assert_eq!(who(&john), ident("JohnDoe", None, None));
    assert_eq!(echo(&john)["uri"], "/petstore/pets?limit=2");
    assert_eq!(up.hits(), 2);
}

// ---------------------------------------------------------------------------------------------
// key-auth

#[test]
fn key_auth_reads_header_then_query_with_apisix_messages() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: alice, plugins: {{key-auth: {{key: alice-key}}}}}}
  - {{username: bob, plugins: {{key-auth: {{key: "b+b/="}}}}}}
routes:
  - {{id: default, uri: /default, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - id: custom
    uri: /custom
    plugins: {{key-auth: {{header: X-Api-Key, query: token, realm: "my realm"}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let key = Some(r#"apikey realm="key""#);
    let alice = ident("alice", None, None);

    // Defaults: header `apikey` (any case), query `apikey` (percent-decoded).
    assert_eq!(
        who(&get(&gw, "/default", &[("apikey", "alice-key")])),
        alice
    );
    assert_eq!(
        who(&get(&gw, "/default", &[("APIKEY", "alice-key")])),
        alice
    );
    assert_eq!(who(&get(&gw, "/default?apikey=alice-key", &[])), alice);
    assert_eq!(
        who(&get(&gw, "/default?x=1&apikey=b%2Bb%2F%3D", &[])),
        ident("bob", None, None)
    );
    assert_reject(
        &get(&gw, "/default", &[]),
        401,
        "Missing API key in request",
        key,
    );
    assert_reject(
        &get(&gw, "/default?other=alice-key", &[]),
        401,
        "Missing API key in request",
        key,
    );
    // A header that is present (even empty or wrong) is the key; the query is not consulted.
    for header in ["wrong", ""] {
        assert_reject(
            &get(&gw, "/default?apikey=alice-key", &[("apikey", header)]),
            401,
            "Invalid API key in request",
            key,
        );
    }
    // A repeated or bare query argument matches no key.
    for target in [
        "/default?apikey=alice-key&apikey=alice-key",
        "/default?apikey",
    ] {
        assert_reject(
            &get(&gw, target, &[]),
            401,
            "Invalid API key in request",
            key,
        );
    }
    // Keys are case-sensitive.
    assert_reject(
        &get(&gw, "/default", &[("apikey", "ALICE-KEY")]),
        401,
        "Invalid API key in request",
        key,
    );

    // Custom header, query and realm.
    assert_eq!(
        who(&get(&gw, "/custom", &[("x-api-key", "alice-key")])),
        alice
    );
    assert_eq!(who(&get(&gw, "/custom?token=alice-key", &[])), alice);
    let custom = Some(r#"apikey realm="my realm""#);
    assert_reject(
        &get(&gw, "/custom?apikey=alice-key", &[("apikey", "alice-key")]),
        401,
        "Missing API key in request",
        custom,
    );
    assert_reject(
        &get(&gw, "/custom", &[("X-Api-Key", "nope")]),
        401,
        "Invalid API key in request",
        custom,
    );
}

#[test]
fn key_auth_hide_credentials_removes_only_the_source_used() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: alice, plugins: {{key-auth: {{key: alice-key}}}}}}
routes:
  - {{id: hide, uri: /hide, plugins: {{key-auth: {{hide_credentials: true}}}}, upstream: {up}}}
  - {{id: keep, uri: /keep, plugins: {{key-auth: {{hide_credentials: false}}}}, upstream: {up}}}
  - id: custom
    uri: /custom
    plugins: {{key-auth: {{hide_credentials: true, header: X-Key, query: k}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    // From the header: the header goes, a query argument of the same name stays.
    let v = echo(&get(&gw, "/hide?apikey=other", &[("apikey", "alice-key")]));
    assert_eq!(up_header(&v, "apikey"), None);
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("alice")
    );
    assert_eq!(v["uri"], "/hide?apikey=other");
    // From the query: the argument goes, the others stay in order.
    let v = echo(&get(&gw, "/hide?a=1&apikey=alice-key&b=2", &[]));
    assert_eq!(v["uri"], "/hide?a=1&b=2");
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("alice")
    );
    let v = echo(&get(&gw, "/hide?apikey=alice-key", &[]));
    assert_eq!(v["uri"], "/hide");
    // Custom names.
    let v = echo(&get(&gw, "/custom", &[("X-Key", "alice-key")]));
    assert_eq!(up_header(&v, "x-key"), None);
    let v = echo(&get(&gw, "/custom?k=alice-key&z=9", &[]));
    assert_eq!(v["uri"], "/custom?z=9");
    // Without hide_credentials the key goes upstream as sent.
    let v = echo(&get(&gw, "/keep", &[("apikey", "alice-key")]));
    assert_eq!(up_header(&v, "apikey").as_deref(), Some("alice-key"));
    let v = echo(&get(&gw, "/keep?apikey=alice-key", &[]));
    assert_eq!(v["uri"], "/keep?apikey=alice-key");
}

#[test]
fn key_auth_anonymous_consumer_takes_failed_requests() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: alice, labels: {{custom_id: alice-cid}}, plugins: {{key-auth: {{key: alice-key}}}}}}
  - username: guest
    labels: {{custom_id: guest-cid, tier: free}}
    plugins:
      attach-consumer-label: {{headers: {{X-Tier: $tier}}}}
      consumer-restriction: {{type: route_id, blacklist: [anon-denied]}}
routes:
  - {{id: anon, uri: /anon, plugins: {{key-auth: {{anonymous_consumer: guest}}}}, upstream: {up}}}
  - {{id: anon-denied, uri: /anon-denied, plugins: {{key-auth: {{anonymous_consumer: guest}}}}, upstream: {up}}}
  - id: anon-hide
    uri: /anon-hide
    plugins: {{key-auth: {{anonymous_consumer: guest, hide_credentials: true}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    // The anonymous consumer: its username, never a credential id or custom id.
    let guest = ident("guest", None, None);
    assert_eq!(who(&get(&gw, "/anon", &[])), guest);
    assert_eq!(who(&get(&gw, "/anon", &[("apikey", "wrong")])), guest);
    assert_eq!(
        who(&get(
            &gw,
            "/anon",
            &[
                ("x-consumer-custom-id", "forged"),
                ("x-consumer-username", "x")
            ]
        )),
        guest
    );
    assert_eq!(
        who(&get(&gw, "/anon", &[("apikey", "alice-key")])),
        ident("alice", None, Some("alice-cid"))
    );
    // On the fallback with hide_credentials, both the header and the query argument go.
    let v = echo(&get(
        &gw,
        "/anon-hide?x=1&apikey=wrong-q",
        &[("apikey", "wrong-h")],
    ));
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("guest")
    );
    assert_eq!(up_header(&v, "apikey"), None);
    assert_eq!(v["uri"], "/anon-hide?x=1");

    // The anonymous consumer's own plugins apply to it.
    let v = echo(&get(&gw, "/anon", &[("X-Tier", "forged")]));
    assert_eq!(up_header(&v, "x-tier").as_deref(), Some("free"));
    let v = echo(&get(
        &gw,
        "/anon",
        &[("apikey", "alice-key"), ("X-Tier", "forged")],
    ));
    assert_eq!(up_header(&v, "x-tier"), None, "alice has no tier label");
    let resp = get(&gw, "/anon-denied", &[]);
    assert_eq!(
        (resp.status, resp.text()),
        (
            403,
            "{\"message\":\"The route_id is forbidden.\"}\n".to_owned()
        )
    );
    assert_eq!(
        who(&get(&gw, "/anon-denied", &[("apikey", "alice-key")])),
        ident("alice", None, Some("alice-cid"))
    );

    // A name that does not exist is a config error.
    let bad = "consumers:\n  - {username: alice, plugins: {key-auth: {key: k}}}\nroutes:\n  - {id: r, uri: /x, plugins: {key-auth: {anonymous_consumer: nobody}}, upstream: {nodes: {\"127.0.0.1:9\": 1}}}\n";
    let lines = check_fails(&[("resources.yaml", bad)]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.key-auth.anonymous_consumer",
        &["nobody"],
    );
}
