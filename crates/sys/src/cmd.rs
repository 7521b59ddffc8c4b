//! The one runner for external commands: logs the argv, captures output, puts a stderr tail in errors.
//!
//! ```no_run
//! # fn main() -> realms_sys::Result<()> {
//! use realms_sys::cmd::Cmd;
//! Cmd::new("mkfs.btrfs").arg("-q").arg("/tmp/x.img").run()?;
//! let version = Cmd::new("systemd-nspawn").arg("--version").output_string()?;
//! # Ok(()) }
//! ```

use crate::error::Invalidity;
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use rustix::process::Signal;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How much of stderr an error keeps: at most this many lines ...
const TAIL_LINES: usize = 20;
/// ... and at most this many bytes.
const TAIL_BYTES: usize = 2048;

/// Whether the caller waits for the command to finish (then it dies with the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    Yes,
    No,
}

/// An external command; build it like [`std::process::Command`], then run it one of the ways below.
#[derive(Debug, Default)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    env_clear: bool,
    cwd: Option<PathBuf>,
    stdin_bytes: Option<Vec<u8>>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    new_session: bool,
    death_signal: Option<Signal>,
    cgroups: Vec<PathBuf>,
}

impl Cmd {
    /// A command running `program` (looked up in `PATH` unless it contains a `/`).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            ..Cmd::default()
        }
    }

    /// Appends one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.envs
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable for the command.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the command with an empty environment (plus what [`Cmd::env`] adds).
    pub fn env_clear(&mut self) -> &mut Self {
        self.env_clear = true;
        self.envs.clear();
        self
    }

    /// Runs the command in `dir`.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Feeds these bytes to the command's stdin (otherwise captured runs get `/dev/null`).
    pub fn stdin_bytes(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin_bytes = Some(bytes.into());
        self
    }

    /// Stdin for [`Cmd::spawn`] (default: inherited).
    pub fn stdin(&mut self, cfg: Stdio) -> &mut Self {
        self.stdin = Some(cfg);
        self
    }

    /// Stdout for [`Cmd::spawn`] (default: inherited).
    pub fn stdout(&mut self, cfg: Stdio) -> &mut Self {
        self.stdout = Some(cfg);
        self
    }

    /// Stderr for [`Cmd::spawn`] (default: inherited).
    pub fn stderr(&mut self, cfg: Stdio) -> &mut Self {
        self.stderr = Some(cfg);
        self
    }

    /// Runs the command in a new session (`setsid`), detached from our terminal and process group.
    pub fn new_session(&mut self) -> &mut Self {
        self.new_session = true;
        self
    }

    /// Sends `signal` to the command when this process (the thread that spawned it) dies.
    /// Commands run to completion ([`Cmd::run`], [`Cmd::output`], [`Cmd::status_inherit`]) get
    /// SIGKILL by default; [`Cmd::spawn`]ed ones and new sessions get nothing unless set here.
    pub fn parent_death_signal(&mut self, signal: Signal) -> &mut Self {
        self.death_signal = Some(signal);
        self
    }

    /// Moves the command into this cgroup directory before it starts (writes to its `cgroup.procs`).
    pub fn join_cgroup(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cgroups.push(dir.as_ref().to_owned());
        self
    }

    /// The command line as a shell-like string, for logs and errors.
    pub fn argv_string(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs to completion with stdout and stderr captured; a non-zero exit is an error.
    pub fn run(&self) -> Result<()> {
        self.capture().map(|_| ())
    }

    /// Runs to completion and returns stdout; a non-zero exit is an error.
    pub fn output(&self) -> Result<Vec<u8>> {
        self.capture().map(|o| o.stdout)
    }

    /// Runs to completion and returns stdout as UTF-8.
    pub fn output_string(&self) -> Result<String> {
        String::from_utf8(self.output()?).map_err(|_| Error::Utf8 {
            argv: self.argv_string(),
        })
    }

    /// Runs to completion and parses stdout as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        let out = self.output()?;
        serde_json::from_slice(&out).map_err(|source| Error::Json {
            argv: self.argv_string(),
            source,
        })
    }

    /// Runs with stdin, stdout and stderr passed through and returns how it exited.
    ///
    /// A non-zero exit is *not* an error here: the caller decides (e.g. `realms run` exits with it).
    pub fn status_inherit(&self) -> Result<ExitStatus> {
        let stdin = if self.stdin_bytes.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        };
        let mut child = self.start(stdin, Stdio::inherit(), Stdio::inherit(), Waited::Yes)?;
        let feeder = self.feed_stdin(&mut child);
        let status = child.wait().map_err(|source| Error::Spawn {
            argv: self.argv_string(),
            source,
        })?;
        join_feeder(feeder);
        Ok(status)
    }

    /// Starts the command and returns the child; stdio is as set by [`Cmd::stdin`] and friends.
    ///
    /// Bytes given with [`Cmd::stdin_bytes`] are written by a background thread.
    pub fn spawn(&mut self) -> Result<Child> {
        let stdin = match (self.stdin.take(), &self.stdin_bytes) {
            (_, Some(_)) => Stdio::piped(),
            (Some(s), None) => s,
            (None, None) => Stdio::inherit(),
        };
        let stdout = self.stdout.take().unwrap_or_else(Stdio::inherit);
        let stderr = self.stderr.take().unwrap_or_else(Stdio::inherit);
        let mut child = self.start(stdin, stdout, stderr, Waited::No)?;
        // The thread finishes on its own once the bytes are written or the pipe closes.
        drop(self.feed_stdin(&mut child));
        Ok(child)
    }

    fn capture(&self) -> Result<Output> {
        let stdin = if self.stdin_bytes.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = self.start(stdin, Stdio::piped(), Stdio::piped(), Waited::Yes)?;
        let feeder = self.feed_stdin(&mut child);
        let out = child.wait_with_output().map_err(|source| Error::Spawn {
            argv: self.argv_string(),
            source,
        })?;
        join_feeder(feeder);
        if !out.status.success() {
            let shown = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
                &out.stderr
            } else {
                &out.stdout
            };
            return Err(Error::Failed {
                argv: self.argv_string(),
                status: out.status,
                stderr: tail(shown),
            });
        }
        if !out.stderr.is_empty() {
            tracing::debug!(argv = %self.argv_string(), stderr = %tail(&out.stderr), "command wrote to stderr");
        }
        Ok(out)
    }

    fn start(&self, stdin: Stdio, stdout: Stdio, stderr: Stdio, waited: Waited) -> Result<Child> {
        let argv = self.argv_string();
        tracing::debug!(argv = %argv, "running");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr);
        if self.env_clear {
            cmd.env_clear();
        }
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // A command we wait for dies with us (SIGKILL unless told otherwise): killed, we must
        // not leave a `cp` writing into a staging tree that the next command deletes.
        let death_signal = match (self.death_signal, waited) {
            (None, Waited::Yes) if !self.new_session => Some(Signal::KILL),
            (signal, _) => signal,
        };
        self.install_pre_exec(&mut cmd, death_signal)?;
        cmd.spawn().map_err(|source| self.spawn_error(argv, source))
    }

    fn install_pre_exec(&self, cmd: &mut Command, death_signal: Option<Signal>) -> Result<()> {
        if !self.new_session && death_signal.is_none() && self.cgroups.is_empty() {
            return Ok(());
        }
        let procs = self
            .cgroups
            .iter()
            .map(|dir| {
                CString::new(dir.join("cgroup.procs").into_os_string().into_vec())
                    .map_err(|_| Error::invalid("joining cgroup", dir, Invalidity::NulInPath))
            })
            .collect::<Result<Vec<_>>>()?;
        let new_session = self.new_session;
        // SAFETY: the closure runs between fork and exec; it only makes raw system calls through
        // rustix (setsid, prctl, open, write, close) on data prepared before the fork, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if new_session {
                    rustix::process::setsid()?;
                }
                if let Some(sig) = death_signal {
                    rustix::process::set_parent_process_death_signal(Some(sig))?;
                }
                for p in &procs {
                    let fd = rustix::fs::open(
                        p.as_c_str(),
                        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                        rustix::fs::Mode::empty(),
                    )?;
                    rustix::io::write(&fd, b"0")?;
                }
                Ok(())
            });
        }
        Ok(())
    }

    fn spawn_error(&self, argv: String, source: io::Error) -> Error {
        let cwd_missing = self.cwd.as_ref().is_some_and(|d| !d.is_dir());
        let missing = match source.kind() {
            io::ErrorKind::NotFound => !cwd_missing,
            // execvp reports EACCES when a PATH entry is unreadable, even if the program is simply absent.
            io::ErrorKind::PermissionDenied => {
                !self.program.as_bytes().contains(&b'/') && !in_path(&self.program)
            }
            _ => false,
        };
        if missing {
            let program = self.program.to_string_lossy().into_owned();
            let hint = install_hint(&program);
            return Error::NotFound {
                program,
                argv,
                hint,
            };
        }
        Error::Spawn { argv, source }
    }

    fn feed_stdin(&self, child: &mut Child) -> Option<std::thread::JoinHandle<io::Result<()>>> {
        let bytes = self.stdin_bytes.clone()?;
        let mut pipe = child.stdin.take()?;
        Some(std::thread::spawn(move || pipe.write_all(&bytes)))
    }
}

fn join_feeder(feeder: Option<std::thread::JoinHandle<io::Result<()>>>) {
    if let Some(Ok(Err(e))) = feeder.map(|h| h.join()) {
        // A command that exits without reading all its input is not an error in itself.
        if e.kind() != io::ErrorKind::BrokenPipe {
            tracing::debug!(error = %e, "writing the command's stdin");
        }
    }
}

/// Whether `program` is an executable file in one of the `PATH` directories.
fn in_path(program: &OsStr) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The last [`TAIL_LINES`] lines and at most [`TAIL_BYTES`] bytes of `bytes`, as lossy UTF-8.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    let lines: Vec<&str> = cut.lines().collect();
    let skip = lines.len().saturating_sub(TAIL_LINES);
    // When the byte cut fell mid-line, drop that partial first line (unless it is all there is).
    let skip = if start > 0 && skip == 0 && lines.len() > 1 {
        1
    } else {
        skip
    };
    lines[skip..].join("\n")
}

/// Quotes an argument for display when it holds characters a shell would treat specially.
fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What to install for a missing program (Debian package names).
fn install_hint(program: &str) -> String {
    let name = Path::new(program)
        .file_name()
        .map(OsStr::as_bytes)
        .unwrap_or(program.as_bytes());
    let name = String::from_utf8_lossy(name);
    let package = match name.as_ref() {
        "systemd-nspawn" | "machinectl" | "portablectl" | "systemd-dissect" => {
            Some("systemd-container")
        }
        "systemctl" | "systemd-run" | "systemd-repart" | "systemd-escape" | "systemd-sysext" => {
            Some("systemd")
        }
        "mkfs.btrfs" | "btrfs" => Some("btrfs-progs"),
        "mkfs.erofs" | "fsck.erofs" => Some("erofs-utils"),
        "mksquashfs" | "unsquashfs" => Some("squashfs-tools"),
        "mkfs.ext4" | "resize2fs" | "e2fsck" => Some("e2fsprogs"),
        "veritysetup" | "cryptsetup" => Some("cryptsetup-bin"),
        "losetup" | "mount" | "umount" => Some("mount"),
        "nsenter" | "unshare" | "partx" | "wipefs" => Some("util-linux"),
        "qemu-system-x86_64" => Some("qemu-system-x86"),
        "debootstrap" | "swtpm" | "bubblewrap" => Some(name.as_ref()),
        "bwrap" => Some("bubblewrap"),
        "tpm2_createprimary" | "tpm2_getrandom" | "tpm2_flushcontext" => Some("tpm2-tools"),
        _ => None,
    };
    match package {
        Some(p) => format!("install {p}?"),
        None => format!("is `{name}` installed and in PATH?"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_succeeds_and_captures() {
        Cmd::new("true").run().unwrap();
        assert_eq!(
            Cmd::new("echo").args(["a", "b"]).output_string().unwrap(),
            "a b\n"
        );
    }

    #[test]
    fn failure_carries_argv_and_stderr_tail() {
        let err = Cmd::new("sh")
            .args(["-c", "echo one >&2; echo two >&2; exit 3"])
            .run()
            .unwrap_err();
        let Error::Failed {
            argv,
            status,
            stderr,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(argv, "sh -c 'echo one >&2; echo two >&2; exit 3'");
        assert_eq!(status.code(), Some(3));
        assert_eq!(stderr, "one\ntwo");
        assert!(
            err.to_string()
                .contains("failed (exit status: 3):\n  one\n  two"),
            "{err}"
        );
    }

    #[test]
    fn stdout_is_used_when_stderr_is_empty() {
        let err = Cmd::new("sh")
            .args(["-c", "echo oops; exit 1"])
            .run()
            .unwrap_err();
        assert!(err.to_string().ends_with(": oops"), "{err}");
    }

    #[test]
    fn missing_program_suggests_package() {
        let err = Cmd::new("mkfs.btrfs-does-not-exist").run().unwrap_err();
        assert!(err.is_not_found());
        assert!(
            err.to_string()
                .starts_with("could not run `mkfs.btrfs-does-not-exist`: not found;"),
            "{err}"
        );
        assert_eq!(
            install_hint("/usr/bin/systemd-nspawn"),
            "install systemd-container?"
        );
    }

    #[test]
    fn stdin_env_and_cwd_are_passed() {
        let out = Cmd::new("sh")
            .args(["-c", "cat; echo \"$FOO\"; pwd"])
            .stdin_bytes(b"in\n".to_vec())
            .env("FOO", "bar")
            .current_dir("/")
            .output_string()
            .unwrap();
        assert_eq!(out, "in\nbar\n/\n");
    }

    #[test]
    fn big_stdin_does_not_deadlock() {
        let data = vec![b'x'; 1 << 20];
        let out = Cmd::new("cat").stdin_bytes(data.clone()).output().unwrap();
        assert_eq!(out.len(), data.len());
    }

    #[test]
    fn status_inherit_reports_non_zero_without_error() {
        let st = Cmd::new("sh")
            .args(["-c", "exit 7"])
            .status_inherit()
            .unwrap();
        assert_eq!(st.code(), Some(7));
    }

    #[test]
    fn json_output_is_parsed() {
        #[derive(Debug, serde::Deserialize)]
        struct V {
            a: u32,
        }
        let v: V = Cmd::new("echo").arg(r#"{"a": 5}"#).json().unwrap();
        assert_eq!(v.a, 5);
        let err = Cmd::new("echo").arg("nope").json::<V>().unwrap_err();
        assert!(matches!(err, Error::Json { .. }));
    }

    #[test]
    fn spawn_with_new_session() {
        let mut child = Cmd::new("sh")
            .args(["-c", "test \"$(ps -o sid= -p $$ | tr -d ' ')\" = \"$$\""])
            .new_session()
            .parent_death_signal(Signal::KILL)
            .spawn()
            .unwrap();
        let status = child.wait().unwrap();
        // `ps` may be missing in minimal environments; sid==pid is what we check when it is there.
        if Path::new("/bin/ps").exists() {
            assert!(status.success());
        }
    }

    #[test]
    fn tail_is_bounded() {
        let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(many.as_bytes());
        assert_eq!(t.lines().count(), TAIL_LINES);
        assert!(t.ends_with("line 99"));
        let long = "y".repeat(10_000);
        assert!(tail(long.as_bytes()).len() <= TAIL_BYTES);
        let t = tail(format!("{}\nlast\n", "z".repeat(5000)).as_bytes());
        assert_eq!(t, "last");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(OsStr::new("a-b/c.d")), "a-b/c.d");
        assert_eq!(quote(OsStr::new("a b")), "'a b'");
        assert_eq!(quote(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(quote(OsStr::new("")), "''");
    }
}
