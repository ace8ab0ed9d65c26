//! Consumers and credentials (issue 4), whatever plugin they hold: identity headers and client
//! copies of them, a bare `key-auth:` (YAML null) for each auth plugin, hashed and expiring
//! credentials, `$env://` secrets, attach-consumer-label, `check` counts, the duplicate-key and
//! bad-conf config errors, and reloads that change credentials.

use serde_json::json;
use sha2::Digest;

use crate::auth_common::{NOBODY, assert_reject, echo, get, ident, q, up_header, who};
use crate::signing::{basic, bearer, hash_secret, hex, hs256};
use crate::support::{Gateway, Seen, Upstream, assert_line, check_fails, tollgate_check};

// ---------------------------------------------------------------------------------------------
// Identity headers, defaults, hashed and expiring credentials, secrets

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

/// Keys given in the clear are indexed by keyed SipHash; one `key_hash` makes the whole index
/// SHA-256. A reload that brings the first `key_hash` in, and one that takes the last away,
/// switch the index, and every key keeps its consumer across both.
#[test]
fn reloads_that_add_and_remove_the_only_hashed_key_keep_every_key() {
    let up = Upstream::start("up");
    let config = |extra: &str| {
        format!(
            r#"consumers:
  - {{username: alice, plugins: {{key-auth: {{key: k-alice}}}}}}
  - {{username: bob, plugins: {{key-auth: {{key: k-bob}}}}}}
{extra}routes:
  - {{id: r, uri: /r, plugins: {{key-auth: {{}}}}, upstream: {up}}}
#END
"#,
            up = up.yaml()
        )
    };
    let user = |gw: &Gateway, key: &str| who(&get(gw, "/r", &[("apikey", key)])).0;
    let hash = format!("sha256:{}", hex(&sha2::Sha256::digest(b"k-carol")));
    let with_carol = format!(
        "  - {{username: carol, plugins: {{key-auth: {{key_hash: {}}}}}}}\n",
        q(&hash)
    );
    let gw = Gateway::start(&config(""));
    assert_eq!(user(&gw, "k-alice").as_deref(), Some("alice"));
    assert_eq!(get(&gw, "/r", &[("apikey", "k-carol")]).status, 401);

    let check = |gw: &Gateway, carol: bool| {
        assert_eq!(user(gw, "k-alice").as_deref(), Some("alice"));
        assert_eq!(user(gw, "k-bob").as_deref(), Some("bob"));
        if carol {
            assert_eq!(user(gw, "k-carol").as_deref(), Some("carol"));
        } else {
            assert_eq!(get(gw, "/r", &[("apikey", "k-carol")]).status, 401);
        }
        // The hash is never a key.
        assert_eq!(get(gw, "/r", &[("apikey", &hash)]).status, 401);
    };
    for (extra, carol) in [(with_carol.as_str(), true), ("", false)] {
        let v0 = gw.config_version();
        gw.write_file("resources.yaml", &config(extra));
        gw.wait_reload(&v0);
        check(&gw, carol);
    }
    // The same file again: alice and bob are shared with their digests.
    let mark = gw.log_mark();
    gw.sighup();
    let log = gw.wait_log(mark, &["unchanged consumers shared"]);
    assert!(log.contains(" 2 unchanged consumers shared"), "{log}");
    check(&gw, false);
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
        // ... also when it holds no auth plugin at all.
        (
            "consumers:\n  - username: u\n    credentials:\n      - {name: c, plugins: {limit-count: {count: 1, time_window: 1}}}\n",
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
