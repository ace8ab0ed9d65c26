//! limit-count (issue 6): the seeds' FetchBot/JohnDoe scenario, quota headers, rejections,
//! window reset, counting keys, counter ownership (route, service, consumer, consumer group,
//! `group`), counters across reloads, `tollgate check` errors, and the Redis policies: two
//! gateways sharing one quota, `sync_interval` and its over-admission bound, a 3-master cluster,
//! and Redis killed mid-test with and without `allow_degradation`. Every test runs the real
//! binary against an echo upstream; the Redis ones against throwaway `redis-server` processes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Gateway, Redis, RedisCluster, Resp, Upstream, http, tollgate_check, wait_until,
};
use crate::support::{assert_line, check_fails};

// ---------------------------------------------------------------------------------------------
// Helpers

const DEADLINE: Duration = Duration::from_secs(10);

fn get(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> Resp {
    http(gw.port(), "GET", target, headers, b"")
}

/// `(X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset)` as sent; each must appear at
/// most once.
fn quota(resp: &Resp) -> (Option<&str>, Option<&str>, Option<&str>) {
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        let all = resp.headers_all(name);
        assert!(all.len() <= 1, "{name} sent {} times: {all:?}", all.len());
    }
    (
        resp.header("x-ratelimit-limit"),
        resp.header("x-ratelimit-remaining"),
        resp.header("x-ratelimit-reset"),
    )
}

/// `X-RateLimit-Reset` as an integer; panics unless it is one.
fn reset_of(resp: &Resp) -> u64 {
    let reset = quota(resp).2.unwrap_or_else(|| {
        panic!(
            "no X-RateLimit-Reset on {}: {:?}",
            resp.status, resp.headers
        )
    });
    reset
        .parse()
        .unwrap_or_else(|_| panic!("X-RateLimit-Reset {reset:?} is not an integer"))
}

/// A response the echo upstream gave (200, its JSON).
fn echo(resp: &Resp) -> Value {
    assert_eq!(
        resp.status,
        200,
        "expected an upstream answer: {} {:?}",
        resp.text(),
        resp.headers
    );
    let v = resp.json();
    assert!(v["node"].is_string(), "not an echo answer: {}", resp.text());
    v
}

/// Admitted with quota headers: Limit `limit`, Remaining `remaining`, 0 < Reset <= `window`.
/// Returns Reset.
fn assert_admitted(resp: &Resp, limit: u64, remaining: u64, window: u64) -> u64 {
    echo(resp);
    let (l, r, _) = quota(resp);
    assert_eq!(
        (l, r),
        (Some(&*limit.to_string()), Some(&*remaining.to_string())),
        "X-RateLimit-Limit and -Remaining of an admitted request: {:?}",
        resp.headers
    );
    let reset = reset_of(resp);
    assert!(
        (1..=window).contains(&reset),
        "X-RateLimit-Reset {reset} not in 1..={window}"
    );
    reset
}

/// Admitted and no `X-RateLimit-*` header at all.
fn assert_admitted_bare(resp: &Resp) {
    echo(resp);
    assert_eq!(
        quota(resp),
        (None, None, None),
        "no limit-count applies: no quota headers"
    );
}

/// The exact JSON body of a limit-count rejection.
fn reject_body(msg: &str) -> String {
    format!("{}\n", json!({ "error_msg": msg }))
}

/// Rejected by limit-count: `code`, JSON content type, the exact body, and (when `limit` is
/// given) Limit `limit`, Remaining 0 and 0 < Reset <= `window`; with `None`, no quota headers.
fn assert_limited(resp: &Resp, code: u16, msg: &str, limit: Option<u64>, window: u64) {
    assert_eq!(
        (resp.status, resp.text()),
        (code, reject_body(msg)),
        "status and exact body of a rejection; headers {:?}",
        resp.headers
    );
    let ct = resp.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    match limit {
        Some(limit) => {
            let (l, r, _) = quota(resp);
            assert_eq!(
                (l, r),
                (Some(&*limit.to_string()), Some("0")),
                "X-RateLimit-Limit and -Remaining of a rejection: {:?}",
                resp.headers
            );
            let reset = reset_of(resp);
            assert!(
                (1..=window).contains(&reset),
                "X-RateLimit-Reset {reset} of a rejection not in 1..={window}"
            );
        }
        None => assert_eq!(quota(resp), (None, None, None), "quota headers hidden"),
    }
}

/// The default rejection: 503 `{"error_msg":"API rate limit exceeded"}`.
fn assert_503(resp: &Resp, limit: u64, window: u64) {
    assert_limited(resp, 503, "API rate limit exceeded", Some(limit), window);
}

/// The value of an unlabelled sample in `/metrics` on the status port.
fn metric(gw: &Gateway, name: &str) -> f64 {
    let resp = http(gw.status_port(), "GET", "/metrics", &[], b"");
    assert_eq!(resp.status, 200, "/metrics: {}", resp.text());
    let text = resp.text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse::<f64>().expect("a number"))
        })
        .unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{text}"))
}

/// The limit-count keys in one Redis server, with their values.
fn redis_counters(port: u16) -> Vec<(String, u64)> {
    let keys = crate::support::redis_cmd(port, &["KEYS", "tollgate:lc:*"]).expect("KEYS");
    keys.lines()
        .filter(|k| !k.is_empty())
        .map(|k| {
            let v = crate::support::redis_cmd(port, &["GET", k]).expect("GET");
            let n = v
                .parse()
                .unwrap_or_else(|_| panic!("counter {k} holds {v:?}"));
            (k.to_owned(), n)
        })
        .collect()
}

/// A request, timed; the time is bounded by the client's own 10 s socket timeout too.
fn timed(gw: &Gateway, target: &str) -> (Resp, Duration) {
    let start = Instant::now();
    let resp = get(gw, target, &[]);
    (resp, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// The seeds' example

#[test]
fn seed_fetchbot_is_limited_on_petstore_johndoe_never() {
    let up = Upstream::start("petstore");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: FetchBot
    plugins:
      key-auth: {{key: bot-key}}
      limit-count: {{count: 2, time_window: 5}}
  - username: JohnDoe
    plugins:
      key-auth: {{key: john-key}}
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
    let bot = [("apikey", "bot-key")];
    let john = [("apikey", "john-key")];

    let first = get(&gw, "/petstore/pets", &bot);
    assert_eq!(
        assert_admitted(&first, 2, 1, 5),
        5,
        "first request of a window"
    );
    assert_eq!(
        echo(&first)["headers"]["x-consumer-username"],
        "FetchBot",
        "the upstream saw FetchBot"
    );
    assert_admitted(&get(&gw, "/petstore/pets/2", &bot), 2, 0, 5);
    assert_eq!(up.hits(), 2);
    let before = up.seen();
    assert_503(&get(&gw, "/petstore/pets", &bot), 2, 5);
    // The consumer's bucket covers every path of the route, and stays exhausted.
    assert_503(&get(&gw, "/petstore/other?x=1", &bot), 2, 5);
    up.assert_untouched(before, "rejections never reach the upstream");

    // JohnDoe has no limit-count: never limited, never a quota header.
    for i in 0..6 {
        let resp = get(&gw, &format!("/petstore/pets/{i}"), &john);
        assert_admitted_bare(&resp);
        assert_eq!(echo(&resp)["headers"]["x-consumer-username"], "JohnDoe");
    }
    // Auth fails before limit-count: a 401 carries no quota headers.
    let anon = get(&gw, "/petstore/pets", &[]);
    assert_eq!(anon.status, 401, "{}", anon.text());
    assert_eq!(quota(&anon), (None, None, None));
    assert_eq!(up.hits(), 8);
}

#[test]
fn shipped_example_resources_limit_fetchbot_only() {
    let up = Upstream::start("echo");
    let shipped = include_str!("../../conf/resources.yaml");
    assert!(
        shipped.contains("127.0.0.1:9081"),
        "the example's echo node"
    );
    let gw = Gateway::start(&shipped.replace("127.0.0.1:9081", &up.addr()));
    let bot = [("apikey", "bot-key")];
    assert_eq!(
        assert_admitted(&get(&gw, "/petstore/pets", &bot), 2, 1, 5),
        5
    );
    assert_admitted(&get(&gw, "/petstore/pets", &bot), 2, 0, 5);
    assert_503(&get(&gw, "/petstore/pets", &bot), 2, 5);
    for _ in 0..4 {
        assert_admitted_bare(&get(&gw, "/petstore/pets", &[("apikey", "john-key")]));
    }
    assert_admitted_bare(&get(&gw, "/hello/world", &[]));
    assert_eq!(up.hits(), 7);
}

// ---------------------------------------------------------------------------------------------
// Headers, rejections, windows

#[test]
fn quota_headers_count_down_and_can_be_hidden() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"routes:
  - {{id: q, uri: /q, plugins: {{limit-count: {{count: 3, time_window: 10}}}}, upstream: {up}}}
  - id: hidden
    uri: /hidden
    plugins: {{limit-count: {{count: 1, time_window: 10, show_limit_quota_header: false}}}}
    upstream: {up}
  - {{id: open, uri: /open, upstream: {up}}}
#END
"#,
        up = up.yaml()
    ));
    let start = Instant::now();
    let r1 = assert_admitted(&get(&gw, "/q", &[]), 3, 2, 10);
    assert_eq!(r1, 10, "the first request of a window reports time_window");
    let r2 = assert_admitted(&get(&gw, "/q", &[]), 3, 1, 10);
    let r3 = assert_admitted(&get(&gw, "/q", &[]), 3, 0, 10);
    let rejected = get(&gw, "/q", &[]);
    assert_503(&rejected, 3, 10);
    let r4 = reset_of(&rejected);
    // Reset is whole seconds left, rounded up: after `taken` it is at least 10 - taken
    // (rounded down), one less for the clocks' rounding; however slow the machine.
    let taken = start.elapsed().as_secs();
    assert!(
        r1 >= r2 && r2 >= r3 && r3 >= r4 && r4 >= 9u64.saturating_sub(taken),
        "Reset counts down from 10 as time passes ({taken} s): {r1} {r2} {r3} {r4}"
    );
    // The gateway's quota headers replace any the upstream sends.
    let forged = get(&gw, "/open", &[("x-echo-header", "X-RateLimit-Limit=999")]);
    echo(&forged);
    assert_eq!(
        forged.headers_all("x-ratelimit-limit"),
        ["999"],
        "no limit-count: the upstream's header passes untouched"
    );
    assert_admitted_bare(&get(&gw, "/open", &[]));

    // show_limit_quota_header: false hides them on admitted and rejected responses.
    assert_admitted_bare(&get(&gw, "/hidden", &[]));
    assert_limited(
        &get(&gw, "/hidden", &[]),
        503,
        "API rate limit exceeded",
        None,
        10,
    );
    assert_eq!(up.hits(), 6);
}

#[test]
fn upstream_quota_headers_are_replaced_by_the_gateways() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: q, uri: /q, plugins: {{limit-count: {{count: 5, time_window: 30}}}}, upstream: {}}}\n#END\n",
        up.yaml()
    ));
    let resp = get(
        &gw,
        "/q",
        &[
            ("x-echo-header", "X-RateLimit-Limit=999"),
            ("x-echo-header", "X-RateLimit-Remaining=999"),
        ],
    );
    assert_eq!(assert_admitted(&resp, 5, 4, 30), 30);
}

#[test]
fn custom_rejected_code_and_msg() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"routes:
  - id: custom
    uri: /custom
    plugins:
      limit-count:
        count: 1
        time_window: 30
        rejected_code: 429
        rejected_msg: 'Too many requests: say "later" /please'
    upstream: {up}
  - id: teapot
    uri: /teapot
    plugins: {{limit-count: {{count: 1, time_window: 30, rejected_code: 418}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    assert_admitted(&get(&gw, "/custom", &[]), 1, 0, 30);
    let rejected = get(&gw, "/custom", &[]);
    assert_limited(
        &rejected,
        429,
        r#"Too many requests: say "later" /please"#,
        Some(1),
        30,
    );
    assert_eq!(
        rejected.json(),
        json!({"error_msg": "Too many requests: say \"later\" /please"})
    );
    assert_admitted(&get(&gw, "/teapot", &[]), 1, 0, 30);
    assert_limited(
        &get(&gw, "/teapot", &[]),
        418,
        "API rate limit exceeded",
        Some(1),
        30,
    );
    assert_eq!(up.hits(), 2);
}

#[test]
fn window_resets_after_time_window() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: w, uri: /w, plugins: {{limit-count: {{count: 1, time_window: 2}}}}, upstream: {}}}\n#END\n",
        up.yaml()
    ));
    let start = Instant::now();
    assert_eq!(assert_admitted(&get(&gw, "/w", &[]), 1, 0, 2), 2);
    // The window began between `start` and now, so it ends between start + 2 s and this.
    let window_end = start.elapsed() + Duration::from_secs(2);
    assert_503(&get(&gw, "/w", &[]), 1, 2);

    // Poll until admitted again. Time is checked by when each request was sent, not by how
    // long the polling took, so a slow machine cannot fail it: no admission before start + 2 s
    // (less 50 ms for clock rounding), and no rejection of a request sent after the window's
    // latest end (plus the same 50 ms).
    let mut admitted = None;
    wait_until(Duration::from_secs(20), "the window resets", || {
        let sent = start.elapsed();
        let resp = get(&gw, "/w", &[]);
        if resp.status == 200 {
            let elapsed = start.elapsed();
            assert!(
                elapsed >= Duration::from_millis(1950),
                "admitted again after only {elapsed:?} (time_window 2 s)"
            );
            admitted = Some(resp);
            return true;
        }
        assert_503(&resp, 1, 2);
        assert!(
            sent <= window_end + Duration::from_millis(50),
            "rejected a request sent {sent:?} after start; the window ended by {window_end:?}"
        );
        false
    });
    let admitted = admitted.expect("admitted");
    assert_eq!(
        assert_admitted(&admitted, 1, 0, 2),
        2,
        "a fresh window reports the whole time_window"
    );
    assert_503(&get(&gw, "/w", &[]), 1, 2);
    assert_eq!(up.hits(), 2);
}

// ---------------------------------------------------------------------------------------------
// Keys and counter ownership

const TWO_CONSUMERS: &str = "consumers:
  - {username: alice, plugins: {key-auth: {key: alice-key}}}
  - {username: bob, plugins: {key-auth: {key: bob-key}}}
";

const ALICE: [(&str, &str); 1] = [("apikey", "alice-key")];
const BOB: [(&str, &str); 1] = [("apikey", "bob-key")];

#[test]
fn route_key_remote_addr_is_shared_by_consumers_consumer_name_is_not() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"{TWO_CONSUMERS}routes:
  - id: by-ip
    uri: /by-ip
    plugins: {{key-auth: {{}}, limit-count: {{count: 2, time_window: 60}}}}
    upstream: {up}
  - id: by-consumer
    uri: /by-consumer
    plugins: {{key-auth: {{}}, limit-count: {{count: 2, time_window: 60, key: consumer_name}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    // Default key remote_addr: alice and bob both come from 127.0.0.1, one bucket.
    assert_admitted(&get(&gw, "/by-ip", &ALICE), 2, 1, 60);
    assert_admitted(&get(&gw, "/by-ip", &BOB), 2, 0, 60);
    assert_503(&get(&gw, "/by-ip", &ALICE), 2, 60);
    assert_503(&get(&gw, "/by-ip", &BOB), 2, 60);

    // key consumer_name: one bucket each.
    assert_admitted(&get(&gw, "/by-consumer", &ALICE), 2, 1, 60);
    assert_admitted(&get(&gw, "/by-consumer", &ALICE), 2, 0, 60);
    assert_503(&get(&gw, "/by-consumer", &ALICE), 2, 60);
    assert_admitted(&get(&gw, "/by-consumer", &BOB), 2, 1, 60);
    assert_admitted(&get(&gw, "/by-consumer", &BOB), 2, 0, 60);
    assert_503(&get(&gw, "/by-consumer", &BOB), 2, 60);
    assert_eq!(up.hits(), 6);
}

#[test]
fn var_combination_of_consumer_name_and_tenant_header() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"{TWO_CONSUMERS}routes:
  - id: combo
    uri: /combo
    plugins:
      key-auth: {{}}
      limit-count:
        count: 1
        time_window: 60
        key_type: var_combination
        key: "$consumer_name $http_x_tenant"
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let with = |who: &[(&'static str, &'static str); 1], tenant: &'static str| {
        vec![who[0], ("X-Tenant", tenant)]
    };
    assert_admitted(&get(&gw, "/combo", &with(&ALICE, "t1")), 1, 0, 60);
    assert_503(&get(&gw, "/combo", &with(&ALICE, "t1")), 1, 60);
    // Another tenant, another consumer: other buckets.
    assert_admitted(&get(&gw, "/combo", &with(&ALICE, "t2")), 1, 0, 60);
    assert_admitted(&get(&gw, "/combo", &with(&BOB, "t1")), 1, 0, 60);
    assert_503(&get(&gw, "/combo", &with(&BOB, "t1")), 1, 60);
    // No tenant header: the variable is empty, the key is "alice " (its own bucket).
    assert_admitted(&get(&gw, "/combo", &ALICE), 1, 0, 60);
    assert_503(&get(&gw, "/combo", &ALICE), 1, 60);
    assert_503(&get(&gw, "/combo", &with(&ALICE, "t2")), 1, 60);
    assert_eq!(up.hits(), 4);
}

#[test]
fn empty_key_falls_back_to_remote_addr_and_warns_once_per_route() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"routes:
  - id: by-user
    uri: /by-user
    plugins: {{limit-count: {{count: 2, time_window: 60, key: http_x_user}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let warning =
        "route by-user: limit-count key is empty for a request, using the client IP instead";
    assert_admitted(&get(&gw, "/by-user", &[("X-User", "u1")]), 2, 1, 60);
    assert_eq!(
        gw.stderr().matches(warning).count(),
        0,
        "a set key warns not"
    );
    // No X-User: both requests count against 127.0.0.1.
    assert_admitted(&get(&gw, "/by-user", &[]), 2, 1, 60);
    assert_admitted(&get(&gw, "/by-user", &[("X-User", "")]), 2, 0, 60);
    assert_503(&get(&gw, "/by-user", &[]), 2, 60);
    // The header's bucket is another one.
    assert_admitted(&get(&gw, "/by-user", &[("X-User", "u1")]), 2, 0, 60);
    gw.wait_log(0, &[warning]);
    assert_eq!(
        gw.stderr().matches(warning).count(),
        1,
        "warned once per route:\n{}",
        gw.stderr()
    );
    assert_eq!(up.hits(), 4);
}

#[test]
fn service_conf_is_shared_by_its_routes() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"services:
  - id: s1
    upstream: {up}
    plugins: {{limit-count: {{count: 3, time_window: 60}}}}
routes:
  - {{id: a, uri: /a, service_id: s1}}
  - {{id: b, uri: /b, service_id: s1}}
  - id: own
    uri: /own
    service_id: s1
    plugins: {{limit-count: {{count: 1, time_window: 60}}}}
  - id: same-conf
    uri: /same-conf
    plugins: {{limit-count: {{count: 3, time_window: 60}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    assert_admitted(&get(&gw, "/a", &[]), 3, 2, 60);
    assert_admitted(&get(&gw, "/b", &[]), 3, 1, 60);
    assert_admitted(&get(&gw, "/a", &[]), 3, 0, 60);
    assert_503(&get(&gw, "/b", &[]), 3, 60);
    assert_503(&get(&gw, "/a", &[]), 3, 60);
    // A route's own conf wins over its service's, with its own counter.
    assert_admitted(&get(&gw, "/own", &[]), 1, 0, 60);
    assert_503(&get(&gw, "/own", &[]), 1, 60);
    // The same conf on another resource is another counter.
    assert_admitted(&get(&gw, "/same-conf", &[]), 3, 2, 60);
    assert_eq!(up.hits(), 5);
}

#[test]
fn group_is_shared_across_routes() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"routes:
  - {{id: g1, uri: /g1, plugins: {{limit-count: {{count: 2, time_window: 60, group: shared}}}}, upstream: {up}}}
  - {{id: g2, uri: /g2, plugins: {{limit-count: {{count: 2, time_window: 60, group: shared}}}}, upstream: {up}}}
  - {{id: solo, uri: /solo, plugins: {{limit-count: {{count: 2, time_window: 60}}}}, upstream: {up}}}
#END
"#,
        up = up.yaml()
    ));
    assert_admitted(&get(&gw, "/g1", &[]), 2, 1, 60);
    assert_admitted(&get(&gw, "/g2", &[]), 2, 0, 60);
    assert_503(&get(&gw, "/g1", &[]), 2, 60);
    assert_503(&get(&gw, "/g2", &[]), 2, 60);
    assert_admitted(&get(&gw, "/solo", &[]), 2, 1, 60);
    assert_eq!(up.hits(), 3);
}

#[test]
fn consumer_conf_is_shared_across_routes_and_wins_over_the_routes() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: alice, plugins: {{key-auth: {{key: alice-key}}, limit-count: {{count: 2, time_window: 60}}}}}}
  - {{username: bob, plugins: {{key-auth: {{key: bob-key}}, limit-count: {{count: 2, time_window: 60}}}}}}
  - {{username: carol, plugins: {{key-auth: {{key: carol-key}}}}}}
routes:
  - {{id: x, uri: /x, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - {{id: y, uri: /y, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - id: z
    uri: /z
    plugins: {{key-auth: {{}}, limit-count: {{count: 100, time_window: 60}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let carol = [("apikey", "carol-key")];
    assert_admitted(&get(&gw, "/x", &ALICE), 2, 1, 60);
    assert_admitted(&get(&gw, "/y", &ALICE), 2, 0, 60);
    assert_503(&get(&gw, "/x", &ALICE), 2, 60);
    // The consumer's conf over the route's: alice's exhausted bucket applies on /z too.
    assert_503(&get(&gw, "/z", &ALICE), 2, 60);
    // bob has an identical conf and his own bucket.
    assert_admitted(&get(&gw, "/y", &BOB), 2, 1, 60);
    assert_admitted(&get(&gw, "/z", &BOB), 2, 0, 60);
    assert_503(&get(&gw, "/x", &BOB), 2, 60);
    // carol has none: the route's conf on /z, nothing on /x.
    assert_admitted(&get(&gw, "/z", &carol), 100, 99, 60);
    assert_admitted_bare(&get(&gw, "/x", &carol));
    assert_eq!(up.hits(), 6);
}

#[test]
fn consumer_group_conf_is_shared_by_its_members() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumer_groups:
  - id: gold
    plugins: {{limit-count: {{count: 3, time_window: 60}}}}
consumers:
  - {{username: alice, group_id: gold, plugins: {{key-auth: {{key: alice-key}}}}}}
  - {{username: bob, group_id: gold, plugins: {{key-auth: {{key: bob-key}}}}}}
  - {{username: carol, plugins: {{key-auth: {{key: carol-key}}}}}}
  - username: dave
    group_id: gold
    plugins: {{key-auth: {{key: dave-key}}, limit-count: {{count: 1, time_window: 60}}}}
routes:
  - {{id: m, uri: /m, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - {{id: n, uri: /n, plugins: {{key-auth: {{}}}}, upstream: {up}}}
#END
"#,
        up = up.yaml()
    ));
    assert_admitted(&get(&gw, "/m", &ALICE), 3, 2, 60);
    assert_admitted(&get(&gw, "/n", &BOB), 3, 1, 60);
    assert_admitted(&get(&gw, "/m", &ALICE), 3, 0, 60);
    assert_503(&get(&gw, "/n", &BOB), 3, 60);
    assert_503(&get(&gw, "/m", &ALICE), 3, 60);
    // Not a member: not limited.
    for _ in 0..4 {
        assert_admitted_bare(&get(&gw, "/m", &[("apikey", "carol-key")]));
    }
    // A member's own conf wins over the group's, with its own counter.
    let dave = [("apikey", "dave-key")];
    assert_admitted(&get(&gw, "/m", &dave), 1, 0, 60);
    assert_503(&get(&gw, "/n", &dave), 1, 60);
    assert_eq!(up.hits(), 8);
}

// ---------------------------------------------------------------------------------------------
// Reload

#[test]
fn reload_keeps_unchanged_counters_and_restarts_changed_ones() {
    let up = Upstream::start("up");
    let resources = |count: u64, extra: &str| {
        format!(
            r#"consumers:
  - {{username: alice, plugins: {{key-auth: {{key: alice-key}}, limit-count: {{count: 3, time_window: 60}}}}}}
routes:
  - {{id: r, uri: /r, plugins: {{limit-count: {{count: {count}, time_window: 60}}}}, upstream: {up}}}
  - {{id: c, uri: /c, plugins: {{key-auth: {{}}}}, upstream: {up}}}
{extra}#END
"#,
            up = up.yaml()
        )
    };
    let gw = Gateway::start(&resources(3, ""));
    assert_admitted(&get(&gw, "/r", &[]), 3, 2, 60);
    assert_admitted(&get(&gw, "/r", &[]), 3, 1, 60);
    assert_admitted(&get(&gw, "/c", &ALICE), 3, 2, 60);

    // Something else changes: both counters continue.
    let v0 = gw.config_version();
    gw.write_file(
        "resources.yaml",
        &resources(
            3,
            &format!("  - {{id: added, uri: /added, upstream: {}}}\n", up.yaml()),
        ),
    );
    let v1 = gw.wait_reload(&v0);
    assert_admitted_bare(&get(&gw, "/added", &[]));
    assert_admitted(&get(&gw, "/r", &[]), 3, 0, 60);
    assert_503(&get(&gw, "/r", &[]), 3, 60);
    assert_admitted(&get(&gw, "/c", &ALICE), 3, 1, 60);

    // The route's conf changes: its counter starts from zero; the consumer's continues.
    gw.write_file("resources.yaml", &resources(4, ""));
    gw.wait_reload(&v1);
    assert_admitted(&get(&gw, "/r", &[]), 4, 3, 60);
    assert_admitted(&get(&gw, "/c", &ALICE), 3, 0, 60);
    assert_503(&get(&gw, "/c", &ALICE), 3, 60);
    assert_eq!(up.hits(), 8);
}

// ---------------------------------------------------------------------------------------------
// tollgate check

#[test]
fn check_refuses_bad_limit_count_confs() {
    let route = |conf: &str| {
        format!(
            "routes:\n  - {{id: r, uri: /r, plugins: {{limit-count: {conf}}}, upstream: {{nodes: {{\"127.0.0.1:1980\": 1}}}}}}\n#END\n"
        )
    };
    let lines = check_fails(&[("resources.yaml", &route("{count: 0, time_window: 60}"))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-count.count",
        &["greater than 0"],
    );
    let lines = check_fails(&[("resources.yaml", &route("{count: 5}"))]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-count.time_window",
        &["required"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &route("{count: 5, time_window: 60, policy: redis}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-count.redis_host",
        &["required with policy redis"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        "consumers:\n  - {username: u, plugins: {key-auth: {key: k}, limit-count: {count: 0, time_window: 60}}}\n#END\n",
    )]);
    assert_line(
        &lines,
        "resources.yaml: consumers[0].plugins.limit-count.count",
        &["greater than 0"],
    );

    // Two routes naming one group with different confs.
    let up = "{nodes: {\"127.0.0.1:1980\": 1}}";
    let group = |second: &str| {
        format!(
            "routes:\n  - {{id: a, uri: /a, plugins: {{limit-count: {{count: 2, time_window: 60, group: g}}}}, upstream: {up}}}\n  - {{id: b, uri: /b, plugins: {{limit-count: {second}}}, upstream: {up}}}\n#END\n"
        )
    };
    let lines = check_fails(&[(
        "resources.yaml",
        &group("{count: 3, time_window: 60, group: g}"),
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[1].plugins.limit-count.group",
        &["group `g` conf mismatched", "routes[0]"],
    );
    // Identical confs in one group are fine.
    let (code, out, err) = tollgate_check(&[(
        "resources.yaml",
        &group("{count: 2, time_window: 60, group: g}"),
    )]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
}

// ---------------------------------------------------------------------------------------------
// Redis

fn redis_conf(redis: &Redis, count: u64, extra: &str) -> String {
    format!(
        "{{count: {count}, time_window: 60, policy: redis, redis_host: \"127.0.0.1\", redis_port: {}, redis_timeout: 500{extra}}}",
        redis.port()
    )
}

#[test]
fn redis_policy_two_gateways_share_one_quota() {
    let redis = Redis::start();
    let up = Upstream::start("up");
    let yaml = format!(
        "routes:\n  - {{id: shared, uri: /shared, plugins: {{limit-count: {}}}, upstream: {}}}\n#END\n",
        redis_conf(&redis, 4, ""),
        up.yaml()
    );
    let a = Gateway::start(&yaml);
    let b = Gateway::start(&yaml);
    assert_eq!(
        assert_admitted(&get(&a, "/shared", &[]), 4, 3, 60),
        60,
        "the first request of a window reports time_window"
    );
    assert_admitted(&get(&b, "/shared", &[]), 4, 2, 60);
    assert_admitted(&get(&a, "/shared", &[]), 4, 1, 60);
    assert_admitted(&get(&b, "/shared", &[]), 4, 0, 60);
    assert_503(&get(&a, "/shared", &[]), 4, 60);
    assert_503(&get(&b, "/shared", &[]), 4, 60);
    assert_eq!(up.hits(), 4);

    // One counter in Redis, expiring with the window.
    let counters = redis_counters(redis.port());
    assert_eq!(counters.len(), 1, "{counters:?}");
    let pttl: i64 = redis
        .cmd(&["PTTL", &counters[0].0])
        .expect("PTTL")
        .parse()
        .expect("integer");
    assert!((1..=60_000).contains(&pttl), "PTTL {pttl}");
}

/// `sync_interval` over-admission, as README and `limiter::redis` state it: a node admits
/// against its last-synced view of the shared total, so in one window the gateways together
/// admit at most `count` plus, per node, the traffic it sees in one sync interval.
///
/// Requests are paced (one per [`PACE`] per node) and the quota is large, so a node's own
/// local count would take many intervals to stop it: only a sync that reads the shared total
/// back stops a node in time. A node that pushes its deltas but never reads the total (or never
/// syncs) admits for [`COUNT`] x [`PACE`] = 6 s and fails the span assertions below.
#[test]
fn sync_interval_over_admission_stays_within_one_interval_per_node() {
    const COUNT: u64 = 300;
    const PACE: Duration = Duration::from_millis(20);
    // One interval (0.2 s), the limiter's 50 ms tick, the round trip, and a loaded 2-core
    // machine's scheduling: far below the 6 s a node needs to spend COUNT on its own.
    const ONE_INTERVAL: Duration = Duration::from_millis(1500);
    let redis = Redis::start();
    let up = Upstream::start("up");
    let conf = redis_conf(&redis, COUNT, ", sync_interval: 0.2");
    let yaml = format!(
        "routes:\n  - {{id: p1, uri: /p1, plugins: {{limit-count: {conf}}}, upstream: {up}}}\n  - {{id: p2, uri: /p2, plugins: {{limit-count: {conf}}}, upstream: {up}}}\n#END\n",
        up = up.yaml()
    );
    let a = Gateway::start(&yaml);
    let b = Gateway::start(&yaml);
    let total_of = |key: Option<&str>| -> u64 {
        redis_counters(redis.port())
            .into_iter()
            .filter(|(k, _)| key.is_none_or(|want| k == want))
            .map(|(_, v)| v)
            .sum()
    };
    let admitted = |resp: &Resp| -> bool {
        assert!(
            resp.status == 200 || resp.status == 503,
            "admitted or limited: {} {}",
            resp.status,
            resp.text()
        );
        resp.status == 200
    };

    // Phase 1: A alone spends the quota (decided locally, exactly), then pushes it.
    for left in (0..COUNT).rev() {
        assert_admitted(&get(&a, "/p1", &[]), COUNT, left, 60);
    }
    assert_503(&get(&a, "/p1", &[]), COUNT, 60);
    wait_until(DEADLINE, "A's sync pushes its count to Redis", || {
        total_of(None) == COUNT
    });
    let p1_key = redis_counters(redis.port())[0].0.clone();
    // B has not seen the key: it starts from zero locally and admits until its first sync,
    // which reads back a total at the quota. Paced, so its local count cannot stop it first.
    let start = Instant::now();
    let (mut b1, mut sent) = (0u64, 0u32);
    loop {
        pace(start, PACE * sent);
        sent += 1;
        if !admitted(&get(&b, "/p1", &[])) {
            break;
        }
        b1 += 1;
        let last_admitted = start.elapsed();
        assert!(
            last_admitted <= ONE_INTERVAL,
            "B still admits {last_admitted:?} after its first request ({b1} admitted): its \
             syncs do not bring back the shared total"
        );
    }
    assert!(b1 >= 1, "B admits at least its first request");
    assert!(
        b1 < COUNT / 4,
        "B over-admitted {b1}: more than one interval's traffic"
    );
    wait_until(DEADLINE, "B's sync pushes its admissions", || {
        total_of(Some(&p1_key)) == COUNT + b1
    });
    assert_503(&get(&a, "/p1", &[]), COUNT, 60);
    assert_503(&get(&b, "/p1", &[]), COUNT, 60);
    assert_eq!(
        total_of(Some(&p1_key)),
        COUNT + b1,
        "rejections are not pushed"
    );

    // Phase 2: the nodes take turns on /p2, paced, until both reject. Until the shared total
    // reaches the quota, both admit; after that moment each node's admissions must stop within
    // one interval (its next sync reads the total back).
    let p2_total = || total_of(None) - total_of(Some(&p1_key));
    let start = Instant::now();
    let mut admitted2 = 0u64;
    let mut crossed: Option<Duration> = None;
    let mut last = [Duration::ZERO; 2];
    for round in 0u32.. {
        pace(start, PACE * round);
        let mut any = false;
        for (i, gw) in [&a, &b].into_iter().enumerate() {
            if admitted(&get(gw, "/p2", &[])) {
                any = true;
                admitted2 += 1;
                let now = start.elapsed();
                last[i] = now;
                if admitted2 == COUNT {
                    crossed = Some(now);
                }
                if let Some(at) = crossed {
                    assert!(
                        now - at <= ONE_INTERVAL,
                        "node {i} still admits {:?} after the quota was reached ({admitted2} \
                         admitted in all): its syncs do not bring back the shared total",
                        now - at
                    );
                }
            }
        }
        if !any {
            break;
        }
    }
    let crossed = crossed.unwrap_or_else(|| panic!("the quota is used: {admitted2}"));
    let over = admitted2 - COUNT;
    assert!(
        over < COUNT / 2,
        "over-admitted {over} (last admissions {last:?}, quota reached at {crossed:?})"
    );
    wait_until(DEADLINE, "every /p2 admission is pushed", || {
        p2_total() == admitted2
    });
    assert_503(&get(&a, "/p2", &[]), COUNT, 60);
    assert_503(&get(&b, "/p2", &[]), COUNT, 60);
    let admitted = u64::try_from(up.hits()).expect("small");
    assert_eq!(
        admitted,
        (COUNT + b1) + admitted2,
        "the upstream saw exactly the admitted requests"
    );
}

/// Waits until `offset` after `start` (no-op if already past): drives a request rate, so a
/// late request only slows the test, never fails it.
fn pace(start: Instant, offset: Duration) {
    let due = start + offset;
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

#[test]
fn redis_cluster_policy_shares_quota_across_gateways() {
    let cluster = RedisCluster::start(3);
    let up = Upstream::start("up");
    let nodes: Vec<String> = cluster.addrs().iter().map(|a| format!("\"{a}\"")).collect();
    let conf = format!(
        "{{count: 3, time_window: 60, key: http_x_user, policy: redis-cluster, redis_cluster_name: test, redis_cluster_nodes: [{}], redis_timeout: 1000}}",
        nodes.join(", ")
    );
    let yaml = format!(
        "routes:\n  - {{id: c, uri: /c, plugins: {{limit-count: {conf}}}, upstream: {}}}\n#END\n",
        up.yaml()
    );
    let a = Gateway::start(&yaml);
    let b = Gateway::start(&yaml);
    let user = |u: &'static str| [("X-User", u)];
    assert_admitted(&get(&a, "/c", &user("u0")), 3, 2, 60);
    assert_admitted(&get(&b, "/c", &user("u0")), 3, 1, 60);
    assert_admitted(&get(&a, "/c", &user("u0")), 3, 0, 60);
    assert_503(&get(&b, "/c", &user("u0")), 3, 60);
    assert_503(&get(&a, "/c", &user("u0")), 3, 60);

    // More keys, spread over the masters' slots, each counted on the right node.
    let users = ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"];
    for u in users {
        assert_admitted(&get(&a, "/c", &user(u)), 3, 2, 60);
        assert_admitted(&get(&b, "/c", &user(u)), 3, 1, 60);
    }
    let per_node: Vec<usize> = cluster
        .nodes()
        .iter()
        .map(|n| redis_counters(n.port()).len())
        .collect();
    assert_eq!(
        per_node.iter().sum::<usize>(),
        1 + users.len(),
        "one counter per key: {per_node:?}"
    );
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() >= 2,
        "counters on several masters: {per_node:?}"
    );
    assert_eq!(up.hits(), 3 + 2 * users.len());
}

#[test]
fn redis_killed_mid_test_fails_fast_or_degrades() {
    let mut redis = Redis::start();
    let up = Upstream::start("up");
    let dead_port = crate::support::free_port();
    let gw = Gateway::start(&format!(
        r#"routes:
  - {{id: strict, uri: /strict, plugins: {{limit-count: {strict}}}, upstream: {up}}}
  - {{id: lenient, uri: /lenient, plugins: {{limit-count: {lenient}}}, upstream: {up}}}
  - {{id: synced, uri: /synced, plugins: {{limit-count: {synced}}}, upstream: {up}}}
  - id: never
    uri: /never
    plugins:
      limit-count: {{count: 5, time_window: 60, policy: redis, redis_host: "127.0.0.1", redis_port: {dead_port}, redis_timeout: 500}}
    upstream: {up}
#END
"#,
        strict = redis_conf(&redis, 100, ""),
        lenient = redis_conf(&redis, 100, ", allow_degradation: true"),
        synced = redis_conf(&redis, 100, ", sync_interval: 0.2"),
        up = up.yaml()
    ));
    let degraded = "tollgate_limit_count_degraded_total";
    assert_admitted(&get(&gw, "/strict", &[]), 100, 99, 60);
    assert_admitted(&get(&gw, "/lenient", &[]), 100, 99, 60);
    assert_admitted(&get(&gw, "/synced", &[]), 100, 99, 60);
    wait_until(DEADLINE, "/synced's first admission is pushed", || {
        redis_counters(redis.port())
            .iter()
            .map(|(_, v)| v)
            .sum::<u64>()
            == 3
    });
    assert_eq!(metric(&gw, degraded), 0.0);
    // A Redis that never answered: a prompt 500. (Bounds here are 4 s against redis_timeout
    // 500 ms: a margin for a loaded 2-core machine, still far from a hang.)
    let (resp, took) = timed(&gw, "/never");
    assert_limited(&resp, 500, "failed to limit count", None, 60);
    assert!(took < Duration::from_secs(4), "took {took:?}");

    redis.kill();
    let before = up.seen();
    let hits = before.hits;
    for _ in 0..3 {
        let (resp, took) = timed(&gw, "/strict");
        assert_limited(&resp, 500, "failed to limit count", None, 60);
        assert!(
            took < Duration::from_secs(4),
            "a 500 after {took:?} with redis_timeout 500"
        );
    }
    up.assert_untouched(before, "a 500 never reaches the upstream");
    for _ in 0..3 {
        let (resp, took) = timed(&gw, "/lenient");
        assert_admitted_bare(&resp);
        assert!(
            took < Duration::from_secs(4),
            "a degraded pass after {took:?} with redis_timeout 500"
        );
    }
    assert_eq!(up.hits(), hits + 3);
    assert_eq!(metric(&gw, degraded), 3.0);
    // sync_interval decides locally until its next sync fails (at most one interval plus
    // redis_timeout later), then answers 500 too.
    let killed = Instant::now();
    wait_until(Duration::from_secs(10), "/synced answers 500", || {
        let (resp, took) = timed(&gw, "/synced");
        assert!(took < Duration::from_secs(4), "took {took:?}");
        if resp.status == 200 {
            echo(&resp);
            return false;
        }
        assert_limited(&resp, 500, "failed to limit count", None, 60);
        true
    });
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "sync_interval noticed the dead Redis only after {:?}",
        killed.elapsed()
    );
    // Still answering, and health is unaffected.
    let health = http(gw.status_port(), "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
    let (resp, took) = timed(&gw, "/strict");
    assert_limited(&resp, 500, "failed to limit count", None, 60);
    assert!(took < Duration::from_secs(4), "took {took:?}");
}
