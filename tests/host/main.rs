//! Host tier: real btrfs, loop devices, mounts, systemd-nspawn and booted systemd containers.

mod everyday;
mod json;
mod nested;
mod network;
mod portable;
mod provision;
mod readme;
mod realm;
mod run;
mod sealed;
mod smoke;
mod verbs;
mod verity;
mod verity_compat;
