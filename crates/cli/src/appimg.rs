//! `realms appimg`: import, list, remove and roll back application images.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use std::path::PathBuf;

use realms_image::sealed::{self, BuildOptions, Filesystem};
use realms_image::{ImageInfo, ImageKind, Progress, Source, import, keys};
use realms_realm::{RealmStore, update};
use serde::Serialize;

use crate::output::{Ctx, Json};

#[derive(Debug, Subcommand)]
pub enum AppimgCmd {
    /// Import an image from a directory, a tarball (.tar, .tar.gz, .tar.zst, .tar.xz) or
    /// debootstrap:SUITE[:PACKAGE,...].
    Import { name: String, source: String },
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
        /// The private key file to sign with (see `realms appimg key generate`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The image's version (default: one more than the installed one, or 1).
        #[arg(long)]
        version: Option<String>,
        /// Replace an installed image even with an older version.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Check a sealed image: its signature against the trusted keys and its whole hash tree.
    Verify { name: String },
    /// Signing keys for sealed images.
    #[command(subcommand)]
    Key(KeyCmd),
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
    let store = RealmStore::open(&ctx.root)?;
    let say = |line: &str| ctx.say(line);
    match cmd {
        AppimgCmd::Import { name, source } => {
            let source = Source::parse(&source)?;
            let _lock = store.lock()?;
            let progress = Spinner::new(ctx);
            let info = import(store.images(), &name, &source, &progress)?;
            progress.finish();
            ctx.say(format!(
                "[+]: Imported appimg '{name}' at {}",
                info.path.display()
            ));
            if ctx.json {
                ctx.emit(&Images(vec![info]))?;
            }
        }
        AppimgCmd::List => ctx.emit(&Images(store.images().list()?))?,
        AppimgCmd::Remove { name } => update::remove_image(&store, &name, &say)?,
        AppimgCmd::Rollback { name } => update::rollback(&store, &name, &say)?,
        AppimgCmd::Build {
            name,
            from,
            format,
            seal,
            key,
            version,
            allow_downgrade,
        } => {
            let tree = match store.images().get(&from) {
                Ok(info) if info.kind == ImageKind::Tree => info.path,
                _ => PathBuf::from(&from),
            };
            let filesystem = Filesystem::parse(&format).expect("clap checked the format");
            let opts = BuildOptions {
                name: name.clone(),
                tree,
                filesystem,
                key: key.filter(|_| seal),
                version,
            };
            let progress = Spinner::new(ctx);
            let meta = update::build_image(&store, &opts, allow_downgrade, &progress)?;
            progress.finish();
            let kind = if meta.verity.is_some() {
                "sealed"
            } else {
                "block"
            };
            ctx.say(format!(
                "[+]: Built {kind} appimg '{name}' version {} ({})",
                meta.version, meta.filesystem
            ));
            if let Some(v) = &meta.verity {
                ctx.say(format!("[+]: Root hash {}", v.root_hash));
            }
            if ctx.json {
                ctx.emit(&Json(meta))?;
            }
        }
        AppimgCmd::Verify { name } => {
            let info = store.images().get(&name)?;
            let verified = sealed::verify(store.root(), &info)?;
            ctx.emit(&Json(&verified))?;
            ctx.say(format!(
                "[+]: '{name}' version {}: signature good (key '{}', {}); all {} data blocks and the hash tree are intact",
                verified.version, verified.signed_by.key, verified.signed_by.fingerprint, verified.data_blocks
            ));
        }
        AppimgCmd::Key(KeyCmd::Generate { name }) => {
            let (private, key) = keys::generate(store.root(), &name)?;
            ctx.say(format!(
                "[+]: Private key written to {} (keep it secret)",
                private.display()
            ));
            ctx.say(format!(
                "[+]: Public key {} trusted at {}",
                key.fingerprint,
                key.path.display()
            ));
            if ctx.json {
                ctx.emit(&Json(key))?;
            }
        }
        AppimgCmd::Key(KeyCmd::List) => ctx.emit(&Keys(keys::trusted(store.root())?))?,
    }
    Ok(ExitCode::SUCCESS)
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

impl Progress for Spinner {
    fn stage(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None if !self.quiet => eprintln!("[+]: {message}"),
            None => {}
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Images(Vec<ImageInfo>);

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
            "{:<16} {:<7} {:<10} {:<5} OS",
            "NAME", "KIND", "STORAGE", "PREV"
        )?;
        for i in &self.0 {
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
            let prev = if i.has_previous { "yes" } else { "no" };
            writeln!(
                f,
                "{:<16} {kind:<7} {storage:<10} {prev:<5} {}",
                i.name,
                i.os.as_deref().unwrap_or("-")
            )?;
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
