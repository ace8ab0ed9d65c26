//! forward-auth through the real binary, against a real auth service started here: the APISIX
//! docs' example (`Authorization: 123` allowed, `321` allowed with `X-User-ID`, anything else
//! refused with a `Location`), plus an unreachable service, a slow one and connection reuse.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::{
    Gateway, Upstream, assert_line, check_fails, free_port, http, make_test_cert, tls_connect,
};

/// One request as the auth service saw it: target and headers (names lower case).
type Seen = (String, Vec<(String, String)>);

/// A small HTTP/1.1 auth service on `127.0.0.1:0`, keep-alive, deciding by `Authorization`:
/// `123` 200; `321` 200 with `X-User-ID: i-am-user`; `slow` 200 after 1.5 s; anything else 403
/// with `Location`, `X-Secret` and a text body. Stops accepting when dropped.
struct AuthService {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AuthService {
    fn start() -> AuthService {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, st) = (conns.clone(), seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                // Ends when the gateway closes the connection (at the latest when it exits).
                std::thread::spawn(move || serve(stream, &s));
            }
        });
        AuthService {
            addr,
            conns,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn uri(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split(' ').nth(1).unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let auth = get("authorization");
        let close = get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        seen.lock().unwrap().push((target, headers));
        let resp: &[u8] = match auth.as_deref() {
            Some("123") => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Some("321") => b"HTTP/1.1 200 OK\r\nX-User-ID: i-am-user\r\nContent-Length: 0\r\n\r\n",
            Some("slow") => {
                std::thread::sleep(Duration::from_millis(1500));
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            }
            _ => {
                b"HTTP/1.1 403 Forbidden\r\nLocation: http://example.com/auth\r\nX-Secret: s\r\n\
                  Content-Type: text/html\r\nContent-Length: 15\r\n\r\ndenied by auth\n"
            }
        };
        if w.write_all(resp).is_err() || close {
            return;
        }
    }
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.1
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn gateway(auth: &AuthService, up: &Upstream) -> Gateway {
    let dead = format!("http://127.0.0.1:{}/auth", free_port());
    Gateway::start(&format!(
        r#"routes:
  - id: auth
    uri: /auth
    plugins:
      forward-auth:
        uri: {auth}
        request_headers: [Authorization]
        upstream_headers: [X-User-ID]
        client_headers: [Location]
    upstream: {u}
  - id: slow
    uri: /slow
    plugins:
      forward-auth: {{uri: {auth}, request_headers: [Authorization], timeout: 200}}
    upstream: {u}
  - id: down
    uri: /down
    plugins: {{forward-auth: {{uri: "{dead}"}}}}
    upstream: {u}
  - id: down-503
    uri: /down-503
    plugins: {{forward-auth: {{uri: "{dead}", status_on_error: 503}}}}
    upstream: {u}
  - id: degrade
    uri: /degrade
    plugins: {{forward-auth: {{uri: "{dead}", allow_degradation: true}}}}
    upstream: {u}
  - id: noka
    uri: /noka
    plugins:
      forward-auth: {{uri: {auth}, request_headers: [Authorization], keepalive: false}}
    upstream: {u}
#END
"#,
        auth = auth.uri("/auth?check=1"),
        u = up.yaml()
    ))
}

#[test]
fn allow_deny_and_headers_as_the_apisix_docs_show() {
    let auth = AuthService::start();
    let up = Upstream::start("up");
    let gw = gateway(&auth, &up);

    // Allowed: the upstream answers.
    let r = http(
        gw.port(),
        "POST",
        "/auth?a=b",
        &[
            ("Authorization", "123"),
            ("Host", "Example.com:8080"),
            ("X-Not-Listed", "1"),
            ("X-User-ID", "forged"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["node"], "up");
    // What the auth service got: X-Forwarded-*, the listed client header, nothing else.
    let seen = auth.last();
    assert_eq!(seen.0, "/auth?check=1");
    assert_eq!(header(&seen, "host"), Some(auth.addr.to_string().as_str()));
    assert_eq!(header(&seen, "authorization"), Some("123"));
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&seen, "x-forwarded-method"), Some("POST"));
    assert_eq!(header(&seen, "x-forwarded-host"), Some("example.com"));
    assert_eq!(header(&seen, "x-forwarded-uri"), Some("/auth?a=b"));
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&seen, "x-not-listed"), None);
    assert_eq!(header(&seen, "x-user-id"), None);
    assert_eq!(header(&seen, "content-length"), None, "no body is sent");
    // An upstream_header the auth service did not send: the client's copy is removed.
    assert!(
        r.json()["headers"].get("x-user-id").is_none(),
        "{}",
        r.text()
    );

    // Allowed with X-User-ID: it reaches the upstream, replacing the client's.
    let r = http(
        gw.port(),
        "GET",
        "/auth",
        &[("Authorization", "321"), ("X-User-ID", "forged")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-user-id"], "i-am-user");

    // Denied: the auth service's status and body, client_headers only; nothing upstream.
    let hits = up.hits();
    for creds in [&[("Authorization", "000")][..], &[]] {
        let r = http(gw.port(), "GET", "/auth", creds, b"");
        assert_eq!(r.status, 403);
        assert_eq!(r.text(), "denied by auth\n");
        assert_eq!(r.header("location"), Some("http://example.com/auth"));
        assert_eq!(r.header("x-secret"), None);
        assert_eq!(r.header("content-type"), Some("text/plain"));
    }
    assert_eq!(up.hits(), hits);
    let m = http(gw.status_port(), "GET", "/metrics", &[], b"").text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("tollgate_plugin_rejections_total")
                && l.contains("forward-auth")
                && l.contains("route=\"auth\"")
                && l.ends_with(" 2")),
        "{m}"
    );
}

#[test]
fn x_forwarded_proto_is_https_on_a_tls_listener() {
    let auth = AuthService::start();
    let up = Upstream::start("up");
    let (cert, key, der) = make_test_cert();
    let gw = Gateway::builder().tls(&cert, &key).start(&format!(
        "routes:\n  - id: r\n    uri: /t\n    plugins: {{forward-auth: {{uri: {}, request_headers: [Authorization]}}}}\n    upstream: {}\n",
        auth.uri("/auth"),
        up.yaml()
    ));
    let mut conn = tls_connect(gw.tls_port(), &der, &["http/1.1"]).unwrap();
    let r = conn
        .send(
            "GET",
            "/t",
            &[("Host", "localhost"), ("Authorization", "123")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(header(&auth.last(), "x-forwarded-proto"), Some("https"));
}

#[test]
fn unreachable_slow_and_degraded_auth_services() {
    let auth = AuthService::start();
    let up = Upstream::start("up");
    let gw = gateway(&auth, &up);
    let hits = up.hits();

    // Nothing listens: status_on_error (403 by default), a JSON body, no upstream.
    let r = http(gw.port(), "GET", "/down", &[], b"");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error_msg"], "failed to process forward auth");
    let r = http(gw.port(), "GET", "/down-503", &[], b"");
    assert_eq!(r.status, 503);
    // Slower than `timeout`: the same error.
    let r = http(gw.port(), "GET", "/slow", &[("Authorization", "slow")], b"");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error_msg"], "failed to process forward auth");
    assert_eq!(up.hits(), hits, "nothing reached the upstream");
    // The same route with a fast answer goes through.
    let r = http(gw.port(), "GET", "/slow", &[("Authorization", "123")], b"");
    assert_eq!(r.status, 200);

    // allow_degradation: the request goes through untouched.
    let r = http(gw.port(), "GET", "/degrade", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["node"], "up");
    gw.wait_log(
        0,
        &["forward-auth", "allow_degradation lets the request through"],
    );
}

#[test]
fn auth_connections_are_reused_when_keepalive_is_on() {
    let auth = AuthService::start();
    let up = Upstream::start("up");
    let gw = gateway(&auth, &up);
    // keepalive: false: one connection per request, each told `Connection: close` (first,
    // while no pooled connection of the same target exists).
    let before = auth.conns();
    for _ in 0..3 {
        let r = http(gw.port(), "GET", "/noka", &[("Authorization", "123")], b"");
        assert_eq!(r.status, 200);
    }
    assert_eq!(header(&auth.last(), "connection"), Some("close"));
    assert_eq!(auth.conns() - before, 3);

    const N: usize = 6;
    let before = auth.conns();
    for _ in 0..N {
        let r = http(gw.port(), "GET", "/auth", &[("Authorization", "123")], b"");
        assert_eq!(r.status, 200);
    }
    let opened = auth.conns() - before;
    assert!(opened < N, "{opened} connections for {N} requests");

    assert_eq!(auth.count(), N + 3);
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    for (conf, field, words) in [
        (
            "{uri: 'http://127.0.0.1:1/a', request_method: POST}",
            "request_method",
            &["not supported"][..],
        ),
        (
            "{uri: 'http://127.0.0.1:1/a', extra_headers: {X-A: b}}",
            "extra_headers",
            &["not supported"],
        ),
        (
            "{uri: 'http://127.0.0.1:1/a', consumer_header: X-U}",
            "consumer_header",
            &["not supported"],
        ),
        (
            "{uri: 'http://127.0.0.1:1/a', vars: []}",
            "",
            &["unknown field `vars`"],
        ),
        ("{uri: 'ftp://127.0.0.1:1/a'}", "uri", &["http://"]),
        (
            "{uri: 'http://127.0.0.1:1/a', timeout: 0}",
            "timeout",
            &["1..=60000"],
        ),
    ] {
        let lines = check_fails(&[(
            "resources.yaml",
            &format!(
                "routes:\n  - id: r\n    uri: /r\n    plugins:\n      forward-auth: {conf}\n    upstream: {{nodes: {{\"127.0.0.1:1\": 1}}}}\n#END\n"
            ),
        )]);
        let prefix = if field.is_empty() {
            "resources.yaml: routes[0].plugins".to_string()
        } else {
            format!("resources.yaml: routes[0].plugins.forward-auth.{field}")
        };
        assert_line(&lines, &prefix, words);
    }
}
