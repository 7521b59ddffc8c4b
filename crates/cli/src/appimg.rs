//! `realms appimg`: import, list, remove and roll back application images.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use realms_image::{ImageInfo, ImageKind, Progress, Source, import};
use realms_realm::{RealmStore, update};
use serde::Serialize;

use crate::output::Ctx;

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
