//! The device-mapper steps of cryptsetup's verity-compat-test, in the guest: hash areas that
//! `realms verity format` wrote are opened by `veritysetup open` (the kernel's dm-verity) for
//! every hash algorithm, both hash types, with and without a superblock; the device reads back the
//! data, a corrupted block gives EIO, and with FEC the kernel corrects it.

use realms_tests::guest::GuestCase;

pub fn cases() -> Vec<GuestCase> {
    vec![GuestCase::new(
        "verity_compat_dm",
        r#"
modprobe dm-verity || true
dd if=/dev/urandom of=data.img bs=4096 count=300 status=none
i=0
while read -r OPTS; do
    i=$((i + 1))
    rm -f hash.img rh
    # shellcheck disable=SC2086
    realms -q verity format data.img hash.img $OPTS --root-hash-file=rh
    # shellcheck disable=SC2086
    veritysetup open data.img "vc-$i" hash.img "$(cat rh)" $OPTS
    cmp data.img "/dev/mapper/vc-$i"
    veritysetup status "vc-$i" | grep -q 'status:.*verified'
    veritysetup close "vc-$i"
    echo "OPEN OK: $OPTS"
done <<'CASES'
--hash=sha256
--hash=sha1 --salt=-
--hash=sha224 --data-block-size=1024 --hash-block-size=512
--hash=sha384 --no-superblock --salt=00ff
--hash=sha512 --format=0 --no-superblock --salt=abcdef
--hash=sha3-256
--hash=sha3-512 --data-block-size=512 --hash-block-size=4096
--hash=blake2b-512
--hash=sha256 --format=0 --no-superblock --salt=5a5a --hash-offset=0
CASES

# A corrupted data block: EIO without FEC; corrected by the kernel with realms' FEC area.
rm -f hash.img fec.img rh
realms -q verity format data.img hash.img --fec-device=fec.img --fec-roots=8 --root-hash-file=rh
cp data.img orig.img
dd if=/dev/urandom of=data.img bs=4096 seek=123 count=1 conv=notrunc status=none
veritysetup open data.img vc-eio hash.img "$(cat rh)"
if dd if=/dev/mapper/vc-eio of=/dev/null bs=4096 status=none 2>eio.err; then
    echo "a corrupted block read without error"; exit 1
fi
grep -q 'Input/output error' eio.err
veritysetup close vc-eio
echo "EIO OK"
dmesg -C || true
veritysetup open data.img vc-fec hash.img "$(cat rh)" --fec-device=fec.img --fec-roots=8
cmp orig.img /dev/mapper/vc-fec
veritysetup close vc-fec
dmesg | grep -i verity | tail -3 || true
echo "FEC OK"
"#,
    )]
}
