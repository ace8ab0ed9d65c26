//! Every error response tollgate writes itself: status, headers, JSON body. Pingora's upstream
//! errors map to 502 (refused, reset, other) or 504 (timeouts).

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora_core::{Error, ErrorType};

/// Longest request target accepted (nginx's default large buffer is 8 KiB).
pub(crate) const MAX_URI: usize = 8192;
/// Largest total of request header bytes accepted.
pub(crate) const MAX_HEADERS: usize = 64 * 1024;

/// A response tollgate answers instead of proxying.
#[derive(Debug, Clone)]
pub struct Reject {
    pub status: u16,
    /// The JSON body, newline-terminated.
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reject {
    pub fn new(status: u16, body: Bytes) -> Reject {
        Reject {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// `{"<key>":"<msg>"}` plus a newline, as APISIX serialises it (forward slashes unescaped).
    pub fn json_body(key: &str, msg: &str) -> Bytes {
        let mut s = serde_json::to_string(&serde_json::json!({ key: msg })).unwrap_or_default();
        s.push('\n');
        Bytes::from(s)
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Reject {
        self.headers.push((name, value));
        self
    }

    pub fn route_not_found() -> Reject {
        Reject::new(
            404,
            Bytes::from_static(b"{\"error_msg\":\"404 Route Not Found\"}\n"),
        )
    }

    pub fn bad_request() -> Reject {
        Reject::new(
            400,
            Bytes::from_static(b"{\"error_msg\":\"400 Bad Request\"}\n"),
        )
    }

    /// Request line over [`MAX_URI`] bytes.
    pub fn uri_too_long() -> Reject {
        Reject::new(
            414,
            Bytes::from_static(b"{\"error_msg\":\"414 Request-URI Too Large\"}\n"),
        )
    }

    /// Request headers over [`MAX_HEADERS`] bytes in all.
    pub fn headers_too_large() -> Reject {
        Reject::new(
            431,
            Bytes::from_static(b"{\"error_msg\":\"431 Request Header Fields Too Large\"}\n"),
        )
    }

    /// Maps an error Pingora hit while proxying to our answer and a metric `kind`.
    pub fn from_pingora(e: &Error) -> (Reject, &'static str) {
        use ErrorType::*;
        let (status, msg, kind) = match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => {
                (504, "504 Gateway Timeout: upstream timed out", "timeout")
            }
            ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
            | TLSHandshakeTimedout | SocketError | BindError => (
                502,
                "502 Bad Gateway: cannot connect to upstream",
                "connect",
            ),
            ConnectionClosed | ReadError | WriteError
                if e.esource() == &pingora_core::ErrorSource::Upstream =>
            {
                (
                    502,
                    "502 Bad Gateway: upstream closed the connection",
                    "reset",
                )
            }
            HTTPStatus(code) if *code >= 400 => {
                let c = *code;
                return (
                    Reject::new(
                        c,
                        Self::json_body("error_msg", &format!("{c} {}", reason(c))),
                    ),
                    "other",
                );
            }
            _ if e.esource() == &pingora_core::ErrorSource::Upstream => {
                (502, "502 Bad Gateway", "other")
            }
            _ if e.esource() == &pingora_core::ErrorSource::Downstream => {
                (400, "400 Bad Request", "other")
            }
            _ => (500, "500 Internal Server Error", "other"),
        };
        (Reject::new(status, Self::json_body("error_msg", msg)), kind)
    }
}

fn reason(code: u16) -> &'static str {
    http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}
