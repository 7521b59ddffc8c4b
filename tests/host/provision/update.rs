//! `realms provision update` for real: in a booted systemd container, a package with
//! `version: latest` in `stable`, served by nginx on 127.0.0.1, installed at 1. Publishing 2 and
//! running the shipped `realms-provision-update.service` moves it to 2, the service restarted
//! (a new MainPID and InvocationID, running the new image) and never detached; a 3 whose
//! service fails within the settle time is rolled back to 2 and marked bad, and the next update
//! does not try it again; a good 4 is taken, and only the last two versions are kept.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use realms_tests::container::Container;
use realms_tests::fixtures::write_portable_tree;
use realms_tests::http::HttpServer;
use realms_tests::scratch::unique;

use super::{Booted, Publisher, free_port, realms};

/// `work/packages/upd_VERSION.tar.zst`: the busybox image whose `upd.service` runs `exec` (a
/// long-running loop when `None`), with `/etc/version`.
pub(super) fn upd_package(work: &Path, version: &str, exec: Option<&str>) -> PathBuf {
    let src = work.join(format!("src-upd-{version}"));
    write_portable_tree(&src, &fs::read("/bin/busybox").unwrap(), "upd");
    fs::write(src.join("etc/version"), version).unwrap();
    let unit = src.join("usr/lib/systemd/system/upd.service");
    let exec = exec.unwrap_or(
        "/usr/bin/busybox sh -c 'echo started; while true; do /usr/bin/busybox sleep 5; done'",
    );
    fs::write(
        &unit,
        format!(
            "[Unit]\nDescription=Update test service {version}\n\n[Service]\nExecStart={exec}\n\n[Install]\nWantedBy=multi-user.target\n"
        ),
    )
    .unwrap();
    let out = work.join("packages");
    fs::create_dir_all(&out).unwrap();
    let (s, o) = (src.display().to_string(), out.display().to_string());
    realms(
        work,
        &[
            "provision",
            "pack",
            &s,
            "--name",
            "upd",
            "--pkg-version",
            version,
            "-o",
            &o,
        ],
    );
    out.join(format!("upd_{version}.tar.zst"))
}

impl Booted {
    /// `MainPID InvocationID` of upd.service.
    fn upd_identity(&self) -> String {
        self.ok("systemctl show -p MainPID --value upd.service; systemctl show -p InvocationID --value upd.service")
    }

    /// The version of the image upd.service's main process runs in (once it has entered it:
    /// right after a start the process may not have changed its root yet).
    pub(super) fn upd_running_version(&self) -> String {
        self.ok(
            "for i in $(seq 50); do                cat /proc/$(systemctl show -p MainPID --value upd.service)/root/etc/version 2>/dev/null && exit 0;                sleep 0.1; done; exit 1",
        )
    }

    /// Runs the shipped update unit as the timer would.
    pub(super) fn run_update_unit(&self) -> String {
        let (ok, out) = self.sh("systemctl start realms-provision-update.service");
        let journal = self.ok(
            "journalctl --sync; journalctl -u realms-provision-update.service -o cat --no-pager",
        );
        assert!(ok, "the update unit failed: {out}\n{journal}");
        journal
    }

    /// Starts the update unit and kills it with SIGKILL during the health check (once the
    /// state names an update in progress); the package stays attached.
    fn kill_update_during_health_check(&self) {
        self.ok("systemctl start --no-block realms-provision-update.service");
        super::wait_for(
            self,
            "grep -q '\"trial\": {' /var/lib/realms/provision/state.json",
        );
        // The main process itself: systemctl kill also signals the cgroup, which fails here
        // (EIO from the nested cgroup) now and then.
        self.ok(
            "pid=$(systemctl show -p MainPID --value realms-provision-update.service); \
             [ \"$pid\" -gt 0 ] && kill -9 \"$pid\"",
        );
        super::wait_for(
            self,
            "systemctl show -p ActiveState --value realms-provision-update.service | grep -qvx -e activating -e deactivating",
        );
        let result = self.ok("systemctl show -p Result --value realms-provision-update.service");
        assert_eq!(result.trim(), "signal", "the update was not killed");
        let marker = self.ok("cat /etc/systemd/system.attached/upd.service.d/20-portable.conf");
        assert!(marker.contains("/var/lib/portables/upd_"), "{marker}");
        assert!(
            self.c
                .root()
                .join("etc/systemd/system.attached/upd.service")
                .exists()
        );
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok("cat /var/lib/realms/provision/state.json")).unwrap()
    }
}

/// A booted container (snapshot of the Debian base) with this realms, the repository key
/// trusted, `manifest` as /etc/realms/provision.yaml and the shipped update units.
pub(super) fn boot_provisioned(p: &Publisher, manifest: &str, label: &str) -> Booted {
    let tree = super::provision_root(label);
    let root = tree.path().to_path_buf();
    p.trust_in(&root);
    fs::write(root.join("etc/realms/provision.yaml"), manifest).unwrap();
    // A machine id of its own (the fleet lock tells machines apart by it).
    let name = unique(label);
    let id = <sha2::Sha256 as sha2::Digest>::digest(name.as_bytes());
    let id: String = id[..16].iter().map(|b| format!("{b:02x}")).collect();
    fs::write(root.join("etc/machine-id"), format!("{id}\n")).unwrap();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd");
    for unit in [
        "realms-provision-update.service",
        "realms-provision-update.timer",
    ] {
        fs::copy(dist.join(unit), root.join("etc/systemd/system").join(unit)).unwrap();
    }
    Booted {
        c: Container::boot(&root, &name, &[]),
        _tree: tree,
    }
}

#[test]
fn update_follows_stable_restarts_without_detaching_and_rolls_back_a_failing_version() {
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let p = Publisher::new(work);
    let serve = p.serve.clone();
    p.publish("main", &[&upd_package(work, "1", None)], &[]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let _server = HttpServer::serve(&serve, addr);

    let manifest = format!(
        "composable:\n  default_repository: http://{addr}/main\n  packages:\n\
         \x20   - name: upd\n      version: latest\n      track_stream: stable\n\
         \x20     enable: [upd.service]\n      start: [upd.service]\n\
         \x20     health: {{settle: 3s, command: [/usr/bin/busybox, test, -e, /etc/version]}}\n"
    );
    let b = boot_provisioned(&p, &manifest, "provision-update");
    b.ok("systemd-analyze verify /etc/systemd/system/realms-provision-update.timer /etc/systemd/system/realms-provision-update.service");
    let timer = b.ok(
        "systemctl show -p RandomizedDelayUSec,Persistent --value realms-provision-update.timer",
    );
    assert!(timer.contains("1h") && timer.contains("yes"), "{timer}");

    // 1, installed by apply.
    let out = b.ok("realms provision apply");
    assert!(out.contains("installed upd 1"), "{out}");
    assert_eq!(b.upd_running_version(), "1");
    let first = b.upd_identity();

    // 2: the update unit moves to it, restarting the service, never detached (a watcher looks
    // for the attached unit file in a tight loop the whole time).
    p.publish("main", &[&upd_package(work, "2", None)], &[]);
    let dry = b.ok("realms provision update --dry-run --json");
    assert!(dry.contains("\"would-update\""), "{dry}");
    let mut watcher = b
        .c
        .nsenter()
        .args([
            "sh",
            "-c",
            "n=0; while [ ! -e /run/upd-watch-stop ]; do n=$((n+1)); \
             [ -e /etc/systemd/system.attached/upd.service ] || echo DETACHED; done; echo checks $n",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = b.run_update_unit();
    b.ok("touch /run/upd-watch-stop");
    let watched = String::from_utf8_lossy(&watcher_output(&mut watcher)).into_owned();
    assert!(
        !watched.contains("DETACHED"),
        "detached during the update: {watched}"
    );
    assert!(watched.contains("checks "), "{watched}");
    assert!(journal.contains("updated upd 1 -> 2"), "{journal}");
    assert_eq!(b.upd_running_version(), "2");
    let second = b.upd_identity();
    let (pid1, inv1) = first.split_once('\n').unwrap();
    let (pid2, inv2) = second.split_once('\n').unwrap();
    assert_ne!(pid1, pid2, "the service was not restarted");
    assert_ne!(inv1.trim(), inv2.trim(), "the service was not restarted");
    assert_eq!(b.ok("systemctl is-active upd.service").trim(), "active");
    let marker = b.ok("cat /etc/systemd/system.attached/upd.service.d/20-portable.conf");
    assert!(marker.contains("/var/lib/portables/upd_2"), "{marker}");
    let list = b.ok("portablectl list --no-legend");
    assert!(list.contains("upd_2"), "{list}");
    assert_eq!(b.state()["packages"]["upd"]["version"], "2");

    // 3 fails within the settle time: rolled back to 2, 3 marked bad, the event in the journal
    // and in status.
    let bad = "/usr/bin/busybox sh -c 'echo v3 starting; /usr/bin/busybox sleep 1; exit 3'";
    p.publish("main", &[&upd_package(work, "3", Some(bad))], &[]);
    // Killed during its health check first: the next run checks 3 again and rolls back.
    b.kill_update_during_health_check();
    let journal = b.run_update_unit();
    assert!(
        journal.contains("failed its health check") && journal.contains("rolled back upd to 2"),
        "{journal}"
    );
    assert_eq!(b.upd_running_version(), "2");
    assert_eq!(b.ok("systemctl is-active upd.service").trim(), "active");
    let state = b.state();
    assert_eq!(state["packages"]["upd"]["version"], "2");
    assert_eq!(state["history"]["upd"]["bad"], serde_json::json!(["3"]));
    assert!(!b.c.root().join("var/lib/portables/upd_3").exists());
    let status = b.ok("realms provision status");
    assert!(
        status.contains("bad: 3") && status.contains("rolled-back 2 -> 3"),
        "{status}"
    );
    // The next update does not try 3 again.
    let before = b.upd_identity();
    let again = b.ok("realms provision update --json");
    assert!(again.contains("\"bad\""), "{again}");
    assert_eq!(b.upd_identity(), before, "the service was touched");
    assert_eq!(b.state()["packages"]["upd"]["version"], "2");

    // 4, good: taken; 1 is vacuumed (2 kept for rollback).
    p.publish("main", &[&upd_package(work, "4", None)], &[]);
    // Killed during its health check too: the next run finishes it.
    b.kill_update_during_health_check();
    let journal = b.run_update_unit();
    assert!(journal.contains("updated upd 2 -> 4"), "{journal}");
    assert_eq!(b.upd_running_version(), "4");
    let images = b.ok("ls /var/lib/portables");
    let images: Vec<&str> = images.split_whitespace().collect();
    assert_eq!(images, ["upd_2", "upd_4"]);
    let plan = b.ok("realms provision plan --json");
    assert!(plan.contains("\"unchanged\""), "apply disagrees: {plan}");

    // A rollback that fails too (4's image broken behind its back, then a failing 5): 4 is
    // attached again and its service stopped, said loudly, and the command fails.
    b.ok("rm /var/lib/portables/upd_4/usr/bin/busybox");
    p.publish("main", &[&upd_package(work, "5", Some(bad))], &[]);
    let (ok, out) = b.sh("realms provision update");
    assert!(!ok && out.contains("ROLLBACK FAILED"), "{out}");
    let state = b.state();
    assert_eq!(state["packages"]["upd"]["version"], "4");
    assert_eq!(
        state["history"]["upd"]["bad"],
        serde_json::json!(["3", "5"])
    );
    let marker = b.ok("cat /etc/systemd/system.attached/upd.service.d/20-portable.conf");
    assert!(marker.contains("/var/lib/portables/upd_4"), "{marker}");
    let active = b.ok("systemctl is-active upd.service || true");
    assert!(
        active.trim() == "inactive" || active.trim() == "failed",
        "not stopped: {active}"
    );
    let status = b.ok("realms provision status");
    assert!(status.contains("rollback-failed 4 -> 5"), "{status}");
    b.c.stop();
}

/// Waits for the watcher (stopped by its stop file) and returns its output.
fn watcher_output(child: &mut std::process::Child) -> Vec<u8> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut out = Vec::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    out
}

/// The failpoint `realms --root ROOT provision update`, with `env`.
fn update_fp(root: &Path, env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(realms_tests::failpoints::failpoints_bin())
        .arg("--root")
        .arg(root)
        .args(["provision", "update"])
        .env_remove("FAILPOINTS")
        .env_remove("REALMS_FAILPOINT_TRACE")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// [`super::kill::view`] without the events' times (two runs never share a clock second).
fn update_view(root: &Path) -> std::collections::BTreeMap<String, String> {
    let mut v = super::kill::view(root);
    let mut state: serde_json::Value = serde_json::from_str(&v["state.json"]).unwrap();
    for events in state["history"]
        .as_object_mut()
        .into_iter()
        .flat_map(|h| h.values_mut())
        .filter_map(|h| h["events"].as_array_mut())
    {
        events.iter_mut().for_each(|e| e["time"] = 0.into());
    }
    v.insert("state.json".into(), state.to_string());
    v
}

/// Which image the package's unit is attached from right now (the marker's image), if any.
fn attached_image(root: &Path) -> Option<String> {
    let conf = root.join("etc/systemd/system.attached/ku.service.d/20-portable.conf");
    let text = fs::read_to_string(conf).ok()?;
    let unit = root.join("etc/systemd/system.attached/ku.service");
    unit.exists()
        .then(|| {
            ["ku_1", "ku_2"]
                .into_iter()
                .find(|i| text.contains(&format!("/var/lib/portables/{i}")))
                .map(str::to_string)
        })
        .flatten()
}

#[test]
fn update_killed_at_every_failpoint_is_finished_by_the_next_update_never_detached() {
    use std::os::unix::process::ExitStatusExt;
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let p = Publisher::new(work);
    p.publish("repo", &[&super::package(work, "ku", "1")], &[]);
    let repo = format!("file://{}", p.serve.join("repo").display());
    let template = work.join("template");
    p.trust_in(&template);
    fs::create_dir_all(template.join("var/lib/portables")).unwrap();
    fs::write(
        template.join("etc/realms/provision.yaml"),
        format!(
            "composable:\n  default_repository: {repo}\n  packages:\n\
             \x20   - name: ku\n      enable: [ku.service]\n      start: [ku.service]\n"
        ),
    )
    .unwrap();
    let out = super::kill::apply(&template, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.publish("repo", &[&super::package(work, "ku", "2")], &[]);

    let clean = super::kill::fresh(&template, work, "clean");
    let trace_file = work.join("update.trace");
    let out = update_fp(
        &clean,
        &[("REALMS_FAILPOINT_TRACE", trace_file.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = update_view(&clean);
    assert!(
        new["state.json"].contains("\"version\":\"2\""),
        "{}",
        new["state.json"]
    );
    let trace = fs::read_to_string(&trace_file).unwrap();
    let passes: Vec<&str> = trace.lines().collect();
    for step in [
        "provision-fetched",
        "provision-unpacked",
        "provision-installed",
        "provision-update-saved",
        "portable-reattach-planned",
        "provision-reattached",
        "provision-health-checked",
    ] {
        assert!(passes.contains(&step), "{step} not passed: {passes:?}");
    }
    for (i, point) in passes.iter().enumerate() {
        let earlier = passes[..i].iter().filter(|p| *p == point).count();
        let spec = format!("{point}={earlier}*off->return");
        let at = format!("killed at {spec} (pass {} of {})", i + 1, passes.len());
        let root = super::kill::fresh(&template, work, &format!("kill-{i}"));
        let out = update_fp(&root, &[("FAILPOINTS", &spec)]);
        assert_eq!(out.status.signal(), Some(9), "{at}: not killed");
        // Never detached: the unit is attached from version 1 or 2, and that image is there.
        let from = attached_image(&root);
        assert!(
            from.as_ref().is_some_and(|i| root
                .join("var/lib/portables")
                .join(i)
                .join("etc/version")
                .exists()),
            "{at}: ku.service is not attached from a complete image ({from:?})"
        );
        let out = update_fp(&root, &[]);
        assert!(
            out.status.success(),
            "{at}: the next update failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = update_view(&root);
        assert!(
            got == new,
            "{at}: the next update left:\n{}",
            realms_tests::failpoints::diff(&new, &got)
        );
        fs::remove_dir_all(&root).unwrap();
    }
    eprintln!(
        "provision update kill test: {} kills, each finished by the next update",
        passes.len()
    );
}
