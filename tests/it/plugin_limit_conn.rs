//! limit-conn through the real binary: the APISIX docs' example (conn 2, burst 1: of five
//! concurrent requests three pass and two get 429), slots given back when requests end, a
//! consumer's own limit across routes, and the refused confs. Concurrency is made certain by a
//! slow upstream (`x-echo-delay-ms`) and by waiting until the held requests reached it, not by
//! timing.

use std::time::Duration;

use crate::plugin_ip_restriction::plugin_rejections;
use crate::support::{Gateway, Upstream, assert_line, check_fails, http, wait_until};

const SLOW: (&str, &str) = ("x-echo-delay-ms", "4000");

#[test]
fn limit_conn_follows_the_apisix_example() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: john, plugins: {{key-auth: {{key: john-key}}}}}}
  - username: jane
    plugins:
      key-auth: {{key: jane-key}}
      limit-conn: {{conn: 1, burst: 0, default_conn_delay: 0.1, key: consumer_name, rejected_code: 429, rejected_msg: "one at a time"}}
routes:
  - id: limit-conn-route
    uri: /get
    plugins:
      limit-conn:
        conn: 2
        burst: 1
        default_conn_delay: 0.1
        key_type: var
        key: remote_addr
        policy: local
        rejected_code: 429
    upstream: {u}
  - id: a
    uri: /a
    plugins: {{key-auth: {{}}}}
    upstream: {u}
  - id: b
    uri: /b
    plugins: {{key-auth: {{}}}}
    upstream: {u}
#END
"#,
        u = up.yaml()
    ));
    let port = gw.port();

    // Five concurrent requests: the first three hold the two slots and the burst (the third
    // after a 0.1 s delay) while the upstream is slow; the other two are refused.
    let held: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || http(port, "GET", "/get", &[SLOW], b"").status))
        .collect();
    wait_until(
        Duration::from_secs(20),
        "three requests reach the upstream",
        || up.hits() >= 3,
    );
    let before = up.seen();
    for _ in 0..2 {
        let r = http(port, "GET", "/get", &[], b"");
        assert_eq!(r.status, 429);
        assert_eq!(r.text(), "{\"error_msg\":\"API rate limit exceeded\"}\n");
    }
    up.assert_untouched(before, "refused requests");
    let codes: Vec<u16> = held.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(codes, [200, 200, 200]);
    assert_eq!(plugin_rejections(&gw, "limit-conn-route", "limit-conn"), 2);
    // The slots are given back when those requests end (just after their responses).
    wait_until(Duration::from_secs(10), "the slots are given back", || {
        http(port, "GET", "/get", &[], b"").status == 200
    });
    let codes: Vec<u16> = (0..3)
        .map(|_| http(port, "GET", "/get", &[], b"").status)
        .collect();
    assert_eq!(codes, [200, 200, 200]);

    // A consumer's own limit-conn holds across routes; other consumers are not affected.
    let hits = up.hits();
    let jane = std::thread::spawn(move || {
        http(port, "GET", "/a", &[SLOW, ("apikey", "jane-key")], b"").status
    });
    wait_until(
        Duration::from_secs(20),
        "jane's request reaches the upstream",
        || up.hits() > hits,
    );
    let r = http(port, "GET", "/b", &[("apikey", "jane-key")], b"");
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), "{\"error_msg\":\"one at a time\"}\n");
    assert_eq!(
        http(port, "GET", "/b", &[("apikey", "john-key")], b"").status,
        200
    );
    assert_eq!(jane.join().unwrap(), 200);
    wait_until(Duration::from_secs(10), "jane's slot is given back", || {
        http(port, "GET", "/b", &[("apikey", "jane-key")], b"").status == 200
    });
}

#[test]
fn confs_tollgate_cannot_honour_are_refused() {
    let conf = |lc: &str| {
        format!(
            "routes:\n  - id: r\n    uri: /r\n    plugins:\n      limit-conn: {lc}\n    upstream: {{nodes: {{\"127.0.0.1:1\": 1}}}}\n#END\n"
        )
    };
    let ok = "conn: 2, burst: 1, default_conn_delay: 0.1, key: remote_addr";
    let lines = check_fails(&[("resources.yaml", &conf(&format!("{{{ok}, policy: redis}}")))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-conn.policy",
        &["`redis` is not supported"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &conf("{conn: '$http_x_conn', burst: 1, default_conn_delay: 0.1, key: remote_addr}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-conn.conn",
        &["not supported"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &conf("{default_conn_delay: 0.1, rules: [{conn: 1, burst: 0, key: $remote_addr}]}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-conn.rules",
        &["not supported"],
    );
}
