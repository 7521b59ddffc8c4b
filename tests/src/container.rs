//! Booted systemd containers: `systemd-nspawn -b --register=no --keep-unit` on a scratch tree,
//! commands run inside with nsenter into the container's PID 1 namespaces, stopped on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::run::{argv, output, tail};

/// A booted systemd container; it is powered off (and killed if need be) on drop.
#[derive(Debug)]
pub struct Container {
    name: String,
    nspawn: Child,
    leader: u32,
    log: PathBuf,
    root: PathBuf,
}

/// nspawn on a host without systemd as PID 1 needs a tmpfs at /run/systemd/nspawn.
pub fn nspawn_prerequisites() {
    crate::require::root();
    crate::require::tool("systemd-nspawn", "systemd-container");
    let dir = Path::new("/run/systemd/nspawn");
    fs::create_dir_all(dir).expect("create /run/systemd/nspawn");
    if !crate::fixtures::is_mountpoint(dir) {
        crate::run::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
                .arg(dir),
        );
    }
}

impl Container {
    /// Boots `root` (a writable tree) as container `name` and waits until its systemd is up.
    pub fn boot(root: &Path, name: &str, extra_args: &[&str]) -> Container {
        nspawn_prerequisites();
        let log = crate::fixtures::fixtures_dir().join(format!("container-{name}.log"));
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args(["-b", "--register=no", "--keep-unit", "--console=read-only"])
            .arg("-D")
            .arg(root)
            .arg("-M")
            .arg(name)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("create the container log"))
            .stderr(Stdio::from(
                fs::File::options().append(true).open(&log).unwrap(),
            ));
        let mut nspawn = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not run `{}`: {e}", argv(&cmd)));
        let leader = wait_for_leader(&mut nspawn, &log);
        let mut c = Container {
            name: name.to_string(),
            nspawn,
            leader,
            log,
            root: root.to_path_buf(),
        };
        c.wait_booted();
        c
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PID of the container's init, as seen from the host.
    pub fn leader(&self) -> u32 {
        self.leader
    }

    /// The container's root directory on the host.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs a command inside the container (all of PID 1's namespaces); returns its output.
    pub fn exec(&self, args: &[&str]) -> Output {
        output(self.nsenter().args(args))
    }

    /// Runs a shell script inside the container; panics (with its output) unless it succeeds.
    #[track_caller]
    pub fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]);
        assert!(
            out.status.success(),
            "in container {}: `{script}` failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.name,
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `nsenter` command that enters the container; add the command to run.
    pub fn nsenter(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.leader.to_string())
            .arg("-a")
            .arg("--");
        cmd
    }

    /// Copies a host file or directory to `inside` (an absolute path in the container).
    pub fn copy_in(&self, host: &Path, inside: &str) {
        let dest = self.root.join(inside.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        crate::run::run(Command::new("cp").arg("-a").arg(host).arg(&dest));
    }

    fn wait_booted(&mut self) {
        // "offline" means PID 1 is not answering on its bus yet; anything else is final.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut state = String::new();
        while Instant::now() < deadline {
            let out = output(self.nsenter().args([
                "timeout",
                "90",
                "systemctl",
                "is-system-running",
                "--wait",
            ]));
            state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state != "offline" && !state.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if state != "running" && state != "degraded" {
            let failed = self.exec(&["systemctl", "--failed", "--no-legend"]);
            panic!(
                "container {} did not boot: is-system-running says {state:?}; failed units:\n{}\nlog:\n{}",
                self.name,
                String::from_utf8_lossy(&failed.stdout),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// Powers the container off and waits for nspawn to exit.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Ok(Some(_)) = self.nspawn.try_wait() {
            return;
        }
        // SIGTERM to nspawn makes it ask the container's systemd to power off.
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.nspawn.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn wait_for_leader(nspawn: &mut Child, log: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = nspawn.id();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = nspawn.try_wait() {
            panic!(
                "systemd-nspawn exited early ({status}):\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        // nspawn forks an intermediate child first; the leader is the one that became init.
        for child in children(pid) {
            let comm = fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == "systemd" || comm.trim() == "init" {
                return child;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("systemd-nspawn (pid {pid}) started no container within 30 s");
}

/// The child PIDs of a process (from /proc/PID/task/*/children).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}
