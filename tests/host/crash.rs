//! Crash safety: every mutating command killed with SIGKILL at each of its failpoints in turn
//! leaves the store exactly in the old or the new state (after the next command, which
//! finishes or discards what was interrupted), and the next command succeeds. Small images (a
//! busybox tree) keep the whole run within minutes.

use std::fs;
use std::path::Path;
use std::process::Command;

use realms_tests::failpoints::{Case, KillRoot, Tally, kill_at_every_point, small_tree_dir};
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
                name: "remove (overlay realm, plain store)",
                plain: true,
                setup: &pinned,
                args: &["remove", "r1"],
                neutral: NEUTRAL,
            },
        ],
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
                name: "appimg build --seal over two versions",
                plain: false,
                setup: &sealed_twice,
                args: &[
                    "appimg", "build", "sealed", "--from", "base", "--format", "squashfs",
                    "--seal", "--key", "builder",
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

#[test]
fn update_appimg_survives_a_kill_at_every_failpoint() {
    run_all(
        "update-appimg",
        &[
            Case {
                name: "update-appimg tree (pinned overlay realms)",
                plain: true,
                setup: &pinned,
                args: UPDATE,
                neutral: NEUTRAL,
            },
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
    let setup = |r: &KillRoot| {
        store(r);
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
}

/// A tarball of the small tree (and its .tar.gz), made once.
fn tarball() -> String {
    let dir = small_tree_dir();
    let tar = dir.with_file_name("kill-tree-v1.tar");
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
                "gzip -c < '{}' > '{}.gz'",
                tmp.display(),
                tar.display()
            )));
            fs::rename(&tmp, &tar).unwrap();
        }
    });
    assert!(Path::new(&format!("{}.gz", tar.display())).exists());
    tar.to_string_lossy().into_owned()
}
