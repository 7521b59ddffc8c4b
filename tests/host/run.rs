//! `realms run` as a user meets it (signals, a pty, the environment, exit codes) and a realm
//! whose systemd-nspawn was killed (direct executor): every command must see and recover it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use realms_sys::proc;
use realms_tests::realms::{TestRoot, name};

/// The nspawn of a running realm (from its pid file).
fn nspawn_pid(t: &TestRoot, realm: &str) -> u32 {
    let file = t.path().join(format!("run/realms/realm-{realm}.pid"));
    fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap()
}

fn rootfs(t: &TestRoot, realm: &str) -> PathBuf {
    t.realms_dir().join(format!("realm-{realm}/rootfs"))
}

/// Processes (on the host) whose root is the realm's root and whose name is `comm`.
fn in_realm(t: &TestRoot, realm: &str, comm: &str) -> Vec<u32> {
    proc::rooted_at(&rootfs(t, realm))
        .unwrap()
        .into_iter()
        .filter(|p| proc::name_of(*p).as_deref() == Some(comm))
        .collect()
}

/// Waits until `cond` holds (panicking with `what` after 20 s).
#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn list_entry(t: &TestRoot, realm: &str) -> serde_json::Value {
    let out = t.ok(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == realm)
        .cloned()
        .unwrap_or_else(|| panic!("{realm} is not in {out}"))
}

/// Starts a realm and kills its nspawn with SIGKILL; returns the container's init (still
/// running, re-parented to PID 1).
pub(crate) fn start_and_kill_nspawn(t: &TestRoot, realm: &str) -> u32 {
    t.ok(&["start", realm]);
    let nspawn = nspawn_pid(t, realm);
    let init = *realms_tests::container::children(nspawn)
        .first()
        .expect("nspawn has a child");
    proc::kill(nspawn, proc::Signal::KILL).unwrap();
    wait_for("nspawn to die", || !proc::pid_alive(nspawn));
    assert!(
        proc::pid_alive(init),
        "the container's init died with nspawn"
    );
    init
}

/// The control groups of `realm` (direct executor) in every hierarchy.
fn groups_of(realm: &str) -> Vec<PathBuf> {
    [
        "/sys/fs/cgroup/unified/realms",
        "/sys/fs/cgroup/systemd/realms",
        "/sys/fs/cgroup/realms",
    ]
    .iter()
    .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
    .map(|e| e.path())
    .filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&format!("realm-{realm}.")))
    })
    .collect()
}

fn veth_exists(realm: &str) -> bool {
    Path::new(&format!("/sys/class/net/vb-{realm}")).exists()
}

#[test]
fn killed_nspawn_leaves_a_realm_stop_and_remove_can_recover() {
    let t = TestRoot::btrfs();
    let r = name("kn");
    t.ok(&["new", &r]);
    let init = start_and_kill_nspawn(&t, &r);
    assert!(veth_exists(&r), "the orphaned container holds its veth");
    assert!(!groups_of(&r).is_empty(), "the realm has no control group");

    // list sees the orphan; stop ends it, and its veth goes with it.
    let entry = list_entry(&t, &r);
    assert_eq!(entry["running"], true, "{entry}");
    assert_eq!(entry["orphaned"], true, "{entry}");
    assert!(t.ok(&["list"]).contains("orphaned"));
    let out = t.realms(&["stop", &r]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !proc::pid_alive(init),
        "stop left the orphaned init running"
    );
    assert_eq!(list_entry(&t, &r)["running"], false);
    wait_for("the stale veth to go", || !veth_exists(&r));

    // remove refuses an orphan without --stop, and never deletes the root under it.
    let init = start_and_kill_nspawn(&t, &r);
    let err = t.fails(&["remove", &r]);
    assert!(err.contains("running") && err.contains("--stop"), "{err}");
    assert!(rootfs(&t, &r).join("etc/os-release").exists());
    t.ok(&["remove", "--stop", &r]);
    assert!(
        !proc::pid_alive(init),
        "remove left the orphaned init running"
    );
    assert!(!t.realms_dir().join(format!("realm-{r}")).exists());
    assert_eq!(groups_of(&r), Vec::<PathBuf>::new());
}

#[test]
fn killed_nspawn_start_recovers_the_realm_and_its_stale_veth() {
    let t = TestRoot::btrfs();
    let r = name("ks");
    t.ok(&["new", &r]);
    let init = start_and_kill_nspawn(&t, &r);
    // Before the fix: "Failed to add new veth interfaces (vb-NAME:host0): File exists".
    let out = t.said(&["start", &r]);
    assert!(out.contains("lost its systemd-nspawn"), "{out}");
    assert!(
        !proc::pid_alive(init),
        "start left the orphaned init running"
    );
    assert_eq!(list_entry(&t, &r)["orphaned"], false);
    assert_eq!(
        t.ok(&["run", &r, "--", "cat", "/proc/sys/kernel/hostname"])
            .trim(),
        r
    );
    // `run` on an orphan starts the realm afresh too.
    start_and_kill_nspawn(&t, &r);
    assert_eq!(t.ok(&["run", &r, "--", "echo", "back"]).trim(), "back");
}

#[test]
fn remove_refuses_a_root_that_a_process_still_uses() {
    let t = TestRoot::btrfs();
    let r = name("ru");
    t.ok(&["new", &r]);
    let mut squatter = Command::new("chroot")
        .arg(rootfs(&t, &r))
        .args(["/bin/sleep", "60"])
        .spawn()
        .unwrap();
    wait_for("the chrooted sleep", || {
        !in_realm(&t, &r, "sleep").is_empty()
    });
    let err = t.fails(&["remove", &r]);
    assert!(
        err.contains(&r) && err.contains("sleep") && err.contains("in use"),
        "{err}"
    );
    assert!(rootfs(&t, &r).join("etc/os-release").exists());
    // Nor does a second container boot on it.
    let err = t.fails(&["start", &r]);
    assert!(err.contains("sleep") && err.contains("in use"), "{err}");
    squatter.kill().unwrap();
    squatter.wait().unwrap();
    t.ok(&["remove", &r]);
}

/// `realms run R -- CMD...` in the background, with its stdio away from the test's.
fn spawn_run(t: &TestRoot, args: &[&str]) -> Child {
    t.command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn forwards(signal: proc::Signal, extra: &[&str]) {
    forwards_from(signal, extra, None)
}

/// `realms run EXTRA R -- sleep 30`, started through `wrapper` when given, gets `signal` and
/// passes it on to the command, whose exit status it returns.
fn forwards_from(signal: proc::Signal, extra: &[&str], wrapper: Option<&str>) {
    let t = TestRoot::btrfs();
    let r = name("sg");
    t.ok(&["new", &r]);
    t.ok(&["start", &r]);
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend([r.as_str(), "--", "sleep", "30"]);
    let mut child = match wrapper {
        None => spawn_run(&t, &args),
        Some(wrapper) => {
            let cmd = t.command(&args);
            Command::new(wrapper)
                .arg(cmd.get_program())
                .args(cmd.get_args())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        }
    };
    wait_for("sleep in the realm", || {
        !in_realm(&t, &r, "sleep").is_empty()
    });
    proc::kill(child.id(), signal).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + signal.as_raw()), "{status}");
    wait_for("sleep to end", || in_realm(&t, &r, "sleep").is_empty());
}

#[test]
fn run_forwards_sigterm_to_the_command() {
    forwards(proc::Signal::TERM, &[]);
}

#[test]
fn run_forwards_sighup_to_the_command() {
    forwards(proc::Signal::HUP, &[]);
}

#[test]
fn run_forwards_sighup_to_the_command_on_a_pty() {
    forwards(proc::Signal::HUP, &["-t"]);
}

/// Regression: under `nohup` (SIGHUP ignored, and inherited so by every child) the command
/// ignored the hangup realms passed on, and `realms run` returned 0 after 30 s instead of 129.
#[test]
fn run_forwards_sighup_also_when_started_under_nohup() {
    forwards_from(proc::Signal::HUP, &[], Some("nohup"));
    forwards_from(proc::Signal::HUP, &["-t"], Some("nohup"));
}

#[test]
fn run_allocates_a_pty_with_t() {
    let t = TestRoot::btrfs();
    let r = name("pt");
    t.ok(&["new", &r]);
    let out = t.ok(&["run", "-t", &r, "--", "tty"]);
    assert!(out.trim().starts_with("/dev/pts/"), "{out}");
    // The pty is the realm's own: its name resolves inside the realm.
    let out = t.ok(&[
        "run",
        "-t",
        &r,
        "--",
        "sh",
        "-c",
        "test -c $(tty) && echo ok",
    ]);
    assert_eq!(out.trim(), "ok");
    let out = t.realms(&["run", "-T", &r, "--", "tty"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "not a tty");
    // Without -t/-T: a pty when stdin and stdout are terminals (`script` gives us one), with
    // the size of ours; none otherwise.
    let realms = t.command(&[]).get_program().to_string_lossy().into_owned();
    let inner = format!(
        "stty rows 42 cols 117; {realms} --root {} run {r} -- sh -c 'tty; stty size'",
        t.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/pts/") && text.contains("42 117"),
        "{text}"
    );
    let out = t.realms(&["run", &r, "--", "tty"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "not a tty");
}

#[test]
fn run_returns_127_for_a_missing_command() {
    let t = TestRoot::btrfs();
    let r = name("nf");
    t.ok(&["new", &r]);
    let out = t.realms(&["run", &r, "--", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-command") && err.contains("not found"),
        "{err}"
    );
    let out = t.realms(&["run", &r, "--", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "not executable");
    let out = t.realms(&["run", &r, "--", "/etc"]);
    assert_eq!(out.status.code(), Some(126), "a directory");
    let out = t.realms(&["run", &r, "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "killed by SIGKILL");
}

#[test]
fn run_takes_env_and_cwd() {
    let t = TestRoot::btrfs();
    let r = name("ec");
    t.ok(&["new", &r]);
    let out = t.ok(&[
        "run",
        "-e",
        "FOO=bar baz",
        "--env",
        "PATH=/bin",
        "--cwd",
        "/var",
        &r,
        "--",
        "sh",
        "-c",
        "echo \"$FOO\"; echo $PATH; pwd",
    ]);
    assert_eq!(out, "bar baz\n/bin\n/var\n");
    let err = t.fails(&["run", "--cwd", "/no/such/dir", &r, "--", "true"]);
    assert!(err.contains("/no/such/dir"), "{err}");
    let err = t.fails(&["run", "-e", "1BAD=x", &r, "--", "true"]);
    assert!(err.contains("1BAD"), "{err}");
}

/// `script` runs `realms ARGS` on a terminal of its own, fed from our pipe; returns it.
fn on_a_terminal(t: &TestRoot, args: &str) -> Child {
    let realms = t.command(&[]).get_program().to_string_lossy().into_owned();
    let inner = format!(
        "{realms} --root {} {args}; echo rc=$?; stty -a",
        t.path().display()
    );
    // With SIGHUP at its default, as on a login terminal: under nohup (inherited through
    // everything) the shell on the pty would outlive the hangup and pass nothing on.
    Command::new("env")
        .args([
            "--default-signal=HUP",
            "script",
            "-qec",
            &inner,
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_on_a_pty_passes_input_and_ctrl_c_and_restores_the_terminal() {
    use std::io::Write;
    let t = TestRoot::btrfs();
    let r = name("ia");
    t.ok(&["new", &r]);
    t.ok(&["start", &r]);
    let mut child = on_a_terminal(
        &t,
        &format!("run {r} -- sh -c 'test -t 0 || exit 9; read line; echo got-$line; exit 3'"),
    );
    child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let out = finish(child);
    assert!(out.contains("got-abc") && out.contains("rc=3"), "{out}");
    // The terminal is back in its cooked mode afterwards.
    assert!(
        out.split_whitespace().any(|w| w == "icanon")
            && out.split_whitespace().any(|w| w == "echo"),
        "{out}"
    );
    // ^C reaches the command through the realm's pty (raw mode on ours).
    let mut child = on_a_terminal(&t, &format!("run {r} -- sleep 30"));
    wait_for("sleep in the realm", || {
        !in_realm(&t, &r, "sleep").is_empty()
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    let out = finish(child);
    drop(stdin);
    assert!(out.contains("rc=130"), "{out}");
    assert!(in_realm(&t, &r, "sleep").is_empty());
}

#[test]
fn run_gets_a_hangup_when_its_terminal_goes_away() {
    let t = TestRoot::btrfs();
    let r = name("hu");
    t.ok(&["new", &r]);
    t.ok(&["start", &r]);
    // With the realm's pty, and sharing ours (-T): like an SSH session that drops.
    for mode in ["", "-T"] {
        let mut child = on_a_terminal(&t, &format!("run {mode} {r} -- sleep 30"));
        wait_for("sleep in the realm", || {
            !in_realm(&t, &r, "sleep").is_empty()
        });
        child.kill().unwrap();
        child.wait().unwrap();
        wait_for(&format!("sleep to end after the hangup ({mode})"), || {
            in_realm(&t, &r, "sleep").is_empty()
        });
    }
}

#[test]
fn killed_nspawn_remove_stop_ends_commands_run_in_the_realm_too() {
    let t = TestRoot::btrfs();
    let r = name("kr");
    t.ok(&["new", &r]);
    t.ok(&["start", &r]);
    let mut run = spawn_run(&t, &["run", &r, "--", "sleep", "60"]);
    wait_for("sleep in the realm", || {
        !in_realm(&t, &r, "sleep").is_empty()
    });
    let nspawn = nspawn_pid(&t, &r);
    proc::kill(nspawn, proc::Signal::KILL).unwrap();
    wait_for("nspawn to die", || !proc::pid_alive(nspawn));
    assert!(!in_realm(&t, &r, "sleep").is_empty());
    t.ok(&["remove", "--stop", &r]);
    // The orphaned init powered off (SIGTERM to everything), or was killed with it all.
    let status = run.wait().unwrap();
    assert!(matches!(status.code(), Some(143 | 137)), "{status}");
    assert!(!t.realms_dir().join(format!("realm-{r}")).exists());
    assert_eq!(groups_of(&r), Vec::<PathBuf>::new());
}
