//! Portable services: `realms portable attach`/`detach` beside `portablectl attach`/`detach` of
//! the same image in the same booted container (both run through nsenter, with the daemon
//! reload, and again with `--now`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use realms_tests::container::Container;
use realms_tests::fixtures::{debian_base, portable_image};
use realms_tests::scratch::{Scratch, unique};

use crate::table::{Row, paired, print};

fn inside(c: &Container, script: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = c
        .nsenter()
        .args(["sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{script}` in the container"))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "`{script}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Times `verb` of each tool; the other half of the attach/detach pair runs untimed.
fn pair(c: &Container, tool: &str, flags: &str, time_attach: bool) -> anyhow::Result<Duration> {
    let attach = format!("{tool} attach {flags} foo-test >/dev/null 2>&1");
    let detach = format!("{tool} detach {flags} foo-test >/dev/null 2>&1");
    if time_attach {
        let took = inside(c, &attach)?;
        inside(c, &detach)?;
        Ok(took)
    } else {
        inside(c, &attach)?;
        inside(c, &detach)
    }
}

pub fn run_suite(runs: usize) -> anyhow::Result<()> {
    let tree = Scratch::snapshot(debian_base(), "bench-portable");
    let root = tree.path();
    std::fs::copy(realms_tests::realms_bin(), root.join("usr/bin/realms"))?;
    let portables = root.join("var/lib/portables");
    let _ = std::fs::remove_dir(&portables);
    std::fs::create_dir_all(&portables)?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(portable_image())
        .arg(portables.join("foo-test"))
        .status()?;
    anyhow::ensure!(status.success(), "copying the portable image failed");
    let c = Container::boot(root, &unique("bench-portable"), &["--private-network"]);
    let mut rows = Vec::new();
    for (flags, label) in [("", "reload"), ("--now", "--now")] {
        for (time_attach, verb) in [(true, "attach"), (false, "detach")] {
            let (ours, peer) = paired(
                runs,
                || pair(&c, "realms portable", flags, time_attach),
                || pair(&c, "portablectl", flags, time_attach),
                || Ok(()),
            )?;
            rows.push(Row::new(
                format!("{verb} foo-test ({label})"),
                ours,
                &format!("portablectl {verb}"),
                peer,
                Some(1.0),
            ));
        }
    }
    print(
        "portable services: attach and detach in a booted container",
        &rows,
    );
    c.stop();
    drop(tree);
    Ok(())
}
