//! Kill tests for `realms portable`: a `realms` built with `--features failpoints` (into
//! `target/failpoints/`), the failpoints a command passes (`REALMS_FAILPOINT_TRACE`), running it
//! killed with SIGKILL at the n-th pass of one (`FAILPOINTS=NAME=n*off->return`), and a snapshot
//! of the attach directories to compare states by.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The directories whose contents make up the attachment state (in-root).
pub const ATTACH_DIRS: [&str; 4] = [
    "etc/systemd/system.attached",
    "run/systemd/system.attached",
    "etc/portables",
    "run/portables",
];

/// Where the journal lives (in-root), listed apart from the state.
pub const JOURNAL_DIRS: [&str; 2] = ["etc/systemd", "run/systemd"];

/// The `realms` binary with failpoints compiled in, built once per test run.
pub fn realms_failpoints_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = crate::target_dir().join("failpoints");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ is in the workspace")
            .join("Cargo.toml");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-q",
                "-p",
                "realms-cli",
                "--features",
                "failpoints",
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo build --features failpoints");
        assert!(status.success(), "building realms with failpoints failed");
        target.join("debug/realms")
    })
    .clone()
}

/// `realms --root ROOT portable ARGS` with extra environment.
fn portable(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(realms_failpoints_bin())
        .arg("--root")
        .arg(root)
        .arg("portable")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run realms")
}

/// Runs the command to the end, recording the failpoints it passes, in order (with repeats).
pub fn trace(root: &Path, args: &[&str]) -> (Output, Vec<String>) {
    let file = root.join(".failpoint-trace");
    let _ = fs::remove_file(&file);
    let out = portable(
        root,
        args,
        &[("REALMS_FAILPOINT_TRACE", file.to_str().unwrap())],
    );
    let names = fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let _ = fs::remove_file(&file);
    (out, names)
}

/// Runs the command and kills it with SIGKILL at the pass `nth` (from 0) of failpoint `name`;
/// asserts that it was killed.
pub fn kill_at(root: &Path, args: &[&str], name: &str, nth: usize) {
    let spec = format!("{name}={nth}*off->return");
    let out = portable(root, args, &[("FAILPOINTS", &spec)]);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "`{}` was not killed at {spec}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the command without failpoints triggered.
pub fn run_ok(root: &Path, args: &[&str]) -> Output {
    let out = portable(root, args, &[]);
    assert!(
        out.status.success(),
        "`realms portable {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every failpoint pass of a trace as `(name, nth pass of that name)`.
pub fn passes(trace: &[String]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for name in trace {
        let nth = out.iter().filter(|(n, _)| n == name).count();
        out.push((name.clone(), nth));
    }
    out
}

/// The attachment state under `root`: one line per object of the attach directories (type,
/// mode, path, symlink target, SHA-256 of a file), sorted.
pub fn snapshot(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for dir in ATTACH_DIRS {
        walk(root, &root.join(dir), &mut lines);
    }
    lines.sort();
    lines
}

/// The journal files (and their temporary files) under `root`.
pub fn journal_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in JOURNAL_DIRS {
        if let Ok(entries) = fs::read_dir(root.join(dir)) {
            for e in entries {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if name.contains(".realms-portable.journal") {
                    out.push(format!("{dir}/{name}"));
                }
            }
        }
    }
    out.sort();
    out
}

fn walk(root: &Path, path: &Path, out: &mut Vec<String>) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    let rel = path.strip_prefix(root).unwrap().display().to_string();
    let mode = meta.permissions().mode() & 0o7777;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(path).unwrap();
        out.push(format!("l {mode:o} {rel} -> {}", target.display()));
    } else if ft.is_dir() {
        out.push(format!("d {mode:o} {rel}"));
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            walk(root, &e, out);
        }
    } else {
        let hash = hex::encode(Sha256::digest(fs::read(path).unwrap()));
        out.push(format!("f {mode:o} {rel} {} {hash}", meta.size()));
    }
}
