//! Guest-tier portable services: raw images need loop devices (and dm-verity for a root hash),
//! which a container lacks. A raw squashfs image and a GPT image with root + root-verity
//! partitions and a `.roothash` sidecar (built on the host with systemd-repart) attach with
//! `RootImage=`, their services run, and portablectl in the guest writes the same trees.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use realms_tests::fixtures::portable_image;
use realms_tests::guest::GuestCase;
use realms_tests::run::run;
use realms_tests::scratch::Scratch;

/// Builds foo-test_1.raw (bare squashfs) and foo-test_2.raw (GPT, verity) with its roothash;
/// returns the scratch holding them and the files to copy into the guest.
pub fn prepare() -> (Scratch, Vec<(PathBuf, String)>) {
    realms_tests::require::tool("mksquashfs", "squashfs-tools");
    realms_tests::require::tool("systemd-repart", "systemd");
    let dir = Scratch::empty("portable-guest");
    let tree = portable_image();
    let squash = dir.path().join("foo-test_1.raw");
    run(Command::new("mksquashfs").arg(tree).arg(&squash).args([
        "-noappend",
        "-quiet",
        "-all-root",
    ]));
    let defs = dir.path().join("repart.d");
    fs::create_dir_all(&defs).unwrap();
    fs::write(
        defs.join("10-root.conf"),
        format!(
            "[Partition]\nType=root\nFormat=squashfs\nCopyFiles={}:/\nVerity=data\nVerityMatchKey=root\n",
            tree.display()
        ),
    )
    .unwrap();
    fs::write(
        defs.join("20-verity.conf"),
        "[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\n",
    )
    .unwrap();
    let gpt = dir.path().join("foo-test_2.raw");
    let out = run(Command::new("systemd-repart")
        .args([
            "--empty=create",
            "--size=auto",
            "--dry-run=no",
            "--json=short",
        ])
        .arg(format!("--definitions={}", defs.display()))
        .arg(&gpt));
    let parts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("repart --json");
    let roothash = parts
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|p| p["roothash"].as_str())
        .expect("systemd-repart reported no root hash")
        .to_string();
    let sidecar = dir.path().join("foo-test_2.roothash");
    fs::write(&sidecar, &roothash).unwrap();
    let files = [&squash, &gpt, &sidecar]
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            ((*p).clone(), format!("/var/lib/portables/{name}"))
        })
        .collect();
    (dir, files)
}

/// The attach directories, as a comparable listing (names, types, modes, targets, hashes).
pub const TREE: &str = r#"
tree() {
  for d in /etc/systemd/system.attached /run/systemd/system.attached /etc/portables /run/portables; do
    if [ -e $d ]; then find $d -printf '%y %m %p -> %l\n' | sort; find $d -type f | sort | xargs -r sha256sum; else echo "absent $d"; fi
  done
}
"#;

fn case(name: &str, image: &str, check: &str) -> GuestCase {
    GuestCase::new(
        name,
        &format!(
            r#"{TREE}
portablectl attach --runtime --no-reload {image} 2>&1
tree > theirs.txt
portablectl detach --runtime --no-reload {image}
realms portable attach --runtime --now {image} 2>&1 | tee attach.log
tree > ours.txt
diff -u theirs.txt ours.txt
echo "TREES IDENTICAL"
grep -q "Queued /org/freedesktop/systemd1/job/" attach.log
test "$(systemctl is-active foo-test.service)" = active
systemctl show -p RootImage --value foo-test.service
cat /run/systemd/system.attached/foo-test.service.d/20-portable.conf
{check}
sleep 1; journalctl -u foo-test.service -o cat --no-pager > journal.txt; grep -q started journal.txt
realms portable is-attached {image}
realms portable detach --runtime --now {image} 2>&1
test "$(systemctl is-active foo-test.service || true)" = inactive
test ! -e /run/systemd/system.attached
echo "PORTABLE {image} OK"
"#
        ),
    )
}

/// TEST-29's raw-image flow: attach one version, reattach the next by name with --now, then
/// --force over stale files left in the attach directory.
const REATTACH: &str = r#"
A=/run/systemd/system.attached
realms portable attach --now --runtime foo-test_1 2>&1
test "$(systemctl is-active foo-test.service)" = active
realms portable reattach --now --runtime foo-test_2 2>&1 | tee reattach.log
grep -q "to call RestartUnit on portable service foo-test.service." reattach.log
grep -qx 'RootImage=/var/lib/portables/foo-test_2.raw' $A/foo-test.service.d/20-portable.conf
test "$(systemctl show -p RootImage --value foo-test.service)" = /var/lib/portables/foo-test_2.raw
test "$(systemctl is-active foo-test.service)" = active
test "$(realms portable is-attached foo-test_2)" = running-runtime
test "$(portablectl is-attached foo-test_2 2>/dev/null)" = running-runtime
realms portable detach --now --runtime foo-test_2 2>&1
test ! -e $A
mkdir -p $A/foo-test.service.d
for f in foo-test.service foo-test.service.d/10-profile.conf foo-test.service.d/20-portable.conf; do
  printf '[Unit]
Description=stale
' > $A/$f
done
systemctl daemon-reload
realms portable attach --force --now --runtime foo-test_1 2>&1
head -1 $A/foo-test.service.d/20-portable.conf | grep -q "foo-test_1.raw"
test "$(systemctl is-active foo-test.service)" = active
realms portable detach --force --now --runtime foo-test_1 2>&1
test ! -e $A
echo "PORTABLE REATTACH OK"
"#;

pub fn cases() -> Vec<GuestCase> {
    vec![
        GuestCase::new("portable_raw_reattach", REATTACH),
        case(
            "portable_raw_squashfs",
            "foo-test_1",
            "grep -qx 'RootImage=/var/lib/portables/foo-test_1.raw' /run/systemd/system.attached/foo-test.service.d/20-portable.conf",
        ),
        case(
            "portable_gpt_verity",
            "foo-test_2",
            // The dm device's name is not part of the contract: systemd 252 names it
            // <roothash>-verity, but falls back to <loopdev>p1-verity when a device of that
            // name still exists (e.g. the one portablectl's attach made is being removed).
            // What must hold: the service's root is a dm-verity device with this root hash.
            r#"grep -qx 'RootImage=/var/lib/portables/foo-test_2.raw' /run/systemd/system.attached/foo-test.service.d/20-portable.conf
pid=$(systemctl show -p MainPID --value foo-test.service)
majmin=$(findmnt -N "$pid" -n -o MAJ:MIN / | tr -d ' ')
dmsetup table -j "${majmin%%:*}" -m "${majmin##*:}" | tee table.txt
grep -q " verity " table.txt
grep -q " $(cat /var/lib/portables/foo-test_2.roothash) " table.txt
echo "VERITY DEVICE PRESENT""#,
        ),
    ]
}
