//! Realm creation, start and run beside their bare counterparts: `realms new` vs `btrfs
//! subvolume snapshot` and `cp -a` (for the base image and one twice as large), `realms start`
//! vs a bare `systemd-nspawn -b` until systemd reports ready, `realms run` vs `nsenter`.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use realms_tests::container::nspawn_prerequisites;
use realms_tests::fixtures::debian_base;
use realms_tests::realms::{TestRoot, name};
use realms_tests::scratch::Scratch;

use crate::table::{Row, median_timed as median, paired, print};

pub fn run_suite(runs: usize) -> anyhow::Result<()> {
    nspawn_prerequisites();
    let t = TestRoot::btrfs();
    let mut rows = Vec::new();
    let big = big_image(&t)?;
    for (image, label) in [("base", "base image"), (big.as_str(), "image 2x as large")] {
        rows.extend(creation(&t, image, label, runs)?);
    }
    rows.extend(start(&t, runs)?);
    rows.extend(run(&t, runs)?);
    print("realms: create, start, run", &rows);
    Ok(())
}

fn sh(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// An image twice the size of the base: the base plus a copy of its /usr.
fn big_image(t: &TestRoot) -> anyhow::Result<String> {
    let tree = Scratch::snapshot(debian_base(), "bigimg");
    sh(Command::new("cp")
        .arg("-a")
        .arg(tree.path().join("usr"))
        .arg(tree.path().join("opt/usr-copy")))?;
    t.ok(&["appimg", "import", "big", &tree.path().to_string_lossy()]);
    // Let the copies reach the disk, so that writeback does not run into the measurements.
    sh(&mut Command::new("sync"))?;
    settle(t)?;
    Ok("big".into())
}

fn creation(t: &TestRoot, image: &str, label: &str, runs: usize) -> anyhow::Result<Vec<Row>> {
    let img = t.path().join(format!("storage/appimg/{image}.appimg"));
    let realm = name("bn");
    let dst = t.path().join("bench-copy");
    // btrfs cleans up deleted subvolumes in the background, which slows whatever runs next:
    // both are timed in the same rounds.
    let (ours, snapshot) = paired(
        runs,
        || time(&mut t.command(&["-q", "new", "--appimg", image, &realm])),
        || {
            time(
                Command::new("btrfs")
                    .args(["-q", "subvolume", "snapshot"])
                    .arg(&img)
                    .arg(&dst),
            )
        },
        || {
            sh(&mut t.command(&["-q", "remove", &realm]))?;
            sh(Command::new("btrfs")
                .args(["-q", "subvolume", "delete"])
                .arg(&dst))?;
            settle(t)
        },
    )?;
    let copy = median(runs.min(3), || {
        let start = Instant::now();
        sh(Command::new("cp").arg("-a").arg(&img).arg(&dst))?;
        let took = start.elapsed();
        sh(Command::new("rm").arg("-rf").arg(&dst))?;
        Ok(took)
    })?;
    Ok(vec![
        Row::new(
            format!("realms new ({label})"),
            ours,
            "btrfs subvolume snapshot",
            snapshot,
            Some(1.5),
        ),
        Row::new(format!("realms new ({label})"), ours, "cp -a", copy, None),
    ])
}

/// Waits for btrfs to finish cleaning up deleted subvolumes, so that one iteration's deletion
/// does not slow down the next one's creation (for us and the peer alike).
fn settle(t: &TestRoot) -> anyhow::Result<()> {
    // Bounded: a subvolume deleted while something still holds it is cleaned only later.
    let _ = Command::new("timeout")
        .args(["5", "btrfs", "-q", "subvolume", "sync"])
        .arg(t.path())
        .status();
    Ok(())
}

fn start(t: &TestRoot, runs: usize) -> anyhow::Result<Vec<Row>> {
    let realm = name("bs");
    t.ok(&["new", &realm]);
    t.ok(&["config", &realm, "use-network", "false"]);
    let tree = Scratch::snapshot(debian_base(), "barenspawn");
    let (ours, bare) = paired(
        runs,
        || {
            let took = time(&mut t.command(&["-q", "start", &realm]))?;
            sh(&mut t.command(&["-q", "stop", &realm]))?;
            Ok(took)
        },
        || bare_boot(tree.path()),
        || Ok(()),
    )?;
    Ok(vec![Row::new(
        "realms start (until systemd is ready)".into(),
        ours,
        "systemd-nspawn -b (until ready)",
        bare,
        Some(1.2),
    )])
}

/// A bare `systemd-nspawn -b` of a tree, timed until the container's systemd reports READY=1.
fn bare_boot(tree: &std::path::Path) -> anyhow::Result<Duration> {
    use std::os::linux::net::SocketAddrExt;
    let sock_name = format!("realms-bench-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(sock_name.as_bytes())?;
    let sock = UnixDatagram::bind_addr(&addr)?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let start = Instant::now();
    let mut child = Command::new("systemd-nspawn")
        .args([
            "-b",
            "--register=no",
            "--keep-unit",
            "--notify-ready=yes",
            "--private-network",
        ])
        .args([
            "--link-journal=no",
            "--console=read-only",
            "-M",
            &name("bare"),
            "-D",
        ])
        .arg(tree)
        .env("NOTIFY_SOCKET", format!("@{sock_name}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut buf = [0u8; 4096];
    let took = loop {
        if let Ok(n) = sock.recv(&mut buf)
            && buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1")
        {
            break start.elapsed();
        }
        if child.try_wait()?.is_some() || start.elapsed() > Duration::from_secs(60) {
            bail!("the bare nspawn did not become ready");
        }
    };
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )?;
    child.wait()?;
    Ok(took)
}

fn run(t: &TestRoot, runs: usize) -> anyhow::Result<Vec<Row>> {
    let realm = name("br");
    t.ok(&["new", &realm]);
    t.ok(&["start", &realm]);
    t.ok(&["run", &realm, "--", "/bin/true"]);
    let leader = leader_of(t, &realm)?;
    let (ours, bare) = paired(
        runs * 4,
        || time(&mut t.command(&["run", &realm, "--", "/bin/true"])),
        || time(Command::new("nsenter").args(["-t", &leader, "-a", "/bin/true"])),
        || Ok(()),
    )?;
    // With a pty of the realm's (signals forwarded, bytes copied both ways).
    let (pty, bare_pty) = paired(
        runs * 4,
        || time(&mut t.command(&["run", "-t", &realm, "--", "/bin/true"])),
        || time(Command::new("nsenter").args(["-t", &leader, "-a", "/bin/true"])),
        || Ok(()),
    )?;
    // An app started the desktop's way: `launch` adds the realm user's session environment.
    let (launch, run) = paired(
        runs * 4,
        || time(&mut t.command(&["launch", &realm, "--", "/bin/true"])),
        || time(&mut t.command(&["run", &realm, "--", "/bin/true"])),
        || Ok(()),
    )?;
    Ok(vec![
        Row::new(
            "realms launch R -- /bin/true".into(),
            launch,
            "realms run R -- /bin/true",
            run,
            Some(1.5),
        ),
        Row::new(
            "realms run R -- /bin/true".into(),
            ours,
            "nsenter -t LEADER -a /bin/true",
            bare,
            Some(1.5),
        ),
        Row::new(
            "realms run -t R -- /bin/true (a pty)".into(),
            pty,
            "nsenter -t LEADER -a /bin/true",
            bare_pty,
            Some(1.5),
        ),
    ])
}

fn time(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    sh(cmd)?;
    Ok(start.elapsed())
}

/// The realm's init: the child of its nspawn process (from the pid file).
fn leader_of(t: &TestRoot, realm: &str) -> anyhow::Result<String> {
    let pid = std::fs::read_to_string(t.path().join(format!("run/realms/realm-{realm}.pid")))?;
    let children = realms_tests::container::children(pid.trim().parse()?);
    children
        .first()
        .map(|c| c.to_string())
        .context("the realm's nspawn has no child")
}
