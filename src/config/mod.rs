//! Loading: node file → resource files → parse → compile → `Snapshot`. The only place files
//! become a snapshot; `tollgate check`, start and every reload go through [`load`].

pub(crate) mod compile;
pub(crate) mod consumers;
pub(crate) mod de;
pub(crate) mod env_subst;
pub(crate) mod error;
pub(crate) mod loader;
pub(crate) mod node;
pub(crate) mod raw;
pub(crate) mod tape_de;
pub(crate) mod yaml;

use std::path::PathBuf;
use std::time::SystemTime;

use ahash::AHashSet;
use sha2::{Digest, Sha256};

use crate::secret::KeyDigestKind;

pub(crate) use error::ConfigError;
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
    /// Consumers shared with the config a reload replaces ([`load_reusing`]).
    pub shared: usize,
    /// Consumers recorded by the raw filter without libyaml ([`yaml::RawFilter::fast`]): a
    /// load with any and an error runs again without, so errors read as libyaml gives them.
    pub(crate) parsed: usize,
}

const TRUNCATED: &str = "ended with #END at the last good load and does not now: refused as truncated (write it atomically and end it with #END)";

fn no_end_warning(name: &str) -> String {
    format!("{name}: warning: no #END line at the end, so a truncated file cannot be detected")
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
/// instance; any other `_meta` field is refused by name, never ignored. `item` is one entry of
/// a list, at `at` (`routes[2]`). On the route side (`route_side`: routes, services, plugin
/// configs, global rules) the names turned off are kept in the map under `_meta.disabled`
/// ([`crate::plugins::RoutePluginsConf::disabled`]), so that they also turn off the plugin of
/// that name a route inherits, as in APISIX.
fn apply_plugin_meta(
    file: &str,
    at: &str,
    route_side: bool,
    item: &mut serde_yaml::Value,
) -> Vec<ConfigError> {
    use serde_yaml::Value;
    fn plugins_map(
        file: &str,
        at: &str,
        route_side: bool,
        plugins: &mut Value,
        errs: &mut Vec<ConfigError>,
    ) {
        let Value::Mapping(m) = plugins else { return };
        let mut disabled = Vec::new();
        if m.contains_key(DISABLED_KEY) {
            errs.push(ConfigError::new(
                file,
                format!("{at}.{DISABLED_KEY}"),
                "not supported by tollgate (use `_meta: {disable: true}` in a plugin)",
            ));
        }
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
        for k in &disabled {
            m.remove(k);
        }
        if route_side && !disabled.is_empty() {
            m.insert(Value::from(DISABLED_KEY), Value::Sequence(disabled));
        }
    }
    let mut errs = Vec::new();
    let Value::Mapping(item) = item else {
        return errs;
    };
    if let Some(p) = item.get_mut("plugins") {
        plugins_map(file, &format!("{at}.plugins"), route_side, p, &mut errs);
    }
    if let Some(Value::Sequence(creds)) = item.get_mut("credentials") {
        for (j, c) in creds.iter_mut().enumerate() {
            if let Some(p) = c.get_mut("plugins") {
                plugins_map(
                    file,
                    &format!("{at}.credentials[{j}].plugins"),
                    false,
                    p,
                    &mut errs,
                );
            }
        }
    }
    errs
}

/// Where [`apply_plugin_meta`] lists the route-side plugins `_meta.disable` turned off.
pub(crate) const DISABLED_KEY: &str = "_meta.disabled";

/// The top-level lists of a resource file, read item by item.
const LISTS: [&str; 7] = [
    "routes",
    "services",
    "upstreams",
    "consumers",
    "consumer_groups",
    "plugin_configs",
    "global_rules",
];

/// What the text of one file needs besides plain parsing (each a whole-text check, so a file
/// without them costs nothing per item).
struct TextFeatures {
    merge_keys: bool,
    meta: bool,
    unset_vars: bool,
}

impl TextFeatures {
    /// Whether items may be deserialised from their tape: nothing is done to the value first.
    fn tape_ok(&self) -> bool {
        !(self.merge_keys || self.meta || self.unset_vars)
    }
}

/// The id an item is referred to by (`username` for consumers), read from its YAML.
fn item_ident(list: &str, v: &serde_yaml::Value) -> Option<String> {
    let field = |k: &str| match v.get(k) {
        Some(serde_yaml::Value::String(s)) => Some(s.clone()),
        Some(serde_yaml::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if list == "consumers" {
        field("username").or_else(|| field("id"))
    } else {
        field("id")
    }
}

/// One list item: merge keys applied, `_meta` honoured, unset `${{VAR}}` reported, then
/// deserialised on its own so scalars keep their YAML types (`header: 123` is not a string).
/// `Err` carries the item's id (if it has one) after its errors were pushed.
fn parse_item<T: serde::de::DeserializeOwned>(
    file: &str,
    features: &TextFeatures,
    list: &str,
    i: usize,
    mut v: serde_yaml::Value,
    errors: &mut Vec<ConfigError>,
) -> Result<T, Option<String>> {
    // Written out only when needed (an error, or a feature that names places).
    let at = || format!("{list}[{i}]");
    if features.merge_keys
        && let Err(e) = v.apply_merge()
    {
        errors.push(ConfigError::new(file, at(), format!("YAML merge key: {e}")));
        return Err(item_ident(list, &v));
    }
    if features.meta {
        let route_side = matches!(
            list,
            "routes" | "services" | "plugin_configs" | "global_rules"
        );
        errors.extend(apply_plugin_meta(file, &at(), route_side, &mut v));
    }
    if features.unset_vars {
        let mut unset = Vec::new();
        unset_vars(&v, &at(), &mut unset);
        if !unset.is_empty() {
            errors.extend(
                unset
                    .into_iter()
                    .map(|(path, var)| unset_error(file, path, &var)),
            );
            return Err(item_ident(list, &v));
        }
    }
    // Taken before: deserialising consumes the value (its strings move into the result).
    let ident = item_ident(list, &v);
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Ok(t),
        Err(e) => {
            errors.push(typed_error(file, &at(), &e));
            Err(ident)
        }
    }
}

/// [`parse_item`] for a plain item read from its tape ([`yaml::Read::Tape`]): nothing to merge,
/// no `_meta`, no `${{`, so it is deserialised at once, with the same errors.
fn parse_tape_item<T: serde::de::DeserializeOwned>(
    file: &str,
    list: &str,
    i: usize,
    tape: &[u8],
    errors: &mut Vec<ConfigError>,
) -> Result<T, Option<String>> {
    match tape_de::deserialize::<T>(tape) {
        Ok(t) => Ok(t),
        Err(e) => {
            errors.push(typed_error(file, &format!("{list}[{i}]"), &e));
            let ident = match list {
                "consumers" => {
                    tape_de::top_field(tape, "username").or_else(|| tape_de::top_field(tape, "id"))
                }
                _ => tape_de::top_field(tape, "id"),
            };
            Err(ident)
        }
    }
}

fn unset_error(file: &str, path: String, var: &str) -> ConfigError {
    ConfigError::new(
        file,
        path,
        format!(
            "environment variable {var} is not set and `${{{{{var}}}}}` has no default (write `${{{{{var}:=default}}}}`)"
        ),
    )
}

/// One list item, parsed (on the reading thread) and not yet stored.
enum Item {
    Route(Box<raw::RouteConf>),
    Service(Box<raw::ServiceConf>),
    Upstream(Box<raw::UpstreamConf>),
    Consumer(Box<raw::ConsumerConf>, Option<yaml::ItemHash>),
    /// A consumer that reads as old consumer `n` did.
    Reused(u32),
    Group(Box<raw::ConsumerGroupConf>),
    PluginConfig(Box<raw::PluginConfigConf>),
    GlobalRule(Box<raw::GlobalRuleConf>),
    /// Failed to parse (its errors are reported): the list and the id it is known by.
    Broken(usize, Option<String>),
}

/// Parses item `i` of list `list` (an index into [`LISTS`]); returns it with its index.
fn parse_list_item(
    file: &str,
    features: &TextFeatures,
    list: usize,
    i: usize,
    v: yaml::Read<'_>,
    errors: &mut Vec<ConfigError>,
) -> (u32, Item) {
    let key = LISTS[list];
    let (v, hash) = match v {
        yaml::Read::Value(v, hash) => (v, hash),
        yaml::Read::Reused(n) => return (i as u32, Item::Reused(n)),
        yaml::Read::Tape(tape, hash) => {
            let r = match list {
                3 => parse_tape_item(file, key, i, tape, errors)
                    .map(|c| Item::Consumer(c, Some(hash))),
                // Only consumers are recorded.
                _ => Err(None),
            };
            return (i as u32, r.unwrap_or_else(|id| Item::Broken(list, id)));
        }
    };
    let r = match list {
        0 => parse_item(file, features, key, i, v, errors).map(Item::Route),
        1 => parse_item(file, features, key, i, v, errors).map(Item::Service),
        2 => parse_item(file, features, key, i, v, errors).map(Item::Upstream),
        3 => parse_item(file, features, key, i, v, errors).map(|c| Item::Consumer(c, hash)),
        4 => parse_item(file, features, key, i, v, errors).map(Item::Group),
        5 => parse_item(file, features, key, i, v, errors).map(Item::PluginConfig),
        _ => parse_item(file, features, key, i, v, errors).map(Item::GlobalRule),
    };
    (i as u32, r.unwrap_or_else(|id| Item::Broken(list, id)))
}

/// Where the items of the files go as they are parsed.
struct Sink<'a, 'o> {
    conf: raw::ResourcesConf,
    /// Consumers go here, compiled at once; None keeps them in `conf.consumers`.
    consumers: Option<(&'a mut consumers::Builder<'o>, u32)>,
    broken: &'a mut compile::Broken,
    /// Whether the raw filter may record the simplest consumers itself.
    fast: bool,
}

impl Sink<'_, '_> {
    fn store(&mut self, (i, item): (u32, Item)) {
        let c = &mut self.conf;
        let mut at = |list: &'static str| c.positions.entry(list).or_default().push(i);
        match item {
            Item::Route(r) => {
                at("routes");
                c.routes.push(*r);
            }
            Item::Service(s) => {
                at("services");
                c.services.push(*s);
            }
            Item::Upstream(u) => {
                at("upstreams");
                c.upstreams.push(*u);
            }
            Item::Consumer(conf, hash) => match &mut self.consumers {
                Some((b, f)) => b.add_hashed(*f, i, *conf, hash),
                None => {
                    at("consumers");
                    c.consumers.push(*conf);
                }
            },
            Item::Reused(n) => {
                if let Some((b, f)) = &mut self.consumers {
                    b.reuse(*f, i, n);
                }
            }
            Item::Group(g) => {
                at("consumer_groups");
                c.consumer_groups.push(*g);
            }
            Item::PluginConfig(p) => {
                at("plugin_configs");
                c.plugin_configs.push(*p);
            }
            Item::GlobalRule(g) => {
                at("global_rules");
                c.global_rules.push(*g);
            }
            Item::Broken(list, Some(id)) => match list {
                1 => drop(self.broken.services.insert(id)),
                2 => drop(self.broken.upstreams.insert(id)),
                3 => {
                    if let Some((b, _)) = &mut self.consumers {
                        b.broken(id);
                    }
                }
                4 => drop(self.broken.consumer_groups.insert(id)),
                5 => drop(self.broken.plugin_configs.insert(id)),
                _ => {}
            },
            Item::Broken(_, None) => {}
        }
    }

    fn item(
        &mut self,
        file: &str,
        features: &TextFeatures,
        list: usize,
        i: usize,
        v: yaml::Read<'_>,
        errors: &mut Vec<ConfigError>,
    ) {
        let item = parse_list_item(file, features, list, i, v, errors);
        self.store(item);
    }
}

/// Items read on the reading thread, handed over together: the tapes of plain items are
/// copied one after another into `tapes` (one buffer for the batch, not one per item).
struct Batch {
    items: Vec<(usize, usize, Owned)>,
    tapes: Vec<u8>,
    /// The errors of the items parsed on the reading thread ([`Batch::parse`]), in order.
    errors: Vec<ConfigError>,
}

/// A [`yaml::Read`] that owns its tape (a range of [`Batch::tapes`]), or the item parsed.
enum Owned {
    Value(serde_yaml::Value, Option<yaml::ItemHash>),
    Tape(std::ops::Range<usize>, yaml::ItemHash),
    Reused(u32),
    Parsed(Item),
}

impl Batch {
    const ITEMS: usize = 512;

    fn new() -> Batch {
        Batch {
            items: Vec::with_capacity(Batch::ITEMS),
            tapes: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Parses every item (on the reading thread, when the storing one is behind: it then only
    /// stores them). Their errors are kept in the batch, in item order.
    fn parse(&mut self, name: &str, features: &TextFeatures) {
        for (list, i, v) in &mut self.items {
            let read = match std::mem::replace(v, Owned::Reused(0)) {
                Owned::Value(v, hash) => yaml::Read::Value(v, hash),
                Owned::Tape(range, hash) => yaml::Read::Tape(&self.tapes[range], hash),
                Owned::Reused(n) => yaml::Read::Reused(n),
                parsed @ Owned::Parsed(_) => {
                    *v = parsed;
                    continue;
                }
            };
            let (_, item) = parse_list_item(name, features, *list, *i, read, &mut self.errors);
            *v = Owned::Parsed(item);
        }
        self.tapes = Vec::new();
    }

    fn push(&mut self, list: usize, i: usize, v: yaml::Read<'_>) {
        let v = match v {
            yaml::Read::Value(v, hash) => Owned::Value(v, hash),
            yaml::Read::Tape(tape, hash) => {
                let start = self.tapes.len();
                self.tapes.extend_from_slice(tape);
                Owned::Tape(start..self.tapes.len(), hash)
            }
            yaml::Read::Reused(n) => Owned::Reused(n),
        };
        self.items.push((list, i, v));
    }
}

/// Above this size a file is read on a thread of its own while the items already read are
/// stored (and consumers compiled) on this one.
const PIPELINE_BYTES: usize = 1 << 20;

/// [`yaml::read_resources`] with every item parsed and handed to `sink`; for a big file the
/// YAML is read on a second thread and handed over in batches, while this one deserialises and
/// stores (compiles) the items: the two halves of the work overlap on two cores.
fn read_items(
    name: &str,
    input: yaml::Input<'_>,
    features: &TextFeatures,
    sink: &mut Sink<'_, '_>,
    errors: &mut Vec<ConfigError>,
) -> (Result<yaml::Rest, String>, Option<(Sha256, usize)>) {
    // Consumers are hashed (for the next reload), and looked up among the old ones.
    let old = sink.consumers.as_ref().and_then(|(b, _)| b.old());
    let mut matcher = old.map(consumers::Matcher::new);
    let mut find = |h: yaml::ItemHash| matcher.as_mut().and_then(|m| m.find(h));
    let mut lookup = old
        .is_some()
        .then_some(&mut find as &mut (dyn FnMut(_) -> _ + Send));
    // A file read from disk: unchanged consumers are recognised from their raw text, before
    // libyaml reads them (`yaml::RawFilter`), and the lookup goes with the filter.
    let input = match input {
        yaml::Input::Text(t) => yaml::Input::Text(t),
        yaml::Input::File(src) => {
            let yaml::Source {
                file,
                hasher,
                error,
                ..
            } = *src;
            let fast = sink.fast && features.tape_ok();
            let raw = sink.consumers.is_some().then(|| {
                let mut raw = yaml::RawFilter::new(lookup.take());
                raw.fast = fast;
                raw
            });
            yaml::Input::File(Box::new(yaml::Source {
                file,
                hasher,
                error,
                raw,
            }))
        }
    };
    let hashing = sink.consumers.is_some().then(|| yaml::Hashing {
        list: 3,
        tape: features.tape_ok(),
        lookup,
    });
    if let yaml::Input::Text(t) = &input
        && t.len() < PIPELINE_BYTES
    {
        return yaml::read_input(input, &LISTS, hashing, |list, i, v| {
            sink.item(name, features, list, i, v, errors);
        });
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            use std::sync::mpsc::TrySendError;
            let mut batch = Batch::new();
            let out = yaml::read_input(input, &LISTS, hashing, |list, i, v| {
                batch.push(list, i, v);
                if batch.items.len() == Batch::ITEMS {
                    // The other thread is behind (every batch waits): this one parses the
                    // items too, so the two share the work whichever half is the heavier.
                    match tx.try_send(std::mem::replace(&mut batch, Batch::new())) {
                        Err(TrySendError::Full(mut full)) => {
                            full.parse(name, features);
                            let _ = tx.send(full);
                        }
                        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    }
                }
            });
            let _ = tx.send(batch);
            out
        });
        for mut batch in rx {
            errors.append(&mut batch.errors);
            for (list, i, v) in batch.items {
                let v = match v {
                    Owned::Value(v, hash) => yaml::Read::Value(v, hash),
                    Owned::Tape(range, hash) => yaml::Read::Tape(&batch.tapes[range], hash),
                    Owned::Reused(n) => yaml::Read::Reused(n),
                    Owned::Parsed(item) => {
                        sink.store((i as u32, item));
                        continue;
                    }
                };
                sink.item(name, features, list, i, v, errors);
            }
        }
        reader
            .join()
            .unwrap_or_else(|_| (Err("the reader thread failed".into()), None))
    })
}

/// Parses one resource file's text into `sink`: `${{VAR}}` substituted, then read item by item
/// ([`yaml::read_resources`]), each item checked and deserialised on its own, so one bad item
/// does not hide the errors of the others; top-level `x-` keys (anchor holders) are dropped.
fn parse_into(name: &str, text: &str, sink: &mut Sink<'_, '_>, errors: &mut Vec<ConfigError>) {
    let text = match env_subst::substitute(text, |k| std::env::var(k).ok()) {
        Ok(t) => t,
        Err(m) => {
            errors.push(ConfigError::new(name, "", m));
            sink.broken.all = true;
            return;
        }
    };
    let features = TextFeatures {
        merge_keys: text.contains("<<"),
        meta: text.contains("_meta"),
        unset_vars: text.contains(env_subst::UNSET_MARK),
    };
    let (rest, _) = read_items(
        name,
        yaml::Input::Text(text.as_bytes()),
        &features,
        sink,
        errors,
    );
    finish_file(name, rest, &features, sink, errors);
}

/// [`parse_into`] for a big file read from disk as it is parsed (it has no `${{`, so nothing
/// to substitute); gives back the hasher of its source, which has seen every byte read, and
/// the number of consumers its raw filter recorded itself.
fn parse_stream(
    name: &str,
    source: Box<yaml::Source<'_>>,
    features: &TextFeatures,
    sink: &mut Sink<'_, '_>,
    errors: &mut Vec<ConfigError>,
) -> Option<(Sha256, usize)> {
    let (rest, source) = read_items(name, yaml::Input::File(source), features, sink, errors);
    finish_file(name, rest, features, sink, errors);
    source
}

/// The rest of a file once its lists were read: the top-level keys besides the lists, and
/// the lists that could not be streamed.
fn finish_file(
    name: &str,
    rest: Result<yaml::Rest, String>,
    features: &TextFeatures,
    sink: &mut Sink<'_, '_>,
    errors: &mut Vec<ConfigError>,
) {
    use serde_yaml::Value;
    let mut map = match rest {
        Ok(yaml::Rest::Mapping(m)) => m,
        Ok(yaml::Rest::Null) => return,
        Ok(yaml::Rest::Other) => {
            errors.push(ConfigError::new(
                name,
                "",
                "expected a mapping of resource lists (routes, consumers, ...)",
            ));
            return;
        }
        Err(e) => {
            let (path, msg) = match e.split_once(": ") {
                Some((p, m)) if !p.contains(' ') && !p.contains('`') => (p, m),
                _ => ("", e.as_str()),
            };
            errors.push(ConfigError::new(name, path, msg));
            sink.broken.all = true;
            return;
        }
    };
    map.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
    if features.merge_keys && map.contains_key("<<") {
        let mut top = Value::Mapping(std::mem::take(&mut map));
        if let Err(e) = top.apply_merge() {
            errors.push(ConfigError::new(name, "", format!("YAML merge key: {e}")));
            return;
        }
        if let Value::Mapping(m) = top {
            map = m;
        }
    }
    // Lists that were not streamed (anchored, merged in, or not a sequence).
    for (l, key) in LISTS.iter().enumerate() {
        match map.remove(*key) {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(seq)) => {
                for (i, v) in seq.into_iter().enumerate() {
                    sink.item(name, features, l, i, yaml::Read::Value(v, None), errors);
                }
            }
            Some(_) => errors.push(ConfigError::new(name, *key, "expected a list")),
        }
    }
    if features.unset_vars {
        let mut unset = Vec::new();
        unset_vars(&Value::Mapping(map.clone()), "", &mut unset);
        if !unset.is_empty() {
            errors.extend(
                unset
                    .into_iter()
                    .map(|(path, var)| unset_error(name, path, &var)),
            );
            return;
        }
    }
    match serde_path_to_error::deserialize::<_, raw::ResourcesConf>(Value::Mapping(map)) {
        Ok(rest) => {
            let c = &mut sink.conf;
            c.version = rest.version;
            c.gateway_group = rest.gateway_group;
            c.ssls = rest.ssls;
            c.stream_routes = rest.stream_routes;
            c.protos = rest.protos;
            c.secrets = rest.secrets;
            c.plugin_metadata = rest.plugin_metadata;
            c.plugins = rest.plugins;
        }
        Err(e) => errors.push(typed_error(name, "", &e)),
    }
}

/// Files at least this big are read from disk as they are parsed, never whole in memory
/// (unless they hold `${{`, which is substituted in the whole text).
const STREAM_BYTES: u64 = 1 << 20;

/// What a file holds, found by reading it in chunks without keeping it: whether it has `${{`
/// (then it is read whole), the [`TextFeatures`], and whether it ends with `#END`.
fn scan_file(file: &mut std::fs::File) -> std::io::Result<(bool, TextFeatures, bool)> {
    use std::io::Read;
    const CHUNK: usize = 1 << 20;
    const KEEP: usize = 64 << 10;
    let mut buf = vec![0u8; CHUNK + KEEP];
    let mut kept = 0;
    let (mut env, mut merge, mut meta, mut unset) = (false, false, false, false);
    loop {
        let n = file.read(&mut buf[kept..])?;
        if n == 0 {
            break;
        }
        let seen = &buf[..kept + n];
        let has = |pat: &[u8]| memchr::memmem::find(seen, pat).is_some();
        env = env || has(b"${{");
        merge = merge || has(b"<<");
        meta = meta || has(b"_meta");
        unset = unset || has(env_subst::UNSET_MARK.as_bytes());
        // Keep the last KEEP bytes: patterns across two chunks, and the end of the file.
        let len = kept + n;
        let from = len.saturating_sub(KEEP);
        buf.copy_within(from..len, 0);
        kept = len - from;
    }
    let tail = String::from_utf8_lossy(&buf[..kept]);
    let features = TextFeatures {
        merge_keys: merge,
        meta,
        unset_vars: unset,
    };
    Ok((env, features, has_end_marker(&tail)))
}

/// Reads, parses and compiles every resource file of `node`. `prev` is what the last good load
/// saw: a file that ended with `#END` then and does not now is refused as truncated, and a glob
/// that matched files then and matches none now is refused as a lost deploy.
pub fn load(node: &Node, prev: &Memory) -> LoadReport {
    // Keys are digested with keyed SipHash unless a credential gives a `key_hash`, which only
    // SHA-256 can match: met, it fails the load, which runs again (once) with SHA-256.
    let report = load_fresh(node, prev, KeyDigestKind::Keyed);
    if needs_sha_keys(&report) {
        return load_fresh(node, prev, KeyDigestKind::Sha256);
    }
    report
}

/// [`load_with`] sharing nothing. A load whose raw filter recorded consumers itself (left out
/// of libyaml's input) and that finds an error runs again without that, so every error reads
/// as libyaml gives it (its line numbers count every line).
fn load_fresh(node: &Node, prev: &Memory, keys: KeyDigestKind) -> LoadReport {
    let report = load_with(node, prev, None, keys, true);
    if report.result.is_err() && report.parsed > 0 && !needs_sha_keys(&report) {
        return load_with(node, prev, None, keys, false);
    }
    report
}

fn needs_sha_keys(report: &LoadReport) -> bool {
    let errs = report.result.as_ref().err();
    errs.is_some_and(|e| e.iter().any(|e| e.message == consumers::NEEDS_SHA_KEYS))
}

/// [`load`] for a reload: consumers whose entries read exactly as they did in `old` (the
/// config being replaced) are shared with it rather than compiled again. A load that finds
/// any error runs again without sharing, so errors are worded and ordered as [`load`] gives
/// them.
pub(crate) fn load_reusing(node: &Node, prev: &Memory, old: &Snapshot) -> LoadReport {
    // Shared keys keep their digests, so this load digests keys as `old` did; the index is
    // SHA-256 only while a `key_hash` needs it, else loaded again with keyed SipHash.
    let report = load_with(
        node,
        prev,
        Some(&old.consumers),
        old.consumers.creds.key_digest,
        true,
    );
    match &report.result {
        Err(_) if needs_sha_keys(&report) => load_fresh(node, prev, KeyDigestKind::Sha256),
        Err(_) if report.shared > 0 || report.parsed > 0 => load(node, prev),
        Ok(l)
            if l.snapshot.consumers.creds.wanted_key_digest()
                != l.snapshot.consumers.creds.key_digest =>
        {
            load(node, prev)
        }
        _ => report,
    }
}

/// [`load`], sharing consumers with `old` (whose key digests it keeps), else digesting keys as
/// `keys` says; with `fast`, the simplest consumers of a big file are recorded without libyaml
/// ([`yaml::RawFilter::fast`]).
fn load_with(
    node: &Node,
    prev: &Memory,
    old: Option<&crate::consumer::Consumers>,
    keys: KeyDigestKind,
    fast: bool,
) -> LoadReport {
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
                shared: 0,
                parsed: 0,
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
    // Consumers the raw filter recorded itself.
    let mut fast_items = 0;
    let mut hasher = Sha256::new();
    let mut marked = AHashSet::new();
    let mut builder = match old {
        Some(old) => consumers::Builder::reusing(old),
        None => consumers::Builder::with_key_digest(keys),
    };
    let mut broken = compile::Broken::default();
    for (name, path) in &files {
        let opened = std::fs::File::open(path).and_then(|f| Ok((f.metadata()?.len(), f)));
        let (len, mut file) = match opened {
            Ok(f) => f,
            Err(e) => {
                errors.push(ConfigError::new(name, "", format!("cannot read: {e}")));
                broken.all = true;
                continue;
            }
        };
        if len >= STREAM_BYTES {
            match scan_file(&mut file) {
                Err(e) => {
                    errors.push(ConfigError::new(name, "", format!("cannot read: {e}")));
                    broken.all = true;
                    continue;
                }
                Ok((false, features, end)) => {
                    if end {
                        marked.insert(path.clone());
                    } else if end_marked.contains(path) {
                        errors.push(ConfigError::new(name, "", TRUNCATED));
                        broken.all = true;
                        continue;
                    } else {
                        warnings.push(no_end_warning(name));
                    }
                    use std::io::Seek;
                    if let Err(e) = file.rewind() {
                        errors.push(ConfigError::new(name, "", format!("cannot read: {e}")));
                        broken.all = true;
                        continue;
                    }
                    hasher.update(name.as_bytes());
                    hasher.update([0]);
                    builder.reserve((len / 60) as usize);
                    let f = builder.file(name);
                    let mut sink = Sink {
                        conf: raw::ResourcesConf::default(),
                        consumers: Some((&mut builder, f)),
                        broken: &mut broken,
                        fast,
                    };
                    let source = Box::new(yaml::Source {
                        file,
                        hasher: std::mem::take(&mut hasher),
                        error: None,
                        raw: None,
                    });
                    let before = errors.len();
                    if let Some((h, n)) =
                        parse_stream(name, source, &features, &mut sink, &mut errors)
                    {
                        hasher = h;
                        fast_items += n;
                    }
                    if errors[before..]
                        .iter()
                        .any(|e| e.message.starts_with("cannot read"))
                    {
                        sink.broken.all = true;
                    }
                    parsed.push((name.clone(), sink.conf));
                    continue;
                }
                // `${{` in the file: it is substituted in the whole text, read below.
                Ok((true, _, _)) => {
                    use std::io::Seek;
                    let _ = file.rewind();
                }
            }
        }
        let mut text = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut file, &mut text) {
            errors.push(ConfigError::new(name, "", format!("cannot read: {e}")));
            broken.all = true;
            continue;
        }
        drop(file);
        if text.is_empty() {
            errors.push(ConfigError::new(
                name,
                "",
                "the file is empty (0 bytes): refused as truncated (write files atomically, by rename)",
            ));
            broken.all = true;
            continue;
        }
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        if has_end_marker(&text) {
            marked.insert(path.clone());
        } else if end_marked.contains(path) {
            errors.push(ConfigError::new(name, "", TRUNCATED));
            broken.all = true;
            continue;
        } else {
            warnings.push(no_end_warning(name));
        }
        if is_blank_yaml(&text) {
            parsed.push((name.clone(), raw::ResourcesConf::default()));
            continue;
        }
        // A consumer entry is about 60 bytes of YAML at the least.
        builder.reserve(text.len() / 60);
        let file = builder.file(name);
        let mut sink = Sink {
            conf: raw::ResourcesConf::default(),
            consumers: Some((&mut builder, file)),
            broken: &mut broken,
            fast,
        };
        parse_into(name, &text, &mut sink, &mut errors);
        parsed.push((name.clone(), sink.conf));
    }
    let version: String = hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let reused = builder.reused_count;
    let asked = builder.reuse_asked;
    let compiled = compile::compile_with(parsed, builder, &broken);
    let result = match (compiled, errors.is_empty()) {
        (Ok(snapshot), true) => Ok(snapshot),
        (Ok(_), false) => Err(errors),
        (Err(more), _) => {
            errors.extend(more);
            Err(errors)
        }
    };
    let result = result.map(|mut snapshot| {
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
    // Errors are worded from a full reading: a load that shared anything (or left anything
    // out of libyaml's input) runs again without sharing.
    let shared = if result.is_err() { asked } else { reused };
    LoadReport {
        warnings,
        result,
        shared,
        parsed: fast_items,
    }
}

/// [`load`] for the running gateway: logs the files and their sizes first, and a line every
/// few seconds while a long load (a million consumers) is still under way.
/// Runs on the loader thread ([`loader`]), which also frees the configs reloads replace, so the
/// memory of this one goes back to the system when a reload replaces it.
pub fn load_logged(node: &Node, prev: &Memory) -> LoadReport {
    let (n, p) = (node.clone(), prev.clone());
    loader::run(move || {
        let report = logged(&n, || load(&n, &p));
        loader::release_free_memory();
        report
    })
    .unwrap_or_else(|| logged(node, || load(node, prev)))
}

/// [`load_reusing`], logged as [`load_logged`] logs.
pub(crate) fn load_logged_reusing(node: &Node, prev: &Memory, old: &Snapshot) -> LoadReport {
    logged(node, || load_reusing(node, prev, old))
}

fn logged(node: &Node, load: impl FnOnce() -> LoadReport) -> LoadReport {
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
        let report = load();
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
