//! Consumers, consumer groups and the credential index of a snapshot.

/// Every consumer, group and credential of a snapshot.
#[derive(Debug, Default)]
pub struct Consumers {}
