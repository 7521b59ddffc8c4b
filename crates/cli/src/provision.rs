//! `realms provision ...`: the manifest of portable-service packages applied from signed
//! repositories (crates/provision).

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use realms_provision::apply::{Action, Options, Step, apply, plan};
use realms_provision::fetch::Fetcher;
use realms_provision::manifest::{self, Stream};
use realms_provision::publish::{Publish, pack, publish};
use realms_provision::state::State;
use serde::Serialize;

use crate::output::{Ctx, Json};

/// `realms provision ...`.
#[derive(Debug, Subcommand)]
pub enum ProvisionCmd {
    /// Print what apply would do: install, upgrade, repair, remove, keep or unchanged.
    Plan(ApplyArgs),
    /// Install, attach, enable and start the manifest's packages (and with --prune remove the others).
    Apply(ApplyArgs),
    /// What is installed, from where, and its units.
    Status,
    /// Install the archives dropped at /opt/inbox/PROFILE/USER/NAME_VERSION.tar.gz, once.
    Inbox,
    /// Add package files to a repository and sign its index (atomically).
    Publish {
        /// Package files named NAME_VERSION.EXT (tar, tar.gz, tar.zst, tar.xz, raw).
        #[arg(required = true)]
        packages: Vec<PathBuf>,
        /// The repository directory (or file:// url), or an OCI registry repository
        /// (oci://HOST[:PORT]/REPO[:TAG]; credentials from /etc/realms/auth.json or
        /// ~/.docker/config.json).
        #[arg(long)]
        to: String,
        /// The signing key: a key name of `realms appimg key list`, or a key file.
        #[arg(long)]
        key: PathBuf,
        /// The stream whose index is updated.
        #[arg(long, default_value = "stable")]
        stream: Stream,
        /// The architecture directory (default: this machine's).
        #[arg(long)]
        arch: Option<String>,
        /// How many days the index stays valid.
        #[arg(long, default_value_t = 30)]
        valid_days: u64,
        /// The serial to write (default: one more than the index's).
        #[arg(long)]
        serial: Option<u64>,
        /// Also trust the CA certificates of this PEM file (an oci:// registry with its own CA).
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
    },
    /// Make a package (NAME_VERSION.tar.zst) from a portable-service directory image.
    Pack {
        /// The directory image.
        dir: PathBuf,
        /// The package name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// The version (default: IMAGE_VERSION or VERSION_ID of its os-release).
        #[arg(long = "pkg-version", value_name = "VERSION")]
        version: Option<String>,
        /// Where the package goes.
        #[arg(short, long, default_value = ".")]
        output: PathBuf,
        /// The package format: tar, tar.gz, tar.zst or tar.xz.
        #[arg(long, default_value = "tar.zst")]
        format: String,
    },
    /// Print an Ignition config (spec 3.4.0) that writes the manifest and the trusted keys and
    /// enables realms-provision.service and realms-provision-update.timer.
    Ignition {
        /// The manifest, written to /etc/realms/provision.yaml.
        manifest: PathBuf,
        /// A drop-in, written to /etc/realms/provision.d/ under its file name (repeatable).
        #[arg(long, value_name = "FILE")]
        dropin: Vec<PathBuf>,
        /// A public key to trust: a key file (NAME.pub) or the name of a trusted key
        /// (repeatable; default: every key in /etc/realms/keys.d and /usr/lib/realms/keys.d).
        #[arg(long, value_name = "PUBKEY")]
        key: Vec<PathBuf>,
        /// Print a Butane config (variant fcos, version 1.5.0) instead.
        #[arg(long)]
        butane: bool,
    },
    /// Move every `version: latest` package to its stream's newest version, health-checked,
    /// rolled back when the check fails.
    Update(UpdateArgs),
    /// Go back to the previous kept version of a package (the current one is marked bad).
    Rollback {
        /// The package.
        name: String,
    },
    /// Remove kept versions beyond the newest N of every package (never the one in use nor
    /// the last known good).
    Vacuum {
        /// How many versions to keep per package, the one in use included.
        #[arg(long, default_value_t = realms_provision::update::DEFAULT_KEEP)]
        keep: usize,
    },
}

/// The arguments of update.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The manifest (default /etc/realms/provision.yaml, with the drop-ins).
    manifest: Option<PathBuf>,
    /// Only say what would be updated.
    #[arg(long)]
    dry_run: bool,
    /// How many versions to keep per package, the one in use included.
    #[arg(long, default_value_t = realms_provision::update::DEFAULT_KEEP)]
    keep: usize,
    /// The architecture (default: this machine's).
    #[arg(long)]
    arch: Option<String>,
    /// Also trust the CA certificates of this PEM file for https repositories.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
}

/// The arguments of plan and apply.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The manifest (default /etc/realms/provision.yaml; the drop-ins of
    /// /etc/realms/provision.d are always merged in).
    manifest: Option<PathBuf>,
    /// Detach and remove packages the manifest no longer lists.
    #[arg(long)]
    prune: bool,
    /// The architecture (default: this machine's).
    #[arg(long)]
    arch: Option<String>,
    /// Also trust the CA certificates of this PEM file for https repositories (beside the
    /// system trust store).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
}

/// The fetcher of plan and apply: the system trust store plus `--ca-file`.
fn fetcher(a: &ApplyArgs) -> anyhow::Result<Fetcher> {
    Ok(match &a.ca_file {
        Some(f) => Fetcher::default().trusting(f)?,
        None => Fetcher::default(),
    })
}

struct Steps(Vec<Step>);

impl Serialize for Steps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl fmt::Display for Steps {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for s in &self.0 {
            let action = serde_json::to_value(s.action).unwrap_or_default();
            writeln!(
                f,
                "{:<10} {:<20} {}{}",
                action.as_str().unwrap_or(""),
                s.package,
                s.from
                    .as_deref()
                    .map(|v| format!("{v} -> "))
                    .unwrap_or_default(),
                s.version.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

pub fn run(cmd: ProvisionCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd {
        ProvisionCmd::Plan(a) => {
            let m = manifest::load(&ctx.root, a.manifest.as_deref())?;
            let mut state = State::load(&ctx.root)?;
            let steps = plan(&ctx.root, &m, &fetcher(&a)?, &options(&a), &mut state)?;
            ctx.emit(&Steps(steps))?;
        }
        ProvisionCmd::Apply(a) => {
            let m = manifest::load(&ctx.root, a.manifest.as_deref())?;
            if m.files.is_empty() {
                bail!(
                    "no manifest: write {} or pass one",
                    ctx.root.join(manifest::DEFAULT_PATH).display()
                );
            }
            let steps = apply(&ctx.root, &m, &fetcher(&a)?, &options(&a), &mut |e| {
                ctx.say(e)
            })?;
            for s in &steps {
                s.notes
                    .iter()
                    .for_each(|n| ctx.say_line(format!("[!] {n}")));
            }
            let changed = steps
                .iter()
                .any(|s| !matches!(s.action, Action::Unchanged | Action::Keep));
            if !changed {
                ctx.say_line(format!(
                    "[+] nothing changed: {} package(s) as listed",
                    steps.len()
                ));
            }
            ctx.emit(&Json(serde_json::json!({
                "action": if changed { "applied" } else { "unchanged" },
                "manifest": m.files,
                "packages": steps,
            })))?;
        }
        ProvisionCmd::Inbox => {
            let done = realms_provision::inbox::process(&ctx.root, ctx)?;
            if done.is_empty() {
                ctx.say_line("[+] the inbox is empty");
            }
            ctx.emit(&Json(&done))?;
            if done.iter().any(|d| !d.installed) {
                return Ok(ExitCode::FAILURE);
            }
        }
        ProvisionCmd::Status => {
            let state = State::load(&ctx.root)?;
            if ctx.json {
                ctx.emit(&Json(&state))?;
            } else if !ctx.quiet {
                for (name, p) in &state.packages {
                    crate::output::outln!(
                        "{name:<20} {:<12} {:<10} {} ({})",
                        p.version,
                        p.profile,
                        p.image.display(),
                        p.repository
                    );
                    if let Some(h) = state.history.get(name) {
                        status_history(h);
                    }
                }
            }
        }
        ProvisionCmd::Publish {
            packages,
            to,
            key,
            stream,
            arch,
            valid_days,
            serial,
            ca_file,
        } => {
            let key_path = realms_image::keys::resolve_private(&ctx.root, &key)?;
            let signing = realms_image::keys::load_private(&key_path)?;
            let arch = arch.unwrap_or_else(|| realms_provision::index::host_arch().into());
            let req = Publish {
                repo: &to,
                arch: &arch,
                stream,
                valid_for: valid_days * 86400,
                serial,
            };
            let done = if realms_provision::oci::is_oci(&to) {
                let fetcher = match &ca_file {
                    Some(f) => Fetcher::default().trusting(f)?,
                    None => Fetcher::default(),
                };
                realms_provision::oci::publish(&ctx.root, &fetcher, &req, &packages, &signing)?
            } else {
                publish(&req, &packages, &signing)?
            };
            ctx.say_line(format!(
                "[+] Published {} into {} (serial {})",
                done.added.join(", "),
                done.index.display(),
                done.serial
            ));
            ctx.done(
                "published",
                "index",
                &done.index.to_string_lossy(),
                serde_json::to_value(&done)?,
            );
        }
        ProvisionCmd::Pack {
            dir,
            name,
            version,
            output,
            format,
        } => {
            let Some((_, _, ext)) = realms_provision::index::Ext::split(&format!("x_1.{format}"))
            else {
                bail!("unknown package format '{format}': use tar, tar.gz, tar.zst or tar.xz");
            };
            let name = match name {
                Some(n) => n,
                None => dir
                    .file_name()
                    .context("name the package with --name")?
                    .to_string_lossy()
                    .into_owned(),
            };
            let version = match version {
                Some(v) => v,
                None => os_release_version(&dir).context(
                    "no IMAGE_VERSION or VERSION_ID in its os-release: pass --pkg-version",
                )?,
            };
            let failed = realms_provision::portable::validate(&dir, &name)?;
            if !failed.is_empty() {
                bail!(
                    "{} is not a valid portable image for '{name}' (`realms portable validate` fails): {}",
                    dir.display(),
                    failed.join("; ")
                );
            }
            let file = pack(&dir, &name, &version, ext, &output)?;
            ctx.say_line(format!("[+] Packed {}", file.display()));
            ctx.done(
                "packed",
                "package",
                &file.to_string_lossy(),
                serde_json::json!({ "name": name, "version": version }),
            );
        }
        ProvisionCmd::Ignition {
            manifest,
            dropin,
            key,
            butane,
        } => {
            let input = realms_provision::ignition::Input {
                manifest,
                dropins: dropin,
                keys: key,
            };
            let config = realms_provision::ignition::config(&ctx.root, &input)?;
            let text = if butane {
                config.to_butane()?
            } else {
                config.to_ignition()?
            };
            crate::output::out!("{text}");
        }
        ProvisionCmd::Update(a) => return update(a, ctx),
        ProvisionCmd::Rollback { name } => {
            let r = realms_provision::update::rollback(&ctx.root, &name, &mut |e| ctx.say(e))?;
            ctx.emit(&Json(&r))?;
        }
        ProvisionCmd::Vacuum { keep } => {
            let removed = realms_provision::update::vacuum(&ctx.root, keep.max(1))?;
            for (name, version) in &removed {
                ctx.say_line(format!("[+] removed {name} {version}"));
            }
            if removed.is_empty() {
                ctx.say_line(format!(
                    "[+] nothing to remove: at most {keep} version(s) kept"
                ));
            }
            ctx.emit(&Json(serde_json::json!({ "removed": removed })))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn update(a: UpdateArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    use realms_provision::update::Outcome;
    let m = manifest::load(&ctx.root, a.manifest.as_deref())?;
    if m.files.is_empty() {
        bail!(
            "no manifest: write {} or pass one",
            ctx.root.join(manifest::DEFAULT_PATH).display()
        );
    }
    let fetcher = match &a.ca_file {
        Some(f) => Fetcher::default().trusting(f)?,
        None => Fetcher::default(),
    };
    let opts = realms_provision::update::Options {
        dry_run: a.dry_run,
        arch: a.arch.clone(),
        keep: a.keep.max(1),
    };
    let reports =
        realms_provision::update::update(&ctx.root, &m, &fetcher, &opts, &mut |e| ctx.say(e))?;
    for r in &reports {
        let outcome = serde_json::to_value(r.outcome).unwrap_or_default();
        let line = format!(
            "{} {}: {}{}{}",
            outcome.as_str().unwrap_or(""),
            r.package,
            r.from.as_deref().unwrap_or("-"),
            r.to.as_deref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default(),
            if r.message.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.message)
            }
        );
        match r.outcome {
            Outcome::RolledBack | Outcome::RollbackFailed | Outcome::Bad => {
                ctx.say_line(format!("[!] {line}"))
            }
            _ => ctx.say_line(format!("[+] {line}")),
        }
    }
    ctx.emit(&Json(serde_json::json!({
        "dry-run": a.dry_run,
        "packages": reports,
    })))?;
    if reports.iter().any(|r| r.outcome == Outcome::RollbackFailed) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn options(a: &ApplyArgs) -> Options {
    Options {
        prune: a.prune,
        arch: a.arch.clone(),
    }
}

fn os_release_version(dir: &std::path::Path) -> Option<String> {
    let text = ["usr/lib/os-release", "etc/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(dir.join(p)).ok())?;
    for key in ["IMAGE_VERSION=", "VERSION_ID="] {
        if let Some(v) = text.lines().find_map(|l| l.strip_prefix(key)) {
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}

/// The update history lines of `status` under a package.
fn status_history(h: &realms_provision::state::History) {
    let kept: Vec<&str> = h.kept.iter().map(|k| k.version.as_str()).collect();
    crate::output::outln!(
        "    kept: {}; last known good: {}; bad: {}",
        if kept.is_empty() {
            "-".into()
        } else {
            kept.join(", ")
        },
        h.good.as_deref().unwrap_or("-"),
        if h.bad.is_empty() {
            "-".into()
        } else {
            h.bad.join(", ")
        }
    );
    if let Some(t) = &h.trial {
        crate::output::outln!(
            "    update in progress from {} (the next update finishes it)",
            t.version
        );
    }
    for e in h.events.iter().rev().take(5) {
        let kind = serde_json::to_value(e.kind).unwrap_or_default();
        crate::output::outln!(
            "    {} {} {} -> {}{}",
            crate::verbs::utc_time(e.time),
            kind.as_str().unwrap_or(""),
            e.from,
            e.to,
            if e.message.is_empty() {
                String::new()
            } else {
                format!(": {}", e.message)
            }
        );
    }
}
