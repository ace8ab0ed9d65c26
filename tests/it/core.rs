//! Gateway core (issue 3): routing, path normalisation, services and upstreams, load balancing,
//! `pass_host`, upstream failures, `tollgate check`, the HTTPS listener, hot reload and the
//! systemd unit. Every test runs the real binary against echo upstreams.

use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::support::{
    Client, Gateway, Resp, Seen, Upstream, free_port, http, make_test_cert, run_tollgate,
    tls_connect, tollgate_check, try_http, wait_until,
};
use crate::support::{assert_line, check_fails};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Echo upstreams by name; `up(name)` is an inline upstream on that one node.
struct Ups(Vec<(&'static str, Upstream)>);

impl Ups {
    fn start(names: &[&'static str]) -> Ups {
        Ups(names.iter().map(|n| (*n, Upstream::start(n))).collect())
    }

    fn get(&self, name: &str) -> &Upstream {
        let found = self.0.iter().find(|(n, _)| *n == name);
        &found.unwrap_or_else(|| panic!("no upstream {name}")).1
    }

    fn up(&self, name: &str) -> String {
        self.get(name).yaml()
    }

    /// A resource file of routes `(id, other fields as YAML flow text, upstream name)`.
    fn routes(&self, table: &[(&str, &str, &str)]) -> String {
        let mut yaml = String::from("routes:\n");
        for (id, fields, up) in table {
            let up = self.up(up);
            yaml.push_str(&format!("  - {{id: {id}, {fields}, upstream: {up}}}\n"));
        }
        yaml.push_str("#END\n");
        yaml
    }
}

/// The `node` of an echo answer (panics if the response did not come from an echo server).
fn node(resp: &Resp) -> String {
    assert_eq!(resp.status, 200, "expected an echo answer: {}", resp.text());
    resp.json()["node"]
        .as_str()
        .unwrap_or_else(|| panic!("no node in {}", resp.text()))
        .to_owned()
}

fn get(gw: &Gateway, target: &str) -> Resp {
    http(gw.port(), "GET", target, &[], b"")
}

fn get_host(gw: &Gateway, target: &str, host: &str) -> Resp {
    http(gw.port(), "GET", target, &[("Host", host)], b"")
}

/// A rejection of ours: this status, `Content-Type: application/json`, `{"error_msg": "..."}`.
fn assert_json_error(resp: &Resp, status: u16) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    let ct = resp.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    assert!(
        resp.json()["error_msg"].is_string(),
        "body: {}",
        resp.text()
    );
}

fn assert_404(resp: &Resp) {
    assert_json_error(resp, 404);
    assert_eq!(resp.json(), json!({"error_msg": "404 Route Not Found"}));
}

/// Routes `(id, uri, upstream)` as a resource file ending with `#END`.
fn routes_yaml(routes: &[(&str, &str, &Upstream)]) -> String {
    let mut yaml = String::from("routes:\n");
    for (id, uri, up) in routes {
        yaml.push_str(&format!(
            "  - id: {id}\n    uri: \"{uri}\"\n    upstream: {}\n",
            up.yaml()
        ));
    }
    yaml.push_str("#END\n");
    yaml
}

// ---------------------------------------------------------------------------------------------
// Routing

#[test]
fn routing_matches_as_apisix_does() {
    let names = [
        "exact", "api", "special", "v2", "nohost", "host", "wild", "get", "post", "plow", "phigh",
        "pdelete", "uris", "ra-yes", "ra-no",
    ];
    let ups = Ups::start(&names);
    let gw = Gateway::start(&ups.routes(&[
        ("exact", "uri: /exact", "exact"),
        ("api", r#"uri: "/api/*""#, "api"),
        ("special", "uri: /api/special", "special"),
        ("v2", r#"uri: "/api/v2/*""#, "v2"),
        ("nohost", "uri: /h, priority: 10", "nohost"),
        ("host", "uri: /h, hosts: [example.com]", "host"),
        ("wild", r#"uri: /h, hosts: ["*.wild.test"]"#, "wild"),
        ("get", "uri: /m, methods: [GET]", "get"),
        ("post", "uri: /m, methods: [POST, PUT]", "post"),
        ("plow", "uri: /p, priority: 1", "plow"),
        ("phigh", "uri: /p, priority: 2", "phigh"),
        (
            "pdelete",
            "uri: /p, priority: 3, methods: [DELETE]",
            "pdelete",
        ),
        ("off", "uri: /off, status: 0", "exact"),
        ("uris", r#"uris: [/u1, "/u2/*"]"#, "uris"),
        (
            "ra-no",
            r#"uri: /ra, priority: 5, remote_addrs: ["10.0.0.0/8"]"#,
            "ra-no",
        ),
        (
            "ra-yes",
            r#"uri: /ra, remote_addrs: ["10.1.2.3", "127.0.0.0/8"]"#,
            "ra-yes",
        ),
        (
            "ra-only-no",
            r#"uri: /ra-no, remote_addrs: ["192.0.2.1"]"#,
            "ra-no",
        ),
    ]));
    let cases = [
        // exact, prefix, exact beats prefix, longer prefix beats shorter
        ("GET", "/exact", "", "exact"),
        ("GET", "/api/x", "", "api"),
        ("GET", "/api/", "", "api"),
        ("GET", "/api/special", "", "special"),
        ("GET", "/api/special/x", "", "api"),
        ("GET", "/api/v2/x", "", "v2"),
        ("GET", "/api/v1/x", "", "api"),
        // hosts (exact, wildcard, any case, with a port) before host-less routes, whatever
        // their priority; a host that matches no host route falls back to host-less ones
        ("GET", "/h", "example.com", "host"),
        ("GET", "/h", "EXAMPLE.com", "host"),
        ("GET", "/h", "example.com:8080", "host"),
        ("GET", "/h", "a.wild.test", "wild"),
        ("GET", "/h", "b.a.wild.test", "wild"),
        ("GET", "/h", "other.test", "nohost"),
        ("GET", "/h", "wild.test", "nohost"),
        ("GET", "/h", "", "nohost"),
        ("GET", "/exact", "example.com", "exact"),
        // methods
        ("GET", "/m", "", "get"),
        ("POST", "/m", "", "post"),
        ("PUT", "/m", "", "post"),
        // priority, then the other conditions filter
        ("GET", "/p", "", "phigh"),
        ("DELETE", "/p", "", "pdelete"),
        ("GET", "/u1", "", "uris"),
        ("GET", "/u2/x", "", "uris"),
        ("GET", "/ra", "", "ra-yes"),
    ];
    for (method, target, host, want) in cases {
        let headers: &[(&str, &str)] = if host.is_empty() {
            &[]
        } else {
            &[("Host", host)]
        };
        let resp = http(gw.port(), method, target, headers, b"");
        assert_eq!(node(&resp), want, "{method} {target} Host: {host:?}");
    }
    for (method, target) in [
        ("GET", "/nothing"),
        ("GET", "/exact/x"),
        ("GET", "/exac"),
        ("DELETE", "/m"),
        ("GET", "/off"),
        ("GET", "/u1/x"),
        ("GET", "/ra-no"),
    ] {
        assert_404(&http(gw.port(), method, target, &[], b""));
    }
}

/// Without a route bound to hosts the Host header is not read for routing: whatever a client
/// writes there (odd, long, an IPv6 bracket left open, a port out of range) routes by path
/// alone, as before.
#[test]
fn without_host_routes_any_host_routes_by_path() {
    let ups = Ups::start(&["only"]);
    let gw = Gateway::start(&ups.routes(&[("only", r#"uri: "/a/*""#, "only")]));
    let long = "h".repeat(4000);
    for host in [
        "example.com",
        "EXAMPLE.COM:99999",
        "[::1",
        "a:b:c",
        ".",
        long.as_str(),
    ] {
        assert_eq!(
            node(&get_host(&gw, "/a/x", host)),
            "only",
            "Host: {host:.40}"
        );
    }
    assert_404(&get_host(&gw, "/b", "example.com"));
}

#[test]
fn paths_are_normalised_before_matching_and_sent_normalised() {
    let ups = Ups::start(&["b", "enc", "xab", "space"]);
    let gw = Gateway::start(&ups.routes(&[
        ("b", "uri: /b", "b"),
        ("enc", r#"uri: "/x/a%2Fb""#, "enc"),
        ("xab", "uri: /x/a/b", "xab"),
        ("space", r#"uri: "/s p""#, "space"),
    ]));
    // (sent, route, what the upstream receives)
    let cases = [
        ("/b", "b", "/b"),
        ("/a/../b", "b", "/b"),
        ("/../b", "b", "/b"),
        ("/./b", "b", "/b"),
        ("//b", "b", "/b"),
        ("/a//../b", "b", "/b"),
        ("/%62", "b", "/b"),
        ("/a/%2E%2E/b", "b", "/b"),
        ("/b?x=1&y=%2F&z=/../", "b", "/b?x=1&y=%2F&z=/../"),
        ("/x/a%2Fb", "xab", "/x/a/b"),
        ("/x/a%2fb", "xab", "/x/a/b"),
        // Decoded once: `%252F` is the text `%2F`, sent on re-encoded.
        ("/x/a%252Fb", "enc", "/x/a%252Fb"),
        ("/caf%c3%a9/../b", "b", "/b"),
        ("/%7Eb/../b", "b", "/b"),
        ("/x/a/b", "xab", "/x/a/b"),
        ("/x//a/./b", "xab", "/x/a/b"),
        ("/s%20p", "space", "/s%20p"),
    ];
    for (sent, want, upstream_uri) in cases {
        let resp = get(&gw, sent);
        assert_eq!(node(&resp), want, "GET {sent}");
        assert_eq!(resp.json()["uri"], upstream_uri, "GET {sent}");
    }
    for bad in ["/a%zz", "/b%", "/b%4", "/b%00", "/x/%"] {
        assert_json_error(&get(&gw, bad), 400);
    }
}

// ---------------------------------------------------------------------------------------------
// Services, upstreams, balancing, pass_host, upstream failures

#[test]
fn routes_inherit_upstreams_from_services_and_upstream_ids() {
    let ups = Ups::start(&["a", "b", "c", "d"]);
    let (a, d) = (ups.get("a"), ups.get("d"));
    let gw = Gateway::start(&format!(
        r#"upstreams:
  - id: u1
    type: roundrobin
    nodes:
      "{}": 1
  - id: u2
    nodes:
      - {{host: 127.0.0.1, port: {}, weight: 1}}
services:
  - {{id: s1, upstream_id: u1}}
  - {{id: s2, upstream: {}}}
  - {{id: s3, hosts: [svc.test], upstream: {}}}
routes:
  - {{id: r1, uri: /svc1, service_id: s1}}
  - {{id: r2, uri: /svc2, service_id: s2}}
  - {{id: r3, uri: /ups, upstream_id: u1}}
  - {{id: r4, uri: /own, service_id: s2, upstream_id: u1}}
  - {{id: r5, uri: /svc3, service_id: s3}}
  - {{id: r6, uri: /svc3own, service_id: s3, hosts: [own.test]}}
  - {{id: r7, uri: /list, upstream_id: u2}}
#END
"#,
        a.addr(),
        d.port(),
        ups.up("b"),
        ups.up("c"),
    ));
    assert_eq!(node(&get(&gw, "/svc1")), "a");
    assert_eq!(node(&get(&gw, "/svc2")), "b");
    assert_eq!(node(&get(&gw, "/ups")), "a");
    assert_eq!(
        node(&get(&gw, "/own")),
        "a",
        "the route's upstream beats the service's"
    );
    assert_eq!(node(&get_host(&gw, "/svc3", "svc.test")), "c");
    assert_404(&get_host(&gw, "/svc3", "other.test"));
    assert_eq!(node(&get_host(&gw, "/svc3own", "own.test")), "c");
    assert_404(&get_host(&gw, "/svc3own", "svc.test"));
    assert_eq!(node(&get(&gw, "/list")), "d");
}

#[test]
fn weighted_round_robin_spreads_by_weight() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&format!(
        "routes:\n  - id: r\n    uri: /rr\n    upstream:\n      type: roundrobin\n      nodes:\n        \"{}\": 1\n        \"{}\": 3\n",
        a.addr(),
        b.addr()
    ));
    let mut client = Client::new(gw.port());
    let (mut to_a, mut to_b) = (0, 0);
    for _ in 0..40 {
        match node(&client.get("/rr")).as_str() {
            "a" => to_a += 1,
            _ => to_b += 1,
        }
    }
    assert!(
        (8..=12).contains(&to_a),
        "a got {to_a} of 40, want about 10"
    );
    assert!(
        (28..=32).contains(&to_b),
        "b got {to_b} of 40, want about 30"
    );
    assert_eq!((a.hits(), b.hits()), (to_a, to_b));
}

#[test]
fn pass_host_pass_node_and_rewrite() {
    let up = Upstream::start("up");
    let nodes = format!(r#"{{"{}": 1}}"#, up.addr());
    let gw = Gateway::start(&format!(
        r#"routes:
  - {{id: default, uri: /default, upstream: {{nodes: {nodes}}}}}
  - {{id: pass, uri: /pass, upstream: {{nodes: {nodes}, pass_host: pass}}}}
  - {{id: node, uri: /node, upstream: {{nodes: {nodes}, pass_host: node}}}}
  - {{id: rewrite, uri: /rewrite, upstream: {{nodes: {nodes}, pass_host: rewrite, upstream_host: rewritten.test}}}}
"#
    ));
    let host = |path| get_host(&gw, path, "client.test").json()["headers"]["host"].clone();
    assert_eq!(host("/default"), "client.test");
    assert_eq!(host("/pass"), "client.test");
    assert_eq!(host("/node"), up.addr().as_str());
    assert_eq!(host("/rewrite"), "rewritten.test");
}

#[test]
fn upstream_failures_are_502_and_504_with_json() {
    let up = Upstream::start("up");
    let down = format!("127.0.0.1:{}", free_port());
    let gw = Gateway::start(&format!(
        r#"routes:
  - {{id: down, uri: /down, upstream: {{nodes: {{"{down}": 1}}}}}}
  - {{id: reset, uri: /reset, upstream: {up}}}
  - id: slow
    uri: /slow
    upstream: {{nodes: {{"{addr}": 1}}, timeout: {{connect: 1, send: 1, read: 1}}}}
  - id: slow-route
    uri: /slow-route
    timeout: {{connect: 1, send: 1, read: 1}}
    upstream: {{nodes: {{"{addr}": 1}}, timeout: {{connect: 60, send: 60, read: 60}}}}
"#,
        up = up.yaml(),
        addr = up.addr(),
    ));
    assert_json_error(&get(&gw, "/down"), 502);
    let reset = http(gw.port(), "GET", "/reset", &[("x-echo-close", "1")], b"");
    assert_json_error(&reset, 502);
    let delay = [("x-echo-delay-ms", "3000")];
    assert_json_error(&http(gw.port(), "GET", "/slow", &delay, b""), 504);
    assert_json_error(&http(gw.port(), "GET", "/slow-route", &delay, b""), 504);
    // The same routes answer when the upstream does.
    assert_eq!(node(&get(&gw, "/slow")), "up");
    assert_eq!(node(&get(&gw, "/reset")), "up");
}

// ---------------------------------------------------------------------------------------------
// tollgate check, and refusing to start

const NODE_9081: &str = r#"{nodes: {"127.0.0.1:9081": 1}}"#;

#[test]
fn check_accepts_a_good_file() {
    let good = "upstreams:\n  - id: u1\n    type: roundrobin\n    nodes:\n      \"127.0.0.1:9081\": 1\nroutes:\n  - id: r1\n    uri: /x\n    upstream_id: u1\n#END\n";
    let (code, out, err) = tollgate_check(&[("resources.yaml", good)]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out.trim_end(),
        "ok: 1 routes, 0 services, 1 upstreams, 0 consumers, 0 credentials, 0 consumer groups"
    );
    // Without `#END`: still ok, with a warning.
    let (code, out, err) = tollgate_check(&[("resources.yaml", good.trim_end_matches("#END\n"))]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.starts_with("ok: 1 routes"), "stdout: {out}");
    assert!(
        err.contains("#END"),
        "a warning about the missing #END: {err}"
    );
}

#[test]
fn check_reports_every_error_with_its_place() {
    let route =
        |extra: &str| format!("routes:\n  - {{id: r1, uri: /x, upstream: {NODE_9081}{extra}}}\n");
    let lines = check_fails(&[("resources.yaml", &route(", bogus: 1"))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0]",
        &["unknown field `bogus`"],
    );

    let lines = check_fails(&[("resources.yaml", &route(", plugins: {no-such-plugin: {}}"))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins",
        &["no-such-plugin"],
    );

    let lines = check_fails(&[(
        "resources.yaml",
        &route(", plugins: {key-auth: {headr: apikey}}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.key-auth",
        &["unknown field `headr`"],
    );

    let lines = check_fails(&[(
        "resources.yaml",
        &route(r#", vars: [["arg_a", "==", "1"]]"#),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].vars",
        &["not supported by tollgate"],
    );

    let ssls = format!("{}ssls:\n  - {{id: s1}}\n", route(""));
    let lines = check_fails(&[("resources.yaml", &ssls)]);
    assert_line(
        &lines,
        "resources.yaml: ssls",
        &["not supported by tollgate"],
    );

    // Duplicate ids name both places, in one file and across files.
    let twice = format!(
        "{}  - {{id: r1, uri: /y, upstream: {NODE_9081}}}\n",
        route("")
    );
    let lines = check_fails(&[("resources.yaml", &twice)]);
    assert_line(&lines, "resources.yaml: routes[1]", &["routes[0]"]);
    let lines = check_fails(&[("resources.yaml", &route("")), ("other.yaml", &route(""))]);
    assert_line(
        &lines,
        "",
        &["resources.yaml: routes[0]", "other.yaml: routes[0]"],
    );

    // References to missing ids; every error is printed, not only the first.
    let dangling = "routes:\n  - {id: r1, uri: /x, upstream_id: nope}\n  - {id: r2, uri: /y, service_id: nada}\n";
    let lines = check_fails(&[("resources.yaml", dangling)]);
    assert_line(&lines, "resources.yaml: routes[0].upstream_id", &["nope"]);
    assert_line(&lines, "resources.yaml: routes[1].service_id", &["nada"]);

    // The node file is checked too.
    let node = format!(
        "listen: [\"127.0.0.1:{}\"]\nlistn: [\"127.0.0.1:1\"]\nstatus_listen: \"127.0.0.1:{}\"\nresources: [resources.yaml]\n",
        free_port(),
        free_port()
    );
    let lines = check_fails(&[("tollgate.yaml", &node), ("resources.yaml", &route(""))]);
    assert_line(&lines, "", &["tollgate.yaml", "listn"]);
}

#[test]
fn invalid_config_refuses_to_start() {
    let bad = format!("routes:\n  - {{id: r1, uri: /x, bogus: 1, upstream: {NODE_9081}}}\n");
    let (code, _, err) = run_tollgate(&[], &[("resources.yaml", &bad)]);
    assert_eq!(code, 1, "stderr: {err}");
    let lines: Vec<String> = err.lines().map(str::to_owned).collect();
    assert_line(
        &lines,
        "resources.yaml: routes[0]",
        &["unknown field `bogus`"],
    );
}

// ---------------------------------------------------------------------------------------------
// HTTPS

#[test]
fn https_listener_speaks_h2_and_http1_by_alpn() {
    let (cert, key, der) = make_test_cert();
    let up = Upstream::start("up");
    let gw = Gateway::builder().tls(&cert, &key).start(&format!(
        "routes:\n  - {{id: r, uri: /t, upstream: {}}}\n",
        up.yaml()
    ));
    let host = [("Host", "localhost")];

    let mut conn = tls_connect(gw.tls_port(), &der, &["http/1.1"]).unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("http/1.1"));
    for _ in 0..2 {
        let resp = conn.send("GET", "/t", &host, b"").unwrap();
        assert_eq!(node(&resp), "up");
    }
    assert_404(&conn.send("GET", "/nothing", &host, b"").unwrap());

    let mut conn = tls_connect(gw.tls_port(), &der, &[]).unwrap();
    assert_eq!(node(&conn.send("GET", "/t", &host, b"").unwrap()), "up");

    let mut conn = tls_connect(gw.tls_port(), &der, &["h2", "http/1.1"]).unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("h2"));
    let (status, body) = conn.h2_get("localhost", "/t").unwrap();
    assert_eq!(
        status,
        Some(200),
        "body: {}",
        String::from_utf8_lossy(&body)
    );
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["node"], "up");

    // The plain listener serves beside it.
    assert_eq!(node(&get(&gw, "/t")), "up");
}

// ---------------------------------------------------------------------------------------------
// Hot reload

#[test]
fn reload_adds_changes_and_deletes_routes() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&routes_yaml(&[("one", "/one", &a)]));
    let v0 = gw.config_version();
    assert_eq!(node(&get(&gw, "/one")), "a");
    assert_404(&get(&gw, "/two"));

    gw.write_file(
        "resources.yaml",
        &routes_yaml(&[("one", "/one", &a), ("two", "/two", &b)]),
    );
    let v1 = gw.wait_reload(&v0);
    assert_eq!(node(&get(&gw, "/two")), "b");

    gw.write_file(
        "resources.yaml",
        &routes_yaml(&[("one", "/one", &b), ("two", "/two", &b)]),
    );
    let v2 = gw.wait_reload(&v1);
    assert_eq!(node(&get(&gw, "/one")), "b");

    gw.write_file("resources.yaml", &routes_yaml(&[("one", "/one", &b)]));
    gw.wait_reload(&v2);
    assert_404(&get(&gw, "/two"));
    assert_eq!(node(&get(&gw, "/one")), "b");
}

#[test]
fn reload_refuses_an_invalid_file_and_keeps_serving() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&routes_yaml(&[("one", "/one", &a)]));
    let v0 = gw.config_version();

    let mark = gw.log_mark();
    let bad =
        routes_yaml(&[("one", "/one", &b)]).replace("    uri:", "    bogus_field_7: 1\n    uri:");
    gw.write_file("resources.yaml", &bad);
    let log = gw.wait_log(mark, &["bogus_field_7"]);
    assert!(
        log.contains("resources.yaml") && log.contains("routes[0]"),
        "log: {log}"
    );
    assert_eq!(gw.config_version(), v0);
    assert_eq!(
        node(&get(&gw, "/one")),
        "a",
        "the old snapshot still serves"
    );

    gw.write_file("resources.yaml", &routes_yaml(&[("one", "/one", &b)]));
    gw.wait_reload(&v0);
    assert_eq!(node(&get(&gw, "/one")), "b");
}

/// Lines of the log after `mark` that look like a refused reload.
fn refusals(gw: &Gateway, mark: usize) -> usize {
    let log = gw.stderr();
    let tail = log.get(mark..).unwrap_or("");
    tail.lines()
        .filter(|l| l.contains("#END") || l.contains("WARN") || l.contains("ERROR"))
        .count()
}

#[test]
fn reload_refuses_a_file_truncated_before_its_end_marker() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let full = routes_yaml(&[
        ("one", "/one", &a),
        ("two", "/two", &b),
        ("three", "/three", &b),
    ]);
    let gw = Gateway::start(&full);
    let v0 = gw.config_version();

    // Cut at an entry boundary: valid YAML with one route, no `#END`; written in place.
    let cut = full.find("  - id: two").unwrap();
    let mark = gw.log_mark();
    gw.write_file_in_place("resources.yaml", &full[..cut]);
    wait_until(
        Duration::from_secs(10),
        "the truncated file is refused",
        || refusals(&gw, mark) > 0,
    );
    // Every event of the in-place write is handled once a later SIGHUP's load is refused too.
    let seen = refusals(&gw, mark);
    gw.sighup();
    wait_until(
        Duration::from_secs(10),
        "the SIGHUP reload is refused",
        || refusals(&gw, mark) > seen,
    );
    assert_eq!(gw.config_version(), v0);
    assert_eq!(node(&get(&gw, "/two")), "b");
    assert_eq!(node(&get(&gw, "/three")), "b");

    let fixed = routes_yaml(&[("one", "/one", &b), ("two", "/two", &b)]);
    gw.write_file_in_place("resources.yaml", &fixed);
    gw.wait_reload(&v0);
    assert_eq!(node(&get(&gw, "/one")), "b");
    assert_404(&get(&gw, "/three"));
}

#[test]
fn sighup_reloads_and_picks_up_new_files_of_a_glob() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::builder()
        .resources(&["resources.yaml", "extra/*.yaml"])
        .file("extra/base.yaml", "routes: []\n#END\n")
        .start(&routes_yaml(&[("one", "/one", &a)]));

    // SIGHUP reloads (the default action would kill the process).
    let (last, mark) = (gw.last_reload(), gw.log_mark());
    gw.sighup();
    wait_until(Duration::from_secs(10), "a reload after SIGHUP", || {
        let log = gw.stderr();
        gw.last_reload() != last
            || log
                .get(mark..)
                .unwrap_or("")
                .to_lowercase()
                .contains("reload")
    });
    assert_eq!(node(&get(&gw, "/one")), "a");

    // A new file matching the glob joins at the next reload.
    let v0 = gw.config_version();
    gw.write_file("extra/new.yaml", &routes_yaml(&[("new", "/new", &b)]));
    gw.sighup();
    gw.wait_reload(&v0);
    assert_eq!(node(&get(&gw, "/new")), "b");
    assert_eq!(node(&get(&gw, "/one")), "a");
}

#[test]
fn fifty_reloads_under_load_fail_no_request() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&routes_yaml(&[("r", "/load", &a)]));
    let port = gw.port();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    // One client on a keep-alive connection, one opening a connection per request.
    let clients: Vec<_> = [true, false]
        .into_iter()
        .map(|keep_alive| {
            let (stop, ok) = (stop.clone(), ok.clone());
            std::thread::spawn(move || {
                let mut client = Client::new(port);
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let resp = if keep_alive {
                        client.try_send("GET", "/load", &[], b"")
                    } else {
                        try_http(port, "GET", "/load", &[], b"")
                    };
                    match resp {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => failures.push(format!("{} {}", r.status, r.text())),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), "the load is running", || {
        ok.load(Ordering::SeqCst) >= 20
    });

    let mut version = gw.config_version();
    for i in 0..50 {
        let up = if i % 2 == 0 { &b } else { &a };
        let extra = format!("/v{i}");
        gw.write_file(
            "resources.yaml",
            &routes_yaml(&[("r", "/load", up), ("v", &extra, &a)]),
        );
        version = gw.wait_reload(&version);
    }
    let before_stop = ok.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    println!("{before_stop} requests answered during 50 reloads");
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed requests of {}: {:?}",
        failures.len(),
        failures.len() + ok.load(Ordering::SeqCst),
        &failures[..failures.len().min(10)]
    );
    assert!(
        before_stop > 100,
        "only {before_stop} requests during 50 reloads"
    );
    assert!(a.hits() > 0 && b.hits() > 0, "both upstreams served");
}

// ---------------------------------------------------------------------------------------------
// systemd

#[test]
fn systemd_unit_verifies() {
    let unit_path = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/tollgate.service");
    let unit = fs::read_to_string(unit_path).unwrap_or_else(|e| panic!("{unit_path}: {e}"));
    for directive in [
        "ExecStart=/usr/local/bin/tollgate -c /etc/tollgate/tollgate.yaml",
        "ExecReload=",
        "Restart=",
        "LimitNOFILE=",
        "NoNewPrivileges=",
        "ProtectSystem=strict",
        "ProtectHome=",
        "User=",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(directive)),
            "{unit_path} lacks {directive}"
        );
    }
    // A missing systemd-analyze fails the test: scripts/setup.sh installs it.
    if let Err(e) = Command::new("systemd-analyze").arg("--version").output() {
        panic!("cannot run systemd-analyze ({e}); run scripts/setup.sh (Debian package systemd)");
    }
    // Verify a copy pointing at the built binary: /usr/local/bin/tollgate need not exist here.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("tollgate.service");
    fs::write(
        &copy,
        unit.replace("/usr/local/bin/tollgate", env!("CARGO_BIN_EXE_tollgate")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Complaints about other units on this machine are not ours.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("tollgate.service"))
        .collect();
    if !text.trim().is_empty() {
        eprintln!("systemd-analyze verify says:\n{text}");
    }
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Signals and limits

/// SIGTERM and SIGINT are both graceful: an in-flight request finishes, then the process exits 0.
#[test]
fn sigterm_and_sigint_finish_in_flight_requests_and_exit_zero() {
    for sig in ["TERM", "INT"] {
        let up = Upstream::start("slow");
        let mut gw = Gateway::start(&format!(
            "routes:\n  - {{id: r, uri: /slow, upstream: {}}}\n#END\n",
            up.yaml()
        ));
        let port = gw.port();
        let inflight = std::thread::spawn(move || {
            http(port, "GET", "/slow", &[("x-echo-delay-ms", "1500")], b"")
        });
        wait_until(
            Duration::from_secs(10),
            "the upstream got the request",
            || up.hits() == 1,
        );
        gw.signal(sig);
        let resp = inflight.join().unwrap();
        assert_eq!(
            resp.status, 200,
            "SIG{sig}: the in-flight request completes"
        );
        let status = gw
            .wait_exit(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("SIG{sig}: the gateway did not exit"));
        assert_eq!(status.code(), Some(0), "SIG{sig}: exit code");
    }
}

/// `client_max_body_size` answers 413 with a JSON body, by Content-Length and while streaming.
#[test]
fn client_max_body_size_gives_413() {
    let up = Upstream::start("body");
    let gw = Gateway::builder()
        .node_extra("client_max_body_size: 10\n")
        .start(&format!(
            "routes:\n  - {{id: r, uri: /up, upstream: {}}}\n#END\n",
            up.yaml()
        ));
    let small = http(gw.port(), "POST", "/up", &[], b"0123456789");
    assert_eq!(small.status, 200);
    let before = up.seen();
    let big = http(gw.port(), "POST", "/up", &[], b"0123456789A");
    assert_eq!(big.status, 413);
    assert_eq!(big.header("content-type"), Some("application/json"));
    assert_eq!(
        big.text(),
        "{\"error_msg\":\"413 Request Entity Too Large\"}\n"
    );
    up.assert_untouched(before, "a Content-Length over the limit");
    let chunked = http(
        gw.port(),
        "POST",
        "/up",
        &[("transfer-encoding", "chunked")],
        b"b\r\n0123456789A\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 413, "a chunked body over the limit");
    assert_eq!(
        up.hits(),
        1,
        "no request over the limit reached the upstream whole"
    );
}

/// A chunked body over `client_max_body_size` gets 413 and nothing of it, not even the head,
/// reaches the upstream (the head is held until the body is known to fit, as hmac-auth's
/// `validate_request_body` must hold it).
#[test]
fn chunked_body_over_client_max_body_size_never_reaches_the_upstream() {
    let up = Upstream::start("body");
    let gw = Gateway::builder()
        .node_extra("client_max_body_size: 10\n")
        .start(&format!(
            "routes:\n  - {{id: r, uri: /up, upstream: {}}}\n#END\n",
            up.yaml()
        ));
    for body in [
        &b"b\r\n0123456789A\r\n0\r\n\r\n"[..],
        &b"5\r\n01234\r\n5\r\n56789\r\n1\r\nA\r\n0\r\n\r\n"[..],
    ] {
        let before = up.seen();
        let resp = http(
            gw.port(),
            "POST",
            "/up",
            &[("transfer-encoding", "chunked")],
            body,
        );
        assert_eq!(resp.status, 413, "a chunked body over the limit");
        up.assert_untouched(before, "a chunked body over the limit");
    }
}

/// Oversized request targets and headers get 414 and 431 with JSON bodies.
#[test]
fn oversized_uri_and_headers_get_414_and_431() {
    let up = Upstream::start("any");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: r, uri: /*, upstream: {}}}\n#END\n",
        up.yaml()
    ));
    let long = format!("/{}", "a".repeat(9000));
    let r = http(gw.port(), "GET", &long, &[], b"");
    assert_eq!(r.status, 414);
    assert_eq!(r.text(), "{\"error_msg\":\"414 Request-URI Too Large\"}\n");
    let big = "b".repeat(70 * 1024);
    let r = http(gw.port(), "GET", "/x", &[("x-big", &big)], b"");
    assert_eq!(r.status, 431);
    assert_eq!(
        r.text(),
        "{\"error_msg\":\"431 Request Header Fields Too Large\"}\n"
    );
    up.assert_untouched(Seen::default(), "neither reached the upstream");
}

/// SIGQUIT hands the listeners to a new process started with `--upgrade`: requests keep being
/// answered, by the new process once the old one has exited (0).
#[test]
fn sigquit_hands_listeners_to_an_upgraded_process() {
    let up = Upstream::start("u");
    let mut gw = Gateway::builder()
        .node_extra("upgrade_sock: upgrade.sock\n")
        .start(&format!(
            "routes:\n  - {{id: r, uri: /x, upstream: {}}}\n#END\n",
            up.yaml()
        ));
    let node = gw.dir().join("tollgate.yaml");
    let log = fs::File::create(gw.dir().join("new.log")).unwrap();
    // `upgrade.sock` is relative to the node file's folder, whatever the working directory.
    let mut new = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("-c")
        .arg(&node)
        .arg("--upgrade")
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let new = Kill(&mut new);
    let new_log = gw.dir().join("new.log");
    wait_until(
        Duration::from_secs(20),
        "the new process waits for sockets",
        || fs::read_to_string(&new_log).is_ok_and(|l| l.contains("socket transfer")),
    );
    gw.signal("QUIT");
    let status = gw
        .wait_exit(Duration::from_secs(30))
        .expect("the old process exits after handing over");
    assert_eq!(status.code(), Some(0));
    let r = http(gw.port(), "GET", "/x", &[], b"");
    assert_eq!(r.status, 200, "the new process serves the same port");
    assert!(
        fs::read_to_string(&new_log)
            .unwrap()
            .contains("Loaded config")
    );
    drop(new);
}

/// tollgate never compresses (no gzip/brotli plugin, no Pingora compression module): a client's
/// `Accept-Encoding` reaches the upstream as sent, and the upstream's body and encoding come
/// back as they left it, compressed or not.
#[test]
fn responses_pass_through_uncompressed_and_unchanged() {
    let up = Upstream::start("enc");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: r, uri: /x, upstream: {}}}\n#END\n",
        up.yaml()
    ));
    let ae = ("accept-encoding", "gzip, br, zstd");
    let r = http(gw.port(), "GET", "/x", &[ae], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding"),
        None,
        "not compressed by the gateway"
    );
    assert_eq!(r.json()["headers"]["accept-encoding"], "gzip, br, zstd");
    let gzipped = ("x-echo-header", "content-encoding=gzip");
    let r = http(gw.port(), "GET", "/x", &[ae, gzipped], b"");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.json()["uri"], "/x", "the upstream's body as it sent it");
}

/// Plain listeners also speak HTTP/2 with prior knowledge (h2c), checked with curl; headers a
/// plugin adds to the response (limit-count's quota, written to the HTTP/1 wire directly when
/// it is the only one editing the head) reach an HTTP/2 client too, once each.
#[test]
fn plain_listener_speaks_h2c() {
    let up = Upstream::start("h2c");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: r, uri: /x, upstream: {0}}}\n  - {{id: q, uri: /q, upstream: {0}, plugins: {{limit-count: {{count: 5, time_window: 60}}}}}}\n#END\n",
        up.yaml()
    ));
    for (version, remaining) in [("--http2-prior-knowledge", 4), ("--http1.1", 3)] {
        let out = Command::new("curl")
            .args(["-s", version, "-o", "/dev/null", "-D", "-"])
            .arg(gw.url("/q"))
            .output()
            .expect("curl is installed by scripts/setup.sh");
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        for line in [
            "x-ratelimit-limit: 5\r\n".to_string(),
            format!("x-ratelimit-remaining: {remaining}\r\n"),
        ] {
            assert_eq!(
                head.matches(&line).count(),
                1,
                "{version}: {line:?} in {head}"
            );
        }
        assert_eq!(head.matches("x-ratelimit-reset: ").count(), 1, "{head}");
    }
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(gw.url("/x"))
        .output()
        .expect("curl is installed by scripts/setup.sh");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    assert_eq!(
        http(gw.port(), "GET", "/x", &[], b"").status,
        200,
        "HTTP/1.1 still works"
    );
}
