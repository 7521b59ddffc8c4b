//! Tests that need root and real kernel features: loop devices, btrfs, mounts, in-root resolution
//! against a real `/proc`. Run as root: `cargo test -p realms-sys --features privileged-tests`.
//!
//! Everything is created under a per-test scratch directory with a unique name (pid + counter),
//! and guards unmount, detach and remove it even when a test fails.
#![cfg(feature = "privileged-tests")]

mod btrfs;
mod common;
mod fs;
mod loopdev;
mod mount;
mod root;
mod session;
