//! Run as users do (issue 17, point 3): the shipped `conf/` and `systemd/` configs through
//! `check`; the gateway started from a repository-like folder with a relative `-c` and with no
//! `-c` at all (the default `conf/tollgate.yaml`), where an edit of `conf/resources.yaml` must
//! be applied; and `RUST_LOG=debug`, which the README offers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::support::{Upstream, free_port, http, try_http, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const DEADLINE: Duration = Duration::from_secs(20);

/// `tollgate <args>` run to its end in `cwd`: (exit code, stdout, stderr).
fn run_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `text` with `from` replaced by `to`; panics if `from` is not there (the shipped file
/// changed: this test must follow it).
fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the shipped file no longer has {from:?}"
    );
    text.replace(from, to)
}

#[test]
fn shipped_conf_passes_check_with_relative_and_default_paths() {
    let repo = Path::new(REPO);
    for args in [
        &["check", "-c", "conf/tollgate.yaml"][..],
        &["check", "--config", "conf/tollgate.yaml"],
        &["check", "-c", "./conf/../conf/tollgate.yaml"],
        &["check"],
    ] {
        let (code, out, err) = run_in(repo, args);
        assert_eq!(code, 0, "tollgate {args:?}:\n{out}{err}");
        assert!(
            out.starts_with("ok: 2 routes, 0 services, 1 upstreams, 2 consumers, "),
            "tollgate {args:?}: {out}"
        );
    }
    // From inside conf/, the node file's own folder.
    let (code, out, err) = run_in(&repo.join("conf"), &["check", "-c", "tollgate.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// systemd/tollgate.yaml as installed: /etc/tollgate/tollgate.yaml beside conf.d/*.yaml.
#[test]
fn shipped_systemd_node_file_passes_check_where_it_is_installed() {
    let etc = tempfile::tempdir().unwrap();
    let node = fs::read_to_string(Path::new(REPO).join("systemd/tollgate.yaml")).unwrap();
    fs::write(etc.path().join("tollgate.yaml"), &node).unwrap();
    fs::create_dir(etc.path().join("conf.d")).unwrap();
    fs::copy(
        Path::new(REPO).join("conf/resources.yaml"),
        etc.path().join("conf.d/resources.yaml"),
    )
    .unwrap();
    // Absolute (as the unit's ExecStart) and relative.
    let absolute = etc.path().join("tollgate.yaml");
    let absolute = absolute.to_string_lossy();
    for args in [
        &["check", "-c", &*absolute][..],
        &["check", "-c", "tollgate.yaml"],
    ] {
        let (code, out, err) = run_in(etc.path(), args);
        assert_eq!(code, 0, "tollgate {args:?}:\n{out}{err}");
        assert!(out.starts_with("ok: 2 routes, "), "{out}");
        assert!(
            !err.contains("warning"),
            "the shipped files carry #END: {err}"
        );
    }
    // The unit names that node file.
    let unit = fs::read_to_string(Path::new(REPO).join("systemd/tollgate.service")).unwrap();
    assert!(unit.contains("-c /etc/tollgate/tollgate.yaml"), "{unit}");
}

/// A copy of the repository's `conf/` in a temp "checkout", ports and paths moved to free
/// ones and the echo node to a live upstream; the gateway started there as the quick start
/// does. Killed by PID on drop (its log printed if the test is failing).
struct Checkout {
    root: TempDir,
    child: Option<Child>,
    port: u16,
    status: u16,
}

impl Checkout {
    fn new(up: &Upstream) -> Checkout {
        let root = tempfile::tempdir().unwrap();
        let conf = root.path().join("conf");
        fs::create_dir(&conf).unwrap();
        let (port, status) = (free_port(), free_port());
        let node = fs::read_to_string(Path::new(REPO).join("conf/tollgate.yaml")).unwrap();
        let node = swap(&node, "127.0.0.1:9080", &format!("127.0.0.1:{port}"));
        let node = swap(&node, "127.0.0.1:9091", &format!("127.0.0.1:{status}"));
        let run = root.path().join("run");
        fs::create_dir(&run).unwrap();
        let node = swap(
            &node,
            "/tmp/tollgate.pid",
            &run.join("tollgate.pid").to_string_lossy(),
        );
        let node = swap(
            &node,
            "/tmp/tollgate_upgrade.sock",
            &run.join("upgrade.sock").to_string_lossy(),
        );
        fs::write(conf.join("tollgate.yaml"), node).unwrap();
        let resources = fs::read_to_string(Path::new(REPO).join("conf/resources.yaml")).unwrap();
        fs::write(
            conf.join("resources.yaml"),
            swap(&resources, "127.0.0.1:9081", &up.addr()),
        )
        .unwrap();
        Checkout {
            root,
            child: None,
            port,
            status,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Starts `tollgate <args>` in the checkout's root and waits for `/healthz`.
    fn start(&mut self, args: &[&str], rust_log: &str) {
        let log = fs::File::create(self.path("stderr.log")).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .current_dir(self.root.path())
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        self.child = Some(child);
        let status = self.status;
        let mut exited = false;
        wait_until(DEADLINE, "tollgate answers /healthz", || {
            exited = !matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)));
            exited || try_http(status, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
        });
        assert!(!exited, "tollgate {args:?} exited:\n{}", self.log());
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("stderr.log")).unwrap_or_default()
    }

    fn get(&self, target: &str, headers: &[(&str, &str)]) -> u16 {
        http(self.port, "GET", target, headers, b"").status
    }

    /// The quick start's requests, with their README answers.
    fn quick_start(&self) {
        assert_eq!(self.get("/hello/world", &[]), 200);
        assert_eq!(self.get("/petstore/pets", &[]), 401);
        assert_eq!(self.get("/petstore/pets", &[("apikey", "wrong")]), 401);
        assert_eq!(self.get("/petstore/pets", &[("apikey", "john-key")]), 200);
        assert_eq!(self.get("/nowhere", &[]), 404);
    }

    /// Adds a route `/added/*` to conf/resources.yaml (atomically, by rename, as the README
    /// recommends, or in place as an editor may) and waits until it serves.
    fn edit_and_wait(&self, in_place: bool, id: &str) {
        let file = self.path("conf/resources.yaml");
        let text = fs::read_to_string(&file).unwrap();
        let text = swap(
            &text,
            "routes:\n",
            &format!("routes:\n  - {{id: {id}, uri: /{id}/*, upstream_id: echo}}\n"),
        );
        if in_place {
            fs::write(&file, text).unwrap();
        } else {
            let tmp = self.path("conf/.resources.yaml.tmp");
            fs::write(&tmp, text).unwrap();
            fs::rename(&tmp, &file).unwrap();
        }
        let target = format!("/{id}/x");
        wait_until(
            Duration::from_secs(10),
            &format!("the edit adding /{id}/* is applied without a signal"),
            || self.get(&target, &[]) == 200,
        );
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("----- tollgate log -----\n{}-----", self.log());
        }
    }
}

/// The quick start as written: `tollgate -c conf/tollgate.yaml` from the repository root, and
/// plain `tollgate` (the default node file); both serve the shipped example, and SIGHUP
/// reloads.
#[test]
fn quick_start_with_relative_and_default_config_serves_the_example() {
    for args in [&["-c", "conf/tollgate.yaml"][..], &[]] {
        let up = Upstream::start("echo");
        let mut c = Checkout::new(&up);
        c.start(args, "info");
        c.quick_start();
        // SIGHUP picks up an edit (the watcher is tested below).
        let file = c.path("conf/resources.yaml");
        let text = fs::read_to_string(&file).unwrap();
        fs::write(
            &file,
            swap(
                &text,
                "routes:\n",
                "routes:\n  - {id: hup, uri: /hup/*, upstream_id: echo}\n",
            ),
        )
        .unwrap();
        let pid = c.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
        wait_until(Duration::from_secs(10), "SIGHUP applies the edit", || {
            c.get("/hup/x", &[]) == 200
        });
    }
}

/// The README: "If you edit `conf/resources.yaml`, the change is applied within about
/// 200 ms", with the quick start's relative `-c` and with the default path.
#[test]
fn quick_start_edit_is_applied_with_relative_and_default_config() {
    for args in [&["-c", "conf/tollgate.yaml"][..], &[]] {
        let up = Upstream::start("echo");
        let mut c = Checkout::new(&up);
        c.start(args, "info");
        c.edit_and_wait(false, "renamed");
        c.edit_and_wait(true, "inplace");
        c.quick_start();
    }
}

/// The same edits with an absolute `-c` (as the systemd unit runs it): the watcher applies
/// them.
#[test]
fn quick_start_edit_is_applied_with_absolute_config() {
    let up = Upstream::start("echo");
    let mut c = Checkout::new(&up);
    let node = c.path("conf/tollgate.yaml");
    c.start(&["-c", &node.to_string_lossy()], "info");
    c.edit_and_wait(false, "renamed");
    c.edit_and_wait(true, "inplace");
    c.quick_start();
}

/// `RUST_LOG=debug`, as the README offers: the gateway serves as at `info`, and logs at
/// least one line per request (a rejection names its status and path).
#[test]
fn debug_log_level_serves_and_logs_each_request() {
    let up = Upstream::start("echo");
    let mut c = Checkout::new(&up);
    c.start(&["-c", "conf/tollgate.yaml"], "debug");
    let before = c.log().lines().count();
    c.quick_start();
    let requests = 5;
    wait_until(Duration::from_secs(10), "a log line per request", || {
        c.log().lines().count() >= before + requests
    });
    let log = c.log();
    assert!(
        log.contains("rejected 401 /petstore/pets"),
        "a rejection is logged at debug:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("DEBUG")),
        "debug lines are shown:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
