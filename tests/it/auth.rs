//! Consumers, credentials and authentication (issue 4): key-auth, basic-auth, hmac-auth,
//! jwt-auth, multi-auth, AND of several plugins, the anonymous consumer, hashed and expiring
//! credentials, `$env://` secrets, identity headers, attach-consumer-label, hide_credentials,
//! a bare `key-auth:` (YAML null), and the duplicate-key config errors. Every test runs the real
//! binary against an echo upstream, whose JSON answer shows the headers and URI it received.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{KeyInit, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::Digest;

use crate::support::{Gateway, Resp, Seen, Upstream, http, tollgate_check};
use crate::support::{assert_line, check_fails};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The echo upstream's answer; panics unless the request reached it (200).
pub(crate) fn echo(resp: &Resp) -> Value {
    assert_eq!(resp.status, 200, "expected an echo answer: {}", resp.text());
    let v = resp.json();
    assert!(v["node"].is_string(), "not an echo answer: {}", resp.text());
    v
}

/// A header as the upstream received it: a single value as text, anything else (a repeated
/// header) as its JSON text, which never equals an expected single value.
fn up_header(v: &Value, name: &str) -> Option<String> {
    match v["headers"].get(name) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// `(X-Consumer-Username, X-Credential-Identifier, X-Consumer-Custom-ID)` as the upstream saw them.
type Who = (Option<String>, Option<String>, Option<String>);

fn who(resp: &Resp) -> Who {
    let v = echo(resp);
    (
        up_header(&v, "x-consumer-username"),
        up_header(&v, "x-credential-identifier"),
        up_header(&v, "x-consumer-custom-id"),
    )
}

fn ident(user: &str, cred: Option<&str>, custom: Option<&str>) -> Who {
    (
        Some(user.to_owned()),
        cred.map(str::to_owned),
        custom.map(str::to_owned),
    )
}

const NOBODY: Who = (None, None, None);

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

fn get(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> Resp {
    http(gw.port(), "GET", target, headers, b"")
}

fn basic(user_pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(user_pass))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `tollgate hash-secret <kind>` with `secret` and a trailing newline on stdin.
fn hash_secret(kind: &str, secret: &str) -> String {
    let mut args = vec!["hash-secret"];
    if !kind.is_empty() {
        args.push(kind);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "hash-secret {kind}: {stdout} {stderr}"
    );
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "the secret is echoed: {stdout} {stderr}"
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    stdout.trim_end().to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

// --- hmac-auth request signing (the APISIX 3.11+ scheme)

/// A request signed for hmac-auth: the `Authorization` value for `method target` with the
/// headers named in `signed` (space separated, as sent in `headers="..."`) taken from `sent`.
pub(crate) fn hmac_authorization(
    alg: &str,
    key_id: &str,
    secret: &str,
    signed: &str,
    method: &str,
    target: &str,
    sent: &[(&str, &str)],
) -> String {
    let mut data = format!("{key_id}\n");
    for name in signed.split(' ').filter(|n| !n.is_empty()) {
        if let Some((_, v)) = sent.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            data.push_str(&format!("{name}: {v}\n"));
        } else if name == "@request-target" {
            data.push_str(&format!("{method} {target}\n"));
        }
    }
    let sig = hmac_raw(alg, secret.as_bytes(), data.as_bytes());
    format!(
        r#"Signature keyId="{key_id}",algorithm="{alg}",headers="{signed}",signature="{}""#,
        STANDARD.encode(sig)
    )
}

fn hmac_raw(alg: &str, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    match alg {
        "hmac-sha1" => mac::<hmac::Hmac<sha1::Sha1>>(key, data),
        "hmac-sha256" => mac::<hmac::Hmac<sha2::Sha256>>(key, data),
        "hmac-sha512" => mac::<hmac::Hmac<sha2::Sha512>>(key, data),
        other => panic!("no such algorithm {other}"),
    }
}

pub(crate) fn http_date(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    httpdate::fmt_http_date(t)
}

/// Sends `method target` signed by `key_id`/`secret` over `@request-target date` plus `extra`
/// header names, with `headers` (a `Date` is added, `date_offset` seconds from now).
#[allow(clippy::too_many_arguments)]
pub(crate) fn hmac_request(
    gw: &Gateway,
    alg: &str,
    key_id: &str,
    secret: &str,
    method: &str,
    target: &str,
    date_offset: i64,
    signed: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let date = http_date(date_offset);
    let mut sent: Vec<(&str, &str)> = vec![("Date", &date)];
    sent.extend_from_slice(headers);
    let auth = hmac_authorization(alg, key_id, secret, signed, method, target, &sent);
    sent.push(("Authorization", &auth));
    http(gw.port(), method, target, &sent, body)
}

// --- jwt-auth tokens

fn jwt_hs(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

pub(crate) fn hs256(secret: &str, claims: &Value) -> String {
    jwt_hs(Algorithm::HS256, secret.as_bytes(), claims)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------------------------
// The seeds' example, end to end

#[test]
fn seed_example_fetchbot_and_johndoe_on_petstore() {
    let up = Upstream::start("petstore");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: FetchBot
    plugins:
      key-auth:
        key: bot-key
  - username: JohnDoe
    plugins:
      key-auth:
        key: john-key
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
    let challenge = Some(r#"apikey realm="key""#);
    assert_reject(
        &get(&gw, "/petstore/pets", &[]),
        401,
        "Missing API key in request",
        challenge,
    );
    assert_reject(
        &get(&gw, "/petstore/pets", &[("apikey", "wrong-key")]),
        401,
        "Invalid API key in request",
        challenge,
    );
    up.assert_untouched(
        Seen::default(),
        "rejected requests never reach the upstream",
    );

    let bot = get(&gw, "/petstore/pets/1", &[("apikey", "bot-key")]);
    assert_eq!(who(&bot), ident("FetchBot", None, None));
    assert_eq!(echo(&bot)["uri"], "/petstore/pets/1");
    let john = get(&gw, "/petstore/pets?limit=2", &[("apikey", "john-key")]);
    assert_eq!(who(&john), ident("JohnDoe", None, None));
    assert_eq!(echo(&john)["uri"], "/petstore/pets?limit=2");
    assert_eq!(up.hits(), 2);
}

// ---------------------------------------------------------------------------------------------
// key-auth

#[test]
fn key_auth_reads_header_then_query_with_apisix_messages() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: alice, plugins: {{key-auth: {{key: alice-key}}}}}}
  - {{username: bob, plugins: {{key-auth: {{key: "b+b/="}}}}}}
routes:
  - {{id: default, uri: /default, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - id: custom
    uri: /custom
    plugins: {{key-auth: {{header: X-Api-Key, query: token, realm: "my realm"}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let key = Some(r#"apikey realm="key""#);
    let alice = ident("alice", None, None);

    // Defaults: header `apikey` (any case), query `apikey` (percent-decoded).
    assert_eq!(
        who(&get(&gw, "/default", &[("apikey", "alice-key")])),
        alice
    );
    assert_eq!(
        who(&get(&gw, "/default", &[("APIKEY", "alice-key")])),
        alice
    );
    assert_eq!(who(&get(&gw, "/default?apikey=alice-key", &[])), alice);
    assert_eq!(
        who(&get(&gw, "/default?x=1&apikey=b%2Bb%2F%3D", &[])),
        ident("bob", None, None)
    );
    assert_reject(
        &get(&gw, "/default", &[]),
        401,
        "Missing API key in request",
        key,
    );
    assert_reject(
        &get(&gw, "/default?other=alice-key", &[]),
        401,
        "Missing API key in request",
        key,
    );
    // A header that is present (even empty or wrong) is the key; the query is not consulted.
    for header in ["wrong", ""] {
        assert_reject(
            &get(&gw, "/default?apikey=alice-key", &[("apikey", header)]),
            401,
            "Invalid API key in request",
            key,
        );
    }
    // A repeated or bare query argument matches no key.
    for target in [
        "/default?apikey=alice-key&apikey=alice-key",
        "/default?apikey",
    ] {
        assert_reject(
            &get(&gw, target, &[]),
            401,
            "Invalid API key in request",
            key,
        );
    }
    // Keys are case-sensitive.
    assert_reject(
        &get(&gw, "/default", &[("apikey", "ALICE-KEY")]),
        401,
        "Invalid API key in request",
        key,
    );

    // Custom header, query and realm.
    assert_eq!(
        who(&get(&gw, "/custom", &[("x-api-key", "alice-key")])),
        alice
    );
    assert_eq!(who(&get(&gw, "/custom?token=alice-key", &[])), alice);
    let custom = Some(r#"apikey realm="my realm""#);
    assert_reject(
        &get(&gw, "/custom?apikey=alice-key", &[("apikey", "alice-key")]),
        401,
        "Missing API key in request",
        custom,
    );
    assert_reject(
        &get(&gw, "/custom", &[("X-Api-Key", "nope")]),
        401,
        "Invalid API key in request",
        custom,
    );
}

#[test]
fn identity_headers_are_set_and_client_copies_removed_on_every_route() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - id: carol/credentials/c1
    plugins:
      key-auth: {{key: carol-key}}
  - username: alice
    desc: inline key
    labels: {{custom_id: alice-cid, team: a}}
    plugins:
      key-auth: {{key: alice-key}}
  - username: bob
    labels: {{custom_id: bob-cid}}
    credentials:
      - name: main
        desc: nested credential
        labels: {{custom_id: credential-label-is-not-used}}
        plugins:
          key-auth: {{key: bob-key}}
  - username: carol
routes:
  - {{id: auth, uri: /auth, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - {{id: open, uri: /open, upstream: {up}}}
#END
"#,
        up = up.yaml()
    ));
    let forged = |key: &'static str| {
        vec![
            ("apikey", key),
            ("X-Consumer-Username", "mallory"),
            ("x-credential-identifier", "mallory/credentials/x"),
            ("X-CONSUMER-CUSTOM-ID", "forged"),
        ]
    };
    // Inline plugin: no credential id; custom_id from the consumer's labels.
    assert_eq!(
        who(&get(&gw, "/auth", &forged("alice-key"))),
        ident("alice", None, Some("alice-cid"))
    );
    // Nested credential: `<username>/credentials/<name>`; custom_id from the consumer, not the
    // credential.
    assert_eq!(
        who(&get(&gw, "/auth", &forged("bob-key"))),
        ident("bob", Some("main"), Some("bob-cid"))
    );
    // Id-form credential (listed before its consumer): the id as written; no custom_id label.
    assert_eq!(
        who(&get(&gw, "/auth", &forged("carol-key"))),
        ident("carol", Some("c1"), None)
    );
    // A route without auth: every forged copy is removed.
    assert_eq!(who(&get(&gw, "/open", &forged("alice-key"))), NOBODY);
    assert_eq!(who(&get(&gw, "/open", &[])), NOBODY);
}

#[test]
fn key_auth_hide_credentials_removes_only_the_source_used() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: alice, plugins: {{key-auth: {{key: alice-key}}}}}}
routes:
  - {{id: hide, uri: /hide, plugins: {{key-auth: {{hide_credentials: true}}}}, upstream: {up}}}
  - {{id: keep, uri: /keep, plugins: {{key-auth: {{hide_credentials: false}}}}, upstream: {up}}}
  - id: custom
    uri: /custom
    plugins: {{key-auth: {{hide_credentials: true, header: X-Key, query: k}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    // From the header: the header goes, a query argument of the same name stays.
    let v = echo(&get(&gw, "/hide?apikey=other", &[("apikey", "alice-key")]));
    assert_eq!(up_header(&v, "apikey"), None);
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("alice")
    );
    assert_eq!(v["uri"], "/hide?apikey=other");
    // From the query: the argument goes, the others stay in order.
    let v = echo(&get(&gw, "/hide?a=1&apikey=alice-key&b=2", &[]));
    assert_eq!(v["uri"], "/hide?a=1&b=2");
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("alice")
    );
    let v = echo(&get(&gw, "/hide?apikey=alice-key", &[]));
    assert_eq!(v["uri"], "/hide");
    // Custom names.
    let v = echo(&get(&gw, "/custom", &[("X-Key", "alice-key")]));
    assert_eq!(up_header(&v, "x-key"), None);
    let v = echo(&get(&gw, "/custom?k=alice-key&z=9", &[]));
    assert_eq!(v["uri"], "/custom?z=9");
    // Without hide_credentials the key goes upstream as sent.
    let v = echo(&get(&gw, "/keep", &[("apikey", "alice-key")]));
    assert_eq!(up_header(&v, "apikey").as_deref(), Some("alice-key"));
    let v = echo(&get(&gw, "/keep?apikey=alice-key", &[]));
    assert_eq!(v["uri"], "/keep?apikey=alice-key");
}

#[test]
fn key_auth_anonymous_consumer_takes_failed_requests() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: alice, labels: {{custom_id: alice-cid}}, plugins: {{key-auth: {{key: alice-key}}}}}}
  - username: guest
    labels: {{custom_id: guest-cid, tier: free}}
    plugins:
      attach-consumer-label: {{headers: {{X-Tier: $tier}}}}
      consumer-restriction: {{type: route_id, blacklist: [anon-denied]}}
routes:
  - {{id: anon, uri: /anon, plugins: {{key-auth: {{anonymous_consumer: guest}}}}, upstream: {up}}}
  - {{id: anon-denied, uri: /anon-denied, plugins: {{key-auth: {{anonymous_consumer: guest}}}}, upstream: {up}}}
  - id: anon-hide
    uri: /anon-hide
    plugins: {{key-auth: {{anonymous_consumer: guest, hide_credentials: true}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    // The anonymous consumer: its username, never a credential id or custom id.
    let guest = ident("guest", None, None);
    assert_eq!(who(&get(&gw, "/anon", &[])), guest);
    assert_eq!(who(&get(&gw, "/anon", &[("apikey", "wrong")])), guest);
    assert_eq!(
        who(&get(
            &gw,
            "/anon",
            &[
                ("x-consumer-custom-id", "forged"),
                ("x-consumer-username", "x")
            ]
        )),
        guest
    );
    assert_eq!(
        who(&get(&gw, "/anon", &[("apikey", "alice-key")])),
        ident("alice", None, Some("alice-cid"))
    );
    // On the fallback with hide_credentials, both the header and the query argument go.
    let v = echo(&get(
        &gw,
        "/anon-hide?x=1&apikey=wrong-q",
        &[("apikey", "wrong-h")],
    ));
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("guest")
    );
    assert_eq!(up_header(&v, "apikey"), None);
    assert_eq!(v["uri"], "/anon-hide?x=1");

    // The anonymous consumer's own plugins apply to it.
    let v = echo(&get(&gw, "/anon", &[("X-Tier", "forged")]));
    assert_eq!(up_header(&v, "x-tier").as_deref(), Some("free"));
    let v = echo(&get(
        &gw,
        "/anon",
        &[("apikey", "alice-key"), ("X-Tier", "forged")],
    ));
    assert_eq!(up_header(&v, "x-tier"), None, "alice has no tier label");
    let resp = get(&gw, "/anon-denied", &[]);
    assert_eq!(
        (resp.status, resp.text()),
        (
            403,
            "{\"message\":\"The route_id is forbidden.\"}\n".to_owned()
        )
    );
    assert_eq!(
        who(&get(&gw, "/anon-denied", &[("apikey", "alice-key")])),
        ident("alice", None, Some("alice-cid"))
    );

    // A name that does not exist is a config error.
    let bad = "consumers:\n  - {username: alice, plugins: {key-auth: {key: k}}}\nroutes:\n  - {id: r, uri: /x, plugins: {key-auth: {anonymous_consumer: nobody}}, upstream: {nodes: {\"127.0.0.1:9\": 1}}}\n";
    let lines = check_fails(&[("resources.yaml", bad)]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.key-auth.anonymous_consumer",
        &["nobody"],
    );
}

#[test]
fn bare_null_plugin_turns_each_auth_plugin_on_with_defaults() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: alice
    plugins:
      key-auth:
        key: alice-key
      basic-auth:
        username: alice
        password: pw
services:
  - id: s
    plugins:
      basic-auth:
    upstream: {up}
routes:
  - id: key
    uri: /key
    plugins:
      key-auth:
    upstream: {up}
  - id: basic
    uri: /basic
    plugins:
      basic-auth:
    upstream: {up}
  - id: jwt
    uri: /jwt
    plugins:
      jwt-auth:
    upstream: {up}
  - id: hmac
    uri: /hmac
    plugins:
      hmac-auth:
    upstream: {up}
  - id: multi
    uri: /multi
    plugins:
      multi-auth:
        auth_plugins:
          - key-auth:
          - basic-auth:
    upstream: {up}
  - id: in-service
    uri: /svc
    service_id: s
#END
"#,
        up = up.yaml()
    ));
    assert_reject(
        &get(&gw, "/key", &[]),
        401,
        "Missing API key in request",
        Some(r#"apikey realm="key""#),
    );
    assert_reject(
        &get(&gw, "/basic", &[]),
        401,
        "Missing authorization in request",
        Some(r#"Basic realm="basic""#),
    );
    assert_reject(
        &get(&gw, "/jwt", &[]),
        401,
        "Missing JWT token in request",
        Some(r#"Bearer realm="jwt""#),
    );
    assert_reject(
        &get(&gw, "/hmac", &[]),
        401,
        "client request can't be validated: missing Authorization header",
        Some(r#"hmac realm="hmac""#),
    );
    assert_reject(
        &get(&gw, "/multi", &[]),
        401,
        "Authorization Failed",
        Some(r#"Basic realm="basic""#),
    );
    assert_reject(
        &get(&gw, "/svc", &[]),
        401,
        "Missing authorization in request",
        Some(r#"Basic realm="basic""#),
    );
    up.assert_untouched(Seen::default(), "rejected requests");
    // And they authenticate with their defaults.
    let alice = ident("alice", None, None);
    assert_eq!(who(&get(&gw, "/key", &[("apikey", "alice-key")])), alice);
    let auth = basic("alice:pw");
    assert_eq!(who(&get(&gw, "/basic", &[("Authorization", &auth)])), alice);
    assert_eq!(who(&get(&gw, "/svc", &[("Authorization", &auth)])), alice);
    assert_eq!(who(&get(&gw, "/multi?apikey=alice-key", &[])), alice);
    assert_eq!(who(&get(&gw, "/multi", &[("Authorization", &auth)])), alice);
}

#[test]
fn hashed_keys_and_expiring_credentials() {
    let hash = hash_secret("key", "s3cret");
    assert_eq!(
        hash,
        format!("sha256:{}", hex(&sha2::Sha256::digest(b"s3cret"))),
        "hash-secret key prints sha256:<hex> of the secret without its newline"
    );
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: rot
    labels: {{custom_id: rot-cid}}
    credentials:
      - name: old
        expires_at: "2020-01-01T00:00:00Z"
        plugins: {{key-auth: {{key: old-key}}}}
      - name: new
        expires_at: "2999-01-01T00:00:00+02:00"
        plugins: {{key-auth: {{key_hash: {hash}}}}}
      - name: forever
        plugins: {{key-auth: {{key: forever-key}}}}
  - id: rot/credentials/gone
    expires_at: "2021-06-01T12:00:00+01:00"
    plugins: {{key-auth: {{key: gone-key}}}}
routes:
  - {{id: r, uri: /r, plugins: {{key-auth: {{}}}}, upstream: {up}}}
#END
"#,
        hash = q(&hash),
        up = up.yaml()
    ));
    let key = Some(r#"apikey realm="key""#);
    let mark = gw.log_mark();
    // Expired: the same answer as a wrong key.
    for expired in ["old-key", "gone-key"] {
        assert_reject(
            &get(&gw, "/r", &[("apikey", expired)]),
            401,
            "Invalid API key in request",
            key,
        );
    }
    gw.wait_log(mark, &["expired"]);
    // The hashed key authenticates by its plain value; the hash itself is not a key.
    assert_eq!(
        who(&get(&gw, "/r", &[("apikey", "s3cret")])),
        ident("rot", Some("new"), Some("rot-cid"))
    );
    assert_reject(
        &get(&gw, "/r", &[("apikey", &hash)]),
        401,
        "Invalid API key in request",
        key,
    );
    assert_eq!(
        who(&get(&gw, "/r?apikey=forever-key", &[])),
        ident("rot", Some("forever"), Some("rot-cid"))
    );

    // Bad forms are config errors.
    let bad = |plugin: &str, expires: &str| {
        format!(
            "consumers:\n  - username: u\n    credentials:\n      - {{name: c, {expires}plugins: {{key-auth: {plugin}}}}}\n"
        )
    };
    let lines = check_fails(&[("resources.yaml", &bad("{key_hash: \"md5:abc\"}", ""))]);
    assert_line(
        &lines,
        "resources.yaml: consumers[0].credentials[0].plugins.key-auth.key_hash",
        &[],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        &bad("{key: k}", "expires_at: \"next tuesday\", "),
    )]);
    assert_line(
        &lines,
        "resources.yaml: consumers[0].credentials[0].expires_at",
        &[],
    );
}

#[test]
fn secrets_from_env_are_read_at_load_time() {
    let up = Upstream::start("up");
    let resources = format!(
        r#"consumers:
  - username: envy
    plugins:
      key-auth: {{key: "$env://TG_IT_AUTH_KEY"}}
      basic-auth: {{username: envy, password: "$env://TG_IT_AUTH_PW"}}
      jwt-auth: {{key: envy-jwt, secret: "$env://TG_IT_AUTH_JWT"}}
routes:
  - {{id: key, uri: /key, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - {{id: basic, uri: /basic, plugins: {{basic-auth: {{}}}}, upstream: {up}}}
  - {{id: jwt, uri: /jwt, plugins: {{jwt-auth: {{}}}}, upstream: {up}}}
#END
"#,
        up = up.yaml()
    );
    let gw = Gateway::builder()
        .env("TG_IT_AUTH_KEY", "key-from-env")
        .env("TG_IT_AUTH_PW", "pw-from-env")
        .env("TG_IT_AUTH_JWT", "jwt-secret-from-env")
        .start(&resources);
    let envy = ident("envy", None, None);
    assert_eq!(who(&get(&gw, "/key", &[("apikey", "key-from-env")])), envy);
    assert_reject(
        &get(&gw, "/key", &[("apikey", "$env://TG_IT_AUTH_KEY")]),
        401,
        "Invalid API key in request",
        Some(r#"apikey realm="key""#),
    );
    let auth = basic("envy:pw-from-env");
    assert_eq!(who(&get(&gw, "/basic", &[("Authorization", &auth)])), envy);
    let token = hs256("jwt-secret-from-env", &json!({"key": "envy-jwt"}));
    let auth = bearer(&token);
    assert_eq!(who(&get(&gw, "/jwt", &[("Authorization", &auth)])), envy);

    // A missing variable is a config error naming the variable.
    let unset = resources.replace("TG_IT_AUTH_KEY", "TG_IT_AUTH_SURELY_UNSET_7");
    let lines = check_fails(&[("resources.yaml", &unset)]);
    assert_line(
        &lines,
        "resources.yaml: consumers[0].plugins.key-auth.key",
        &["TG_IT_AUTH_SURELY_UNSET_7"],
    );
}

// ---------------------------------------------------------------------------------------------
// basic-auth

#[test]
fn basic_auth_parses_like_apisix_and_answers_its_messages() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: alice
    labels: {{custom_id: a-1}}
    plugins: {{basic-auth: {{username: alice, password: alice-pw}}}}
  - username: bob
    credentials:
      - {{name: b1, plugins: {{basic-auth: {{username: bob-login, password: "p:a:ss"}}}}}}
routes:
  - {{id: basic, uri: /basic, plugins: {{basic-auth: {{}}}}, upstream: {up}}}
  - {{id: hide, uri: /hide, plugins: {{basic-auth: {{hide_credentials: true}}}}, upstream: {up}}}
  - {{id: realm, uri: /realm, plugins: {{basic-auth: {{realm: staff}}}}, upstream: {up}}}
#END
"#,
        up = up.yaml()
    ));
    let ch = Some(r#"Basic realm="basic""#);
    let send =
        |target: &str, authorization: &str| get(&gw, target, &[("Authorization", authorization)]);
    assert_reject(
        &get(&gw, "/basic", &[]),
        401,
        "Missing authorization in request",
        ch,
    );
    // Malformed: not base64, no colon, another scheme, no blob.
    let nocolon = basic("alicealice-pw");
    for bad in ["Basic !!!not-base64!!!", &nocolon, "Bearer abc", "Basic "] {
        assert_reject(
            &send("/basic", bad),
            401,
            "Invalid authorization in request",
            ch,
        );
    }
    // Unknown user and wrong password: one answer.
    for bad in ["mallory:alice-pw", "alice:wrong", "alice:", "bob-login:p"] {
        assert_reject(
            &send("/basic", &basic(bad)),
            401,
            "Invalid user authorization",
            ch,
        );
    }
    up.assert_untouched(Seen::default(), "rejected requests");

    let v = echo(&send("/basic", &basic("alice:alice-pw")));
    assert_eq!(
        (
            up_header(&v, "x-consumer-username"),
            up_header(&v, "x-credential-identifier"),
            up_header(&v, "x-consumer-custom-id")
        ),
        ident("alice", None, Some("a-1"))
    );
    assert_eq!(
        up_header(&v, "authorization"),
        Some(basic("alice:alice-pw")),
        "without hide_credentials the header goes upstream"
    );
    // The scheme is case-insensitive; a trailing newline in the encoded text is trimmed.
    let lower = format!("bAsIc {}", STANDARD.encode("alice:alice-pw"));
    assert_eq!(
        who(&send("/basic", &lower)),
        ident("alice", None, Some("a-1"))
    );
    assert_eq!(
        who(&send("/basic", &basic("alice:alice-pw\n"))),
        ident("alice", None, Some("a-1"))
    );
    // The password is everything after the first colon (CONTRACT).
    assert_eq!(
        who(&send("/basic", &basic("bob-login:p:a:ss"))),
        ident("bob", Some("b1"), None)
    );

    let v = echo(&send("/hide", &basic("alice:alice-pw")));
    assert_eq!(up_header(&v, "authorization"), None);
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("alice")
    );

    assert_reject(
        &get(&gw, "/realm", &[]),
        401,
        "Missing authorization in request",
        Some(r#"Basic realm="staff""#),
    );
}

#[test]
fn basic_auth_password_hashes_expiry_and_anonymous_consumer() {
    let argon = hash_secret("password", "hunter2");
    assert!(argon.starts_with("$argon2id$"), "PHC argon2id: {argon}");
    let default = hash_secret("", "hunter2");
    assert!(
        default.starts_with("$argon2id$") && default != argon,
        "plain `hash-secret` is `password`, salted: {default}"
    );
    let bcrypt_hash = bcrypt::hash("bcrypt-pw", 4).unwrap();
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: hashed
    credentials:
      - name: argon
        expires_at: "2999-12-31T23:59:59Z"
        plugins: {{basic-auth: {{username: hashed, password_hash: {argon}}}}}
      - name: bcrypt
        plugins: {{basic-auth: {{username: hashed-b, password_hash: {bcrypt}}}}}
  - username: expired
    credentials:
      - name: old
        expires_at: "2020-02-02T02:02:02Z"
        plugins: {{basic-auth: {{username: expired, password: old-pw}}}}
  - {{username: guest, labels: {{custom_id: guest-cid}}}}
routes:
  - {{id: b, uri: /b, plugins: {{basic-auth: {{}}}}, upstream: {up}}}
  - id: anon
    uri: /anon
    plugins: {{basic-auth: {{anonymous_consumer: guest, hide_credentials: true}}}}
    upstream: {up}
#END
"#,
        argon = q(&argon),
        bcrypt = q(&bcrypt_hash),
        up = up.yaml()
    ));
    let ch = Some(r#"Basic realm="basic""#);
    let send =
        |target: &str, user_pass: &str| get(&gw, target, &[("Authorization", &basic(user_pass))]);
    let argon_id = ident("hashed", Some("argon"), None);
    // Twice: the second one may come from the cache of recent successes.
    assert_eq!(who(&send("/b", "hashed:hunter2")), argon_id);
    assert_eq!(who(&send("/b", "hashed:hunter2")), argon_id);
    // A cached success never admits another password.
    assert_reject(
        &send("/b", "hashed:hunter3"),
        401,
        "Invalid user authorization",
        ch,
    );
    assert_eq!(who(&send("/b", "hashed:hunter2")), argon_id);
    assert_eq!(
        who(&send("/b", "hashed-b:bcrypt-pw")),
        ident("hashed", Some("bcrypt"), None)
    );
    assert_reject(
        &send("/b", "hashed-b:nope"),
        401,
        "Invalid user authorization",
        ch,
    );
    assert_reject(
        &send("/b", &format!("hashed:{argon}")),
        401,
        "Invalid user authorization",
        ch,
    );
    // Expired: the answer of a wrong password.
    assert_reject(
        &send("/b", "expired:old-pw"),
        401,
        "Invalid user authorization",
        ch,
    );

    // The anonymous consumer, with hide_credentials removing Authorization on the fallback too.
    for creds in ["expired:old-pw", "nobody:x"] {
        let v = echo(&send("/anon", creds));
        assert_eq!(
            up_header(&v, "x-consumer-username").as_deref(),
            Some("guest")
        );
        assert_eq!(up_header(&v, "x-consumer-custom-id"), None);
        assert_eq!(up_header(&v, "authorization"), None);
    }
    assert_eq!(who(&get(&gw, "/anon", &[])), ident("guest", None, None));
    let v = echo(&send("/anon", "hashed:hunter2"));
    assert_eq!(
        up_header(&v, "x-credential-identifier").as_deref(),
        Some("argon")
    );
    assert_eq!(up_header(&v, "authorization"), None);

    // Not a PHC string: a config error.
    let bad = "consumers:\n  - {username: u, plugins: {basic-auth: {username: u, password_hash: \"plain\"}}}\n";
    let lines = check_fails(&[("resources.yaml", bad)]);
    assert_line(
        &lines,
        "resources.yaml: consumers[0].plugins.basic-auth.password_hash",
        &[],
    );
}

// ---------------------------------------------------------------------------------------------
// hmac-auth

pub(crate) const HMAC_CONSUMERS: &str = r#"consumers:
  - username: hal
    labels: {custom_id: hal-1}
    plugins: {hmac-auth: {key_id: hal-key, secret_key: hal-secret}}
  - username: ivy
    credentials:
      - {name: sig, plugins: {hmac-auth: {key_id: ivy-key, secret_key: ivy-secret}}}
      - {name: old, expires_at: "2020-01-01T00:00:00Z", plugins: {hmac-auth: {key_id: ivy-old, secret_key: old-secret}}}
  - username: guest
"#;

#[test]
fn hmac_auth_verifies_signatures_and_rejects_bad_ones() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        "{HMAC_CONSUMERS}routes:\n  - {{id: h, uri: /hmac, plugins: {{hmac-auth: {{}}}}, upstream: {}}}\n#END\n",
        up.yaml()
    ));
    let rt = "@request-target date";
    let ch = Some(r#"hmac realm="hmac""#);
    let generic = "client request can't be validated";

    let resp = hmac_request(
        &gw,
        "hmac-sha256",
        "hal-key",
        "hal-secret",
        "GET",
        "/hmac?x=1",
        0,
        rt,
        &[],
        b"",
    );
    let v = echo(&resp);
    assert_eq!(
        who(&resp),
        ident("hal", None, Some("hal-1")),
        "inline hmac-auth"
    );
    assert!(up_header(&v, "authorization").is_some(), "kept by default");
    assert!(up_header(&v, "date").is_some());
    for alg in ["hmac-sha1", "hmac-sha256", "hmac-sha512"] {
        let resp = hmac_request(
            &gw,
            alg,
            "ivy-key",
            "ivy-secret",
            "POST",
            "/hmac",
            0,
            rt,
            &[],
            b"{}",
        );
        assert_eq!(who(&resp), ident("ivy", Some("sig"), None), "{alg}");
    }
    // Header order is the client's; an extra signed header; a date 4 minutes old (skew 300).
    let resp = hmac_request(
        &gw,
        "hmac-sha256",
        "hal-key",
        "hal-secret",
        "DELETE",
        "/hmac",
        -240,
        "date x-custom-a @request-target",
        &[("X-Custom-A", "abc")],
        b"",
    );
    assert_eq!(who(&resp), ident("hal", None, Some("hal-1")));
    assert_eq!(up.hits(), 5);
    let good_only = up.seen();

    // Missing header, wrong scheme prefix: their own messages.
    assert_reject(
        &get(&gw, "/hmac", &[]),
        401,
        "client request can't be validated: missing Authorization header",
        ch,
    );
    assert_reject(
        &get(&gw, "/hmac", &[("Authorization", &basic("a:b"))]),
        401,
        "client request can't be validated: Authorization header does not start with 'Signature'",
        ch,
    );
    // Everything else: the generic message.
    let date = http_date(0);
    for auth in [
        r#"Signature algorithm="hmac-sha256",headers="date",signature="AAAA""#.to_owned(),
        r#"Signature keyId="hal-key",headers="date",signature="AAAA""#.to_owned(),
        hmac_authorization(
            "hmac-sha256",
            "nobody",
            "hal-secret",
            rt,
            "GET",
            "/hmac",
            &[("Date", &date)],
        ),
        hmac_authorization(
            "hmac-sha256",
            "hal-key",
            "wrong-secret",
            rt,
            "GET",
            "/hmac",
            &[("Date", &date)],
        ),
        // An algorithm hmac-auth does not know.
        hmac_authorization(
            "hmac-sha256",
            "hal-key",
            "hal-secret",
            rt,
            "GET",
            "/hmac",
            &[("Date", &date)],
        )
        .replace(r#"algorithm="hmac-sha256""#, r#"algorithm="hmac-md5""#),
        // Signed for another target.
        hmac_authorization(
            "hmac-sha256",
            "hal-key",
            "hal-secret",
            rt,
            "GET",
            "/hmac?x=2",
            &[("Date", &date)],
        ),
        // Signed for another method.
        hmac_authorization(
            "hmac-sha256",
            "hal-key",
            "hal-secret",
            rt,
            "POST",
            "/hmac",
            &[("Date", &date)],
        ),
        // `date` is a required signed header (signed_headers defaults to ["date"]).
        hmac_authorization(
            "hmac-sha256",
            "hal-key",
            "hal-secret",
            "@request-target",
            "GET",
            "/hmac",
            &[("Date", &date)],
        ),
        // An expired credential.
        hmac_authorization(
            "hmac-sha256",
            "ivy-old",
            "old-secret",
            rt,
            "GET",
            "/hmac",
            &[("Date", &date)],
        ),
    ] {
        let resp = get(&gw, "/hmac", &[("Date", &date), ("Authorization", &auth)]);
        assert_reject(&resp, 401, generic, ch);
    }
    // Clock skew, past and future, and no Date at all.
    for offset in [-3600, 3600] {
        let resp = hmac_request(
            &gw,
            "hmac-sha256",
            "hal-key",
            "hal-secret",
            "GET",
            "/hmac",
            offset,
            rt,
            &[],
            b"",
        );
        assert_reject(&resp, 401, generic, ch);
    }
    let auth = hmac_authorization(
        "hmac-sha256",
        "hal-key",
        "hal-secret",
        "@request-target",
        "GET",
        "/hmac",
        &[],
    );
    assert_reject(
        &get(&gw, "/hmac", &[("Authorization", &auth)]),
        401,
        generic,
        ch,
    );
    // A signature that is not base64.
    let auth =
        r#"Signature keyId="hal-key",algorithm="hmac-sha256",headers="date",signature="!!!""#
            .to_string();
    assert_reject(
        &get(&gw, "/hmac", &[("Date", &date), ("Authorization", &auth)]),
        401,
        generic,
        ch,
    );
    up.assert_untouched(good_only, "only the good requests reached the upstream");
}

#[test]
fn hmac_auth_route_options_hide_and_anonymous() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"{HMAC_CONSUMERS}routes:
  - id: strict
    uri: /strict
    plugins:
      hmac-auth:
        allowed_algorithms: [hmac-sha256]
        signed_headers: [date, x-custom-a]
        clock_skew: 60
        realm: sig
    upstream: {up}
  - {{id: hide, uri: /hide, plugins: {{hmac-auth: {{hide_credentials: true}}}}, upstream: {up}}}
  - {{id: anon, uri: /anon, plugins: {{hmac-auth: {{anonymous_consumer: guest}}}}, upstream: {up}}}
  - {{id: files, uri: "/files/*", plugins: {{hmac-auth: {{}}}}, upstream: {up}}}
#END
"#,
        up = up.yaml()
    ));
    let ch = Some(r#"hmac realm="sig""#);
    let generic = "client request can't be validated";
    let custom = [("X-Custom-A", "v")];
    let all = "@request-target date x-custom-a";
    let strict = |alg: &str, offset: i64, signed: &str| {
        hmac_request(
            &gw,
            alg,
            "hal-key",
            "hal-secret",
            "GET",
            "/strict",
            offset,
            signed,
            &custom,
            b"",
        )
    };
    assert_eq!(
        who(&strict("hmac-sha256", -30, all)),
        ident("hal", None, Some("hal-1"))
    );
    // An algorithm outside allowed_algorithms, correctly signed.
    assert_reject(&strict("hmac-sha512", 0, all), 401, generic, ch);
    assert_reject(&strict("hmac-sha1", 0, all), 401, generic, ch);
    // A required header sent but not signed.
    assert_reject(
        &strict("hmac-sha256", 0, "@request-target date"),
        401,
        generic,
        ch,
    );
    // clock_skew 60: two minutes is too old.
    assert_reject(&strict("hmac-sha256", -120, all), 401, generic, ch);

    let hide = hmac_request(
        &gw,
        "hmac-sha256",
        "ivy-key",
        "ivy-secret",
        "GET",
        "/hide",
        0,
        "@request-target date",
        &[],
        b"",
    );
    let v = echo(&hide);
    assert_eq!(up_header(&v, "authorization"), None);
    assert!(up_header(&v, "date").is_some(), "Date stays");
    assert_eq!(
        up_header(&v, "x-credential-identifier").as_deref(),
        Some("sig")
    );

    let guest = ident("guest", None, None);
    assert_eq!(who(&get(&gw, "/anon", &[])), guest);
    let bad = hmac_request(
        &gw,
        "hmac-sha256",
        "hal-key",
        "wrong",
        "GET",
        "/anon",
        0,
        "@request-target date",
        &[],
        b"",
    );
    assert_eq!(who(&bad), guest);
    let good = hmac_request(
        &gw,
        "hmac-sha256",
        "hal-key",
        "hal-secret",
        "GET",
        "/anon",
        0,
        "@request-target date",
        &[],
        b"",
    );
    assert_eq!(who(&good), ident("hal", None, Some("hal-1")));

    // @request-target is the normalised, decoded path plus the raw query (APISIX's $uri).
    let date = http_date(0);
    let sent = "/files/./a%20b?x=%20";
    let signed_as = |target: &str| {
        hmac_authorization(
            "hmac-sha256",
            "hal-key",
            "hal-secret",
            "@request-target date",
            "GET",
            target,
            &[("Date", &date)],
        )
    };
    let ok = get(
        &gw,
        sent,
        &[
            ("Date", &date),
            ("Authorization", &signed_as("/files/a b?x=%20")),
        ],
    );
    assert_eq!(who(&ok), ident("hal", None, Some("hal-1")));
    assert_eq!(echo(&ok)["uri"], "/files/a%20b?x=%20");
    let raw = get(
        &gw,
        sent,
        &[("Date", &date), ("Authorization", &signed_as(sent))],
    );
    assert_reject(
        &raw,
        401,
        "client request can't be validated",
        Some(r#"hmac realm="hmac""#),
    );
}

/// A chunked body: one chunk per part, then the last chunk.
pub(crate) fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn hmac_auth_validate_request_body_holds_the_body_until_the_digest_matches() {
    hmac_validate_request_body(false);
}

/// As above, with the upstream watched byte by byte: a rejected request sends it nothing, not
/// even its head (issue 10, point 3; issue 17, point 4).
#[test]
fn hmac_auth_validate_request_body_sends_nothing_upstream_before_the_digest_matches() {
    hmac_validate_request_body(true);
}

/// `strict`: "not reached" means no connection and no byte; otherwise no complete request.
fn hmac_validate_request_body(strict: bool) {
    let up = Upstream::start("up");
    let untouched = |before: Seen, what: &str| {
        if strict {
            up.assert_untouched(before, what);
        } else {
            assert_eq!(up.hits(), before.hits, "{what}");
        }
    };
    let gw = Gateway::start(&format!(
        r#"{HMAC_CONSUMERS}routes:
  - id: body
    uri: /body
    plugins: {{hmac-auth: {{validate_request_body: true, max_req_body_size: 64}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let ch = Some(r#"hmac realm="hmac""#);
    let generic = "client request can't be validated";
    let digest = |body: &[u8]| format!("SHA-256={}", STANDARD.encode(sha2::Sha256::digest(body)));
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
    let body: &[u8] = br#"{"order":42,"item":"lamp"}"#;

    let ok = post(body, &[("Digest", &digest(body))]);
    assert_eq!(who(&ok), ident("hal", None, Some("hal-1")));
    assert_eq!(echo(&ok)["body"], String::from_utf8_lossy(body).as_ref());
    assert_eq!(up.hits(), 1);
    let before = up.seen();

    // A digest of another body, or none: 401, and the upstream never sees the request (not
    // even its head: no connection, no byte).
    let other = digest(b"something else");
    assert_reject(&post(body, &[("Digest", &other)]), 401, generic, ch);
    assert_reject(&post(body, &[]), 401, generic, ch);
    assert_reject(
        &post(body, &[("Digest", "SHA-256=not base64!")]),
        401,
        generic,
        ch,
    );
    untouched(before, "no rejected body reached the upstream");

    // Chunked bodies are checked the same way.
    let te = ("Transfer-Encoding", "chunked");
    let parts: [&[u8]; 2] = [&body[..10], &body[10..]];
    let ok = post(&chunked(&parts), &[te, ("Digest", &digest(body))]);
    assert_eq!(echo(&ok)["body"], String::from_utf8_lossy(body).as_ref());
    assert_eq!(up.hits(), 2);
    let before = up.seen();
    assert_reject(
        &post(&chunked(&parts), &[te, ("Digest", &other)]),
        401,
        generic,
        ch,
    );
    untouched(before, "a chunked body with a bad digest");

    // Over max_req_body_size: 413 with the APISIX message and no challenge.
    let big = [b'x'; 100];
    assert_reject(
        &post(&big, &[("Digest", &digest(&big))]),
        413,
        "request size 100 is greater than the maximum size 64 allowed",
        None,
    );
    let resp = post(
        &chunked(&[&big[..50], &big[50..]]),
        &[te, ("Digest", &digest(&big))],
    );
    assert_eq!(resp.status, 413, "chunked over the limit: {}", resp.text());
    assert!(
        resp.json()["message"].is_string(),
        "JSON body: {}",
        resp.text()
    );
    untouched(before, "no oversized body reached the upstream");
}

// ---------------------------------------------------------------------------------------------
// jwt-auth

/// Consumers for the jwt tests; `{es_pub}` is an ES256 public key (PEM, as a YAML string).
fn jwt_resources(es_pub: &str, up: &Upstream) -> String {
    format!(
        r#"consumers:
  - username: jay
    labels: {{custom_id: jay-1}}
    plugins: {{jwt-auth: {{key: jay-key, secret: jay-secret}}}}
  - username: kim
    credentials:
      - name: es
        plugins: {{jwt-auth: {{key: kim-es, algorithm: ES256, public_key: {es_pub}}}}}
      - name: hs512
        plugins: {{jwt-auth: {{key: kim-hs, algorithm: HS512, secret: {b64}, base64_secret: true}}}}
  - id: kim/credentials/old
    expires_at: "2020-01-01T00:00:00Z"
    plugins: {{jwt-auth: {{key: kim-old, secret: old-secret}}}}
  - username: lee
    plugins: {{jwt-auth: {{key: lee-key, secret: lee-secret, lifetime_grace_period: 60}}}}
  - username: guest
routes:
  - {{id: jwt, uri: /jwt, plugins: {{jwt-auth: {{}}}}, upstream: {up}}}
  - {{id: hide, uri: /hide, plugins: {{jwt-auth: {{hide_credentials: true}}}}, upstream: {up}}}
  - id: custom
    uri: /custom
    plugins: {{jwt-auth: {{header: X-Token, query: token, cookie: tok, key_claim_name: iss, realm: api}}}}
    upstream: {up}
  - {{id: claims, uri: /claims, plugins: {{jwt-auth: {{claims_to_verify: [exp]}}}}, upstream: {up}}}
  - {{id: anon, uri: /anon, plugins: {{jwt-auth: {{anonymous_consumer: guest}}}}, upstream: {up}}}
  - id: anon-hide
    uri: /anon-hide
    plugins: {{jwt-auth: {{anonymous_consumer: guest, hide_credentials: true}}}}
    upstream: {up}
#END
"#,
        b64 = q(&STANDARD.encode(KIM_HS512_SECRET)),
        up = up.yaml()
    )
}

const KIM_HS512_SECRET: &[u8] = b"\x00kim\xffsecret bytes";

/// An ES256 key pair: (private key PEM for signing, public key PEM for the consumer).
fn es256_pair() -> (EncodingKey, String) {
    let pair = rcgen::KeyPair::generate().unwrap();
    let enc = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    (enc, pair.public_key_pem())
}

#[test]
fn jwt_auth_token_sources_and_algorithms() {
    let up = Upstream::start("up");
    let (es_key, es_pub) = es256_pair();
    let gw = Gateway::start(&jwt_resources(&q(&es_pub), &up));
    let jay = ident("jay", None, Some("jay-1"));
    let token = hs256(
        "jay-secret",
        &json!({"key": "jay-key", "exp": now_secs() + 600}),
    );

    // Header with or without `Bearer `, query, cookie.
    for auth in [bearer(&token), token.clone(), format!("bearer {token}")] {
        assert_eq!(who(&get(&gw, "/jwt", &[("Authorization", &auth)])), jay);
    }
    assert_eq!(who(&get(&gw, &format!("/jwt?jwt={token}"), &[])), jay);
    let cookie = format!("a=1; jwt={token}; b=2");
    assert_eq!(who(&get(&gw, "/jwt", &[("Cookie", &cookie)])), jay);
    // The first source present is the token, even if it is garbage.
    assert_reject(
        &get(
            &gw,
            &format!("/jwt?jwt={token}"),
            &[("Authorization", "Bearer garbage")],
        ),
        401,
        "JWT token invalid",
        Some(r#"Bearer realm="jwt""#),
    );

    // ES256 with a generated key pair; HS512 with a base64 secret.
    let es = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &json!({"key": "kim-es"}),
        &es_key,
    )
    .unwrap();
    assert_eq!(
        who(&get(&gw, "/jwt", &[("Authorization", &bearer(&es))])),
        ident("kim", Some("es"), None)
    );
    let hs512 = jwt_hs(
        Algorithm::HS512,
        KIM_HS512_SECRET,
        &json!({"key": "kim-hs", "nbf": now_secs() - 10}),
    );
    assert_eq!(
        who(&get(&gw, "/jwt", &[("Authorization", &hs512)])),
        ident("kim", Some("hs512"), None)
    );

    // Custom header, query, cookie, key claim and realm.
    let iss = hs256("jay-secret", &json!({"iss": "jay-key"}));
    assert_eq!(
        who(&get(&gw, "/custom", &[("X-Token", &bearer(&iss))])),
        jay
    );
    assert_eq!(who(&get(&gw, &format!("/custom?token={iss}"), &[])), jay);
    let cookie = format!("tok={iss}");
    assert_eq!(who(&get(&gw, "/custom", &[("Cookie", &cookie)])), jay);
    let api = Some(r#"Bearer realm="api""#);
    assert_reject(
        &get(&gw, "/custom", &[("Authorization", &bearer(&iss))]),
        401,
        "Missing JWT token in request",
        api,
    );
    // With key_claim_name iss, a token carrying only `key` has no user key.
    assert_reject(
        &get(&gw, "/custom", &[("X-Token", &token)]),
        401,
        "missing user key in JWT token",
        api,
    );
}

#[test]
fn jwt_auth_rejects_bad_tokens() {
    let up = Upstream::start("up");
    let (_, es_pub) = es256_pair();
    let gw = Gateway::start(&jwt_resources(&q(&es_pub), &up));
    let ch = Some(r#"Bearer realm="jwt""#);
    let now = now_secs();
    let send = |token: &str| get(&gw, "/jwt", &[("Authorization", &bearer(token))]);

    assert_reject(
        &get(&gw, "/jwt", &[]),
        401,
        "Missing JWT token in request",
        ch,
    );
    for garbage in ["garbage", "a.b", "not.a.jwt", "x.y.z.w"] {
        assert_reject(&send(garbage), 401, "JWT token invalid", ch);
    }
    // `BEARER ` is not a recognised prefix: the whole value is the token.
    let good = hs256("jay-secret", &json!({"key": "jay-key"}));
    assert_reject(
        &get(&gw, "/jwt", &[("Authorization", &format!("BEARER {good}"))]),
        401,
        "JWT token invalid",
        ch,
    );
    assert_reject(
        &send(&hs256("jay-secret", &json!({"sub": "jay"}))),
        401,
        "missing user key in JWT token",
        ch,
    );
    assert_reject(
        &send(&hs256("jay-secret", &json!({"key": "nobody"}))),
        401,
        "Invalid user key in JWT token",
        ch,
    );
    let verify = "failed to verify jwt";
    // Wrong signature.
    assert_reject(
        &send(&hs256("not-jays-secret", &json!({"key": "jay-key"}))),
        401,
        verify,
        ch,
    );
    // A tampered payload under a valid signature.
    let other_payload = URL_SAFE_NO_PAD.encode(br#"{"key":"lee-key"}"#);
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = &other_payload;
    assert_reject(&send(&parts.join(".")), 401, verify, ch);
    // An algorithm other than the credential's: HS256 signed with the ES256 public key.
    let confused = jwt_hs(
        Algorithm::HS256,
        es_pub.as_bytes(),
        &json!({"key": "kim-es"}),
    );
    assert_reject(&send(&confused), 401, verify, ch);
    // HS512 for an HS256 credential.
    let hs512 = jwt_hs(Algorithm::HS512, b"jay-secret", &json!({"key": "jay-key"}));
    assert_reject(&send(&hs512), 401, verify, ch);
    // Expired, not yet valid; claims must be numbers.
    for claims in [
        json!({"key": "jay-key", "exp": now - 100}),
        json!({"key": "jay-key", "nbf": now + 100}),
        json!({"key": "jay-key", "exp": now + 600, "nbf": now + 100}),
        json!({"key": "jay-key", "exp": "tomorrow"}),
    ] {
        assert_reject(&send(&hs256("jay-secret", &claims)), 401, verify, ch);
    }
    // An expired credential: the answer of a wrong secret (issue 4).
    assert_reject(
        &send(&hs256("old-secret", &json!({"key": "kim-old"}))),
        401,
        verify,
        ch,
    );
    up.assert_untouched(Seen::default(), "rejected requests");

    // `alg: none`, unsigned: never accepted (APISIX answers `failed to verify jwt`, an
    // algorithm mismatch; a parser that refuses `none` outright says `JWT token invalid`).
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"key":"jay-key"}"#)
    );
    for token in [none.clone(), none.trim_end_matches('.').to_owned()] {
        let resp = send(&token);
        assert_eq!(resp.status, 401, "alg none: {}", resp.text());
        assert!(
            resp.text() == "{\"message\":\"failed to verify jwt\"}\n"
                || resp.text() == "{\"message\":\"JWT token invalid\"}\n",
            "alg none: {}",
            resp.text()
        );
        assert_eq!(resp.header("www-authenticate"), ch);
    }
    up.assert_untouched(Seen::default(), "rejected requests");

    // Valid claims pass: exp in the future, nbf in the past, none at all.
    let jay = ident("jay", None, Some("jay-1"));
    for claims in [
        json!({"key": "jay-key", "exp": now + 600, "nbf": now - 10}),
        json!({"key": "jay-key"}),
    ] {
        assert_eq!(who(&send(&hs256("jay-secret", &claims))), jay);
    }
    // lifetime_grace_period 60: ten seconds late passes, ten minutes late does not.
    let lee = |claims: Value| send(&hs256("lee-secret", &claims));
    assert_eq!(
        who(&lee(json!({"key": "lee-key", "exp": now - 10}))),
        ident("lee", None, None)
    );
    assert_eq!(
        who(&lee(json!({"key": "lee-key", "nbf": now + 10}))),
        ident("lee", None, None)
    );
    assert_reject(
        &lee(json!({"key": "lee-key", "exp": now - 600})),
        401,
        verify,
        ch,
    );
    // claims_to_verify [exp]: exp is required.
    let claims_route = |claims: Value| {
        get(
            &gw,
            "/claims",
            &[("Authorization", &bearer(&hs256("jay-secret", &claims)))],
        )
    };
    assert_reject(&claims_route(json!({"key": "jay-key"})), 401, verify, ch);
    assert_eq!(
        who(&claims_route(json!({"key": "jay-key", "exp": now + 60}))),
        jay
    );
    // Unlisted claims are not checked.
    assert_eq!(
        who(&claims_route(
            json!({"key": "jay-key", "exp": now + 60, "nbf": now + 3600})
        )),
        jay
    );
}

#[test]
fn jwt_auth_hide_credentials_and_anonymous_consumer() {
    let up = Upstream::start("up");
    let (_, es_pub) = es256_pair();
    let gw = Gateway::start(&jwt_resources(&q(&es_pub), &up));
    let token = hs256("jay-secret", &json!({"key": "jay-key"}));

    let v = echo(&get(&gw, "/hide", &[("Authorization", &bearer(&token))]));
    assert_eq!(up_header(&v, "authorization"), None);
    assert_eq!(up_header(&v, "x-consumer-username").as_deref(), Some("jay"));
    let v = echo(&get(&gw, &format!("/hide?a=1&jwt={token}&b=2"), &[]));
    assert_eq!(v["uri"], "/hide?a=1&b=2");
    let cookie = format!("a=1; jwt={token}; b=2");
    let v = echo(&get(&gw, "/hide", &[("Cookie", &cookie)]));
    assert_eq!(up_header(&v, "cookie").as_deref(), Some("a=1; b=2"));
    let cookie = format!("jwt={token}");
    let v = echo(&get(&gw, "/hide", &[("Cookie", &cookie)]));
    assert_eq!(up_header(&v, "cookie"), None);
    // Without hide_credentials all of them go upstream.
    let v = echo(&get(&gw, "/jwt", &[("Authorization", &bearer(&token))]));
    assert_eq!(up_header(&v, "authorization"), Some(bearer(&token)));
    let v = echo(&get(&gw, &format!("/jwt?a=1&jwt={token}"), &[]));
    assert_eq!(v["uri"], format!("/jwt?a=1&jwt={token}"));

    let guest = ident("guest", None, None);
    assert_eq!(who(&get(&gw, "/anon", &[])), guest);
    for bad in [
        "garbage".to_owned(),
        hs256("wrong", &json!({"key": "jay-key"})),
    ] {
        assert_eq!(who(&get(&gw, "/anon", &[("Authorization", &bad)])), guest);
    }
    assert_eq!(
        who(&get(&gw, "/anon", &[("Authorization", &token)])),
        ident("jay", None, Some("jay-1"))
    );
    // With hide_credentials, a token that fails is removed too (before verification).
    let bad = hs256("wrong", &json!({"key": "jay-key"}));
    let v = echo(&get(&gw, "/anon-hide", &[("Authorization", &bad)]));
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("guest")
    );
    assert_eq!(up_header(&v, "authorization"), None);
    let v = echo(&get(&gw, &format!("/anon-hide?jwt={bad}&k=v"), &[]));
    assert_eq!(v["uri"], "/anon-hide?k=v");
}

// ---------------------------------------------------------------------------------------------
// Several plugins: AND, multi-auth (OR)

#[test]
fn two_auth_plugins_on_a_route_must_both_pass() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - username: alice
    plugins:
      key-auth: {{key: alice-key}}
      basic-auth: {{username: alice, password: alice-pw}}
  - username: bob
    credentials:
      - {{name: pw, plugins: {{basic-auth: {{username: bob, password: bob-pw}}}}}}
  - username: guest
routes:
  - {{id: and, uri: /and, plugins: {{key-auth: {{}}, basic-auth: {{}}}}, upstream: {up}}}
  - id: and-anon
    uri: /and-anon
    plugins: {{key-auth: {{anonymous_consumer: guest}}, basic-auth: {{}}}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let alice_basic = basic("alice:alice-pw");
    let bob_basic = basic("bob:bob-pw");
    // basic-auth (2520) runs before key-auth (2500): the first failure answers.
    assert_reject(
        &get(&gw, "/and", &[]),
        401,
        "Missing authorization in request",
        Some(r#"Basic realm="basic""#),
    );
    assert_reject(
        &get(&gw, "/and", &[("apikey", "alice-key")]),
        401,
        "Missing authorization in request",
        Some(r#"Basic realm="basic""#),
    );
    assert_reject(
        &get(&gw, "/and", &[("Authorization", &alice_basic)]),
        401,
        "Missing API key in request",
        Some(r#"apikey realm="key""#),
    );
    assert_reject(
        &get(
            &gw,
            "/and",
            &[
                ("Authorization", &basic("alice:x")),
                ("apikey", "alice-key"),
            ],
        ),
        401,
        "Invalid user authorization",
        Some(r#"Basic realm="basic""#),
    );
    up.assert_untouched(Seen::default(), "rejected requests");
    assert_eq!(
        who(&get(
            &gw,
            "/and",
            &[("Authorization", &alice_basic), ("apikey", "alice-key")]
        )),
        ident("alice", None, None)
    );
    // Different consumers: the one key-auth (lowest priority, found last) identified.
    assert_eq!(
        who(&get(
            &gw,
            "/and",
            &[("Authorization", &bob_basic), ("apikey", "alice-key")]
        )),
        ident("alice", None, None)
    );
    // Each plugin's anonymous_consumer applies to that plugin alone.
    assert_eq!(
        who(&get(&gw, "/and-anon", &[("Authorization", &bob_basic)])),
        ident("guest", None, None)
    );
    assert_reject(
        &get(&gw, "/and-anon", &[("apikey", "alice-key")]),
        401,
        "Missing authorization in request",
        Some(r#"Basic realm="basic""#),
    );
}

#[test]
fn multi_auth_tries_plugins_in_order_and_the_first_success_wins() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumers:
  - {{username: alice, plugins: {{key-auth: {{key: alice-key}}}}}}
  - username: bob
    credentials:
      - {{name: pw, plugins: {{basic-auth: {{username: bob, password: bob-pw}}}}}}
  - {{username: jay, plugins: {{jwt-auth: {{key: jay-key, secret: jay-secret}}}}}}
routes:
  - id: multi
    uri: /multi
    plugins:
      multi-auth:
        auth_plugins: [{{key-auth: {{}}}}, {{basic-auth: {{}}}}]
    upstream: {up}
  - id: multi3
    uri: /multi3
    plugins:
      multi-auth:
        auth_plugins:
          - basic-auth: {{}}
          - jwt-auth: {{}}
          - key-auth: {{hide_credentials: true}}
    upstream: {up}
#END
"#,
        up = up.yaml()
    ));
    let bob_basic = basic("bob:bob-pw");
    let alice = ident("alice", None, None);
    let bob = ident("bob", Some("pw"), None);
    assert_eq!(who(&get(&gw, "/multi", &[("apikey", "alice-key")])), alice);
    assert_eq!(
        who(&get(&gw, "/multi", &[("Authorization", &bob_basic)])),
        bob
    );
    assert_eq!(
        who(&get(
            &gw,
            "/multi",
            &[("apikey", "wrong"), ("Authorization", &bob_basic)]
        )),
        bob
    );
    assert_eq!(
        who(&get(
            &gw,
            "/multi",
            &[("apikey", "alice-key"), ("Authorization", &bob_basic)]
        )),
        alice,
        "the first plugin that succeeds wins"
    );
    // All fail: 401 with the challenge of the last plugin tried.
    for headers in [
        vec![],
        vec![("apikey", "wrong")],
        vec![("Authorization", "Basic Ym9iOndyb25n")],
    ] {
        assert_reject(
            &get(&gw, "/multi", &headers),
            401,
            "Authorization Failed",
            Some(r#"Basic realm="basic""#),
        );
    }

    let token = hs256("jay-secret", &json!({"key": "jay-key"}));
    assert_eq!(
        who(&get(&gw, "/multi3", &[("Authorization", &bearer(&token))])),
        ident("jay", None, None)
    );
    let v = echo(&get(&gw, "/multi3", &[("apikey", "alice-key")]));
    assert_eq!(
        up_header(&v, "x-consumer-username").as_deref(),
        Some("alice")
    );
    assert_eq!(
        up_header(&v, "apikey"),
        None,
        "hide_credentials of the inner plugin that succeeded"
    );
    assert_reject(
        &get(&gw, "/multi3", &[]),
        401,
        "Authorization Failed",
        Some(r#"apikey realm="key""#),
    );

    // Fewer than two plugins: a config error.
    let bad = "routes:\n  - {id: r, uri: /x, plugins: {multi-auth: {auth_plugins: [{key-auth: {}}]}}, upstream: {nodes: {\"127.0.0.1:9\": 1}}}\n";
    let lines = check_fails(&[("resources.yaml", bad)]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.multi-auth.auth_plugins",
        &["at least 2"],
    );
}

// ---------------------------------------------------------------------------------------------
// attach-consumer-label

#[test]
fn attach_consumer_label_sets_labels_and_drops_client_copies() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"consumer_groups:
  - id: team
    plugins: {{attach-consumer-label: {{headers: {{X-Team: $team}}}}}}
  - id: nobody-yet
    plugins: {{attach-consumer-label: {{headers: {{X-Empty-Group: $team}}}}}}
consumers:
  - username: member
    group_id: team
    labels: {{team: blue, department: qa}}
    plugins: {{key-auth: {{key: member-key}}}}
  - username: dev
    labels: {{department: eng, tier: gold}}
    plugins: {{key-auth: {{key: dev-key}}}}
  - username: ops
    labels: {{department: ops}}
    plugins:
      key-auth: {{key: ops-key}}
      attach-consumer-label:
        headers: {{X-Ops-Team: $department}}
  - {{username: plain, plugins: {{key-auth: {{key: plain-key}}}}}}
routes:
  - id: label
    uri: /label
    plugins:
      key-auth: {{}}
      attach-consumer-label:
        headers: {{X-Dept: $department, X-Tier: $tier}}
    upstream: {up}
  - {{id: auth, uri: /auth, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - {{id: open, uri: /open, upstream: {up}}}
#END
"#,
        up = up.yaml()
    ));
    let labels = |target: &str, key: &'static str| {
        let v = echo(&get(
            &gw,
            target,
            &[
                ("apikey", key),
                ("X-Dept", "forged"),
                ("x-tier", "forged"),
                ("X-Ops-Team", "forged"),
            ],
        ));
        (
            up_header(&v, "x-dept"),
            up_header(&v, "x-tier"),
            up_header(&v, "x-ops-team"),
        )
    };
    let s = |x: &str| Some(x.to_owned());
    assert_eq!(labels("/label", "dev-key"), (s("eng"), s("gold"), None));
    // A missing label: no header (and no client copy).
    assert_eq!(
        labels("/label", "plain-key"),
        (None, None, None),
        "no labels: nothing set, client copies dropped"
    );
    // The consumer's own attach-consumer-label replaces the route's.
    assert_eq!(labels("/label", "ops-key"), (None, None, s("ops")));
    assert_eq!(labels("/auth", "ops-key"), (None, None, s("ops")));
    assert_eq!(labels("/auth", "dev-key"), (None, None, None));
    // No consumer at all: every configured header is still removed.
    assert_eq!(labels("/open", "dev-key"), (None, None, None));

    // From the consumer's group: it replaces the route's conf (consumer > group > route).
    let team = |target: &str, key: &str| {
        let v = echo(&get(
            &gw,
            target,
            &[
                ("apikey", key),
                ("X-Team", "forged"),
                ("X-Empty-Group", "forged"),
                ("X-Dept", "forged"),
            ],
        ));
        (
            up_header(&v, "x-team"),
            up_header(&v, "x-empty-group"),
            up_header(&v, "x-dept"),
        )
    };
    assert_eq!(team("/auth", "member-key"), (s("blue"), None, None));
    assert_eq!(team("/label", "member-key"), (s("blue"), None, None));
    // Headers of any attach-consumer-label anywhere (a group with no members yet included)
    // are removed on every route.
    assert_eq!(team("/open", "member-key"), (None, None, None));
    assert_eq!(team("/auth", "dev-key"), (None, None, None));

    // Values must name a label with `$`.
    let bad = "routes:\n  - {id: r, uri: /x, plugins: {attach-consumer-label: {headers: {X-Dept: department}}}, upstream: {nodes: {\"127.0.0.1:9\": 1}}}\n";
    let lines = check_fails(&[("resources.yaml", bad)]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.attach-consumer-label.headers",
        &["department"],
    );
}

// ---------------------------------------------------------------------------------------------
// Config: credentials, duplicates, counts

#[test]
fn check_counts_consumers_credentials_and_groups() {
    let good = r#"consumer_groups:
  - {id: gold, plugins: {}}
consumers:
  - username: FetchBot
    group_id: gold
    plugins:
      key-auth: {key: bot-key}
      basic-auth: {username: fetchbot, password: pw}
  - username: JohnDoe
    credentials:
      - {name: k1, plugins: {key-auth: {key: john-key-1}}}
      - {name: j1, plugins: {jwt-auth: {key: john-jwt, secret: s}}}
  - id: JohnDoe/credentials/h1
    plugins: {hmac-auth: {key_id: john-hmac, secret_key: s}}
  - {username: nokeys}
routes:
  - {id: r, uri: /x, plugins: {key-auth: {}}, upstream: {nodes: {"127.0.0.1:9": 1}}}
#END
"#;
    let (code, out, err) = tollgate_check(&[("resources.yaml", good)]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out.trim_end(),
        "ok: 1 routes, 0 services, 0 upstreams, 3 consumers, 5 credentials, 1 consumer groups"
    );

    // The same secret for different plugins is no duplicate; a 512-character username is fine.
    let long = "u".repeat(512);
    let fine = format!(
        "consumers:\n  - {{username: {long}, plugins: {{key-auth: {{key: same}}}}}}\n  - {{username: b, plugins: {{jwt-auth: {{key: same, secret: s}}, basic-auth: {{username: same, password: same}}}}}}\n#END\n"
    );
    let (code, _, err) = tollgate_check(&[("resources.yaml", &fine)]);
    assert_eq!(code, 0, "stderr: {err}");

    // Bad consumers and credentials.
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "consumers:\n  - {username: \"jwt&auth\", plugins: {key-auth: {key: k}}}\n",
            "resources.yaml: consumers[0].username",
            &[],
        ),
        (
            &"consumers:\n  - {username: LONG}\n".replace("LONG", &"u".repeat(513)),
            "resources.yaml: consumers[0].username",
            &[],
        ),
        (
            "consumers:\n  - {username: u, group_id: nogroup}\n",
            "resources.yaml: consumers[0].group_id",
            &["nogroup"],
        ),
        (
            "consumers:\n  - username: u\n    credentials:\n      - {name: two, plugins: {key-auth: {key: k}, basic-auth: {username: u, password: p}}}\n",
            "resources.yaml: consumers[0].credentials[0].plugins",
            &[],
        ),
        // A credential holding a non-auth plugin names it, at its own field.
        (
            "consumers:\n  - username: u\n    credentials:\n      - {name: c, plugins: {key-auth: {key: k}, limit-count: {count: 1, time_window: 1}}}\n",
            "resources.yaml: consumers[0].credentials[0].plugins.limit-count",
            &["`limit-count` is not an auth plugin"],
        ),
        (
            "consumers:\n  - {username: u}\n  - {id: u/credentials/c, plugins: {key-auth: {key: k}, proxy-rewrite: {uri: /x}}}\n",
            "resources.yaml: consumers[1].plugins.proxy-rewrite",
            &["`proxy-rewrite` is not an auth plugin"],
        ),
        // A duplicate credential name names both places.
        (
            "consumers:\n  - username: u\n    credentials:\n      - {name: a, plugins: {key-auth: {key: k1}}}\n      - {name: a, plugins: {key-auth: {key: k2}}}\n",
            "resources.yaml: consumers[0].credentials[1].name",
            &["named `a` at consumers[0].credentials[0].name"],
        ),
        (
            "consumers:\n  - {id: ghost/credentials/c, plugins: {key-auth: {key: k}}}\n",
            "resources.yaml: consumers[0]",
            &["ghost"],
        ),
        (
            "consumers:\n  - {username: u, plugins: {key-auth: {}}}\n",
            "resources.yaml: consumers[0].plugins.key-auth",
            &["key"],
        ),
        (
            "consumers:\n  - {username: u, plugins: {jwt-auth: {key: j}}}\n",
            "resources.yaml: consumers[0].plugins.jwt-auth",
            &["secret"],
        ),
    ];
    for (yaml, prefix, parts) in cases {
        let lines = check_fails(&[("resources.yaml", yaml)]);
        assert_line(&lines, prefix, parts);
    }
}

#[test]
fn duplicate_credential_keys_are_config_errors_naming_both_places() {
    let up = r#"{nodes: {"127.0.0.1:9": 1}}"#;
    let route =
        format!("routes:\n  - {{id: r, uri: /x, plugins: {{key-auth: {{}}}}, upstream: {up}}}\n");
    let fetchbot = "  - {username: FetchBot, plugins: {key-auth: {key: bot-key}}}\n";
    let exact = |files: &[(&str, &str)], line: &str| {
        let lines = check_fails(files);
        assert!(
            lines.iter().any(|l| l == line),
            "no line\n  {line}\nin:\n{}",
            lines.join("\n")
        );
    };

    // The CONTRACT's own examples.
    exact(
        &[(
            "resources.yaml",
            &format!(
                "consumers:\n{fetchbot}  - {{username: JohnDoe, plugins: {{key-auth: {{key: bot-key}}}}}}\n{route}"
            ),
        )],
        "resources.yaml: consumers[1].plugins.key-auth.key: same key as consumers[0].plugins.key-auth.key (FetchBot)",
    );
    exact(
        &[(
            "resources.yaml",
            &format!(
                "consumers:\n{fetchbot}  - username: JohnDoe\n    credentials:\n      - {{name: c, plugins: {{key-auth: {{key: bot-key}}}}}}\n{route}"
            ),
        )],
        "resources.yaml: consumers[1].credentials[0].plugins.key-auth.key: same key as consumers[0].plugins.key-auth.key (FetchBot)",
    );
    exact(
        &[
            ("resources.yaml", &format!("consumers:\n{fetchbot}{route}")),
            (
                "other.yaml",
                "consumers:\n  - {username: JohnDoe, plugins: {key-auth: {key: bot-key}}}\n",
            ),
        ],
        "other.yaml: consumers[0].plugins.key-auth.key: same key as resources.yaml: consumers[0].plugins.key-auth.key (FetchBot)",
    );
    // A hashed key equal to a plain one.
    let hash = format!("sha256:{}", hex(&sha2::Sha256::digest(b"bot-key")));
    exact(
        &[(
            "resources.yaml",
            &format!(
                "consumers:\n{fetchbot}  - {{username: JohnDoe, plugins: {{key-auth: {{key_hash: {}}}}}}}\n",
                q(&hash)
            ),
        )],
        "resources.yaml: consumers[1].plugins.key-auth.key_hash: same key as consumers[0].plugins.key-auth.key (FetchBot)",
    );
    // An id-form credential against its own consumer's inline key.
    exact(
        &[(
            "resources.yaml",
            &format!(
                "consumers:\n{fetchbot}  - {{id: FetchBot/credentials/c, plugins: {{key-auth: {{key: bot-key}}}}}}\n"
            ),
        )],
        "resources.yaml: consumers[1].plugins.key-auth.key: same key as consumers[0].plugins.key-auth.key (FetchBot)",
    );
    // Two sibling credentials.
    exact(
        &[(
            "resources.yaml",
            "consumers:\n  - username: FetchBot\n    credentials:\n      - {name: a, plugins: {key-auth: {key: k}}}\n      - {name: b, plugins: {key-auth: {key: k}}}\n",
        )],
        "resources.yaml: consumers[0].credentials[1].plugins.key-auth.key: same key as consumers[0].credentials[0].plugins.key-auth.key (FetchBot)",
    );
    // The same shape for every plugin's unique field.
    exact(
        &[(
            "resources.yaml",
            "consumers:\n  - {username: FetchBot, plugins: {basic-auth: {username: bot, password: a}}}\n  - {username: JohnDoe, plugins: {basic-auth: {username: bot, password: b}}}\n",
        )],
        "resources.yaml: consumers[1].plugins.basic-auth.username: same username as consumers[0].plugins.basic-auth.username (FetchBot)",
    );
    exact(
        &[(
            "resources.yaml",
            "consumers:\n  - {username: FetchBot, plugins: {hmac-auth: {key_id: bot, secret_key: a}}}\n  - username: JohnDoe\n    credentials:\n      - {name: h, plugins: {hmac-auth: {key_id: bot, secret_key: b}}}\n",
        )],
        "resources.yaml: consumers[1].credentials[0].plugins.hmac-auth.key_id: same key_id as consumers[0].plugins.hmac-auth.key_id (FetchBot)",
    );
    exact(
        &[(
            "resources.yaml",
            "consumers:\n  - {username: FetchBot, plugins: {jwt-auth: {key: bot, secret: a}}}\n  - {username: JohnDoe, plugins: {jwt-auth: {key: bot, secret: b}}}\n",
        )],
        "resources.yaml: consumers[1].plugins.jwt-auth.key: same key as consumers[0].plugins.jwt-auth.key (FetchBot)",
    );

    // The gateway refuses to start on such a file, with the same error.
    let (code, _, err) = crate::support::run_tollgate(
        &[],
        &[(
            "resources.yaml",
            &format!(
                "consumers:\n{fetchbot}  - {{username: JohnDoe, plugins: {{key-auth: {{key: bot-key}}}}}}\n{route}"
            ),
        )],
    );
    assert_eq!(code, 1, "stderr: {err}");
    assert!(
        err.contains("consumers[1].plugins.key-auth.key: same key as consumers[0].plugins.key-auth.key (FetchBot)"),
        "stderr: {err}"
    );
}

#[test]
fn check_refuses_bad_auth_plugin_confs() {
    let up = r#"{nodes: {"127.0.0.1:9": 1}}"#;
    let consumers = "consumers:\n  - {username: c, plugins: {key-auth: {key: k}}}\n";
    let route = |plugins: &str| {
        format!("{consumers}routes:\n  - {{id: r, uri: /x, plugins: {plugins}, upstream: {up}}}\n")
    };
    let cases = [
        (
            route("{key-auth: {realm: \"a\\\"b\"}}"),
            "resources.yaml: routes[0].plugins.key-auth.realm",
        ),
        (
            route("{basic-auth: {realm: \"\"}}"),
            "resources.yaml: routes[0].plugins.basic-auth.realm",
        ),
        (
            route("{hmac-auth: {clock_skew: 0}}"),
            "resources.yaml: routes[0].plugins.hmac-auth.clock_skew",
        ),
        (
            route("{hmac-auth: {allowed_algorithms: []}}"),
            "resources.yaml: routes[0].plugins.hmac-auth.allowed_algorithms",
        ),
        (
            route("{hmac-auth: {allowed_algorithms: [hmac-md5]}}"),
            "resources.yaml: routes[0].plugins.hmac-auth",
        ),
        (
            route("{hmac-auth: {max_req_body_size: 0}}"),
            "resources.yaml: routes[0].plugins.hmac-auth.max_req_body_size",
        ),
        (
            route("{jwt-auth: {claims_to_verify: [iat]}}"),
            "resources.yaml: routes[0].plugins.jwt-auth",
        ),
        (
            route("{jwt-auth: {anonymous_consumer: \"\"}}"),
            "resources.yaml: routes[0].plugins.jwt-auth.anonymous_consumer",
        ),
        (
            route("{basic-auth: {anonymous_consumer: ghost}}"),
            "resources.yaml: routes[0].plugins.basic-auth.anonymous_consumer",
        ),
        (
            route("{multi-auth: {auth_plugins: [{key-auth: {}}, {basic-auth: {anonymous_consumer: ghost}}]}}"),
            "resources.yaml: routes[0].plugins.multi-auth",
        ),
        (
            "consumers:\n  - {username: c, plugins: {jwt-auth: {key: j, algorithm: XX256, secret: s}}}\n"
                .to_owned(),
            "resources.yaml: consumers[0].plugins.jwt-auth",
        ),
        (
            "consumers:\n  - {username: c, plugins: {jwt-auth: {key: j, algorithm: ES256, public_key: \"not a pem\"}}}\n"
                .to_owned(),
            "resources.yaml: consumers[0].plugins.jwt-auth.public_key",
        ),
        (
            "consumers:\n  - {username: c, plugins: {jwt-auth: {key: j, secret: \"%%%\", base64_secret: true}}}\n"
                .to_owned(),
            "resources.yaml: consumers[0].plugins.jwt-auth",
        ),
        (
            "consumers:\n  - {username: c, plugins: {basic-auth: {username: u, password: p, password_hash: \"$2b$04$abcdefghijklmnopqrstuuJYVvCwNOIuDkq9dG6rGyXBQb8CmJ8xW\"}}}\n"
                .to_owned(),
            "resources.yaml: consumers[0].plugins.basic-auth",
        ),
        (
            "consumers:\n  - {username: c, plugins: {hmac-auth: {key_id: h}}}\n".to_owned(),
            "resources.yaml: consumers[0].plugins.hmac-auth.secret_key",
        ),
        // Inline plugins on a consumer cannot expire.
        (
            "consumers:\n  - {username: c, expires_at: \"2030-01-01T00:00:00Z\", plugins: {key-auth: {key: k}}}\n"
                .to_owned(),
            "resources.yaml: consumers[0].expires_at",
        ),
        // Two credentials of one consumer with one name; two consumers with one username.
        (
            "consumers:\n  - username: c\n    credentials:\n      - {name: a, plugins: {key-auth: {key: k1}}}\n      - {name: a, plugins: {key-auth: {key: k2}}}\n"
                .to_owned(),
            "resources.yaml: consumers[0].credentials[1].name",
        ),
        (
            "consumers:\n  - {username: c}\n  - {username: c}\n".to_owned(),
            "resources.yaml: consumers[1].username",
        ),
    ];
    for (yaml, prefix) in &cases {
        let lines = check_fails(&[("resources.yaml", yaml)]);
        assert_line(&lines, prefix, &[]);
    }
}

#[test]
fn reload_changes_credentials_and_refuses_duplicate_keys() {
    let up = Upstream::start("up");
    let (pw1, pw2) = (
        hash_secret("password", "first-pw"),
        hash_secret("password", "second-pw"),
    );
    let resources = |keys: &[(&str, &str)], pw_hash: &str| {
        let mut yaml = String::from("consumers:\n");
        for (user, key) in keys {
            yaml.push_str(&format!(
                "  - {{username: {user}, plugins: {{key-auth: {{key: {key}}}}}}}\n"
            ));
        }
        yaml.push_str(&format!(
            "  - username: hashed\n    credentials:\n      - {{name: pw, plugins: {{basic-auth: {{username: hashed, password_hash: {}}}}}}}\n",
            q(pw_hash)
        ));
        yaml.push_str(&format!(
            "routes:\n  - {{id: k, uri: /k, plugins: {{key-auth: {{}}}}, upstream: {up}}}\n  - {{id: b, uri: /b, plugins: {{basic-auth: {{}}}}, upstream: {up}}}\n#END\n",
            up = up.yaml()
        ));
        yaml
    };
    let gw = Gateway::start(&resources(&[("a", "key-a"), ("b", "key-b")], &pw1));
    let v0 = gw.config_version();
    let key = |k: &str| get(&gw, "/k", &[("apikey", k)]);
    let pw = |p: &str| {
        get(
            &gw,
            "/b",
            &[("Authorization", &basic(&format!("hashed:{p}")))],
        )
    };
    assert_eq!(who(&key("key-a")), ident("a", None, None));
    assert_eq!(who(&key("key-b")), ident("b", None, None));
    assert_eq!(who(&pw("first-pw")).0.as_deref(), Some("hashed"));

    // Remove b's key, rotate the password: only those change.
    gw.write_file(
        "resources.yaml",
        &resources(&[("a", "key-a"), ("c", "key-c")], &pw2),
    );
    let v1 = gw.wait_reload(&v0);
    assert_eq!(who(&key("key-a")), ident("a", None, None));
    assert_eq!(who(&key("key-c")), ident("c", None, None));
    let apikey = Some(r#"apikey realm="key""#);
    assert_reject(&key("key-b"), 401, "Invalid API key in request", apikey);
    // A password that passed before (and may sit in a cache) no longer does.
    assert_reject(
        &pw("first-pw"),
        401,
        "Invalid user authorization",
        Some(r#"Basic realm="basic""#),
    );
    assert_eq!(who(&pw("second-pw")).0.as_deref(), Some("hashed"));

    // A file with a duplicate key is refused; the last good snapshot keeps serving.
    let mark = gw.log_mark();
    gw.write_file(
        "resources.yaml",
        &resources(&[("a", "key-a"), ("d", "key-a")], &pw2),
    );
    let log = gw.wait_log(mark, &["same key as"]);
    assert!(
        log.contains(
            "consumers[1].plugins.key-auth.key: same key as consumers[0].plugins.key-auth.key (a)"
        ),
        "log: {log}"
    );
    assert_eq!(gw.config_version(), v1);
    assert_eq!(who(&key("key-c")), ident("c", None, None));
}
