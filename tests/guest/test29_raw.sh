# systemd's TEST-29-PORTABLE (test/units/testsuite-29.sh, v252.31), its raw-image half, run in
# the guest as `T29 TOOL...` once with `portablectl` and once with `realms portable` (the host
# tier runs the directory half in a booted container). The images are TEST-29's, built on the
# host (tests/guest/portable.rs: squashfs by mksquashfs, minimal_0/1 with the .verity/.roothash
# sidecars of `veritysetup format`, so both tools set them up with dm-verity) and copied to
# /usr/share. Every case runs in its own subshell under `set -eu -o pipefail` and prints
# `=== RESULT NAME PASS` or `=== RESULT NAME FAIL(rc)`, so one failure does not hide the cases
# after it; a failed case's leftovers are cleared before the next one. Changes from upstream,
# each for a reason:
# - the guest has other images in /var/lib/portables, so "No images." became "no minimal_";
# - `busctl tree org.freedesktop.portable1` lines are portabled's D-Bus objects: portablectl only;
# - `TOOL ... | grep -q` became `| grep >/dev/null` (grep -q and pipefail race on SIGPIPE);
# - reattach runs under `timeout` (a TCG guest is slow; a hang must not eat the whole run).
# Added: after each attach the attach directories are printed as `=== TREE LABEL ...` lines (the
# test compares them between the tools), and the first case checks that the service's root is
# the dm-verity device of the image's .roothash. `tree` comes from tests/guest/portable.rs.
S=/usr/share
STATE_DIRECTORY=/var/lib/private/
TIMEOUT=300

bus_has() {
    [[ "${P[0]}" == portablectl ]] || return 0
    busctl tree org.freedesktop.portable1 --no-pager | grep -F "$1" >/dev/null
}
no_minimal() { ! "${P[@]}" list | grep -F "minimal_" >/dev/null; }
snap() { tree | sed "s|^|=== TREE $1 |"; }
# The root of unit $1's main process is a dm-verity device with the root hash in file $2.
verity_root() {
    # Right after a reattach the main process may still be the old one, its verity device going
    # away (dmsetup: "No such device"): wait up to 10 s for one on a live device with this hash.
    local i
    for i in $(seq 50); do
        verity_root_once "$1" "$2" >/dev/null 2>&1 && break
        sleep 0.2
    done
    verity_root_once "$1" "$2"
}

verity_root_once() {
    local pid majmin
    pid=$(systemctl show -p MainPID --value "$1")
    majmin=$(findmnt -N "$pid" -n -o MAJ:MIN / | tr -d ' ')
    dmsetup table -j "${majmin%%:*}" -m "${majmin##*:}" | tee dm-table.txt
    grep -F " verity " dm-table.txt >/dev/null
    grep -F " $(cat "$2") " dm-table.txt >/dev/null
}

raw_attach_reattach_detach() {
    "${P[@]}" attach --now --runtime $S/minimal_0.raw minimal-app0
    snap minimal_0
    verity_root minimal-app0.service $S/minimal_0.roothash
    "${P[@]}" is-attached minimal-app0
    "${P[@]}" inspect $S/minimal_0.raw minimal-app0.service
    systemctl is-active minimal-app0.service
    systemctl is-active minimal-app0-foo.service
    systemctl is-active minimal-app0-bar.service && exit 1
    timeout "$TIMEOUT" "${P[@]}" reattach --now --runtime $S/minimal_1.raw minimal-app0
    snap minimal_1
    verity_root minimal-app0.service $S/minimal_1.roothash
    "${P[@]}" is-attached minimal-app0
    "${P[@]}" inspect $S/minimal_0.raw minimal-app0.service
    systemctl is-active minimal-app0.service
    systemctl is-active minimal-app0-bar.service
    systemctl is-active minimal-app0-foo.service && exit 1
    "${P[@]}" list | grep -F "minimal_1" >/dev/null
    bus_has /org/freedesktop/portable1/image/minimal_5f1
    "${P[@]}" detach --now --runtime $S/minimal_1.raw minimal-app0
    no_minimal
}

raw_force_over_stale_files() {
    mkdir -p /run/systemd/system.attached/minimal-app0.service.d/
    for f in minimal-app0.service minimal-app0.service.d/10-profile.conf minimal-app0.service.d/20-portable.conf; do
        printf '[Unit]\nDescription=Minimal App 0\n' >/run/systemd/system.attached/$f
    done
    systemctl daemon-reload
    "${P[@]}" attach --force --now --runtime $S/minimal_0.raw minimal-app0
    snap force_minimal_0
    "${P[@]}" is-attached --force minimal-app0
    "${P[@]}" inspect --force $S/minimal_0.raw minimal-app0.service
    systemctl is-active minimal-app0.service
    systemctl is-active minimal-app0-foo.service
    systemctl is-active minimal-app0-bar.service && exit 1
    timeout "$TIMEOUT" "${P[@]}" reattach --force --now --runtime $S/minimal_1.raw minimal-app0
    "${P[@]}" is-attached --force minimal-app0
    "${P[@]}" inspect --force $S/minimal_0.raw minimal-app0.service
    systemctl is-active minimal-app0.service
    systemctl is-active minimal-app0-bar.service
    systemctl is-active minimal-app0-foo.service && exit 1
    "${P[@]}" list | grep -F "minimal_1" >/dev/null
    "${P[@]}" detach --force --now --runtime $S/minimal_1.raw minimal-app0
    no_minimal
}

raw_inspect_force_shows_no_unit_files() {
    "${P[@]}" inspect --force $S/minimal_0.raw minimal-app0.service >inspect-force.txt
    grep -F "Unit files:" inspect-force.txt && exit 1
    grep -F "Image:" inspect-force.txt >/dev/null
}

raw_extension_app0_reattach() {
    "${P[@]}" attach --now --runtime --extension $S/app0.raw $S/minimal_0.raw app0
    snap app0_minimal_0
    systemctl is-active app0.service
    status="$("${P[@]}" is-attached --extension app0 minimal_0)"
    [[ "${status}" == "running-runtime" ]]
    timeout "$TIMEOUT" "${P[@]}" reattach --now --runtime --extension $S/app0.raw $S/minimal_1.raw app0
    snap app0_minimal_1
    systemctl is-active app0.service
    status="$("${P[@]}" is-attached --extension app0 minimal_1)"
    [[ "${status}" == "running-runtime" ]]
    "${P[@]}" detach --now --runtime --extension $S/app0.raw $S/minimal_1.raw app0
}

raw_extension_app1_strict_false_versioned_copy() {
    "${P[@]}" attach --now --runtime --extension $S/app1.raw $S/minimal_0.raw app1
    snap app1_minimal_0
    systemctl is-active app1.service
    status="$("${P[@]}" is-attached --extension app1 minimal_0)"
    [[ "${status}" == "running-runtime" ]]
    cp $S/app1.raw /tmp/app1_2.raw
    timeout "$TIMEOUT" "${P[@]}" reattach --now --runtime --extension /tmp/app1_2.raw $S/minimal_1.raw app1
    snap app1_2_minimal_1
    systemctl is-active app1.service
    status="$("${P[@]}" is-attached --extension app1_2 minimal_1)"
    [[ "${status}" == "running-runtime" ]]
    timeout "$TIMEOUT" "${P[@]}" reattach --now --runtime --extension $S/app1.raw $S/minimal_1.raw app1
    systemctl is-active app1.service
    status="$("${P[@]}" is-attached --extension app1 minimal_1)"
    [[ "${status}" == "running-runtime" ]]
}

raw_force_no_reload_swaps_the_base() {
    "${P[@]}" detach --force --no-reload --runtime --extension $S/app1.raw $S/minimal_1.raw app1
    "${P[@]}" attach --force --no-reload --runtime --extension $S/app1.raw $S/minimal_0.raw app1
    snap force_no_reload_app1_minimal_0
    systemctl daemon-reload
    systemctl restart app1.service
    systemctl is-active app1.service
    status="$("${P[@]}" is-attached --extension app1 minimal_0)"
    [[ "${status}" == "running-runtime" ]]
    "${P[@]}" detach --now --runtime --extension $S/app1.raw $S/minimal_0.raw app1
}

raw_dynamic_user_state_is_kept() {
    grep -F bar "${STATE_DIRECTORY}/app0/foo"
    grep -F baz "${STATE_DIRECTORY}/app1/foo"
}

raw_force_overrides_extension_release_name() {
    cp $S/app0.raw /tmp/app10.raw
    "${P[@]}" attach --force --now --runtime --extension /tmp/app10.raw $S/minimal_0.raw app0
    snap force_app10_minimal_0
    systemctl is-active app0.service
    status="$("${P[@]}" is-attached --extension /tmp/app10.raw $S/minimal_0.raw)"
    [[ "${status}" == "running-runtime" ]]
    "${P[@]}" inspect --force --cat --extension /tmp/app10.raw $S/minimal_0.raw app0 | grep -F "Extension Release: /tmp/app10.raw" >/dev/null
}

raw_detach_after_extension_deleted() {
    rm -f /tmp/app10.raw
    systemctl stop app0.service
    "${P[@]}" detach --force --runtime --extension /tmp/app10.raw $S/minimal_0.raw app0
}

raw_is_attached_after_detach_is_detached() {
    status="$("${P[@]}" is-attached $S/minimal_0.raw)"
    [[ "${status}" == "detached" ]]
}

raw_nothing_left_attached() {
    [ -e /run/systemd/system.attached ] && { find /run/systemd/system.attached; exit 1; }
    no_minimal
}

T29_CASES=(
    raw_attach_reattach_detach
    raw_force_over_stale_files
    raw_inspect_force_shows_no_unit_files
    raw_extension_app0_reattach
    raw_extension_app1_strict_false_versioned_copy
    raw_force_no_reload_swaps_the_base
    raw_dynamic_user_state_is_kept
    raw_force_overrides_extension_release_name
    raw_detach_after_extension_deleted
    raw_is_attached_after_detach_is_detached
    raw_nothing_left_attached
)

# After a failed case: stop and remove what TEST-29's units left, so the next case starts clean.
t29_clear() {
    systemctl stop minimal-app0.service minimal-app0-foo.service minimal-app0-bar.service \
        app0.service app1.service 2>/dev/null
    rm -rf /run/systemd/system.attached /run/portables
    systemctl daemon-reload
}

# Runs every case with the tool `$@`; returns the number of failed cases.
T29() {
    P=("$@")
    rm -rf /var/lib/private/app0 /var/lib/private/app1 /tmp/app1_2.raw /tmp/app10.raw
    local failed=0 c rc
    for c in "${T29_CASES[@]}"; do
        echo "=== CASE $c"
        set +e
        (
            set -eux -o pipefail
            "$c"
        )
        rc=$?
        set -e
        if [[ $rc == 0 ]]; then
            echo "=== RESULT $c PASS"
        else
            echo "=== RESULT $c FAIL($rc)"
            failed=$((failed + 1))
            t29_clear || true
        fi
    done
    echo "=== $failed FAILED"
    return "$failed"
}
