//! hmac-auth (issues 4, 10 and 17): signatures over every algorithm and the ways they go
//! wrong, the route options (clock skew, signed headers, `hide_credentials`, the anonymous
//! consumer), and `validate_request_body`, which holds the body until its digest matches.

use crate::auth_common::{assert_reject, echo, get, ident, up_header, who};
use crate::signing::{
    HMAC_CONSUMERS, basic, hmac_authorization, hmac_request, http_date, sha256_digest,
};
use crate::support::{Gateway, Seen, Upstream, chunked};

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

    let ok = post(body, &[("Digest", &sha256_digest(body))]);
    assert_eq!(who(&ok), ident("hal", None, Some("hal-1")));
    assert_eq!(echo(&ok)["body"], String::from_utf8_lossy(body).as_ref());
    assert_eq!(up.hits(), 1);
    let before = up.seen();

    // A digest of another body, or none: 401, and the upstream never sees the request (not
    // even its head: no connection, no byte).
    let other = sha256_digest(b"something else");
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
    let ok = post(&chunked(&parts), &[te, ("Digest", &sha256_digest(body))]);
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
        &post(&big, &[("Digest", &sha256_digest(&big))]),
        413,
        "request size 100 is greater than the maximum size 64 allowed",
        None,
    );
    let resp = post(
        &chunked(&[&big[..50], &big[50..]]),
        &[te, ("Digest", &sha256_digest(&big))],
    );
    assert_eq!(resp.status, 413, "chunked over the limit: {}", resp.text());
    assert!(
        resp.json()["message"].is_string(),
        "JSON body: {}",
        resp.text()
    );
    untouched(before, "no oversized body reached the upstream");
}
