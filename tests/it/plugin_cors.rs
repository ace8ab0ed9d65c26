//! cors through the real binary: the APISIX docs' examples (a list of origins with credentials,
//! `allow_origins_by_regex`), preflight answered by the gateway without reaching the upstream,
//! CORS headers on the gateway's own answers (a 401), `**`, and the refused confs.

use crate::support::{Gateway, Resp, Upstream, assert_line, check_fails, http};

fn cors_headers(r: &Resp) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            n.starts_with("access-control-") || n == "vary" || n == "timing-allow-origin"
        })
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    v.sort();
    v
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

fn start(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"consumers:
  - {{username: jack, plugins: {{key-auth: {{key: jack-key}}}}}}
routes:
  - id: cors-route
    uri: /anything
    plugins:
      cors:
        allow_origins: "http://sub.domain.com,http://sub2.domain.com"
        allow_methods: "GET,POST"
        allow_headers: "headr1,headr2"
        expose_headers: "ex-headr1,ex-headr2"
        max_age: 50
        allow_credential: true
    upstream: {u}
  - id: cors-regex
    uri: /regex
    plugins:
      cors:
        allow_methods: "GET,POST"
        allow_headers: "headr1,headr2"
        expose_headers: "ex-headr1,ex-headr2"
        max_age: 50
        allow_origins_by_regex: [ ".*\\.test.com$" ]
    upstream: {u}
  - id: defaults
    uri: /defaults
    plugins: {{cors: {{}}}}
    upstream: {u}
  - id: echo
    uri: /echo
    plugins:
      cors: {{allow_origins: "**", allow_methods: "**", allow_headers: "**", allow_credential: true, timing_allow_origins: "http://t.com"}}
    upstream: {u}
  - id: authed
    uri: /authed
    plugins:
      key-auth: {{}}
      cors: {{allow_origins: "http://app.com"}}
    upstream: {u}
#END
"#,
        u = up.yaml()
    ))
}

#[test]
fn cors_follows_the_apisix_examples() {
    let up = Upstream::start("up");
    let gw = start(&up);

    // curl "http://127.0.0.1:9080/anything" -H "Origin: http://sub2.domain.com" -I
    let r = http(
        gw.port(),
        "GET",
        "/anything",
        &[("Origin", "http://sub2.domain.com")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        cors_headers(&r),
        pairs(&[
            ("access-control-allow-origin", "http://sub2.domain.com"),
            ("access-control-allow-credentials", "true"),
            ("vary", "Origin"),
            ("access-control-allow-methods", "GET,POST"),
            ("access-control-max-age", "50"),
            ("access-control-expose-headers", "ex-headr1,ex-headr2"),
            ("access-control-allow-headers", "headr1,headr2"),
        ])
    );
    // An origin not listed: 200 without CORS headers, only `Vary: Origin`.
    let r = http(
        gw.port(),
        "GET",
        "/anything",
        &[("Origin", "http://sub3.domain.com")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(cors_headers(&r), pairs(&[("vary", "Origin")]));

    // allow_origins_by_regex: [".*\\.test.com$"]
    let r = http(
        gw.port(),
        "GET",
        "/regex",
        &[("Origin", "http://a.test.com")],
        b"",
    );
    assert_eq!(
        cors_headers(&r),
        pairs(&[
            ("access-control-allow-origin", "http://a.test.com"),
            ("vary", "Origin"),
            ("access-control-allow-methods", "GET,POST"),
            ("access-control-max-age", "50"),
            ("access-control-expose-headers", "ex-headr1,ex-headr2"),
            ("access-control-allow-headers", "headr1,headr2"),
        ])
    );
    let r = http(
        gw.port(),
        "GET",
        "/regex",
        &[("Origin", "http://a.test2.com")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(cors_headers(&r), pairs(&[("vary", "Origin")]));

    // Defaults: `*` everywhere, max age 5, no expose header, no Vary.
    let r = http(
        gw.port(),
        "GET",
        "/defaults",
        &[("Origin", "http://x.org")],
        b"",
    );
    assert_eq!(
        cors_headers(&r),
        pairs(&[
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "*"),
            ("access-control-max-age", "5"),
            ("access-control-allow-headers", "*"),
        ])
    );

    // `**`: the origin and the requested headers echoed, every method listed.
    let r = http(
        gw.port(),
        "GET",
        "/echo",
        &[
            ("Origin", "http://t.com"),
            ("Access-Control-Request-Headers", "x-a, x-b"),
        ],
        b"",
    );
    assert_eq!(
        cors_headers(&r),
        pairs(&[
            ("access-control-allow-origin", "http://t.com"),
            ("access-control-allow-credentials", "true"),
            ("vary", "Origin"),
            (
                "access-control-allow-methods",
                "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"
            ),
            ("access-control-max-age", "5"),
            ("access-control-allow-headers", "x-a, x-b"),
            ("timing-allow-origin", "http://t.com"),
        ])
    );
}

#[test]
fn preflight_is_answered_by_the_gateway() {
    let up = Upstream::start("up");
    let gw = start(&up);
    let before = up.seen();
    // curl -X OPTIONS ... -H "Origin: ..." -H "Access-Control-Request-Method: POST"
    let r = http(
        gw.port(),
        "OPTIONS",
        "/anything",
        &[
            ("Origin", "http://sub.domain.com"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "headr1"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "empty body: {:?}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://sub.domain.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(r.header("access-control-max-age"), Some("50"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    // Any OPTIONS on the route is answered (APISIX's rewrite returns 200 for every OPTIONS),
    // an unlisted origin without CORS headers.
    let r = http(
        gw.port(),
        "OPTIONS",
        "/anything",
        &[("Origin", "http://evil.com")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
    // A preflight on an authenticated route needs no key (it runs before auth).
    let r = http(
        gw.port(),
        "OPTIONS",
        "/authed",
        &[
            ("Origin", "http://app.com"),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.com")
    );
    up.assert_untouched(before, "preflights");

    // The gateway's own answers carry the CORS headers too, so a browser can read a 401.
    let r = http(
        gw.port(),
        "GET",
        "/authed",
        &[("Origin", "http://app.com")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.com")
    );
    let r = http(
        gw.port(),
        "GET",
        "/authed",
        &[("Origin", "http://app.com"), ("apikey", "jack-key")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.com")
    );
}

#[test]
fn confs_apisix_refuses_are_refused() {
    let conf = |cors: &str| {
        format!(
            "routes:\n  - id: r\n    uri: /r\n    plugins:\n      cors: {cors}\n    upstream: {{nodes: {{\"127.0.0.1:1\": 1}}}}\n#END\n"
        )
    };
    let lines = check_fails(&[("resources.yaml", &conf("{allow_credential: true}"))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.cors.allow_origins",
        &["can not set '*'"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &conf("{allow_origins_by_metadata: [EXAMPLE]}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.cors.allow_origins_by_metadata",
        &["not supported"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &conf("{allow_origins_by_regex: ['(?<=x)y']}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.cors.allow_origins_by_regex[0]",
        &["regex"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        "consumers:\n  - username: u\n    plugins:\n      cors: {}\n#END\n",
    )]);
    assert!(
        lines.iter().any(|l| l.contains("cors")),
        "cors is not a consumer plugin: {lines:?}"
    );
}
