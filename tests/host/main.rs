//! Host tier: real btrfs, loop devices, mounts, systemd-nspawn and booted systemd containers.

mod nested;
mod portable;
mod realm;
mod sealed;
mod smoke;
mod verbs;
mod verity;
