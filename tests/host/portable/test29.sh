#!/bin/bash
# systemd's TEST-29-PORTABLE (test/units/testsuite-29.sh, v252.31 = the 252-stable additions),
# ported to directory images in a booted container; run as `test29.sh TOOL...` once with
# `portablectl` and once with `realms portable`. Changes from upstream, each for a reason:
# - images are directories under /srv/t29 (no loop devices in a container; the raw-image half
#   runs in the guest tier); /tmp/rootdir, /tmp/app0, /tmp/app1 are copies, not mounts of .raw;
# - `busctl tree org.freedesktop.portable1` lines are portabled's D-Bus objects: portablectl only;
# - the scripts are /bin/sh (busybox), not bash;
# - `TOOL ... | grep -q` became `| grep >/dev/null`: grep -q exits at the first match, and under
#   pipefail the writer's SIGPIPE then fails the pipeline now and then.
set -eux
set -o pipefail
P=("$@")
T=/srv/t29
STATE_DIRECTORY=/var/lib/private/
bus_has() {
    [[ "${P[0]}" == portablectl ]] || return 0
    busctl tree org.freedesktop.portable1 --no-pager | grep -F "$1" >/dev/null
}
case_() { echo "=== CASE $1"; }

rm -rf /var/lib/portables/foo-test /var/lib/private/app0 /var/lib/private/app1

case_ "directory attach --copy=symlink, reattach --enable, list, detach"
"${P[@]}" attach --copy=symlink --now --runtime $T/minimal_0 minimal-app0
systemctl is-active minimal-app0.service
systemctl is-active minimal-app0-foo.service
systemctl is-active minimal-app0-bar.service && exit 1
timeout 30 "${P[@]}" reattach --now --enable --runtime $T/minimal_1 minimal-app0
systemctl is-active minimal-app0.service
systemctl is-active minimal-app0-bar.service
systemctl is-active minimal-app0-foo.service && exit 1
"${P[@]}" list | grep -F "minimal_1" >/dev/null
bus_has /org/freedesktop/portable1/image/minimal_5f1
"${P[@]}" detach --now --enable --runtime $T/minimal_1 minimal-app0
"${P[@]}" list | grep -F "No images." >/dev/null

case_ "is-attached after detach prints detached and exits 0 (252)"
status="$("${P[@]}" is-attached $T/minimal_1)"
[[ "${status}" == "detached" ]]

case_ "--force over stale files (upstream: raw images)"
mkdir -p /run/systemd/system.attached/minimal-app0.service.d/
for f in minimal-app0.service minimal-app0.service.d/10-profile.conf minimal-app0.service.d/20-portable.conf; do
    printf '[Unit]\nDescription=Minimal App 0\n' >/run/systemd/system.attached/$f
done
systemctl daemon-reload
"${P[@]}" attach --force --now --runtime $T/minimal_0 minimal-app0
"${P[@]}" is-attached --force minimal-app0
"${P[@]}" inspect --force $T/minimal_0 minimal-app0.service
systemctl is-active minimal-app0.service
systemctl is-active minimal-app0-foo.service
systemctl is-active minimal-app0-bar.service && exit 1
"${P[@]}" reattach --force --now --runtime $T/minimal_1 minimal-app0
"${P[@]}" is-attached --force minimal-app0
"${P[@]}" inspect --force $T/minimal_0 minimal-app0.service
systemctl is-active minimal-app0.service
systemctl is-active minimal-app0-bar.service
systemctl is-active minimal-app0-foo.service && exit 1
"${P[@]}" list | grep -F "minimal_1" >/dev/null
"${P[@]}" detach --force --now --runtime $T/minimal_1 minimal-app0
"${P[@]}" list | grep -F "No images." >/dev/null

case_ "inspect --force IMAGE UNIT shows no unit files (252)"
"${P[@]}" inspect --force $T/minimal_0 minimal-app0.service >/tmp/inspect-force
grep -q -F "Unit files:" /tmp/inspect-force && exit 1
grep -q -F "Image:" /tmp/inspect-force

case_ "overlay directory with an extension whose release file has another name (xattr strict=false)"
mkdir -p $T/overlay $T/os-release-fix/etc
grep -v "^PORTABLE_PREFIXES=" $T/rootdir/etc/os-release >$T/os-release-fix/etc/os-release
mount -t overlay overlay -o lowerdir=$T/os-release-fix:$T/app1:$T/rootdir $T/overlay
grep . $T/overlay/usr/lib/extension-release.d/*
grep . $T/overlay/etc/os-release
"${P[@]}" attach --copy=symlink --now --runtime $T/overlay app1
systemctl is-active app1.service
"${P[@]}" detach --now --runtime overlay app1

case_ "--force --copy=symlink over stale files"
mkdir -p /run/systemd/system.attached/app1.service.d
for f in app1.service app1.service.d/10-profile.conf app1.service.d/20-portable.conf; do
    printf '[Unit]\nDescription=App 1\n' >/run/systemd/system.attached/$f
done
systemctl daemon-reload
"${P[@]}" attach --force --copy=symlink --now --runtime $T/overlay app1
systemctl is-active app1.service
"${P[@]}" detach --now --runtime overlay app1
umount $T/overlay

case_ "two directory extensions, one matched by the strict=false xattr; inspect --cat"
"${P[@]}" attach --copy=symlink --now --runtime --extension $T/app0 --extension $T/app1 $T/rootdir app0 app1
systemctl is-active app0.service
systemctl is-active app1.service
"${P[@]}" inspect --cat --extension app0 --extension app1 rootdir app0 app1 | grep -f $T/rootdir/usr/lib/os-release >/dev/null
"${P[@]}" inspect --cat --extension app0 --extension app1 rootdir app0 app1 | grep -f $T/app0/usr/lib/extension-release.d/extension-release.app0 >/dev/null
"${P[@]}" inspect --cat --extension app0 --extension app1 rootdir app0 app1 | grep -f $T/app1/usr/lib/extension-release.d/extension-release.app2 >/dev/null
"${P[@]}" inspect --cat --extension app0 --extension app1 rootdir app0 app1 | grep -f $T/app1/usr/lib/systemd/system/app1.service >/dev/null
"${P[@]}" inspect --cat --extension app0 --extension app1 rootdir app0 app1 | grep -f $T/app0/usr/lib/systemd/system/app0.service >/dev/null
"${P[@]}" detach --now --runtime --extension $T/app0 --extension $T/app1 $T/rootdir app0 app1

case_ "state written under DynamicUser= is kept"
grep -q -F bar "${STATE_DIRECTORY}/app0/foo"
grep -q -F baz "${STATE_DIRECTORY}/app1/foo"

case_ "systemd #23481: disabling symlinked units, detach still cleans up (twice)"
"${P[@]}" attach --copy=symlink --now --runtime $T/rootdir minimal-app0
"${P[@]}" detach --now --runtime --enable $T/rootdir minimal-app0
"${P[@]}" attach --copy=symlink --now --runtime $T/rootdir minimal-app0
"${P[@]}" detach --now --runtime --enable $T/rootdir minimal-app0

case_ "os-release without ID= is refused, no crash"
mkdir -p $T/emptyroot/usr/lib $T/emptyext/usr/lib/extension-release.d
touch $T/emptyroot/usr/lib/os-release $T/emptyext/usr/lib/extension-release.d/extension-release.emptyext
res="$(! "${P[@]}" attach --extension $T/emptyext $T/emptyroot 2> >(grep "Remote peer disconnected"))"
test -z "${res}"

[ -e /run/systemd/system.attached ] && { find /run/systemd/system.attached; exit 1; }
echo "=== ALL CASES PASSED"
