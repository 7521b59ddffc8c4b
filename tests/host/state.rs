//! State storage on the host: the partition added to a disk image and read back by sfdisk and
//! systemd-repart; the generator's units checked by systemd-analyze; resize cycles of a
//! btrfs-in-loop image (no encryption here: the host has no device-mapper) keeping a tree intact.

use std::path::Path;
use std::process::Command;

use realms_tests::failpoints::{failpoints_bin, kill_spec, was_killed};
use realms_tests::realms_bin;
use realms_tests::require;
use realms_tests::run::{output, run, sh, tail};
use realms_tests::scratch::Scratch;

const STATE_TYPE: &str = "1481cc84-d6c7-48f0-a9b0-63ac992b8897";

fn realms(args: &[&str]) -> std::process::Output {
    output(Command::new(realms_bin()).args(args))
}

#[track_caller]
fn realms_ok(args: &[&str]) -> String {
    let out = realms(args);
    assert!(
        out.status.success(),
        "`realms {}` failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn realms_fails(args: &[&str]) -> String {
    let out = realms(args);
    assert!(
        !out.status.success(),
        "`realms {}` succeeded",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A 2 GiB disk image with an ESP of 100 MiB and free space after it.
fn disk_with_esp(dir: &Path) -> String {
    let disk = dir.join("disk.img");
    run(Command::new("truncate").args(["-s", "2G"]).arg(&disk));
    sh(&format!(
        "printf 'label: gpt\\nsize=100M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp\\n' | sfdisk -q '{}'",
        disk.display()
    ));
    disk.display().to_string()
}

#[test]
fn state_setup_adds_a_partition_that_sfdisk_and_repart_read_back() {
    require::root();
    require::tool("sfdisk", "fdisk");
    require::tool("systemd-repart", "systemd-repart");
    let scratch = Scratch::empty("state-setup");
    let disk = disk_with_esp(scratch.path());
    let plan = realms_ok(&[
        "state",
        "setup",
        "--disk",
        &disk,
        "--size",
        "1G",
        "--dry-run",
    ]);
    assert!(plan.contains(STATE_TYPE), "{plan}");
    realms_ok(&["state", "setup", "--disk", &disk, "--size", "1G"]);

    let table: serde_json::Value =
        serde_json::from_str(&sh(&format!("sfdisk --json '{disk}'"))).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{table}");
    let state = &parts[1];
    assert_eq!(state["type"].as_str().unwrap().to_lowercase(), STATE_TYPE);
    assert_eq!(state["name"], "state");
    assert_eq!(state["size"], 2 * 1024 * 1024, "1 GiB in sectors");
    assert_eq!(state["start"].as_u64().unwrap() % 2048, 0, "1 MiB aligned");
    // The ESP is untouched.
    assert_eq!(parts[0]["name"], "esp");
    assert_eq!(parts[0]["start"], 2048);

    // The partition UUID is systemd-repart's: HMAC of the machine id and the type.
    let expected = sh(&format!(
        "systemd-id128 machine-id -u --app-specific={STATE_TYPE}"
    ));
    let uuid = state["uuid"].as_str().unwrap().to_lowercase();
    assert_eq!(uuid, expected.trim());

    // systemd-repart reads it back as a partition of our type with the same label and UUID.
    let defs = scratch.path().join("repart.d");
    std::fs::create_dir(&defs).unwrap();
    std::fs::write(
        defs.join("50-state.conf"),
        format!("[Partition]\nType={STATE_TYPE}\nLabel=state\n"),
    )
    .unwrap();
    let repart = output(
        Command::new("systemd-repart")
            .args(["--dry-run=yes", "--json=short"])
            .arg(format!("--definitions={}", defs.display()))
            .arg(&disk),
    );
    let repart: serde_json::Value = serde_json::from_slice(&repart.stdout).unwrap();
    let ours = repart
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == STATE_TYPE)
        .unwrap_or_else(|| panic!("repart does not see the state partition: {repart}"));
    assert_eq!(ours["uuid"], uuid);
    assert_eq!(ours["label"], "state");
    assert_eq!(ours["old_size"], 1u64 << 30);

    // btrfs with the partition's UUID and label, and the layout on it.
    let offset = state["start"].as_u64().unwrap() * 512;
    let blkid = sh(&format!("blkid -p -O {offset} -o export '{disk}'"));
    assert!(blkid.contains("TYPE=btrfs"), "{blkid}");
    assert!(blkid.contains("LABEL=state"), "{blkid}");
    let mnt = scratch.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh(&format!(
        "mount -o ro,loop,offset={offset},sizelimit={} '{disk}' '{}'",
        1u64 << 30,
        mnt.display()
    ));
    let layout = sh(&format!(
        "ls '{}'; cat '{}/encrypted.entries'",
        mnt.display(),
        mnt.display()
    ));
    run(Command::new("umount").arg(&mnt));
    for name in [
        "home",
        "encrypted.entries",
        "var",
        "etc",
        "usr-local",
        "opt",
        "srv",
    ] {
        assert!(
            layout.contains(name),
            "{name} missing from the layout:\n{layout}"
        );
    }

    // A second setup refuses, naming the partition.
    let err = realms_fails(&["state", "setup", "--disk", &disk]);
    assert!(
        err.contains("already has a state partition (partition 2)"),
        "{err}"
    );
}

#[test]
fn state_setup_refuses_an_attached_image_and_a_disk_without_gpt() {
    require::root();
    let scratch = Scratch::empty("state-refuse");
    let blank = scratch.path().join("blank.img");
    run(Command::new("truncate").args(["-s", "1G"]).arg(&blank));
    let err = realms_fails(&["state", "setup", "--disk", &blank.to_string_lossy()]);
    assert!(err.contains("has no GPT"), "{err}");

    let disk = disk_with_esp(scratch.path());
    let dev = sh(&format!("losetup --show -f '{disk}'"));
    let err = realms_fails(&["state", "setup", "--disk", &disk]);
    run(Command::new("losetup").arg("-d").arg(dev.trim()));
    assert!(
        err.contains("is in use: it is attached to /dev/loop"),
        "{err}"
    );
    // Nothing was written.
    let table = sh(&format!("sfdisk --json '{disk}'"));
    assert!(!table.to_lowercase().contains(STATE_TYPE), "{table}");
}

/// The partitions of `disk` as sfdisk reads them (the primary table, as the kernel does).
fn partitions(disk: &str) -> Vec<serde_json::Value> {
    let table: serde_json::Value =
        serde_json::from_str(&sh(&format!("sfdisk --json '{disk}'"))).unwrap();
    table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone()
}

/// The top entries of the btrfs in partition `part` of `disk`, mounted through a loop device.
fn layout(disk: &str, part: &serde_json::Value, dir: &Path) -> Vec<String> {
    let (start, size) = (
        part["start"].as_u64().unwrap(),
        part["size"].as_u64().unwrap(),
    );
    let dev = sh(&format!(
        "losetup --show -f -r -o {} --sizelimit {} '{disk}'",
        start * 512,
        size * 512
    ));
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-o", "ro"])
        .arg(dev.trim())
        .arg(&mnt));
    let mut names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    run(Command::new("umount").arg(&mnt));
    run(Command::new("losetup").args(["-d", dev.trim()]));
    names
}

/// The loop devices attached to `disk`.
fn loops_of(disk: &str) -> String {
    sh(&format!("losetup -n -O NAME -j '{disk}'"))
}

/// Regression (issue 10): `realms state setup` wrote the partition first and made the file
/// system after it, so a kill in between left a state partition with no file system (which the
/// next setup refused as existing), and a kill while the file system was mounted left the mount
/// and the loop device (so the next setup refused the disk as in use). The partition table is
/// now written last, the mount is private and the loop device autoclear: killed at any
/// failpoint, the disk holds the old table (the next setup succeeds and makes the new one) or
/// the new one with its file system complete, and nothing is left attached or mounted.
#[test]
fn state_setup_survives_a_kill_at_every_failpoint() {
    require::root();
    require::tool("sfdisk", "fdisk");
    let scratch = Scratch::empty("state-setup-kill");
    let setup = |disk: &str| {
        let mut cmd = Command::new(failpoints_bin());
        cmd.args(["state", "setup", "--disk", disk, "--size", "1G"]);
        cmd
    };
    let disk = disk_with_esp(scratch.path());
    // Each run starts from a copy of the same disk (sfdisk gives the ESP a random UUID).
    let blank = scratch.path().join("blank.img");
    run(Command::new("cp")
        .args(["--sparse=always", &disk])
        .arg(&blank));
    let old = partitions(&disk);
    let trace = scratch.path().join("trace");
    let out = output(setup(&disk).env("REALMS_FAILPOINT_TRACE", &trace));
    assert!(out.status.success(), "{}", tail(&out.stderr));
    let passes: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let new = partitions(&disk);
    assert_eq!(new.len(), old.len() + 1);
    let new_layout = layout(&disk, &new[1], scratch.path());
    assert!(new_layout.contains(&"home".to_string()), "{new_layout:?}");
    eprintln!("`realms state setup` passes {passes:?}");
    for point in [
        "state-setup-made",
        "state-gpt-backup-written",
        "state-setup-committed",
    ] {
        assert!(
            passes.iter().any(|p| p == point),
            "{point} not in {passes:?}"
        );
    }
    let (mut olds, mut news) = (0, 0);
    for i in 0..passes.len() {
        let spec = kill_spec(&passes, i);
        let at = format!("`realms state setup` killed at {spec}");
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(&blank)
            .arg(&disk));
        let out = output(setup(&disk).env("FAILPOINTS", &spec));
        assert!(was_killed(&out), "{at}: not killed:\n{}", tail(&out.stderr));
        // The kernel lets go of an autoclear loop device once its last user is gone.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !loops_of(&disk).trim().is_empty() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(loops_of(&disk).trim(), "", "{at}: a loop device is left");
        let now = partitions(&disk);
        if now == old {
            olds += 1;
            realms_ok(&["state", "setup", "--disk", &disk, "--size", "1G"]);
            assert_eq!(partitions(&disk), new, "{at}: run again");
        } else if now == new {
            news += 1;
            let err = realms_fails(&["state", "setup", "--disk", &disk]);
            assert!(err.contains("state partition"), "{at}: {err}");
        } else {
            panic!("{at}: a partial table: {now:?}");
        }
        assert_eq!(layout(&disk, &new[1], scratch.path()), new_layout, "{at}");
        assert_eq!(loops_of(&disk).trim(), "", "{at}");
    }
    eprintln!(
        "kill test state setup: {} failpoints, {} kills: {olds} left the old table, {news} the new one, 0 partial",
        passes
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        passes.len()
    );
}

#[test]
fn state_generator_units_pass_systemd_analyze_verify_and_round_trip_names() {
    require::tool("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for d in [
        "home",
        "encrypted/var",
        "encrypted/etc/upper",
        "encrypted/etc/work",
        "encrypted/fancy\\x2ddir",
        "encrypted/my-fancy-dir",
        "encrypted/usr-local",
        "encrypted/bad--name",
    ] {
        std::fs::create_dir_all(state.join(d)).unwrap();
    }
    std::fs::write(state.join("encrypted.img"), b"").unwrap();
    let out = dir.path().join("out");
    let res = realms(&[
        "state",
        "generate",
        "--state",
        &state.to_string_lossy(),
        &out.to_string_lossy(),
    ]);
    assert!(res.status.success());
    let said = String::from_utf8_lossy(&res.stderr);
    assert!(said.contains("skipped 'bad--name'"), "{said}");
    let mut units: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    units.sort();
    for want in [
        "fancy\\x2ddir.mount",
        "my-fancy-dir.mount",
        "usr-local.mount",
        "etc.mount",
        "var.mount",
        "home.mount",
        "state.mount",
        "state-encrypted.mount",
        "systemd-cryptsetup@state\\x2dencrypted.service",
    ] {
        assert!(units.iter().any(|u| u == want), "{want} not in {units:?}");
    }
    // Every mount unit's name is the systemd-escape of its Where=, both ways.
    for u in units.iter().filter(|u| u.ends_with(".mount")) {
        let text = std::fs::read_to_string(out.join(u)).unwrap();
        let where_ = text.lines().find_map(|l| l.strip_prefix("Where=")).unwrap();
        let name =
            realms_unit::escape::from_path(where_, realms_unit::name::UnitType::Mount).unwrap();
        assert_eq!(&name, u);
        assert_eq!(realms_unit::escape::to_path(u).unwrap(), where_.as_bytes());
        let tool = sh(&format!("systemd-escape -p --suffix=mount -- '{where_}'"));
        assert_eq!(tool.trim(), u);
    }
    let verify = output(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .current_dir(&out)
            .args(&units),
    );
    assert!(
        verify.status.success(),
        "systemd-analyze verify failed:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// sha256sum of every file under `dir`, sorted.
fn checksums(dir: &Path) -> String {
    sh(&format!(
        "cd '{}' && find . -type f -print0 | sort -z | xargs -0 sha256sum",
        dir.display()
    ))
}

#[test]
fn state_resize_cycles_on_btrfs_in_loop_keep_a_tree_identical() {
    require::root();
    require::tool("mkfs.btrfs", "btrfs-progs");
    let scratch = Scratch::empty("state-resize");
    let state = scratch.path().join("state");
    let mnt = state.join("encrypted");
    std::fs::create_dir_all(&mnt).unwrap();
    let image = state.join("encrypted.img");
    run(Command::new("truncate").args(["-s", "512M"]).arg(&image));
    run(Command::new("mkfs.btrfs").arg("-q").arg(&image));
    sh(&format!(
        "mount -o loop,discard '{}' '{}'",
        image.display(),
        mnt.display()
    ));
    let tree = mnt.join("var/data");
    std::fs::create_dir_all(&tree).unwrap();
    sh(&format!(
        "for i in $(seq 1 40); do head -c $((i * 997 * 131)) /dev/urandom > '{}/f$i'; done",
        tree.display()
    ));
    let before = checksums(&mnt);
    let st = state.to_string_lossy().into_owned();
    let sizes = ["1G", "400M", "896M", "352M", "768M", "384M"];
    for size in sizes {
        let said = realms_ok(&[
            "state",
            "resize",
            "--size",
            size,
            "--state",
            &st,
            "--reserve",
            "64M",
        ]);
        let want = realms_state_size(size);
        let len = std::fs::metadata(&image).unwrap().len();
        assert_eq!(len, want, "image size after resize to {size}: {said}");
        let fs = sh(&format!("btrfs filesystem show --raw '{}'", mnt.display()));
        assert!(
            fs.contains(&format!("size {want} ")),
            "btrfs after {size}:\n{fs}"
        );
        let loop_size = sh(&format!(
            "findmnt -no SOURCE '{}' | xargs blockdev --getsize64",
            mnt.display()
        ));
        assert_eq!(
            loop_size.trim(),
            want.to_string(),
            "loop capacity after {size}"
        );
        assert_eq!(
            checksums(&mnt),
            before,
            "tree changed after resize to {size}"
        );
    }
    // Below the floor (used + margin) is refused by clamping, never by cutting data.
    realms_ok(&[
        "state",
        "resize",
        "--size",
        "1M",
        "--state",
        &st,
        "--reserve",
        "64M",
    ]);
    assert!(std::fs::metadata(&image).unwrap().len() >= 320 << 20);
    let status = realms_ok(&["--json", "state", "status", "--state", &st]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["image"]["image_size"],
        std::fs::metadata(&image).unwrap().len()
    );
    assert!(status["last_resize"]["to"].is_u64(), "{status}");
    let scrub = sh(&format!("btrfs scrub start -B '{}'", mnt.display()));
    assert!(
        scrub.contains("no errors found") || scrub.contains("Error summary:    no errors"),
        "{scrub}"
    );
    assert_eq!(checksums(&mnt), before);
    run(Command::new("umount").arg(&mnt));
}

fn realms_state_size(text: &str) -> u64 {
    let (n, unit) = text.split_at(text.len() - 1);
    let n: u64 = n.parse().unwrap();
    match unit {
        "G" => n << 30,
        "M" => n << 20,
        _ => unreachable!(),
    }
}

/// A 32 MiB LUKS2 header image `state/encrypted.img` made with `key` (cheap PBKDF: the test
/// only enrolls), for the header-only enroll tests (no device-mapper needed).
fn luks_image(state: &Path, key: &str) -> std::path::PathBuf {
    require::tool("cryptsetup", "cryptsetup-bin");
    require::tool("systemd-cryptenroll", "systemd");
    let image = state.join("encrypted.img");
    run(Command::new("truncate").args(["-s", "32M"]).arg(&image));
    let key_file = state.join("setup-key");
    std::fs::write(&key_file, key).unwrap();
    run(Command::new("cryptsetup")
        .args(["luksFormat", "--type", "luks2", "--batch-mode"])
        .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
        .arg("--key-file")
        .arg(&key_file)
        .arg(&image));
    key_file
}

/// Whether `key` opens the LUKS2 header of `state/encrypted.img`.
fn opens(state: &Path, key: &str) -> bool {
    let f = state.join("try");
    std::fs::write(&f, key).unwrap();
    output(
        Command::new("cryptsetup")
            .args(["open", "--test-passphrase", "--key-file"])
            .arg(&f)
            .arg(state.join("encrypted.img")),
    )
    .status
    .success()
}

/// The recovery key is replaced: the new one opens the LUKS2 header, the old one no longer does
/// (header-only operations: no device-mapper needed).
#[test]
fn state_enroll_replaces_the_recovery_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let pass = luks_image(state, "a passphrase for this test");
    let st = state.to_string_lossy();
    let pattern = |out: &str| {
        out.split_whitespace()
            .find(|w| w.len() == 71 && w.matches('-').count() == 7)
            .map(String::from)
            .unwrap_or_else(|| panic!("no recovery key in {out:?}"))
    };
    let opens = |key: &str| opens(state, key);
    let pass_s = pass.to_string_lossy();
    let first = pattern(&realms_ok(&[
        "state",
        "enroll",
        "--recovery-key",
        "--unlock-key-file",
        &pass_s,
        "--state",
        &st,
    ]));
    assert!(opens(&first));
    let second = pattern(&realms_ok(&[
        "state",
        "enroll",
        "--recovery-key",
        "--unlock-key-file",
        &pass_s,
        "--state",
        &st,
    ]));
    assert_ne!(first, second);
    assert!(opens(&second), "the new recovery key opens");
    assert!(!opens(&first), "the old recovery key was removed");
    assert!(opens("a passphrase for this test"), "other slots stay");
}

/// A passphrase is enrolled from a file or standard input (its trailing newline dropped, as a
/// typed one has none) and replaced by the next: the new one opens the LUKS2 header, the old one
/// no longer does, the recovery key stays; an empty one is refused naming the file.
#[test]
fn state_enroll_adds_and_replaces_a_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let setup_key = luks_image(state, "the key the image was made with");
    let st = state.to_string_lossy();
    let opens = |key: &str| opens(state, key);
    let recovery = realms_ok(&[
        "state",
        "enroll",
        "--recovery-key",
        "--unlock-key-file",
        &setup_key.to_string_lossy(),
        "--state",
        &st,
    ]);
    let recovery = recovery
        .split_whitespace()
        .find(|w| w.len() == 71 && w.matches('-').count() == 7)
        .unwrap_or_else(|| panic!("no recovery key in {recovery:?}"))
        .to_string();
    let first = state.join("first");
    std::fs::write(&first, "correct horse battery staple\n").unwrap();
    let recovery_file = state.join("recovery");
    std::fs::write(&recovery_file, &recovery).unwrap();
    let recovery_s = recovery_file.to_string_lossy();
    realms_ok(&[
        "state",
        "enroll",
        "--passphrase-file",
        &first.to_string_lossy(),
        "--unlock-key-file",
        &recovery_s,
        "--state",
        &st,
    ]);
    assert!(
        opens("correct horse battery staple"),
        "typed without newline"
    );
    assert!(!opens("correct horse battery staple\n"));
    // The second passphrase comes on standard input and replaces every earlier one (the
    // setup key, which no token points at, is a passphrase slot too).
    let mut child = Command::new(realms_bin())
        .args(["state", "enroll", "--passphrase-file", "-"])
        .args(["--unlock-key-file", &recovery_s, "--state", &st])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"a second passphrase\n").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("second"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("second"));
    assert!(opens("a second passphrase"), "the new passphrase opens");
    assert!(
        !opens("correct horse battery staple"),
        "the old one was removed"
    );
    assert!(
        !opens("the key the image was made with"),
        "so was the setup key"
    );
    assert!(opens(&recovery), "the recovery key stays");
    // `state status` lists the ways in, read from the header.
    let status: serde_json::Value =
        serde_json::from_str(&realms_ok(&["--json", "state", "status", "--state", &st])).unwrap();
    assert_eq!(
        status["keys"],
        serde_json::json!([{ "kind": "recovery-key" }, { "kind": "passphrase" }]),
        "{status}"
    );
    let empty = state.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let err = realms_fails(&[
        "state",
        "enroll",
        "--passphrase-file",
        &empty.to_string_lossy(),
        "--unlock-key-file",
        &recovery_s,
        "--state",
        &st,
    ]);
    assert!(
        err.contains(&*empty.to_string_lossy()) && err.contains("empty"),
        "{err}"
    );
    assert!(
        opens("a second passphrase"),
        "a refused enrollment changes nothing"
    );
}

/// The generator's units in a booted systemd container: `systemd-analyze verify` accepts them,
/// and systemd really mounts /state, the binds (escaped names included) and /etc's overlay.
#[test]
fn state_generator_units_mount_everything_in_a_booted_container() {
    use realms_tests::container::Container;
    use realms_tests::fixtures::debian_base;
    use realms_tests::scratch::unique;
    require::root();
    let scratch = Scratch::snapshot(debian_base(), "state-ct");
    let root = scratch.path();
    let src = root.join("state-src");
    for d in [
        "home",
        "encrypted/var",
        "encrypted/srv",
        "encrypted/etc/upper",
        "encrypted/etc/work",
        "encrypted/fancy\\x2ddir",
        "encrypted/my-fancy-dir",
    ] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("home/probe"), "home-data").unwrap();
    std::fs::write(src.join("encrypted/srv/probe"), "srv-data").unwrap();
    std::fs::write(src.join("encrypted/fancy\\x2ddir/probe"), "fancy-data").unwrap();
    std::fs::write(
        src.join("encrypted/etc/upper/realms-state-probe"),
        "overlay-data",
    )
    .unwrap();
    let c = Container::boot(root, &unique("state"), &["--private-network"]);
    c.copy_in(&realms_bin(), "/usr/local/bin/realms");
    c.sh("realms state generate --state /state-src /run/systemd/system");
    let verify = c.exec(&[
        "sh",
        "-c",
        "cd /run/systemd/system && systemd-analyze verify --man=no *.mount",
    ]);
    assert!(
        verify.status.success(),
        "systemd-analyze verify in the container:\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    c.sh("systemctl daemon-reload && timeout 60 systemctl start local-fs.target");
    let mounts = c.sh("findmnt -rn -o TARGET,SOURCE,FSTYPE");
    eprintln!("{mounts}");
    for m in [
        "/state",
        "/home",
        "/var",
        "/srv",
        "/fancy-dir",
        "/my/fancy/dir",
        "/etc",
    ] {
        assert!(
            mounts.lines().any(|l| l.split(" ").next() == Some(m)),
            "{m} not mounted:\n{mounts}"
        );
    }
    assert_eq!(
        c.sh("cat /srv/probe /fancy-dir/probe /home/probe /etc/realms-state-probe"),
        "srv-datafancy-datahome-dataoverlay-data"
    );
    // The base's /etc is still visible below the overlay, and writes land in the state.
    c.sh("test -f /etc/os-release && echo written > /etc/realms-state-new");
    assert_eq!(
        std::fs::read_to_string(src.join("encrypted/etc/upper/realms-state-new")).unwrap(),
        "written\n"
    );
    let failed = c.sh("systemctl --failed --no-legend --plain");
    assert!(!failed.contains(".mount"), "{failed}");
    c.stop();
}
