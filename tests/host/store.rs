//! The store against hostile input and unprivileged users (issue 10): capabilities found by
//! asking the kernel, images whose privileges must not leak out of the store, sealed images that
//! cannot be unsealed or rolled back.

use std::fs;
use std::process::Command;

use realms_tests::realms::{TestRoot, name};
use realms_tests::run::output;

fn key(t: &TestRoot) -> String {
    t.ok(&["appimg", "key", "generate", "builder"]);
    t.path()
        .join("etc/realms/private/builder.key")
        .to_string_lossy()
        .into_owned()
}

fn build_sealed(t: &TestRoot, key: &str, image: &str, version: &str) {
    t.ok(&[
        "appimg",
        "build",
        image,
        "--from",
        "base",
        "--format",
        "erofs",
        "--seal",
        "--key",
        key,
        "--version",
        version,
    ]);
}

/// `realms ARGS...` in a mount namespace of its own where `/dev/mapper/control` is a stale node
/// (device-mapper's numbers, as libdevmapper leaves it on a kernel without device-mapper).
fn with_stale_dm_node(t: &TestRoot, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(
            "mount -t tmpfs -o mode=0755 realms-test-stale /dev/mapper\n\
             mknod /dev/mapper/control c 10 236\n\
             exec \"$@\"",
        )
        .arg("sh")
        .arg(realms_tests::realms_bin())
        .arg("--root")
        .arg(t.path())
        .args(args);
    output(&mut cmd)
}

#[test]
fn stale_dev_mapper_control_node_makes_sealed_realms_fail_to_start() {
    let has_dm = std::fs::read_to_string("/proc/misc")
        .unwrap()
        .lines()
        .any(|l| l.ends_with(" device-mapper"));
    assert!(
        !has_dm,
        "this test needs a kernel without device-mapper (the host tier's)"
    );
    let t = TestRoot::btrfs();
    let key = key(&t);
    build_sealed(&t, &key, "sealed", "1");
    let r = name("dm");
    t.ok(&["new", &r, "--appimg", "sealed"]);
    t.ok(&["config", &r, "use-network", "false"]);
    // The mount point for the namespace's tmpfs, only while it is used (an empty directory is
    // not a device-mapper, and the stale node itself never exists outside the namespace).
    let made_dir = fs::create_dir("/dev/mapper").is_ok();
    let out = with_stale_dm_node(&t, &["start", &r]);
    if made_dir {
        let _ = fs::remove_dir("/dev/mapper");
    }
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let stopped = t.realms(&["stop", &r]);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("no device-mapper") && !said.contains("/dev/mapper/control"),
        "{said}"
    );
    assert!(stopped.status.success());
}

/// Runs `argv` as `nobody` (setpriv, no supplementary groups) from a shell that is already
/// unprivileged (setpriv's own exec still passes root's permission checks); returns whether it
/// succeeded and what it said on stderr.
fn as_nobody(argv: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = output(
        Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
                "sh",
                "-c",
                "\"$@\"",
                "sh",
            ])
            .args(argv),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A setuid-root program of the Debian base (su or mount), as a path inside a tree.
fn setuid_program(tree: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    [
        "usr/bin/su",
        "usr/bin/mount",
        "usr/bin/passwd",
        "usr/bin/newgrp",
    ]
    .iter()
    .map(|p| tree.join(p))
    .find(|p| fs::metadata(p).is_ok_and(|m| m.mode() & 0o4000 != 0 && m.uid() == 0))
    .expect("the Debian base has a setuid-root program")
}

#[test]
fn unprivileged_user_runs_an_images_setuid_binary_and_opens_its_device_nodes() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = TestRoot::btrfs();
    // An OS tree with a world-writable root and a 1,3 device node of mode 0666.
    let src = t.path().join("src");
    fs::create_dir_all(src.join("usr/lib")).unwrap();
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("usr/lib/os-release"), "ID=hostile\n").unwrap();
    let node = src.join("etc/null-node");
    assert!(
        Command::new("mknod")
            .args(["-m", "0666"])
            .arg(&node)
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success()
    );
    fs::set_permissions(&src, fs::Permissions::from_mode(0o777)).unwrap();
    t.ok(&["appimg", "import", "hostile", &src.to_string_lossy()]);
    let r = name("nb");
    t.ok(&["new", &r]);

    let images = t.path().join("storage/appimg");
    let realms = t.path().join("storage/realms");
    for dir in [&images, &realms] {
        assert_eq!(
            fs::metadata(dir).unwrap().mode() & 0o7777,
            0o700,
            "{}",
            dir.display()
        );
    }
    let hostile = images.join("hostile.appimg");
    assert_eq!(fs::metadata(&hostile).unwrap().mode() & 0o7777, 0o755);
    // An OS tree needs no device node (a realm gets its own /dev): the import leaves it out.
    assert!(!hostile.join("etc/null-node").exists());
    // Planted in a realm's root by other means, it is still out of reach.
    let planted = realms.join(format!("realm-{r}/rootfs/etc/null-node"));
    assert!(
        Command::new("mknod")
            .args(["-m", "0666"])
            .arg(&planted)
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success()
    );

    let suid_in_image = setuid_program(&images.join("base.appimg"));
    let rootfs = realms.join(format!("realm-{r}/rootfs"));
    let suid_in_realm = rootfs.join(
        suid_in_image
            .strip_prefix(images.join("base.appimg"))
            .unwrap(),
    );
    let via_link = t
        .path()
        .join("realms")
        .join(format!("realm-{r}/rootfs"))
        .join(
            suid_in_image
                .strip_prefix(images.join("base.appimg"))
                .unwrap(),
        );
    for program in [&suid_in_image, &suid_in_realm, &via_link] {
        let (ok, said) = as_nobody(&[program.as_os_str(), "--help".as_ref()]);
        assert!(
            !ok && said.contains("Permission denied"),
            "{}: {said}",
            program.display()
        );
    }
    let (ok, said) = as_nobody(&[
        "sh".as_ref(),
        "-c".as_ref(),
        "exec 3<>\"$1\"".as_ref(),
        "sh".as_ref(),
        planted.as_os_str(),
    ]);
    assert!(!ok && said.contains("Permission denied"), "{said}");
    // The same user can run a setuid program outside the store: the refusals above are the
    // store's, not the test's.
    let (ok, said) = as_nobody(&["/bin/true".as_ref()]);
    assert!(ok, "{said}");
}

#[test]
fn sealed_image_strip_the_seal_and_copy_an_older_signed_version_are_refused() {
    let t = TestRoot::btrfs();
    let key = key(&t);
    let images = t.path().join("storage/appimg");
    let dir = images.join("sealed.appimg");
    build_sealed(&t, &key, "sealed", "1");
    let v1 = t.path().join("v1.appimg");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(&v1)
            .status()
            .unwrap()
            .success()
    );
    build_sealed(&t, &key, "sealed", "2");
    let v2 = t.path().join("v2.appimg");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(&v2)
            .status()
            .unwrap()
            .success()
    );

    // A junk key in keys.d is skipped with a warning naming it.
    let junk = t.path().join("etc/realms/keys.d/0-junk.pub");
    fs::write(&junk, "junk\n").unwrap();
    let out = t.realms(&["appimg", "verify", "sealed"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("0-junk.pub"), "{said}");
    fs::remove_file(&junk).unwrap();

    // The older signed version copied over the installed one.
    fs::remove_dir_all(&dir).unwrap();
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&v1)
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );
    let err = t.fails(&["appimg", "verify", "sealed"]);
    assert!(err.contains("older than version 2"), "{err}");
    let err = t.fails(&["new", &name("old"), "--appimg", "sealed"]);
    assert!(err.contains("older than version 2"), "{err}");

    // Version 2 with its seal stripped.
    fs::remove_dir_all(&dir).unwrap();
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&v2)
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );
    for f in ["image.sig", "image.verity", "image.roothash"] {
        fs::remove_file(dir.join(f)).unwrap();
    }
    let err = t.fails(&["new", &name("strip"), "--appimg", "sealed"]);
    assert!(
        err.contains("was sealed") && err.contains("appimg unseal sealed"),
        "{err}"
    );
    let err = t.fails(&[
        "appimg",
        "build",
        "sealed",
        "--from",
        "base",
        "--format",
        "erofs",
        "--allow-downgrade",
    ]);
    assert!(err.contains("was sealed"), "{err}");
    // Only an explicit unseal lets an unsealed image have the name.
    t.ok(&["appimg", "unseal", "sealed"]);
    t.ok(&["new", &name("strip"), "--appimg", "sealed"]);
}

/// `realms ARGS...` under a time limit: a hang is a failure, not a stuck test run.
fn realms_timed(t: &TestRoot, secs: u32, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut cmd = Command::new("timeout");
    cmd.arg(format!("{secs}s"))
        .arg(realms_tests::realms_bin())
        .arg("--root")
        .arg(t.path())
        .args(args);
    output(&mut cmd)
}

#[test]
fn hostile_tarball_corpus_through_appimg_import() {
    use realms_image::corpus::{Expect, cases};
    use std::os::unix::fs::MetadataExt;
    let t = TestRoot::empty();
    let dir = t.path().join("corpus");
    fs::create_dir_all(&dir).unwrap();
    for (i, case) in cases().into_iter().enumerate() {
        let tar = dir.join(format!("{}.tar", case.name));
        fs::write(&tar, &case.tar).unwrap();
        let image = format!("c{i}");
        let out = realms_timed(
            &t,
            60,
            &[
                "appimg".as_ref(),
                "import".as_ref(),
                image.as_ref(),
                tar.as_os_str(),
            ],
        );
        assert_ne!(out.status.code(), Some(124), "{}: hung", case.name);
        let said = String::from_utf8_lossy(&out.stderr);
        let path = t.path().join(format!("storage/appimg/{image}.appimg"));
        match case.expect {
            Expect::Refused(needle) => {
                assert!(!out.status.success(), "{}: imported", case.name);
                assert!(said.contains(needle), "{}: {said}", case.name);
                assert!(!path.exists(), "{}: left an image", case.name);
            }
            Expect::Unpacked => {
                assert!(out.status.success(), "{}: {said}", case.name);
                assert_eq!(
                    fs::metadata(&path).unwrap().mode() & 0o7777,
                    0o755,
                    "{}",
                    case.name
                );
            }
        }
        if case.name == "device-nodes-left-out" {
            assert!(said.contains("left out 'dev/mem'"), "{said}");
        }
    }
    for escaped in ["evil", "etc/evil", "storage/evil", "storage/appimg/evil"] {
        assert!(!t.path().join(escaped).exists(), "{escaped}");
        assert!(
            !t.path().parent().unwrap().join(escaped).exists(),
            "{escaped}"
        );
    }
    let list = realms_timed(&t, 60, &["appimg".as_ref(), "list".as_ref()]);
    assert!(list.status.success());
}

#[test]
fn os_release_fifo_dev_zero_and_sparse_through_appimg_import_and_list() {
    let t = TestRoot::empty();
    let make: [(&str, &[&str]); 3] = [
        ("fifo", &["mknod", "OS", "p"]),
        ("zero", &["mknod", "OS", "c", "1", "5"]),
        ("sparse", &["truncate", "-s", "3G", "OS"]),
    ];
    for (case, argv) in make {
        let src = t.path().join(format!("src-{case}"));
        fs::create_dir_all(src.join("usr")).unwrap();
        fs::create_dir_all(src.join("etc")).unwrap();
        let os = src.join("etc/os-release");
        let argv: Vec<std::ffi::OsString> = argv
            .iter()
            .map(|a| {
                if *a == "OS" {
                    os.clone().into_os_string()
                } else {
                    a.into()
                }
            })
            .collect();
        assert!(
            Command::new(&argv[0])
                .args(&argv[1..])
                .status()
                .unwrap()
                .success()
        );
        let image = format!("os{case}");
        let out = realms_timed(
            &t,
            60,
            &[
                "appimg".as_ref(),
                "import".as_ref(),
                image.as_ref(),
                src.as_os_str(),
            ],
        );
        assert_ne!(out.status.code(), Some(124), "{case}: hung");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case}: imported");
        assert!(
            said.contains("etc/os-release") && said.len() < 2000,
            "{case}: {said}"
        );
        assert!(
            !t.path()
                .join(format!("storage/appimg/{image}.appimg"))
                .exists()
        );

        // Such a tree already in the store lists, without a name.
        let planted = t
            .path()
            .join(format!("storage/appimg/planted{case}.appimg"));
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(&src)
                .arg(&planted)
                .status()
                .unwrap()
                .success()
        );
        let list = realms_timed(&t, 60, &["appimg".as_ref(), "list".as_ref()]);
        assert_ne!(list.status.code(), Some(124), "{case}: list hung");
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        assert!(String::from_utf8_lossy(&list.stdout).contains(&format!("planted{case}")));
    }
}

/// `find TREE -printf` lines describing every entry but device nodes (which an import leaves
/// out): path, type, mode, owner, size, link target.
fn describe_tree(tree: &std::path::Path) -> Vec<String> {
    let out = output(Command::new("find").arg(tree).args([
        "-mindepth",
        "1",
        "-not",
        "-type",
        "c",
        "-not",
        "-type",
        "b",
        "-printf",
        "%P %y %m %U:%G %s %l\\n",
    ]));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            // A directory's size is the filesystem's business.
            if l.split(' ').nth(1) == Some("d") {
                l.rsplitn(3, ' ').nth(2).unwrap_or(l).to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn debian_tarball_imports_with_the_safe_unpacker_as_gnu_tar_did() {
    let t = TestRoot::empty();
    let base = realms_tests::fixtures::debian_base();
    let tar = t.path().join("debian.tar.zst");
    realms_tests::run::run(
        Command::new("tar")
            .args(["-c", "--zstd", "--xattrs", "--numeric-owner", "-f"])
            .arg(&tar)
            .arg("-C")
            .arg(base)
            .arg("."),
    );
    let out = realms_timed(
        &t,
        300,
        &[
            "appimg".as_ref(),
            "import".as_ref(),
            "deb".as_ref(),
            tar.as_os_str(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported = t.path().join("storage/appimg/deb.appimg");
    let (want, got) = (describe_tree(base), describe_tree(&imported));
    let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).take(5).collect();
    let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert!(setuid_program(&imported).exists());
    let r = name("deb");
    t.ok(&["init"]);
    t.ok(&["new", &r, "--appimg", "deb"]);
    t.ok(&["config", &r, "use-network", "false"]);
    let said = t.ok(&["run", &r, "--", "cat", "/etc/debian_version"]);
    t.ok(&["stop", &r]);
    assert!(said.starts_with("12"), "{said}");
}
