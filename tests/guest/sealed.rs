//! Sealed images in the guest, where the kernel has device-mapper: a realm starts on a sealed
//! erofs image through a real dm-verity device; a corrupted block gives EIO inside the realm,
//! and `realms appimg verify` names the block. The same image built with FEC (`--fec-roots 24`)
//! still starts after several blocks are corrupted: the kernel corrects them with our parity.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use realms_tests::fixtures::debian_base;
use realms_tests::guest::GuestCase;
use realms_tests::run::run;
use realms_tests::scratch::Scratch;

/// A marker file in the image whose bytes the guest finds in image.raw, to corrupt its block.
const MARKER: &str = "REALMS-GUEST-MARKER-7c1d0e";

/// Shell: the offset of the first block of `file` that starts with the marker, which is the
/// marker file's first data block and holds nothing else. Regression: the first match anywhere
/// was taken; mkfs.erofs had packed the file's tail inline into a metadata block before its
/// data, so the corrupted block broke the directory tree and the realm failed to start instead
/// of giving EIO on the file (guest case sealed_realm_on_dm_verity).
fn first_block(file: &str) -> String {
    format!("grep -obUa '{MARKER}' {file} | awk -F: '$1 % 4096 == 0 {{print $1; exit}}' || true")
}

/// Builds the sealed image on the host; returns the scratch space (keep it until the guest has
/// booted) and the files to copy into the guest.
pub fn prepare() -> (Scratch, Vec<(PathBuf, String)>) {
    let scratch = Scratch::snapshot(debian_base(), "sealedsrc");
    let tree = scratch.path().join("tree");
    run(Command::new("btrfs")
        .args(["subvolume", "snapshot"])
        .arg(debian_base())
        .arg(&tree));
    let marker: String = std::iter::repeat_n(format!("{MARKER}\n"), 2048).collect();
    fs::write(tree.join("opt/marker"), marker).unwrap();
    let root = scratch.path().join("root");
    let realms = |args: &[&str]| {
        run(Command::new(realms_tests::realms_bin())
            .arg("--root")
            .arg(&root)
            .args(args))
    };
    realms(&["appimg", "key", "generate", "builder"]);
    let key = root.join("etc/realms/private/builder.key");
    for (name, fec) in [("sealed", None), ("sealedfec", Some("24"))] {
        let mut args = vec![
            "appimg".to_string(),
            "build".into(),
            name.into(),
            "--from".into(),
            tree.to_string_lossy().into_owned(),
            "--format".into(),
            "erofs".into(),
            "--seal".into(),
            "--key".into(),
            key.to_string_lossy().into_owned(),
        ];
        if let Some(roots) = fec {
            args.extend(["--fec-roots".to_string(), roots.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        realms(&args);
    }
    let files = vec![
        (
            root.join("storage/appimg/sealed.appimg"),
            "/root/vmtest/sealed.appimg".to_string(),
        ),
        (
            root.join("storage/appimg/sealedfec.appimg"),
            "/root/vmtest/sealedfec.appimg".to_string(),
        ),
        (
            root.join("etc/realms/keys.d/builder.pub"),
            "/root/vmtest/builder.pub".to_string(),
        ),
    ];
    (scratch, files)
}

pub fn cases() -> Vec<GuestCase> {
    vec![sealed_case(), fec_case()]
}

/// The FEC image: three whole blocks of the marker file overwritten with noise; the realm still
/// reads the marker intact through dm-verity, and the kernel says it corrected errors.
fn fec_case() -> GuestCase {
    let find = first_block("$IMG");
    GuestCase::new(
        "sealed_realm_on_dm_verity_with_fec",
        &format!(
            r#"
R=/root/vmtest/realms-root-fec
mkdir -p $R/storage/appimg $R/etc/realms/keys.d
cp -a /root/vmtest/sealedfec.appimg $R/storage/appimg/
cp /root/vmtest/builder.pub $R/etc/realms/keys.d/
IMG=$R/storage/appimg/sealedfec.appimg/image.raw
OFFSET=$({find})
[ -n "$OFFSET" ] || {{ echo "no block of image.raw starts with the marker"; exit 1; }}
BLOCK=$((OFFSET / 4096))
echo "overwriting data blocks $BLOCK to $((BLOCK + 2)) with noise"
dd if=/dev/urandom of=$IMG bs=4096 seek=$BLOCK count=3 conv=notrunc status=none
sync; echo 3 > /proc/sys/vm/drop_caches
realms --root $R appimg verify sealedfec 2>&1 | tee verify.log
grep -q 'correctable with its FEC' verify.log
realms --root $R new f --appimg sealedfec
realms --root $R config f use-network false
dmesg -C || true
realms --root $R start f 2>&1 | tee start.log
! grep -q 'no device-mapper' start.log
DM=$(grep -l '^realms-f-' /sys/block/dm-*/dm/name | head -1)
dmsetup table "$(cat $DM)" | tee table.log
grep -q ' use_fec_from_device ' table.log
grep -q ' fec_roots 24$' table.log
realms --root $R run f -- cat /opt/marker > marker.out
LINES=$(grep -c '^{MARKER}$' marker.out)
echo "marker lines read: $LINES"
[ "$LINES" = 2048 ]
dmesg | grep -i 'verity' | tail -5 || true
dmesg | grep -qi 'fec.*corrected'
echo "FEC CORRECTED OK"
realms --root $R stop f
"#
        ),
    )
}

fn sealed_case() -> GuestCase {
    let find = first_block("$R/storage/appimg/sealed.appimg/image.raw");
    GuestCase::new(
        "sealed_realm_on_dm_verity",
        &format!(
            r#"
R=/root/vmtest/realms-root
mkdir -p $R/storage/appimg $R/etc/realms/keys.d
cp -a /root/vmtest/sealed.appimg $R/storage/appimg/
cp /root/vmtest/builder.pub $R/etc/realms/keys.d/
realms --root $R new s --appimg sealed
realms --root $R config s use-network false
realms --root $R start s 2>&1 | tee start.log
! grep -q 'no device-mapper' start.log
realms --root $R run s -- cat /etc/os-release | grep -q ID=debian
realms --root $R run s -- head -c 26 /opt/marker
DM=$(grep -l '^realms-s-' /sys/block/dm-*/dm/name | head -1)
echo "dm device: $DM $(cat $DM)"
dmsetup table "$(cat $DM)" | tee table.log
grep -q ' verity 1 ' table.log
grep -q "$(cat $R/storage/appimg/sealed.appimg/image.roothash)" table.log
dmsetup status "$(cat $DM)" | tee status.log
grep -q ' verity V' status.log
echo "REALM ON DM-VERITY OK"

realms --root $R stop s
OFFSET=$({find})
[ -n "$OFFSET" ] || {{ echo "no block of image.raw starts with the marker"; exit 1; }}
BLOCK=$((OFFSET / 4096))
echo "corrupting byte $((OFFSET + 100)) (data block $BLOCK)"
printf '\xff' | dd of=$R/storage/appimg/sealed.appimg/image.raw bs=1 seek=$((OFFSET + 100)) conv=notrunc status=none
sync; echo 3 > /proc/sys/vm/drop_caches
realms --root $R start s
if realms --root $R run s -- cat /opt/marker > /dev/null 2> read.err; then echo "read a corrupted block"; exit 1; fi
cat read.err
grep -q 'Input/output error' read.err
echo "EIO OK"
realms --root $R stop s
if realms --root $R appimg verify sealed 2> verify.err; then echo "verify passed a corrupted image"; exit 1; fi
cat verify.err
grep -q "data block $BLOCK " verify.err
echo "VERIFY NAMES BLOCK OK"
"#
        ),
    )
}
