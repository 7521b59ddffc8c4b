//! End-to-end unit tests on temporary directories: publish a repository, apply from it through
//! `file://` into a temporary root, and every refusal.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::apply::{Action, Options, apply, plan};
use crate::fetch::Fetcher;
use crate::index::{self, Entry, Ext};
use crate::install::{self, PORTABLES};
use crate::manifest;
use crate::publish::{Publish, pack, publish};
use crate::state::State;
use crate::unpack::{Limits, unpack_tar};
use crate::{Error, manifest::Stream};

/// A minimal portable-service tree for units prefixed `name`.
pub(crate) fn portable_tree(dir: &Path, name: &str, version: &str) {
    for d in [
        "usr/bin",
        "usr/lib/systemd/system",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(
        dir.join("usr/bin/tool"),
        format!("#!/bin/sh\necho {version}\n"),
    )
    .unwrap();
    fs::set_permissions(dir.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/usr/bin/tool", dir.join("usr/bin/sh")).unwrap();
    fs::write(
        dir.join("usr/lib/os-release"),
        format!("ID=test\nVERSION_ID={version}\nPORTABLE_PRETTY_NAME={name}\n"),
    )
    .unwrap();
    fs::write(
        dir.join(format!("usr/lib/systemd/system/{name}.service")),
        "[Service]\nExecStart=/usr/bin/tool\n\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
}

pub(crate) struct Repo {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) repo: PathBuf,
    pub(crate) key: ed25519_dalek::SigningKey,
}

impl Repo {
    pub(crate) fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let repo = dir.path().join("repo");
        fs::create_dir_all(&root).unwrap();
        let (private, _) = realms_image::keys::generate(&root, "repo").unwrap();
        let key = realms_image::keys::load_private(&private).unwrap();
        Repo {
            _dir: dir,
            root,
            repo,
            key,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("file://{}", self.repo.display())
    }

    pub(crate) fn publish(&self, files: &[PathBuf], serial: Option<u64>, valid_for: u64) {
        publish(
            &Publish {
                repo: self.repo.to_str().unwrap(),
                arch: index::host_arch(),
                stream: Stream::Stable,
                valid_for,
                serial,
            },
            files,
            &self.key,
        )
        .unwrap();
    }

    pub(crate) fn package(&self, name: &str, version: &str) -> PathBuf {
        let src = self._dir.path().join(format!("src-{name}-{version}"));
        portable_tree(&src, name, version);
        let out = self._dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        pack(&src, name, version, crate::index::Ext::TarZst, &out).unwrap()
    }

    pub(crate) fn manifest(&self, body: &str) -> manifest::Manifest {
        let m = self._dir.path().join("provision.yaml");
        fs::write(
            &m,
            format!(
                "composable:\n  default_repository: {}\n  packages:\n{body}",
                self.url()
            ),
        )
        .unwrap();
        manifest::load(&self.root, Some(&m)).unwrap()
    }

    pub(crate) fn apply(
        &self,
        m: &manifest::Manifest,
        prune: bool,
    ) -> crate::Result<Vec<crate::apply::Step>> {
        let opts = Options { prune, arch: None };
        apply(&self.root, m, &Fetcher::default(), &opts, &mut |_| {})
    }

    pub(crate) fn portables(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.root.join(PORTABLES))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn actions(steps: &[crate::apply::Step]) -> Vec<(String, Action)> {
    steps
        .iter()
        .map(|s| (s.package.clone(), s.action))
        .collect()
}

#[test]
fn apply_installs_attaches_and_a_second_apply_changes_nothing() {
    let r = Repo::new();
    let files = [
        r.package("foo", "1"),
        r.package("foo", "2"),
        r.package("bar", "1.0"),
        r.package("bar", "1.1"),
    ];
    r.publish(&files, None, 3600);
    let sums = fs::read_to_string(r.repo.join(index::host_arch()).join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 4, "{sums}");
    assert!(sums.contains("  foo_2.tar.zst\n"), "{sums}");
    let m = r.manifest(
        "    - name: foo\n      version: '1'\n    - name: bar\n      profile: nonetwork\n",
    );
    let steps = r.apply(&m, false).unwrap();
    assert_eq!(
        actions(&steps),
        [
            ("foo".into(), Action::Install),
            ("bar".into(), Action::Install)
        ]
    );
    assert_eq!(
        steps[1].version.as_deref(),
        Some("1.1"),
        "latest is the highest"
    );
    assert_eq!(r.portables(), ["bar_1.1", "foo_1"]);
    let tree = r.root.join(PORTABLES).join("foo_1");
    assert_eq!(
        fs::read_link(tree.join("usr/bin/sh")).unwrap(),
        Path::new("../../usr/bin/tool"),
        "pack made the absolute link relative"
    );
    assert!(
        r.root
            .join("etc/systemd/system.attached/foo.service")
            .exists()
    );
    let state = State::load(&r.root).unwrap();
    assert_eq!(state.packages["bar"].profile, "nonetwork");
    assert_eq!(state.serials.values().copied().collect::<Vec<_>>(), [1]);
    let again = r.apply(&m, false).unwrap();
    assert!(
        again.iter().all(|s| s.action == Action::Unchanged),
        "{again:?}"
    );

    // An upgrade, then pruning.
    let m2 = r.manifest("    - name: foo\n      version: latest\n");
    let steps = r.apply(&m2, false).unwrap();
    assert_eq!(
        actions(&steps),
        [
            ("foo".into(), Action::Upgrade),
            ("bar".into(), Action::Keep)
        ]
    );
    assert_eq!(r.portables(), ["bar_1.1", "foo_2"]);
    let steps = r.apply(&m2, true).unwrap();
    assert_eq!(
        actions(&steps),
        [
            ("foo".into(), Action::Unchanged),
            ("bar".into(), Action::Remove)
        ]
    );
    assert_eq!(r.portables(), ["foo_2"]);
    assert!(
        !r.root
            .join("etc/systemd/system.attached/bar.service")
            .exists()
    );
}

fn refused(r: &Repo, m: &manifest::Manifest) -> Error {
    let e = r.apply(m, false).unwrap_err();
    assert!(r.portables().is_empty(), "{e}: left {:?}", r.portables());
    let attached = r.root.join("etc/systemd/system.attached");
    assert!(
        fs::read_dir(&attached)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "{e}: something attached"
    );
    e
}

#[test]
fn index_faults_are_refused_with_nothing_installed() {
    let r = Repo::new();
    let foo = r.package("foo", "1");
    let m = r.manifest("    - name: foo\n");
    let arch = r.repo.join(index::host_arch());

    // Unsigned.
    r.publish(std::slice::from_ref(&foo), Some(5), 3600);
    fs::rename(arch.join("index.stable.5.sig"), arch.join("sig")).unwrap();
    assert!(matches!(refused(&r, &m), Error::Unsigned { .. }));
    // Bad signature.
    let mut sig = fs::read_to_string(arch.join("sig")).unwrap();
    let at = sig.find("signature = \"").unwrap() + 14;
    sig.replace_range(at..at + 1, if &sig[at..at + 1] == "0" { "1" } else { "0" });
    fs::write(arch.join("index.stable.5.sig"), sig).unwrap();
    assert!(matches!(refused(&r, &m), Error::BadSignature { .. }));
    // Expired.
    r.publish(std::slice::from_ref(&foo), Some(6), 0);
    assert!(matches!(refused(&r, &m), Error::Expired { .. }));
    // A version the index does not list.
    r.publish(std::slice::from_ref(&foo), Some(7), 3600);
    let m9 = r.manifest("    - name: foo\n      version: '9'\n");
    let e = refused(&r, &m9);
    assert!(
        matches!(e, Error::NotListed { .. }) && e.to_string().contains("listed: 1"),
        "{e}"
    );
    // A lower serial after 7 was seen.
    r.publish(std::slice::from_ref(&foo), Some(3), 3600);
    assert!(matches!(
        refused(&r, &m),
        Error::OlderIndex {
            serial: 3,
            seen: 7,
            ..
        }
    ));
}

#[test]
fn a_corrupted_package_or_wrong_hash_is_refused() {
    let r = Repo::new();
    let foo = r.package("foo", "1");
    r.publish(std::slice::from_ref(&foo), None, 3600);
    let m = r.manifest("    - name: foo\n");
    let file = r.repo.join(index::host_arch()).join("foo_1.tar.zst");
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    let e = refused(&r, &m);
    assert!(
        matches!(e, Error::Integrity { .. }) && e.to_string().contains("SHA-256"),
        "{e}"
    );
    assert!(
        fs::read_dir(r.root.join(install::CACHE))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains("foo_1")),
        "a bad download is not cached"
    );
}

/// Regression: a package file shorter than the index states was reported as a cut download
/// that the next try resumes (past the file's end); it is a wrong file.
#[test]
fn regression_a_short_package_file_is_refused_as_a_wrong_file_not_resumed() {
    let r = Repo::new();
    let foo = r.package("foo", "1");
    r.publish(std::slice::from_ref(&foo), None, 3600);
    let m = r.manifest("    - name: foo\n");
    let file = r.repo.join(index::host_arch()).join("foo_1.tar.zst");
    let mut bytes = fs::read(&file).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&file, &bytes).unwrap();
    let e = refused(&r, &m);
    assert!(
        matches!(e, Error::Integrity { .. }) && e.to_string().contains("but the index states"),
        "{e}"
    );
}

/// A tar header for `path` written byte for byte (the tar crate refuses to write `..`).
fn raw_header(path: &str, kind: tar::EntryType, size: u64, mode: u32, link: &str) -> tar::Header {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_cksum();
    h
}

/// A tar of `entries`: (path, type, contents or link target, mode).
pub(crate) fn hostile_tar(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in entries {
        let (size, link, body) = match kind {
            tar::EntryType::Regular => (data.len() as u64, "", data.as_bytes()),
            _ => (0, *data, &b""[..]),
        };
        b.append(&raw_header(path, *kind, size, *mode, link), body)
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// Every hostile tarball of the issue, by name.
pub(crate) fn hostile_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    use tar::EntryType::*;
    vec![
        (
            "traversal",
            hostile_tar(&[("../evil", Regular, "x", 0o644)]),
            "'..'",
        ),
        (
            "absolute-path",
            hostile_tar(&[("/etc/evil", Regular, "x", 0o644)]),
            "absolute path",
        ),
        (
            "absolute-symlink",
            hostile_tar(&[("etc/link", Symlink, "/etc/shadow", 0o777)]),
            "absolute path",
        ),
        (
            "relative-escape",
            hostile_tar(&[("etc/link", Symlink, "../../x", 0o777)]),
            "outside the image",
        ),
        (
            "symlink-then-write",
            hostile_tar(&[("d", Symlink, "usr", 0o777), ("d/x", Regular, "x", 0o644)]),
            "written through the symlink",
        ),
        (
            "hardlink-escape",
            hostile_tar(&[("h", Link, "../../etc/passwd", 0o644)]),
            "hardlink",
        ),
        (
            "hardlink-absolute",
            hostile_tar(&[("h", Link, "/etc/passwd", 0o644)]),
            "hardlink",
        ),
        (
            "device-node",
            hostile_tar(&[("dev/sda", Block, "", 0o600)]),
            "device node",
        ),
        (
            "char-device",
            hostile_tar(&[("dev/mem", Char, "", 0o600)]),
            "device node",
        ),
        ("fifo", hostile_tar(&[("fifo", Fifo, "", 0o600)]), "FIFO"),
        (
            "setuid",
            hostile_tar(&[("usr/bin/su", Regular, "x", 0o4755)]),
            "setuid",
        ),
        (
            "setgid",
            hostile_tar(&[("usr/bin/sg", Regular, "x", 0o2755)]),
            "setuid or setgid",
        ),
    ]
}

#[test]
fn every_hostile_tarball_is_refused() {
    for (name, tar, says) in hostile_cases() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            installed_size: 1 << 20,
            allow_setuid: false,
        };
        let e = unpack_tar("p_1.tar", &tar[..], dir.path(), &limits).unwrap_err();
        assert!(
            matches!(e, Error::Hostile { .. }) && e.to_string().contains(says),
            "{name}: {e}"
        );
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }
}

#[test]
fn setuid_is_kept_under_trusted_and_sizes_are_bounded() {
    let tar = hostile_tar(&[("su", tar::EntryType::Regular, "xyz", 0o4755)]);
    let dir = tempfile::tempdir().unwrap();
    let trusted = Limits {
        installed_size: 3,
        allow_setuid: true,
    };
    unpack_tar("p_1.tar", &tar[..], dir.path(), &trusted).unwrap();
    let mode = fs::metadata(dir.path().join("su"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755);
    let small = Limits {
        installed_size: 2,
        allow_setuid: true,
    };
    let dir = tempfile::tempdir().unwrap();
    let e = unpack_tar("p_1.tar", &tar[..], dir.path(), &small).unwrap_err();
    assert!(e.to_string().contains("larger than the 2 bytes"), "{e}");
}

#[test]
fn a_hostile_package_in_a_signed_repository_installs_nothing() {
    let r = Repo::new();
    let out = r._dir.path().join("hostile");
    fs::create_dir_all(&out).unwrap();
    let file = out.join("foo_1.tar");
    fs::write(
        &file,
        hostile_tar(&[
            ("etc", tar::EntryType::Symlink, "usr", 0o777),
            ("etc/passwd", tar::EntryType::Regular, "x", 0o644),
        ]),
    )
    .unwrap();
    r.publish(&[file], None, 3600);
    let e = refused(&r, &r.manifest("    - name: foo\n"));
    assert!(matches!(e, Error::Hostile { .. }), "{e}");
}

#[test]
fn plan_says_what_apply_would_do_and_changes_nothing() {
    let r = Repo::new();
    r.publish(&[r.package("foo", "1")], None, 3600);
    let m = r.manifest("    - name: foo\n");
    let mut state = State::load(&r.root).unwrap();
    let steps = plan(
        &r.root,
        &m,
        &Fetcher::default(),
        &Options::default(),
        &mut state,
    )
    .unwrap();
    assert_eq!(actions(&steps), [("foo".into(), Action::Install)]);
    assert!(r.portables().is_empty());
    let e: Entry = index::parse(
        "x",
        &fs::read(r.repo.join(index::host_arch()).join("index.stable.json")).unwrap(),
    )
    .unwrap()
    .packages["foo"][0]
        .clone();
    assert_eq!(Ext::of(&e.file, "foo", "1"), Some(Ext::TarZst));
}

#[test]
fn the_inbox_installs_with_profile_and_user_and_files_refusals() {
    let r = Repo::new();
    let pkg = r.package("svcpkg", "1");
    fs::create_dir_all(r.root.join("etc")).unwrap();
    fs::write(
        r.root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nsvc:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    let inbox = r.root.join(crate::inbox::INBOX);
    for (profile, user) in [("strict", "svc"), ("strict", "root"), ("default", "nobody")] {
        let dir = inbox.join(profile).join(user);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(&pkg, dir.join("svcpkg_1.tar.zst")).unwrap();
    }
    fs::write(inbox.join("strict/svc/junk.txt"), "x").unwrap();
    let done = crate::inbox::process(&r.root, &realms_sys::event::Silent).unwrap();
    let ok: Vec<bool> = done.iter().map(|d| d.installed).collect();
    assert_eq!(ok, [false, false, false, true], "{done:?}");
    assert!(inbox.join(".done/svcpkg_1.tar.zst").exists());
    let err = fs::read_to_string(inbox.join(".failed/svcpkg_1.tar.zst.error")).unwrap();
    assert!(
        err.contains("root only under the trusted profile") || err.contains("no user 'nobody'"),
        "{err}"
    );
    assert!(
        fs::read_to_string(inbox.join(".failed/junk.txt.error"))
            .unwrap()
            .contains("NAME_VERSION")
    );
    assert_eq!(r.portables(), ["svcpkg_1"]);
    let dropin = r
        .root
        .join("etc/systemd/system.attached/svcpkg.service.d")
        .join(crate::portable::USER_DROPIN);
    assert_eq!(fs::read_to_string(dropin).unwrap(), "[Service]\nUser=svc\n");
    let state = State::load(&r.root).unwrap();
    assert_eq!(state.packages["svcpkg"].profile, "strict");
    // An apply neither lists nor prunes inbox packages.
    r.publish(&[r.package("foo", "1")], None, 3600);
    let steps = r.apply(&r.manifest("    - name: foo\n"), true).unwrap();
    assert_eq!(actions(&steps), [("foo".into(), Action::Install)]);
    assert!(r.portables().contains(&"svcpkg_1".to_string()));
}

/// Found by the kill test (tests/host/provision/kill.rs): apply killed inside an atomic write
/// of the cached index or the state left its temporary file, and no later apply removed it.
#[test]
fn temporary_files_of_a_killed_apply_are_removed_by_the_next_apply() {
    let r = Repo::new();
    let files = [r.package("foo", "1")];
    r.publish(&files, None, 3600);
    let m = r.manifest("    - name: foo\n");
    r.apply(&m, false).unwrap();
    let index_dirs: Vec<PathBuf> = fs::read_dir(r.root.join(crate::install::CACHE).join("index"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(index_dirs.len(), 1);
    let left = [
        index_dirs[0].join(".#index.sig.new.0123456789"),
        r.root
            .join(crate::state::DIR)
            .join(".#state.json.abcdef0123"),
        r.root.join(crate::install::CACHE).join(".#x.0a0a0a0a0a"),
    ];
    for f in &left {
        fs::write(f, "half").unwrap();
    }
    let keep = r.root.join(crate::state::DIR).join(".#rootfs.lck");
    fs::write(&keep, "").unwrap();
    let steps = r.apply(&m, false).unwrap();
    assert_eq!(actions(&steps), [("foo".into(), Action::Unchanged)]);
    for f in &left {
        assert!(!f.exists(), "{} is left", f.display());
    }
    assert!(keep.exists(), "not a temporary name of ours, yet removed");
}

/// Found by the kill test: apply killed after attaching an image but before saving the state
/// left the image attached and unrecorded, and the next apply refused ("Unit file ... exists on
/// the host already").
#[test]
fn an_image_attached_by_a_killed_apply_is_attached_again_not_refused() {
    let r = Repo::new();
    let files = [r.package("foo", "1")];
    r.publish(&files, None, 3600);
    let m = r.manifest("    - name: foo\n");
    r.apply(&m, false).unwrap();
    // What the kill leaves: attached, but not in state.json.
    let mut state = crate::state::State::load(&r.root).unwrap();
    state.packages.clear();
    state.save(&r.root).unwrap();
    let steps = r.apply(&m, false).unwrap();
    assert_eq!(actions(&steps), [("foo".into(), Action::Install)]);
    let steps = r.apply(&m, false).unwrap();
    assert_eq!(actions(&steps), [("foo".into(), Action::Unchanged)]);
}

#[test]
fn exported_commands_follow_their_package_through_apply_repair_upgrade_and_prune() {
    let r = Repo::new();
    r.publish(&[r.package("foo", "1"), r.package("foo", "2")], None, 3600);
    let cmd = r.root.join(crate::export::BIN_DIR).join("tool");
    let m1 = r.manifest("    - name: foo\n      version: '1'\n      export: [tool]\n");
    assert_eq!(
        actions(&r.apply(&m1, false).unwrap()),
        [("foo".into(), Action::Install)]
    );
    let text = fs::read_to_string(&cmd).unwrap();
    assert!(
        text.contains("RootDirectory=/var/lib/portables/foo_1'")
            && text.contains("'/usr/bin/tool'"),
        "{text}"
    );
    assert_eq!(
        State::load(&r.root).unwrap().packages["foo"].exports,
        ["tool"]
    );
    // A command gone missing is repaired.
    fs::remove_file(&cmd).unwrap();
    let mut state = State::load(&r.root).unwrap();
    let steps = plan(
        &r.root,
        &m1,
        &Fetcher::default(),
        &Options::default(),
        &mut state,
    )
    .unwrap();
    assert_eq!(actions(&steps), [("foo".into(), Action::Repair)]);
    r.apply(&m1, false).unwrap();
    assert!(cmd.exists());
    // A file realms did not write: refused by path before anything changes.
    let other = r.root.join(crate::export::BIN_DIR).join("sh");
    fs::write(&other, "#!/bin/sh\necho mine\n").unwrap();
    let m2 = r.manifest("    - name: foo\n      version: '2'\n      export: [tool, sh]\n");
    let e = r.apply(&m2, false).unwrap_err().to_string();
    assert!(e.contains(&other.display().to_string()), "{e}");
    assert_eq!(r.portables(), ["foo_1"]);
    assert!(
        cmd.exists()
            && r.root
                .join("etc/systemd/system.attached/foo.service")
                .exists()
    );
    assert_eq!(
        fs::read_to_string(&other).unwrap(),
        "#!/bin/sh\necho mine\n"
    );
    // The upgrade rewrites the command for the new image.
    fs::remove_file(&other).unwrap();
    let m3 = r.manifest("    - name: foo\n      version: '2'\n      export: [tool]\n");
    assert_eq!(
        actions(&r.apply(&m3, false).unwrap()),
        [("foo".into(), Action::Upgrade)]
    );
    assert!(
        fs::read_to_string(&cmd)
            .unwrap()
            .contains("/var/lib/portables/foo_2'")
    );
    // Dropping the export alone is an upgrade that removes the command.
    let m4 = r.manifest("    - name: foo\n      version: '2'\n");
    r.apply(&m4, false).unwrap();
    assert!(!cmd.exists());
    r.apply(&m3, false).unwrap();
    assert!(cmd.exists());
    // A prune removes it with the package.
    r.apply(&r.manifest("    []\n"), true).unwrap();
    assert!(!cmd.exists());
    assert!(r.portables().is_empty());
}
