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

/// Regression: main collected `std::env::args()`, which panics on an argument that is not
/// UTF-8 (a file name handed to `realms run R -- cat NAME`). Now the realm is looked up and the
/// missing one reported, as for any other argument.
#[test]
fn an_argument_that_is_not_utf8_does_not_panic() {
    use std::os::unix::ffi::OsStrExt;
    let root = tempfile::tempdir().unwrap();
    let out = realms()
        .arg("--root")
        .arg(root.path())
        .args(["run", "nosuchrealm", "--", "cat"])
        .arg(std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("nosuchrealm"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}
