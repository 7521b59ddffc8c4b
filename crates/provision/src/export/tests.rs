//! The exported commands in a temp root: what the script runs, ownership, replace and remove.
//! (That the script really runs in the image is the host tier's: tests/host/provision/export.rs.)

use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// A root with a directory image holding `/usr/bin/goss` (through a merged-usr `/bin` link)
    /// and a non-executable `/usr/bin/notes`.
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("var/lib/portables/goss_1");
        fs::create_dir_all(image.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", image.join("bin")).unwrap();
        fs::write(image.join("usr/bin/goss"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            image.join("usr/bin/goss"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        fs::write(image.join("usr/bin/notes"), "text").unwrap();
        Setup { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn image(&self) -> PathBuf {
        self.root().join("var/lib/portables/goss_1")
    }

    fn cmd(&self, name: &str) -> PathBuf {
        self.root().join(BIN_DIR).join(name)
    }

    fn write(&self, package: &str, names: &[&str], previous: &[&str]) -> Result<()> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let previous: Vec<String> = previous.iter().map(|s| s.to_string()).collect();
        write(
            self.root(),
            package,
            "1",
            &self.image(),
            "strict",
            &names,
            &previous,
        )
    }
}

#[test]
fn the_script_runs_the_binary_in_the_image_with_the_profile() {
    let s = Setup::new();
    s.write("goss", &["goss"], &[]).unwrap();
    let text = fs::read_to_string(s.cmd("goss")).unwrap();
    let mode = fs::metadata(s.cmd("goss")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(text.starts_with("#!/bin/sh\n# realms-provision-export package=goss command=goss\n"));
    for line in [
        "exec systemd-run --pipe --pty --wait --quiet --collect --service-type=exec \\",
        "  --property='RootDirectory=/var/lib/portables/goss_1' \\",
        "  --property='Environment=PORTABLE=goss_1' \\",
        "  --property='BindReadOnlyPaths=/usr/lib/os-release:/run/host/os-release' \\",
        // The strict profile's settings, continuation lines joined.
        "  --property='RestrictAddressFamilies=AF_UNIX' \\",
        "  --property='TasksMax=4' \\",
        "  --property='CapabilityBoundingSet=' \\",
        "  --property='BindReadOnlyPaths=/dev/log /run/systemd/journal/socket /run/systemd/journal/stdout' \\",
        "  -- '/usr/bin/goss' \"$@\"",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn quoting_survives_the_shell() {
    assert_eq!(sh_quote("a'b c"), r"'a'\''b c'");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {}", sh_quote("it's $HOME `x` \\ \"q\"")))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "it's $HOME `x` \\ \"q\""
    );
}

#[test]
fn a_binary_the_image_lacks_or_cannot_run_is_refused() {
    let s = Setup::new();
    for name in ["nope", "notes"] {
        let e = s.write("goss", &[name], &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("no executable {name}")), "{e}");
        assert!(!s.cmd(name).exists());
    }
}

#[test]
fn a_file_not_written_for_the_package_is_never_overwritten_nor_removed() {
    let s = Setup::new();
    fs::create_dir_all(s.cmd("x").parent().unwrap()).unwrap();
    fs::write(s.cmd("goss"), "#!/bin/sh\necho mine\n").unwrap();
    let e = s.write("goss", &["goss"], &[]).unwrap_err().to_string();
    assert!(
        e.contains(&s.cmd("goss").display().to_string()) && e.contains("not written by realms"),
        "{e}"
    );
    assert_eq!(
        fs::read_to_string(s.cmd("goss")).unwrap(),
        "#!/bin/sh\necho mine\n"
    );
    remove(s.root(), "goss", &["goss".into()]).unwrap();
    assert!(s.cmd("goss").exists());
    // Another package's command is refused too, naming that package.
    fs::remove_file(s.cmd("goss")).unwrap();
    s.write("other", &["goss"], &[]).unwrap();
    let e = s.write("goss", &["goss"], &[]).unwrap_err().to_string();
    assert!(e.contains("written for package 'other'"), "{e}");
    // A symlink is not realms' either.
    fs::remove_file(s.cmd("goss")).unwrap();
    std::os::unix::fs::symlink("/bin/true", s.cmd("goss")).unwrap();
    assert!(s.write("goss", &["goss"], &[]).is_err());
}

#[test]
fn an_upgrade_replaces_and_drops_what_is_no_longer_listed() {
    let s = Setup::new();
    let image = s.image();
    fs::copy(image.join("usr/bin/goss"), image.join("usr/bin/goss-cli")).unwrap();
    s.write("goss", &["goss", "goss-cli"], &[]).unwrap();
    assert!(present(
        s.root(),
        "goss",
        &["goss".into(), "goss-cli".into()]
    ));
    fs::write(
        s.cmd("goss"),
        "#!/bin/sh\n# realms-provision-export package=goss command=goss\nold\n",
    )
    .unwrap();
    s.write("goss", &["goss"], &["goss", "goss-cli"]).unwrap();
    assert!(!s.cmd("goss-cli").exists());
    assert!(!fs::read_to_string(s.cmd("goss")).unwrap().contains("old"));
    assert!(!present(s.root(), "goss", &["goss-cli".into()]));
    remove(s.root(), "goss", &["goss".into()]).unwrap();
    assert!(!s.cmd("goss").exists());
    // No staging leftovers.
    assert_eq!(fs::read_dir(s.root().join(BIN_DIR)).unwrap().count(), 0);
}

#[test]
fn a_raw_image_runs_with_root_image() {
    let s = Setup::new();
    let raw = s.root().join("var/lib/portables/goss_2.raw");
    fs::write(&raw, b"not looked into").unwrap();
    write(
        s.root(),
        "goss",
        "2",
        &raw,
        "default",
        &["goss".into()],
        &[],
    )
    .unwrap();
    let text = fs::read_to_string(s.cmd("goss")).unwrap();
    assert!(
        text.contains("  --property='RootImage=/var/lib/portables/goss_2.raw' \\\n")
            && text.contains("  --property='Environment=PORTABLE=goss_2.raw' \\\n")
            && text.contains(
                "  --property='RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6' \\\n"
            )
            && text.ends_with("  -- '/usr/bin/goss' \"$@\"\n"),
        "{text}"
    );
    assert!(!text.contains("RootDirectory="), "{text}");
}
