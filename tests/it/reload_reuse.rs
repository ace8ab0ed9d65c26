//! A reload shares the consumers whose entries read as they did (issue 13): the shared ones
//! keep working, and whatever changed (a key, a label, a credential's name, a group, an
//! order, a consumer added or removed) takes effect at once, never served stale.

use crate::auth_common::{get, up_header, username, who};
use crate::support::{Gateway, Upstream};

/// A config with one key-auth route that sends the `tier` label upstream, and one that only
/// members of group `g1` may call.
fn config(up: &Upstream, consumers: &str) -> String {
    format!(
        r#"consumer_groups:
  - {{id: g1}}
routes:
  - id: any
    uri: /any
    upstream: {up}
    plugins:
      key-auth: {{}}
      attach-consumer-label: {{headers: {{X-Tier: $tier}}}}
  - id: grp
    uri: /grp
    upstream: {up}
    plugins:
      key-auth: {{}}
      consumer-restriction: {{type: consumer_group_id, whitelist: [g1]}}
consumers:
{consumers}#END
"#,
        up = up.yaml()
    )
}

const BEFORE: &str = "  - {username: alice, plugins: {key-auth: {key: k-alice}}}
  - {username: bob, plugins: {key-auth: {key: k-bob}}}
  - {username: carol, labels: {tier: gold}, plugins: {key-auth: {key: k-carol}}}
  - {username: dave, plugins: {key-auth: {key: k-dave}}}
  - username: erin
    credentials:
      - {name: one, plugins: {key-auth: {key: k-erin}}}
  - {username: gina, plugins: {key-auth: {key: k-gina}}}
  - {username: harry, plugins: {key-auth: {key: k-harry}}}
  - {username: ivy, plugins: {key-auth: {key: k-ivy}}}
  - {username: kim, plugins: {key-auth: {key: k-kim}}}
";

/// alice and kim unchanged (kim moved to the front); bob's key, carol's label and erin's
/// credential name changed; dave removed; gina joined g1; harry and ivy swapped keys; jack new.
const AFTER: &str = "  - {username: kim, plugins: {key-auth: {key: k-kim}}}
  - {username: alice, plugins: {key-auth: {key: k-alice}}}
  - {username: bob, plugins: {key-auth: {key: k-bob-2}}}
  - {username: carol, labels: {tier: silver}, plugins: {key-auth: {key: k-carol}}}
  - username: erin
    credentials:
      - {name: two, plugins: {key-auth: {key: k-erin}}}
  - {username: gina, group_id: g1, plugins: {key-auth: {key: k-gina}}}
  - {username: harry, plugins: {key-auth: {key: k-ivy}}}
  - {username: ivy, plugins: {key-auth: {key: k-harry}}}
  - {username: jack, plugins: {key-auth: {key: k-jack}}}
";

fn status(gw: &Gateway, path: &str, key: &str) -> u16 {
    get(gw, path, &[("apikey", key)]).status
}

fn tier(gw: &Gateway, key: &str) -> Option<String> {
    let resp = get(gw, "/any", &[("apikey", key)]);
    let v = crate::auth_common::echo(&resp);
    up_header(&v, "x-tier")
}

#[test]
fn a_reload_shares_unchanged_consumers_and_applies_every_change() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&config(&up, BEFORE));
    assert_eq!(username(&get(&gw, "/any", &[("apikey", "k-bob")])), "bob");
    assert_eq!(tier(&gw, "k-carol").as_deref(), Some("gold"));
    assert_ne!(status(&gw, "/grp", "k-gina"), 200, "gina is in no group");
    assert_eq!(
        who(&get(&gw, "/any", &[("apikey", "k-erin")])).1.as_deref(),
        Some("one")
    );

    let v0 = gw.config_version();
    let mark = gw.log_mark();
    gw.write_file("resources.yaml", &config(&up, AFTER));
    gw.wait_reload(&v0);
    // Which consumers were shared is not visible from outside but in the log: the unchanged
    // alice and kim, and nobody else (each other entry changed).
    let log = gw.wait_log(mark, &["unchanged consumers shared"]);
    assert!(
        log.contains(" 2 unchanged consumers shared"),
        "expected alice and kim shared:\n{log}"
    );

    // Shared consumers keep working.
    assert_eq!(
        username(&get(&gw, "/any", &[("apikey", "k-alice")])),
        "alice"
    );
    assert_eq!(username(&get(&gw, "/any", &[("apikey", "k-kim")])), "kim");
    assert_ne!(status(&gw, "/grp", "k-alice"), 200, "alice is in no group");
    // Every change is served.
    assert_eq!(status(&gw, "/any", "k-bob"), 401, "bob's old key");
    assert_eq!(username(&get(&gw, "/any", &[("apikey", "k-bob-2")])), "bob");
    assert_eq!(tier(&gw, "k-carol").as_deref(), Some("silver"));
    assert_eq!(status(&gw, "/any", "k-dave"), 401, "dave was removed");
    assert_eq!(
        who(&get(&gw, "/any", &[("apikey", "k-erin")])).1.as_deref(),
        Some("two")
    );
    assert_eq!(status(&gw, "/grp", "k-gina"), 200, "gina joined g1");
    assert_eq!(username(&get(&gw, "/any", &[("apikey", "k-harry")])), "ivy");
    assert_eq!(username(&get(&gw, "/any", &[("apikey", "k-ivy")])), "harry");
    assert_eq!(username(&get(&gw, "/any", &[("apikey", "k-jack")])), "jack");

    // A second reload (SIGHUP, same file) shares the consumers the first one compiled too.
    let mark = gw.log_mark();
    gw.sighup();
    let log = gw.wait_log(mark, &["unchanged consumers shared"]);
    // Every consumer but gina (a member of a group is compiled again each time).
    assert!(
        log.contains(" 8 unchanged consumers shared"),
        "expected all but gina shared:\n{log}"
    );
    assert_eq!(username(&get(&gw, "/any", &[("apikey", "k-bob-2")])), "bob");
    assert_eq!(
        who(&get(&gw, "/any", &[("apikey", "k-erin")])).1.as_deref(),
        Some("two")
    );
    assert_eq!(status(&gw, "/grp", "k-gina"), 200);
    assert_eq!(username(&get(&gw, "/any", &[("apikey", "k-harry")])), "ivy");
    assert_eq!(status(&gw, "/any", "k-dave"), 401);

    // A reload with an error is refused as before, worded as without sharing: a changed
    // consumer taking a shared one's key is named at its place.
    let mark = gw.log_mark();
    let bad = AFTER.replace("k-jack", "k-alice");
    gw.write_file("resources.yaml", &config(&up, &bad));
    let log = gw.wait_log(mark, &["same key as"]);
    assert!(
        log.contains("consumers[8].plugins.key-auth.key: same key as consumers[1].plugins.key-auth.key (alice)"),
        "{log}"
    );
    assert_eq!(username(&get(&gw, "/any", &[("apikey", "k-jack")])), "jack");

    // An id-form credential with the id of a shared consumer's nested credential is refused.
    let mark = gw.log_mark();
    let bad =
        format!("{AFTER}  - {{id: erin/credentials/two, plugins: {{key-auth: {{key: k-x}}}}}}\n");
    gw.write_file("resources.yaml", &config(&up, &bad));
    let log = gw.wait_log(mark, &["same id"]);
    assert!(log.contains("same id `erin/credentials/two`"), "{log}");
    assert_eq!(status(&gw, "/any", "k-x"), 401);
}

#[test]
fn a_big_file_reload_shares_all_but_what_changed() {
    // Over 1 MiB, so the file is read on a second thread as it is parsed.
    let up = Upstream::start("up");
    let body = |n: usize, skip: usize, changed: usize| {
        let mut s = String::new();
        for i in 0..n {
            if i == skip {
                continue;
            }
            let key = if i == changed {
                format!("k{i:05}-new")
            } else {
                format!("k{i:05}")
            };
            s.push_str(&format!(
                "  - {{username: c{i:05}, plugins: {{key-auth: {{key: {key}}}}}}}\n"
            ));
        }
        s
    };
    let first = config(&up, &body(20_000, usize::MAX, usize::MAX));
    assert!(first.len() > 1 << 20);
    let gw = Gateway::start(&first);
    assert_eq!(
        username(&get(&gw, "/any", &[("apikey", "k00007")])),
        "c00007"
    );
    let v0 = gw.config_version();
    let mark = gw.log_mark();
    gw.write_file("resources.yaml", &config(&up, &body(20_000, 5_000, 15_000)));
    gw.wait_reload(&v0);
    let log = gw.wait_log(mark, &["unchanged consumers shared"]);
    assert!(log.contains(" 19998 unchanged consumers shared"), "{log}");
    assert_eq!(status(&gw, "/any", "k05000"), 401, "c05000 was removed");
    assert_eq!(status(&gw, "/any", "k15000"), 401, "c15000's old key");
    assert_eq!(
        username(&get(&gw, "/any", &[("apikey", "k15000-new")])),
        "c15000"
    );
    assert_eq!(
        username(&get(&gw, "/any", &[("apikey", "k19999")])),
        "c19999"
    );
    assert_eq!(
        username(&get(&gw, "/any", &[("apikey", "k00000")])),
        "c00000"
    );
}

#[test]
fn a_big_file_reload_is_not_fooled_by_unchanged_text_inside_a_string() {
    // Over 1 MiB, so unchanged entries are recognised from their raw text. Two entries whose
    // text did not change now sit inside a quoted string that c10000's entry opens: they are
    // no longer consumers, and the string holds their text, as a full load reads it.
    let up = Upstream::start("up");
    let line =
        |i: usize| format!("  - {{username: c{i:05}, plugins: {{key-auth: {{key: k{i:05}}}}}}}\n");
    let body = |quoted: bool| {
        let mut s = String::new();
        for i in 0..20_000 {
            if quoted && i == 10_000 {
                s.push_str(&format!(
                    "  - username: c{i:05}\n    plugins: {{key-auth: {{key: k{i:05}}}}}\n    desc: \"start\n"
                ));
            } else {
                s.push_str(&line(i));
            }
            if quoted && i == 10_002 {
                s.push_str("  end\"\n");
            }
        }
        s
    };
    let first = config(&up, &body(false));
    assert!(first.len() > 1 << 20);
    let gw = Gateway::start(&first);
    assert_eq!(
        username(&get(&gw, "/any", &[("apikey", "k10001")])),
        "c10001"
    );
    let v0 = gw.config_version();
    gw.write_file("resources.yaml", &config(&up, &body(true)));
    gw.wait_reload(&v0);
    assert_eq!(
        username(&get(&gw, "/any", &[("apikey", "k10000")])),
        "c10000"
    );
    assert_eq!(
        status(&gw, "/any", "k10001"),
        401,
        "c10001 is text in a string now"
    );
    assert_eq!(
        status(&gw, "/any", "k10002"),
        401,
        "c10002 is text in a string now"
    );
    assert_eq!(
        username(&get(&gw, "/any", &[("apikey", "k10003")])),
        "c10003"
    );
    assert_eq!(
        username(&get(&gw, "/any", &[("apikey", "k19999")])),
        "c19999"
    );
}
