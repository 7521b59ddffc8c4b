//! Guest tier: a qemu (TCG) guest with device-mapper and a TPM. Every case of this file runs in
//! one boot (a TCG boot costs 30-60 s); each #[test] checks the result of its own case.

mod gpu;
mod portable;
mod sealed;
mod smoke;
mod state;
mod test29_raw;
mod verity;

use std::sync::OnceLock;

use realms_tests::guest::{GuestCase, GuestOutcome, run_guest};

/// Every guest case of the suite, in the order they run.
fn all_cases() -> Vec<GuestCase> {
    let mut cases = Vec::new();
    cases.extend(smoke::cases());
    cases.extend(sealed::cases());
    cases.extend(portable::cases());
    cases.extend(state::cases());
    cases.extend(test29_raw::cases());
    cases.extend(verity::cases());
    cases.extend(gpu::cases());
    // `REALMS_GUEST_CASES=state_` boots with only the cases whose names start so (a TCG boot
    // of the whole suite takes minutes; the other tests then report that their case left no result).
    if let Ok(prefix) = std::env::var("REALMS_GUEST_CASES") {
        cases.retain(|c| c.name.starts_with(&prefix));
    }
    cases
}

/// The one guest boot of this test binary, shared by its tests.
fn outcome() -> &'static GuestOutcome {
    static RUN: OnceLock<GuestOutcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let mut files = vec![
            (
                realms_tests::realms_bin(),
                "/usr/local/bin/realms".to_string(),
            ),
            (
                realms_tests::failpoints::failpoints_bin().to_path_buf(),
                "/usr/local/bin/realms-fp".to_string(),
            ),
        ];
        let (_sealed_scratch, sealed_files) = sealed::prepare();
        files.extend(sealed_files);
        let (_portable_scratch, portable_files) = portable::prepare();
        files.extend(portable_files);
        let t29_scratch = realms_tests::scratch::Scratch::empty("t29raw-guest");
        files.extend(test29_raw::prepare(t29_scratch.path()));
        let outcome = run_guest(&all_cases(), &files);
        eprintln!(
            "guest run: {} cases in {:.1?}",
            outcome.cases.len(),
            outcome.elapsed
        );
        outcome
    })
}

#[test]
fn smoke_dm_verity() {
    let out = outcome().assert_ok("smoke_dm_verity");
    assert!(out.contains("SMOKE verity OK"));
}

#[test]
fn smoke_tpm() {
    let out = outcome().assert_ok("smoke_tpm");
    assert!(out.contains("SMOKE tpm OK"));
}

#[test]
fn sealed_realm_starts_on_dm_verity_and_corruption_gives_eio() {
    let out = outcome().assert_ok("sealed_realm_on_dm_verity");
    for line in ["REALM ON DM-VERITY OK", "EIO OK", "VERIFY NAMES BLOCK OK"] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn sealed_realm_with_fec_starts_after_blocks_are_corrupted() {
    let out = outcome().assert_ok("sealed_realm_on_dm_verity_with_fec");
    for line in ["marker lines read: 2048", "FEC CORRECTED OK"] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn portable_raw_squashfs() {
    let out = outcome().assert_ok("portable_raw_squashfs");
    assert!(out.contains("TREES IDENTICAL"), "{out}");
    assert!(
        out.contains("RootImage=/var/lib/portables/foo-test_1.raw"),
        "{out}"
    );
    assert!(out.contains("PORTABLE foo-test_1 OK"), "{out}");
}

#[test]
fn portable_gpt_verity() {
    let out = outcome().assert_ok("portable_gpt_verity");
    assert!(out.contains("TREES IDENTICAL"), "{out}");
    assert!(out.contains("VERITY DEVICE PRESENT"), "{out}");
    assert!(out.contains("PORTABLE foo-test_2 OK"), "{out}");
}

#[test]
fn portable_raw_reattach() {
    let out = outcome().assert_ok("portable_raw_reattach");
    assert!(out.contains("PORTABLE REATTACH OK"), "{out}");
}

#[test]
fn state_setup_enrolls_tpm2_and_boot_units_mount_everything() {
    let out = outcome().assert_ok("state_setup_and_boot_units");
    for line in [
        "RECOVERY KEY SHOWN",
        "TPM2 ENROLLED",
        "TPM2 (PCRs 7)",
        "ALL MOUNTS ACTIVE",
        "STATE BOOT UNITS OK",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    eprintln!("{out}");
}

#[test]
fn state_resize_cycles_under_a_writer_and_killed_resizes_stay_consistent() {
    let out = outcome().assert_ok("state_resize");
    for line in ["RESIZE CYCLES OK", "KILLED RESIZES CONSISTENT"] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    eprintln!("{out}");
}

/// SIGKILL at each step of a grow and of a shrink (their failpoints), then the volume closed and
/// reopened: the tree is intact and the next resize completes what the killed one began.
#[test]
fn state_resize_killed_at_each_step_is_completed_by_the_next() {
    let out = outcome().assert_ok("state_resize_killed_at_each_step");
    assert!(out.contains("EACH COMPLETED"), "{out}");
    let kills: usize = out
        .split("KILLED AT ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(kills >= 12, "only {kills} kills:\n{out}");
    eprintln!("{out}");
}

/// A shrink killed between steps, then a power cut: the next boot unlocks a file system that
/// `btrfs check` passes, nothing synced before the cut is lost, and the resize completes.
#[test]
fn state_power_cut_in_a_killed_shrink_then_a_new_boot_is_consistent() {
    let out = outcome().assert_ok("state_power_cut_in_a_shrink");
    assert!(out.contains("--- power cut"), "{out}");
    let after = outcome().assert_ok("state_after_power_cut");
    assert!(after.contains("CONSISTENT AFTER A POWER CUT"), "{after}");
    assert!(
        outcome().serial.contains("VMTEST-POWER-CUT"),
        "the guest did not boot twice"
    );
    eprintln!("{out}\n{after}");
}

#[test]
fn state_freed_space_returns_to_the_partition() {
    let out = outcome().assert_ok("state_discard");
    assert!(out.contains("DISCARD OK"), "{out}");
    eprintln!("{out}");
}

#[test]
fn state_recovery_key_and_passphrase_unlock_with_the_tpm_cleared() {
    let out = outcome().assert_ok("state_recovery_key");
    assert!(out.contains("RECOVERY KEY UNLOCKS"), "{out}");
    assert!(out.contains("PASSPHRASE UNLOCKS"), "{out}");
}

/// systemd's TEST-29 (v252.31), raw-image half: the same script passes every case with the real
/// portablectl and with `realms portable` (compared case by case).
#[test]
fn test29_raw_passes_with_portablectl_and_realms() {
    let run = outcome();
    let get = |name: &str| {
        run.cases.get(name).unwrap_or_else(|| {
            panic!(
                "guest case {name} left no result; serial tail:\n{}",
                realms_tests::run::tail(run.serial.as_bytes())
            )
        })
    };
    let (theirs, ours) = (get(test29_raw::PORTABLECTL), get(test29_raw::REALMS));
    let (theirs_r, ours_r) = (test29_raw::results(theirs), test29_raw::results(ours));
    let table = test29_raw::table(&theirs_r, &ours_r);
    eprintln!("TEST-29 raw half, case by case:\n{table}");
    let all_pass: Vec<(String, String)> = test29_raw::case_names()
        .into_iter()
        .map(|c| (c, "PASS".to_owned()))
        .collect();
    for (tool, case, results) in [
        ("portablectl", theirs, &theirs_r),
        ("realms portable", ours, &ours_r),
    ] {
        assert!(
            *results == all_pass && case.status == Some(0),
            "TEST-29 raw half with {tool} (status {:?}):\n{table}\n{}",
            case.status,
            case.output
        );
    }
    // After every attach, both tools left the same files (modes, symlink targets, contents).
    let (theirs_t, ours_t) = (test29_raw::trees(theirs), test29_raw::trees(ours));
    assert!(
        !theirs_t.is_empty(),
        "no attach trees in:\n{}",
        theirs.output
    );
    let diff = test29_raw::tree_differences(&theirs_t, &ours_t);
    assert!(theirs_t == ours_t, "the attach trees differ:\n{diff}");
    eprintln!(
        "attach trees identical after {} attaches: {:?}",
        theirs_t.len(),
        theirs_t.keys().collect::<Vec<_>>()
    );
}

#[test]
fn verity_compat_dm_steps_open_realms_hash_areas_in_the_kernel() {
    let out = outcome().assert_ok("verity_compat_dm");
    assert_eq!(out.matches("OPEN OK: ").count(), 9, "{out}");
    for line in ["EIO OK", "FEC OK"] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn gpu_render_node_is_usable_by_the_realm_user_with_use_gpu() {
    let out = outcome().assert_ok("gpu_render_node");
    for line in ["RENDER NODE OPENED BY THE REALM USER", "GPU OK"] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}
