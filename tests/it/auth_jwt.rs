//! jwt-auth (issues 4 and 17): token sources and algorithms, bad tokens, `hide_credentials`
//! and the anonymous consumer; every asymmetric algorithm family (RS256/384/512, PS256, ES384,
//! EdDSA) and the classic confusions (an HS256 token signed with the RSA public key as its
//! secret, another algorithm of the same family, `alg: none`). Keys come from the `openssl`
//! command line (scripts/setup.sh installs it).

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::auth_common::{
    assert_401, assert_reject, echo, get, ident, q, up_header, username, who,
};
use crate::signing::{bearer, hs256, jwt_hs, jwt_sign, now_secs};
use crate::support::{Gateway, Seen, Upstream, http};

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
// Asymmetric families and confusions (issue 17, point 6)

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
        assert_eq!(
            username(&send(&jwt_sign(alg, key, &claims(user)))),
            user,
            "{alg:?}"
        );
    }
    let hits = up.hits();
    let before = up.seen();

    let ch = r#"Bearer realm="jwt""#;
    let verify = "failed to verify jwt";
    // HS256 signed with the RSA public key (PEM text) as the HMAC secret: the classic
    // confusion. Also with the EC and Ed25519 public keys.
    for (user, public) in [("rs256", &rsa_pub), ("es384", &ec_pub), ("eddsa", &ed_pub)] {
        for secret in [public.as_bytes(), public.trim_end().as_bytes()] {
            let token = jwt_sign(
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
        assert_401(&send(&jwt_sign(alg, key, &claims(user))), verify, ch);
    }
    // The right algorithm, another key.
    assert_401(
        &send(&jwt_sign(Algorithm::EdDSA, &other_ed, &claims("eddsa"))),
        verify,
        ch,
    );
    // A valid signature moved onto another payload.
    let good = jwt_sign(Algorithm::RS256, &rsa, &claims("rs256"));
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
