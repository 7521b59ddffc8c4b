//! The verity suite: `realms verity format|verify` beside `veritysetup format|verify` on the same
//! 1 GiB random file with identical parameters; the two hash files must be identical.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};

use crate::table::{self, Row};

const SIZE: u64 = 1 << 30;
const SALT: &str = "5a17c0ffee5a17c0ffee5a17c0ffee5a17c0ffee5a17c0ffee5a17c0ffee5a17";
const UUID: &str = "12345678-1234-1234-1234-123456789abc";
/// The target: at least 1.5x veritysetup's throughput, so at most 1/1.5 of its time.
const TARGET: f64 = 1.0 / 1.5;
/// Format with FEC: at least 2x veritysetup (issue 12).
const FEC_TARGET: f64 = 1.0 / 2.0;

/// A directory under /var/tmp removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: removing {}: {e}", self.0.display());
        }
    }
}

/// The release `realms` binary next to this one (target/<profile>/).
fn realms_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the bench binary's own path")?;
    let bin = exe.with_file_name("realms");
    ensure!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build --release -p realms-cli -p realms-bench`",
        bin.display()
    );
    Ok(bin)
}

/// Runs a command to completion and returns its stdout; a failure carries its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `Root hash:` value of veritysetup-style output.
fn root_hash(output: &str) -> anyhow::Result<String> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("no 'Root hash:' line in {output:?}"))
}

fn random_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut src = File::open("/dev/urandom").context("opening /dev/urandom")?;
    let mut dst = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; 8 << 20];
    let mut left = size;
    while left > 0 {
        let n = buf.len().min(left as usize);
        src.read_exact(&mut buf[..n])
            .context("reading /dev/urandom")?;
        dst.write_all(&buf[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

fn same_contents(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The options both tools get.
fn params() -> Vec<String> {
    [
        "--hash=sha256",
        "--data-block-size=4096",
        "--hash-block-size=4096",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--salt={SALT}"), format!("--uuid={UUID}")])
    .collect()
}

pub fn run_suite(runs: usize) -> anyhow::Result<()> {
    let realms = realms_bin()?;
    let veritysetup = realms_tests::require::which("veritysetup")
        .context("this suite needs `veritysetup`: apt-get install cryptsetup-bin")?;
    let dir = PathBuf::from(format!(
        "/var/tmp/realms-bench-verity-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let scratch = Scratch(dir);
    let data = scratch.0.join("data.img");
    let ours_hash = scratch.0.join("ours.hash");
    let peer_hash = scratch.0.join("veritysetup.hash");
    eprintln!("verity: writing 1 GiB of random data to {}", data.display());
    random_file(&data, SIZE)?;

    let format_ours = || {
        let _ = std::fs::remove_file(&ours_hash);
        run(Command::new(&realms)
            .args(["verity", "format"])
            .arg(&data)
            .arg(&ours_hash)
            .args(params()))
    };
    let format_peer = || {
        let _ = std::fs::remove_file(&peer_hash);
        run(Command::new(&veritysetup)
            .arg("format")
            .arg(&data)
            .arg(&peer_hash)
            .args(params()))
    };
    let ours_root = root_hash(&format_ours()?)?;
    let peer_root = root_hash(&format_peer()?)?;
    ensure!(
        ours_root == peer_root,
        "root hashes differ: realms {ours_root}, veritysetup {peer_root}"
    );
    ensure!(
        same_contents(&ours_hash, &peer_hash)?,
        "the hash files differ: {} vs {}",
        ours_hash.display(),
        peer_hash.display()
    );
    eprintln!("verity: identical hash files and root hash {ours_root}");

    let ours = table::median(runs, || format_ours().map(drop))?;
    let peer = table::median(runs, || format_peer().map(drop))?;
    let mut rows = vec![Row {
        what: "format 1 GiB (sha256, 4096/4096)".into(),
        ours,
        peer_name: "veritysetup format".into(),
        peer,
        target: Some(TARGET),
    }];
    let ours = table::median(runs, || {
        run(Command::new(&realms)
            .args(["-q", "verity", "verify"])
            .arg(&data)
            .arg(&ours_hash)
            .arg(&ours_root))
        .map(drop)
    })?;
    let peer = table::median(runs, || {
        run(Command::new(&veritysetup)
            .arg("verify")
            .arg(&data)
            .arg(&peer_hash)
            .arg(&peer_root))
        .map(drop)
    })?;
    rows.push(Row {
        what: "verify 1 GiB (sha256, 4096/4096)".into(),
        ours,
        peer_name: "veritysetup verify".into(),
        peer,
        target: Some(TARGET),
    });
    for roots in [2u32, 24] {
        rows.push(fec_row(&realms, &veritysetup, &scratch.0, &data, roots)?);
    }
    table::print(
        "verity: realms vs veritysetup, same file, same parameters",
        &rows,
    );
    for row in &rows {
        let gbps = SIZE as f64 / row.ours.as_secs_f64() / 1e9;
        let peer_gbps = SIZE as f64 / row.peer.as_secs_f64() / 1e9;
        println!(
            "{}: realms {gbps:.2} GB/s, veritysetup {peer_gbps:.2} GB/s",
            row.what
        );
    }
    Ok(())
}

/// Format with FEC (`--fec-roots roots`) by both tools, once each (veritysetup takes minutes on
/// 1 GiB); the hash and FEC files must be identical.
fn fec_row(
    realms: &Path,
    veritysetup: &Path,
    dir: &Path,
    data: &Path,
    roots: u32,
) -> anyhow::Result<Row> {
    let files = |name: &str| {
        (
            dir.join(format!("{name}.hash")),
            dir.join(format!("{name}.fec")),
        )
    };
    let format = |tool: &Path, realms: bool, name: &str| -> anyhow::Result<std::time::Duration> {
        let (hash, fec) = files(name);
        let _ = std::fs::remove_file(&hash);
        let _ = std::fs::remove_file(&fec);
        let mut cmd = Command::new(tool);
        if realms {
            cmd.args(["verity", "format"]);
        } else {
            cmd.arg("format");
        }
        cmd.arg(data)
            .arg(&hash)
            .arg(format!("--fec-device={}", fec.display()))
            .arg(format!("--fec-roots={roots}"))
            .args(params());
        let start = std::time::Instant::now();
        run(&mut cmd)?;
        Ok(start.elapsed())
    };
    eprintln!("verity: format with FEC, {roots} roots (veritysetup takes minutes)");
    let ours = format(realms, true, "ours-fec")?;
    let peer = format(veritysetup, false, "peer-fec")?;
    let (our_hash, our_fec) = files("ours-fec");
    let (peer_hash, peer_fec) = files("peer-fec");
    ensure!(
        same_contents(&our_hash, &peer_hash)? && same_contents(&our_fec, &peer_fec)?,
        "the hash or FEC files differ with {roots} roots"
    );
    for path in [our_hash, our_fec, peer_hash, peer_fec] {
        let _ = std::fs::remove_file(path);
    }
    Ok(Row {
        what: format!("format + FEC 1 GiB ({roots} roots, one run)"),
        ours,
        peer_name: "veritysetup format --fec-device".into(),
        peer,
        target: Some(FEC_TARGET),
    })
}
