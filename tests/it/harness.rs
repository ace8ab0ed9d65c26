//! Tests of the harness itself; none needs the gateway.

use serde_json::json;

use crate::support::{
    Client, Redis, RedisCluster, Seen, Upstream, http, make_test_cert, tls_connect, try_http,
    wait_until,
};

#[test]
fn echo_answers_json_with_what_it_received() {
    let up = Upstream::start("e1");
    let headers = [("X-Dup", "1"), ("x-dup", "2"), ("X-One", "a")];
    let resp = http(up.port(), "POST", "/a/../b%2F?q=1", &headers, b"hello");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(body["node"], "e1");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["uri"], "/a/../b%2F?q=1");
    assert_eq!(body["body"], "hello");
    assert_eq!(body["headers"]["x-dup"], json!(["1", "2"]));
    assert_eq!(body["headers"]["x-one"], "a");
    assert_eq!(body["headers"]["host"], format!("127.0.0.1:{}", up.port()));
    assert_eq!(up.hits(), 1);
}

#[test]
fn echo_keeps_alive_reads_chunked_and_obeys_its_knobs() {
    let up = Upstream::start("e2");
    let mut client = Client::new(up.port());
    let chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let resp = client.send("PUT", "/c", &[("Transfer-Encoding", "chunked")], chunked);
    assert_eq!(resp.json()["body"], "hello world");
    let knobs = [
        ("x-echo-status", "418"),
        ("x-echo-header", "x-from-echo=yes"),
    ];
    let resp = client.send("GET", "/k", &knobs, b"");
    assert_eq!(resp.status, 418);
    assert_eq!(resp.header("X-From-Echo"), Some("yes"));
    let resp = client.send("GET", "/slow", &[("x-echo-delay-ms", "50")], b"");
    assert_eq!(resp.status, 200);
    assert_eq!(up.hits(), 3, "three requests on one connection");
    let err = client.try_send("GET", "/close", &[("x-echo-close", "1")], b"");
    assert!(err.is_err(), "x-echo-close answers nothing: {err:?}");
    assert_eq!(up.hits(), 4);
}

/// The echo counts a bare connection and a partial head at once, before any request is whole,
/// and `assert_untouched` fails on either.
#[test]
fn echo_counts_connections_and_bytes_as_they_arrive() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::Duration;

    let up = Upstream::start("e4");
    let quiet = up.seen();
    assert_eq!(quiet, Seen::default());
    up.assert_untouched(quiet, "nothing sent yet");
    let mut conn = TcpStream::connect(("127.0.0.1", up.port())).unwrap();
    wait_until(Duration::from_secs(10), "the connection is counted", || {
        up.conns() == 1
    });
    assert_eq!((up.hits(), up.bytes()), (0, 0));
    let touched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        up.assert_untouched(quiet, "a bare connect");
    }));
    assert!(touched.is_err(), "a bare connection counts as reaching it");
    let head = b"GET /half HTTP/1.1\r\nHost: x\r\n";
    conn.write_all(head).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the partial head is counted",
        || up.bytes() == head.len(),
    );
    assert_eq!(up.hits(), 0, "the request is not complete");
    conn.write_all(b"\r\n").unwrap();
    wait_until(Duration::from_secs(10), "the request is counted", || {
        up.hits() == 1
    });
    assert_eq!(up.bytes(), head.len() + 2);
    assert_eq!(up.conns(), 1);
}

#[test]
fn echo_stops_when_dropped() {
    let port = Upstream::start("e3").port();
    assert!(try_http(port, "GET", "/", &[], b"").is_err());
}

#[test]
fn test_cert_is_made() {
    let (cert, key, der) = make_test_cert();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(key.contains("PRIVATE KEY"));
    assert!(!der.is_empty());
}

#[test]
fn redis_starts_and_answers() {
    let mut redis = Redis::start();
    assert_eq!(redis.cmd(&["PING"]).unwrap(), "PONG");
    assert_eq!(redis.cmd(&["SET", "k", "v"]).unwrap(), "OK");
    assert_eq!(redis.cmd(&["GET", "k"]).unwrap(), "v");
    assert_eq!(redis.cmd(&["INCR", "n"]).unwrap(), "1");
    redis.kill();
    assert!(redis.cmd(&["PING"]).is_err(), "killed");
}

#[test]
fn redis_cluster_forms() {
    let mut cluster = RedisCluster::start(3);
    for node in cluster.nodes() {
        let info = node.cmd(&["CLUSTER", "INFO"]).unwrap();
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
    }
    // Some node owns each slot: a key can be written on its owner.
    let owner = cluster
        .nodes()
        .iter()
        .find(|n| n.cmd(&["SET", "k", "v"]).is_ok())
        .expect("some node owns slot of k");
    assert_eq!(owner.cmd(&["GET", "k"]).unwrap(), "v");
    cluster.node_mut(0).kill();
    assert!(cluster.nodes()[0].cmd(&["PING"]).is_err(), "killed");
    assert_eq!(cluster.nodes()[1].cmd(&["PING"]).unwrap(), "PONG");
}

#[test]
fn tls_client_negotiates_alpn_and_speaks_http1() {
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = ck.cert.der().to_vec();
    let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(der.clone())], key.into())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
            let mut line = String::new();
            // The second client leaves after the handshake: a failed read ends that connection.
            while tls.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = "{\"tls\":true}";
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = tls.get_mut().write_all(format!("{head}{body}").as_bytes());
            let _ = tls.get_mut().flush();
        }
    });
    let mut conn = tls_connect(port, &der, &["http/1.1"]).unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("http/1.1"));
    let resp = conn.send("GET", "/", &[], b"").unwrap();
    assert_eq!(resp.json()["tls"], true);
    let conn = tls_connect(port, &der, &["h2", "http/1.1"]).unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("h2"));
    drop(conn);
    server.join().unwrap();
}
