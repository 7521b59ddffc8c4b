//! Requirements of the privileged tiers: each check fails the test loudly, naming what is missing.

use std::path::Path;

/// Fails unless the tests run as root.
pub fn root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (real mounts, loop devices, btrfs, systemd-nspawn): run the host tier as root"
    );
}

/// Fails unless `program` is on PATH; `package` names the Debian package that ships it.
pub fn tool(program: &str, package: &str) {
    assert!(
        which(program).is_some(),
        "this test needs `{program}`: install the Debian package `{package}` (apt-get install {package})"
    );
}

/// Fails unless the path exists; `what` says what it is and how to get it.
pub fn path(path: &Path, what: &str) {
    assert!(path.exists(), "this test needs {} ({what})", path.display());
}

/// Fails unless the kernel lists the filesystem in /proc/filesystems.
pub fn filesystem(name: &str) {
    let list = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().last() == Some(name)),
        "this test needs kernel support for the `{name}` filesystem (not in /proc/filesystems)"
    );
}

/// The full path of `program` on PATH, if it is there.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
