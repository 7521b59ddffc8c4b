//! Host tier: real btrfs, loop devices, mounts, systemd-nspawn and booted systemd containers.

mod crash;
mod crash_long;
mod dbus;
mod desktop;
mod display;
mod disposable;
mod doctor;
mod everyday;
mod json;
mod nested;
mod network;
mod package;
mod portable;
mod provision;
mod readme;
mod realm;
mod run;
mod sealed;
mod smoke;
mod state;
mod store;
mod verbs;
mod verity;
mod verity_compat;
