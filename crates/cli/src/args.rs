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
    /// Operate inside this directory instead of the real root (before the subcommand:
    /// `realms shell NAME --root` means a root shell).
    // Not `global`: a global `--root DIR` would take the same long name as `shell --root`.
    #[arg(long, env = "REALMS_ROOT", default_value = "/")]
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
    /// Network zones: list them, show and set one zone's subnet and NAT, or remove one.
    Zone(crate::realm::ZoneArgs),
    /// dm-verity hash areas: format and verify, veritysetup-compatible.
    #[command(subcommand)]
    Verity(crate::verity::VerityCommand),
    /// Portable services: attach, detach, reattach, inspect and list images, portablectl-compatible.
    Portable(crate::portable::PortableArgs),
    /// Provisioning: apply a manifest of portable-service packages from signed repositories.
    #[command(subcommand)]
    Provision(crate::provision::ProvisionCmd),
    /// The current realm's apps on the desktop: publish its entries and icons, keep them current.
    #[command(subcommand)]
    Desktop(crate::desktop::DesktopCmd),
    /// Run an app in a realm as its user, with its display and sound (what desktop entries run).
    Launch(crate::desktop::LaunchArgs),
    /// Serve the D-Bus API org.realms.Manager1 (on the system bus; run by realms-dbus.service).
    Dbus(crate::desktop::DbusArgs),
    /// Find (and with --fix repair) what a crash or a manual change left in the store and on the host.
    Doctor(crate::doctor::DoctorArgs),
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets { dir: std::path::PathBuf },
    #[command(subcommand, about = crate::state::ABOUT)]
    State(crate::state::StateCmd),
}

/// The command line, with what only the libraries know added to the help texts (the config
/// keys, their values and defaults for `realms help config`).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().mut_subcommand("config", |c| c.after_help(config_keys_help()))
}

/// Parses the process's arguments (exits with clap's message on a bad command line).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn config_keys_help() -> String {
    use realms_realm::config::{KEYS, KeyType};
    let mut text = String::from("Keys (in /realms/realm-NAME/config, TOML):\n");
    for (key, ty, default, what) in KEYS {
        let values = match ty {
            KeyType::Bool => "true|false",
            KeyType::Zone => "ZONE",
            KeyType::Image => "IMAGE",
            KeyType::BindList => "[\"HOST[:REALM]\", ...]",
            KeyType::PortList => "[\"tcp:8080:80\", ...]",
            KeyType::Label => "TEXT",
            KeyType::Color => "\"#rrggbb\"",
        };
        text.push_str(&format!(
            "  {key:<20} {values:<24} default {default:<8} {what}\n"
        ));
    }
    text
}

pub fn dispatch(command: Command, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match command {
        Command::Realm(cmd) => crate::realm::run(cmd, ctx),
        Command::Verbs(cmd) => crate::verbs::run(cmd, ctx),
        Command::Appimg(cmd) => crate::appimg::run(cmd, ctx),
        Command::Zone(args) => crate::realm::zone(args, ctx),
        Command::Verity(cmd) => crate::verity::run(cmd, ctx),
        Command::Portable(args) => crate::portable::run(args, ctx),
        Command::Provision(cmd) => crate::provision::run(cmd, ctx),
        Command::Desktop(cmd) => crate::desktop::run(cmd, ctx),
        Command::Launch(args) => crate::desktop::launch_cmd(args, ctx),
        Command::Dbus(args) => crate::desktop::dbus(args, ctx),
        Command::Doctor(args) => crate::doctor::run(args, ctx),
        Command::GenerateAssets { dir } => {
            crate::assets::generate(&dir, self::command()).map(|()| ExitCode::SUCCESS)
        }
        Command::State(cmd) => crate::state::run(cmd, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn help_config_lists_every_key_with_its_default() {
        let help = command()
            .find_subcommand_mut("config")
            .unwrap()
            .render_help()
            .to_string();
        for (key, _, default, _) in realms_realm::config::KEYS {
            let line = help.lines().find(|l| l.trim_start().starts_with(key));
            let line = line.unwrap_or_else(|| panic!("{key} missing from:\n{help}"));
            assert!(line.contains(default), "{line}");
        }
    }

    /// Every subcommand parses, and every value is read back as the type it was declared with
    /// (a clap id shared by two arguments of different types panics only on access).
    #[test]
    fn every_subcommand_parses() {
        let lines: &[&str] = &[
            "new work",
            "new work --appimg other",
            "list",
            "default",
            "default work",
            "current",
            "current work",
            "config work",
            "config work use-gpu",
            "config work use-gpu true",
            "config work extra-bindmounts --add /a",
            "config work port-forward --remove tcp:8080:80",
            "start",
            "start work",
            "stop work",
            "restart work",
            "run work -- true",
            "run work --user user -- ls -l",
            "run work -t -e A=1 --env PATH --cwd /tmp -- sh",
            "run work -T -w /tmp -- sh",
            "init",
            "start --autostart",
            "status work",
            "status work -n 5",
            "logs work",
            "logs work -f -n 10",
            "snapshot work",
            "snapshot work s1",
            "snapshot create work s1",
            "snapshot list work",
            "snapshot restore work s1",
            "snapshot remove work s1",
            "clone work work2",
            "rename work2 play",
            "rebase work",
            "rebase work --appimg other",
            "autostart work on",
            "autostart work off",
            "desktop sync",
            "desktop sync --all",
            "desktop watch",
            "desktop watch --all",
            "desktop titles",
            "desktop titles --display :1",
            "launch work -- firefox %u",
            "launch --cwd /tmp work -- ls",
            "launch -e A=1 --env B=2 work -- ls",
            "launch --disposable -- xdg-open f.pdf",
            "launch --disposable --appimg other -- sh",
            "dbus",
            "dbus --address unix:path=/run/x --admin-group wheel",
            "zone remove work",
            "shell work",
            "shell work --root",
            "remove work",
            "remove work --stop",
            "update-appimg",
            "update-appimg base --key k -- apt-get -y upgrade",
            "nspawn-exec work",
            "appimg import base /tmp/tree",
            "appimg list",
            "appimg remove base",
            "appimg rollback base",
            "appimg build b --from base --format erofs",
            "appimg build b --from base --format squashfs --seal --key k --version 3 --allow-downgrade",
            "appimg verify b",
            "appimg unseal b",
            "appimg key generate me",
            "appimg key list",
            "zone",
            "zone work",
            "zone work nat on",
            "verity format d h",
            "verity format d h --hash sha512 --salt - --no-superblock --hash-offset 4096",
            "verity verify d h 00",
            "verity format d h --format 0 --root-hash-file r",
            "verity verify d h --root-hash-file r",
            "verity format d h --fec-device f --fec-roots 24 --fec-offset 4096",
            "verity verify d h 00 --fec-device f --fec-roots 3",
            "verity repair d h 00 --fec-device f",
            "verity verify d h 00 --hash blake2b-512 --root-hash-signature s --keyring k",
            "appimg build b --from base --format erofs --seal --key k --fec-roots 24",
            "portable list",
            "portable attach img",
            "portable attach --now --enable --runtime --profile strict --copy copy img p1 p2",
            "portable detach img",
            "portable reattach img",
            "portable inspect img",
            "portable is-attached img",
            "portable set-limit img 1G",
            "portable set-limit none",
            "portable read-only img",
            "portable remove img",
            "portable validate img",
            "provision plan",
            "provision plan m.yaml --prune --arch arm64",
            "provision apply",
            "provision apply m.yaml --prune",
            "provision apply m.yaml --ca-file ca.pem",
            "provision status",
            "provision inbox",
            "provision publish a_1.tar.zst b_2.tar --to /srv/repo --key me --stream next --arch amd64 --valid-days 7 --serial 9",
            "provision pack dir --name foo --pkg-version 1 -o out --format tar.gz",
            "provision ignition m.yaml",
            "provision ignition m.yaml --butane --key repo --key /k/fleet.pub --dropin 10-a.yaml",
            "provision publish a_1.tar.zst --to oci://127.0.0.1:5000/fleet --key me --ca-file ca.pem",
            "provision update",
            "provision update m.yaml --dry-run --keep 3 --arch amd64 --ca-file ca.pem",
            "provision rollback foo",
            "provision vacuum",
            "provision vacuum --keep 1",
            "doctor",
            "doctor --fix",
            "doctor --fix --force",
            "generate-assets /tmp/assets",
            "state setup --disk d.img",
            "state setup --disk /dev/vdb --size 2G --dry-run",
            "state setup --disk d.img --fill",
            "state generate --state /s out",
            "state resize --auto",
            "state resize --size 1G --state /s --reserve 64M --grow-below 5 --shrink-above 60 --target-free 20",
            "state status --state /s",
            "state setup --disk d.img --tpm2-pcrs 7+11 --tpm2-device /dev/tpmrm0",
            "state setup --disk d.img --no-tpm2",
            "state unlock",
            "state unlock --key-file k --state /s",
            "state direct-io --state /s",
            "state enroll --tpm2 --unlock-key-file k",
            "state enroll --recovery-key --unlock-key-file k --state /s",
            "state enroll --tpm2 --tpm2-pcrs 7+11 --tpm2-device auto --unlock-key-file k",
            "state enroll --passphrase-file - --unlock-key-file k",
            "state setup --disk d.img --passphrase-file p",
        ];
        for line in lines {
            for argv in [
                format!("realms {line}"),
                format!("realms --root /r --json -q -v {line}"),
            ] {
                let cli = Cli::try_parse_from(argv.split_whitespace())
                    .unwrap_or_else(|e| panic!("`{argv}` does not parse: {e}"));
                assert!(cli.global.root.is_absolute(), "{argv}");
            }
        }
        // Every leaf subcommand (hidden ones too) is among the lines above.
        fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
            if cmd.get_subcommands().next().is_none() {
                out.push(path);
                return;
            }
            for sub in cmd.get_subcommands() {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                leaves(sub, p, out);
            }
        }
        let mut paths = Vec::new();
        leaves(&command(), Vec::new(), &mut paths);
        assert!(paths.len() > 60, "{paths:?}");
        let missing: Vec<String> = paths
            .iter()
            .filter(|p| {
                p.first().is_some_and(|w| w != "help") && p.last().is_some_and(|w| w != "help")
            })
            .filter(|p| {
                !lines.iter().any(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    words.len() >= p.len() && words.iter().zip(p.iter()).all(|(w, s)| w == s)
                })
            })
            .map(|p| p.join(" "))
            .collect();
        assert!(
            missing.is_empty(),
            "subcommands without a parse test: {missing:?}"
        );
    }

    /// Regression: `realms shell` panicked in every form ("Mismatch between definition and
    /// access of `root`"): the global `--root DIR` and `shell --root` shared one clap id.
    #[test]
    fn shell_root_flag_and_global_root_do_not_clash() {
        let cli = Cli::try_parse_from(["realms", "--root", "/r", "shell", "w", "--root"]).unwrap();
        assert_eq!(cli.global.root, PathBuf::from("/r"));
        match cli.command {
            Command::Realm(crate::realm::RealmCmd::Shell { as_root, .. }) => assert!(as_root),
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["realms", "shell", "w"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Realm(crate::realm::RealmCmd::Shell { as_root: false, .. })
        ));
    }

    #[test]
    fn appimg_import_of_a_non_utf8_source_path_is_refused_at_parsing() {
        use std::os::unix::ffi::OsStrExt;
        let source = std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9-tree");
        let cli = Cli::try_parse_from([
            std::ffi::OsStr::new("realms"),
            "appimg".as_ref(),
            "import".as_ref(),
            "base".as_ref(),
            source,
        ])
        .unwrap();
        match cli.command {
            Command::Appimg(crate::appimg::AppimgCmd::Import { source: got, .. }) => {
                assert_eq!(got, source)
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    /// Every visible subcommand has its page, and every completion script offers it.
    #[test]
    fn every_subcommand_has_a_man_page_and_completions() {
        let assets = crate::assets::render(command()).unwrap();
        let text = |rel: &str| {
            let (_, c) = assets
                .iter()
                .find(|(p, _)| p == std::path::Path::new(rel))
                .unwrap_or_else(|| panic!("{rel} is not generated"));
            String::from_utf8(c.clone()).unwrap()
        };
        let cmd = command();
        let subs: Vec<String> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect();
        assert!(subs.len() > 20, "{subs:?}");
        assert!(subs.contains(&"doctor".to_string()) && subs.contains(&"status".to_string()));
        let main = text("man/realms.1");
        for sub in &subs {
            let page = text(&format!("man/realms-{sub}.1"));
            assert!(
                page.contains(&format!(".TH realms-{sub} 1")),
                "{sub}: {page}"
            );
            assert!(
                main.contains(&format!("realms\\-{}(1)", sub.replace('-', "\\-"))),
                "{sub} not in realms.1"
            );
            for script in ["completions/realms.bash", "completions/_realms"] {
                assert!(text(script).contains(sub.as_str()), "{sub} not in {script}");
            }
            assert!(
                text("completions/realms.fish").contains(&format!("-a \"{sub}\"")),
                "{sub} not in realms.fish"
            );
        }
        assert!(!subs.contains(&"generate-assets".to_string()));
    }
}
