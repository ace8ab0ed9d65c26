//! The echo upstream: a small HTTP/1.1 server that answers every request with 200 and a JSON
//! description of what it received (`node`, `method`, `uri` as sent, `headers`, `body`).
//!
//! Shared by the test harness (`Upstream`) and `examples/echo.rs`, so there is one copy of it.
//! Hand-written parsing on purpose: it sees the request target exactly as the gateway sent it.
//! Request headers steer it, so tests can reach it through the gateway:
//! `x-echo-status: 418` sets the status, `x-echo-delay-ms: 3000` delays the answer,
//! `x-echo-close: 1` resets the connection without answering, `x-echo-header: name=value`
//! adds a response header (repeatable).
//!
//! [`Counters`] sees more than completed requests: every accepted connection and every byte
//! read, counted the moment they arrive, so a test can tell that nothing at all (not even a
//! request head or a bare connect) reached the upstream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;

/// What an echo server has seen: `hits` requests read whole, `conns` connections accepted,
/// `bytes` bytes received (counted as they are read, before any request is complete).
#[derive(Default)]
pub struct Counters {
    pub hits: Arc<AtomicUsize>,
    pub conns: AtomicUsize,
    pub bytes: AtomicUsize,
}

/// Accepts connections forever, one task each; `hits` counts requests.
pub async fn serve(listener: TcpListener, name: Arc<str>, hits: Arc<AtomicUsize>) {
    let counters = Arc::new(Counters {
        hits,
        ..Counters::default()
    });
    serve_counted(listener, name, counters).await;
}

/// As [`serve`], counting connections and bytes too.
pub async fn serve_counted(listener: TcpListener, name: Arc<str>, counters: Arc<Counters>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        counters.conns.fetch_add(1, Ordering::SeqCst);
        let (name, counters) = (name.clone(), counters.clone());
        tokio::spawn(async move {
            // A broken client connection is not the server's problem.
            let stream = Counted {
                stream,
                counters: counters.clone(),
            };
            let _ = connection(stream, &name, &counters.hits).await;
        });
    }
}

/// A client connection that adds every byte read to [`Counters::bytes`].
struct Counted {
    stream: TcpStream,
    counters: Arc<Counters>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        this.counters.bytes.fetch_add(read, Ordering::SeqCst);
        poll
    }
}

struct Request {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.http10 {
            conn.contains("keep-alive")
        } else {
            !conn.contains("close")
        }
    }
}

async fn connection(stream: Counted, name: &str, hits: &AtomicUsize) -> io::Result<()> {
    let mut stream = BufReader::new(stream);
    while let Some(req) = read_request(&mut stream).await? {
        hits.fetch_add(1, Ordering::SeqCst);
        if req.header("x-echo-close").is_some() {
            stream.get_ref().stream.set_zero_linger()?;
            return Ok(());
        }
        if let Some(ms) = req.header("x-echo-delay-ms").and_then(|v| v.parse().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let keep_alive = req.keep_alive();
        stream
            .get_mut()
            .stream
            .write_all(&response(&req, name, keep_alive))
            .await?;
        if !keep_alive {
            break;
        }
    }
    Ok(())
}

/// Reads one request; `None` when the client closed the connection between requests.
async fn read_request(stream: &mut BufReader<Counted>) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let n = stream.read_until(b'\n', &mut head).await?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(bad("connection closed inside the head"))
            };
        }
        if head == b"\r\n" || head == b"\n" {
            head.clear(); // tolerate empty lines before a request (RFC 9112 section 2.2)
        } else if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        } else if head.len() > MAX_HEAD {
            return Err(bad("head too large"));
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line"));
    };
    let mut req = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        http10: version == "HTTP/1.0",
        headers: Vec::new(),
        body: Vec::new(),
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("bad header"))?;
        req.headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(stream).await?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        req.body = vec![0; len];
        stream.read_exact(&mut req.body).await?;
    }
    Ok(Some(req))
}

async fn read_chunked(stream: &mut BufReader<Counted>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if stream.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..]).await?;
        line.clear();
        stream.read_line(&mut line).await?; // the CRLF after the data
    }
}

fn response(req: &Request, name: &str, keep_alive: bool) -> Vec<u8> {
    let mut headers = Map::new();
    for (n, v) in &req.headers {
        let v = Value::String(v.clone());
        match headers.get_mut(n) {
            None => {
                headers.insert(n.clone(), v);
            }
            Some(Value::Array(list)) => list.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
        }
    }
    let body = serde_json::json!({
        "node": name,
        "method": req.method,
        "uri": req.target,
        "headers": headers,
        "body": String::from_utf8_lossy(&req.body),
    })
    .to_string();
    let status: u16 = req
        .header("x-echo-status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut out = format!(
        "HTTP/1.1 {status} Echo\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in &req.headers {
        if let ("x-echo-header", Some((hn, hv))) = (n.as_str(), v.split_once('=')) {
            out.push_str(&format!("{hn}: {hv}\r\n"));
        }
    }
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if req.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
