//! In-root resolution against a real procfs: magic links inside the root are refused.

use realms_sys::mount;
use realms_sys::root::RootDir;

use crate::common::Scratch;

#[test]
fn proc_magic_links_inside_a_root_are_refused() {
    let s = Scratch::new("root-proc");
    let root = s.dir("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "inside").unwrap();
    let proc_dir = s.dir("root/proc");
    let _proc = mount::bind("/proc", &proc_dir, true, false).unwrap();
    std::os::unix::fs::symlink("/proc/self/root/etc/hostname", root.join("magic")).unwrap();
    std::os::unix::fs::symlink("/proc/1/root", root.join("pid1")).unwrap();

    let r = RootDir::open(&root).unwrap();
    assert_eq!(r.read_to_string("/etc/hostname").unwrap(), "inside");
    for p in ["magic", "/proc/self/root/etc/hostname", "proc/self/cwd"] {
        let err = r.read(p).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{p}: {err}");
    }
    // procfs may refuse this one before the magic-link check (EACCES); either way it stays inside.
    let err = r.read("pid1/etc/hostname").unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::ELOOP | libc::EACCES)),
        "{err}"
    );
    // Ordinary files and symlinks in procfs still resolve.
    assert!(
        r.read_to_string("/proc/self/status")
            .unwrap()
            .contains("Pid:")
    );
}
