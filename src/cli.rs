//! The command line: `tollgate [-c FILE] [--upgrade]`, `tollgate check [-c FILE]`,
//! `tollgate hash-secret [key|password]`.
//!
//! `-c` belongs to running and checking only, so `tollgate hash-secret --help` does not offer it.
//! It is still accepted before `check` (`tollgate -c FILE check`), as when it was a global flag.

use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// The node file when no `-c` is given.
pub(crate) const DEFAULT_CONFIG: &str = "conf/tollgate.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An API gateway on Pingora whose heart is the consumer"
)]
pub struct Cli {
    /// The node file [default: conf/tollgate.yaml].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Take the listeners over from a running tollgate (after it got SIGQUIT).
    #[arg(long)]
    pub upgrade: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate the node file and every resource file, then exit.
    Check {
        /// The node file [default: conf/tollgate.yaml].
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Read a secret from stdin and print the value to paste into a credential.
    HashSecret {
        /// What the value is for.
        #[arg(value_enum, default_value = "password")]
        kind: SecretKind,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SecretKind {
    /// `sha256:<hex>` for key-auth `key_hash`.
    Key,
    /// An argon2id PHC string for basic-auth `password_hash`.
    Password,
}

impl SecretKind {
    /// The value `tollgate hash-secret` prints for a secret.
    pub fn hash(self, secret: &str) -> Result<String, String> {
        match self {
            SecretKind::Key => Ok(crate::secret::key_hash(secret)),
            SecretKind::Password => crate::secret::password_hash(secret),
        }
    }
}

impl Cli {
    /// Parses the process arguments; exits with clap's usage error (status 2) on flags that a
    /// subcommand would silently ignore: `--upgrade` with a subcommand, `-c` with `hash-secret`.
    pub fn parse_args() -> Self {
        let cli = Self::parse();
        if let Err(msg) = cli.validate() {
            Self::command()
                .error(ErrorKind::ArgumentConflict, msg)
                .exit();
        }
        cli
    }

    fn validate(&self) -> Result<(), &'static str> {
        match self.command {
            Some(_) if self.upgrade => Err("--upgrade only applies to running the gateway"),
            Some(Command::HashSecret { .. }) if self.config.is_some() => {
                Err("hash-secret reads no node file: drop -c/--config")
            }
            _ => Ok(()),
        }
    }

    /// The node file: `-c` after `check`, else `-c` before it, else [`DEFAULT_CONFIG`].
    pub fn config(&self) -> &Path {
        let after = match &self.command {
            Some(Command::Check { config }) => config.as_deref(),
            _ => None,
        };
        after
            .or(self.config.as_deref())
            .unwrap_or(Path::new(DEFAULT_CONFIG))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let cli = Cli::try_parse_from(std::iter::once("tollgate").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.validate().map(|()| cli).map_err(str::to_owned)
    }

    #[test]
    fn config_is_taken_where_it_was_before() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], DEFAULT_CONFIG, false),
            (&["-c", "x.yaml"], "x.yaml", false),
            (&["--config", "x.yaml", "--upgrade"], "x.yaml", true),
            (&["--upgrade", "-c", "x.yaml"], "x.yaml", true),
            (&["check"], DEFAULT_CONFIG, false),
            (&["check", "-c", "x.yaml"], "x.yaml", false),
            (&["-c", "x.yaml", "check"], "x.yaml", false),
            (&["-c", "a.yaml", "check", "-c", "b.yaml"], "b.yaml", false),
        ];
        for (args, config, upgrade) in cases {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.config(), Path::new(config), "{args:?}");
            assert_eq!(cli.upgrade, *upgrade, "{args:?}");
        }
    }

    #[test]
    fn hash_secret_takes_no_config_and_nothing_takes_a_useless_upgrade() {
        for args in [
            &["hash-secret", "-c", "x.yaml"][..],
            &["-c", "x.yaml", "hash-secret"],
            &["--upgrade", "check"],
            &["--upgrade", "hash-secret", "key"],
        ] {
            assert!(parse(args).is_err(), "{args:?} is accepted");
        }
        let help = Cli::command()
            .find_subcommand_mut("hash-secret")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(
            help.contains("stdin") && !help.contains("--config"),
            "{help}"
        );
        assert!(matches!(
            parse(&["hash-secret", "key"]).map(|c| c.command),
            Ok(Some(Command::HashSecret {
                kind: SecretKind::Key
            }))
        ));
    }
}
