//! The command line: global options, one subcommand group per part of Realms, and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::output::Ctx;

#[derive(Debug, Parser)]
#[command(
    name = "realms",
    version,
    about = "The application layer of an immutable Linux system"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Operate inside this directory instead of the real root.
    #[arg(long, global = true, env = "REALMS_ROOT", default_value = "/")]
    pub root: PathBuf,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Realm(crate::realm::RealmCmd),
    #[command(flatten)]
    Verbs(crate::verbs::VerbCmd),
    /// Application images: import, list, remove, roll back.
    #[command(subcommand)]
    Appimg(crate::appimg::AppimgCmd),
    /// Network zones: list them, or show and set one zone's subnet and NAT.
    Zone(crate::realm::ZoneArgs),
    /// dm-verity hash areas: format and verify, veritysetup-compatible.
    #[command(subcommand)]
    Verity(crate::verity::VerityCommand),
    /// Portable services: attach, detach, reattach, inspect and list images, portablectl-compatible.
    Portable(crate::portable::PortableArgs),
}

pub fn dispatch(command: Command, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match command {
        Command::Realm(cmd) => crate::realm::run(cmd, ctx),
        Command::Verbs(cmd) => crate::verbs::run(cmd, ctx),
        Command::Appimg(cmd) => crate::appimg::run(cmd, ctx),
        Command::Zone(args) => crate::realm::zone(args, ctx),
        Command::Verity(cmd) => crate::verity::run(cmd, ctx),
        Command::Portable(args) => crate::portable::run(args, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
