//! Loading: node file → resource files → parse → compile → `Snapshot`. The only place files
//! become a snapshot; `tollgate check`, start and every reload go through [`load`].

pub mod compile;
pub mod consumers;
pub mod de;
pub mod env_subst;
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

/// What a good load leaves for the next one, so a deploy that lost files is refused.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// Files that ended with `#END`: they must end with it at the next load too.
    pub end_marked: AHashSet<PathBuf>,
    /// Glob patterns that matched files: they must match some at the next load too.
    pub matched_globs: AHashSet<String>,
}

/// A good load.
pub struct Loaded {
    pub snapshot: Snapshot,
    pub memory: Memory,
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

/// A serde error at `path` inside `prefix` (`routes[2]`) as a `ConfigError`.
fn typed_error<E: std::fmt::Display>(
    file: &str,
    prefix: &str,
    e: &serde_path_to_error::Error<E>,
) -> ConfigError {
    let inner = e.path().to_string();
    let path = match (prefix.is_empty(), inner == ".") {
        (true, _) => inner,
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{inner}"),
    };
    ConfigError::from_parts(file, &path, &e.inner().to_string())
}

/// Every string in `v` that holds an unset `${{VAR}}` marker, as `(path, VAR)`.
fn unset_vars(v: &serde_yaml::Value, path: &str, out: &mut Vec<(String, String)>) {
    use serde_yaml::Value;
    match v {
        Value::String(s) => {
            if let Some(name) = env_subst::unset_name(s) {
                out.push((path.to_owned(), name.to_owned()));
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                unset_vars(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                if let Some(name) = env_subst::unset_name(&key) {
                    out.push((path.to_owned(), name.to_owned()));
                }
                let p = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                unset_vars(item, &p, out);
            }
        }
        Value::Tagged(t) => unset_vars(&t.value, path, out),
        _ => {}
    }
}

/// `_meta` on every plugin (APISIX's plugin-common fields): `disable: true` removes that plugin
/// instance; any other `_meta` field is refused by name, never ignored.
fn apply_plugin_meta(file: &str, top: &mut serde_yaml::Mapping) -> Vec<ConfigError> {
    use serde_yaml::Value;
    fn plugins_map(file: &str, at: &str, plugins: &mut Value, errs: &mut Vec<ConfigError>) {
        let Value::Mapping(m) = plugins else { return };
        let mut disabled = Vec::new();
        for (k, conf) in m.iter_mut() {
            let name = k.as_str().unwrap_or("?").to_owned();
            let Value::Mapping(c) = conf else { continue };
            let Some(meta) = c.remove("_meta") else {
                continue;
            };
            let place = format!("{at}.{name}._meta");
            let Value::Mapping(meta) = meta else {
                errs.push(ConfigError::new(file, place, "must be a mapping"));
                continue;
            };
            for (mk, mv) in meta {
                match (mk.as_str(), mv) {
                    (Some("disable"), Value::Bool(true)) => disabled.push(k.clone()),
                    (Some("disable"), Value::Bool(false)) => {}
                    (Some("disable"), _) => errs.push(ConfigError::new(
                        file,
                        format!("{place}.disable"),
                        "invalid type: expected a boolean",
                    )),
                    (other, _) => errs.push(ConfigError::new(
                        file,
                        format!("{place}.{}", other.unwrap_or("?")),
                        "not supported by tollgate (only `_meta.disable` is)",
                    )),
                }
            }
        }
        for k in disabled {
            m.remove(&k);
        }
    }
    let mut errs = Vec::new();
    for list in [
        "routes",
        "services",
        "plugin_configs",
        "global_rules",
        "consumers",
        "consumer_groups",
    ] {
        let Some(Value::Sequence(items)) = top.get_mut(list) else {
            continue;
        };
        for (i, item) in items.iter_mut().enumerate() {
            let Value::Mapping(item) = item else { continue };
            if let Some(p) = item.get_mut("plugins") {
                plugins_map(file, &format!("{list}[{i}].plugins"), p, &mut errs);
            }
            if let Some(Value::Sequence(creds)) = item.get_mut("credentials") {
                for (j, c) in creds.iter_mut().enumerate() {
                    if let Some(p) = c.get_mut("plugins") {
                        let at = format!("{list}[{i}].credentials[{j}].plugins");
                        plugins_map(file, &at, p, &mut errs);
                    }
                }
            }
        }
    }
    errs
}

/// Parses one resource file's text: `${{VAR}}` substituted, YAML merge keys applied, top-level
/// `x-` keys (anchor holders) dropped, then every list item deserialised on its own from the
/// YAML tree, so scalars keep their YAML types (`header: 123` is not a string) and one bad item
/// does not hide the errors of the others.
pub fn parse_resources(name: &str, text: &str) -> Result<raw::ResourcesConf, Vec<ConfigError>> {
    use serde::de::DeserializeOwned;
    use serde_yaml::Value;
    let text = env_subst::substitute(text, |k| std::env::var(k).ok())
        .map_err(|m| vec![ConfigError::new(name, "", m)])?;
    let mut top: Value =
        serde_yaml::from_str(&text).map_err(|e| vec![ConfigError::from_yaml(name, &e)])?;
    top.apply_merge()
        .map_err(|e| vec![ConfigError::new(name, "", format!("YAML merge key: {e}"))])?;
    let map = match &mut top {
        Value::Mapping(m) => m,
        Value::Null => return Ok(raw::ResourcesConf::default()),
        _ => {
            return Err(vec![ConfigError::new(
                name,
                "",
                "expected a mapping of resource lists (routes, consumers, ...)",
            )]);
        }
    };
    map.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
    let mut errors = apply_plugin_meta(name, map);
    let mut unset = Vec::new();
    unset_vars(&top, "", &mut unset);
    if !unset.is_empty() {
        return Err(unset
            .into_iter()
            .map(|(path, var)| {
                ConfigError::new(
                    name,
                    path,
                    format!("environment variable {var} is not set and `${{{{{var}}}}}` has no default (write `${{{{{var}:=default}}}}`)"),
                )
            })
            .collect());
    }
    let Value::Mapping(map) = &mut top else {
        return Ok(raw::ResourcesConf::default());
    };
    fn items<T: DeserializeOwned>(
        name: &str,
        key: &str,
        map: &mut serde_yaml::Mapping,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<T> {
        match map.remove(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(seq)) => seq
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| match serde_path_to_error::deserialize::<_, T>(v) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        errors.push(typed_error(name, &format!("{key}[{i}]"), &e));
                        None
                    }
                })
                .collect(),
            Some(_) => {
                errors.push(ConfigError::new(name, key, "expected a list"));
                Vec::new()
            }
        }
    }
    let routes = items(name, "routes", map, &mut errors);
    let services = items(name, "services", map, &mut errors);
    let upstreams = items(name, "upstreams", map, &mut errors);
    let consumers = items(name, "consumers", map, &mut errors);
    let consumer_groups = items(name, "consumer_groups", map, &mut errors);
    let plugin_configs = items(name, "plugin_configs", map, &mut errors);
    let global_rules = items(name, "global_rules", map, &mut errors);
    let rest = serde_path_to_error::deserialize::<_, raw::ResourcesConf>(top);
    let mut conf = match rest {
        Ok(c) => c,
        Err(e) => {
            errors.push(typed_error(name, "", &e));
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    conf.routes = routes;
    conf.services = services;
    conf.upstreams = upstreams;
    conf.consumers = consumers;
    conf.consumer_groups = consumer_groups;
    conf.plugin_configs = plugin_configs;
    conf.global_rules = global_rules;
    Ok(conf)
}

/// Reads, parses and compiles every resource file of `node`. `prev` is what the last good load
/// saw: a file that ended with `#END` then and does not now is refused as truncated, and a glob
/// that matched files then and matches none now is refused as a lost deploy.
pub fn load(node: &Node, prev: &Memory) -> LoadReport {
    let mut warnings = Vec::new();
    let end_marked = &prev.end_marked;
    let (files, matched_globs) = match node.resource_files() {
        Ok((f, w, m)) => {
            warnings.extend(w);
            (f, m)
        }
        Err(e) => {
            return LoadReport {
                warnings,
                result: Err(e),
            };
        }
    };
    let mut errors = Vec::new();
    let node_name = node.file.display().to_string();
    for (i, pattern) in node.conf.resources.iter().enumerate() {
        if prev.matched_globs.contains(pattern) && !matched_globs.contains(pattern) {
            errors.push(ConfigError::new(
                &node_name,
                format!("resources[{i}]"),
                format!("`{pattern}` matched files at the last good load and matches none now: refused (was every file moved away?)"),
            ));
        }
    }
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
        if text.is_empty() {
            errors.push(ConfigError::new(
                name,
                "",
                "the file is empty (0 bytes): refused as truncated (write files atomically, by rename)",
            ));
            continue;
        }
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
        match parse_resources(name, &text) {
            Ok(conf) => parsed.push((name.clone(), conf)),
            Err(e) => errors.extend(e),
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
            memory: Memory {
                end_marked: marked,
                matched_globs: matched_globs.into_iter().collect(),
            },
            files: files.into_iter().map(|(_, p)| p).collect(),
        }
    });
    LoadReport { warnings, result }
}

/// [`load`] for the running gateway: logs the files and their sizes first, and a line every
/// few seconds while a long load (a million consumers) is still under way.
pub fn load_logged(node: &Node, prev: &Memory) -> LoadReport {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    if let Ok((files, _, _)) = node.resource_files() {
        let sizes: Vec<String> = files
            .iter()
            .map(|(name, p)| {
                let len = std::fs::metadata(p).map_or(0, |m| m.len());
                format!("{name} ({})", human_bytes(len))
            })
            .collect();
        log::info!("Loading config: {}", sizes.join(", "));
    }
    let done = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut next = Duration::from_secs(3);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if start.elapsed() >= next && !done.load(Ordering::Relaxed) {
                    log::info!(
                        "Still loading config ({}s so far)",
                        start.elapsed().as_secs()
                    );
                    next += Duration::from_secs(3);
                }
            }
        });
        let report = load(node, prev);
        done.store(true, Ordering::Relaxed);
        report
    })
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / f64::from(1 << 10)),
        n => format!("{n} B"),
    }
}
