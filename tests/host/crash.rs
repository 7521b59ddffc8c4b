//! Crash safety: every mutating command killed with SIGKILL at each of its failpoints in turn
//! leaves the store exactly in the old or the new state (after the next command, which
//! finishes or discards what was interrupted), and the next command succeeds. Small images (a
//! busybox tree) keep the whole run within minutes.

use std::fs;
use std::path::Path;
use std::process::Command;

use realms_tests::failpoints::{
    Case, KillRoot, Tally, diff, kill_at_every_point, kill_spec, small_tree_dir, state, was_killed,
};
use realms_tests::run::run;

/// Takes the store lock and changes nothing (the value is already set by [`store`]).
const NEUTRAL: &[&str] = &["config", "main", "use-gpu", "true"];

/// The common start: image `base` (a small tree), realm `main` (the default), and `r1`.
fn store(r: &KillRoot) {
    let tree = small_tree_dir().to_string_lossy().into_owned();
    r.ok(&["appimg", "import", "base", &tree]);
    r.ok(&["new", "main"]);
    r.ok(&["default", "main"]);
    r.ok(&["config", "main", "use-gpu", "true"]);
    r.ok(&["new", "r1"]);
}

/// [`store`] with a snapshot of `r1`.
fn with_snapshot(r: &KillRoot) {
    store(r);
    r.ok(&["snapshot", "r1", "s1"]);
    r.ok(&["config", "r1", "use-kvm", "true"]);
}

const UPDATE: &[&str] = &[
    "update-appimg",
    "base",
    "--",
    "/usr/bin/busybox",
    "sh",
    "-c",
    "echo updated >> /etc/marker",
];

/// On a plain store (realms are overlays): `base` updated once, `main` pinned to the previous
/// version, `r2` on the current one; so the next update moves both pins and keeps `.old-1`.
fn pinned(r: &KillRoot) {
    store(r);
    r.ok(UPDATE);
    r.ok(&["new", "r2"]);
}

fn key_path(r: &KillRoot) -> String {
    r.path()
        .join("etc/realms/private/builder.key")
        .to_string_lossy()
        .into_owned()
}

/// [`store`] with the signing key `builder`.
fn with_key(r: &KillRoot) {
    store(r);
    r.ok(&["appimg", "key", "generate", "builder"]);
}

/// [`with_key`] with a sealed image `sealed` built twice (so it has a `.prev`), and a realm on it.
fn sealed_twice(r: &KillRoot) {
    with_key(r);
    let key = key_path(r);
    for _ in 0..2 {
        r.ok(&[
            "appimg", "build", "sealed", "--from", "base", "--format", "squashfs", "--seal",
            "--key", &key,
        ]);
    }
    r.ok(&["new", "rs", "--appimg", "sealed"]);
}

/// [`store`] with a block image `blk` (erofs) and a realm on it.
fn block(r: &KillRoot) {
    store(r);
    r.ok(&[
        "appimg", "build", "blk", "--from", "base", "--format", "erofs",
    ]);
    r.ok(&["new", "rb", "--appimg", "blk"]);
}

fn report(what: &str, tallies: &[Tally]) {
    let points: usize = tallies.iter().map(|t| t.points).sum();
    let kills: usize = tallies.iter().map(|t| t.kills).sum();
    let old: usize = tallies.iter().map(|t| t.old).sum();
    let new: usize = tallies.iter().map(|t| t.new).sum();
    eprintln!(
        "kill test {what}: {points} failpoints, {kills} kills: {old} left the old state, {new} the new one, 0 partial"
    );
}

fn run_all(what: &str, cases: &[Case<'_>]) {
    let tallies: Vec<Tally> = cases
        .iter()
        .map(|c| {
            let t = kill_at_every_point(c);
            eprintln!("  {}: {t:?}", c.name);
            t
        })
        .collect();
    report(what, &tallies);
}

#[test]
fn realm_commands_survive_a_kill_at_every_failpoint() {
    run_all(
        "realm commands",
        &[
            Case {
                name: "new",
                plain: false,
                setup: &store,
                args: &["new", "r2"],
                neutral: NEUTRAL,
            },
            Case {
                name: "remove",
                plain: false,
                setup: &with_snapshot,
                args: &["remove", "r1"],
                neutral: NEUTRAL,
            },
            Case {
                name: "clone",
                plain: false,
                setup: &store,
                args: &["clone", "r1", "r3"],
                neutral: NEUTRAL,
            },
            Case {
                name: "snapshot",
                plain: false,
                setup: &store,
                args: &["snapshot", "r1", "s1"],
                neutral: NEUTRAL,
            },
            Case {
                name: "snapshot restore",
                plain: false,
                setup: &with_snapshot,
                args: &["snapshot", "restore", "r1", "s1"],
                neutral: NEUTRAL,
            },
            Case {
                name: "rename",
                plain: false,
                setup: &with_snapshot,
                args: &["rename", "r1", "r4"],
                neutral: NEUTRAL,
            },
            Case {
                name: "config",
                plain: false,
                setup: &store,
                args: &["config", "r1", "use-sound", "false"],
                neutral: NEUTRAL,
            },
            Case {
                name: "default",
                plain: false,
                setup: &store,
                args: &["default", "r1"],
                neutral: NEUTRAL,
            },
            Case {
                name: "config --add",
                plain: false,
                setup: &store,
                args: &["config", "r1", "extra-bindmounts", "--add", "/srv"],
                neutral: NEUTRAL,
            },
            Case {
                name: "snapshot remove",
                plain: false,
                setup: &with_snapshot,
                args: &["snapshot", "remove", "r1", "s1"],
                neutral: NEUTRAL,
            },
            Case {
                name: "rebase (overlay realm onto the current version)",
                plain: true,
                setup: &pinned,
                args: &["rebase", "r1"],
                neutral: NEUTRAL,
            },
            Case {
                name: "remove (overlay realm, plain store)",
                plain: true,
                setup: &pinned,
                args: &["remove", "r1"],
                neutral: NEUTRAL,
            },
        ],
    );
}

/// Regression: the private key was written in place, so a kill left a truncated key (refused
/// as existing by the next `generate`) or a private key whose public half was never trusted.
#[test]
fn appimg_key_generate_survives_a_kill_at_every_failpoint() {
    run_all(
        "appimg key generate",
        &[Case {
            name: "appimg key generate",
            plain: false,
            setup: &with_key,
            args: &["appimg", "key", "generate", "second"],
            neutral: NEUTRAL,
        }],
    );
}

/// Mode and owner of the store's own directories, and the dot entries of the realm store.
fn store_layout(r: &KillRoot) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<String> = ["storage/realms", "storage/appimg", "storage/realms/skel"]
        .iter()
        .chain(&["storage/realms/Shared", "storage/realms/config"])
        .map(|rel| match fs::symlink_metadata(r.path().join(rel)) {
            Ok(m) => format!("{rel} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()),
            Err(e) => format!("{rel} {e}"),
        })
        .collect();
    out.extend(
        fs::read_dir(r.path().join("storage/realms"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') && n != ".lock")
            .map(|n| format!("left: {n}")),
    );
    out
}

/// Regression (issue 10): `realms init` (which every mutating command runs first under the
/// lock; the first one on an empty root creates the stores) made `skel` and `Shared` and gave
/// them to the realms' user in two steps, so a kill in between left them root's for good (a
/// later init saw them and went on), and it made the store directories with the usual mode
/// before closing them to other users. Killed at each of its failpoints on an empty root,
/// `init` run again succeeds and leaves exactly what it leaves uninterrupted: the same store,
/// the same modes and owners, nothing half-made.
#[test]
fn init_on_an_empty_root_survives_a_kill_at_every_failpoint() {
    let args = ["init"];
    let (new, layout, passes) = {
        let r = KillRoot::new(false);
        let trace = r.path().join("failpoints.trace");
        let out = realms_tests::run::output(r.command(&args).env("REALMS_FAILPOINT_TRACE", &trace));
        assert!(
            out.status.success(),
            "{}",
            realms_tests::run::tail(&out.stderr)
        );
        let passes: Vec<String> = fs::read_to_string(&trace)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        fs::remove_file(&trace).unwrap();
        (state(r.path()), store_layout(&r), passes)
    };
    for point in ["realm-store-init-dir", "realm-store-init-staged"] {
        assert!(
            passes.iter().any(|p| p == point),
            "{point} not in {passes:?}"
        );
    }
    for i in 0..passes.len() {
        let spec = kill_spec(&passes, i);
        let at = format!("`realms init` killed at {spec}");
        let r = KillRoot::new(false);
        let out = realms_tests::run::output(r.command(&args).env("FAILPOINTS", &spec));
        assert!(was_killed(&out), "{at}: not killed ({})", out.status);
        r.ok(&args);
        let now = state(r.path());
        assert!(now == new, "{at}:\n{}", diff(&new, &now));
        assert_eq!(store_layout(&r), layout, "{at}");
    }
    eprintln!(
        "kill test init: {} failpoints, {} kills, 0 partial",
        passes
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        passes.len()
    );
}

#[test]
fn image_commands_survive_a_kill_at_every_failpoint() {
    let tar = tarball();
    let tar_gz = format!("{tar}.gz");
    run_all(
        "image commands",
        &[
            Case {
                name: "appimg import (directory)",
                plain: false,
                setup: &store,
                args: &[
                    "appimg",
                    "import",
                    "img2",
                    &small_tree_dir().to_string_lossy(),
                ],
                neutral: NEUTRAL,
            },
            Case {
                name: "appimg import (tarball)",
                plain: false,
                setup: &store,
                args: &["appimg", "import", "img3", &tar],
                neutral: NEUTRAL,
            },
            Case {
                name: "appimg import (tar.gz)",
                plain: false,
                setup: &store,
                args: &["appimg", "import", "img4", &tar_gz],
                neutral: NEUTRAL,
            },
            Case {
                name: "appimg build erofs",
                plain: false,
                setup: &store,
                args: &[
                    "appimg", "build", "b1", "--from", "base", "--format", "erofs",
                ],
                neutral: NEUTRAL,
            },
            Case {
                name: "appimg build squashfs",
                plain: false,
                setup: &store,
                args: &[
                    "appimg", "build", "b2", "--from", "base", "--format", "squashfs",
                ],
                neutral: NEUTRAL,
            },
            Case {
                name: "appimg build ext4",
                plain: false,
                setup: &store,
                args: &[
                    "appimg", "build", "b3", "--from", "base", "--format", "ext4",
                ],
                neutral: NEUTRAL,
            },
            Case {
                name: "appimg rollback (pinned overlay realms)",
                plain: true,
                setup: &pinned,
                args: &["appimg", "rollback", "base"],
                neutral: NEUTRAL,
            },
            Case {
                name: "appimg remove",
                plain: false,
                setup: &|r| {
                    store(r);
                    r.ok(&[
                        "appimg",
                        "import",
                        "img2",
                        &small_tree_dir().to_string_lossy(),
                    ]);
                    r.ok(&[
                        "appimg", "build", "img2", "--from", "base", "--format", "erofs",
                    ]);
                },
                args: &["appimg", "remove", "img2"],
                neutral: NEUTRAL,
            },
        ],
    );
}

/// Regression (issue 10): `update-appimg` of a tree image killed at any of 14 points between
/// the first fsync and the final rename left realms pinned to the previous version without
/// their lower layer (or silently on the current version), and a `.retired-IMG-...` behind.
/// The install is journaled now; the next command finishes it.
#[test]
fn update_appimg_killed_mid_install_keeps_pinned_realms_on_their_version() {
    run_all(
        "update-appimg, pinned realms",
        &[Case {
            name: "update-appimg tree (pinned overlay realms)",
            plain: true,
            setup: &pinned,
            args: UPDATE,
            neutral: NEUTRAL,
        }],
    );
}

/// Regression (issue 10): `appimg build --seal` killed at 11 points left `.retired-...`
/// directories.
#[test]
fn appimg_build_seal_killed_at_any_point_leaves_no_retired_version() {
    run_all(
        "appimg build --seal",
        &[Case {
            name: "appimg build --seal over two versions",
            plain: false,
            setup: &sealed_twice,
            args: &[
                "appimg", "build", "sealed", "--from", "base", "--format", "squashfs", "--seal",
                "--key", "builder",
            ],
            neutral: NEUTRAL,
        }],
    );
}

#[test]
fn update_appimg_survives_a_kill_at_every_failpoint() {
    run_all(
        "update-appimg",
        &[
            Case {
                name: "update-appimg tree (btrfs)",
                plain: false,
                setup: &store,
                args: UPDATE,
                neutral: NEUTRAL,
            },
            Case {
                name: "update-appimg block",
                plain: false,
                setup: &block,
                args: &[
                    "update-appimg",
                    "blk",
                    "--",
                    "/usr/bin/busybox",
                    "sh",
                    "-c",
                    "echo updated >> /etc/marker",
                ],
                neutral: NEUTRAL,
            },
            Case {
                name: "update-appimg sealed",
                plain: false,
                setup: &sealed_twice,
                args: &[
                    "update-appimg",
                    "sealed",
                    "--",
                    "/usr/bin/busybox",
                    "sh",
                    "-c",
                    "echo updated >> /etc/marker",
                ],
                neutral: NEUTRAL,
            },
        ],
    );
}

#[test]
fn zone_changes_survive_a_kill_at_every_failpoint() {
    let zone = realms_tests::realms::name("kz");
    // An explicit subnet: the one a zone gets by default depends on the store's path.
    let setup = |r: &KillRoot| {
        store(r);
        r.ok(&["zone", &zone, "subnet", "10.251.76.0/24"]);
        r.ok(&["zone", &zone, "nat", "on"]);
    };
    let off = ["zone", zone.as_str(), "nat", "off"];
    let subnet = ["zone", zone.as_str(), "subnet", "10.251.77.0/24"];
    run_all(
        "zone changes",
        &[
            Case {
                name: "zone nat",
                plain: false,
                setup: &setup,
                args: &off,
                neutral: NEUTRAL,
            },
            Case {
                name: "zone subnet",
                plain: false,
                setup: &setup,
                args: &subnet,
                neutral: NEUTRAL,
            },
        ],
    );
    // The zone's host-wide record (no bridge or table: no realm of it ever ran).
    let _ = fs::remove_file(format!("/run/realms/net/{zone}.toml"));
}

#[test]
fn appimg_import_of_xz_and_zstd_tarballs_survives_a_kill_at_every_failpoint() {
    let tar = tarball();
    let (xz, zst) = (format!("{tar}.xz"), format!("{tar}.zst"));
    run_all(
        "appimg import (xz, zstd)",
        &[
            Case {
                name: "appimg import (tar.xz)",
                plain: false,
                setup: &store,
                args: &["appimg", "import", "img5", &xz],
                neutral: NEUTRAL,
            },
            Case {
                name: "appimg import (tar.zst)",
                plain: false,
                setup: &store,
                args: &["appimg", "import", "img6", &zst],
                neutral: NEUTRAL,
            },
        ],
    );
}

#[test]
fn zone_remove_survives_a_kill_at_every_failpoint() {
    let zone = realms_tests::realms::name("kr");
    let setup = |r: &KillRoot| {
        store(r);
        r.ok(&["zone", &zone, "subnet", "10.251.78.0/24"]);
    };
    run_all(
        "zone remove",
        &[Case {
            name: "zone remove",
            plain: false,
            setup: &setup,
            args: &["zone", "remove", &zone],
            neutral: NEUTRAL,
        }],
    );
    let _ = fs::remove_file(format!("/run/realms/net/{zone}.toml"));
}

/// A tarball of the small tree (and its .tar.gz, .tar.xz and .tar.zst), made once.
fn tarball() -> String {
    let dir = small_tree_dir();
    let tar = dir.with_file_name("kill-tree-v2.tar");
    realms_tests::fixtures::with_fixture_lock(|| {
        if !tar.exists() {
            let tmp = tar.with_extension("tmp");
            run(Command::new("tar")
                .arg("-C")
                .arg(dir)
                .arg("-cf")
                .arg(&tmp)
                .arg("."));
            run(Command::new("sh").arg("-c").arg(format!(
                "gzip -c < '{0}' > '{1}.gz' && xz -c < '{0}' > '{1}.xz' && zstd -q -c < '{0}' > '{1}.zst'",
                tmp.display(),
                tar.display()
            )));
            fs::rename(&tmp, &tar).unwrap();
        }
    });
    for ext in ["gz", "xz", "zst"] {
        assert!(Path::new(&format!("{}.{ext}", tar.display())).exists());
    }
    tar.to_string_lossy().into_owned()
}

/// The store's image directory has nothing but images (no staging tree, nothing set aside).
fn assert_no_image_leftovers(r: &KillRoot) {
    let left: Vec<String> = fs::read_dir(r.path().join("storage/appimg"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "leftovers in the image store: {left:?}");
}

/// Waits up to `ms` milliseconds for `done`; false if it never came.
fn wait_for(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    false
}

/// The children of `pid` (from /proc/*/stat).
fn children_of(pid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let child = e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
            (ppid.parse::<u32>().ok()? == pid).then_some(child)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Regression (issue 10): a killed `appimg import` left `cp` writing into the staging tree,
/// and the next import failed ("Directory not empty"). Children now die with realms.
#[test]
fn appimg_import_killed_leaves_no_cp_writing_into_staging() {
    let src = realms_tests::fixtures::fixtures_dir().join("kill-big-tree-v1");
    realms_tests::fixtures::with_fixture_lock(|| {
        if !src.exists() {
            let build = src.with_file_name(".build-kill-big-tree");
            let _ = fs::remove_dir_all(&build);
            realms_tests::failpoints::small_tree(&build, "big");
            // Big enough that cp is still copying when we look (random: no holes to skip).
            run(Command::new("head")
                .args(["-c", "268435456", "/dev/urandom"])
                .stdout(fs::File::create(build.join("usr/big")).unwrap()));
            fs::rename(&build, &src).unwrap();
        }
    });
    let r = KillRoot::new(false);
    store(&r);
    let src = src.to_string_lossy().into_owned();
    let mut child = r
        .command(&["appimg", "import", "big", &src])
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut cp = None;
    assert!(
        wait_for(60_000, || {
            cp = children_of(pid).into_iter().find(|c| {
                fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n.trim() == "cp")
            });
            cp.is_some()
        }),
        "never saw cp running under `realms appimg import`"
    );
    let cp = cp.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed with realms, at once: cp alone would go on copying for about a second more.
    assert!(
        wait_for(300, || !alive(cp)),
        "cp (pid {cp}) still runs after realms was killed"
    );
    r.ok(NEUTRAL);
    assert_no_image_leftovers(&r);
    r.ok(&["appimg", "import", "big", &src]);
    assert_no_image_leftovers(&r);
}

/// Regression (issue 10): a killed `update-appimg` left its nspawn container running, and
/// the next command deleted the root under it. The container now goes with realms (and the
/// next command kills what still runs in a staging tree before deleting it).
#[test]
fn update_appimg_killed_leaves_no_container_running() {
    let r = KillRoot::new(false);
    store(&r);
    let before = realms_tests::failpoints::state(r.path());
    let mut child = r
        .command(&[
            "update-appimg",
            "base",
            "--",
            "/usr/bin/busybox",
            "sh",
            "-c",
            "/usr/bin/busybox touch /started; exec /usr/bin/busybox sleep 600",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let staging = r
        .path()
        .join(format!("storage/appimg/.staging-base-{}", child.id()));
    assert!(
        wait_for(60_000, || staging.join("started").exists()),
        "the update's container never started"
    );
    assert!(!realms_tests::failpoints::processes_inside(r.path()).is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_for(10_000, || realms_tests::failpoints::processes_inside(
            r.path()
        )
        .is_empty()),
        "still running after realms was killed: {:?}",
        realms_tests::failpoints::processes_inside(r.path())
    );
    r.ok(NEUTRAL);
    assert_no_image_leftovers(&r);
    assert_eq!(realms_tests::failpoints::state(r.path()), before);
}

/// Eight mutating commands at once on one store: each waits for the store lock; afterwards the
/// store is consistent, and the losers (a name taken by a winner, a realm not made yet) fail
/// with a message naming the realm.
#[test]
fn eight_parallel_mutating_commands_keep_the_store_consistent() {
    let r = KillRoot::new(false);
    store(&r);
    let commands: [&[&str]; 8] = [
        &["new", "dup"],
        &["new", "dup"],
        &["new", "dup"],
        &["new", "p1"],
        &["clone", "r1", "p2"],
        &["config", "main", "use-kvm", "true"],
        &["snapshot", "main", "sp"],
        &["default", "p1"],
    ];
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            r.command(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut dup_wins = 0;
    for (args, out) in commands.iter().zip(&outs) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked"),
            "`realms {}`: {err}",
            args.join(" ")
        );
        if out.status.success() {
            dup_wins += usize::from(args[1] == "dup");
            continue;
        }
        let realm = args.last().unwrap();
        // Before it: perhaps a note that it waited for the lock.
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains(&format!("'{realm}'")),
            "`realms {}` lost without a clear message: {err}",
            args.join(" ")
        );
        match args[0] {
            "new" => assert!(err.contains("exists"), "{err}"),
            "default" => assert!(err.contains("does not exist"), "{err}"),
            _ => panic!("`realms {}` failed: {err}", args.join(" ")),
        }
    }
    assert_eq!(dup_wins, 1, "exactly one `new dup` wins");
    // Consistent: every realm complete, nothing half-made or set aside, the changes all there.
    let list = r.ok(&["list"]);
    for realm in ["main", "r1", "dup", "p1", "p2"] {
        assert!(list.contains(realm), "{realm} missing from:\n{list}");
        let dir = r.path().join(format!("storage/realms/realm-{realm}"));
        assert!(
            dir.join("config").is_file() && dir.join("rootfs").is_dir(),
            "{realm}"
        );
    }
    let leftovers: Vec<String> = fs::read_dir(r.path().join("storage/realms"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != ".lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_no_image_leftovers(&r);
    assert!(r.ok(&["config", "main", "use-kvm"]).contains("true"));
    assert!(r.ok(&["snapshot", "list", "main"]).contains("sp"));
}
