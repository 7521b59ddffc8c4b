//! The Debian package, installed the way a user installs it: `apt-get install ./realms_*.deb`
//! inside a booted Debian container. Then `realms --version`, `man realms`, bash completion of
//! `realms st<TAB>`, the default realm started at the next boot by the installed unit, the state
//! generator run at boot, the D-Bus API activated on demand, the desktop's environment snippets,
//! and `apt-get purge` leaving the user's realms and images alone.
//!
//! The package is built by `scripts/deb` (scripts/test runs it before the host tier); this test
//! fails, naming the command, when target/debian has none.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use realms_tests::container::Container;
use realms_tests::fixtures::debian_base;
use realms_tests::realms::name;
use realms_tests::run::run;
use realms_tests::scratch::{Scratch, unique};

/// The newest `target/debian/realms_*.deb`.
fn package() -> PathBuf {
    let dir = realms_tests::target_dir().join("debian");
    let mut debs: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("realms_") && n.ends_with(".deb")
        })
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    debs.sort();
    debs.pop().map(|(_, p)| p).unwrap_or_else(|| {
        panic!(
            "no realms_*.deb in {}: run scripts/deb first",
            dir.display()
        )
    })
}

/// What a user has before installing: man-db, bash-completion and the package's recommends
/// (installed in a chroot, where the host's network is; the container has a private one).
fn prepare(root: &std::path::Path) {
    fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).unwrap();
    run(Command::new("chroot").arg(root).args([
        "sh",
        "-c",
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q man-db bash-completion nftables >/dev/null",
    ]));
}

#[test]
fn the_package_installs_runs_completes_boots_the_default_realm_and_purges_cleanly() {
    let deb = package();
    let tree = Scratch::snapshot(debian_base(), "deb");
    let root = tree.path();
    prepare(root);
    // The user's store: the base image and a default realm (made from the host; the package
    // is not installed yet).
    fs::create_dir_all(root.join("storage/appimg")).unwrap();
    run(Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(debian_base())
        .arg(root.join("storage/appimg/base.appimg")));
    let realm = name("deb");
    for args in [vec!["new", realm.as_str()], vec!["default", realm.as_str()]] {
        run(Command::new(realms_tests::realms_bin())
            .arg("--root")
            .arg(root)
            .args(&args));
    }
    let file = deb.file_name().unwrap().to_string_lossy().into_owned();
    fs::copy(&deb, root.join("root").join(&file)).unwrap();

    let c = Container::boot(root, &unique("deb"), &["--private-network"]);
    c.sh(&format!(
        "cd /root && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./{file}"
    ));
    let version = c.sh("realms --version");
    assert_eq!(
        version.trim(),
        format!("realms {}", env!("CARGO_PKG_VERSION")),
        "{version}"
    );
    let man = c.sh("MANPAGER=cat MANWIDTH=80 man realms 2>&1");
    assert!(man.contains("realms-doctor(1)"), "{man}");
    let man = c.sh("MANPAGER=cat man realms-doctor 2>&1");
    assert!(man.contains("--fix"), "{man}");
    // Completion as bash-completion loads it on demand for `realms st<TAB>`.
    let completed = c.sh(r#"bash -c '. /usr/share/bash-completion/bash_completion
        __load_completion realms || exit 1
        COMP_WORDS=(realms st); COMP_CWORD=1; COMP_LINE="realms st"; COMP_POINT=${#COMP_LINE}
        f=$(complete -p realms | sed -E "s/.*-F ([^ ]+) .*/\1/")
        "$f" realms st realms
        printf "%s\n" "${COMPREPLY[@]}"'"#);
    let mut words: Vec<&str> = completed.split_whitespace().collect();
    words.sort();
    assert_eq!(words, ["start", "state", "status", "stop"], "{completed}");
    // Enabled for the next boot, not started by the installation.
    assert_eq!(
        c.sh("systemctl is-enabled realms-default.service").trim(),
        "enabled"
    );
    let active = c.exec(&["systemctl", "is-active", &format!("realm-{realm}.service")]);
    assert_ne!(String::from_utf8_lossy(&active.stdout).trim(), "active");
    c.stop();

    // The next boot starts the default realm through the installed unit.
    let c = Container::boot(root, &unique("deb2"), &["--private-network"]);
    let state = c.exec(&["systemctl", "is-active", &format!("realm-{realm}.service")]);
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "active",
        "the default realm did not start at boot:\n{}",
        c.sh("journalctl --no-pager -n 60 -o cat -u realms-default.service -u 'realm-*' || true")
    );
    assert!(
        c.sh("systemctl cat realms-default.service")
            .contains("/usr/lib/systemd/system/")
    );
    // The state generator is installed (no state partition here: it writes nothing), the
    // D-Bus API starts on demand through the installed activation files and policy, and the
    // desktop's XDG_DATA_DIRS snippets are in place for sessions and login shells.
    let generator = "/usr/lib/systemd/system-generators/realms-state-generator";
    assert_eq!(
        c.sh(&format!("readlink -f {generator}")).trim(),
        "/usr/bin/realms"
    );
    let generated = c.sh("ls /run/systemd/generator | grep -c '^state' || true");
    assert_eq!(generated.trim(), "0", "{generated}");
    let ran = c.sh(&format!(
        "d=$(mktemp -d) && {generator} $d $d $d 2>&1; echo rc=$?; ls -A $d"
    ));
    assert!(ran.trim().ends_with("rc=0"), "{ran}");
    let listed = c.sh(
        "busctl --timeout=120 call org.realms.Manager1 /org/realms/Manager1 \
         org.realms.Manager1 List",
    );
    assert!(listed.contains(&format!("\"{realm}\"")), "{listed}");
    assert_eq!(
        c.sh("systemctl is-active realms-dbus.service").trim(),
        "active"
    );
    let dirs = c.sh("bash -lc 'echo $XDG_DATA_DIRS'");
    assert!(dirs.trim().ends_with(":/run/realms/desktop"), "{dirs}");
    assert!(
        c.sh("cat /usr/lib/environment.d/60-realms-desktop.conf")
            .contains("/run/realms/desktop")
    );
    assert!(
        c.sh("cat /etc/xdg/autostart/realms-titles.desktop")
            .contains("Exec=realms desktop titles")
    );
    c.sh(&format!("realms stop {realm}"));

    // Purge removes what the package owns, never the user's realms and images.
    c.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q realms");
    for gone in [
        "/usr/bin/realms",
        "/usr/lib/systemd/system/realms-default.service",
        "/usr/share/man/man1/realms.1.gz",
        "/usr/share/bash-completion/completions/realms",
        "/usr/lib/systemd/system-generators/realms-state-generator",
        "/usr/share/dbus-1/system.d/org.realms.Manager1.conf",
        "/usr/share/dbus-1/system-services/org.realms.Manager1.service",
        "/usr/lib/environment.d/60-realms-desktop.conf",
        "/etc/profile.d/realms-desktop.sh",
        "/etc/xdg/autostart/realms-titles.desktop",
        "/etc/systemd/system/multi-user.target.wants/realms-default.service",
    ] {
        assert!(
            c.exec(&["test", "-e", gone]).status.code() == Some(1),
            "{gone} is left"
        );
    }
    for kept in [
        format!("/storage/realms/realm-{realm}/home"),
        format!("/storage/realms/realm-{realm}/config"),
        "/storage/appimg/base.appimg/usr/bin".to_string(),
        "/realms/default.realm".to_string(),
    ] {
        assert!(
            c.exec(&["test", "-e", &kept]).status.success(),
            "{kept} was removed"
        );
    }
    c.stop();
}
