//! The desktop's switch latency: from `realms current B` until `realms desktop watch` has
//! published B's entries in place of A's, over 100 alternating switches (p50, p99, max).

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use realms_tests::container::nspawn_prerequisites;
use realms_tests::realms::{TestRoot, name};

/// The switches measured (the 100).
const SWITCHES: usize = 100;
/// The target for the 99th percentile.
const P99_TARGET: Duration = Duration::from_millis(200);

pub fn run_suite() -> anyhow::Result<()> {
    nspawn_prerequisites();
    let t = TestRoot::btrfs();
    let (a, b) = (name("sa"), name("sb"));
    for realm in [&a, &b] {
        t.ok(&["new", realm]);
        let apps = t
            .realms_dir()
            .join(format!("realm-{realm}/rootfs/usr/share/applications"));
        fs::create_dir_all(&apps)?;
        fs::write(
            apps.join("bench.desktop"),
            "[Desktop Entry]\nType=Application\nName=Bench\nExec=/bin/true\n",
        )?;
        t.ok(&["start", realm]);
    }
    let watch = Watch(
        t.command(&["desktop", "watch"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting realms desktop watch")?,
    );
    let dir = t.path().join("run/realms/desktop/applications");
    let mut latencies = Vec::with_capacity(SWITCHES);
    for i in 0..=SWITCHES {
        let next = if i % 2 == 0 { &a } else { &b };
        let start = Instant::now();
        t.ok(&["current", next]);
        wait_for(&dir, &format!("realms-{next}-bench.desktop"))?;
        // The first switch (from no current realm) is a warm-up.
        if i > 0 {
            latencies.push(start.elapsed());
        }
    }
    drop(watch);
    for realm in [&a, &b] {
        t.ok(&["stop", realm]);
    }
    latencies.sort();
    // Nearest rank: the p-th percentile of 100 values is the p-th smallest.
    let at = |p: usize| latencies[(latencies.len() * p).div_ceil(100).max(1) - 1];
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!("\n## desktop: switch latency (`realms current` until the entries are published)");
    println!("| switches | p50 | p99 | max | target p99 |");
    println!("|---|---|---|---|---|");
    println!(
        "| {SWITCHES} | {} | {} | {} | <{} |",
        ms(at(50)),
        ms(at(99)),
        ms(latencies[latencies.len() - 1]),
        ms(P99_TARGET)
    );
    Ok(())
}

/// `realms desktop watch`, stopped when dropped.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `dir` holds exactly one entry, `entry` (the switched set, whole).
fn wait_for(dir: &Path, entry: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let names: Vec<_> = fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        if names.len() == 1 && names[0] == entry {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("{entry} was not published in {} within 20 s", dir.display());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
