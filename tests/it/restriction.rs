//! consumer-restriction (issue 5): every type, mode and placement through the real binary —
//! whitelist, blacklist, allowed_by_methods and their precedence, consumer groups, service and
//! route restrictions on a consumer or group, custom rejected_code / rejected_msg, the
//! no-consumer 401, the a7 skill's examples, and the config checks of each invalid form.

use serde_json::json;

use crate::support::{Gateway, Resp, Seen, Upstream, http, tollgate_check};

// ---------------------------------------------------------------------------------------------
// Helpers

/// One config for every test: consumers with keys `<name>-key`, groups, services and routes.
fn start(up: &Upstream) -> Gateway {
    let up = up.yaml();
    Gateway::start(&format!(
        r#"consumer_groups:
  - {{id: gold, plugins: {{}}}}
  - {{id: silver, plugins: {{}}}}
  - id: limited
    plugins:
      consumer-restriction: {{type: route_id, blacklist: [secret-route]}}
consumers:
  - {{username: jack1, plugins: {{key-auth: {{key: jack1-key}}}}}}
  - {{username: jack2, plugins: {{key-auth: {{key: jack2-key}}}}}}
  - {{username: admin, plugins: {{key-auth: {{key: admin-key}}}}}}
  - {{username: readonly, plugins: {{key-auth: {{key: readonly-key}}}}}}
  - {{username: bad-actor, plugins: {{key-auth: {{key: bad-actor-key}}}}}}
  - {{username: acme-corp, plugins: {{key-auth: {{key: acme-corp-key}}}}}}
  - {{username: enterprise-user, plugins: {{key-auth: {{key: enterprise-user-key}}}}}}
  - {{username: pro-user, plugins: {{key-auth: {{key: pro-user-key}}}}}}
  - {{username: free-user, plugins: {{key-auth: {{key: free-user-key}}}}}}
  - {{username: gold1, group_id: gold, plugins: {{key-auth: {{key: gold1-key}}}}}}
  - {{username: silver1, group_id: silver, plugins: {{key-auth: {{key: silver1-key}}}}}}
  - {{username: grouped, group_id: limited, plugins: {{key-auth: {{key: grouped-key}}}}}}
  - username: api-user
    plugins:
      key-auth: {{key: api-user-key}}
      consumer-restriction: {{type: service_id, whitelist: ["1"], rejected_code: 403}}
  - username: limited-user
    plugins:
      key-auth: {{key: limited-user-key}}
      consumer-restriction: {{type: route_id, whitelist: ["1"], rejected_code: 401}}
  - username: get-only-on-1
    plugins:
      key-auth: {{key: get-only-on-1-key}}
      consumer-restriction:
        type: route_id
        allowed_by_methods: [{{user: "1", methods: [GET]}}]
  - username: sneaky
    credentials:
      - {{name: k, plugins: {{key-auth: {{key: sneaky-key}}}}}}
    plugins:
      consumer-restriction: {{type: route_id, whitelist: [bypass, wl-limited]}}
  - username: guest
services:
  - {{id: "1", upstream: {up}}}
  - {{id: "2", upstream: {up}}}
  - id: svc-wl
    plugins:
      key-auth: {{}}
      consumer-restriction: {{whitelist: [jack2]}}
    upstream: {up}
routes:
  - {{id: "1", uri: /one, service_id: "1", plugins: {{key-auth: {{}}}}}}
  - {{id: "2", uri: /two, service_id: "2", plugins: {{key-auth: {{}}}}}}
  - {{id: "3", uri: /three, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - {{id: secret-route, uri: /secret, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - id: restricted
    uri: /wl
    plugins: {{key-auth: {{}}, consumer-restriction: {{whitelist: [jack1]}}}}
    upstream: {up}
  - id: blacklisted
    uri: /bl
    plugins:
      key-auth: {{}}
      consumer-restriction: {{blacklist: [bad-actor], rejected_code: 403, rejected_msg: "Access denied"}}
    upstream: {up}
  - id: enterprise-only
    uri: "/premium/*"
    plugins:
      key-auth: {{}}
      consumer-restriction: {{type: consumer_name, whitelist: [acme-corp]}}
    upstream: {up}
  - id: method-restricted
    uri: /methods
    plugins:
      key-auth: {{}}
      consumer-restriction:
        allowed_by_methods:
          - {{user: jack1, methods: [POST]}}
          - {{user: admin, methods: [GET, POST, PUT, DELETE]}}
          - {{user: admin, methods: [PATCH]}}
    upstream: {up}
  - id: wl-methods
    uri: /wl-methods
    plugins:
      key-auth: {{}}
      consumer-restriction:
        whitelist: [jack1]
        allowed_by_methods: [{{user: jack1, methods: [POST]}}, {{user: jack2, methods: [GET]}}]
    upstream: {up}
  - id: bl-wl
    uri: /bl-wl
    plugins:
      key-auth: {{}}
      consumer-restriction: {{whitelist: [jack1, jack2], blacklist: [jack2]}}
    upstream: {up}
  - id: group
    uri: /group
    plugins:
      key-auth: {{}}
      consumer-restriction: {{type: consumer_group_id, whitelist: [gold]}}
    upstream: {up}
  - id: group-bl
    uri: /group-bl
    plugins:
      key-auth: {{}}
      consumer-restriction: {{type: consumer_group_id, blacklist: [silver]}}
    upstream: {up}
  - id: group-methods
    uri: /group-methods
    plugins:
      key-auth: {{}}
      consumer-restriction:
        type: consumer_group_id
        allowed_by_methods: [{{user: silver, methods: [GET]}}]
    upstream: {up}
  - id: tiered
    uri: /tiered
    plugins:
      key-auth: {{}}
      consumer-restriction:
        type: consumer_name
        whitelist: [enterprise-user, pro-user]
        rejected_code: 402
        rejected_msg: "Upgrade required for this endpoint"
    upstream: {up}
  - id: hidden
    uri: /hidden
    plugins:
      key-auth: {{}}
      consumer-restriction: {{whitelist: [admin], rejected_code: 404, rejected_msg: "Resource not found"}}
    upstream: {up}
  - id: code401
    uri: /code401
    plugins: {{key-auth: {{}}, consumer-restriction: {{whitelist: [jack1], rejected_code: 401}}}}
    upstream: {up}
  - id: slash
    uri: /slash
    plugins: {{key-auth: {{}}, consumer-restriction: {{blacklist: [jack2], rejected_msg: "a/b \"c\""}}}}
    upstream: {up}
  - id: noauth
    uri: /noauth
    plugins: {{consumer-restriction: {{whitelist: [jack1]}}}}
    upstream: {up}
  - id: noauth-group
    uri: /noauth-group
    plugins: {{consumer-restriction: {{type: consumer_group_id, blacklist: [silver]}}}}
    upstream: {up}
  - id: anon
    uri: /anon
    plugins:
      key-auth: {{anonymous_consumer: guest}}
      consumer-restriction: {{whitelist: [jack1]}}
    upstream: {up}
  - id: admin-api
    uri: "/admin/*"
    plugins:
      key-auth: {{}}
      consumer-restriction: {{whitelist: [admin], rejected_code: 403, rejected_msg: "Admin access required"}}
    upstream: {up}
  - id: public-api
    uri: "/api/*"
    plugins:
      key-auth: {{}}
      consumer-restriction:
        allowed_by_methods:
          - {{user: readonly, methods: [GET]}}
          - {{user: admin, methods: [GET, POST, PUT, DELETE]}}
    upstream: {up}
  - {{id: in-svc-wl, uri: /svc-wl, service_id: svc-wl}}
  - id: bypass
    uri: /bypass
    plugins: {{key-auth: {{}}, consumer-restriction: {{whitelist: [jack1]}}}}
    upstream: {up}
  - id: wl-limited
    uri: /wl-limited
    plugins: {{key-auth: {{}}, consumer-restriction: {{whitelist: [limited-user, sneaky]}}}}
    upstream: {up}
#END
"#
    ))
}

/// `method target` with `apikey: <user>-key` (no key for user "").
fn req(gw: &Gateway, method: &str, target: &str, user: &str) -> Resp {
    let key = format!("{user}-key");
    let headers: &[(&str, &str)] = if user.is_empty() {
        &[]
    } else {
        &[("apikey", &key)]
    };
    http(gw.port(), method, target, headers, b"")
}

/// Passed the restriction: the echo upstream answered, for this consumer.
fn assert_pass(resp: &Resp, user: &str) {
    assert_eq!(resp.status, 200, "expected to pass: {}", resp.text());
    let v = resp.json();
    assert_eq!(
        v["headers"]["x-consumer-username"], user,
        "an echo answer for {user}: {v}"
    );
}

/// Rejected with `status` and exactly `{"message": msg}` + `\n`, as JSON.
fn assert_rejected(resp: &Resp, status: u16, msg: &str) {
    let want = format!("{}\n", json!({ "message": msg }));
    assert_eq!((resp.status, resp.text()), (status, want));
    let ct = resp.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
}

const FORBIDDEN: &str = "The consumer_name is forbidden.";

fn get(gw: &Gateway, target: &str, user: &str) -> Resp {
    req(gw, "GET", target, user)
}

// ---------------------------------------------------------------------------------------------
// consumer_name: whitelist, blacklist, allowed_by_methods and their precedence

#[test]
fn whitelist_allows_listed_consumers_and_denies_the_rest() {
    let up = Upstream::start("up");
    let gw = start(&up);
    // a7 example 1: only jack1.
    assert_pass(&get(&gw, "/wl", "jack1"), "jack1");
    // a7 example 3: restrict to named consumers on a prefix route.
    assert_pass(&get(&gw, "/premium/reports", "acme-corp"), "acme-corp");
    assert_eq!(up.hits(), 2);
    let before = up.seen();
    assert_rejected(&get(&gw, "/wl", "jack2"), 403, FORBIDDEN);
    assert_rejected(&get(&gw, "/wl", "admin"), 403, FORBIDDEN);
    assert_rejected(&get(&gw, "/premium/reports", "jack1"), 403, FORBIDDEN);
    // Authentication comes first: no key is key-auth's 401.
    let resp = get(&gw, "/wl", "");
    assert_rejected(&resp, 401, "Missing API key in request");
    up.assert_untouched(before, "rejected requests never reach the upstream");
}

#[test]
fn blacklist_denies_listed_consumers_and_allows_the_rest() {
    let up = Upstream::start("up");
    let gw = start(&up);
    // a7 example 2.
    assert_rejected(&get(&gw, "/bl", "bad-actor"), 403, "Access denied");
    assert_pass(&get(&gw, "/bl", "jack1"), "jack1");
    assert_pass(&get(&gw, "/bl", "jack2"), "jack2");
    // The blacklist beats the whitelist.
    assert_pass(&get(&gw, "/bl-wl", "jack1"), "jack1");
    assert_rejected(&get(&gw, "/bl-wl", "jack2"), 403, FORBIDDEN);
    assert_rejected(&get(&gw, "/bl-wl", "admin"), 403, FORBIDDEN);
}

#[test]
fn allowed_by_methods_decides_per_consumer_and_method() {
    let up = Upstream::start("up");
    let gw = start(&up);
    // a7 example 4: jack1 may only POST; admin GET/POST/PUT/DELETE (its first entry wins, the
    // second entry's PATCH is not added); consumers without an entry pass.
    let cases = [
        ("POST", "jack1", true),
        ("GET", "jack1", false),
        ("PUT", "jack1", false),
        ("DELETE", "jack1", false),
        ("OPTIONS", "jack1", false),
        ("GET", "admin", true),
        ("POST", "admin", true),
        ("PUT", "admin", true),
        ("DELETE", "admin", true),
        ("PATCH", "admin", false),
        ("OPTIONS", "admin", false),
        ("GET", "jack2", true),
        ("PATCH", "jack2", true),
        ("DELETE", "readonly", true),
    ];
    for (method, user, pass) in cases {
        let resp = req(&gw, method, "/methods", user);
        if pass {
            assert_pass(&resp, user);
        } else {
            assert_rejected(&resp, 403, FORBIDDEN);
        }
    }
    // HEAD has no body: the status says it.
    assert_eq!(req(&gw, "HEAD", "/methods", "jack1").status, 403);
    assert_eq!(req(&gw, "HEAD", "/methods", "jack2").status, 200);

    // Whitelist plus allowed_by_methods: a whitelisted consumer skips the method check; a
    // consumer not whitelisted is blocked whatever its methods say.
    assert_pass(&req(&gw, "GET", "/wl-methods", "jack1"), "jack1");
    assert_pass(&req(&gw, "DELETE", "/wl-methods", "jack1"), "jack1");
    assert_rejected(&req(&gw, "GET", "/wl-methods", "jack2"), 403, FORBIDDEN);
    assert_rejected(&req(&gw, "POST", "/wl-methods", "admin"), 403, FORBIDDEN);
}

#[test]
fn a7_config_sync_example_admin_only_and_read_only_routes() {
    let up = Upstream::start("up");
    let gw = start(&up);
    // admin-api: admin only, with its message.
    assert_pass(&req(&gw, "DELETE", "/admin/users/1", "admin"), "admin");
    assert_rejected(
        &req(&gw, "GET", "/admin/users", "readonly"),
        403,
        "Admin access required",
    );
    // public-api: readonly may GET, admin may GET/POST/PUT/DELETE.
    assert_pass(&req(&gw, "GET", "/api/items", "readonly"), "readonly");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        assert_rejected(&req(&gw, method, "/api/items", "readonly"), 403, FORBIDDEN);
    }
    for method in ["GET", "POST", "PUT", "DELETE"] {
        assert_pass(&req(&gw, method, "/api/items", "admin"), "admin");
    }
    assert_rejected(&req(&gw, "PATCH", "/api/items", "admin"), 403, FORBIDDEN);
}

// ---------------------------------------------------------------------------------------------
// rejected_code and rejected_msg

#[test]
fn custom_rejected_codes_and_messages() {
    let up = Upstream::start("up");
    let gw = start(&up);
    // Tiered access: 402.
    assert_pass(&get(&gw, "/tiered", "enterprise-user"), "enterprise-user");
    assert_pass(&get(&gw, "/tiered", "pro-user"), "pro-user");
    assert_rejected(
        &get(&gw, "/tiered", "free-user"),
        402,
        "Upgrade required for this endpoint",
    );
    // Hide the endpoint's existence: 404 with a message of our choosing.
    assert_pass(&get(&gw, "/hidden", "admin"), "admin");
    assert_rejected(&get(&gw, "/hidden", "jack1"), 404, "Resource not found");
    // 401 with the default message.
    assert_pass(&get(&gw, "/code401", "jack1"), "jack1");
    assert_rejected(&get(&gw, "/code401", "jack2"), 401, FORBIDDEN);
    // The message is JSON-escaped, `/` left as is (APISIX's cjson setting).
    let resp = get(&gw, "/slash", "jack2");
    assert_eq!(resp.status, 403);
    assert_eq!(resp.text(), "{\"message\":\"a/b \\\"c\\\"\"}\n");
    assert_pass(&get(&gw, "/slash", "jack1"), "jack1");
}

// ---------------------------------------------------------------------------------------------
// No consumer

#[test]
fn no_identified_consumer_is_401_even_with_valid_credentials() {
    let up = Upstream::start("up");
    let gw = start(&up);
    let msg = "The request is rejected, please check the consumer_name for this request";
    // No auth plugin on the route: nobody is identified, whatever the client sends.
    assert_rejected(&get(&gw, "/noauth", "jack1"), 401, msg);
    assert_rejected(&get(&gw, "/noauth", ""), 401, msg);
    let resp = http(
        gw.port(),
        "GET",
        "/noauth",
        &[("X-Consumer-Username", "jack1")],
        b"",
    );
    assert_rejected(&resp, 401, msg);
    assert_rejected(
        &get(&gw, "/noauth-group", "silver1"),
        401,
        "The request is rejected, please check the consumer_group_id for this request",
    );
    up.assert_untouched(Seen::default(), "rejected requests");
    // The anonymous consumer is a consumer: checked by name like any other.
    assert_rejected(&get(&gw, "/anon", ""), 403, FORBIDDEN);
    assert_rejected(&get(&gw, "/anon", "nobody"), 403, FORBIDDEN);
    assert_pass(&get(&gw, "/anon", "jack1"), "jack1");
}

// ---------------------------------------------------------------------------------------------
// consumer_group_id

#[test]
fn consumer_group_id_allows_and_denies_by_group() {
    let up = Upstream::start("up");
    let gw = start(&up);
    let forbidden = "The consumer_group_id is forbidden.";
    let no_group = "The request is rejected, please check the consumer_group_id for this request";
    assert_pass(&get(&gw, "/group", "gold1"), "gold1");
    assert_rejected(&get(&gw, "/group", "silver1"), 403, forbidden);
    // A consumer in no group has no value for the type.
    assert_rejected(&get(&gw, "/group", "jack1"), 401, no_group);

    assert_rejected(&get(&gw, "/group-bl", "silver1"), 403, forbidden);
    assert_pass(&get(&gw, "/group-bl", "gold1"), "gold1");
    assert_rejected(&get(&gw, "/group-bl", "jack1"), 401, no_group);

    // allowed_by_methods names a group.
    assert_pass(&req(&gw, "GET", "/group-methods", "silver1"), "silver1");
    assert_rejected(
        &req(&gw, "POST", "/group-methods", "silver1"),
        403,
        forbidden,
    );
    assert_pass(&req(&gw, "POST", "/group-methods", "gold1"), "gold1");
}

// ---------------------------------------------------------------------------------------------
// service_id and route_id on a consumer or consumer group

#[test]
fn service_id_on_a_consumer_limits_the_services_it_reaches() {
    let up = Upstream::start("up");
    let gw = start(&up);
    // a7 example 5: api-user may reach service 1 only.
    assert_pass(&get(&gw, "/one", "api-user"), "api-user");
    assert_rejected(
        &get(&gw, "/two", "api-user"),
        403,
        "The service_id is forbidden.",
    );
    // A route in no service has no service id.
    assert_rejected(
        &get(&gw, "/three", "api-user"),
        401,
        "The request is rejected, please check the service_id for this request",
    );
    // Other consumers are not affected.
    for path in ["/one", "/two", "/three"] {
        assert_pass(&get(&gw, path, "jack1"), "jack1");
    }
}

#[test]
fn route_id_on_a_consumer_or_group_limits_the_routes_it_reaches() {
    let up = Upstream::start("up");
    let gw = start(&up);
    // a7 example 6: limited-user may reach route 1 only; rejections are 401.
    assert_pass(&get(&gw, "/one", "limited-user"), "limited-user");
    for path in ["/two", "/three", "/secret"] {
        assert_rejected(
            &get(&gw, path, "limited-user"),
            401,
            "The route_id is forbidden.",
        );
    }
    // allowed_by_methods with route ids as `user`.
    assert_pass(&req(&gw, "GET", "/one", "get-only-on-1"), "get-only-on-1");
    assert_rejected(
        &req(&gw, "POST", "/one", "get-only-on-1"),
        403,
        "The route_id is forbidden.",
    );
    assert_pass(&req(&gw, "POST", "/two", "get-only-on-1"), "get-only-on-1");
    // From the consumer's group: a blacklisted route.
    assert_rejected(
        &get(&gw, "/secret", "grouped"),
        403,
        "The route_id is forbidden.",
    );
    assert_pass(&get(&gw, "/one", "grouped"), "grouped");
    assert_pass(&get(&gw, "/secret", "jack1"), "jack1");
}

#[test]
fn a_consumers_restriction_never_replaces_the_routes() {
    let up = Upstream::start("up");
    let gw = start(&up);
    // sneaky's own restriction allows route `bypass`, but the route's whitelist still applies.
    assert_rejected(&get(&gw, "/bypass", "sneaky"), 403, FORBIDDEN);
    assert_pass(&get(&gw, "/bypass", "jack1"), "jack1");
    // And the other way round: the route lets limited-user in, its own restriction does not.
    assert_rejected(
        &get(&gw, "/wl-limited", "limited-user"),
        401,
        "The route_id is forbidden.",
    );
    assert_pass(&get(&gw, "/wl-limited", "sneaky"), "sneaky");
    // A restriction on a service applies to its routes.
    assert_pass(&get(&gw, "/svc-wl", "jack2"), "jack2");
    assert_rejected(&get(&gw, "/svc-wl", "jack1"), 403, FORBIDDEN);
}

// ---------------------------------------------------------------------------------------------
// tollgate check

#[test]
fn check_refuses_invalid_restrictions() {
    let up = r#"{nodes: {"127.0.0.1:9": 1}}"#;
    let on_route = |conf: &str| {
        format!(
            "consumers:\n  - {{username: jack1, plugins: {{key-auth: {{key: k}}}}}}\nroutes:\n  - id: r\n    uri: /x\n    plugins:\n      key-auth: {{}}\n      consumer-restriction: {conf}\n    upstream: {up}\n"
        )
    };
    let fails = |yaml: &str, prefix: &str, parts: &[&str]| {
        let (code, out, err) = tollgate_check(&[("resources.yaml", yaml)]);
        assert_eq!(
            code, 1,
            "should be refused:\n{yaml}\nstdout: {out}\nstderr: {err}"
        );
        let found = err
            .lines()
            .any(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)));
        assert!(found, "no line `{prefix}...` with {parts:?} in:\n{err}");
    };
    let route = "resources.yaml: routes[0].plugins.consumer-restriction";
    // No list at all (also as a bare `consumer-restriction:`).
    fails(&on_route("{rejected_code: 403}"), route, &[]);
    fails(&on_route("{type: consumer_name}"), route, &[]);
    fails(&on_route(""), route, &[]);
    // Empty lists.
    fails(
        &on_route("{whitelist: []}"),
        &format!("{route}.whitelist"),
        &[],
    );
    fails(
        &on_route("{blacklist: []}"),
        &format!("{route}.blacklist"),
        &[],
    );
    fails(
        &on_route("{allowed_by_methods: []}"),
        &format!("{route}.allowed_by_methods"),
        &[],
    );
    // A method that does not exist; an entry without methods.
    fails(
        &on_route("{allowed_by_methods: [{user: jack1, methods: [FETCH]}]}"),
        route,
        &["FETCH"],
    );
    fails(
        &on_route("{allowed_by_methods: [{user: jack1, methods: [get]}]}"),
        route,
        &["get"],
    );
    fails(
        &on_route("{allowed_by_methods: [{user: jack1, methods: []}]}"),
        &format!("{route}.allowed_by_methods"),
        &[],
    );
    // rejected_code below 200.
    fails(
        &on_route("{whitelist: [jack1], rejected_code: 199}"),
        &format!("{route}.rejected_code"),
        &[],
    );
    fails(
        &on_route("{whitelist: [jack1], rejected_code: 0}"),
        route,
        &["rejected_code"],
    );
    // An unknown type.
    fails(
        &on_route("{type: username, whitelist: [jack1]}"),
        route,
        &[],
    );
    // The wrong place: service_id / route_id on a route or service...
    fails(
        &on_route("{type: service_id, whitelist: [\"1\"]}"),
        route,
        &["type"],
    );
    fails(
        &on_route("{type: route_id, whitelist: [r]}"),
        route,
        &["type"],
    );
    let on_service = format!(
        "services:\n  - id: s\n    plugins:\n      consumer-restriction: {{type: route_id, whitelist: [r]}}\n    upstream: {up}\n"
    );
    fails(
        &on_service,
        "resources.yaml: services[0].plugins.consumer-restriction",
        &["type"],
    );
    // ...and consumer_name / consumer_group_id (the default type too) on a consumer or group.
    for conf in [
        "{type: consumer_name, whitelist: [jack1]}",
        "{whitelist: [jack1]}",
        "{type: consumer_group_id, whitelist: [gold]}",
    ] {
        let yaml = format!(
            "consumers:\n  - username: jack1\n    plugins:\n      key-auth: {{key: k}}\n      consumer-restriction: {conf}\n"
        );
        fails(
            &yaml,
            "resources.yaml: consumers[0].plugins.consumer-restriction",
            &["type"],
        );
    }
    let on_group = "consumer_groups:\n  - id: gold\n    plugins:\n      consumer-restriction: {type: consumer_group_id, whitelist: [gold]}\n";
    fails(
        on_group,
        "resources.yaml: consumer_groups[0].plugins.consumer-restriction",
        &["type"],
    );

    // The valid forms pass.
    let good = format!(
        "consumer_groups:\n  - id: gold\n    plugins:\n      consumer-restriction: {{type: route_id, blacklist: [r]}}\nconsumers:\n  - username: jack1\n    group_id: gold\n    plugins:\n      key-auth: {{key: k}}\n      consumer-restriction: {{type: service_id, whitelist: [s], rejected_code: 200}}\nservices:\n  - id: s\n    plugins:\n      consumer-restriction: {{type: consumer_group_id, whitelist: [gold]}}\n    upstream: {up}\nroutes:\n  - id: r\n    uri: /x\n    service_id: s\n    plugins:\n      key-auth: {{}}\n      consumer-restriction:\n        allowed_by_methods: [{{user: jack1, methods: [GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS, CONNECT, TRACE, PURGE]}}]\n#END\n"
    );
    let (code, out, err) = tollgate_check(&[("resources.yaml", &good)]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
}
