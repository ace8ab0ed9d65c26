//! Serde helpers shared by the raw config types.

use serde::{Deserialize, Deserializer};

/// Reads a plugin slot so that YAML null gives the default conf, not "absent".
pub(crate) fn null_is_default<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}
