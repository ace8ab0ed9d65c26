//! The node file: listeners, status listener, threads, resource files, process settings.
//! Read once at start; a change needs a restart.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ConfigError;

/// A proxy listener: `"127.0.0.1:9080"` or `{addr, tls: {cert, key}}`.
#[derive(Debug, Clone)]
pub enum ListenConf {
    Plain(String),
    Full(ListenFullConf),
}

/// By hand rather than `untagged`, so an error inside the map keeps its field path.
impl<'de> Deserialize<'de> for ListenConf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ListenConf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"ip:port\" or {addr, tls: {cert, key}}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ListenConf, E> {
                Ok(ListenConf::Plain(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ListenConf, A::Error> {
                ListenFullConf::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ListenConf::Full)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFullConf {
    pub addr: String,
    pub tls: Option<TlsConf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Combined,
}

/// `access_log: {path: "stderr" | FILE, format: json | combined}`; off when absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConf {
    #[serde(default = "stderr")]
    pub path: String,
    #[serde(default)]
    pub format: LogFormat,
}

fn stderr() -> String {
    "stderr".into()
}

/// `metrics: {consumer_label: true}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConf {
    #[serde(default = "yes")]
    pub consumer_label: bool,
}

impl Default for MetricsConf {
    fn default() -> Self {
        MetricsConf {
            consumer_label: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// The node file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConf {
    pub listen: Vec<ListenConf>,
    pub status_listen: Option<String>,
    #[serde(default = "default_threads")]
    pub threads: usize,
    pub resources: Vec<String>,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub grace_period_seconds: Option<u64>,
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub client_max_body_size: u64,
    /// Seconds an idle keep-alive connection is kept open (HTTP/1 between requests, HTTP/2
    /// without streams).
    #[serde(default = "default_sixty")]
    pub keepalive_timeout: u64,
    /// Seconds a new connection may take to send the start of its first request, and a request
    /// head may stall between reads.
    #[serde(default = "default_sixty")]
    pub client_header_timeout: u64,
    pub access_log: Option<AccessLogConf>,
    #[serde(default)]
    pub metrics: MetricsConf,
}

fn default_sixty() -> u64 {
    60
}

fn default_threads() -> usize {
    2
}

/// Resource files to load (shown name, path) and warnings about globs that match nothing.
/// The resource files (shown name, path), warnings, and the glob patterns that matched a file.
pub(crate) type ResourceFiles = (Vec<(String, PathBuf)>, Vec<String>, Vec<String>);

/// A node file read and checked, with paths made absolute against its folder.
#[derive(Debug, Clone)]
pub struct Node {
    pub file: PathBuf,
    pub dir: PathBuf,
    pub conf: NodeConf,
}

impl Node {
    /// Reads and checks the node file.
    pub fn load(path: &Path) -> Result<Node, Vec<ConfigError>> {
        let name = path.display().to_string();
        // Absolute from here on: the file watcher reports absolute paths, and a relative `-c`
        // (the quick start's) must still match them.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let path = absolute.as_path();
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![ConfigError::new(&name, "", format!("cannot read: {e}"))])?;
        // Through a YAML tree, so scalars keep their YAML types (`port: "80"` is not a number).
        let tree: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| vec![ConfigError::from_yaml(&name, &e)])?;
        let conf: NodeConf = serde_path_to_error::deserialize(tree).map_err(|e| {
            vec![ConfigError::from_parts(
                &name,
                &e.path().to_string(),
                &e.inner().to_string(),
            )]
        })?;
        let mut errs = Vec::new();
        if conf.listen.is_empty() {
            errs.push(ConfigError::new(
                &name,
                "listen",
                "at least one listener is required",
            ));
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for (i, l) in conf.listen.iter().enumerate() {
            let addr = match l {
                ListenConf::Plain(a) => a,
                ListenConf::Full(f) => &f.addr,
            };
            if let ListenConf::Full(ListenFullConf { tls: Some(tls), .. }) = l {
                let files = [
                    ("cert", &tls.cert, "CERTIFICATE-----"),
                    ("key", &tls.key, "PRIVATE KEY-----"),
                ];
                for (field, file, marker) in files {
                    let full = if file.is_absolute() {
                        file.clone()
                    } else {
                        dir.join(file)
                    };
                    match std::fs::read_to_string(&full) {
                        Ok(t) if t.contains(marker) => {}
                        Ok(_) => errs.push(ConfigError::new(
                            &name,
                            format!("listen[{i}].tls.{field}"),
                            format!(
                                "{} holds no PEM {}",
                                full.display(),
                                marker.trim_end_matches('-')
                            ),
                        )),
                        Err(e) => errs.push(ConfigError::new(
                            &name,
                            format!("listen[{i}].tls.{field}"),
                            format!("cannot read {}: {e}", full.display()),
                        )),
                    }
                }
            }
            if addr.parse::<std::net::SocketAddr>().is_err() {
                errs.push(ConfigError::new(
                    &name,
                    format!("listen[{i}]"),
                    format!("`{addr}` is not an ip:port address"),
                ));
            }
        }
        if let Some(s) = &conf.status_listen
            && s.parse::<std::net::SocketAddr>().is_err()
        {
            errs.push(ConfigError::new(
                &name,
                "status_listen",
                format!("`{s}` is not an ip:port address"),
            ));
        }
        if conf.threads == 0 {
            errs.push(ConfigError::new(&name, "threads", "must be at least 1"));
        }
        for (field, v) in [
            ("keepalive_timeout", conf.keepalive_timeout),
            ("client_header_timeout", conf.client_header_timeout),
        ] {
            if !(1..=86_400).contains(&v) {
                errs.push(ConfigError::new(&name, field, "must be 1 to 86400 seconds"));
            }
        }
        if conf.resources.is_empty() {
            errs.push(ConfigError::new(
                &name,
                "resources",
                "at least one resource file is required",
            ));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        Ok(Node {
            file: path.to_path_buf(),
            dir,
            conf,
        })
    }

    /// A path from the node file, relative to its folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// Expands `resources` (files or globs) into the files to load, in order, deduplicated.
    /// Each comes with the name errors show: the path as written, or the glob match; warnings
    /// name globs that match nothing.
    pub fn resource_files(&self) -> Result<ResourceFiles, Vec<ConfigError>> {
        let mut warnings = Vec::new();
        let name = self.file.display().to_string();
        let mut out: Vec<(String, PathBuf)> = Vec::new();
        let mut errs = Vec::new();
        let mut matched = Vec::new();
        for (i, pattern) in self.conf.resources.iter().enumerate() {
            let is_glob = pattern.contains(['*', '?', '[']);
            if !is_glob {
                let p = self.resolve(Path::new(pattern));
                if !out.iter().any(|(_, q)| q == &p) {
                    out.push((pattern.clone(), p));
                }
                continue;
            }
            let full = self.resolve(Path::new(pattern));
            match glob::glob(&full.to_string_lossy()) {
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                    found.sort();
                    if found.is_empty() {
                        warnings.push(format!(
                            "{name}: resources[{i}]: warning: `{pattern}` matches no file"
                        ));
                    } else {
                        matched.push(pattern.clone());
                    }
                    for p in found {
                        let shown = p
                            .strip_prefix(&self.dir)
                            .unwrap_or(&p)
                            .display()
                            .to_string();
                        if !out.iter().any(|(_, q)| q == &p) {
                            out.push((shown, p));
                        }
                    }
                }
                Err(e) => errs.push(ConfigError::new(
                    &name,
                    format!("resources[{i}]"),
                    format!("bad glob: {e}"),
                )),
            }
        }
        if errs.is_empty() {
            Ok((out, warnings, matched))
        } else {
            Err(errs)
        }
    }
}
