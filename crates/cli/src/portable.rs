//! `realms portable ...`: portablectl's verbs and options, its messages and exit statuses.
//!
//! Informational lines (the matched prefix, every change, queued jobs) go to stderr exactly as
//! portablectl prints them; `--json` puts the structured result on stdout instead.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use realms_portable::manage::{self, Listed};
use realms_portable::ops::Steps;
use realms_portable::validate::Check;
use realms_portable::verb::{Event, VerbOptions, Verbs};
use realms_portable::{CopyMode, Host, State, Systemd, profile};

use crate::output::{Ctx, out, outln};

/// `realms portable`.
#[derive(Debug, Args)]
pub struct PortableArgs {
    #[command(subcommand)]
    cmd: PortableCmd,
    #[command(flatten)]
    opts: PortableOpts,
}

/// portablectl's options (they may come before or after the verb).
#[derive(Debug, Args)]
pub struct PortableOpts {
    /// Security profile for attach (`help` lists them).
    #[arg(
        short = 'p',
        long,
        global = true,
        default_value = "default",
        value_name = "PROFILE"
    )]
    profile: String,
    /// auto (copy units, link profile), copy, symlink, mixed (copy units and the image); `help`.
    #[arg(long, global = true, default_value = "auto", value_name = "MODE")]
    copy: String,
    /// Attach until the next reboot only (/run instead of /etc).
    #[arg(long, global = true)]
    runtime: bool,
    /// Enable the units after attach / disable them before detach.
    #[arg(long, global = true)]
    enable: bool,
    /// Start the units after attach / stop them before detach.
    #[arg(long, global = true)]
    now: bool,
    /// Do not wait for the start jobs of attach --now.
    #[arg(long, global = true)]
    no_block: bool,
    /// Do not reload the service manager.
    #[arg(long, global = true)]
    no_reload: bool,
    /// Skip the "exists"/"active" checks and replace existing files; relax extension matching.
    #[arg(long, global = true)]
    force: bool,
    /// inspect: print os-release, extension-release and unit file contents.
    #[arg(long, global = true)]
    cat: bool,
    /// An extension image layered over the base (repeatable, in order).
    #[arg(long = "extension", global = true, value_name = "PATH")]
    extensions: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum PortableCmd {
    /// List the images in the portable search path.
    List,
    /// Attach an image's units (matching PREFIX..., default: derived from the image name).
    Attach {
        image: String,
        prefixes: Vec<String>,
    },
    /// Detach the units attached from an image.
    Detach {
        image: String,
        prefixes: Vec<String>,
    },
    /// Detach and attach again (e.g. a new version), keeping units running.
    Reattach {
        image: String,
        prefixes: Vec<String>,
    },
    /// Show an image's os-release and matching unit files.
    Inspect {
        image: String,
        prefixes: Vec<String>,
    },
    /// Print the attachment state (detached, attached, attached-runtime, enabled, running...).
    ///
    /// Exit status 0 whenever the state could be found, `detached` included, as portablectl
    /// 252 does; non-zero only on errors.
    IsAttached { image: String },
    /// Mark an image read-only (or writable with `no`).
    ReadOnly {
        image: String,
        value: Option<String>,
    },
    /// Remove detached images.
    Remove {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Set the disk quota (a btrfs qgroup limit) of a subvolume image, or of the image pool
    /// /var/lib/portables without IMAGE; LIMIT is a size (1024-based K, M, G...) or `none`.
    SetLimit {
        #[arg(required = true, num_args = 1..=2, value_names = ["IMAGE", "LIMIT"])]
        args: Vec<String>,
    },
    /// Check the seven requirements of a portable image, one line each.
    Validate {
        image: String,
        prefixes: Vec<String>,
    },
}

/// Renders a verb's events: portablectl's lines on stderr unless `-q`/`--json`, and a warning
/// for a missing profile unless `-q`.
fn events(ctx: &Ctx) -> impl FnMut(Event<'_>) + '_ {
    move |event| {
        match event {
        Event::Line(line) if !ctx.quiet && !ctx.json => eprintln!("{line}"),
        // portablectl attaches silently without any profile drop-in; we say so.
        Event::MissingProfile { profile, available } => {
            ctx.say(realms_sys::event::Event::warning(format!(
                "profile '{profile}' does not exist, so the units get no sandboxing drop-in; the profiles are: {}",
                available.join(", ")
            )))
        }
        _ => {}
    }
    }
}

fn method(base: &str, opts: &PortableOpts) -> String {
    if opts.extensions.is_empty() && !opts.force {
        base.to_owned()
    } else {
        format!("{base}WithExtensions")
    }
}

/// Runs `realms portable ...`; failures print as portablectl's "<Method> failed: ..." lines.
pub fn run(args: PortableArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let opts = &args.opts;
    if opts.profile == "help" || opts.copy == "help" {
        let host = Host::open(&ctx.root)?;
        let list = if opts.profile == "help" {
            profile::list(&host)
        } else {
            CopyMode::NAMES.map(str::to_owned).to_vec()
        };
        list.iter().for_each(|l| outln!("{l}"));
        return Ok(ExitCode::SUCCESS);
    }
    let steps = Steps {
        reload: !opts.no_reload,
        enable: opts.enable,
        now: opts.now,
        no_block: opts.no_block,
    };
    let options = VerbOptions::new(
        &opts.profile,
        &opts.copy,
        opts.runtime,
        opts.force,
        opts.extensions.clone(),
        steps,
    )?;
    let host = Host::open(&ctx.root).with_context(|| format!("opening {}", ctx.root.display()))?;
    let systemd = Systemd::detect(&host);
    let verbs = Verbs {
        host: &host,
        systemd: &systemd,
        options: &options,
    };
    let (label, result) = dispatch(&verbs, opts, ctx, args.cmd);
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            let mut msg = String::new();
            for (i, cause) in e.chain().enumerate() {
                let _ = write!(msg, "{}{cause}", if i == 0 { "" } else { ": " });
            }
            eprintln!("{label}{msg}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Runs the verb; returns portablectl's prefix for its error message and the result.
fn dispatch(
    verbs: &Verbs<'_>,
    opts: &PortableOpts,
    ctx: &Ctx,
    cmd: PortableCmd,
) -> (String, anyhow::Result<ExitCode>) {
    let failed = |base: &str| format!("{} failed: ", method(base, opts));
    let mut on_event = events(ctx);
    match cmd {
        PortableCmd::List => (
            "Failed to list images: ".into(),
            list(verbs.host, verbs.systemd, ctx),
        ),
        PortableCmd::Attach { image, prefixes } => (
            failed("AttachImage"),
            verbs
                .attach(&image, &prefixes, false, &mut on_event)
                .map_err(Into::into)
                .and_then(|out| emit_json(ctx, &out)),
        ),
        PortableCmd::Reattach { image, prefixes } => (
            failed("ReattachImage"),
            verbs
                .attach(&image, &prefixes, true, &mut on_event)
                .map_err(Into::into)
                .and_then(|out| emit_json(ctx, &out)),
        ),
        PortableCmd::Detach { image, prefixes } => (
            failed("DetachImage"),
            verbs
                .detach(&image, &prefixes, &mut on_event)
                .map_err(Into::into)
                .and_then(|out| emit_json(ctx, &out)),
        ),
        PortableCmd::Inspect { image, prefixes } => (
            "Failed to inspect image metadata: ".into(),
            verbs
                .inspect(&image, &prefixes, &mut on_event)
                .map_err(Into::into)
                .and_then(|found| render_inspect(ctx, &found, opts.cat, opts)),
        ),
        PortableCmd::IsAttached { image } => {
            let label = if opts.extensions.is_empty() {
                "GetImageState failed: "
            } else {
                "GetImageStateWithExtensions failed: "
            };
            let result = verbs.state(&image).map_err(Into::into);
            (label.into(), result.map(|s| render_state(ctx, s)))
        }
        PortableCmd::ReadOnly { image, value } => (
            "Could not mark image read-only: ".into(),
            verbs
                .set_read_only(&image, value.as_deref())
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into),
        ),
        PortableCmd::Remove { images } => (
            "Could not remove image: ".into(),
            verbs
                .remove(&images)
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into),
        ),
        PortableCmd::SetLimit { args } => {
            let (image, limit) = match args.as_slice() {
                [image, limit] => (Some(image.as_str()), limit.as_str()),
                [limit, ..] => (None, limit.as_str()),
                [] => (None, ""),
            };
            (
                "Could not set limit: ".into(),
                verbs
                    .set_limit(image, limit)
                    .map(|()| ExitCode::SUCCESS)
                    .map_err(Into::into),
            )
        }
        PortableCmd::Validate { image, prefixes } => (
            String::new(),
            verbs
                .validate(&image, &prefixes, &mut on_event)
                .map_err(Into::into)
                .and_then(|checks| render_checks(ctx, &checks)),
        ),
    }
}

fn render_inspect(
    ctx: &Ctx,
    found: &manage::Inspected,
    cat: bool,
    opts: &PortableOpts,
) -> anyhow::Result<ExitCode> {
    if ctx.json {
        return emit_json(ctx, found);
    }
    // portablectl 252 with --force and no --extension calls GetImageMetadataWithExtensions but
    // reads the reply's (empty) extension array as the unit list, so it shows no unit files.
    let units = !(opts.force && opts.extensions.is_empty());
    out!("{}", inspect_text(found, cat, units));
    Ok(ExitCode::SUCCESS)
}

fn render_state(ctx: &Ctx, state: State) -> ExitCode {
    if ctx.json {
        outln!("{}", serde_json::json!({ "state": state }));
    } else if !ctx.quiet {
        outln!("{state}");
    }
    // portablectl 252 returns streq(state, "detached") from the verb, and its main maps every
    // non-negative result to exit status 0.
    ExitCode::SUCCESS
}

fn render_checks(ctx: &Ctx, checks: &[Check]) -> anyhow::Result<ExitCode> {
    if ctx.json {
        emit_json(ctx, &checks)?;
    } else if !ctx.quiet {
        checks.iter().for_each(|c| outln!("{c}"));
    }
    Ok(if checks.iter().all(|c| c.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn emit_json<T: serde::Serialize>(ctx: &Ctx, value: &T) -> anyhow::Result<ExitCode> {
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(value)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect_text(found: &manage::Inspected, cat: bool, units: bool) -> String {
    let mut out = String::new();
    let na = |v: &Option<String>| v.clone().unwrap_or_else(|| "n/a".to_owned());
    if cat {
        let _ = write!(out, "-- OS Release: --\n{}", found.os_release);
    } else {
        let _ = writeln!(
            out,
            "Image:\n\t{}\nPortable Service:\n\t{}\nOperating System:\n\t{}",
            found.image.display(),
            na(&found.portable_pretty_name),
            na(&found.pretty_name)
        );
    }
    for ((path, text), f) in found.extensions.iter().zip(&found.extension_fields) {
        if cat {
            let _ = write!(out, "\n-- Extension Release: {} --\n{text}", path.display());
        } else {
            let _ = writeln!(
                out,
                "Extension:\n\t{}\n\tExtension Scope:\n\t\t{}\n\tExtension Compatibility Level:\n\t\t{}\n\tPortable Service:\n\t\t{}\n\tPortable Prefixes:\n\t\t{}\n\tOperating System:\n\t\t{} ({} {})",
                path.display(),
                na(&f.scope),
                na(&f.level),
                na(&f.portable_pretty_name),
                na(&f.portable_prefixes),
                na(&f.pretty_name),
                na(&f.id),
                na(&f.version_id),
            );
        }
    }
    let shown = if units { found.units.as_slice() } else { &[] };
    for (i, (name, text)) in shown.iter().enumerate() {
        if cat {
            let _ = write!(out, "\n-- Unit file: {name} --\n{text}");
        } else {
            if i == 0 {
                out.push_str("Unit files:\n");
            }
            let _ = writeln!(out, "\t{name}");
        }
    }
    out
}

fn list(host: &Host, systemd: &Systemd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let images = manage::list(host, systemd)?;
    if ctx.json {
        return emit_json(ctx, &images);
    }
    if !ctx.quiet {
        out!("{}", list_table(&images));
    }
    Ok(ExitCode::SUCCESS)
}

/// portablectl's table: NAME TYPE RO CRTIME MTIME USAGE STATE, then "N images listed.".
fn list_table(images: &[Listed]) -> String {
    if images.is_empty() {
        return "No images.\n".to_owned();
    }
    let mut rows =
        vec![["NAME", "TYPE", "RO", "CRTIME", "MTIME", "USAGE", "STATE"].map(str::to_owned)];
    for i in images {
        rows.push([
            i.name.clone(),
            i.kind.as_str().to_owned(),
            if i.read_only { "yes" } else { "no" }.to_owned(),
            i.crtime.map_or_else(|| "-".to_owned(), timestamp),
            i.mtime.map_or_else(|| "-".to_owned(), timestamp),
            i.usage.map(size).unwrap_or_default(),
            i.state.as_str().to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join(" ").trim_end());
    }
    let _ = write!(out, "\n{} images listed.\n", images.len());
    out
}

/// `Sat 2026-11-21 23:09:40 UTC`, from seconds since the epoch.
fn timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let (y, m, d) = realms_sys::civil::civil_date(days);
    format!(
        "{weekday} {y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `1016.0K`, `1.6M`: systemd's size format.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspected() -> manage::Inspected {
        manage::Inspected {
            image: "/usr/share/minimal_0.raw".into(),
            os_release: "ID=debian\n".into(),
            portable_pretty_name: None,
            pretty_name: Some("Debian".into()),
            extensions: Vec::new(),
            extension_fields: Vec::new(),
            units: vec![("minimal-app0.service".into(), "[Service]\n".into())],
        }
    }

    #[test]
    fn inspect_force_without_extensions_shows_no_unit_files_as_252() {
        let found = inspected();
        let plain = inspect_text(&found, false, true);
        assert!(
            plain.ends_with("Unit files:\n\tminimal-app0.service\n"),
            "{plain}"
        );
        let forced = inspect_text(&found, false, false);
        assert_eq!(
            forced,
            "Image:\n\t/usr/share/minimal_0.raw\nPortable Service:\n\tn/a\nOperating System:\n\tDebian\n"
        );
        assert_eq!(
            inspect_text(&found, true, false),
            "-- OS Release: --\nID=debian\n"
        );
    }

    #[test]
    fn timestamps_and_sizes() {
        assert_eq!(timestamp(1_795_303_780), "Sat 2026-11-21 23:29:40 UTC");
        assert_eq!(timestamp(0), "Thu 1970-01-01 00:00:00 UTC");
        assert_eq!(size(1_040_384), "1016.0K");
        assert_eq!(size(1_677_722), "1.6M");
        assert_eq!(size(12), "12B");
    }
}
