//! request-id through the real binary, and `_meta` on plugins (CONTRACT: Resource files).

use crate::support::assert_line;
use crate::support::{Gateway, Upstream, check_fails, http};

#[test]
fn request_id_is_made_sent_upstream_and_returned() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"routes:
  - id: r
    uri: /r
    plugins: {{request-id: {{}}}}
    upstream: {u}
  - id: quiet
    uri: /quiet
    plugins: {{request-id: {{header_name: X-Trace, include_in_response: false}}}}
    upstream: {u}
  - id: off
    uri: /off
    plugins: {{request-id: {{_meta: {{disable: true}}}}}}
    upstream: {u}
#END
"#,
        u = up.yaml()
    ));
    let r = http(gw.port(), "GET", "/r", &[], b"");
    assert_eq!(r.status, 200);
    let id = r
        .header("x-request-id")
        .expect("id in the response")
        .to_owned();
    assert_eq!(id.len(), 36, "a uuid: {id}");
    assert_eq!(r.json()["headers"]["x-request-id"], id.as_str());
    let r2 = http(gw.port(), "GET", "/r", &[], b"");
    assert_ne!(
        r2.header("x-request-id"),
        Some(id.as_str()),
        "a new id each time"
    );
    // A client's own id is kept.
    let r = http(gw.port(), "GET", "/r", &[("X-Request-Id", "mine-1")], b"");
    assert_eq!(r.header("x-request-id"), Some("mine-1"));
    assert_eq!(r.json()["headers"]["x-request-id"], "mine-1");
    // Another header, not in the response.
    let r = http(gw.port(), "GET", "/quiet", &[], b"");
    assert!(r.header("x-trace").is_none());
    assert_eq!(
        r.json()["headers"]["x-trace"].as_str().map(str::len),
        Some(36)
    );
    // `_meta.disable: true` turns the instance off.
    let r = http(gw.port(), "GET", "/off", &[], b"");
    assert!(r.header("x-request-id").is_none());
}

#[test]
fn meta_disable_turns_off_the_plugin_a_route_inherits_but_not_a_global_rule() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        r#"services:
  - id: s
    plugins: {{key-auth: {{}}, request-id: {{}}}}
    upstream: {u}
plugin_configs:
  - id: pc
    plugins: {{key-auth: {{_meta: {{disable: true}}}}}}
global_rules:
  - id: g1
    plugins: {{request-id: {{header_name: X-Global-Id, _meta: {{disable: true}}}}}}
  - id: g2
    plugins: {{request-id: {{header_name: X-Global-Id}}}}
routes:
  - id: inherits
    uri: /inherits
    service_id: s
  - id: off
    uri: /off
    service_id: s
    plugins: {{key-auth: {{_meta: {{disable: true}}}}, request-id: {{_meta: {{disable: true}}}}}}
  - id: by-plugin-config
    uri: /pc
    service_id: s
    plugin_config_id: pc
consumers:
  - username: jack
    plugins: {{key-auth: {{key: jack-key}}}}
#END
"#,
        u = up.yaml()
    ));
    // The service's key-auth and request-id apply to a route that sets neither.
    assert_eq!(http(gw.port(), "GET", "/inherits", &[], b"").status, 401);
    let r = http(
        gw.port(),
        "GET",
        "/inherits",
        &[("apikey", "jack-key")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.header("x-request-id").is_some());
    // A route's disabled key-auth and request-id turn the service's off, as in APISIX.
    let r = http(gw.port(), "GET", "/off", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-request-id").is_none());
    assert!(r.json()["headers"]["x-consumer-username"].is_null());
    // So does a plugin config's.
    assert_eq!(http(gw.port(), "GET", "/pc", &[], b"").status, 200);
    // One global rule's disabled request-id does not turn another rule's off.
    assert!(
        r.header("x-global-id").is_some(),
        "global rule g2 still runs"
    );
}

#[test]
fn meta_fields_other_than_disable_and_other_algorithms_are_refused() {
    let lines = check_fails(&[(
        "resources.yaml",
        "routes:\n  - id: r\n    uri: /r\n    plugins:\n      key-auth: {_meta: {priority: 1}}\n    upstream: {nodes: {\"127.0.0.1:1\": 1}}\n#END\n",
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.key-auth._meta.priority",
        &["not supported"],
    );
    // The loader's own list of disabled plugins cannot be written by hand (a file must not
    // turn off a service's key-auth other than through `_meta.disable`).
    let lines = check_fails(&[(
        "resources.yaml",
        "services:\n  - id: s\n    plugins: {key-auth: {}}\n    upstream: {nodes: {\"127.0.0.1:1\": 1}}\nroutes:\n  - id: r\n    uri: /r\n    service_id: s\n    plugins: {\"_meta.disabled\": [key-auth]}\n#END\n",
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins._meta.disabled",
        &["not supported"],
    );
    let lines = check_fails(&[(
        "resources.yaml",
        "routes:\n  - id: r\n    uri: /r\n    plugins:\n      request-id: {algorithm: nanoid}\n    upstream: {nodes: {\"127.0.0.1:1\": 1}}\n#END\n",
    )]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins.request-id.algorithm",
        &["not supported"],
    );
}

#[test]
fn top_level_plugin_list_and_empty_lists_are_accepted() {
    let ok = "plugins:\n  - name: key-auth\n  - request-id\n  - {name: limit-count}\nplugin_metadata: []\nstream_routes: []\nroutes:\n  - {id: r, uri: /r, upstream: {nodes: {\"127.0.0.1:1\": 1}}}\n#END\n";
    let (code, out, err) = crate::support::tollgate_check(&[("resources.yaml", ok)]);
    assert_eq!(code, 0, "{out}{err}");
    let lines = check_fails(&[(
        "resources.yaml",
        "plugins:\n  - name: key-auth\n  - name: serverless-pre-function\nplugin_metadata:\n  - {id: x}\n#END\n",
    )]);
    assert_line(
        &lines,
        "resources.yaml: plugins[1]",
        &["serverless-pre-function", "not supported"],
    );
    assert_line(
        &lines,
        "resources.yaml: plugin_metadata",
        &["not supported"],
    );
}

#[test]
fn request_id_is_in_the_json_access_log() {
    let up = Upstream::start("up");
    let gw = Gateway::builder()
        .node_extra("access_log: {path: stderr, format: json}\n")
        .start(&format!(
            "routes:\n  - {{id: r, uri: /r, plugins: {{request-id: {{}}}}, upstream: {}}}\n#END\n",
            up.yaml()
        ));
    let r = http(gw.port(), "GET", "/r", &[("X-Request-Id", "trace-77")], b"");
    assert_eq!(r.status, 200);
    let mut line = String::new();
    crate::support::wait_until(
        std::time::Duration::from_secs(10),
        "the access log line",
        || {
            line = gw
                .stderr()
                .lines()
                .find(|l| l.starts_with('{') && l.contains("\"route\""))
                .unwrap_or("")
                .to_owned();
            !line.is_empty()
        },
    );
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["request_id"], "trace-77", "{line}");
}
