//! Entry points for the cargo-fuzz targets in `fuzz/`: each takes raw fuzz bytes, runs one part
//! of tollgate on them and panics only when an invariant breaks. They live in the crate (not in
//! `fuzz/`) so that `cargo clippy` and `cargo test` compile them with every change to the APIs
//! they call, and the unit tests below replay the committed seeds and every crash found so far.
//! Not part of the gateway: nothing else in the crate uses this module.

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{KeyInit, Mac};
use pingora_http::RequestHeader;

use crate::auth::{AuthRequest, basic_auth, hmac_auth};
use crate::config::{self, ConfigError, Node};
use crate::path::normalize;
use crate::router::{RouteSpec, Router, method_bit, request_host};
use crate::snapshot::{Counts, RouteId, Snapshot};

// ---------------------------------------------------------------------------------------------
// Resource-file loader

/// A node file and its one resource file in a directory of this thread's own.
struct LoaderDir {
    dir: PathBuf,
    node: Node,
}

impl Drop for LoaderDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

thread_local! {
    static LOADER: RefCell<Option<LoaderDir>> = const { RefCell::new(None) };
}

fn loader_dir() -> LoaderDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tollgate-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the fuzz temp dir");
    let node_file = dir.join("tollgate.yaml");
    std::fs::write(
        &node_file,
        "listen: [\"127.0.0.1:1\"]\nresources: [resources.yaml]\n",
    )
    .expect("write the fuzz node file");
    std::fs::write(dir.join("resources.yaml"), "#END\n").expect("write the fuzz resource file");
    let node = Node::load(&node_file).expect("the fuzz node file is valid");
    LoaderDir { dir, node }
}

/// Loads `text` as the one resource file of a node, through [`config::load`] as `tollgate check`
/// and every reload do: either a snapshot (its counts) or a non-empty list of errors, never a
/// panic. Upstream host names reach the resolver: the fuzz target stubs `getaddrinfo` out.
pub fn load_resources(text: &[u8]) -> Result<Counts, Vec<ConfigError>> {
    LOADER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let l = cell.get_or_insert_with(loader_dir);
        std::fs::write(l.dir.join("resources.yaml"), text).expect("write the fuzz resource file");
        let report = config::load(&l.node, &config::Memory::default());
        match report.result {
            Ok(loaded) => {
                check_snapshot(&loaded.snapshot);
                Ok(loaded.snapshot.counts)
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "a refused load names no error");
                Err(errors)
            }
        }
    })
}

/// What must hold of any snapshot the compiler hands out.
fn check_snapshot(s: &Snapshot) {
    for r in s.routes.iter() {
        assert!(
            r.upstream.idx() < s.upstreams.len(),
            "route {} points past the upstreams",
            r.id
        );
    }
    for probe in ["/", "/a", "/api/x"] {
        if let Some(id) = s.router.find(None, probe.as_bytes(), b"GET", None) {
            assert!(
                id.idx() < s.routes.len(),
                "router returned a route past the list"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Consumers read from their recorded events

/// `text` as a resource file: every plain `consumers` item (`config::tape_de`) must deserialise
/// from its recorded events exactly as serde_yaml's value of it does, as a consumer and as a
/// generic value (the same value, or the same error with the same field path). Panics on a
/// difference; returns how many items were compared.
pub fn tape(text: &[u8]) -> usize {
    config::tape_de::same_as_value::<config::raw::ConsumerConf>(text)
        + config::tape_de::same_as_value::<serde_yaml::Value>(text)
}

// ---------------------------------------------------------------------------------------------
// Consumers recognised from their raw text

/// Two resource files and a chunk size, from one input: the first byte sets how many bytes the
/// file is read at a time (1 to 256), the rest is the old text and the new one, split at the
/// first 0xFF byte (or both the same text when there is none). The raw-text filter
/// (`config::yaml::RawFilter`) reads the new one knowing the old one's items: when that reading
/// succeeds it must give what a plain reading of the new text gives. Panics on a difference;
/// returns how many items were recognised.
pub fn raw_text(data: &[u8]) -> usize {
    let Some((&c, rest)) = data.split_first() else {
        return 0;
    };
    let chunk = usize::from(c) + 1;
    let (old, new) = match rest.iter().position(|&b| b == 0xFF) {
        Some(k) => (&rest[..k], &rest[k + 1..]),
        None => (rest, rest),
    };
    match config::yaml::raw_filter_differential(old, new, chunk) {
        Ok(n) => n,
        Err(e) => panic!("raw-text filter: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Path normaliser

/// Normalises `path` and checks what holds under both the "keep %2F" rule and the "decode every
/// escape once" rule: the matching form starts with `/`, has no `//` and no `.` or `..` segment,
/// and the upstream form starts with `/`.
pub fn path(path: &[u8]) {
    let Ok(n) = normalize(path) else {
        return;
    };
    let m: &[u8] = &n.matching;
    assert!(m.starts_with(b"/"), "matching form {m:?} lacks a leading /");
    assert!(
        !m.windows(2).any(|w| w == b"//"),
        "matching form {m:?} has //"
    );
    assert!(
        !m[1..]
            .split(|&b| b == b'/')
            .any(|s| s == b"." || s == b".."),
        "matching form {m:?} has a dot segment"
    );
    assert!(
        n.upstream.starts_with(b"/"),
        "upstream form {:?} lacks a leading /",
        n.upstream
    );
}

// ---------------------------------------------------------------------------------------------
// Route matcher

/// Reads fuzz bytes as small values.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// A short string over `alphabet`: a length byte, then one byte per character.
    fn text(&mut self, alphabet: &[u8], max: usize) -> String {
        let n = self.byte() as usize % (max + 1);
        (0..n)
            .map(|_| alphabet[self.byte() as usize % alphabet.len()] as char)
            .collect()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const REMOTES: [&str; 4] = ["10.0.0.0/8", "127.0.0.0/8", "10.1.2.3/32", "::1/128"];
const CLIENTS: [Option<&str>; 4] = [None, Some("10.1.2.3"), Some("127.0.0.1"), Some("::1")];
const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "PURGE", "BREW"];

/// A linear reference matcher: of the routes that accept the request, the best by host tier
/// (exact, then wildcard by longest suffix, then any host), exact path before the longest
/// prefix, higher priority, earlier in the file.
fn reference_find(
    specs: &[RouteSpec],
    host: Option<&str>,
    path: &[u8],
    method: &[u8],
    remote: Option<IpAddr>,
) -> Option<RouteId> {
    type Key = ((u8, usize, String), (u8, usize), i64, usize);
    let bit = method_bit(method);
    let mut best: Option<(Key, RouteId)> = None;
    for (order, s) in specs.iter().enumerate() {
        let accepts = (s.methods == 0 || s.methods & bit != 0)
            && (s.remote_addrs.is_empty()
                || remote.is_some_and(|ip| s.remote_addrs.iter().any(|n| n.contains(&ip))));
        if !accepts {
            continue;
        }
        let mut host_ranks = Vec::new();
        if s.hosts.is_empty() {
            host_ranks.push((2, 0, String::new()));
        }
        for h in &s.hosts {
            match (h.strip_prefix('*'), host) {
                (Some(suffix), Some(host))
                    if host.len() > suffix.len() && host.ends_with(suffix) =>
                {
                    host_ranks.push((1, usize::MAX - suffix.len(), suffix.to_string()));
                }
                (None, Some(host)) if host == h => host_ranks.push((0, 0, String::new())),
                _ => {}
            }
        }
        for p in &s.paths {
            let path_rank = match p.strip_suffix('*') {
                Some(prefix) if path.starts_with(prefix.as_bytes()) => {
                    (1, usize::MAX - prefix.len())
                }
                None if path == p.as_bytes() => (0, 0),
                _ => continue,
            };
            for hr in &host_ranks {
                let key = (hr.clone(), path_rank, -s.priority, order);
                if best.as_ref().is_none_or(|(b, _)| key < *b) {
                    best = Some((key, s.route));
                }
            }
        }
    }
    best.map(|(_, r)| r)
}

/// Builds a router from up to 8 fuzzed routes (paths over `/ab*`, hosts over `ab.*`, methods,
/// client networks, priorities) and checks a few fuzzed requests against [`reference_find`].
pub fn router(data: &[u8]) {
    let mut c = Cursor(data);
    let n = c.byte() as usize % 9;
    let specs: Vec<RouteSpec> = (0..n)
        .map(|i| {
            let paths = (0..1 + c.byte() % 3).map(|_| c.text(b"/ab*", 6)).collect();
            let hosts = (0..c.byte() % 3).map(|_| c.text(b"ab.*", 5)).collect();
            let methods = u16::from(c.byte()) | (u16::from(c.byte() & 0x82) << 8);
            let remote_addrs = (0..c.byte() % 3)
                .map(|_| {
                    REMOTES[c.byte() as usize % REMOTES.len()]
                        .parse()
                        .expect("valid net")
                })
                .collect();
            let priority = i64::from(c.byte() as i8 % 4);
            RouteSpec {
                route: RouteId(i as u32),
                paths,
                hosts,
                methods,
                remote_addrs,
                priority,
            }
        })
        .collect();
    let router = Router::build(&specs);
    for _ in 0..4 {
        let raw_host = c.text(b"abAB.:1[]*", 8);
        let host = (!raw_host.is_empty()).then(|| request_host(&raw_host));
        let path = c.text(b"/ab*", 8);
        let method = METHODS[c.byte() as usize % METHODS.len()];
        let remote = CLIENTS[c.byte() as usize % CLIENTS.len()].map(|s| s.parse().expect("ip"));
        let got = router.find(host.as_deref(), path.as_bytes(), method.as_bytes(), remote);
        let want = reference_find(
            &specs,
            host.as_deref(),
            path.as_bytes(),
            method.as_bytes(),
            remote,
        );
        assert_eq!(
            got, want,
            "host {host:?} path {path:?} {method} from {remote:?} on {specs:#?}"
        );
        if c.is_empty() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Auth parsers: Basic, hmac Signature, JWT

const AUTH_RESOURCES: &str = r#"
upstreams:
  - {id: up, nodes: {"127.0.0.1:9": 1}}
routes:
  - {id: basic, uri: /basic, upstream_id: up, plugins: {basic-auth: {}}}
  - {id: hmac, uri: /hmac, upstream_id: up, plugins: {hmac-auth: {signed_headers: [date]}}}
  - {id: hmac-body, uri: /hmac-body, upstream_id: up,
     plugins: {hmac-auth: {validate_request_body: true, max_req_body_size: 100}}}
  - {id: jwt, uri: /jwt, upstream_id: up, plugins: {jwt-auth: {}}}
  - id: multi
    uri: /multi
    upstream_id: up
    plugins: {multi-auth: {auth_plugins: [{basic-auth: {}}, {hmac-auth: {}}, {jwt-auth: {}}]}}
consumers:
  - username: alice
    plugins:
      basic-auth: {username: alice, password: "pa:ss"}
      hmac-auth: {key_id: alice-key, secret_key: alice-secret}
      jwt-auth: {key: alice-jwt, secret: alice-jwt-secret}
#END
"#;
const ROUTES: [&str; 5] = ["/basic", "/hmac", "/hmac-body", "/jwt", "/multi"];
const HMAC_ALGS: [&str; 4] = ["hmac-sha256", "hmac-sha1", "hmac-sha512", "hmac-md5"];

struct AuthFixture {
    snapshot: Snapshot,
    runtime: tokio::runtime::Runtime,
}

fn auth_fixture() -> &'static AuthFixture {
    static F: OnceLock<AuthFixture> = OnceLock::new();
    F.get_or_init(|| {
        let loaded = LOADER.with(|cell| {
            let mut cell = cell.borrow_mut();
            let l = cell.get_or_insert_with(loader_dir);
            std::fs::write(l.dir.join("resources.yaml"), AUTH_RESOURCES)
                .expect("write the auth fixture");
            config::load(&l.node, &config::Memory::default()).result
        });
        let Ok(loaded) = loaded else {
            panic!("the auth fixture does not load");
        };
        AuthFixture {
            snapshot: loaded.snapshot,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
        }
    })
}

fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The first byte's low 3 bits pick a route (basic, hmac, hmac with body digest, jwt, multi-auth),
/// the next 2 bits how the rest becomes the request: (0) the raw `Authorization` value; (1) `Basic base64(rest)`;
/// (2) an hmac `Signature` signed with alice's secret over fuzzed `headers`, an extra header and
/// a `Digest`; (3) a JWT `header.payload` from fuzzed JSON, signed HS256 with alice's secret.
/// The parsers are also called directly. Checks: no panic; a Basic value built from `user:pass`
/// parses back to the trimmed pair. True when the request authenticated.
pub fn auth(data: &[u8]) -> bool {
    let Some((&first, rest)) = data.split_first() else {
        return false;
    };
    let f = auth_fixture();
    let text = String::from_utf8_lossy(rest);
    let _ = basic_auth::parse(rest);
    let _ = hmac_auth::parse_params(&text);

    let route_path = ROUTES[(first & 7) as usize % ROUTES.len()];
    let now = SystemTime::now();
    let Ok(mut req) = RequestHeader::build("POST", route_path.as_bytes(), None) else {
        return false;
    };
    let authorization: Vec<u8> = match (first >> 3) % 4 {
        0 => rest.to_vec(),
        1 => {
            let value = format!("Basic {}", STANDARD.encode(rest));
            if let Ok(s) = std::str::from_utf8(rest)
                && let Some((user, pass)) = s.split_once(':')
                && s.trim().split_once(':') == Some((user.trim_start(), pass.trim_end()))
            {
                assert_eq!(
                    basic_auth::parse(value.as_bytes()),
                    Ok((user.trim().to_string(), pass.trim().to_string())),
                    "Basic {s:?} does not parse back"
                );
            }
            value.into_bytes()
        }
        2 => {
            let mut c = Cursor(rest);
            let alg = HMAC_ALGS[c.byte() as usize % HMAC_ALGS.len()];
            let flags = c.byte();
            let (headers, rest) = split_at_byte(c.0, b'\n');
            let (extra, digest) = split_at_byte(rest, b'\n');
            let headers = String::from_utf8_lossy(headers);
            let date = httpdate::fmt_http_date(now);
            if req.insert_header("date", &date).is_err()
                || req.insert_header("x-extra", extra).is_err()
                || req.insert_header("digest", digest).is_err()
            {
                return false;
            }
            if flags & 1 != 0 {
                let _ = req.insert_header("content-length", "12");
            }
            let key_id = if flags & 2 != 0 {
                "nobody"
            } else {
                "alice-key"
            };
            let data =
                hmac_auth::signing_string(key_id, Some(&headers), &req, route_path.as_bytes());
            let sig = match alg {
                "hmac-sha1" => mac::<hmac::Hmac<sha1::Sha1>>(&data),
                "hmac-sha512" => mac::<hmac::Hmac<sha2::Sha512>>(&data),
                _ => mac::<hmac::Hmac<sha2::Sha256>>(&data),
            };
            format!(
                "Signature keyId=\"{key_id}\",algorithm=\"{alg}\",headers=\"{headers}\",signature=\"{}\"",
                STANDARD.encode(sig)
            )
            .into_bytes()
        }
        _ => {
            let (header, payload) = split_at_byte(rest, 0);
            let signing = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload)
            );
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"alice-jwt-secret")
                .expect("any key length");
            m.update(signing.as_bytes());
            let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
            format!("Bearer {signing}.{sig}").into_bytes()
        }
    };
    if req.insert_header("authorization", authorization).is_err() {
        return false;
    }
    let ar = AuthRequest {
        req: &req,
        path: route_path.as_bytes(),
        now,
    };
    let (_, route) = f
        .snapshot
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| format!("/{}", r.id) == route_path)
        .expect("fixture route");
    f.runtime
        .block_on(crate::auth::authenticate(
            &route.auth,
            &f.snapshot.consumers.creds,
            &ar,
        ))
        .is_ok_and(|r| r.identity.is_some())
}

fn mac<M: Mac + KeyInit>(data: &[u8]) -> Vec<u8> {
    let mut m = <M as KeyInit>::new_from_slice(b"alice-secret").expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed seed of `target` under `fuzz/seeds/`.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).expect("seed dir") {
            out.push(std::fs::read(e.expect("seed").path()).expect("seed file"));
        }
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    #[test]
    fn resources_seeds() {
        let mut ok = 0;
        for s in seeds("resources") {
            ok += usize::from(load_resources(&s).is_ok());
        }
        assert!(ok > 0, "no resource seed loads");
        assert!(load_resources(b"routes: [").is_err());
        assert!(load_resources(AUTH_RESOURCES.as_bytes()).is_ok());
    }

    #[test]
    fn tape_seeds() {
        let compared: usize = seeds("tape").iter().map(|s| tape(s)).sum();
        assert!(compared > 0, "no tape seed has a plain consumer");
    }

    #[test]
    fn path_seeds() {
        for s in seeds("path") {
            path(&s);
        }
    }

    #[test]
    fn router_seeds() {
        for s in seeds("router") {
            router(&s);
        }
    }

    #[test]
    fn auth_seeds() {
        for s in seeds("auth") {
            auth(&s);
        }
    }

    /// The signing modes reach past the signature checks, so the fuzzer explores what follows.
    #[test]
    fn auth_modes_authenticate() {
        let m = |route: u8, mode: u8, rest: &[u8]| [&[route | (mode << 3)][..], rest].concat();
        assert!(auth(&m(0, 0, b"Basic YWxpY2U6cGE6c3M=")));
        assert!(auth(&m(0, 1, b" alice:pa:ss\n")));
        assert!(!auth(&m(0, 1, b"alice:pa:sss")));
        assert!(auth(&m(1, 2, b"\x00\x00date @request-target\nx\n")));
        assert!(auth(&m(2, 2, b"\x00\x00date\nx\nSHA-256=abc=")));
        assert!(!auth(&m(1, 2, b"\x00\x02date\nx\n")));
        assert!(auth(&m(
            3,
            3,
            b"{\"alg\":\"HS256\"}\x00{\"key\":\"alice-jwt\"}"
        )));
        assert!(!auth(&m(
            3,
            3,
            b"{\"alg\":\"HS256\"}\x00{\"key\":\"alice-jwt\",\"exp\":1}"
        )));
        assert!(auth(&m(4, 1, b"alice:pa:ss")));
    }
}
