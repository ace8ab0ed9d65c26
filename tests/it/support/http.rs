//! A hand-written HTTP/1.1 client over `std::net::TcpStream` (and rustls for HTTPS).
//!
//! Request targets go out byte for byte (`/a/../b`, `/a%2Fb`), responses are read by
//! Content-Length, chunked coding or EOF, and every socket times out after 10 s. [`TlsConn`] also
//! reports the ALPN protocol and can make one bare-bones HTTP/2 GET.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A response: status, headers in order (names as sent), body.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_all(name).into_iter().next()
    }

    /// Every value of a header, in order.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the status and body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {} {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// One request on a fresh connection (with `Connection: close`); panics on I/O errors.
pub fn http(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_http(port, method, target, headers, body)
        .unwrap_or_else(|e| panic!("{method} {target} on port {port}: {e}"))
}

/// [`http`] that returns I/O errors instead of panicking.
pub fn try_http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Resp> {
    let mut stream = BufReader::new(connect(port)?);
    let mut all = headers.to_vec();
    all.push(("Connection", "close"));
    write_request(stream.get_mut(), port, method, target, &all, body)?;
    read_response(&mut stream, method)
}

/// A client that keeps one keep-alive connection, reconnecting only when the server closes it
/// with `Connection: close` (any other failure is reported, never retried).
pub struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client { port, conn: None }
    }

    pub fn get(&mut self, target: &str) -> Resp {
        self.send("GET", target, &[], b"")
    }

    /// One request; panics on I/O errors.
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.try_send(method, target, headers, body)
            .unwrap_or_else(|e| panic!("{method} {target} on port {}: {e}", self.port))
    }

    pub fn try_send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Resp> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => BufReader::new(connect(self.port)?),
        };
        write_request(conn.get_mut(), self.port, method, target, headers, body)?;
        let resp = read_response(&mut conn, method)?;
        let close = resp
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if !close {
            self.conn = Some(conn);
        }
        Ok(resp)
    }
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes a request: `Host: 127.0.0.1:PORT` unless given, `Content-Length` when there is a body
/// (or the method usually has one) and no framing header was given.
fn write_request(
    w: &mut impl Write,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    let framed = has("content-length") || has("transfer-encoding");
    if !framed && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// Reads one response (skipping 1xx); `method` tells whether a body follows.
fn read_response(r: &mut impl BufRead, method: &str) -> io::Result<Resp> {
    loop {
        let status_line = read_line(r)?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| bad(&format!("bad header {line:?}")))?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            continue;
        }
        if method == "HEAD" || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.body = read_chunked(r)?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            resp.body = vec![0; len];
            r.read_exact(&mut resp.body)?;
        } else {
            r.read_to_end(&mut resp.body)?;
        }
        return Ok(resp);
    }
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            while !read_line(r)?.is_empty() {} // trailers
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        read_line(r)?;
    }
}

/// One line without its CRLF; EOF is an error.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A self-signed certificate for `localhost` and `127.0.0.1`: (cert PEM, key PEM, cert DER).
pub fn make_test_cert() -> (String, String, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate test certificate");
    (
        ck.cert.pem(),
        ck.signing_key.serialize_pem(),
        ck.cert.der().to_vec(),
    )
}

/// A TLS connection to `127.0.0.1:port` (server name `localhost`), handshake done.
pub struct TlsConn {
    port: u16,
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

/// Connects with TLS, trusting only `root_der`, offering the `alpn` protocols (may be empty).
pub fn tls_connect(port: u16, root_der: &[u8], alpn: &[&str]) -> io::Result<TlsConn> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(root_der.to_vec()))
        .map_err(io::Error::other)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let mut tcp = connect(port)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(TlsConn {
        port,
        stream: BufReader::new(rustls::StreamOwned::new(conn, tcp)),
    })
}

impl TlsConn {
    /// The negotiated ALPN protocol, if any.
    pub fn alpn(&self) -> Option<String> {
        let conn = &self.stream.get_ref().conn;
        conn.alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// One HTTP/1.1 request on this connection (keep-alive).
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Resp> {
        write_request(
            self.stream.get_mut(),
            self.port,
            method,
            target,
            headers,
            body,
        )?;
        read_response(&mut self.stream, method)
    }

    /// A bare-bones HTTP/2 GET on stream 1 (after ALPN chose `h2`): the status if HPACK gave it
    /// as a static-table index (200, 204, 206, 304, 400, 404, 500), and the body.
    pub fn h2_get(&mut self, authority: &str, path: &str) -> io::Result<(Option<u16>, Vec<u8>)> {
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        h2_frame(&mut out, 0x4, 0, 0, &[]); // SETTINGS, all defaults
        let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
        hpack_literal(&mut block, 4, path); // :path
        hpack_literal(&mut block, 1, authority); // :authority
        h2_frame(&mut out, 0x1, 0x4 | 0x1, 1, &block); // HEADERS, END_HEADERS | END_STREAM
        self.stream.get_mut().write_all(&out)?;
        self.stream.get_mut().flush()?;
        let (mut status, mut body) = (None, Vec::new());
        loop {
            let mut head = [0u8; 9];
            self.stream.read_exact(&mut head)?;
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0; len];
            self.stream.read_exact(&mut payload)?;
            let payload = h2_unpad(payload, flags, kind);
            match (kind, stream_id) {
                (0x4, 0) if flags & 0x1 == 0 => {
                    let mut ack = Vec::new();
                    h2_frame(&mut ack, 0x4, 0x1, 0, &[]);
                    self.stream.get_mut().write_all(&ack)?;
                }
                (0x1, 1) => {
                    status = match payload.first() {
                        Some(0x88) => Some(200),
                        Some(0x89) => Some(204),
                        Some(0x8a) => Some(206),
                        Some(0x8b) => Some(304),
                        Some(0x8c) => Some(400),
                        Some(0x8d) => Some(404),
                        Some(0x8e) => Some(500),
                        _ => None,
                    };
                }
                (0x0, 1) => body.extend_from_slice(&payload),
                (0x3, 1) => return Err(bad("h2 stream reset by the server")),
                (0x7, 0) => return Err(bad("h2 GOAWAY from the server")),
                _ => continue,
            }
            if stream_id == 1 && flags & 0x1 != 0 && (kind == 0x0 || kind == 0x1) {
                return Ok((status, body));
            }
        }
    }
}

fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len())
        .expect("frame length")
        .to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Strips padding (DATA, HEADERS) and the priority block (HEADERS) from a frame payload.
fn h2_unpad(mut payload: Vec<u8>, flags: u8, kind: u8) -> Vec<u8> {
    if kind > 0x1 {
        return payload;
    }
    let mut start = 0;
    if flags & 0x8 != 0 && !payload.is_empty() {
        let pad = usize::from(payload[0]);
        payload.truncate(payload.len().saturating_sub(pad));
        start = 1;
    }
    if kind == 0x1 && flags & 0x20 != 0 {
        start += 5;
    }
    payload.split_off(start.min(payload.len()))
}

/// HPACK "literal header field without indexing, indexed name", value not Huffman-coded.
fn hpack_literal(out: &mut Vec<u8>, name_index: u8, value: &str) {
    hpack_int(out, 4, 0x00, usize::from(name_index));
    hpack_int(out, 7, 0x00, value.len());
    out.extend_from_slice(value.as_bytes());
}

fn hpack_int(out: &mut Vec<u8>, prefix_bits: u32, first: u8, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A chunked body: one chunk per part, then the last chunk.
pub fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
