//! response-rewrite through the real binary, on the APISIX docs' own examples (their curl
//! commands turned into requests), plus the body limits tollgate documents.

use crate::support::{Gateway, Upstream, assert_line, check_fails, http};

#[test]
fn apisix_doc_examples() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"routes:
  # Rewrite Header and Body
  - id: response-rewrite-route
    methods: [GET]
    uri: /headers
    plugins:
      response-rewrite:
        body: '{{"code":"ok","message":"new json body"}}'
        headers:
          set:
            X-Server-id: 3
            X-Server-status: "on"
            X-Server-balancer-addr: "$balancer_ip:$balancer_port"
        vars: [["status", "==", 200]]
    upstream: {u}
  # Rewrite Header With RegEx Filter (the echo upstream writes header names in lower case)
  - id: filter
    uri: /filter
    plugins:
      response-rewrite:
        filters:
          - {{regex: "x-amzn-trace-id", scope: global, replace: "x-amzn-trace-id-replace"}}
    upstream: {u}
  # Decode Body from Base64
  - id: base64
    uri: /get
    plugins: {{response-rewrite: {{body: SGVsbG8gV29ybGQ=, body_base64: true}}}}
    upstream: {u}
  # Status and headers by condition; header add/remove
  - id: errors
    uri: /errors
    plugins:
      response-rewrite:
        status_code: 503
        headers:
          add: ["X-Seen: $status"]
          remove: [X-Internal]
        vars: ["OR", ["status", ">=", 500], ["http_x_force", "==", "yes"]]
    upstream: {u}
#END
"#,
        u = up.yaml()
    ));
    let p = gw.port();

    let r = http(p, "GET", "/headers", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"code":"ok","message":"new json body"}"#);
    assert_eq!(r.header("content-length"), Some("39"));
    assert_eq!(r.header("x-server-id"), Some("3"));
    assert_eq!(r.header("x-server-status"), Some("on"));
    assert_eq!(r.header("x-server-balancer-addr"), Some(up.addr().as_str()));
    // `vars` do not hold on a 404: the response is the upstream's.
    let r = http(p, "GET", "/headers", &[("x-echo-status", "404")], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["uri"], "/headers");
    assert!(r.header("x-server-id").is_none());

    let r = http(
        p,
        "GET",
        "/filter",
        &[("X-Amzn-Trace-Id", "Root=1-6500")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.header("content-length").is_none());
    let j = r.json();
    assert_eq!(
        j["headers"]["x-amzn-trace-id-replace"], "Root=1-6500",
        "{j}"
    );

    let r = http(p, "GET", "/get", &[], b"");
    assert_eq!(r.text(), "Hello World");

    let r = http(
        p,
        "GET",
        "/errors",
        &[("x-echo-status", "502"), ("x-echo-header", "X-Internal=1")],
        b"",
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-seen"), Some("503"));
    assert!(r.header("x-internal").is_none());
    assert_eq!(r.json()["uri"], "/errors", "the body is the upstream's");
    let r = http(
        p,
        "GET",
        "/errors",
        &[("x-echo-header", "X-Internal=1")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-internal"), Some("1"));
    let r = http(p, "GET", "/errors", &[("X-Force", "yes")], b"");
    assert_eq!(r.status, 503);
}

/// "Rewrite Response and Its Connection with Execution Phases": the header and body filters run
/// after key-auth answers, so an unauthenticated request still gets the rewritten 200.
#[test]
fn gateway_answers_are_rewritten_too() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: jack
    credentials:
      - name: cred-jack-key-auth
        plugins: {{key-auth: {{key: jack-key}}}}
routes:
  - id: response-rewrite-route
    uri: /get
    plugins:
      key-auth: {{}}
      response-rewrite:
        status_code: 200
        body: '{{"code": 200, "msg": "success"}}'
    upstream: {u}
  - id: by-status
    uri: /only401
    plugins:
      key-auth: {{}}
      request-id: {{}}
      response-rewrite:
        headers: {{set: {{WWW-Authenticate: Custom}}}}
        vars: [["status", "==", 401]]
    upstream: {u}
#END
"#,
        u = up.yaml()
    ));
    let p = gw.port();
    let r = http(p, "GET", "/get", &[("apikey", "jack-key")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"code": 200, "msg": "success"}"#);
    let r = http(p, "GET", "/get", &[], b"");
    assert_eq!(r.status, 200, "the 401 is rewritten");
    assert_eq!(r.text(), r#"{"code": 200, "msg": "success"}"#);
    assert_eq!(r.header("content-length"), Some("31"));
    let r = http(p, "GET", "/only401", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Custom"));
    assert_eq!(r.header("x-request-id").map(str::len), Some(36));
    let r = http(p, "GET", "/only401", &[("apikey", "jack-key")], b"");
    assert_eq!(r.status, 200);
    assert!(r.header("www-authenticate").is_none());
}

#[test]
fn filtered_bodies_are_bounded_and_never_compressed() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"routes:
  - id: small
    uri: /small
    plugins:
      response-rewrite:
        filters: [{{regex: '"node":"up"', replace: '"node":"hidden"'}}]
        max_resp_body_size: 64
    upstream: {u}
  - id: big
    uri: /big
    plugins:
      response-rewrite:
        filters: [{{regex: '"node":"up"', replace: '"node":"hidden"'}}]
    upstream: {u}
#END
"#,
        u = up.yaml()
    ));
    let p = gw.port();
    // Over max_resp_body_size: sent unchanged.
    let r = http(p, "GET", "/small", &[("X-Pad", &"x".repeat(100))], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["node"], "up");
    // Under the default limit: filtered.
    let r = http(p, "GET", "/big", &[], b"");
    assert_eq!(r.json()["node"], "hidden");
    // A compressed body is not filtered, and keeps its length and encoding.
    let r = http(
        p,
        "GET",
        "/big",
        &[("x-echo-header", "Content-Encoding=identity2")],
        b"",
    );
    assert_eq!(r.header("content-encoding"), Some("identity2"));
    assert!(r.header("content-length").is_some());
    assert_eq!(r.json()["node"], "up");
    // HEAD: no body to rewrite, and none is added.
    let r = http(p, "HEAD", "/big", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[test]
fn fields_and_operators_tollgate_cannot_honour_are_refused_by_name() {
    let route = |plugin: &str| {
        format!(
            "routes:\n  - id: r\n    uri: /r\n    plugins:\n      response-rewrite: {plugin}\n    upstream: {{nodes: {{\"127.0.0.1:1\": 1}}}}\n#END\n"
        )
    };
    let lines = check_fails(&[(
        "resources.yaml",
        &route(r#"{vars: [["remote_addr", "ipmatch", ["10.0.0.0/8"]]], status_code: 403}"#),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.response-rewrite.vars[0]",
        &["`ipmatch` is not supported by tollgate"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &route("{filters: [{regex: a, replace: b, options: jD}]}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.response-rewrite.filters[0].options",
        &["`D` is not supported by tollgate"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &route("{body: x, filters: [{regex: a, replace: b}]}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.response-rewrite",
        &["cannot both be set"],
    );
}
