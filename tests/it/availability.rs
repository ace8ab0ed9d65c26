//! Availability (issue 11): an upstream failing mid-body cuts the client's transfer, idle and
//! silent connections are closed on time, pipelined requests are served, `pid_file` is ours,
//! and binary upgrades under load fail no request.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Client, Gateway, Upstream, http, wait_until};

/// An upstream that answers every connection with `head_and_part` and then closes it.
fn broken_upstream(head_and_part: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(head_and_part);
            let _ = s.flush();
            drop(s);
        }
    });
    port
}

/// Everything the gateway sends on one raw request, until it closes (bounded).
fn raw_exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

#[test]
fn an_upstream_failing_mid_body_cuts_the_clients_transfer() {
    let chunked =
        broken_upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    let sized = broken_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello");
    let gw = Gateway::start(&format!(
        r#"routes:
  - {{id: c, uri: /c, upstream: {{nodes: {{"127.0.0.1:{chunked}": 1}}}}}}
  - {{id: s, uri: /s, upstream: {{nodes: {{"127.0.0.1:{sized}": 1}}}}}}
#END
"#
    ));
    let got = raw_exchange(gw.port(), b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("hello"), "{text}");
    assert!(
        !text.contains("error_msg"),
        "an error spliced into the body: {text}"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the chunked body was ended cleanly, so the client cannot tell it failed: {text:?}"
    );
    let got = raw_exchange(gw.port(), b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("error_msg"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(
        body, "hello",
        "fewer bytes than Content-Length, then the cut"
    );
}

/// Waits until the peer closes `s` (read returns 0 or an error); the time it took.
fn time_to_close(mut s: TcpStream, bound: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(bound)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("not closed within {bound:?}")
            }
            Err(_) => return start.elapsed(),
        }
    }
}

#[test]
fn idle_and_silent_connections_are_closed_on_time() {
    let up = Upstream::start("up");
    let gw = Gateway::builder()
        .node_extra("keepalive_timeout: 1\nclient_header_timeout: 1\n")
        .start(&format!(
            "routes:\n  - {{id: r, uri: /r, upstream: {}}}\n#END\n",
            up.yaml()
        ));
    // A connection that never sends.
    let silent = TcpStream::connect(("127.0.0.1", gw.port())).unwrap();
    let t = time_to_close(silent, Duration::from_secs(20));
    assert!(t >= Duration::from_millis(900), "closed too early: {t:?}");
    // A keep-alive connection idle after one request.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port())).unwrap();
    s.write_all(b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    time_to_close(s, Duration::from_secs(20));
    // The gateway keeps answering meanwhile.
    assert_eq!(http(gw.port(), "GET", "/r", &[], b"").status, 200);
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: r, uri: /r/*, upstream: {}}}\n#END\n",
        up.yaml()
    ));
    let mut s = TcpStream::connect(("127.0.0.1", gw.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /r/one HTTP/1.1\r\nHost: x\r\n\r\nGET /r/two HTTP/1.1\r\nHost: x\r\n\r\nGET /r/three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let answers = text.matches("HTTP/1.1 200").count();
    assert_eq!(answers, 3, "{text}");
    let (a, b, c) = (
        text.find("/r/one").unwrap(),
        text.find("/r/two").unwrap(),
        text.find("/r/three").unwrap(),
    );
    assert!(a < b && b < c, "answers out of order: {text}");
}

#[test]
fn pid_file_is_written_at_start_and_removed_at_exit() {
    let up = Upstream::start("up");
    let mut gw = Gateway::builder()
        .node_extra("pid_file: run/tollgate.pid\n")
        .file("run/.keep", "")
        .start(&format!(
            "routes:\n  - {{id: r, uri: /r, upstream: {}}}\n#END\n",
            up.yaml()
        ));
    let pid_path = gw.dir().join("run/tollgate.pid");
    let text = fs::read_to_string(&pid_path).expect("pid_file written");
    assert_eq!(text.trim(), gw.pid().to_string());
    // The README's command works as written.
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -0 \"$(cat {})\"", pid_path.display()))
        .status()
        .unwrap();
    assert!(ok.success());
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(!pid_path.exists(), "pid_file removed at exit");
}

#[test]
fn three_binary_upgrades_under_load_fail_no_request() {
    let up = Upstream::start("up");
    let mut gw = Gateway::builder()
        .node_extra("upgrade_sock: upgrade.sock\npid_file: tollgate.pid\n")
        .start(&format!(
            "routes:\n  - {{id: r, uri: /r, upstream: {}}}\n#END\n",
            up.yaml()
        ));
    let node = gw.dir().join("tollgate.yaml");
    let pid_path = gw.dir().join("tollgate.pid");
    let port = gw.port();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, errors) =
                (stop.clone(), ok.clone(), failed.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(port);
                while !stop.load(Ordering::SeqCst) {
                    match c.try_send("GET", "/r", &[], b"") {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            errors.lock().unwrap().push(format!("status {}", r.status));
                            c = Client::new(port);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            errors.lock().unwrap().push(e.to_string());
                            c = Client::new(port);
                        }
                    }
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), "load is flowing", || {
        ok.load(Ordering::SeqCst) > 100
    });
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut current: Option<Kill> = None;
    for round in 0..3 {
        let log_path = gw.dir().join(format!("upgrade-{round}.log"));
        let log = fs::File::create(&log_path).unwrap();
        let new = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("-c")
            .arg(&node)
            .arg("--upgrade")
            .env("RUST_LOG", "info")
            .stderr(log)
            .spawn()
            .unwrap();
        let new_pid = new.id();
        wait_until(
            Duration::from_secs(20),
            "the new process waits for sockets",
            || fs::read_to_string(&log_path).is_ok_and(|l| l.contains("socket transfer")),
        );
        let old_pid = fs::read_to_string(&pid_path).unwrap().trim().to_owned();
        assert!(
            Command::new("kill")
                .args(["-QUIT", &old_pid])
                .status()
                .unwrap()
                .success()
        );
        match current.take() {
            None => {
                let status = gw.wait_exit(Duration::from_secs(30)).expect("old exits");
                assert_eq!(status.code(), Some(0));
            }
            Some(mut old) => {
                let mut exited = None;
                wait_until(Duration::from_secs(30), "the old process exits", || {
                    exited = old.0.try_wait().unwrap();
                    exited.is_some()
                });
                assert_eq!(exited.unwrap().code(), Some(0));
            }
        }
        wait_until(
            Duration::from_secs(10),
            "pid_file names the new process",
            || fs::read_to_string(&pid_path).is_ok_and(|t| t.trim() == new_pid.to_string()),
        );
        current = Some(Kill(new));
        let before = ok.load(Ordering::SeqCst);
        wait_until(Duration::from_secs(10), "the new process serves", || {
            ok.load(Ordering::SeqCst) > before + 100
        });
    }
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("three upgrades under load: {ok} requests answered 200, {failed} failed");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed across three upgrades: {:?}",
        ok + failed,
        errors.lock().unwrap()
    );
    drop(current);
}

/// Raises this process's open-file limit (the gateway child inherits it); the new soft limit.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    #[allow(unsafe_code)]
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(want);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

#[test]
fn new_clients_are_served_while_5000_idle_connections_sit_open() {
    // 5,000 where the hard limit allows (each side holds one fd per connection), else fewer.
    let limit = raise_nofile(20_000);
    let n = 5000.min((limit.saturating_sub(300) / 2) as usize);
    assert!(n >= 400, "open-file limit too low for this test: {limit}");
    let up = Upstream::start("up");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{id: r, uri: /r, upstream: {}}}\n#END\n",
        up.yaml()
    ));
    let rss = |pid: u32| -> u64 {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let before = rss(gw.pid());
    let mut idle = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect(("127.0.0.1", gw.port()))
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        // Half send a request and then idle on keep-alive; half never send a byte.
        if i % 2 == 0 {
            let mut s2 = s.try_clone().unwrap();
            s2.write_all(b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
        idle.push(s);
    }
    for _ in 0..20 {
        assert_eq!(http(gw.port(), "GET", "/r", &[], b"").status, 200);
        assert_eq!(
            http(gw.status_port(), "GET", "/healthz", &[], b"").status,
            200
        );
    }
    let after = rss(gw.pid());
    eprintln!("RSS with {n} idle connections: {after} kB (before: {before} kB)");
    drop(idle);
}

/// `tollgate_config_reloads_total{result="failure"}` as scraped.
fn reload_failures(gw: &Gateway) -> u64 {
    http(gw.status_port(), "GET", "/metrics", &[], b"")
        .text()
        .lines()
        .find(|l| l.starts_with("tollgate_config_reloads_total{result=\"failure\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_deploy_that_lost_its_files_is_refused_and_the_old_config_serves() {
    let up = Upstream::start("up");
    let route = format!(
        "routes:\n  - {{id: r, uri: /r, upstream: {}}}\n#END\n",
        up.yaml()
    );
    let gw = Gateway::builder()
        .resources(&["conf.d/*.yaml"])
        .file("conf.d/a.yaml", &route)
        .start("");
    assert_eq!(http(gw.port(), "GET", "/r", &[], b"").status, 200);
    // Every file of the glob moved away (an `rm` before a slow `cp`).
    let (from, to) = (gw.dir().join("conf.d/a.yaml"), gw.dir().join("a.yaml.bak"));
    fs::rename(&from, &to).unwrap();
    gw.sighup();
    wait_until(Duration::from_secs(10), "the reload is refused", || {
        reload_failures(&gw) >= 1
    });
    assert_eq!(http(gw.port(), "GET", "/r", &[], b"").status, 200);
    // A file truncated to 0 bytes.
    fs::rename(&to, &from).unwrap();
    fs::write(gw.dir().join("conf.d/b.yaml"), "").unwrap();
    let before = reload_failures(&gw);
    gw.sighup();
    wait_until(Duration::from_secs(10), "the empty file is refused", || {
        reload_failures(&gw) > before
    });
    assert_eq!(http(gw.port(), "GET", "/r", &[], b"").status, 200);
    assert!(gw.stderr().contains("empty"), "{}", gw.stderr());
}
