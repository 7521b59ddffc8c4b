//! Portable services for real: in a booted systemd container, `realms portable` attaches the
//! busybox image so systemd runs it under DynamicUser=, the real portablectl 252 recognises
//! what realms wrote (and the other way round), both tools write identical trees across copy
//! modes, runtime and profiles, and the nonetwork profile really takes AF_INET away.

mod kill;
mod offline;
mod test29;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use realms_tests::container::Container;
use realms_tests::fixtures::{debian_base, portable_image, write_portable_tree};
use realms_tests::run::{run, tail};
use realms_tests::scratch::{Scratch, unique};

/// systemd's portablectl captures and profiles (../shared/reference/portablectl-captures).
pub const CAPTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/reference/portablectl-captures"
);

/// systemd's four portable profiles, as captured, in `root`/usr/lib/systemd/portable/profile.
pub fn install_profiles(root: &Path) {
    let profiles = root.join("usr/lib/systemd/portable");
    fs::create_dir_all(&profiles).unwrap();
    run(std::process::Command::new("cp")
        .arg("-a")
        .arg(Path::new(CAPTURES).join("profiles"))
        .arg(profiles.join("profile")));
    run(std::process::Command::new("chmod")
        .arg("-R")
        .arg("u+w,a+rX")
        .arg(&profiles));
}

/// A booted container with the realms binary in /usr/bin and the foo-test image in
/// /var/lib/portables.
pub struct Booted {
    pub c: Container,
    _tree: Scratch,
}

impl Booted {
    pub fn new(label: &str) -> Booted {
        let tree = Scratch::snapshot(debian_base(), label);
        let root = tree.path();
        fs::copy(realms_tests::realms_bin(), root.join("usr/bin/realms")).unwrap();
        let portables = root.join("var/lib/portables");
        // debootstrap leaves a nested-subvolume stub here in snapshots; make it a plain dir.
        if fs::create_dir_all(portables.join(".probe")).is_err() {
            let _ = fs::remove_dir(&portables);
        }
        let _ = fs::remove_dir(portables.join(".probe"));
        fs::create_dir_all(&portables).unwrap();
        run(std::process::Command::new("cp")
            .arg("-a")
            .arg(portable_image())
            .arg(portables.join("foo-test")));
        let c = Container::boot(root, &unique(label), &["--private-network"]);
        Booted { c, _tree: tree }
    }

    pub fn root(&self) -> &Path {
        self.c.root()
    }

    /// Runs a shell command line inside; returns (status ok, stdout, stderr).
    pub fn try_sh(&self, script: &str) -> (bool, String, String) {
        let out: Output = self.c.exec(&["sh", "-c", script]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a command that must succeed; returns stdout and stderr together.
    #[track_caller]
    pub fn ok(&self, script: &str) -> String {
        let (ok, out, err) = self.try_sh(script);
        assert!(ok, "`{script}` failed\nstdout:\n{out}\nstderr:\n{err}");
        format!("{out}{err}")
    }

    /// Runs a command that must fail; returns stdout and stderr together.
    #[track_caller]
    pub fn fails(&self, script: &str) -> String {
        let (ok, out, err) = self.try_sh(script);
        assert!(
            !ok,
            "`{script}` succeeded unexpectedly\nstdout:\n{out}\nstderr:\n{err}"
        );
        format!("{out}{err}")
    }

    /// The state systemd reports for a unit's property.
    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.ok(&format!("systemctl show -p {prop} --value {unit}"))
            .trim()
            .to_string()
    }

    /// Everything both tools write: the attach and image-link directories, with names, types,
    /// modes, symlink targets and the hash of every file.
    pub fn tree(&self) -> String {
        self.ok(
            "for d in /etc/systemd/system.attached /run/systemd/system.attached /etc/portables /run/portables; do \
               if [ -e $d ]; then find $d -printf '%y %m %p -> %l\\n' | sort; \
               find $d -type f | sort | xargs -r sha256sum; else echo \"absent $d\"; fi; done",
        )
    }
}

/// Writes a directory image `dir` with the seed's units for `name` plus `extra` unit files.
pub fn image_with(dir: &Path, name: &str, extra: &[(&str, &str)]) {
    let busybox = fs::read("/bin/busybox").expect("read /bin/busybox (busybox-static)");
    write_portable_tree(dir, &busybox, name);
    let units = dir.join("usr/lib/systemd/system");
    for (file, text) in extra {
        let path = if file.starts_with('/') {
            dir.join(file.trim_start_matches('/'))
        } else {
            units.join(file)
        };
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn attach_now_runs_under_dynamic_user_and_portablectl_agrees() {
    let b = Booted::new("portable-run");
    let out = b.ok("realms portable attach --now foo-test");
    assert!(
        out.contains("(Matching unit files with prefix 'foo-test'.)"),
        "{out}"
    );
    assert!(
        out.contains(
            "Created symlink /etc/portables/foo-test \u{2192} /var/lib/portables/foo-test."
        ),
        "{out}"
    );
    assert!(
        out.contains("Queued /org/freedesktop/systemd1/job/"),
        "{out}"
    );
    assert_eq!(b.prop("foo-test.service", "ActiveState"), "active");
    assert_eq!(b.prop("foo-test.service", "DynamicUser"), "yes");
    assert_eq!(
        b.prop("foo-test.service", "RootDirectory"),
        "/var/lib/portables/foo-test"
    );
    assert_eq!(
        b.prop("foo-test.service", "DropInPaths"),
        "/etc/systemd/system.attached/foo-test.service.d/10-profile.conf /etc/systemd/system.attached/foo-test.service.d/20-portable.conf"
    );
    let list = b.ok("portablectl list --no-pager");
    assert!(
        list.lines()
            .any(|l| l.starts_with("foo-test ") && l.contains("running")),
        "{list}"
    );
    assert_eq!(
        b.ok("portablectl is-attached foo-test 2>/dev/null").trim(),
        "running"
    );
    let refused = b.fails("realms portable detach foo-test");
    assert!(
        refused
            .contains("DetachImage failed: Unit file 'foo-test.service' is active, can't detach."),
        "{refused}"
    );
    b.ok("portablectl detach --now foo-test");
    assert_eq!(b.prop("foo-test.service", "ActiveState"), "inactive");
    assert!(b.tree().contains("absent /etc/systemd/system.attached"));
    assert!(!b.ok("ls /etc/portables").contains("foo-test"));

    // And the other way round: attached by portablectl, detached by realms.
    b.ok("portablectl attach --now foo-test");
    assert_eq!(b.prop("foo-test.service", "ActiveState"), "active");
    assert_eq!(
        b.ok("realms portable is-attached foo-test").trim(),
        "running"
    );
    let refused = b.fails("realms portable detach foo-test");
    assert!(refused.contains("is active, can't detach."), "{refused}");
    let out = b.ok("realms portable detach --now foo-test");
    assert!(
        out.contains("to call StopUnit on portable service foo-test.service."),
        "{out}"
    );
    assert!(
        out.contains("Removed /etc/systemd/system.attached."),
        "{out}"
    );
    assert_eq!(b.prop("foo-test.service", "ActiveState"), "inactive");
    assert!(b.tree().contains("absent /etc/systemd/system.attached"));
    // is_attached_exits_0_when_detached_as_252: both tools print "detached" and exit 0.
    assert_eq!(
        b.ok("realms portable is-attached foo-test").trim(),
        "detached"
    );
    assert_eq!(
        b.ok("portablectl is-attached foo-test 2>/dev/null").trim(),
        "detached"
    );
}

const FOO_UNITS: &[(&str, &str)] = &[
    (
        "foo.service",
        "[Unit]\nDescription=foo\n\n[Service]\nExecStart=/usr/bin/busybox sleep 1000\n",
    ),
    (
        "foo@.service",
        "[Unit]\nDescription=foo %i\n\n[Service]\nExecStart=/usr/bin/busybox sleep %i\n",
    ),
    (
        "foo.socket",
        "[Socket]\nListenStream=/run/foo.sock\n\n[Install]\nWantedBy=sockets.target\n",
    ),
    (
        "foo.timer",
        "[Timer]\nOnCalendar=daily\nUnit=foo-oneshot.service\n\n[Install]\nWantedBy=timers.target\n",
    ),
    (
        "foobar.service",
        "[Service]\nExecStart=/usr/bin/busybox true\n",
    ),
    ("foo-empty.service", ""),
    ("foo.mount", "[Mount]\nWhat=tmpfs\nWhere=/foo\n"),
    (
        "/etc/systemd/system/foo-etc.service",
        "[Service]\nExecStart=/usr/bin/busybox true\n",
    ),
];

#[test]
fn trees_are_identical_to_portablectl_across_modes_and_profiles() {
    let b = Booted::new("portable-diff");
    image_with(&b.root().join("var/lib/portables/foo"), "foo", FOO_UNITS);
    let mut cases = 0;
    for copy in ["auto", "copy", "symlink"] {
        for runtime in ["", "--runtime"] {
            for profile in ["default", "nonetwork", "strict", "trusted"] {
                let args = format!("{runtime} --copy={copy} --profile={profile} --no-reload foo");
                let theirs_out = b.ok(&format!("portablectl attach {args}"));
                let theirs = b.tree();
                b.ok(&format!("portablectl detach {runtime} --no-reload foo"));
                let clean = b.tree();
                let ours_out = b.ok(&format!("realms portable attach {args}"));
                let ours = b.tree();
                assert_eq!(theirs, ours, "trees differ for `attach {args}`");
                assert_eq!(
                    sorted_lines(&theirs_out),
                    sorted_lines(&ours_out),
                    "messages differ for `attach {args}`"
                );
                assert!(
                    !ours.contains("foobar")
                        && !ours.contains("foo-empty")
                        && !ours.contains("foo.mount")
                );
                assert!(
                    ours.contains("foo@.service")
                        && ours.contains("foo.socket")
                        && ours.contains("foo-etc.service")
                );
                // Detach what the other tool attached, both ways round.
                b.ok(&format!("portablectl detach {runtime} --no-reload foo"));
                assert_eq!(
                    b.tree(),
                    clean,
                    "portablectl left something of ours behind ({args})"
                );
                b.ok(&format!("portablectl attach {args}"));
                let out = b.ok(&format!("realms portable detach {runtime} --no-reload foo"));
                assert!(out.contains("Removed "), "{out}");
                assert_eq!(
                    b.tree(),
                    clean,
                    "realms left something of portablectl's behind ({args})"
                );
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 24);

    // --enable --now: [Install] symlinks land in the attach directory (the portable flag), the
    // same for both tools, and detach --enable --now takes them away again.
    for runtime in ["", "--runtime"] {
        let clean = b.tree();
        b.try_sh(&format!("portablectl attach --enable --now {runtime} foo"));
        let theirs = b.tree();
        b.try_sh(&format!("portablectl detach --enable --now {runtime} foo"));
        assert_eq!(
            b.tree(),
            clean,
            "portablectl did not clean up after --enable ({runtime})"
        );
        let (_, o, e) = b.try_sh(&format!(
            "realms portable attach --enable --now {runtime} foo"
        ));
        let attach_out = format!("{o}{e}");
        let ours = b.tree();
        assert!(ours.contains("sockets.target.wants/foo.socket"), "{ours}");
        assert_eq!(theirs, ours, "attach --enable --now {runtime} differs");
        let (_, status, _) = b.try_sh("systemctl status --no-pager -n 20 foo.service foo.socket");
        // Started after its own service, the socket refuses to listen ("Socket service
        // foo.service already active"), as it does for portablectl: a fact of this image.
        for unit in ["foo.service", "foo.timer"] {
            assert_eq!(
                b.prop(unit, "ActiveState"),
                "active",
                "{attach_out}\n{status}"
            );
        }
        assert!(
            attach_out.contains("Failed to call StartUnit on the portable service foo@.service: Unit name foo@.service is missing the instance name."),
            "{attach_out}"
        );
        let out = b.ok(&format!(
            "realms portable detach --enable --now {runtime} foo"
        ));
        assert!(out.contains("Removed \"/"), "{out}");
        assert_eq!(
            b.tree(),
            clean,
            "realms did not clean up after --enable ({runtime})"
        );
        assert_eq!(b.prop("foo.service", "ActiveState"), "inactive");
    }
}

#[test]
fn nonetwork_profile_takes_af_inet_away() {
    let b = Booted::new("portable-net");
    let probe = "[Unit]\nDescription=probe\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/busybox sh -c '/usr/bin/busybox nc -w 1 127.0.0.1 7 </dev/null; echo probe-rc=$?'\n";
    for (name, profile) in [("netoff", "nonetwork"), ("neton", "default")] {
        image_with(
            &b.root().join(format!("var/lib/portables/{name}")),
            name,
            &[(&format!("{name}-probe.service"), probe)],
        );
        b.ok(&format!(
            "realms portable attach --profile={profile} --now {name}"
        ));
    }
    let journal = |name: &str| {
        b.ok(&format!(
            "journalctl --sync; journalctl -u {name}-probe.service -o cat --no-pager"
        ))
    };
    let denied = journal("netoff");
    assert!(
        denied.contains("probe-rc="),
        "the probe did not run:\n{denied}"
    );
    assert!(
        denied.contains("Address family not supported"),
        "AF_INET was allowed under nonetwork:\n{denied}"
    );
    let allowed = journal("neton");
    assert!(
        allowed.contains("probe-rc="),
        "the probe did not run:\n{allowed}"
    );
    assert!(
        !allowed.contains("Address family not supported"),
        "AF_INET was denied under default:\n{}",
        tail(allowed.as_bytes())
    );
    b.ok("realms portable detach --now netoff && realms portable detach --now neton");
}
