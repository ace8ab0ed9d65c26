//! The `tollgate` binary: run the gateway, `check` a config, or `hash-secret`.

use std::io::Read;
use std::process::ExitCode;

use tollgate::cli::{Cli, Command, SecretKind};
use tollgate::config::{self, Node};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match cli.command {
        Some(Command::Check { .. }) => check(&cli),
        Some(Command::HashSecret { kind }) => hash_secret(kind),
        None => run(&cli),
    }
}

/// Loads node and resource files; prints warnings, then errors; `None` on any error.
fn load(cli: &Cli) -> Option<(Node, config::Loaded)> {
    let node = match Node::load(cli.config()) {
        Ok(n) => n,
        Err(errs) => {
            errs.iter().for_each(|e| eprintln!("{e}"));
            return None;
        }
    };
    let report = config::load(&node, &Default::default());
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
    match load(cli) {
        Some((_, loaded)) => {
            println!("ok: {}", loaded.snapshot.counts);
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn run(cli: &Cli) -> ExitCode {
    let Some((node, loaded)) = load(cli) else {
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
