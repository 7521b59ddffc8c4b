//! Guest-tier GPU: the render node that `use-gpu` binds. The host has no DRM device, the guest
//! kernel has vgem, a virtual GEM driver with a real render node (/dev/dri/renderD128). A
//! realm with `use-gpu` opens it as the realm user (through the device's group mapped into the
//! realm); plain `realms run` as that user without the group cannot; a realm without the
//! option has no device.

use realms_tests::guest::GuestCase;

pub fn cases() -> Vec<GuestCase> {
    vec![GuestCase::new(
        "gpu_render_node",
        r#"
modprobe vgem
udevadm settle || true
ls -l /dev/dri/
test -c /dev/dri/renderD128
R=/root/vmtest/realms-root-gpu
mkdir -p $R/storage/appimg $R/etc/realms/keys.d
cp -a /root/vmtest/sealed.appimg $R/storage/appimg/
cp /root/vmtest/builder.pub $R/etc/realms/keys.d/
for r in gpu nogpu; do
  realms --root $R new $r --appimg sealed
  realms --root $R config $r use-network false
done
realms --root $R config gpu use-gpu true
OPEN='exec 3<>/dev/dri/renderD128 && echo render-opened-by-$(id -un)'
realms --root $R launch gpu -- sh -c "$OPEN"
LOG=$R/run/realms/realm-gpu.apps.log
for i in $(seq 1 100); do grep -q render-opened-by-user $LOG 2>/dev/null && break; sleep 0.2; done
cat $LOG
grep -q render-opened-by-user $LOG
echo "RENDER NODE OPENED BY THE REALM USER"
if realms --root $R run gpu --user user -- sh -c "$OPEN"; then echo "opened without the device's group"; exit 1; fi
if realms --root $R launch nogpu -- sh -c "$OPEN"; then echo "a realm without use-gpu has the render node"; exit 1; fi
realms --root $R stop gpu
realms --root $R stop nogpu || true
echo "GPU OK"
"#,
    )]
}
