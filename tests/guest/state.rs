//! Guest-tier state storage (real kernel, dm-crypt, swtpm): setup makes the encrypted image and
//! enrolls the TPM2; the generator's units, started by the guest's systemd, unlock it through
//! the TPM2 and mount everything; resize cycles under a concurrent writer keep a tree identical;
//! a resize killed at each step completes, also across a power cut and a new boot; freed space
//! returns to the partition; with the TPM cleared the recovery key and a passphrase unlock.
//! The cases run in this order and share /root/vmtest/state-disk.img.

use realms_tests::guest::GuestCase;

/// Attaches the disk (partitions scanned) and mounts the state partition at /state; `$DEV` is
/// the loop device.
const ATTACH: &str = r#"
DISK=/root/vmtest/state-disk.img
# Whatever an earlier case left behind (a failed case stops half-way).
if findmnt -n --mountpoint /etc -t overlay > /dev/null; then systemctl stop etc.mount || umount -l /etc; fi
systemctl stop var.mount etc.mount home.mount srv.mount opt.mount usr-local.mount 'fancy\x2ddir.mount' my-fancy-dir.mount 2>/dev/null || true
systemctl stop state-encrypted.mount 'systemd-cryptsetup@state\x2dencrypted.service' state.mount 2>/dev/null || true
rm -rf /run/systemd/system/{state,state-encrypted,var,etc,home,srv,opt,usr-local,my-fancy-dir}.mount /run/systemd/system/fancy*.mount /run/systemd/system/systemd-cryptsetup@state* /run/systemd/system/{local-fs,cryptsetup}.target.requires
systemctl daemon-reload
pkill -9 -f 'realms(-fp)? state' || true   # a resize of a case that timed out
umount /state/encrypted 2>/dev/null || true
cryptsetup close state-encrypted 2>/dev/null || true   # before /state: its loop file is there
umount /state 2>/dev/null || true
for d in $(losetup -n -O NAME -j "$DISK"); do losetup -d "$d"; done
DEV=$(losetup -P -f --show "$DISK")
udevadm settle || true
[ -e "${DEV}p2" ] || partx -a "$DEV"
mkdir -p /state
mount -o discard=async "${DEV}p2" /state
"#;

/// Unmounts and closes everything again.
const DETACH: &str = r#"
umount /state/encrypted 2>/dev/null || true
cryptsetup close state-encrypted 2>/dev/null || true
umount /state
losetup -d "$DEV"
"#;

pub fn cases() -> Vec<GuestCase> {
    let setup = format!(
        r#"
ln -sf /usr/local/bin/realms /usr/local/bin/realms-state-generator
truncate -s 4G /root/vmtest/state-disk.img
printf 'label: gpt\nsize=100M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp\n' | sfdisk -q /root/vmtest/state-disk.img
realms state setup --disk /root/vmtest/state-disk.img --size 3G > setup.out
grep -v -E '[cbdefghijklnrtuv]{{8}}(-[cbdefghijklnrtuv]{{8}}){{7}}' setup.out || true
grep -oE '[cbdefghijklnrtuv]{{8}}(-[cbdefghijklnrtuv]{{8}}){{7}}' setup.out > /root/vmtest/recovery.key
echo "RECOVERY KEY SHOWN"
{ATTACH}
cryptsetup luksDump /state/encrypted.img | grep -E 'systemd-(tpm2|recovery)|Keyslots|^  [0-9]+: luks2' || true
cryptsetup luksDump /state/encrypted.img | grep -q systemd-tpm2 && echo "TPM2 ENROLLED"
realms state unlock --state /state
mkdir '/state/encrypted/fancy\x2ddir' /state/encrypted/my-fancy-dir
echo srv-data > /state/encrypted/srv/probe
echo fancy-data > '/state/encrypted/fancy\x2ddir/probe'
mkdir -p /state/encrypted/etc/upper
echo overlay-data > /state/encrypted/etc/upper/realms-state-probe
echo home-data > /state/home/probe
realms state unlock --state /state   # already open: brings encrypted.entries up to date
realms state status --state /state
{DETACH}
# The generator finds the partition and writes the units; systemd starts them.
DEV=$(losetup -P -f --show /root/vmtest/state-disk.img)
udevadm settle || true
[ -e "${{DEV}}p2" ] || partx -a "$DEV"
REALMS_STATE_DISK=$DEV realms-state-generator /run/systemd/system /run/systemd/system /run/systemd/system
ls /run/systemd/system
systemctl daemon-reload
timeout 300 systemctl start local-fs.target
for m in /state /state/encrypted /home /var /srv /fancy-dir /my/fancy/dir /etc /usr/local /opt; do findmnt -n -o TARGET,SOURCE,FSTYPE,OPTIONS --mountpoint $m; done
systemctl is-active 'systemd-cryptsetup@state\x2dencrypted.service'
journalctl -b -u 'systemd-cryptsetup@state\x2dencrypted.service' --no-pager | tail -n 5
test "$(cat /srv/probe)" = srv-data
test "$(cat /fancy-dir/probe)" = fancy-data
test "$(cat /home/probe)" = home-data
test "$(cat /etc/realms-state-probe)" = overlay-data
test -f /etc/os-release
# The unlock unit switched the image's loop device to direct I/O (not cached twice).
losetup -l -n -O BACK-FILE,DIO | grep '/state/encrypted.img'
test "$(losetup -l -n -O BACK-FILE,DIO | awk '$1 == "/state/encrypted.img" {{ print $2 }}')" = 1
echo "ALL MOUNTS ACTIVE"
systemctl stop etc.mount || umount -l /etc
systemctl stop var.mount home.mount srv.mount opt.mount usr-local.mount 'fancy\x2ddir.mount' my-fancy-dir.mount
systemctl stop state-encrypted.mount 'systemd-cryptsetup@state\x2dencrypted.service' state.mount
rm -f /run/systemd/system/*.mount /run/systemd/system/systemd-cryptsetup@* 
rm -rf /run/systemd/system/local-fs.target.requires /run/systemd/system/cryptsetup.target.requires
systemctl daemon-reload
losetup -d "$DEV"
echo "STATE BOOT UNITS OK"
"#
    );
    let resize = format!(
        r#"
{ATTACH}
realms state unlock --state /state
mkdir -p /state/encrypted/var/tree /state/encrypted/var/writer
for i in $(seq 1 30); do head -c $((i * 40000)) /dev/urandom > /state/encrypted/var/tree/f$i; done
(cd /state/encrypted/var/tree && sha256sum f* > /root/vmtest/tree.sums)
# A concurrent writer: each file is written, synced, then its checksum recorded.
( n=0; while [ ! -e /root/vmtest/stop-writer ]; do n=$((n+1)); f=/state/encrypted/var/writer/w$n
  head -c 200000 /dev/urandom > $f; sync $f; sha256sum $f >> /root/vmtest/writer.sums; done ) &
WRITER=$!
START=$(date +%s)
for c in $(seq 1 20); do
  realms state resize --size 1200M --state /state --reserve 64M
  realms state resize --size 448M --state /state --reserve 64M
  echo "cycle $c done at $(( $(date +%s) - START )) s"
done
END=$(date +%s)
touch /root/vmtest/stop-writer; wait $WRITER
echo "20 CYCLES IN $((END - START)) s"
(cd /state/encrypted/var/tree && sha256sum -c --quiet /root/vmtest/tree.sums)
sha256sum -c --quiet /root/vmtest/writer.sums
echo "WRITER FILES: $(wc -l < /root/vmtest/writer.sums)"
rm -rf /state/encrypted/var/writer
btrfs scrub start -B /state/encrypted
echo "RESIZE CYCLES OK"
# Killed in the middle of a step (a cryptsetup or btrfs child still running).
for delay in 0.2 1; do
  realms state resize --size 1000M --state /state --reserve 64M &
  P=$!; sleep $delay; kill -9 $P 2>/dev/null || true; wait $P 2>/dev/null || true
  sleep 3  # a btrfs or cryptsetup child of the killed process finishes on its own
  realms state resize --size 448M --state /state --reserve 64M &
  P=$!; sleep $delay; kill -9 $P 2>/dev/null || true; wait $P 2>/dev/null || true
  sleep 3
  ls /state
  umount /state/encrypted; cryptsetup close state-encrypted
  realms state unlock --state /state
  (cd /state/encrypted/var/tree && sha256sum -c --quiet /root/vmtest/tree.sums)
done
realms state resize --size 448M --state /state --reserve 64M
test ! -e /state/resize.pending
umount /state/encrypted; cryptsetup close state-encrypted
cryptsetup open --type luks2 --token-only /state/encrypted.img state-check
btrfs check --readonly /dev/mapper/state-check
cryptsetup close state-check
echo "KILLED RESIZES CONSISTENT"
{DETACH}
"#
    );
    // A grow and a shrink killed at each of their steps in turn (the failpoints they pass,
    // interleaved so that each completed kill leaves the start of the other), then the volume
    // closed and reopened: the tree is intact and the next resize completes the step.
    let killed = format!(
        r#"
{ATTACH}
realms state unlock --state /state
realms state resize --size 448M --state /state --reserve 64M > /dev/null
REALMS_FAILPOINT_TRACE=$PWD/trace-grow realms-fp state resize --size 1024M --state /state --reserve 64M > /dev/null
REALMS_FAILPOINT_TRACE=$PWD/trace-shrink realms-fp state resize --size 448M --state /state --reserve 64M > /dev/null
echo "grow passes: $(tr '\n' ' ' < trace-grow)"
echo "shrink passes: $(tr '\n' ' ' < trace-shrink)"
declare -A seen=()
KILLS=0
kill_at() {{  # PASS POINT SIZE: kill a resize to SIZE at POINT, reopen, complete
  local key="$1 $2" k spec rc=0 pending=0 out
  k=${{seen[$key]:-0}}; seen[$key]=$((k + 1))
  # The k-th pass of a point passed more than once (the atomic writes).
  if [ $k = 0 ]; then spec="$2=return"; else spec="$2=$k*off->return"; fi
  FAILPOINTS="$spec" realms-fp state resize --size $3 --state /state --reserve 64M > /dev/null 2>&1 < /dev/null || rc=$?
  [ $rc = 137 ] || {{ echo "$1: not killed at $spec (exit $rc)"; return 1; }}
  [ -e /state/resize.pending ] && pending=1
  case $2 in state-*) [ $pending = 1 ] || {{ echo "$1: no resize.pending after a kill at $spec"; return 1; }};; esac
  umount /state/encrypted; cryptsetup close state-encrypted
  realms state unlock --state /state > /dev/null
  (cd /state/encrypted/var/tree && sha256sum -c --quiet /root/vmtest/tree.sums)
  out=$(realms state resize --size $3 --state /state --reserve 64M 2>&1)
  if [ $pending = 1 ]; then
    grep -q "completing an interrupted resize" <<< "$out" || {{ echo "$1: after a kill at $spec: $out"; return 1; }}
  fi
  test ! -e /state/resize.pending
  local want=$(( ${{3%M}} * 1048576 )) have
  have=$(stat -c %s /state/encrypted.img)
  [ "$have" = $want ] || {{ echo "$1: after a kill at $spec: $have bytes, not $want"; return 1; }}
  KILLS=$((KILLS + 1))
}}
mapfile -t GROW < trace-grow
mapfile -t SHRINK < trace-shrink
for i in $(seq 0 $(( ${{#GROW[@]}} > ${{#SHRINK[@]}} ? ${{#GROW[@]}} - 1 : ${{#SHRINK[@]}} - 1 ))); do
  if [ -n "${{GROW[$i]:-}}" ]; then kill_at grow "${{GROW[$i]}}" 1024M; else realms state resize --size 1024M --state /state --reserve 64M > /dev/null; fi
  if [ -n "${{SHRINK[$i]:-}}" ]; then kill_at shrink "${{SHRINK[$i]}}" 448M; else realms state resize --size 448M --state /state --reserve 64M > /dev/null; fi
done
echo "KILLED AT $KILLS STEPS, EACH COMPLETED"
{DETACH}
"#
    );
    // The harshest interruption: a shrink killed between its dm-crypt and file steps, then the
    // power cut (no unmount, no close); the next boot finds a consistent file system.
    let power_cut = format!(
        r#"
{ATTACH}
realms state unlock --state /state
realms state resize --size 1024M --state /state --reserve 64M
head -c 3000000 /dev/urandom > /state/encrypted/var/before-cut
sync /state/encrypted/var/before-cut
sha256sum /state/encrypted/var/before-cut > /root/vmtest/before-cut.sum
rc=0; FAILPOINTS="state-shrink-crypt=return" realms-fp state resize --size 448M --state /state --reserve 64M || rc=$?
[ $rc = 137 ]
echo "killed in a shrink: image $(stat -c %s /state/encrypted.img) bytes, dm-crypt $(blockdev --getsize64 /dev/mapper/state-encrypted) bytes"
power_cut
"#
    );
    let after_cut = format!(
        r#"
{ATTACH}
test -e /state/resize.pending
cryptsetup open --type luks2 --token-only /state/encrypted.img state-check
btrfs check --readonly /dev/mapper/state-check
cryptsetup close state-check
realms state unlock --state /state
(cd /state/encrypted/var/tree && sha256sum -c --quiet /root/vmtest/tree.sums)
sha256sum -c --quiet /root/vmtest/before-cut.sum
out=$(realms state resize --size 448M --state /state --reserve 64M 2>&1); echo "$out"
grep -q "completing an interrupted resize" <<< "$out"
test ! -e /state/resize.pending
test "$(stat -c %s /state/encrypted.img)" = $((448 * 1048576))
echo "CONSISTENT AFTER A POWER CUT"
{DETACH}
"#
    );
    let discard = format!(
        r#"
{ATTACH}
realms state unlock --state /state
realms state resize --size 2G --state /state --reserve 64M
sync; fstrim /state/encrypted; fstrim /state; sync
free_kib() {{ df --output=avail -k /state | tail -n 1; }}
BEFORE=$(free_kib)
head -c 1073741824 /dev/zero | tr '\0' 'x' > /state/encrypted/var/big
sync
DURING=$(free_kib)
rm /state/encrypted/var/big
sync; fstrim -v /state/encrypted; sync
sleep 2
AFTER=$(free_kib)
echo "partition free KiB: before $BEFORE, with 1 GiB file $DURING, after delete $AFTER"
USED=$((BEFORE - DURING)); BACK=$((AFTER - DURING))
echo "RETURNED PERCENT $((BACK * 100 / 1048576))"
test $((BACK * 100 / 1048576)) -ge 90
echo "DISCARD OK"
{DETACH}
"#
    );
    let recovery = format!(
        r#"
{ATTACH}
tpm2_clear -T device:/dev/tpmrm0
if realms state unlock --state /state; then echo "TPM2 STILL UNLOCKS"; exit 1; fi
realms state unlock --state /state --key-file /root/vmtest/recovery.key
(cd /state/encrypted/var/tree && sha256sum -c --quiet /root/vmtest/tree.sums)
# Regression: unlocked with a key file (no TPM2 token left), a resize asked cryptsetup for a
# passphrase on stdin ("Nothing to read on input") and failed.
realms state resize --size 640M --state /state --reserve 64M
realms state resize --size 448M --state /state --reserve 64M
echo "RECOVERY KEY UNLOCKS"
# A passphrase, enrolled with the recovery key, unlocks as the boot prompt would: systemd-cryptsetup
# with what a person types (no newline).
printf 'a guest passphrase\n' | realms state enroll --passphrase-file - --unlock-key-file /root/vmtest/recovery.key --state /state
umount /state/encrypted; cryptsetup close state-encrypted
printf 'a guest passphrase' > /run/typed
/usr/lib/systemd/systemd-cryptsetup attach state-encrypted /state/encrypted.img /run/typed discard
rm /run/typed
realms state unlock --state /state
(cd /state/encrypted/var/tree && sha256sum -c --quiet /root/vmtest/tree.sums)
echo "PASSPHRASE UNLOCKS"
{DETACH}
"#
    );
    vec![
        GuestCase::new("state_setup_and_boot_units", &setup),
        GuestCase::new("state_resize", &resize),
        GuestCase::new("state_resize_killed_at_each_step", &killed).with_timeout(1200),
        GuestCase::new("state_power_cut_in_a_shrink", &power_cut),
        GuestCase::new("state_after_power_cut", &after_cut),
        GuestCase::new("state_discard", &discard),
        GuestCase::new("state_recovery_key", &recovery),
    ]
}
