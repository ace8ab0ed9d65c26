//! `ConfigError`: one problem found while loading the node or resource files, with its place.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A config problem: the file, the field path inside it (`routes[2].plugins.key-auth.header`,
/// empty for the file as a whole) and a message that never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(
        file: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            path: path.into(),
            message: message.into(),
        }
    }

    /// Turns a serde_yaml error (`path: message at line L column C`) into a `ConfigError`,
    /// pointing out fields tollgate does not know as "not supported by tollgate".
    pub fn from_yaml(file: &str, err: &serde_yaml::Error) -> Self {
        let text = err.to_string();
        match text.split_once(": ") {
            Some((p, m)) if !p.contains(' ') && !p.contains('`') => Self::from_parts(file, p, m),
            _ => Self::from_parts(file, "", &text),
        }
    }

    /// A deserialisation error at `path`; an unknown field is named in the path and flagged as
    /// "not supported by tollgate".
    pub fn from_parts(file: &str, path: &str, message: &str) -> Self {
        if let Some((field, tail)) = message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split_once('`'))
        {
            let path = if path.is_empty() || path == "." {
                field.to_string()
            } else if path.rsplit('.').next() == Some(field) {
                path.to_string()
            } else {
                format!("{path}.{field}")
            };
            // `_meta.disabled` is written by the loader (`config::DISABLED_KEY`), not by users.
            let tail = tail.replace(", `_meta.disabled`", "");
            return Self::new(
                file,
                path,
                format!("unknown field `{field}`: not supported by tollgate{tail}"),
            );
        }
        Self::new(file, if path == "." { "" } else { path }, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where an item was defined: file name and path (`routes[2]`).
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub file: Arc<str>,
    pub path: String,
}

impl Place {
    pub(crate) fn at(&self, field: &str) -> String {
        if field.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{field}", self.path)
        }
    }
    /// How another place is named in a message: the bare path in the same file, else `file: path`.
    pub(crate) fn named_from(&self, other_file: &str, field: &str) -> String {
        if &*self.file == other_file {
            self.at(field)
        } else {
            format!("{}: {}", self.file, self.at(field))
        }
    }
}

/// Collected errors of one compile.
#[derive(Default)]
pub(crate) struct Errs(
    pub Vec<ConfigError>,
    /// limit-count `group` names seen so far: conf hash and where, so confs sharing a group must match.
    pub BTreeMap<Arc<str>, (u64, String)>,
);

impl Errs {
    pub(crate) fn push(&mut self, place: &Place, field: &str, msg: impl Into<String>) {
        self.0
            .push(ConfigError::new(&*place.file, place.at(field), msg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        header: Option<String>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        routes: Vec<Inner>,
    }

    #[test]
    fn yaml_error_keeps_path_and_flags_unknown_fields() {
        let err = serde_yaml::from_str::<Outer>("routes:\n  - headr: x\n").unwrap_err();
        let e = ConfigError::from_yaml("r.yaml", &err);
        assert_eq!(e.path, "routes[0].headr");
        assert!(
            e.message
                .starts_with("unknown field `headr`: not supported by tollgate, expected `header`"),
            "{}",
            e.message
        );
    }
}
