//! Auth families (issue 17, point 6): jwt-auth with every asymmetric algorithm family
//! (RS256/384/512, PS256, ES384, EdDSA) and the classic confusions (an HS256 token signed with
//! the RSA public key as its secret, another algorithm of the same family, `alg: none`);
//! basic-auth edge cases (surrounding whitespace, an empty username, bytes that are not UTF-8,
//! unpadded base64, two `Authorization` headers); bcrypt hashes in their `$2a$`, `$2b$`,
//! `$2y$` forms. Keys come from the `openssl` command line (scripts/setup.sh installs it).

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{Gateway, Resp, Upstream, http};

/// The consumer the echo upstream was told about (`X-Consumer-Username`), or a panic.
fn who(resp: &Resp) -> String {
    assert_eq!(resp.status, 200, "expected an echo answer: {}", resp.text());
    resp.json()["headers"]["x-consumer-username"]
        .as_str()
        .unwrap_or_else(|| panic!("no consumer: {}", resp.text()))
        .to_owned()
}

/// 401 with exactly this `{"message": ...}` body and challenge.
fn assert_401(resp: &Resp, message: &str, challenge: &str) {
    assert_eq!(
        (resp.status, resp.text()),
        (401, format!("{}\n", json!({ "message": message }))),
        "status and exact body"
    );
    assert_eq!(resp.header("www-authenticate"), Some(challenge));
}

/// `openssl genpkey` with these options: (private key PEM, public key PEM).
fn openssl_pair(genpkey_args: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl ({e}); run scripts/setup.sh"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let mut args = vec!["genpkey", "-out", "key.pem"];
    args.extend_from_slice(genpkey_args);
    run(&args);
    let public = run(&["pkey", "-in", "key.pem", "-pubout"]);
    (
        std::fs::read_to_string(key).unwrap(),
        String::from_utf8(public).unwrap(),
    )
}

/// A YAML double-quoted string.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

#[test]
fn jwt_auth_verifies_every_asymmetric_family_and_refuses_confusions() {
    let (rsa_priv, rsa_pub) =
        openssl_pair(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let (ec_priv, ec_pub) =
        openssl_pair(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]);
    let (ed_priv, ed_pub) = openssl_pair(&["-algorithm", "ed25519"]);
    let (other_ed_priv, _) = openssl_pair(&["-algorithm", "ed25519"]);
    let rsa = EncodingKey::from_rsa_pem(rsa_priv.as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(ec_priv.as_bytes()).unwrap();
    let ed = EncodingKey::from_ed_pem(ed_priv.as_bytes()).unwrap();
    let other_ed = EncodingKey::from_ed_pem(other_ed_priv.as_bytes()).unwrap();

    let up = Upstream::start("up");
    let mut consumers = String::from("consumers:\n");
    let families = [
        ("rs256", "RS256", &rsa_pub),
        ("rs384", "RS384", &rsa_pub),
        ("rs512", "RS512", &rsa_pub),
        ("ps256", "PS256", &rsa_pub),
        ("es384", "ES384", &ec_pub),
        ("eddsa", "EdDSA", &ed_pub),
    ];
    for (user, alg, public) in families {
        consumers.push_str(&format!(
            "  - {{username: {user}, plugins: {{jwt-auth: {{key: {user}-key, algorithm: {alg}, public_key: {}}}}}}}\n",
            q(public)
        ));
    }
    let gw = Gateway::start(&format!(
        "{consumers}routes:\n  - {{id: jwt, uri: /jwt, plugins: {{jwt-auth: {{}}}}, upstream: {}}}\n#END\n",
        up.yaml()
    ));
    let send = |token: &str| {
        http(
            gw.port(),
            "GET",
            "/jwt",
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        )
    };
    let claims = |user: &str| json!({"key": format!("{user}-key"), "exp": 4_000_000_000u64});

    // Each family, signed with its key: the right consumer.
    for (user, alg, key) in [
        ("rs256", Algorithm::RS256, &rsa),
        ("rs384", Algorithm::RS384, &rsa),
        ("rs512", Algorithm::RS512, &rsa),
        ("ps256", Algorithm::PS256, &rsa),
        ("es384", Algorithm::ES384, &ec),
        ("eddsa", Algorithm::EdDSA, &ed),
    ] {
        assert_eq!(who(&send(&sign(alg, key, &claims(user)))), user, "{alg:?}");
    }
    let hits = up.hits();
    let before = up.seen();

    let ch = r#"Bearer realm="jwt""#;
    let verify = "failed to verify jwt";
    // HS256 signed with the RSA public key (PEM text) as the HMAC secret: the classic
    // confusion. Also with the EC and Ed25519 public keys.
    for (user, public) in [("rs256", &rsa_pub), ("es384", &ec_pub), ("eddsa", &ed_pub)] {
        for secret in [public.as_bytes(), public.trim_end().as_bytes()] {
            let token = sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(secret),
                &claims(user),
            );
            assert_401(&send(&token), verify, ch);
        }
    }
    // Another algorithm of the same family, signed with the right key: the token's alg must
    // equal the credential's.
    for (user, alg, key) in [
        ("rs256", Algorithm::RS512, &rsa),
        ("rs256", Algorithm::PS256, &rsa),
        ("ps256", Algorithm::RS256, &rsa),
        ("rs512", Algorithm::RS256, &rsa),
    ] {
        assert_401(&send(&sign(alg, key, &claims(user))), verify, ch);
    }
    // The right algorithm, another key.
    assert_401(
        &send(&sign(Algorithm::EdDSA, &other_ed, &claims("eddsa"))),
        verify,
        ch,
    );
    // A valid signature moved onto another payload.
    let good = sign(Algorithm::RS256, &rsa, &claims("rs256"));
    let forged_payload = URL_SAFE_NO_PAD.encode(json!({"key": "rs512-key"}).to_string());
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = &forged_payload;
    assert_401(&send(&parts.join(".")), verify, ch);
    // `alg: none` (and spelled `None`, `NONE`) for an asymmetric credential, unsigned or
    // with the signature of a real token.
    for alg in ["none", "None", "NONE"] {
        let head = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        let body = URL_SAFE_NO_PAD.encode(claims("rs256").to_string());
        let sig = good.rsplit('.').next().unwrap();
        for token in [
            format!("{head}.{body}."),
            format!("{head}.{body}"),
            format!("{head}.{body}.{sig}"),
        ] {
            let resp = send(&token);
            assert_eq!(resp.status, 401, "alg {alg}: {}", resp.text());
            assert!(
                resp.text() == "{\"message\":\"failed to verify jwt\"}\n"
                    || resp.text() == "{\"message\":\"JWT token invalid\"}\n",
                "alg {alg}: {}",
                resp.text()
            );
        }
    }
    up.assert_untouched(before, "no confused token reached the upstream");
    assert_eq!(up.hits(), hits);
}

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

fn basic_bytes(bytes: &[u8]) -> String {
    format!("Basic {}", STANDARD.encode(bytes))
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
        assert_eq!(who(&send(&[&basic_bytes(text)])), "alice", "{text:?}");
    }
    // Non-ASCII UTF-8 user and password.
    assert_eq!(
        who(&send(&[&basic_bytes("jürgen:pässwörd".as_bytes())])),
        "utf"
    );
    let before = up.seen();
    // An empty username, an empty password, nothing but a colon: never a consumer.
    for text in [&b":alice-pw"[..], b"alice:", b":", b" : "] {
        let resp = send(&[&basic_bytes(text)]);
        assert_eq!(resp.status, 401, "{text:?}: {}", resp.text());
        assert_eq!(resp.header("www-authenticate"), Some(ch));
    }
    // Bytes that are not UTF-8 (Latin-1 of the UTF-8 user's name, a lone 0xff): a clean 401.
    for text in [
        &b"j\xfcrgen:p\xe4ssw\xf6rd"[..],
        b"alice\xff:alice-pw",
        b"\xff\xfe",
    ] {
        let resp = send(&[&basic_bytes(text)]);
        assert_eq!(resp.status, 401, "{text:?}: {}", resp.text());
        assert_eq!(resp.header("www-authenticate"), Some(ch));
    }
    up.assert_untouched(before, "rejected Basic credentials");

    // Two Authorization headers: the first one decides (nginx's `$http_authorization`), so a
    // valid second header never rescues an invalid first one; with hide_credentials neither
    // copy reaches the upstream.
    let good = basic_bytes(b"alice:alice-pw");
    let bad = basic_bytes(b"alice:wrong");
    let before = up.seen();
    assert_401(&send(&[&bad, &good]), "Invalid user authorization", ch);
    up.assert_untouched(before, "an invalid first Authorization header");
    assert_eq!(who(&send(&[&good, &bad])), "alice");
    let resp = http(
        gw.port(),
        "GET",
        "/hide",
        &[("Authorization", &good), ("Authorization", &bad)],
        b"",
    );
    assert_eq!(who(&resp), "alice");
    assert!(
        resp.json()["headers"].get("authorization").is_none(),
        "hide_credentials removes every copy: {}",
        resp.text()
    );
    // Still serving after all of it.
    assert_eq!(who(&send(&[&good])), "alice");
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
    assert_eq!(who(&resp), "alice");
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
            &[(
                "Authorization",
                &basic_bytes(format!("{user}:{pass}").as_bytes()),
            )],
            b"",
        )
    };
    let ch = r#"Basic realm="basic""#;
    for (name, hash, pass) in &hashes {
        assert!(hash.starts_with("$2"), "{hash}");
        // Twice: the second one may come from the cache of recent successes.
        for _ in 0..2 {
            assert_eq!(who(&send(name, pass)), format!("user-{name}"), "{hash}");
        }
        assert_401(&send(name, "wrong"), "Invalid user authorization", ch);
        assert_401(
            &send(name, &format!("{pass}x")),
            "Invalid user authorization",
            ch,
        );
    }
}
