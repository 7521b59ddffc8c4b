//! `cargo run -p realms-bench -- SUITE`: time Realms and its peer on the same input in one run.

mod desktop;
mod portable;
mod provision;
mod provision_oci;
mod realm;
mod state;
mod table;
mod update;
mod verity;

use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(about = "Realms beside its peer tools, as ratios from one run")]
struct Args {
    /// Which suites to run (all when none is given).
    suites: Vec<Suite>,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
    /// realm creation, start and run vs btrfs snapshot, cp -a, bare nspawn and nsenter
    Realm,
    /// dm-verity format and verify vs veritysetup on a 1 GiB file
    Verity,
    /// portable attach and detach vs portablectl in a booted container
    Portable,
    /// provision apply of a ~200 MB package vs curl|sha256sum|tar and systemd-pull
    Provision,
    /// state resize by 1 and 10 GiB vs the same steps by hand, freed space returned, I/O via /var
    State,
    /// desktop switch latency: `realms current` until the entries are published (p50/p99)
    Desktop,
    /// provision apply of a ~200 MB package from an OCI registry (docker-registry) vs from nginx
    ProvisionOci,
    /// provision update of a ~200 MB package vs systemd-pull + portablectl reattach --now
    Update,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let all: Vec<Suite> = Suite::value_variants().to_vec();
    let suites = if args.suites.is_empty() {
        all
    } else {
        args.suites
    };
    for suite in suites {
        match suite {
            Suite::Realm => realm::run_suite(args.runs)?,
            Suite::Verity => verity::run_suite(args.runs)?,
            Suite::Portable => portable::run_suite(args.runs)?,
            Suite::Provision => provision::run_suite(args.runs)?,
            Suite::State => state::run_suite(args.runs)?,
            Suite::Desktop => desktop::run_suite()?,
            Suite::ProvisionOci => provision_oci::run_suite(args.runs)?,
            Suite::Update => update::run_suite(args.runs)?,
        }
    }
    Ok(())
}
