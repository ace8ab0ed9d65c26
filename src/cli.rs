//! The command line: `tollgate [-c FILE] [--upgrade]`, `tollgate check -c FILE`,
//! `tollgate hash-secret [key|password]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An API gateway on Pingora whose heart is the consumer"
)]
pub struct Cli {
    /// The node file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "conf/tollgate.yaml"
    )]
    pub config: PathBuf,
    /// Take the listeners over from a running tollgate (after it got SIGQUIT).
    #[arg(long)]
    pub upgrade: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate the node file and every resource file, then exit.
    Check,
    /// Read a secret from stdin and print the value to paste into a credential.
    HashSecret {
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
