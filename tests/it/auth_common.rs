//! What the auth tests read from the echo upstream's answer (the identity headers it received)
//! and how they check an auth plugin's rejection.

use serde_json::{Value, json};

use crate::support::{Gateway, Resp, http};

/// The echo upstream's answer; panics unless the request reached it (200).
pub(crate) fn echo(resp: &Resp) -> Value {
    assert_eq!(resp.status, 200, "expected an echo answer: {}", resp.text());
    let v = resp.json();
    assert!(v["node"].is_string(), "not an echo answer: {}", resp.text());
    v
}

/// A header as the upstream received it: a single value as text, anything else (a repeated
/// header) as its JSON text, which never equals an expected single value.
pub(crate) fn up_header(v: &Value, name: &str) -> Option<String> {
    match v["headers"].get(name) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// `(X-Consumer-Username, X-Credential-Identifier, X-Consumer-Custom-ID)` as the upstream saw them.
pub(crate) type Who = (Option<String>, Option<String>, Option<String>);

pub(crate) fn who(resp: &Resp) -> Who {
    let v = echo(resp);
    (
        up_header(&v, "x-consumer-username"),
        up_header(&v, "x-credential-identifier"),
        up_header(&v, "x-consumer-custom-id"),
    )
}

pub(crate) fn ident(user: &str, cred: Option<&str>, custom: Option<&str>) -> Who {
    (
        Some(user.to_owned()),
        cred.map(str::to_owned),
        custom.map(str::to_owned),
    )
}

pub(crate) const NOBODY: Who = (None, None, None);

/// The consumer the echo upstream was told about (`X-Consumer-Username`), or a panic.
pub(crate) fn username(resp: &Resp) -> String {
    who(resp)
        .0
        .unwrap_or_else(|| panic!("no consumer: {}", resp.text()))
}

/// A rejection of an auth plugin: `status`, `Content-Type: application/json`, the exact body
/// `message` + `\n`, and the `WWW-Authenticate` challenge (or none).
pub(crate) fn assert_reject(resp: &Resp, status: u16, message: &str, challenge: Option<&str>) {
    let want = format!("{}\n", json!({ "message": message }));
    assert_eq!(
        (resp.status, resp.text()),
        (status, want),
        "status and exact body"
    );
    let ct = resp.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    assert_eq!(
        resp.header("www-authenticate"),
        challenge,
        "WWW-Authenticate of a {status} {message:?}"
    );
}

/// [`assert_reject`] of a 401 with a challenge.
pub(crate) fn assert_401(resp: &Resp, message: &str, challenge: &str) {
    assert_reject(resp, 401, message, Some(challenge));
}

pub(crate) fn get(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> Resp {
    http(gw.port(), "GET", target, headers, b"")
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
pub(crate) fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}
