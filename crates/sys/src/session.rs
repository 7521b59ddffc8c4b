//! A command run in a container the caller has entered ([`crate::ns::enter`]): as one of the
//! container's users, in a process group or on a pseudo-terminal of its own, with the caller's
//! signals forwarded to it (what `nsenter` lacks and `machinectl shell` and `docker exec -it` have).
//!
//! Without a pty the command's stdio is the caller's own (no copying). With one, the pty comes
//! from the container's devpts (so `tty` names it inside), the caller's terminal is put in raw
//! mode and restored, bytes are copied both ways, and window size changes follow.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::error::{Error, Result};
use crate::ns::Credentials;

/// The signals a session passes on to its command.
const FORWARDED: [libc::c_int; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// What to run, as whom, and where.
#[derive(Debug)]
pub struct Job {
    /// The program, resolved inside the container.
    pub program: PathBuf,
    /// The arguments, `argv[0]` first.
    pub argv: Vec<OsString>,
    /// Exactly the environment of the command.
    pub env: Vec<(OsString, OsString)>,
    /// Its working directory (inside the container).
    pub cwd: PathBuf,
    /// The user, group and supplementary groups it runs as.
    pub creds: Credentials,
    /// `cgroup.procs` of a control group the command joins before it execs (a migration
    /// waits for an RCU grace period: milliseconds).
    pub cgroup: Option<OwnedFd>,
    /// A cgroup namespace the command enters after joining `cgroup`.
    pub cgroup_ns: Option<OwnedFd>,
    /// A pseudo-terminal that becomes the command's controlling terminal and stdio.
    pub pty: Option<Pty>,
}

/// A pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    /// A new pty from `/dev/ptmx` of the current root (after [`crate::ns::enter`], the
    /// container's), its slave owned by `uid`, sized and set up like the caller's terminal.
    pub fn open(uid: u32) -> Result<Pty> {
        let ptmx = Path::new("/dev/ptmx");
        // SAFETY: plain system calls on descriptors this function owns.
        unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            if master < 0 {
                return Err(Error::io(
                    "opening a pseudo-terminal at",
                    ptmx,
                    io::Error::last_os_error(),
                ));
            }
            let master = OwnedFd::from_raw_fd(master);
            if libc::unlockpt(master.as_raw_fd()) != 0 {
                return Err(Error::io(
                    "unlocking a pseudo-terminal at",
                    ptmx,
                    io::Error::last_os_error(),
                ));
            }
            let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
            let slave = libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags);
            if slave < 0 {
                return Err(Error::io(
                    "opening the peer of a pseudo-terminal at",
                    ptmx,
                    io::Error::last_os_error(),
                ));
            }
            let slave = OwnedFd::from_raw_fd(slave);
            if libc::fchown(slave.as_raw_fd(), uid, u32::MAX) != 0 {
                return Err(Error::io(
                    "giving the pseudo-terminal to its user at",
                    ptmx,
                    io::Error::last_os_error(),
                ));
            }
            let pty = Pty { master, slave };
            let caller = io::stdin();
            if let Some(termios) = termios_of(caller.as_fd()) {
                // The caller's settings (erase character, ...), before it goes raw.
                libc::tcsetattr(pty.slave.as_raw_fd(), libc::TCSANOW, &termios);
            }
            copy_window_size(pty.master.as_raw_fd());
            Ok(pty)
        }
    }
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

fn termios_of(fd: BorrowedFd) -> Option<libc::termios> {
    // SAFETY: tcgetattr fills the struct we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(fd.as_raw_fd(), &mut t) == 0).then_some(t)
    }
}

/// Puts the caller's terminal in raw mode until dropped.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let saved = termios_of(io::stdin().as_fd())?;
        let mut raw = saved;
        // SAFETY: cfmakeraw edits our copy; tcsetattr applies it to our own stdin.
        unsafe {
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, &raw);
        }
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, &self.saved) };
    }
}

/// The forwarded signals, blocked and readable from a signalfd until dropped.
struct Signals {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl Signals {
    fn block() -> Result<Signals> {
        // SAFETY: sigset manipulation on structs we own; signalfd returns a new descriptor.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARDED {
                libc::sigaddset(&mut set, s);
            }
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                let err = io::Error::last_os_error();
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                return Err(Error::io("creating a signalfd for", "/proc/self", err));
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
                old,
            })
        }
    }

    /// The signals received since the last call: `(signal, sent by the kernel)`.
    fn read(&self) -> Vec<(libc::c_int, bool)> {
        let mut out = Vec::new();
        loop {
            // SAFETY: reads whole signalfd_siginfo records into a struct we own.
            let info = unsafe {
                let mut info: libc::signalfd_siginfo = std::mem::zeroed();
                let size = std::mem::size_of::<libc::signalfd_siginfo>();
                let n = libc::read(self.fd.as_raw_fd(), (&raw mut info).cast(), size);
                if n != size as isize {
                    break;
                }
                info
            };
            out.push((
                info.ssi_signo as libc::c_int,
                info.ssi_code == libc::SI_KERNEL,
            ));
        }
        out
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Runs `job` (after [`crate::ns::enter`]) and returns its exit status. Signals the caller
/// receives are passed on: to the command's session on a pty, to its own process group when
/// stdin is not a terminal, else (the command shares the caller's terminal and process group,
/// so the terminal's ^C, ^\ and resizes reach it directly) all but those.
pub fn run(job: Job) -> Result<ExitStatus> {
    let signals = Signals::block()?;
    let shares_group = job.pty.is_none() && is_terminal(io::stdin().as_fd());
    let Job {
        program,
        argv,
        env,
        cwd,
        creds,
        cgroup,
        cgroup_ns,
        pty,
    } = job;
    let mut cmd = Command::new(&program);
    if let Some((arg0, args)) = argv.split_first() {
        cmd.arg0(arg0).args(args);
    }
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cwd);
    if let Some(pty) = &pty {
        let stdio = || -> Result<Stdio> {
            let fd = pty
                .slave
                .try_clone()
                .map_err(|e| Error::io("duplicating", "/dev/ptmx", e))?;
            Ok(Stdio::from(File::from(fd)))
        };
        cmd.stdin(stdio()?).stdout(stdio()?).stderr(stdio()?);
    } else if !shares_group {
        cmd.process_group(0);
    }
    let setup = ChildSetup {
        new_session: pty.is_some(),
        cgroup: cgroup.as_ref().map(|f| f.as_raw_fd()),
        cgroup_ns: cgroup_ns.as_ref().map(|f| f.as_raw_fd()),
        uid: creds.uid,
        gid: creds.gid,
        groups: creds.groups.clone(),
    };
    // SAFETY: the closure runs in the forked child before exec and makes only async-signal-safe
    // system calls on data prepared before the fork (see ChildSetup::apply).
    unsafe { cmd.pre_exec(move || setup.apply()) };
    // Raw before the command exists: a key typed at once (^C) goes to the command, not to us.
    let _raw = pty.as_ref().and_then(|_| RawMode::enter());
    let mut child = cmd.spawn().map_err(|e| Error::Spawn {
        argv: program.display().to_string(),
        source: e,
    })?;
    drop((cgroup, cgroup_ns));
    let pid = child.id() as libc::pid_t;
    let target = if shares_group { pid } else { -pid };
    let pidfd = pidfd(pid)?;
    match pty {
        None => wait_forwarding(&signals, &pidfd, target, shares_group),
        Some(pty) => {
            let Pty { master, slave } = pty;
            drop(slave);
            relay(&signals, &pidfd, target, master)?;
        }
    }
    child
        .wait()
        .map_err(|e| Error::io("waiting for", program, e))
}

/// What the forked child does before exec (async-signal-safe system calls only).
struct ChildSetup {
    new_session: bool,
    cgroup: Option<RawFd>,
    cgroup_ns: Option<RawFd>,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl ChildSetup {
    fn apply(&self) -> io::Result<()> {
        let check = |r: libc::c_int| {
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // SAFETY: each call is async-signal-safe and reads only data owned by self.
        unsafe {
            if self.new_session {
                check(libc::setsid())?;
                check(libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0))?;
            }
            if let Some(fd) = self.cgroup
                && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
            {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = self.cgroup_ns {
                check(libc::setns(fd, libc::CLONE_NEWCGROUP))?;
            }
            check(libc::setgroups(self.groups.len(), self.groups.as_ptr()))?;
            check(libc::setgid(self.gid))?;
            check(libc::setuid(self.uid))?;
            // Default dispositions, as a process the container starts itself would have: a
            // signal the caller ignored (SIGHUP under nohup) must still reach the command.
            for sig in 1..=libc::SIGRTMAX() {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            // The command gets a hangup when realms itself dies (killed with SIGKILL).
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGHUP))?;
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        }
        Ok(())
    }
}

fn pidfd(pid: libc::pid_t) -> Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::io(
            "opening a pidfd for",
            format!("/proc/{pid}"),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: the descriptor was just created and is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn forward(target: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; a vanished target is not an error worth reporting.
    unsafe { libc::kill(target, signal) };
}

/// Waits for the command to exit, passing on signals (stdio is the caller's: nothing to copy).
fn wait_forwarding(signals: &Signals, pidfd: &OwnedFd, target: libc::pid_t, shares_group: bool) {
    loop {
        let mut fds = [poll_in(signals.fd.as_raw_fd()), poll_in(pidfd.as_raw_fd())];
        if !poll(&mut fds) {
            continue;
        }
        for (signal, from_kernel) in signals.read() {
            // With a shared terminal, the kernel already sent ^C, ^\ and resizes to the whole
            // foreground group (but a hangup only to the session leader, which we may be).
            let terminal_signal = matches!(signal, libc::SIGINT | libc::SIGQUIT | libc::SIGWINCH);
            if !(shares_group && from_kernel && terminal_signal) {
                forward(target, signal);
            }
        }
        if fds[1].revents != 0 {
            return;
        }
    }
}

fn poll_in(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Polls `fds`; false when interrupted.
fn poll(fds: &mut [libc::pollfd]) -> bool {
    // SAFETY: poll reads and writes the slice it is given.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) >= 0 }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we hold.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Reads into `buf`: `Some(n)` bytes (0 at end of file), `None` when nothing is there yet.
fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: read writes at most buf.len() bytes into buf.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let err = io::Error::last_os_error();
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
        _ => Err(err),
    }
}

/// What became of one copy from the pty to our stdout.
enum Copied {
    Some,
    Nothing,
    /// No writer is left on the pty (EIO), or it is gone.
    Closed,
    /// Our stdout is gone: nobody reads the session any more.
    ReaderGone,
}

fn copy_output(master: RawFd, buf: &mut [u8], stdout: &mut impl Write) -> Copied {
    match read_some(master, buf) {
        Ok(Some(0)) | Err(_) => Copied::Closed,
        Ok(None) => Copied::Nothing,
        Ok(Some(n)) => match stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()) {
            Ok(()) => Copied::Some,
            Err(_) => Copied::ReaderGone,
        },
    }
}

/// Copies between the caller's stdio and the pty master until the command has exited and its
/// output is drained, passing on signals and window size changes.
fn relay(signals: &Signals, pidfd: &OwnedFd, target: libc::pid_t, master: OwnedFd) -> Result<()> {
    let m = master.as_raw_fd();
    set_nonblocking(m);
    let mut stdout = io::stdout().lock();
    let mut to_child: Vec<u8> = Vec::new();
    let (mut stdin_open, mut master_open) = (true, true);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let want_write = if to_child.is_empty() {
            0
        } else {
            libc::POLLOUT
        };
        let mut fds = [
            poll_in(signals.fd.as_raw_fd()),
            poll_in(pidfd.as_raw_fd()),
            libc::pollfd {
                fd: if master_open { m } else { -1 },
                events: libc::POLLIN | want_write,
                revents: 0,
            },
            poll_in(if stdin_open && to_child.is_empty() {
                libc::STDIN_FILENO
            } else {
                -1
            }),
        ];
        if !poll(&mut fds) {
            continue;
        }
        for (signal, _) in signals.read() {
            if signal == libc::SIGWINCH {
                copy_window_size(m);
            } else {
                forward(target, signal);
            }
        }
        if fds[1].revents != 0 {
            // The command exited: pass on what it wrote last (bounded: what it left behind in
            // the background may write on and on).
            let mut budget = 64;
            while master_open
                && budget > 0
                && matches!(copy_output(m, &mut buf, &mut stdout), Copied::Some)
            {
                budget -= 1;
            }
            return Ok(());
        }
        if fds[2].revents != 0 {
            match copy_output(m, &mut buf, &mut stdout) {
                Copied::Some | Copied::Nothing => {}
                Copied::Closed => master_open = false,
                Copied::ReaderGone => {
                    forward(target, libc::SIGHUP);
                    return Ok(());
                }
            }
        }
        if fds[3].revents != 0 {
            match read_some(libc::STDIN_FILENO, &mut buf) {
                Ok(Some(0)) => {
                    stdin_open = false;
                    send_eof(m, &mut to_child);
                }
                Ok(Some(n)) => to_child.extend_from_slice(&buf[..n]),
                Ok(None) => {}
                Err(_) => {
                    // Our terminal hung up: so does the command's.
                    stdin_open = false;
                    forward(target, libc::SIGHUP);
                }
            }
        }
        if !to_child.is_empty() {
            if !master_open {
                to_child.clear();
                continue;
            }
            // SAFETY: write reads at most to_child.len() bytes from it.
            let n = unsafe { libc::write(m, to_child.as_ptr().cast(), to_child.len()) };
            if n > 0 {
                to_child.drain(..n as usize);
            }
        }
    }
}

/// At the end of our stdin, the command reads end of file too (the pty's EOF character, in
/// canonical mode; a raw-mode program is left to its own devices).
fn send_eof(master: RawFd, to_child: &mut Vec<u8>) {
    // SAFETY: the master outlives the call.
    let fd = unsafe { BorrowedFd::borrow_raw(master) };
    if let Some(t) = termios_of(fd)
        && t.c_lflag & libc::ICANON != 0
    {
        to_child.push(t.c_cc[libc::VEOF]);
    }
}

/// Gives the pty the caller's window size (its stdin's or stdout's terminal).
fn copy_window_size(master: RawFd) {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        // SAFETY: TIOCGWINSZ and TIOCSWINSZ write and read a winsize struct we own.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(master, libc::TIOCSWINSZ, &ws);
                return;
            }
        }
    }
}
