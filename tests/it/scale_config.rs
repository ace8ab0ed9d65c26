//! Resource files read item by item (issues 13 and 14): one bad item does not hide the errors
//! of the others, whatever stage finds them, and a reference to an item that failed to parse
//! is not reported as missing.

use crate::support::{assert_line, check_fails, tollgate_check};

const UP: &str = r#"{nodes: {"127.0.0.1:9": 1}}"#;

#[test]
fn check_reports_parse_and_compile_errors_of_every_item_in_one_run() {
    // An unsupported plugin (found while parsing), `vars` (found while compiling) and a host that
    // does not resolve (found while resolving upstreams), each on its own route.
    let yaml = format!(
        "routes:\n\
         \x20 - {{id: a, uri: /a, upstream: {UP}, plugins: {{no-such-plugin: {{}}}}}}\n\
         \x20 - {{id: b, uri: /b, upstream: {UP}, vars: [[arg_x, \"==\", \"1\"]]}}\n\
         \x20 - {{id: c, uri: /c, upstream: {{nodes: {{\"no-such-host.invalid:80\": 1}}}}}}\n\
         #END\n"
    );
    let lines = check_fails(&[("resources.yaml", &yaml)]);
    assert_line(
        &lines,
        "resources.yaml: routes[0].plugins",
        &["no-such-plugin"],
    );
    assert_line(&lines, "resources.yaml: routes[1].vars", &["not supported"]);
    assert_line(
        &lines,
        "resources.yaml: routes[2].upstream",
        &["no-such-host.invalid"],
    );
}

#[test]
fn a_reference_to_an_item_that_failed_to_parse_is_not_reported_missing() {
    let yaml = format!(
        "upstreams:\n\
         \x20 - {{id: u1, nodes: {{\"127.0.0.1:9\": 1}}, bogus: 1}}\n\
         services:\n\
         \x20 - {{id: s1, upstream: {UP}, plugins: {{no-such-plugin: {{}}}}}}\n\
         consumer_groups:\n\
         \x20 - {{id: g1, plugins: {{limit-count: {{count: \"10\", time_window: 60}}}}}}\n\
         consumers:\n\
         \x20 - {{username: alice, plugins: {{key-auth: {{key: 123}}}}}}\n\
         \x20 - {{id: alice/credentials/c1, plugins: {{key-auth: {{key: k1}}}}}}\n\
         \x20 - {{username: bob, group_id: g1, plugins: {{key-auth: {{key: k2}}}}}}\n\
         routes:\n\
         \x20 - {{id: r1, uri: /r1, upstream_id: u1}}\n\
         \x20 - {{id: r2, uri: /r2, service_id: s1}}\n\
         \x20 - {{id: r3, uri: /r3, upstream_id: nope}}\n\
         #END\n"
    );
    let lines = check_fails(&[("resources.yaml", &yaml)]);
    assert_line(
        &lines,
        "resources.yaml: upstreams[0].bogus",
        &["not supported"],
    );
    assert_line(
        &lines,
        "resources.yaml: services[0].plugins",
        &["no-such-plugin"],
    );
    assert_line(
        &lines,
        "resources.yaml: consumer_groups[0].plugins.limit-count.count",
        &["invalid type"],
    );
    assert_line(
        &lines,
        "resources.yaml: consumers[0].plugins.key-auth.key",
        &["invalid type"],
    );
    // A real dangling reference is still reported.
    assert_line(&lines, "resources.yaml: routes[2].upstream_id", &["nope"]);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("does not exist") && !l.contains("nope")),
        "a reference to a broken item was reported missing:\n{}",
        lines.join("\n")
    );
    assert_eq!(lines.len(), 5, "{}", lines.join("\n"));
}

#[test]
fn items_streamed_from_a_file_keep_anchors_merge_keys_and_order() {
    let yaml = format!(
        "x-key: &key {{key-auth: {{}}}}\n\
         x-up: &up {UP}\n\
         routes:\n\
         \x20 - {{id: r1, uri: /r1, upstream: *up, plugins: *key}}\n\
         consumers:\n\
         \x20 - username: alice\n\
         \x20   plugins: {{key-auth: {{key: k-alice}}}}\n\
         \x20 - <<: {{plugins: {{key-auth: {{key: k-bob}}}}}}\n\
         \x20   username: bob\n\
         \x20 - {{id: bob/credentials/second, plugins: {{key-auth: {{key: k-bob-2}}}}}}\n\
         #END\n"
    );
    let (code, out, err) = tollgate_check(&[("resources.yaml", &yaml)]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("1 routes, 0 services, 0 upstreams, 2 consumers, 3 credentials"),
        "{out}"
    );
}

#[test]
fn a_big_file_read_on_two_threads_names_its_bad_items_at_their_places() {
    // Over 1 MiB, so the file is read on a second thread (see `config::read_items`).
    let mut yaml = format!(
        "routes:\n  - {{id: r, uri: /r, upstream: {UP}, plugins: {{key-auth: {{}}}}}}\nconsumers:\n"
    );
    for i in 0..20_000 {
        match i {
            5_000 => yaml.push_str("  - {username: c5000, plugins: {key-auth: {key: 123}}}\n"),
            15_000 => yaml.push_str("  - {username: c15000, plugins: {key-auth: {key: k00007}}}\n"),
            _ => yaml.push_str(&format!(
                "  - {{username: c{i}, plugins: {{key-auth: {{key: k{i:05}}}}}}}\n"
            )),
        }
    }
    // A credential of the consumer that failed to parse: not reported as missing.
    yaml.push_str("  - {id: c5000/credentials/x, plugins: {key-auth: {key: kx}}}\n#END\n");
    assert!(yaml.len() > 1 << 20);
    let lines = check_fails(&[("resources.yaml", &yaml)]);
    assert_line(
        &lines,
        "resources.yaml: consumers[5000].plugins.key-auth.key",
        &["invalid type"],
    );
    assert_line(
        &lines,
        "resources.yaml: consumers[15000].plugins.key-auth.key",
        &["same key as consumers[7].plugins.key-auth.key (c7)"],
    );
    assert_eq!(lines.len(), 2, "{}", lines.join("\n"));
}

#[test]
fn a_syntax_error_after_items_read_without_libyaml_names_its_line() {
    // Over 1 MiB and streamed: the raw filter records the simple items itself (they never
    // reach libyaml); the load that then meets the error runs again with libyaml reading every
    // line, so the error names the line it is on in the file.
    let mut yaml = format!("routes:\n  - {{id: r, uri: /r, upstream: {UP}}}\nconsumers:\n");
    for i in 0..20_000 {
        yaml.push_str(&format!(
            "  - {{username: c{i}, plugins: {{key-auth: {{key: k{i:05}}}}}}}\n"
        ));
    }
    // Line 20,004 (1-based) lacks a closing brace; libyaml finds it missing on the next line.
    yaml.push_str(
        "  - {username: bad, plugins: {key-auth: {key: kb}}\n  - {username: after}\n#END\n",
    );
    assert!(yaml.len() > 1 << 20);
    let lines = check_fails(&[("resources.yaml", &yaml)]);
    assert_eq!(lines.len(), 1, "{}", lines.join("\n"));
    assert!(lines[0].contains("line 20005"), "{}", lines[0]);
}
