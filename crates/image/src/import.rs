//! `realms appimg import`: a new tree image from a directory, a tarball or debootstrap.

use std::fs;
use std::path::{Path, PathBuf};

use realms_sys::cmd::Cmd;
use realms_sys::{btrfs, root::RootDir};

use crate::store::{ImageInfo, ImageStore, Staged, copy_tree};
use crate::{Error, Result, validate_name};
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
        suite: String,
        packages: Vec<String>,
    },
}

impl Source {
    /// Parses the SOURCE argument of `realms appimg import`.
    pub fn parse(spec: &str) -> Result<Source> {
        let bad = |reason: &str| Error::BadSource {
            source_spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = spec.strip_prefix("debootstrap:") {
            let (suite, packages) = rest.split_once(':').unwrap_or((rest, ""));
            if suite.is_empty() || !suite.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad(
                    "expected debootstrap:SUITE[:PACKAGE,...], e.g. debootstrap:bookworm:vim,curl",
                ));
            }
            let packages: Vec<String> = packages
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(p) = packages.iter().find(|p| !valid_package(p)) {
                return Err(bad(&format!("'{p}' is not a Debian package name")));
            }
            return Ok(Source::Debootstrap {
                suite: suite.to_string(),
                packages,
            });
        }
        let path = PathBuf::from(spec);
        let lower = spec.to_ascii_lowercase();
        if [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz"]
            .iter()
            .any(|s| lower.ends_with(s))
        {
            if !path.is_file() {
                return Err(bad("no such tarball"));
            }
            return Ok(Source::Tarball(path));
        }
        if path.is_dir() {
            return Ok(Source::Dir(path));
        }
        Err(bad(
            "not a directory, a tarball (.tar, .tar.gz, .tar.zst, .tar.xz) or debootstrap:SUITE[:PACKAGE,...]",
        ))
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
            unpack(file, staged.path())?;
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

fn unpack(file: &Path, dest: &Path) -> Result<()> {
    let lower = file.to_string_lossy().to_ascii_lowercase();
    let filter = if lower.ends_with(".gz") || lower.ends_with(".tgz") {
        Some("--gzip")
    } else if lower.ends_with(".zst") {
        Some("--zstd")
    } else if lower.ends_with(".xz") {
        Some("--xz")
    } else {
        None
    };
    let mut cmd = Cmd::new("tar");
    cmd.args([
        "-x",
        "--numeric-owner",
        "--same-permissions",
        "--xattrs",
        "--xattrs-include=*",
    ]);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    cmd.arg("-f").arg(file).arg("-C").arg(dest).run()?;
    Ok(())
}

fn debootstrap(suite: &str, packages: &[String], staged: &Staged) -> Result<()> {
    let mirror = debian_mirror()?;
    let mut include: Vec<&str> = BASE_PACKAGES.to_vec();
    include.extend(packages.iter().map(String::as_str));
    Cmd::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", include.join(",")))
        .arg(suite)
        .arg(staged.path())
        .arg(&mirror)
        .run()?;
    // debootstrap copies the host's hostname; a realm is named after itself instead.
    let hostname = staged.path().join("etc/hostname");
    if hostname.exists() {
        fs::remove_file(&hostname).map_err(|e| Error::io("removing", &hostname, e))?;
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
    let root = RootDir::open(tree)?;
    if !root.exists("usr")? {
        return Err(Error::NotAnOsTree {
            path: tree.to_path_buf(),
            reason: "it has no /usr".into(),
        });
    }
    if !root.exists("etc/os-release")? && !root.exists("usr/lib/os-release")? {
        return Err(Error::NotAnOsTree {
            path: tree.to_path_buf(),
            reason: "it has neither /etc/os-release nor /usr/lib/os-release".into(),
        });
    }
    if root
        .symlink_metadata("etc/machine-id")?
        .is_some_and(|m| m.is_file())
    {
        root.write_atomic("etc/machine-id", b"", 0o444)?;
    }
    Ok(())
}

/// Replaces nested btrfs subvolumes below `dir` by plain directories with the same content.
fn flatten_nested_subvolumes(top: &Path, dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("reading", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("reading", dir, e))?;
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
            reason: format!(
                "no Debian mirror found in {} or {}; configure apt first",
                deb822.display(),
                list.display()
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
