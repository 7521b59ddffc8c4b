//! A flat Debian repository made on the spot (`deb [trusted=yes] http://HOST/ ./`), holding
//! small packages built with dpkg-deb: what `apt-get install` in a realm fetches in tests,
//! instead of a mirror beyond this machine.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::run::run;

/// Builds package `name` (version 1.0-local, Architecture: all) holding `/usr/bin/NAME`, a
/// script that prints "NAME from the local test repository", into `repo`, and rewrites
/// `repo/Packages` to list every .deb there.
pub fn add_package(repo: &Path, name: &str) {
    crate::require::tool("dpkg-deb", "dpkg");
    let build = repo.join(format!(".build-{name}"));
    let bin = build.join("usr/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(build.join("DEBIAN")).unwrap();
    let script = bin.join(name);
    fs::write(
        &script,
        format!("#!/bin/sh\necho '{name} from the local test repository'\n"),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        build.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0-local\nArchitecture: all\nMaintainer: Realms tests <tests@localhost>\n\
             Description: {name} stand-in for the Realms tests\n"
        ),
    )
    .unwrap();
    let deb = repo.join(format!("{name}_1.0-local_all.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&build)
        .arg(&deb));
    fs::remove_dir_all(&build).unwrap();
    write_index(repo);
}

fn write_index(repo: &Path) {
    let mut index = String::new();
    let mut debs: Vec<_> = fs::read_dir(repo)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    for deb in debs {
        let out = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
        let bytes = fs::read(&deb).unwrap();
        index.push_str(String::from_utf8_lossy(&out.stdout).trim_end());
        let _ = write!(
            index,
            "\nFilename: ./{}\nSize: {}\nSHA256: {}\n\n",
            deb.file_name().unwrap().to_string_lossy(),
            bytes.len(),
            hex::encode(Sha256::digest(&bytes))
        );
    }
    fs::write(repo.join("Packages"), index).unwrap();
}
