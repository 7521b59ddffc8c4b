//! The qemu guest tier: a Debian kernel with device-mapper and a TPM (swtpm), booted with
//! `-accel tcg` (never KVM). All cases of a run go into one boot: each case is a shell script run
//! by a oneshot unit; its output and exit status are read back from the guest disk afterwards.
//! A case may cut the power (`power_cut`: a hard reset, nothing synced after it): the guest then
//! boots again from the same disk and TPM state and runs the cases that have no result yet.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::fixtures::{
    archive_stamp, debian_base, debian_mirror, fixtures_dir, key, pool, with_fixture_lock,
};
use crate::run::{run, tail};
use crate::scratch::{Scratch, unique};

/// Packages the guest needs beyond the base: a kernel, device-mapper, TPM and filesystem tools.
const GUEST_PACKAGES: &str = "linux-image-amd64 initramfs-tools zstd cryptsetup-bin btrfs-progs \
squashfs-tools erofs-utils e2fsprogs udev kmod fdisk libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0 \
libtss2-tcti-device0 tpm2-tools dmsetup";

/// The guest's root tree (a read-only subvolume in the pool) and its kernel and initramfs.
#[derive(Debug)]
pub struct GuestImage {
    pub root: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// One case of a guest run: a bash script run in its own directory inside the guest.
#[derive(Debug, Clone)]
pub struct GuestCase {
    pub name: String,
    pub script: String,
    /// Seconds the case may run in the guest before it is killed.
    pub timeout: u32,
}

/// How long a case may run unless it says otherwise.
const CASE_TIMEOUT: u32 = 600;

/// What a case prints on the serial port right before it cuts the power.
const POWER_CUT: &str = "VMTEST-POWER-CUT";

/// Defined in every case: marks the case passed, syncs, says so on the serial port and resets
/// the machine at once (sysrq `b`: no unmount, no sync), as a power cut would.
const POWER_CUT_FN: &str = r#"power_cut() {
  echo "--- power cut"; echo 0 > "/root/vmtest/out/$CASE.rc"; sync
  echo VMTEST-POWER-CUT > /dev/ttyS0
  echo b > /proc/sysrq-trigger; sleep 600
}
"#;

impl GuestCase {
    pub fn new(name: &str, script: &str) -> GuestCase {
        GuestCase {
            name: name.to_string(),
            script: script.to_string(),
            timeout: CASE_TIMEOUT,
        }
    }

    /// The case may run `seconds` instead of the default 600 (the whole boot gets the
    /// difference added to its own timeout).
    pub fn with_timeout(mut self, seconds: u32) -> GuestCase {
        self.timeout = seconds;
        self
    }
}

/// What one case did in the guest.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    pub status: Option<i32>,
    pub output: String,
}

/// The result of one guest boot.
#[derive(Debug)]
pub struct GuestOutcome {
    pub cases: BTreeMap<String, CaseOutcome>,
    pub serial: String,
    pub elapsed: Duration,
}

impl GuestOutcome {
    /// Panics unless case `name` ran and exited 0; returns its output.
    #[track_caller]
    pub fn assert_ok(&self, name: &str) -> &str {
        let Some(case) = self.cases.get(name) else {
            panic!(
                "guest case {name} left no result (the guest may have crashed or timed out); serial tail:\n{}",
                tail(self.serial.as_bytes())
            );
        };
        assert_eq!(
            case.status,
            Some(0),
            "guest case {name} failed (status {:?}); its output:\n{}",
            case.status,
            case.output
        );
        &case.output
    }
}

/// The guest image, built once (kernel and tools installed into a snapshot of the base with apt).
pub fn guest_image() -> &'static GuestImage {
    static IMG: OnceLock<GuestImage> = OnceLock::new();
    IMG.get_or_init(|| {
        let base = debian_base();
        let k = key(&[
            "guest-v1",
            &base.to_string_lossy(),
            GUEST_PACKAGES,
            &debian_mirror(),
            &archive_stamp(),
        ]);
        let root = pool().join(format!("guest-{k}"));
        let kernel = fixtures_dir().join(format!("guest-{k}.vmlinuz"));
        let initrd = fixtures_dir().join(format!("guest-{k}.initrd"));
        with_fixture_lock(|| {
            if !root.exists() || !kernel.exists() || !initrd.exists() {
                build_guest(base, &root, &kernel, &initrd);
            }
        });
        GuestImage {
            root,
            kernel,
            initrd,
        }
    })
}

fn build_guest(base: &Path, root: &Path, kernel: &Path, initrd: &Path) {
    crate::container::nspawn_prerequisites();
    let build = root.with_file_name(format!(
        ".build-{}",
        root.file_name().unwrap().to_string_lossy()
    ));
    crate::fixtures::delete_subvolume_tree(&build);
    run(Command::new("btrfs")
        .args(["subvolume", "snapshot"])
        .arg(base)
        .arg(&build));
    let script = format!(
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && \
         apt-get install -y -q --no-install-recommends {GUEST_PACKAGES} && apt-get clean"
    );
    let log = fixtures_dir().join("guest-apt.log");
    let status = Command::new("systemd-nspawn")
        .args(["-q", "--register=no", "--keep-unit", "-D"])
        .arg(&build)
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            fs::File::options().append(true).open(&log).unwrap(),
        ))
        .status()
        .expect("run systemd-nspawn");
    assert!(
        status.success(),
        "installing the guest packages failed ({status}); {}:\n{}",
        log.display(),
        tail(&fs::read(&log).unwrap_or_default())
    );
    // The package versions the guest was built from, for reading a failure against.
    let versions = Command::new("chroot")
        .arg(&build)
        .args(["dpkg-query", "-W"])
        .output()
        .expect("run dpkg-query in the guest tree");
    fs::write(root.with_extension("packages"), &versions.stdout).unwrap();
    fs::write(build.join("etc/fstab"), "/dev/vda / ext4 defaults 0 1\n").unwrap();
    // Its vhangup would cut off output; the cases write to the disk instead.
    let getty = build.join("etc/systemd/system/serial-getty@ttyS0.service");
    let _ = fs::remove_file(&getty);
    std::os::unix::fs::symlink("/dev/null", &getty).unwrap();
    run(Command::new("chroot")
        .arg(&build)
        .args(["passwd", "-d", "root"]));
    for (pattern, dest) in [("vmlinuz-", kernel), ("initrd.img-", initrd)] {
        let found = fs::read_dir(build.join("boot"))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(pattern))
            .unwrap_or_else(|| panic!("the guest tree has no /boot/{pattern}*"));
        fs::copy(found.path(), dest).unwrap();
    }
    run(Command::new("btrfs")
        .args(["property", "set", "-ts"])
        .arg(&build)
        .args(["ro", "true"]));
    fs::rename(&build, root).expect("rename the guest tree into place");
}

/// Boots the guest once and runs every case in it, in order. `files` are copied into the guest
/// (host path, absolute guest path) before it boots.
pub fn run_guest(cases: &[GuestCase], files: &[(PathBuf, String)]) -> GuestOutcome {
    crate::require::root();
    crate::require::tool("qemu-system-x86_64", "qemu-system-x86");
    crate::require::tool("swtpm", "swtpm");
    crate::require::tool("mkfs.ext4", "e2fsprogs");
    let image = guest_image();
    let tree = Scratch::snapshot(&image.root, "guest");
    install_cases(tree.path(), cases, files);
    let guard = WorkDir(fixtures_dir().join(unique("guest-run")));
    fs::create_dir_all(&guard.0).unwrap();
    let work = guard.0.as_path();
    let disk = work.join("rootfs.img");
    run(Command::new("truncate").args(["-s", "6G"]).arg(&disk));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-d"])
        .arg(tree.path())
        .arg(&disk));
    drop(tree);
    let start = Instant::now();
    let extra: u32 = cases
        .iter()
        .map(|c| c.timeout.saturating_sub(CASE_TIMEOUT))
        .sum();
    // One boot, and one more after each power cut (at most one per case).
    let mut serial = String::new();
    for n in 1..=cases.len() + 1 {
        let log = boot(image, work, &disk, 1500 + extra, n);
        let cut = log.contains(POWER_CUT);
        serial.push_str(&log);
        if !cut {
            break;
        }
    }
    let elapsed = start.elapsed();
    let cases = collect(work, &disk, cases);
    GuestOutcome {
        cases,
        serial,
        elapsed,
    }
}

/// A run's work directory (disk image, TPM state, serial log), removed even when the run fails.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        crate::scratch::unmount_below(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn install_cases(root: &Path, cases: &[GuestCase], files: &[(PathBuf, String)]) {
    let dir = root.join("root/vmtest");
    fs::create_dir_all(dir.join("cases")).unwrap();
    fs::create_dir_all(dir.join("out")).unwrap();
    for (host, inside) in files {
        let dest = root.join(inside.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        run(Command::new("cp").arg("-a").arg(host).arg(&dest));
    }
    let mut runner = String::from("#!/bin/bash\ncd /root/vmtest\n");
    for case in cases {
        let file = dir.join("cases").join(format!("{}.sh", case.name));
        let script = format!(
            "#!/bin/bash\nset -euo pipefail\ntrap 'echo \"--- failed at line $LINENO; dmesg tail:\"; dmesg | tail -n 8' ERR\nCASE={}\n{POWER_CUT_FN}{}\n",
            case.name, case.script
        );
        fs::write(&file, script).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        runner.push_str(&format!(
            "[ -e out/{n}.rc ] || {{ mkdir -p /root/vmtest/work/{n} && (cd /root/vmtest/work/{n} && \
             timeout {t} /root/vmtest/cases/{n}.sh) > out/{n}.log 2>&1; echo $? > out/{n}.rc; sync; }}\n",
            n = case.name,
            t = case.timeout
        ));
    }
    runner.push_str("sync\n");
    let run_sh = dir.join("run.sh");
    fs::write(&run_sh, runner).unwrap();
    fs::set_permissions(&run_sh, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        root.join("etc/systemd/system/vmtest.service"),
        "[Unit]\nDescription=Realms guest tests\nAfter=multi-user.target\n\n[Service]\nType=oneshot\n\
         ExecStart=/bin/sh -c '/root/vmtest/run.sh >> /root/vmtest/out/runner.log 2>&1; systemctl poweroff'\n\n\
         [Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    let _ = fs::remove_file(wants.join("vmtest.service"));
    std::os::unix::fs::symlink(
        "/etc/systemd/system/vmtest.service",
        wants.join("vmtest.service"),
    )
    .unwrap();
}

/// Boot number `n` of a run (the TPM state and the disk carry over from the boot before).
fn boot(image: &GuestImage, work: &Path, disk: &Path, timeout: u32, n: usize) -> String {
    let tpm = work.join("tpm");
    fs::create_dir_all(&tpm).unwrap();
    if n == 1 {
        let _ = Command::new("swtpm_setup")
            .args(["--tpm2", "--createek", "--overwrite", "--tpmstate"])
            .arg(&tpm)
            .output();
    }
    let sock = tpm.join("sock");
    let _ = fs::remove_file(&sock);
    let mut swtpm = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", tpm.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start swtpm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let serial = work.join(format!("serial-{n}.log"));
    let mut qemu = Command::new("timeout");
    qemu.arg(timeout.to_string())
        .args([
            "qemu-system-x86_64",
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
        ])
        .args([
            "-m",
            "2048",
            "-smp",
            "2",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", "root=/dev/vda rw console=ttyS0 panic=-1 quiet"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", disk.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-chardev")
        .arg(format!("socket,id=chrtpm,path={}", sock.display()))
        .args([
            "-tpmdev",
            "emulator,id=tpm0,chardev=chrtpm",
            "-device",
            "tpm-tis,tpmdev=tpm0",
        ])
        .args(["-monitor", "none"]);
    let out = crate::run::output(&mut qemu);
    let _ = swtpm.kill();
    let _ = swtpm.wait();
    let serial_text = fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        out.status.success(),
        "qemu failed or timed out ({}): {}\nserial tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(serial_text.as_bytes())
    );
    serial_text
}

fn collect(work: &Path, disk: &Path, cases: &[GuestCase]) -> BTreeMap<String, CaseOutcome> {
    let mnt = work.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(disk)
        .arg(&mnt));
    let out = mnt.join("root/vmtest/out");
    let mut results = BTreeMap::new();
    for case in cases {
        let Ok(output) = fs::read_to_string(out.join(format!("{}.log", case.name))) else {
            continue;
        };
        let status = fs::read_to_string(out.join(format!("{}.rc", case.name)))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        results.insert(case.name.clone(), CaseOutcome { status, output });
    }
    run(Command::new("umount").arg(&mnt));
    results
}
