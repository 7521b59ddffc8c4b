//! The binary's output contract, checked without root: closed pipes, parse errors.

use std::process::{Command, Stdio};

fn realms() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realms"));
    cmd.env_remove("REALMS_ROOT").env_remove("RUST_LOG");
    cmd
}

/// Regression: `realms --json portable validate X | head` panicked with "failed printing to
/// stdout". A reader that is gone ends the program quietly with status 0, as ripgrep does.
#[test]
fn broken_pipe_exits_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // every write now fails with EPIPE
    let root = tempfile::tempdir().unwrap();
    let out = realms()
        .arg("--root")
        .arg(root.path())
        .args(["portable", "--profile", "help", "list"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
