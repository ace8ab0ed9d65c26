//! [`Gateway`]: the real `tollgate` binary on free loopback ports, fed files from a temp dir;
//! [`run_tollgate`] and [`tollgate_check`] for runs that are expected to end.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{free_port, http, try_http, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const START_DEADLINE: Duration = Duration::from_secs(20);
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

/// Options for [`Gateway`]; `Gateway::builder()...start(resources_yaml)`.
#[derive(Default)]
pub struct GatewayBuilder {
    node_extra: String,
    files: Vec<(String, String)>,
    resources: Option<Vec<String>>,
    tls: Option<(String, String)>,
    env: Vec<(String, String)>,
}

impl GatewayBuilder {
    /// Sets an environment variable for the gateway process (e.g. for `$env://VAR` secrets).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// YAML appended to the node file (keys other than `listen`, `status_listen`, `threads`,
    /// `resources`).
    pub fn node_extra(mut self, yaml: &str) -> Self {
        self.node_extra.push_str(yaml);
        self.node_extra.push('\n');
        self
    }

    /// Another file in the config dir (not a resource file unless named in [`Self::resources`]).
    pub fn file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.to_owned(), text.to_owned()));
        self
    }

    /// The node file's `resources` list (files or globs); default `["resources.yaml"]`.
    pub fn resources(mut self, list: &[&str]) -> Self {
        self.resources = Some(list.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Adds a TLS listener with this certificate and key (PEM), beside the plain one.
    pub fn tls(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.tls = Some((cert_pem.to_owned(), key_pem.to_owned()));
        self
    }

    /// Writes `resources.yaml` and the other files, starts the binary and waits until
    /// `GET /healthz` on the status port answers 200.
    pub fn start(self, resources_yaml: &str) -> Gateway {
        let mut dir = tempfile::tempdir().expect("temp dir");
        write(&dir.path().join("resources.yaml"), resources_yaml);
        for (name, text) in &self.files {
            write(&dir.path().join(name), text);
        }
        let tls = self.tls.as_ref().map(|(cert, key)| {
            let (cert_path, key_path) = (
                dir.path().join("tls-cert.pem"),
                dir.path().join("tls-key.pem"),
            );
            write(&cert_path, cert);
            write(&key_path, key);
            (cert_path, key_path)
        });
        let resources = self
            .resources
            .unwrap_or_else(|| vec!["resources.yaml".to_owned()]);
        // A port picked by `free_port` can be taken before the gateway binds it: retry then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = Ports {
                port: free_port(),
                status: free_port(),
                tls: tls.as_ref().map(|_| free_port()),
            };
            let mut node = node_yaml(&ports, &resources, tls.as_ref());
            node.push_str(&self.node_extra);
            write(&dir.path().join("tollgate.yaml"), &node);
            let mut gw = Gateway::spawn(dir, ports, &self.env);
            match gw.wait_healthy() {
                Ok(()) => return gw,
                Err(log) if attempt < 3 && log.contains("in use") => dir = gw.into_dir(),
                Err(log) => panic!("tollgate exited during start-up; its log:\n{log}"),
            }
        }
    }
}

struct Ports {
    port: u16,
    status: u16,
    tls: Option<u16>,
}

fn node_yaml(ports: &Ports, resources: &[String], tls: Option<&(PathBuf, PathBuf)>) -> String {
    let mut listen = format!(r#""127.0.0.1:{}""#, ports.port);
    if let (Some(port), Some((cert, key))) = (ports.tls, tls) {
        listen.push_str(&format!(
            r#", {{addr: "127.0.0.1:{port}", tls: {{cert: {}, key: {}}}}}"#,
            quote(cert),
            quote(key)
        ));
    }
    let resources: Vec<String> = resources.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "listen: [{listen}]\nstatus_listen: \"127.0.0.1:{}\"\nthreads: 1\nresources: [{}]\n",
        ports.status,
        resources.join(", ")
    )
}

/// A path as a YAML double-quoted string.
fn quote(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).expect("string")
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create dir");
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A running `tollgate -c <dir>/tollgate.yaml`; killed (and its log printed if the test is
/// failing) on drop.
pub struct Gateway {
    dir: Option<TempDir>,
    child: Child,
    ports: Ports,
}

impl Gateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// A gateway with default options on these resources.
    pub fn start(resources_yaml: &str) -> Gateway {
        Self::builder().start(resources_yaml)
    }

    fn spawn(dir: TempDir, ports: Ports, env: &[(String, String)]) -> Gateway {
        let log = fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let out = log.try_clone().expect("log file");
        let child = Command::new(BIN)
            .arg("-c")
            .arg(dir.path().join("tollgate.yaml"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        Gateway {
            dir: Some(dir),
            child,
            ports,
        }
    }

    /// Waits for `/healthz`; `Err(log)` if the process exits first.
    fn wait_healthy(&mut self) -> Result<(), String> {
        let mut exited = false;
        let status = self.ports.status;
        wait_until(
            START_DEADLINE,
            "tollgate answers GET /healthz with 200",
            || {
                exited = !matches!(self.child.try_wait(), Ok(None));
                exited
                    || try_http(status, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
            },
        );
        if exited { Err(self.stderr()) } else { Ok(()) }
    }

    /// Kills the (exited) process and hands back its dir for another attempt.
    fn into_dir(mut self) -> TempDir {
        self.dir.take().expect("dir")
    }

    /// `http://127.0.0.1:PORT<path>` on the plain listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.port)
    }

    /// The plain proxy listener's port.
    pub fn port(&self) -> u16 {
        self.ports.port
    }

    pub fn status_port(&self) -> u16 {
        self.ports.status
    }

    /// The TLS listener's port; panics if the builder had no `tls`.
    pub fn tls_port(&self) -> u16 {
        self.ports.tls.expect("gateway started without tls")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config dir (node file `tollgate.yaml`, `resources.yaml`, `stderr.log`, ...).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    /// Replaces a file atomically: writes a temp file beside it, then renames it.
    pub fn write_file(&self, name: &str, text: &str) {
        let path = self.dir().join(name);
        let file_name = path.file_name().expect("file name").to_string_lossy();
        let tmp = path.with_file_name(format!(".{file_name}.tmp"));
        write(&tmp, text);
        fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
    }

    /// Rewrites a file in place (truncate, then write), as many editors and `cp` do.
    pub fn write_file_in_place(&self, name: &str, text: &str) {
        write(&self.dir().join(name), text);
    }

    /// Sends a signal by name (`"HUP"`, `"TERM"`, ...) to the gateway's PID.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name} {} failed", self.pid());
    }

    pub fn sighup(&self) {
        self.signal("HUP");
    }

    /// The body of `GET /healthz`.
    pub fn healthz(&self) -> serde_json::Value {
        let resp = http(self.ports.status, "GET", "/healthz", &[], b"");
        assert_eq!(resp.status, 200, "/healthz: {}", resp.text());
        resp.json()
    }

    /// `config_version` from `/healthz`.
    pub fn config_version(&self) -> String {
        let health = self.healthz();
        health["config_version"]
            .as_str()
            .unwrap_or_else(|| panic!("no config_version in /healthz: {health}"))
            .to_owned()
    }

    /// `last_reload` from `/healthz`.
    pub fn last_reload(&self) -> String {
        let health = self.healthz();
        health["last_reload"]
            .as_str()
            .unwrap_or_else(|| panic!("no last_reload in /healthz: {health}"))
            .to_owned()
    }

    /// Waits until `config_version` differs from `old`; returns the new one.
    pub fn wait_reload(&self, old: &str) -> String {
        let mut version = String::new();
        wait_until(
            RELOAD_DEADLINE,
            &format!("config_version changes from {old}"),
            || {
                version = self.config_version();
                version != old
            },
        );
        version
    }

    /// The gateway's stderr (and stdout) so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir().join("stderr.log")).unwrap_or_default()
    }

    /// A mark for [`Self::wait_log`]: the log's current length.
    pub fn log_mark(&self) -> usize {
        self.stderr().len()
    }

    /// Waits until the log after `mark` contains one of `needles`; returns that part of the log.
    pub fn wait_log(&self, mark: usize, needles: &[&str]) -> String {
        let mut tail = String::new();
        wait_until(
            RELOAD_DEADLINE,
            &format!("the log shows one of {needles:?}"),
            || {
                tail = self.stderr().get(mark..).unwrap_or("").to_owned();
                needles.iter().any(|n| tail.contains(n))
            },
        );
        tail
    }

    /// Waits for the process to exit by itself (after a signal); `None` on timeout.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, deadline)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() && self.dir.is_some() {
            eprintln!(
                "----- tollgate log ({}) -----\n{}-----",
                self.dir().display(),
                self.stderr()
            );
        }
    }
}

/// Writes `files` to a temp dir and runs `tollgate <args> -c <dir>/tollgate.yaml` to its end
/// (killed after 20 s): (exit code, stdout, stderr). Without a `tollgate.yaml` among the
/// files, a node file listing every other `.yaml` file as a resource file is written.
pub fn run_tollgate(args: &[&str], files: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        write(&dir.path().join(name), text);
    }
    let node = dir.path().join("tollgate.yaml");
    if !node.exists() {
        let ports = Ports {
            port: free_port(),
            status: free_port(),
            tls: None,
        };
        let resources: Vec<String> = files
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect();
        write(&node, &node_yaml(&ports, &resources, None));
    }
    let (out_path, err_path) = (dir.path().join("stdout.log"), dir.path().join("stderr.log"));
    let mut child = Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(&node)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    let Some(status) = wait_exit(&mut child, START_DEADLINE) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "tollgate {args:?} still runs after {START_DEADLINE:?}; its log:\n{}",
            read(&err_path)
        );
    };
    (
        status.code().unwrap_or(-1),
        read(&out_path),
        read(&err_path),
    )
}

/// Polls `child` until it exits; `None` after `deadline`.
fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `tollgate check` on these files (see [`run_tollgate`]).
pub fn tollgate_check(files: &[(&str, &str)]) -> (i32, String, String) {
    run_tollgate(&["check"], files)
}
