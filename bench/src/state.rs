//! The state suite, in the qemu guest (dm-crypt needs it): `realms state resize` by 1 GiB and by
//! 10 GiB beside the same steps typed by hand (truncate, losetup -c, cryptsetup resize, btrfs
//! resize), the share of a freed 1 GiB that returns to the partition, and reading and writing
//! 1 GiB in /var (loop + dm-crypt + btrfs) beside the same on the state partition directly.

use std::time::Duration;

use anyhow::{Context, bail};
use realms_tests::guest::{GuestCase, run_guest};

use crate::table::{self, Row};

const SCRIPT: &str = r#"
ln -sf /usr/local/bin/realms /usr/local/bin/realms-state-generator
D=/root/vmtest/bench-disk.img
truncate -s 24G $D
printf 'label: gpt\n' | sfdisk -q $D
realms state setup --disk $D --size 20G --no-tpm2 > /root/vmtest/bench-setup.out
DEV=$(losetup -P -f --show $D); udevadm settle || true
[ -e "${DEV}p1" ] || partx -a "$DEV"
mkdir -p /state; mount -o discard=async ${DEV}p1 /state
KEY=$(grep -oE '[cbdefghijklnrtuv]{8}(-[cbdefghijklnrtuv]{8}){7}' /root/vmtest/bench-setup.out)
printf '%s' "$KEY" > /root/vmtest/bench.key
realms state unlock --state /state --key-file /root/vmtest/bench.key
now() { date +%s.%N; }
t() { local a=$(now); "$@" > /dev/null; local b=$(now); awk "BEGIN { print $b - $a }"; }
IMG=/state/encrypted.img; M=/state/encrypted
LOOP=$(losetup -j $IMG | cut -d: -f1)
hand_grow() { truncate -s $1 $IMG; losetup -c $LOOP; cryptsetup resize state-encrypted; btrfs filesystem resize max $M; }
hand_shrink() { local off=$((16 * 1048576)); btrfs filesystem resize $(( $1 - off )) $M; cryptsetup resize state-encrypted --size $(( ($1 - off) / 512 )); truncate -s $1 $IMG; losetup -c $LOOP; }
G=1073741824
for r in $(seq 1 RUNS); do
  realms state resize --size 2G --state /state --reserve 64M > /dev/null
  echo "BENCH grow1-ours $(t realms state resize --size 3G --state /state --reserve 64M)"
  echo "BENCH shrink1-ours $(t realms state resize --size 2G --state /state --reserve 64M)"
  echo "BENCH grow1-hand $(t hand_grow $((3 * G)))"
  echo "BENCH shrink1-hand $(t hand_shrink $((2 * G)))"
  echo "BENCH grow10-ours $(t realms state resize --size 12G --state /state --reserve 64M)"
  echo "BENCH shrink10-ours $(t realms state resize --size 2G --state /state --reserve 64M)"
  echo "BENCH grow10-hand $(t hand_grow $((12 * G)))"
  echo "BENCH shrink10-hand $(t hand_shrink $((2 * G)))"
done
realms state resize --size 3G --state /state --reserve 64M > /dev/null
sync; fstrim $M; sync
# What the I/O rows are bound by here: dm-crypt's cipher on this (emulated) CPU, and whether
# the image's loop device does direct I/O as at boot.
echo "BENCH aes-xts-mib $(cryptsetup benchmark -c aes-xts-plain64 -s 512 | awk '$1 == "aes-xts" { print $3 }')"
echo "BENCH loop-dio $(losetup -l -n -O BACK-FILE,DIO | awk -v f=$IMG '$1 == f { print $2 }')"
free_kib() { df --output=avail -k /state | tail -n 1; }
for r in $(seq 1 RUNS); do
  sync; echo 3 > /proc/sys/vm/drop_caches
  echo "BENCH write-ours $(t dd if=/dev/zero of=$M/var/big bs=1M count=1024 conv=fsync status=none)"
  echo "BENCH write-direct $(t dd if=/dev/zero of=/state/big bs=1M count=1024 conv=fsync status=none)"
  sync; echo 3 > /proc/sys/vm/drop_caches
  echo "BENCH read-ours $(t dd if=$M/var/big of=/dev/null bs=1M status=none)"
  echo "BENCH read-direct $(t dd if=/state/big of=/dev/null bs=1M status=none)"
  rm /state/big
  sync
  DURING=$(free_kib)
  rm $M/var/big; sync; fstrim $M; sync; sleep 1
  AFTER=$(free_kib)
  echo "BENCH returned-percent $(( (AFTER - DURING) * 100 / 1048576 ))"
done
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn run_suite(runs: usize) -> anyhow::Result<()> {
    let script = SCRIPT.replace("RUNS", &runs.max(1).to_string());
    // Three runs of 1 GiB through emulated AES take longer than a test case may.
    let case = GuestCase::new("bench_state", &script).with_timeout(3600);
    let files = vec![(
        realms_tests::realms_bin(),
        "/usr/local/bin/realms".to_string(),
    )];
    let outcome = run_guest(&[case], &files);
    let out = outcome
        .cases
        .get("bench_state")
        .context("the guest left no result for the state benchmark")?;
    if out.status != Some(0) {
        bail!("the state benchmark failed in the guest:\n{}", out.output);
    }
    let values = |key: &str| -> Vec<f64> {
        out.output
            .lines()
            .filter_map(|l| l.strip_prefix("BENCH "))
            .filter_map(|l| l.split_once(' '))
            .filter(|(k, _)| *k == key)
            .filter_map(|(_, v)| v.trim().parse().ok())
            .collect()
    };
    let secs = |key: &str| Duration::from_secs_f64(median(values(key)).max(0.0));
    let mut rows = Vec::new();
    for (what, key) in [
        ("grow by 1 GiB", "grow1"),
        ("shrink by 1 GiB", "shrink1"),
        ("grow by 10 GiB", "grow10"),
        ("shrink by 10 GiB", "shrink10"),
    ] {
        rows.push(Row::new(
            format!("{what} (file, loop, LUKS2, btrfs)"),
            secs(&format!("{key}-ours")),
            "the same steps by hand",
            secs(&format!("{key}-hand")),
            None,
        ));
    }
    // Target: at least 70 % of the direct throughput, so at most 1/0.7 of its time.
    for (what, key) in [("write", "write"), ("read", "read")] {
        rows.push(Row::new(
            format!("{what} 1 GiB in /var (loop+dm-crypt+btrfs)"),
            secs(&format!("{key}-ours")),
            "the same on the partition",
            secs(&format!("{key}-direct")),
            Some(1.0 / 0.7),
        ));
    }
    table::print(
        "state: resize and I/O through the encrypted image (qemu TCG guest)",
        &rows,
    );
    println!(
        "freed 1 GiB returned to the partition: {:.0} % (target >= 95 %); resize target: under 2 s per 1 GiB step",
        median(values("returned-percent"))
    );
    println!(
        "aes-xts-plain64 (512-bit key, LUKS2's default) encrypts at {:.1} MiB/s in this guest \
         (cryptsetup benchmark; AES instructions emulated by TCG); loop device direct I/O: {}",
        median(values("aes-xts-mib")),
        if median(values("loop-dio")) == 1.0 {
            "on"
        } else {
            "off"
        }
    );
    Ok(())
}
