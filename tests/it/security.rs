//! Security regressions (issue 10), each tried as an attacker would, through the real binary:
//! encoded paths around a route's auth, forged identity headers in `_` spelling, an hmac body
//! checked before the upstream hears of the request, no secret in any output at debug level,
//! `${{VAR}}` substitution, strict scalar types, and failed-auth log lines rate-limited.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::auth_common::{assert_reject, echo};
use crate::observability::{log_file, wait_lines, yaml_path};
use crate::signing::{
    BASIC_USER, HMAC_CONSUMERS, HMAC_SECRET, JWT_SECRET, KEY, PASSWORD, WRONG_KEY, auth_resources,
    b64, hmac_headers, hmac_request, jwt_token, sha256_digest,
};
use crate::support::assert_line;
use crate::support::{Gateway, Upstream, check_fails, chunked, http, tollgate_check, wait_until};

const DEADLINE: Duration = Duration::from_secs(10);

/// A TCP relay in front of an upstream that counts the connections it accepts and the bytes it
/// receives, so "never reached the upstream" means no connection at all, not just no complete
/// request.
struct Tap {
    port: u16,
    conns: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl Tap {
    fn start(target: u16) -> Tap {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (conns, bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, b) = (conns.clone(), bytes.clone());
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut cr, mut sw) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = cr.read(&mut buf) {
                        if n == 0 || sw.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        b.fetch_add(n, Ordering::SeqCst);
                    }
                    let _ = sw.shutdown(std::net::Shutdown::Write);
                });
                let (mut sr, mut cw) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut sr, &mut cw);
                    let _ = cw.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Tap { port, conns, bytes }
    }

    fn yaml(&self) -> String {
        format!(
            r#"{{type: roundrobin, nodes: {{"127.0.0.1:{}": 1}}}}"#,
            self.port
        )
    }

    fn seen(&self) -> (usize, usize) {
        (
            self.conns.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }
}

#[test]
fn encoded_slashes_and_dots_cannot_walk_around_a_routes_auth() {
    let up = Upstream::start("up");
    let tap = Tap::start(up.port());
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: u, plugins: {{key-auth: {{key: the-key}}}}}}
routes:
  - {{id: public, uri: "/public/*", upstream: {t}}}
  - {{id: private, uri: "/private/*", plugins: {{key-auth: {{}}}}, upstream: {t}}}
#END
"#,
        t = tap.yaml()
    ));
    for target in [
        "/public/..%2Fprivate/x",
        "/public/%2e%2e%2fprivate/x",
        "/public%2F..%2Fprivate/x",
        "/public/%2E%2E/private/x",
        "/public/..%2f..%2fprivate/x",
        "/public//..//private/x",
        "/public/./../private/x",
    ] {
        let r = http(gw.port(), "GET", target, &[], b"");
        assert_eq!(
            r.status,
            401,
            "GET {target} must need the key: {}",
            r.text()
        );
    }
    assert_eq!(tap.seen(), (0, 0), "no request reached the upstream");
    // With the key, the upstream gets the very path the route matched.
    let r = http(
        gw.port(),
        "GET",
        "/public/..%2Fprivate/x",
        &[("apikey", "the-key")],
        b"",
    );
    assert_eq!(echo(&r)["uri"], "/private/x");
    let r = http(gw.port(), "GET", "/public/caf%c3%a9%2Fb?q=%2F", &[], b"");
    assert_eq!(echo(&r)["uri"], "/public/caf%C3%A9/b?q=%2F");
}

#[test]
fn identity_headers_are_stripped_in_every_spelling() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: bob
    labels: {{dept: ops}}
    plugins:
      key-auth: {{key: bob-key}}
      attach-consumer-label: {{headers: {{X-Consumer-Dept: $dept}}}}
routes:
  - {{id: open, uri: /open, upstream: {u}}}
  - {{id: auth, uri: /auth, plugins: {{key-auth: {{}}}}, upstream: {u}}}
#END
"#,
        u = up.yaml()
    ));
    let forged = [
        ("X_Consumer_Username", "admin"),
        ("x_consumer-username", "admin"),
        ("X-CONSUMER_USERNAME", "admin"),
        ("X_Credential_Identifier", "admin-cred"),
        ("X_Consumer_Custom_ID", "admin-id"),
        ("x_consumer_dept", "finance"),
        ("X-Consumer_Dept", "finance"),
    ];
    for route in ["/open", "/auth"] {
        let mut headers = forged.to_vec();
        headers.push(("apikey", "bob-key"));
        let v = echo(&http(gw.port(), "GET", route, &headers, b""));
        let sent = v["headers"].as_object().unwrap();
        for (name, _) in forged {
            let spelled = name.to_ascii_lowercase();
            assert!(
                !sent.contains_key(&spelled),
                "{route}: {name} reached the upstream: {v}"
            );
        }
        let values: Vec<String> = sent.values().map(|x| x.to_string()).collect();
        for bad in ["admin", "finance", "admin-cred", "admin-id"] {
            assert!(
                !values.iter().any(|x| x.contains(bad)),
                "{route}: a forged value {bad:?} reached the upstream: {v}"
            );
        }
    }
    let v = echo(&http(
        gw.port(),
        "GET",
        "/auth",
        &[("apikey", "bob-key"), ("X_Consumer_Username", "admin")],
        b"",
    ));
    assert_eq!(v["headers"]["x-consumer-username"], "bob");
    assert_eq!(v["headers"]["x-consumer-dept"], "ops");
}

#[test]
fn hmac_body_digest_is_checked_before_the_upstream_hears_of_the_request() {
    let up = Upstream::start("up");
    let tap = Tap::start(up.port());
    let gw = Gateway::start(&format!(
        r#"{HMAC_CONSUMERS}routes:
  - id: body
    uri: /body
    plugins: {{hmac-auth: {{validate_request_body: true, max_req_body_size: 1048576}}}}
    upstream: {t}
#END
"#,
        t = tap.yaml()
    ));
    let post = |body: &[u8], headers: &[(&str, &str)]| {
        hmac_request(
            &gw,
            "hmac-sha256",
            "hal-key",
            "hal-secret",
            "POST",
            "/body",
            0,
            "@request-target date",
            headers,
            body,
        )
    };
    let small: Vec<u8> = b"{\"order\":42}".to_vec();
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let te = ("Transfer-Encoding", "chunked");
    let other = sha256_digest(b"another body");
    let ch = Some(r#"hmac realm="hmac""#);
    let generic = "client request can't be validated";
    for round in 0..5 {
        for body in [&small, &big] {
            assert_reject(&post(body, &[("Digest", &other)]), 401, generic, ch);
            let parts: Vec<&[u8]> = body.chunks(50_000).collect();
            assert_reject(
                &post(&chunked(&parts), &[te, ("Digest", &other)]),
                401,
                generic,
                ch,
            );
        }
        assert_eq!(
            tap.seen(),
            (0, 0),
            "round {round}: a request with a bad digest reached the upstream"
        );
    }
    // Good digests: the whole body arrives, by Content-Length and chunked, small and large.
    for body in [&small, &big] {
        let r = post(body, &[("Digest", &sha256_digest(body))]);
        assert_eq!(echo(&r)["body"].as_str().unwrap().as_bytes(), &body[..]);
        let parts: Vec<&[u8]> = body.chunks(50_000).collect();
        let r = post(&chunked(&parts), &[te, ("Digest", &sha256_digest(body))]);
        assert_eq!(echo(&r)["body"].as_str().unwrap().as_bytes(), &body[..]);
        assert_eq!(echo(&r)["headers"]["x-consumer-username"], "hal");
    }
    assert!(tap.seen().0 >= 1);
    assert_eq!(up.hits(), 4);
}

/// `(target, headers, expected status)`.
type Probe<'a> = (String, Vec<(&'a str, &'a str)>, u16);

#[test]
fn no_secret_in_any_output_at_debug_level() {
    let up = Upstream::start("up");
    let (log_dir, json_log) = log_file();
    let combined_log = log_dir.path().join("combined.log");
    let gw = Gateway::builder()
        .env("RUST_LOG", "debug")
        .node_extra(&format!(
            "access_log: {{path: {}, format: json}}\n",
            yaml_path(&json_log)
        ))
        .start(&auth_resources(&up));
    let gw2 = Gateway::builder()
        .env("RUST_LOG", "trace")
        .node_extra(&format!(
            "access_log: {{path: {}, format: combined}}\n",
            yaml_path(&combined_log)
        ))
        .start(&auth_resources(&up));
    let basic = b64(format!("{BASIC_USER}:{PASSWORD}").as_bytes());
    let wrong_basic = b64(format!("{BASIC_USER}:{WRONG_KEY}").as_bytes());
    let token = jwt_token();
    let jwt_sig = token.rsplit('.').next().unwrap().to_owned();
    let (date, hmac_auth, signature) = hmac_headers("/h?x=1");
    let basic_h = format!("Basic {basic}");
    let wrong_basic_h = format!("Basic {wrong_basic}");
    let bearer = format!("Bearer {token}");
    let jwt_cookie = format!("jwt={token}");
    let referer = format!("https://app.example/page?apikey={KEY}&jwt={token}#frag");
    let requests: Vec<Probe<'_>> = vec![
        (
            "/k".into(),
            vec![("apikey", KEY), ("Referer", &referer)],
            200,
        ),
        (format!("/k?apikey={KEY}"), vec![("Referer", &referer)], 200),
        ("/k".into(), vec![("apikey", WRONG_KEY)], 401),
        (format!("/k?apikey={WRONG_KEY}"), vec![], 401),
        ("/b".into(), vec![("Authorization", &basic_h)], 200),
        ("/b".into(), vec![("Authorization", &wrong_basic_h)], 401),
        ("/j".into(), vec![("Authorization", &bearer)], 200),
        (format!("/j?jwt={token}"), vec![], 200),
        ("/j".into(), vec![("Cookie", &jwt_cookie)], 200),
        (
            "/h?x=1".into(),
            vec![("Date", &date), ("Authorization", &hmac_auth)],
            200,
        ),
        (format!("/nowhere?apikey={KEY}"), vec![], 404),
    ];
    for g in [&gw, &gw2] {
        for (target, headers, status) in &requests {
            let r = http(g.port(), "GET", target, headers, b"");
            assert_eq!(r.status, *status, "GET {target}: {}", r.text());
            for s in [KEY, WRONG_KEY, PASSWORD, &basic, &token, &signature] {
                assert!(
                    !r.text().contains(s) || r.status == 200,
                    "error body holds {s}"
                );
            }
        }
    }
    wait_lines(&json_log, requests.len());
    wait_lines(&combined_log, requests.len());
    let metrics = |g: &Gateway| http(g.status_port(), "GET", "/metrics", &[], b"").text();
    let outputs = [
        ("stderr at debug", gw.stderr()),
        ("stderr at trace", gw2.stderr()),
        (
            "json access log",
            std::fs::read_to_string(&json_log).unwrap(),
        ),
        (
            "combined access log",
            std::fs::read_to_string(&combined_log).unwrap(),
        ),
        ("metrics", metrics(&gw)),
    ];
    // The debug log really is at debug level (else this test proves nothing).
    assert!(outputs[0].1.contains("DEBUG"), "{}", outputs[0].1);
    for (what, text) in &outputs {
        for s in [
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
        ] {
            assert!(!text.contains(s), "{what} holds the secret {s:?}:\n{text}");
        }
    }
    // The Referer is logged, without its query.
    assert!(
        outputs[3].1.contains("https://app.example/page"),
        "{}",
        outputs[3].1
    );
}

#[test]
fn env_vars_are_substituted_and_never_taken_literally() {
    let up = Upstream::start("up");
    let res = format!(
        r#"consumers:
  - username: bot
    plugins:
      key-auth: {{key: "${{{{CONSUMER_API_KEY}}}}"}}
  - username: other
    plugins:
      key-auth: {{key: "${{{{TOLLGATE_TEST_UNSET_VAR:=fallback-key}}}}"}}
routes:
  - id: r
    uri: /r
    plugins:
      key-auth: {{}}
      limit-count: {{count: ${{{{RATE_COUNT}}}}, time_window: 60}}
    upstream: {u}
#END
"#,
        u = up.yaml()
    );
    let gw = Gateway::builder()
        .env("CONSUMER_API_KEY", "real-secret-value")
        .env("RATE_COUNT", "100")
        .start(&res);
    let get = |k: &str| http(gw.port(), "GET", "/r", &[("apikey", k)], b"");
    assert_eq!(
        echo(&get("real-secret-value"))["headers"]["x-consumer-username"],
        "bot"
    );
    assert_eq!(
        echo(&get("fallback-key"))["headers"]["x-consumer-username"],
        "other"
    );
    assert_eq!(get("${{CONSUMER_API_KEY}}").status, 401);
    assert_eq!(
        get("real-secret-value").header("x-ratelimit-limit"),
        Some("100")
    );

    // Unset without a default: an error naming the field, and the name, never a value.
    let lines = check_fails(&[(
        "resources.yaml",
        "consumers:\n  - username: x\n    plugins:\n      key-auth: {key: \"${{TOLLGATE_TEST_UNSET_VAR}}\"}\n#END\n",
    )]);
    assert_line(
        &lines,
        "resources.yaml: consumers[0].plugins.key-auth.key",
        &["TOLLGATE_TEST_UNSET_VAR"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        "consumers:\n  - username: x\n    plugins:\n      key-auth: {key: \"${{NOT_CLOSED\"}\n#END\n",
    )]);
    assert!(lines.iter().any(|l| l.contains("${{")), "{lines:?}");
}

#[test]
fn scalars_of_the_wrong_yaml_type_are_refused() {
    let lines = check_fails(&[(
        "resources.yaml",
        "routes:\n  - id: r\n    uri: /r\n    plugins:\n      key-auth: {header: 123}\n    upstream: {nodes: {\"127.0.0.1:1\": 1}}\n#END\n",
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.key-auth.header",
        &["string"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        "routes:\n  - id: r\n    uri: /r\n    plugins:\n      limit-count: {count: \"10\", time_window: 60}\n    upstream: {nodes: {\"127.0.0.1:1\": 1}}\n#END\n",
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.limit-count.count",
        &[],
    );
    // Quoted where a string is expected is fine, and so is a plain word.
    let (code, out, err) = tollgate_check(&[(
        "resources.yaml",
        "routes:\n  - id: r\n    uri: /r\n    plugins:\n      key-auth: {header: \"123\"}\n    upstream: {nodes: {\"127.0.0.1:1\": 1}}\n#END\n",
    )]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn failed_auth_log_lines_are_rate_limited_and_still_counted() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: u, plugins: {{key-auth: {{key: the-key}}}}}}
routes:
  - {{id: r, uri: /r, plugins: {{key-auth: {{}}}}, upstream: {u}}}
#END
"#,
        u = up.yaml()
    ));
    let mark = gw.log_mark();
    let n = 300;
    let mut client = crate::support::Client::new(gw.port());
    for i in 0..n {
        let k = format!("bad-{i}");
        let r = client.send("GET", "/r", &[("apikey", &k)], b"");
        assert_eq!(r.status, 401);
    }
    let mut m = String::new();
    wait_until(DEADLINE, "all failures are counted", || {
        m = http(gw.status_port(), "GET", "/metrics", &[], b"").text();
        m.lines()
            .any(|l| l.starts_with("tollgate_auth_failures_total") && l.ends_with(&format!(" {n}")))
    });
    let log = &gw.stderr()[mark..];
    let auth_lines = log.lines().filter(|l| l.contains("key-auth")).count();
    assert!(
        auth_lines <= 20,
        "{auth_lines} log lines for {n} failed requests:\n{log}"
    );
    assert!(auth_lines >= 1, "the first failure is logged:\n{log}");
}

/// A hostile resource file: a few anchors whose aliases would expand into a billion nodes
/// ("billion laughs") are refused with an error instead of exhausting memory, and legitimate
/// anchors (merge keys shared by many items) still load.
#[test]
fn alias_bombs_in_a_resource_file_are_refused() {
    let mut yaml = String::from("x-a: &a [l, l, l, l, l, l, l, l, l, l]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let (prev, next) = (w[0], w[1]);
        yaml.push_str(&format!(
            "x-{next}: &{next} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    yaml.push_str(
        "routes:\n  - {id: r, uri: /r, upstream: {nodes: {\"127.0.0.1:1\": 1}}, desc: *i}\n#END\n",
    );
    let lines = check_fails(&[("resources.yaml", &yaml)]);
    assert_line(&lines, "resources.yaml", &["repetition limit exceeded"]);

    let mut ok = String::from("x-up: &up {nodes: {\"127.0.0.1:1\": 1}}\nroutes:\n");
    for i in 0..2000 {
        ok.push_str(&format!("  - {{id: r{i}, uri: /r{i}, upstream: *up}}\n"));
    }
    ok.push_str("#END\n");
    let (code, out, err) = tollgate_check(&[("resources.yaml", &ok)]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
}

/// Query credentials are read as APISIX's `get_uri_args` reads them: name and value decoded
/// once, `+` a space; invalid UTF-8 or a repeated argument matches nobody.
#[test]
fn query_credentials_are_decoded_once() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: r, uri: /r, plugins: {{key-auth: {{}}}}, upstream: {u}}}\nconsumers:\n  - {{username: u, plugins: {{key-auth: {{key: \"k+1\"}}}}}}\n#END\n",
        u = up.yaml()
    ));
    let p = gw.port();
    let status = |target: &str| http(p, "GET", target, &[], b"").status;
    assert_eq!(status("/r?apikey=k%2B1"), 200);
    assert_eq!(status("/r?api%6Bey=k%2B1"), 200, "the name is decoded too");
    assert_eq!(status("/r?apikey=k+1"), 401, "`+` is a space");
    assert_eq!(status("/r?apikey=k%252B1"), 401, "decoded once, not twice");
    assert_eq!(status("/r?apikey=%FF%FE"), 401);
    assert_eq!(status("/r?apikey=k%2B1&apikey=k%2B1"), 401, "repeated");
}
