//! The verbs users of Incus, machinectl and distrobox expect: status, logs, snapshot, clone,
//! rename, rebase, autostart; and the small renderers they share with `list` and `appimg list`.

use std::fmt;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use realms_realm::store::RootKind;
use realms_realm::{autostart, rebase, rename, snapshot, status};
use serde::Serialize;

use crate::output::{Ctx, outln};
use realms_sys::event::Event;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum VerbCmd {
    /// Show a realm: state, pid, address, image version, uptime, options, last log lines.
    Status {
        name: String,
        /// How many log lines to show.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
    },
    /// Show a realm's journal (read from the host), or what its systemd-nspawn printed.
    Logs {
        name: String,
        /// Keep showing new lines.
        #[arg(long, short)]
        follow: bool,
        /// How many lines to show.
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: usize,
    },
    /// Snapshots of a stopped realm: `snapshot NAME [SNAP]` takes one; list, restore, remove.
    Snapshot(SnapshotArgs),
    /// Make a new realm DST as a copy of the stopped realm SRC (a btrfs snapshot where it can).
    Clone { src: String, dst: String },
    /// Rename a stopped realm (its snapshots, default/current links and leases follow).
    Rename { old: String, new: String },
    /// Give a stopped realm a fresh root from the current version of its image (or of
    /// --appimg), keeping its home and config.
    Rebase {
        name: String,
        /// Move the realm to this image.
        #[arg(long)]
        appimg: Option<String>,
    },
    /// Start a realm at boot, beside the default realm (`realms start --autostart`).
    Autostart {
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    cmd: Option<SnapshotCmd>,
    /// The realm to snapshot.
    #[arg(required = true)]
    name: Option<String>,
    /// The snapshot's name (default snapN).
    snap: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot (the same as `realms snapshot NAME [SNAP]`).
    Create { name: String, snap: Option<String> },
    /// List a realm's snapshots.
    List { name: String },
    /// Make the realm's config, home and root the snapshot's again (the snapshot is kept).
    Restore { name: String, snap: String },
    /// Delete a snapshot.
    Remove { name: String, snap: String },
}

pub fn run(cmd: VerbCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = crate::realm::store(ctx)?;
    let say = |event: Event| ctx.say(event);
    match cmd {
        VerbCmd::Status { name, lines } => {
            ctx.emit(&StatusView(status::status(&store, &name, lines)?))?
        }
        VerbCmd::Logs {
            name,
            follow,
            lines,
        } => {
            let source = status::log_source(&store, &name)
                .ok_or_else(|| realms_realm::Error::NoLog { name: name.clone() })?;
            ctx.say(Event::progress(format!("Showing {}", source.describe())));
            if ctx.json && matches!(source, status::LogSource::File(_)) {
                for line in source.tail(lines)? {
                    outln!("{}", serde_json::json!({ "realm": name, "message": line }));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let code = source.show(lines, follow, ctx.json)?.code().unwrap_or(1);
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        VerbCmd::Snapshot(args) => snapshot_cmd(&store, args, ctx)?,
        VerbCmd::Clone { src, dst } => {
            let root = rename::clone(&store, &src, &dst)?;
            let how = match root {
                RootKind::Snapshot => "a btrfs snapshot of its root",
                RootKind::Overlay => "a copy of its overlay's changes, on the same image version",
            };
            say(Event::progress(format!(
                "Cloned realm '{src}' as '{dst}' ({how}; config and home copied)"
            )));
            ctx.done(
                "cloned",
                "realm",
                &dst,
                json!({ "from": src, "root": root }),
            );
        }
        VerbCmd::Rename { old, new } => {
            rename::rename(&store, &old, &new)?;
            say(Event::progress(format!("Renamed realm '{old}' to '{new}'")));
            ctx.done("renamed", "realm", &new, json!({ "from": old }));
        }
        VerbCmd::Rebase { name, appimg } => {
            let done = rebase::rebase(&store, &name, appimg.as_deref(), &say)?;
            ctx.done("rebased", "realm", &name, serde_json::to_value(&done)?);
        }
        VerbCmd::Autostart { name, state } => {
            let on = state == "on";
            autostart::set(&store, &name, on)?;
            say(Event::progress(format!(
                "Realm '{name}' {} at boot",
                if on { "starts" } else { "no longer starts" }
            )));
            ctx.done("autostart", "realm", &name, json!({ "autostart": on }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn snapshot_cmd(
    store: &realms_realm::RealmStore,
    args: SnapshotArgs,
    ctx: &Ctx,
) -> anyhow::Result<()> {
    let cmd = match args.cmd {
        Some(cmd) => cmd,
        None => SnapshotCmd::Create {
            name: args
                .name
                .expect("clap requires a name without a subcommand"),
            snap: args.snap,
        },
    };
    match cmd {
        SnapshotCmd::Create { name, snap } => {
            let s = snapshot::create(store, &name, snap.as_deref())?;
            ctx.say(Event::progress(format!(
                "Snapshot '{}' of realm '{name}' taken",
                s.name
            )));
            ctx.done("snapshotted", "realm", &name, json!({ "snapshot": s }));
        }
        SnapshotCmd::List { name } => ctx.emit(&Snapshots(snapshot::list(store, &name)?))?,
        SnapshotCmd::Restore { name, snap } => {
            let s = snapshot::restore(store, &name, &snap)?;
            ctx.say(Event::progress(format!(
                "Realm '{name}' restored to snapshot '{snap}' (config, home and root)"
            )));
            ctx.done("restored", "realm", &name, json!({ "snapshot": s }));
        }
        SnapshotCmd::Remove { name, snap } => {
            snapshot::remove(store, &name, &snap)?;
            ctx.say(Event::progress(format!(
                "Snapshot '{snap}' of realm '{name}' removed"
            )));
            ctx.done("removed", "snapshot", &snap, json!({ "realm": name }));
        }
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(transparent)]
struct Snapshots(Vec<snapshot::Snapshot>);

impl fmt::Display for Snapshots {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0.is_empty() {
            return write!(
                f,
                "no snapshots; take one with `realms snapshot NAME [SNAP]`"
            );
        }
        writeln!(
            f,
            "{:<20} {:<16} {:<9} {:<16} VERSION",
            "SNAPSHOT", "CREATED", "ROOT", "APPIMG"
        )?;
        for s in &self.0 {
            writeln!(
                f,
                "{:<20} {:<16} {:<9} {:<16} {}",
                s.name,
                utc_time(s.created),
                root_name(&s.root),
                s.appimg,
                s.image_version.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

fn root_name(root: &RootKind) -> &'static str {
    match root {
        RootKind::Snapshot => "snapshot",
        RootKind::Overlay => "overlay",
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct StatusView(status::Status);

impl fmt::Display for StatusView {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.0;
        let mut marks = Vec::new();
        if s.default {
            marks.push("default");
        }
        if s.current {
            marks.push("current");
        }
        if s.autostart {
            marks.push("autostart");
        }
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!(" ({})", marks.join(", "))
        };
        writeln!(f, "Realm: {}{marks}", s.name)?;
        match (s.running, s.leader) {
            (true, Some(leader)) => writeln!(
                f,
                "State: running{} (leader pid {leader}{}{})",
                s.uptime
                    .map(|u| format!(" for {}", duration(u)))
                    .unwrap_or_default(),
                s.pid
                    .map(|p| format!(", nspawn pid {p}"))
                    .unwrap_or_default(),
                s.unit
                    .as_deref()
                    .map(|u| format!(", unit {u}"))
                    .unwrap_or_default(),
            )?,
            (true, None) => writeln!(f, "State: running")?,
            _ => writeln!(f, "State: stopped")?,
        }
        let net = match (&s.zone, &s.address) {
            (Some(z), Some(a)) => format!("zone {z}, address {a}"),
            (Some(z), None) => format!("zone {z}"),
            _ => "none (loopback only)".into(),
        };
        writeln!(f, "Network: {net}")?;
        writeln!(
            f,
            "Image: {} version {}{} ({})",
            s.appimg,
            s.image_version.as_deref().unwrap_or("unrecorded"),
            if s.behind {
                format!(
                    "; the image is at {} now, `realms rebase {}` moves the realm to it",
                    s.current_image_version
                        .as_deref()
                        .unwrap_or("a newer version"),
                    s.name
                )
            } else {
                String::new()
            },
            match s.root {
                RootKind::Snapshot => "btrfs snapshot",
                RootKind::Overlay => "overlay",
            }
        )?;
        writeln!(f, "Options:")?;
        for (k, v) in &s.options {
            writeln!(f, "  {k} = {v}")?;
        }
        for note in &s.notes {
            writeln!(f, "  [!] {note}")?;
        }
        if !s.log.is_empty() {
            writeln!(f, "Log:")?;
            for line in &s.log {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

/// `1536` → `1.5K`, in powers of 1024 like `ls -h`.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
pub fn utc_time(secs: u64) -> String {
    let (year, month, day) = realms_sys::civil::civil_date((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `3725` → `1h 2m`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sizes_times_and_durations() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1536), "1.5K");
        assert_eq!(human_size(3 << 30), "3.0G");
        assert_eq!(utc_time(0), "1970-01-01 00:00");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00");
        assert_eq!(duration(3725), "1h 2m");
        assert_eq!(duration(59), "59s");
    }
}
