//! The system-test harness: what the host and guest tiers need to run Realms for real.
//!
//! A test that needs something this machine lacks fails with a message naming what is missing;
//! nothing is skipped silently.

pub mod aptrepo;
pub mod container;
pub mod failpoints;
pub mod failpoints_portable;
pub mod fixtures;
pub mod guest;
pub mod http;
pub mod ignition;
pub mod realms;
pub mod registry;
pub mod require;
pub mod run;
pub mod scratch;
pub mod test29;
pub mod tls;

use std::path::PathBuf;

/// The workspace's `target/` directory (where the fixtures are cached).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // No `..` in it: some tools (systemd-repart's CopyFiles=) take only normalized paths.
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("target")
}

/// The `realms` binary built from this workspace (`cargo build -p realms-cli` comes first).
pub fn realms_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    // Tests live in target/<profile>/deps/, benchmarks in target/<profile>/.
    let dir = exe.parent().expect("the binary is in a directory");
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let bin = profile_dir.join("realms");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p realms-cli` (same profile as the tests)",
        bin.display()
    );
    bin
}
