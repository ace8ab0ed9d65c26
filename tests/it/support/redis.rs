//! Throwaway Redis servers: [`Redis`] (one `redis-server`) and [`RedisCluster`] (masters joined
//! with `redis-cli --cluster create`), each in its own temp dir, killed by PID on drop.
//! [`redis_cmd`] speaks just enough RESP to send a command and read the reply as text.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{free_port, wait_until};

const DEADLINE: Duration = Duration::from_secs(20);

/// One `redis-server --port <free> --bind 127.0.0.1 --save "" --appendonly no`.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Self::spawn(false)
    }

    /// Starts a server, retrying on another port if the chosen one was taken meanwhile.
    fn spawn(cluster: bool) -> Redis {
        let mut dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path());
            if cluster {
                // An explicit bus port: the default, port + 10000, may not exist or be free.
                let nodes_conf = dir.path().join("nodes.conf");
                cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
                    .arg(&nodes_conf)
                    .args(["--cluster-port", &free_port().to_string()]);
            }
            let log = std::fs::File::create(dir.path().join("redis.log")).expect("log file");
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run redis-server ({e}); install it (`apt-get install -y redis-server`, \
                         as the README's test command does)"
                    )
                });
            let mut redis = Redis {
                child: Some(child),
                port,
                dir,
            };
            let mut exited = false;
            wait_until(
                DEADLINE,
                &format!("redis-server on port {port} answers PING"),
                || {
                    exited = !matches!(redis.child.as_mut().map(Child::try_wait), Some(Ok(None)));
                    exited || redis.cmd(&["PING"]).is_ok_and(|r| r == "PONG")
                },
            );
            if !exited {
                return redis;
            }
            if !redis.log().contains("in use") {
                panic!("redis-server exited at start; its log:\n{}", redis.log());
            }
            dir = redis.into_dir();
        }
        panic!("redis-server found no free port in 3 attempts");
    }

    fn into_dir(mut self) -> TempDir {
        self.kill();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `"redis://127.0.0.1:PORT"`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one command; the reply as text (see [`redis_cmd`]).
    pub fn cmd(&self, args: &[&str]) -> io::Result<String> {
        redis_cmd(self.port, args)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Kills the server now (SIGKILL by PID) and reaps it; idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` cluster-enabled masters, no replicas, with `cluster_state:ok` on every node.
pub struct RedisCluster {
    nodes: Vec<Redis>,
}

impl RedisCluster {
    pub fn start(n: usize) -> RedisCluster {
        let nodes: Vec<Redis> = (0..n).map(|_| Redis::spawn(true)).collect();
        let addrs: Vec<String> = nodes.iter().map(Redis::addr).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); install redis-server"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until(DEADLINE, "every cluster node says cluster_state:ok", || {
            nodes.iter().all(|node| {
                node.cmd(&["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })
        });
        RedisCluster { nodes }
    }

    pub fn nodes(&self) -> &[Redis] {
        &self.nodes
    }

    /// One node, e.g. to kill it mid-test.
    pub fn node_mut(&mut self, i: usize) -> &mut Redis {
        &mut self.nodes[i]
    }

    /// Every node's `"127.0.0.1:PORT"`.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::addr).collect()
    }

    /// Kills every node now.
    pub fn kill(&mut self) {
        self.nodes.iter_mut().for_each(Redis::kill);
    }
}

/// Sends one command to `127.0.0.1:port` and reads one reply: simple strings, integers and bulk
/// strings as their text, nil as `(nil)`, arrays as their items joined by newlines; a Redis
/// error is an `Err`.
pub fn redis_cmd(port: u16, args: &[&str]) -> io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("*{}\r\n", args.len());
    for arg in args {
        req.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    let mut r = BufReader::new(stream);
    r.get_mut().write_all(req.as_bytes())?;
    read_reply(&mut r)
}

fn read_reply(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed"));
    }
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1.min(line.len()));
    let len = || -> io::Result<i64> { rest.parse().map_err(io::Error::other) };
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(io::Error::other(format!("redis error: {rest}"))),
        "$" if len()? < 0 => Ok("(nil)".to_owned()),
        "$" => {
            let mut buf = vec![0; usize::try_from(len()?).map_err(io::Error::other)? + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(buf.len() - 2);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let items: io::Result<Vec<String>> =
                (0..len()?.max(0)).map(|_| read_reply(r)).collect();
            Ok(items?.join("\n"))
        }
        _ => Err(io::Error::other(format!("bad redis reply {line:?}"))),
    }
}
