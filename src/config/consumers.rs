//! Compiles `consumers` entries (consumers, nested and id-form credentials) and
//! `consumer_groups` into [`Consumers`]: names, labels, groups, plugins merged under the group's,
//! and the credential index with duplicates named at both places.

use std::sync::Arc;
use std::time::SystemTime;

use ahash::AHashMap;
use http::HeaderValue;

use crate::auth::credentials::{Credential, CredentialIndex};
use crate::config::error::{Errs, Place};
use crate::config::raw::{ConsumerConf, ConsumerGroupConf, Id};
use crate::consumer::{Consumer, ConsumerGroup, Consumers};
use crate::ids::{ConsumerId, CredentialId, GroupId};
use crate::plugins::{ConsumerPluginsConf, PluginSet, compile_consumer_plugins};

fn check_username(u: &str) -> Result<(), String> {
    if u.is_empty() || u.len() > 512 {
        return Err("must be 1 to 512 characters".into());
    }
    if !u
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!("`{u}` does not match ^[a-zA-Z0-9_-]+$"));
    }
    Ok(())
}

fn check_labels(
    errs: &mut Errs,
    place: &Place,
    labels: &Option<std::collections::BTreeMap<String, String>>,
) {
    for (k, v) in labels.iter().flatten() {
        if v.is_empty() || v.len() > 256 || v.chars().any(char::is_whitespace) {
            errs.push(
                place,
                &format!("labels.{k}"),
                "must be 1 to 256 characters without whitespace",
            );
        }
    }
}

/// Where each unique credential key was first seen, to name both places of a duplicate.
#[derive(Default)]
struct Seen {
    by_key: AHashMap<(&'static str, Vec<u8>), FirstSeen>,
}

/// The first place a credential key appeared: place, field path, consumer.
struct FirstSeen {
    place: Place,
    field: String,
    owner: Arc<str>,
}

impl Seen {
    /// Records `key` for `plugin`; on a duplicate, pushes an error naming the first place.
    fn claim(
        &mut self,
        errs: &mut Errs,
        plugin: &'static str,
        what: &str,
        key: Vec<u8>,
        s: &CredSource,
        field: &str,
    ) -> bool {
        if let Some(first) = self.by_key.get(&(plugin, key.clone())) {
            let at = first.place.named_from(&s.place.file, &first.field);
            errs.push(
                &s.place,
                field,
                format!("same {what} as {at} ({})", first.owner),
            );
            return false;
        }
        let first = FirstSeen {
            place: s.place.clone(),
            field: field.to_string(),
            owner: s.owner.clone(),
        };
        self.by_key.insert((plugin, key), first);
        true
    }
}

/// A credential to index: where it was written and its plugins.
struct CredSource<'a> {
    /// Position of the `consumers` entry across files: duplicates are reported on the later one.
    ord: usize,
    consumer: ConsumerId,
    owner: Arc<str>,
    place: Place,
    plugins_path: String,
    plugins: &'a ConsumerPluginsConf,
    id: Option<String>,
    expires_at: Option<SystemTime>,
}

/// Compiles `consumers` entries (consumers and id-form credentials) and `consumer_groups`.
pub fn compile(
    consumers: &[(Place, &ConsumerConf)],
    groups: &[(Place, &ConsumerGroupConf)],
    errs: &mut Errs,
) -> Consumers {
    let mut out = Consumers::default();
    // Groups.
    let mut group_ids: AHashMap<String, GroupId> = AHashMap::new();
    let mut group_plugins: Vec<PluginSet> = Vec::new();
    let mut groups_out = Vec::new();
    for (place, g) in groups {
        if !g.plugins.auth_plugin_names().is_empty() {
            errs.push(
                place,
                "plugins",
                "auth plugins belong on consumers and credentials, not on a consumer group",
            );
        }
        check_labels(errs, place, &g.labels);
        let set = compile_consumer_plugins(
            &g.plugins,
            place,
            "plugins",
            &format!("consumer_group:{}", g.id.0),
            errs,
        );
        group_ids.insert(g.id.0.clone(), GroupId(groups_out.len() as u32));
        out.label_headers.extend(
            set.attach_labels
                .iter()
                .flat_map(|a| a.headers.iter().map(|(n, _)| n.clone())),
        );
        group_plugins.push(set);
        groups_out.push(ConsumerGroup {
            id: g.id.0.as_str().into(),
        });
    }

    // Consumers first, credentials (id form) after, so order in the file does not matter.
    let mut list: Vec<Consumer> = Vec::new();
    let mut sources: Vec<CredSource> = Vec::new();
    let mut id_form: Vec<(usize, &Place, &ConsumerConf, &Id)> = Vec::new();
    for (ord, (place, c)) in consumers.iter().enumerate() {
        if let Some(id) = c.id.as_ref().filter(|id| id.0.contains("/credentials/")) {
            id_form.push((ord, place, c, id));
            continue;
        }
        let Some(username) = &c.username else {
            errs.push(
                place,
                "username",
                "required (or an `id` of the form <username>/credentials/<name>)",
            );
            continue;
        };
        if let Err(m) = check_username(username) {
            errs.push(place, "username", m);
            continue;
        }
        if c.name.is_some() {
            errs.push(
                place,
                "name",
                "a consumer has no `name` (only credentials do)",
            );
        }
        if c.expires_at.is_some() {
            errs.push(
                place,
                "expires_at",
                "inline plugins on a consumer cannot expire; put the key in a credential",
            );
        }
        check_labels(errs, place, &c.labels);
        let group = match &c.group_id {
            Some(g) => match group_ids.get(&g.0) {
                Some(id) => Some(*id),
                None => {
                    errs.push(
                        place,
                        "group_id",
                        format!("consumer group `{}` does not exist", g.0),
                    );
                    None
                }
            },
            None => None,
        };
        let owner: Arc<str> = username.as_str().into();
        let id = ConsumerId(list.len() as u32);
        let own = compile_consumer_plugins(
            &c.plugins,
            place,
            "plugins",
            &format!("consumer:{username}"),
            errs,
        );
        out.label_headers.extend(
            own.attach_labels
                .iter()
                .flat_map(|a| a.headers.iter().map(|(n, _)| n.clone())),
        );
        let plugins = match group {
            Some(g) => own.over(&group_plugins[g.idx()]),
            None => own,
        };
        let labels = c
            .labels
            .iter()
            .flatten()
            .filter_map(|(k, v)| {
                HeaderValue::from_str(v)
                    .ok()
                    .map(|hv| (k.as_str().into(), hv))
            })
            .collect::<Box<[(Box<str>, HeaderValue)]>>();
        let Ok(username_header) = HeaderValue::from_str(username) else {
            continue;
        };
        if !c.plugins.auth_plugin_names().is_empty() {
            sources.push(CredSource {
                ord,
                consumer: id,
                owner: owner.clone(),
                place: place.clone(),
                plugins_path: "plugins".into(),
                plugins: &c.plugins,
                id: None,
                expires_at: None,
            });
        }
        let mut names: AHashMap<&str, usize> = AHashMap::new();
        for (i, cr) in c.credentials.iter().enumerate() {
            let cplace = Place {
                file: place.file.clone(),
                path: format!("{}.credentials[{i}]", place.path),
            };
            if cr.name.is_empty()
                || cr.name.len() > 256
                || !cr
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                errs.push(
                    &cplace,
                    "name",
                    "must be 1 to 256 characters of [a-zA-Z0-9-_.]",
                );
            }
            if let Some(first) = names.get(cr.name.as_str()) {
                errs.push(
                    &cplace,
                    "name",
                    format!(
                        "consumer `{username}` already has a credential named `{}` at {}.credentials[{first}].name",
                        cr.name, place.path
                    ),
                );
                continue;
            }
            names.insert(cr.name.as_str(), i);
            if cr.id.is_some() {
                errs.push(&cplace, "id", "a nested credential is named by `name`; its id is <username>/credentials/<name>");
            }
            check_labels(errs, &cplace, &cr.labels);
            sources.push(CredSource {
                ord,
                consumer: id,
                owner: owner.clone(),
                place: cplace.clone(),
                plugins_path: "plugins".into(),
                plugins: &cr.plugins,
                id: Some(format!("{username}/credentials/{}", cr.name)),
                expires_at: parse_expiry(errs, &cplace, &cr.expires_at),
            });
        }
        out.by_name.insert(owner.clone(), id);
        list.push(Consumer {
            username: owner,
            username_header,
            group,
            labels,
            plugins,
        });
    }
    for (ord, place, c, id) in id_form {
        let Some((user, _)) = id.0.split_once("/credentials/") else {
            continue;
        };
        let valid = id.0.split_once("/credentials/").is_some_and(|(u, n)| {
            !u.is_empty()
                && !n.is_empty()
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
        if !valid {
            errs.push(
                place,
                "id",
                "must match <username>/credentials/<[a-zA-Z0-9-_.]+>",
            );
            continue;
        }
        for (f, present) in [
            ("username", c.username.is_some()),
            ("group_id", c.group_id.is_some()),
            ("credentials", !c.credentials.is_empty()),
        ] {
            if present {
                errs.push(
                    place,
                    f,
                    "not allowed on a credential (id <username>/credentials/<name>)",
                );
            }
        }
        non_auth_plugins(errs, place, "plugins", &c.plugins);
        check_labels(errs, place, &c.labels);
        let Some(&consumer) = out.by_name.get(user) else {
            errs.push(place, "id", format!("consumer `{user}` does not exist"));
            continue;
        };
        sources.push(CredSource {
            ord,
            consumer,
            owner: list[consumer.idx()].username.clone(),
            place: place.clone(),
            plugins_path: "plugins".into(),
            plugins: &c.plugins,
            id: Some(id.0.clone()),
            expires_at: parse_expiry(errs, place, &c.expires_at),
        });
    }

    // Index every credential, in file order; a credential id may be defined once.
    sources.sort_by_key(|s| s.ord);
    let mut ids: AHashMap<&str, &Place> = AHashMap::new();
    for s in &sources {
        if let Some(id) = s.id.as_deref() {
            if let Some(first) = ids.get(id) {
                errs.push(
                    &s.place,
                    "id",
                    format!(
                        "same id `{id}` as {}",
                        first.named_from(&s.place.file, "id")
                    ),
                );
            } else {
                ids.insert(id, &s.place);
            }
        }
    }
    let mut seen = Seen::default();
    for s in &sources {
        let auth = s.plugins.auth_plugin_names();
        if s.id.is_some() {
            if auth.len() != 1 {
                errs.push(
                    &s.place,
                    &s.plugins_path,
                    format!(
                        "a credential holds exactly one auth plugin, found {}",
                        auth.len()
                    ),
                );
                continue;
            }
            non_auth_plugins(errs, &s.place, &s.plugins_path, s.plugins);
        }
        index_credential(&mut out.creds, &mut seen, s, errs);
    }
    out.credential_count = sources
        .iter()
        .map(|s| s.plugins.auth_plugin_names().len())
        .sum();
    // Built by pushing; trim the growth slack, it is paid per consumer for the snapshot's life.
    out.creds.shrink_to_fit();
    out.list = list.into_boxed_slice();
    out.groups = groups_out.into_boxed_slice();
    out
}

/// One error per non-auth plugin found in a credential, at the plugin's own field.
fn non_auth_plugins(errs: &mut Errs, place: &Place, base: &str, plugins: &ConsumerPluginsConf) {
    for name in plugins.other_plugin_names() {
        errs.push(
            place,
            &format!("{base}.{name}"),
            format!("`{name}` is not an auth plugin: a credential holds only auth plugins"),
        );
    }
}

fn parse_expiry(errs: &mut Errs, place: &Place, v: &Option<String>) -> Option<SystemTime> {
    let v = v.as_ref()?;
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from);
    if t.is_none() {
        errs.push(
            place,
            "expires_at",
            format!("`{v}` is not an RFC 3339 time (2026-12-31T23:59:59Z)"),
        );
    }
    t
}

fn index_credential(idx: &mut CredentialIndex, seen: &mut Seen, s: &CredSource, errs: &mut Errs) {
    let cred = CredentialId(idx.entries.len() as u32);
    let mut added = false;
    let base = format!("{}.", s.plugins_path);
    if let Some(k) = &s.plugins.key_auth {
        let field = format!("{base}key-auth");
        match crate::auth::key_auth::compile_credential(k) {
            Ok((digest, which)) => {
                if seen.claim(
                    errs,
                    "key-auth",
                    "key",
                    digest.to_vec(),
                    s,
                    &format!("{field}.{which}"),
                ) {
                    idx.key_auth.insert(digest, cred);
                    added = true;
                }
            }
            Err((f, m)) => errs.push(&s.place, &format!("{field}.{f}"), m),
        }
    }
    if let Some(b) = &s.plugins.basic_auth {
        let field = format!("{base}basic-auth");
        match crate::auth::basic_auth::compile_credential(b) {
            Ok((user, check)) => {
                if seen.claim(
                    errs,
                    "basic-auth",
                    "username",
                    user.as_bytes().to_vec(),
                    s,
                    &format!("{field}.username"),
                ) {
                    idx.basic_auth.insert(user.into(), (cred, check));
                    added = true;
                }
            }
            Err((f, m)) => errs.push(&s.place, &format!("{field}.{f}"), m),
        }
    }
    if let Some(h) = &s.plugins.hmac_auth {
        let field = format!("{base}hmac-auth");
        match crate::auth::hmac_auth::compile_credential(h) {
            Ok((key_id, secret)) => {
                if seen.claim(
                    errs,
                    "hmac-auth",
                    "key_id",
                    key_id.as_bytes().to_vec(),
                    s,
                    &format!("{field}.key_id"),
                ) {
                    idx.hmac_auth.insert(key_id.into(), (cred, secret));
                    added = true;
                }
            }
            Err((f, m)) => errs.push(&s.place, &format!("{field}.{f}"), m),
        }
    }
    if let Some(j) = &s.plugins.jwt_auth {
        let field = format!("{base}jwt-auth");
        match crate::auth::jwt_auth::compile_credential(j) {
            Ok((key, jk)) => {
                if seen.claim(
                    errs,
                    "jwt-auth",
                    "key",
                    key.as_bytes().to_vec(),
                    s,
                    &format!("{field}.key"),
                ) {
                    idx.jwt_auth.insert(key.into(), (cred, jk));
                    added = true;
                }
            }
            Err((f, m)) => errs.push(&s.place, &format!("{field}.{f}"), m),
        }
    }
    if added || !s.plugins.auth_plugin_names().is_empty() {
        let id = s.id.as_deref().and_then(|i| HeaderValue::from_str(i).ok());
        let header =
            s.id.as_deref()
                .and_then(|i| i.rsplit("/credentials/").next())
                .and_then(|n| HeaderValue::from_str(n).ok());
        // An inline consumer with several auth plugins shares one entry; each counts as a credential.
        idx.entries.push(Credential {
            consumer: s.consumer,
            id,
            header,
            expires_at: s.expires_at,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(check_username("Fetch-Bot_1").is_ok());
        assert!(check_username("jwt&auth").is_err());
        assert!(check_username(&"a".repeat(513)).is_err());
    }

    #[test]
    fn expiry_forms() {
        let mut e = Errs::default();
        let p = Place {
            file: "f".into(),
            path: "x".into(),
        };
        let z = parse_expiry(&mut e, &p, &Some("2030-01-01T00:00:00Z".into())).unwrap();
        let o = parse_expiry(&mut e, &p, &Some("2030-01-01T02:00:00+02:00".into())).unwrap();
        assert_eq!(z, o);
        assert!(e.0.is_empty());
        let lower = parse_expiry(&mut e, &p, &Some("2030-01-01t00:00:00z".into())).unwrap();
        assert_eq!(z, lower);
        let west = parse_expiry(&mut e, &p, &Some("2029-12-31T19:00:00-05:00".into())).unwrap();
        assert_eq!(z, west);
        assert!(e.0.is_empty());
        parse_expiry(&mut e, &p, &Some("tomorrow".into()));
        parse_expiry(&mut e, &p, &Some("2030-01-01T00:00:00".into()));
        assert_eq!(e.0.len(), 2);
    }
}
