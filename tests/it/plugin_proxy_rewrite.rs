//! proxy-rewrite through the real binary, on the APISIX docs' own examples (their curl commands
//! turned into requests; httpbin's answers read from the echo upstream's JSON).

use crate::support::{Gateway, Upstream, assert_line, check_fails, http};

#[test]
fn apisix_doc_examples() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"routes:
  # Rewrite Host Header
  - id: host
    uri: /headers
    methods: [GET]
    plugins: {{proxy-rewrite: {{host: myapisix.demo}}}}
    upstream: {u}
  # Rewrite URI And Set Headers
  - id: set
    uri: /
    methods: [GET]
    plugins:
      proxy-rewrite:
        uri: /anything
        headers: {{set: {{X-Api-Version: v1, X-Api-Engine: apisix}}}}
    upstream: {u}
  # Rewrite URI And Append Headers
  - id: add
    uri: /add
    plugins:
      proxy-rewrite:
        uri: /headers
        headers: {{add: {{X-Api-Version: v1, X-Api-Engine: apisix}}}}
    upstream: {u}
  # Set or Append Multiple Values for the Same Header
  - id: multi
    uri: /multi
    plugins:
      proxy-rewrite:
        uri: /headers
        headers: {{set: {{X-Api-Version: [v1, v2]}}}}
    upstream: {u}
  # Remove Existing Header
  - id: remove
    uri: /remove
    plugins: {{proxy-rewrite: {{headers: {{remove: [User-Agent]}}}}}}
    upstream: {u}
  # Rewrite URI Using RegEx
  - id: regex
    uri: /test/*
    plugins: {{proxy-rewrite: {{regex_uri: ["^/test/(.*)/(.*)", "/$1-$2"]}}}}
    upstream: {u}
  # Add URL Parameters
  - id: args
    uri: /get
    methods: [GET]
    plugins: {{proxy-rewrite: {{uri: "/get?arg1=apisix&arg2=plugin"}}}}
    upstream: {u}
  # Rewrite HTTP Method
  - id: method
    uri: /method
    methods: [GET]
    plugins: {{proxy-rewrite: {{uri: /anything, method: POST}}}}
    upstream: {u}
  # The old flat form of headers, and variables in values
  - id: flat
    uri: /flat/*
    plugins:
      proxy-rewrite:
        uri: /v2$uri
        headers: {{X-Page: "$arg_page", X-From: "${{http_x_client}}-$remote_addr", X-Target: "$request_uri"}}
    upstream: {u}
#END
"#,
        u = up.yaml()
    ));
    let p = gw.port();

    let r = http(p, "GET", "/headers", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["host"], "myapisix.demo");

    let r = http(p, "GET", "/", &[("X-Api-Version", "v2")], b"").json();
    assert_eq!(r["uri"], "/anything");
    assert_eq!(
        r["headers"]["x-api-version"], "v1",
        "set overwrites the client's"
    );
    assert_eq!(r["headers"]["x-api-engine"], "apisix");
    // The client's query is kept.
    assert_eq!(
        http(p, "GET", "/?a=1", &[], b"").json()["uri"],
        "/anything?a=1"
    );

    let r = http(p, "GET", "/add", &[("X-Api-Version", "v2")], b"").json();
    assert_eq!(r["uri"], "/headers");
    assert_eq!(
        r["headers"]["x-api-version"],
        serde_json::json!(["v2", "v1"])
    );
    assert_eq!(r["headers"]["x-api-engine"], "apisix");

    let r = http(p, "GET", "/multi", &[("X-Api-Version", "v0")], b"").json();
    assert_eq!(
        r["headers"]["x-api-version"],
        serde_json::json!(["v1", "v2"])
    );

    let r = http(p, "GET", "/remove", &[("User-Agent", "curl/8.2.1")], b"").json();
    assert!(r["headers"].get("user-agent").is_none(), "{r}");
    assert_eq!(r["uri"], "/remove");

    let r = http(p, "GET", "/test/user/agent", &[], b"").json();
    assert_eq!(r["uri"], "/user-agent");

    assert_eq!(
        http(p, "GET", "/get", &[], b"").json()["uri"],
        "/get?arg1=apisix&arg2=plugin"
    );
    assert_eq!(
        http(p, "GET", "/get?x=1", &[], b"").json()["uri"],
        "/get?arg1=apisix&arg2=plugin&x=1",
        "a new uri with a query merges the client's with &"
    );

    let r = http(p, "GET", "/method", &[], b"").json();
    assert_eq!(r["method"], "POST");
    assert_eq!(r["uri"], "/anything");

    let r = http(p, "GET", "/flat/a%20b?page=2", &[("X-Client", "c1")], b"").json();
    assert_eq!(
        r["uri"], "/v2/flat/a%20b?page=2",
        "$uri is decoded, the path re-encoded"
    );
    assert_eq!(r["headers"]["x-page"], "2");
    assert_eq!(r["headers"]["x-from"], "c1-127.0.0.1");
    assert_eq!(r["headers"]["x-target"], "/flat/a%20b?page=2");
}

#[test]
fn forward_consumer_names_to_upstream() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: JohnDoe
    credentials:
      - name: cred-john-key-auth
        plugins: {{key-auth: {{key: john-key}}}}
  - username: gold
    plugins:
      key-auth: {{key: gold-key}}
      proxy-rewrite: {{headers: {{set: {{X-Tier: gold, X-Apisix-Consumer: "$consumer_name"}}}}}}
routes:
  - id: consumer-restricted-route
    uri: /get
    plugins:
      key-auth: {{}}
      proxy-rewrite:
        headers:
          set: {{X-Apisix-Consumer: "$consumer_name"}}
          remove: [Apikey]
    upstream: {u}
#END
"#,
        u = up.yaml()
    ));
    let r = http(gw.port(), "GET", "/get", &[("apikey", "john-key")], b"");
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["headers"]["x-apisix-consumer"], "JohnDoe");
    assert!(j["headers"].get("apikey").is_none(), "{j}");
    // Without a key the request never reaches proxy-rewrite (the docs say 403; key-auth
    // answers 401 in APISIX and tollgate alike).
    assert_eq!(http(gw.port(), "GET", "/get", &[], b"").status, 401);
    // A consumer's own instance replaces the route's.
    let j = http(gw.port(), "GET", "/get", &[("apikey", "gold-key")], b"").json();
    assert_eq!(j["headers"]["x-tier"], "gold");
    assert_eq!(j["headers"]["x-apisix-consumer"], "gold");
    assert_eq!(
        j["headers"]["apikey"], "gold-key",
        "the route's remove is replaced"
    );
}

#[test]
fn fields_tollgate_cannot_honour_are_refused_by_name() {
    let route = |plugin: &str| {
        format!(
            "routes:\n  - id: r\n    uri: /r\n    plugins:\n      proxy-rewrite: {plugin}\n    upstream: {{nodes: {{\"127.0.0.1:1\": 1}}}}\n#END\n"
        )
    };
    let lines = check_fails(&[(
        "resources.yaml",
        &route("{uri: /x, use_real_request_uri_unsafe: true}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.proxy-rewrite.use_real_request_uri_unsafe",
        &["not supported by tollgate"],
    );
    let lines = check_fails(&[("resources.yaml", &route("{uri: /$server_name}"))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.proxy-rewrite.uri",
        &["`$server_name` is not supported by tollgate"],
    );
    let lines = check_fails(&[("resources.yaml", &route("{scheme: https}"))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.proxy-rewrite",
        &["scheme"],
    );
    let lines = check_fails(&[("resources.yaml", &route("{regex_uri: ['^/(a']}"))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.proxy-rewrite.regex_uri",
        &["pairs"],
    );
}
