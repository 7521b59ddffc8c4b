//! `realms appimg`: import, list, remove and roll back application images.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use std::path::PathBuf;

use realms_image::sealed::{self, Filesystem};
use realms_image::{ImageInfo, ImageKind, Source, import, keys};
use realms_realm::update;
use serde::Serialize;

use crate::output::{Ctx, Json};
use realms_sys::event::{Event, Report};

#[derive(Debug, Subcommand)]
pub enum AppimgCmd {
    /// Import an image from a directory, a tarball (.tar, .tar.gz, .tar.zst, .tar.xz) or
    /// debootstrap:SUITE[:PACKAGE,...].
    Import {
        name: String,
        source: std::ffi::OsString,
    },
    /// List the images.
    List,
    /// Remove an image (refused while a realm is an overlay on it).
    Remove { name: String },
    /// Go back to the version before the last update-appimg.
    Rollback { name: String },
    /// Build a block image (a filesystem image file) or, with --seal, a sealed one (dm-verity
    /// and a signed root hash) from a tree image or a directory.
    Build {
        name: String,
        /// A tree image of the store, or a directory.
        #[arg(long)]
        from: String,
        #[arg(long, value_parser = ["erofs", "squashfs", "ext4"])]
        format: String,
        /// Seal the image: a dm-verity hash tree and a signature made with --key.
        #[arg(long, requires = "key")]
        seal: bool,
        /// The key to sign with: a name from `realms appimg key list` (its private key in
        /// /etc/realms/private), or the path of a private key file.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The image's version (default: one more than the installed one, or 1).
        #[arg(long)]
        version: Option<String>,
        /// Replace an installed image even with an older version.
        #[arg(long)]
        allow_downgrade: bool,
        /// Sealed: add dm-verity forward error correction (image.fec) with N parity bytes per
        /// 255-byte codeword (2 to 24); the kernel corrects damaged blocks with it.
        #[arg(long, requires = "seal", value_name = "N")]
        fec_roots: Option<u32>,
    },
    /// Check a sealed image: its signature against the trusted keys and its whole hash tree.
    Verify { name: String },
    /// Signing keys for sealed images.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Forget that an image was sealed and the highest version accepted, so that an unsealed
    /// or older image may take its name.
    Unseal { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Make an ed25519 key pair: the private key in /etc/realms/private/NAME.key (mode 0600),
    /// the public key trusted in /etc/realms/keys.d/NAME.pub.
    Generate { name: String },
    /// List the trusted public keys (/etc/realms/keys.d, /usr/lib/realms/keys.d).
    List,
}

pub fn run(cmd: AppimgCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = crate::realm::store(ctx)?;
    let say = |event: Event| ctx.say(event);
    match cmd {
        AppimgCmd::Import { name, source } => {
            let source = Source::parse(&source)?;
            let _lock = store.lock()?;
            let progress = Spinner::new(ctx);
            let info = import(store.images(), &name, &source, &progress)?;
            progress.finish();
            ctx.say(Event::progress(format!(
                "Imported appimg '{name}' at {}",
                info.path.display()
            )));
            ctx.done("imported", "image", &name, serde_json::to_value(&info)?);
        }
        AppimgCmd::List => list(&store, ctx)?,
        AppimgCmd::Remove { name } => {
            update::remove_image(&store, &name, &say)?;
            ctx.done("removed", "image", &name, serde_json::json!({}));
        }
        AppimgCmd::Unseal { name } => {
            let forgot = update::unseal(&store, &name, &say)?;
            ctx.done(
                "unsealed",
                "image",
                &name,
                serde_json::json!({ "was-sealed": forgot }),
            );
        }
        AppimgCmd::Rollback { name } => {
            let version = update::rollback(&store, &name, &say)?;
            ctx.done(
                "rolled-back",
                "image",
                &name,
                serde_json::json!({ "version": version }),
            );
        }
        AppimgCmd::Build {
            name,
            from,
            format,
            seal,
            key,
            version,
            allow_downgrade,
            fec_roots,
        } => {
            let request = update::BuildRequest {
                name: name.clone(),
                from,
                filesystem: Filesystem::parse(&format).expect("clap checked the format"),
                seal,
                key,
                version,
                allow_downgrade,
                fec_roots,
            };
            let progress = Spinner::new(ctx);
            let meta = update::build(&store, &request, &progress)?;
            progress.finish();
            let kind = if meta.verity.is_some() {
                "sealed"
            } else {
                "block"
            };
            ctx.say(Event::progress(format!(
                "Built {kind} appimg '{name}' version {} ({})",
                meta.version, meta.filesystem
            )));
            if let Some(v) = &meta.verity {
                ctx.say(Event::progress(format!("Root hash {}", v.root_hash)));
            }
            ctx.done("built", "image", &name, serde_json::to_value(&meta)?);
        }
        AppimgCmd::Verify { name } => {
            let info = store.images().get(&name)?;
            let verified = sealed::verify(store.root(), &info)?;
            // A check's result: on stdout (text or JSON), as `list` prints its table.
            if ctx.json {
                ctx.emit(&Json(&verified))?;
            } else if !ctx.quiet {
                let state = match verified.fec_corrected {
                    Some(n) if n > 0 => format!(
                        "its {} data blocks and hash tree are damaged: {n} bytes, all correctable with its FEC (the kernel corrects them on read)",
                        verified.data_blocks
                    ),
                    _ => format!(
                        "all {} data blocks and the hash tree are intact",
                        verified.data_blocks
                    ),
                };
                crate::output::outln!(
                    "[+] '{name}' version {}: signature good (key '{}', {}); {state}",
                    verified.version,
                    verified.signed_by.key,
                    verified.signed_by.fingerprint,
                );
            }
        }
        AppimgCmd::Key(KeyCmd::Generate { name }) => {
            let (private, key) = keys::generate(store.root(), &name)?;
            ctx.say(Event::progress(format!(
                "Private key written to {} (keep it secret)",
                private.display()
            )));
            ctx.say(Event::progress(format!(
                "Public key {} trusted at {}",
                key.fingerprint,
                key.path.display()
            )));
            ctx.done("generated", "key", &name, serde_json::to_value(&key)?);
        }
        AppimgCmd::Key(KeyCmd::List) => ctx.emit(&Keys(keys::trusted(store.root())?))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `realms appimg list`: every image with its kept older versions and who uses them.
fn list(store: &realms_realm::RealmStore, ctx: &Ctx) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for info in store.images().list()? {
        let kept = update::kept(store, &info.name)?;
        rows.push(ImageRow { info, kept });
    }
    ctx.emit(&Images(rows))
}

/// A spinner with the current stage on a TTY; plain lines otherwise.
struct Spinner {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Spinner {
    fn new(ctx: &Ctx) -> Spinner {
        use std::io::IsTerminal;
        let bar = (std::io::stderr().is_terminal() && !ctx.quiet && !ctx.json).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Spinner {
            bar,
            quiet: ctx.quiet || ctx.json,
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Report for Spinner {
    fn report(&self, event: Event) {
        match &self.bar {
            Some(bar) => bar.set_message(event.text().to_string()),
            None if !self.quiet => eprintln!("{}", crate::output::render(&event)),
            None => {}
        }
    }
}

/// One image of `realms appimg list`, with the older versions kept for overlay realms.
#[derive(Serialize)]
struct ImageRow {
    #[serde(flatten)]
    info: ImageInfo,
    kept: Vec<update::Kept>,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Images(Vec<ImageRow>);

impl fmt::Display for Images {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0.is_empty() {
            return write!(
                f,
                "no application images yet; import one with `realms appimg import base debootstrap:bookworm`"
            );
        }
        writeln!(
            f,
            "{:<16} {:<7} {:<8} {:<10} {:<9} {:<16} {:<9} OS",
            "NAME", "KIND", "VERSION", "STORAGE", "SIZE", "CREATED", "PREV"
        )?;
        for ImageRow { info: i, kept } in &self.0 {
            let kind = match i.kind {
                ImageKind::Tree => "tree",
                ImageKind::Block => "block",
                ImageKind::Sealed => "sealed",
            };
            let storage = if i.subvolume {
                "subvolume"
            } else {
                "directory"
            };
            let prev = match (&i.previous_version, i.has_previous) {
                (Some(v), _) => format!("yes ({v})"),
                (None, true) => "yes".to_string(),
                (None, false) => "no".to_string(),
            };
            writeln!(
                f,
                "{:<16} {kind:<7} {:<8} {storage:<10} {:<9} {:<16} {prev:<9} {}",
                i.name,
                i.version.as_deref().unwrap_or("-"),
                i.size.map(crate::verbs::human_size).unwrap_or("-".into()),
                i.created.map(crate::verbs::utc_time).unwrap_or("-".into()),
                i.os.as_deref().unwrap_or("-")
            )?;
            for k in kept {
                writeln!(
                    f,
                    "  kept: {} (version {}) for realm(s) {}; `realms rebase NAME` moves them to the current version",
                    k.path.file_name().unwrap_or_default().to_string_lossy(),
                    k.version.as_deref().unwrap_or("unknown"),
                    k.realms
                        .iter()
                        .map(|r| format!("'{r}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )?;
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Keys(Vec<keys::TrustedKey>);

impl fmt::Display for Keys {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0.is_empty() {
            return write!(
                f,
                "no trusted keys; make one with `realms appimg key generate NAME`"
            );
        }
        for k in &self.0 {
            writeln!(f, "{:<16} {} {}", k.name, k.fingerprint, k.path.display())?;
        }
        Ok(())
    }
}
