//! README promises that had no test (issue 17, point 5): forwarded headers, the status
//! listener's methods, `/healthz` while starting, the graceful-shutdown bound, upstream error
//! kinds in metrics, limit-count rejections counted, quota headers on a 502, `chash`, `retries`,
//! `scheme: https` upstreams, WebSocket upgrades, `--version`/`--help`, `check` warnings before
//! errors and never a secret, and the reload delay. Every test runs the real binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::Digest as _;

use crate::support::{
    Gateway, Resp, Upstream, free_port, http, make_test_cert, tls_connect, tollgate_check,
    try_http, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn one_route(up: &str, fields: &str) -> String {
    format!("routes:\n  - {{id: r, uri: /*, {fields}upstream: {up}}}\n#END\n")
}

/// The echo's view of a request: its `headers` object.
fn echo_headers(resp: &Resp) -> serde_json::Value {
    assert_eq!(resp.status, 200, "expected an echo answer: {}", resp.text());
    resp.json()["headers"].clone()
}

/// Sum of the samples of `name` whose labels include every `labels` pair.
fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = http(gw.status_port(), "GET", "/metrics", &[], b"").text();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' ']).next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Forwarded headers

/// The upstream gets `X-Real-IP`, `X-Forwarded-For` (the client's value, then the peer),
/// `X-Forwarded-Proto`, `-Host` and `-Port` as the gateway saw them, once each, and never the
/// client's `Forwarded` or its own copies; over TLS the proto is `https`. The same with a plugin
/// that edits the upstream request (`/rid/*`: the gateway's headers then go through the header
/// maps, not straight to the wire).
#[test]
fn forwarded_headers_reach_the_upstream_and_forwarded_is_cleared() {
    let up = Upstream::start("fw");
    let (cert, key, der) = make_test_cert();
    let gw = Gateway::builder().tls(&cert, &key).start(&format!(
        "routes:\n  - {{id: r, uri: /*, upstream: {up}}}\n  \
         - {{id: rid, uri: /rid/*, plugins: {{request-id: {{}}}}, upstream: {up}}}\n#END\n",
        up = up.yaml()
    ));
    for path in ["/fw", "/rid/fw"] {
        let resp = http(
            gw.port(),
            "GET",
            path,
            &[
                ("Host", "shop.example:8443"),
                ("X-Forwarded-For", "10.1.2.3"),
                ("X-Real-IP", "6.6.6.6"),
                ("x-forwarded-proto", "gopher"),
                ("X-Forwarded-Host", "evil.example"),
                ("X-FORWARDED-PORT", "1"),
                ("Forwarded", "for=6.6.6.6;proto=https"),
            ],
            b"",
        );
        let h = echo_headers(&resp);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3, 127.0.0.1", "{path} {h}");
        assert_eq!(h["x-real-ip"], "127.0.0.1", "{path} {h}");
        assert_eq!(h["x-forwarded-proto"], "http", "{path} {h}");
        assert_eq!(h["x-forwarded-host"], "shop.example:8443", "{path} {h}");
        assert_eq!(h["x-forwarded-port"], gw.port().to_string(), "{path} {h}");
        assert!(h.get("forwarded").is_none(), "Forwarded is cleared: {h}");
        assert_eq!(h.get("x-request-id").is_some(), path == "/rid/fw", "{h}");
    }

    // No client value: the peer alone.
    let h = echo_headers(&http(gw.port(), "GET", "/fw", &[], b""));
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{h}");

    // Over TLS.
    let mut tls = tls_connect(gw.tls_port(), &der, &["http/1.1"]).expect("tls connect");
    let resp = tls
        .send("GET", "/fw", &[("Host", "localhost")], b"")
        .expect("request over TLS");
    let h = echo_headers(&resp);
    assert_eq!(h["x-forwarded-proto"], "https", "{h}");
    assert_eq!(h["x-forwarded-port"], gw.tls_port().to_string(), "{h}");
    assert_eq!(h["x-forwarded-host"], "localhost", "{h}");
}

// ---------------------------------------------------------------------------------------------
// Status listener

/// The status listener answers `GET` and `HEAD` only; any other method, and any other path,
/// gets 404.
#[test]
fn status_listener_answers_get_and_head_only() {
    let up = Upstream::start("st");
    let gw = Gateway::start(&one_route(&up.yaml(), ""));
    let port = gw.status_port();
    for path in ["/healthz", "/metrics"] {
        let get = http(port, "GET", path, &[], b"");
        assert_eq!(get.status, 200, "GET {path}");
        assert!(!get.body.is_empty(), "GET {path} has a body");
        let head = http(port, "HEAD", path, &[], b"");
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} has no body");
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let resp = http(port, method, path, &[], b"x");
            assert_eq!(resp.status, 404, "{method} {path}: {}", resp.text());
        }
    }
    for path in ["/", "/healthz/x", "/metricsx", "/status"] {
        assert_eq!(http(port, "GET", path, &[], b"").status, 404, "GET {path}");
    }
    assert_eq!(up.hits(), 0, "the status listener never proxies");
}

/// While starting, `/healthz` answers 503 `{"status":"starting"}`; whenever it answers 200,
/// the proxy listener accepts connections (polled from the first moment the status port
/// answers).
#[test]
fn healthz_is_200_only_once_the_proxy_listener_accepts() {
    let up = Upstream::start("hz");
    let dir = tempfile::tempdir().unwrap();
    let (port, status) = (free_port(), free_port());
    std::fs::write(dir.path().join("resources.yaml"), one_route(&up.yaml(), "")).unwrap();
    std::fs::write(
        dir.path().join("tollgate.yaml"),
        format!(
            "listen: [\"127.0.0.1:{port}\"]\nstatus_listen: \"127.0.0.1:{status}\"\nthreads: 1\nresources: [resources.yaml]\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(dir.path().join("tollgate.yaml"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut starting = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(Duration::from_secs(20), "/healthz answers 200", || {
            let Ok(resp) = try_http(status, "GET", "/healthz", &[], b"") else {
                return false;
            };
            match resp.status {
                503 => {
                    assert_eq!(resp.text(), "{\"status\":\"starting\"}\n");
                    starting += 1;
                    false
                }
                200 => {
                    assert!(
                        TcpStream::connect(("127.0.0.1", port)).is_ok(),
                        "/healthz says ok but the proxy listener refuses connections"
                    );
                    true
                }
                other => panic!("/healthz answered {other}: {}", resp.text()),
            }
        });
        assert_eq!(http(port, "GET", "/x", &[], b"").status, 200);
    }));
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("/healthz answered 503 starting {starting} time(s) before 200");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown bound

/// SIGTERM with a request that would take 60 s: the process exits 0 within
/// `grace_period_seconds` + `graceful_shutdown_timeout_seconds` (0 + 1 here), with a margin
/// for a loaded machine, far below the request's own duration.
#[test]
fn graceful_shutdown_timeout_bounds_the_exit() {
    let up = Upstream::start("slow");
    let mut gw = Gateway::builder()
        .node_extra("grace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1")
        .start(&one_route(&up.yaml(), ""));
    let port = gw.port();
    let inflight = std::thread::spawn(move || {
        try_http(port, "GET", "/slow", &[("x-echo-delay-ms", "60000")], b"")
    });
    wait_until(DEADLINE, "the upstream got the slow request", || {
        up.hits() == 1
    });
    let sent = Instant::now();
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(8));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!("still running {took:?} after SIGTERM with graceful_shutdown_timeout_seconds 1")
    });
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    // The in-flight request was cut (or answered with an error), not served after 60 s.
    let resp = inflight.join().unwrap();
    assert!(
        resp.as_ref().map_or(true, |r| r.status != 200),
        "the 60 s request was answered 200?"
    );
    eprintln!("exited {took:?} after SIGTERM (bound: 1 s)");
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// An upstream read timeout counts `kind="timeout"` and answers 504; a reset counts
/// `kind="reset"` and answers 502.
#[test]
fn upstream_errors_are_counted_by_kind_timeout_and_reset() {
    let up = Upstream::start("bad");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: slow, uri: /slow, upstream: {{type: roundrobin, nodes: {{\"{}\": 1}}, timeout: {{connect: 2, send: 2, read: 0.3}}}}}}\n  - {{id: reset, uri: /reset, upstream: {}}}\n#END\n",
        up.addr(),
        up.yaml()
    ));
    let errors = "tollgate_upstream_errors_total";
    let resp = http(
        gw.port(),
        "GET",
        "/slow",
        &[("x-echo-delay-ms", "3000")],
        b"",
    );
    assert_eq!(resp.status, 504, "{}", resp.text());
    let resp = http(gw.port(), "GET", "/reset", &[("x-echo-close", "1")], b"");
    assert_eq!(resp.status, 502, "{}", resp.text());
    wait_until(DEADLINE, "both errors are counted", || {
        metric(&gw, errors, &[("route", "slow"), ("kind", "timeout")]) == 1.0
            && metric(&gw, errors, &[("route", "reset"), ("kind", "reset")]) == 1.0
    });
    assert_eq!(metric(&gw, errors, &[]), 2.0, "no other error counted");
}

/// A limit-count rejection is counted in `tollgate_limit_count_rejections_total{route}`.
#[test]
fn limit_count_rejections_are_counted() {
    let up = Upstream::start("lc");
    let gw = Gateway::start(&one_route(
        &up.yaml(),
        "plugins: {limit-count: {count: 1, time_window: 60}}, ",
    ));
    assert_eq!(http(gw.port(), "GET", "/a", &[], b"").status, 200);
    for _ in 0..3 {
        assert_eq!(http(gw.port(), "GET", "/a", &[], b"").status, 503);
    }
    let name = "tollgate_limit_count_rejections_total";
    wait_until(DEADLINE, "three rejections counted", || {
        metric(&gw, name, &[("route", "r")]) == 3.0
    });
}

/// An admitted request whose upstream fails still carries its quota headers on the 502.
#[test]
fn quota_headers_come_with_a_502() {
    let dead = free_port();
    let gw = Gateway::start(&one_route(
        &format!("{{type: roundrobin, nodes: {{\"127.0.0.1:{dead}\": 1}}}}"),
        "plugins: {limit-count: {count: 5, time_window: 60}}, ",
    ));
    let resp = http(gw.port(), "GET", "/a", &[], b"");
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("4"));
    let reset: u64 = resp
        .header("x-ratelimit-reset")
        .expect("X-RateLimit-Reset on a 502")
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&reset), "reset {reset}");
}

/// The access log never blocks a request: when its writer is stuck (here a FIFO nobody reads)
/// and its queue of 8192 lines is full, further lines are dropped and counted in
/// `tollgate_access_log_dropped_total`. Once the FIFO is read, every request is accounted for:
/// lines written + lines dropped = requests.
#[test]
fn access_log_lines_dropped_when_the_writer_is_stuck_are_counted() {
    use std::os::unix::fs::OpenOptionsExt;
    const REQUESTS: usize = 9_000;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.fifo");
    let c_path = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    #[allow(unsafe_code)]
    let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo");
    // A reader that reads nothing yet: the writer can open the FIFO, then blocks once the
    // pipe buffer is full.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let gw = Gateway::builder()
        .node_extra(&format!(
            "access_log: {{path: {}, format: json}}",
            serde_json::to_string(&fifo.to_string_lossy()).unwrap()
        ))
        .start("routes: []\n#END\n");
    let dropped = "tollgate_access_log_dropped_total";
    assert_eq!(metric(&gw, dropped, &[]), 0.0);
    // Two keep-alive clients, 404s (no upstream needed); none may be slowed to a stop.
    let port = gw.port();
    let started = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = crate::support::Client::new(port);
                for _ in 0..REQUESTS / 2 {
                    assert_eq!(c.get("/nowhere").status, 404);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let took = started.elapsed();
    let mut lost = 0.0;
    wait_until(DEADLINE, "lines are dropped and counted", || {
        lost = metric(&gw, dropped, &[]);
        lost > 0.0
    });
    // Now drain the FIFO: the lines written plus those dropped are all the requests.
    let mut written = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    wait_until(
        Duration::from_secs(30),
        "every request is written or counted as dropped",
        || {
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => written += buf[..n].iter().filter(|b| **b == b'\n').count(),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read the FIFO: {e}"),
                }
            }
            lost = metric(&gw, dropped, &[]);
            written + lost as usize >= REQUESTS
        },
    );
    assert_eq!(
        written + lost as usize,
        REQUESTS,
        "written {written} + dropped {lost} (requests took {took:?})"
    );
    assert!(
        written >= 8192,
        "the queue held its 8192 lines: {written} written"
    );
    assert!(
        gw.stderr().contains("access log is behind"),
        "a warning names the drops"
    );
}

// ---------------------------------------------------------------------------------------------
// Upstreams: chash, retries, https

/// `type: chash`: one key always goes to one node, and keys spread over the nodes; by header,
/// by cookie and by consumer.
#[test]
fn chash_keeps_a_key_on_one_node_and_spreads_keys() {
    let ups: Vec<Upstream> = ["n0", "n1", "n2"]
        .iter()
        .map(|n| Upstream::start(n))
        .collect();
    let nodes: Vec<String> = ups.iter().map(|u| format!("\"{}\": 1", u.addr())).collect();
    let nodes = nodes.join(", ");
    let mut consumers = String::from("consumers:\n");
    for i in 0..24 {
        consumers.push_str(&format!(
            "  - {{username: u{i}, plugins: {{key-auth: {{key: k{i}}}}}}}\n"
        ));
    }
    let gw = Gateway::start(&format!(
        "{consumers}routes:\n  - {{id: h, uri: /h, upstream: {{type: chash, hash_on: header, key: x-user, nodes: {{{nodes}}}}}}}\n  - {{id: c, uri: /c, upstream: {{type: chash, hash_on: cookie, key: sid, nodes: {{{nodes}}}}}}}\n  - {{id: u, uri: /u, plugins: {{key-auth: {{}}}}, upstream: {{type: chash, hash_on: consumer, nodes: {{{nodes}}}}}}}\n#END\n"
    ));
    let node_of = |resp: Resp| -> String {
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()["node"].as_str().unwrap().to_owned()
    };
    for (path, header) in [("/h", "X-User"), ("/c", "Cookie"), ("/u", "apikey")] {
        let mut used = std::collections::BTreeSet::new();
        for i in 0..24 {
            let value = match header {
                "Cookie" => format!("a=1; sid=s{i}; b=2"),
                "apikey" => format!("k{i}"),
                _ => format!("user-{i}"),
            };
            let first = node_of(http(gw.port(), "GET", path, &[(header, &value)], b""));
            for _ in 0..3 {
                let again = node_of(http(gw.port(), "GET", path, &[(header, &value)], b""));
                assert_eq!(again, first, "{path} {header}: {value} moved");
            }
            used.insert(first);
        }
        assert!(used.len() >= 2, "{path}: 24 keys all on {used:?}");
    }
}

/// `retries`: a node refusing connections is skipped for another when retries allow it (the
/// default is nodes - 1); with `retries: 0` its share of requests fails with 502.
#[test]
fn retries_move_a_refused_connection_to_another_node() {
    let live = Upstream::start("live");
    let dead = free_port();
    let nodes = format!("{{\"127.0.0.1:{dead}\": 1, \"{}\": 1}}", live.addr());
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: dflt, uri: /dflt, upstream: {{type: roundrobin, nodes: {nodes}}}}}\n  - {{id: one, uri: /one, upstream: {{type: roundrobin, retries: 1, nodes: {nodes}}}}}\n  - {{id: zero, uri: /zero, upstream: {{type: roundrobin, retries: 0, nodes: {nodes}}}}}\n#END\n"
    ));
    for path in ["/dflt", "/one"] {
        for i in 0..8 {
            let resp = http(gw.port(), "GET", path, &[], b"");
            assert_eq!(resp.status, 200, "{path} request {i}: {}", resp.text());
            assert_eq!(resp.json()["node"], "live");
        }
    }
    let codes: Vec<u16> = (0..8)
        .map(|_| http(gw.port(), "GET", "/zero", &[], b"").status)
        .collect();
    assert!(
        codes.contains(&502) && codes.contains(&200),
        "retries 0: the dead node's share fails, the live node's passes: {codes:?}"
    );
    assert!(codes.iter().all(|c| *c == 200 || *c == 502), "{codes:?}");
}

/// A one-connection-at-a-time HTTPS server on 127.0.0.1 answering 200 with the request head
/// (as text) in a JSON body; counts the requests it answered.
struct TlsUpstream {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsUpstream {
    fn start(cert_pem: &str, key_pem: &str) -> TlsUpstream {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let _ = serve_tls(tcp, config.clone(), &h);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TlsUpstream {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve_tls(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    hits: &AtomicUsize,
) -> std::io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if tls.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let sni = tls.get_ref().conn.server_name().unwrap_or("").to_owned();
    let body = serde_json::json!({"node": "tls", "head": head, "sni": sni}).to_string();
    let out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let stream = tls.get_mut();
    stream.write_all(out.as_bytes())?;
    stream.flush()?;
    stream.conn.send_close_notify();
    let _ = stream.flush();
    Ok(())
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `scheme: https`: the gateway speaks TLS to the node (the node's certificate is trusted
/// through `SSL_CERT_FILE`, as on a host with a private CA).
#[test]
fn https_upstream_is_spoken_to_over_tls() {
    let (cert, key, _) = make_test_cert();
    let tls_up = TlsUpstream::start(&cert, &key);
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &cert).unwrap();
    let gw = Gateway::builder()
        .env("SSL_CERT_FILE", &ca.path().to_string_lossy())
        .start(&format!(
            "routes:\n  - {{id: r, uri: /*, upstream: {{scheme: https, pass_host: node, nodes: {{\"localhost:{}\": 1}}}}}}\n#END\n",
            tls_up.port
        ));
    let resp = http(gw.port(), "GET", "/over-tls?q=1", &[], b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["node"], "tls");
    assert!(
        v["head"]
            .as_str()
            .unwrap()
            .starts_with("GET /over-tls?q=1 HTTP/1.1\r\n"),
        "{v}"
    );
    assert_eq!(v["sni"], "localhost", "{v}");
    assert_eq!(tls_up.hits.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// WebSocket

/// A WebSocket handshake goes through: the upstream's 101 with `Sec-WebSocket-Accept` reaches
/// the client, then bytes flow both ways on the upgraded connection (the upstream echoes them).
#[test]
fn websocket_upgrade_is_proxied() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = listener.local_addr().unwrap();
    let upgraded = Arc::new(AtomicUsize::new(0));
    let seen = upgraded.clone();
    let server = std::thread::spawn(move || -> std::io::Result<String> {
        let (tcp, _) = listener.accept()?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut r = BufReader::new(tcp);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let key = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_default();
        let accept = STANDARD.encode(sha1::Sha1::digest(
            format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
        ));
        r.get_mut().write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        )?;
        seen.fetch_add(1, Ordering::SeqCst);
        // Echo what arrives after the upgrade until the client goes away.
        let mut buf = [0u8; 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(head);
            }
            r.get_mut().write_all(&buf[..n])?;
        }
    });
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: ws, uri: /ws, enable_websocket: true, upstream: {{type: roundrobin, nodes: {{\"{up_addr}\": 1}}}}}}\n#END\n"
    ));
    let mut client = TcpStream::connect(("127.0.0.1", gw.port())).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    client
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut r = BufReader::new(client.try_clone().unwrap());
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "status line {status:?}");
    let mut accept = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case("sec-websocket-accept")
        {
            accept = Some(v.trim().to_owned());
        }
    }
    assert_eq!(
        accept.as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "RFC 6455's example accept value"
    );
    // A masked text frame "hello" (RFC 6455 section 5.7), then raw bytes: both echoed.
    let frame = [
        0x81u8, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    for round in 0..3 {
        client.write_all(&frame).unwrap();
        let mut back = [0u8; 11];
        r.read_exact(&mut back).unwrap();
        assert_eq!(back, frame, "round {round}: bytes tunnelled both ways");
    }
    drop(r);
    drop(client);
    let head = server.join().unwrap().expect("upstream side");
    assert_eq!(upgraded.load(Ordering::SeqCst), 1);
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("sec-websocket-key: "), "{head}");
}

// ---------------------------------------------------------------------------------------------
// Command line

/// `--version` and `--help` (and `-h`, `-V`) print to stdout and exit 0 without reading any
/// config.
#[test]
fn version_and_help_print_and_exit_zero() {
    let run = |arg: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .arg(arg)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{arg}: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for arg in ["--version", "-V"] {
        let out = run(arg);
        assert!(
            out.contains("tollgate") && out.contains(env!("CARGO_PKG_VERSION")),
            "{arg}: {out}"
        );
    }
    for arg in ["--help", "-h"] {
        let out = run(arg);
        for word in ["check", "hash-secret", "--config", "--upgrade"] {
            assert!(out.contains(word), "{arg} lacks {word}: {out}");
        }
    }
    // An unknown flag is a usage error: non-zero, on stderr.
    let out = Command::new(BIN).arg("--no-such-flag").output().unwrap();
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
}

/// `check` prints warnings (a file without `#END`) on stderr before any error, whether it
/// succeeds or fails, and no error or warning ever shows a secret value.
#[test]
fn check_prints_warnings_before_errors_and_never_a_secret() {
    let secrets = [
        "key-SECRET-1111",
        "pw-SECRET-2222",
        "hmac-SECRET-3333",
        "jwt-SECRET-4444",
    ];
    // Valid, but without #END: a warning, exit 0.
    let good = format!(
        "consumers:\n  - {{username: a, plugins: {{key-auth: {{key: {}}}}}}}\nroutes:\n  - {{id: r, uri: /r, upstream: {{nodes: {{\"127.0.0.1:1\": 1}}}}}}\n",
        secrets[0]
    );
    let (code, out, err) = tollgate_check(&[("resources.yaml", &good)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: "), "{out}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("warning") && l.contains("#END")),
        "{err}"
    );
    // Invalid in several ways, secrets beside each error, and without #END: parse errors
    // (unknown fields, an unknown algorithm) in one run, then errors found after parsing
    // (a duplicate key, a missing reference) in another.
    let parse_errors = format!(
        r#"consumers:
  - {{username: c, plugins: {{basic-auth: {{username: c, password: {p}, passwrd: {p}}}}}}}
  - {{username: d, plugins: {{hmac-auth: {{key_id: d, secret_key: {h}, algorithm: hmac-md5}}}}}}
  - {{username: e, plugins: {{jwt-auth: {{key: e, secret: {j}, algorithm: HS999}}}}}}
"#,
        p = secrets[1],
        h = secrets[2],
        j = secrets[3]
    );
    let compile_errors = format!(
        r#"consumers:
  - {{username: a, plugins: {{key-auth: {{key: {k}}}}}}}
  - {{username: b, plugins: {{key-auth: {{key: {k}}}}}}}
  - {{username: c, plugins: {{basic-auth: {{username: c, password: {p}}}}}}}
  - {{username: c2, plugins: {{basic-auth: {{username: c, password: {p}}}}}}}
  - {{username: e, plugins: {{jwt-auth: {{key: e, secret: {j}}}}}}}
  - {{username: e2, plugins: {{jwt-auth: {{key: e, secret: {j}}}}}}}
routes:
  - {{id: r, uri: /r, upstream_id: nowhere}}
"#,
        k = secrets[0],
        p = secrets[1],
        j = secrets[3]
    );
    for bad in [parse_errors, compile_errors] {
        let (code, out, err) = tollgate_check(&[("resources.yaml", &bad)]);
        assert_eq!(code, 1, "stdout {out}\nstderr {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let first_error = lines
            .iter()
            .position(|l| !l.contains("warning"))
            .unwrap_or_else(|| panic!("no error line: {err}"));
        let last_warning = lines
            .iter()
            .rposition(|l| l.contains("warning"))
            .unwrap_or_else(|| panic!("no warning line: {err}"));
        assert!(
            last_warning < first_error,
            "warnings come before errors:\n{err}"
        );
        assert!(lines.len() >= 4, "every error reported:\n{err}");
        for s in secrets {
            assert!(!err.contains(s), "a secret in check's output: {s}\n{err}");
            assert!(!out.contains(s), "a secret in check's stdout: {s}\n{out}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reload delay

/// An edited resource file is applied "within about 200 ms" (README): measured from the
/// rename to the first request that sees the new route, over five edits. The median must stay
/// within 200 ms plus a margin for a loaded 2-core machine (800 ms in all), and no edit may
/// take longer than 5 s.
#[test]
fn an_edit_is_applied_within_about_200_ms() {
    let up = Upstream::start("rl");
    let routes = |n: usize| {
        let mut yaml = String::from("routes:\n");
        for i in 0..=n {
            yaml.push_str(&format!(
                "  - {{id: r{i}, uri: /v{i}, upstream: {}}}\n",
                up.yaml()
            ));
        }
        yaml.push_str("#END\n");
        yaml
    };
    let gw = Gateway::start(&routes(0));
    let mut took = Vec::new();
    for n in 1..=5 {
        let path = format!("/v{n}");
        assert_eq!(http(gw.port(), "GET", &path, &[], b"").status, 404);
        let start = Instant::now();
        gw.write_file("resources.yaml", &routes(n));
        loop {
            if http(gw.port(), "GET", &path, &[], b"").status == 200 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "edit {n} not applied after 5 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        took.push(start.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    eprintln!("reload delays: {took:?}");
    assert!(
        median <= Duration::from_millis(800),
        "median reload delay {median:?} (all: {took:?}); the README says about 200 ms"
    );
}
