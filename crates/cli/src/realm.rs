//! The realm commands of the seed (`new`, `list`, `default`, `current`, `start`, `run`, ...).

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use realms_realm::{RealmStore, autostart, exec, launch, lifecycle, select, update, zone};
use serde::Serialize;
use serde_json::json;

use crate::output::{Ctx, Json};
use realms_sys::event::Event;

#[derive(Debug, Subcommand)]
pub enum RealmCmd {
    /// Create a realm: a snapshot (or overlay) of an application image, a home from skel.
    New {
        name: String,
        /// The application image to clone.
        #[arg(long, default_value = "base")]
        appimg: String,
    },
    /// List realms: running or stopped, default and current, image, network zone.
    List,
    /// Create the realm and image stores (any command that changes something does it itself).
    Init,
    /// Show the default realm (started at boot), or make NAME the default.
    Default { name: Option<String> },
    /// Show the current realm (owns the desktop), or make NAME current (starting it).
    Current { name: Option<String> },
    /// Show a realm's options, one option, or set one.
    Config {
        name: String,
        key: Option<String>,
        /// The new value (a list as TOML, `["a", "b"]`, or entries separated by spaces).
        #[arg(conflicts_with_all = ["add", "remove"])]
        value: Option<String>,
        /// Add one entry to a list option.
        #[arg(
            long,
            value_name = "ENTRY",
            requires = "key",
            conflicts_with = "remove"
        )]
        add: Option<String>,
        /// Remove one entry from a list option.
        #[arg(long, value_name = "ENTRY", requires = "key")]
        remove: Option<String>,
    },
    /// Boot a realm (the default realm when NAME is left out).
    Start {
        #[arg(conflicts_with = "autostart")]
        name: Option<String>,
        /// Start the default realm and every realm with autostart (what runs at boot).
        #[arg(long)]
        autostart: bool,
    },
    /// Power a realm off.
    Stop { name: String },
    /// Stop a realm and boot it again.
    Restart { name: String },
    /// Run a command in a realm (started if needed); its exit status becomes ours (127: no
    /// such command, 126: not executable, 128+N: killed by signal N). Signals are passed on.
    Run {
        name: String,
        /// Run as this user of the realm (default root).
        #[arg(long, short)]
        user: Option<String>,
        /// Set an environment variable (KEY=VALUE, or KEY for its value here); repeatable.
        #[arg(long, short, value_name = "KEY=VALUE", value_parser = exec::parse_env)]
        env: Vec<(String, String)>,
        /// The working directory inside the realm (default: the user's home).
        #[arg(long, short = 'w', value_name = "DIR")]
        cwd: Option<std::path::PathBuf>,
        /// Give the command a pseudo-terminal even when stdin or stdout is not a terminal.
        #[arg(short = 't', long = "tty", conflicts_with = "no_tty")]
        tty: bool,
        /// Never give the command a pseudo-terminal (default: one when stdin and stdout are
        /// terminals).
        #[arg(short = 'T', long = "no-tty")]
        no_tty: bool,
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Open a login shell in a realm as its user (or root).
    Shell {
        name: String,
        /// Log in as root instead of the realm's user.
        // Its own id: the global `--root DIR` already owns the id `root`.
        #[arg(long = "root", id = "as_root")]
        as_root: bool,
    },
    /// Remove a realm and everything in it.
    Remove {
        name: String,
        /// Stop the realm first if it is running.
        #[arg(long)]
        stop: bool,
    },
    /// Change an application image in a container; on success it replaces the image.
    UpdateAppimg {
        #[arg(default_value = "base")]
        image: String,
        /// The key to reseal a sealed image with: a name from `realms appimg key list`, or a
        /// private key file (default: the key that signed it).
        #[arg(long)]
        key: Option<std::path::PathBuf>,
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Internal: mount the realm's root and become systemd-nspawn (used by `start`).
    #[command(hide = true)]
    NspawnExec { name: String },
}

/// `realms zone [ZONE [KEY VALUE]]` and `realms zone remove ZONE`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, disable_help_subcommand = true)]
pub struct ZoneArgs {
    #[command(subcommand)]
    cmd: Option<ZoneCmd>,
    zone: Option<String>,
    /// `nat` (on/off; new zones have it on) or `subnet` (A.B.C.0/24).
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ZoneCmd {
    /// Remove a zone: its bridge, its nftables rules and its settings (refused while a realm is
    /// configured for it).
    Remove { zone: String },
}

/// The store under `--root`; opening creates nothing, and the note that the first mutating
/// command created it goes to stderr.
pub(crate) fn store(ctx: &Ctx) -> anyhow::Result<RealmStore> {
    let quiet = ctx.quiet;
    Ok(RealmStore::open(&ctx.root)
        .with_context(|| format!("opening the realm store under {}", ctx.root.display()))?
        .with_notes(move |event: Event| {
            if !quiet {
                eprintln!("{}", crate::output::render(&event));
            }
        }))
}

pub fn run(cmd: RealmCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let say = |event: Event| ctx.say(event);
    // `run` and `shell` keep stdout for the command; their own lines go to stderr, also with
    // `--json`.
    let say_err = |event: Event| {
        if !ctx.quiet {
            eprintln!("{}", crate::output::render(&event))
        }
    };
    match cmd {
        RealmCmd::New { name, appimg } => {
            lifecycle::create(&store, &name, &appimg, &say)?;
            ctx.done("created", "realm", &name, json!({ "appimg": appimg }));
        }
        RealmCmd::List => ctx.emit(&List(select::list(&store)?))?,
        RealmCmd::Init => init(&store, ctx)?,
        RealmCmd::Default { name: Some(name) } => {
            select::set_default(&store, &name, &say)?;
            ctx.done("set-default", "realm", &name, json!({}));
        }
        RealmCmd::Default { name: None } => {
            let name = store.default_realm();
            ctx.emit(&Named {
                label: "Default Realm",
                name,
            })?;
        }
        RealmCmd::Current { name: Some(name) } => {
            select::set_current(&store, &name, &say)?;
            ctx.done("set-current", "realm", &name, json!({}));
        }
        RealmCmd::Current { name: None } => {
            ctx.emit(&Named {
                label: "Current Realm",
                name: select::current(&store),
            })?;
        }
        RealmCmd::Config {
            name,
            key: Some(key),
            value,
            add,
            remove,
        } if value.is_some() || add.is_some() || remove.is_some() => {
            match (&value, &add, &remove) {
                (Some(value), ..) => lifecycle::config_set(&store, &name, &key, value)?,
                (_, Some(entry), _) => {
                    lifecycle::config_edit(&store, &name, &key, lifecycle::ListEdit::Add(entry))?
                }
                (_, _, Some(entry)) => {
                    lifecycle::config_edit(&store, &name, &key, lifecycle::ListEdit::Remove(entry))?
                }
                _ => unreachable!("the guard checked one is given"),
            }
            let shown = lifecycle::config_get(&store, &name, Some(&key))?;
            if let Some((_, v)) = shown.first() {
                ctx.say(Event::progress(format!("{key} = {v} in realm '{name}'")));
            }
            let value = shown.first().map(|(_, v)| toml_to_json(v));
            ctx.done(
                "configured",
                "realm",
                &name,
                json!({ "key": key, "value": value }),
            );
        }
        RealmCmd::Config { name, key, .. } => {
            ctx.emit(&Options(lifecycle::config_get(
                &store,
                &name,
                key.as_deref(),
            )?))?;
        }
        RealmCmd::Start {
            autostart: true, ..
        } => return start_autostart(&store, ctx),
        RealmCmd::Start { name, .. } => {
            let name = select::start(&store, name.as_deref(), &say)?;
            ctx.done("started", "realm", &name, json!({}));
        }
        RealmCmd::Stop { name } => {
            launch::stop(&store, &name, &say)?;
            ctx.done("stopped", "realm", &name, json!({}));
        }
        RealmCmd::Restart { name } => {
            launch::restart(&store, &name, &say)?;
            ctx.done("restarted", "realm", &name, json!({}));
        }
        RealmCmd::Run {
            name,
            user,
            env,
            cwd,
            tty,
            no_tty,
            command,
        } => {
            let opts = exec::RunOptions {
                user,
                env,
                cwd,
                tty: match (tty, no_tty) {
                    (true, _) => exec::Tty::Always,
                    (_, true) => exec::Tty::Never,
                    _ => exec::Tty::Auto,
                },
                groups: Vec::new(),
            };
            return command_status(exec::run(&store, &name, &command, &opts, &say_err));
        }
        RealmCmd::Shell { name, as_root } => {
            return command_status(exec::shell(&store, &name, as_root, &say_err));
        }
        RealmCmd::Remove { name, stop } => {
            lifecycle::remove(&store, &name, stop, &say)?;
            ctx.done("removed", "realm", &name, json!({}));
        }
        RealmCmd::UpdateAppimg {
            image,
            key,
            command,
        } => {
            return match update::update_appimg(&store, &image, &command, key.as_deref(), &say)? {
                update::UpdateOutcome::Committed => {
                    let version = store.images().get(&image)?.version;
                    ctx.done("updated", "image", &image, json!({ "version": version }));
                    Ok(ExitCode::SUCCESS)
                }
                update::UpdateOutcome::Discarded(code) => {
                    ctx.done("discarded", "image", &image, json!({ "status": code }));
                    Ok(ExitCode::from(code.clamp(1, 255) as u8))
                }
            };
        }
        RealmCmd::NspawnExec { name } => match launch::exec_launcher(&store, &name)? {},
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit status of `run` and `shell`: the command's, or a shell's for a command that is
/// missing (127) or cannot be executed (126).
fn command_status(result: realms_realm::Result<i32>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(err) if err.exit_code() != 1 => {
            let code = err.exit_code();
            crate::output::print_error(&err.into());
            Ok(ExitCode::from(code))
        }
        Err(err) => Err(err.into()),
    }
}

pub fn zone(args: ZoneArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    if let Some(ZoneCmd::Remove { zone: z }) = args.cmd {
        zone::remove(&store, &z)?;
        ctx.say(Event::progress(format!("Removed zone '{z}'")));
        ctx.done("removed", "zone", &z, json!({}));
        return Ok(ExitCode::SUCCESS);
    }
    match (args.zone, args.key, args.value) {
        (Some(z), Some(k), Some(v)) => {
            let zone = zone::set(&store, &z, &k, &v)?;
            ctx.say(Event::progress(format!("Zone '{z}': {k} {v}")));
            ctx.done("configured", "zone", &z, serde_json::to_value(&zone)?);
        }
        (Some(z), None, None) => {
            let zones = zone::load(&store)?;
            let zone = zones.get(&z).cloned().with_context(|| {
                format!("there is no zone '{z}' yet; it is made when a realm in it starts")
            })?;
            ctx.emit(&Zones(vec![(z, zone)]))?;
        }
        (None, None, None) => ctx.emit(&Zones(zone::load(&store)?.into_iter().collect()))?,
        _ => anyhow::bail!(
            "use `realms zone`, `realms zone ZONE`, `realms zone ZONE KEY VALUE` or `realms zone remove ZONE`"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Named {
    #[serde(skip)]
    label: &'static str,
    name: Option<String>,
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}: {n}", self.label),
            None => write!(f, "{}: (none)", self.label),
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct List(Vec<select::RealmStatus>);

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "no realms yet; create one with `realms new NAME`");
        }
        writeln!(
            f,
            "{:<3} {:<20} {:<8} {:<16} {:<10} {:<8} {:<16} LABEL",
            "", "NAME", "STATE", "APPIMG", "VERSION", "ROOT", "NETWORK"
        )?;
        for r in &self.0 {
            let marks = format!(
                "{}{}{}",
                if r.current { ">" } else { " " },
                if r.default { "*" } else { " " },
                if r.autostart { "+" } else { " " }
            );
            let root = match r.root {
                realms_realm::store::RootKind::Snapshot => "snapshot",
                realms_realm::store::RootKind::Overlay => "overlay",
            };
            let net = r
                .zone
                .as_deref()
                .map(|z| format!("zone {z}"))
                .unwrap_or_else(|| "none".into());
            let state = match (r.running, r.orphaned) {
                (_, true) => "orphaned",
                (true, false) => "running",
                (false, false) => "stopped",
            };
            if let Some(err) = &r.error {
                writeln!(f, "{marks} {:<20} {state:<8} broken config: {err}", r.name)?;
                continue;
            }
            let version = format!(
                "{}{}",
                r.image_version.as_deref().unwrap_or("-"),
                if r.behind { " (old)" } else { "" }
            );
            writeln!(
                f,
                "{marks} {:<20} {state:<8} {:<16} {version:<10} {root:<8} {net:<16} {} {}",
                r.name, r.appimg, r.label, r.color
            )?;
        }
        write!(
            f,
            "(> current, * default, + autostart; old: behind its image, `realms rebase NAME` moves it)"
        )
    }
}

struct Options(Vec<(String, String)>);

impl Serialize for Options {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, toml_to_json(v))))
    }
}

/// A TOML value as the command line shows it, turned into JSON for `--json`.
fn toml_to_json(v: &str) -> serde_json::Value {
    serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()))
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (k, v) in &self.0 {
            writeln!(f, "{k} = {v}")?;
        }
        Ok(())
    }
}

struct Zones(Vec<(String, zone::Zone)>);

impl Serialize for Zones {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl fmt::Display for Zones {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0.is_empty() {
            return write!(
                f,
                "no zones yet; a zone is made when the first realm in it starts"
            );
        }
        for (name, z) in &self.0 {
            writeln!(
                f,
                "{name:<14} bridge vz-{name:<12} subnet {:<16} nat {}",
                z.subnet,
                if z.nat { "on" } else { "off" }
            )?;
        }
        Ok(())
    }
}

/// `realms init`.
pub fn init(store: &realms_realm::RealmStore, ctx: &Ctx) -> anyhow::Result<()> {
    let created = store.init_and_recover()?;
    if !created {
        ctx.say(Event::progress(format!(
            "The realm store at {} exists already",
            store.dir().display()
        )));
    }
    ctx.done(
        if created { "created" } else { "exists" },
        "store",
        &store.dir().display().to_string(),
        json!({ "images": store.images().dir() }),
    );
    Ok(())
}

/// `realms start --autostart`: fails when any boot realm failed to start.
pub fn start_autostart(store: &realms_realm::RealmStore, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let say = |event: Event| ctx.say(event);
    let started = autostart::start_all(store, &say)?;
    if started.is_empty() {
        say(Event::progress(
            "No realm starts at boot (no default realm, none with autostart)",
        ));
    }
    ctx.emit(&Json(&started))?;
    Ok(if started.iter().all(|s| s.started) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
