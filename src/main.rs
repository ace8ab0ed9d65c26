//! The `tollgate` binary: run the gateway, `check` a config, or `hash-secret`.

use std::io::Read;
use std::process::ExitCode;

use tollgate::cli::{Cli, Command, SecretKind};
use tollgate::config::{self, Node};

/// mimalloc: fewer instructions per allocation than glibc's malloc on the request path
/// (benches/RESULTS.md, Performance). `tollgate::reload::release_free_memory` purges it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    init_logger();
    match cli.command {
        Some(Command::Check { .. }) => check(&cli),
        Some(Command::HashSecret { kind }) => hash_secret(kind),
        None => run(&cli),
    }
}

/// Third-party modules whose debug output dumps request headers, credentials included.
const HEADER_DUMPERS: [&str; 4] = ["pingora_proxy", "pingora_core", "pingora_http", "h2"];

/// `RUST_LOG` (default `info`), with [`HEADER_DUMPERS`] held at `info` when a global debug or
/// trace level would reach them: no level shows a secret unless `RUST_LOG` names such a module
/// explicitly (the README documents that risk).
fn log_spec(rust_log: Option<&str>) -> String {
    let spec = rust_log.unwrap_or("info").to_owned();
    let global_verbose = spec.split(',').any(|d| {
        let d = d.trim().to_ascii_lowercase();
        d == "debug" || d == "trace"
    });
    let mut out = spec.clone();
    if !spec.contains("pingora_core") {
        // Pingora's lifecycle lines misname SIGINT and the grace period; ours say what happens.
        out.push_str(",pingora_core::server=warn");
        // Its only ERROR there, "failed to acquire reusable stream", is a benign race: the
        // pool's idle watcher still holds a pooled connection just released, so the request
        // opens a new one. 1-2 % of requests under load; nothing else logs in that module tree
        // but a debug trace and a warning about data on an idle upstream connection.
        out.push_str(",pingora_core::connectors=off");
    }
    for m in HEADER_DUMPERS
        .iter()
        .filter(|m| global_verbose && !spec.contains(*m))
    {
        out.push_str(&format!(",{m}=info"));
    }
    out
}

fn init_logger() {
    let spec = log_spec(std::env::var("RUST_LOG").ok().as_deref());
    env_logger::Builder::new().parse_filters(&spec).init();
}

/// Loads node and resource files; prints warnings, then errors; `None` on any error.
fn load(cli: &Cli, running: bool) -> Option<(Node, config::Loaded)> {
    let node = match Node::load(cli.config()) {
        Ok(n) => n,
        Err(errs) => {
            errs.iter().for_each(|e| eprintln!("{e}"));
            return None;
        }
    };
    // `check` keeps stderr for warnings and errors alone; a starting gateway logs its progress.
    let report = if running {
        config::load_logged(&node, &Default::default())
    } else {
        config::load(&node, &Default::default())
    };
    report.warnings.iter().for_each(|w| eprintln!("{w}"));
    match report.result {
        Ok(loaded) => Some((node, loaded)),
        Err(errs) => {
            errs.iter().for_each(|e| eprintln!("{e}"));
            None
        }
    }
}

fn check(cli: &Cli) -> ExitCode {
    match load(cli, false) {
        Some((_, loaded)) => {
            println!("ok: {}", loaded.snapshot.counts);
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn run(cli: &Cli) -> ExitCode {
    let Some((node, loaded)) = load(cli, true) else {
        return ExitCode::FAILURE;
    };
    tollgate::reload::release_free_memory();
    match tollgate::server::run(node, loaded, cli.upgrade) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_secret(kind: SecretKind) -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read the secret from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let secret = input
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&input);
    if secret.is_empty() {
        eprintln!("the secret is empty");
        return ExitCode::FAILURE;
    }
    match tollgate::secret::hash_for(kind, secret) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_spec;

    #[test]
    fn debug_never_reaches_header_dumpers_unless_named() {
        let quiet = ",pingora_core::server=warn,pingora_core::connectors=off";
        assert_eq!(log_spec(None), format!("info{quiet}"));
        assert_eq!(log_spec(Some("warn")), format!("warn{quiet}"));
        let s = log_spec(Some("debug"));
        assert!(s.contains(",pingora_proxy=info") && s.contains(",pingora_core=info"));
        let s = log_spec(Some("debug,pingora_proxy=debug"));
        assert!(!s.contains("pingora_proxy=info") && s.contains("pingora_core=info"));
        assert_eq!(
            log_spec(Some("tollgate=debug")),
            format!("tollgate=debug{quiet}")
        );
    }
}
