//! `realms appimg import`: a new tree image from a directory, a tarball or debootstrap.

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};

use realms_sys::cmd::Cmd;
use realms_sys::{btrfs, root::RootDir};

use crate::store::{ImageInfo, ImageStore, Staged, copy_tree};
use crate::{Error, OsTreeProblem, Result, SourceProblem, validate_name};
use realms_sys::event::{Event, Report};

/// Packages every debootstrap image gets: a bootable systemd userland with networking tools.
pub const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "iputils-ping",
];

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory holding an OS tree (copied, sharing extents where possible).
    Dir(PathBuf),
    /// A tarball of an OS tree: `.tar`, `.tar.gz`/`.tgz`, `.tar.zst`, `.tar.xz`.
    Tarball(PathBuf),
    /// `debootstrap:SUITE[:PACKAGE,...]`, built from the Debian mirror apt uses.
    Debootstrap {
        /// The Debian suite (`bookworm`).
        suite: String,
        /// Packages to install beyond the base system.
        packages: Vec<String>,
    },
}

impl Source {
    /// Parses the SOURCE argument of `realms appimg import`: any path the OS accepts, UTF-8 or
    /// not, or `debootstrap:...`.
    pub fn parse(spec: impl AsRef<std::ffi::OsStr>) -> Result<Source> {
        let spec_os = spec.as_ref();
        let shown = spec_os.to_string_lossy();
        let bad = |reason: SourceProblem| Error::BadSource {
            source_spec: shown.to_string(),
            reason,
        };
        if let Some(rest) = spec_os
            .to_str()
            .and_then(|s| s.strip_prefix("debootstrap:"))
        {
            let (suite, packages) = rest.split_once(':').unwrap_or((rest, ""));
            if suite.is_empty() || !suite.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad(SourceProblem::DebootstrapSyntax));
            }
            let packages: Vec<String> = packages
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(p) = packages.iter().find(|p| !valid_package(p)) {
                return Err(bad(SourceProblem::PackageName(p.clone())));
            }
            return Ok(Source::Debootstrap {
                suite: suite.to_string(),
                packages,
            });
        }
        let path = PathBuf::from(spec_os);
        let lower = shown.to_ascii_lowercase();
        if [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz"]
            .iter()
            .any(|s| lower.ends_with(s))
        {
            if !path.is_file() {
                return Err(bad(SourceProblem::NoTarball));
            }
            return Ok(Source::Tarball(path));
        }
        if path.is_dir() {
            return Ok(Source::Dir(path));
        }
        Err(bad(SourceProblem::Unknown))
    }
}

fn valid_package(p: &str) -> bool {
    p.len() >= 2
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Imports `source` as the new tree image `name`; nothing appears under that name unless the
/// whole import succeeds.
pub fn import(
    store: &ImageStore,
    name: &str,
    source: &Source,
    progress: &dyn Report,
) -> Result<ImageInfo> {
    validate_name("image", name)?;
    let dest = store.path(name);
    if dest.exists() {
        return Err(Error::Exists {
            name: name.to_string(),
            path: dest,
        });
    }
    let staged = store.stage_empty(name)?;
    realms_sys::failpoint::hit("image-import-staging");
    match source {
        Source::Dir(dir) => {
            progress.report(Event::progress(format!("copying {}", dir.display())));
            copy_into(dir, staged.path())?;
        }
        Source::Tarball(file) => {
            progress.report(Event::progress(format!("unpacking {}", file.display())));
            unpack(file, staged.path(), progress)?;
        }
        Source::Debootstrap { suite, packages } => {
            progress.report(Event::progress(format!(
                "running debootstrap {suite} (this takes a minute)"
            )));
            debootstrap(suite, packages, &staged)?;
        }
    }
    realms_sys::failpoint::hit("image-import-unpacked");
    progress.report(Event::progress("checking the tree"));
    for node in remove_device_nodes(staged.path())? {
        progress.report(Event::warning(format!(
            "left out the device node '{}': a realm gets its own /dev",
            node.display()
        )));
    }
    prepare_tree(staged.path())?;
    realms_sys::failpoint::hit("image-import-prepared");
    store.commit_new(staged, name)?;
    store.get(name)
}

fn copy_into(src: &Path, dest: &Path) -> Result<()> {
    Cmd::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(src.join("."))
        .arg(dest)
        .run()?;
    Ok(())
}

/// Unpacks a tarball with the shared safe unpacker ([`crate::unpack`]): never GNU tar as root.
/// The files may take at most the space free on the store's filesystem (a 1 TiB sparse entry is
/// refused from its header); device nodes are left out (nspawn gives a realm its own /dev).
fn unpack(file: &Path, dest: &Path, progress: &dyn Report) -> Result<()> {
    let free = rustix::fs::statvfs(dest)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .ctx("inspecting the filesystem of", dest)?;
    let policy = crate::unpack::Policy::os_tree(free);
    let r = crate::unpack::open_archive(file)?;
    let done = crate::unpack::unpack_tar(&file.display().to_string(), r, dest, &policy)?;
    for (entry, why) in &done.skipped {
        progress.report(Event::warning(format!(
            "{}: left out '{}', which {why}",
            file.display(),
            entry.display()
        )));
    }
    Ok(())
}

fn debootstrap(suite: &str, packages: &[String], staged: &Staged) -> Result<()> {
    let mirror = debian_mirror()?;
    let mut include: Vec<&str> = BASE_PACKAGES.to_vec();
    include.extend(packages.iter().map(String::as_str));
    // debootstrap is a shell script whose children (wget, ar, tar, dpkg in a chroot) would
    // outlive it, and it mounts /proc and /sys inside the tree. In a PID and mount namespace of
    // its own, whose init `unshare` kills when it dies (it dies with us): killed, we leave
    // nothing writing into the staging tree and nothing mounted in it.
    Cmd::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--propagation",
            "private",
            "--",
            "debootstrap",
        ])
        .arg("--variant=minbase")
        .arg(format!("--include={}", include.join(",")))
        .arg(suite)
        .arg(staged.path())
        .arg(&mirror)
        .run()?;
    realms_sys::failpoint::hit("image-import-debootstrapped");
    // debootstrap copies the host's hostname; a realm is named after itself instead.
    let hostname = staged.path().join("etc/hostname");
    if hostname.exists() {
        fs::remove_file(&hostname).ctx("removing", &hostname)?;
    }
    // The realm user whose home is /realms/realm-NAME/home.
    Cmd::new("chroot")
        .arg(staged.path())
        .args([
            "useradd",
            "--create-home",
            "--uid",
            "1000",
            "--user-group",
            "--shell",
            "/bin/bash",
            "user",
        ])
        .run()?;
    Ok(())
}

/// Makes a populated tree fit to be an image: no nested subvolumes (snapshots would hold empty
/// stubs in their place), an empty machine-id, and an os-release.
fn prepare_tree(tree: &Path) -> Result<()> {
    flatten_nested_subvolumes(tree, tree)?;
    realms_sys::perms::settle_image_root(tree)?;
    let root = RootDir::open(tree)?;
    if !root.exists("usr")? {
        return Err(Error::NotAnOsTree {
            path: tree.to_path_buf(),
            reason: OsTreeProblem::NoUsr,
        });
    }
    let Some(os_release) = ["etc/os-release", "usr/lib/os-release"]
        .into_iter()
        .find(|p| root.exists(p).unwrap_or(false))
    else {
        return Err(Error::NotAnOsTree {
            path: tree.to_path_buf(),
            reason: OsTreeProblem::NoOsRelease,
        });
    };
    // Bounded: a FIFO, a device or a huge sparse os-release is an error naming it, not a hang.
    root.read_capped(os_release, realms_sys::untrusted::TEXT_CAP)?;
    if root
        .symlink_metadata("etc/machine-id")?
        .is_some_and(|m| m.is_file())
    {
        root.write_atomic("etc/machine-id", b"", 0o444)?;
    }
    Ok(())
}

/// Removes the character and block device nodes of a copied tree (an OS tree for nspawn needs
/// none, and one would be a way to the host's devices); returns them, relative to `tree`.
fn remove_device_nodes(tree: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::FileTypeExt;
    let mut removed = Vec::new();
    let mut dirs = vec![tree.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(&dir).ctx("reading", &dir)?;
        for entry in entries {
            let entry = entry.ctx("reading", &dir)?;
            let Ok(ft) = entry.file_type() else { continue };
            let path = entry.path();
            if ft.is_dir() {
                dirs.push(path);
            } else if ft.is_char_device() || ft.is_block_device() {
                fs::remove_file(&path).ctx("removing", &path)?;
                removed.push(path.strip_prefix(tree).unwrap_or(&path).to_path_buf());
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// Replaces nested btrfs subvolumes below `dir` by plain directories with the same content.
fn flatten_nested_subvolumes(top: &Path, dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).ctx("reading", dir)?;
    for entry in entries {
        let entry = entry.ctx("reading", dir)?;
        let Ok(ft) = entry.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let path = entry.path();
        if path != top && btrfs::is_subvolume(&path).unwrap_or(false) {
            let plain = dir.join(format!(".flatten-{}", entry.file_name().to_string_lossy()));
            copy_tree(&path, &plain)?;
            btrfs::delete_subvolume_recursive(&path)?;
            realms_sys::atomic::rename(&plain, &path)?;
        } else {
            flatten_nested_subvolumes(top, &path)?;
        }
    }
    Ok(())
}

/// The Debian mirror apt itself uses: the first `URIs:` of its deb822 sources, or the first
/// `deb` line of sources.list.
pub fn debian_mirror() -> Result<String> {
    let deb822 = Path::new("/etc/apt/sources.list.d/debian.sources");
    if let Ok(text) = fs::read_to_string(deb822)
        && let Some(uri) = text
            .lines()
            .find_map(|l| l.strip_prefix("URIs:"))
            .and_then(|v| v.split_whitespace().next())
    {
        return Ok(uri.to_string());
    }
    let list = Path::new("/etc/apt/sources.list");
    let text = fs::read_to_string(list).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("deb "))
        .find_map(|l| l.split_whitespace().find(|w| w.contains("://")))
        .map(str::to_string)
        .ok_or_else(|| Error::BadSource {
            source_spec: "debootstrap".into(),
            reason: SourceProblem::NoMirror {
                deb822: deb822.to_path_buf(),
                list: list.to_path_buf(),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source tree whose `etc/os-release` is made by `make`.
    fn hostile_os_release(make: impl Fn(&Path)) -> (tempfile::TempDir, ImageStore, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("usr")).unwrap();
        fs::create_dir_all(src.join("etc")).unwrap();
        make(&src.join("etc/os-release"));
        let store = ImageStore::open(&tmp.path().join("root")).unwrap();
        (tmp, store, src)
    }

    /// `mknod PATH ARGS...` (`p` for a FIFO, `c 1 5` for /dev/zero's numbers).
    fn mknod(path: &Path, args: &[&str]) {
        let st = std::process::Command::new("mknod")
            .arg(path)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn import_err(store: &ImageStore, src: &Path) -> String {
        let started = std::time::Instant::now();
        let e = import(
            store,
            "hostile",
            &Source::Dir(src.into()),
            &realms_sys::event::Silent,
        )
        .unwrap_err()
        .to_string();
        assert!(
            started.elapsed().as_secs() < 20,
            "took {:?}",
            started.elapsed()
        );
        assert!(
            !store.path("hostile").exists(),
            "a refused import left an image"
        );
        assert!(e.len() < 400, "{e}");
        e
    }

    #[test]
    fn os_release_fifo_hangs_import_and_list() {
        let (_t, store, src) = hostile_os_release(|p| mknod(p, &["p"]));
        let e = import_err(&store, &src);
        assert!(e.contains("etc/os-release") && e.contains("FIFO"), "{e}");
        // A tree image already in the store with such an os-release lists without a name.
        store
            .commit_new(
                {
                    let staged = store.stage_empty("fifo").unwrap();
                    fs::create_dir_all(staged.path().join("etc")).unwrap();
                    mknod(&staged.path().join("etc/os-release"), &["p"]);
                    staged
                },
                "fifo",
            )
            .unwrap();
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].os, None);
    }

    #[test]
    fn os_release_dev_zero_is_read_until_allocation_fails() {
        // The node is left out of the tree (as every device node), which then has no os-release;
        // a tree already in the store with such a node is read bounded (sys::root tests).
        let (_t, store, src) = hostile_os_release(|p| mknod(p, &["c", "1", "5"]));
        let e = import_err(&store, &src);
        assert!(e.contains("etc/os-release"), "{e}");
    }

    #[test]
    fn os_release_sparse_3gib_takes_9gb_and_a_6gb_message() {
        let (_t, store, src) =
            hostile_os_release(|p| fs::File::create(p).unwrap().set_len(3 << 30).unwrap());
        let e = import_err(&store, &src);
        assert!(
            e.contains("etc/os-release") && e.contains("longer than"),
            "{e}"
        );
    }

    #[test]
    fn parses_sources() {
        assert_eq!(
            Source::parse("debootstrap:bookworm:vim,curl").unwrap(),
            Source::Debootstrap {
                suite: "bookworm".into(),
                packages: vec!["vim".into(), "curl".into()]
            }
        );
        assert_eq!(
            Source::parse("debootstrap:trixie").unwrap(),
            Source::Debootstrap {
                suite: "trixie".into(),
                packages: vec![]
            }
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Source::parse(dir.path().to_str().unwrap()).unwrap(),
            Source::Dir(dir.path().into())
        );
        let tar = dir.path().join("x.tar.zst");
        fs::write(&tar, b"").unwrap();
        assert_eq!(
            Source::parse(tar.to_str().unwrap()).unwrap(),
            Source::Tarball(tar)
        );
    }

    #[test]
    fn appimg_import_refuses_a_non_utf8_source_path() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        fs::create_dir(&tree).unwrap();
        assert_eq!(
            Source::parse(tree.as_os_str()).unwrap(),
            Source::Dir(tree.clone())
        );
        let tar = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9.tar"));
        fs::write(&tar, b"").unwrap();
        assert_eq!(Source::parse(&tar).unwrap(), Source::Tarball(tar));
    }

    #[test]
    fn rejects_bad_sources_with_the_reason() {
        for (spec, needle) in [
            ("debootstrap:", "debootstrap:SUITE"),
            ("debootstrap:bookworm:Bad_Pkg", "not a Debian package name"),
            ("/nonexistent.tar.gz", "no such tarball"),
            ("/nonexistent/dir", "not a directory"),
        ] {
            let err = Source::parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
            assert!(err.contains(spec), "{spec}: {err}");
        }
    }
}
