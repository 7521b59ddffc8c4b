//! Guest-tier smoke cases: device-mapper, dm-verity and the TPM really work inside the guest.

use realms_tests::guest::GuestCase;

pub fn cases() -> Vec<GuestCase> {
    vec![
        GuestCase::new(
            "smoke_dm_verity",
            r#"
ls -l /dev/mapper/control
modprobe dm-verity || true
mkdir -p src m
echo "hello from a verity device" > src/hello
head -c 1048576 /dev/urandom > src/random
mkfs.erofs --quiet data.img src
ROOT=$(veritysetup format data.img hash.img | awk '/Root hash:/{print $3}')
veritysetup open data.img smoke-verity hash.img "$ROOT"
mount -o ro /dev/mapper/smoke-verity m
cat m/hello
grep -q 'hello from a verity device' m/hello
umount m
veritysetup close smoke-verity
echo "SMOKE verity OK"
"#,
        ),
        GuestCase::new(
            "smoke_tpm",
            r#"
ls -l /dev/tpmrm0
tpm2_getrandom --hex 8 -T device:/dev/tpmrm0
echo
echo "SMOKE tpm OK"
"#,
        ),
    ]
}
