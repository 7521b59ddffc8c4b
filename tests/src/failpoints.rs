//! The failpoint kill harness: a `realms` built with the `failpoints` feature, a checksum of
//! what a store's state is made of, and [`kill_at_every_point`], which runs a mutating command
//! once to learn the failpoints it passes, then kills it with SIGKILL at each one in turn on a
//! fresh store and checks that the store is exactly the old or the new state afterwards, and
//! that the next command succeeds.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::fixtures::{fixtures_dir, with_fixture_lock};
use crate::run::{output, run, tail};
use crate::scratch::{Scratch, unique, unmount_below};

/// The `realms` binary with failpoints compiled in, built once per test run into its own
/// target directory (`target/failpoints`), so it never replaces the ordinary one.
pub fn failpoints_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = crate::target_dir().join("failpoints");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ is in the workspace");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        with_fixture_lock(|| {
            run(Command::new(cargo)
                .current_dir(workspace)
                .env("CARGO_TARGET_DIR", &target)
                .args([
                    "build",
                    "-q",
                    "-p",
                    "realms-cli",
                    "--features",
                    "failpoints",
                ]));
        });
        target.join("debug/realms")
    })
}

/// A store of one kill run: its own root on the btrfs pool (realms are snapshots), or on the
/// machine's own disk (realms are overlays with `lower` links); removed on drop.
#[derive(Debug)]
pub struct KillRoot {
    _scratch: Option<Scratch>,
    path: PathBuf,
}

impl KillRoot {
    /// An empty root on the btrfs pool, or (`plain`) on a filesystem that is not btrfs.
    pub fn new(plain: bool) -> KillRoot {
        if plain {
            let path = fixtures_dir().join("plain").join(unique("kill"));
            fs::create_dir_all(&path).unwrap();
            return KillRoot {
                _scratch: None,
                path,
            };
        }
        let scratch = Scratch::empty("kill");
        KillRoot {
            path: scratch.path().to_path_buf(),
            _scratch: Some(scratch),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The failpoint `realms --root ROOT ARGS...` without failpoints armed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(failpoints_bin());
        cmd.arg("--root")
            .arg(self.path())
            .args(args)
            .env_remove("FAILPOINTS")
            .env_remove("REALMS_FAILPOINT_TRACE");
        cmd
    }

    /// `realms ARGS...`, which must succeed; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = output(&mut self.command(args));
        assert!(
            out.status.success(),
            "`realms {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            tail(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for KillRoot {
    fn drop(&mut self) {
        if self._scratch.is_none() {
            unmount_below(&self.path);
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// One mutating command to kill: how to make the store it runs on, the command, and a
/// command that takes the store lock without changing anything (it recovers what a kill left).
#[derive(Clone, Copy)]
pub struct Case<'a> {
    /// Shown in messages.
    pub name: &'a str,
    /// On a filesystem that is not btrfs (realms are overlays on image versions).
    pub plain: bool,
    /// Makes the store the command runs on (the old state).
    pub setup: &'a dyn Fn(&KillRoot),
    /// The command under test.
    pub args: &'a [&'a str],
    /// A command that takes the store lock and changes nothing (`default NAME` of the default).
    pub neutral: &'a [&'a str],
}

impl std::fmt::Debug for Case<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// What a kill run found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Distinct failpoints the command passed.
    pub points: usize,
    /// Kills (one per pass of a failpoint).
    pub kills: usize,
    /// Kills after which the store was the old state (after recovery).
    pub old: usize,
    /// Kills after which the store was the new state.
    pub new: usize,
}

/// Runs `case` once with a trace to learn its failpoints, then kills it at each pass of each
/// failpoint in turn on a fresh store. After each kill the neutral command must succeed and
/// leave exactly the old or the new state; from the old state, the command run again must
/// succeed and make the new state. Returns the tally; panics naming the first failpoint that
/// left anything else.
pub fn kill_at_every_point(case: &Case<'_>) -> Tally {
    let (old, new, trace) = {
        let root = KillRoot::new(case.plain);
        (case.setup)(&root);
        root.ok(case.neutral);
        let old = state(root.path());
        let trace_file = root.path().join("failpoints.trace");
        let out = output(
            root.command(case.args)
                .env("REALMS_FAILPOINT_TRACE", &trace_file),
        );
        assert!(
            out.status.success(),
            "[{}] `realms {}` failed without a kill:\n{}",
            case.name,
            case.args.join(" "),
            tail(&out.stderr)
        );
        let trace = fs::read_to_string(&trace_file).unwrap_or_default();
        fs::remove_file(&trace_file).unwrap();
        root.ok(case.neutral);
        (old, state(root.path()), trace)
    };
    // What `realms doctor` finds in the old and the new state (an image no realm uses may be
    // part of one); after a kill and the next command it must find exactly that, no more.
    let (old_findings, new_findings) = {
        let root = KillRoot::new(case.plain);
        (case.setup)(&root);
        root.ok(case.neutral);
        let before = doctor_findings(&root);
        root.ok(case.args);
        root.ok(case.neutral);
        (before, doctor_findings(&root))
    };
    assert_ne!(old, new, "[{}] the command changed nothing", case.name);
    let passes: Vec<&str> = trace.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        !passes.is_empty(),
        "[{}] `realms {}` passed no failpoint (is it built with --features failpoints?)",
        case.name,
        case.args.join(" ")
    );
    let mut tally = Tally {
        points: passes
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        ..Tally::default()
    };
    for i in 0..passes.len() {
        let spec = kill_spec(&passes, i);
        let root = KillRoot::new(case.plain);
        (case.setup)(&root);
        let out = output(root.command(case.args).env("FAILPOINTS", &spec));
        let at = format!(
            "[{}] `realms {}` killed at {spec} (pass {} of {})",
            case.name,
            case.args.join(" "),
            i + 1,
            passes.len()
        );
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{at}: it was not killed ({}):\n{}",
            out.status,
            tail(&out.stderr)
        );
        tally.kills += 1;
        let next = output(&mut root.command(case.neutral));
        assert!(
            next.status.success(),
            "{at}: the next command `realms {}` failed:\n{}",
            case.neutral.join(" "),
            tail(&next.stderr)
        );
        let now = state(root.path());
        let found = doctor_findings(&root);
        let expected = if now == new {
            &new_findings
        } else {
            &old_findings
        };
        assert!(
            &found == expected,
            "{at}: after the next command `realms doctor` finds {found:?}, in this state it finds {expected:?}"
        );
        if now == new {
            tally.new += 1;
        } else if now == old {
            tally.old += 1;
            // The command run again from the old state must succeed and make the new one.
            let again = output(&mut root.command(case.args));
            assert!(
                again.status.success(),
                "{at}: run again after the kill, it failed:\n{}",
                tail(&again.stderr)
            );
            root.ok(case.neutral);
            let after = state(root.path());
            assert!(
                after == new,
                "{at}: run again, it did not make the new state:\n{}",
                diff(&new, &after)
            );
        } else {
            panic!(
                "{at}: a partial state.\nagainst the old state:\n{}\nagainst the new state:\n{}",
                diff(&old, &now),
                diff(&new, &now)
            );
        }
        assert_no_orphans(root.path(), &at);
    }
    tally
}

/// What `realms --json doctor` finds in `root`: each finding's kind and path, the root's own
/// path replaced by `ROOT` so that stores made alike compare equal.
pub fn doctor_findings(root: &KillRoot) -> std::collections::BTreeSet<String> {
    let out = output(&mut root.command(&["--json", "doctor"]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`realms --json doctor` printed no JSON ({e}):\n{}",
            tail(&out.stderr)
        )
    });
    let prefix = root.path().display().to_string();
    report["findings"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|f| {
                    let path = f["path"]
                        .as_str()
                        .unwrap_or_default()
                        .replace(&prefix, "ROOT");
                    format!("{} {path}", f["kind"].as_str().unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A checksum of what a store's state is made of, entry by entry (so a mismatch can be shown):
/// every name in the realm store, the image store and the run directory (leftovers included);
/// configs and other files by content; symlinks by target; each image version by the content
/// of its whole tree; each realm's `lower` link by target and by the content it resolves to;
/// realm roots and homes by their file names and contents; the signing keys by name (a key is
/// random, so a run's key differs from another's; a leftover shows by its name).
pub fn state(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in ["etc/realms/private", "etc/realms/keys.d"] {
        for entry in read_dir_sorted(&root.join(dir)) {
            out.insert(rel(root, &entry), "key file".into());
        }
    }
    let realms = root.join("storage/realms");
    walk(root, &realms, &mut out, 0);
    let images = root.join("storage/appimg");
    for entry in read_dir_sorted(&images) {
        let rel = rel(root, &entry);
        out.insert(rel, tree_hash(&entry));
    }
    let current = root.join("run/realms/current.realm");
    if let Ok(target) = fs::read_link(&current) {
        out.insert(
            "run/realms/current.realm".into(),
            target.display().to_string(),
        );
    }
    out
}

/// Entries of the realm store: directories down to realm and snapshot level are listed entry by
/// entry; below that (a root, a home, an overlay) a tree hash.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>, depth: usize) {
    for entry in read_dir_sorted(dir) {
        let name = entry.file_name().unwrap_or_default().to_string_lossy();
        if name == ".lock" {
            continue;
        }
        let rel = rel(root, &entry);
        let Ok(meta) = fs::symlink_metadata(&entry) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&entry).unwrap_or_default();
            let mut v = format!("-> {}", target.display());
            if name == "lower" {
                // What the realm sits on: the content of the version the link resolves to.
                let host = root.join(target.strip_prefix("/").unwrap_or(&target));
                v.push_str(&format!(" ({})", tree_hash(&host)));
            }
            out.insert(rel, v);
        } else if meta.is_dir() {
            let deep = matches!(name.as_ref(), "rootfs" | "home" | "overlay" | "image");
            if deep || depth >= 3 {
                out.insert(rel, tree_hash(&entry));
            } else {
                out.insert(rel, "dir".into());
                walk(root, &entry, out, depth + 1);
            }
        } else {
            out.insert(rel, file_hash(&entry));
        }
    }
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// A file's content, without `created` lines (times differ from run to run).
fn file_hash(p: &Path) -> String {
    let bytes = fs::read(p).unwrap_or_default();
    let kept: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.starts_with(b"created"))
        .collect();
    hex::encode(&Sha256::digest(kept.join(&b'\n'))[..8])
}

/// The content of a tree: names, types, modes, link targets and file contents, and the
/// version in its record, in one hash. A block or sealed image directory is its version and
/// file names (mkfs and the verity salt make its bytes differ from run to run). A missing path
/// hashes as `missing`.
pub fn tree_hash(top: &Path) -> String {
    if fs::symlink_metadata(top).is_err() {
        return "missing".into();
    }
    let meta_file = top.join("image.meta");
    if meta_file.is_file() {
        let text = fs::read_to_string(&meta_file).unwrap_or_default();
        let version = text
            .lines()
            .find(|l| l.starts_with("version"))
            .unwrap_or("no version");
        let files: Vec<String> = read_dir_sorted(top)
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        return format!("block {version} [{}]", files.join(" "));
    }
    let mut h = Sha256::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        h.update(rel(top, &p).as_bytes());
        h.update(format!(" {:o}\0", meta.mode()).as_bytes());
        if meta.file_type().is_symlink() {
            h.update(
                fs::read_link(&p)
                    .unwrap_or_default()
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if meta.is_file() {
            h.update(file_hash(&p));
        } else if meta.is_dir() {
            let mut children = read_dir_sorted(&p);
            children.reverse();
            stack.extend(children);
        }
    }
    let mut xattr = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(top, "user.realms.image", &mut xattr).unwrap_or(0);
    xattr.truncate(n);
    let version = String::from_utf8_lossy(&xattr)
        .lines()
        .find(|l| l.starts_with("version"))
        .unwrap_or("no version")
        .to_string();
    format!("{version} {}", hex::encode(&h.finalize()[..8]))
}

/// The entries that differ between two states, for messages.
pub fn diff(want: &BTreeMap<String, String>, got: &BTreeMap<String, String>) -> String {
    let mut lines = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => lines.push(format!("  missing {k} ({v})")),
            Some(g) if g != v => lines.push(format!("  changed {k}: {v} -> {g}")),
            _ => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            lines.push(format!("  extra   {k} ({v})"));
        }
    }
    lines.join("\n")
}

/// No process may still run with its root or working directory inside the store.
#[track_caller]
pub fn assert_no_orphans(root: &Path, at: &str) {
    let left = processes_inside(root);
    assert!(left.is_empty(), "{at}: processes left running: {left:?}");
}

/// The processes (pid, command) whose root, working directory or command line is inside
/// `root`, other than ourselves.
pub fn processes_inside(root: &Path) -> Vec<(u32, String)> {
    let Ok(canon) = root.canonicalize() else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let inside = |link: &str| {
            fs::read_link(entry.path().join(link)).is_ok_and(|t| t.starts_with(&canon))
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        });
        if !zombie
            && (inside("root") || inside("cwd") || cmdline.contains(&*canon.to_string_lossy()))
        {
            found.push((pid, cmdline));
        }
    }
    found
}

/// A small OS tree for images (the busybox portable fixture's files, and a marker file that
/// updates change), written to `dir`.
pub fn small_tree(dir: &Path, marker: &str) {
    let busybox = fs::read("/bin/busybox").expect("read /bin/busybox (busybox-static)");
    crate::fixtures::write_portable_tree(dir, &busybox, "kill");
    fs::write(dir.join("etc/marker"), marker).unwrap();
    fs::write(
        dir.join("etc/os-release"),
        "ID=kill\nPRETTY_NAME=\"Kill test\"\n",
    )
    .unwrap();
}

/// A directory under `target/realms-fixtures` with [`small_tree`] in it, made once.
pub fn small_tree_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = fixtures_dir().join("kill-tree-v1");
        with_fixture_lock(|| {
            if !dir.exists() {
                let build = dir.with_file_name(".build-kill-tree");
                let _ = fs::remove_dir_all(&build);
                small_tree(&build, "1");
                fs::rename(&build, &dir).unwrap();
            }
        });
        dir
    })
}

/// The `FAILPOINTS` value that kills at pass `i` of `passes` (the failpoints a command passed,
/// in order, as `REALMS_FAILPOINT_TRACE` wrote them).
pub fn kill_spec(passes: &[impl AsRef<str>], i: usize) -> String {
    let point = passes[i].as_ref();
    match passes[..i].iter().filter(|p| p.as_ref() == point).count() {
        0 => format!("{point}=return"),
        n => format!("{point}={n}*off->return"),
    }
}

/// The exit status of a command killed by SIGKILL, for assertions.
pub fn was_killed(out: &Output) -> bool {
    out.status.signal() == Some(9)
}
