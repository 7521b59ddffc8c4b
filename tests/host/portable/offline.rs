//! `realms --root DIR portable ...` without a service manager: the files written are the captured
//! portablectl 252 files byte for byte, attach is all-or-nothing, detach cleans up leftovers of an
//! interrupted attach, and every refusal says what portablectl says.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use realms_tests::fixtures::portable_image;
use realms_tests::run::run;
use realms_tests::scratch::Scratch;

use super::CAPTURES;

mod raw;

/// A `--root` directory with the foo-test image in /var/lib/portables and, optionally,
/// systemd's profiles in /usr/lib/systemd/portable/profile.
struct Root {
    dir: Scratch,
}

impl Root {
    fn new(label: &str, with_profiles: bool) -> Root {
        let dir = Scratch::empty(label);
        let r = dir.path();
        fs::create_dir_all(r.join("var/lib/portables")).unwrap();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/os-release"), "ID=debian\n").unwrap();
        run(Command::new("cp")
            .arg("-a")
            .arg(portable_image())
            .arg(r.join("var/lib/portables/foo-test")));
        if with_profiles {
            super::install_profiles(r);
        }
        Root { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn at(&self, inner: &str) -> PathBuf {
        self.path().join(inner.trim_start_matches('/'))
    }

    fn realms(&self, args: &str) -> Output {
        Command::new(realms_tests::realms_bin())
            .arg("--root")
            .arg(self.path())
            .arg("portable")
            .args(args.split_whitespace())
            .output()
            .expect("run realms")
    }

    #[track_caller]
    fn ok(&self, args: &str) -> String {
        let out = self.realms(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "realms portable {args} failed:\n{text}"
        );
        text
    }

    #[track_caller]
    fn fails(&self, args: &str) -> String {
        let out = self.realms(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "realms portable {args}:\n{text}"
        );
        text
    }
}

fn link(path: &Path) -> String {
    fs::read_link(path)
        .unwrap_or_else(|e| panic!("{} is not a symlink: {e}", path.display()))
        .display()
        .to_string()
}

/// The lines portablectl printed in a capture, without the trailing `rc=` line.
fn captured_lines(file: &str) -> Vec<String> {
    fs::read_to_string(Path::new(CAPTURES).join(file))
        .unwrap()
        .lines()
        .take_while(|l| !l.starts_with("rc="))
        .map(str::to_string)
        .collect()
}

fn our_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("systemd is not running"))
        .map(str::to_string)
        .collect()
}

#[test]
fn runtime_copy_strict_is_byte_identical_to_the_capture() {
    let root = Root::new("portable-cap1", true);
    let out = root.ok("attach --runtime --copy=copy --profile=strict foo-test");
    let expected: Vec<String> = captured_lines("portable-attach-strict.out")
        .into_iter()
        .skip(4) // the --profile=help listing
        .filter(|l| !l.starts_with("Queued "))
        .collect();
    assert_eq!(our_lines(&out), expected);
    let captured = Path::new(CAPTURES).join("attach-runtime-copy-strict");
    for file in [
        "foo-test.service",
        "foo-test.service.d/10-profile.conf",
        "foo-test.service.d/20-portable.conf",
        "foo-test-oneshot.service",
        "foo-test-oneshot.service.d/10-profile.conf",
        "foo-test-oneshot.service.d/20-portable.conf",
    ] {
        let ours = root.at("run/systemd/system.attached").join(file);
        assert_eq!(
            fs::read(&ours).unwrap(),
            fs::read(captured.join(file)).unwrap(),
            "{file}"
        );
        let mode = fs::symlink_metadata(&ours).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644, "{file}");
    }
    assert_eq!(
        link(&root.at("run/portables/foo-test")),
        "/var/lib/portables/foo-test"
    );
    let listing = fs::read_to_string(captured.join("listing.txt")).unwrap();
    assert!(listing.contains("-rw-r--r-- 1 root root 712  /run/systemd/system.attached/foo-test.service.d/10-profile.conf"));
    assert_eq!(
        fs::metadata(root.at("run/systemd/system.attached/foo-test.service.d/10-profile.conf"))
            .unwrap()
            .len(),
        712
    );
    let out = root.ok("detach --runtime foo-test");
    assert!(
        out.contains("Removed /run/systemd/system.attached.\n"),
        "{out}"
    );
    assert!(!root.at("run/systemd/system.attached").exists());
    assert!(fs::symlink_metadata(root.at("run/portables/foo-test")).is_err());
}

#[test]
fn default_attach_prints_and_writes_what_portablectl_did() {
    let root = Root::new("portable-cap2", true);
    let out = root.ok("attach foo-test");
    assert_eq!(
        our_lines(&out),
        captured_lines("portable-attach-default.out")
    );
    let dir = root.at("etc/systemd/system.attached");
    for unit in ["foo-test.service", "foo-test-oneshot.service"] {
        assert_eq!(
            link(&dir.join(format!("{unit}.d/10-profile.conf"))),
            "/usr/lib/systemd/portable/profile/default/service.conf"
        );
        assert_eq!(
            fs::read(dir.join(unit)).unwrap(),
            fs::read(
                Path::new(CAPTURES)
                    .join("image/usr/lib/systemd/system")
                    .join(unit)
            )
            .unwrap()
        );
        let conf = fs::read_to_string(dir.join(format!("{unit}.d/20-portable.conf"))).unwrap();
        assert_eq!(conf.len(), 243);
        assert!(conf.starts_with(
            "# Drop-in created for image '/var/lib/portables/foo-test', do not edit.\n"
        ));
    }
    assert_eq!(
        link(&root.at("etc/portables/foo-test")),
        "/var/lib/portables/foo-test"
    );
    assert_eq!(root.ok("is-attached foo-test").trim(), "attached");
    let refused = root.fails("attach foo-test");
    assert!(refused.contains("AttachImage failed: Unit file 'foo-test-oneshot.service' exists on the host already, refusing."), "{refused}");
    let out = root.ok("detach foo-test");
    let expected: Vec<String> = captured_lines("portable-detach.out")
        .into_iter()
        .filter(|l| l.starts_with("Removed "))
        .collect();
    assert_eq!(our_lines(&out), expected);
    let not = root.fails("detach foo-test");
    assert!(not.contains("DetachImage failed: No unit files associated with 'foo-test' found attached to the system. Image not attached?"), "{not}");
    let state = root.realms("is-attached foo-test");
    assert_eq!(
        (
            state.status.code(),
            String::from_utf8_lossy(&state.stdout).trim()
        ),
        (Some(0), "detached")
    );
}

#[test]
fn attach_is_all_or_nothing() {
    let root = Root::new("portable-rollback", true);
    // The second unit's drop-in directory cannot be created: a file is in the way.
    let dir = root.at("etc/systemd/system.attached");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("foo-test.service.d"), "in the way").unwrap();
    let out = root.fails("attach foo-test");
    assert!(
        out.contains("AttachImage failed: Failed to attach unit 'foo-test.service'"),
        "{out}"
    );
    let mut left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["foo-test.service.d"], "attach left files behind");
    assert!(!root.at("etc/portables/foo-test").exists());
}

#[test]
fn detach_removes_leftovers_of_an_interrupted_attach() {
    let root = Root::new("portable-leftover", true);
    root.ok("attach --copy=symlink foo-test");
    let dir = root.at("etc/systemd/system.attached");
    // systemd #23481: the unit file is gone (disabled symlink), only its drop-ins are left;
    // and an atomic write was interrupted before its rename (its temporary file is named as
    // realms_sys::atomic names them: .#NAME. and 10 hex digits).
    fs::remove_file(dir.join("foo-test.service")).unwrap();
    fs::write(
        dir.join("foo-test.service.d/.#10-profile.conf.4f2a9c01de"),
        "partial",
    )
    .unwrap();
    assert_eq!(root.ok("is-attached foo-test").trim(), "attached");
    let out = root.ok("detach foo-test");
    assert!(
        out.contains("Removed /etc/systemd/system.attached/foo-test.service.d.\n"),
        "{out}"
    );
    assert!(!dir.exists(), "detach left the attach directory behind");
    // A user drop-in next to ours survives, and keeps its directory.
    root.ok("attach foo-test");
    fs::write(dir.join("foo-test.service.d/50-mine.conf"), "[Service]\n").unwrap();
    root.ok("detach foo-test");
    assert_eq!(
        fs::read_dir(dir.join("foo-test.service.d"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn refusals_name_what_is_wrong() {
    let root = Root::new("portable-refuse", true);
    let img = root.at("var/lib/portables/foo-test");
    fs::create_dir_all(root.at("etc/systemd/system")).unwrap();
    fs::write(
        root.at("etc/systemd/system/foo-test.service"),
        "[Service]\n",
    )
    .unwrap();
    let out = root.fails("attach foo-test");
    assert!(
        out.contains("Unit file 'foo-test-oneshot.service' exists on the host already")
            || out.contains("Unit file 'foo-test.service' exists on the host already"),
        "{out}"
    );
    fs::remove_file(root.at("etc/systemd/system/foo-test.service")).unwrap();

    let os = img.join("usr/lib/os-release");
    fs::write(&os, "ID=foo\nPORTABLE_PREFIXES=foo-test-oneshot\n").unwrap();
    let out = root.fails("attach foo-test");
    assert!(out.contains("Selected matches 'foo-test' are not compatible with portable service image '/var/lib/portables/foo-test', refusing. (Acceptable prefix matches are: foo-test-oneshot)"), "{out}");
    let out = root.ok("attach foo-test foo-test-oneshot");
    assert!(!out.contains("foo-test.service.d"), "{out}");
    root.ok("detach foo-test");

    fs::write(&os, "").unwrap();
    let out = root.fails("attach foo-test");
    assert!(
        out.contains("Image /var/lib/portables/foo-test os-release metadata lacks the ID field"),
        "{out}"
    );
    fs::remove_file(&os).unwrap();
    let out = root.fails("attach foo-test");
    assert!(
        out.contains("Image '/var/lib/portables/foo-test' lacks os-release data, refusing."),
        "{out}"
    );
    fs::write(&os, "ID=foo\n").unwrap();

    let out = root.fails("attach foo-test nothing");
    assert!(out.contains("Couldn't find any matching unit files in image '/var/lib/portables/foo-test', refusing."), "{out}");
    let out = root.fails("attach foo-test -");
    assert!(out.contains("Refusing all unit file match."), "{out}");
    let out = root.fails("attach no-such-image");
    assert!(out.contains("No image 'no-such-image' found."), "{out}");

    // A unit symlink leading to a host file must not be followed.
    fs::write(root.at("etc/secret.conf"), "[Service]\nExecStart=/host\n").unwrap();
    let units = img.join("usr/lib/systemd/system");
    symlink("/etc/secret.conf", units.join("foo-test-leak.service")).unwrap();
    let out = root.fails("inspect --cat foo-test");
    assert!(
        out.contains("is a symlink leading outside the image"),
        "{out}"
    );
    assert!(!out.contains("ExecStart=/host"), "{out}");
    fs::remove_file(units.join("foo-test-leak.service")).unwrap();
    let cat = root.ok("inspect --cat foo-test");
    assert!(cat.starts_with("-- OS Release: --\nID=foo\n"), "{cat}");
    assert!(
        cat.contains("\n-- Unit file: foo-test.service --\n[Unit]\n"),
        "{cat}"
    );
}

#[test]
fn validate_reports_each_requirement() {
    let root = Root::new("portable-validate", true);
    let good = root.ok("validate foo-test");
    assert_eq!(
        good.lines().filter(|l| l.starts_with("[PASS]")).count(),
        7,
        "{good}"
    );
    let img = root.at("var/lib/portables/foo-test");
    fs::remove_file(img.join("etc/machine-id")).unwrap();
    fs::remove_dir(img.join("proc")).unwrap();
    let bad = root.fails("validate foo-test");
    assert!(
        bad.contains("[FAIL] resolv.conf and machine-id: missing: /etc/machine-id"),
        "{bad}"
    );
    assert!(
        bad.contains("[FAIL] mount points: missing directories: /proc"),
        "{bad}"
    );
    assert!(
        bad.contains("[PASS] dynamic loader: /usr/bin/busybox is statically linked"),
        "{bad}"
    );
    // A dynamically linked binary whose loader is missing from the image.
    fs::copy("/bin/true", img.join("usr/bin/true")).unwrap();
    fs::write(
        img.join("usr/lib/systemd/system/foo-test.service"),
        "[Service]\nExecStart=/usr/bin/true\n",
    )
    .unwrap();
    let bad = root.fails("validate foo-test");
    assert!(
        bad.contains("[FAIL] dynamic loader: /usr/bin/true needs the dynamic loader"),
        "{bad}"
    );
}

#[test]
fn profiles_mixed_copies_read_only_and_remove() {
    // No profiles on this "host": Realms installs its own copy and links to it.
    let root = Root::new("portable-manage", false);
    let help = root.ok("--profile=help list");
    assert_eq!(
        help.lines().collect::<Vec<_>>(),
        ["default", "nonetwork", "strict", "trusted"]
    );
    let out = root.ok("attach --copy=mixed foo-test");
    assert!(
        out.contains("Installed Realms' copy of profile 'default'"),
        "{out}"
    );
    let installed = "/usr/local/lib/systemd/portable/profile/default/service.conf";
    assert_eq!(
        link(&root.at("etc/systemd/system.attached/foo-test.service.d/10-profile.conf")),
        installed
    );
    assert!(
        out.contains("Copied /var/lib/portables/foo-test \u{2192} /etc/portables/foo-test."),
        "{out}"
    );
    assert!(root.at("etc/portables/foo-test/usr/bin/busybox").is_file());
    let refused = root.fails("remove foo-test");
    assert!(
        refused.contains(
            "Could not remove image: Image '/etc/portables/foo-test' is not detached, refusing."
        ),
        "{refused}"
    );
    root.ok("detach foo-test");
    assert!(!root.at("etc/portables/foo-test").exists());

    // A profile the administrator adds under /etc is found.
    let mine = root.at("etc/systemd/portable/profile/mine");
    fs::create_dir_all(&mine).unwrap();
    fs::write(mine.join("service.conf"), "[Service]\nPrivateTmp=yes\n").unwrap();
    root.ok("attach --profile=mine --copy=copy foo-test");
    let conf = root.at("etc/systemd/system.attached/foo-test.service.d/10-profile.conf");
    assert_eq!(
        fs::read_to_string(conf).unwrap(),
        "[Service]\nPrivateTmp=yes\n"
    );
    root.ok("detach foo-test");

    root.ok("read-only foo-test");
    let list = root.ok("list");
    assert!(
        list.lines()
            .any(|l| l.starts_with("foo-test ") && l.contains(" yes ")),
        "{list}"
    );
    root.ok("read-only foo-test no");
    root.ok("remove foo-test");
    assert!(!root.at("var/lib/portables/foo-test").exists());
    assert_eq!(root.ok("list").trim(), "No images.");
}

#[test]
fn json_output_lists_the_changes() {
    let root = Root::new("portable-json", true);
    let out = Command::new(realms_tests::realms_bin())
        .arg("--root")
        .arg(root.path())
        .args(["--json", "portable", "attach", "--runtime", "foo-test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "--json printed on stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 10, "{v}");
    assert_eq!(changes[0]["type"], "mkdir");
    assert_eq!(changes[0]["path"], "/run/systemd/system.attached");
    assert_eq!(changes[9]["type"], "symlink");
    assert_eq!(changes[9]["source"], "/var/lib/portables/foo-test");
    assert_eq!(v["systemd"], false);
    let out = Command::new(realms_tests::realms_bin())
        .arg("--root")
        .arg(root.path())
        .args(["--json", "portable", "list"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], "foo-test");
    assert_eq!(v[0]["state"], "attached-runtime");
}

/// What a newer portabled leaves behind is recognised too: a marker listing extensions, the
/// newer drop-in lines, a `--copy=mixed` image copy, and a drop-in directory without its unit.
#[test]
fn newer_portabled_attachments_are_recognised() {
    let root = Root::new("portable-newer", true);
    let dir = root.at("run/systemd/system.attached");
    fs::create_dir_all(dir.join("foo-test.service.d")).unwrap();
    fs::create_dir_all(dir.join("foo-test-oneshot.service.d")).unwrap();
    let marker = "# Drop-in created for image '/var/lib/portables/foo-test:/var/lib/extensions/ext.raw', do not edit.\n";
    let newer = format!(
        "{marker}\n[Service]\nRootDirectory=/var/lib/portables/foo-test\nEnvironment=PORTABLE=foo-test\n\
         LogExtraFields=PORTABLE=foo-test\nLogExtraFields=PORTABLE_ROOT_NAME_AND_VERSION=foo_1\n\
         ExtensionImagePolicy=root=verity+signed+encrypted+unprotected+absent\n"
    );
    for unit in ["foo-test.service", "foo-test-oneshot.service"] {
        fs::write(dir.join(format!("{unit}.d/20-portable.conf")), &newer).unwrap();
    }
    fs::write(dir.join("foo-test.service"), "[Service]\nExecStart=/x\n").unwrap();
    fs::create_dir_all(root.at("run/portables/foo-test/etc")).unwrap();
    assert_eq!(root.ok("is-attached foo-test").trim(), "attached-runtime");
    let out = root.ok("detach --runtime --extension /var/lib/extensions/ext.raw foo-test");
    assert!(
        out.contains("Removed /run/systemd/system.attached/foo-test-oneshot.service.d.\n"),
        "{out}"
    );
    assert!(out.contains("Removed /run/portables/foo-test.\n"), "{out}");
    assert!(!dir.exists());
    assert!(!root.at("run/portables/foo-test").exists());
    // The base image itself is untouched.
    assert!(
        root.at("var/lib/portables/foo-test/usr/bin/busybox")
            .is_file()
    );
}

/// A `--profile` that no profile directory has: portablectl attaches silently without a
/// sandboxing drop-in; we attach the same files and say so.
#[test]
fn attach_with_a_profile_that_does_not_exist_warns() {
    let root = Root::new("portable-noprof", true);
    let out = root.realms("attach --profile nosuch foo-test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("profile 'nosuch' does not exist") && stderr.contains("strict"),
        "{stderr}"
    );
    let dir = root.at("etc/systemd/system.attached");
    assert!(dir.join("foo-test.service").exists());
    assert!(!dir.join("foo-test.service.d/10-profile.conf").exists());
    assert!(
        !root
            .ok("attach --profile strict --force foo-test")
            .contains("does not exist")
    );
}

#[test]
fn is_attached_exits_0_when_detached_as_portablectl_252() {
    let root = Root::new("portable-isatt", true);
    let state = root.realms("is-attached foo-test");
    assert_eq!(
        (
            state.status.code(),
            String::from_utf8_lossy(&state.stdout).trim()
        ),
        (Some(0), "detached")
    );
    let help = Command::new(realms_tests::realms_bin())
        .args(["portable", "is-attached", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit status 0 whenever the state could be found"),
        "{help}"
    );
}

#[test]
fn set_limit_sets_the_btrfs_quota_of_a_subvolume_image_as_252() {
    realms_tests::require::tool("mkfs.btrfs", "btrfs-progs");
    let dir = Scratch::empty("portable-limit");
    let img = dir.path().join("fs.img");
    fs::File::create(&img).unwrap().set_len(300 << 20).unwrap();
    run(Command::new("mkfs.btrfs").arg("-q").arg(&img));
    let r = dir.path().join("root");
    fs::create_dir_all(&r).unwrap();
    // Our own filesystem: quotas on the shared test pool would slow every other test.
    run(Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(&img)
        .arg(&r));
    fs::create_dir_all(r.join("var/lib")).unwrap();
    fs::create_dir_all(r.join("etc")).unwrap();
    run(Command::new("btrfs")
        .args(["-q", "subvolume", "create"])
        .arg(r.join("var/lib/portables")));
    run(Command::new("btrfs")
        .args(["-q", "subvolume", "create"])
        .arg(r.join("var/lib/portables/foo")));
    fs::create_dir_all(r.join("var/lib/portables/bar")).unwrap();
    run(Command::new("btrfs").args(["quota", "enable"]).arg(&r));
    let realms = |args: &[&str]| {
        Command::new(realms_tests::realms_bin())
            .arg("--root")
            .arg(&r)
            .arg("portable")
            .args(args)
            .output()
            .unwrap()
    };
    let limit_of = |path: &Path| {
        let out = run(Command::new("btrfs")
            .args(["qgroup", "show", "-re", "--raw", "-f"])
            .arg(path));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_owned()
    };
    assert!(realms(&["set-limit", "foo", "10M"]).status.success());
    assert_eq!(
        limit_of(&r.join("var/lib/portables/foo")),
        (10u64 << 20).to_string()
    );
    assert!(realms(&["set-limit", "foo", "none"]).status.success());
    assert_eq!(limit_of(&r.join("var/lib/portables/foo")), "none");
    assert!(realms(&["set-limit", "1.5G"]).status.success());
    assert_eq!(
        limit_of(&r.join("var/lib/portables")),
        (3u64 << 29).to_string()
    );
    let out = realms(&["set-limit", "bar", "1G"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("Could not set limit: Quota is only supported on btrfs subvolumes"),
        "{err}"
    );
    let out = realms(&["set-limit", "foo", "1Q"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Failed to parse size: 1Q"));
    run(Command::new("umount").arg(&r));
}

/// Every path under `root` outside the attach directories, with its size and link target.
fn outside_attach_dirs(root: &Path) -> Vec<String> {
    let out = run(Command::new("find")
        .arg(root)
        .args(["-printf", "%y %s %P -> %l\n"]));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            ![
                "etc/systemd/system.attached",
                "etc/portables",
                "run/systemd/system.attached",
                "run/portables",
            ]
            .iter()
            .any(|d| l.contains(&format!(" {d}")))
        })
        .map(|l| {
            // A directory's size changes with its entries; the attach directories' parents do.
            if l.starts_with("d ") {
                let (_, rest) = l.split_at(2);
                format!("d {}", rest.split_once(' ').map_or(rest, |(_, r)| r))
            } else {
                l.to_owned()
            }
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn unit_symlink_escape_through_an_image_root_link_never_reaches_the_host() {
    let root = Root::new("portable-esc", true);
    // The host has /etc/host.service; the image has its own, and the escape chain
    // usr/lib/systemd/system/x -> / and esc3.service -> x/etc/host.service.
    fs::create_dir_all(root.at("etc/systemd/system")).unwrap();
    fs::write(root.at("etc/host.service"), "[Service]\nExecStart=/host\n").unwrap();
    let img = root.at("var/lib/portables/esc3");
    fs::create_dir_all(img.join("usr/lib/systemd/system")).unwrap();
    fs::create_dir_all(img.join("etc")).unwrap();
    fs::write(img.join("usr/lib/os-release"), "ID=foo\n").unwrap();
    fs::write(
        img.join("etc/host.service"),
        "[Service]\nExecStart=/in-image\n",
    )
    .unwrap();
    symlink("/", img.join("usr/lib/systemd/system/x")).unwrap();
    symlink(
        "x/etc/host.service",
        img.join("usr/lib/systemd/system/esc3.service"),
    )
    .unwrap();
    let before = outside_attach_dirs(root.path());
    for mode in ["auto", "copy", "symlink", "mixed"] {
        root.ok(&format!("attach --copy={mode} esc3"));
        let unit = root.at("etc/systemd/system.attached/esc3.service");
        if mode == "symlink" {
            assert_eq!(
                link(&unit),
                "/var/lib/portables/esc3/etc/host.service",
                "the link must be fully resolved inside the image"
            );
        }
        // What systemd reads through the attached file (from the root) is the image's unit.
        let target = fs::read_link(&unit).map(|t| root.at(&t.to_string_lossy()));
        let text = fs::read_to_string(target.unwrap_or(unit)).unwrap();
        assert_eq!(text, "[Service]\nExecStart=/in-image\n", "--copy={mode}");
        assert_eq!(
            outside_attach_dirs(root.path()),
            before,
            "--copy={mode} wrote outside"
        );
        root.ok("detach esc3");
    }
}

#[test]
fn parallel_attaches_and_detaches_keep_every_attachment_whole() {
    let root = Root::new("portable-par", true);
    let names: Vec<String> = (0..6).map(|i| format!("par{i}")).collect();
    for n in &names {
        let img = root.at(&format!("var/lib/portables/{n}"));
        fs::create_dir_all(img.join("usr/lib/systemd/system")).unwrap();
        fs::write(img.join("usr/lib/os-release"), "ID=foo\n").unwrap();
        fs::write(
            img.join(format!("usr/lib/systemd/system/{n}.service")),
            "[Service]\nExecStart=/x\n",
        )
        .unwrap();
    }
    let run_all = |verb: &str| {
        let children: Vec<_> = names
            .iter()
            .map(|n| {
                Command::new(realms_tests::realms_bin())
                    .arg("--root")
                    .arg(root.path())
                    .args(["portable", verb, n])
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    run_all("attach");
    for n in &names {
        assert_eq!(root.ok(&format!("is-attached {n}")).trim(), "attached");
        let conf = root.at(&format!(
            "etc/systemd/system.attached/{n}.service.d/20-portable.conf"
        ));
        assert!(
            fs::read_to_string(conf)
                .unwrap()
                .contains(&format!("/var/lib/portables/{n}'"))
        );
    }
    run_all("detach");
    assert!(!root.at("etc/systemd/system.attached").exists());
    assert!(!root.at("etc/systemd/.realms-portable.journal").exists());
}
