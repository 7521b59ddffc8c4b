//! btrfs on a loop file: subvolumes, snapshots (rw/ro), read-only flag, (recursive) deletion.

use realms_sys::btrfs;
use realms_sys::mount;

use crate::common::{Btrfs, errno};

#[test]
fn subvolumes_and_snapshots() {
    let fs = Btrfs::new("btrfs-snap");
    let m = fs.root().to_owned();
    assert!(btrfs::is_btrfs(&m).unwrap());
    assert!(
        btrfs::is_subvolume(&m).unwrap(),
        "the top level is a subvolume"
    );

    let base = m.join("base");
    btrfs::create_subvolume(&base).unwrap();
    assert!(btrfs::is_subvolume(&base).unwrap());
    assert!(!btrfs::is_readonly(&base).unwrap());
    std::fs::create_dir(base.join("dir")).unwrap();
    std::fs::write(base.join("dir/file"), "hello").unwrap();

    btrfs::snapshot(&base, m.join("rw"), false).unwrap();
    btrfs::snapshot(&base, m.join("ro"), true).unwrap();
    for snap in ["rw", "ro"] {
        assert_eq!(
            std::fs::read_to_string(m.join(snap).join("dir/file")).unwrap(),
            "hello"
        );
        assert!(btrfs::is_subvolume(m.join(snap)).unwrap());
    }
    // Snapshots are independent of their source.
    std::fs::write(base.join("dir/file"), "changed").unwrap();
    assert_eq!(
        std::fs::read_to_string(m.join("rw/dir/file")).unwrap(),
        "hello"
    );
    std::fs::write(m.join("rw/new"), "x").unwrap();

    assert!(btrfs::is_readonly(m.join("ro")).unwrap());
    assert_eq!(errno(std::fs::write(m.join("ro/new"), "x")), libc::EROFS);
    btrfs::set_readonly(m.join("ro"), false).unwrap();
    std::fs::write(m.join("ro/new"), "x").unwrap();
    btrfs::set_readonly(m.join("ro"), true).unwrap();
    assert!(btrfs::is_readonly(m.join("ro")).unwrap());

    // A read-only snapshot can be deleted (by root).
    btrfs::delete_subvolume(m.join("ro")).unwrap();
    assert!(!m.join("ro").exists());
    btrfs::delete_subvolume(m.join("rw")).unwrap();
    btrfs::delete_subvolume(&base).unwrap();
    assert!(std::fs::read_dir(&m).unwrap().next().is_none());
    fs.finish();
}

#[test]
fn nested_subvolumes_need_recursive_delete() {
    let fs = Btrfs::new("btrfs-nested");
    let m = fs.root().to_owned();
    let base = m.join("base");
    btrfs::create_subvolume(&base).unwrap();
    std::fs::create_dir_all(base.join("var/lib")).unwrap();
    // What systemd-tmpfiles does inside a debootstrap tree.
    btrfs::create_subvolume(base.join("var/lib/machines")).unwrap();
    btrfs::create_subvolume(base.join("var/lib/machines/deeper")).unwrap();
    std::fs::write(base.join("var/lib/machines/deeper/f"), "f").unwrap();

    let err = btrfs::delete_subvolume(&base).unwrap_err();
    assert!(err.to_string().contains("nested subvolumes"), "{err}");

    // A snapshot holds only an empty stub where the nested subvolume was.
    btrfs::snapshot(&base, m.join("snap"), true).unwrap();
    let stub = m.join("snap/var/lib/machines");
    assert!(stub.is_dir() && !btrfs::is_subvolume(&stub).unwrap());
    assert!(std::fs::read_dir(&stub).unwrap().next().is_none());
    btrfs::delete_subvolume(m.join("snap")).unwrap();

    // Read-only base with nested subvolumes: the recursive delete makes it writable first.
    btrfs::set_readonly(&base, true).unwrap();
    btrfs::delete_subvolume_recursive(&base).unwrap();
    assert!(!base.exists());
    fs.finish();
}

#[test]
fn deletion_refuses_mounts_and_non_subvolumes() {
    let fs = Btrfs::new("btrfs-refuse");
    let m = fs.root().to_owned();
    let s = m.join("s");
    btrfs::create_subvolume(&s).unwrap();
    std::fs::create_dir(s.join("mp")).unwrap();
    std::fs::write(s.join("keep"), "k").unwrap();
    let guard = mount::tmpfs(s.join("mp"), "size=1m").unwrap();
    let err = btrfs::delete_subvolume_recursive(&s).unwrap_err();
    assert!(err.to_string().contains("mounted inside"), "{err}");
    assert!(s.join("keep").exists() && mount::is_mountpoint(s.join("mp")).unwrap());
    drop(guard);
    btrfs::delete_subvolume_recursive(&s).unwrap();

    std::fs::create_dir(m.join("plain")).unwrap();
    let err = btrfs::delete_subvolume(m.join("plain")).unwrap_err();
    assert!(err.to_string().contains("not a btrfs subvolume"), "{err}");
    assert!(btrfs::snapshot(m.join("plain"), m.join("x"), false).is_err());
    let err = btrfs::create_subvolume(m.join("missing/sub")).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    fs.finish();
}

#[test]
fn remove_dir_all_one_fs_deletes_nested_subvolumes() {
    let fs = Btrfs::new("btrfs-rm");
    let m = fs.root().to_owned();
    let tree = m.join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("a/b/f"), "f").unwrap();
    btrfs::create_subvolume(tree.join("a/sub")).unwrap();
    btrfs::create_subvolume(tree.join("a/sub/nested")).unwrap();
    std::fs::write(tree.join("a/sub/nested/g"), "g").unwrap();
    btrfs::set_readonly(tree.join("a/sub"), true).unwrap();
    realms_sys::fs::remove_dir_all_one_fs(&tree).unwrap();
    assert!(!tree.exists());

    // A subvolume at the top is deleted as a subvolume.
    btrfs::create_subvolume(m.join("top")).unwrap();
    btrfs::create_subvolume(m.join("top/n")).unwrap();
    realms_sys::fs::remove_dir_all_one_fs(m.join("top")).unwrap();
    assert!(!m.join("top").exists());
    assert_eq!(
        realms_sys::fs::fs_type(&m).unwrap(),
        realms_sys::fs::FsType::Btrfs
    );
    fs.finish();
}
