//! Criterion benchmarks of the request pipeline on a compiled snapshot: routing, each auth
//! scheme's verification (key lookup, basic-auth, hmac, jwt), and compiling a large config.

use std::hint::black_box;
use std::time::SystemTime;

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{KeyInit, Mac};
use pingora_http::RequestHeader;
use tollgate::{Limiter, RequestInfo, ResourcesConf, Snapshot, compile, run_pipeline};

const CONSUMERS: usize = 10_000;

fn resources(consumers: usize) -> String {
    let mut y = String::from(
        "routes:\n\
         - {id: open, uri: /open/*, upstream: {nodes: {\"127.0.0.1:1980\": 1}}}\n\
         - {id: key, uri: /key/*, upstream: {nodes: {\"127.0.0.1:1980\": 1}}, plugins: {key-auth: {}}}\n\
         - {id: basic, uri: /basic/*, upstream: {nodes: {\"127.0.0.1:1980\": 1}}, plugins: {basic-auth: {}}}\n\
         - {id: hmac, uri: /hmac/*, upstream: {nodes: {\"127.0.0.1:1980\": 1}}, plugins: {hmac-auth: {}}}\n\
         - {id: jwt, uri: /jwt/*, upstream: {nodes: {\"127.0.0.1:1980\": 1}}, plugins: {jwt-auth: {}}}\n\
         - {id: registry, uri: /registry/*, upstream: {nodes: {\"127.0.0.1:1980\": 1}}, plugins: {key-auth: {}, request-id: {}, cors: {}, ip-restriction: {whitelist: [127.0.0.0/8]}, limit-req: {rate: 1000000000, burst: 1000000000, key: remote_addr, nodelay: true}, proxy-rewrite: {uri: /new, headers: {set: {X-Api: v1}}}}}\n\
         consumers:\n",
    );
    for i in 0..consumers {
        y.push_str(&format!(
            "- username: user{i}\n  credentials:\n\
             \x20 - {{name: k, plugins: {{key-auth: {{key: key-{i}}}}}}}\n\
             \x20 - {{name: b, plugins: {{basic-auth: {{username: user{i}, password: pw-{i}}}}}}}\n\
             \x20 - {{name: h, plugins: {{hmac-auth: {{key_id: kid-{i}, secret_key: secret-{i}}}}}}}\n\
             \x20 - {{name: j, plugins: {{jwt-auth: {{key: jk-{i}, secret: jwt-secret-{i}}}}}}}\n"
        ));
    }
    y
}

fn snapshot(consumers: usize) -> Snapshot {
    let conf: ResourcesConf = serde_yaml::from_str(&resources(consumers)).expect("bench yaml");
    compile(vec![("bench.yaml".into(), conf)]).unwrap_or_else(|e| panic!("{e:?}"))
}

fn request(path: &str, headers: &[(&str, String)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", path.as_bytes(), None).expect("request");
    r.insert_header("host", "bench.local").expect("header");
    for (k, v) in headers {
        r.insert_header(k.to_string(), v.as_str()).expect("header");
    }
    r
}

fn run(snap: &Snapshot, req: &RequestHeader, limiter: &Limiter) -> bool {
    let info = RequestInfo {
        remote: Some([127, 0, 0, 1].into()),
        local: Some([127, 0, 0, 1].into()),
        tls: false,
        now: SystemTime::now(),
    };
    futures::executor::block_on(run_pipeline(snap, req, &info, limiter)).is_ok()
}

fn benches(c: &mut Criterion) {
    let snap = snapshot(CONSUMERS);
    let limiter = Limiter::new();
    let n = CONSUMERS / 2;
    let open = request("/open/a/b", &[]);
    let key = request("/key/x", &[("apikey", format!("key-{n}"))]);
    let basic = request(
        "/basic/x",
        &[(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("user{n}:pw-{n}"))
            ),
        )],
    );
    let date = httpdate::fmt_http_date(SystemTime::now());
    let signing = format!("kid-{n}\ndate: {date}\n");
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(format!("secret-{n}").as_bytes())
            .expect("key");
    mac.update(signing.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let hmac = request(
        "/hmac/x",
        &[
            ("date", date.clone()),
            (
                "authorization",
                format!(
                    "Signature keyId=\"kid-{n}\",algorithm=\"hmac-sha256\",headers=\"date\",signature=\"{sig}\""
                ),
            ),
        ],
    );
    let claims = serde_json::json!({"key": format!("jk-{n}"), "exp": 4_000_000_000u64});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(format!("jwt-secret-{n}").as_bytes()),
    )
    .expect("token");
    let jwt = request("/jwt/x", &[("authorization", format!("Bearer {token}"))]);
    let registry = request("/registry/x", &[("apikey", format!("key-{n}"))]);
    for (name, req) in [
        ("route_only", &open),
        ("key_auth", &key),
        ("basic_auth", &basic),
        ("hmac_auth", &hmac),
        ("jwt_auth", &jwt),
        ("key_auth_plus_registry_plugins", &registry),
    ] {
        assert!(run(&snap, req, &limiter), "{name} must pass");
        c.bench_function(&format!("pipeline/{name}/{CONSUMERS}_consumers"), |b| {
            b.iter(|| black_box(run(&snap, black_box(req), &limiter)))
        });
    }
    let text = resources(1_000);
    c.bench_function("compile/1000_consumers_4000_credentials", |b| {
        b.iter(|| {
            let conf: ResourcesConf = serde_yaml::from_str(&text).expect("yaml");
            black_box(compile(vec![("bench.yaml".into(), conf)]).is_ok())
        })
    });
}

criterion_group! {
    name = pipeline_benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1)).sample_size(30);
    targets = benches
}
criterion_main!(pipeline_benches);
