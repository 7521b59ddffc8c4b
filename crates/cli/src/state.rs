//! `realms state ...`: the state partition, its encrypted image, resize and the generator
//! (crates/state); and `realms-state-generator`, the same binary under the generator's name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use realms_state::resize::Policy;
use realms_state::{entries, generator, resize, setup};
use serde::Serialize;

use crate::output::Ctx;

/// The help of `realms state`: what the partition is.
pub const ABOUT: &str = "State storage: one state partition (GPT type 1481cc84-d6c7-48f0-a9b0-63ac992b8897, \"Realms state\", label 'state'), an elastic encrypted image inside it, and the generator that mounts /home, /var, /etc... from it";

/// `realms state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Add the state partition over free space of a GPT disk (or disk image), make btrfs on it
    /// and create the layout.
    Setup {
        /// The disk: a block device or a disk image file.
        #[arg(long, value_name = "DEV|IMAGEFILE")]
        disk: PathBuf,
        /// The partition size (K, M, G, T suffixes); default: the largest free area.
        #[arg(long, value_parser = parse_size, conflicts_with = "fill")]
        size: Option<u64>,
        /// Take the largest free area (the default).
        #[arg(long)]
        fill: bool,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The PCRs the TPM2 enrollment binds to.
        #[arg(long, default_value = "7", value_name = "PCR+PCR...")]
        tpm2_pcrs: String,
        /// The TPM2 device (default: /dev/tpmrm0 when there is one).
        #[arg(long, default_value = "auto", value_name = "PATH|auto")]
        tpm2_device: String,
        /// Enroll no TPM2: only the recovery key (and a passphrase, if given) unlocks.
        #[arg(long)]
        no_tpm2: bool,
        /// Also enroll the passphrase in FILE (`-`: standard input; a trailing newline is
        /// ignored), for the boot prompt when the TPM2 cannot unlock.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Unlock the encrypted image and mount it at STATE/encrypted: through the TPM2, or with the
    /// recovery key read from a file.
    Unlock {
        /// A file holding the recovery key (or a passphrase).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        at: StateDir,
    },
    /// Switch the loop device under the unlocked image to direct I/O (run by the unlock unit
    /// at boot, after systemd-cryptsetup attached it).
    #[command(hide = true)]
    DirectIo {
        #[command(flatten)]
        at: StateDir,
    },
    /// Write the units a boot would get for a state tree given as a directory (/state is then
    /// bind-mounted from it).
    Generate {
        /// The state tree.
        #[arg(long)]
        state: PathBuf,
        /// Where the units go.
        outdir: PathBuf,
    },
    /// Grow or shrink the encrypted image (mounted at STATE/encrypted).
    Resize {
        /// Decide by the policy: grow when nearly full, shrink when mostly empty.
        #[arg(long, conflicts_with = "size", required_unless_present = "size")]
        auto: bool,
        /// The new image size (K, M, G, T suffixes).
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        at: StateDir,
    },
    /// Add or replace the TPM2 key slot, the recovery key or the passphrase, unlocking with a
    /// key file.
    Enroll {
        /// Enroll (replace) the TPM2 slot.
        #[arg(long, required_unless_present_any = ["recovery_key", "passphrase_file"])]
        tpm2: bool,
        /// Make a new recovery key (printed once) and remove the old one.
        #[arg(long, conflicts_with_all = ["tpm2", "passphrase_file"])]
        recovery_key: bool,
        /// Enroll the passphrase in FILE (`-`: standard input; a trailing newline is ignored)
        /// and remove the passphrases enrolled before.
        #[arg(long, value_name = "FILE", conflicts_with = "tpm2")]
        passphrase_file: Option<PathBuf>,
        /// The PCRs the TPM2 enrollment binds to.
        #[arg(long, default_value = "7", value_name = "PCR+PCR...")]
        tpm2_pcrs: String,
        /// The TPM2 device.
        #[arg(long, default_value = "auto", value_name = "PATH|auto")]
        tpm2_device: String,
        /// A file holding the recovery key (or a passphrase) that unlocks the image now.
        #[arg(long, value_name = "FILE")]
        unlock_key_file: PathBuf,
        #[command(flatten)]
        at: StateDir,
    },
    /// Sizes and free space of the image and the partition, the entries, the last resize.
    Status {
        #[command(flatten)]
        at: StateDir,
    },
}

/// Where the state partition is mounted.
#[derive(Debug, Args)]
pub struct StateDir {
    /// The mounted state partition (default: /state under --root).
    #[arg(long = "state", value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl StateDir {
    fn path(&self, ctx: &Ctx) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| ctx.root.join(generator::STATE_DIR.trim_start_matches('/')))
    }
}

/// The thresholds of the resize policy.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Grow when free space inside falls under this percentage.
    #[arg(long, default_value_t = Policy::default().grow_below)]
    grow_below: u8,
    /// Shrink when free space inside rises over this percentage.
    #[arg(long, default_value_t = Policy::default().shrink_above)]
    shrink_above: u8,
    /// After a resize, this percentage is free inside.
    #[arg(long, default_value_t = Policy::default().target_free)]
    target_free: u8,
    /// Space always left free in the partition for the unencrypted side.
    #[arg(long, value_parser = parse_size, default_value = "1G")]
    reserve: u64,
}

impl PolicyArgs {
    fn policy(&self) -> Policy {
        Policy {
            grow_below: self.grow_below,
            shrink_above: self.shrink_above,
            target_free: self.target_free,
            reserve: self.reserve,
        }
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    setup::parse_size(s)
}

/// Runs one `realms state` command.
pub fn run(cmd: StateCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd {
        StateCmd::Setup {
            disk,
            size,
            fill: _,
            dry_run,
            tpm2_pcrs,
            tpm2_device,
            no_tpm2,
            passphrase_file,
        } => {
            let opts = setup::Options {
                disk,
                size,
                root: ctx.root.clone(),
                enroll: realms_state::encrypt::EnrollOptions {
                    tpm2_device: (!no_tpm2).then_some(tpm2_device),
                    tpm2_pcrs,
                    passphrase_file,
                },
            };
            let plan = setup::plan(&opts)?;
            if dry_run {
                ctx.emit(&plan)?;
            } else {
                let outcome = setup::apply(&plan, ctx)?;
                if let (Some(created), false) = (&outcome.encrypted, ctx.json) {
                    // Shown once, on stdout only; it is written nowhere else.
                    crate::output::outln!(
                        "recovery key of the encrypted state on {} (write it down now, it is not shown again):\n    {}",
                        plan.disk.display(),
                        created.recovery_key
                    );
                }
                ctx.done(
                    "setup",
                    "disk",
                    &plan.disk.display().to_string(),
                    serde_json::to_value(&outcome)?,
                );
            }
        }
        StateCmd::Generate { state, outdir } => {
            let layout = generator::generate_for_dir(&state, &outdir)?;
            for s in &layout.skipped {
                ctx.say(realms_sys::event::Event::warning(format!(
                    "skipped '{}': {}",
                    s.name, s.reason
                )));
            }
            ctx.emit(&Generated(layout))?;
        }
        StateCmd::Resize {
            auto,
            size,
            policy,
            at,
        } => {
            let state = at.path(ctx);
            let outcome = match (auto, size) {
                (_, Some(size)) => resize::resize(&state, size, &policy.policy(), ctx)?,
                _ => resize::auto(&state, &policy.policy(), ctx)?,
            };
            ctx.emit(&Resized(outcome))?;
        }
        StateCmd::Unlock { key_file, at } => {
            let how = realms_state::encrypt::unlock(&at.path(ctx), key_file.as_deref(), ctx)?;
            ctx.done(
                "unlock",
                "state",
                &at.path(ctx).display().to_string(),
                serde_json::json!({ "method": how }),
            );
        }
        StateCmd::DirectIo { at } => {
            let devices = realms_state::encrypt::direct_io(&at.path(ctx), ctx);
            ctx.done(
                "direct-io",
                "state",
                &at.path(ctx).display().to_string(),
                serde_json::json!({ "devices": devices }),
            );
        }
        StateCmd::Enroll {
            tpm2: _,
            recovery_key,
            passphrase_file,
            tpm2_pcrs,
            tpm2_device,
            unlock_key_file,
            at,
        } => {
            use realms_state::encrypt::{Enroll, enroll};
            let what = match (recovery_key, passphrase_file) {
                (true, _) => Enroll::RecoveryKey,
                (false, Some(f)) => Enroll::Passphrase(f),
                (false, None) => Enroll::Tpm2 {
                    device: tpm2_device,
                    pcrs: tpm2_pcrs,
                },
            };
            let passphrase = matches!(what, Enroll::Passphrase(_));
            let new_key = enroll(&at.path(ctx), &what, &unlock_key_file)?;
            match (new_key, ctx.json) {
                (Some(k), false) => crate::output::outln!(
                    "new recovery key (write it down now, it is not shown again):\n    {k}"
                ),
                (k, true) => ctx.done(
                    "enroll",
                    "state",
                    &at.path(ctx).display().to_string(),
                    serde_json::json!({ "recovery_key": k }),
                ),
                (None, false) => ctx.say(realms_sys::event::Event::progress(if passphrase {
                    "enrolled the passphrase"
                } else {
                    "enrolled the TPM2"
                })),
            }
        }
        StateCmd::Status { at } => {
            let status = Status::read(&at.path(ctx))?;
            ctx.emit(&status)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
#[serde(transparent)]
struct Generated(entries::Layout);

impl fmt::Display for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0.entries {
            let side = if e.encrypted {
                "encrypted"
            } else {
                "unencrypted"
            };
            writeln!(f, "{:<24} {:<20} {side}", e.name, e.mount_point)?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Resized(resize::Outcome);

impl fmt::Display for Resized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Serialize)]
struct Status {
    state: PathBuf,
    layout: entries::Layout,
    image: Option<resize::Stack>,
    /// The keys in the image's LUKS2 header (empty without an encrypted image).
    keys: Vec<realms_state::encrypt::Key>,
    last_resize: Option<serde_json::Value>,
}

impl Status {
    fn read(state: &Path) -> anyhow::Result<Status> {
        let layout = entries::read(state)?;
        let image = resize::stack(state).ok();
        let keys = if layout.has_image {
            realms_state::encrypt::keys(state)?
        } else {
            Vec::new()
        };
        let last_resize = std::fs::read_to_string(state.join(resize::LAST))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        Ok(Status {
            state: state.to_path_buf(),
            layout,
            image,
            keys,
            last_resize,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "state:      {}", self.state.display())?;
        match &self.image {
            Some(s) => {
                let how = if s.dm_name.is_some() {
                    "LUKS2"
                } else {
                    "not encrypted"
                };
                writeln!(
                    f,
                    "image:      {} MiB ({how}), {} MiB used, {} MiB free inside",
                    s.image_size >> 20,
                    s.used >> 20,
                    s.free >> 20
                )?;
                writeln!(f, "partition:  {} MiB free", s.partition_free >> 20)?;
            }
            None if self.layout.has_image => writeln!(f, "image:      locked")?,
            None => writeln!(f, "image:      none")?,
        }
        if !self.keys.is_empty() {
            let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
            writeln!(f, "unlocks by: {}", keys.join(", "))?;
        }
        if let Some(last) = &self.last_resize {
            writeln!(f, "last resize: {last}")?;
        }
        for e in &self.layout.entries {
            let side = if e.encrypted {
                "encrypted"
            } else {
                "unencrypted"
            };
            writeln!(f, "  {:<20} {:<20} {side}", e.name, e.mount_point)?;
        }
        Ok(())
    }
}

/// `realms-state-generator NORMAL [EARLY LATE]`: writes the units into NORMAL. It never fails
/// the boot: whatever happens it logs (to /dev/kmsg when it can) and exits 0.
pub fn generator_main(args: &[String]) -> ExitCode {
    let Some(dir) = args.get(1) else {
        log_kmsg("realms-state-generator: expected the generator output directories");
        return ExitCode::SUCCESS;
    };
    match realms_state::boot::generate(Path::new(dir)) {
        Ok(said) => log_kmsg(&format!("realms-state-generator: {said}")),
        Err(e) => log_kmsg(&format!(
            "realms-state-generator: no state units written: {}",
            anyhow::Error::from(e)
        )),
    }
    ExitCode::SUCCESS
}

fn log_kmsg(line: &str) {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut k| k.write_all(format!("<30>{line}\n").as_bytes()));
    if written.is_err() {
        eprintln!("{line}");
    }
}
