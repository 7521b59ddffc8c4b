//! Tree removal next to mounts, and copying owners, device nodes and xattrs.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use realms_sys::fs::{copy_tree, remove_dir_all_one_fs};
use realms_sys::mount;

use crate::common::Scratch;

#[test]
fn removal_refuses_mounts_inside_and_at_the_top() {
    let s = Scratch::new("fs-rm");
    let tree = s.dir("tree");
    std::fs::write(tree.join("f"), "f").unwrap();
    let mp = s.dir("tree/a/mp");
    let g = mount::tmpfs(&mp, "").unwrap();
    std::fs::write(mp.join("precious"), "p").unwrap();

    let err = remove_dir_all_one_fs(&tree).unwrap_err();
    assert!(err.to_string().contains("mounted inside"), "{err}");
    assert!(
        tree.join("f").exists() && mp.join("precious").exists(),
        "nothing was removed"
    );
    let err = remove_dir_all_one_fs(&mp).unwrap_err();
    assert!(err.to_string().contains("is a mount point"), "{err}");
    assert!(mp.join("precious").exists());

    drop(g);
    remove_dir_all_one_fs(&tree).unwrap();
    assert!(!tree.exists());
}

#[test]
fn copy_tree_keeps_owners_nodes_and_xattrs() {
    let s = Scratch::new("fs-copy");
    let src = s.dir("src");
    std::fs::write(src.join("owned"), "o").unwrap();
    rustix::fs::chown(
        src.join("owned"),
        Some(rustix::fs::Uid::from_raw(1234)),
        Some(rustix::fs::Gid::from_raw(5678)),
    )
    .unwrap();
    std::os::unix::fs::symlink("owned", src.join("link")).unwrap();
    rustix::fs::chownat(
        rustix::fs::CWD,
        src.join("link"),
        Some(rustix::fs::Uid::from_raw(42)),
        None,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let mode = rustix::fs::Mode::from_raw_mode(0o640);
    let null = rustix::fs::makedev(1, 3);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null"),
        rustix::fs::FileType::CharacterDevice,
        mode,
        null,
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        mode,
        0,
    )
    .unwrap();
    for (name, value) in [("user.realms", "u"), ("trusted.realms", "t")] {
        rustix::fs::setxattr(
            src.join("owned"),
            name,
            value.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }

    let dst = s.path().join("dst");
    copy_tree(&src, &dst).unwrap();
    let m = std::fs::metadata(dst.join("owned")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(
        std::fs::symlink_metadata(dst.join("link")).unwrap().uid(),
        42
    );
    let n = std::fs::symlink_metadata(dst.join("null")).unwrap();
    assert!(n.file_type().is_char_device());
    assert_eq!(n.rdev(), null);
    assert!(
        std::fs::symlink_metadata(dst.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    for (name, value) in [("user.realms", "u"), ("trusted.realms", "t")] {
        let mut buf = [0u8; 16];
        let n = rustix::fs::getxattr(dst.join("owned"), name, &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], value.as_bytes(), "{name}");
    }
}
