//! Fixtures built once per run and cached under `target/realms-fixtures`, keyed by their recipe.
//!
//! - a btrfs pool on a loop file (`pool()`), where everything else lives so tests can snapshot it;
//! - a Debian bookworm base tree made with debootstrap from the mirror apt uses (`debian_base()`);
//! - a minimal busybox-static portable-service image (`portable_image()`).
//!
//! A changed recipe changes the key, so the fixture is rebuilt.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::run::{run, sh};

/// Size of the sparse file holding the btrfs pool.
const POOL_SIZE: &str = "24G";

/// Packages of the Debian base beyond what every `realms appimg import debootstrap:` image
/// has (systemd, dbus, iproute2, ping): nspawn, portablectl and nft for the nested tests.
pub const BASE_PACKAGES: &str = "systemd-container,nftables";
pub const BASE_SUITE: &str = "bookworm";

/// Where the fixtures are cached.
pub fn fixtures_dir() -> PathBuf {
    crate::target_dir().join("realms-fixtures")
}

/// A short content key for a recipe.
pub fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..6])
}

/// The state of the Debian archive that apt last saw (the `Date:` of every `InRelease` under
/// /var/lib/apt/lists; `scripts/setup` runs `apt-get update` first). Fixtures installed from the
/// archive put it in their key, so a cache never outlives the package versions it was built from.
pub fn archive_stamp() -> String {
    let mut dates: Vec<String> = fs::read_dir("/var/lib/apt/lists")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("InRelease"))
        .filter_map(|e| {
            let text = fs::read_to_string(e.path()).ok()?;
            let date = text.lines().find(|l| l.starts_with("Date:"))?.to_string();
            Some(format!("{} {date}", e.file_name().to_string_lossy()))
        })
        .collect();
    dates.sort();
    dates.join("\n")
}

/// Serialises fixture building across the threads of one process and across processes.
pub fn with_fixture_lock<T>(f: impl FnOnce() -> T) -> T {
    static THREADS: Mutex<()> = Mutex::new(());
    let _guard = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = fixtures_dir();
    fs::create_dir_all(&dir).expect("create target/realms-fixtures");
    let lock = fs::File::create(dir.join(".lock")).expect("create the fixture lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock fixtures");
    f()
}

/// The mounted btrfs pool (a sparse loop file under `target/`), mounted on first use.
pub fn pool() -> &'static Path {
    static POOL: OnceLock<PathBuf> = OnceLock::new();
    POOL.get_or_init(|| {
        crate::require::root();
        crate::require::tool("mkfs.btrfs", "btrfs-progs");
        crate::require::filesystem("btrfs");
        with_fixture_lock(|| {
            let dir = fixtures_dir();
            let image = dir.join("pool.img");
            let mnt = dir.join("pool");
            if is_mountpoint(&mnt) {
                return mnt;
            }
            if !image.exists() {
                let tmp = dir.join("pool.img.tmp");
                run(Command::new("truncate").arg("-s").arg(POOL_SIZE).arg(&tmp));
                run(Command::new("mkfs.btrfs").arg("-q").arg(&tmp));
                fs::rename(&tmp, &image).expect("rename the pool image into place");
            }
            fs::create_dir_all(&mnt).expect("create the pool mount point");
            run(Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&mnt));
            mnt
        })
    })
}

/// True if `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| Path::new(&unescape_mountinfo(mp)) == canon)
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The Debian mirror apt itself uses (the first `URIs:` of its sources), never a hard-coded host.
pub fn debian_mirror() -> String {
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    if let Some(uri) = deb822
        .lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .and_then(|v| v.split_whitespace().next())
    {
        return uri.to_string();
    }
    let list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("deb "))
        .find_map(|l| l.split_whitespace().find(|w| w.contains("://")))
        .map(str::to_string)
        .expect("no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list")
}

/// The Debian base tree: a read-only btrfs subvolume in the pool, imported once with
/// `realms appimg import base debootstrap:SUITE:PACKAGES` (so the import is exercised for real).
pub fn debian_base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let pool = pool();
        let mirror = debian_mirror();
        let k = key(&[
            "base-v2",
            BASE_SUITE,
            BASE_PACKAGES,
            &mirror,
            &archive_stamp(),
        ]);
        let root = pool.join(format!("base-{k}"));
        let image = root.join("storage/appimg/base.appimg");
        with_fixture_lock(|| {
            if !image.exists() {
                crate::require::tool("debootstrap", "debootstrap");
                delete_subvolume_tree(&root);
                fs::create_dir_all(&root).unwrap();
                let source = format!(
                    "debootstrap:{BASE_SUITE}:{}",
                    BASE_PACKAGES.replace(' ', "")
                );
                run(Command::new(crate::realms_bin())
                    .arg("--root")
                    .arg(&root)
                    .args(["appimg", "import", "base", &source]));
            }
        });
        image
    })
}

/// Deletes a btrfs subvolume or a plain directory tree, nested subvolumes included.
pub fn delete_subvolume_tree(path: &Path) {
    if !path.exists() {
        return;
    }
    let _ = Command::new("btrfs")
        .args(["property", "set", "-ts"])
        .arg(path)
        .args(["ro", "false"])
        .output();
    let out = Command::new("btrfs")
        .args(["subvolume", "delete", "-R"])
        .arg(path)
        .output();
    if out.map(|o| o.status.success()).unwrap_or(false) {
        return;
    }
    // Not a subvolume (or -R unsupported): delete nested subvolumes by hand, then the tree.
    let list = sh(&format!(
        "find '{}' -xdev -inum 256 -type d 2>/dev/null | sort -r",
        path.display()
    ));
    for sub in list.lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("btrfs")
            .args(["property", "set", "-ts", sub, "ro", "false"])
            .output();
        let _ = Command::new("btrfs")
            .args(["subvolume", "delete", sub])
            .output();
    }
    if path.exists() {
        fs::remove_dir_all(path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }
}

/// The busybox-static portable-service image of the seed (`foo-test`): a directory tree.
///
/// A static busybox, `foo-test.service` (a long-running loop) and `foo-test-oneshot.service`,
/// os-release, an empty resolv.conf and machine-id, and the mount-point directories.
pub fn portable_image() -> &'static Path {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| {
        crate::require::path(
            Path::new("/bin/busybox"),
            "the Debian package busybox-static",
        );
        let busybox = fs::read("/bin/busybox").expect("read /bin/busybox");
        let k = key(&["portable-v1", &hex::encode(Sha256::digest(&busybox))]);
        let dir = fixtures_dir().join(format!("portable-{k}/foo-test"));
        with_fixture_lock(|| {
            if !dir.exists() {
                let build = dir.with_file_name(".build-foo-test");
                let _ = fs::remove_dir_all(&build);
                write_portable_tree(&build, &busybox, "foo-test");
                fs::rename(&build, &dir).expect("rename the portable image into place");
            }
        });
        dir
    })
}

/// Writes the seed's minimal portable image for units with prefix `name` into `dir`.
pub fn write_portable_tree(dir: &Path, busybox: &[u8], name: &str) {
    for d in [
        "usr/bin",
        "usr/lib/systemd/system",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var/tmp",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("usr/bin/busybox"), busybox).unwrap();
    fs::set_permissions(
        dir.join("usr/bin/busybox"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("usr/bin/sh")).unwrap();
    fs::write(
        dir.join("usr/lib/os-release"),
        "ID=foo\nVERSION_ID=1\nPRETTY_NAME=\"Foo Test Portable 1\"\nPORTABLE_PRETTY_NAME=\"Foo Test\"\n",
    )
    .unwrap();
    fs::write(dir.join("etc/resolv.conf"), "").unwrap();
    fs::write(dir.join("etc/machine-id"), "").unwrap();
    let units = dir.join("usr/lib/systemd/system");
    fs::write(
        units.join(format!("{name}.service")),
        "[Unit]\nDescription=Foo test portable service\n\n[Service]\nExecStart=/usr/bin/busybox sh -c 'echo started; while true; do echo alive; /usr/bin/busybox sleep 5; done'\n",
    )
    .unwrap();
    fs::write(
        units.join(format!("{name}-oneshot.service")),
        "[Unit]\nDescription=Foo oneshot\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/busybox sh -c 'echo oneshot ran; /usr/bin/busybox cat /etc/os-release /usr/lib/os-release 2>&1; /usr/bin/busybox ls /'\n",
    )
    .unwrap();
}
