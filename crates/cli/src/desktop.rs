//! `realms desktop ...` and `realms launch`: the current realm's apps on the host's desktop
//! (crates/desktop).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use realms_desktop::disposable::launch_disposable;
use realms_desktop::launch::{LaunchOptions, launch};
use realms_desktop::publish::{Published, SyncOptions, sync};
use realms_desktop::titles::titles;
use realms_desktop::watch::watch;
use realms_sys::event::Event;

use crate::output::Ctx;

/// `realms desktop ...`.
#[derive(Debug, Subcommand)]
pub enum DesktopCmd {
    /// Publish the current realm's desktop entries and icons at /run/realms/desktop once.
    Sync {
        /// Publish every running realm's entries side by side instead.
        #[arg(long)]
        all: bool,
    },
    /// Publish them, then keep them current (inotify): run by realms-desktop-watch.service.
    Watch {
        /// Publish every running realm's entries side by side instead.
        #[arg(long)]
        all: bool,
    },
    /// Put each realm's label in the titles of its windows on the X display (XWayland too),
    /// following title changes: run in the desktop session (XDG autostart).
    Titles {
        /// The display (default: DISPLAY).
        #[arg(long, value_name = "DISPLAY")]
        display: Option<String>,
    },
}

/// The arguments of `realms launch`.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// The working directory in the realm.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE, or KEY for its value here); repeatable.
    #[arg(long, short, value_name = "KEY=VALUE", value_parser = realms_realm::exec::parse_env)]
    env: Vec<(String, String)>,
    /// Run in a new disposable realm, removed with every trace when the command and what it
    /// started have exited.
    #[arg(long, conflicts_with = "name")]
    disposable: bool,
    /// The image of the disposable realm.
    #[arg(long, requires = "disposable", default_value = "base")]
    appimg: String,
    /// The realm (started if it is not running).
    #[arg(required_unless_present = "disposable")]
    name: Option<String>,
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// The command published entries run: this binary, with `--root` when it is not `/`.
fn launcher(ctx: &Ctx) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe()?;
    let mut argv = vec![exe.to_string_lossy().into_owned()];
    if ctx.root != std::path::Path::new("/") {
        argv.push("--root".into());
        argv.push(ctx.root.to_string_lossy().into_owned());
    }
    Ok(argv)
}

struct Shown(Published);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let p = &self.0;
        match p.realms.as_slice() {
            [] => write!(
                f,
                "no realm is current; {} holds no entries",
                p.dir.display()
            ),
            realms => write!(
                f,
                "{} entries and {} icons of {} at {}",
                p.entries,
                p.icons,
                realms.join(", "),
                p.dir.display()
            ),
        }
    }
}

impl serde::Serialize for Shown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

pub fn run(cmd: DesktopCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = crate::realm::store(ctx)?;
    let say = |event: Event| ctx.say(event);
    match cmd {
        DesktopCmd::Sync { all } => {
            let opts = SyncOptions {
                all,
                launcher: launcher(ctx)?,
            };
            ctx.emit(&Shown(sync(&store, &opts, &say)?))?;
        }
        DesktopCmd::Watch { all } => {
            let opts = SyncOptions {
                all,
                launcher: launcher(ctx)?,
            };
            watch(&store, &opts, &say)?;
        }
        DesktopCmd::Titles { display } => titles(&store, display.as_deref(), &say)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn launch_cmd(args: LaunchArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = crate::realm::store(ctx)?;
    let say = |event: Event| {
        if !ctx.quiet {
            eprintln!("{}", crate::output::render(&event))
        }
    };
    let opts = LaunchOptions {
        cwd: args.cwd,
        env: args.env,
        ..LaunchOptions::from_env()
    };
    let code = match &args.name {
        Some(name) => launch(&store, name, &args.command, &opts, &say)?,
        None => launch_disposable(&store, &args.appimg, &args.command, &opts, &say)?,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// The arguments of `realms dbus`.
#[derive(Debug, clap::Args)]
pub struct DbusArgs {
    /// Serve on this bus address instead of the system bus.
    #[arg(long)]
    address: Option<String>,
    /// Members of this group may change realms too (besides root).
    #[arg(long, value_name = "GROUP", default_value = "realms")]
    admin_group: String,
}

pub fn dbus(args: DbusArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = crate::realm::store(ctx)?;
    let opts = realms_bus::ServeOptions {
        address: args.address,
        admin_group: Some(args.admin_group),
    };
    realms_bus::serve(store, &opts)?;
    Ok(ExitCode::SUCCESS)
}
