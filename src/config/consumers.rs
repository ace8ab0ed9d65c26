//! Compiles `consumers` entries (consumers, nested and id-form credentials) and
//! `consumer_groups` into [`Consumers`]: names, labels, groups, plugins merged under the group's,
//! and the credential index with duplicates named at both places.
//!
//! A [`Builder`] takes the entries one at a time, as the files are read, and compiles each at
//! once: a million consumers never exist as raw config all together. What depends on entries
//! that may come later (consumer groups, id-form credentials of a consumer defined further on)
//! is finished in [`Builder::finish`]. Places are kept as (file, index) numbers and written out
//! only for an error.
//!
//! A reload's builder shares what it can with the consumers being replaced: a consumer whose
//! compiled form depends on its own entry alone (no group, no plugins of its own, key-auth
//! credentials only) keeps the hash of that entry, and an entry of the new files with the
//! same hash takes the old `Arc<Consumer>` as it is ([`Builder::reuse`]).

use std::sync::Arc;
use std::time::SystemTime;

use ahash::{AHashMap, AHashSet};
use http::HeaderValue;

use crate::auth::credentials::{Credential, CredentialIndex};
use crate::auth::key_auth::KeySource;
use crate::config::error::{Errs, Place};
use crate::config::raw::{ConsumerConf, ConsumerGroupConf};
use crate::config::yaml::{ItemHash, NO_HASH};
use crate::consumer::{Consumer, ConsumerGroup, Consumers, NameIndex};
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

/// A consumer id for an entry that failed to parse or compile: references to its name are not
/// reported as missing (its own error says what is wrong), and nothing indexes with it, since a
/// config with an error never becomes a snapshot.
const BROKEN: ConsumerId = ConsumerId(u32::MAX);

/// Every consumer name a config gives: the consumers of its list, and the names of entries
/// that failed (found as [`BROKEN`]). Read through [`Names::find`] with the list of the
/// [`Consumers`] it came with; needed until the route plugins are compiled (their
/// `anonymous_consumer`), never kept in a snapshot.
#[derive(Default)]
pub(crate) struct Names {
    index: NameIndex,
    broken: AHashSet<Box<str>>,
}

impl Names {
    /// The consumer named `name` in `list` ([`BROKEN`] for an entry that failed).
    pub(crate) fn find(&self, list: &[Arc<Consumer>], name: &str) -> Option<ConsumerId> {
        match self.index.get(list, name) {
            Some(id) => Some(id),
            None => self.broken.contains(name).then_some(BROKEN),
        }
    }
}

/// `cred` of an [`Origin`] for a consumer's inline plugins or an id-form entry.
const NO_CRED: u32 = u32::MAX;

/// Where a credential was written: entry order across files, file, index in `consumers`, index
/// in its consumer's `credentials` (or [`NO_CRED`]), and whether a key-auth key was given as
/// `key_hash`. Kept per credential until [`Builder::finish`], to name the first place of a
/// duplicate without keeping a copy of every key.
#[derive(Clone, Copy)]
struct Origin {
    ord: u32,
    file: u32,
    index: u32,
    cred: u32,
    key_hash: bool,
}

/// A credential to index.
struct Src<'a> {
    origin: Origin,
    consumer: ConsumerId,
    plugins: &'a ConsumerPluginsConf,
    /// The full id, `<username>/credentials/<name>`; None for inline plugins.
    id: Option<String>,
    expires_at: Option<SystemTime>,
}

/// The place of `consumers[index]` (and `.credentials[cred]`) in `file`.
fn place_at(file: &Arc<str>, index: u32, cred: u32) -> Place {
    let path = if cred == NO_CRED {
        format!("consumers[{index}]")
    } else {
        format!("consumers[{index}].credentials[{cred}]")
    };
    Place {
        file: file.clone(),
        path,
    }
}

/// The error of a `key_hash` met by a load that digests keys with keyed SipHash (the cheaper
/// kind, which cannot index a key known only by its SHA-256): such a load is run again with
/// SHA-256 digests (`config::load`), and its errors are never shown.
pub(crate) const NEEDS_SHA_KEYS: &str = "needs the SHA-256 key index (the load runs again with it)";

/// Whether a config's consumers give any key-auth `key_hash`.
pub(crate) fn any_key_hash<'c>(items: impl IntoIterator<Item = &'c ConsumerConf>) -> bool {
    let has = |p: &ConsumerPluginsConf| p.key_auth.as_ref().is_some_and(|k| k.key_hash.is_some());
    items
        .into_iter()
        .any(|c| has(&c.plugins) || c.credentials.iter().any(|cr| has(&cr.plugins)))
}

/// Number of auth plugins in `p`, without building the list of their names.
fn auth_count(p: &ConsumerPluginsConf) -> usize {
    usize::from(p.key_auth.is_some())
        + usize::from(p.basic_auth.is_some())
        + usize::from(p.hmac_auth.is_some())
        + usize::from(p.jwt_auth.is_some())
}

/// Compiles `consumers` entries as they are read; [`Builder::finish`] adds the groups and
/// id-form credentials and returns the [`Consumers`]. With the consumers of the config being
/// replaced (`old`), an entry that reads exactly as one of them did is not compiled again:
/// the old consumer is shared ([`Builder::reuse`]).
pub(crate) struct Builder<'a> {
    /// The consumers of the config a reload replaces.
    old: Option<&'a Consumers>,
    /// For each old consumer, its number in `list` when shared (else `u32::MAX`).
    reused: Vec<u32>,
    /// Consumers shared with `old`.
    pub reused_count: usize,
    /// Entries that read as an old consumer, shared or not (a name twice is an error): a load
    /// with any and an error runs again without sharing.
    pub reuse_asked: usize,
    files: Vec<Arc<str>>,
    next_ord: u32,
    list: Vec<Arc<Consumer>>,
    /// (file, index) of each consumer of `list`.
    at: Vec<(u32, u32)>,
    /// Consumers with a `group_id`, resolved when the groups are known.
    grouped: Vec<(ConsumerId, Box<str>)>,
    /// The names of `list`, and of the entries that failed.
    names: Names,
    /// id-form entries, compiled when every consumer is known: (order, file, index, conf).
    id_form: Vec<(u32, u32, u32, ConsumerConf)>,
    /// The key (username, else id) of each id-form entry, for duplicates.
    id_form_keys: AHashMap<String, (u32, u32)>,
    creds: CredentialIndex,
    /// The origin of each credential but the shared ones (see [`Builder::origin`]).
    origins: Vec<Origin>,
    /// The credentials of shared consumers, `creds.entries[shared_creds]`, copied in
    /// [`Builder::finish`]: their origins are not kept (only an error, which makes the load run
    /// again without sharing, would read them).
    shared_creds: std::ops::Range<usize>,
    credential_count: usize,
    label_headers: Vec<http::HeaderName>,
    /// Shared by every consumer without plugins of its own.
    empty: Arc<PluginSet>,
    /// Errors found so far; `config::compile` goes on with them.
    pub errs: Errs,
}

impl Default for Builder<'_> {
    fn default() -> Self {
        Builder {
            old: None,
            reused: Vec::new(),
            reused_count: 0,
            reuse_asked: 0,
            files: Vec::new(),
            next_ord: 0,
            list: Vec::new(),
            at: Vec::new(),
            grouped: Vec::new(),
            names: Names::default(),
            id_form: Vec::new(),
            id_form_keys: AHashMap::new(),
            creds: CredentialIndex::default(),
            origins: Vec::new(),
            shared_creds: 0..0,
            credential_count: 0,
            label_headers: Vec::new(),
            empty: Arc::new(PluginSet::default()),
            errs: Errs::default(),
        }
    }
}

/// Finds the old consumer an item hash belongs to: first where the last one was found (a file
/// read again is mostly in the same order), else through a map built the first time it is needed.
pub(crate) struct Matcher<'a> {
    old: &'a [Arc<Consumer>],
    next: usize,
    map: Option<AHashMap<u64, u32>>,
}

impl<'a> Matcher<'a> {
    pub(crate) fn new(old: &'a Consumers) -> Matcher<'a> {
        Matcher {
            old: &old.list,
            next: 0,
            map: None,
        }
    }

    pub(crate) fn find(&mut self, h: ItemHash) -> Option<u32> {
        if h == NO_HASH {
            return None;
        }
        let end = (self.next + 8).min(self.old.len());
        let at = match (self.next..end).find(|&k| self.old[k].item_hash == h) {
            Some(k) => k,
            None => {
                let old = self.old;
                let map = self.map.get_or_insert_with(|| {
                    let mut m = AHashMap::with_capacity(old.len());
                    for (k, c) in old.iter().enumerate() {
                        if c.item_hash != NO_HASH {
                            m.insert(c.item_hash[0], k as u32);
                        }
                    }
                    m
                });
                let k = *map.get(&h[0])? as usize;
                if self.old[k].item_hash != h {
                    return None;
                }
                k
            }
        };
        self.next = at + 1;
        Some(at as u32)
    }
}

impl<'a> Builder<'a> {
    /// A builder that shares what it can with `old`, the consumers of the config a reload
    /// replaces.
    pub(crate) fn reusing(old: &'a Consumers) -> Builder<'a> {
        let mut b = Builder {
            old: Some(old),
            reused: vec![u32::MAX; old.list.len()],
            ..Builder::default()
        };
        // Shared keys keep their digests, so they must be made the same way.
        b.creds.key_digest = old.creds.key_digest;
        b
    }

    /// A builder that digests keys as `kind` says ([`NEEDS_SHA_KEYS`]).
    pub(crate) fn with_key_digest(kind: crate::secret::KeyDigestKind) -> Builder<'a> {
        let mut b = Builder::default();
        b.creds.key_digest = kind;
        b
    }

    /// The consumers shared from, if any.
    pub(crate) fn old(&self) -> Option<&'a Consumers> {
        self.old
    }

    /// Registers a file; its entries are added with the number returned.
    pub(crate) fn file(&mut self, name: &str) -> u32 {
        self.files.push(name.into());
        (self.files.len() - 1) as u32
    }

    /// Makes room for `n` more consumers (a guess from the file size is fine).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.list.reserve(n);
        self.at.reserve(n);
        self.names.index.reserve(&self.list, n);
        // A reload takes most keys from the old table (`share_key_index`): a table sized for
        // all of them would be touched by the few compiled anew all over, and with huge pages
        // each touch is 2 MB resident.
        if self.old.is_none() {
            self.creds.key_auth.reserve(n);
        }
        self.creds.entries.reserve(n);
        self.origins.reserve(n);
    }

    /// An entry that failed to parse, known by `name` (its username or id): references to it
    /// are not reported as missing.
    pub(crate) fn broken(&mut self, name: String) {
        self.next_ord += 1;
        if self.find(&name).is_none() {
            self.names.broken.insert(name.into());
        }
    }

    /// The consumer named `name` so far ([`BROKEN`] for an entry that failed).
    fn find(&self, name: &str) -> Option<ConsumerId> {
        self.names.find(&self.list, name)
    }

    fn place(&self, file: u32, index: u32, cred: u32) -> Place {
        place_at(&self.files[file as usize], index, cred)
    }

    fn same_username(&mut self, file: u32, index: u32, key: &str, first: (u32, u32)) {
        let what = if key.contains("/credentials/") {
            "id"
        } else {
            "username"
        };
        let place = self.place(file, index, NO_CRED);
        let prev = self.place(first.0, first.1, NO_CRED);
        self.errs.push(
            &place,
            what,
            format!(
                "same {what} `{key}` as {}",
                prev.named_from(&place.file, what)
            ),
        );
    }

    /// `consumers[index]` of file `file` reads as old consumer `old` did: shares it. Its
    /// credentials are indexed in [`Builder::finish`], from the old index.
    pub(crate) fn reuse(&mut self, file: u32, index: u32, old: u32) {
        let Some(prev) = self.old else { return };
        self.reuse_asked += 1;
        self.next_ord += 1;
        let c = &prev.list[old as usize];
        let first = match self.find(&c.username) {
            Some(BROKEN) => return,
            Some(c) => Some(self.at[c.idx()]),
            None => self.id_form_keys.get(&*c.username).copied(),
        };
        if let Some(first) = first {
            self.same_username(file, index, &c.username.clone(), first);
            return;
        }
        let id = ConsumerId(self.list.len() as u32);
        self.at.push((file, index));
        self.list.push(c.clone());
        self.names.index.insert(&self.list, id);
        self.reused[old as usize] = id.0;
        self.reused_count += 1;
    }

    /// Compiles `consumers[index]` of file `file`.
    pub(crate) fn add(&mut self, file: u32, index: u32, c: ConsumerConf) {
        self.add_hashed(file, index, c, None);
    }

    /// [`Builder::add`] for an item whose hash is `hash` (None: unknown, or it uses anchors or
    /// aliases), kept in the consumer for the next reload.
    pub(crate) fn add_hashed(
        &mut self,
        file: u32,
        index: u32,
        c: ConsumerConf,
        hash: Option<ItemHash>,
    ) {
        let errors_before = self.errs.0.len();
        let ord = self.next_ord;
        self.next_ord += 1;
        if let Some(id) = c.id.as_ref().filter(|id| id.0.contains("/credentials/")) {
            let key = c.username.clone().unwrap_or_else(|| id.0.clone());
            let first = self.id_form_keys.get(&key).copied().or_else(|| {
                self.find(&key)
                    .filter(|&c| c != BROKEN)
                    .map(|c| self.at[c.idx()])
            });
            if let Some(first) = first {
                self.same_username(file, index, &key, first);
                return;
            }
            self.id_form_keys.insert(key, (file, index));
            self.id_form.push((ord, file, index, c));
            return;
        }
        let fname = self.files[file as usize].clone();
        let place = |cred: u32| place_at(&fname, index, cred);
        let Some(username) = &c.username else {
            self.errs.push(
                &place(NO_CRED),
                "username",
                "required (or an `id` of the form <username>/credentials/<name>)",
            );
            return;
        };
        let first = match self.find(username) {
            Some(BROKEN) => return,
            Some(c) => Some(self.at[c.idx()]),
            None => self.id_form_keys.get(username).copied(),
        };
        if let Some(first) = first {
            self.same_username(file, index, username, first);
            return;
        }
        if let Err(m) = check_username(username) {
            self.errs.push(&place(NO_CRED), "username", m);
            self.names.broken.insert(username.as_str().into());
            return;
        }
        if c.name.is_some() {
            self.errs.push(
                &place(NO_CRED),
                "name",
                "a consumer has no `name` (only credentials do)",
            );
        }
        if c.expires_at.is_some() {
            self.errs.push(
                &place(NO_CRED),
                "expires_at",
                "inline plugins on a consumer cannot expire; put the key in a credential",
            );
        }
        if c.labels.is_some() {
            check_labels(&mut self.errs, &place(NO_CRED), &c.labels);
        }
        let id = ConsumerId(self.list.len() as u32);
        if let Some(g) = &c.group_id {
            self.grouped.push((id, g.0.as_str().into()));
        }
        let plugins = if c.plugins.other_plugin_names().is_empty() {
            self.empty.clone()
        } else {
            let mut own = compile_consumer_plugins(
                &c.plugins,
                &place(NO_CRED),
                "plugins",
                &format!("consumer:{username}"),
                &mut self.errs,
            );
            self.label_headers.extend(own.identity_headers().cloned());
            if own.extra.is_empty() {
                own.extra = self.empty.extra.clone();
            }
            Arc::new(own)
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
            return;
        };
        let owner: Arc<str> = username.as_str().into();
        self.at.push((file, index));
        // Shared by a later reload only when nothing but the item decides what it compiles to:
        // no group, no plugins of its own (whose confs may be checked against others'), and
        // only key-auth credentials (their keys are found again in the old index).
        // A key read from the environment (`$env://VAR`) is read again at each load, in case;
        // a `key_hash` too, so that every one is counted (`CredentialIndex::key_hashes`).
        let key_auth_only = |p: &ConsumerPluginsConf| {
            p.basic_auth.is_none()
                && p.hmac_auth.is_none()
                && p.jwt_auth.is_none()
                && p.key_auth.as_ref().is_none_or(|k| {
                    k.key_hash.is_none() && !k.key.as_deref().is_some_and(|k| k.starts_with('$'))
                })
        };
        let shareable = c.group_id.is_none()
            && Arc::ptr_eq(&plugins, &self.empty)
            && key_auth_only(&c.plugins)
            && c.credentials
                .iter()
                .all(|cr| key_auth_only(&cr.plugins) && cr.plugins.key_auth.is_some());
        let id_slot = self.list.len();
        self.list.push(Arc::new(Consumer {
            username: owner,
            username_header,
            group: None,
            labels,
            plugins,
            item_hash: NO_HASH,
        }));
        self.names.index.insert(&self.list, id);
        let n = auth_count(&c.plugins);
        if n > 0 {
            self.credential_count += n;
            self.index(Src {
                origin: Origin {
                    ord,
                    file,
                    index,
                    cred: NO_CRED,
                    key_hash: false,
                },
                consumer: id,
                plugins: &c.plugins,
                id: None,
                expires_at: None,
            });
        }
        // Names seen so far; a consumer has few credentials, so a list is quicker than a map.
        let mut names: Vec<(&str, usize)> = Vec::new();
        for (i, cr) in c.credentials.iter().enumerate() {
            let ci = i as u32;
            if cr.name.is_empty()
                || cr.name.len() > 256
                || !cr
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                self.errs.push(
                    &place(ci),
                    "name",
                    "must be 1 to 256 characters of [a-zA-Z0-9-_.]",
                );
            }
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == cr.name) {
                self.errs.push(
                    &place(ci),
                    "name",
                    format!(
                        "consumer `{username}` already has a credential named `{}` at consumers[{index}].credentials[{first}].name",
                        cr.name
                    ),
                );
                continue;
            }
            names.push((cr.name.as_str(), i));
            if cr.id.is_some() {
                self.errs.push(&place(ci), "id", "a nested credential is named by `name`; its id is <username>/credentials/<name>");
            }
            if cr.labels.is_some() {
                check_labels(&mut self.errs, &place(ci), &cr.labels);
            }
            let expires_at = match &cr.expires_at {
                Some(_) => parse_expiry(&mut self.errs, &place(ci), &cr.expires_at),
                None => None,
            };
            non_auth_plugins(&mut self.errs, &place(ci), "plugins", &cr.plugins);
            let n = auth_count(&cr.plugins);
            self.credential_count += n;
            if n != 1 {
                self.errs.push(
                    &place(ci),
                    "plugins",
                    format!("a credential holds exactly one auth plugin, found {n}"),
                );
                continue;
            }
            self.index(Src {
                origin: Origin {
                    ord,
                    file,
                    index,
                    cred: ci,
                    key_hash: false,
                },
                consumer: id,
                plugins: &cr.plugins,
                id: Some(format!("{username}/credentials/{}", cr.name)),
                expires_at,
            });
        }
        if let Some(h) = hash
            && shareable
            && self.errs.0.len() == errors_before
            && let Some(c) = self.list.get_mut(id_slot).and_then(Arc::get_mut)
        {
            c.item_hash = h;
        }
    }

    /// Where credential `k` was written (a shared consumer's: at its consumer, roughly).
    fn origin(&self, k: usize) -> Origin {
        let shared = &self.shared_creds;
        if k < shared.start {
            return self.origins[k];
        }
        if k >= shared.end {
            return self.origins[k - shared.len()];
        }
        let e = &self.creds.entries[k];
        let (file, index) = self.at[e.consumer.idx()];
        Origin {
            ord: u32::MAX,
            file,
            index,
            // A nested credential (it has an id) must still meet an id-form one of the same id.
            cred: if e.id().is_some() { 0 } else { NO_CRED },
            key_hash: false,
        }
    }

    /// Indexes the keys of the shared consumers' credentials one by one, from `old`'s index.
    fn share_keys_one_by_one(&mut self, old: &Consumers) {
        use std::collections::hash_map::Entry;
        for (digest, &cid) in &old.creds.key_auth {
            if cid.idx() >= old.own_credentials {
                continue;
            }
            let prev = old.creds.get(cid);
            let to = self.reused[prev.consumer.idx()];
            if to == u32::MAX {
                continue;
            }
            let cred = CredentialId(self.creds.entries.len() as u32);
            match self.creds.key_auth.entry(*digest) {
                Entry::Vacant(v) => {
                    v.insert(cred);
                }
                Entry::Occupied(_) => {
                    let (f, i) = self.at[to as usize];
                    self.key_shared_twice(f, i);
                    continue;
                }
            }
            self.creds.entries.push(prev.for_consumer(ConsumerId(to)));
            self.credential_count += 1;
        }
    }

    /// [`Builder::share_keys_one_by_one`] when most consumers are shared: `old`'s key-auth
    /// table is copied whole (one copy of memory rather than a million random inserts), the
    /// keys of consumers not shared are dropped and the rest renumbered in one pass over it,
    /// then the keys compiled by this load are added to it.
    fn share_key_index(&mut self, old: &Consumers) {
        use std::collections::hash_map::Entry;
        let base = self.creds.entries.len();
        let mut renumber = vec![u32::MAX; old.own_credentials];
        for (k, prev) in old.creds.entries[..old.own_credentials].iter().enumerate() {
            let to = self.reused[prev.consumer.idx()];
            if to != u32::MAX {
                renumber[k] = self.creds.entries.len() as u32;
                self.creds.entries.push(prev.for_consumer(ConsumerId(to)));
            }
        }
        self.credential_count += self.creds.entries.len() - base;
        let mut index = old.creds.key_auth.clone();
        index.retain(|_, cid| match renumber.get(cid.idx()) {
            Some(&n) if n != u32::MAX => {
                *cid = CredentialId(n);
                true
            }
            _ => false,
        });
        let fresh = std::mem::replace(&mut self.creds.key_auth, index);
        for (digest, cid) in fresh {
            match self.creds.key_auth.entry(digest) {
                Entry::Vacant(v) => {
                    v.insert(cid);
                }
                Entry::Occupied(_) => {
                    let o = self.origins[cid.idx()];
                    self.key_shared_twice(o.file, o.index);
                }
            }
        }
    }

    /// A key of a shared consumer is also another credential's. Named exactly by the load that
    /// runs again without sharing (any error makes it run again).
    fn key_shared_twice(&mut self, file: u32, index: u32) {
        let place = self.place(file, index, NO_CRED);
        self.errs.push(
            &place,
            "plugins.key-auth.key",
            "same key as another credential",
        );
    }

    /// Reports a key claimed twice: on the later of the two places, naming the earlier.
    fn duplicate(
        &mut self,
        cur: (&Origin, ConsumerId),
        first: CredentialId,
        what: &str,
        field: impl Fn(&Origin) -> String,
    ) {
        let f = self.origin(first.idx());
        let f_owner = self.creds.entries[first.idx()].consumer;
        let (late, early, early_owner) = if f.ord <= cur.0.ord {
            (*cur.0, f, f_owner)
        } else {
            (f, *cur.0, cur.1)
        };
        let late_place = self.place(late.file, late.index, late.cred);
        let early_place = self.place(early.file, early.index, early.cred);
        let owner = &self.list[early_owner.idx()].username;
        let msg = format!(
            "same {what} as {} ({owner})",
            early_place.named_from(&late_place.file, &field(&early))
        );
        self.errs.push(&late_place, &field(&late), msg);
    }

    fn index(&mut self, s: Src<'_>) {
        use std::collections::hash_map::Entry;
        let cred = CredentialId(self.creds.entries.len() as u32);
        let mut origin = s.origin;
        let (pf, pi, pc) = (origin.file, origin.index, origin.cred);
        let err_place = move |b: &Builder<'_>| b.place(pf, pi, pc);
        if let Some(k) = &s.plugins.key_auth {
            match crate::auth::key_auth::compile_credential(k) {
                Ok(key) => {
                    origin.key_hash = matches!(key, KeySource::Hash(_));
                    self.creds.key_hashes += usize::from(origin.key_hash);
                    match key.digest(self.creds.key_digest) {
                        Some(digest) => match self.creds.key_auth.entry(digest) {
                            Entry::Vacant(v) => {
                                v.insert(cred);
                            }
                            Entry::Occupied(o) => {
                                let first = *o.get();
                                self.duplicate((&origin, s.consumer), first, "key", |o| {
                                    let which = if o.key_hash { "key_hash" } else { "key" };
                                    format!("plugins.key-auth.{which}")
                                });
                            }
                        },
                        // The load runs again with SHA-256 digests (config::load); until then
                        // this credential is missing, so this load must not be taken.
                        None => {
                            let p = err_place(self);
                            self.errs
                                .push(&p, "plugins.key-auth.key_hash", NEEDS_SHA_KEYS);
                        }
                    }
                }
                Err((f, m)) => {
                    let p = err_place(self);
                    self.errs.push(&p, &format!("plugins.key-auth.{f}"), m);
                }
            }
        }
        if let Some(b) = &s.plugins.basic_auth {
            match crate::auth::basic_auth::compile_credential(b) {
                Ok((user, check)) => match self.creds.basic_auth.get(user.as_str()) {
                    Some(&(first, _)) => {
                        self.duplicate((&origin, s.consumer), first, "username", |_| {
                            "plugins.basic-auth.username".into()
                        });
                    }
                    None => {
                        self.creds.basic_auth.insert(user.into(), (cred, check));
                    }
                },
                Err((f, m)) => {
                    let p = err_place(self);
                    self.errs.push(&p, &format!("plugins.basic-auth.{f}"), m);
                }
            }
        }
        if let Some(h) = &s.plugins.hmac_auth {
            match crate::auth::hmac_auth::compile_credential(h) {
                Ok((key_id, secret)) => match self.creds.hmac_auth.get(key_id.as_str()) {
                    Some(&(first, _)) => {
                        self.duplicate((&origin, s.consumer), first, "key_id", |_| {
                            "plugins.hmac-auth.key_id".into()
                        });
                    }
                    None => {
                        self.creds.hmac_auth.insert(key_id.into(), (cred, secret));
                    }
                },
                Err((f, m)) => {
                    let p = err_place(self);
                    self.errs.push(&p, &format!("plugins.hmac-auth.{f}"), m);
                }
            }
        }
        if let Some(j) = &s.plugins.jwt_auth {
            match crate::auth::jwt_auth::compile_credential(j) {
                Ok((key, jk)) => match self.creds.jwt_auth.get(key.as_str()) {
                    Some(&(first, _)) => {
                        self.duplicate((&origin, s.consumer), first, "key", |_| {
                            "plugins.jwt-auth.key".into()
                        });
                    }
                    None => {
                        self.creds.jwt_auth.insert(key.into(), (cred, jk));
                    }
                },
                Err((f, m)) => {
                    let p = err_place(self);
                    self.errs.push(&p, &format!("plugins.jwt-auth.{f}"), m);
                }
            }
        }
        // An inline consumer with several auth plugins shares one entry; each counts as a credential.
        let named = s.id.as_deref().and_then(|i| {
            let name = i.rsplit("/credentials/").next()?;
            Some((
                HeaderValue::from_str(i).ok()?,
                HeaderValue::from_str(name).ok()?,
            ))
        });
        self.creds.entries.push(match named {
            Some((id, header)) => Credential::named(s.consumer, id, header, s.expires_at),
            None => Credential::inline(s.consumer),
        });
        self.origins.push(origin);
    }

    /// Compiles the groups, gives each consumer its group, indexes the id-form credentials and
    /// returns every consumer, with their [`Names`]. `broken_groups` are groups that failed to
    /// parse; with `all_broken` (a file could not be read whole) no reference is reported as
    /// missing.
    pub(crate) fn finish(
        mut self,
        groups: &[(Place, &ConsumerGroupConf)],
        broken_groups: &AHashSet<String>,
        all_broken: bool,
        errs: &mut Errs,
    ) -> (Consumers, Names) {
        std::mem::swap(&mut self.errs, errs);
        let mut out = Consumers::default();
        // Groups.
        let mut group_ids: AHashMap<&str, GroupId> = AHashMap::new();
        let mut group_plugins: Vec<PluginSet> = Vec::new();
        let mut groups_out = Vec::new();
        for (place, g) in groups {
            if auth_count(&g.plugins) > 0 {
                self.errs.push(
                    place,
                    "plugins",
                    "auth plugins belong on consumers and credentials, not on a consumer group",
                );
            }
            check_labels(&mut self.errs, place, &g.labels);
            let set = compile_consumer_plugins(
                &g.plugins,
                place,
                "plugins",
                &format!("consumer_group:{}", g.id.0),
                &mut self.errs,
            );
            group_ids.insert(g.id.0.as_str(), GroupId(groups_out.len() as u32));
            self.label_headers.extend(set.identity_headers().cloned());
            group_plugins.push(set);
            groups_out.push(ConsumerGroup {
                id: g.id.0.as_str().into(),
            });
        }
        for (id, g) in std::mem::take(&mut self.grouped) {
            match group_ids.get(&*g) {
                Some(&gid) => {
                    // Never shared (a consumer with a group is not): the only reference.
                    if let Some(c) = Arc::get_mut(&mut self.list[id.idx()]) {
                        c.group = Some(gid);
                        c.plugins = Arc::new(c.plugins.over(&group_plugins[gid.idx()]));
                    }
                }
                None if all_broken || broken_groups.contains(&*g) => {}
                None => {
                    let (f, i) = self.at[id.idx()];
                    let place = self.place(f, i, NO_CRED);
                    self.errs.push(
                        &place,
                        "group_id",
                        format!("consumer group `{g}` does not exist"),
                    );
                }
            }
        }

        // Credentials of the consumers shared with the old config, found in its key-auth index
        // (a shared consumer has only key-auth credentials, each one key there).
        let shared_start = self.creds.entries.len();
        if let Some(old) = self.old.filter(|_| self.reused_count > 0) {
            if self.reused_count >= old.list.len() / 2 {
                self.share_key_index(old);
            } else {
                self.share_keys_one_by_one(old);
            }
        }
        let own_credentials = self.creds.entries.len();
        self.shared_creds = shared_start..own_credentials;

        // id-form credentials, in file order.
        let mut id_form_ids: AHashMap<String, Origin> = AHashMap::new();
        for (ord, file, index, c) in std::mem::take(&mut self.id_form) {
            let place = self.place(file, index, NO_CRED);
            let Some(id) = c.id.as_ref() else { continue };
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
                self.errs.push(
                    &place,
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
                    self.errs.push(
                        &place,
                        f,
                        "not allowed on a credential (id <username>/credentials/<name>)",
                    );
                }
            }
            non_auth_plugins(&mut self.errs, &place, "plugins", &c.plugins);
            check_labels(&mut self.errs, &place, &c.labels);
            let consumer = match self.find(user) {
                Some(BROKEN) => continue,
                Some(c) => c,
                None => {
                    if !all_broken {
                        self.errs
                            .push(&place, "id", format!("consumer `{user}` does not exist"));
                    }
                    continue;
                }
            };
            let expires_at = parse_expiry(&mut self.errs, &place, &c.expires_at);
            let n = auth_count(&c.plugins);
            self.credential_count += n;
            let origin = Origin {
                ord,
                file,
                index,
                cred: NO_CRED,
                key_hash: false,
            };
            id_form_ids.insert(id.0.clone(), origin);
            if n != 1 {
                self.errs.push(
                    &place,
                    "plugins",
                    format!("a credential holds exactly one auth plugin, found {n}"),
                );
                continue;
            }
            self.index(Src {
                origin,
                consumer,
                plugins: &c.plugins,
                id: Some(id.0.clone()),
                expires_at,
            });
        }
        // A nested credential and an id-form one with the same id: reported on the later.
        if !id_form_ids.is_empty() {
            for (k, e) in self.creds.entries.iter().enumerate() {
                let o = self.origin(k);
                if o.cred == NO_CRED {
                    continue;
                }
                let Some(id) = e.id().and_then(|v| v.to_str().ok()) else {
                    continue;
                };
                let Some(other) = id_form_ids.get(id) else {
                    continue;
                };
                let (late, early) = if other.ord < o.ord {
                    (o, *other)
                } else {
                    (*other, o)
                };
                let late_place = place_at(&self.files[late.file as usize], late.index, late.cred);
                let early_place =
                    place_at(&self.files[early.file as usize], early.index, early.cred);
                self.errs.push(
                    &late_place,
                    "id",
                    format!(
                        "same id `{id}` as {}",
                        early_place.named_from(&late_place.file, "id")
                    ),
                );
            }
        }

        std::mem::swap(&mut self.errs, errs);
        // Built by pushing; trim the growth slack, it is paid per consumer for the snapshot's life.
        self.creds.shrink_to_fit();
        out.creds = self.creds;
        out.credential_count = self.credential_count;
        out.own_credentials = own_credentials;
        out.label_headers = self.label_headers;
        out.list = self.list.into_boxed_slice();
        out.groups = groups_out.into_boxed_slice();
        (out, self.names)
    }
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
