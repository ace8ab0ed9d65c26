//! basic-auth (issues 4 and 17): APISIX's parsing and messages, password hashes, expiry and
//! the anonymous consumer; edge cases (surrounding whitespace, an empty username, bytes that
//! are not UTF-8, unpadded base64, two `Authorization` headers); bcrypt hashes in their `$2a$`,
//! `$2b$`, `$2y$` forms.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use crate::auth_common::{
    assert_401, assert_reject, echo, get, ident, q, up_header, username, who,
};
use crate::signing::{basic, hash_secret};
use crate::support::{Gateway, Seen, Upstream, assert_line, check_fails, http};

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
// Edge cases (issue 17, point 6)

/// Consumers and routes for the basic-auth edge cases.
fn basic_gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"consumers:
  - username: alice
    plugins: {{basic-auth: {{username: alice, password: alice-pw}}}}
  - username: utf
    plugins: {{basic-auth: {{username: "jürgen", password: "pässwörd"}}}}
routes:
  - {{id: basic, uri: /basic, plugins: {{basic-auth: {{}}}}, upstream: {up}}}
  - {{id: hide, uri: /hide, plugins: {{basic-auth: {{hide_credentials: true}}}}, upstream: {up}}}
#END
"#,
        up = up.yaml()
    ))
}

#[test]
fn basic_auth_edge_cases() {
    let up = Upstream::start("up");
    let gw = basic_gateway(&up);
    let ch = r#"Basic realm="basic""#;
    let send = |authorization: &[&str]| {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("Authorization", *a))
            .collect();
        http(gw.port(), "GET", "/basic", &headers, b"")
    };

    // Whitespace around the decoded `user:pass` is trimmed (CONTRACT), leading included.
    for text in [
        &b"  alice:alice-pw"[..],
        b"\talice:alice-pw",
        b"alice:alice-pw \r\n",
    ] {
        assert_eq!(username(&send(&[&basic(text)])), "alice", "{text:?}");
    }
    // Non-ASCII UTF-8 user and password.
    assert_eq!(
        username(&send(&[&basic("jürgen:pässwörd".as_bytes())])),
        "utf"
    );
    let before = up.seen();
    // An empty username, an empty password, nothing but a colon: never a consumer.
    for text in [&b":alice-pw"[..], b"alice:", b":", b" : "] {
        let resp = send(&[&basic(text)]);
        assert_eq!(resp.status, 401, "{text:?}: {}", resp.text());
        assert_eq!(resp.header("www-authenticate"), Some(ch));
    }
    // Bytes that are not UTF-8 (Latin-1 of the UTF-8 user's name, a lone 0xff): a clean 401.
    for text in [
        &b"j\xfcrgen:p\xe4ssw\xf6rd"[..],
        b"alice\xff:alice-pw",
        b"\xff\xfe",
    ] {
        let resp = send(&[&basic(text)]);
        assert_eq!(resp.status, 401, "{text:?}: {}", resp.text());
        assert_eq!(resp.header("www-authenticate"), Some(ch));
    }
    up.assert_untouched(before, "rejected Basic credentials");

    // Two Authorization headers: the first one decides (nginx's `$http_authorization`), so a
    // valid second header never rescues an invalid first one; with hide_credentials neither
    // copy reaches the upstream.
    let good = basic(b"alice:alice-pw");
    let bad = basic(b"alice:wrong");
    let before = up.seen();
    assert_401(&send(&[&bad, &good]), "Invalid user authorization", ch);
    up.assert_untouched(before, "an invalid first Authorization header");
    assert_eq!(username(&send(&[&good, &bad])), "alice");
    let resp = http(
        gw.port(),
        "GET",
        "/hide",
        &[("Authorization", &good), ("Authorization", &bad)],
        b"",
    );
    assert_eq!(username(&resp), "alice");
    assert!(
        resp.json()["headers"].get("authorization").is_none(),
        "hide_credentials removes every copy: {}",
        resp.text()
    );
    // Still serving after all of it.
    assert_eq!(username(&send(&[&good])), "alice");
}

/// Unpadded base64 (`YWxpY2U6YWxpY2UtcHc`): APISIX decodes it with `ngx.decode_base64`,
/// which (like nginx's `ngx_decode_base64`) accepts a blob without its `=` padding.
#[test]
fn basic_auth_accepts_unpadded_base64_as_apisix_does() {
    let up = Upstream::start("up");
    let gw = basic_gateway(&up);
    let unpadded = STANDARD_NO_PAD.encode("alice:alice-pw");
    assert!(!unpadded.ends_with('='));
    let resp = http(
        gw.port(),
        "GET",
        "/basic",
        &[("Authorization", &format!("Basic {unpadded}"))],
        b"",
    );
    assert_eq!(username(&resp), "alice");
}

/// bcrypt hashes in every prefix (`$2a$`, `$2b$`, `$2y$`), one from the crypt_blowfish test
/// vectors (not made by the crate tollgate uses): the right password passes, a wrong one is
/// the same 401 as an unknown user.
#[test]
fn basic_auth_bcrypt_hashes_in_every_prefix() {
    use bcrypt::Version;
    // crypt_blowfish's own test vector: "U*U".
    let vector = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    let parts = bcrypt::hash_with_result("b-pw", 4).unwrap();
    let hashes = [
        ("v", vector.to_owned(), "U*U"),
        ("a", parts.format_for_version(Version::TwoA), "b-pw"),
        ("b", parts.format_for_version(Version::TwoB), "b-pw"),
        ("y", parts.format_for_version(Version::TwoY), "b-pw"),
    ];
    let up = Upstream::start("up");
    let mut consumers = String::from("consumers:\n");
    for (name, hash, _) in &hashes {
        consumers.push_str(&format!(
            "  - {{username: user-{name}, plugins: {{basic-auth: {{username: {name}, password_hash: {}}}}}}}\n",
            q(hash)
        ));
    }
    let gw = Gateway::start(&format!(
        "{consumers}routes:\n  - {{id: b, uri: /b, plugins: {{basic-auth: {{}}}}, upstream: {}}}\n#END\n",
        up.yaml()
    ));
    let send = |user: &str, pass: &str| {
        http(
            gw.port(),
            "GET",
            "/b",
            &[("Authorization", &basic(format!("{user}:{pass}").as_bytes()))],
            b"",
        )
    };
    let ch = r#"Basic realm="basic""#;
    for (name, hash, pass) in &hashes {
        assert!(hash.starts_with("$2"), "{hash}");
        // Twice: the second one may come from the cache of recent successes.
        for _ in 0..2 {
            assert_eq!(
                username(&send(name, pass)),
                format!("user-{name}"),
                "{hash}"
            );
        }
        assert_401(&send(name, "wrong"), "Invalid user authorization", ch);
        assert_401(
            &send(name, &format!("{pass}x")),
            "Invalid user authorization",
            ch,
        );
    }
}
