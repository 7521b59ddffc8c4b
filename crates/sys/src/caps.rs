//! What the kernel can do, found by asking it (opening its control device, reading `/proc`),
//! never by a path existing: libdevmapper creates `/dev/mapper/control` whenever a tool such as
//! veritysetup runs, also on a kernel without device-mapper, and such a stale node must not count.

use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// The device-mapper control device.
pub const DM_CONTROL: &str = "/dev/mapper/control";

/// The loop control device.
pub const LOOP_CONTROL: &str = "/dev/loop-control";

/// True when the kernel has device-mapper: its control device opens (a stale node on a kernel
/// without it fails with `ENODEV`).
pub fn device_mapper() -> bool {
    control_device_answers(Path::new(DM_CONTROL))
}

/// True when the kernel has loop devices: `/dev/loop-control` opens.
pub fn loop_devices() -> bool {
    control_device_answers(Path::new(LOOP_CONTROL))
}

/// True when the character device at `path` opens read-write, that is when a driver answers
/// behind the node.
pub fn control_device_answers(path: &Path) -> bool {
    match rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => rustix::fs::fstat(&fd).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice
        }),
        Err(e) => {
            tracing::debug!("{}: {e}; taken as absent", path.display());
            false
        }
    }
}

/// True when `/proc/misc` lists a misc device of this name (`device-mapper`, `loop-control`).
pub fn misc_device(name: &str) -> bool {
    std::fs::read_to_string("/proc/misc")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().nth(1) == Some(name)))
}

/// True when the kernel lists the filesystem in `/proc/filesystems` (`btrfs`, `erofs`).
pub fn filesystem(name: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some(name)))
}

/// True when the kernel answers an nftables request (`nft list tables` succeeds), which needs
/// both the `nft` tool and nf_tables in the kernel.
pub fn nftables() -> bool {
    crate::cmd::Cmd::new("nft")
        .args(["list", "tables"])
        .run()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_dev_mapper_control_node_makes_realms_believe_device_mapper_exists() {
        // A node with device-mapper's numbers (misc 10, 236), as libdevmapper creates it: it
        // answers exactly when the kernel has device-mapper, whatever the path says.
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("control");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            rustix::fs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(10, 236),
        )
        .unwrap();
        assert!(node.exists());
        assert_eq!(control_device_answers(&node), misc_device("device-mapper"));
        assert_eq!(device_mapper(), misc_device("device-mapper"));
        // A regular file is never a control device.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(!control_device_answers(&file));
        assert!(!control_device_answers(&dir.path().join("missing")));
    }

    #[test]
    fn loop_and_filesystems_are_what_the_kernel_lists() {
        assert_eq!(loop_devices(), misc_device("loop-control"));
        assert!(filesystem("proc"));
        assert!(!filesystem("no-such-fs"));
    }
}
