//! Mounts: tmpfs, bind (ro, recursive), overlay with special characters, images, cleanup, propagation.

use realms_sys::cmd::Cmd;
use realms_sys::loopdev;
use realms_sys::mount::{self, MountGuard};

use crate::common::{Scratch, errno, eventually};

fn propagation_of(path: &std::path::Path) -> Vec<String> {
    let m = mount::mounts_under(path).unwrap();
    m.into_iter()
        .find(|m| m.mount_point == path)
        .expect("mounted")
        .propagation
}

#[test]
fn tmpfs_guard_unmounts_on_drop() {
    let s = Scratch::new("mnt-tmpfs");
    let t = s.dir("t");
    let g = mount::tmpfs(&t, "mode=0700,size=1m").unwrap();
    assert_eq!(g.target(), t);
    assert!(mount::is_mountpoint(&t).unwrap());
    let info = mount::mounts_under(&t).unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].fs_type, "tmpfs");
    assert!(
        info[0].super_options.contains("size=1024k"),
        "{}",
        info[0].super_options
    );
    drop(g);
    assert!(!mount::is_mountpoint(&t).unwrap());

    let g = mount::tmpfs(&t, "").unwrap();
    g.unmount().unwrap();
    assert!(!mount::is_mountpoint(&t).unwrap());
    let err = mount::tmpfs(s.path().join("missing"), "").unwrap_err();
    assert!(err.to_string().starts_with("mounting tmpfs on "), "{err}");
}

#[test]
fn busy_mount_is_detached_lazily_on_drop() {
    let s = Scratch::new("mnt-busy");
    let t = s.dir("t");
    let g = mount::tmpfs(&t, "").unwrap();
    let f = std::fs::File::create(t.join("open")).unwrap();
    drop(g);
    assert!(!mount::is_mountpoint(&t).unwrap());
    drop(f);
}

#[test]
fn bind_read_only_and_recursive() {
    let s = Scratch::new("mnt-bind");
    let (src, dst, dst2) = (s.dir("src"), s.dir("dst"), s.dir("dst2"));
    std::fs::write(src.join("f"), "f").unwrap();
    let sub = s.dir("src/sub");
    let _sub = mount::tmpfs(&sub, "").unwrap();
    std::fs::write(sub.join("g"), "g").unwrap();

    let ro = mount::bind(&src, &dst, true, false).unwrap();
    assert_eq!(std::fs::read_to_string(dst.join("f")).unwrap(), "f");
    assert_eq!(errno(std::fs::write(dst.join("new"), "x")), libc::EROFS);
    std::fs::write(src.join("new"), "x").unwrap();
    assert!(
        !dst.join("sub/g").exists(),
        "non-recursive bind leaves out submounts"
    );
    drop(ro);

    let rec = mount::bind(&src, &dst2, true, true).unwrap();
    assert_eq!(std::fs::read_to_string(dst2.join("sub/g")).unwrap(), "g");
    assert_eq!(
        errno(std::fs::write(dst2.join("sub/new"), "x")),
        libc::EROFS,
        "submount is read-only too"
    );
    std::fs::write(sub.join("still-writable"), "x").unwrap();
    drop(rec);
    mount::umount_recursive(&dst2).unwrap();
    assert!(!mount::is_mountpoint(&dst2).unwrap());
}

#[test]
fn overlay_with_special_characters() {
    let s = Scratch::new("mnt-ovl");
    let low1 = s.dir(r"low:er,1\ x");
    let low2 = s.dir("lower2");
    let upper = s.dir("up,p:er");
    let work = s.dir(r"wo\rk");
    let target = s.dir("merged");
    std::fs::write(low1.join("a"), "from-1").unwrap();
    std::fs::write(low2.join("a"), "from-2").unwrap();
    std::fs::write(low2.join("b"), "b").unwrap();

    let g = mount::overlay(&[&low1, &low2], Some((&upper, &work)), &target).unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("a")).unwrap(),
        "from-1",
        "first lower is on top"
    );
    assert_eq!(std::fs::read_to_string(target.join("b")).unwrap(), "b");
    std::fs::write(target.join("c"), "c").unwrap();
    assert_eq!(std::fs::read_to_string(upper.join("c")).unwrap(), "c");
    assert!(!low1.join("c").exists());
    drop(g);

    let g = mount::overlay(&[&low1, &low2], None, &target).unwrap();
    assert_eq!(errno(std::fs::write(target.join("d"), "d")), libc::EROFS);
    drop(g);
}

#[test]
fn images_mount_through_loop_and_file() {
    let s = Scratch::new("mnt-img");
    let content = s.dir("content");
    std::fs::write(content.join("hello"), "world").unwrap();
    let target = s.dir("target");

    let ext4 = s.sparse_file("ext4.img", 32 << 20);
    Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&ext4)
        .run()
        .unwrap();
    let g = mount::mount_image(&ext4, &target, "ext4", false).unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("hello")).unwrap(),
        "world"
    );
    std::fs::write(target.join("rw"), "yes").unwrap();
    assert_eq!(loopdev::find_by_backing_file(&ext4).unwrap().len(), 1);
    drop(g);
    eventually("loop device of the ext4 image released", || {
        loopdev::find_by_backing_file(&ext4).unwrap().is_empty()
    });

    let g = mount::mount_image(&ext4, &target, "ext4", true).unwrap();
    assert_eq!(errno(std::fs::write(target.join("ro"), "no")), libc::EROFS);
    assert_eq!(std::fs::read_to_string(target.join("rw")).unwrap(), "yes");
    drop(g);

    let erofs = s.path().join("img.erofs");
    let mkfs = Cmd::new("mkfs.erofs")
        .arg("--quiet")
        .arg(&erofs)
        .arg(&content)
        .run();
    mkfs.expect("mkfs.erofs is needed for this test (install erofs-utils)");
    let g = mount::mount_image(&erofs, &target, "erofs", true).unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("hello")).unwrap(),
        "world"
    );
    assert!(
        loopdev::find_by_backing_file(&erofs).unwrap().is_empty(),
        "erofs is mounted from the file"
    );
    drop(g);
    eventually("loop devices released", || {
        loopdev::find_by_backing_file(&ext4).unwrap().is_empty()
    });
}

#[test]
fn umount_recursive_handles_stacks_and_covered_mounts() {
    let s = Scratch::new("mnt-rec");
    let a = s.dir("a");
    let guards: Vec<MountGuard> = vec![
        mount::tmpfs(&a, "").unwrap(),
        {
            std::fs::create_dir_all(a.join("b/c")).unwrap();
            mount::tmpfs(a.join("b/c"), "").unwrap()
        },
        // Covers b/c, so b/c can only be unmounted after this one.
        mount::tmpfs(a.join("b"), "").unwrap(),
        mount::tmpfs(a.join("b"), "").unwrap(),
    ];
    let order: Vec<_> = mount::mounts_under(&a)
        .unwrap()
        .into_iter()
        .map(|m| m.mount_point)
        .collect();
    assert_eq!(order.len(), 4);
    assert_eq!(order.last().unwrap(), &a, "the outermost mount comes last");
    mount::umount_recursive(&a).unwrap();
    assert!(mount::mounts_under(&a).unwrap().is_empty());
    for g in guards {
        g.leak();
    }
}

#[test]
fn propagation_changes() {
    let s = Scratch::new("mnt-prop");
    let (a, b) = (s.dir("a"), s.dir("b"));
    let ga = mount::tmpfs(&a, "").unwrap();
    mount::make_private(&a, false).unwrap();
    assert!(propagation_of(&a).is_empty());
    mount::make_shared(&a, false).unwrap();
    assert!(propagation_of(&a)[0].starts_with("shared:"));
    let gb = mount::bind(&a, &b, false, false).unwrap();
    mount::make_slave(&b, true).unwrap();
    assert!(
        propagation_of(&b).iter().any(|p| p.starts_with("master:")),
        "{:?}",
        propagation_of(&b)
    );
    drop((gb, ga));
}
