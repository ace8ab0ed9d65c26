//! limit-req through the real binary: the APISIX docs' examples (1 QPS per address with
//! `nodelay`, throttling with `burst`, `$remote_addr $consumer_name`), a consumer's own limit on
//! every route, buckets kept across a reload that leaves the conf unchanged, the rejection
//! metric, and the refused confs. Delays are checked by lower bounds only (a delayed request
//! can only be later), counts with slow rates so a loaded machine cannot change them.

use std::time::{Duration, Instant};

use crate::plugin_ip_restriction::plugin_rejections;
use crate::support::{Gateway, Upstream, assert_line, check_fails, http};

fn resources(u: &str, slow_rate: &str) -> String {
    format!(
        r#"consumers:
  - {{username: john, plugins: {{key-auth: {{key: john-key}}}}}}
  - {{username: jane, plugins: {{key-auth: {{key: jane-key}}}}}}
  - username: metered
    plugins:
      key-auth: {{key: metered-key}}
      limit-req: {{rate: 0.1, burst: 0, key: consumer_name, rejected_code: 429, rejected_msg: "slow down", nodelay: true}}
routes:
  - id: limit-req-route
    uri: /get
    plugins:
      limit-req: {{rate: 1, burst: 0, key: remote_addr, key_type: var, rejected_code: 429, policy: local, nodelay: true}}
    upstream: {u}
  - id: throttle
    uri: /throttle
    plugins:
      limit-req: {{rate: 1, burst: 1, key: remote_addr, rejected_code: 429, policy: local}}
    upstream: {u}
  - id: nodelay
    uri: /nodelay
    plugins:
      limit-req: {{rate: 0.1, burst: 1, key: remote_addr, rejected_code: 429, nodelay: true}}
    upstream: {u}
  - id: per-consumer
    uri: /consumer
    plugins:
      key-auth: {{}}
      limit-req: {{rate: 0.1, burst: 0, key: "$remote_addr $consumer_name", key_type: var_combination, rejected_code: 429, policy: local}}
    upstream: {u}
  - id: other
    uri: /other
    plugins: {{key-auth: {{}}}}
    upstream: {u}
  - id: kept
    uri: /kept
    plugins:
      limit-req: {{rate: {slow_rate}, burst: 0, key: remote_addr, nodelay: true}}
    upstream: {u}
#END
"#
    )
}

#[test]
fn limit_req_follows_the_apisix_examples() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&resources(&up.yaml(), "0.1"));

    // 1 QPS per address, nodelay: `curl -i "http://127.0.0.1:9080/get"` gives 200, and again
    // within the same second 429.
    let t = Instant::now();
    let first = http(gw.port(), "GET", "/get", &[], b"");
    let second = http(gw.port(), "GET", "/get", &[], b"");
    assert_eq!(first.status, 200);
    if t.elapsed() < Duration::from_millis(900) {
        assert_eq!(second.status, 429);
        assert_eq!(
            second.text(),
            "{\"error_msg\":\"API rate limit exceeded\"}\n"
        );
    }

    // Throttling, rate 1, burst 1: three requests in a row all succeed, the excess one
    // delayed, so the third is let through no earlier than 2 s after the first.
    let t = Instant::now();
    let codes: Vec<u16> = (0..3)
        .map(|_| http(gw.port(), "GET", "/throttle", &[], b"").status)
        .collect();
    let took = t.elapsed();
    assert_eq!(codes, [200, 200, 200]);
    assert!(took >= Duration::from_millis(1900), "delayed: {took:?}");

    // The same with nodelay: the burst passes at once, the request past it is refused.
    let codes: Vec<u16> = (0..3)
        .map(|_| http(gw.port(), "GET", "/nodelay", &[], b"").status)
        .collect();
    assert_eq!(codes, [200, 200, 429]);
    assert_eq!(plugin_rejections(&gw, "nodelay", "limit-req"), 1);

    // `$remote_addr $consumer_name`: each consumer has its own bucket.
    let get = |key: &str| http(gw.port(), "GET", "/consumer", &[("apikey", key)], b"").status;
    assert_eq!(get("jane-key"), 200);
    assert_eq!(get("john-key"), 200);
    assert_eq!(get("jane-key"), 429);
    assert_eq!(get("john-key"), 429);

    // A consumer's own limit-req follows it to every route.
    let r = http(
        gw.port(),
        "GET",
        "/other",
        &[("apikey", "metered-key")],
        b"",
    );
    assert_eq!(r.status, 200);
    let r = http(
        gw.port(),
        "GET",
        "/consumer",
        &[("apikey", "metered-key")],
        b"",
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), "{\"error_msg\":\"slow down\"}\n");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn buckets_survive_a_reload_that_keeps_the_conf() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&resources(&up.yaml(), "0.1"));
    assert_eq!(http(gw.port(), "GET", "/kept", &[], b"").status, 200);
    assert_eq!(http(gw.port(), "GET", "/kept", &[], b"").status, 503);

    // Another route changes; /kept's conf does not: its bucket is still full.
    let v0 = gw.config_version();
    let changed = resources(&up.yaml(), "0.1").replace(
        "  - id: other\n",
        "  - id: extra\n    uri: /extra\n    upstream: {nodes: {\"127.0.0.1:1\": 1}}\n  - id: other\n",
    );
    gw.write_file("resources.yaml", &changed);
    let v1 = gw.wait_reload(&v0);
    assert_eq!(http(gw.port(), "GET", "/kept", &[], b"").status, 503);

    // A changed conf starts from an empty bucket.
    gw.write_file("resources.yaml", &resources(&up.yaml(), "0.2"));
    gw.wait_reload(&v1);
    assert_eq!(http(gw.port(), "GET", "/kept", &[], b"").status, 200);
    assert_eq!(http(gw.port(), "GET", "/kept", &[], b"").status, 503);
}

#[test]
fn confs_tollgate_cannot_honour_are_refused() {
    let conf = |lr: &str| {
        format!(
            "routes:\n  - id: r\n    uri: /r\n    plugins:\n      limit-req: {lr}\n    upstream: {{nodes: {{\"127.0.0.1:1\": 1}}}}\n#END\n"
        )
    };
    let lines = check_fails(&[(
        "resources.yaml",
        &conf("{rate: 1, burst: 0, key: remote_addr, policy: redis, redis_host: 127.0.0.1}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-req.policy",
        &["`redis` is not supported"],
    );
    let lines = check_fails(&[("resources.yaml", &conf("{rate: 1, burst: 0}"))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-req.key",
        &["required"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &conf("{rate: 0, burst: 0, key: remote_addr}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-req.rate",
        &["greater than 0"],
    );
}
