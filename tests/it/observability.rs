//! Observability (issue 7): `/metrics` after a known set of requests (exact values and label
//! sets, `promtool check metrics`), `metrics.consumer_label`, `/healthz` and the reload metrics,
//! the access log (JSON fields, no query, no secret for any credential type, combined format).
//!
//! Metrics and access log lines are written in the `logging` hook, after the response has gone
//! out, so every check polls with `wait_until` until the expected values appear.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::signing::{
    BASIC_USER, HMAC_SECRET, JWT_SECRET, KEY, PASSWORD, WRONG_KEY, auth_resources, b64,
    hmac_headers, jwt_token, now_secs,
};
use crate::support::{Gateway, Upstream, free_port, http, wait_until};

const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers

/// One sample of the text exposition: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape of `/metrics`.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("unparsable sample line {l:?}")))
            .collect();
        Scrape { text, samples }
    }

    /// The value of the sample with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Self::get`], but panics (showing the scrape) when the sample is absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            panic!(
                "no sample {name}{labels:?} in /metrics:\n{}",
                self.family_text(name)
            )
        })
    }

    /// Every sample of a metric.
    fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The sum of a metric over all its series.
    fn sum(&self, name: &str) -> f64 {
        self.series(name).iter().map(|s| s.value).sum()
    }

    /// The lines of the exposition that mention `name` (for failure messages).
    fn family_text(&self, name: &str) -> String {
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        self.text
            .lines()
            .filter(|l| l.contains(base))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asserts the exact set of series of a metric: `(labels, value)` each.
    fn assert_exact(&self, name: &str, want: &[(&[(&str, &str)], f64)]) {
        let mut got: Vec<(BTreeMap<String, String>, f64)> = self
            .series(name)
            .iter()
            .map(|s| (s.labels.clone(), s.value))
            .collect();
        let mut expected: Vec<(BTreeMap<String, String>, f64)> = want
            .iter()
            .map(|(labels, v)| {
                let l = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                (l, *v)
            })
            .collect();
        let key = |x: &(BTreeMap<String, String>, f64)| format!("{:?}", x.0);
        got.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(
            got,
            expected,
            "the series of {name}; /metrics has:\n{}",
            self.family_text(name)
        );
    }
}

/// Parses `name{a="1",b="x\"y"} 12.5` (or without labels).
fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find('{') {
        Some(i) if line.find(' ').is_none_or(|sp| i < sp) => (&line[..i], &line[i + 1..]),
        _ => {
            let (name, value) = line.split_once(' ')?;
            return Some(Sample {
                name: name.to_owned(),
                labels: BTreeMap::new(),
                value: parse_value(value)?,
            });
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices();
    let mut lname = String::new();
    let end = loop {
        let (i, c) = chars.next()?;
        match c {
            '}' if lname.is_empty() => break i + 1,
            ',' if lname.is_empty() => {}
            '=' => {
                if chars.next()?.1 != '"' {
                    return None;
                }
                let mut value = String::new();
                loop {
                    match chars.next()?.1 {
                        '\\' => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.insert(std::mem::take(&mut lname), value);
            }
            c => lname.push(c),
        }
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(rest[end..].trim())?,
    })
}

fn parse_value(text: &str) -> Option<f64> {
    // A timestamp may follow the value.
    match text.split_whitespace().next()? {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        v => v.parse().ok(),
    }
}

/// `GET /metrics` on the status port: 200, the Prometheus text content type, parsed.
fn scrape(gw: &Gateway) -> Scrape {
    let resp = http(gw.status_port(), "GET", "/metrics", &[], b"");
    assert_eq!(resp.status, 200, "/metrics: {}", resp.text());
    let ct = resp.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain"), "content-type {ct:?}");
    Scrape::parse(resp.text())
}

/// Scrapes until `cond` holds (metrics are recorded after the response is sent).
fn scrape_until(gw: &Gateway, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    wait_until(DEADLINE, what, || {
        let s = scrape(gw);
        let ok = cond(&s);
        last = Some(s);
        ok
    });
    last.expect("scraped at least once")
}

/// `promtool check metrics` on the exposition; promtool must be on PATH.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    // A missing promtool fails the test: scripts/setup.sh installs it (package prometheus).
    let mut child = child.unwrap_or_else(|e| {
        panic!("cannot run promtool ({e}); run scripts/setup.sh (Debian package prometheus)")
    });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> u16 {
    http(gw.port(), "GET", target, headers, b"").status
}

/// An inline upstream on a loopback port nobody listens on.
fn dead_upstream() -> String {
    format!(
        r#"{{type: roundrobin, nodes: {{"127.0.0.1:{}": 1}}}}"#,
        free_port()
    )
}

/// Routes r1 (key-auth), r2 (key-auth + consumer-restriction allowing bob only), r3 (key-auth,
/// in service s1), dead (no auth, unreachable upstream); consumers alice and bob.
fn known_resources(up: &Upstream) -> String {
    let up = up.yaml();
    let dead = dead_upstream();
    format!(
        r#"services:
  - id: s1
    upstream: {up}
routes:
  - id: r1
    uri: /r1
    plugins: {{key-auth: {{}}}}
    upstream: {up}
  - id: r2
    uri: /r2
    plugins:
      key-auth: {{}}
      consumer-restriction: {{whitelist: [bob]}}
    upstream: {up}
  - id: r3
    uri: /r3
    service_id: s1
    plugins: {{key-auth: {{}}}}
  - id: dead
    uri: /dead
    upstream: {dead}
consumers:
  - username: alice
    plugins: {{key-auth: {{key: alice-key}}}}
  - username: bob
    plugins: {{key-auth: {{key: bob-key}}}}
#END
"#
    )
}

/// 3× 200 alice on r1, 2× 401 on r1, 1× 404, 1× 403 alice on r2, 1× 200 bob on r3, 1× 502.
fn send_known_requests(gw: &Gateway) {
    let alice = [("apikey", "alice-key")];
    for _ in 0..3 {
        assert_eq!(get(gw, "/r1", &alice), 200);
    }
    for _ in 0..2 {
        assert_eq!(get(gw, "/r1", &[]), 401);
    }
    assert_eq!(get(gw, "/nowhere", &[]), 404);
    assert_eq!(get(gw, "/r2", &alice), 403);
    assert_eq!(get(gw, "/r3", &[("apikey", "bob-key")]), 200);
    assert_eq!(get(gw, "/dead", &[]), 502);
}

const KNOWN_REQUESTS: f64 = 9.0;

// ---------------------------------------------------------------------------------------------
// /metrics

#[test]
fn metrics_count_a_known_set_of_requests_exactly() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&known_resources(&up));
    send_known_requests(&gw);

    let m = scrape_until(&gw, "all 9 requests are counted", |m| {
        m.sum("tollgate_http_requests_total") >= KNOWN_REQUESTS
    });

    let req = "tollgate_http_requests_total";
    m.assert_exact(
        req,
        &[
            (
                &[
                    ("code", "200"),
                    ("consumer", "alice"),
                    ("route", "r1"),
                    ("service", ""),
                ],
                3.0,
            ),
            (
                &[
                    ("code", "401"),
                    ("consumer", ""),
                    ("route", "r1"),
                    ("service", ""),
                ],
                2.0,
            ),
            (
                &[
                    ("code", "404"),
                    ("consumer", ""),
                    ("route", ""),
                    ("service", ""),
                ],
                1.0,
            ),
            (
                &[
                    ("code", "403"),
                    ("consumer", "alice"),
                    ("route", "r2"),
                    ("service", ""),
                ],
                1.0,
            ),
            (
                &[
                    ("code", "200"),
                    ("consumer", "bob"),
                    ("route", "r3"),
                    ("service", "s1"),
                ],
                1.0,
            ),
            (
                &[
                    ("code", "502"),
                    ("consumer", ""),
                    ("route", "dead"),
                    ("service", ""),
                ],
                1.0,
            ),
        ],
    );

    m.assert_exact(
        "tollgate_auth_failures_total",
        &[(&[("plugin", "key-auth"), ("route", "r1")], 2.0)],
    );
    // Every route has its (pre-created) series; only r2 refused anyone.
    assert_eq!(
        m.value(
            "tollgate_consumer_restriction_rejections_total",
            &[("route", "r2")]
        ),
        1.0
    );
    assert_eq!(
        m.sum("tollgate_consumer_restriction_rejections_total"),
        1.0,
        "{}",
        m.family_text("tollgate_consumer_restriction_rejections_total")
    );
    m.assert_exact(
        "tollgate_upstream_errors_total",
        &[(&[("kind", "connect"), ("route", "dead")], 1.0)],
    );
    assert_eq!(m.sum("tollgate_limit_count_rejections_total"), 0.0);
    assert_eq!(m.value("tollgate_limit_count_degraded_total", &[]), 0.0);

    // Durations: every request is observed as `request` and `gateway`, only proxied ones as
    // `upstream`; `+Inf` bucket == count.
    let count = "tollgate_http_request_duration_seconds_count";
    let bucket = "tollgate_http_request_duration_seconds_bucket";
    for (route, total, upstream) in [("r1", 5.0, 3.0), ("", 1.0, 0.0), ("r2", 1.0, 0.0)] {
        for (ty, n) in [
            ("request", total),
            ("gateway", total),
            ("upstream", upstream),
        ] {
            assert_eq!(
                m.get(count, &[("route", route), ("type", ty)])
                    .unwrap_or(0.0),
                n,
                "{count} route={route:?} type={ty}; /metrics:\n{}",
                m.family_text(count)
            );
            if n > 0.0 {
                assert_eq!(
                    m.value(bucket, &[("le", "+Inf"), ("route", route), ("type", ty)]),
                    n
                );
            }
        }
    }
    assert_eq!(m.value(count, &[("route", "r3"), ("type", "request")]), 1.0);
    assert_eq!(
        m.value(count, &[("route", "dead"), ("type", "request")]),
        1.0
    );
    let types: std::collections::BTreeSet<&str> = m
        .series(count)
        .iter()
        .map(|s| s.labels["type"].as_str())
        .collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        ["gateway", "request", "upstream"]
    );
    assert!(
        m.value(
            "tollgate_http_request_duration_seconds_sum",
            &[("route", "r1"), ("type", "request")]
        ) > 0.0
    );

    // Bandwidth in both directions.
    let bw = "tollgate_bandwidth_bytes_total";
    for dir in ["ingress", "egress"] {
        assert!(
            m.value(bw, &[("direction", dir), ("route", "r1")]) > 0.0,
            "{}",
            m.family_text(bw)
        );
    }
    // The 404 (no route) counts too, under route="".
    for dir in ["ingress", "egress"] {
        assert!(
            m.value(bw, &[("direction", dir), ("route", "")]) > 0.0,
            "{}",
            m.family_text(bw)
        );
    }
    let dirs: std::collections::BTreeSet<&str> = m
        .series(bw)
        .iter()
        .map(|s| s.labels["direction"].as_str())
        .collect();
    assert_eq!(dirs.into_iter().collect::<Vec<_>>(), ["egress", "ingress"]);

    // Config: the resources loaded, the time of the load.
    let res = "tollgate_config_resources";
    for (kind, n) in [
        ("routes", 4.0),
        ("services", 1.0),
        ("upstreams", 0.0),
        ("consumers", 2.0),
        ("credentials", 2.0),
        ("consumer_groups", 0.0),
    ] {
        assert_eq!(
            m.value(res, &[("kind", kind)]),
            n,
            "{res} kind={kind}; {}",
            m.family_text(res)
        );
    }
    assert_eq!(m.series(res).len(), 6, "{}", m.family_text(res));
    let loaded = m.value("tollgate_config_last_reload_success_timestamp_seconds", &[]);
    assert!(
        (loaded - now_secs() as f64).abs() < 120.0,
        "last reload timestamp {loaded} is not about now"
    );
    // No reload happened: no series, or zeros.
    assert_eq!(m.sum("tollgate_config_reloads_total"), 0.0);

    // Process metrics under their standard names.
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let v = m.value(name, &[]);
        assert!(v >= 0.0, "{name} = {v}");
    }
    assert!(m.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(m.value("process_open_fds", &[]) > 0.0);

    // Every family has HELP and TYPE, and the exposition passes promtool.
    for family in [
        "tollgate_http_requests_total",
        "tollgate_http_request_duration_seconds",
        "tollgate_bandwidth_bytes_total",
        "tollgate_auth_failures_total",
        "tollgate_consumer_restriction_rejections_total",
        "tollgate_limit_count_rejections_total",
        "tollgate_limit_count_degraded_total",
        "tollgate_access_log_dropped_total",
        "tollgate_upstream_errors_total",
        "tollgate_config_last_reload_success_timestamp_seconds",
        "tollgate_config_resources",
    ] {
        assert!(
            m.text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
        assert!(
            m.text.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}"
        );
    }
    promtool_check(&m.text);

    // Scraping does not count as traffic: a second scrape shows the same request total.
    assert_eq!(scrape(&gw).sum(req), KNOWN_REQUESTS);
}

#[test]
fn consumer_label_off_counts_everyone_as_empty() {
    let up = Upstream::start("up");
    let gw = Gateway::builder()
        .node_extra("metrics: {consumer_label: false}")
        .start(&known_resources(&up));
    send_known_requests(&gw);
    let m = scrape_until(&gw, "all 9 requests are counted", |m| {
        m.sum("tollgate_http_requests_total") >= KNOWN_REQUESTS
    });
    let req = "tollgate_http_requests_total";
    let with = |code: &'static str, route: &'static str, service: &'static str, n: f64| {
        (
            [
                ("code", code),
                ("consumer", ""),
                ("route", route),
                ("service", service),
            ],
            n,
        )
    };
    let want = [
        with("200", "r1", "", 3.0),
        with("401", "r1", "", 2.0),
        with("404", "", "", 1.0),
        with("403", "r2", "", 1.0),
        with("200", "r3", "s1", 1.0),
        with("502", "dead", "", 1.0),
    ];
    let want: Vec<(&[(&str, &str)], f64)> = want.iter().map(|(l, n)| (&l[..], *n)).collect();
    m.assert_exact(req, &want);
    assert!(
        !m.text.contains("alice") && !m.text.contains("bob"),
        "a consumer name in /metrics with consumer_label off:\n{}",
        m.family_text(req)
    );
    promtool_check(&m.text);
}

/// Egress bandwidth counts the headers a plugin adds to the response, however they are written
/// (limit-count's quota lines go straight to the wire): two routes differing only by a
/// limit-count, same upstream answer, differ by exactly the quota lines' bytes.
#[test]
fn egress_counts_the_headers_plugins_add() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: a, uri: /a, upstream: {0}}}\n  - {{id: b, uri: /b, upstream: {0}, plugins: {{limit-count: {{count: 5, time_window: 60}}}}}}\n#END\n",
        up.yaml()
    ));
    let (a, b) = (
        http(gw.port(), "GET", "/a", &[], b""),
        http(gw.port(), "GET", "/b", &[], b""),
    );
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.body.len(), b.body.len(), "the same upstream answer");
    let quota: usize = [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ]
    .iter()
    .map(|h| {
        let v = b.header(h).unwrap_or_else(|| panic!("{h} on /b"));
        h.len() + v.len() + 4
    })
    .sum();
    let bw = "tollgate_bandwidth_bytes_total";
    let egress = |m: &Scrape, r: &str| m.value(bw, &[("direction", "egress"), ("route", r)]);
    let m = scrape_until(&gw, "both requests are counted", |m| {
        egress(m, "a") > 0.0 && egress(m, "b") > 0.0
    });
    // `Date` is the same length on both; any other header differs in neither.
    assert_eq!(
        egress(&m, "b") - egress(&m, "a"),
        quota as f64,
        "{}",
        m.family_text(bw)
    );
}

// ---------------------------------------------------------------------------------------------
// /healthz, the status listener, reload metrics

fn route_file(up: &Upstream, ids: &[&str]) -> String {
    let mut yaml = String::from("routes:\n");
    for id in ids {
        yaml.push_str(&format!(
            "  - {{id: {id}, uri: /{id}, upstream: {}}}\n",
            up.yaml()
        ));
    }
    yaml.push_str("#END\n");
    yaml
}

fn rfc3339_secs(text: &str) -> u64 {
    humantime::parse_rfc3339(text)
        .unwrap_or_else(|e| panic!("last_reload {text:?} is not RFC 3339: {e}"))
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn assert_health_shape(h: &Value) {
    assert_eq!(h["status"], "ok", "{h}");
    let version = h["config_version"].as_str().unwrap_or("");
    assert!(
        !version.is_empty() && version.bytes().all(|b| b.is_ascii_hexdigit()),
        "config_version is not hex: {h}"
    );
    let obj = h.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["config_version", "last_reload", "status"], "{h}");
}

#[test]
fn healthz_and_reload_metrics_follow_reloads() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&route_file(&up, &["one"]));

    // Before any reload: last_reload is the initial load.
    let h0 = gw.healthz();
    assert_health_shape(&h0);
    let v0 = h0["config_version"].as_str().unwrap().to_owned();
    let t0 = rfc3339_secs(h0["last_reload"].as_str().unwrap());
    assert!(t0.abs_diff(now_secs()) < 120, "initial load at {t0}");
    let m = scrape(&gw);
    assert_eq!(
        m.value("tollgate_config_resources", &[("kind", "routes")]),
        1.0
    );
    assert_eq!(
        m.value("tollgate_config_last_reload_success_timestamp_seconds", &[]),
        t0 as f64
    );
    assert_eq!(m.sum("tollgate_config_reloads_total"), 0.0);

    // Anything else on the status port: 404 (the proxy's routes are not served there).
    for path in [
        "/",
        "/one",
        "/metrics/x",
        "/healthz/x",
        "/healthzz",
        "/status",
    ] {
        let resp = http(gw.status_port(), "GET", path, &[], b"");
        assert_eq!(
            resp.status,
            404,
            "GET {path} on the status port: {}",
            resp.text()
        );
    }

    // Let the clock pass the initial load's second, so the reload's time differs.
    wait_until(
        Duration::from_secs(3),
        "the clock passes the load's second",
        || now_secs() > t0,
    );

    // A good reload.
    gw.write_file("resources.yaml", &route_file(&up, &["one", "two"]));
    let v1 = gw.wait_reload(&v0);
    let h1 = gw.healthz();
    assert_health_shape(&h1);
    assert_ne!(v1, v0);
    let t1 = rfc3339_secs(h1["last_reload"].as_str().unwrap());
    assert!(t1 > t0, "last_reload {t1} after the reload, {t0} before");
    let m = scrape_until(&gw, "reloads_total{result=success} is 1", |m| {
        m.get("tollgate_config_reloads_total", &[("result", "success")]) == Some(1.0)
    });
    assert_eq!(
        m.get("tollgate_config_reloads_total", &[("result", "failure")])
            .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        m.value("tollgate_config_resources", &[("kind", "routes")]),
        2.0
    );
    assert_eq!(
        m.value("tollgate_config_last_reload_success_timestamp_seconds", &[]),
        t1 as f64
    );

    // A refused reload: the old config keeps serving, /healthz unchanged, one failure counted.
    gw.write_file(
        "resources.yaml",
        "routes:\n  - {id: bad, uri: /bad, bogus_field_9: 1}\n#END\n",
    );
    let m = scrape_until(&gw, "reloads_total{result=failure} appears", |m| {
        m.get("tollgate_config_reloads_total", &[("result", "failure")])
            .is_some_and(|v| v >= 1.0)
    });
    assert_eq!(
        m.value("tollgate_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert_eq!(
        m.value("tollgate_config_reloads_total", &[("result", "success")]),
        1.0
    );
    assert_eq!(
        m.value("tollgate_config_resources", &[("kind", "routes")]),
        2.0
    );
    assert_eq!(
        m.value("tollgate_config_last_reload_success_timestamp_seconds", &[]),
        t1 as f64,
        "a refused reload is not a success"
    );
    let h2 = gw.healthz();
    assert_eq!(h2, h1, "/healthz after a refused reload");
    assert_eq!(get(&gw, "/two", &[]), 200);

    // Fixed again: a second success, still one failure; result has only these two values.
    gw.write_file("resources.yaml", &route_file(&up, &["three"]));
    gw.wait_reload(&v1);
    let m = scrape_until(&gw, "reloads_total{result=success} is 2", |m| {
        m.get("tollgate_config_reloads_total", &[("result", "success")]) == Some(2.0)
    });
    m.assert_exact(
        "tollgate_config_reloads_total",
        &[
            (&[("result", "failure")], 1.0),
            (&[("result", "success")], 2.0),
        ],
    );
    assert_eq!(
        m.value("tollgate_config_resources", &[("kind", "routes")]),
        1.0
    );
    promtool_check(&m.text);
}

/// Both `result` series exist (at 0) from the start. A counter series born at 1 is invisible to
/// `increase()` and `rate()`, so the first refused reload after a start would never show on the
/// dashboard's "Failed reloads" panel nor fire an `increase(...{result="failure"}[5m]) > 0`
/// alert (Prometheus' instrumentation guide: initialise known label values to 0).
#[test]
fn reload_counters_exist_at_zero_before_any_reload() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&route_file(&up, &["one"]));
    let m = scrape(&gw);
    m.assert_exact(
        "tollgate_config_reloads_total",
        &[
            (&[("result", "failure")], 0.0),
            (&[("result", "success")], 0.0),
        ],
    );
}

/// Routes r1 and r2 (key-auth) and the consumers named, each with key `<name>-key`.
fn consumer_resources(up: &Upstream, consumers: &[&str]) -> String {
    let up = up.yaml();
    let mut yaml = format!(
        "routes:\n  - {{id: r1, uri: /r1, plugins: {{key-auth: {{}}}}, upstream: {up}}}\n  \
         - {{id: r2, uri: /r2, plugins: {{key-auth: {{}}}}, upstream: {up}}}\nconsumers:\n"
    );
    for c in consumers {
        yaml.push_str(&format!(
            "  - {{username: {c}, plugins: {{key-auth: {{key: {c}-key}}}}}}\n"
        ));
    }
    yaml.push_str("#END\n");
    yaml
}

/// Issue 13: the reload that removes a consumer removes its request series; the consumers that
/// stay keep theirs, values included, and count on from there.
#[test]
fn a_reload_drops_the_series_of_consumers_that_left_and_keeps_the_others() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&consumer_resources(&up, &["ann", "ben", "cy"]));
    let key = |c: &str| format!("{c}-key");
    for (who, route, n) in [("ann", "/r1", 2), ("ann", "/r2", 1), ("ben", "/r1", 3)] {
        for _ in 0..n {
            assert_eq!(get(&gw, route, &[("apikey", &key(who))]), 200);
        }
    }
    assert_eq!(get(&gw, "/r1", &[("apikey", "nobody-key")]), 401);
    let req = "tollgate_http_requests_total";
    let series = |code, who, route, n| {
        (
            [
                ("code", code),
                ("consumer", who),
                ("route", route),
                ("service", ""),
            ],
            n,
        )
    };
    let before = [
        series("200", "ann", "r1", 2.0),
        series("200", "ann", "r2", 1.0),
        series("200", "ben", "r1", 3.0),
        series("401", "", "r1", 1.0),
    ];
    let m = scrape_until(&gw, "the 7 requests are counted", |m| m.sum(req) >= 7.0);
    let want: Vec<(&[(&str, &str)], f64)> = before.iter().map(|(l, n)| (&l[..], *n)).collect();
    m.assert_exact(req, &want);

    // ben leaves (cy, who never called, too); ann stays.
    let v0 = gw.config_version();
    gw.write_file("resources.yaml", &consumer_resources(&up, &["ann"]));
    gw.wait_reload(&v0);
    let m = scrape(&gw);
    let after = [
        series("200", "ann", "r1", 2.0),
        series("200", "ann", "r2", 1.0),
        series("401", "", "r1", 1.0),
    ];
    let want: Vec<(&[(&str, &str)], f64)> = after.iter().map(|(l, n)| (&l[..], *n)).collect();
    m.assert_exact(req, &want);
    assert!(!m.text.contains("\"ben\""), "{}", m.family_text(req));

    // ann counts on from her value; ben's key is now unknown (401, no consumer).
    assert_eq!(get(&gw, "/r1", &[("apikey", &key("ann"))]), 200);
    assert_eq!(get(&gw, "/r1", &[("apikey", &key("ben"))]), 401);
    let m = scrape_until(&gw, "the 2 new requests are counted", |m| m.sum(req) >= 6.0);
    let last = [
        series("200", "ann", "r1", 3.0),
        series("200", "ann", "r2", 1.0),
        series("401", "", "r1", 2.0),
    ];
    let want: Vec<(&[(&str, &str)], f64)> = last.iter().map(|(l, n)| (&l[..], *n)).collect();
    m.assert_exact(req, &want);

    // ben comes back: a new series from 0 (Prometheus reads it as a new counter).
    let v1 = gw.config_version();
    gw.write_file("resources.yaml", &consumer_resources(&up, &["ann", "ben"]));
    gw.wait_reload(&v1);
    assert_eq!(get(&gw, "/r2", &[("apikey", &key("ben"))]), 200);
    let m = scrape_until(&gw, "ben's request is counted", |m| m.sum(req) >= 7.0);
    assert_eq!(m.value(req, &series("200", "ben", "r2", 0.0).0), 1.0);
    assert_eq!(m.get(req, &series("200", "ben", "r1", 0.0).0), None);
    promtool_check(&m.text);
}

// ---------------------------------------------------------------------------------------------
// Access log

/// `(target, headers, status, route id, credential name or "")`.
type LoggedRequest<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str, &'a str);

/// A temp dir (removed on drop) and the access log path in it.
pub(crate) fn log_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("access.log");
    (dir, path)
}

/// A path as a YAML double-quoted string.
pub(crate) fn yaml_path(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).expect("string")
}

/// The lines of a file once it has at least `n` of them.
pub(crate) fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until(
        DEADLINE,
        &format!("{} has {n} lines", path.display()),
        || {
            lines = fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            lines.len() >= n
        },
    );
    lines
}

#[test]
fn access_log_json_has_the_contract_fields_and_no_secret() {
    let up = Upstream::start("up");
    let (_log_dir, log_path) = log_file();
    let gw = Gateway::builder()
        .node_extra(&format!(
            "access_log: {{path: {}, format: json}}",
            yaml_path(&log_path)
        ))
        .start(&auth_resources(&up));
    let basic = b64(format!("{BASIC_USER}:{PASSWORD}").as_bytes());
    let wrong_basic = b64(format!("{BASIC_USER}:{WRONG_KEY}").as_bytes());
    let token = jwt_token();
    let (date, hmac_auth, signature) = hmac_headers("/h?x=1");
    let basic_header = format!("Basic {basic}");
    let wrong_basic_header = format!("Basic {wrong_basic}");

    let key_q = format!("/k?apikey={KEY}&x=1");
    let jwt_q = format!("/j?jwt={token}");
    let wrong_q = format!("/k?apikey={WRONG_KEY}");
    let requests: Vec<LoggedRequest<'_>> = vec![
        ("/k".into(), vec![("apikey", KEY)], 200, "k", "key"),
        (key_q, vec![], 200, "k", "key"),
        (
            "/b".into(),
            vec![("Authorization", &basic_header)],
            200,
            "b",
            "basic",
        ),
        (jwt_q, vec![], 200, "j", "jwt"),
        (
            "/h?x=1".into(),
            vec![("Date", &date), ("Authorization", &hmac_auth)],
            200,
            "h",
            "hmac",
        ),
        (wrong_q, vec![], 401, "k", ""),
        ("/k".into(), vec![("apikey", WRONG_KEY)], 401, "k", ""),
        (
            "/b".into(),
            vec![("Authorization", &wrong_basic_header)],
            401,
            "b",
            "",
        ),
        ("/open?q=2".into(), vec![], 200, "open", ""),
        ("/nowhere?apikey=zz".into(), vec![], 404, "", ""),
    ];
    for (target, headers, status, _, _) in &requests {
        let resp = http(gw.port(), "GET", target, headers, b"");
        assert_eq!(resp.status, *status, "GET {target}: {}", resp.text());
    }

    let lines = wait_lines(&log_path, requests.len());
    assert_eq!(
        lines.len(),
        requests.len(),
        "one line per request:\n{}",
        lines.join("\n")
    );
    let fields = [
        "time",
        "remote_addr",
        "method",
        "path",
        "status",
        "bytes_sent",
        "request_time",
        "upstream_time",
        "route",
        "service",
        "consumer",
        "credential",
        "upstream_addr",
    ];
    for (line, (target, _, status, route, cred)) in lines.iter().zip(&requests) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {line}"));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        for f in fields {
            assert!(obj.contains_key(f), "no `{f}` in {line}");
        }
        let path = target.split('?').next().unwrap();
        assert_eq!(v["path"], path, "path without the query: {line}");
        assert_eq!(v["method"], "GET", "{line}");
        assert_eq!(v["status"], *status, "{line}");
        assert_eq!(v["route"], *route, "{line}");
        assert_eq!(v["service"], "", "{line}");
        assert!(v["bytes_sent"].as_u64().is_some_and(|n| n > 0), "{line}");
        assert!(
            v["request_time"].as_f64().is_some_and(|t| t >= 0.0),
            "{line}"
        );
        let time = v["time"].as_str().unwrap_or("");
        assert!(
            humantime::parse_rfc3339(time).is_ok(),
            "time {time:?} is not RFC 3339: {line}"
        );
        let remote = v["remote_addr"].as_str().unwrap_or("");
        assert!(remote.starts_with("127.0.0.1"), "remote_addr: {line}");
        if cred.is_empty() {
            assert_eq!(v["consumer"], "", "{line}");
            assert_eq!(v["credential"], "", "{line}");
        } else {
            assert_eq!(v["consumer"], "alice", "{line}");
            assert_eq!(
                v["credential"],
                format!("alice/credentials/{cred}"),
                "{line}"
            );
        }
        if *status == 200 {
            assert_eq!(v["upstream_addr"], up.addr(), "{line}");
            assert!(
                v["upstream_time"].as_f64().is_some_and(|t| t >= 0.0),
                "{line}"
            );
        } else {
            assert_eq!(v["upstream_addr"], "", "{line}");
            assert!(v["upstream_time"].is_null(), "{line}");
        }
    }

    // No secret anywhere: not in the access log, not in the gateway's own log.
    let jwt_sig = token.rsplit('.').next().unwrap().to_owned();
    let secrets = [
        KEY,
        WRONG_KEY,
        PASSWORD,
        JWT_SECRET,
        HMAC_SECRET,
        &basic,
        &wrong_basic,
        &token,
        &jwt_sig,
        &signature,
    ];
    let access = fs::read_to_string(&log_path).unwrap();
    let stderr = gw.stderr();
    for s in secrets {
        assert!(
            !access.contains(s),
            "the access log holds the secret {s:?}:\n{access}"
        );
        assert!(
            !stderr.contains(s),
            "the gateway log holds the secret {s:?}:\n{stderr}"
        );
    }
    assert!(
        !access.contains('?'),
        "a query in the access log:\n{access}"
    );
}

#[test]
fn access_log_combined_writes_one_line_per_request() {
    let up = Upstream::start("up");
    let (_log_dir, log_path) = log_file();
    let gw = Gateway::builder()
        .node_extra(&format!(
            "access_log: {{path: {}, format: combined}}",
            yaml_path(&log_path)
        ))
        .start(&auth_resources(&up));
    let requests = [
        ("/k?apikey=ak-Secret-4f1c9e", 200),
        ("/open?q=1", 200),
        ("/k", 401),
        ("/missing", 404),
    ];
    for (target, status) in requests {
        assert_eq!(get(&gw, target, &[]), status, "GET {target}");
    }
    let lines = wait_lines(&log_path, requests.len());
    assert_eq!(lines.len(), requests.len(), "{}", lines.join("\n"));
    for (line, (target, status)) in lines.iter().zip(requests) {
        let path = target.split('?').next().unwrap();
        assert!(line.starts_with("127.0.0.1"), "{line}");
        assert!(line.contains(&format!("\"GET {path}")), "{line}");
        assert!(line.contains(&format!("\" {status} ")), "{line}");
        assert!(!line.contains('?') && !line.contains(KEY), "{line}");
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "combined, not JSON: {line}"
        );
    }
    // The consumer stands in the user field.
    assert!(lines[0].contains(" - alice ["), "{}", lines[0]);
    assert!(lines[1].contains(" - - ["), "{}", lines[1]);
}

#[test]
fn access_log_to_stderr() {
    let up = Upstream::start("up");
    let gw = Gateway::builder()
        .node_extra("access_log: {path: stderr, format: json}")
        .start(&auth_resources(&up));
    assert_eq!(get(&gw, &format!("/k?apikey={KEY}"), &[]), 200);
    let mut line = String::new();
    wait_until(DEADLINE, "an access log line on stderr", || {
        line = gw
            .stderr()
            .lines()
            .find(|l| l.starts_with('{') && l.contains("\"route\""))
            .unwrap_or("")
            .to_owned();
        !line.is_empty()
    });
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["path"], "/k");
    assert_eq!(v["consumer"], "alice");
    assert!(!gw.stderr().contains(KEY));
}

/// An access log file in the folder of the resource files is written on every request; that
/// must not keep the file watcher from ever reloading (its debounce waits for a quiet moment).
#[test]
fn a_busy_access_log_beside_the_resource_files_does_not_stall_reloads() {
    let up = Upstream::start("up");
    let (dir, log_path) = log_file();
    let res = dir.path().join("resources.yaml");
    fs::write(&res, route_file(&up, &["one"])).unwrap();
    let gw = Gateway::builder()
        .resources(&[res.to_str().unwrap()])
        .node_extra(&format!(
            "access_log: {{path: {}, format: json}}",
            yaml_path(&log_path)
        ))
        .start("routes: []\n#END\n");
    let v0 = gw.config_version();

    // Steady traffic: a request every ~20 ms (the echo delays its answer), one log line each.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, sent, port) = (stop.clone(), sent.clone(), gw.port());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let resp = http(port, "GET", "/one", &[("x-echo-delay-ms", "20")], b"");
                assert_eq!(resp.status, 200);
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    wait_lines(&log_path, 5);

    // Replace the resource file atomically while the log keeps growing.
    let tmp = dir.path().join(".resources.yaml.tmp");
    fs::write(&tmp, route_file(&up, &["one", "two"])).unwrap();
    fs::rename(&tmp, &res).unwrap();
    let mut version = v0.clone();
    let reloaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(DEADLINE, "the config reloads under traffic", || {
            version = gw.config_version();
            version != v0
        });
    }));
    stop.store(true, Ordering::SeqCst);
    traffic.join().expect("traffic thread");
    assert!(
        reloaded.is_ok(),
        "no reload within {DEADLINE:?} while the access log beside the resource file was \
         written ({} requests); /healthz still shows {v0}",
        sent.load(Ordering::SeqCst)
    );
    assert_eq!(get(&gw, "/two", &[]), 200);
}

/// A client cannot forge access-log lines: a path with quotes, backslashes and an encoded line
/// break stays inside its own JSON line, and a burst (which the writer gathers into few
/// writes) still gives exactly one whole line per request.
#[test]
fn hostile_paths_stay_inside_their_own_access_log_line() {
    let up = Upstream::start("up");
    let (_log_dir, log_path) = log_file();
    let gw = Gateway::builder()
        .node_extra(&format!(
            "access_log: {{path: {}, format: json}}",
            yaml_path(&log_path)
        ))
        .start(&auth_resources(&up));
    let forged = r#"/nowhere/a"b\c%0A%22},{"route":"forged"}"#;
    let mut sent = 0;
    for k in 0..300 {
        let target = if k % 3 == 0 { forged } else { "/open" };
        let resp = http(gw.port(), "GET", target, &[], b"");
        assert!(resp.status < 500, "GET {target}: {}", resp.status);
        sent += 1;
    }
    let lines = wait_lines(&log_path, sent);
    assert_eq!(lines.len(), sent, "one line per request");
    let mut forged_seen = 0;
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_ne!(v["route"], "forged", "{line}");
        if v["path"].as_str().is_some_and(|p| p.contains("\"route\"")) {
            forged_seen += 1;
        }
    }
    assert_eq!(
        forged_seen, 100,
        "the hostile path is logged, escaped, in its own line"
    );
}
