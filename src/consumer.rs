//! Consumers and consumer groups of a snapshot, with the credential index they own. Compiled by
//! `config::consumers`.

use std::sync::Arc;

use ahash::AHashMap;
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
    pub by_name: AHashMap<Arc<str>, ConsumerId>,
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

impl Consumers {
    pub fn get(&self, id: ConsumerId) -> &Consumer {
        &self.list[id.idx()]
    }
    pub fn group_id(&self, c: &Consumer) -> Option<&str> {
        c.group.map(|g| &*self.groups[g.idx()].id)
    }
    pub fn credential(&self, id: CredentialId) -> &Credential {
        self.creds.get(id)
    }
}
