//! Loading: node file → resource files → parse → compile → `Snapshot`. The only place files
//! become a snapshot; `tollgate check`, start and every reload go through [`load`].

pub mod compile;
pub mod error;
pub mod node;
pub mod raw;

use std::path::PathBuf;
use std::time::SystemTime;

use ahash::AHashSet;
use sha2::{Digest, Sha256};

pub use error::ConfigError;
pub use node::Node;

use crate::snapshot::Snapshot;

/// A good load.
pub struct Loaded {
    pub snapshot: Snapshot,
    /// Files that ended with `#END` this time: they must end with it at the next load too.
    pub end_marked: AHashSet<PathBuf>,
    /// The files read, for the watcher.
    pub files: Vec<PathBuf>,
}

/// The outcome of [`load`]: warnings (printed first) and the snapshot or every error.
pub struct LoadReport {
    pub warnings: Vec<String>,
    pub result: Result<Loaded, Vec<ConfigError>>,
}

fn has_end_marker(text: &str) -> bool {
    text.trim_end().ends_with("#END")
}

/// True when a YAML text holds nothing but comments and blank lines.
fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

/// The errors of every list item of a file whose typed parse failed, each item read on its own,
/// so one bad item does not hide the others (serde stops at the first error of a document).
fn item_errors(name: &str, text: &str) -> Vec<ConfigError> {
    fn check<T: serde::de::DeserializeOwned>(
        v: &serde_yaml::Value,
    ) -> Result<(), (String, String)> {
        serde_path_to_error::deserialize::<_, T>(v.clone())
            .map(|_| ())
            .map_err(|e| (e.path().to_string(), e.inner().to_string()))
    }
    let Ok(serde_yaml::Value::Mapping(top)) = serde_yaml::from_str::<serde_yaml::Value>(text)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in &top {
        let (Some(key), serde_yaml::Value::Sequence(items)) = (k.as_str(), v) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let r = match key {
                "routes" => check::<raw::RouteConf>(item),
                "services" => check::<raw::ServiceConf>(item),
                "upstreams" => check::<raw::UpstreamConf>(item),
                "consumers" => check::<raw::ConsumerConf>(item),
                "consumer_groups" => check::<raw::ConsumerGroupConf>(item),
                "plugin_configs" => check::<raw::PluginConfigConf>(item),
                "global_rules" => check::<raw::GlobalRuleConf>(item),
                _ => continue,
            };
            if let Err((path, msg)) = r {
                let path = if path == "." {
                    format!("{key}[{i}]")
                } else {
                    format!("{key}[{i}].{path}")
                };
                out.push(ConfigError::from_parts(name, &path, &msg));
            }
        }
    }
    out
}

/// Reads, parses and compiles every resource file of `node`. `end_marked` holds the files that
/// ended with `#END` at the last good load; such a file without it now is refused as truncated.
pub fn load(node: &Node, end_marked: &AHashSet<PathBuf>) -> LoadReport {
    let mut warnings = Vec::new();
    let files = match node.resource_files() {
        Ok((f, w)) => {
            warnings.extend(w);
            f
        }
        Err(e) => {
            return LoadReport {
                warnings,
                result: Err(e),
            };
        }
    };
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    let mut hasher = Sha256::new();
    let mut marked = AHashSet::new();
    for (name, path) in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ConfigError::new(name, "", format!("cannot read: {e}")));
                continue;
            }
        };
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        if has_end_marker(&text) {
            marked.insert(path.clone());
        } else if end_marked.contains(path) {
            errors.push(ConfigError::new(
                name,
                "",
                "ended with #END at the last good load and does not now: refused as truncated (write it atomically and end it with #END)",
            ));
            continue;
        } else {
            warnings.push(format!(
                "{name}: warning: no #END line at the end, so a truncated file cannot be detected"
            ));
        }
        if is_blank_yaml(&text) {
            parsed.push((name.clone(), raw::ResourcesConf::default()));
            continue;
        }
        match serde_yaml::from_str::<raw::ResourcesConf>(&text) {
            Ok(conf) => parsed.push((name.clone(), conf)),
            Err(e) => {
                let first = ConfigError::from_yaml(name, &e);
                let rest: Vec<ConfigError> = item_errors(name, &text)
                    .into_iter()
                    .filter(|x| x.path != first.path)
                    .collect();
                errors.push(first);
                errors.extend(rest);
            }
        }
    }
    if !errors.is_empty() {
        return LoadReport {
            warnings,
            result: Err(errors),
        };
    }
    let version: String = hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let result = compile::compile(parsed).map(|mut snapshot| {
        snapshot.version = version.into();
        snapshot.loaded_at = SystemTime::now();
        Loaded {
            snapshot,
            end_marked: marked,
            files: files.into_iter().map(|(_, p)| p).collect(),
        }
    });
    LoadReport { warnings, result }
}
