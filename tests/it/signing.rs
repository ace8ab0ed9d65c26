//! Credentials as a client sends them, for every test that authenticates: `Basic` and `Bearer`
//! values, hmac-auth request signing (the APISIX 3.11+ scheme) and the `Digest` header, JWTs,
//! `tollgate hash-secret`, and two fixtures: the hmac consumers ([`HMAC_CONSUMERS`]) and one
//! consumer with a credential of each type ([`auth_resources`]).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::Digest;

use crate::support::{Gateway, Resp, Upstream, http};

// ---------------------------------------------------------------------------------------------
// Encodings and clocks

/// Standard base64, padded.
pub(crate) fn b64(data: impl AsRef<[u8]>) -> String {
    STANDARD.encode(data)
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HTTP date `offset_secs` seconds from now.
pub(crate) fn http_date(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    httpdate::fmt_http_date(t)
}

// ---------------------------------------------------------------------------------------------
// basic-auth, bearer tokens, `tollgate hash-secret`

/// `Basic <base64 of user_pass>`; the bytes need not be UTF-8.
pub(crate) fn basic(user_pass: &(impl AsRef<[u8]> + ?Sized)) -> String {
    format!("Basic {}", b64(user_pass.as_ref()))
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `tollgate hash-secret <kind>` with `secret` and a trailing newline on stdin.
pub(crate) fn hash_secret(kind: &str, secret: &str) -> String {
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

// ---------------------------------------------------------------------------------------------
// hmac-auth request signing (the APISIX 3.11+ scheme)

/// Consumers hal (inline, `custom_id` hal-1), ivy (credentials `sig` and an expired `old`) and
/// guest (no credential), as the start of a resources file.
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

/// The MAC of `data` under `key` with `alg` (`hmac-sha1`, `hmac-sha256` or `hmac-sha512`).
pub(crate) fn hmac_raw(alg: &str, key: &[u8], data: &[u8]) -> Vec<u8> {
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
    let sig = b64(hmac_raw(alg, secret.as_bytes(), data.as_bytes()));
    format!(r#"Signature keyId="{key_id}",algorithm="{alg}",headers="{signed}",signature="{sig}""#)
}

/// Sends `method target` with `headers` and `body`, signed by `key_id`/`secret` over the names
/// in `signed` (a `Date` is added, `date_offset` seconds from now).
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

/// The `Digest` header of `body` for `validate_request_body`: `SHA-256=<base64>`.
pub(crate) fn sha256_digest(body: &[u8]) -> String {
    format!("SHA-256={}", b64(sha2::Sha256::digest(body)))
}

// ---------------------------------------------------------------------------------------------
// jwt-auth tokens

pub(crate) fn jwt_sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

pub(crate) fn jwt_hs(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jwt_sign(alg, &EncodingKey::from_secret(secret), claims)
}

pub(crate) fn hs256(secret: &str, claims: &Value) -> String {
    jwt_hs(Algorithm::HS256, secret.as_bytes(), claims)
}

// ---------------------------------------------------------------------------------------------
// One consumer with a credential of each type (access log and secret-leak tests)

pub(crate) const KEY: &str = "ak-Secret-4f1c9e";
pub(crate) const WRONG_KEY: &str = "wrong-Secret-77aa02";
pub(crate) const BASIC_USER: &str = "alice-basic";
pub(crate) const PASSWORD: &str = "pw-Secret-c0ffee";
pub(crate) const JWT_SECRET: &str = "jwt-Secret-9d8e7f";
pub(crate) const HMAC_SECRET: &str = "hmac-Secret-a1b2c3";

/// Routes k (key-auth), b (basic-auth), j (jwt-auth), h (hmac-auth), open; consumer alice with
/// one credential of each type.
pub(crate) fn auth_resources(up: &Upstream) -> String {
    let up = up.yaml();
    format!(
        r#"routes:
  - {{id: k, uri: /k, plugins: {{key-auth: {{}}}}, upstream: {up}}}
  - {{id: b, uri: /b, plugins: {{basic-auth: {{}}}}, upstream: {up}}}
  - {{id: j, uri: /j, plugins: {{jwt-auth: {{}}}}, upstream: {up}}}
  - {{id: h, uri: /h, plugins: {{hmac-auth: {{}}}}, upstream: {up}}}
  - {{id: open, uri: /open, upstream: {up}}}
consumers:
  - username: alice
    credentials:
      - {{name: key, plugins: {{key-auth: {{key: {KEY}}}}}}}
      - {{name: basic, plugins: {{basic-auth: {{username: {BASIC_USER}, password: {PASSWORD}}}}}}}
      - {{name: jwt, plugins: {{jwt-auth: {{key: alice-jwt, secret: {JWT_SECRET}}}}}}}
      - {{name: hmac, plugins: {{hmac-auth: {{key_id: alice-hmac, secret_key: {HMAC_SECRET}}}}}}}
#END
"#
    )
}

/// An HS256 JWT for jwt-auth key `alice-jwt`, valid for an hour.
pub(crate) fn jwt_token() -> String {
    hs256(
        JWT_SECRET,
        &json!({"key": "alice-jwt", "exp": now_secs() + 3600}),
    )
}

/// `(Date, Authorization, signature)` for an hmac-auth GET of `target` by key id `alice-hmac`.
pub(crate) fn hmac_headers(target: &str) -> (String, String, String) {
    let date = http_date(0);
    let auth = hmac_authorization(
        "hmac-sha256",
        "alice-hmac",
        HMAC_SECRET,
        "@request-target date",
        "GET",
        target,
        &[("Date", &date)],
    );
    let (_, sig) = auth.rsplit_once(r#"signature=""#).unwrap();
    let sig = sig.trim_end_matches('"').to_owned();
    (date, auth, sig)
}
