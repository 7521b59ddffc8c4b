//! Running external tools from tests: a failure panics with the command line and its stderr.

use std::process::{Command, Output, Stdio};

/// Runs the command and returns its output; panics (naming the argv and stderr) if it fails.
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "`{}` failed with {}\nstdout:\n{}\nstderr:\n{}",
        argv(cmd),
        out.status,
        tail(&out.stdout),
        tail(&out.stderr)
    );
    out
}

/// Runs the command and returns its output whatever the exit status (panics only if it can't start).
#[track_caller]
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run `{}`: {e}", argv(cmd)))
}

/// `sh -c SCRIPT`, which must succeed; returns stdout as text.
#[track_caller]
pub fn sh(script: &str) -> String {
    String::from_utf8_lossy(&run(Command::new("sh").arg("-c").arg(script)).stdout).into_owned()
}

/// The command line, for messages.
pub fn argv(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last 40 lines of some output, for messages.
pub fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
