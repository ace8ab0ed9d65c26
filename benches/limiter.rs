//! limit-count counters: local throughput on one thread and contended from two, the cost of a
//! counter key, and (when `redis-server` is on PATH) Redis per request vs `sync_interval`.
//!
//! `cargo bench --bench limiter`; figures go to benches/RESULTS.md.

use std::future::Future;
use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tollgate::{CounterKey, KeyVars, LimitCount, LimitCountConf, Limiter, compile_limit_count};

fn conf(yaml: &str) -> LimitCount {
    let c: LimitCountConf = serde_yaml::from_str(yaml).expect("yaml");
    compile_limit_count(&c).expect("valid conf")
}

/// Local decisions never wait: poll once.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a local acquire waited"),
    }
}

fn local(c: &mut Criterion) {
    // Large enough that every request is admitted and counted.
    let lc = conf("{count: 1000000000000, time_window: 3600}");
    let limiter = Limiter::new();
    let mut g = c.benchmark_group("local");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_key", |b| {
        b.iter(|| {
            ready(limiter.acquire(
                &lc.policy,
                lc.count,
                lc.window_ms,
                black_box(CounterKey(7)),
                Instant::now(),
            ))
        })
    });
    let keys: Vec<CounterKey> = (0..100_000u128)
        .map(|i| CounterKey(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)))
        .collect();
    let mut i = 0;
    g.bench_function("100k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            ready(limiter.acquire(&lc.policy, lc.count, lc.window_ms, keys[i], Instant::now()))
        })
    });
    let headers = http::HeaderMap::new();
    let vars = KeyVars {
        remote_addr: "203.0.113.7",
        server_addr: "10.0.0.1",
        consumer_name: Some("FetchBot"),
        consumer_group_id: None,
        route_id: "orders",
        service_id: None,
        headers: &headers,
        query: None,
    };
    let tpl = conf(
        "{count: 1000000000000, time_window: 3600, key_type: var_combination, key: '$remote_addr $consumer_name'}",
    );
    g.bench_function("counter_key_plus_acquire", |b| {
        b.iter(|| {
            let (key, _) = tpl.counter_key("consumer:FetchBot", black_box(&vars));
            ready(limiter.acquire(&tpl.policy, tpl.count, tpl.window_ms, key, Instant::now()))
        })
    });
    g.finish();
}

/// Two threads acquiring together; one iteration is one request on each thread.
fn contended(c: &mut Criterion) {
    let lc = conf("{count: 1000000000000, time_window: 3600}");
    let limiter = Limiter::new();
    let mut g = c.benchmark_group("local_2_threads");
    g.throughput(Throughput::Elements(2));
    for (name, distinct) in [("same_key", false), ("distinct_keys", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let barrier = Barrier::new(2);
                std::thread::scope(|s| {
                    let run = |t: u128| {
                        let (limiter, lc, barrier) = (&limiter, &lc, &barrier);
                        move || {
                            barrier.wait();
                            let start = Instant::now();
                            for i in 0..iters {
                                let key = if distinct {
                                    CounterKey(
                                        (u128::from(i % 10_000) << 1 | t)
                                            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
                                    )
                                } else {
                                    CounterKey(7)
                                };
                                ready(limiter.acquire(
                                    &lc.policy,
                                    lc.count,
                                    lc.window_ms,
                                    key,
                                    Instant::now(),
                                ))
                                .ok();
                            }
                            start.elapsed()
                        }
                    };
                    let a = s.spawn(run(0));
                    let b = s.spawn(run(1));
                    let (a, b) = (a.join().expect("thread"), b.join().expect("thread"));
                    a.max(b)
                })
            })
        });
    }
    g.finish();
}

struct RedisServer(Child, u16);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<RedisServer> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = RedisServer(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(server)
}

/// Requests/s through Redis: one round trip per request vs `sync_interval`, 32 requests in
/// flight on a 2-thread runtime, 10k distinct keys.
fn redis(c: &mut Criterion) {
    let Some(server) = start_redis() else {
        eprintln!("redis-server not available: skipping the redis benchmarks");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let limiter = Arc::new(Limiter::new());
    let mut g = c.benchmark_group("redis_32_in_flight");
    g.throughput(Throughput::Elements(1));
    for (name, extra) in [
        ("per_request", ""),
        ("sync_interval_0.1s", ", sync_interval: 0.1"),
    ] {
        let lc = Arc::new(conf(&format!(
            "{{count: 1000000000000, time_window: 3600, policy: redis, redis_host: 127.0.0.1, redis_port: {}{extra}}}",
            server.1
        )));
        // Background sync for the sync_interval case.
        let (tx, rx) = tokio::sync::watch::channel(false);
        let bg = rt.spawn(limiter.clone().run_background(rx));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (limiter, lc) = (limiter.clone(), lc.clone());
                rt.block_on(async move {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..32u64)
                        .map(|t| {
                            let (limiter, lc) = (limiter.clone(), lc.clone());
                            tokio::spawn(async move {
                                let mut i = t;
                                while i < iters {
                                    let key = CounterKey(u128::from(i % 10_000));
                                    limiter
                                        .acquire(
                                            &lc.policy,
                                            lc.count,
                                            lc.window_ms,
                                            key,
                                            Instant::now(),
                                        )
                                        .await
                                        .expect("redis answers");
                                    i += 32;
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                    start.elapsed()
                })
            })
        });
        tx.send(true).ok();
        rt.block_on(bg).ok();
    }
    g.finish();
    drop(server);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    targets = local, contended, redis
}
criterion_main!(benches);
