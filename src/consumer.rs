//! Consumers and consumer groups of a snapshot, with the credential index they own. Compiled by
//! `config::consumers`.

use std::sync::Arc;

use http::HeaderValue;

use crate::auth::credentials::{Credential, CredentialIndex};
use crate::ids::{ConsumerId, CredentialId, GroupId};
use crate::plugins::PluginSet;

/// A consumer with its group's plugins merged under its own.
#[derive(Debug)]
pub struct Consumer {
    pub username: Arc<str>,
    pub username_header: HeaderValue,
    pub group: Option<GroupId>,
    /// Labels as header values; a consumer has few, so a slice is smaller than a map.
    pub labels: Box<[(Box<str>, HeaderValue)]>,
    /// Consumer over group, per plugin; one shared set for every consumer without plugins of
    /// its own (most of a million consumers that each hold only a key).
    pub plugins: Arc<PluginSet>,
    /// The hash of the `consumers` item this was compiled from (`config::yaml::ItemHash`), for
    /// a reload to share this consumer when the item reads the same; `NO_HASH` when it cannot
    /// be shared (it has a group or plugins besides key-auth, or its item uses anchors).
    pub item_hash: [u64; 2],
}

#[derive(Debug)]
pub struct ConsumerGroup {
    pub id: Arc<str>,
}

/// Every consumer, group and credential of a snapshot.
#[derive(Debug, Default)]
pub struct Consumers {
    /// Each consumer behind its own `Arc`: a reload shares the unchanged ones.
    pub list: Box<[Arc<Consumer>]>,
    pub groups: Box<[ConsumerGroup]>,
    pub creds: CredentialIndex,
    pub credential_count: usize,
    /// Every header named by an attach-consumer-label on a consumer or group.
    pub label_headers: Vec<http::HeaderName>,
    /// Credentials `creds.entries[..own_credentials]` come from consumers' own items (inline
    /// plugins and nested credentials); the rest from id-form entries.
    pub own_credentials: usize,
}

impl Consumer {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&HeaderValue> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v)
    }
}

/// Consumers found by username, in a table of their ids: each name is read from the consumer
/// list the index was built over (`list[id].username`), so a name costs 5 bytes of table, not
/// the 25 of an `AHashMap<Arc<str>, ConsumerId>` (about 10 MB rather than 50 MB at a million
/// consumers). Every call must pass the same list, grown only by pushing.
#[derive(Default)]
pub(crate) struct NameIndex {
    table: hashbrown::HashTable<ConsumerId>,
    hasher: ahash::RandomState,
}

impl NameIndex {
    /// An index of every consumer of `list`, whose names are distinct.
    pub(crate) fn of(list: &[Arc<Consumer>]) -> NameIndex {
        let mut index = NameIndex::default();
        index.reserve(list, list.len());
        for k in 0..list.len() {
            index.insert(list, ConsumerId(k as u32));
        }
        index
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// Makes room for `n` more names.
    pub(crate) fn reserve(&mut self, list: &[Arc<Consumer>], n: usize) {
        let hasher = &self.hasher;
        self.table
            .reserve(n, |id| hasher.hash_one(&*list[id.idx()].username));
    }

    /// The consumer named `name`.
    pub(crate) fn get(&self, list: &[Arc<Consumer>], name: &str) -> Option<ConsumerId> {
        self.table
            .find(self.hash(name), |id| &*list[id.idx()].username == name)
            .copied()
    }

    /// Adds `list[id]` under its username, which the index does not hold yet.
    pub(crate) fn insert(&mut self, list: &[Arc<Consumer>], id: ConsumerId) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(&*list[id.idx()].username);
        self.table
            .insert_unique(hash, id, |id| hasher.hash_one(&*list[id.idx()].username));
    }
}

impl Consumers {
    pub(crate) fn get(&self, id: ConsumerId) -> &Consumer {
        &self.list[id.idx()]
    }
    pub fn group_id(&self, c: &Consumer) -> Option<&str> {
        c.group.map(|g| &*self.groups[g.idx()].id)
    }
    pub fn credential(&self, id: CredentialId) -> &Credential {
        self.creds.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(name: &str) -> Arc<Consumer> {
        Arc::new(Consumer {
            username: name.into(),
            username_header: HeaderValue::from_static("x"),
            group: None,
            labels: Box::new([]),
            plugins: Arc::new(PluginSet::default()),
            item_hash: [0, 0],
        })
    }

    #[test]
    fn name_index_finds_each_name_through_the_list() {
        let mut list: Vec<Arc<Consumer>> = Vec::new();
        let mut index = NameIndex::default();
        // Grown one by one past several rehashes, as a builder grows it.
        for k in 0..1000 {
            list.push(consumer(&format!("c{k}")));
            index.insert(&list, ConsumerId(k));
        }
        for k in 0..1000 {
            assert_eq!(index.get(&list, &format!("c{k}")), Some(ConsumerId(k)));
        }
        assert_eq!(index.get(&list, "c1000"), None);
        assert_eq!(index.get(&list, ""), None);
        let whole = NameIndex::of(&list);
        assert_eq!(whole.get(&list, "c999"), Some(ConsumerId(999)));
        assert_eq!(whole.get(&list, "c"), None);
    }
}
