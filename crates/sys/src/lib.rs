//! The only crate with `unsafe`: mounts, loop devices, btrfs ioctls, in-root path resolution, atomic replace, locks and the command runner.
